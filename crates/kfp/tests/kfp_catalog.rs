//! The flow catalog resolved against every upstream render (run pods and modelled profile
//! objects added as `kfp-mesh check` adds them).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use kfp_mesh_kfp::catalog::{self, RoleKind, applicable, resolve};
use kfp_mesh_kfp::detect::{DetectOptions, detect};
use kfp_mesh_kfp::runpods::with_run_pods;

/// Per render: ids of applicable flows, and the roles that resolved.
fn resolve_render(render: &str) -> (Vec<String>, BTreeSet<String>, Vec<String>) {
    let cat = catalog::load().unwrap_or_else(|e| panic!("{e}"));
    let inv = common::inventory(render);
    let facts = detect(&inv, &DetectOptions::default());
    let (full, _) = with_run_pods(&inv, &facts);
    let mut applicable_ids = Vec::new();
    let mut roles = BTreeSet::new();
    let mut failures = Vec::new();
    for flow in &cat.flows {
        if applicable(flow, &facts).is_err() {
            continue;
        }
        applicable_ids.push(flow.id.clone());
        for (_, r) in resolve(cat, flow, &full, &facts) {
            match r {
                Ok(rf) => {
                    assert!(!rf.sources.is_empty());
                    for s in &rf.sources {
                        assert!(!s.unexpected_identity(), "{render} {}: {s:?}", flow.id);
                    }
                    roles.insert(flow.source.role.clone());
                    roles.insert(flow.destination.role.clone());
                }
                Err(e) => {
                    failures.push(format!("{render}: {}: {:?}: {}", flow.id, e.kind, e.reason))
                }
            }
        }
    }
    (applicable_ids, roles, failures)
}

#[test]
fn every_applicable_flow_resolves_in_every_render() {
    let cat = catalog::load().unwrap_or_else(|e| panic!("{e}"));
    let mut all_roles = BTreeSet::new();
    let mut per_render: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut failures = Vec::new();
    for render in common::RENDERS {
        let (ids, roles, fails) = resolve_render(render);
        println!(
            "{render}: {} applicable flows: {}",
            ids.len(),
            ids.join(", ")
        );
        all_roles.extend(roles);
        failures.extend(fails);
        per_render.insert(render, ids);
    }
    // What may not resolve, and why: the PostgreSQL env configures `postgresHost: postgres`,
    // a host no Service provides (KM072). (The standalone-TLS env's renamed `tls` ports resolve
    // through the container port names.)
    let expected = [
        "kfp-master-postgresql: api-server-to-database: CouldNotResolve: the client is configured to reach `postgres:5432`",
        "kfp-master-postgresql: api-server-wait-for-database: CouldNotResolve: the client is configured to reach `postgres:5432`",
        "kfp-master-postgresql: cache-server-to-database: CouldNotResolve: the client is configured to reach `postgres:5432`",
    ];
    assert_eq!(
        failures.len(),
        expected.len(),
        "unresolved:\n{}",
        failures.join("\n")
    );
    for (f, e) in failures.iter().zip(expected) {
        assert!(f.starts_with(e), "unresolved:\n{f}\nexpected:\n{e}");
    }
    // Every role of the catalog is found in at least one upstream render.
    let defined: BTreeSet<String> = cat.roles.iter().map(|r| r.name.clone()).collect();
    let missing: Vec<&String> = defined.difference(&all_roles).collect();
    assert!(missing.is_empty(), "roles never resolved: {missing:?}");

    let has = |r: &str, id: &str| per_render[r].iter().any(|f| f == id);
    // Version gates.
    assert!(has("kfp-master-su", "api-server-wait-for-database"));
    assert!(!has("kfp-2.5.0-su", "api-server-wait-for-database"));
    assert!(
        !has("kubeflow-master", "api-server-wait-for-database"),
        "2.16 has no wait init containers"
    );
    assert!(
        has("kfp-master-su", "kubelet-probe-api-server")
            && !has("kfp-2.5.0-su", "kubelet-probe-api-server")
    );
    assert!(has(
        "kfp-2.5.0-mu",
        "api-server-to-visualization-server-profile"
    ));
    assert!(!has(
        "kfp-master-mu",
        "api-server-to-visualization-server-profile"
    ));
    assert!(
        has("kfp-master-su", "importer-to-object-store")
            && !has("kubeflow-master", "importer-to-object-store")
    );
    // Modes and features.
    assert!(has("kfp-2.5.0-su", "api-server-to-visualization-server"));
    assert!(!has("kfp-2.5.0-mu", "api-server-to-visualization-server"));
    assert!(has("kfp-2.5.0-su", "cache-deployer-to-kube-apiserver"));
    assert!(!has("kubeflow-v1.10.1", "cache-deployer-to-kube-apiserver"));
    for r in common::RENDERS {
        assert!(has(r, "kube-apiserver-to-cache-webhook"), "{r}");
        assert!(has(r, "driver-wait-to-object-store"), "{r}");
        assert!(has(r, "executor-wait-to-object-store"), "{r}");
        assert!(has(r, "metadata-envoy-to-mlmd"), "{r}");
    }
    assert!(has(
        "kfp-master-k8s-native",
        "kube-apiserver-to-pipelineversion-webhook"
    ));
    assert!(!has(
        "kfp-master-mu",
        "kube-apiserver-to-pipelineversion-webhook"
    ));
    assert!(
        has("kubeflow-v1.10.1", "ingress-gateway-to-ui")
            && has("kubeflow-master", "ingress-gateway-to-metadata-envoy")
    );
    assert!(
        !has("kfp-master-mu", "ingress-gateway-to-ui"),
        "no gateway in a bare KFP render"
    );
    assert!(has(
        "kfp-master-mu",
        "kfp-profile-controller-to-object-store-iam"
    ));
    assert!(has(
        "kubeflow-master",
        "kfp-profile-controller-to-object-store-s3"
    ));
    assert!(
        !has(
            "kubeflow-v1.10.1",
            "kfp-profile-controller-to-object-store-iam"
        ),
        "2.5.0 has MinIO"
    );
    assert!(
        has("kubeflow-v1.10.1", "ui-to-artifact-proxy"),
        "2.5.0 always creates the proxy"
    );
    assert!(
        !has("kubeflow-master", "ui-to-artifact-proxy"),
        "off by default from 2.15"
    );
}

#[test]
fn seaweedfs_and_minio_ports() {
    let cat = catalog::load().unwrap_or_else(|e| panic!("{e}"));
    let flow = cat
        .flow("driver-wait-to-object-store")
        .unwrap_or_else(|| panic!("missing flow"));
    for (render, svc, port_name, target) in [
        ("kfp-2.5.0-su", "minio-service", "http", 9000),
        ("kfp-master-su", "seaweedfs", "http-s3-compat", 8333),
        // 2.15: clients use the alias Service `minio-service` (9000 -> SeaweedFS 8333);
        // `seaweedfs` itself has no port 9000.
        ("kfp-2.15.0-su", "minio-service", "http", 8333),
    ] {
        let inv = common::inventory(render);
        let facts = detect(&inv, &DetectOptions::default());
        let (full, _) = with_run_pods(&inv, &facts);
        let r = resolve(cat, flow, &full, &facts);
        assert_eq!(r.len(), 1);
        let Ok(rf) = &r[0].1 else {
            panic!("{render}: {:?}", r[0].1)
        };
        let d = &rf.destination;
        assert_eq!(
            (d.service.as_str(), d.port, d.port_name.as_deref()),
            (svc, 9000, Some(port_name)),
            "{render}"
        );
        assert_eq!(
            d.target_port,
            Some(kfp_mesh_core::model::IntOrString::Int(target)),
            "{render}"
        );
        let names: Vec<&str> = rf.sources.iter().map(|s| s.workload.as_str()).collect();
        let workflow = kfp_mesh_kfp::runpods::workflow_name(&facts);
        assert_eq!(
            names,
            [
                format!("{workflow}-system-container-driver-1002"),
                format!("{workflow}-system-dag-driver-1001")
            ]
        );
        assert!(
            rf.sources
                .iter()
                .all(|s| s.container.as_deref() == Some("wait")
                    && s.service_account.as_deref() == Some("pipeline-runner"))
        );
    }
}

#[test]
fn multi_user_flows_cross_into_profiles() {
    let cat = catalog::load().unwrap_or_else(|e| panic!("{e}"));
    let inv = common::inventory("kubeflow-v1.10.1");
    let facts = detect(&inv, &DetectOptions::default());
    let (full, _) = with_run_pods(&inv, &facts);
    let ui = cat
        .flow("ui-to-artifact-proxy")
        .unwrap_or_else(|| panic!("missing"));
    let r = resolve(cat, ui, &full, &facts);
    let Some((_, Ok(rf))) = r.first() else {
        panic!("{r:?}")
    };
    assert_eq!(rf.profile.as_deref(), Some("kubeflow-user-example-com"));
    assert_eq!(
        (
            rf.destination.namespace.as_str(),
            rf.destination.service.as_str(),
            rf.destination.port
        ),
        ("kubeflow-user-example-com", "ml-pipeline-ui-artifact", 80)
    );
    assert_eq!(
        rf.headers.get("kubeflow-userid").map(String::as_str),
        Some("user@example.com")
    );
    let driver = cat
        .flow("driver-to-api-server")
        .unwrap_or_else(|| panic!("missing"));
    let r = resolve(cat, driver, &full, &facts);
    let Some((_, Ok(rf))) = r.first() else {
        panic!("{r:?}")
    };
    assert_eq!(rf.destination.namespace, "kubeflow");
    assert!(rf.sources.iter().all(
        |s| s.namespace.as_deref() == Some("kubeflow-user-example-com")
            && s.service_account.as_deref() == Some("default-editor")
    ));
    assert!(rf.headers.is_empty(), "drivers send no user-id header");
    // The kube-apiserver is outside the mesh on both ends.
    let k = cat
        .flow("kube-apiserver-to-cache-webhook")
        .unwrap_or_else(|| panic!("missing"));
    let Some((_, Ok(rf))) = resolve(cat, k, &full, &facts).into_iter().next() else {
        panic!()
    };
    assert!(rf.sources[0].external);
    assert_eq!(
        (rf.destination.service.as_str(), rf.destination.port),
        ("cache-server", 443)
    );
    assert_eq!(rf.destination.endpoints, ["cache-server"]);
}

#[test]
fn roles_cover_every_kind() {
    let cat = catalog::load().unwrap_or_else(|e| panic!("{e}"));
    for kind in [RoleKind::Workload, RoleKind::RunPod, RoleKind::External] {
        assert!(cat.roles.iter().any(|r| r.kind == kind), "{kind:?}");
    }
    let required = cat.flows.iter().filter(|f| f.required).count();
    assert!(required >= 50, "{required} required flows");
}
