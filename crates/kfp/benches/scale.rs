//! `kfp-mesh check` at Kubeflow scale: the Kubeflow v1.10.1 platform renders plus N generated
//! profile namespaces (`kfp_mesh_testdata::profiles`: the objects Kubeflow and KFP put there, a
//! notebook and the pods of recent runs: 49 objects a profile), for N = 100, 1,000, 5,000.
//!
//! Run: `cargo bench -p kfp-mesh-kfp --bench scale` (prints load and check times per N and the
//! peak resident memory; figures in docs/performance.md). `KFP_MESH_SCALE=100,1000` picks the
//! sizes; `KFP_MESH_SCALE_OUT=DIR` also writes each generated input to `DIR/profiles-N.yaml`;
//! `KFP_MESH_SCALE_PODS=M` sets the run pods per profile (default 20).

use std::time::Instant;

use kfp_mesh_core::inventory::{Inventory, parse_stream};
use kfp_mesh_kfp::check::{CheckOptions, Explanations, check_owned};
use kfp_mesh_testdata::profiles::{DEFAULT_PODS, profiles};

const KFM_V1_10_1: &[&str] = &[
    "kubeflow-manifests-v1.10.1-pipeline.yaml",
    "kubeflow-manifests-v1.10.1-istio-1-24-install-oauth2-proxy.yaml",
    "kubeflow-manifests-v1.10.1-istio-1-24-namespace.yaml",
    "kubeflow-manifests-v1.10.1-kubeflow-istio-resources.yaml",
    "kubeflow-manifests-v1.10.1-kubeflow-namespace.yaml",
    "kubeflow-manifests-v1.10.1-networkpolicies.yaml",
    "kubeflow-manifests-v1.10.1-profiles-kubeflow.yaml",
];

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: then only smoke-test.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = match std::env::var("KFP_MESH_SCALE") {
        Ok(v) => v.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
        Err(_) if smoke => vec![5],
        Err(_) => vec![100, 1000, 5000],
    };
    // `KFP_MESH_SCALE_PODS=M`: run pods per profile.
    let pods = std::env::var("KFP_MESH_SCALE_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_PODS);
    let shared = kfp_mesh_testdata::upstream_dir();
    let mut base = Vec::new();
    for f in KFM_V1_10_1 {
        let path = shared.join(f);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (an upstream fixture, see scripts/fetch-upstream)",
                path.display()
            )
        });
        base.push((path.display().to_string(), text));
    }
    // `KFP_MESH_EXPLANATIONS=cause` keeps only the cause of each flow that does not succeed, as
    // `kfp-mesh check`'s table output does; the default keeps every step (JSON, SARIF, HTML).
    let options = CheckOptions {
        explanations: match std::env::var("KFP_MESH_EXPLANATIONS").as_deref() {
            Ok("cause") => Explanations::Cause,
            _ => Explanations::Full,
        },
        ..CheckOptions::default()
    };
    println!("explanations: {:?}", options.explanations);
    println!("profiles  objects  load_s  check_s  flows  findings  peak_rss_mib");
    for n in sizes {
        let generated = profiles(n, pods);
        // `KFP_MESH_SCALE_OUT=DIR` writes the generated profiles, to time `kfp-mesh check` itself.
        if let Ok(dir) = std::env::var("KFP_MESH_SCALE_OUT") {
            let path = std::path::Path::new(&dir).join(format!("profiles-{n}.yaml"));
            std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        let start = Instant::now();
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        for (name, text) in base
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .chain([("profiles.yaml", generated.as_str())])
        {
            let (o, e) = parse_stream(name, text);
            objects.extend(o);
            errors.extend(e);
        }
        let inv = Inventory::from_objects(objects, errors);
        let load = start.elapsed().as_secs_f64();
        assert!(inv.errors.is_empty(), "{:?}", inv.errors.first());
        let objects = inv.objects.len();
        let start = Instant::now();
        let report = check_owned(inv, &options);
        let checked = start.elapsed().as_secs_f64();
        assert_eq!(
            report.kfp.profiles.len(),
            n,
            "every generated profile is found"
        );
        println!(
            "{n:>8}  {:>7}  {load:>6.2}  {checked:>7.2}  {:>5}  {:>8}  {:>12.0}",
            objects,
            report.flows.len(),
            report.findings.len(),
            peak_rss_mib().unwrap_or(0.0)
        );
    }
}

// The allocator of the `kfp-mesh` binary, so the figures are the command's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
