//! Run-pod synthesis over the real upstream renders, and the mutation of a deployed kfp-mesh
//! webhook.

mod common;

use kfp_mesh_core::inventory::{Inventory, Workload};
use kfp_mesh_kfp::detect::{DetectOptions, detect};
use kfp_mesh_kfp::mutation::{self, INJECT_KEY};
use kfp_mesh_kfp::runpods::{
    RunPodKind, WebhookMode, kfp_mesh_webhooks, run_pods, run_pods_detailed,
    synthetic_profile_objects, with_run_pods,
};

const RUNTIME_ROLE: &str = "pipelines.kubeflow.org/runtime-role";

fn pods(inv: &Inventory) -> Vec<Workload> {
    run_pods(inv, &detect(inv, &DetectOptions::default()))
}

fn pod<'a>(pods: &'a [Workload], template: &str) -> &'a Workload {
    pods.iter()
        .find(|p| p.name.contains(&format!("-{template}-")))
        .unwrap_or_else(|| {
            panic!(
                "no {template} pod in {:?}",
                pods.iter().map(|p| &p.name).collect::<Vec<_>>()
            )
        })
}

fn container<'a>(w: &'a Workload, name: &str) -> &'a kfp_mesh_core::model::Container {
    w.spec
        .containers
        .iter()
        .chain(w.spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("{}: no container {name}", w.name))
}

#[test]
fn kfp_2_5_0_single_user_run_pods() {
    let pods = pods(&common::inventory("kfp-2.5.0-su"));
    assert_eq!(pods.len(), 4);
    for p in &pods {
        assert_eq!(
            (p.kind.as_str(), p.namespace.as_str(), p.service_account()),
            ("Pod", "kubeflow", "pipeline-runner")
        );
        assert!(p.synthetic);
        assert_eq!(p.annotation(INJECT_KEY), Some("false"), "{}", p.name);
        assert_eq!(p.label(INJECT_KEY), None);
        assert_eq!(
            p.annotation(RUNTIME_ROLE),
            None,
            "no runtime-role before 2.17"
        );
        assert_eq!(p.label("pipelines.kubeflow.org/v2_component"), Some("true"));
        assert_eq!(
            p.label("workflows.argoproj.io/workflow"),
            Some("kfp-2-5-0-run")
        );
        assert!(!p.has_istio_proxy());
        let names: Vec<&str> = p.spec.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["wait", "main"]);
        assert_eq!(
            container(p, "wait").image.as_deref(),
            Some("quay.io/argoproj/argoexec:v3.5.14")
        );
        assert_eq!(
            container(p, "init").image.as_deref(),
            Some("quay.io/argoproj/argoexec:v3.5.14")
        );
        assert_eq!(p.origin.line, 0);
        assert!(
            p.origin.source.contains("KFP 2.5.0 run pod model"),
            "{}",
            p.origin
        );
    }
    let d = pod(&pods, "system-container-driver");
    assert_eq!(
        d.origin.source.as_ref(),
        "<KFP 2.5.0 run pod model: system-container-driver in kubeflow>"
    );
    let main = container(d, "main");
    assert_eq!(
        main.image.as_deref(),
        Some("ghcr.io/kubeflow/kfp-driver:2.5.0")
    );
    assert_eq!(
        main.command
            .as_deref()
            .and_then(|c| c.last())
            .map(String::as_str),
        Some("driver")
    );
    assert!(
        !main
            .args
            .iter()
            .flatten()
            .any(|a| a.contains("ml_pipeline_server_address")),
        "2.5.0 passes no addresses"
    );
    let e = pod(&pods, "system-container-impl");
    assert_eq!(
        container(e, "kfp-launcher").image.as_deref(),
        Some("ghcr.io/kubeflow/kfp-launcher:2.5.0")
    );
    let i = pod(&pods, "system-importer");
    assert!(
        container(i, "main")
            .args
            .iter()
            .flatten()
            .any(|a| a == "importer")
    );
}

#[test]
fn master_run_pods_have_runtime_role_and_driver_pod_config() {
    let plain = pods(&common::inventory("kfp-master-su"));
    for p in &plain {
        let want = if p.name.contains("driver") {
            "driver"
        } else {
            "launcher"
        };
        assert_eq!(p.annotation(RUNTIME_ROLE), Some(want), "{}", p.name);
        assert_eq!(
            p.annotation(INJECT_KEY),
            Some("false"),
            "DRIVER_POD_* empty: {}",
            p.name
        );
        assert_eq!(p.label(INJECT_KEY), None);
    }
    let d = pod(&plain, "system-dag-driver");
    assert!(
        container(d, "main")
            .args
            .iter()
            .flatten()
            .any(|a| a == "ml-pipeline.kubeflow.svc.cluster.local")
    );

    // The README example of kubeflow/pipelines#12417, set in pipeline-install-config.
    let text = common::read("kfp-master-platform-agnostic.yaml")
        .replace(
            "  DRIVER_POD_LABELS: \"\"",
            "  DRIVER_POD_LABELS: '{\"sidecar.istio.io/inject\":\"true\",\"team\":\"ml\"}'",
        )
        .replace(
            "  DRIVER_POD_ANNOTATIONS: \"\"",
            "  DRIVER_POD_ANNOTATIONS: '{\"proxy.istio.io/config\":\"{\\\"holdApplicationUntilProxyStarts\\\":true}\",\"sidecar.istio.io/inject\":\"true\"}'",
        );
    let inv = Inventory::from_sources([("kfp-master-patched.yaml", text.as_str())]);
    let facts = detect(&inv, &DetectOptions::default());
    assert_eq!(
        facts.driver_pod_config.labels.len(),
        2,
        "{:?}",
        facts.driver_pod_config
    );
    assert_eq!(
        facts.driver_pod_config.annotations.len(),
        2,
        "{:?}",
        facts.driver_pod_config
    );
    let set = run_pods(&inv, &facts);
    for t in ["system-dag-driver", "system-container-driver"] {
        let d = pod(&set, t);
        assert_eq!(d.label(INJECT_KEY), Some("true"), "{t}");
        assert_eq!(d.label("team"), Some("ml"), "{t}");
        assert_eq!(
            d.annotation("proxy.istio.io/config"),
            Some("{\"holdApplicationUntilProxyStarts\":true}")
        );
        // The API server does not overwrite an annotation key the compiler already set.
        assert_eq!(d.annotation(INJECT_KEY), Some("true"), "{t}");
    }
    for t in ["system-container-impl", "system-importer"] {
        let p = pod(&set, t);
        assert_eq!(
            p.label(INJECT_KEY),
            None,
            "{t}: DRIVER_POD_* is for drivers only"
        );
        assert_eq!(p.label("team"), None);
        assert_eq!(p.annotation(INJECT_KEY), Some("false"), "{t}");
    }
}

#[test]
fn multi_user_example_profile() {
    let inv = common::inventory("kfp-master-mu");
    let facts = detect(&inv, &DetectOptions::default());
    let (full, detailed) = with_run_pods(&inv, &facts);
    assert_eq!(detailed.len(), 4);
    for p in &detailed {
        let w = &p.workload;
        assert_eq!(
            (w.namespace.as_str(), w.service_account()),
            ("kubeflow-user-example-com", "default-editor")
        );
        assert!(p.mutations.is_empty() && p.before_mutation.is_none());
        assert_eq!(
            full.workload("kubeflow-user-example-com", &w.name)
                .map(|x| x.synthetic),
            Some(true)
        );
    }
    // The example namespace, labelled as Kubeflow's profile controller labels it.
    let ns = full
        .namespaces
        .get("kubeflow-user-example-com")
        .unwrap_or_else(|| panic!("no namespace"));
    assert_eq!(ns.meta.label("istio-injection"), Some("enabled"));
    assert_eq!(
        ns.meta.label("pipelines.kubeflow.org/enabled"),
        Some("true")
    );
    assert_eq!(
        ns.meta.label("app.kubernetes.io/part-of"),
        Some("kubeflow-profile")
    );
    assert_eq!(ns.origin.line, 0);
    assert!(
        full.service_accounts
            .contains_key(&("kubeflow-user-example-com".into(), "default-editor".into()))
    );
    let aps = full.authorization_policies_in("kubeflow-user-example-com");
    let ap = aps
        .iter()
        .find(|a| a.name() == "ns-owner-access-istio")
        .unwrap_or_else(|| panic!("no AP"));
    assert_eq!(ap.spec.rules.as_ref().map(Vec::len), Some(4));
    assert!(full.rejected.is_empty(), "{:?}", full.rejected);
    // No artifact proxy on master by default, so no Service for it.
    assert!(
        full.service("kubeflow-user-example-com", "ml-pipeline-ui-artifact")
            .is_none()
    );

    // 2.5.0 multi-user: the KFP profile controller adds the proxy and the visualization server.
    let inv = common::inventory("kfp-2.5.0-mu");
    let facts = detect(&inv, &DetectOptions::default());
    let objs = synthetic_profile_objects(&inv, &facts);
    let names: Vec<String> = objs.iter().map(|o| o.object_ref().to_string()).collect();
    for want in [
        "Namespace kubeflow-user-example-com",
        "ServiceAccount kubeflow-user-example-com/default-editor",
        "AuthorizationPolicy kubeflow-user-example-com/ns-owner-access-istio",
        "Service kubeflow-user-example-com/ml-pipeline-ui-artifact",
        "Deployment kubeflow-user-example-com/ml-pipeline-ui-artifact",
        "DestinationRule kubeflow-user-example-com/ml-pipeline-visualizationserver",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "missing {want} in {names:?}"
        );
    }
    assert!(
        objs.iter()
            .all(|o| o.meta.annotation("kfp-mesh.io/synthetic") == Some("true"))
    );
}

const WEBHOOK: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: kfp-mesh-system}
---
apiVersion: v1
kind: Service
metadata: {name: kfp-mesh-webhook, namespace: kfp-mesh-system}
spec:
  selector: {app: kfp-mesh-webhook}
  ports: [{name: https, port: 443, targetPort: 8443}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kfp-mesh-webhook, namespace: kfp-mesh-system}
spec:
  template:
    metadata: {labels: {app: kfp-mesh-webhook}}
    spec:
      containers:
      - name: webhook
        image: ghcr.io/kfp-mesh/kfp-mesh:0.1.0
        args: [webhook, --config, /etc/kfp-mesh/config.yaml, --cert-file, /tls/tls.crt, --key-file, /tls/tls.key]
        volumeMounts: [{name: config, mountPath: /etc/kfp-mesh}]
      volumes:
      - {name: config, configMap: {name: kfp-mesh-webhook-config}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: kfp-mesh-webhook-config, namespace: kfp-mesh-system}
data:
  config.yaml: |
    roles: {executor: true}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: kfp-mesh-workflows}
webhooks:
- name: workflows.kfp-mesh.io
  clientConfig:
    service: {name: kfp-mesh-webhook, namespace: kfp-mesh-system, path: /mutate/workflows}
  namespaceSelector:
    matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [kubeflow]}]
  rules: [{operations: [CREATE], apiGroups: [argoproj.io], apiVersions: [v1alpha1], resources: [workflows]}]
  failurePolicy: Ignore
  sideEffects: None
"#;

#[test]
fn deployed_webhook_mutates_run_pods() {
    let inv = common::inventory_with("kfp-2.5.0-su", WEBHOOK);
    let hooks = kfp_mesh_webhooks(&inv);
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].mode, WebhookMode::Workflow);
    assert!(
        hooks[0].config_error.is_none(),
        "{:?}",
        hooks[0].config_error
    );
    assert_eq!(
        hooks[0]
            .config_source
            .object
            .as_ref()
            .map(|o| o.name.as_str()),
        Some("kfp-mesh-webhook-config")
    );
    let facts = detect(&inv, &DetectOptions::default());
    let detailed = run_pods_detailed(&inv, &facts);
    for p in &detailed {
        let w = &p.workload;
        let mutated = p.kind != RunPodKind::Importer;
        assert_eq!(w.label(INJECT_KEY), mutated.then_some("true"), "{}", w.name);
        assert_eq!(
            w.annotation(INJECT_KEY),
            Some(if mutated { "true" } else { "false" }),
            "{}",
            w.name
        );
        assert_eq!(p.mutations.len(), 1, "{}", w.name);
        let m = &p.mutations[0];
        assert_eq!(
            (m.mode, m.role_enabled),
            (WebhookMode::Workflow, mutated),
            "{}",
            w.name
        );
        assert_eq!(m.configuration.object.name, "kfp-mesh-workflows");
        if mutated {
            assert!(
                m.changes
                    .iter()
                    .any(|c| c == "annotation sidecar.istio.io/inject: false -> true"),
                "{:?}",
                m.changes
            );
            assert_eq!(
                w.annotation("workflows.argoproj.io/kill-cmd-istio-proxy"),
                Some("[\"pilot-agent\",\"request\",\"POST\",\"quitquitquit\"]")
            );
        } else {
            assert!(m.changes.is_empty());
        }
        let before = p
            .before_mutation
            .as_ref()
            .unwrap_or_else(|| panic!("no before"));
        assert_eq!(before.annotation(INJECT_KEY), Some("false"));
        // The modelled pod is one the webhook's own Pod mode recognises.
        let v = serde_json::json!({"kind": "Pod", "metadata": {"name": w.name, "annotations": w.annotations}});
        assert_eq!(mutation::pod_role(&v), Some(p.kind.role()), "{}", w.name);
    }
    // Drivers get resources from the default configuration (limits raised to 1000m / 1Gi).
    let d = detailed
        .iter()
        .find(|p| p.kind == RunPodKind::ContainerDriver)
        .unwrap_or_else(|| panic!());
    assert!(
        d.mutations[0]
            .changes
            .iter()
            .any(|c| c == "limits.cpu: 500m -> 1000m"),
        "{:?}",
        d.mutations[0].changes
    );

    // Outside the selected namespace nothing happens.
    let other = WEBHOOK.replace("values: [kubeflow]", "values: [elsewhere]");
    let inv = common::inventory_with("kfp-2.5.0-su", &other);
    let facts = detect(&inv, &DetectOptions::default());
    assert!(
        run_pods_detailed(&inv, &facts)
            .iter()
            .all(|p| p.mutations.is_empty())
    );

    // A configuration the webhook refuses: it would not start, nothing is applied.
    let broken = WEBHOOK.replace(
        "roles: {executor: true}",
        "resources: {limits: {cpu: lots}}",
    );
    let inv = common::inventory_with("kfp-2.5.0-su", &broken);
    let facts = detect(&inv, &DetectOptions::default());
    let detailed = run_pods_detailed(&inv, &facts);
    assert!(
        detailed
            .iter()
            .all(|p| p.mutations.is_empty() && !p.notes.is_empty())
    );
    assert!(
        detailed
            .iter()
            .all(|p| p.workload.annotation(INJECT_KEY) == Some("false"))
    );
}

#[test]
fn pod_mode_webhook_after_istio_injector() {
    let pod_mode = WEBHOOK
        .replace("name: kfp-mesh-workflows", "name: zz-kfp-mesh-pods")
        .replace("/mutate/workflows", "/mutate/pods")
        .replace(
            "apiGroups: [argoproj.io], apiVersions: [v1alpha1], resources: [workflows]",
            "apiGroups: [\"\"], apiVersions: [v1], resources: [pods]",
        )
        .replace("    roles: {executor: true}\n", "")
        .replace(
            "args: [webhook, --config, /etc/kfp-mesh/config.yaml,",
            "args: [webhook,",
        );
    let istio = common::read("kubeflow-manifests-v1.10.1-istio-1-24-install-oauth2-proxy.yaml");
    let inv = common::inventory_with("kfp-2.5.0-su", &format!("{pod_mode}\n---\n{istio}"));
    let hooks = kfp_mesh_webhooks(&inv);
    assert_eq!(hooks.len(), 1, "Istio's injector is not a kfp-mesh webhook");
    assert_eq!(hooks[0].mode, WebhookMode::Pod);
    assert!(
        hooks[0].after_istio_injector,
        "zz-… sorts after istio-sidecar-injector"
    );
    assert!(
        hooks[0].config_source.object.is_none(),
        "no --config: built-in default"
    );
    let facts = detect(&inv, &DetectOptions::default());
    let detailed = run_pods_detailed(&inv, &facts);
    let d = detailed
        .iter()
        .find(|p| p.kind == RunPodKind::DagDriver)
        .unwrap_or_else(|| panic!());
    assert_eq!(d.workload.label(INJECT_KEY), Some("true"));
    assert!(d.mutations[0].after_istio_injector);
    assert_eq!(
        d.before_mutation.as_ref().and_then(|b| b.label(INJECT_KEY)),
        None
    );
    // Executors are not enabled by default.
    let e = detailed
        .iter()
        .find(|p| p.kind == RunPodKind::Executor)
        .unwrap_or_else(|| panic!());
    assert_eq!(e.workload.label(INJECT_KEY), None);
}

/// The repository's own webhook component (`manifests/kustomize/components/driver-webhook`),
/// read file by file, on a multi-user install: the workflow webhook for profile namespaces
/// mutates the example profile's run pods; the pod webhook then has nothing left to do.
#[test]
fn repository_webhook_component_on_multi_user() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../manifests/kustomize/components/driver-webhook");
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml")
                && !p.ends_with("kustomization.yaml")
            {
                files.push(
                    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
                );
            }
        }
    }
    assert!(
        files.len() >= 5,
        "{} files in {}",
        files.len(),
        dir.display()
    );
    let inv = common::inventory_with("kfp-master-mu", &files.join("\n---\n"));
    let hooks = kfp_mesh_webhooks(&inv);
    let modes: Vec<(WebhookMode, bool)> = hooks
        .iter()
        .map(|h| (h.mode, h.after_istio_injector))
        .collect();
    assert!(
        modes.contains(&(WebhookMode::Workflow, false))
            && modes.contains(&(WebhookMode::Pod, false)),
        "{modes:?}"
    );
    assert!(
        hooks.iter().all(|h| h.config.is_some()),
        "{:?}",
        hooks.iter().map(|h| &h.config_error).collect::<Vec<_>>()
    );
    let facts = detect(&inv, &DetectOptions::default());
    for p in run_pods_detailed(&inv, &facts) {
        let w = &p.workload;
        assert_eq!(w.namespace, "kubeflow-user-example-com");
        let webhooks: Vec<&str> = p.mutations.iter().map(|m| m.webhook.as_str()).collect();
        assert_eq!(
            webhooks,
            [
                "profile-workflows.kfp-mesh.kubeflow.org",
                "pods.kfp-mesh.kubeflow.org"
            ],
            "{}",
            w.name
        );
        assert!(
            p.mutations[1].changes.is_empty(),
            "pod mode after workflow mode: {:?}",
            p.mutations[1].changes
        );
        let is_driver = p.kind.role() == mutation::Role::Driver;
        assert_eq!(
            w.label(INJECT_KEY),
            is_driver.then_some("true"),
            "{}",
            w.name
        );
    }
}

/// Run pods are modelled in every profile namespace; where a kfp-mesh webhook selects the
/// namespace its mutation is applied, elsewhere not, whatever the order of the namespaces
/// (the model of one kind of pod is made once per set of webhooks that select it).
#[test]
fn each_profile_namespace_gets_the_mutations_of_the_webhooks_that_select_it() {
    let pod_mode = WEBHOOK
        .replace("/mutate/workflows", "/mutate/pods")
        .replace(
            "apiGroups: [argoproj.io], apiVersions: [v1alpha1], resources: [workflows]",
            "apiGroups: [\"\"], apiVersions: [v1], resources: [pods]",
        )
        .replace(
            "matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [kubeflow]}]",
            "matchLabels: {kfp-mesh: enabled}",
        );
    let namespace = |name: &str, mesh: bool| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    pipelines.kubeflow.org/enabled: \"true\"\n{}---\n",
            if mesh { "    kfp-mesh: enabled\n" } else { "" }
        )
    };
    let extra = format!(
        "{}{}{}{pod_mode}",
        namespace("team-a", true),
        namespace("team-b", false),
        namespace("team-c", true)
    );
    let inv = common::inventory_with("kfp-master-mu", &extra);
    let facts = detect(&inv, &DetectOptions::default());
    let detailed = run_pods_detailed(&inv, &facts);
    for ns in ["team-a", "team-b", "team-c"] {
        let selected = ns != "team-b";
        let in_ns: Vec<&kfp_mesh_kfp::runpods::RunPod> = detailed
            .iter()
            .filter(|p| p.workload.namespace == ns)
            .collect();
        assert_eq!(in_ns.len(), RunPodKind::ALL.len(), "{ns}");
        for p in in_ns {
            let w = &p.workload;
            assert!(
                w.origin.to_string().contains(&format!("in {ns}")),
                "{}",
                w.origin
            );
            assert_eq!(p.mutations.len(), usize::from(selected), "{ns} {}", w.name);
            assert_eq!(p.before_mutation.is_some(), selected, "{ns} {}", w.name);
            if let Some(before) = &p.before_mutation {
                assert_eq!(before.namespace, ns);
                assert_eq!(before.label(INJECT_KEY), None);
            }
            // The configuration adds executors to the drivers; importers stay out.
            let enabled = p.kind != RunPodKind::Importer;
            assert_eq!(
                w.label(INJECT_KEY),
                (selected && enabled).then_some("true"),
                "{ns} {}",
                w.name
            );
        }
    }
}
