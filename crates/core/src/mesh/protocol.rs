//! D7: which protocol Istio assumes for a Service port (HTTP chain, TCP chain, or both with
//! sniffing), from `appProtocol` or the port name prefix.

use serde::Serialize;

use crate::model::ServicePort;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProtocol {
    /// `http`, `http2`, `grpc`, `grpc-web` (and `h2c`): HTTP filter chain only.
    Http,
    /// `tcp`, `tls`, `https`, `mongo`, `redis`, `mysql`, ... or a well-known server-first port.
    Tcp,
    /// Unnamed or unknown: both chains exist, HTTP is detected by sniffing.
    Auto,
}

const HTTP_NAMES: &[&str] = &["http", "http2", "grpc", "grpc-web", "h2c"];
const TCP_NAMES: &[&str] = &[
    "tcp", "tls", "https", "mongo", "redis", "mysql", "udp", "thrift", "mqtt",
];

/// Protocol of a name or appProtocol value: `http-foo` is HTTP, `tcp-x` is TCP (the part
/// before the first `-`, case-insensitive).
fn from_name(name: &str) -> Option<PortProtocol> {
    let lower = name.to_ascii_lowercase();
    if HTTP_NAMES.contains(&lower.as_str()) {
        return Some(PortProtocol::Http);
    }
    if TCP_NAMES.contains(&lower.as_str()) {
        return Some(PortProtocol::Tcp);
    }
    let prefix = lower.split('-').next().unwrap_or_default();
    if HTTP_NAMES.contains(&prefix) {
        Some(PortProtocol::Http)
    } else if TCP_NAMES.contains(&prefix) {
        Some(PortProtocol::Tcp)
    } else {
        None
    }
}

/// The protocol of a Service port (`ConvertProtocol`): appProtocol first, then the name, then
/// the well-known server-first ports 25/53/3306/27017 as TCP, else auto-detection. A UDP port
/// is reported as TCP (no HTTP chain).
pub fn service_port_protocol(port: &ServicePort) -> PortProtocol {
    if port
        .protocol
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("UDP"))
    {
        return PortProtocol::Tcp;
    }
    if let Some(p) = port.app_protocol.as_deref().and_then(from_name) {
        return p;
    }
    if let Some(p) = port.name.as_deref().and_then(from_name) {
        return p;
    }
    match port.port {
        25 | 53 | 3306 | 27017 => PortProtocol::Tcp,
        _ => PortProtocol::Auto,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: Option<&str>, app: Option<&str>, number: i64) -> ServicePort {
        ServicePort {
            name: name.map(str::to_string),
            app_protocol: app.map(str::to_string),
            port: number,
            ..ServicePort::default()
        }
    }

    #[test]
    fn protocol_truth_table() {
        let cases = [
            (Some("http"), None, 8888, PortProtocol::Http),
            (Some("http-metrics"), None, 8888, PortProtocol::Http),
            (Some("grpc-api"), None, 8887, PortProtocol::Http),
            (Some("grpc-web"), None, 9090, PortProtocol::Http),
            (Some("HTTP2"), None, 80, PortProtocol::Http),
            (Some("tcp"), None, 80, PortProtocol::Tcp),
            (Some("https-webhook"), None, 443, PortProtocol::Tcp),
            (Some("mysql"), None, 3306, PortProtocol::Tcp),
            (None, None, 3306, PortProtocol::Tcp),
            (None, None, 27017, PortProtocol::Tcp),
            (None, None, 9000, PortProtocol::Auto),
            (Some("api"), None, 8080, PortProtocol::Auto),
            (Some("webhook"), Some("https"), 443, PortProtocol::Tcp),
            (Some("tcp-x"), Some("http"), 80, PortProtocol::Http),
            (Some("httpfoo"), None, 80, PortProtocol::Auto),
        ];
        for (name, app, number, want) in cases {
            assert_eq!(
                service_port_protocol(&port(name, app, number)),
                want,
                "name={name:?} appProtocol={app:?} port={number}"
            );
        }
    }
}
