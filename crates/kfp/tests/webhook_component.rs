//! The driver-webhook component, rendered with real `kubectl kustomize`, next to a real KFP
//! render under STRICT: `check` sees the webhook, models its mutation on the run pods, and
//! reports nothing about the webhook itself.

mod common;

use std::path::PathBuf;
use std::process::Command;

use kfp_mesh_core::connection::{Outcome, Transport};
use kfp_mesh_core::inventory::{Inventory, parse_stream};
use kfp_mesh_kfp::check::{CheckOptions, check};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kustomize(dir: &str) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join(dir))
        .output()
        .unwrap_or_else(|e| panic!("kubectl is required for this test (kubectl kustomize): {e}"));
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn check_models_the_webhook_and_reports_nothing_about_it() {
    let webhook = kustomize("manifests/tests/driver-webhook");
    let kfp = common::read("kfp-2.5.0-platform-agnostic.yaml");
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in [
        ("kfp.yaml", kfp.as_str()),
        ("webhook.yaml", webhook.as_str()),
        (
            "strict.yaml",
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n",
        ),
    ] {
        let (o, e) = parse_stream(name, text);
        objects.extend(o);
        errors.extend(e);
    }
    // `kubectl label namespace kubeflow istio-injection=enabled` (the render has no Namespace).
    assert!(
        !objects
            .iter()
            .any(|o| o.kind == "Namespace" && o.meta.name == "kubeflow")
    );
    let (ns, _) = parse_stream(
        "namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: kubeflow, labels: {istio-injection: enabled}}\n",
    );
    objects.extend(ns);
    let inv = Inventory::from_objects(objects, errors);
    assert!(inv.errors.is_empty(), "{:?}", inv.errors);
    let r = check(&inv, &CheckOptions::default());

    let about_webhook: Vec<_> = r
        .findings
        .iter()
        .filter(|f| {
            f.file.as_deref() == Some("webhook.yaml")
                || f.object
                    .as_ref()
                    .is_some_and(|o| o.namespace.as_deref() == Some("kfp-mesh-system"))
        })
        .collect();
    assert!(about_webhook.is_empty(), "{about_webhook:#?}");
    assert!(!r.findings.iter().any(|f| f.code == "KM011"));

    // The default configuration puts driver pods into the mesh: their flows now use mTLS.
    for id in [
        "driver-to-mlmd",
        "driver-to-api-server",
        "driver-wait-to-object-store",
    ] {
        for f in r.flows_named(id) {
            assert_eq!(
                (f.outcome, f.transport),
                (Outcome::Allow, Some(Transport::Mtls)),
                "{}: {:?}",
                f.id,
                f.fix
            );
        }
    }
    // Executors are not covered by the default configuration: still reset under STRICT.
    for f in r.flows_named("executor-to-mlmd") {
        assert_eq!(f.outcome, Outcome::Reset, "{}", f.id);
    }
}
