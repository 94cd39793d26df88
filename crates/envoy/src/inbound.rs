//! A server workload's sidecar: inbound listeners the way istiod programs them
//! (`istio-semantics.md` B5, D7, D9).
//!
//! One listener per container port, bound on the workload's address and the container port
//! itself (so `ports` rules and `portLevelMtls` keys see the port the policy names). Each
//! listener has a TLS inspector (plus an HTTP inspector on auto-detected ports) and these
//! filter chains, by effective mode ([`peer_authn::effective_mode`]) and protocol
//! ([`protocol::service_port_protocol`] of the Service ports that target the container port):
//!
//! | mode | chains |
//! | --- | --- |
//! | STRICT | TLS (any ALPN) terminated with a required mesh client certificate |
//! | PERMISSIVE | TLS with Istio's ALPNs, terminated as above; non-Istio TLS passed through to the app (TCP/auto ports only); plaintext |
//! | DISABLE | plaintext only |
//!
//! A connection no chain matches is closed by Envoy at once (`filter_chain_not_found`), which
//! the client sees as a reset. HTTP chains run an HTTP connection manager with the HTTP RBAC
//! filters and forward the caller's identity to the app (`x-forwarded-client-cert`); TCP chains
//! run the network RBAC filters and a TCP proxy.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use kfp_mesh_core::connection::principal_of;
use kfp_mesh_core::inventory::{Inventory, Workload};
use kfp_mesh_core::mesh::authz::Chain;
use kfp_mesh_core::mesh::membership::{self, DataPlane};
use kfp_mesh_core::mesh::peer_authn::{self, MtlsMode};
use kfp_mesh_core::mesh::protocol::{PortProtocol, service_port_protocol};
use kfp_mesh_core::model::PathNormalization;
use serde_json::{Value, json};

use crate::rbac::{self, RbacFilters};
use crate::{
    DOWNSTREAM_TLS, HCM, LowerError, MTLS_HTTP_ALPNS, MTLS_TCP_ALPNS, PLAINTEXT_HTTP_ALPNS, ROUTER,
    TCP_PROXY, TLS_SOCKET, TlsFiles, access_log, admin, path_normalization_fields, socket_address,
    static_cluster,
};

/// What the server sidecar needs besides the inventory.
#[derive(Clone, Debug)]
pub struct InboundParams<'a> {
    pub inventory: &'a Inventory,
    pub workload: &'a Workload,
    /// Container ports to program.
    pub ports: &'a [u16],
    /// The workload's address (its "pod IP"); listeners bind `listen_ip:<container port>`.
    pub listen_ip: IpAddr,
    /// The workload's certificate (SPIFFE URI SAN of its service account) and key.
    pub identity: &'a TlsFiles,
    /// The mesh root certificate clients must chain to.
    pub trusted_ca: &'a Path,
    /// The application behind the sidecar: where HTTP chains and TCP chains forward to.
    pub http_app: SocketAddr,
    pub tcp_app: SocketAddr,
    pub access_log: Option<&'a Path>,
}

/// The filter chains of one port, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainKind {
    /// Istio mTLS terminated, HTTP connection manager.
    MtlsHttp,
    /// Istio mTLS terminated, TCP proxy.
    MtlsTcp,
    /// TLS that is not Istio's, passed through to the application (PERMISSIVE, TCP/auto).
    TlsPassthrough,
    PlaintextHttp,
    PlaintextTcp,
}

impl ChainKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainKind::MtlsHttp => "mtls-http",
            ChainKind::MtlsTcp => "mtls-tcp",
            ChainKind::TlsPassthrough => "tls-passthrough",
            ChainKind::PlaintextHttp => "plaintext-http",
            ChainKind::PlaintextTcp => "plaintext-tcp",
        }
    }
    fn terminates_tls(self) -> bool {
        matches!(self, ChainKind::MtlsHttp | ChainKind::MtlsTcp)
    }
    fn http(self) -> bool {
        matches!(self, ChainKind::MtlsHttp | ChainKind::PlaintextHttp)
    }
}

/// One programmed port.
#[derive(Clone, Debug, PartialEq)]
pub struct InboundPort {
    pub port: u16,
    pub listener: String,
    pub mode: MtlsMode,
    pub protocol: PortProtocol,
    pub chains: Vec<ChainKind>,
    /// What was decided, for people reading a failed test.
    pub notes: Vec<String>,
}

/// The server sidecar's bootstrap and what it contains.
#[derive(Clone, Debug, PartialEq)]
pub struct InboundLowering {
    pub bootstrap: Value,
    pub ports: Vec<InboundPort>,
}

/// The protocol of a container port: that of the Service ports that target it (D7); auto
/// when no Service declares it (passthrough).
pub fn container_port_protocol(inv: &Inventory, w: &Workload, port: u16) -> (PortProtocol, String) {
    let mut found: Vec<(PortProtocol, String)> = Vec::new();
    for svc in inv.services_of(w) {
        for sp in &svc.spec.ports {
            if w.target_port(sp) == Some(port) {
                found.push((
                    service_port_protocol(sp),
                    format!(
                        "Service {}/{} port {}{}",
                        svc.namespace(),
                        svc.name(),
                        sp.port,
                        sp.name
                            .as_deref()
                            .map(|n| format!(" ({n})"))
                            .unwrap_or_default()
                    ),
                ));
            }
        }
    }
    match found.first() {
        None => (
            PortProtocol::Auto,
            format!("no Service targets container port {port}: auto-detected"),
        ),
        Some((p, by)) => {
            let mut why = format!("{p:?} from {by}");
            if found.iter().any(|(q, _)| q != p) {
                why.push_str(" (other Services declare it differently; the first one is used)");
            }
            (*p, why)
        }
    }
}

/// The chains a port gets (B5 table, per protocol).
pub fn chains_for(mode: MtlsMode, protocol: PortProtocol) -> Vec<ChainKind> {
    use ChainKind::*;
    match (mode, protocol) {
        (MtlsMode::Strict, PortProtocol::Http) => vec![MtlsHttp],
        (MtlsMode::Strict, PortProtocol::Tcp) => vec![MtlsTcp],
        (MtlsMode::Strict, PortProtocol::Auto) => vec![MtlsHttp, MtlsTcp],
        (MtlsMode::Permissive, PortProtocol::Http) => vec![MtlsHttp, PlaintextHttp],
        (MtlsMode::Permissive, PortProtocol::Tcp) => vec![MtlsTcp, TlsPassthrough, PlaintextTcp],
        (MtlsMode::Permissive, PortProtocol::Auto) => {
            vec![
                MtlsHttp,
                MtlsTcp,
                TlsPassthrough,
                PlaintextHttp,
                PlaintextTcp,
            ]
        }
        (MtlsMode::Disable, PortProtocol::Http) => vec![PlaintextHttp],
        (MtlsMode::Disable, PortProtocol::Tcp) => vec![PlaintextTcp],
        (MtlsMode::Disable, PortProtocol::Auto) => vec![PlaintextHttp, PlaintextTcp],
    }
}

/// The `filter_chain_match` of a chain. Under STRICT the TLS chains match any TLS (a client
/// without an Istio certificate then fails the handshake); under PERMISSIVE they match only
/// Istio's ALPNs, so other TLS falls through to the passthrough chain or finds no chain.
fn chain_match(kind: ChainKind, mode: MtlsMode, protocol: PortProtocol) -> Value {
    let alpns = |l: &[&str]| json!(l);
    match kind {
        ChainKind::MtlsHttp => {
            if mode == MtlsMode::Strict && protocol == PortProtocol::Http {
                json!({"transport_protocol": "tls"})
            } else {
                json!({"transport_protocol": "tls", "application_protocols": alpns(&MTLS_HTTP_ALPNS)})
            }
        }
        ChainKind::MtlsTcp => {
            if mode == MtlsMode::Strict {
                json!({"transport_protocol": "tls"})
            } else {
                json!({"transport_protocol": "tls", "application_protocols": alpns(&MTLS_TCP_ALPNS)})
            }
        }
        ChainKind::TlsPassthrough => json!({"transport_protocol": "tls"}),
        ChainKind::PlaintextHttp => {
            if protocol == PortProtocol::Auto {
                json!({"transport_protocol": "raw_buffer", "application_protocols": alpns(&PLAINTEXT_HTTP_ALPNS)})
            } else {
                json!({"transport_protocol": "raw_buffer"})
            }
        }
        ChainKind::PlaintextTcp => json!({"transport_protocol": "raw_buffer"}),
    }
}

fn downstream_tls(p: &InboundParams<'_>) -> Value {
    istio_downstream_tls(p.inventory, p.identity, p.trusted_ca)
}

/// The mTLS an Istio proxy terminates (a sidecar's inbound chain, a waypoint): the caller's
/// certificate is required, chains to the mesh CA and names a SPIFFE identity of the trust
/// domain (or an alias).
pub(crate) fn istio_downstream_tls(
    inv: &Inventory,
    identity: &TlsFiles,
    trusted_ca: &Path,
) -> Value {
    let mut domains = vec![inv.mesh.trust_domain.clone()];
    domains.extend(inv.mesh.trust_domain_aliases.iter().cloned());
    let sans: Vec<Value> = domains
        .iter()
        .map(|d| json!({"san_type": "URI", "matcher": {"prefix": format!("spiffe://{d}/")}}))
        .collect();
    json!({
        "name": TLS_SOCKET,
        "typed_config": {
            "@type": DOWNSTREAM_TLS,
            "require_client_certificate": true,
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                "tls_certificates": [{
                    "certificate_chain": {"filename": identity.cert_chain.display().to_string()},
                    "private_key": {"filename": identity.private_key.display().to_string()},
                }],
                "validation_context": {
                    "trusted_ca": {"filename": trusted_ca.display().to_string()},
                    "match_typed_subject_alt_names": sans,
                },
            },
        },
    })
}

/// Program the sidecar of `p.workload` for `p.ports`.
pub fn lower_inbound(p: &InboundParams<'_>) -> Result<InboundLowering, LowerError> {
    let inv = p.inventory;
    let w = p.workload;
    let dp = membership::data_plane(inv, w);
    if dp.value != DataPlane::Sidecar {
        return Err(LowerError::Invalid(format!(
            "{} has no sidecar (data plane {:?}): there is no server proxy to program",
            w.object_ref(),
            dp.value
        )));
    }
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    let mut ports = Vec::new();
    let http_rbac = rbac::lower_policies(inv, w, Chain::Http)?;
    let tcp_rbac = rbac::lower_policies(inv, w, Chain::Tcp)?;
    for &port in p.ports {
        if !membership::intercepts_inbound(w, port).value {
            return Err(LowerError::unsupported(
                format!("port {port} of {}", w.object_ref()),
                "the port is excluded from interception (B7); the client must reach the application directly",
            ));
        }
        let mode = peer_authn::effective_mode(inv, w, port).value;
        let (protocol, protocol_why) = container_port_protocol(inv, w, port);
        let kinds = chains_for(mode, protocol);
        let listener = format!("inbound_{port}");
        let http_cluster = format!("inbound|{port}|http");
        let tcp_cluster = format!("inbound|{port}|tcp");
        let mut notes = vec![
            format!("effective mode {mode} on container port {port}"),
            format!("protocol: {protocol_why}"),
            format!(
                "filter chains: {}",
                kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ];
        let mut chains = Vec::new();
        for &kind in &kinds {
            let name = format!("inbound|{port}|{}", kind.as_str());
            let stat = format!("inbound_{port}_{}", kind.as_str().replace('-', "_"));
            let filters = if kind.http() {
                vec![hcm(
                    &stat,
                    port,
                    &http_cluster,
                    &http_rbac,
                    inv.mesh.path_normalization,
                    p.access_log,
                )]
            } else {
                let mut f = tcp_rbac.network_filters(&format!("{stat}."));
                f.push(json!({
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": TCP_PROXY,
                        "stat_prefix": stat,
                        "cluster": tcp_cluster,
                        "access_log": access_log(p.access_log),
                    },
                }));
                f
            };
            let mut chain = json!({
                "name": name,
                "filter_chain_match": chain_match(kind, mode, protocol),
                "filters": filters,
            });
            if kind.terminates_tls()
                && let Some(o) = chain.as_object_mut()
            {
                o.insert("transport_socket".into(), downstream_tls(p));
            }
            chains.push(chain);
        }
        let mut listener_filters = vec![json!({
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"},
        })];
        if protocol == PortProtocol::Auto {
            listener_filters.push(json!({
                "name": "envoy.filters.listener.http_inspector",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"},
            }));
        }
        listeners.push(json!({
            "name": listener,
            "address": socket_address(p.listen_ip, port),
            "listener_filters": listener_filters,
            "filter_chains": chains,
            "access_log": access_log(p.access_log),
        }));
        clusters.push(static_cluster(&http_cluster, p.http_app));
        clusters.push(static_cluster(&tcp_cluster, p.tcp_app));
        for (chain, set) in [("HTTP", &http_rbac), ("TCP", &tcp_rbac)] {
            let names = rbac::policy_names(set);
            if !names.is_empty() {
                notes.push(format!("{chain} RBAC: {names:?}"));
            }
            notes.extend(set.notes.iter().map(|n| format!("{chain} RBAC: {n}")));
        }
        ports.push(InboundPort {
            port,
            listener,
            mode,
            protocol,
            chains: kinds,
            notes,
        });
    }
    let bootstrap = json!({
        "node": {
            "id": format!("sidecar~{}~{}.{}~{}.svc.cluster.local", p.listen_ip, w.name, w.namespace, w.namespace),
            "cluster": format!("{}.{}", w.name, w.namespace),
            "metadata": {"principal": principal_of(inv, w)},
        },
        "admin": admin(),
        "static_resources": {"listeners": listeners, "clusters": clusters},
    });
    Ok(InboundLowering { bootstrap, ports })
}

pub(crate) fn hcm(
    stat: &str,
    port: u16,
    cluster: &str,
    rbac: &RbacFilters,
    paths: PathNormalization,
    log: Option<&Path>,
) -> Value {
    let mut http_filters = rbac.http_filters();
    http_filters
        .push(json!({"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}));
    let mut filter = json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": stat,
            "codec_type": "AUTO",
            // Istio forwards the caller's identity to the application; a client-sent header
            // is replaced.
            "forward_client_cert_details": "SANITIZE_SET",
            "set_current_client_cert_details": {"uri": true},
            "route_config": {
                "name": format!("inbound|{port}"),
                "virtual_hosts": [{
                    "name": format!("inbound|http|{port}"),
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "5s"}}],
                }],
            },
            "http_filters": http_filters,
            "access_log": access_log(log),
        },
    });
    if let Some(config) = filter["typed_config"].as_object_mut() {
        config.extend(path_normalization_fields(paths));
    }
    filter
}
