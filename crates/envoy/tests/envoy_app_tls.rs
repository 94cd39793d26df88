//! Application TLS through the sidecars, on real Envoys (issue 12 item 4, KFP's
//! `standalone-tls` env): the client application speaks TLS itself (`RequestSpec::app_tls`),
//! the server application terminates it with a certificate from its own CA (like cert-manager's
//! in KFP 2.17), and the port's protocol as Istio sees it (name prefix, `appProtocol`, or
//! sniffing) decides what the client's sidecar does with the handshake:
//!
//! * declared TLS/TCP (`name: tls`, `appProtocol: tls`/`https`) or not declared (sniffed): a
//!   TCP proxy carries the application's TLS inside Istio mTLS to the server sidecar, which
//!   hands it to the application: `allow` over mTLS;
//! * declared HTTP (`grpc`, `http-*`, `appProtocol: grpc`/`http2`): the outbound HTTP chain
//!   matches only plaintext HTTP, so the handshake takes the listener's PassthroughFilterChain
//!   to PassthroughCluster, without Istio mTLS: a STRICT server sidecar demands a mesh client
//!   certificate and presents one the application does not trust (`tls-failure`); a
//!   PERMISSIVE one has no chain for foreign TLS on an HTTP port (`reset`); a server without a
//!   sidecar gets the TLS as sent (`allow`, no mTLS);
//! * a client without a sidecar sends its TLS straight to a STRICT server sidecar:
//!   `tls-failure` whatever the port's protocol.
//!
//! Every probe asserts that kfp-mesh's prediction is what the proxies do.

mod common;
mod support;

use common::*;
use kfp_mesh_core::connection::{Outcome, Transport};
use support::world::{Req, World, check};

/// One Service `secure` with one port per way of declaring a protocol (each to its own
/// container port, so the server sidecar's inbound listener takes the protocol from exactly one
/// Service port), and one Service `sniffed` with a single unnamed port.
fn secure_server(ns: &str) -> String {
    let ports = [9441, 9442, 9443, 9444, 9445, 9446, 9447, 9448];
    let secure_ports = [
        "{name: grpc, port: 8441, targetPort: 9441}",
        "{name: http-api, port: 8442, targetPort: 9442}",
        "{name: tls-a, appProtocol: grpc, port: 8443, targetPort: 9443}",
        "{name: web, appProtocol: http2, port: 8448, targetPort: 9448}",
        "{name: tls, port: 8444, targetPort: 9444}",
        "{name: grpc-b, appProtocol: tls, port: 8445, targetPort: 9445}",
        "{name: https, appProtocol: https, port: 8446, targetPort: 9446}",
    ];
    workload(ns, "secure", "secure", &ports, None)
        + &service(ns, "secure", &secure_ports)
        + &service(ns, "sniffed", &["{port: 8447, targetPort: 9447}"])
}

fn service(ns: &str, name: &str, ports: &[&str]) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  selector:\n    app: secure\n  ports:\n"
    );
    for p in ports {
        s.push_str(&format!("  - {p}\n"));
    }
    s + "---\n"
}

/// Service ports Istio treats as HTTP, by name or `appProtocol`.
const HTTP_PORTS: [&str; 4] = ["secure:8441", "secure:8442", "secure:8443", "secure:8448"];
/// Service ports Istio treats as opaque TCP (declared TLS/HTTPS), and the sniffed one.
const TLS_PORTS: [&str; 4] = ["secure:8444", "secure:8445", "secure:8446", "sniffed:8447"];

const SIDECAR_CLIENT: &str = "client/app";
const PLAIN_CLIENT: &str = "legacy/app";

fn clients() -> String {
    namespace("client", true)
        + &workload("client", "app", "app", &[], None)
        + &namespace("legacy", false)
        + &workload("legacy", "app", "app", &[], None)
}

/// The rows: a STRICT server, every port form, from a client with a sidecar and one
/// without.
#[tokio::test]
async fn envoy_app_tls_strict() {
    let text = namespace("srv", true)
        + &secure_server("srv")
        + &pa_namespace("srv", "STRICT")
        + &clients();
    let mut world = World::new(
        "application TLS: STRICT server",
        &[("app-tls-strict.yaml", &text)],
    );
    for port in HTTP_PORTS.iter().chain(TLS_PORTS.iter()) {
        world = world.probe(SIDECAR_CLIENT, &format!("srv/{port}"), Req::Tls);
    }
    for port in ["secure:8441", "secure:8444", "secure:8446", "sniffed:8447"] {
        world = world.probe(PLAIN_CLIENT, &format!("srv/{port}"), Req::Tls);
    }
    let report = check(world).await;
    // The world holds what the issue asks to prove, in both forms: by name and by appProtocol.
    let outcome = |from: &str, to: &str| {
        report
            .results
            .iter()
            .find(|r| r.name.starts_with(&format!("{from} -> {to} ")))
            .map(|r| (r.observed.outcome, r.observed.transport))
    };
    for port in HTTP_PORTS {
        assert_eq!(
            outcome(SIDECAR_CLIENT, &format!("srv/{port}")),
            Some((Some(Outcome::TlsFailure), None)),
            "{port}"
        );
    }
    for port in TLS_PORTS {
        assert_eq!(
            outcome(SIDECAR_CLIENT, &format!("srv/{port}")),
            Some((Some(Outcome::Allow), Some(Transport::Mtls))),
            "{port}"
        );
    }
    assert_eq!(
        outcome(PLAIN_CLIENT, "srv/secure:8444"),
        Some((Some(Outcome::TlsFailure), None))
    );
}

/// Where the application's TLS goes on an HTTP port: PassthroughCluster, as sent. A server
/// without a sidecar answers it; a PERMISSIVE server sidecar has no chain for TLS that is not
/// Istio's on an HTTP port; on a TLS port the client sidecar still wraps it in Istio mTLS
/// (PERMISSIVE) or, toward a server without a sidecar, sends it as is (auto mTLS).
#[tokio::test]
async fn envoy_app_tls_passthrough_and_permissive() {
    let text = namespace("srv-plain", false)
        + &secure_server("srv-plain")
        + &namespace("srv-perm", true)
        + &secure_server("srv-perm")
        + &pa_namespace("srv-perm", "PERMISSIVE")
        + &clients();
    let world = World::new(
        "application TLS: no server sidecar, PERMISSIVE",
        &[("app-tls-passthrough.yaml", &text)],
    )
    .probe(SIDECAR_CLIENT, "srv-plain/secure:8441", Req::Tls)
    .probe(SIDECAR_CLIENT, "srv-plain/secure:8445", Req::Tls)
    .probe(SIDECAR_CLIENT, "srv-plain/sniffed:8447", Req::Tls)
    .probe(SIDECAR_CLIENT, "srv-perm/secure:8441", Req::Tls)
    .probe(SIDECAR_CLIENT, "srv-perm/secure:8443", Req::Tls)
    .probe(SIDECAR_CLIENT, "srv-perm/secure:8444", Req::Tls)
    .probe(SIDECAR_CLIENT, "srv-perm/sniffed:8447", Req::Tls)
    .probe(PLAIN_CLIENT, "srv-perm/secure:8441", Req::Tls)
    .probe(PLAIN_CLIENT, "srv-perm/secure:8444", Req::Tls)
    // Plaintext HTTP on the same HTTP port still takes the client sidecar's HTTP chain.
    .probe(SIDECAR_CLIENT, "srv-perm/secure:8442", Req::get("/"));
    check(world).await;
}
