//! A client workload's sidecar: outbound listeners and clusters (`istio-semantics.md` C, D7).
//!
//! The application talks to its own sidecar (Istio captures it with iptables; here the
//! application connects to the listener's address). Each destination gets the listener istiod
//! builds for its port (`istio:pilot/pkg/networking/core/listener.go`,
//! `buildSidecarOutboundListener` and `buildListenerFromEntry`), so that Envoy, not kfp-mesh,
//! decides which filter chain a connection takes:
//!
//! | destination | listener |
//! |---|---|
//! | Service port declared TCP (`tcp`, `tls`, `https`, `mongo`, ... by name or `appProtocol`) | one TCP proxy chain to the Service's cluster |
//! | Service port declared HTTP (`http*`, `grpc*`, `http2`, by name or `appProtocol`) | Istio binds HTTP ports to the wildcard `0.0.0.0:<port>`: an HTTP inspector, an HTTP connection manager chain that matches only plaintext HTTP (`transport_protocol: raw_buffer`, ALPN `http/1.1`/`h2c` as the inspector reports them), and the default `PassthroughFilterChain`, a TCP proxy to PassthroughCluster (no TLS) for everything else |
//! | Service port auto-detected (no protocol) | an HTTP inspector, the same HTTP chain, and the TCP proxy chain to the Service's cluster as the default chain |
//! | pod IP (C5) | the `0.0.0.0:<port>` HTTP listener above, routing to PassthroughCluster, when some Service declares the port number as HTTP; else the virtual outbound listener's `PassthroughFilterChain` |
//!
//! The Service's cluster originates Istio mTLS (the client's SPIFFE certificate, the server's
//! service accounts verified as URI SANs, SNI `outbound_.<port>_._.<host>`, Istio's ALPN) or
//! plaintext, as the engine's client-TLS decision ([`client_tls::client_tls`]) says. Istio
//! uses one cluster for both chains of a sniffed port and lets its `istio.alpn` HTTP filter
//! (an Istio-only Envoy extension) switch the ALPN to `istio-http/1.1` on the HTTP chain; here
//! the HTTP chain gets its own copy of the cluster with that ALPN instead.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use kfp_mesh_core::connection::principal_of;
use kfp_mesh_core::inventory::{Inventory, Workload};
use kfp_mesh_core::mesh::client_tls::{self, ClientTls, Destination, service_fqdn};
use kfp_mesh_core::mesh::membership::{self, DataPlane};
use kfp_mesh_core::mesh::protocol::{PortProtocol, service_port_protocol};
use serde_json::{Value, json};

use crate::{
    HCM, LowerError, MTLS_HTTP_ALPNS, MTLS_TCP_ALPNS, ROUTER, TCP_PROXY, TLS_SOCKET, TlsFiles,
    UPSTREAM_TLS, access_log, admin, path_normalization_fields, socket_address, static_cluster,
};

/// The ALPN values the outbound HTTP filter chain matches: what Envoy's HTTP inspector reports
/// for plaintext HTTP/1.1 and HTTP/2 (istiod's `plaintextHTTPALPNs`; `http/1.0` only with
/// `PILOT_HTTP10`).
pub const OUTBOUND_HTTP_ALPNS: [&str; 2] = ["http/1.1", "h2c"];

/// One destination of the client: a Service port (or a pod IP), the endpoint behind it, and
/// where that endpoint (its sidecar, or the application when it has none) listens.
#[derive(Clone, Debug)]
pub struct OutboundTarget<'a> {
    /// A short unique name for the listener and clusters (`[a-z0-9_-]`).
    pub name: String,
    /// A Service port, or the endpoint's pod IP (`istio-semantics.md` C5: the connection goes
    /// to PassthroughCluster, in plaintext).
    pub destination: Destination<'a>,
    pub endpoint: &'a Workload,
    pub target_port: u16,
    pub endpoint_address: SocketAddr,
}

#[derive(Clone, Debug)]
pub struct OutboundParams<'a> {
    pub inventory: &'a Inventory,
    pub client: &'a Workload,
    pub targets: &'a [OutboundTarget<'a>],
    /// The client's certificate (SPIFFE URI SAN of its service account) and key.
    pub identity: &'a TlsFiles,
    pub trusted_ca: &'a Path,
    /// The client's address (its "pod IP"): outbound connections leave from it.
    pub source_ip: Option<IpAddr>,
    pub access_log: Option<&'a Path>,
}

/// The listener istiod builds for a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerShape {
    /// One TCP proxy chain (a TCP/TLS Service port; a pod IP on a port no Service declares
    /// HTTP, which the virtual outbound listener's `PassthroughFilterChain` takes).
    Tcp,
    /// HTTP inspector; plaintext HTTP to the HTTP chain, anything else to the TCP proxy chain
    /// of the Service (an auto-detected Service port).
    Sniffed,
    /// The wildcard `0.0.0.0:<port>` listener of an HTTP port: HTTP inspector; plaintext HTTP
    /// to the HTTP chain, anything else (TLS, other TCP) to `PassthroughFilterChain`.
    HttpWithPassthrough,
}

impl ListenerShape {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerShape::Tcp => "TCP proxy",
            ListenerShape::Sniffed => {
                "HTTP inspector: plaintext HTTP to an HTTP connection manager, anything else to a TCP proxy to the Service"
            }
            ListenerShape::HttpWithPassthrough => {
                "wildcard HTTP listener: plaintext HTTP to an HTTP connection manager, anything else (TLS included) to PassthroughFilterChain (TCP proxy to PassthroughCluster, no TLS)"
            }
        }
    }
}

/// Which listener takes the client's connection to `destination` (`target_port` for a pod IP).
pub fn listener_shape(
    inv: &Inventory,
    destination: Destination<'_>,
    target_port: u16,
) -> (ListenerShape, String) {
    match destination {
        Destination::Service {
            service,
            service_port,
        } => {
            let sp = service
                .spec
                .ports
                .iter()
                .find(|sp| sp.port == i64::from(service_port));
            let protocol = sp.map(service_port_protocol).unwrap_or(PortProtocol::Auto);
            let why = format!(
                "Service {}/{} port {service_port}{} is {protocol:?}",
                service.namespace(),
                service.name(),
                sp.and_then(|sp| sp.name.as_deref())
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            );
            let shape = match protocol {
                PortProtocol::Tcp => ListenerShape::Tcp,
                PortProtocol::Auto => ListenerShape::Sniffed,
                PortProtocol::Http => ListenerShape::HttpWithPassthrough,
            };
            (shape, why)
        }
        Destination::PodIp => {
            let http = inv.services.values().find_map(|svc| {
                svc.spec
                    .ports
                    .iter()
                    .find(|sp| {
                        sp.port == i64::from(target_port)
                            && service_port_protocol(sp) == PortProtocol::Http
                    })
                    .map(|_| format!("{}/{}", svc.namespace(), svc.name()))
            });
            match http {
                Some(svc) => (
                    ListenerShape::HttpWithPassthrough,
                    format!(
                        "pod IP: Service {svc} declares port {target_port} as HTTP, so the 0.0.0.0:{target_port} HTTP listener takes it"
                    ),
                ),
                None => (
                    ListenerShape::Tcp,
                    format!(
                        "pod IP: no Service declares port {target_port} as HTTP, so the virtual outbound listener's PassthroughFilterChain takes it"
                    ),
                ),
            }
        }
    }
}

/// One programmed destination.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboundRoute {
    pub name: String,
    pub listener: String,
    pub shape: ListenerShape,
    pub clusters: Vec<String>,
    pub tls: ClientTls,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OutboundLowering {
    pub bootstrap: Value,
    pub routes: Vec<OutboundRoute>,
}

/// Program the sidecar of `p.client` for its destinations.
pub fn lower_outbound(p: &OutboundParams<'_>) -> Result<OutboundLowering, LowerError> {
    let inv = p.inventory;
    let dp = membership::data_plane(inv, p.client);
    if dp.value != DataPlane::Sidecar {
        return Err(LowerError::Invalid(format!(
            "{} has no sidecar (data plane {:?}): its application connects directly",
            p.client.object_ref(),
            dp.value
        )));
    }
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    let mut routes = Vec::new();
    for t in p.targets {
        let (shape, shape_why) = listener_shape(inv, t.destination, t.target_port);
        let listener_name = format!("outbound_{}", t.name);
        let passthrough = format!("PassthroughCluster|{}", t.name);
        let decision =
            client_tls::client_tls(inv, p.client, t.destination, t.endpoint, t.target_port);
        let (host, port) = match t.destination {
            Destination::Service {
                service,
                service_port,
            } => (service_fqdn(service), service_port),
            Destination::PodIp => (
                format!("pod IP of {}", t.endpoint.object_ref()),
                t.target_port,
            ),
        };
        let mut notes = vec![
            format!("listener: {} ({shape_why})", shape.as_str()),
            format!(
                "client TLS toward {host}:{port} (endpoint {} port {}): {:?}",
                t.endpoint.object_ref(),
                t.target_port,
                decision.value
            ),
        ];
        notes.extend(decision.steps.iter().map(|s| format!("  {s}")));
        let mut route_clusters = Vec::new();
        // The destination's own clusters: the Service's (Istio mTLS or plaintext), or, for a pod
        // IP, PassthroughCluster (Istio's is ORIGINAL_DST; a static cluster to the endpoint
        // stands for it). `http` selects the ALPN Istio offers on the HTTP chain.
        let mut destination_cluster = |http: bool| -> Result<String, LowerError> {
            let name = match t.destination {
                Destination::Service { .. } => format!(
                    "outbound|{port}||{host}|{}|{}",
                    t.name,
                    if http { "http" } else { "tcp" }
                ),
                Destination::PodIp => passthrough.clone(),
            };
            if route_clusters.contains(&name) {
                return Ok(name);
            }
            let mut cluster = static_cluster(&name, t.endpoint_address);
            match decision.value {
                ClientTls::IstioMutual => {
                    let Destination::Service { service, .. } = t.destination else {
                        return Err(LowerError::Invalid(format!(
                            "Istio mTLS toward the pod IP of {}: PassthroughCluster has no TLS",
                            t.endpoint.object_ref()
                        )));
                    };
                    // Istio verifies the server against the service accounts of the service.
                    let mut sans: Vec<String> = inv
                        .service_endpoints(service)
                        .into_iter()
                        .map(|w| format!("spiffe://{}", principal_of(inv, w)))
                        .collect();
                    sans.sort();
                    sans.dedup();
                    let alpn: Vec<&str> = if http {
                        MTLS_HTTP_ALPNS[1..2].to_vec()
                    } else {
                        MTLS_TCP_ALPNS.to_vec()
                    };
                    let socket = json!({
                        "name": TLS_SOCKET,
                        "typed_config": {
                            "@type": UPSTREAM_TLS,
                            "sni": format!("outbound_.{port}_._.{host}"),
                            "common_tls_context": {
                                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                                "alpn_protocols": alpn,
                                "tls_certificates": [{
                                    "certificate_chain": {"filename": p.identity.cert_chain.display().to_string()},
                                    "private_key": {"filename": p.identity.private_key.display().to_string()},
                                }],
                                "validation_context": {
                                    "trusted_ca": {"filename": p.trusted_ca.display().to_string()},
                                    "match_typed_subject_alt_names": sans.iter().map(|s| json!({"san_type": "URI", "matcher": {"exact": s}})).collect::<Vec<_>>(),
                                },
                            },
                        },
                    });
                    if let Some(o) = cluster.as_object_mut() {
                        o.insert("transport_socket".into(), socket);
                    }
                    notes.push(format!(
                        "{name}: originates Istio mTLS (ALPN {alpn:?}), verifies the server as {sans:?}"
                    ));
                }
                ClientTls::Plaintext => notes.push(format!("{name}: originates plaintext")),
                other => {
                    return Err(LowerError::unsupported(
                        format!("client TLS {other:?} toward {host}"),
                        "only Istio mTLS and plaintext origination are lowered",
                    ));
                }
            }
            bind_source(&mut cluster, p.source_ip);
            clusters.push(cluster);
            route_clusters.push(name.clone());
            Ok(name)
        };
        let (chains, default_chain) = match shape {
            ListenerShape::Tcp => {
                let cluster = destination_cluster(false)?;
                (
                    vec![json!({"filters": [tcp_proxy(&listener_name, &cluster, p.access_log)]})],
                    None,
                )
            }
            ListenerShape::Sniffed => {
                let http = destination_cluster(true)?;
                let tcp = destination_cluster(false)?;
                (
                    vec![http_chain(
                        &listener_name,
                        &format!("{host}:{port}"),
                        &http,
                        inv,
                        p.access_log,
                    )],
                    Some(json!({
                        "name": format!("{listener_name}_tcp"),
                        "filters": [tcp_proxy(&listener_name, &tcp, p.access_log)],
                    })),
                )
            }
            ListenerShape::HttpWithPassthrough => {
                let http = destination_cluster(true)?;
                if !route_clusters.contains(&passthrough) {
                    let mut cluster = static_cluster(&passthrough, t.endpoint_address);
                    bind_source(&mut cluster, p.source_ip);
                    clusters.push(cluster);
                    route_clusters.push(passthrough.clone());
                    notes.push(format!(
                        "{passthrough}: PassthroughFilterChain's cluster, no TLS (what is not plaintext HTTP leaves as it came)"
                    ));
                }
                (
                    vec![http_chain(
                        &listener_name,
                        &format!("{host}:{port}"),
                        &http,
                        inv,
                        p.access_log,
                    )],
                    Some(json!({
                        "name": "PassthroughFilterChain",
                        "filters": [tcp_proxy(&listener_name, &passthrough, p.access_log)],
                    })),
                )
            }
        };
        let mut listener = json!({
            "name": listener_name,
            "address": socket_address(IpAddr::from([127, 0, 0, 1]), 0),
            "filter_chains": chains,
        });
        if let (Some(default_chain), Some(o)) = (default_chain, listener.as_object_mut()) {
            // istiod: an HTTP inspector for the chains that match on ALPN, no timeout
            // (`meshConfig.protocolDetectionTimeout` defaults to 0s), and the match-all chain
            // as the default filter chain.
            o.insert(
                "listener_filters".into(),
                json!([{
                    "name": "envoy.filters.listener.http_inspector",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"},
                }]),
            );
            o.insert("listener_filters_timeout".into(), json!("0s"));
            o.insert("continue_on_listener_filters_timeout".into(), json!(true));
            o.insert("default_filter_chain".into(), default_chain);
        }
        listeners.push(listener);
        routes.push(OutboundRoute {
            name: t.name.clone(),
            listener: listener_name,
            shape,
            clusters: route_clusters,
            tls: decision.value,
            notes,
        });
    }
    let c = p.client;
    let bootstrap = json!({
        "node": {
            "id": format!("sidecar~{}~{}.{}~{}.svc.cluster.local", p.source_ip.map(|i| i.to_string()).unwrap_or_default(), c.name, c.namespace, c.namespace),
            "cluster": format!("{}.{}", c.name, c.namespace),
            "metadata": {"principal": principal_of(inv, c)},
        },
        "admin": admin(),
        "static_resources": {"listeners": listeners, "clusters": clusters},
    });
    Ok(OutboundLowering { bootstrap, routes })
}

fn bind_source(cluster: &mut Value, source_ip: Option<IpAddr>) {
    if let (Some(ip), Some(o)) = (source_ip, cluster.as_object_mut()) {
        o.insert(
            "upstream_bind_config".into(),
            json!({"source_address": {"address": ip.to_string(), "port_value": 0}}),
        );
    }
}

fn tcp_proxy(stat: &str, cluster: &str, log: Option<&Path>) -> Value {
    json!({
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": TCP_PROXY,
            "stat_prefix": stat,
            "cluster": cluster,
            "access_log": access_log(log),
        },
    })
}

/// The outbound HTTP chain: only plaintext HTTP as the HTTP inspector reports it (istiod sets
/// `transport_protocol: raw_buffer` and the plaintext HTTP ALPNs on it).
fn http_chain(
    stat: &str,
    vhost: &str,
    cluster: &str,
    inv: &Inventory,
    log: Option<&Path>,
) -> Value {
    let mut hcm = json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": stat,
            "codec_type": "AUTO",
            "route_config": {
                "name": vhost,
                "virtual_hosts": [{
                    "name": vhost,
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "5s"}}],
                }],
            },
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
            "access_log": access_log(log),
        },
    });
    if let Some(config) = hcm["typed_config"].as_object_mut() {
        config.extend(path_normalization_fields(inv.mesh.path_normalization));
    }
    json!({
        "name": format!("{stat}_http"),
        "filter_chain_match": {"transport_protocol": "raw_buffer", "application_protocols": OUTBOUND_HTTP_ALPNS},
        "filters": [hcm],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORLD: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {serviceAccountName: web, containers: [{name: app, image: x}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {serviceAccountName: api, containers: [{name: app, image: x}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  selector: {app: api}
  ports:
  - {name: grpc, port: 8887}
  - {name: web, appProtocol: tls, port: 8888}
  - {name: api, port: 9000}
"#;

    fn lower(port: u16, pod_ip: bool) -> (OutboundRoute, Value) {
        let inv = Inventory::from_sources([("world.yaml", WORLD)]);
        assert!(inv.errors.is_empty(), "{:?}", inv.errors);
        let client = inv.workload("shop", "web").expect("client");
        let api = inv.workload("shop", "api").expect("server");
        let service = inv.service("shop", "api").expect("service");
        let destination = if pod_ip {
            Destination::PodIp
        } else {
            Destination::Service {
                service,
                service_port: port,
            }
        };
        let targets = [OutboundTarget {
            name: "t".into(),
            destination,
            endpoint: api,
            target_port: port,
            endpoint_address: SocketAddr::from(([127, 0, 0, 2], port)),
        }];
        let identity = TlsFiles {
            cert_chain: "web.crt".into(),
            private_key: "web.key".into(),
        };
        let lowered = lower_outbound(&OutboundParams {
            inventory: &inv,
            client,
            targets: &targets,
            identity: &identity,
            trusted_ca: Path::new("ca.crt"),
            source_ip: None,
            access_log: None,
        })
        .expect("lowers");
        let listener = lowered.bootstrap["static_resources"]["listeners"][0].clone();
        (lowered.routes[0].clone(), listener)
    }

    /// istiod's outbound listeners (`buildSidecarOutboundListener`): an HTTP port's HTTP chain
    /// takes only plaintext HTTP and everything else falls through to PassthroughFilterChain;
    /// a sniffed port falls through to the Service's TCP proxy; a TLS port is a TCP proxy.
    #[test]
    fn listeners_are_shaped_by_the_port_protocol() {
        let (route, l) = lower(8887, false);
        assert_eq!(route.shape, ListenerShape::HttpWithPassthrough);
        assert_eq!(
            l["listener_filters"][0]["name"],
            "envoy.filters.listener.http_inspector"
        );
        assert_eq!(
            l["filter_chains"][0]["filter_chain_match"],
            json!({"transport_protocol": "raw_buffer", "application_protocols": ["http/1.1", "h2c"]})
        );
        assert_eq!(l["default_filter_chain"]["name"], "PassthroughFilterChain");
        assert_eq!(
            l["default_filter_chain"]["filters"][0]["typed_config"]["cluster"],
            "PassthroughCluster|t"
        );

        let (route, l) = lower(9000, false);
        assert_eq!(route.shape, ListenerShape::Sniffed);
        assert_eq!(
            l["default_filter_chain"]["filters"][0]["typed_config"]["cluster"],
            "outbound|9000||api.shop.svc.cluster.local|t|tcp"
        );

        let (route, l) = lower(8888, false);
        assert_eq!(route.shape, ListenerShape::Tcp);
        assert!(l.get("listener_filters").is_none());
        assert!(l.get("default_filter_chain").is_none());
        assert_eq!(
            l["filter_chains"][0]["filters"][0]["name"],
            "envoy.filters.network.tcp_proxy"
        );

        // A pod IP on 8887 lands in the wildcard HTTP listener of the `grpc` port; on 8888 in
        // the virtual outbound listener's PassthroughFilterChain.
        assert_eq!(
            lower(8887, true).0.shape,
            ListenerShape::HttpWithPassthrough
        );
        assert_eq!(lower(8888, true).0.shape, ListenerShape::Tcp);
    }
}
