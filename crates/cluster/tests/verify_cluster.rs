//! The cluster-reading edge against a fake API server on loopback, through the real kube-rs
//! client: the analysis equals `check` on the same objects as files, live facts, pagination,
//! missing CRDs, and every failure with its message.

mod support;

use std::time::Duration;

use kfp_mesh_cluster::error::ClusterError;
use kfp_mesh_cluster::read::{ConfigEnv, connect_with_env};
use kfp_mesh_cluster::{KubeArgs, Verified, VerifyArgs, verify};
use kfp_mesh_core::inventory::{Inventory, parse_stream};
use kfp_mesh_kfp::check::{CheckOptions, Report, check};
use serde_json::{Value, json};
use support::{Cluster, FakeApiServer, ISTIO};

const MESH_STRICT: &str = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system, creationTimestamp: '2026-08-01T09:00:00Z'}
spec: {mtls: {mode: STRICT}}
";

const KUBEFLOW_1_10_1: &[&str] = &[
    "kubeflow-manifests-v1.10.1-pipeline.yaml",
    "kubeflow-manifests-v1.10.1-istio-1-24-install-oauth2-proxy.yaml",
    "kubeflow-manifests-v1.10.1-istio-1-24-namespace.yaml",
    "kubeflow-manifests-v1.10.1-kubeflow-istio-resources.yaml",
    "kubeflow-manifests-v1.10.1-kubeflow-namespace.yaml",
    "kubeflow-manifests-v1.10.1-networkpolicies.yaml",
    "kubeflow-manifests-v1.10.1-profiles-kubeflow.yaml",
];

/// A profile as the Kubeflow profile controller leaves it.
const PROFILE_TEAM_A: &str = "\
apiVersion: kubeflow.org/v1
kind: Profile
metadata: {name: team-a}
spec: {owner: {kind: User, name: alice@example.com}}
---
apiVersion: v1
kind: Namespace
metadata:
  name: team-a
  labels: {istio-injection: enabled, app.kubernetes.io/part-of: kubeflow-profile, pipelines.kubeflow.org/enabled: 'true'}
  annotations: {owner: alice@example.com}
";

/// The objects of upstream renders plus extra YAML: (source name, text) pairs, and the
/// object bodies the fake API server serves.
fn sources(files: &[&str], extra: &str) -> (Vec<(String, String)>, Vec<Value>) {
    let mut texts: Vec<(String, String)> = files.iter().map(|f| support::upstream(f)).collect();
    texts.push(("extra.yaml".to_string(), extra.to_string()));
    let mut bodies = Vec::new();
    for (name, text) in &texts {
        let (objects, errors) = parse_stream(name, text);
        assert!(errors.is_empty(), "{errors:?}");
        bodies.extend(objects.into_iter().map(|o| o.value()));
    }
    (texts, bodies)
}

fn check_files(texts: &[(String, String)]) -> Report {
    let inv = Inventory::from_sources(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())));
    check(&inv, &CheckOptions::default())
}

fn kube_args(server: &FakeApiServer) -> KubeArgs {
    KubeArgs {
        kubeconfig: Some(server.kubeconfig.clone()),
        page_size: 7,
        no_progress: true,
        ..KubeArgs::default()
    }
}

async fn run_verify(server: &FakeApiServer) -> Result<Verified, ClusterError> {
    let args = VerifyArgs {
        kube: kube_args(server),
        recent: 10,
        ..VerifyArgs::default()
    };
    verify(&args, &[]).await
}

type FlowKey = (String, String, Option<String>);

fn flow_keys(r: &Report) -> Vec<FlowKey> {
    let mut v: Vec<FlowKey> = r
        .flows
        .iter()
        .map(|f| {
            (
                f.id.clone(),
                f.outcome.as_str().to_string(),
                f.transport.map(|t| format!("{t:?}")),
            )
        })
        .collect();
    v.sort();
    v
}

fn finding_keys(r: &Report) -> Vec<(String, String, Option<String>)> {
    let mut v: Vec<_> = r
        .findings
        .iter()
        .filter(|f| !kfp_mesh_cluster::facts::LIVE_CODES.contains(&f.code))
        .map(|f| {
            (
                f.code.to_string(),
                f.severity.as_str().to_string(),
                f.object.as_ref().map(|o| o.to_string()),
            )
        })
        .collect();
    v.sort();
    v
}

/// A KFP run pod as Argo creates it, with the live state of its containers.
fn run_pod(ns: &str, wf: &str, template: &str, hash: u32, sidecar: &str, phase: &str) -> Value {
    let name = format!("{wf}-{template}-{hash}");
    let done = json!({"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": "2026-08-20T10:05:00Z"}});
    let running = json!({"running": {"startedAt": "2026-08-20T10:00:00Z"}});
    let main_state = if phase == "Pending" {
        json!({"waiting": {"reason": "PodInitializing"}})
    } else {
        done.clone()
    };
    let mut containers = vec![
        json!({"name": "wait", "image": "quay.io/argoproj/argoexec:v3.5.14", "command": ["argoexec", "wait"],
               "env": [{"name": "ARGO_TEMPLATE", "value": format!("{{\"name\":\"{template}\",\"inputs\":{{}},\"outputs\":{{}}}}")}]}),
        json!({"name": "main", "image": "ghcr.io/kubeflow/kfp-driver:2.5.0", "command": ["/var/run/argo/argoexec", "emissary", "--", "driver"]}),
    ];
    let mut statuses = vec![
        json!({"name": "wait", "ready": false, "state": main_state.clone()}),
        json!({"name": "main", "ready": false, "state": main_state}),
    ];
    let mut init = vec![json!({"name": "init", "image": "quay.io/argoproj/argoexec:v3.5.14"})];
    let mut init_statuses = vec![json!({"name": "init", "state": done})];
    match sidecar {
        "classic" => {
            containers
                .push(json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.3"}));
            statuses.push(json!({"name": "istio-proxy", "ready": true, "state": if phase == "Running" { running } else { done.clone() }}));
        }
        "native" => {
            init.insert(0, json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.3", "restartPolicy": "Always"}));
            init_statuses.insert(0, json!({"name": "istio-proxy", "state": done}));
        }
        _ => {}
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "creationTimestamp": "2026-08-20T10:00:00Z",
            "labels": {
                "workflows.argoproj.io/workflow": wf,
                "workflows.argoproj.io/completed": if phase == "Running" { "false" } else { "true" },
                "pipelines.kubeflow.org/v2_component": "true",
                "pipeline/runid": "6a1f9c1e-0000-4000-8000-000000000001"
            },
            "annotations": {
                "sidecar.istio.io/inject": if sidecar == "none" { "false" } else { "true" },
                "workflows.argoproj.io/node-name": format!("{wf}.{template}"),
                "kubectl.kubernetes.io/default-container": "main"
            },
            "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": wf,
                                 "uid": "11111111-0000-4000-8000-000000000001", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {"serviceAccountName": "pipeline-runner", "restartPolicy": "Never",
                 "initContainers": init, "containers": containers},
        "status": {"phase": phase, "initContainerStatuses": init_statuses, "containerStatuses": statuses}
    })
}

fn workflow(ns: &str, name: &str, created: &str, phase: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": created,
                     "labels": {"pipeline/runid": "6a1f9c1e-0000-4000-8000-000000000001"}},
        "spec": {"entrypoint": "entrypoint", "templates": [{"name": "system-dag-driver"}]},
        "status": {"phase": phase, "nodes": {"x": {"id": "x", "phase": phase}}}
    })
}

fn live_pods_kubeflow() -> Vec<Value> {
    vec![
        workflow(
            "kubeflow",
            "hello-world-7x2kq",
            "2026-08-20T10:00:00Z",
            "Running",
        ),
        workflow(
            "kubeflow",
            "hello-world-abcde",
            "2026-08-19T10:00:00Z",
            "Succeeded",
        ),
        run_pod(
            "kubeflow",
            "hello-world-7x2kq",
            "system-dag-driver",
            938794099,
            "none",
            "Succeeded",
        ),
        run_pod(
            "kubeflow",
            "hello-world-7x2kq",
            "system-container-driver",
            1234567890,
            "none",
            "Succeeded",
        ),
        run_pod(
            "kubeflow",
            "hello-world-7x2kq",
            "system-container-impl",
            555,
            "classic",
            "Running",
        ),
        run_pod(
            "kubeflow",
            "hello-world-abcde",
            "system-dag-driver",
            42,
            "native",
            "Succeeded",
        ),
    ]
}

fn installed_istio(c: &mut Cluster) {
    for k in ISTIO {
        c.install(k);
    }
    c.install("Workflow").install("Profile");
}

#[tokio::test]
async fn kubeflow_1_10_1_read_from_the_api_equals_check_on_the_files() {
    let extra = format!("{MESH_STRICT}---\n{PROFILE_TEAM_A}");
    let (texts, bodies) = sources(KUBEFLOW_1_10_1, &extra);
    let mut cluster = Cluster::new();
    installed_istio(&mut cluster);
    // An Istio that serves RequestAuthentication at v1beta1 only: the reader falls back.
    cluster.versions("RequestAuthentication", &["v1beta1"]);
    cluster.add(bodies);
    cluster.add([
        workflow(
            "team-a",
            "pipeline-run-q8x7z",
            "2026-08-20T11:00:00Z",
            "Running",
        ),
        run_pod(
            "team-a",
            "pipeline-run-q8x7z",
            "system-dag-driver",
            1,
            "none",
            "Failed",
        ),
        run_pod(
            "team-a",
            "pipeline-run-q8x7z",
            "system-container-driver",
            2,
            "none",
            "Failed",
        ),
    ]);
    let server = FakeApiServer::start(cluster).await;
    let live = run_verify(&server)
        .await
        .expect("verify reads the fake cluster");
    let files = check_files(&texts);

    assert!(files.kfp.detected && live.report.kfp.detected);
    assert!(!files.flows.is_empty());
    assert_eq!(flow_keys(&live.report), flow_keys(&files));
    assert_eq!(finding_keys(&live.report), finding_keys(&files));
    assert_eq!(live.report.unresolved, files.unresolved);

    // Pagination: lists of more than a page were read with `continue`.
    let requests = server.requests();
    assert!(
        requests.iter().any(|r| r.contains("continue=")),
        "no paginated list: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| !r.contains("limit=") || r.contains("limit=7"))
    );
    let ra = live
        .live
        .reads
        .iter()
        .find(|r| r.kind == "RequestAuthentication")
        .expect("read");
    assert_eq!(ra.api_version.as_deref(), Some("security.istio.io/v1beta1"));
    assert!(
        live.live.not_installed.is_empty(),
        "{:?}",
        live.live.not_installed
    );

    // Origins name the cluster, the kind and the object.
    let api = live.report.kfp.api_server.as_ref().expect("api server");
    assert_eq!(
        api.origin.source.as_ref(),
        "cluster:fake-cluster/Deployment/kubeflow/ml-pipeline"
    );
    // Nothing the API server adds survives.
    for o in &live.inventory.objects {
        let meta = o.get("metadata").expect("metadata");
        assert!(meta.get("managedFields").is_none(), "{}", o.object_ref());
        assert!(meta.get("resourceVersion").is_none(), "{}", o.object_ref());
        assert!(o.get("apiVersion").is_some() && o.get("kind").is_some());
    }
    // Run pods (owned by a Workflow) are live facts, not analysis workloads.
    assert!(
        live.inventory
            .workloads
            .iter()
            .all(|w| !w.name.starts_with("pipeline-run-q8x7z"))
    );
    let team_a = live
        .live
        .run_pods
        .iter()
        .find(|r| r.namespace == "team-a")
        .expect("team-a run pods");
    assert_eq!((team_a.pods, team_a.without_sidecar), (2, 2));
    let km060: Vec<_> = live
        .report
        .findings
        .iter()
        .filter(|f| f.code == "KM060")
        .collect();
    assert_eq!(km060.len(), 1, "{km060:?}");
    assert_eq!(km060[0].severity.as_str(), "error", "{}", km060[0].message);
    assert!(km060[0].message.contains("STRICT"), "{}", km060[0].message);
    // Policies per namespace, with modes.
    let istio = live
        .live
        .policies
        .iter()
        .find(|p| p.namespace == "istio-system")
        .expect("istio-system policies");
    assert!(
        istio
            .peer_authentications
            .contains(&"default (STRICT)".to_string())
    );
}

const WEBHOOK: &str = "\
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: kfp-mesh-driver-webhook}
webhooks:
- name: workflows.kfp-mesh.io
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Ignore
  clientConfig:
    caBundle: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
    service: {namespace: kubeflow, name: kfp-mesh-webhook, path: /mutate/workflows, port: 443}
  rules: [{operations: [CREATE], apiGroups: [argoproj.io], apiVersions: ['*'], resources: [workflows]}]
---
apiVersion: v1
kind: Service
metadata: {name: kfp-mesh-webhook, namespace: kubeflow}
spec:
  selector: {app: kfp-mesh-webhook}
  ports: [{name: https, port: 443, targetPort: 8443}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kfp-mesh-webhook, namespace: kubeflow}
spec:
  replicas: 2
  selector: {matchLabels: {app: kfp-mesh-webhook}}
  template:
    metadata: {labels: {app: kfp-mesh-webhook}}
    spec:
      containers:
      - {name: webhook, image: ghcr.io/kfp-mesh/kfp-mesh:0.1.0, args: [webhook], ports: [{containerPort: 8443}]}
status: {replicas: 2, readyReplicas: 0, unavailableReplicas: 2, conditions: [{type: Available, status: 'False'}]}
";

#[tokio::test]
async fn live_facts_of_a_single_user_install_without_istio_crds() {
    let (texts, bodies) = sources(&["kfp-2.5.0-platform-agnostic.yaml"], WEBHOOK);
    let mut cluster = Cluster::new();
    // Argo is installed with KFP; Istio is not: its APIs answer 404.
    cluster.install("Workflow");
    cluster.add(bodies);
    cluster.add(live_pods_kubeflow());
    let server = FakeApiServer::start(cluster).await;
    let live = run_verify(&server)
        .await
        .expect("a missing CRD is not an error");
    let files = check_files(&texts);
    assert_eq!(flow_keys(&live.report), flow_keys(&files));
    assert_eq!(finding_keys(&live.report), finding_keys(&files));

    let facts = &live.live;
    for k in [
        "PeerAuthentication",
        "AuthorizationPolicy",
        "DestinationRule",
        "Profile",
    ] {
        assert!(
            facts.not_installed.iter().any(|n| n == k),
            "{k}: {:?}",
            facts.not_installed
        );
    }
    // The 404s were real list requests answered with a Status.
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.starts_with("/apis/security.istio.io/v1beta1/peerauthentications"))
    );

    let kf = facts
        .run_pods
        .iter()
        .find(|r| r.namespace == "kubeflow")
        .expect("kubeflow run pods");
    assert_eq!(kf.workflows, vec!["hello-world-7x2kq", "hello-world-abcde"]);
    assert_eq!(
        (
            kf.pods,
            kf.classic_sidecar,
            kf.native_sidecar,
            kf.without_sidecar
        ),
        (4, 1, 1, 2)
    );
    assert_eq!(facts.stuck_pods.len(), 1);
    assert_eq!(
        facts.stuck_pods[0].name,
        "hello-world-7x2kq-system-container-impl-555"
    );
    assert_eq!(facts.webhooks.len(), 1);
    let wh = &facts.webhooks[0];
    assert_eq!(wh.deployment.as_deref(), Some("kubeflow/kfp-mesh-webhook"));
    assert_eq!(
        (wh.ready_replicas, wh.desired_replicas, wh.ready),
        (0, 2, false)
    );
    assert!(facts.webhook_order.iter().any(|o| o.role == "kfp-mesh"));

    let codes: Vec<&str> = live
        .report
        .findings
        .iter()
        .map(|f| f.code.as_str())
        .collect();
    for c in ["KM060", "KM061", "KM062"] {
        assert!(codes.contains(&c), "{c} in {codes:?}");
    }
    // No STRICT anywhere: the run pods without a sidecar work (in plaintext), a warning.
    let km060 = live
        .report
        .findings
        .iter()
        .find(|f| f.code == "KM060")
        .expect("KM060");
    assert_eq!(km060.severity.as_str(), "warning");
    assert_eq!(
        km060.object.as_ref().map(|o| o.to_string()).as_deref(),
        Some("Pod kubeflow/hello-world-7x2kq-system-container-driver-1234567890")
    );
    let km061 = live
        .report
        .findings
        .iter()
        .find(|f| f.code == "KM061")
        .expect("KM061");
    assert!(
        km061
            .message
            .contains("hello-world-7x2kq-system-container-impl-555")
    );
    // The webhook's Deployment has 0 of 2 replicas ready: it fails open.
    let km062 = live
        .report
        .findings
        .iter()
        .find(|f| f.code == "KM062")
        .expect("KM062");
    assert_eq!(km062.severity.as_str(), "error");
}

#[tokio::test]
async fn namespace_scope_reads_only_those_namespaces_and_the_istio_root() {
    let (_, bodies) = sources(&["kfp-2.5.0-platform-agnostic.yaml"], MESH_STRICT);
    let mut cluster = Cluster::new();
    installed_istio(&mut cluster);
    cluster.add(bodies);
    let server = FakeApiServer::start(cluster).await;
    let mut args = VerifyArgs {
        kube: kube_args(&server),
        ..VerifyArgs::default()
    };
    args.kube.namespaces = vec!["kubeflow".to_string()];
    let live = verify(&args, &[]).await.expect("verify -n kubeflow");
    assert_eq!(
        live.live.namespaces,
        Some(vec!["istio-system".to_string(), "kubeflow".to_string()])
    );
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/api/v1/namespaces/kubeflow/pods"))
    );
    assert!(requests.iter().any(|r| {
        r.starts_with("/apis/security.istio.io/v1/namespaces/istio-system/peerauthentications")
    }));
    assert!(!requests.iter().any(|r| r.starts_with("/api/v1/pods")));
    assert!(live.report.kfp.detected);
    assert!(
        live.inventory
            .peer_authentications
            .contains_key("istio-system")
    );
}

// ---------------------------------------------------------------------------------------------
// Failures: each names the cause and the fix.

#[tokio::test]
async fn forbidden_names_verb_resource_user_and_the_rbac_to_grant() {
    let mut cluster = Cluster::new();
    cluster.forbid("Pod");
    let server = FakeApiServer::start(cluster).await;
    let err = run_verify(&server).await.expect_err("403");
    assert!(matches!(err, ClusterError::Forbidden { .. }), "{err:?}");
    let msg = err.to_string();
    for want in [
        "may not list pods at the cluster scope",
        support::USER,
        "ClusterRole `kfp-mesh-verify`",
        "kubectl apply -k manifests/kustomize/components/verify-rbac",
        "-n NAMESPACE",
    ] {
        assert!(msg.contains(want), "`{want}` not in: {msg}");
    }
}

#[tokio::test]
async fn a_slow_api_server_times_out_with_the_request_and_the_option_to_raise() {
    let mut cluster = Cluster::new();
    cluster.slow("Deployment", Duration::from_secs(5));
    let server = FakeApiServer::start(cluster).await;
    let mut args = VerifyArgs {
        kube: kube_args(&server),
        ..VerifyArgs::default()
    };
    args.kube.request_timeout = Duration::from_millis(400);
    let started = std::time::Instant::now();
    let err = verify(&args, &[]).await.expect_err("timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, ClusterError::Timeout { .. }), "{err:?}");
    let msg = err.to_string();
    for want in [
        format!("https://{}", server.addr).as_str(),
        "/apis/apps/v1/deployments",
        "within 0.4s",
        "--request-timeout",
        "-n NAMESPACE",
    ] {
        assert!(msg.contains(want), "`{want}` not in: {msg}");
    }
}

#[tokio::test]
async fn an_unreachable_api_server_is_named_by_its_address() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, "").expect("ca");
    let kubeconfig = dir.path().join("config");
    support::write_kubeconfig(&kubeconfig, &format!("https://127.0.0.1:{port}"), &ca, "t");
    // An empty CA file is a kubeconfig problem: use a real one.
    let server = FakeApiServer::start(Cluster::new()).await;
    std::fs::copy(server.dir.path().join("ca.crt"), &ca).expect("copy CA");
    let args = VerifyArgs {
        kube: KubeArgs {
            kubeconfig: Some(kubeconfig),
            no_progress: true,
            ..KubeArgs::default()
        },
        ..VerifyArgs::default()
    };
    let err = verify(&args, &[]).await.expect_err("unreachable");
    assert!(matches!(err, ClusterError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    for want in [
        format!("cannot reach the API server at https://127.0.0.1:{port}").as_str(),
        "context `fake-cluster`",
        "--context NAME",
    ] {
        assert!(msg.contains(want), "`{want}` not in: {msg}");
    }
}

#[tokio::test]
async fn no_kubeconfig_says_how_to_point_at_one() {
    let home = tempfile::tempdir().expect("tempdir");
    let env = ConfigEnv {
        kubeconfig: None,
        home: Some(home.path().to_path_buf()),
        in_cluster: false,
    };
    let err = connect_with_env(&KubeArgs::default(), &env)
        .await
        .expect_err("no kubeconfig");
    assert!(matches!(err, ClusterError::NoKubeconfig { .. }), "{err:?}");
    let msg = err.to_string();
    for want in [
        "no kubeconfig",
        "KUBECONFIG is not set",
        ".kube/config does not exist",
        "--kubeconfig PATH",
        "KUBECONFIG=PATH",
    ] {
        assert!(msg.contains(want), "`{want}` not in: {msg}");
    }

    // A --kubeconfig that does not exist.
    let args = KubeArgs {
        kubeconfig: Some(home.path().join("nope.yaml")),
        ..KubeArgs::default()
    };
    let msg = connect_with_env(&args, &env)
        .await
        .expect_err("missing file")
        .to_string();
    assert!(msg.contains("nope.yaml does not exist"), "{msg}");

    // A kubeconfig without the context asked for lists the ones it has.
    let server = FakeApiServer::start(Cluster::new()).await;
    let args = KubeArgs {
        kubeconfig: Some(server.kubeconfig.clone()),
        context: Some("prod".to_string()),
        ..KubeArgs::default()
    };
    let msg = connect_with_env(&args, &env)
        .await
        .expect_err("unknown context")
        .to_string();
    assert!(
        msg.contains("context `prod` is not in the kubeconfig"),
        "{msg}"
    );
    assert!(msg.contains("its contexts: fake-cluster"), "{msg}");
}

#[tokio::test]
async fn rejected_credentials_say_to_log_in_again() {
    let server = FakeApiServer::start(Cluster::new()).await;
    let kubeconfig = server.dir.path().join("bad-token");
    support::write_kubeconfig(
        &kubeconfig,
        &format!("https://{}", server.addr),
        &server.dir.path().join("ca.crt"),
        "expired",
    );
    let args = VerifyArgs {
        kube: KubeArgs {
            kubeconfig: Some(kubeconfig),
            no_progress: true,
            ..KubeArgs::default()
        },
        ..VerifyArgs::default()
    };
    let err = verify(&args, &[]).await.expect_err("401");
    assert!(matches!(err, ClusterError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("Log in again"), "{err}");
}

#[tokio::test]
async fn tls_check_live_resolves_a_pod_name_in_the_cluster() {
    let (_, bodies) = sources(&["kfp-2.5.0-platform-agnostic.yaml"], MESH_STRICT);
    let mut cluster = Cluster::new();
    installed_istio(&mut cluster);
    cluster.add(bodies);
    cluster.add(live_pods_kubeflow());
    let server = FakeApiServer::start(cluster).await;
    let pod = "hello-world-7x2kq-system-dag-driver-938794099";
    let inv = kfp_mesh_cluster::live_inventory(
        &kube_args(&server),
        &[("kubeflow".to_string(), pod.to_string())],
    )
    .await
    .expect("live inventory");
    let w = inv
        .workload("kubeflow", pod)
        .expect("the live pod is a workload");
    assert_eq!(w.kind, "Pod");
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r == &format!("/api/v1/namespaces/kubeflow/pods/{pod}"))
    );
    let minio = kfp_mesh_core::connection::resolve_service(&inv, "kubeflow", "minio-service")
        .expect("minio");
    let caller = kfp_mesh_core::connection::Caller::Workload(w);
    let verdict = kfp_mesh_core::connection::evaluate(
        &inv,
        caller,
        kfp_mesh_core::connection::Target::Service {
            service: minio,
            port: 9000,
        },
        &Default::default(),
    )
    .expect("evaluate");
    // The driver pod has no sidecar (its annotation says inject: false), MinIO is in the mesh
    // under STRICT only if kubeflow is labelled for injection; here it is not: plaintext.
    assert_eq!(verdict.outcome.as_str(), "allow");
}

#[test]
fn the_shipped_cluster_role_grants_every_read_and_nothing_else() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../manifests/kustomize/components/verify-rbac/clusterrole.yaml"
    );
    let text = std::fs::read_to_string(path).expect("clusterrole.yaml");
    let role: Value = serde_saphyr::from_str(&text).expect("YAML");
    let mut granted = std::collections::BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .expect("verbs")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(verbs, ["get", "list"], "read-only: {rule}");
        for g in rule["apiGroups"].as_array().expect("groups") {
            for r in rule["resources"].as_array().expect("resources") {
                granted.insert((
                    g.as_str().unwrap_or_default().to_string(),
                    r.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    let needed: std::collections::BTreeSet<(String, String)> = kfp_mesh_cluster::kinds::KINDS
        .iter()
        .chain([&kfp_mesh_cluster::kinds::CONFIG_MAPS])
        .map(|k| (k.group.to_string(), k.plural.to_string()))
        .collect();
    assert_eq!(granted, needed);
}

/// Ambient waypoints are Gateway API Gateways: `verify` reads them, so a Service's
/// `istio.io/use-waypoint` finds its waypoint in the cluster as it does in files (no false
/// "waypoint missing"), and a missing one is reported live too.
#[tokio::test]
async fn waypoint_gateways_are_read_from_the_gateway_api() {
    const AMBIENT: &str = "apiVersion: v1
kind: Namespace
metadata: {name: kubeflow, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: kfp-waypoint}}
";
    const WAYPOINT: &str = "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: kfp-waypoint, namespace: kubeflow, labels: {istio.io/waypoint-for: service}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
";
    for (with_gateway, extra) in [
        (true, format!("{AMBIENT}{WAYPOINT}")),
        (false, AMBIENT.to_string()),
    ] {
        let (texts, bodies) = sources(&["kfp-2.5.0-platform-agnostic.yaml"], &extra);
        let mut cluster = Cluster::new();
        installed_istio(&mut cluster);
        cluster.add(bodies);
        cluster.add([serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "ztunnel", "namespace": "istio-system"},
            "spec": {"template": {"metadata": {"labels": {"app": "ztunnel"}},
                     "spec": {"containers": [{"name": "istio-proxy", "image": "istio/ztunnel"}]}}},
            "status": {"desiredNumberScheduled": 2, "numberReady": 0}
        })]);
        let server = FakeApiServer::start(cluster).await;
        let live = run_verify(&server).await.expect("verify");
        let files = check_files(&texts);
        assert_eq!(
            finding_keys(&live.report),
            finding_keys(&files),
            "with gateway: {with_gateway}"
        );
        let km081 = live.report.findings.iter().any(|f| f.code == "KM081");
        assert_eq!(km081, !with_gateway, "with gateway: {with_gateway}");
        // The live ambient facts: ztunnel is not running and no waypoint pod exists.
        let amb = live
            .live
            .ambient
            .as_ref()
            .expect("KFP's flows are on ztunnel");
        assert_eq!(amb.ztunnel.len(), 1);
        assert_eq!((amb.ztunnel[0].desired, amb.ztunnel[0].ready), (2, 0));
        let km084 = live.report.findings.iter().find(|f| f.code == "KM084");
        assert!(
            km084.is_some_and(|f| f.message.contains("0 of 2")),
            "{km084:?}"
        );
        // No waypoint Deployment in either case (with the Gateway, istiod has not made it).
        let km085 = live.report.findings.iter().find(|f| f.code == "KM085");
        assert!(
            km085.is_some_and(|f| f.message.contains("kubeflow/kfp-waypoint")),
            "{km085:?}"
        );
        assert!(
            server
                .requests()
                .iter()
                .any(|r| r.starts_with("/apis/gateway.networking.k8s.io/v1/gateways")),
            "the Gateway API is listed"
        );
    }
}
