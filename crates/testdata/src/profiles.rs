//! Synthetic Kubeflow profiles for scale benchmarks: what Kubeflow, KFP and a user's recent
//! runs leave in each profile namespace, written the way `kubectl get -o yaml` writes it (block
//! style). Put them on top of the KFP multi-user or Kubeflow platform render.
//!
//! Each profile: the Namespace (injection and pipelines labels) and its Profile, two
//! ServiceAccounts, three RoleBindings, the profile's `ns-owner-access-istio` and a contributor
//! AuthorizationPolicy, a NetworkPolicy, two ConfigMaps, a Secret, a ResourceQuota, the
//! artifact proxy and the visualization server (Deployments, Services, DestinationRule,
//! AuthorizationPolicy), a notebook (StatefulSet, Service, VirtualService), a PodDefault, and
//! the pods of recent runs with their Workflows (four pods a run: DAG driver, container driver,
//! executor, importer).

use std::fmt::Write as _;

/// Run pods per profile unless told otherwise (five runs).
pub const DEFAULT_PODS: usize = 20;

/// `n` profiles with `pods` run pods each, as one multi-document YAML stream.
pub fn profiles(n: usize, pods: usize) -> String {
    // About 18 kB a profile (capped: a silly `n` fails as it writes, not here).
    let mut out = String::with_capacity(n.saturating_mul(18_000).min(1 << 30));
    for i in 0..n {
        profile(&mut out, i, pods);
    }
    out
}

/// A Deployment of one container that listens on `target`, and its Service on `port`.
fn server(out: &mut String, ns: &str, name: &str, image: &str, port: u16, target: u16) {
    let _ = write!(
        out,
        r#"---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
spec:
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - image: {image}
        name: {name}
        ports:
        - containerPort: {target}
      serviceAccountName: default-editor
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {ns}
spec:
  ports:
  - name: http
    port: {port}
    targetPort: {target}
  selector:
    app: {name}
"#
    );
}

/// The objects of profile `user-<i>`.
fn profile(out: &mut String, i: usize, pods: usize) {
    let ns = format!("user-{i}");
    let owner = format!("user{i}@example.com");
    let _ = write!(
        out,
        r#"---
apiVersion: v1
kind: Namespace
metadata:
  annotations:
    owner: {owner}
  labels:
    app.kubernetes.io/part-of: kubeflow-profile
    istio-injection: enabled
    katib.kubeflow.org/metrics-collector-injection: enabled
    pipelines.kubeflow.org/enabled: "true"
    serving.kubeflow.org/inferenceservice: enabled
  name: {ns}
---
apiVersion: kubeflow.org/v1
kind: Profile
metadata:
  name: {ns}
spec:
  owner:
    kind: User
    name: {owner}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: default-editor
  namespace: {ns}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: default-viewer
  namespace: {ns}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: namespaceAdmin
  namespace: {ns}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: kubeflow-admin
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: {owner}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: default-editor
  namespace: {ns}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: kubeflow-edit
subjects:
- kind: ServiceAccount
  name: default-editor
  namespace: {ns}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: default-viewer
  namespace: {ns}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: kubeflow-view
subjects:
- kind: ServiceAccount
  name: default-viewer
  namespace: {ns}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: ns-owner-access-istio
  namespace: {ns}
spec:
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account
        - cluster.local/ns/kubeflow/sa/ml-pipeline-ui
    when:
    - key: request.headers[kubeflow-userid]
      values:
      - {owner}
  - when:
    - key: source.namespace
      values:
      - {ns}
  - to:
    - operation:
        paths:
        - /healthz
        - /metrics
        - /wait-for-drain
  - from:
    - source:
        principals:
        - cluster.local/ns/kubeflow/sa/notebook-controller-service-account
    to:
    - operation:
        methods:
        - GET
        paths:
        - '*/api/kernels'
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: user-contributor-{i}
  namespace: {ns}
spec:
  rules:
  - when:
    - key: request.headers[kubeflow-userid]
      values:
      - contributor{i}@example.com
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-same-namespace-and-kubeflow
  namespace: {ns}
spec:
  ingress:
  - from:
    - podSelector: {{}}
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kubeflow
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: istio-system
  podSelector: {{}}
  policyTypes:
  - Ingress
---
apiVersion: v1
data:
  defaultPipelineRoot: minio://mlpipeline/v2/artifacts
kind: ConfigMap
metadata:
  name: kfp-launcher
  namespace: {ns}
---
apiVersion: v1
data:
  METADATA_GRPC_SERVICE_HOST: metadata-grpc-service.kubeflow
  METADATA_GRPC_SERVICE_PORT: "8080"
kind: ConfigMap
metadata:
  name: metadata-grpc-configmap
  namespace: {ns}
---
apiVersion: v1
kind: Secret
metadata:
  name: mlpipeline-minio-artifact
  namespace: {ns}
stringData:
  accesskey: minio
  secretkey: minio123
"#
    );
    server(
        out,
        &ns,
        "ml-pipeline-ui-artifact",
        "ghcr.io/kubeflow/kfp-frontend:2.5.0",
        80,
        3000,
    );
    server(
        out,
        &ns,
        "ml-pipeline-visualizationserver",
        "ghcr.io/kubeflow/kfp-visualization-server:2.5.0",
        8888,
        8888,
    );
    let _ = write!(
        out,
        r#"---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: ml-pipeline-visualizationserver
  namespace: {ns}
spec:
  host: ml-pipeline-visualizationserver
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: ml-pipeline-visualizationserver
  namespace: {ns}
spec:
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/kubeflow/sa/ml-pipeline
  selector:
    matchLabels:
      app: ml-pipeline-visualizationserver
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: notebook
  namespace: {ns}
spec:
  selector:
    matchLabels:
      statefulset: notebook
  template:
    metadata:
      labels:
        notebook-name: notebook
        statefulset: notebook
    spec:
      containers:
      - image: kubeflownotebookswg/jupyter-scipy:v1.10.0
        name: notebook
        ports:
        - containerPort: 8888
          name: notebook-port
      serviceAccountName: default-editor
---
apiVersion: v1
kind: Service
metadata:
  name: notebook
  namespace: {ns}
spec:
  ports:
  - name: http-notebook
    port: 80
    targetPort: 8888
  selector:
    statefulset: notebook
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: notebook-{ns}-notebook
  namespace: {ns}
spec:
  gateways:
  - kubeflow/kubeflow-gateway
  hosts:
  - '*'
  http:
  - match:
    - uri:
        prefix: /notebook/{ns}/notebook/
    route:
    - destination:
        host: notebook.{ns}.svc.cluster.local
        port:
          number: 80
---
apiVersion: v1
kind: ResourceQuota
metadata:
  name: kf-resource-quota
  namespace: {ns}
spec:
  hard:
    cpu: "64"
    memory: 256Gi
---
apiVersion: kubeflow.org/v1alpha1
kind: PodDefault
metadata:
  name: access-ml-pipeline
  namespace: {ns}
spec:
  selector:
    matchLabels:
      access-ml-pipeline: "true"
"#
    );
    // The pods of recent runs (a DAG driver, a container driver, an executor and an importer
    // each) and their Workflows.
    const TEMPLATES: [&str; 4] = [
        "system-dag-driver",
        "system-container-driver",
        "system-container-impl",
        "system-importer",
    ];
    for run in 0..pods.div_ceil(TEMPLATES.len()) {
        let wf = format!("run-{i}-{run}");
        let _ = write!(
            out,
            "---\napiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  name: {wf}\n  namespace: {ns}\nspec:\n  serviceAccountName: default-editor\n"
        );
        let in_run = (pods - run * TEMPLATES.len()).min(TEMPLATES.len());
        for (n, template) in TEMPLATES.iter().take(in_run).enumerate() {
            let _ = write!(
                out,
                r#"---
apiVersion: v1
kind: Pod
metadata:
  annotations:
    sidecar.istio.io/inject: "false"
  labels:
    pipelines.kubeflow.org/v2_component: "true"
    workflows.argoproj.io/workflow: {wf}
  name: {wf}-{template}-{n}00{run}
  namespace: {ns}
spec:
  containers:
  - image: quay.io/argoproj/argoexec:v3.4.17
    name: wait
  - image: ghcr.io/kubeflow/kfp-driver:2.5.0
    name: main
  initContainers:
  - image: quay.io/argoproj/argoexec:v3.4.17
    name: init
  serviceAccountName: default-editor
"#
            );
        }
    }
}
