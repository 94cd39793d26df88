//! A client workload's sidecar: outbound listeners and clusters (`istio-semantics.md` C).
//!
//! The application talks plaintext to its own sidecar (Istio captures it with iptables; here
//! the application connects to the listener's address). The sidecar forwards to the
//! destination endpoint over a cluster that originates Istio mTLS (the client's SPIFFE
//! certificate, the server's service accounts verified as URI SANs, SNI
//! `outbound_.<port>_._.<host>`, Istio's ALPN) or plaintext, as the engine's client-TLS decision
//! ([`client_tls::client_tls`]) says. HTTP destinations get an HTTP connection manager (so a
//! failed upstream is the client sidecar's own 503), TCP destinations a TCP proxy.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use kfp_mesh_core::connection::principal_of;
use kfp_mesh_core::inventory::{Inventory, Workload};
use kfp_mesh_core::mesh::authz::Chain;
use kfp_mesh_core::mesh::client_tls::{self, ClientTls, Destination, service_fqdn};
use kfp_mesh_core::mesh::membership::{self, DataPlane};
use serde_json::{Value, json};

use crate::{
    HCM, LowerError, MTLS_HTTP_ALPNS, MTLS_TCP_ALPNS, ROUTER, TCP_PROXY, TLS_SOCKET, TlsFiles,
    UPSTREAM_TLS, access_log, admin, path_normalization_fields, socket_address, static_cluster,
};

/// One destination of the client: a Service port (or a pod IP), the endpoint behind it, and
/// where that endpoint (its sidecar, or the application when it has none) listens.
#[derive(Clone, Debug)]
pub struct OutboundTarget<'a> {
    /// A short unique name for the listener and cluster (`[a-z0-9_-]`).
    pub name: String,
    /// A Service port, or the endpoint's pod IP (`istio-semantics.md` C5: the connection goes
    /// to PassthroughCluster, in plaintext).
    pub destination: Destination<'a>,
    pub endpoint: &'a Workload,
    pub target_port: u16,
    pub endpoint_address: SocketAddr,
    /// How the client sidecar forwards the application's connection: HTTP connection manager
    /// or TCP proxy (the engine's `connection::client_proxy_chain`).
    pub chain: Chain,
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

/// One programmed destination.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboundRoute {
    pub name: String,
    pub listener: String,
    pub cluster: String,
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
        let (host, port, cluster_name) = match t.destination {
            Destination::Service {
                service,
                service_port,
            } => {
                let fqdn = service_fqdn(service);
                let cluster = format!("outbound|{service_port}||{fqdn}|{}", t.name);
                (fqdn, service_port, cluster)
            }
            // Istio's PassthroughCluster is ORIGINAL_DST; here a static cluster to the
            // endpoint stands for it.
            Destination::PodIp => (
                format!("pod IP of {}", t.endpoint.object_ref()),
                t.target_port,
                format!("PassthroughCluster|{}", t.name),
            ),
        };
        let decision =
            client_tls::client_tls(inv, p.client, t.destination, t.endpoint, t.target_port);
        let listener_name = format!("outbound_{}", t.name);
        let mut cluster = static_cluster(&cluster_name, t.endpoint_address);
        let mut notes = vec![format!(
            "client TLS toward {host}:{port} (endpoint {} port {}): {:?}; forwarded by {}",
            t.endpoint.object_ref(),
            t.target_port,
            decision.value,
            match t.chain {
                Chain::Http => "an HTTP connection manager",
                Chain::Tcp => "a TCP proxy",
            }
        )];
        notes.extend(decision.steps.iter().map(|s| format!("  {s}")));
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
                let alpn: Vec<&str> = match t.chain {
                    Chain::Http => MTLS_HTTP_ALPNS[1..2].to_vec(),
                    Chain::Tcp => MTLS_TCP_ALPNS.to_vec(),
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
                    "originates Istio mTLS, verifies the server as {sans:?}"
                ));
            }
            ClientTls::Plaintext => notes.push("originates plaintext".to_string()),
            other => {
                return Err(LowerError::unsupported(
                    format!("client TLS {other:?} toward {host}"),
                    "only Istio mTLS and plaintext origination are lowered",
                ));
            }
        }
        if let (Some(ip), Some(o)) = (p.source_ip, cluster.as_object_mut()) {
            o.insert(
                "upstream_bind_config".into(),
                json!({"source_address": {"address": ip.to_string(), "port_value": 0}}),
            );
        }
        let mut filter = match t.chain {
            Chain::Http => json!({
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": HCM,
                    "stat_prefix": listener_name,
                    "codec_type": "AUTO",
                    "route_config": {
                        "name": format!("{port}"),
                        "virtual_hosts": [{
                            "name": format!("{host}:{port}"),
                            "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster_name, "timeout": "5s"}}],
                        }],
                    },
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
                    "access_log": access_log(p.access_log),
                },
            }),
            Chain::Tcp => json!({
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": TCP_PROXY,
                    "stat_prefix": listener_name,
                    "cluster": cluster_name,
                    "access_log": access_log(p.access_log),
                },
            }),
        };
        if t.chain == Chain::Http
            && let Some(config) = filter["typed_config"].as_object_mut()
        {
            config.extend(path_normalization_fields(inv.mesh.path_normalization));
        }
        listeners.push(json!({
            "name": listener_name,
            "address": socket_address(IpAddr::from([127, 0, 0, 1]), 0),
            "filter_chains": [{"filters": [filter]}],
        }));
        clusters.push(cluster);
        routes.push(OutboundRoute {
            name: t.name.clone(),
            listener: listener_name,
            cluster: cluster_name,
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
