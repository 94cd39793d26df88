//! Memory benchmark of the cluster-reading edge: a fake API server on loopback serves a big
//! Kubeflow cluster (by default 50,000 Pods and 5,000 Istio policies over 1,000 profile
//! namespaces, plus the Kubeflow 1.10.1 render from ../shared/upstream), `verify` reads it
//! through the real kube-rs client, and the peak resident memory of the process (client and
//! server together, `VmHWM` from /proc/self/status) is printed.
//!
//! ```sh
//! cargo run --release -p kfp-mesh-cluster --example verify_memory
//! cargo run --release -p kfp-mesh-cluster --example verify_memory -- --pods 50000 --policies 5000 --namespaces 1000
//! # serve the same cluster for N seconds and print a kubeconfig, to try `kfp-mesh verify`:
//! cargo run --release -p kfp-mesh-cluster --example verify_memory -- --pods 2000 --serve 300
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use kfp_mesh_cluster::{KubeArgs, VerifyArgs};
use kfp_mesh_core::inventory::parse_stream;
use kfp_mesh_kfp::check::Explanations;
use serde_json::{Value, json};
use support::{Cluster, FakeApiServer, ISTIO};

const LIMIT_BYTES: u64 = 1 << 30;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size (`VmHWM`) in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn profile_ns(i: usize) -> String {
    format!("team-{i:04}")
}

/// Pod `i`: 4 of 5 are KFP run pods (Argo init/wait/main with the ARGO_TEMPLATE env, a
/// classic or native istio-proxy), 1 of 5 a pod of a Deployment with a sidecar.
fn pod(i: usize, namespaces: usize) -> Value {
    let ns = profile_ns(i % namespaces);
    let wf = format!("run-{:06}", i / 10);
    let proxy = json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.29.1",
        "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning"],
        "env": [{"name": "PILOT_CERT_PROVIDER", "value": "istiod"}, {"name": "CA_ADDR", "value": "istiod.istio-system.svc:15012"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"}],
        "resources": {"requests": {"cpu": "10m", "memory": "40Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}}});
    let running = json!({"running": {"startedAt": "2026-08-20T10:00:00Z"}});
    let done = json!({"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": "2026-08-20T10:03:00Z"}});
    if i % 5 == 4 {
        return json!({
            "metadata": {"name": format!("ml-pipeline-ui-artifact-5d8f-{i}"), "namespace": ns,
                "creationTimestamp": "2026-08-01T10:00:00Z",
                "labels": {"app": "ml-pipeline-ui-artifact", "pod-template-hash": "5d8f"},
                "annotations": {"sidecar.istio.io/status": "{\"initContainers\":[\"istio-init\"],\"containers\":[\"istio-proxy\"],\"volumes\":[\"istio-envoy\",\"istio-data\",\"istio-podinfo\",\"istio-token\",\"istiod-ca-cert\"]}"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "ml-pipeline-ui-artifact-5d8f", "uid": "x", "controller": true}]},
            "spec": {"serviceAccountName": "default-editor",
                "containers": [{"name": "ml-pipeline-ui-artifact", "image": "ghcr.io/kubeflow/kfp-frontend:2.5.0",
                                "ports": [{"containerPort": 3000}]}, proxy]},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                "containerStatuses": [{"name": "ml-pipeline-ui-artifact", "state": running}, {"name": "istio-proxy", "state": running}]}
        });
    }
    let template = [
        "system-dag-driver",
        "system-container-driver",
        "system-container-impl",
        "system-dag-driver",
    ][i % 5 % 4];
    let native = i.is_multiple_of(2);
    let argo_template = format!(
        "{{\"name\":\"{template}\",\"inputs\":{{\"parameters\":[{{\"name\":\"component\",\"value\":\"{}\"}}]}},\"outputs\":{{}},\"metadata\":{{}},\"container\":{{\"name\":\"\",\"image\":\"ghcr.io/kubeflow/kfp-driver:2.5.0\",\"command\":[\"driver\"],\"args\":[\"--type\",\"CONTAINER\",\"--pipeline_name\",\"hello-world\"],\"resources\":{{\"limits\":{{\"cpu\":\"500m\",\"memory\":\"512Mi\"}},\"requests\":{{\"cpu\":\"100m\",\"memory\":\"64Mi\"}}}}}}}}",
        "x".repeat(600)
    );
    let mut init = vec![
        json!({"name": "init", "image": "quay.io/argoproj/argoexec:v3.5.14",
        "env": [{"name": "ARGO_TEMPLATE", "value": argo_template.clone()}]}),
    ];
    let mut containers = vec![
        json!({"name": "wait", "image": "quay.io/argoproj/argoexec:v3.5.14", "env": [{"name": "ARGO_TEMPLATE", "value": argo_template}]}),
        json!({"name": "main", "image": "ghcr.io/kubeflow/kfp-driver:2.5.0", "command": ["/var/run/argo/argoexec", "emissary", "--", "driver"]}),
    ];
    let mut statuses = vec![
        json!({"name": "wait", "state": done}),
        json!({"name": "main", "state": done}),
    ];
    if native {
        let mut p = proxy;
        p["restartPolicy"] = json!("Always");
        init.insert(0, p);
    } else {
        containers.push(proxy);
        statuses.push(json!({"name": "istio-proxy", "state": done}));
    }
    json!({
        "metadata": {"name": format!("{wf}-{template}-{i}"), "namespace": ns,
            "creationTimestamp": "2026-08-20T10:00:00Z",
            "labels": {"workflows.argoproj.io/workflow": wf, "workflows.argoproj.io/completed": "true",
                       "pipelines.kubeflow.org/v2_component": "true", "pipeline/runid": "6a1f9c1e-0000-4000-8000-000000000001"},
            "annotations": {"sidecar.istio.io/inject": "true", "workflows.argoproj.io/node-name": format!("{wf}.{template}"),
                            "workflows.argoproj.io/outputs": "{\"exitCode\":\"0\"}"},
            "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": wf, "uid": "x", "controller": true}]},
        "spec": {"serviceAccountName": "default-editor", "restartPolicy": "Never",
                 "initContainers": init, "containers": containers},
        "status": {"phase": "Succeeded", "containerStatuses": statuses}
    })
}

fn policy(i: usize, namespaces: usize, peer: bool) -> Value {
    let ns = profile_ns(i % namespaces);
    if peer {
        json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
               "metadata": {"name": format!("strict-{i}"), "namespace": ns, "creationTimestamp": "2026-08-01T10:00:00Z"},
               "spec": {"selector": {"matchLabels": {"app": format!("app-{i}")}}, "mtls": {"mode": "STRICT"}}})
    } else {
        json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
               "metadata": {"name": format!("allow-{i}"), "namespace": ns, "creationTimestamp": "2026-08-01T10:00:00Z"},
               "spec": {"action": "ALLOW", "rules": [{"from": [{"source": {"principals": [
                   "cluster.local/ns/kubeflow/sa/ml-pipeline", format!("cluster.local/ns/{ns}/sa/default-editor")]}}],
                   "to": [{"operation": {"ports": ["8888"], "methods": ["GET", "POST"]}}]}]}})
    }
}

fn main() {
    let pods = arg("--pods", 50_000);
    let policies = arg("--policies", 5_000);
    let namespaces = arg("--namespaces", 1_000).max(1);
    let serve = arg("--serve", 0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut cluster = Cluster::new();
        for k in ISTIO {
            cluster.install(k);
        }
        cluster.install("Workflow").install("Profile");
        let mut fixed: Vec<Value> = Vec::new();
        for f in [
            "kubeflow-manifests-v1.10.1-pipeline.yaml",
            "kubeflow-manifests-v1.10.1-istio-1-24-install-oauth2-proxy.yaml",
            "kubeflow-manifests-v1.10.1-istio-1-24-namespace.yaml",
            "kubeflow-manifests-v1.10.1-kubeflow-namespace.yaml",
            "kubeflow-manifests-v1.10.1-profiles-kubeflow.yaml",
        ] {
            let (name, text) = support::upstream(f);
            fixed.extend(parse_stream(&name, &text).0.into_iter().map(|o| o.value()));
        }
        for i in 0..namespaces {
            let ns = profile_ns(i);
            fixed.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns,
                "labels": {"istio-injection": "enabled", "app.kubernetes.io/part-of": "kubeflow-profile"}}}));
            fixed.push(json!({"apiVersion": "kubeflow.org/v1", "kind": "Profile", "metadata": {"name": ns},
                "spec": {"owner": {"kind": "User", "name": format!("{ns}@example.com")}}}));
            fixed.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default-editor", "namespace": ns}}));
            for w in 0..5 {
                fixed.push(json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                    "metadata": {"name": format!("run-{:06}", i * 5 + w), "namespace": ns, "creationTimestamp": "2026-08-20T10:00:00Z"},
                    "status": {"phase": "Succeeded"}}));
            }
        }
        cluster.add(fixed);
        let half = policies / 2;
        cluster.generate("Pod", pods, move |i| pod(i, namespaces));
        cluster.generate("PeerAuthentication", half, move |i| policy(i, namespaces, true));
        cluster.generate("AuthorizationPolicy", policies - half, move |i| {
            policy(i, namespaces, false)
        });
        let server = FakeApiServer::start(cluster).await;
        if serve > 0 {
            println!(
                "fake API server at https://{} for {serve}s; kubeconfig: {}",
                server.addr,
                server.kubeconfig.display()
            );
            tokio::time::sleep(Duration::from_secs(serve as u64)).await;
            return;
        }
        let before = peak_rss();
        let args = VerifyArgs {
            kube: KubeArgs {
                kubeconfig: Some(server.kubeconfig.clone()),
                no_progress: true,
                ..KubeArgs::default()
            },
            recent: 10,
            // What `kfp-mesh verify` keeps for its default output, the table.
            explanations: Explanations::Cause,
            ..VerifyArgs::default()
        };
        let started = Instant::now();
        let snapshot = kfp_mesh_cluster::load_live(&args.kube)
            .await
            .expect("read the fake cluster");
        let read_time = started.elapsed();
        let after_read = peak_rss();
        let read_pods = snapshot.pods.len();
        let read_objects = snapshot.objects.len();
        let started = Instant::now();
        let verified = tokio::task::spawn_blocking(move || {
            kfp_mesh_cluster::analyse(snapshot, &args, &[])
        })
        .await
        .expect("join")
        .expect("analyse");
        let analysis_time = started.elapsed();
        let peak = peak_rss();
        println!(
            "served: {pods} pods, {policies} policies (PeerAuthentication + AuthorizationPolicy), {namespaces} profile namespaces"
        );
        println!("read:   {read_pods} live pods, {read_objects} analysis objects in {read_time:.2?}");
        println!(
            "check + live facts: {} flows, {} findings, {} run namespaces in {analysis_time:.2?}",
            verified.report.flows.len(),
            verified.report.findings.len(),
            verified.live.run_pods.len()
        );
        println!(
            "peak RSS (VmHWM): before reading {}, after reading {}, after the analysis {} (limit {})",
            mib(before),
            mib(after_read),
            mib(peak),
            mib(LIMIT_BYTES)
        );
        if peak >= LIMIT_BYTES {
            eprintln!("FAIL: peak RSS {} is over 1 GiB", mib(peak));
            std::process::exit(1);
        }
    });
}
