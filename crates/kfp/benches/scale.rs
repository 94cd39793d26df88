//! `kfp-mesh check` at Kubeflow scale: the Kubeflow v1.10.1 platform renders plus N generated
//! profile namespaces (each with the objects Kubeflow and KFP put there, a notebook and the
//! pods of recent runs: about 50 objects a profile), for N = 100, 1,000, 5,000.
//!
//! Run: `cargo bench -p kfp-mesh-kfp --bench scale` (prints load and check times per N and the
//! peak resident memory; figures in docs/performance.md). `KFP_MESH_SCALE=100,1000` picks the
//! sizes; `KFP_MESH_SCALE_OUT=DIR` also writes each generated input to `DIR/profiles-N.yaml`.

use std::time::Instant;

use kfp_mesh_core::inventory::{Inventory, parse_stream};
use kfp_mesh_kfp::check::{CheckOptions, Explanations, check_owned};

const KFM_V1_10_1: &[&str] = &[
    "kubeflow-manifests-v1.10.1-pipeline.yaml",
    "kubeflow-manifests-v1.10.1-istio-1-24-install-oauth2-proxy.yaml",
    "kubeflow-manifests-v1.10.1-istio-1-24-namespace.yaml",
    "kubeflow-manifests-v1.10.1-kubeflow-istio-resources.yaml",
    "kubeflow-manifests-v1.10.1-kubeflow-namespace.yaml",
    "kubeflow-manifests-v1.10.1-networkpolicies.yaml",
    "kubeflow-manifests-v1.10.1-profiles-kubeflow.yaml",
];

/// The objects of one profile namespace, as Kubeflow, KFP and a user's recent runs leave them.
fn profile(i: usize) -> String {
    let ns = format!("user-{i}");
    let owner = format!("user{i}@example.com");
    let mut s = format!(
        r#"---
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
  labels: {{istio-injection: enabled, pipelines.kubeflow.org/enabled: "true", app.kubernetes.io/part-of: kubeflow-profile, katib.kubeflow.org/metrics-collector-injection: enabled, serving.kubeflow.org/inferenceservice: enabled}}
  annotations: {{owner: {owner}}}
---
apiVersion: kubeflow.org/v1
kind: Profile
metadata: {{name: {ns}}}
spec: {{owner: {{kind: User, name: {owner}}}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: default-editor, namespace: {ns}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: default-viewer, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: namespaceAdmin, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubeflow-admin}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {owner}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: default-editor, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubeflow-edit}}
subjects: [{{kind: ServiceAccount, name: default-editor, namespace: {ns}}}]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {{name: ns-owner-access-istio, namespace: {ns}}}
spec:
  rules:
  - from: [{{source: {{principals: [cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account, cluster.local/ns/kubeflow/sa/ml-pipeline-ui]}}}}]
    when: [{{key: "request.headers[kubeflow-userid]", values: ["{owner}"]}}]
  - when: [{{key: source.namespace, values: [{ns}]}}]
  - to: [{{operation: {{paths: [/healthz, /metrics, /wait-for-drain]}}}}]
  - from: [{{source: {{principals: [cluster.local/ns/kubeflow/sa/notebook-controller-service-account]}}}}]
    to: [{{operation: {{methods: [GET], paths: ["*/api/kernels"]}}}}]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {{name: user-contributor-{i}, namespace: {ns}}}
spec:
  rules:
  - when: [{{key: "request.headers[kubeflow-userid]", values: [contributor{i}@example.com]}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: kfp-launcher, namespace: {ns}}}
data: {{defaultPipelineRoot: "minio://mlpipeline/v2/artifacts"}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: metadata-grpc-configmap, namespace: {ns}}}
data: {{METADATA_GRPC_SERVICE_HOST: metadata-grpc-service.kubeflow, METADATA_GRPC_SERVICE_PORT: "8080"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: mlpipeline-minio-artifact, namespace: {ns}}}
stringData: {{accesskey: minio, secretkey: minio123}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: ml-pipeline-ui-artifact, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: ml-pipeline-ui-artifact}}}}
  template:
    metadata: {{labels: {{app: ml-pipeline-ui-artifact}}}}
    spec:
      serviceAccountName: default-editor
      containers: [{{name: ml-pipeline-ui-artifact, image: ghcr.io/kubeflow/kfp-frontend:2.5.0, ports: [{{containerPort: 3000}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: ml-pipeline-ui-artifact, namespace: {ns}}}
spec:
  selector: {{app: ml-pipeline-ui-artifact}}
  ports: [{{name: http, port: 80, targetPort: 3000}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: ml-pipeline-visualizationserver, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: ml-pipeline-visualizationserver}}}}
  template:
    metadata: {{labels: {{app: ml-pipeline-visualizationserver}}}}
    spec:
      serviceAccountName: default-editor
      containers: [{{name: ml-pipeline-visualizationserver, image: ghcr.io/kubeflow/kfp-visualization-server:2.5.0, ports: [{{containerPort: 8888}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: ml-pipeline-visualizationserver, namespace: {ns}}}
spec:
  selector: {{app: ml-pipeline-visualizationserver}}
  ports: [{{name: http, port: 8888, targetPort: 8888}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {{name: ml-pipeline-visualizationserver, namespace: {ns}}}
spec: {{host: ml-pipeline-visualizationserver, trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}}}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {{name: ml-pipeline-visualizationserver, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: ml-pipeline-visualizationserver}}}}
  rules: [{{from: [{{source: {{principals: [cluster.local/ns/kubeflow/sa/ml-pipeline]}}}}]}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: notebook, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{statefulset: notebook}}}}
  template:
    metadata: {{labels: {{statefulset: notebook, notebook-name: notebook}}}}
    spec:
      serviceAccountName: default-editor
      containers: [{{name: notebook, image: kubeflownotebookswg/jupyter-scipy:v1.10.0, ports: [{{name: notebook-port, containerPort: 8888}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: notebook, namespace: {ns}}}
spec:
  selector: {{statefulset: notebook}}
  ports: [{{name: http-notebook, port: 80, targetPort: 8888}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {{name: notebook-{ns}-notebook, namespace: {ns}}}
spec: {{hosts: ["*"], gateways: [kubeflow/kubeflow-gateway], http: [{{match: [{{uri: {{prefix: /notebook/{ns}/notebook/}}}}], route: [{{destination: {{host: notebook.{ns}.svc.cluster.local, port: {{number: 80}}}}}}]}}]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: default-viewer, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubeflow-view}}
subjects: [{{kind: ServiceAccount, name: default-viewer, namespace: {ns}}}]
---
apiVersion: v1
kind: ResourceQuota
metadata: {{name: kf-resource-quota, namespace: {ns}}}
spec: {{hard: {{cpu: "64", memory: 256Gi}}}}
---
apiVersion: kubeflow.org/v1alpha1
kind: PodDefault
metadata: {{name: access-ml-pipeline, namespace: {ns}}}
spec: {{selector: {{matchLabels: {{access-ml-pipeline: "true"}}}}}}
"#
    );
    // The pods of five recent runs (a DAG driver, a container driver, an executor and an
    // importer each) and their Workflows.
    for run in 0..5 {
        let wf = format!("run-{i}-{run}");
        s.push_str(&format!(
            "---\napiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {{name: {wf}, namespace: {ns}}}\nspec: {{serviceAccountName: default-editor}}\n"
        ));
        for (n, template) in [
            "system-dag-driver",
            "system-container-driver",
            "system-container-impl",
            "system-importer",
        ]
        .iter()
        .enumerate()
        {
            s.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {wf}-{template}-{n}00{run}\n  namespace: {ns}\n  labels: {{pipelines.kubeflow.org/v2_component: \"true\", workflows.argoproj.io/workflow: {wf}}}\n  annotations: {{sidecar.istio.io/inject: \"false\"}}\nspec:\n  serviceAccountName: default-editor\n  initContainers: [{{name: init, image: \"quay.io/argoproj/argoexec:v3.4.17\"}}]\n  containers: [{{name: wait, image: \"quay.io/argoproj/argoexec:v3.4.17\"}}, {{name: main, image: \"ghcr.io/kubeflow/kfp-driver:2.5.0\"}}]\n"
            ));
        }
    }
    s
}

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
    // `KFP_MESH_EXPLANATIONS=cause` keeps only each flow's cause, as `kfp-mesh check`'s table
    // output does; the default keeps every step (JSON, SARIF, HTML).
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
        let generated: String = (0..n).map(profile).collect();
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
