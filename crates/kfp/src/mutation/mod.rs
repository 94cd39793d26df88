//! The run-pod mutation: one pure function shared by the admission webhook (which sends it
//! as an RFC 6902 JSON Patch) and the checker (which applies it to synthesised run pods).
//!
//! Rules:
//! - configured labels and annotations are added where the key is absent; an existing value is
//!   never changed, except the `sidecar.istio.io/inject: "false"` annotation the KFP API server
//!   stamps on every template, which becomes `"true"` when the configuration turns injection on;
//! - configured resources are added to the main container of driver (and importer) pods;
//!   existing values are raised, never lowered unless `allowLowerResources` is set; values
//!   that are not quantities (Argo placeholders) are left alone; a limit is raised to the
//!   request when it would end up below it;
//! - the result is idempotent: mutating the mutated object yields an empty patch.

pub mod config;
pub mod quantity;
pub mod role;
mod view;

use std::collections::BTreeMap;
use std::fmt;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use serde_json::{Map, Value};

pub use config::{ConfigError, INJECT_KEY, MutationConfig, Problem, Role};
pub use quantity::Quantity;
pub use role::{pod_role, template_role};
pub use view::{WorkflowView, parse_workflow_view};

/// One change the mutation makes, or deliberately does not make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    LabelAdded {
        key: String,
        value: String,
    },
    AnnotationAdded {
        key: String,
        value: String,
    },
    /// Only the KFP-stamped `sidecar.istio.io/inject` annotation is ever replaced.
    AnnotationReplaced {
        key: String,
        old: String,
        new: String,
    },
    /// A key the user already set to another value: kept.
    LabelKept {
        key: String,
        existing: String,
        wanted: String,
    },
    AnnotationKept {
        key: String,
        existing: String,
        wanted: String,
    },
    /// `section` is `limits` or `requests`; `old` is `None` when the value was absent.
    ResourceSet {
        section: &'static str,
        name: String,
        old: Option<String>,
        new: String,
    },
    /// An existing value that is not a quantity (e.g. an Argo placeholder): kept.
    ResourceUnreadable {
        section: &'static str,
        name: String,
        existing: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::LabelAdded { key, value } => write!(f, "+label {key}={value}"),
            Change::AnnotationAdded { key, value } => write!(f, "+annotation {key}={value}"),
            Change::AnnotationReplaced { key, old, new } => {
                write!(f, "annotation {key}: {old} -> {new}")
            }
            Change::LabelKept {
                key,
                existing,
                wanted,
            } => {
                write!(f, "kept user label {key}={existing} (wanted {wanted})")
            }
            Change::AnnotationKept {
                key,
                existing,
                wanted,
            } => {
                write!(f, "kept user annotation {key}={existing} (wanted {wanted})")
            }
            Change::ResourceSet {
                section,
                name,
                old: None,
                new,
            } => {
                write!(f, "+{section}.{name}={new}")
            }
            Change::ResourceSet {
                section,
                name,
                old: Some(old),
                new,
            } => {
                write!(f, "{section}.{name}: {old} -> {new}")
            }
            Change::ResourceUnreadable {
                section,
                name,
                existing,
            } => {
                write!(f, "kept unreadable {section}.{name}={existing}")
            }
        }
    }
}

impl Change {
    /// Whether this entry changes the object (as opposed to recording a kept value).
    pub fn is_modification(&self) -> bool {
        matches!(
            self,
            Change::LabelAdded { .. }
                | Change::AnnotationAdded { .. }
                | Change::AnnotationReplaced { .. }
                | Change::ResourceSet { .. }
        )
    }
}

/// What happened to one template or pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Template name (Workflow mode) or pod name (Pod mode).
    pub name: String,
    pub role: Role,
    /// `false` when the role is not enabled in the configuration (the target is untouched).
    pub enabled: bool,
    pub changes: Vec<Change>,
}

/// The result of a mutation: the minimal JSON Patch and what it means.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MutationPlan {
    pub patch: Patch,
    pub targets: Vec<Target>,
}

impl MutationPlan {
    pub fn is_empty(&self) -> bool {
        self.patch.0.is_empty()
    }

    /// One line per recognised target, for logs and reports.
    pub fn summary(&self) -> String {
        if self.targets.is_empty() {
            return "no KFP run-pod template recognised".to_string();
        }
        let mut lines = Vec::new();
        for t in &self.targets {
            let what = if !t.enabled {
                "role not enabled, unchanged".to_string()
            } else if t.changes.is_empty() {
                "already mutated, unchanged".to_string()
            } else {
                t.changes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            lines.push(format!("{} ({}): {}", t.name, t.role, what));
        }
        lines.join("\n")
    }
}

/// Why an object cannot be read; the webhook fails open on it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the object is not a JSON object")]
    NotAnObject,
    #[error("expected kind {expected}, got {found}")]
    WrongKind {
        expected: &'static str,
        found: String,
    },
    #[error("{0} is not an object")]
    FieldNotObject(String),
    #[error("{0} is not a list")]
    FieldNotList(String),
}

/// Workflow mode: the patch that adds the configured metadata and resources to every
/// enabled KFP run-pod template of an Argo `Workflow`.
pub fn mutate_workflow(
    workflow: &Value,
    config: &MutationConfig,
) -> Result<MutationPlan, ReadError> {
    let obj = workflow.as_object().ok_or(ReadError::NotAnObject)?;
    check_kind(obj, "Workflow")?;
    let mut plan = MutationPlan::default();
    let spec = match obj.get("spec") {
        None | Some(Value::Null) => return Ok(plan),
        Some(spec) => spec,
    };
    let spec = spec
        .as_object()
        .ok_or_else(|| ReadError::FieldNotObject("spec".into()))?;
    let templates = match spec.get("templates") {
        None | Some(Value::Null) => return Ok(plan),
        Some(Value::Array(t)) => t,
        Some(_) => return Err(ReadError::FieldNotList("spec.templates".into())),
    };
    let annotations = config.effective_annotations();
    for (i, template) in templates.iter().enumerate() {
        if !template.is_object() {
            return Err(ReadError::FieldNotObject(format!("spec.templates[{i}]")));
        }
        let Some(role) = template_role(template) else {
            continue;
        };
        let name = template
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut target = Target {
            name,
            role,
            enabled: config.role_enabled(role),
            changes: Vec::new(),
        };
        if target.enabled {
            let base = ptr(&["spec", "templates", &i.to_string()]);
            plan_metadata(
                template.get("metadata"),
                &base,
                config,
                &annotations,
                &mut plan.patch.0,
                &mut target.changes,
            )
            .map_err(|f| ReadError::FieldNotObject(format!("spec.templates[{i}].{f}")))?;
            if config.sets_resources(role) {
                let key = if template.get("container").is_some() {
                    "container"
                } else {
                    "script"
                };
                let mut cbase = base.clone();
                cbase.push_back(key);
                plan_resources(
                    template.get(key),
                    &cbase,
                    config,
                    &mut plan.patch.0,
                    &mut target.changes,
                )
                .map_err(|f| ReadError::FieldNotObject(format!("spec.templates[{i}].{key}.{f}")))?;
            }
        }
        plan.targets.push(target);
    }
    Ok(plan)
}

/// Pod mode: the patch for a KFP run Pod (its `metadata` and its `main` container).
pub fn mutate_pod(pod: &Value, config: &MutationConfig) -> Result<MutationPlan, ReadError> {
    let obj = pod.as_object().ok_or(ReadError::NotAnObject)?;
    check_kind(obj, "Pod")?;
    let mut plan = MutationPlan::default();
    let Some(role) = pod_role(pod) else {
        return Ok(plan);
    };
    let name = pod
        .pointer("/metadata/name")
        .or_else(|| pod.pointer("/metadata/generateName"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut target = Target {
        name,
        role,
        enabled: config.role_enabled(role),
        changes: Vec::new(),
    };
    if target.enabled {
        plan_metadata(
            obj.get("metadata"),
            &PointerBuf::root(),
            config,
            &config.effective_annotations(),
            &mut plan.patch.0,
            &mut target.changes,
        )
        .map_err(ReadError::FieldNotObject)?;
        if config.sets_resources(role) {
            let containers = pod.pointer("/spec/containers").and_then(Value::as_array);
            let main = containers.and_then(|cs| {
                cs.iter()
                    .position(|c| c.get("name").and_then(Value::as_str) == Some("main"))
            });
            if let (Some(cs), Some(i)) = (containers, main) {
                let base = ptr(&["spec", "containers", &i.to_string()]);
                plan_resources(
                    Some(&cs[i]),
                    &base,
                    config,
                    &mut plan.patch.0,
                    &mut target.changes,
                )
                .map_err(|f| ReadError::FieldNotObject(format!("spec.containers[{i}].{f}")))?;
            }
        }
    }
    plan.targets.push(target);
    Ok(plan)
}

/// Applies the mutation for `role` to the parts of a pod (template) given as JSON values:
/// its `metadata` object (created if `Null`) and, when the role gets resources, its main
/// container. This is the same computation the webhook sends as a patch; the checker uses it
/// on synthesised run pods. Returns the changes made (empty when already mutated or when the
/// role is not enabled).
pub fn apply_to_pod_parts(
    role: Role,
    metadata: &mut Value,
    main_container: Option<&mut Value>,
    config: &MutationConfig,
) -> Result<Vec<Change>, ReadError> {
    let mut changes = Vec::new();
    if !config.role_enabled(role) {
        return Ok(changes);
    }
    let mut ops = Vec::new();
    let meta_in = (!metadata.is_null()).then_some(&*metadata);
    plan_metadata(
        meta_in,
        &PointerBuf::root(),
        config,
        &config.effective_annotations(),
        &mut ops,
        &mut changes,
    )
    .map_err(ReadError::FieldNotObject)?;
    apply_ops(metadata, &ops, "metadata")?;
    if let Some(container) = main_container
        && config.sets_resources(role)
    {
        let mut ops = Vec::new();
        plan_resources(
            Some(container),
            &PointerBuf::root(),
            config,
            &mut ops,
            &mut changes,
        )
        .map_err(ReadError::FieldNotObject)?;
        apply_ops(container, &ops, "container")?;
    }
    Ok(changes)
}

fn apply_ops(doc: &mut Value, ops: &[PatchOperation], what: &str) -> Result<(), ReadError> {
    if ops.is_empty() {
        return Ok(());
    }
    let failed = |_| ReadError::FieldNotObject(what.to_string());
    if what == "metadata" {
        // Metadata ops are relative to the pod (`/metadata/...`): wrap the value.
        let mut wrapper = Value::Object(Map::new());
        wrapper["metadata"] = doc.take();
        let result = json_patch::patch(&mut wrapper, ops);
        *doc = wrapper["metadata"].take();
        result.map_err(failed)
    } else {
        json_patch::patch(doc, ops).map_err(failed)
    }
}

fn check_kind(obj: &Map<String, Value>, expected: &'static str) -> Result<(), ReadError> {
    match obj.get("kind") {
        None => Ok(()),
        Some(Value::String(k)) if k == expected => Ok(()),
        Some(other) => Err(ReadError::WrongKind {
            expected,
            found: other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_string),
        }),
    }
}

fn ptr(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn child(base: &PointerBuf, tokens: &[&str]) -> PointerBuf {
    let mut p = base.clone();
    for t in tokens {
        p.push_back(*t);
    }
    p
}

fn add(ops: &mut Vec<PatchOperation>, path: PointerBuf, value: Value) {
    ops.push(PatchOperation::Add(AddOperation { path, value }));
}

fn replace(ops: &mut Vec<PatchOperation>, path: PointerBuf, value: Value) {
    ops.push(PatchOperation::Replace(ReplaceOperation { path, value }));
}

/// Plans the metadata of one pod (template) whose `metadata` lives at `<base>/metadata`.
/// Returns the name of a field that is present but not an object.
fn plan_metadata(
    metadata: Option<&Value>,
    base: &PointerBuf,
    config: &MutationConfig,
    annotations: &BTreeMap<String, String>,
    ops: &mut Vec<PatchOperation>,
    changes: &mut Vec<Change>,
) -> Result<(), String> {
    let metadata = match metadata {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err("metadata".into()),
    };
    let mut new_metadata = Map::new();
    for (field, wanted) in [("labels", &config.labels), ("annotations", annotations)] {
        if wanted.is_empty() {
            continue;
        }
        let existing = match metadata.and_then(|m| m.get(field)) {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => return Err(format!("metadata.{field}")),
        };
        let is_label = field == "labels";
        let Some(existing) = existing else {
            // The whole map is missing: one operation adds it.
            let map: Map<String, Value> = wanted
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            for (k, v) in wanted {
                changes.push(if is_label {
                    Change::LabelAdded {
                        key: k.clone(),
                        value: v.clone(),
                    }
                } else {
                    Change::AnnotationAdded {
                        key: k.clone(),
                        value: v.clone(),
                    }
                });
            }
            if metadata.is_some() {
                add(ops, child(base, &["metadata", field]), Value::Object(map));
            } else {
                new_metadata.insert(field.to_string(), Value::Object(map));
            }
            continue;
        };
        for (k, v) in wanted {
            match existing.get(k) {
                None => {
                    add(
                        ops,
                        child(base, &["metadata", field, k]),
                        Value::String(v.clone()),
                    );
                    changes.push(if is_label {
                        Change::LabelAdded {
                            key: k.clone(),
                            value: v.clone(),
                        }
                    } else {
                        Change::AnnotationAdded {
                            key: k.clone(),
                            value: v.clone(),
                        }
                    });
                }
                Some(Value::String(old)) if old == v => {}
                Some(old) => {
                    let old_text = old.as_str().map_or_else(|| old.to_string(), str::to_string);
                    if is_label {
                        changes.push(Change::LabelKept {
                            key: k.clone(),
                            existing: old_text,
                            wanted: v.clone(),
                        });
                    } else {
                        changes.push(Change::AnnotationKept {
                            key: k.clone(),
                            existing: old_text,
                            wanted: v.clone(),
                        });
                    }
                }
            }
        }
        if !is_label {
            plan_inject_override(existing, base, config, ops, changes);
        }
    }
    // The KFP-stamped inject annotation when annotations are otherwise not configured.
    if annotations.is_empty()
        && let Some(Value::Object(existing)) = metadata.and_then(|m| m.get("annotations"))
    {
        plan_inject_override(existing, base, config, ops, changes);
    }
    if !new_metadata.is_empty() {
        add(ops, child(base, &["metadata"]), Value::Object(new_metadata));
    }
    Ok(())
}

fn plan_inject_override(
    existing: &Map<String, Value>,
    base: &PointerBuf,
    config: &MutationConfig,
    ops: &mut Vec<PatchOperation>,
    changes: &mut Vec<Change>,
) {
    let Some(new) = config.inject_override() else {
        return;
    };
    if existing.get(INJECT_KEY).and_then(Value::as_str) == Some("false") {
        replace(
            ops,
            child(base, &["metadata", "annotations", INJECT_KEY]),
            Value::String(new.to_string()),
        );
        // A configured inject annotation was recorded as "kept"; it is replaced instead.
        changes.retain(|c| !matches!(c, Change::AnnotationKept { key, .. } if key == INJECT_KEY));
        changes.push(Change::AnnotationReplaced {
            key: INJECT_KEY.to_string(),
            old: "false".to_string(),
            new: new.to_string(),
        });
    }
}

/// Plans the resources of the container at `base`. Returns the name of a field that is
/// present but not an object.
fn plan_resources(
    container: Option<&Value>,
    base: &PointerBuf,
    config: &MutationConfig,
    ops: &mut Vec<PatchOperation>,
    changes: &mut Vec<Change>,
) -> Result<(), String> {
    if config.limits.is_empty() && config.requests.is_empty() {
        return Ok(());
    }
    let Some(container) = container else {
        return Ok(());
    };
    if !container.is_object() {
        return Err("container".into());
    }
    let resources = match container.get("resources") {
        None | Some(Value::Null) => None,
        Some(Value::Object(r)) => Some(r),
        Some(_) => return Err("resources".into()),
    };
    let section = |name: &str| -> Result<Option<&Map<String, Value>>, String> {
        match resources.and_then(|r| r.get(name)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(format!("resources.{name}")),
        }
    };
    let existing_limits = section("limits")?;
    let existing_requests = section("requests")?;

    // Final text per (section, resource) for values we set.
    let mut set_limits: Vec<(String, Option<String>, String)> = Vec::new();
    let mut set_requests: Vec<(String, Option<String>, String)> = Vec::new();

    let mut names: Vec<&String> = config.limits.keys().chain(config.requests.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let read = |m: Option<&Map<String, Value>>| -> Option<Result<Quantity, String>> {
            let v = m?.get(name.as_str())?;
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Null => return None,
                other => other.to_string(),
            };
            Some(Quantity::parse(&text).map_err(|_| text))
        };
        let old_req = read(existing_requests);
        let old_lim = read(existing_limits);
        let mut decide = |wanted: Option<&Quantity>,
                          old: &Option<Result<Quantity, String>>,
                          sec: &'static str| {
            let wanted = wanted?;
            match old {
                None => Some(wanted.clone()),
                Some(Ok(q)) if q < wanted => Some(wanted.clone()),
                Some(Ok(q)) if q > wanted && config.allow_lower_resources => Some(wanted.clone()),
                Some(Ok(q)) => Some(q.clone()),
                Some(Err(text)) => {
                    changes.push(Change::ResourceUnreadable {
                        section: sec,
                        name: name.clone(),
                        existing: text.clone(),
                    });
                    None
                }
            }
        };
        let new_req = decide(config.requests.get(name), &old_req, "requests");
        let mut new_lim = decide(config.limits.get(name), &old_lim, "limits");
        // Never leave a limit below the request.
        let eff_req = new_req
            .clone()
            .or_else(|| old_req.clone().and_then(Result::ok));
        let eff_lim = new_lim
            .clone()
            .or_else(|| old_lim.clone().and_then(Result::ok));
        if let (Some(r), Some(l)) = (&eff_req, &eff_lim)
            && l < r
            && !matches!(old_lim, Some(Err(_)))
        {
            new_lim = Some(r.clone());
        }
        let old_text = |o: &Option<Result<Quantity, String>>| match o {
            Some(Ok(q)) => Some(q.as_str().to_string()),
            _ => None,
        };
        let old_num = |o: &Option<Result<Quantity, String>>| match o {
            Some(Ok(q)) => Some(q.nanos()),
            _ => None,
        };
        if let Some(q) = new_req
            && old_num(&old_req) != Some(q.nanos())
        {
            set_requests.push((name.clone(), old_text(&old_req), q.as_str().to_string()));
        }
        if let Some(q) = new_lim
            && old_num(&old_lim) != Some(q.nanos())
        {
            set_limits.push((name.clone(), old_text(&old_lim), q.as_str().to_string()));
        }
    }

    let mut whole = Map::new();
    for (sec, sets, existing) in [
        ("limits", set_limits, existing_limits),
        ("requests", set_requests, existing_requests),
    ] {
        if sets.is_empty() {
            continue;
        }
        for (name, old, new) in &sets {
            changes.push(Change::ResourceSet {
                section: sec,
                name: name.clone(),
                old: old.clone(),
                new: new.clone(),
            });
        }
        match existing {
            Some(m) => {
                for (name, _, new) in sets {
                    let path = child(base, &["resources", sec, &name]);
                    if m.get(&name).is_some_and(|v| !v.is_null()) {
                        replace(ops, path, Value::String(new));
                    } else {
                        add(ops, path, Value::String(new));
                    }
                }
            }
            None => {
                let map: Map<String, Value> = sets
                    .into_iter()
                    .map(|(n, _, v)| (n, Value::String(v)))
                    .collect();
                if resources.is_some() {
                    add(ops, child(base, &["resources", sec]), Value::Object(map));
                } else {
                    whole.insert(sec.to_string(), Value::Object(map));
                }
            }
        }
    }
    if !whole.is_empty() {
        add(ops, child(base, &["resources"]), Value::Object(whole));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of every kind of change (the webhook's log lines and `check`'s notes).
    #[test]
    fn change_text() {
        let s = |x: &str| x.to_string();
        let cases = [
            (
                Change::LabelAdded {
                    key: s("k"),
                    value: s("v"),
                },
                "+label k=v",
            ),
            (
                Change::AnnotationAdded {
                    key: s("k"),
                    value: s("{\"a\":1}"),
                },
                "+annotation k={\"a\":1}",
            ),
            (
                Change::AnnotationReplaced {
                    key: s("k"),
                    old: s("false"),
                    new: s("true"),
                },
                "annotation k: false -> true",
            ),
            (
                Change::LabelKept {
                    key: s("k"),
                    existing: s("e"),
                    wanted: s("w"),
                },
                "kept user label k=e (wanted w)",
            ),
            (
                Change::AnnotationKept {
                    key: s("k"),
                    existing: s("e"),
                    wanted: s("w"),
                },
                "kept user annotation k=e (wanted w)",
            ),
            (
                Change::ResourceSet {
                    section: "limits",
                    name: s("cpu"),
                    old: None,
                    new: s("1"),
                },
                "+limits.cpu=1",
            ),
            (
                Change::ResourceSet {
                    section: "requests",
                    name: s("memory"),
                    old: Some(s("1Mi")),
                    new: s("2Mi"),
                },
                "requests.memory: 1Mi -> 2Mi",
            ),
            (
                Change::ResourceUnreadable {
                    section: "limits",
                    name: s("cpu"),
                    existing: s("{{x}}"),
                },
                "kept unreadable limits.cpu={{x}}",
            ),
        ];
        for (change, text) in cases {
            assert_eq!(change.to_string(), text);
        }
    }
}
