//! The transport matrix on real Envoys: client with/without a sidecar × server without a
//! sidecar / STRICT / PERMISSIVE / DISABLE (namespace-wide, workload and port-level) ×
//! DestinationRule none / DISABLE / ISTIO_MUTUAL × HTTP and TCP. Every probe asserts that
//! kfp-mesh's prediction is what the proxies do.

mod common;
mod support;

use common::*;
use support::world::{Probe, Req, World, check, probe};

/// Client namespaces: one without a DestinationRule, one whose DRs say DISABLE, one whose DRs
/// say ISTIO_MUTUAL (DRs in the client namespace win, C1), all injected; and a plain client.
const SIDECAR_CLIENTS: [&str; 3] = ["c-none/app", "c-disable/app", "c-mutual/app"];
const PLAIN_CLIENT: &str = "legacy/app";

fn clients(server_namespaces: &[&str]) -> String {
    let mut s = String::new();
    for c in SIDECAR_CLIENTS {
        let ns = c.split('/').next().unwrap_or_default();
        s += &namespace(ns, true);
        s += &workload(ns, "app", "app", &[], None);
    }
    s += &namespace("legacy", false);
    s += &workload("legacy", "app", "app", &[], None);
    for sns in server_namespaces {
        let host = format!("server.{sns}.svc.cluster.local");
        s += &destination_rule("c-disable", sns, &host, "DISABLE");
        s += &destination_rule("c-mutual", sns, &host, "ISTIO_MUTUAL");
    }
    s
}

fn matrix(server_namespaces: &[&str]) -> Vec<Probe> {
    let mut out = Vec::new();
    for sns in server_namespaces {
        for client in SIDECAR_CLIENTS.iter().chain([PLAIN_CLIENT].iter()) {
            out.push(probe(client, &format!("{sns}/server:8000"), Req::get("/")));
            out.push(probe(client, &format!("{sns}/server:9000"), Req::Tcp));
        }
    }
    out
}

fn server_in(ns: &str, inject: bool, policies: &str) -> String {
    namespace(ns, inject) + &server(ns, "server") + policies
}

#[tokio::test]
async fn envoy_transport_matrix_namespace_modes() {
    let servers = [
        server_in("srv-plain", false, ""),
        server_in("srv-strict", true, &pa_namespace("srv-strict", "STRICT")),
        server_in(
            "srv-permissive",
            true,
            &pa_namespace("srv-permissive", "PERMISSIVE"),
        ),
        server_in("srv-disable", true, &pa_namespace("srv-disable", "DISABLE")),
    ];
    let nss = ["srv-plain", "srv-strict", "srv-permissive", "srv-disable"];
    let text = servers.concat() + &clients(&nss);
    let world = World::new(
        "transport: namespace-wide modes",
        &[("transport-a.yaml", &text)],
    )
    .probes(matrix(&nss));
    check(world).await;
}

#[tokio::test]
async fn envoy_transport_matrix_workload_and_port_modes() {
    let servers = [
        // Namespace STRICT, workload DISABLE: auto mTLS checks the endpoint, plaintext works.
        server_in(
            "srv-wl-disable",
            true,
            &(pa_namespace("srv-wl-disable", "STRICT")
                + &pa_workload("srv-wl-disable", "server", "DISABLE", &[])),
        ),
        // Namespace DISABLE, workload STRICT: auto mTLS sends plaintext (C3 gotcha).
        server_in(
            "srv-wl-strict",
            true,
            &(pa_namespace("srv-wl-strict", "DISABLE")
                + &pa_workload("srv-wl-strict", "server", "STRICT", &[])),
        ),
        // Port-level: STRICT namespace, PERMISSIVE on 8080, DISABLE on 9000.
        server_in(
            "srv-port-open",
            true,
            &(pa_namespace("srv-port-open", "STRICT")
                + &pa_workload(
                    "srv-port-open",
                    "server",
                    "UNSET",
                    &[(8080, "PERMISSIVE"), (9000, "DISABLE")],
                )),
        ),
        // Port-level: PERMISSIVE namespace, STRICT on both container ports.
        server_in(
            "srv-port-strict",
            true,
            &(pa_namespace("srv-port-strict", "PERMISSIVE")
                + &pa_workload(
                    "srv-port-strict",
                    "server",
                    "UNSET",
                    &[(8080, "STRICT"), (9000, "STRICT")],
                )),
        ),
    ];
    let nss = [
        "srv-wl-disable",
        "srv-wl-strict",
        "srv-port-open",
        "srv-port-strict",
    ];
    let text = servers.concat() + &clients(&nss);
    let world = World::new(
        "transport: workload and port-level modes",
        &[("transport-b.yaml", &text)],
    )
    .probes(matrix(&nss));
    check(world).await;
}
