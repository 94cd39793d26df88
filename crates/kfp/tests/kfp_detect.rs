//! Detection over the real upstream renders in ../shared/upstream.

mod common;

use kfp_mesh_core::model::IntOrString;
use kfp_mesh_kfp::detect::{
    Database, DetectOptions, EXAMPLE_PROFILE, KfpFacts, Mode, ObjectStore, Version, detect,
};

fn facts(render: &str) -> KfpFacts {
    detect(&common::inventory(render), &DetectOptions::default())
}

struct Expected {
    release: Version,
    master: bool,
    mode: Mode,
    store: ObjectStore,
    store_service: &'static str,
    target: i64,
    cache_config: Option<&'static str>,
    cache_deployer: bool,
    k8s_native: bool,
    gateway: bool,
    artifact_proxy: bool,
}

fn check(render: &str, e: Expected) {
    let f = facts(render);
    assert!(f.detected, "{render}");
    assert_eq!(f.namespace.value, "kubeflow", "{render}");
    assert_eq!(
        f.namespace.evidence[0]
            .object
            .as_ref()
            .map(|o| o.to_string()),
        Some("Deployment kubeflow/ml-pipeline".to_string()),
        "{render}"
    );
    assert_eq!(f.version.release, Some(e.release), "{render}");
    assert_eq!(f.version.master_features, e.master, "{render}");
    assert_eq!(f.driver_pod_config.supported, e.master, "{render}");
    assert_eq!(f.mode.value, e.mode, "{render}");
    let db = f
        .database
        .as_ref()
        .unwrap_or_else(|| panic!("{render}: no database"));
    assert_eq!(
        (db.kind, db.service.as_deref(), db.port),
        (Database::Mysql, Some("mysql"), 3306),
        "{render}"
    );
    let os = f
        .object_store
        .as_ref()
        .unwrap_or_else(|| panic!("{render}: no object store"));
    assert_eq!(
        (os.kind, os.service.as_str(), os.port),
        (e.store, e.store_service, 9000),
        "{render}"
    );
    assert_eq!(os.target_port, Some(IntOrString::Int(e.target)), "{render}");
    let cache = f
        .cache_webhook
        .as_ref()
        .unwrap_or_else(|| panic!("{render}: no cache webhook"));
    assert_eq!(
        (cache.service.as_str(), cache.port),
        ("cache-server", 443),
        "{render}"
    );
    assert_eq!(
        cache.target_port,
        Some(IntOrString::String("webhook-api".into())),
        "{render}"
    );
    assert_eq!(
        cache.configuration.as_ref().map(|c| c.object.name.as_str()),
        e.cache_config,
        "{render}"
    );
    assert_eq!(cache.created_by.is_some(), e.cache_deployer, "{render}");
    assert_eq!(cache.failure_policy.as_deref(), Some("Ignore"), "{render}");
    assert_eq!(f.k8s_native.is_some(), e.k8s_native, "{render}");
    assert_eq!(
        f.ingress_gateway
            .as_ref()
            .map(|g| (g.namespace.as_str(), g.service_account.as_str())),
        e.gateway
            .then_some(("istio-system", "istio-ingressgateway-service-account")),
        "{render}"
    );
    assert_eq!(f.artifact_proxy.value, e.artifact_proxy, "{render}");
    if e.mode == Mode::SingleUser {
        assert!(f.profiles.is_empty(), "{render}");
        assert_eq!(f.run_service_account.value, "pipeline-runner", "{render}");
        assert_eq!(f.run_namespaces(), ["kubeflow"], "{render}");
        assert!(f.kfp_profile_controller.is_none(), "{render}");
    } else {
        assert_eq!(f.run_service_account.value, "default-editor", "{render}");
        assert_eq!(f.profiles.len(), 1, "{render}");
        let p = &f.profiles[0];
        assert_eq!(
            (p.name.as_str(), p.synthetic, p.namespace_in_input),
            (EXAMPLE_PROFILE, true, false)
        );
        assert_eq!(
            p.labels.get("istio-injection").map(String::as_str),
            Some("enabled")
        );
        assert_eq!(
            p.labels
                .get("pipelines.kubeflow.org/enabled")
                .map(String::as_str),
            Some("true")
        );
        assert_eq!(
            p.labels
                .get("app.kubernetes.io/part-of")
                .map(String::as_str),
            Some("kubeflow-profile")
        );
        assert_eq!(f.run_namespaces(), [EXAMPLE_PROFILE], "{render}");
        assert!(f.kfp_profile_controller.is_some(), "{render}");
    }
    // The facts are printed as JSON.
    let json = serde_json::to_value(&f).unwrap_or_else(|e| panic!("{render}: {e}"));
    assert_eq!(json["mode"]["value"], e.mode.as_str(), "{render}");
    assert_eq!(
        json["version"]["release"],
        e.release.to_string(),
        "{render}"
    );
}

#[test]
fn kfp_2_5_0_single_user() {
    check(
        "kfp-2.5.0-su",
        Expected {
            release: Version::new(2, 5, 0),
            master: false,
            mode: Mode::SingleUser,
            store: ObjectStore::Minio,
            store_service: "minio-service",
            target: 9000,
            cache_config: None,
            cache_deployer: true,
            k8s_native: false,
            gateway: false,
            artifact_proxy: false,
        },
    );
    let f = facts("kfp-2.5.0-su");
    assert_eq!(f.version.display, "2.5.0");
    assert_eq!(f.images.driver.value, "ghcr.io/kubeflow/kfp-driver:2.5.0");
    assert_eq!(f.images.argoexec.value, "quay.io/argoproj/argoexec:v3.5.14");
}

#[test]
fn kfp_2_5_0_multi_user() {
    check(
        "kfp-2.5.0-mu",
        Expected {
            release: Version::new(2, 5, 0),
            master: false,
            mode: Mode::MultiUser,
            store: ObjectStore::Minio,
            store_service: "minio-service",
            target: 9000,
            cache_config: None,
            cache_deployer: true,
            k8s_native: false,
            gateway: false,
            artifact_proxy: true,
        },
    );
}

#[test]
fn kfp_master_single_user() {
    check(
        "kfp-master-su",
        Expected {
            release: Version::new(2, 17, 0),
            master: true,
            mode: Mode::SingleUser,
            store: ObjectStore::Seaweedfs,
            store_service: "seaweedfs",
            target: 8333,
            cache_config: None,
            cache_deployer: true,
            k8s_native: false,
            gateway: false,
            artifact_proxy: false,
        },
    );
    let f = facts("kfp-master-su");
    assert_eq!(f.version.effective, Some(Version::new(2, 18, 0)));
    assert!(
        f.version.display.starts_with("master"),
        "{}",
        f.version.display
    );
    let os = f
        .object_store
        .as_ref()
        .map(|o| (o.port_name.clone(), o.argo_artifact_endpoint.clone()));
    assert_eq!(
        os,
        Some((
            Some("http-s3-compat".into()),
            Some("seaweedfs.kubeflow.svc:9000".into())
        ))
    );
    // Keys present but empty: supported, nothing set.
    assert!(f.driver_pod_config.labels.is_empty() && f.driver_pod_config.annotations.is_empty());
}

#[test]
fn kfp_master_multi_user() {
    check(
        "kfp-master-mu",
        Expected {
            release: Version::new(2, 17, 0),
            master: true,
            mode: Mode::MultiUser,
            store: ObjectStore::Seaweedfs,
            store_service: "seaweedfs",
            target: 8333,
            cache_config: None,
            cache_deployer: true,
            k8s_native: false,
            gateway: false,
            artifact_proxy: false,
        },
    );
}

#[test]
fn kfp_master_cert_manager_k8s_native() {
    check(
        "kfp-master-k8s-native",
        Expected {
            release: Version::new(2, 17, 0),
            master: true,
            mode: Mode::MultiUser,
            store: ObjectStore::Seaweedfs,
            store_service: "seaweedfs",
            target: 8333,
            cache_config: Some("cache-webhook-kubeflow"),
            cache_deployer: false,
            k8s_native: true,
            gateway: false,
            artifact_proxy: false,
        },
    );
    let f = facts("kfp-master-k8s-native");
    let n = f
        .k8s_native
        .as_ref()
        .unwrap_or_else(|| panic!("no k8s-native"));
    assert_eq!(
        (n.service.as_str(), n.port, n.failure_policy.as_deref()),
        ("ml-pipeline", 8443, Some("Fail"))
    );
    let kinds: Vec<String> = n
        .configurations
        .iter()
        .map(|c| c.object.to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "MutatingWebhookConfiguration pipelineversions.pipelines.kubeflow.org",
            "ValidatingWebhookConfiguration pipelineversions.pipelines.kubeflow.org",
        ]
    );
    assert!(
        n.evidence
            .iter()
            .any(|e| e.detail.contains("--pipelinesStoreKubernetes=true"))
    );
}

#[test]
fn kubeflow_v1_10_1_platform() {
    check(
        "kubeflow-v1.10.1",
        Expected {
            release: Version::new(2, 5, 0),
            master: false,
            mode: Mode::Platform,
            store: ObjectStore::Minio,
            store_service: "minio-service",
            target: 9000,
            cache_config: Some("cache-webhook-kubeflow"),
            cache_deployer: false,
            k8s_native: false,
            gateway: true,
            artifact_proxy: true,
        },
    );
    let f = facts("kubeflow-v1.10.1");
    let platform: Vec<&str> = f.mode.evidence.iter().map(|e| e.detail.as_str()).collect();
    assert!(
        platform.contains(&"Kubeflow profile controller"),
        "{platform:?}"
    );
    assert!(platform.contains(&"Kubeflow gateway"), "{platform:?}");
    // The namespace-labels ConfigMap of the profiles render is what labels the example profile.
    let p = &f.profiles[0];
    assert_eq!(
        p.labels
            .get("katib.kubeflow.org/metrics-collector-injection")
            .map(String::as_str),
        Some("enabled")
    );
}

#[test]
fn kubeflow_master_platform() {
    check(
        "kubeflow-master",
        Expected {
            release: Version::new(2, 16, 0),
            master: false,
            mode: Mode::Platform,
            store: ObjectStore::Seaweedfs,
            store_service: "seaweedfs",
            target: 8333,
            cache_config: Some("cache-webhook-kubeflow"),
            cache_deployer: false,
            k8s_native: false,
            gateway: true,
            artifact_proxy: false,
        },
    );
    let f = facts("kubeflow-master");
    assert_eq!(
        f.profiles[0]
            .labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("baseline")
    );
}

#[test]
fn options_and_profiles() {
    let extra = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: team-a
  labels: {pipelines.kubeflow.org/enabled: "true", istio-injection: enabled}
---
apiVersion: kubeflow.org/v1
kind: Profile
metadata: {name: team-b}
spec: {owner: {kind: User, name: b@example.com}}
"#;
    let inv = common::inventory_with("kfp-master-mu", extra);
    let f = detect(
        &inv,
        &DetectOptions {
            kfp_namespace: None,
            profiles: vec!["team-c".into(), "team-a".into()],
        },
    );
    let names: Vec<(&str, bool, bool)> = f
        .profiles
        .iter()
        .map(|p| (p.name.as_str(), p.synthetic, p.namespace_in_input))
        .collect();
    assert_eq!(
        names,
        [
            ("team-a", false, true),
            ("team-b", false, false),
            ("team-c", false, false)
        ]
    );
    assert_eq!(
        f.profile("team-b").and_then(|p| p.owner.as_deref()),
        Some("b@example.com")
    );
    assert_eq!(f.profile("team-a").map(|p| p.evidence.len()), Some(2));
    // A Profile object makes this a Kubeflow platform.
    assert_eq!(f.mode.value, Mode::Platform);

    let f = detect(
        &common::inventory("kfp-2.5.0-su"),
        &DetectOptions {
            kfp_namespace: Some("pipelines".into()),
            profiles: vec![],
        },
    );
    assert_eq!(f.namespace.value, "pipelines");
    assert!(
        !f.detected,
        "nothing of KFP lives in the overridden namespace"
    );
}

#[test]
fn driver_pod_config_values_are_read() {
    let text = common::read("kfp-master-platform-agnostic.yaml").replace(
        "  DRIVER_POD_LABELS: \"\"",
        "  DRIVER_POD_LABELS: '{\"sidecar.istio.io/inject\":\"true\",\"pipelines.kubeflow.org/x\":\"y\"}'",
    );
    assert_ne!(
        text,
        common::read("kfp-master-platform-agnostic.yaml"),
        "the patch applied"
    );
    let inv = kfp_mesh_core::inventory::Inventory::from_sources([("patched", text.as_str())]);
    let f = detect(&inv, &DetectOptions::default());
    assert_eq!(
        f.driver_pod_config
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
        ["sidecar.istio.io/inject=true"],
        "reserved pipelines.kubeflow.org/ keys are dropped"
    );
    let bad = common::read("kfp-master-platform-agnostic.yaml").replace(
        "  DRIVER_POD_ANNOTATIONS: \"\"",
        "  DRIVER_POD_ANNOTATIONS: '{\"a\": true}'",
    );
    let inv = kfp_mesh_core::inventory::Inventory::from_sources([("patched", bad.as_str())]);
    let f = detect(&inv, &DetectOptions::default());
    assert_eq!(
        f.driver_pod_config.errors.len(),
        1,
        "{:?}",
        f.driver_pod_config.errors
    );
}

#[test]
fn empty_input_is_not_kfp() {
    let inv = kfp_mesh_core::inventory::Inventory::from_sources([(
        "x",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
    )]);
    let f = detect(&inv, &DetectOptions::default());
    assert!(!f.detected);
    assert_eq!(f.version.effective, None);
    assert_eq!(f.version.display, "unknown");
    assert_eq!(f.mode.value, Mode::SingleUser);
    assert!(f.object_store.is_none() && f.database.is_none() && f.cache_webhook.is_none());
}
