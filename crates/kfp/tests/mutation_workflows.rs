//! The pure mutation on the real compiled KFP workflows in `../shared/upstream/workflows`,
//! submitted the way the KFP API server submits them.

use std::collections::BTreeMap;

use kfp_mesh_kfp::mutation::{
    Change, MutationConfig, ReadError, Role, apply_to_pod_parts, mutate_pod, mutate_workflow,
    parse_workflow_view, pod_role, template_role,
};
use serde_json::{Map, Value, json};

fn compiled(name: &str) -> Value {
    let path = kfp_mesh_testdata::upstream("workflows").join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// What the KFP API server does at run creation (`v2_template.go` `RunWorkflow`):
/// `SetAnnotationsToAllTemplatesIfKeyNotExist("sidecar.istio.io/inject", "false")`, the
/// `pipeline/runid` label on pods and Workflow, the run name annotation, the run's service
/// account and the namespace.
fn submitted(name: &str, namespace: &str, service_account: &str) -> Value {
    let mut wf = compiled(name);
    let run_id = "0b9e8b4c-6f0a-4c63-9a55-2f4f1f3f6a11";
    for t in wf["spec"]["templates"].as_array_mut().expect("templates") {
        let meta = t
            .as_object_mut()
            .expect("template")
            .entry("metadata")
            .or_insert(json!({}));
        if meta.get("annotations").is_none_or(Value::is_null) {
            meta["annotations"] = json!({});
        }
        let ann = meta["annotations"].as_object_mut().expect("annotations");
        ann.entry("sidecar.istio.io/inject")
            .or_insert(json!("false"));
    }
    wf["spec"]["podMetadata"]["labels"]["pipeline/runid"] = json!(run_id);
    wf["spec"]["serviceAccountName"] = json!(service_account);
    wf["metadata"]["namespace"] = json!(namespace);
    wf["metadata"]["labels"] = json!({"pipeline/runid": run_id});
    wf["metadata"]["annotations"] = json!({"pipelines.kubeflow.org/run_name": "my run"});
    wf
}

const FILES: [&str; 3] = [
    "kfp-2.5.0-hello_world.yaml",
    "kfp-master-hello_world.yaml",
    "kfp-master-pipeline_with_importer.yaml",
];

fn all_roles() -> MutationConfig {
    MutationConfig::from_yaml("roles:\n  executor: true\n  importer: true\n").expect("valid")
}

fn apply(doc: &Value, patch: &json_patch::Patch) -> Value {
    let mut out = doc.clone();
    json_patch::patch(&mut out, patch).expect("the patch applies");
    out
}

/// Every leaf that differs between two JSON documents: pointer → (old, new).
fn diff(a: &Value, b: &Value, path: String, out: &mut BTreeMap<String, (Value, Value)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                if out.contains_key(&p) {
                    continue;
                }
                let empty = Value::Object(Map::new());
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => diff(va, vb, p, out),
                    // A map added whole is compared leaf by leaf.
                    (None, Some(vb @ Value::Object(_))) => diff(&empty, vb, p, out),
                    (va, vb) => {
                        out.insert(
                            p,
                            (
                                va.cloned().unwrap_or(Value::Null),
                                vb.cloned().unwrap_or(Value::Null),
                            ),
                        );
                    }
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff(va, vb, format!("{path}/{i}"), out);
            }
        }
        _ if a == b => {}
        _ => {
            out.insert(path, (a.clone(), b.clone()));
        }
    }
}

fn differences(a: &Value, b: &Value) -> BTreeMap<String, (Value, Value)> {
    let mut out = BTreeMap::new();
    diff(a, b, String::new(), &mut out);
    out
}

fn roles_of(wf: &Value) -> BTreeMap<String, Role> {
    wf["spec"]["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .filter_map(|t| Some((t["name"].as_str()?.to_string(), template_role(t)?)))
        .collect()
}

#[test]
fn roles_are_recognised_in_every_shape() {
    let expect = |pairs: &[(&str, Role)]| -> BTreeMap<String, Role> {
        pairs.iter().map(|(n, r)| (n.to_string(), *r)).collect()
    };
    let hello = expect(&[
        ("system-container-driver", Role::Driver),
        ("system-dag-driver", Role::Driver),
        ("system-container-impl", Role::Executor),
    ]);
    assert_eq!(roles_of(&compiled("kfp-2.5.0-hello_world.yaml")), hello);
    assert_eq!(roles_of(&compiled("kfp-master-hello_world.yaml")), hello);
    let mut importer = hello.clone();
    importer.insert("system-importer".into(), Role::Importer);
    assert_eq!(
        roles_of(&compiled("kfp-master-pipeline_with_importer.yaml")),
        importer
    );
}

/// The expected value of every field the mutation may touch on a template of this role, for
/// this configuration: label/annotation leaves and resource leaves.
fn expected_changes(
    template: &Value,
    role: Role,
    config: &MutationConfig,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    if !config.role_enabled(role) {
        return out;
    }
    let esc = |k: &str| k.replace('~', "~0").replace('/', "~1");
    for (k, v) in &config.labels {
        if template
            .pointer(&format!("/metadata/labels/{}", esc(k)))
            .is_none()
        {
            out.insert(format!("/metadata/labels/{}", esc(k)), json!(v));
        }
    }
    for (k, v) in config.effective_annotations() {
        if template
            .pointer(&format!("/metadata/annotations/{}", esc(&k)))
            .is_none()
        {
            out.insert(format!("/metadata/annotations/{}", esc(&k)), json!(v));
        }
    }
    out.insert(
        "/metadata/annotations/sidecar.istio.io~1inject".into(),
        json!("true"),
    );
    if config.sets_resources(role) {
        for (sec, list) in [("limits", &config.limits), ("requests", &config.requests)] {
            for (name, q) in list {
                out.insert(
                    format!("/container/resources/{sec}/{name}"),
                    json!(q.as_str()),
                );
            }
        }
    }
    out
}

fn check_workflow(file: &str, config: &MutationConfig) {
    let original = submitted(file, "team-a", "default-editor");
    let plan = mutate_workflow(&original, config).expect("readable");
    assert!(!plan.is_empty(), "{file}: drivers must be mutated");
    let patched = apply(&original, &plan.patch);

    // Outside spec.templates nothing changes.
    let mut outside_a = original.clone();
    let mut outside_b = patched.clone();
    outside_a["spec"]["templates"] = Value::Null;
    outside_b["spec"]["templates"] = Value::Null;
    assert_eq!(outside_a, outside_b, "{file}: only templates may change");

    let before = original["spec"]["templates"].as_array().expect("templates");
    let after = patched["spec"]["templates"].as_array().expect("templates");
    assert_eq!(before.len(), after.len());
    let mut mutated = 0;
    for (t0, t1) in before.iter().zip(after) {
        let name = t0["name"].as_str().unwrap_or_default();
        let got = differences(t0, t1);
        let want = match template_role(t0) {
            Some(role) => expected_changes(t0, role, config),
            None => BTreeMap::new(),
        };
        let got_new: BTreeMap<String, Value> = got
            .iter()
            .map(|(k, (_, new))| (k.clone(), new.clone()))
            .collect();
        assert_eq!(
            got_new, want,
            "{file}: template {name} changed field by field as expected"
        );
        if !want.is_empty() {
            mutated += 1;
            // Driver resources come from KFP's hard-coded 100m/64Mi–500m/512Mi and are raised.
            if config.sets_resources(template_role(t0).expect("role")) {
                assert_eq!(t0["container"]["resources"]["limits"]["cpu"], json!("500m"));
            }
            assert_eq!(
                t0["metadata"]["annotations"]["sidecar.istio.io/inject"],
                json!("false")
            );
        }
    }
    let expected_mutated = roles_of(&original)
        .values()
        .filter(|r| config.role_enabled(**r))
        .count();
    assert_eq!(mutated, expected_mutated, "{file}");

    // Idempotent.
    let again = mutate_workflow(&patched, config).expect("readable");
    assert!(
        again.is_empty(),
        "{file}: second pass must be empty, got {:?}",
        again.patch
    );
    assert!(
        again.summary().contains("already mutated"),
        "{}",
        again.summary()
    );
}

#[test]
fn default_configuration_mutates_drivers_only() {
    for f in FILES {
        check_workflow(f, &MutationConfig::default());
    }
}

#[test]
fn executor_and_importer_only_when_configured() {
    for f in FILES {
        check_workflow(f, &all_roles());
    }
    let wf = submitted(
        "kfp-master-pipeline_with_importer.yaml",
        "kubeflow",
        "pipeline-runner",
    );
    let plan = mutate_workflow(&wf, &all_roles()).expect("readable");
    let impl_t = plan
        .targets
        .iter()
        .find(|t| t.name == "system-container-impl")
        .expect("executor");
    assert!(impl_t.enabled);
    assert!(
        impl_t
            .changes
            .iter()
            .all(|c| !matches!(c, Change::ResourceSet { .. })),
        "executors run user code; their resources come from the pipeline"
    );
    let imp = plan
        .targets
        .iter()
        .find(|t| t.name == "system-importer")
        .expect("importer");
    assert!(
        imp.changes
            .iter()
            .any(|c| matches!(c, Change::ResourceSet { .. }))
    );

    let default_plan = mutate_workflow(&wf, &MutationConfig::default()).expect("readable");
    let skipped: Vec<&str> = default_plan
        .targets
        .iter()
        .filter(|t| !t.enabled)
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(skipped, ["system-importer", "system-container-impl"]);
    assert!(
        default_plan
            .summary()
            .contains("system-importer (importer): role not enabled")
    );
}

#[test]
fn native_sidecar_option() {
    let config = MutationConfig::from_yaml("nativeSidecar: true\n").expect("valid");
    for f in FILES {
        check_workflow(f, &config);
    }
}

#[test]
fn the_patch_is_minimal_and_escapes_keys() {
    let wf = submitted("kfp-2.5.0-hello_world.yaml", "kubeflow", "pipeline-runner");
    let plan = mutate_workflow(&wf, &MutationConfig::default()).expect("readable");
    let ops = serde_json::to_value(&plan.patch).expect("serialises");
    // Template 0 is system-container-driver: `metadata.labels` is absent (one add of the
    // whole map), the annotations map exists (one add per key, one replace), the four
    // resource values exist (four replaces).
    let t0: Vec<&Value> = ops
        .as_array()
        .expect("ops")
        .iter()
        .filter(|o| {
            o["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/spec/templates/0/"))
        })
        .collect();
    let expected = json!([
        {"op": "add", "path": "/spec/templates/0/metadata/labels",
         "value": {"app.kubernetes.io/component": "kfp-driver", "sidecar.istio.io/inject": "true"}},
        {"op": "add", "path": "/spec/templates/0/metadata/annotations/proxy.istio.io~1config",
         "value": "{\"holdApplicationUntilProxyStarts\":true}"},
        {"op": "add", "path": "/spec/templates/0/metadata/annotations/traffic.sidecar.istio.io~1excludeOutboundPorts",
         "value": "15090,15021,15020"},
        {"op": "add", "path": "/spec/templates/0/metadata/annotations/traffic.sidecar.istio.io~1includeInboundPorts",
         "value": "*"},
        {"op": "add", "path": "/spec/templates/0/metadata/annotations/workflows.argoproj.io~1kill-cmd-istio-proxy",
         "value": "[\"pilot-agent\",\"request\",\"POST\",\"quitquitquit\"]"},
        {"op": "replace", "path": "/spec/templates/0/metadata/annotations/sidecar.istio.io~1inject", "value": "true"},
        {"op": "replace", "path": "/spec/templates/0/container/resources/limits/cpu", "value": "1000m"},
        {"op": "replace", "path": "/spec/templates/0/container/resources/limits/memory", "value": "1Gi"},
        {"op": "replace", "path": "/spec/templates/0/container/resources/requests/cpu", "value": "200m"},
        {"op": "replace", "path": "/spec/templates/0/container/resources/requests/memory", "value": "256Mi"},
    ]);
    assert_eq!(Value::Array(t0.into_iter().cloned().collect()), expected);
    // Two drivers, ten operations each.
    assert_eq!(plan.patch.0.len(), 20);
}

fn driver_template(extra: Value) -> Value {
    let mut wf = submitted("kfp-master-hello_world.yaml", "kubeflow", "pipeline-runner");
    let templates = wf["spec"]["templates"].as_array_mut().expect("templates");
    let t = templates
        .iter_mut()
        .find(|t| t["name"] == "system-container-driver")
        .expect("driver");
    json_patch::merge(t, &extra);
    wf
}

fn driver_after(wf: &Value, config: &MutationConfig) -> (Value, Vec<Change>) {
    let plan = mutate_workflow(wf, config).expect("readable");
    let patched = apply(wf, &plan.patch);
    let t = patched["spec"]["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .find(|t| t["name"] == "system-container-driver")
        .cloned()
        .expect("driver");
    let changes = plan
        .targets
        .iter()
        .find(|t| t.name == "system-container-driver")
        .map(|t| t.changes.clone())
        .unwrap_or_default();
    assert!(
        mutate_workflow(&patched, config)
            .expect("readable")
            .is_empty(),
        "idempotent"
    );
    (t, changes)
}

#[test]
fn user_metadata_is_never_overwritten() {
    let wf = driver_template(json!({"metadata": {
        "labels": {"app.kubernetes.io/component": "mine", "sidecar.istio.io/inject": "false"},
        "annotations": {"traffic.sidecar.istio.io/includeInboundPorts": "8080"}}}));
    let (t, changes) = driver_after(&wf, &MutationConfig::default());
    assert_eq!(
        t["metadata"]["labels"]["app.kubernetes.io/component"],
        "mine"
    );
    assert_eq!(t["metadata"]["labels"]["sidecar.istio.io/inject"], "false");
    assert_eq!(
        t["metadata"]["annotations"]["traffic.sidecar.istio.io/includeInboundPorts"],
        "8080"
    );
    assert!(changes.contains(&Change::LabelKept {
        key: "app.kubernetes.io/component".into(),
        existing: "mine".into(),
        wanted: "kfp-driver".into()
    }));
    // The KFP-stamped annotation is the one exception.
    assert_eq!(
        t["metadata"]["annotations"]["sidecar.istio.io/inject"],
        "true"
    );
}

#[test]
fn annotation_set_before_the_api_server_is_kept() {
    // DRIVER_POD_ANNOTATIONS-style: the template already says "true"; the API server then
    // leaves it, and so do we.
    let wf =
        driver_template(json!({"metadata": {"annotations": {"sidecar.istio.io/inject": "true"}}}));
    let (t, changes) = driver_after(&wf, &MutationConfig::default());
    assert_eq!(
        t["metadata"]["annotations"]["sidecar.istio.io/inject"],
        "true"
    );
    assert!(
        !changes
            .iter()
            .any(|c| matches!(c, Change::AnnotationReplaced { .. }))
    );
}

#[test]
fn resources_are_raised_never_lowered_unless_configured() {
    let wf = driver_template(json!({"container": {"resources": {
        "limits": {"cpu": "4", "memory": "{{inputs.parameters.mem}}"},
        "requests": {"cpu": "0.1", "memory": "2Gi"}}}}));
    let (t, changes) = driver_after(&wf, &MutationConfig::default());
    let r = &t["container"]["resources"];
    assert_eq!(r["limits"]["cpu"], "4", "higher limit kept");
    assert_eq!(
        r["limits"]["memory"], "{{inputs.parameters.mem}}",
        "placeholder kept"
    );
    assert_eq!(r["requests"]["cpu"], "200m", "raised");
    assert_eq!(r["requests"]["memory"], "2Gi", "higher request kept");
    assert!(changes.contains(&Change::ResourceUnreadable {
        section: "limits",
        name: "memory".into(),
        existing: "{{inputs.parameters.mem}}".into()
    }));

    let lower = MutationConfig::from_yaml("allowLowerResources: true\n").expect("valid");
    let (t, _) = driver_after(&wf, &lower);
    let r = &t["container"]["resources"];
    assert_eq!(r["limits"]["cpu"], "1000m");
    assert_eq!(r["requests"]["memory"], "256Mi");
    assert_eq!(r["requests"]["cpu"], "200m");
}

#[test]
fn a_limit_never_ends_below_the_request() {
    // A user request above our limit: the limit we add is raised to it.
    let wf = driver_template(
        json!({"container": {"resources": {"limits": null, "requests": {"cpu": "3"}}}}),
    );
    let (t, _) = driver_after(&wf, &MutationConfig::default());
    let r = &t["container"]["resources"];
    assert_eq!(r["limits"]["cpu"], "3");
    assert_eq!(r["limits"]["memory"], "1Gi");
    assert_eq!(r["requests"]["cpu"], "3");

    // Lowering a limit stops at an existing higher request.
    let lower =
        MutationConfig::from_yaml("allowLowerResources: true\nresources:\n  limits:\n    cpu: 1\n")
            .expect("valid");
    let wf = driver_template(
        json!({"container": {"resources": {"limits": {"cpu": "8"}, "requests": {"cpu": "2"}}}}),
    );
    let (t, _) = driver_after(&wf, &lower);
    assert_eq!(t["container"]["resources"]["limits"]["cpu"], "2");
}

#[test]
fn missing_metadata_and_resources_are_added_whole() {
    let mut wf = submitted("kfp-2.5.0-hello_world.yaml", "kubeflow", "pipeline-runner");
    let t = &mut wf["spec"]["templates"][0];
    t.as_object_mut().expect("template").remove("metadata");
    t["container"]
        .as_object_mut()
        .expect("container")
        .remove("resources");
    let plan = mutate_workflow(&wf, &MutationConfig::default()).expect("readable");
    let paths: Vec<String> = plan.patch.0.iter().map(|o| o.path().to_string()).collect();
    assert!(paths.contains(&"/spec/templates/0/metadata".to_string()));
    assert!(paths.contains(&"/spec/templates/0/container/resources".to_string()));
    let patched = apply(&wf, &plan.patch);
    assert_eq!(
        patched["spec"]["templates"][0]["container"]["resources"],
        json!({"limits": {"cpu": "1000m", "memory": "1Gi"}, "requests": {"cpu": "200m", "memory": "256Mi"}})
    );
    assert!(
        mutate_workflow(&patched, &MutationConfig::default())
            .expect("readable")
            .is_empty()
    );
}

#[test]
fn unreadable_objects_are_errors_not_panics() {
    let c = MutationConfig::default();
    assert_eq!(
        mutate_workflow(&json!("x"), &c),
        Err(ReadError::NotAnObject)
    );
    assert!(matches!(
        mutate_workflow(&json!({"kind": "Pod"}), &c),
        Err(ReadError::WrongKind { .. })
    ));
    assert!(matches!(
        mutate_workflow(&json!({"kind": "Workflow", "spec": {"templates": {}}}), &c),
        Err(ReadError::FieldNotList(_))
    ));
    assert!(matches!(
        mutate_workflow(
            &json!({"spec": {"templates": [{"name": "system-dag-driver", "container": {}, "metadata": 3}]}}),
            &c
        ),
        Err(ReadError::FieldNotObject(_))
    ));
    // A workflow that references a WorkflowTemplate has nothing to mutate.
    let plan = mutate_workflow(
        &json!({"kind": "Workflow", "spec": {"workflowTemplateRef": {"name": "x"}}}),
        &c,
    )
    .expect("readable");
    assert!(plan.is_empty());
    assert_eq!(mutate_pod(&json!([]), &c), Err(ReadError::NotAnObject));
}

// ---------------------------------------------------------------------------------------------
// Pod mode

/// A pod as the Argo workflow-controller builds it for `template` of `wf`
/// (`workflowpod.go`): podMetadata then template metadata, Argo's labels and annotations,
/// `init` and `wait` containers carrying `ARGO_TEMPLATE`, the template container renamed
/// `main` and wrapped by the emissary executor.
fn argo_pod(wf: &Value, template: &str, pod_name: &str, argo_template_env: Option<&str>) -> Value {
    let t = wf["spec"]["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .find(|t| t["name"] == template)
        .expect("template")
        .clone();
    let wf_name = "hello-world-x7k2p";
    let mut labels = wf["spec"]["podMetadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut annotations = wf["spec"]["podMetadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (k, v) in t["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default()
    {
        labels.insert(k, v);
    }
    for (k, v) in t["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default()
    {
        annotations.insert(k, v);
    }
    labels.insert("workflows.argoproj.io/workflow".into(), json!(wf_name));
    labels.insert("workflows.argoproj.io/completed".into(), json!("false"));
    annotations.insert(
        "workflows.argoproj.io/node-name".into(),
        json!(format!("{wf_name}.root.x")),
    );
    annotations.insert("workflows.argoproj.io/node-id".into(), json!(pod_name));
    annotations.insert(
        "kubectl.kubernetes.io/default-container".into(),
        json!("main"),
    );

    let template_json = argo_template_env.map_or_else(|| t.to_string(), str::to_string);
    let argo_env = json!([
        {"name": "ARGO_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "ARGO_TEMPLATE", "value": template_json},
        {"name": "ARGO_NODE_ID", "value": pod_name},
    ]);
    let mut main = t["container"].clone();
    main["name"] = json!("main");
    let mut command = vec![
        json!("/var/run/argo/argoexec"),
        json!("emissary"),
        json!("--loglevel"),
        json!("info"),
        json!("--"),
    ];
    command.extend(main["command"].as_array().cloned().unwrap_or_default());
    main["command"] = Value::Array(command);
    let mut init_containers = vec![json!({
        "name": "init", "image": "quay.io/argoproj/argoexec:v3.5.14",
        "command": ["argoexec", "init", "--loglevel", "info"], "env": argo_env.clone(),
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}}})];
    init_containers.extend(t["initContainers"].as_array().cloned().unwrap_or_default());
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "namespace": "team-a",
            "labels": Value::Object(labels),
            "annotations": Value::Object(annotations),
            "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": wf_name, "uid": "u", "controller": true}]
        },
        "spec": {
            "serviceAccountName": wf["spec"]["serviceAccountName"],
            "restartPolicy": "Never",
            "initContainers": init_containers,
            "containers": [
                {"name": "wait", "image": "quay.io/argoproj/argoexec:v3.5.14",
                 "command": ["argoexec", "wait", "--loglevel", "info"], "env": argo_env,
                 "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}}},
                main
            ],
            "volumes": t["volumes"].clone()
        }
    })
}

fn check_pod(pod: &Value, role: Role, config: &MutationConfig) {
    assert_eq!(pod_role(pod), Some(role), "{}", pod["metadata"]["name"]);
    let plan = mutate_pod(pod, config).expect("readable");
    let patched = apply(pod, &plan.patch);
    let got: BTreeMap<String, Value> = differences(pod, &patched)
        .into_iter()
        .map(|(k, (_, v))| (k, v))
        .collect();
    let mut want = BTreeMap::new();
    if config.role_enabled(role) {
        let esc = |k: &str| k.replace('~', "~0").replace('/', "~1");
        for (k, v) in &config.labels {
            want.insert(format!("/metadata/labels/{}", esc(k)), json!(v));
        }
        for (k, v) in config.effective_annotations() {
            want.insert(format!("/metadata/annotations/{}", esc(&k)), json!(v));
        }
        want.insert(
            "/metadata/annotations/sidecar.istio.io~1inject".into(),
            json!("true"),
        );
        if config.sets_resources(role) {
            for (sec, list) in [("limits", &config.limits), ("requests", &config.requests)] {
                for (name, q) in list {
                    want.insert(
                        format!("/spec/containers/1/resources/{sec}/{name}"),
                        json!(q.as_str()),
                    );
                }
            }
        }
    }
    assert_eq!(got, want, "pod {}", pod["metadata"]["name"]);
    assert!(
        mutate_pod(&patched, config).expect("readable").is_empty(),
        "idempotent"
    );

    // The parts function gives the same result (the checker uses it).
    let mut metadata = pod["metadata"].clone();
    let mut main = pod["spec"]["containers"][1].clone();
    apply_to_pod_parts(role, &mut metadata, Some(&mut main), config).expect("readable");
    assert_eq!(metadata, patched["metadata"]);
    assert_eq!(main, patched["spec"]["containers"][1]);
}

#[test]
fn pod_mode_on_pods_built_like_argo() {
    let default = MutationConfig::default();
    let all = all_roles();
    // 2.5.0: no runtime-role annotation; POD_NAMES v2 names.
    let wf = submitted("kfp-2.5.0-hello_world.yaml", "team-a", "default-editor");
    for (t, role) in [
        ("system-dag-driver", Role::Driver),
        ("system-container-driver", Role::Driver),
        ("system-container-impl", Role::Executor),
    ] {
        let pod = argo_pod(&wf, t, &format!("hello-world-x7k2p-{t}-938794099"), None);
        check_pod(&pod, role, &default);
        check_pod(&pod, role, &all);
    }
    // master: runtime-role annotations.
    let wf = submitted(
        "kfp-master-pipeline_with_importer.yaml",
        "team-a",
        "default-editor",
    );
    for (t, role) in [
        ("system-dag-driver", Role::Driver),
        ("system-container-driver", Role::Driver),
        ("system-container-impl", Role::Executor),
        ("system-importer", Role::Importer),
    ] {
        let pod = argo_pod(
            &wf,
            t,
            &format!("pipeline-with-importer-abcde-{t}-1234567"),
            None,
        );
        check_pod(&pod, role, &default);
        check_pod(&pod, role, &all);
    }
}

#[test]
fn pod_mode_without_a_telling_name() {
    let wf = submitted("kfp-2.5.0-hello_world.yaml", "team-a", "default-editor");
    // POD_NAMES v1 (Argo 3.3, KFP 2.0–2.1): recognised by ARGO_TEMPLATE.
    let pod = argo_pod(
        &wf,
        "system-dag-driver",
        "hello-world-x7k2p-3942883467",
        None,
    );
    check_pod(&pod, Role::Driver, &MutationConfig::default());
    // ... and with an offloaded template, by the main container behind emissary.
    let pod = argo_pod(
        &wf,
        "system-container-driver",
        "hello-world-x7k2p-1",
        Some("offloaded"),
    );
    check_pod(&pod, Role::Driver, &MutationConfig::default());
    let pod = argo_pod(
        &wf,
        "system-container-impl",
        "hello-world-x7k2p-2",
        Some("offloaded"),
    );
    check_pod(&pod, Role::Executor, &all_roles());
}

#[test]
fn other_pods_are_left_alone() {
    let pod = json!({"kind": "Pod", "metadata": {"name": "web-1", "annotations": {"sidecar.istio.io/inject": "false"}},
        "spec": {"containers": [{"name": "main", "image": "nginx"}]}});
    let plan = mutate_pod(&pod, &MutationConfig::default()).expect("readable");
    assert!(plan.is_empty() && plan.targets.is_empty());
    assert_eq!(plan.summary(), "no KFP run-pod template recognised");
}

#[test]
fn parts_function_creates_missing_metadata() {
    let mut metadata = Value::Null;
    let mut main = json!({"name": "main"});
    let changes = apply_to_pod_parts(
        Role::Driver,
        &mut metadata,
        Some(&mut main),
        &MutationConfig::default(),
    )
    .expect("readable");
    assert_eq!(metadata["labels"]["sidecar.istio.io/inject"], "true");
    assert_eq!(main["resources"]["limits"]["memory"], "1Gi");
    assert!(changes.iter().all(Change::is_modification));
    let mut unused = Map::new();
    unused.insert("x".into(), json!(1));
    let mut m2 = Value::Object(unused);
    assert!(
        apply_to_pod_parts(Role::Executor, &mut m2, None, &MutationConfig::default())
            .expect("readable")
            .is_empty()
    );
}

#[test]
fn the_parsing_view_gives_the_same_plan_as_the_whole_object() {
    for f in FILES {
        for config in [MutationConfig::default(), all_roles()] {
            let wf = submitted(f, "team-a", "default-editor");
            let view = parse_workflow_view(&wf.to_string()).expect("parses");
            assert!(
                view.to_string().len() < wf.to_string().len(),
                "{f}: the view is smaller"
            );
            let full = mutate_workflow(&wf, &config).expect("readable");
            let from_view = mutate_workflow(&view, &config).expect("readable");
            assert_eq!(full, from_view, "{f}");
            // And once mutated, the view of the result needs nothing.
            let patched = apply(&wf, &full.patch);
            let view = parse_workflow_view(&patched.to_string()).expect("parses");
            assert!(
                mutate_workflow(&view, &config)
                    .expect("readable")
                    .is_empty()
            );
        }
    }
    assert!(parse_workflow_view(r#"{"spec": {"templates": {}}}"#).is_err());
    assert_eq!(
        parse_workflow_view(r#"{"kind": "Workflow", "spec": null}"#).expect("parses"),
        json!({"kind": "Workflow"})
    );
}
