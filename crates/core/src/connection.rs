//! One connection, end to end (`istio-semantics.md` H): who calls, what the client sidecar
//! sends, what the server side accepts, what authorization decides, and why.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::explain::{Decision, Step};
use crate::inventory::{Inventory, Service, Workload};
use crate::mesh::authz::{self, AuthzVerdict, Chain, Enforcer, HttpRequest, Jwt, RequestContext};
use crate::mesh::client_tls::{self, ClientTls, Destination};
use crate::mesh::membership::{self, DataPlane};
use crate::mesh::netpol::{self, NetPeer};
use crate::mesh::peer_authn::{self, MtlsMode};
use crate::mesh::protocol::{PortProtocol, service_port_protocol};
use crate::mesh::waypoint;

/// What happens to the connection (the specification's outcome vocabulary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The request reaches the application.
    Allow,
    /// Everything kfp-mesh can see lets the request through to a CUSTOM policy's ext-authz
    /// provider, whose answer decides ([`Verdict::provider`] names it). Not an error, not a
    /// known allow either. Ordered right after `Allow`: any definite failure is worse.
    ProviderDecides,
    /// AuthorizationPolicy denies: HTTP 403 `RBAC: access denied`, or a TCP connection closed
    /// without data.
    Deny,
    /// A CUSTOM policy fails closed (unknown or several ext-authz providers).
    CustomDeny,
    /// HTTP 401: RequestAuthentication rejects the presented JWT.
    Unauthenticated,
    /// `connection reset by peer` (curl exit 56); server side `filter_chain_not_found`.
    Reset,
    /// The client's own sidecar cannot connect to the server (the sidecars disagree on TLS,
    /// or it has no route): HTTP 503 (or 502) from that sidecar; on TCP, where a sidecar has
    /// no status to answer with, the application's connection is reset.
    UpstreamFailure,
    /// The application's own TLS handshake fails (curl exit 35).
    TlsFailure,
    /// A Kubernetes NetworkPolicy drops the packets: the client times out.
    Blocked,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::ProviderDecides => "provider-decides",
            Outcome::Deny => "deny",
            Outcome::CustomDeny => "custom-deny",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Reset => "reset",
            Outcome::UpstreamFailure => "upstream-failure",
            Outcome::TlsFailure => "tls-failure",
            Outcome::Blocked => "blocked",
        }
    }
    /// What the client observes, in the words of curl and Envoy, for HTTP and TCP alike.
    /// [`Outcome::symptom_on`] gives the words for one of them.
    pub fn symptom(self) -> &'static str {
        match self {
            Outcome::Allow => "normal response",
            Outcome::ProviderDecides => {
                "decided by the ext-authz provider: its allow reaches the application, its deny is HTTP 403 (TCP: the connection is closed)"
            }
            Outcome::Deny => "HTTP 403 `RBAC: access denied` (TCP: connection closed without data)",
            Outcome::CustomDeny => {
                "HTTP 403 `RBAC: access denied` from the CUSTOM policy failing closed (TCP: connection closed without data)"
            }
            Outcome::Unauthenticated => "HTTP 401 `Jwt verification fails`",
            Outcome::Reset => {
                "`connection reset by peer` (curl exit 56); server proxy logs `NR filter_chain_not_found`"
            }
            Outcome::UpstreamFailure => {
                "HTTP 503 from the client's own sidecar: `upstream connect error or disconnect/reset before headers` (TCP: that sidecar resets the connection)"
            }
            Outcome::TlsFailure => "TLS handshake failure in the client application (curl exit 35)",
            Outcome::Blocked => "connection timeout: a NetworkPolicy drops the packets",
        }
    }

    /// What the client observes when it speaks `chain` to its first hop (its own sidecar's
    /// HTTP connection manager or TCP proxy, or the server side when it has no sidecar). On
    /// TCP there is no HTTP status: a failure is a reset or a closed connection, never a 503.
    pub fn symptom_on(self, chain: Chain) -> &'static str {
        match (self, chain) {
            (_, Chain::Http) | (Outcome::Allow | Outcome::Unauthenticated, _) => self.symptom(),
            (Outcome::ProviderDecides, Chain::Tcp) => {
                "decided by the ext-authz (gRPC) provider: its allow lets the bytes through, its deny closes the connection"
            }
            (Outcome::Deny, Chain::Tcp) => {
                "the connection opens, then is closed without data (RBAC on the TCP filter chain)"
            }
            (Outcome::CustomDeny, Chain::Tcp) => {
                "the connection opens, then is closed without data (the CUSTOM policy fails closed on the TCP filter chain)"
            }
            (Outcome::Reset, Chain::Tcp) => {
                "`connection reset by peer` (with a client sidecar, its TCP proxy passes the server's reset on: no HTTP 503 on TCP); server proxy logs `NR filter_chain_not_found`"
            }
            (Outcome::UpstreamFailure, Chain::Tcp) => {
                "`connection reset by peer` from the client's own sidecar: its TCP proxy cannot connect upstream (no HTTP 503 on TCP)"
            }
            (Outcome::TlsFailure | Outcome::Blocked, Chain::Tcp) => self.symptom(),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the bytes travelled between the two sides, when a connection was established.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Mtls,
    Plaintext,
}

/// Who opens the connection.
#[derive(Clone, Copy, Debug)]
pub enum Caller<'a> {
    /// A workload of the inventory (a real or synthesised pod).
    Workload(&'a Workload),
    /// Outside the cluster or the mesh: no identity.
    External,
    /// The Kubernetes API server calling a webhook or aggregated API: no sidecar, its own TLS.
    KubeApiserver,
    /// Kubelet probes (rewritten by the injector, so they bypass mTLS).
    Kubelet,
}

/// Attributes of the request beyond the caller and target.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RequestSpec {
    /// `Some(Http)`/`Some(Tcp)` to force the protocol; `None`: from the port (HTTP on
    /// auto-detected ports).
    pub protocol: Option<RequestProtocol>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub jwt: Option<Jwt>,
    /// The client application speaks TLS itself (always true for kube-apiserver).
    pub app_tls: bool,
    /// A synthetic identity for policy questions: the caller is treated as a mesh client with
    /// this principal (`<td>/ns/<ns>/sa/<sa>`).
    pub source_principal: Option<String>,
    /// A synthetic caller namespace (principal `<td>/ns/<ns>/sa/default` when no principal).
    pub source_namespace: Option<String>,
    pub source_ip: Option<IpAddr>,
    /// The client only opens a TCP connection and closes it without sending anything (`nc
    /// -z`, a TCP readiness check): [`Verdict::probe`] says what it observes. The rest of the
    /// verdict is still the request described above, sent on that connection.
    pub connect_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestProtocol {
    Http,
    Tcp,
}

/// Where the connection goes.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// A Service port (`Service.spec.ports[].port`).
    Service { service: &'a Service, port: u16 },
    /// A pod IP and container port.
    Pod { workload: &'a Workload, port: u16 },
}

/// What a connect-only client (`nc -z`) observes: whether its TCP handshake completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeOutcome {
    /// The handshake completes: the probe succeeds, whatever happens to data sent later.
    Connected,
    /// Nothing answers: a NetworkPolicy drops the packets and the probe times out.
    TimedOut,
}

impl ProbeOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeOutcome::Connected => "connected",
            ProbeOutcome::TimedOut => "timed-out",
        }
    }
}

/// Who completes the TCP handshake a connect-only client sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeAcceptor {
    /// The client's own sidecar: iptables sends every outbound connection to it, and it
    /// accepts before it even tries the server.
    ClientSidecar,
    /// The client's ztunnel (ambient), the same way.
    ClientZtunnel,
    /// The server's sidecar: its inbound listener accepts before choosing a filter chain
    /// (which needs the first bytes).
    ServerSidecar,
    /// The server's ztunnel (ambient).
    ServerZtunnel,
    /// The server application itself (no proxy in front of the port).
    Application,
}

impl ProbeAcceptor {
    /// In words: `client sidecar`, `server ztunnel`, `application`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeAcceptor::ClientSidecar => "client sidecar",
            ProbeAcceptor::ClientZtunnel => "client ztunnel",
            ProbeAcceptor::ServerSidecar => "server sidecar",
            ProbeAcceptor::ServerZtunnel => "server ztunnel",
            ProbeAcceptor::Application => "application",
        }
    }
}

/// What a connect-only probe observes ([`RequestSpec::connect_only`]), separately from what
/// the request on that connection would get.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectProbe {
    pub result: ProbeOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_by: Option<ProbeAcceptor>,
    /// Why, in one sentence.
    pub why: String,
}

/// The verdict for one endpoint of the target.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointVerdict {
    pub endpoint: String,
    pub target_port: u16,
    pub outcome: Outcome,
    pub transport: Option<Transport>,
    /// With [`Outcome::ProviderDecides`]: the ext-authz provider whose answer decides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ConnectProbe>,
}

/// What to change so a connection works: a typed fact, and core's wording of it. Callers that
/// know more about the workloads (the KFP layer) word it their own way by its kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fix {
    pub kind: FixKind,
    pub text: String,
}

impl std::fmt::Display for Fix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The cause a [`Fix`] addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixKind {
    /// The server terminates TLS on a port the client sidecar treats as HTTP (D7).
    DeclarePortTls,
    /// The caller can never have a mesh identity (kube-apiserver, kubelet, outside callers):
    /// a port-level exception.
    ExemptPort,
    /// The client has no sidecar (`opted_out`: it carries `sidecar.istio.io/inject: "false"`).
    ClientWithoutSidecar { opted_out: bool },
    /// The client's TLS settings (DestinationRule, Sidecar egress, PassthroughCluster) do not
    /// match what the server accepts.
    ClientTls,
    /// An AuthorizationPolicy decides.
    Authorization,
    /// A RequestAuthentication rejects the token.
    Authentication,
    /// A NetworkPolicy drops the traffic.
    NetworkPolicy,
    /// None of the above: see the explanation.
    Other,
}

/// The verdict for a connection: outcome, transport and the explanation.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub transport: Option<Transport>,
    /// With [`Outcome::ProviderDecides`]: the ext-authz provider (`meshConfig.extensionProviders`
    /// name) whose answer decides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// What the client observes, for the protocol it speaks to its first hop
    /// ([`Outcome::symptom_on`]).
    pub symptom: &'static str,
    /// For a connect-only request: what the probe observes (the worst endpoint's). The
    /// outcome above is still what the request would get on that connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ConnectProbe>,
    pub explanation: Vec<Step>,
    /// What to change so the connection works (absent when it is allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
    /// One entry per backing workload when the target is a Service.
    pub endpoints: Vec<EndpointVerdict>,
}

/// A question the inventory cannot answer as asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("no workload {namespace}/{name} in the input; workloads in {namespace}: {known}")]
    UnknownWorkload {
        namespace: String,
        name: String,
        known: String,
    },
    #[error("no Service {namespace}/{name} in the input; Services in {namespace}: {known}")]
    UnknownService {
        namespace: String,
        name: String,
        known: String,
    },
    #[error("{what} has no port {port}; its ports: {known}")]
    UnknownPort {
        what: String,
        port: u16,
        known: String,
    },
    #[error(
        "Service {namespace}/{name} selects no workload in the input; add the manifests of its pods, or ask about a pod with --to-pod"
    )]
    NoEndpoints { namespace: String, name: String },
}

fn listing(mut names: Vec<String>) -> String {
    names.sort();
    names.dedup();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// Find a workload by namespace and name, or explain what exists.
pub fn resolve_workload<'a>(
    inv: &'a Inventory,
    namespace: &str,
    name: &str,
) -> Result<&'a Workload, QueryError> {
    inv.workload(namespace, name)
        .ok_or_else(|| QueryError::UnknownWorkload {
            namespace: namespace.to_string(),
            name: name.to_string(),
            known: listing(
                inv.workloads_in(namespace)
                    .map(|w| crate::text!("{} ({})", w.name, w.kind))
                    .collect(),
            ),
        })
}

/// Find a Service by namespace and name, or explain what exists.
pub fn resolve_service<'a>(
    inv: &'a Inventory,
    namespace: &str,
    name: &str,
) -> Result<&'a Service, QueryError> {
    inv.service(namespace, name)
        .ok_or_else(|| QueryError::UnknownService {
            namespace: namespace.to_string(),
            name: name.to_string(),
            known: listing(
                inv.services
                    .keys()
                    .filter(|(ns, _)| ns == namespace)
                    .map(|(_, n)| n.clone())
                    .collect(),
            ),
        })
}

/// The SPIFFE principal (without `spiffe://`) of a workload under the mesh trust domain.
pub fn principal_of(inv: &Inventory, w: &Workload) -> String {
    crate::text!(
        "{}/ns/{}/sa/{}",
        inv.mesh.trust_domain,
        w.namespace,
        w.service_account()
    )
}

/// What the client puts on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    /// Istio mTLS with an identity.
    IstioMtls,
    /// Plaintext bytes of the application.
    Plain,
    /// TLS that is not Istio's (the application's own, or a DR SIMPLE/MUTUAL origination).
    OtherTls,
}

/// The side that opened the connection, as the mesh sees it.
struct Client<'a> {
    workload: Option<&'a Workload>,
    data_plane: DataPlane,
    principal: Option<String>,
    ip: Option<IpAddr>,
    /// The client's own sidecar originates the connection (so failures are its 503s).
    has_sidecar: bool,
    /// Kubelet probes, which the injector rewrites to bypass the sidecar's mTLS.
    kubelet: bool,
}

/// Evaluate one connection.
pub fn evaluate(
    inv: &Inventory,
    caller: Caller<'_>,
    target: Target<'_>,
    request: &RequestSpec,
) -> Result<Verdict, QueryError> {
    // A flow's explanation has a few dozen steps: room made once, not grown step by step.
    let mut steps = Vec::with_capacity(32);
    let client = describe_client(inv, caller, request, &mut steps);

    let (endpoints, port_protocol, destination): (Vec<(&Workload, u16)>, PortProtocol, _) =
        match target {
            Target::Service { service, port } => {
                let Some(sp) = service
                    .spec
                    .ports
                    .iter()
                    .find(|p| p.port == i64::from(port))
                else {
                    return Err(QueryError::UnknownPort {
                        what: crate::text!("Service {}/{}", service.namespace(), service.name()),
                        port,
                        known: listing(
                            service
                                .spec
                                .ports
                                .iter()
                                .map(|p| match &p.name {
                                    Some(n) => crate::text!("{} ({n})", p.port),
                                    None => p.port.to_string(),
                                })
                                .collect(),
                        ),
                    });
                };
                let backends = inv.service_endpoints(service);
                if backends.is_empty() {
                    return Err(QueryError::NoEndpoints {
                        namespace: service.namespace().to_string(),
                        name: service.name().to_string(),
                    });
                }
                let protocol = service_port_protocol(sp);
                steps.push(
                    crate::step!(
                        "D7",
                        "Service {}/{} port {}{} is treated as {} by Istio",
                        service.namespace(),
                        service.name(),
                        port,
                        sp.name
                            .as_deref()
                            .map(|n| crate::text!(" (name `{n}`)"))
                            .unwrap_or_default(),
                        match protocol {
                            PortProtocol::Http => "HTTP",
                            PortProtocol::Tcp => "TCP (opaque)",
                            PortProtocol::Auto => "auto-detected (HTTP is sniffed)",
                        }
                    )
                    .by(service.cite()),
                );
                let mut eps = Vec::new();
                for b in backends {
                    match b.target_port(sp) {
                        Some(tp) => eps.push((b, tp)),
                        None => steps.push(
                            crate::step!("C5", "targetPort of port {} does not resolve on {} (no container port of that name): that endpoint is skipped",
                                    port,
                                    b.named())
                            .by(b.cite()),
                        ),
                    }
                }
                if eps.is_empty() {
                    return Err(QueryError::NoEndpoints {
                        namespace: service.namespace().to_string(),
                        name: service.name().to_string(),
                    });
                }
                (
                    eps,
                    protocol,
                    Destination::Service {
                        service,
                        service_port: port,
                    },
                )
            }
            Target::Pod { workload, port } => {
                steps.push(crate::step!("C5", "direct connection to a pod IP of {} on container port {port}: the port is auto-detected",
                        workload.named()));
                (
                    vec![(workload, port)],
                    PortProtocol::Auto,
                    Destination::PodIp,
                )
            }
        };

    let multi = endpoints.len() > 1;
    let mut results = Vec::new();
    let mut symptoms = Vec::new();
    let mut fix = None;
    for (endpoint, tp) in &endpoints {
        let mut ep_steps = Vec::with_capacity(24);
        let reached = evaluate_endpoint(
            inv,
            &client,
            endpoint,
            *tp,
            port_protocol,
            destination,
            request,
            &mut ep_steps,
        );
        if multi {
            steps.push(crate::step!(
                "H",
                "endpoint {} (port {tp}):",
                endpoint.named()
            ));
        }
        // Only a connection that fails has a fix (and needs the waypoint's identity for it).
        if fix.is_none() && !matches!(reached.outcome, Outcome::Allow | Outcome::ProviderDecides) {
            let waypoint = match target {
                Target::Service { service, .. } => {
                    waypoint::service_waypoint(inv, service).map(|w| w.principal(inv))
                }
                Target::Pod { .. } => None,
            };
            fix = suggest_fix(&client, endpoint, *tp, reached.outcome, &ep_steps, waypoint);
        }
        symptoms.push(endpoint_symptom(
            reached.outcome,
            &ep_steps,
            reached.first_hop,
        ));
        steps.extend(ep_steps);
        results.push(EndpointVerdict {
            endpoint: endpoint.named().to_string(),
            target_port: *tp,
            outcome: reached.outcome,
            transport: reached.transport,
            provider: reached.provider,
            probe: request
                .connect_only
                .then(|| connect_probe(inv, &client, endpoint, *tp)),
        });
    }
    // The worst endpoint decides: a pipeline that fails on one replica fails.
    let worst = results
        .iter()
        .zip(&symptoms)
        .max_by_key(|(r, _)| (r.outcome != Outcome::Allow, r.outcome))
        .map(|(r, s)| (r.clone(), *s));
    let (outcome, transport, provider, symptom) = match worst {
        Some((w, s)) => (w.outcome, w.transport, w.provider, s),
        None => (Outcome::Allow, None, None, Outcome::Allow.symptom()),
    };
    if multi && results.iter().any(|r| r.outcome != outcome) {
        steps.push(Step::new(
            "H",
            "the endpoints disagree; the verdict is the worst endpoint's",
        ));
    }
    // A probe that some endpoint does not answer fails some of the time: the worst decides.
    let probe = results
        .iter()
        .filter_map(|r| r.probe.clone())
        .max_by_key(|p| p.result);
    steps.push(crate::step!("H", "outcome: {outcome} ({symptom})"));
    if let Some(p) = &probe {
        steps.push(crate::step!(
            "H",
            "a connect-only probe (`nc -z`) on this connection: {} ({})",
            p.result.as_str(),
            p.why
        ));
    }
    Ok(Verdict {
        outcome,
        transport,
        provider,
        symptom,
        probe,
        explanation: steps,
        fix,
        endpoints: results,
    })
}

/// What a connect-only client observes: who completes its TCP handshake, if anyone.
///
/// A client sidecar (or the client's ztunnel) accepts every outbound connection locally
/// before it contacts the server (iptables redirects it to the proxy's listener; Envoy's TCP
/// proxy connects upstream only after accepting), so such a probe connects whatever the server
/// side or a NetworkPolicy would do with data. Without one, the server side's own listener
/// answers: its sidecar or ztunnel accept before any filter chain or policy is chosen (those
/// need the first bytes), else the application. Only a NetworkPolicy drop stops the handshake.
/// The client's sidecar is assumed to be running (a native sidecar, or a main container).
fn connect_probe(
    inv: &Inventory,
    client: &Client<'_>,
    endpoint: &Workload,
    port: u16,
) -> ConnectProbe {
    let probe = |result, by, why: &str| ConnectProbe {
        result,
        accepted_by: by,
        why: why.to_string(),
    };
    if client.has_sidecar {
        return probe(
            ProbeOutcome::Connected,
            Some(ProbeAcceptor::ClientSidecar),
            "the client's own sidecar accepts the connection before it contacts the server, so the probe succeeds whatever the server would decide",
        );
    }
    if client.data_plane == DataPlane::Ambient {
        return probe(
            ProbeOutcome::Connected,
            Some(ProbeAcceptor::ClientZtunnel),
            "the client's ztunnel accepts the connection before it contacts the server, so the probe succeeds whatever the server would decide",
        );
    }
    if inv.has_network_policies() && !client.kubelet {
        let peer = match client.workload {
            Some(w) => NetPeer::Pod(w),
            None => NetPeer::External(client.ip),
        };
        if !netpol::allows(inv, peer, endpoint, port).value {
            return probe(
                ProbeOutcome::TimedOut,
                None,
                "a NetworkPolicy drops the packets: the handshake never completes",
            );
        }
    }
    match membership::data_plane(inv, endpoint).value {
        DataPlane::Sidecar if membership::intercepts_inbound(endpoint, port).value => probe(
            ProbeOutcome::Connected,
            Some(ProbeAcceptor::ServerSidecar),
            "the server's sidecar accepts the connection before it chooses a filter chain (that needs the first bytes), so the probe succeeds even where data would be reset or denied",
        ),
        DataPlane::Ambient => probe(
            ProbeOutcome::Connected,
            Some(ProbeAcceptor::ServerZtunnel),
            "the server's ztunnel accepts the connection before it applies policy to data",
        ),
        _ => probe(
            ProbeOutcome::Connected,
            Some(ProbeAcceptor::Application),
            "no proxy in front of the port: the application accepts the connection (assuming it listens)",
        ),
    }
}

/// What one endpoint does with the connection.
struct Reached {
    outcome: Outcome,
    transport: Option<Transport>,
    /// The ext-authz provider when the outcome is [`Outcome::ProviderDecides`].
    provider: Option<String>,
    /// The chain the client application speaks to its first hop (its own sidecar's listener,
    /// or the server side when it has none): whether a failure can be an HTTP status at all.
    first_hop: Chain,
}

/// How a client sidecar forwards the connection: an HTTP connection manager (a failure
/// upstream is its own HTTP 503) or a TCP proxy (a failure upstream resets the application's
/// connection). A Service port's protocol (D7) decides, sniffing on auto-detected ports. A pod
/// IP (C5) is not a Service address: it lands in the `0.0.0.0:<port>` HTTP listener when some
/// Service declares that port number as HTTP (istiod binds HTTP listeners to the wildcard and
/// routes unknown hosts to PassthroughCluster), else in the virtual outbound listener's
/// PassthroughFilterChain, a TCP proxy to PassthroughCluster
/// (`istio:pilot/pkg/networking/core/listener.go` `buildSidecarOutboundListeners`,
/// `buildListenerFromEntry`).
pub fn client_proxy_chain(
    inv: &Inventory,
    destination: Destination<'_>,
    port: u16,
    port_protocol: PortProtocol,
    request: &RequestSpec,
) -> Chain {
    let http_request = !request.app_tls && request.protocol != Some(RequestProtocol::Tcp);
    match destination {
        Destination::Service { .. } => match port_protocol {
            PortProtocol::Http if !request.app_tls => Chain::Http,
            PortProtocol::Auto if http_request => Chain::Http,
            _ => Chain::Tcp,
        },
        Destination::PodIp => {
            let http_listener = inv.services.values().any(|svc| {
                svc.spec.ports.iter().any(|sp| {
                    sp.port == i64::from(port) && service_port_protocol(sp) == PortProtocol::Http
                })
            });
            if http_request && http_listener {
                Chain::Http
            } else {
                Chain::Tcp
            }
        }
    }
}

fn describe_client<'a>(
    inv: &Inventory,
    caller: Caller<'a>,
    request: &RequestSpec,
    steps: &mut Vec<Step>,
) -> Client<'a> {
    let synthetic_principal = request.source_principal.clone().or_else(|| {
        request
            .source_namespace
            .as_ref()
            .map(|ns| crate::text!("{}/ns/{ns}/sa/default", inv.mesh.trust_domain))
    });
    match caller {
        Caller::Workload(w) => {
            let dp = membership::data_plane(inv, w);
            steps.push(crate::step!(
                "H",
                "client {} runs as service account {}",
                w.named(),
                w.service_account()
            ));
            crate::explain::extend(steps, &dp.steps);
            let principal = match dp.value {
                DataPlane::Plain => None,
                _ => Some(
                    request
                        .source_principal
                        .clone()
                        .unwrap_or_else(|| principal_of(inv, w)),
                ),
            };
            Client {
                workload: Some(w),
                data_plane: dp.value,
                principal,
                ip: request.source_ip,
                has_sidecar: dp.value == DataPlane::Sidecar,
                kubelet: false,
            }
        }
        Caller::External | Caller::Kubelet | Caller::KubeApiserver
            if synthetic_principal.is_some() && !matches!(caller, Caller::KubeApiserver) =>
        {
            let p = synthetic_principal.unwrap_or_default();
            steps.push(crate::step!(
                "H",
                "synthetic mesh client with identity {p} (its sidecar sends Istio mTLS)"
            ));
            Client {
                workload: None,
                data_plane: DataPlane::Sidecar,
                principal: Some(p),
                ip: request.source_ip,
                has_sidecar: true,
                kubelet: false,
            }
        }
        Caller::External => {
            steps.push(Step::new(
                "H",
                "client is outside the mesh: no sidecar, no identity, plaintext (or its own TLS)",
            ));
            Client {
                workload: None,
                data_plane: DataPlane::Plain,
                principal: None,
                ip: request.source_ip,
                has_sidecar: false,
                kubelet: false,
            }
        }
        Caller::KubeApiserver => {
            steps.push(Step::new(
                "C6",
                "client is kube-apiserver: never in the mesh, no Istio identity, it speaks its own TLS (HTTPS) to webhooks",
            ));
            Client {
                workload: None,
                data_plane: DataPlane::Plain,
                principal: None,
                ip: request.source_ip,
                has_sidecar: false,
                kubelet: false,
            }
        }
        Caller::Kubelet => {
            steps.push(Step::new(
                "B7",
                "client is kubelet: probes are rewritten by the injector to the sidecar's agent port, so they bypass mTLS and authorization",
            ));
            Client {
                workload: None,
                data_plane: DataPlane::Plain,
                principal: None,
                ip: request.source_ip,
                has_sidecar: false,
                kubelet: true,
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn evaluate_endpoint(
    inv: &Inventory,
    client: &Client<'_>,
    endpoint: &Workload,
    port: u16,
    port_protocol: PortProtocol,
    destination: Destination<'_>,
    request: &RequestSpec,
    steps: &mut Vec<Step>,
) -> Reached {
    let first_hop = if client.has_sidecar {
        client_proxy_chain(inv, destination, port, port_protocol, request)
    } else {
        request_chain(
            port_protocol,
            request,
            if request.app_tls {
                Wire::OtherTls
            } else {
                Wire::Plain
            },
        )
    };
    let done = |outcome, transport| Reached {
        outcome,
        transport,
        provider: None,
        first_hop,
    };
    let authorized =
        |(outcome, transport, provider): (Outcome, Option<Transport>, Option<String>)| Reached {
            outcome,
            transport,
            provider,
            first_hop,
        };
    // 1. NetworkPolicy: the first gate (kubelet probes come from the node, which
    // NetworkPolicy does not restrict).
    if inv.has_network_policies() && client.kubelet {
        steps.push(Step::new(
            "NP",
            "kubelet probes come from the node: NetworkPolicies do not apply to them",
        ));
    } else if inv.has_network_policies() {
        let peer = match client.workload {
            Some(w) => NetPeer::Pod(w),
            None => NetPeer::External(client.ip),
        };
        let allowed = match hbone_hops(inv, client, endpoint, destination, steps) {
            // Mesh traffic to an ambient pod travels as HBONE: NetworkPolicy sees port 15008,
            // from the client or, behind a waypoint, on both hops.
            Some(Some(wp)) => {
                let first = netpol::allows(inv, peer, &wp, waypoint::HBONE_PORT);
                steps.extend(first.steps);
                first.value && {
                    let second =
                        netpol::allows(inv, NetPeer::Pod(&wp), endpoint, waypoint::HBONE_PORT);
                    steps.extend(second.steps);
                    second.value
                }
            }
            Some(None) => {
                let np = netpol::allows(inv, peer, endpoint, waypoint::HBONE_PORT);
                steps.extend(np.steps);
                np.value
            }
            None => {
                let np = netpol::allows(inv, peer, endpoint, port);
                steps.extend(np.steps);
                np.value
            }
        };
        if !allowed {
            return done(Outcome::Blocked, None);
        }
    }

    // 2. The server's data plane.
    let server_dp = membership::data_plane(inv, endpoint);
    steps.push(crate::step!(
        "H",
        "server {} listens on container port {port}",
        endpoint.named()
    ));
    crate::explain::extend(steps, &server_dp.steps);

    // Kubelet probes are rewritten by the injector to the sidecar agent (B7).
    if client.kubelet {
        return done(Outcome::Allow, Some(Transport::Plaintext));
    }

    // 3. What the client sends.
    let wire = if request.app_tls
        && client.has_sidecar
        && port_protocol == PortProtocol::Http
        && matches!(destination, Destination::Service { .. })
    {
        // The application's own TLS into a client sidecar that treats the port as HTTP (D7).
        // istiod binds an HTTP port's outbound listener to `0.0.0.0:<port>` and lets its HTTP
        // filter chain take only plaintext HTTP (an HTTP inspector; `transport_protocol:
        // raw_buffer` and ALPN `http/1.1`/`h2c`), with the PassthroughFilterChain as the
        // listener's default chain (`istio:pilot/pkg/networking/core/listener.go`,
        // `buildSidecarOutboundListener`, `buildListenerFromEntry`). A TLS handshake is no
        // HTTP, so it takes the TCP proxy to PassthroughCluster, which has no TLS: the
        // application's TLS leaves as it was sent, without Istio mTLS.
        let blackhole = client
            .workload
            .and_then(|w| client_tls::applicable_sidecar(inv, w))
            .filter(|sc| {
                sc.spec
                    .outbound_traffic_policy
                    .as_ref()
                    .and_then(|o| o.mode.as_deref())
                    .is_some_and(|m| m.eq_ignore_ascii_case("REGISTRY_ONLY"))
            });
        steps.push(Step::new(
            "D7",
            crate::text!(
                "the client application speaks TLS itself, but its sidecar treats the port as HTTP (port name or appProtocol): the outbound HTTP filter chain takes only plaintext HTTP, so the TLS handshake falls through to the listener's PassthroughFilterChain, a TCP proxy to {}, without Istio mTLS (declare the port `tls`/`https` or `appProtocol: tls` so the TLS passes inside Istio mTLS)",
                if blackhole.is_some() {
                    "BlackHoleCluster (the client's Sidecar is REGISTRY_ONLY), which closes it"
                } else {
                    "PassthroughCluster, which sends it on as it is"
                }
            ),
        ));
        if blackhole.is_some() {
            return done(Outcome::Reset, None);
        }
        Wire::OtherTls
    } else {
        let wire = client_wire(
            inv,
            client,
            endpoint,
            port,
            destination,
            request,
            server_dp.value,
            steps,
        );
        match wire {
            Ok(w) => w,
            Err(outcome) => return done(outcome, None),
        }
    };

    // 4. What the server side accepts.
    let chain = request_chain(port_protocol, request, wire);
    match server_dp.value {
        DataPlane::Plain => {
            steps.push(Step::new(
                "C4",
                "the server has no sidecar: it accepts whatever the application understands, with no mTLS and no authorization",
            ));
            match wire {
                Wire::IstioMtls => {
                    steps.push(Step::new(
                        "C4",
                        "the client sidecar sends Istio mTLS to a server without a sidecar: the handshake fails",
                    ));
                    done(Outcome::UpstreamFailure, None)
                }
                _ => done(Outcome::Allow, Some(Transport::Plaintext)),
            }
        }
        DataPlane::Sidecar => {
            let intercept = membership::intercepts_inbound(endpoint, port);
            steps.extend(intercept.steps);
            if !intercept.value {
                return match wire {
                    Wire::IstioMtls => {
                        steps.push(Step::new(
                            "B7",
                            "the port bypasses the server sidecar, but the client sidecar still sends Istio mTLS to it (auto mTLS ignores excluded ports): the application cannot read it",
                        ));
                        done(Outcome::UpstreamFailure, None)
                    }
                    _ => done(Outcome::Allow, Some(Transport::Plaintext)),
                };
            }
            let mode = peer_authn::effective_mode(inv, endpoint, port);
            steps.extend(mode.steps);
            let relay = client.has_sidecar && first_hop == Chain::Tcp;
            let transport =
                match sidecar_transport(mode.value, wire, port_protocol, client, relay, steps) {
                    Ok(t) => t,
                    Err(o) => return done(o, None),
                };
            authorized(authorize_at(
                inv,
                client,
                endpoint,
                Enforcer::Sidecar,
                port,
                chain,
                request,
                transport,
                steps,
            ))
        }
        DataPlane::Ambient => {
            let mode = peer_authn::effective_mode_ambient(inv, endpoint, port);
            steps.extend(mode.steps);
            let transport = if matches!(wire, Wire::IstioMtls) {
                Transport::Mtls
            } else {
                if mode.value == MtlsMode::Strict {
                    steps.push(Step::new("A6.2", ZTUNNEL_STRICT_STEP));
                    return done(Outcome::Reset, None);
                }
                Transport::Plaintext
            };
            // A waypoint (L7) in front of the service, then the destination ztunnel (L4). Only
            // mesh clients are sent to it: a plaintext client reaches the pod's ztunnel
            // directly (ztunnel's inbound passthrough has no waypoint).
            let waypoint = match destination {
                Destination::Service { service, .. } => {
                    waypoint_of(inv, service).map(|w| (service, w))
                }
                Destination::PodIp => None,
            };
            if let Some((service, w)) = &waypoint
                && wire != Wire::IstioMtls
            {
                steps.push(crate::step!("A6.4", "Service {}/{} uses waypoint {}/{}, but a client outside the mesh does not pass it: ztunnel takes the plaintext connection to the pod directly",
                        service.namespace(),
                        service.name(),
                        w.namespace,
                        w.name));
            }
            if let Some((service, waypoint)) = waypoint.filter(|_| wire == Wire::IstioMtls) {
                steps.push(crate::step!("A6.4", "traffic to Service {}/{} goes through waypoint {}/{}; it enforces targetRefs policies with the client's identity",
                            service.namespace(),
                            service.name(),
                            waypoint.namespace,
                            waypoint.name));
                let (o, t, provider) = authorize_at(
                    inv,
                    client,
                    endpoint,
                    Enforcer::Waypoint { service },
                    port,
                    chain,
                    request,
                    transport,
                    steps,
                );
                if !matches!(o, Outcome::Allow | Outcome::ProviderDecides) {
                    return done(o, t);
                }
                let waypoint_client = Client {
                    workload: None,
                    data_plane: DataPlane::Ambient,
                    principal: Some(waypoint.principal(inv)),
                    ip: None,
                    // The waypoint is an Envoy: it opens the upstream connection, so a
                    // refusal there is its own HTTP 503.
                    has_sidecar: true,
                    kubelet: false,
                };
                steps.push(Step::new(
                    "A6.4",
                    "the destination ztunnel sees the waypoint's identity as the source",
                ));
                let (zo, zt, _) = authorize_at(
                    inv,
                    &waypoint_client,
                    endpoint,
                    Enforcer::Ztunnel,
                    port,
                    Chain::Tcp,
                    request,
                    Transport::Mtls,
                    steps,
                );
                // The waypoint's ext-authz provider still decides what ztunnel lets through.
                return match (zo, o) {
                    (Outcome::Allow, Outcome::ProviderDecides) => {
                        authorized((Outcome::ProviderDecides, zt, provider))
                    }
                    _ => done(zo, zt),
                };
            }
            authorized(authorize_at(
                inv,
                client,
                endpoint,
                Enforcer::Ztunnel,
                port,
                Chain::Tcp,
                request,
                transport,
                steps,
            ))
        }
    }
}

/// A6.1, A6.4: whether the connection travels as HBONE into an ambient pod, as NetworkPolicy
/// sees it: `None` when not (plaintext, sidecar-to-sidecar); `Some(None)` straight from the
/// client; `Some(Some(waypoint pods))` through a waypoint. An ambient client sends HBONE to
/// ambient and sidecar servers alike; other mesh clients do so toward ambient servers.
fn hbone_hops(
    inv: &Inventory,
    client: &Client<'_>,
    endpoint: &Workload,
    destination: Destination<'_>,
    steps: &mut Vec<Step>,
) -> Option<Option<Workload>> {
    let server = membership::data_plane(inv, endpoint).value;
    let hbone = matches!(
        (client.data_plane, server),
        (DataPlane::Ambient, DataPlane::Ambient | DataPlane::Sidecar)
            | (DataPlane::Sidecar, DataPlane::Ambient)
    );
    if !hbone || client.kubelet {
        return None;
    }
    let via = match destination {
        Destination::Service { service, .. } if server == DataPlane::Ambient => {
            waypoint_of(inv, service)
        }
        _ => None,
    };
    match via {
        Some(w) => {
            steps.push(crate::step!("NP", "mesh traffic goes as HBONE through waypoint {}/{}: NetworkPolicies see port {} from the client to the waypoint, then from the waypoint to {}",
                    w.namespace,
                    w.name,
                    waypoint::HBONE_PORT,
                    endpoint.named()));
            Some(Some(waypoint::waypoint_workload(inv, &w)))
        }
        None => {
            steps.push(crate::step!("NP", "mesh traffic to {} arrives as HBONE: NetworkPolicies see port {} (not the target port)",
                    endpoint.named(),
                    waypoint::HBONE_PORT));
            Some(None)
        }
    }
}

/// The waypoint a Service uses: `istio.io/use-waypoint` on the Service, else its namespace
/// ([`waypoint::service_waypoint`]).
fn waypoint_of(inv: &Inventory, service: &Service) -> Option<waypoint::ServiceWaypoint> {
    waypoint::service_waypoint(inv, service)
}

#[allow(clippy::too_many_arguments)]
fn client_wire(
    inv: &Inventory,
    client: &Client<'_>,
    endpoint: &Workload,
    port: u16,
    destination: Destination<'_>,
    request: &RequestSpec,
    server_dp: DataPlane,
    steps: &mut Vec<Step>,
) -> Result<Wire, Outcome> {
    let app = if request.app_tls {
        Wire::OtherTls
    } else {
        Wire::Plain
    };
    match (client.data_plane, client.workload) {
        (DataPlane::Sidecar, Some(w)) => {
            let tls = client_tls::client_tls(inv, w, destination, endpoint, port);
            steps.extend(tls.steps);
            match tls.value {
                ClientTls::IstioMutual => Ok(Wire::IstioMtls),
                ClientTls::Plaintext => Ok(app),
                ClientTls::Simple | ClientTls::Mutual => Ok(Wire::OtherTls),
                ClientTls::BlackHole => Err(Outcome::UpstreamFailure),
            }
        }
        (DataPlane::Sidecar, None) => {
            // A synthetic identity: assume auto mTLS toward sidecar and ambient servers.
            let d = synthetic_tls(inv, endpoint, port, server_dp);
            steps.extend(d.steps);
            Ok(d.value)
        }
        (DataPlane::Ambient, _) => match server_dp {
            DataPlane::Ambient => {
                steps.push(Step::new(
                    "A6.1",
                    "ambient to ambient: ztunnels carry the connection over HBONE (mTLS with the client's identity)",
                ));
                Ok(Wire::IstioMtls)
            }
            DataPlane::Sidecar => {
                steps.push(Step::new(
                    "A6.6",
                    "ambient client to a sidecar server: treated as mTLS with the client's identity (HBONE interop; not verified by kfp-mesh)",
                ));
                Ok(Wire::IstioMtls)
            }
            DataPlane::Plain => {
                steps.push(Step::new(
                    "C4",
                    "ambient client to a server outside the mesh: ztunnel sends plaintext",
                ));
                Ok(app)
            }
        },
        (DataPlane::Plain, _) => {
            steps.push(Step::new(
                "C4",
                if request.app_tls {
                    "the client has no sidecar: it sends its own TLS, which is not Istio mTLS"
                } else {
                    "the client has no sidecar: it sends plaintext"
                },
            ));
            Ok(app)
        }
    }
}

fn synthetic_tls(
    inv: &Inventory,
    endpoint: &Workload,
    port: u16,
    server_dp: DataPlane,
) -> Decision<Wire> {
    match server_dp {
        DataPlane::Plain => Decision::new(
            Wire::Plain,
            vec![Step::new(
                "C3",
                "auto mTLS: the server has no sidecar, so the client sidecar sends plaintext",
            )],
        ),
        DataPlane::Ambient => Decision::new(
            Wire::IstioMtls,
            vec![Step::new(
                "A6.6",
                "toward an ambient server the client is treated as sending mTLS",
            )],
        ),
        DataPlane::Sidecar => {
            let mode = peer_authn::effective_mode(inv, endpoint, port);
            let wire =
                if mode.value == MtlsMode::Disable || !membership::advertises_istio_tls(endpoint) {
                    Wire::Plain
                } else {
                    Wire::IstioMtls
                };
            Decision::new(
                wire,
                vec![crate::step!(
                    "C3",
                    "auto mTLS toward the endpoint (effective mode {:?}): the client sidecar sends {}",
                    mode.value,
                    if wire == Wire::IstioMtls {
                        "Istio mTLS"
                    } else {
                        "plaintext"
                    }
                )],
            )
        }
    }
}

/// B5: which inbound filter chain (if any) takes the connection.
fn sidecar_transport(
    mode: MtlsMode,
    wire: Wire,
    protocol: PortProtocol,
    client: &Client<'_>,
    relay: bool,
    steps: &mut Vec<Step>,
) -> Result<Transport, Outcome> {
    match (mode, wire) {
        (MtlsMode::Strict | MtlsMode::Permissive, Wire::IstioMtls) => {
            steps.push(crate::step!(
                "B5",
                "{mode:?} accepts Istio mTLS: the connection is mutually authenticated as {}",
                client.principal.as_deref().unwrap_or("?")
            ));
            Ok(Transport::Mtls)
        }
        (MtlsMode::Strict, Wire::Plain) => {
            steps.push(Step::new(
                "B5",
                "STRICT has no plaintext filter chain: Envoy finds no filter chain (`filter_chain_not_found`) and resets the connection",
            ));
            Err(failure(client, Outcome::Reset, relay, steps))
        }
        (MtlsMode::Strict, Wire::OtherTls) => {
            steps.push(Step::new(
                "B5",
                "STRICT: the TLS chain matches, the server sidecar terminates TLS and demands an Istio client certificate the client cannot present: the handshake fails",
            ));
            Err(failure(client, Outcome::TlsFailure, relay, steps))
        }
        (MtlsMode::Permissive, Wire::Plain) => {
            steps.push(Step::new(
                "B5",
                "PERMISSIVE accepts plaintext: the connection has no peer identity",
            ));
            Ok(Transport::Plaintext)
        }
        (MtlsMode::Permissive, Wire::OtherTls) => {
            if protocol == PortProtocol::Http {
                steps.push(Step::new(
                    "B5",
                    "PERMISSIVE on a port declared HTTP has no chain for non-Istio TLS: the connection is reset (name the port `https`/`tcp` or leave it unnamed)",
                ));
                Err(failure(client, Outcome::Reset, relay, steps))
            } else {
                steps.push(Step::new(
                    "B5",
                    "PERMISSIVE passes non-Istio TLS through to the application, which terminates it: no peer identity",
                ));
                Ok(Transport::Plaintext)
            }
        }
        (MtlsMode::Disable, Wire::IstioMtls) => {
            steps.push(Step::new(
                "B5",
                "DISABLE has only plaintext chains: the client sidecar's Istio mTLS finds no chain and fails",
            ));
            Err(failure(client, Outcome::Reset, relay, steps))
        }
        (MtlsMode::Disable, Wire::Plain) => {
            steps.push(Step::new("B5", "DISABLE accepts plaintext"));
            Ok(Transport::Plaintext)
        }
        (MtlsMode::Disable, Wire::OtherTls) => {
            steps.push(Step::new(
                "B5",
                "DISABLE has no chain for TLS traffic: the connection is reset",
            ));
            Err(failure(client, Outcome::Reset, relay, steps))
        }
    }
}

/// How a connection the server side rejects shows: a client sidecar's HTTP connection manager
/// turns it into its own 503 (`upstream-failure`); a client sidecar's TCP proxy (`relay`) has
/// no status to answer with and passes it on as a reset of the application's connection, so
/// the client sees what a client without a sidecar sees: `plain` (a reset, a TLS failure).
fn failure(client: &Client<'_>, plain: Outcome, relay: bool, steps: &mut Vec<Step>) -> Outcome {
    if !client.has_sidecar {
        return plain;
    }
    if relay {
        steps.push(crate::step!("C5", "the client sidecar forwards this connection with a TCP proxy: it has no HTTP status to answer with, so the server side's rejection reaches the application as {} (no HTTP 503 on TCP)",
                if plain == Outcome::TlsFailure {
                    "a failed TLS handshake"
                } else {
                    "a connection reset"
                }));
        return plain;
    }
    steps.push(Step::new(
        "C4",
        "the client sidecar's HTTP connection manager turns the rejected upstream connection into its own HTTP 503",
    ));
    Outcome::UpstreamFailure
}

fn request_chain(protocol: PortProtocol, request: &RequestSpec, wire: Wire) -> Chain {
    if request.app_tls || wire == Wire::OtherTls {
        return Chain::Tcp;
    }
    match (protocol, request.protocol) {
        (PortProtocol::Http, _) => Chain::Http,
        (PortProtocol::Tcp, _) => Chain::Tcp,
        (PortProtocol::Auto, Some(RequestProtocol::Tcp)) => Chain::Tcp,
        (PortProtocol::Auto, _) => Chain::Http,
    }
}

#[allow(clippy::too_many_arguments)]
fn authorize_at(
    inv: &Inventory,
    client: &Client<'_>,
    server: &Workload,
    enforcer: Enforcer<'_>,
    port: u16,
    chain: Chain,
    request: &RequestSpec,
    transport: Transport,
    steps: &mut Vec<Step>,
) -> (Outcome, Option<Transport>, Option<String>) {
    let http = (chain == Chain::Http).then(|| HttpRequest {
        method: request.method.clone().unwrap_or_else(|| "GET".to_string()),
        path: request.path.clone().unwrap_or_else(|| "/".to_string()),
        host: request.host.clone().unwrap_or_default(),
        headers: request
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
    });
    let ctx = RequestContext {
        principal: if transport == Transport::Mtls {
            client.principal.clone()
        } else {
            None
        },
        source_ip: client.ip,
        remote_ip: client.ip,
        destination_ip: None,
        destination_port: port,
        sni: None,
        chain,
        http,
        jwt: request.jwt.clone(),
    };
    let verdict = authz::authorize(inv, server, enforcer, &ctx);
    steps.extend(verdict.steps);
    let ztunnel = matches!(enforcer, Enforcer::Ztunnel);
    let (outcome, provider) = match verdict.value {
        AuthzVerdict::Allow => (Outcome::Allow, None),
        AuthzVerdict::Custom { provider } => (Outcome::ProviderDecides, Some(provider)),
        AuthzVerdict::Deny if ztunnel => {
            let (outcome, step) = ztunnel_denial(client);
            steps.push(Step::new("A6.3", step));
            (outcome, None)
        }
        AuthzVerdict::Deny => (Outcome::Deny, None),
        AuthzVerdict::CustomDeny => (Outcome::CustomDeny, None),
        AuthzVerdict::Unauthenticated => (Outcome::Unauthenticated, None),
    };
    (outcome, Some(transport), provider)
}

/// The step an ambient server's STRICT adds when it refuses a plaintext client (A6.2).
const ZTUNNEL_STRICT_STEP: &str = "ztunnel enforces STRICT as \"deny when the source has no principal\" (istiod's DENY policy `istio-system/istio_converted_static_strict`, or `<namespace>/converted_peer_authentication_<name>` for a workload policy with port exceptions): the plaintext client's connection is closed";
/// The step of a denial at the destination ztunnel, by who opened the connection.
const ZTUNNEL_DENY_STEP: &str = "a denial at ztunnel closes the connection without data: the client sees a reset, never an HTTP 403";
const ZTUNNEL_DENY_SIDECAR_STEP: &str = "ztunnel refuses the connection of the client's sidecar, which turns the failure into its own HTTP 503 (TCP: the connection closes)";
const ZTUNNEL_DENY_WAYPOINT_STEP: &str = "the destination ztunnel refuses the waypoint's connection: the waypoint answers the client with HTTP 503 (TCP: the connection closes)";

/// What the ztunnel logs and the client sees when ztunnel refuses a connection (A6.2, A6.3).
pub const ZTUNNEL_DENIAL_SYMPTOM: &str = "`connection reset by peer` (curl exit 56): the connection closes without data; the destination ztunnel logs `connection closed due to policy rejection: allow policies exist, but none allowed` (no ALLOW rule matches) or `... explicitly denied by: <namespace>/<policy>` (a DENY policy; `istio-system/istio_converted_static_strict` for plaintext under STRICT)";
/// What the client sees when the destination ztunnel refuses the waypoint's connection.
pub const WAYPOINT_UPSTREAM_SYMPTOM: &str = "HTTP 503 from the waypoint: `upstream connect error or disconnect/reset before headers` (TCP: the connection closes); the destination ztunnel logs `connection closed due to policy rejection` with the waypoint's identity as `src.identity`";

/// A6.3: how a denial at the destination ztunnel shows, by who opened the connection: a
/// client without a proxy sees its connection reset; a client sidecar or a waypoint (an
/// Envoy that opened the upstream connection) answers HTTP 503.
fn ztunnel_denial(client: &Client<'_>) -> (Outcome, &'static str) {
    match (client.has_sidecar, client.data_plane) {
        (false, _) => (Outcome::Reset, ZTUNNEL_DENY_STEP),
        (true, DataPlane::Ambient) => (Outcome::UpstreamFailure, ZTUNNEL_DENY_WAYPOINT_STEP),
        (true, _) => (Outcome::UpstreamFailure, ZTUNNEL_DENY_SIDECAR_STEP),
    }
}

/// The symptom of an endpoint's outcome: ztunnel's and the waypoint's own words when they
/// refused the connection (recognised by the step that recorded the refusal), else the
/// outcome's usual symptom.
fn endpoint_symptom(outcome: Outcome, steps: &[Step], first_hop: Chain) -> &'static str {
    match steps.last().map(|s| s.message.as_str()) {
        Some(ZTUNNEL_STRICT_STEP | ZTUNNEL_DENY_STEP) if outcome == Outcome::Reset => {
            ZTUNNEL_DENIAL_SYMPTOM
        }
        Some(ZTUNNEL_DENY_WAYPOINT_STEP) if outcome == Outcome::UpstreamFailure => {
            WAYPOINT_UPSTREAM_SYMPTOM
        }
        _ => outcome.symptom_on(first_hop),
    }
}

/// What to change for a failing connection, from the outcome and the objects that decided it.
fn suggest_fix(
    client: &Client<'_>,
    endpoint: &Workload,
    port: u16,
    outcome: Outcome,
    steps: &[Step],
    waypoint_principal: Option<String>,
) -> Option<Fix> {
    let last_cited = |kind: &str| {
        steps
            .iter()
            .rev()
            .flat_map(|s| s.objects.iter())
            .find(|c| c.object.kind == kind)
            .map(|c| c.to_string())
    };
    let server = endpoint.named();
    let caller = match client.workload {
        Some(w) => w.named().to_string(),
        None => "the caller".to_string(),
    };
    let client_opted_out = client.workload.is_some_and(|w| {
        w.annotation("sidecar.istio.io/inject") == Some("false")
            || w.label("sidecar.istio.io/inject") == Some("false")
    });
    let permissive_port = crate::text!(
        "a PeerAuthentication in {} selecting {server} with `portLevelMtls: {{\"{port}\": {{mode: PERMISSIVE}}}}` (the port quoted: kustomize refuses integer keys), and an AuthorizationPolicy that still names who may call",
        endpoint.namespace
    );
    let last = steps.last().map(|s| s.message.as_str());
    let fix = match outcome {
        Outcome::Allow | Outcome::ProviderDecides => return None,
        // A6.3: the destination ztunnel refused the connection (L4 policies only).
        Outcome::Reset | Outcome::UpstreamFailure
            if matches!(last, Some(ZTUNNEL_DENY_WAYPOINT_STEP)) =>
        {
            let who = waypoint_principal.unwrap_or_default();
            let policy = last_cited("AuthorizationPolicy")
                .map(|ap| crate::text!(" ({ap} decides)"))
                .unwrap_or_default();
            crate::text!(
                "{server} is behind a waypoint, so its ztunnel sees the waypoint's identity {who}: admit that principal in an ALLOW policy selecting {server}{policy}, and keep the callers' rules in the policy with `targetRefs` the waypoint enforces"
            )
        }
        Outcome::Reset | Outcome::UpstreamFailure
            if matches!(last, Some(ZTUNNEL_DENY_STEP | ZTUNNEL_DENY_SIDECAR_STEP)) =>
        {
            let who = client.principal.clone().unwrap_or_else(|| {
                "a plaintext caller (no identity: principal and namespace rules never match it)"
                    .to_string()
            });
            let policy = last_cited("AuthorizationPolicy")
                .map(|ap| crate::text!("{ap} decides at ztunnel, which sees L4 only: "))
                .unwrap_or_default();
            crate::text!(
                "{policy}admit {who} on port {port} of {server} with an ALLOW rule of principals, namespaces or ports (ztunnel omits ALLOW rules that name HTTP attributes: put those in a policy with `targetRefs` to a waypoint), or remove the DENY rule that matches"
            )
        }
        Outcome::Reset
            if matches!(last, Some(ZTUNNEL_STRICT_STEP)) && client.workload.is_some() =>
        {
            crate::text!(
                "{caller} sends plaintext to {server}, which is STRICT under ambient: enroll {caller} in the mesh (label its namespace `istio.io/dataplane-mode: ambient`, or give it a sidecar) and restart it, or exempt port {port} with {permissive_port}"
            )
        }
        // The application's TLS into a client sidecar that treats the port as HTTP (D7).
        Outcome::Reset | Outcome::TlsFailure
            if steps
                .iter()
                .any(|s| s.rule == "D7" && s.message.contains("speaks TLS itself")) =>
        {
            crate::text!(
                "{server} serves TLS itself on port {port}: declare the Service port as TLS (`appProtocol: tls`, or a name starting with `tls`/`https`) so client sidecars pass the application's TLS through inside Istio mTLS"
            )
        }
        Outcome::Reset | Outcome::TlsFailure
            if client.workload.is_none() && client.principal.is_none() =>
        {
            crate::text!(
                "{caller} can never have a mesh identity: exempt port {port} of {server} with {permissive_port}; name the Service port `https` or `tcp` so Istio passes TLS through"
            )
        }
        Outcome::Reset | Outcome::TlsFailure | Outcome::UpstreamFailure
            if client.data_plane == DataPlane::Plain =>
        {
            if client_opted_out {
                crate::text!(
                    "{caller} opts out of injection with `sidecar.istio.io/inject: \"false\"`: remove the opt-out (or set the label `sidecar.istio.io/inject: \"true\"`) and restart it, or exempt the port with {permissive_port}"
                )
            } else {
                crate::text!(
                    "{caller} has no sidecar: label its namespace `istio-injection: enabled` or its pods `sidecar.istio.io/inject: \"true\"` and restart it, or exempt the port with {permissive_port}"
                )
            }
        }
        Outcome::UpstreamFailure => match last_cited("DestinationRule") {
            Some(dr) => crate::text!(
                "{dr} sets client TLS that {server} does not accept on port {port}: remove its `tls` (auto mTLS then chooses correctly) or make it match the server's mode"
            ),
            None => match last_cited("Sidecar") {
                Some(sc) => {
                    crate::text!("{sc} does not list the destination in its egress hosts: add it")
                }
                None => crate::text!(
                    "the client sidecar and {server} disagree on TLS for port {port}: give both sides a sidecar and let auto mTLS decide, or align the PeerAuthentication of {server}"
                ),
            },
        },
        Outcome::Deny | Outcome::CustomDeny => {
            let who = client.principal.clone().unwrap_or_else(|| {
                "a plaintext caller (no identity: principal and namespace rules never match it)"
                    .to_string()
            });
            match last_cited("AuthorizationPolicy") {
                Some(ap) => crate::text!(
                    "{ap} decides: allow {who} on port {port} of {server} with an ALLOW rule naming it, or remove the DENY rule that matches"
                ),
                None => {
                    crate::text!("an AuthorizationPolicy denies {who}: add an ALLOW rule for it")
                }
            }
        }
        Outcome::Unauthenticated => match last_cited("RequestAuthentication") {
            Some(ra) => crate::text!("{ra} rejects the token: send a token its jwtRules accept"),
            None => "send a valid token".to_string(),
        },
        Outcome::Blocked => match last_cited("NetworkPolicy") {
            Some(np) => crate::text!(
                "{np} isolates the pod: add an ingress (or egress) rule that admits {caller} on port {port}"
            ),
            None => {
                crate::text!("a NetworkPolicy drops the traffic: admit {caller} on port {port}")
            }
        },
        Outcome::Reset | Outcome::TlsFailure if client.has_sidecar => {
            match last_cited("DestinationRule") {
                Some(dr) => crate::text!(
                    "{dr} sets client TLS that {server} does not accept on port {port}: remove its `tls` (auto mTLS then chooses correctly) or make it match the server's mode"
                ),
                None if steps
                    .iter()
                    .any(|s| s.message.contains("PassthroughCluster")) =>
                {
                    crate::text!(
                        "{caller} reaches port {port} of {server} through PassthroughCluster, which sends plaintext: call it through a Service that declares the port (the client sidecar then sends Istio mTLS), or exempt the port with {permissive_port}"
                    )
                }
                None => crate::text!(
                    "{server} rejects what {caller}'s sidecar sends on port {port}; see the explanation"
                ),
            }
        }
        Outcome::Reset | Outcome::TlsFailure => {
            crate::text!("{server} rejects what {caller} sends on port {port}; see the explanation")
        }
    };
    let kind = match outcome {
        Outcome::Reset | Outcome::UpstreamFailure
            if matches!(
                last,
                Some(ZTUNNEL_DENY_WAYPOINT_STEP | ZTUNNEL_DENY_STEP | ZTUNNEL_DENY_SIDECAR_STEP)
            ) =>
        {
            FixKind::Authorization
        }
        // Plaintext into STRICT ambient: enrol the caller (ambient's own wording).
        Outcome::Reset
            if matches!(last, Some(ZTUNNEL_STRICT_STEP)) && client.workload.is_some() =>
        {
            FixKind::Other
        }
        Outcome::Reset | Outcome::TlsFailure
            if steps
                .iter()
                .any(|s| s.rule == "D7" && s.message.contains("speaks TLS itself")) =>
        {
            FixKind::DeclarePortTls
        }
        Outcome::Reset | Outcome::TlsFailure
            if client.workload.is_none() && client.principal.is_none() =>
        {
            FixKind::ExemptPort
        }
        Outcome::Reset | Outcome::TlsFailure | Outcome::UpstreamFailure
            if client.data_plane == DataPlane::Plain =>
        {
            FixKind::ClientWithoutSidecar {
                opted_out: client_opted_out,
            }
        }
        Outcome::UpstreamFailure => FixKind::ClientTls,
        Outcome::Deny | Outcome::CustomDeny => FixKind::Authorization,
        Outcome::Unauthenticated => FixKind::Authentication,
        Outcome::Blocked => FixKind::NetworkPolicy,
        Outcome::Reset | Outcome::TlsFailure if client.has_sidecar => FixKind::ClientTls,
        _ => FixKind::Other,
    };
    Some(Fix { kind, text: fix })
}
