//! Lowering of kfp-mesh's Istio model to Envoy configuration.
//!
//! Istio's data plane is Envoy: istiod turns PeerAuthentications, DestinationRules and
//! AuthorizationPolicies into listeners, filter chains, clusters and RBAC filters. This crate
//! does the same for the objects of a kfp-mesh [`Inventory`](kfp_mesh_core::inventory::Inventory),
//! so that a real Envoy can be run on what the engine reasons about:
//!
//! * [`inbound::lower_inbound`]: a server workload's sidecar. One inbound listener per container
//!   port with a TLS inspector, a TLS filter chain that demands a mesh client certificate (SPIFFE
//!   URI SAN under the trust domain, signed by the mesh CA), a plaintext chain only where the
//!   effective PeerAuthentication mode allows it, HTTP or TCP by the port's protocol, and Envoy
//!   RBAC filters translated from the AuthorizationPolicies that apply ([`rbac`]).
//! * [`outbound::lower_outbound`]: a client workload's sidecar. One outbound listener per
//!   destination shaped as istiod shapes it for the port's protocol (a TCP proxy; or an HTTP
//!   inspector with an HTTP chain for plaintext HTTP and a TCP proxy, to the Service or to
//!   PassthroughCluster, for everything else), and clusters originating Istio mTLS or
//!   plaintext as the engine's client-TLS decision says.
//! * [`waypoint::lower_waypoint`]: the waypoint in front of an ambient Service (the L7 filter
//!   chain with the RBAC filters of the policies that name it with `targetRefs`), and
//!   [`waypoint::lower_client_tunnel`], the caller's side of that hop (HBONE itself is not
//!   reproduced: mTLS with the caller's identity carries the bytes).
//!
//! Every decision that is Istio *semantics* (which mode applies to a port, which protocol a port
//! has, which policies attach to a workload, what the client sidecar originates) is taken by
//! `kfp-mesh-core`; this crate only decides how such a decision looks in Envoy, the way istiod's
//! config generators do. The translation of policy *content* (rules, sources, operations,
//! conditions) to Envoy RBAC is done here, from the policies themselves, following istiod's
//! authorization builder; it never looks at a predicted outcome.
//!
//! Pure: functions take the inventory and file paths and return `serde_json` values. Nothing
//! here reads files, opens sockets or starts processes.

pub mod inbound;
pub mod outbound;
pub mod rbac;
pub mod waypoint;

use std::path::PathBuf;

use kfp_mesh_core::mesh::authz::Chain;
use kfp_mesh_core::mesh::protocol::PortProtocol;
use kfp_mesh_core::model::PathNormalization;
use serde_json::{Value, json};

/// What cannot be lowered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LowerError {
    /// The model contains something this lowering does not translate (yet).
    #[error("{what} cannot be lowered to Envoy: {why}")]
    Unsupported { what: String, why: String },
    /// The workload is not one this lowering can program.
    #[error("{0}")]
    Invalid(String),
}

impl LowerError {
    pub(crate) fn unsupported(what: impl Into<String>, why: impl Into<String>) -> Self {
        LowerError::Unsupported {
            what: what.into(),
            why: why.into(),
        }
    }
}

/// A certificate chain and its private key (PEM files), the identity a sidecar presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_chain: PathBuf,
    pub private_key: PathBuf,
}

/// ALPN values Istio's client sidecars offer on mTLS toward an HTTP destination (the server's
/// HTTP mTLS filter chain matches on them).
pub const MTLS_HTTP_ALPNS: [&str; 3] = ["istio-http/1.0", "istio-http/1.1", "istio-h2"];
/// ALPN values Istio's client sidecars offer on mTLS for opaque TCP.
pub const MTLS_TCP_ALPNS: [&str; 2] = ["istio-peer-exchange", "istio"];
/// ALPN values Envoy's HTTP inspector reports for plaintext HTTP.
pub const PLAINTEXT_HTTP_ALPNS: [&str; 3] = ["http/1.0", "http/1.1", "h2c"];

/// D7: the filter chain a request uses on a port of this protocol. HTTP ports always use the
/// HTTP chain, TCP ports the TCP chain; on auto-detected ports Envoy sniffs, so an HTTP request
/// lands on the HTTP chain and anything else on the TCP chain.
pub fn request_chain(protocol: PortProtocol, http_request: bool) -> Chain {
    match protocol {
        PortProtocol::Http => Chain::Http,
        PortProtocol::Tcp => Chain::Tcp,
        PortProtocol::Auto if http_request => Chain::Http,
        PortProtocol::Auto => Chain::Tcp,
    }
}

/// The path normalization fields of an HTTP connection manager, as istiod sets them from
/// `meshConfig.pathNormalization` (`istio:pilot/pkg/networking/core/listener_builder.go`,
/// `buildHTTPConnectionManager`): escaped slashes are kept unless `DECODE_AND_MERGE_SLASHES`.
pub fn path_normalization_fields(mode: PathNormalization) -> serde_json::Map<String, Value> {
    let (normalize, merge, escaped) = match mode {
        PathNormalization::None => (false, false, "KEEP_UNCHANGED"),
        PathNormalization::Base => (true, false, "KEEP_UNCHANGED"),
        PathNormalization::MergeSlashes => (true, true, "KEEP_UNCHANGED"),
        PathNormalization::DecodeAndMergeSlashes => (true, true, "UNESCAPE_AND_FORWARD"),
    };
    let mut m = serde_json::Map::new();
    m.insert("normalize_path".into(), json!(normalize));
    m.insert("merge_slashes".into(), json!(merge));
    m.insert("path_with_escaped_slashes_action".into(), json!(escaped));
    m
}

pub(crate) const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
pub(crate) const DOWNSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
pub(crate) const UPSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
pub(crate) const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
pub(crate) const TCP_PROXY: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
pub(crate) const ROUTER: &str =
    "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
pub(crate) const FILE_ACCESS_LOG: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";

/// The access log line the lowered listeners write: enough to see which filter chain took a
/// connection, who the peer was, and why an upstream failed.
pub const ACCESS_LOG_FORMAT: &str = "[%START_TIME%] %ACCESS_LOG_TYPE% chain=%FILTER_CHAIN_NAME% \"%REQ(:METHOD)% %REQ(:PATH)%\" %RESPONSE_CODE% flags=%RESPONSE_FLAGS% details=%RESPONSE_CODE_DETAILS% conn=%CONNECTION_TERMINATION_DETAILS% peer=%DOWNSTREAM_PEER_URI_SAN% tls=%DOWNSTREAM_TLS_VERSION% from=%DOWNSTREAM_REMOTE_ADDRESS% to=%UPSTREAM_HOST% upstream_failure=%UPSTREAM_TRANSPORT_FAILURE_REASON%\n";

pub(crate) fn access_log(path: Option<&std::path::Path>) -> Value {
    match path {
        None => json!([]),
        Some(p) => json!([{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": FILE_ACCESS_LOG,
                "path": p.display().to_string(),
                "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}},
            }
        }]),
    }
}

pub(crate) fn static_cluster(name: &str, address: std::net::SocketAddr) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(address.ip(), address.port())}}]}],
        },
    })
}

pub(crate) fn socket_address(ip: std::net::IpAddr, port: u16) -> Value {
    json!({"socket_address": {"address": ip.to_string(), "port_value": port}})
}

pub(crate) fn admin() -> Value {
    json!({"address": socket_address(std::net::IpAddr::from([127, 0, 0, 1]), 0)})
}
