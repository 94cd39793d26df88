//! Engine benchmarks: loading 10,000 objects, and one `tls-check` verdict over them.
//! Run: `cargo bench -p kfp-mesh-core --bench engine`. Figures: docs/performance.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kfp_mesh_core::connection::{self, Caller, RequestSpec, Target};
use kfp_mesh_core::inventory::Inventory;

/// A Kubeflow-like cluster: `namespaces` profile namespaces with eleven objects each (Namespace,
/// ServiceAccount, Deployment, Service, PeerAuthentication, two AuthorizationPolicies,
/// DestinationRule, NetworkPolicy, two ConfigMaps).
pub fn cluster(namespaces: usize) -> String {
    let mut s = String::new();
    s.push_str("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n");
    for i in 0..namespaces {
        let ns = format!("profile-{i}");
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels: {{istio-injection: enabled, pipelines.kubeflow.org/enabled: \"true\"}}\n\
---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: default-editor, namespace: {ns}}}\n\
---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: ml-pipeline-ui-artifact, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: ml-pipeline-ui-artifact}}}}\n  template:\n    metadata:\n      labels: {{app: ml-pipeline-ui-artifact}}\n    spec:\n      serviceAccountName: default-editor\n      containers:\n      - name: ui\n        image: ghcr.io/kubeflow/kfp-frontend:2.5.0\n        ports: [{{name: http, containerPort: 3000}}]\n\
---\napiVersion: v1\nkind: Service\nmetadata: {{name: ml-pipeline-ui-artifact, namespace: {ns}}}\nspec:\n  selector: {{app: ml-pipeline-ui-artifact}}\n  ports: [{{name: http, port: 80, targetPort: 3000}}]\n\
---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: {ns}}}\nspec: {{mtls: {{mode: STRICT}}}}\n\
---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: ns-owner-access-istio, namespace: {ns}}}\nspec:\n  rules:\n  - from: [{{source: {{principals: [cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account]}}}}]\n    when: [{{key: \"request.headers[kubeflow-userid]\", values: [user{i}@example.com]}}]\n  - from: [{{source: {{namespaces: [{ns}]}}}}]\n\
---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: ml-pipeline-ui-artifact, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: ml-pipeline-ui-artifact}}}}\n  rules: [{{from: [{{source: {{principals: [cluster.local/ns/kubeflow/sa/ml-pipeline-ui]}}}}]}}]\n\
---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: ui-artifact, namespace: {ns}}}\nspec: {{host: ml-pipeline-ui-artifact.{ns}.svc.cluster.local, trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}}}\n\
---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: allow-same-namespace, namespace: {ns}}}\nspec:\n  podSelector: {{}}\n  ingress: [{{from: [{{podSelector: {{}}}}]}}]\n\
---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: kfp-launcher, namespace: {ns}}}\ndata: {{defaultPipelineRoot: \"minio://mlpipeline/v2/artifacts\"}}\n\
---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: metadata-grpc-configmap, namespace: {ns}}}\ndata: {{METADATA_GRPC_SERVICE_HOST: metadata-grpc-service.kubeflow, METADATA_GRPC_SERVICE_PORT: \"8080\"}}\n"
        ));
    }
    s
}

fn benches(c: &mut Criterion) {
    let text = cluster(1000);
    let mut group = c.benchmark_group("engine");
    group.sample_size(20);
    group.bench_function("load_10k_objects", |b| {
        b.iter(|| {
            let inv = Inventory::from_sources([("cluster.yaml", black_box(text.as_str()))]);
            black_box(inv.objects.len())
        })
    });
    let inv = Inventory::from_sources([("cluster.yaml", text.as_str())]);
    assert!(inv.objects.len() >= 10_000, "{} objects", inv.objects.len());
    assert!(inv.errors.is_empty(), "{:?}", inv.errors.first());
    let client = inv
        .workload("profile-500", "ml-pipeline-ui-artifact")
        .expect("client workload");
    let service = inv
        .service("profile-501", "ml-pipeline-ui-artifact")
        .expect("service");
    let request = RequestSpec::default();
    group.sample_size(100);
    group.bench_function("verdict_over_10k_objects", |b| {
        b.iter(|| {
            let v = connection::evaluate(
                black_box(&inv),
                Caller::Workload(client),
                Target::Service { service, port: 80 },
                &request,
            );
            black_box(v.map(|v| v.outcome))
        })
    });
    group.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
