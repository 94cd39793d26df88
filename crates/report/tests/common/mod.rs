//! Inputs of the report tests: the built-in example and the upstream renders in
//! `../shared/upstream` (read from there, never copied into the repository).

#![allow(dead_code)]

use std::path::PathBuf;

use kfp_mesh_core::inventory::{Inventory, parse_stream};
use kfp_mesh_core::object::Object;
use kfp_mesh_kfp::check::{CheckOptions, Report, check};

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn upstream_dir() -> PathBuf {
    kfp_mesh_testdata::upstream_dir()
}

/// Where tests leave files for people to look at (`target/test-output/report`).
pub fn output_dir() -> PathBuf {
    let dir = repo_dir().join("target/test-output/report");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

pub fn read_upstream(file: &str) -> String {
    let path = upstream_dir().join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} is needed (an upstream fixture, see scripts/fetch-upstream): {e}",
            path.display()
        )
    })
}

pub const MESH_STRICT: &str = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
";

/// Objects of upstream renders plus extra YAML; the namespaces in `inject` get the label
/// `istio-injection: enabled` on their parsed Namespace object (as `kubectl label` would), or
/// a labelled Namespace is added when the render does not create it.
pub fn inventory(files: &[&str], extra: &str, inject: &[&str]) -> Inventory {
    let mut objects: Vec<Object> = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let text = read_upstream(f);
        let (o, e) = parse_stream(&format!("../shared/upstream/{f}"), &text);
        objects.extend(o);
        errors.extend(e);
    }
    if !extra.is_empty() {
        let (o, e) = parse_stream("<test>", extra);
        objects.extend(o);
        errors.extend(e);
    }
    for ns in inject {
        match objects
            .iter_mut()
            .find(|o| o.kind == "Namespace" && o.meta.name == *ns)
        {
            Some(o) => {
                o.meta.labels.insert("istio-injection", "enabled");
            }
            // The render does not create its namespace: add it, labelled.
            None => {
                let (o, e) = parse_stream(
                    "<test: kubectl label>",
                    &format!(
                        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{istio-injection: enabled}}}}\n"
                    ),
                );
                assert!(e.is_empty(), "{e:?}");
                objects.extend(o);
            }
        }
    }
    let inv = Inventory::from_objects(objects, errors);
    assert!(inv.errors.is_empty(), "{:?}", inv.errors);
    inv
}

/// kubeflow/pipelines#12015: KFP 2.5.0 single-user, `kubeflow` labelled for injection,
/// mesh-wide STRICT.
pub fn report_12015() -> Report {
    let inv = inventory(
        &["kfp-2.5.0-platform-agnostic.yaml"],
        MESH_STRICT,
        &["kubeflow"],
    );
    check(&inv, &CheckOptions::default())
}

/// The CLI's built-in example (`examples/kfp-2.5.0-single-user/strict.yaml`).
pub fn example_report() -> Report {
    let path = repo_dir().join("examples/kfp-2.5.0-single-user/strict.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let (objects, errors) = parse_stream("<example: kfp-2.5.0-single-user/strict.yaml>", &text);
    check(
        &Inventory::from_objects(objects, errors),
        &CheckOptions::default(),
    )
}

/// The named render sets of the upstream directory (files of each).
pub fn render_sets() -> Vec<(&'static str, Vec<String>)> {
    let mut sets: Vec<(&'static str, Vec<String>)> = vec![
        (
            "kfp-2.5.0-su",
            vec!["kfp-2.5.0-platform-agnostic.yaml".into()],
        ),
        (
            "kfp-2.5.0-mu",
            vec!["kfp-2.5.0-platform-agnostic-multi-user.yaml".into()],
        ),
        (
            "kfp-master-su",
            vec!["kfp-master-platform-agnostic.yaml".into()],
        ),
        (
            "kfp-master-mu",
            vec!["kfp-master-platform-agnostic-multi-user.yaml".into()],
        ),
        (
            "kfp-master-k8s-native",
            vec!["kfp-master-cert-manager-platform-agnostic-multi-user-k8s-native.yaml".into()],
        ),
    ];
    for (name, prefix) in [
        ("kubeflow-v1.10.1", "kubeflow-manifests-v1.10.1-"),
        ("kubeflow-master", "kubeflow-manifests-master-"),
    ] {
        let mut files: Vec<String> = std::fs::read_dir(upstream_dir())
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", upstream_dir().display()))
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix) && n.ends_with(".yaml"))
            .collect();
        files.sort();
        assert!(files.len() >= 6, "{name}: only {files:?}");
        sets.push((name, files));
    }
    sets
}

/// A render set, with or without mesh-wide STRICT.
pub fn render_report(files: &[String], strict: bool) -> Report {
    let names: Vec<&str> = files.iter().map(String::as_str).collect();
    let inv = inventory(&names, if strict { MESH_STRICT } else { "" }, &[]);
    check(&inv, &CheckOptions::default())
}

/// KFP 2.5.0 multi-user plus `n` profile namespaces, under mesh-wide STRICT.
pub fn profiles_report(n: usize) -> Report {
    let mut extra = String::from(MESH_STRICT);
    for i in 0..n {
        extra.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: profile-{i:04}\n  labels: {{pipelines.kubeflow.org/enabled: \"true\", istio-injection: enabled}}\n"
        ));
    }
    let inv = inventory(
        &["kfp-2.5.0-platform-agnostic-multi-user.yaml"],
        &extra,
        &[],
    );
    check(&inv, &CheckOptions::default())
}
