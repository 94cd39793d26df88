//! Tests of the harness itself: a wrong prediction fails with a readable diff and the Envoy
//! logs, and the server sidecars really validate client certificates against the mesh CA.

mod common;
mod support;

use common::*;
use kfp_mesh_core::connection::Outcome;
use support::world::{Req, World, run};

/// A STRICT server and a sidecar client: the engine predicts `allow (mtls)`.
fn strict_world(name: &str) -> World {
    let text = namespace("shop", true)
        + &pa_namespace("shop", "STRICT")
        + &server("shop", "api")
        + &workload("shop", "web", "web", &[], None);
    World::new(name, &[("strict.yaml", &text)]).probe("shop/web", "shop/api:8000", Req::get("/"))
}

/// The acceptance check "a deliberately wrong prediction fails": flip one expectation and the
/// comparison panics with the diff.
#[tokio::test]
#[should_panic(expected = "prediction != observation for 1 of 1 probes")]
async fn envoy_harness_flipped_expectation_fails() {
    let mut report = run(strict_world("flipped expectation"))
        .await
        .expect("the world runs");
    report.flip_prediction(0, Outcome::Deny);
    report.assert_agrees();
}

/// What that failure says: predicted vs observed, the evidence, the engine's explanation, the
/// lowering and the logs of the Envoys the probe went through.
#[tokio::test]
async fn envoy_harness_diff_is_readable() {
    let mut report = run(strict_world("readable diff"))
        .await
        .expect("the world runs");
    assert!(report.diff().is_none(), "{:?}", report.diff());
    report.flip_prediction(0, Outcome::Deny);
    let diff = report.diff().expect("a flipped prediction disagrees");
    println!("{diff}");
    for needle in [
        "✗ shop/web -> shop/api:8000 HTTP GET /",
        "predicted (kfp-mesh): deny",
        "observed  (Envoy)   : allow (mtls)",
        "evidence: HTTP 200 from the echo (caller: spiffe://cluster.local/ns/shop/sa/web)",
        "engine explanation:",
        "[B3]",
        "lowering:",
        "effective mode STRICT on container port 8080",
        "originates Istio mTLS",
        "===== Envoy logs of the proxies involved =====",
        "-- client-shop-web (pid",
        "-- server-shop-api (pid",
        "chain=inbound|8080|mtls-http",
    ] {
        assert!(diff.contains(needle), "the diff lacks {needle:?}:\n{diff}");
    }
}

/// A client sidecar whose certificate claims its own identity but comes from a CA the mesh
/// does not trust is rejected by the server's TLS chain: the client sidecar answers 503 (HTTP)
/// or closes (TCP). kfp-mesh assumes mesh-issued certificates, so it predicts `allow`; this
/// checks the harness validates certificates, it is not a prediction.
#[tokio::test]
async fn envoy_harness_rogue_ca_is_rejected() {
    let text = namespace("shop", true)
        + &pa_namespace("shop", "STRICT")
        + &server("shop", "api")
        + &workload("shop", "web", "web", &[], None)
        + &workload("shop", "evil", "web", &[], None);
    let world = World::new("rogue CA", &[("rogue.yaml", &text)])
        .probe("shop/web", "shop/api:8000", Req::get("/"))
        .probe("shop/evil", "shop/api:8000", Req::get("/"))
        .probe("shop/evil", "shop/api:9000", Req::Tcp)
        .rogue_client("shop/evil");
    let report = run(world).await.expect("the world runs");
    println!("{}", report.table());
    let outcomes: Vec<Option<Outcome>> =
        report.results.iter().map(|r| r.observed.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            Some(Outcome::Allow),
            Some(Outcome::UpstreamFailure),
            Some(Outcome::UpstreamFailure)
        ],
        "{}",
        report
            .results
            .iter()
            .map(|r| format!("{}: {}", r.name, r.evidence))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for r in &report.results[1..] {
        assert!(
            r.evidence.contains("ssl.fail_verify_error")
                || r.evidence.contains("ssl.connection_error"),
            "the server sidecar counts a certificate verification failure: {}",
            r.evidence
        );
    }
}
