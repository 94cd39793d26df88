//! A waypoint is an Envoy (`istio-semantics.md` A6.4): the L7 filter chain istiod programs on
//! it for a Service that uses it (`istio.io/use-waypoint`), and the client side of the hop.
//!
//! * [`lower_waypoint`]: one listener per container port of the Service's endpoint that the
//!   caller reaches, terminating mTLS with the caller's own certificate (in Istio the caller's
//!   ztunnel opens an HBONE tunnel, HTTP CONNECT inside mTLS with the caller's identity; the
//!   CONNECT layer is not reproduced here), then, by the port's protocol, an HTTP connection
//!   manager with the HTTP RBAC filters of the policies that apply at the waypoint (`targetRefs`
//!   to the Service, its Gateway, or the `istio-waypoint` GatewayClass), or the network RBAC
//!   filters and a TCP proxy. Waypoints do not sniff protocols: a port that no Service declares
//!   HTTP is TCP. The route goes to the application (in Istio: on to the destination ztunnel,
//!   which sees the waypoint's identity; that L4 hop is the engine's, not this Envoy's).
//! * [`lower_client_tunnel`]: the caller's side: a TCP proxy per destination that originates
//!   mTLS with the caller's certificate toward the waypoint and verifies the waypoint's
//!   identity, standing in for the caller's ztunnel.
//!
//! Which policies apply is the engine's decision ([`crate::rbac::applicable_policies_at`]); the
//! policies' content is translated by [`crate::rbac`].

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use kfp_mesh_core::inventory::{Inventory, Service, Workload};
use kfp_mesh_core::mesh::authz::{Chain, Enforcer};
use kfp_mesh_core::mesh::membership::{self, DataPlane};
use kfp_mesh_core::mesh::protocol::PortProtocol;
use kfp_mesh_core::mesh::waypoint::{self, ServiceWaypoint};
use serde_json::{Value, json};

use crate::inbound::{self, container_port_protocol, hcm};
use crate::rbac;
use crate::{
    LowerError, TCP_PROXY, TLS_SOCKET, TlsFiles, UPSTREAM_TLS, access_log, admin, socket_address,
    static_cluster,
};

/// What the waypoint needs besides the inventory.
#[derive(Clone, Debug)]
pub struct WaypointParams<'a> {
    pub inventory: &'a Inventory,
    /// The Service whose traffic the waypoint takes.
    pub service: &'a Service,
    /// The Service's endpoint (the engine evaluates the waypoint's policies for it).
    pub endpoint: &'a Workload,
    /// Container ports of the endpoint to program (`ports` rules name container ports).
    pub ports: &'a [u16],
    /// The waypoint's address; listeners bind `listen_ip:<container port>`.
    pub listen_ip: IpAddr,
    /// The waypoint's certificate (its own SPIFFE identity) and key.
    pub identity: &'a TlsFiles,
    /// The mesh root certificate callers must chain to.
    pub trusted_ca: &'a Path,
    pub http_app: SocketAddr,
    pub tcp_app: SocketAddr,
    pub access_log: Option<&'a Path>,
}

/// One programmed port of the waypoint.
#[derive(Clone, Debug, PartialEq)]
pub struct WaypointPort {
    pub port: u16,
    pub listener: String,
    pub chain: Chain,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WaypointLowering {
    pub bootstrap: Value,
    pub waypoint: String,
    /// The waypoint's identity (`<td>/ns/<ns>/sa/<gateway>`).
    pub principal: String,
    pub ports: Vec<WaypointPort>,
}

/// The chain a waypoint uses on a container port: HTTP when a Service declares the port HTTP
/// (name, `appProtocol`), else TCP (no sniffing at waypoints).
pub fn waypoint_chain(inv: &Inventory, w: &Workload, port: u16) -> (Chain, String) {
    let (protocol, why) = container_port_protocol(inv, w, port);
    match protocol {
        PortProtocol::Http => (Chain::Http, why),
        PortProtocol::Tcp => (Chain::Tcp, why),
        PortProtocol::Auto => (Chain::Tcp, format!("{why}; a waypoint does not sniff: TCP")),
    }
}

fn the_waypoint(inv: &Inventory, service: &Service) -> Result<ServiceWaypoint, LowerError> {
    waypoint::service_waypoint(inv, service).ok_or_else(|| {
        LowerError::Invalid(format!(
            "Service {}/{} uses no waypoint (no `istio.io/use-waypoint` on it or its namespace)",
            service.namespace(),
            service.name()
        ))
    })
}

/// Program the waypoint in front of `p.service` for `p.ports` of `p.endpoint`.
pub fn lower_waypoint(p: &WaypointParams<'_>) -> Result<WaypointLowering, LowerError> {
    let inv = p.inventory;
    let wp = the_waypoint(inv, p.service)?;
    let dp = membership::data_plane(inv, p.endpoint).value;
    if dp != DataPlane::Ambient {
        return Err(LowerError::Invalid(format!(
            "{} is not on ztunnel (data plane {dp:?}): Istio sends traffic to waypoints for ambient endpoints",
            p.endpoint.object_ref()
        )));
    }
    let enforcer = Enforcer::Waypoint { service: p.service };
    let http_rbac = rbac::lower_policies_at(inv, p.endpoint, enforcer, Chain::Http)?;
    let tcp_rbac = rbac::lower_policies_at(inv, p.endpoint, enforcer, Chain::Tcp)?;
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    let mut ports = Vec::new();
    for &port in p.ports {
        let (chain, why) = waypoint_chain(inv, p.endpoint, port);
        let listener = format!("waypoint_{port}");
        let cluster = format!("waypoint|{port}|{}", p.endpoint.name);
        let stat = format!("waypoint_{port}");
        let (filters, app, set) = match chain {
            Chain::Http => (
                vec![hcm(
                    &stat,
                    port,
                    &cluster,
                    &http_rbac,
                    inv.mesh.path_normalization,
                    p.access_log,
                )],
                p.http_app,
                &http_rbac,
            ),
            Chain::Tcp => {
                let mut f = tcp_rbac.network_filters(&format!("{stat}."));
                f.push(json!({
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": TCP_PROXY,
                        "stat_prefix": stat,
                        "cluster": cluster,
                        "access_log": access_log(p.access_log),
                    },
                }));
                (f, p.tcp_app, &tcp_rbac)
            }
        };
        let mut notes = vec![format!("protocol: {why}")];
        let names = rbac::policy_names(set);
        notes.push(format!("RBAC at the waypoint: {names:?}"));
        notes.extend(set.notes.iter().cloned());
        listeners.push(json!({
            "name": listener,
            "address": socket_address(p.listen_ip, port),
            "listener_filters": [{
                "name": "envoy.filters.listener.tls_inspector",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"},
            }],
            "filter_chains": [{
                "name": format!("waypoint|{port}|mtls"),
                "filter_chain_match": {"transport_protocol": "tls"},
                "filters": filters,
                "transport_socket": downstream_tls(p),
            }],
            "access_log": access_log(p.access_log),
        }));
        clusters.push(static_cluster(&cluster, app));
        ports.push(WaypointPort {
            port,
            listener,
            chain,
            notes,
        });
    }
    let principal = wp.principal(inv);
    let bootstrap = json!({
        "node": {
            "id": format!("waypoint~{}~{}.{}~{}.svc.cluster.local", p.listen_ip, wp.name, wp.namespace, wp.namespace),
            "cluster": format!("{}.{}", wp.name, wp.namespace),
            "metadata": {"principal": principal},
        },
        "admin": admin(),
        "static_resources": {"listeners": listeners, "clusters": clusters},
    });
    Ok(WaypointLowering {
        bootstrap,
        waypoint: format!("{}/{}", wp.namespace, wp.name),
        principal,
        ports,
    })
}

/// The mTLS the waypoint terminates, as a sidecar's inbound chain does.
fn downstream_tls(p: &WaypointParams<'_>) -> Value {
    inbound::istio_downstream_tls(p.inventory, p.identity, p.trusted_ca)
}

/// One destination of a caller: a port of the waypoint.
#[derive(Clone, Debug)]
pub struct TunnelTarget {
    /// A short unique name for the listener and cluster (`[a-z0-9_-]`).
    pub name: String,
    pub waypoint_address: SocketAddr,
    /// The identity the caller verifies (`<td>/ns/<ns>/sa/<sa>`, without `spiffe://`).
    pub waypoint_principal: String,
}

#[derive(Clone, Debug)]
pub struct TunnelParams<'a> {
    pub inventory: &'a Inventory,
    pub client: &'a Workload,
    pub targets: &'a [TunnelTarget],
    /// The caller's certificate: ztunnel presents the identity of the pod it tunnels for.
    pub identity: &'a TlsFiles,
    pub trusted_ca: &'a Path,
    pub access_log: Option<&'a Path>,
}

/// The caller's side of the hop to the waypoint: one plaintext listener per target (the
/// application connects to it as it would to the Service), a TCP proxy, mTLS with the caller's
/// identity to the waypoint.
pub fn lower_client_tunnel(p: &TunnelParams<'_>) -> Result<Value, LowerError> {
    let dp = membership::data_plane(p.inventory, p.client).value;
    if dp != DataPlane::Ambient {
        return Err(LowerError::Invalid(format!(
            "{} is not on ztunnel (data plane {dp:?}): no ztunnel tunnels for it",
            p.client.object_ref()
        )));
    }
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    for t in p.targets {
        let listener = format!("tunnel_{}", t.name);
        let cluster = format!("tunnel|{}", t.name);
        let mut c = static_cluster(&cluster, t.waypoint_address);
        if let Some(o) = c.as_object_mut() {
            o.insert(
                "transport_socket".into(),
                json!({
                    "name": TLS_SOCKET,
                    "typed_config": {
                        "@type": UPSTREAM_TLS,
                        "common_tls_context": {
                            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                            "tls_certificates": [{
                                "certificate_chain": {"filename": p.identity.cert_chain.display().to_string()},
                                "private_key": {"filename": p.identity.private_key.display().to_string()},
                            }],
                            "validation_context": {
                                "trusted_ca": {"filename": p.trusted_ca.display().to_string()},
                                "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": format!("spiffe://{}", t.waypoint_principal)}}],
                            },
                        },
                    },
                }),
            );
        }
        clusters.push(c);
        listeners.push(json!({
            "name": listener,
            "address": socket_address(IpAddr::from([127, 0, 0, 1]), 0),
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": TCP_PROXY,
                    "stat_prefix": listener,
                    "cluster": cluster,
                    "access_log": access_log(p.access_log),
                },
            }]}],
        }));
    }
    let c = p.client;
    Ok(json!({
        "node": {
            "id": format!("ztunnel~{}.{}", c.name, c.namespace),
            "cluster": format!("{}.{}", c.name, c.namespace),
        },
        "admin": admin(),
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }))
}
