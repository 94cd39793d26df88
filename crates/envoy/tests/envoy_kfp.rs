//! KFP on real Envoys, with the identities and policies of the real upstream render
//! (`../shared/upstream`: Kubeflow manifests master — KFP pipeline overlays, the Istio install
//! with `global-deny-all` and the `Sidecar` egress defaults, the `kubeflow` namespace) plus a
//! mesh-wide STRICT PeerAuthentication (neither KFP nor Kubeflow ships one):
//!
//! * before the kfp-mesh mutation, a driver pod (KFP stamps `sidecar.istio.io/inject: "false"`)
//!   has no sidecar: its `wait` container's `main.log` upload to the object store (SeaweedFS,
//!   :9000) and its call to MLMD (`metadata-grpc-service`, :8080) are reset;
//! * after the mutation (the real `kfp-mesh-kfp` mutation applied to the pod), the same calls
//!   go through its sidecar with mTLS and are allowed;
//! * an identity the policies do not expect is denied: the driver against the upstream MySQL
//!   policy, and a notebook against a least-privilege object-store policy (the upstream
//!   `seaweedfs-service` policy without its allow-all `{}` rule, which STRICT makes
//!   unnecessary).

mod common;
mod support;

use kfp_mesh_kfp::mutation::{MutationConfig, Role, apply_to_pod_parts, pod_role};
use serde_json::Value;
use support::world::{Req, World, check};

const NAMESPACES: &str = "kubeflow-manifests-master-kubeflow-namespace.yaml";
const PIPELINE: &str = "kubeflow-manifests-master-pipeline-overlays.yaml";
const ISTIO: &str = "kubeflow-manifests-master-istio-install-oauth2-proxy.yaml";

const MESH_STRICT: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: istio-system\nspec:\n  mtls:\n    mode: STRICT\n";

const DRIVER_BEFORE: &str = "kubeflow/hello-world-7x2kq-system-container-driver-1";
const DRIVER_AFTER: &str = "kubeflow/hello-world-7x2kq-system-container-driver-2";
const NOTEBOOK: &str = "kubeflow-user-example-com/my-notebook";

/// A KFP driver pod as Argo creates it from the KFP-compiled workflow.
fn driver_pod(name: &str) -> Value {
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: kubeflow
  labels:
    pipelines.kubeflow.org/v2_component: "true"
    workflows.argoproj.io/workflow: hello-world-7x2kq
  annotations:
    sidecar.istio.io/inject: "false"
    workflows.argoproj.io/node-name: hello-world-7x2kq.system-container-driver
spec:
  serviceAccountName: pipeline-runner
  containers:
  - name: wait
    image: quay.io/argoproj/argoexec:v3.7.3
  - name: main
    image: ghcr.io/kubeflow/kfp-driver:2.16.0
    command: ["driver"]
"#
    );
    let (objects, errors) = kfp_mesh_core::inventory::parse_stream("driver.yaml", &yaml);
    assert!(errors.is_empty(), "driver pod: {errors:?}");
    objects
        .into_iter()
        .next()
        .map(|o| o.value())
        .expect("one driver pod")
}

/// The driver pod after the kfp-mesh mutation (the same function the webhook applies).
fn mutated_driver_pod(name: &str) -> Value {
    let mut pod = driver_pod(name);
    assert_eq!(pod_role(&pod), Some(Role::Driver), "the pod is a driver");
    let changes = apply_to_pod_parts(
        Role::Driver,
        &mut pod["metadata"],
        None,
        &MutationConfig::default(),
    )
    .expect("mutation applies");
    assert!(!changes.is_empty(), "the mutation changes the driver pod");
    pod
}

const NOTEBOOK_YAML: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: kubeflow-user-example-com
  labels:
    app.kubernetes.io/part-of: kubeflow-profile
    istio-injection: enabled
---
apiVersion: v1
kind: Pod
metadata:
  name: my-notebook
  namespace: kubeflow-user-example-com
  labels:
    app: my-notebook
spec:
  serviceAccountName: default-editor
  containers:
  - name: notebook
    image: kubeflownotebookswg/jupyter-scipy
"#;

const LEAST_PRIVILEGE_OBJECT_STORE: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: seaweedfs-service
  namespace: kubeflow
spec:
  selector:
    matchLabels:
      app: seaweedfs
  action: ALLOW
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/kubeflow/sa/ml-pipeline
        - cluster.local/ns/kubeflow/sa/ml-pipeline-ui
        - cluster.local/ns/kubeflow/sa/pipeline-runner
"#;

fn read(file: &str) -> String {
    kfp_mesh_testdata::read_upstream(file)
}

fn upstream_world(name: &str, extra: &[(&str, String)]) -> World {
    let namespaces = read(NAMESPACES);
    let pipeline = read(PIPELINE);
    let istio = read(ISTIO);
    let mut sources: Vec<(&str, &str)> = vec![
        (NAMESPACES, namespaces.as_str()),
        (PIPELINE, pipeline.as_str()),
        (ISTIO, istio.as_str()),
        ("mesh-strict.yaml", MESH_STRICT),
    ];
    for (n, t) in extra {
        sources.push((n, t.as_str()));
    }
    // The namespace render also carries NetworkPolicies; the harness does not emulate
    // Kubernetes networking, so only its Namespaces are kept.
    World::new(name, &sources).only_kind_from(NAMESPACES, "Namespace")
}

fn upload() -> Req {
    Req::http(
        "PUT",
        "/mlpipeline/artifacts/hello-world-7x2kq/hello-world-7x2kq-system-container-driver/main.log",
        &[("content-type", "application/octet-stream")],
    )
}

fn mlmd() -> Req {
    Req::http(
        "POST",
        "/ml_metadata.MetadataStoreService/GetContextByTypeAndName",
        &[("content-type", "application/grpc"), ("te", "trailers")],
    )
}

#[tokio::test]
async fn envoy_kfp_driver_before_and_after_the_mutation() {
    let before = serde_json::to_string(&driver_pod("hello-world-7x2kq-system-container-driver-1"))
        .expect("json");
    let after = serde_json::to_string(&mutated_driver_pod(
        "hello-world-7x2kq-system-container-driver-2",
    ))
    .expect("json");
    let world = upstream_world(
        "kfp: driver before/after the kfp-mesh mutation (upstream render, STRICT)",
        &[("driver-before.json", before), ("driver-after.json", after)],
    )
    // before: no sidecar, plaintext into STRICT: reset
    .probe(DRIVER_BEFORE, "kubeflow/seaweedfs:9000", upload())
    .probe(DRIVER_BEFORE, "kubeflow/metadata-grpc-service:8080", mlmd())
    // after: sidecar, Istio mTLS (auto mTLS / the upstream ISTIO_MUTUAL DestinationRule)
    .probe(DRIVER_AFTER, "kubeflow/seaweedfs:9000", upload())
    .probe(DRIVER_AFTER, "kubeflow/metadata-grpc-service:8080", mlmd())
    // an identity the upstream MySQL policy does not list: denied (TCP, closed)
    .probe(DRIVER_AFTER, "kubeflow/mysql:3306", Req::Tcp);
    check(world).await;
}

#[tokio::test]
async fn envoy_kfp_unexpected_identity_denied_by_least_privilege_policy() {
    let after = serde_json::to_string(&mutated_driver_pod(
        "hello-world-7x2kq-system-container-driver-2",
    ))
    .expect("json");
    let world = upstream_world(
        "kfp: least-privilege object store (upstream render, STRICT)",
        &[
            ("driver-after.json", after),
            ("notebook.yaml", NOTEBOOK_YAML.to_string()),
        ],
    )
    .without("AuthorizationPolicy", "kubeflow", "seaweedfs-service")
    .with_source("least-privilege.yaml", LEAST_PRIVILEGE_OBJECT_STORE);
    let world = world
        .probe(DRIVER_AFTER, "kubeflow/seaweedfs:9000", upload())
        .probe(NOTEBOOK, "kubeflow/seaweedfs:9000", upload())
        .probe(
            NOTEBOOK,
            "kubeflow/seaweedfs:9000",
            Req::http("GET", "/mlpipeline/artifacts/", &[]),
        )
        // MLMD's upstream policy allows every caller ({}), with mTLS now
        .probe(NOTEBOOK, "kubeflow/metadata-grpc-service:8080", mlmd());
    check(world).await;
}
