//! From API objects to what kfp-mesh keeps: pure functions, no IO.
//!
//! Every object read from the API server is reduced before it is kept: `managedFields`, the
//! `last-applied-configuration` annotation, `resourceVersion`/`uid`/`generation`, webhook
//! `caBundle`s, ConfigMap `binaryData` and `status` go (a workload keeps only its replica
//! counts, which the live facts read). Pods become a compact [`LivePod`]; a Pod that no
//! controller owns is also handed to the analysis, like a Pod manifest in a file. Objects
//! whose pod template the analysis already has from their controller (Pods of a ReplicaSet,
//! ReplicaSets of a Deployment, Jobs of a CronJob, Pods of an Argo Workflow, which the
//! analysis models as run pods) are not handed to the analysis again.

use std::collections::{BTreeMap, BTreeSet};

use kfp_mesh_core::object::string_map;
use kfp_mesh_core::object::{Body, Meta, Object, Origin, StringMap};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::kinds::{KindSpec, Use};

/// The name of the `istio-proxy` container.
pub const ISTIO_PROXY: &str = "istio-proxy";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What became of one object read from the cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum Kept {
    /// An object for the analysis.
    Object(Object),
    /// A live Pod, and the Pod as an analysis object when no controller owns it.
    Pod(Box<LivePod>, Option<Box<Object>>),
    Workflow(LiveWorkflow),
    /// Redundant for the analysis (its controller is read) or unreadable.
    Dropped,
}

/// The state of one container of a live Pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum ContainerState {
    Waiting,
    Running,
    Terminated {
        exit_code: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        finished_at: Option<String>,
    },
    /// No status reported yet.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveContainer {
    pub name: String,
    /// `Always` on an init container makes it a native sidecar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    pub state: ContainerState,
}

/// How a live Pod is in the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sidecar {
    /// `istio-proxy` in `containers`.
    Classic,
    /// `istio-proxy` in `initContainers` with `restartPolicy: Always`.
    Native,
    /// Captured by ztunnel (annotation `ambient.istio.io/redirection: enabled`).
    Ambient,
    None,
}

/// A live Pod, reduced to what the live facts need.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LivePod {
    pub namespace: String,
    pub name: String,
    pub labels: StringMap,
    /// Only the annotations the facts read (Istio, Argo, KFP keys).
    pub annotations: StringMap,
    /// The controller owner: (kind, name).
    pub owner: Option<(String, String)>,
    pub created: Option<String>,
    pub phase: Option<String>,
    pub containers: Vec<LiveContainer>,
    pub init_containers: Vec<LiveContainer>,
    #[serde(skip)]
    pub origin: Origin,
}

impl LivePod {
    pub fn sidecar(&self) -> Sidecar {
        if self.containers.iter().any(|c| c.name == ISTIO_PROXY) {
            Sidecar::Classic
        } else if self
            .init_containers
            .iter()
            .any(|c| c.name == ISTIO_PROXY && c.restart_policy.as_deref() == Some("Always"))
        {
            Sidecar::Native
        } else if self
            .annotations
            .get("ambient.istio.io/redirection")
            .is_some_and(|v| v == "enabled")
        {
            Sidecar::Ambient
        } else {
            Sidecar::None
        }
    }

    /// The Argo Workflow the pod runs for.
    pub fn workflow(&self) -> Option<&str> {
        self.labels
            .get("workflows.argoproj.io/workflow")
            .or_else(|| {
                self.owner
                    .as_ref()
                    .filter(|(k, _)| k == "Workflow")
                    .map(|(_, n)| n.as_str())
            })
    }

    /// A KFP run pod: an Argo pod of a KFP run (v2 component label or KFP run id).
    pub fn is_kfp_run_pod(&self) -> bool {
        self.workflow().is_some()
            && (self.labels.contains_key("pipeline/runid")
                || self
                    .labels
                    .get("pipelines.kubeflow.org/v2_component")
                    .is_some_and(|v| v == "true"))
    }

    /// `Running` with a classic sidecar still running after every other container ended:
    /// nothing will stop the proxy, so the pod (and the Argo step) never completes.
    pub fn stuck_on_sidecar(&self) -> bool {
        if self.phase.as_deref() != Some("Running") {
            return false;
        }
        let mut proxy_running = false;
        let mut others = 0;
        for c in &self.containers {
            if c.name == ISTIO_PROXY {
                proxy_running = c.state == ContainerState::Running;
            } else {
                others += 1;
                if !matches!(c.state, ContainerState::Terminated { .. }) {
                    return false;
                }
            }
        }
        proxy_running && others > 0
    }

    /// When the last non-sidecar container finished.
    pub fn finished_at(&self) -> Option<&str> {
        self.containers
            .iter()
            .filter(|c| c.name != ISTIO_PROXY)
            .filter_map(|c| match &c.state {
                ContainerState::Terminated { finished_at, .. } => finished_at.as_deref(),
                _ => None,
            })
            .max()
    }
}

/// An Argo Workflow, reduced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveWorkflow {
    pub namespace: String,
    pub name: String,
    pub created: Option<String>,
    pub phase: Option<String>,
    /// KFP's run id label `pipeline/runid`.
    pub run_id: Option<String>,
}

/// The origin of an object read from the cluster: `cluster:<context>/<Kind>/<ns>/<name>`.
pub fn origin(context: &str, kind: &str, namespace: Option<&str>, name: &str) -> Origin {
    let source = match namespace {
        Some(ns) => format!("cluster:{context}/{kind}/{ns}/{name}"),
        None => format!("cluster:{context}/{kind}/{name}"),
    };
    Origin::new(source, 0)
}

/// The controller owner of an object (`ownerReferences[controller=true]`).
pub fn controller_owner(v: &Value) -> Option<(String, String)> {
    v.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|o| {
            (
                str_at(o, "kind").unwrap_or_default().to_string(),
                str_at(o, "name").unwrap_or_default().to_string(),
            )
        })
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Reduce one item of a list of `spec` (served as `api_version`) to what kfp-mesh keeps.
pub fn convert(spec: &KindSpec, api_version: &str, mut item: Value, context: &str) -> Kept {
    let Some(map) = item.as_object_mut() else {
        return Kept::Dropped;
    };
    // List items of built-in kinds carry no apiVersion/kind.
    map.insert(
        "apiVersion".to_string(),
        Value::String(api_version.to_string()),
    );
    map.insert("kind".to_string(), Value::String(spec.kind.to_string()));
    strip_metadata(map);
    let owner = controller_owner(&item);
    match spec.used_for {
        Use::Workflows => Kept::Workflow(live_workflow(&item)),
        Use::Pods => {
            let Some(pod) = live_pod(&item, owner.clone(), context) else {
                return Kept::Dropped;
            };
            let object = if owner.is_none() {
                if let Some(m) = item.as_object_mut() {
                    m.remove("status");
                }
                to_object(item, context).map(Box::new)
            } else {
                None
            };
            Kept::Pod(Box::new(pod), object)
        }
        Use::Analysis => {
            let redundant = matches!(
                (spec.kind, owner.as_ref().map(|(k, _)| k.as_str())),
                ("ReplicaSet", Some("Deployment")) | ("Job", Some("CronJob"))
            );
            if redundant {
                return Kept::Dropped;
            }
            strip_body(spec.kind, &mut item);
            match to_object(item, context) {
                Some(o) => Kept::Object(o),
                None => Kept::Dropped,
            }
        }
    }
}

fn strip_metadata(map: &mut Map<String, Value>) {
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        for k in [
            "managedFields",
            "resourceVersion",
            "uid",
            "generation",
            "selfLink",
        ] {
            meta.remove(k);
        }
        if let Some(Value::Object(ann)) = meta.get_mut("annotations") {
            ann.remove(LAST_APPLIED);
        }
    }
}

/// Drop the bulk the analysis never reads.
fn strip_body(kind: &str, item: &mut Value) {
    let Some(map) = item.as_object_mut() else {
        return;
    };
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => {
            if let Some(Value::Object(status)) = map.remove("status") {
                let kept: Map<String, Value> = status
                    .into_iter()
                    .filter(|(k, _)| {
                        matches!(
                            k.as_str(),
                            "replicas"
                                | "readyReplicas"
                                | "availableReplicas"
                                | "updatedReplicas"
                                | "numberReady"
                                | "desiredNumberScheduled"
                        )
                    })
                    .collect();
                map.insert("status".to_string(), Value::Object(kept));
            }
        }
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
            if let Some(Value::Array(whs)) = map.get_mut("webhooks") {
                for wh in whs {
                    if let Some(Value::Object(cc)) = wh.get_mut("clientConfig") {
                        cc.remove("caBundle");
                    }
                }
            }
        }
        "ConfigMap" => {
            map.remove("binaryData");
        }
        _ => {
            map.remove("status");
        }
    }
}

fn to_object(item: Value, context: &str) -> Option<Object> {
    let meta: Meta = serde_json::from_value(item.get("metadata")?.clone()).ok()?;
    if meta.name.is_empty() {
        return None;
    }
    let kind = str_at(&item, "kind")?.to_string();
    let api_version = str_at(&item, "apiVersion")?.to_string();
    let origin = origin(context, &kind, meta.namespace.as_deref(), &meta.name);
    let body = Body::without_fields_of(item, &api_version, &kind, &meta);
    Some(Object {
        api_version,
        kind,
        meta,
        body,
        origin,
    })
}

fn kept_annotation(key: &str) -> bool {
    // `workflows.argoproj.io/outputs` can hold a run's whole output: not needed.
    (key.starts_with("sidecar.istio.io/") && key != "sidecar.istio.io/status")
        || key.starts_with("proxy.istio.io/")
        || key.starts_with("ambient.istio.io/")
        || key.starts_with("pipelines.kubeflow.org/")
        || key.starts_with("workflows.argoproj.io/kill-cmd-")
        || key == "workflows.argoproj.io/node-name"
}

fn live_pod(item: &Value, owner: Option<(String, String)>, context: &str) -> Option<LivePod> {
    let meta = item.get("metadata")?;
    let name = str_at(meta, "name").filter(|n| !n.is_empty())?.to_string();
    let namespace = str_at(meta, "namespace").unwrap_or("default").to_string();
    let annotations: StringMap = string_map(meta.get("annotations"))
        .iter()
        .filter(|(k, _)| kept_annotation(k))
        .collect();
    let statuses = |key: &str| -> BTreeMap<String, ContainerState> {
        item.pointer(&format!("/status/{key}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| Some((str_at(s, "name")?.to_string(), container_state(s))))
            .collect()
    };
    let containers = |key: &str, status_key: &str| -> Vec<LiveContainer> {
        let states = statuses(status_key);
        item.pointer(&format!("/spec/{key}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let name = str_at(c, "name")?.to_string();
                Some(LiveContainer {
                    state: states
                        .get(&name)
                        .cloned()
                        .unwrap_or(ContainerState::Unknown),
                    restart_policy: str_at(c, "restartPolicy").map(str::to_string),
                    name,
                })
            })
            .collect()
    };
    Some(LivePod {
        origin: origin(context, "Pod", Some(&namespace), &name),
        labels: string_map(meta.get("labels")),
        annotations,
        owner,
        created: str_at(meta, "creationTimestamp").map(str::to_string),
        phase: item
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .map(str::to_string),
        containers: containers("containers", "containerStatuses"),
        init_containers: containers("initContainers", "initContainerStatuses"),
        namespace,
        name,
    })
}

fn container_state(status: &Value) -> ContainerState {
    let Some(state) = status.get("state") else {
        return ContainerState::Unknown;
    };
    if state.get("running").is_some() {
        ContainerState::Running
    } else if let Some(t) = state.get("terminated") {
        ContainerState::Terminated {
            exit_code: t.get("exitCode").and_then(Value::as_i64).unwrap_or(0),
            finished_at: str_at(t, "finishedAt").map(str::to_string),
        }
    } else if state.get("waiting").is_some() {
        ContainerState::Waiting
    } else {
        ContainerState::Unknown
    }
}

fn live_workflow(item: &Value) -> LiveWorkflow {
    let meta = item.get("metadata");
    let get = |k: &str| meta.and_then(|m| str_at(m, k)).map(str::to_string);
    LiveWorkflow {
        namespace: get("namespace").unwrap_or_else(|| "default".to_string()),
        name: get("name").unwrap_or_default(),
        created: get("creationTimestamp"),
        phase: item
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .map(str::to_string),
        run_id: meta
            .and_then(|m| m.pointer("/labels/pipeline~1runid"))
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

/// ConfigMaps named here are read by the analysis wherever they are.
fn config_map_by_name(name: &str, data: Option<&Map<String, Value>>) -> bool {
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    name == "istio"
        || (name.starts_with("istio-") && has("mesh"))
        || name.starts_with("istio-sidecar-injector")
        || matches!(
            name,
            "pipeline-install-config" | "workflow-controller-configmap" | "kfp-launcher"
        )
        || name.starts_with("kfp-mesh")
        || has("namespace-labels.yaml")
}

/// Keep a ConfigMap only when the analysis reads it: Istio's mesh and injector
/// configuration, KFP's install configuration, Argo's controller configuration, the profile
/// controller's namespace labels, kfp-mesh's own configuration, and any ConfigMap a kept
/// workload takes environment variables or a volume from (`referenced`, by namespace and
/// name). The rest (CA bundles in every namespace, dashboards, ...) is dropped as it arrives.
pub fn keep_config_map(item: &Value, referenced: &BTreeSet<(String, String)>) -> bool {
    let Some(meta) = item.get("metadata") else {
        return false;
    };
    let name = str_at(meta, "name").unwrap_or_default();
    let ns = str_at(meta, "namespace").unwrap_or("default");
    config_map_by_name(name, item.get("data").and_then(Value::as_object))
        || referenced.contains(&(ns.to_string(), name.to_string()))
}

/// The ConfigMaps (namespace, name) that the pod templates of `objects` reference through
/// `env[].valueFrom.configMapKeyRef`, `envFrom[].configMapRef`, `volumes[].configMap` or a
/// projected volume's `configMap` source.
pub fn referenced_config_maps(objects: &[Object]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for o in objects {
        let Some(spec) = o.pod_spec() else { continue };
        let ns = o.meta.namespace_or_default();
        let mut add = |name: Option<&str>| {
            if let Some(n) = name.filter(|n| *n != "kube-root-ca.crt") {
                out.insert((ns.to_string(), n.to_string()));
            }
        };
        for key in ["containers", "initContainers"] {
            for c in spec
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                    add(e
                        .pointer("/valueFrom/configMapKeyRef/name")
                        .and_then(Value::as_str));
                }
                for e in c
                    .get("envFrom")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    add(e.pointer("/configMapRef/name").and_then(Value::as_str));
                }
            }
        }
        for v in spec
            .get("volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add(v.pointer("/configMap/name").and_then(Value::as_str));
            for s in v
                .pointer("/projected/sources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                add(s.pointer("/configMap/name").and_then(Value::as_str));
            }
        }
    }
    out
}
