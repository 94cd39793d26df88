//! KFP's L7 policies on a real Envoy programmed as the waypoint `kfp-waypoint` enforces them.
//!
//! The input is KFP master multi-user (`../shared/upstream`) built with the real
//! `kubectl kustomize` and the `istio-ambient` + `multi-user` components
//! (`manifests/tests/istio-ambient/multi-user-master`), plus a profile namespace with a KFP
//! driver pod and a notebook namespace. Every probe goes to the Service `kubeflow/ml-pipeline`
//! (HTTP 8888, gRPC 8887), which uses the waypoint; the engine predicts it
//! (`connection::evaluate`: the waypoint with the caller's identity, then the destination
//! ztunnel with the waypoint's), a real Envoy 1.40 with the waypoint's filter chain answers it.
//!
//! * `kfp_policies`: the component's policy as shipped: the three KFP principals may send
//!   `kubeflow-userid`, everyone else only without it.
//! * `user_hardening`: the same waypoint with policies a platform team adds on top (a DENY on
//!   the waypoint's Gateway with methods, paths and `notPrincipals`; a DENY on the Service with
//!   `notPaths` for one principal; a DENY for the `istio-waypoint` GatewayClass in the root
//!   namespace; a selector policy, which waypoints ignore).
//!
//! What is not reproduced: HBONE (the caller's side is an Envoy that originates mTLS with the
//! caller's certificate) and the destination ztunnel after the waypoint (the waypoint forwards
//! to the echo; the component's L4 policy admits the waypoint, so the engine's ztunnel hop
//! allows, and a prediction that said otherwise would disagree with the observation).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::waypoint::{WaypointWorld, check};
use support::world::Req;

const UPSTREAM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/upstream");
const RENDER: &str = "kfp-master-platform-agnostic-multi-user.yaml";

const API_HTTP: &str = "kubeflow/ml-pipeline:8888";
const API_GRPC: &str = "kubeflow/ml-pipeline:8887";

const UI: &str = "kubeflow/ml-pipeline-ui";
const AGENT: &str = "kubeflow/ml-pipeline-persistenceagent";
const SCHEDULER: &str = "kubeflow/ml-pipeline-scheduledworkflow";
const MD_ENVOY: &str = "kubeflow/metadata-envoy-deployment";
const DRIVER: &str = "kubeflow-user-example-com/hello-world-7x2kq-system-container-driver-1";
const NOTEBOOK: &str = "team-notebooks/my-notebook";

/// A profile namespace (as Kubeflow's profile controller labels it with
/// `istio-ambient/kubeflow-profiles`), a KFP driver pod there, and a notebook in another
/// profile (not enabled for pipelines) with its own ServiceAccount. (The component's
/// NetworkPolicy admits the waypoint's HBONE port from profile namespaces only.)
const AROUND: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: kubeflow-user-example-com
  labels:
    pipelines.kubeflow.org/enabled: "true"
    app.kubernetes.io/part-of: kubeflow-profile
    istio.io/dataplane-mode: ambient
---
apiVersion: v1
kind: Pod
metadata:
  name: hello-world-7x2kq-system-container-driver-1
  namespace: kubeflow-user-example-com
  labels:
    pipelines.kubeflow.org/v2_component: "true"
    workflows.argoproj.io/workflow: hello-world-7x2kq
  annotations:
    sidecar.istio.io/inject: "false"
spec:
  serviceAccountName: default-editor
  containers:
  - name: main
    image: ghcr.io/kubeflow/kfp-driver:2.17.0
---
apiVersion: v1
kind: Namespace
metadata:
  name: team-notebooks
  labels:
    app.kubernetes.io/part-of: kubeflow-profile
    istio.io/dataplane-mode: ambient
---
apiVersion: v1
kind: Pod
metadata:
  name: my-notebook
  namespace: team-notebooks
  labels:
    app: my-notebook
spec:
  serviceAccountName: jupyter
  containers:
  - name: notebook
    image: kubeflownotebookswg/jupyter-scipy
"#;

/// Policies a platform team adds to the waypoint.
const HARDENING: &str = r#"# Only the UI may delete experiments.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-experiment-deletion
  namespace: kubeflow
spec:
  targetRefs:
  - kind: Gateway
    group: gateway.networking.k8s.io
    name: kfp-waypoint
  action: DENY
  rules:
  - from:
    - source:
        notPrincipals: ["cluster.local/ns/kubeflow/sa/ml-pipeline-ui"]
    to:
    - operation:
        methods: ["DELETE"]
        paths: ["/apis/v2beta1/experiments/*"]
---
# The persistence agent only reports.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: persistence-agent-reports-only
  namespace: kubeflow
spec:
  targetRefs:
  - kind: Service
    group: ""
    name: ml-pipeline
  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/kubeflow/sa/ml-pipeline-persistenceagent"]
    to:
    - operation:
        notPaths: ["/api.v2beta1.ReportService/*", "/api.ReportService/*"]
---
# No debug endpoints through any waypoint of the mesh.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: no-debug
  namespace: istio-system
spec:
  targetRefs:
  - kind: GatewayClass
    group: gateway.networking.k8s.io
    name: istio-waypoint
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/debug/*"]
---
# A selector policy names the pods, not the waypoint: ztunnel would enforce it, the waypoint
# ignores it. It names only principals of the waypoint, so ztunnel's hop is unaffected.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: selector-is-not-for-the-waypoint
  namespace: kubeflow
spec:
  selector:
    matchLabels:
      app: ml-pipeline
  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/team-notebooks/sa/jupyter"]
"#;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            std::fs::copy(&path, &dest)
                .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", path.display(), dest.display()));
        }
    }
}

/// The KFP master multi-user render with the ambient components, built by `kubectl kustomize`
/// in a temporary copy of `manifests/` (never in the repository). Fails loudly without kubectl.
fn ambient_build() -> String {
    let tmp = tempfile::Builder::new()
        .prefix("kfp-mesh-waypoint-build-")
        .tempdir()
        .expect("tempdir");
    let manifests = tmp.path().join("manifests");
    copy_tree(&repo().join("manifests"), &manifests);
    let dir = manifests.join("tests/istio-ambient/multi-user-master");
    let up = dir.join("upstream");
    std::fs::create_dir_all(&up).expect("upstream dir");
    std::fs::copy(Path::new(UPSTREAM).join(RENDER), up.join(RENDER)).unwrap_or_else(|e| {
        panic!("{UPSTREAM}/{RENDER}: {e} (the upstream renders are test inputs, see ../shared/upstream)")
    });
    std::fs::write(
        up.join("kustomization.yaml"),
        format!("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- {RENDER}\n"),
    )
    .expect("write kustomization");
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("kubectl is required for the waypoint tests (`kubectl kustomize`): {e}")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn get(path: &str, headers: &[(&str, &str)]) -> Req {
    Req::http("GET", path, headers)
}

fn grpc(path: &str, headers: &[(&str, &str)]) -> Req {
    let mut all = vec![("content-type", "application/grpc"), ("te", "trailers")];
    all.extend_from_slice(headers);
    Req::http("POST", path, &all)
}

const ALICE: (&str, &str) = ("kubeflow-userid", "alice@example.com");

#[tokio::test]
async fn envoy_waypoint_kfp_policies() {
    let built = ambient_build();
    let world = WaypointWorld::new(
        "waypoint: KFP's L7 policy (istio-ambient/multi-user, KFP master)",
        &[("kustomize-output.yaml", &built), ("around.yaml", AROUND)],
    )
    // The three KFP principals may send the user header.
    .probe(UI, API_HTTP, get("/apis/v2beta1/runs", &[ALICE]))
    .probe(UI, API_HTTP, get("/apis/v2beta1/runs", &[]))
    .probe(
        UI,
        API_GRPC,
        grpc("/api.v2beta1.RunService/ListRuns", &[ALICE]),
    )
    .probe(
        AGENT,
        API_GRPC,
        grpc("/api.v2beta1.ReportService/ReportWorkflow", &[]),
    )
    .probe(
        AGENT,
        API_GRPC,
        grpc("/api.v2beta1.ReportService/ReportWorkflow", &[ALICE]),
    )
    .probe(
        SCHEDULER,
        API_GRPC,
        grpc("/api.v2beta1.RunService/CreateRun", &[ALICE]),
    )
    .probe(SCHEDULER, API_HTTP, get("/apis/v1beta1/healthz", &[]))
    // Everyone else only without it: a run pod's cache calls...
    .probe(
        DRIVER,
        API_GRPC,
        grpc("/kfp_cache.v2beta1.CacheService/GetCache", &[]),
    )
    .probe(
        DRIVER,
        API_GRPC,
        grpc("/kfp_cache.v2beta1.CacheService/GetCache", &[ALICE]),
    )
    .probe(
        DRIVER,
        API_HTTP,
        get(
            "/apis/v2beta1/runs",
            &[("Kubeflow-Userid", "admin@example.com")],
        ),
    )
    .probe(
        DRIVER,
        API_HTTP,
        get("/apis/v2beta1/runs", &[("kubeflow-userid", "")]),
    )
    .probe(
        DRIVER,
        API_HTTP,
        get("/apis/v2beta1/runs", &[("kubeflow-userid-hint", "x")]),
    )
    // ...a KFP server that is not one of the three...
    .probe(MD_ENVOY, API_HTTP, get("/apis/v2beta1/runs", &[]))
    .probe(MD_ENVOY, API_HTTP, get("/apis/v2beta1/runs", &[ALICE]))
    // ...and a notebook with kfp.Client, from another namespace.
    .probe(
        NOTEBOOK,
        API_HTTP,
        Req::http("DELETE", "/apis/v2beta1/experiments/e1", &[]),
    )
    .probe(
        NOTEBOOK,
        API_HTTP,
        get(
            "/apis/v2beta1/pipelines",
            &[("KUBEFLOW-USERID", "alice@example.com")],
        ),
    )
    .probe(
        NOTEBOOK,
        API_GRPC,
        grpc("/api.v2beta1.PipelineService/ListPipelines", &[]),
    )
    .probe(
        NOTEBOOK,
        API_GRPC,
        grpc("/api.v2beta1.PipelineService/ListPipelines", &[ALICE]),
    );
    let report = check(world).await;
    assert!(report.results.len() >= 18);
    // Both outcomes occur: the policy is exercised, not vacuous.
    for want in ["allow", "deny"] {
        assert!(
            report
                .results
                .iter()
                .any(|r| r.observed.outcome.map(|o| o.as_str()) == Some(want)),
            "no probe observed {want}"
        );
    }
}

#[tokio::test]
async fn envoy_waypoint_user_hardening() {
    let built = ambient_build();
    let world = WaypointWorld::new(
        "waypoint: KFP's policy plus a platform team's (Gateway, Service, GatewayClass targets)",
        &[
            ("kustomize-output.yaml", &built),
            ("around.yaml", AROUND),
            ("hardening.yaml", HARDENING),
        ],
    )
    // targetRefs Gateway: methods + paths + notPrincipals.
    .probe(
        NOTEBOOK,
        API_HTTP,
        Req::http("DELETE", "/apis/v2beta1/experiments/e1", &[]),
    )
    .probe(NOTEBOOK, API_HTTP, get("/apis/v2beta1/experiments/e1", &[]))
    .probe(
        UI,
        API_HTTP,
        Req::http("DELETE", "/apis/v2beta1/experiments/e1", &[ALICE]),
    )
    .probe(
        DRIVER,
        API_HTTP,
        Req::http("DELETE", "/apis/v2beta1/experiments", &[]),
    )
    // targetRefs Service: notPaths for one principal.
    .probe(
        AGENT,
        API_GRPC,
        grpc("/api.v2beta1.ReportService/ReportWorkflow", &[]),
    )
    .probe(
        AGENT,
        API_GRPC,
        grpc("/api.ReportService/ReportWorkflowV1", &[]),
    )
    .probe(
        AGENT,
        API_GRPC,
        grpc("/api.v2beta1.RunService/CreateRun", &[]),
    )
    .probe(
        SCHEDULER,
        API_GRPC,
        grpc("/api.v2beta1.RunService/CreateRun", &[]),
    )
    // targetRefs GatewayClass istio-waypoint in the root namespace: every waypoint.
    .probe(UI, API_HTTP, get("/debug/pprof/heap", &[ALICE]))
    .probe(DRIVER, API_HTTP, get("/debug/vars", &[]))
    // A selector policy is not the waypoint's: the notebook still passes it.
    .probe(NOTEBOOK, API_HTTP, get("/apis/v2beta1/pipelines", &[]));
    let report = check(world).await;
    assert!(report.results.len() >= 11);
}
