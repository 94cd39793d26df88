//! Flow map rendering for 1,000 profiles: the summarised map (profiles folded into one
//! region) of KFP 2.5.0 multi-user plus 1,000 profile namespaces.
//! Run: `cargo bench -p kfp-mesh-report --bench flowmap`. Figures: docs/performance.md.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use kfp_mesh_core::inventory::Inventory;
use kfp_mesh_kfp::check::{CheckOptions, Report, check};

/// The KFP 2.5.0 multi-user render plus `profiles` Namespaces labelled
/// `pipelines.kubeflow.org/enabled: "true"` (and for injection), under mesh-wide STRICT.
fn input(profiles: usize) -> String {
    let path = kfp_mesh_testdata::upstream("kfp-2.5.0-platform-agnostic-multi-user.yaml");
    let mut s = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} is needed (an upstream fixture, see scripts/fetch-upstream): {e}",
            path.display()
        )
    });
    s.push_str("\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n");
    for i in 0..profiles {
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: profile-{i:04}\n  labels: {{pipelines.kubeflow.org/enabled: \"true\", istio-injection: enabled}}\n"
        ));
    }
    s
}

fn report(profiles: usize) -> Report {
    let text = input(profiles);
    let inv = Inventory::from_sources([("kfp-2.5.0-mu-1000.yaml", text.as_str())]);
    check(&inv, &CheckOptions::default())
}

fn benches(c: &mut Criterion) {
    let started = Instant::now();
    let r = report(1000);
    eprintln!(
        "flowmap: check over 1,000 profiles: {} flows, {} findings in {:.2?}",
        r.flows.len(),
        r.findings.len(),
        started.elapsed()
    );
    assert!(r.flows.len() > 10_000, "{} flows", r.flows.len());
    let started = Instant::now();
    let html = kfp_mesh_report::html(&r);
    let once = started.elapsed();
    eprintln!(
        "flowmap: html for 1,000 profiles: {} bytes ({:.2} MB) in {once:.2?} (first run)",
        html.len(),
        html.len() as f64 / 1e6
    );
    assert!(html.contains("1000 profile namespaces (folded)"));
    assert!(html.len() < 20_000_000, "{} bytes", html.len());
    assert!(once.as_secs_f64() < 2.0, "{once:?}");

    let mut group = c.benchmark_group("flowmap");
    group.sample_size(20);
    group.bench_function("html_1000_profiles", |b| {
        b.iter(|| black_box(kfp_mesh_report::html(black_box(&r))).len())
    });
    group.bench_function("dot_1000_profiles", |b| {
        b.iter(|| black_box(kfp_mesh_report::dot(black_box(&r))).len())
    });
    group.bench_function("mermaid_1000_profiles", |b| {
        b.iter(|| black_box(kfp_mesh_report::mermaid(black_box(&r))).len())
    });
    group.finish();
}

criterion_group!(flowmap, benches);
criterion_main!(flowmap);
