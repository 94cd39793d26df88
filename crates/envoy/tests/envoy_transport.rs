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

/// `istio-semantics.md` C5 and C4 on TCP: a client sidecar's TCP proxy has no HTTP status to
/// answer with. A pod IP goes through PassthroughCluster (a TCP proxy, plaintext); under
/// STRICT the server's listener finds no filter chain and the application sees a reset, not a
/// 503 (the authz-tcp task's port 9002 "connection fails"). Only where a Service declares the
/// port number as HTTP does the client sidecar's `0.0.0.0:<port>` HTTP listener take the
/// request and answer 503 itself.
#[tokio::test]
async fn envoy_transport_passthrough_and_tcp_failures() {
    let text = server_in("srv-strict", true, &pa_namespace("srv-strict", "STRICT"))
        + &server_in(
            "srv-permissive",
            true,
            &pa_namespace("srv-permissive", "PERMISSIVE"),
        )
        + &clients(&["srv-strict"]);
    let world = World::new(
        "transport: pod IP passthrough",
        &[("passthrough.yaml", &text)],
    )
    .probe_pod("c-none/app", "srv-strict/server:9000", Req::Tcp)
    .probe_pod("c-none/app", "srv-strict/server:8080", Req::get("/"))
    .probe_pod("c-disable/app", "srv-strict/server:9000", Req::Tcp)
    .probe_pod(PLAIN_CLIENT, "srv-strict/server:9000", Req::Tcp)
    .probe_pod("c-none/app", "srv-permissive/server:9000", Req::Tcp)
    .probe_pod("c-none/app", "srv-permissive/server:8080", Req::get("/"))
    // Through the Service instead: mTLS, allowed.
    .probe("c-none/app", "srv-strict/server:9000", Req::Tcp)
    // A DestinationRule DISABLE toward STRICT on the TCP port: the reset is passed on.
    .probe("c-disable/app", "srv-strict/server:9000", Req::Tcp);
    check(world).await;

    // A Service somewhere declares port 8080 as HTTP: the client sidecar's 0.0.0.0:8080 HTTP
    // listener routes the pod IP to PassthroughCluster and answers 503 itself.
    let http_8080 = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: legacy\nspec:\n  selector:\n    app: nothing\n  ports:\n  - name: http\n    port: 8080\n---\n";
    let world = World::new(
        "transport: pod IP on a port some Service declares HTTP",
        &[("passthrough-http.yaml", &(text + http_8080))],
    )
    .probe_pod("c-none/app", "srv-strict/server:8080", Req::get("/"))
    .probe_pod("c-none/app", "srv-strict/server:9000", Req::Tcp);
    check(world).await;
}

/// Connect-only probes (`nc -z`, e.g. KFP's `wait-for-*` init containers): the client's own
/// sidecar accepts the connection before it contacts the server, and a server sidecar accepts
/// before it can choose a filter chain, so the probe connects where the real call after it is
/// reset or denied. Each probe is paired with the call it stands for.
#[tokio::test]
async fn envoy_transport_connect_only_probes() {
    let allow_c_none = policy(
        "srv-strict",
        "allow-c-none",
        "server",
        "  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/c-none/sa/app\", \"cluster.local/ns/c-disable/sa/app\"]\n",
    );
    let text = server_in(
        "srv-strict",
        true,
        &(pa_namespace("srv-strict", "STRICT") + &allow_c_none),
    ) + &server_in("srv-plain", false, "")
        + &clients(&["srv-strict"]);
    let mut world = World::new("transport: connect-only probes", &[("probes.yaml", &text)]);
    for (from, to, pod) in [
        // the real call: allow (mTLS)
        ("c-none/app", "srv-strict/server:9000", false),
        // the real call: reset (DestinationRule DISABLE toward STRICT)
        ("c-disable/app", "srv-strict/server:9000", false),
        // the real call: deny (not in the ALLOW policy)
        ("c-mutual/app", "srv-strict/server:9000", false),
        // the real call: reset (plaintext into STRICT)
        (PLAIN_CLIENT, "srv-strict/server:9000", false),
        // the real call: reset (pod IP through PassthroughCluster)
        ("c-none/app", "srv-strict/server:9000", true),
        // the real call: allow (no sidecar on either side)
        (PLAIN_CLIENT, "srv-plain/server:9000", false),
    ] {
        for req in [Req::Connect, Req::Tcp] {
            world = if pod {
                world.probe_pod(from, to, req)
            } else {
                world.probe(from, to, req)
            };
        }
    }
    let report = check(world).await;
    let real: Vec<_> = report
        .results
        .iter()
        .filter_map(|r| r.observed.outcome)
        .collect();
    assert!(
        real.iter()
            .any(|o| *o != kfp_mesh_core::connection::Outcome::Allow),
        "the world must hold calls that fail behind a probe that connects: {real:?}"
    );
}
