//! Run-pod synthesis: the driver, executor and importer pods Argo creates for every KFP run,
//! modelled as KFP (compiler + API server), `DRIVER_POD_*` and Argo would create them, plus the
//! mutation of a kfp-mesh webhook deployed in the input. Also the objects of a profile
//! namespace that the input does not hold (the example profile, the KFP profile controller's
//! per-namespace attachments).

use std::collections::{BTreeMap, HashMap};

use kfp_mesh_core::inventory::{Interner, Inventory, Workload};
use kfp_mesh_core::model::{LabelSelector, MutatingWebhook, PodSpec};
use kfp_mesh_core::object::string_map;
use kfp_mesh_core::object::{Cited, Meta, Object, Origin, StringMap};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::detect::{
    Evidence, KfpFacts, Version, find_object, image_name, pod_spec_json, workload_object,
};
use crate::mutation::{self, INJECT_KEY, MutationConfig, Role};

/// Annotation the KFP API server stamps on every template.
pub const RUNTIME_ROLE_KEY: &str = "pipelines.kubeflow.org/runtime-role";
/// Annotation kfp-mesh puts on objects it synthesises (not on run pods, which are `synthetic`).
pub const SYNTHETIC_ANNOTATION: &str = "kfp-mesh.io/synthetic";
/// The modelled Workflow is named after the install: `kfp-<version>-run` (`kfp-2-15-0-run`),
/// or `kfp-run` when the version is unknown (Argo pod names are `<workflow>-<template>-<hash>`).
pub fn workflow_name(facts: &KfpFacts) -> String {
    match facts.version.effective {
        Some(v) => kfp_mesh_core::text!("kfp-{}-run", v.to_string().replace('.', "-")),
        None => "kfp-run".to_string(),
    }
}
/// The run id the API server puts in `pipeline/runid`.
pub const EXAMPLE_RUN_ID: &str = "00000000-0000-4000-8000-00000000c0de";

/// The four pods of a modelled run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunPodKind {
    DagDriver,
    ContainerDriver,
    Executor,
    Importer,
}

impl RunPodKind {
    pub const ALL: [RunPodKind; 4] = [
        RunPodKind::DagDriver,
        RunPodKind::ContainerDriver,
        RunPodKind::Executor,
        RunPodKind::Importer,
    ];
    /// The Argo template name.
    pub fn template(self) -> &'static str {
        match self {
            RunPodKind::DagDriver => "system-dag-driver",
            RunPodKind::ContainerDriver => "system-container-driver",
            RunPodKind::Executor => "system-container-impl",
            RunPodKind::Importer => "system-importer",
        }
    }
    /// The role the mutation (and the catalog) knows it by.
    pub fn role(self) -> Role {
        match self {
            RunPodKind::DagDriver | RunPodKind::ContainerDriver => Role::Driver,
            RunPodKind::Executor => Role::Executor,
            RunPodKind::Importer => Role::Importer,
        }
    }
    fn runtime_role(self) -> &'static str {
        match self.role() {
            Role::Driver => "driver",
            _ => "launcher",
        }
    }
    fn hash(self) -> &'static str {
        match self {
            RunPodKind::DagDriver => "1001",
            RunPodKind::ContainerDriver => "1002",
            RunPodKind::Executor => "1003",
            RunPodKind::Importer => "1004",
        }
    }
    fn node(self) -> &'static str {
        match self {
            RunPodKind::DagDriver => "root-driver",
            RunPodKind::ContainerDriver => "example-task-driver",
            RunPodKind::Executor => "example-task.executor",
            RunPodKind::Importer => "example-importer",
        }
    }
}

/// How a kfp-mesh webhook is wired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookMode {
    /// Mutates Argo Workflows on CREATE (templates become pods later).
    Workflow,
    /// Mutates Pods on CREATE (ordering against Istio's injector matters).
    Pod,
}

/// A kfp-mesh webhook found in the input.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KfpMeshWebhook {
    pub configuration: Cited,
    pub webhook: String,
    pub mode: WebhookMode,
    #[serde(skip)]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(skip)]
    pub object_selector: Option<LabelSelector>,
    /// The configuration it runs with (`None` when it would refuse to start).
    #[serde(skip)]
    pub config: Option<MutationConfig>,
    pub config_source: Evidence,
    pub config_error: Option<String>,
    /// Pod mode only: Kubernetes calls it after Istio's injector (names sort after, and the
    /// injector is not reinvoked), so Istio decides on the pod as it was before.
    pub after_istio_injector: bool,
}

/// A mutation applied to one modelled pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedMutation {
    pub configuration: Cited,
    pub webhook: String,
    pub mode: WebhookMode,
    pub config_source: Evidence,
    /// One entry per change (`+label sidecar.istio.io/inject=true`, ...); empty when the pod
    /// already had everything or the role is not enabled.
    pub changes: Vec<String>,
    pub role_enabled: bool,
    pub after_istio_injector: bool,
}

/// A modelled run pod with what was done to it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunPod {
    pub kind: RunPodKind,
    /// Shared with the inventory the pod is added to.
    pub workload: std::sync::Arc<Workload>,
    /// kfp-mesh webhook mutations, in the order Kubernetes applies them.
    pub mutations: Vec<AppliedMutation>,
    /// The pod before any kfp-mesh mutation (what Istio sees when a Pod-mode webhook runs
    /// after its injector). `None` when nothing was applied.
    pub before_mutation: Option<Workload>,
    /// Problems of the model (an unreadable webhook configuration, ...).
    pub notes: Vec<String>,
}

/// The run pods of every run namespace, with the kfp-mesh mutations applied.
pub fn run_pods(inv: &Inventory, facts: &KfpFacts) -> Vec<Workload> {
    run_pods_detailed(inv, facts)
        .into_iter()
        .map(|p| std::sync::Arc::unwrap_or_clone(p.workload))
        .collect()
}

/// [`run_pods`] with, per pod, the mutations applied and the pod before them.
pub fn run_pods_detailed(inv: &Inventory, facts: &KfpFacts) -> Vec<RunPod> {
    if !facts.detected {
        return Vec::new();
    }
    let webhooks = kfp_mesh_webhooks(inv);
    let mut out = Vec::new();
    // The run pods of one kind have the same pod spec in every namespace but a mutated one.
    let mut specs = Interner::new();
    let mut modelled = HashMap::new();
    // Each kind's main container as the compiler writes it: the same in every namespace.
    let mains = RunPodKind::ALL.map(|kind| (kind, main_container(facts, kind)));
    for ns in facts.run_namespaces() {
        let ns_labels = namespace_labels(inv, facts, &ns);
        for (kind, main) in &mains {
            out.push(model_pod(
                facts,
                &ns,
                &ns_labels,
                (*kind, main),
                &webhooks,
                &mut specs,
                &mut modelled,
            ));
        }
    }
    out
}

/// What a run pod of one kind is made into by the kfp-mesh webhooks that select it (which
/// ones, by their place in the list of webhooks): the same in every namespace where the same
/// webhooks select it, so made once (a cluster has thousands of profile namespaces).
type Modelled = HashMap<(RunPodKind, Vec<usize>, Vec<usize>), ModelledPod>;

/// A modelled run pod, in whichever namespace: its workload, the Pod-mode mutations and their
/// notes (the Workflow-mode ones are made again for each namespace, which needs them to know
/// its key), and the workload before any mutation (when there is one).
struct ModelledPod {
    workload: Workload,
    mutations: Vec<AppliedMutation>,
    before_mutation: Option<Workload>,
    notes: Vec<String>,
}

/// `w` in namespace `ns`, made by `origin`.
fn placed(w: &Workload, ns: &str, origin: &Origin) -> Workload {
    Workload {
        namespace: ns.to_string(),
        origin: origin.clone(),
        cited: Default::default(),
        memo: Default::default(),
        ..w.clone()
    }
}

fn namespace_labels(inv: &Inventory, facts: &KfpFacts, ns: &str) -> StringMap {
    if inv.namespaces.contains_key(ns) {
        return inv.namespace_labels(ns).into_owned();
    }
    match facts.profile(ns) {
        Some(p) => StringMap::from(&p.labels),
        None => inv.namespace_labels(ns).into_owned(),
    }
}

fn strings(m: &BTreeMap<String, String>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn model_pod(
    facts: &KfpFacts,
    ns: &str,
    ns_labels: &StringMap,
    (kind, compiled_main): (RunPodKind, &Value),
    webhooks: &[KfpMeshWebhook],
    specs: &mut Interner<PodSpec>,
    modelled: &mut Modelled,
) -> RunPod {
    let version = facts.version.effective;
    let at_least = |v: Version| version.is_some_and(|e| e >= v);
    let template = kind.template();
    let workflow = workflow_name(facts);
    let name = kfp_mesh_core::text!("{workflow}-{template}-{}", kind.hash());
    let mut notes = Vec::new();

    // 1. Template metadata, as the compiler and the API server leave it.
    let mut t_labels: BTreeMap<String, String> = BTreeMap::new();
    let mut t_annotations: BTreeMap<String, String> = BTreeMap::new();
    if at_least(Version::new(2, 17, 0)) {
        t_annotations.insert(
            RUNTIME_ROLE_KEY.to_string(),
            kind.runtime_role().to_string(),
        );
    }
    let dp = &facts.driver_pod_config;
    if kind.role() == Role::Driver && dp.supported {
        // Compiler: admin metadata on the two driver templates, never overwriting a key.
        for (k, v) in &dp.labels {
            t_labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &dp.annotations {
            t_annotations.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    // API server: SetAnnotationsToAllTemplatesIfKeyNotExist(inject, "false").
    t_annotations
        .entry(INJECT_KEY.to_string())
        .or_insert_with(|| "false".to_string());
    let mut template_meta =
        json!({"labels": strings(&t_labels), "annotations": strings(&t_annotations)});

    // 2. Workflow-mode webhooks mutate the template before Argo makes the pod.
    let workflow_labels: BTreeMap<String, String> =
        [("pipeline/runid".to_string(), EXAMPLE_RUN_ID.to_string())].into();
    let mut mutations = Vec::new();
    // Copied only when a webhook changes it.
    let mut main = std::borrow::Cow::Borrowed(compiled_main);
    let unmutated_template_meta = template_meta.clone();
    let mut workflow_webhooks = Vec::new();
    for (i, wh) in webhooks.iter().enumerate() {
        if wh.mode != WebhookMode::Workflow || !selects(wh, ns_labels, &workflow_labels) {
            continue;
        }
        workflow_webhooks.push(i);
        if let Some(m) = apply(wh, kind, &mut template_meta, main.to_mut(), &mut notes) {
            mutations.push(m);
        }
    }

    // 3. Argo: podMetadata first, then template metadata (template wins), plus its own.
    let pod_meta = |tm: &Value| -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let mut labels: BTreeMap<String, String> = [
            ("pipelines.kubeflow.org/v2_component", "true"),
            ("pipeline/runid", EXAMPLE_RUN_ID),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut annotations: BTreeMap<String, String> = [(
            "pipelines.kubeflow.org/v2_component".to_string(),
            "true".to_string(),
        )]
        .into();
        let owned = |m: StringMap| -> Vec<(String, String)> {
            m.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        labels.extend(owned(string_map(tm.get("labels"))));
        annotations.extend(owned(string_map(tm.get("annotations"))));
        labels.insert(
            "workflows.argoproj.io/workflow".to_string(),
            workflow.clone(),
        );
        labels.insert(
            "workflows.argoproj.io/completed".to_string(),
            "false".to_string(),
        );
        annotations.insert(
            "workflows.argoproj.io/node-name".to_string(),
            kfp_mesh_core::text!("{workflow}.root.{}", kind.node()),
        );
        annotations.insert(
            "kubectl.kubernetes.io/default-container".to_string(),
            "main".to_string(),
        );
        (labels, annotations)
    };
    let (labels, annotations) = pod_meta(&template_meta);
    let origin = Origin::builtin(&kfp_mesh_core::text!(
        "KFP {} run pod model: {template} in {ns}",
        facts.version.display
    ));
    let pod_webhooks: Vec<usize> = webhooks
        .iter()
        .enumerate()
        .filter(|(_, wh)| wh.mode == WebhookMode::Pod && selects(wh, ns_labels, &labels))
        .map(|(i, _)| i)
        .collect();
    let key = (kind, workflow_webhooks, pod_webhooks);
    if let Some(m) = modelled.get(&key) {
        mutations.extend(m.mutations.iter().cloned());
        notes.extend(m.notes.iter().cloned());
        return RunPod {
            kind,
            workload: placed(&m.workload, ns, &origin).into(),
            before_mutation: m.before_mutation.as_ref().map(|b| placed(b, ns, &origin)),
            mutations,
            notes,
        };
    }
    let (from_workflow, notes_from_workflow) = (mutations.len(), notes.len());
    let mut pod = pod_json(facts, kind, ns, &name, &labels, &annotations, &main);

    // 4. Pod-mode webhooks mutate the pod itself.
    for wh in key.2.iter().filter_map(|i| webhooks.get(*i)) {
        let mut meta = pod.get("metadata").cloned().unwrap_or(Value::Null);
        let mut main_now = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("name").and_then(Value::as_str) == Some("main"))
            })
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(m) = apply(wh, kind, &mut meta, &mut main_now, &mut notes) {
            pod["metadata"] = meta;
            mutations.push(m);
        }
    }

    let workload = to_workload(&pod, ns, &name, origin.clone(), specs);
    // The same webhooks make the same mutations wherever they apply, so a pod of this key has
    // mutations in every namespace or in none.
    let before_mutation = (!mutations.is_empty()).then(|| {
        let (l, a) = pod_meta(&unmutated_template_meta);
        let unmutated = pod_json(facts, kind, ns, &name, &l, &a, compiled_main);
        to_workload(&unmutated, ns, &name, origin, specs)
    });
    modelled.insert(
        key,
        ModelledPod {
            workload: workload.clone(),
            mutations: mutations.get(from_workflow..).unwrap_or_default().to_vec(),
            before_mutation: before_mutation.clone(),
            notes: notes
                .get(notes_from_workflow..)
                .unwrap_or_default()
                .to_vec(),
        },
    );
    RunPod {
        kind,
        workload: workload.into(),
        mutations,
        before_mutation,
        notes,
    }
}

fn to_workload(
    pod: &Value,
    ns: &str,
    name: &str,
    origin: Origin,
    specs: &mut Interner<PodSpec>,
) -> Workload {
    let meta = pod.get("metadata");
    let spec: PodSpec = pod
        .get("spec")
        .and_then(|s| <PodSpec as serde::Deserialize>::deserialize(s).ok())
        .unwrap_or_default();
    Workload {
        kind: "Pod".to_string(),
        name: name.to_string(),
        namespace: ns.to_string(),
        labels: string_map(meta.and_then(|m| m.get("labels"))),
        annotations: string_map(meta.and_then(|m| m.get("annotations"))),
        spec: specs.share(spec),
        origin,
        synthetic: true,
        cited: Default::default(),
        memo: Default::default(),
    }
}

fn apply(
    wh: &KfpMeshWebhook,
    kind: RunPodKind,
    metadata: &mut Value,
    main: &mut Value,
    notes: &mut Vec<String>,
) -> Option<AppliedMutation> {
    let Some(config) = &wh.config else {
        notes.push(kfp_mesh_core::text!(
            "kfp-mesh webhook {} selects this pod but would not start: {}",
            wh.configuration.object,
            wh.config_error
                .as_deref()
                .unwrap_or("unreadable configuration")
        ));
        return None;
    };
    let main_arg = (!main.is_null()).then_some(&mut *main);
    match mutation::apply_to_pod_parts(kind.role(), metadata, main_arg, config) {
        Ok(changes) => Some(AppliedMutation {
            configuration: wh.configuration.clone(),
            webhook: wh.webhook.clone(),
            mode: wh.mode,
            config_source: wh.config_source.clone(),
            changes: changes.iter().map(ToString::to_string).collect(),
            role_enabled: config.role_enabled(kind.role()),
            after_istio_injector: wh.after_istio_injector,
        }),
        Err(e) => {
            notes.push(kfp_mesh_core::text!(
                "kfp-mesh webhook {}: {e}",
                wh.configuration.object
            ));
            None
        }
    }
}

fn selects(
    wh: &KfpMeshWebhook,
    ns_labels: &StringMap,
    obj_labels: &BTreeMap<String, String>,
) -> bool {
    wh.namespace_selector
        .as_ref()
        .is_none_or(|s| s.matches(ns_labels))
        && wh
            .object_selector
            .as_ref()
            .is_none_or(|s| s.matches(obj_labels))
}

fn main_container(facts: &KfpFacts, kind: RunPodKind) -> Value {
    let kfp_ns = facts.kfp_namespace();
    let driver_resources = json!({"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}});
    let addresses = facts
        .version
        .effective
        .is_some_and(|v| v >= Version::new(2, 14, 0));
    let wrap = |cmd: &[&str]| -> Vec<String> {
        let mut c = vec![
            "/var/run/argo/argoexec".to_string(),
            "emissary".to_string(),
            "--".to_string(),
        ];
        c.extend(cmd.iter().map(|s| s.to_string()));
        c
    };
    match kind {
        RunPodKind::DagDriver | RunPodKind::ContainerDriver => {
            let mut args: Vec<String> = vec![
                "--type".into(),
                if kind == RunPodKind::DagDriver {
                    "ROOT_DAG"
                } else {
                    "CONTAINER"
                }
                .into(),
            ];
            if addresses {
                args.extend([
                    "--ml_pipeline_server_address".into(),
                    kfp_mesh_core::text!("ml-pipeline.{kfp_ns}.svc.cluster.local"),
                    "--ml_pipeline_server_port".into(),
                    "8887".into(),
                    "--mlmd_server_address".into(),
                    kfp_mesh_core::text!("metadata-grpc-service.{kfp_ns}.svc.cluster.local"),
                    "--mlmd_server_port".into(),
                    "8080".into(),
                ]);
            }
            json!({"name": "main", "image": facts.images.driver.value, "command": wrap(&["driver"]),
                   "args": args, "resources": driver_resources})
        }
        RunPodKind::Executor => json!({
            "name": "main",
            "image": "python:3.11",
            "command": wrap(&["/kfp-launcher/launch"]),
            "args": ["--pipeline_name", "example", "--run_id", EXAMPLE_RUN_ID, "--", "python3", "-c", "print('user code')"],
            "resources": {}
        }),
        RunPodKind::Importer => {
            let mut args: Vec<String> = vec!["--executor_type".into(), "importer".into()];
            if addresses {
                args.extend([
                    "--mlmd_server_address".into(),
                    kfp_mesh_core::text!("metadata-grpc-service.{kfp_ns}.svc.cluster.local"),
                    "--mlmd_server_port".into(),
                    "8080".into(),
                ]);
            }
            json!({"name": "main", "image": facts.images.launcher.value, "command": wrap(&["launcher-v2"]),
                   "args": args, "resources": driver_resources})
        }
    }
}

fn pod_json(
    facts: &KfpFacts,
    kind: RunPodKind,
    ns: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    main: &Value,
) -> Value {
    let argoexec = facts.images.argoexec.value.clone();
    let argo_template = json!({"name": kind.template()}).to_string();
    let mut init = vec![json!({
        "name": "init",
        "image": argoexec,
        "command": ["argoexec", "init", "--loglevel", "info"],
        "env": [{"name": "ARGO_TEMPLATE", "value": argo_template}],
    })];
    if kind == RunPodKind::Executor {
        init.push(json!({
            "name": "kfp-launcher",
            "image": facts.images.launcher.value,
            "command": ["launcher-v2"],
            "args": ["--copy", "/kfp-launcher/launch"],
        }));
    }
    let wait = json!({
        "name": "wait",
        "image": argoexec,
        "command": ["argoexec", "wait", "--loglevel", "info"],
        "env": [{"name": "ARGO_TEMPLATE", "value": argo_template}],
    });
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": strings(labels), "annotations": strings(annotations)},
        "spec": {
            "serviceAccountName": facts.run_service_account.value,
            "restartPolicy": "Never",
            "initContainers": init,
            "containers": [wait, main],
        }
    })
}

// ---------------------------------------------------------------------------------------------
// kfp-mesh webhooks in the input

/// Paths the kfp-mesh webhook serves.
pub const WORKFLOWS_PATH: &str = "/mutate/workflows";
pub const PODS_PATH: &str = "/mutate/pods";

fn rule_covers(wh: &MutatingWebhook, group: &str, resource: &str) -> bool {
    wh.rules.iter().flatten().any(|r| {
        let any = |v: &[String], x: &str| v.iter().any(|s| s == "*" || s == x);
        any(&r.api_groups, group)
            && any(&r.resources, resource)
            && (r.operations.is_empty() || any(&r.operations, "CREATE"))
    })
}

/// The kfp-mesh webhooks of the input: MutatingWebhookConfigurations whose webhooks call the
/// kfp-mesh driver webhook (paths `/mutate/workflows`, `/mutate/pods`, or a Service whose pods
/// run a `kfp-mesh` image, or a configuration named `kfp-mesh…`), with their configuration.
pub fn kfp_mesh_webhooks(inv: &Inventory) -> Vec<KfpMeshWebhook> {
    let injectors: Vec<(&str, bool)> = inv
        .mutating_webhooks
        .iter()
        .filter(|m| {
            m.name().starts_with("istio-sidecar-injector")
                || m.name().starts_with("istio-revision-tag")
                || m.spec
                    .webhooks
                    .iter()
                    .any(|w| w.name.ends_with("sidecar-injector.istio.io"))
        })
        .map(|m| {
            let reinvoked = m
                .spec
                .webhooks
                .iter()
                .any(|w| w.reinvocation_policy.as_deref() == Some("IfNeeded"));
            (m.name(), reinvoked)
        })
        .collect();
    let mut out = Vec::new();
    for mwc in &inv.mutating_webhooks {
        for wh in &mwc.spec.webhooks {
            let Some(svc_ref) = wh.client_config.as_ref().and_then(|c| c.service.as_ref()) else {
                continue;
            };
            let path = svc_ref.path.as_deref().unwrap_or("");
            let svc = inv.service(&svc_ref.namespace, &svc_ref.name);
            let server = svc.and_then(|s| inv.service_endpoints(s).into_iter().next());
            let kfp_mesh_image = server.is_some_and(|w| {
                w.spec
                    .containers
                    .iter()
                    .filter_map(|c| c.image.as_deref())
                    .any(|i| image_name(i).starts_with("kfp-mesh"))
            });
            let is_ours = path.starts_with(WORKFLOWS_PATH)
                || path.starts_with(PODS_PATH)
                || kfp_mesh_image
                || mwc.name().starts_with("kfp-mesh");
            if !is_ours {
                continue;
            }
            let mode = if path.starts_with(PODS_PATH) {
                WebhookMode::Pod
            } else if path.starts_with(WORKFLOWS_PATH)
                || rule_covers(wh, "argoproj.io", "workflows")
            {
                WebhookMode::Workflow
            } else if rule_covers(wh, "", "pods") {
                WebhookMode::Pod
            } else {
                continue;
            };
            let (config, config_source, config_error) = webhook_config(inv, server);
            let after_istio_injector = mode == WebhookMode::Pod
                && injectors
                    .iter()
                    .any(|(name, reinvoked)| !*reinvoked && *name < mwc.name());
            out.push(KfpMeshWebhook {
                configuration: mwc.cite(),
                webhook: wh.name.clone(),
                mode,
                namespace_selector: wh.namespace_selector.clone(),
                object_selector: wh.object_selector.clone(),
                config,
                config_source,
                config_error,
                after_istio_injector,
            });
        }
    }
    // Workflow webhooks first (Workflows exist before their pods), then by configuration name.
    out.sort_by(|a, b| {
        (
            a.mode == WebhookMode::Pod,
            &a.configuration.object.name,
            &a.webhook,
        )
            .cmp(&(
                b.mode == WebhookMode::Pod,
                &b.configuration.object.name,
                &b.webhook,
            ))
    });
    out
}

/// The configuration the webhook server runs with: the file given by `--config`, read from
/// the ConfigMap volume it is mounted from; without `--config`, the built-in default.
fn webhook_config(
    inv: &Inventory,
    server: Option<&Workload>,
) -> (Option<MutationConfig>, Evidence, Option<String>) {
    let default = |why: String| {
        (
            Some(MutationConfig::default()),
            Evidence::builtin("kfp-mesh webhook default configuration", why),
            None,
        )
    };
    let Some(w) = server else {
        return default(
            "webhook server not in the input; its built-in default configuration is assumed".into(),
        );
    };
    let Some(obj) = workload_object(inv, w) else {
        return default("webhook server object not found".into());
    };
    let Some(spec) = pod_spec_json(obj) else {
        return default("webhook server has no pod spec".into());
    };
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut config_path = None;
    let mut mounts = Vec::new();
    for c in &containers {
        let args: Vec<&str> = ["command", "args"]
            .iter()
            .flat_map(|k| c.get(*k).and_then(Value::as_array).into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        for (i, a) in args.iter().enumerate() {
            if let Some(p) = a.strip_prefix("--config=") {
                config_path = Some(p.to_string());
            } else if *a == "--config" {
                config_path = args.get(i + 1).map(|s| s.to_string());
            }
        }
        if config_path.is_some() {
            mounts = c
                .get("volumeMounts")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            break;
        }
    }
    let Some(path) = config_path else {
        return default(kfp_mesh_core::text!(
            "{} runs without --config: built-in default configuration",
            obj.object_ref()
        ));
    };
    let found = mounts.iter().find_map(|m| {
        let dir = m.get("mountPath")?.as_str()?.trim_end_matches('/');
        let rest = path.strip_prefix(dir)?.strip_prefix('/')?;
        let vol = m.get("name")?.as_str()?;
        let volume = spec
            .get("volumes")?
            .as_array()?
            .iter()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(vol))?;
        let cm = volume.pointer("/configMap/name")?.as_str()?;
        // `items` may map a key to another file name.
        let key = volume
            .pointer("/configMap/items")
            .and_then(Value::as_array)
            .and_then(|items| {
                items.iter().find_map(|it| {
                    (it.get("path").and_then(Value::as_str) == Some(rest))
                        .then(|| it.get("key").and_then(Value::as_str))
                        .flatten()
                })
            })
            .unwrap_or(rest);
        Some((cm.to_string(), key.to_string()))
    });
    let Some((cm_name, key)) = found else {
        return (
            None,
            Evidence::of_object(obj, kfp_mesh_core::text!("--config {path}")),
            Some(kfp_mesh_core::text!(
                "--config {path} is not on a ConfigMap volume in the input"
            )),
        );
    };
    let ns = obj.meta.namespace_or_default();
    let Some(cm) = find_object(inv, "ConfigMap", ns, &cm_name) else {
        return (
            None,
            Evidence::of_object(
                obj,
                kfp_mesh_core::text!("--config {path} from ConfigMap {ns}/{cm_name}"),
            ),
            Some(kfp_mesh_core::text!(
                "ConfigMap {ns}/{cm_name} is not in the input; the webhook pod would not start"
            )),
        );
    };
    let value = cm.value_at(&["data", key.as_str()]);
    let Some(text) = value.as_ref().and_then(Value::as_str) else {
        return (
            None,
            Evidence::of_object(cm, kfp_mesh_core::text!("key {key}")),
            Some(kfp_mesh_core::text!(
                "ConfigMap {ns}/{cm_name} has no key {key}"
            )),
        );
    };
    match MutationConfig::from_yaml(text) {
        Ok(c) => (
            Some(c),
            Evidence::of_object(
                cm,
                kfp_mesh_core::text!("webhook configuration (key {key})"),
            ),
            None,
        ),
        Err(e) => (
            None,
            Evidence::of_object(
                cm,
                kfp_mesh_core::text!("webhook configuration (key {key})"),
            ),
            Some(e.to_string()),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Profile namespaces as the controllers make them

fn object(
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
    name: &str,
    body: Value,
    what: &str,
) -> Object {
    let mut meta = Meta {
        name: name.to_string(),
        namespace: ns.map(str::to_string),
        ..Meta::default()
    };
    meta.annotations.insert(SYNTHETIC_ANNOTATION, "true");
    let mut full = body;
    if let Value::Object(m) = &mut full {
        m.insert("apiVersion".into(), Value::String(api_version.into()));
        m.insert("kind".into(), Value::String(kind.into()));
        let md = m
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(md) = md {
            md.insert("name".into(), Value::String(name.into()));
            if let Some(ns) = ns {
                md.insert("namespace".into(), Value::String(ns.into()));
            }
            let ann = md
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(a) = ann {
                a.insert(SYNTHETIC_ANNOTATION.into(), Value::String("true".into()));
            }
            if let Some(l) = md.get("labels").and_then(Value::as_object) {
                meta.labels = l
                    .iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect();
            }
        }
    }
    Object {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        meta,
        body: full.into(),
        origin: Origin::builtin(what),
    }
}

/// Objects of the profile namespaces that the input does not hold but the controllers would
/// create: for the example profile its Namespace (labelled as Kubeflow's profile controller
/// labels it), the `default-editor` ServiceAccount and the `ns-owner-access-istio`
/// AuthorizationPolicy; for every profile, what KFP's profile controller adds (the artifact
/// proxy when enabled; up to 2.14 the per-namespace visualization server with its
/// DestinationRule and AuthorizationPolicy). Each carries the annotation
/// [`SYNTHETIC_ANNOTATION`] and a built-in origin. Add them to the inventory
/// (`Inventory::from_objects`) before resolving flows.
pub fn synthetic_profile_objects(inv: &Inventory, facts: &KfpFacts) -> Vec<Object> {
    let mut out = Vec::new();
    if !facts.detected || !facts.mode.value.is_multi_user() {
        return out;
    }
    let kfp_ns = facts.kfp_namespace();
    let has = |kind: &str, ns: &str, name: &str| find_object(inv, kind, ns, name).is_some();
    for p in &facts.profiles {
        let ns = p.name.as_str();
        let what = |x: &str| kfp_mesh_core::text!("{x} of profile {ns} (modelled)");
        if !p.namespace_in_input {
            let mut labels = p.labels.clone();
            labels.remove("kubernetes.io/metadata.name");
            let owner = p.owner.clone().unwrap_or_default();
            out.push(object(
                "v1",
                "Namespace",
                None,
                ns,
                json!({"metadata": {"labels": strings(&labels), "annotations": {"owner": owner}}}),
                &what("Namespace"),
            ));
        }
        if !has("ServiceAccount", ns, "default-editor") {
            out.push(object(
                "v1",
                "ServiceAccount",
                Some(ns),
                "default-editor",
                json!({}),
                &what("ServiceAccount default-editor"),
            ));
        }
        if !has("AuthorizationPolicy", ns, "ns-owner-access-istio") {
            let owner = p
                .owner
                .clone()
                .unwrap_or_else(|| crate::detect::EXAMPLE_PROFILE_OWNER.to_string());
            out.push(object(
                "security.istio.io/v1beta1",
                "AuthorizationPolicy",
                Some(ns),
                "ns-owner-access-istio",
                json!({"spec": {"rules": [
                    {"from": [{"source": {"principals": [
                        "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
                        kfp_mesh_core::text!("cluster.local/ns/{kfp_ns}/sa/ml-pipeline-ui")]}}],
                     "when": [{"key": kfp_mesh_core::text!("request.headers[{}]", facts.userid_header),
                               "values": [kfp_mesh_core::text!("{}{owner}", facts.userid_prefix)]}]},
                    {"when": [{"key": "source.namespace", "values": [ns]}]},
                    {"to": [{"operation": {"paths": ["/healthz", "/metrics", "/wait-for-drain"]}}]},
                    {"from": [{"source": {"principals": [kfp_mesh_core::text!("cluster.local/ns/{kfp_ns}/sa/notebook-controller-service-account")]}}],
                     "to": [{"operation": {"methods": ["GET"], "paths": ["*/api/kernels"]}}]}
                ]}}),
                &what("AuthorizationPolicy ns-owner-access-istio (Kubeflow profile controller)"),
            ));
        }
        if facts.kfp_profile_controller.is_none()
            || p.labels
                .get(crate::detect::PIPELINES_ENABLED_LABEL)
                .map(String::as_str)
                != Some("true")
        {
            continue;
        }
        let sidecar_annotations = json!({});
        if facts.artifact_proxy.value && !has("Service", ns, "ml-pipeline-ui-artifact") {
            out.push(object(
                "apps/v1",
                "Deployment",
                Some(ns),
                "ml-pipeline-ui-artifact",
                json!({"metadata": {"labels": {"app": "ml-pipeline-ui-artifact"}},
                       "spec": {"selector": {"matchLabels": {"app": "ml-pipeline-ui-artifact"}},
                         "template": {"metadata": {"labels": {"app": "ml-pipeline-ui-artifact"}, "annotations": sidecar_annotations},
                           "spec": {"serviceAccountName": "default-editor",
                             "containers": [{"name": "ml-pipeline-ui-artifact", "image": kfp_mesh_core::text!("ghcr.io/kubeflow/kfp-frontend:{}", facts.version.release.map(|v| v.to_string()).unwrap_or_else(|| "latest".into())),
                               "ports": [{"containerPort": 3000}]}]}}}}),
                &what("artifact proxy Deployment (KFP profile controller)"),
            ));
            out.push(object(
                "v1",
                "Service",
                Some(ns),
                "ml-pipeline-ui-artifact",
                json!({"metadata": {"labels": {"app": "ml-pipeline-ui-artifact"}},
                       "spec": {"selector": {"app": "ml-pipeline-ui-artifact"},
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 3000}]}}),
                &what("artifact proxy Service (KFP profile controller)"),
            ));
        }
        let old = facts.version.at_least(Version::new(2, 15, 0)) == Some(false);
        if old && !has("Service", ns, "ml-pipeline-visualizationserver") {
            out.push(object(
                "apps/v1",
                "Deployment",
                Some(ns),
                "ml-pipeline-visualizationserver",
                json!({"metadata": {"labels": {"app": "ml-pipeline-visualizationserver"}},
                       "spec": {"selector": {"matchLabels": {"app": "ml-pipeline-visualizationserver"}},
                         "template": {"metadata": {"labels": {"app": "ml-pipeline-visualizationserver"}},
                           "spec": {"serviceAccountName": "default-editor",
                             "containers": [{"name": "ml-pipeline-visualizationserver", "image": "ghcr.io/kubeflow/kfp-visualization-server",
                               "ports": [{"containerPort": 8888}]}]}}}}),
                &what("visualization server Deployment (KFP profile controller, up to 2.14)"),
            ));
            out.push(object(
                "v1",
                "Service",
                Some(ns),
                "ml-pipeline-visualizationserver",
                json!({"spec": {"selector": {"app": "ml-pipeline-visualizationserver"},
                         "ports": [{"name": "http", "port": 8888, "protocol": "TCP", "targetPort": 8888}]}}),
                &what("visualization server Service (KFP profile controller, up to 2.14)"),
            ));
            out.push(object(
                "networking.istio.io/v1alpha3",
                "DestinationRule",
                Some(ns),
                "ml-pipeline-visualizationserver",
                json!({"spec": {"host": "ml-pipeline-visualizationserver", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}),
                &what("visualization server DestinationRule (KFP profile controller, up to 2.14)"),
            ));
            out.push(object(
                "security.istio.io/v1beta1",
                "AuthorizationPolicy",
                Some(ns),
                "ml-pipeline-visualizationserver",
                json!({"spec": {"selector": {"matchLabels": {"app": "ml-pipeline-visualizationserver"}},
                         "rules": [{"from": [{"source": {"principals": [kfp_mesh_core::text!("cluster.local/ns/{kfp_ns}/sa/ml-pipeline")]}}]}]}}),
                &what("visualization server AuthorizationPolicy (KFP profile controller, up to 2.14)"),
            ));
        }
    }
    out
}

/// The inventory with the modelled profile objects and run pods added: what `kfp-mesh check`
/// analyses. Returns the detailed run pods too.
pub fn with_run_pods(inv: &Inventory, facts: &KfpFacts) -> (Inventory, Vec<RunPod>) {
    let mut full = inv.clone();
    let pods = add_run_pods(&mut full, facts);
    (full, pods)
}

/// [`with_run_pods`] in place: add the modelled profile objects and the run pods to `inv`.
pub fn add_run_pods(inv: &mut Inventory, facts: &KfpFacts) -> Vec<RunPod> {
    let extra = synthetic_profile_objects(inv, facts);
    if !extra.is_empty() {
        inv.extend(extra);
    }
    let pods = run_pods_detailed(inv, facts);
    for p in &pods {
        inv.add_workload(std::sync::Arc::clone(&p.workload));
    }
    pods
}

/// A pod Argo created for a KFP run (KFP's `pipelines.kubeflow.org/v2_component` label, or
/// Argo's `workflows.argoproj.io/workflow`).
pub fn is_run_pod(w: &kfp_mesh_core::inventory::Workload) -> bool {
    w.label("pipelines.kubeflow.org/v2_component").is_some()
        || w.label("workflows.argoproj.io/workflow").is_some()
}
