//! Which KFP run pod an Argo template or a Pod is, strongest evidence first
//! (design §3, `kfp-driver-pods.md` §7):
//! 1. annotation `pipelines.kubeflow.org/runtime-role` (KFP 2.17+): `driver`, or `launcher`
//!    for executor and importer pods;
//! 2. the template name (`system-dag-driver`, `system-container-driver`,
//!    `[prefix-]system-container-impl`, `system-importer[-workspace]`); for pods the Argo pod
//!    name `<workflow>-<template>-<hash>` (POD_NAMES v2, Argo ≥ 3.4);
//! 3. for pods, the template JSON in the `ARGO_TEMPLATE` env of the `init`/`wait` containers;
//! 4. the container itself: command `driver` or image `kfp-driver`; `launcher-v2
//!    --executor_type importer`; an executor's `kfp-launcher` init container.

use serde_json::Value;

use super::config::Role;

/// Annotation KFP 2.17+ puts on driver (`driver`) and executor/importer (`launcher`) templates.
pub const RUNTIME_ROLE_KEY: &str = "pipelines.kubeflow.org/runtime-role";

const DRIVER_TEMPLATES: [&str; 2] = ["system-dag-driver", "system-container-driver"];
const IMPORTER_TEMPLATES: [&str; 2] = ["system-importer", "system-importer-workspace"];
const EXECUTOR_TEMPLATE: &str = "system-container-impl";

/// Role of a template by its name alone.
pub fn role_from_template_name(name: &str) -> Option<Role> {
    if DRIVER_TEMPLATES.contains(&name) {
        Some(Role::Driver)
    } else if IMPORTER_TEMPLATES.contains(&name) {
        Some(Role::Importer)
    } else if name == EXECUTOR_TEMPLATE
        || name
            .strip_suffix(EXECUTOR_TEMPLATE)
            .is_some_and(|p| p.ends_with('-'))
    {
        // `<task>-system-container-impl` (2.0–2.5 retries), `retry-…`, `metadata-N-M-…`.
        Some(Role::Executor)
    } else {
        None
    }
}

/// Role of an Argo Workflow template (an element of `spec.templates`). Only templates that
/// become pods (`container`, `script`) have one.
pub fn template_role(template: &Value) -> Option<Role> {
    let container = template
        .get("container")
        .or_else(|| template.get("script"))?;
    let name = template.get("name").and_then(Value::as_str).unwrap_or("");
    let annotations = template.get("metadata").and_then(|m| m.get("annotations"));
    if let Some(role) = annotation_role(annotations, || {
        role_from_template_name(name) == Some(Role::Importer) || is_importer_container(container)
    }) {
        return Some(role);
    }
    if let Some(role) = role_from_template_name(name) {
        return Some(role);
    }
    container_role(container, template.get("initContainers"))
}

/// Role of a Pod (Pod mode: pods of Workflows created before the webhook existed).
pub fn pod_role(pod: &Value) -> Option<Role> {
    let containers = pod.pointer("/spec/containers");
    let init_containers = pod.pointer("/spec/initContainers");
    let main = find_container(containers, "main");
    let argo_template = argo_template(init_containers).or_else(|| argo_template(containers));

    let importer_hint = || {
        argo_template
            .as_ref()
            .and_then(|t| t.get("name").and_then(Value::as_str).map(str::to_string))
            .is_some_and(|n| role_from_template_name(&n) == Some(Role::Importer))
            || main.is_some_and(is_importer_container)
            || pod_name(pod).is_some_and(|n| role_from_pod_name(n) == Some(Role::Importer))
    };
    if let Some(role) = annotation_role(pod.pointer("/metadata/annotations"), importer_hint) {
        return Some(role);
    }
    if let Some(role) = pod_name(pod).and_then(role_from_pod_name) {
        return Some(role);
    }
    if let Some(role) = argo_template.as_ref().and_then(template_role) {
        return Some(role);
    }
    container_role(main?, init_containers)
}

fn pod_name(pod: &Value) -> Option<&str> {
    pod.pointer("/metadata/name").and_then(Value::as_str)
}

/// Argo POD_NAMES v2: `<workflow>-<template>-<fnv32a hash>`; the workflow part may be
/// truncated, the template part and the numeric hash are kept.
pub fn role_from_pod_name(name: &str) -> Option<Role> {
    let (rest, hash) = name.rsplit_once('-')?;
    if hash.is_empty() || !hash.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    for t in DRIVER_TEMPLATES {
        if rest.ends_with(&format!("-{t}")) {
            return Some(Role::Driver);
        }
    }
    for t in IMPORTER_TEMPLATES {
        if rest.ends_with(&format!("-{t}")) {
            return Some(Role::Importer);
        }
    }
    if rest.ends_with(&format!("-{EXECUTOR_TEMPLATE}")) {
        return Some(Role::Executor);
    }
    None
}

fn annotation_role(
    annotations: Option<&Value>,
    is_importer: impl FnOnce() -> bool,
) -> Option<Role> {
    match annotations?.get(RUNTIME_ROLE_KEY)?.as_str()? {
        "driver" => Some(Role::Driver),
        "launcher" if is_importer() => Some(Role::Importer),
        "launcher" => Some(Role::Executor),
        _ => None,
    }
}

/// The parsed `ARGO_TEMPLATE` env of Argo's `init` or `wait` container, if any. Argo v4 may
/// put the string `offloaded` there for very large templates; that yields `None`.
fn argo_template(containers: Option<&Value>) -> Option<Value> {
    for c in containers?.as_array()? {
        let name = c.get("name").and_then(Value::as_str);
        if !matches!(name, Some("init" | "wait")) {
            continue;
        }
        for env in c.get("env").and_then(Value::as_array).into_iter().flatten() {
            if env.get("name").and_then(Value::as_str) == Some("ARGO_TEMPLATE")
                && let Some(text) = env.get("value").and_then(Value::as_str)
                && let Ok(t @ Value::Object(_)) = serde_json::from_str::<Value>(text)
            {
                return Some(t);
            }
        }
    }
    None
}

/// The container of that name in a `containers` list.
pub fn find_container<'a>(containers: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    containers?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

fn container_role(container: &Value, init_containers: Option<&Value>) -> Option<Role> {
    let cmd = effective_command(container);
    let image = container.get("image").and_then(Value::as_str).unwrap_or("");
    if cmd.first().is_some_and(|c| *c == "driver") || image_name(image) == "kfp-driver" {
        return Some(Role::Driver);
    }
    if is_importer_container(container) {
        return Some(Role::Importer);
    }
    let has_launcher_init = init_containers
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| {
            c.get("name").and_then(Value::as_str) == Some("kfp-launcher")
                || image_name(c.get("image").and_then(Value::as_str).unwrap_or(""))
                    == "kfp-launcher"
        });
    has_launcher_init.then_some(Role::Executor)
}

fn is_importer_container(container: &Value) -> bool {
    let cmd = effective_command(container);
    if !cmd.first().is_some_and(|c| c.ends_with("launcher-v2")) {
        return false;
    }
    cmd.windows(2)
        .any(|w| w[0] == "--executor_type" && w[1] == "importer")
        || cmd.contains(&"--executor_type=importer")
}

/// `command` followed by `args`, with Argo's emissary wrapper
/// (`/var/run/argo/argoexec emissary … -- <cmd>`) removed.
fn effective_command(container: &Value) -> Vec<&str> {
    let strings = |k: &str| {
        container
            .get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
    };
    let mut all = strings("command");
    all.extend(strings("args"));
    if all.first().is_some_and(|c| c.ends_with("argoexec"))
        && all.get(1) == Some(&"emissary")
        && let Some(pos) = all.iter().position(|a| *a == "--")
    {
        return all.split_off(pos + 1);
    }
    all
}

/// `ghcr.io/kubeflow/kfp-driver:2.5.0@sha256:…` → `kfp-driver`.
fn image_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn template_names() {
        assert_eq!(
            role_from_template_name("system-dag-driver"),
            Some(Role::Driver)
        );
        assert_eq!(
            role_from_template_name("system-container-driver"),
            Some(Role::Driver)
        );
        assert_eq!(
            role_from_template_name("system-container-impl"),
            Some(Role::Executor)
        );
        assert_eq!(
            role_from_template_name("retry-system-container-impl"),
            Some(Role::Executor)
        );
        assert_eq!(
            role_from_template_name("metadata-1-2-system-container-impl"),
            Some(Role::Executor)
        );
        assert_eq!(
            role_from_template_name("system-importer"),
            Some(Role::Importer)
        );
        assert_eq!(
            role_from_template_name("system-importer-workspace"),
            Some(Role::Importer)
        );
        assert_eq!(role_from_template_name("system-container-executor"), None);
        assert_eq!(role_from_template_name("xsystem-container-impl"), None);
        assert_eq!(role_from_template_name("root"), None);
    }

    #[test]
    fn pod_names() {
        assert_eq!(
            role_from_pod_name("mnist-pipeline-mdtkv-system-dag-driver-938794099"),
            Some(Role::Driver)
        );
        assert_eq!(
            role_from_pod_name("p-x-system-container-impl-12"),
            Some(Role::Executor)
        );
        assert_eq!(
            role_from_pod_name("p-x-system-importer-3"),
            Some(Role::Importer)
        );
        // POD_NAMES v1 (node id) and non-numeric suffixes are not recognised.
        assert_eq!(role_from_pod_name("hello-world-x7k2p-3942883467"), None);
        assert_eq!(role_from_pod_name("p-system-dag-driver-abc"), None);
        assert_eq!(role_from_pod_name("system-dag-driver-1"), None);
    }

    #[test]
    fn annotation_beats_name_and_container() {
        let t = json!({
            "name": "system-dag-driver",
            "metadata": {"annotations": {RUNTIME_ROLE_KEY: "launcher"}},
            "container": {"command": ["driver"]}
        });
        assert_eq!(template_role(&t), Some(Role::Executor));
        let t = json!({
            "name": "system-importer",
            "metadata": {"annotations": {RUNTIME_ROLE_KEY: "launcher"}},
            "container": {"command": ["launcher-v2"]}
        });
        assert_eq!(template_role(&t), Some(Role::Importer));
    }

    #[test]
    fn containers_identify_renamed_templates() {
        let driver = json!({"name": "x", "container": {"image": "gcr.io/ml-pipeline/kfp-driver@sha256:0ce9"}});
        assert_eq!(template_role(&driver), Some(Role::Driver));
        let importer = json!({"name": "y", "container": {
            "command": ["launcher-v2"], "args": ["--executor_type", "importer"]}});
        assert_eq!(template_role(&importer), Some(Role::Importer));
        let executor = json!({"name": "z", "container": {"command": ["x"]},
            "initContainers": [{"name": "kfp-launcher", "image": "ghcr.io/kubeflow/kfp-launcher"}]});
        assert_eq!(template_role(&executor), Some(Role::Executor));
        // DAG templates do not become pods.
        assert_eq!(
            template_role(&json!({"name": "system-dag-driver", "dag": {}})),
            None
        );
        assert_eq!(
            template_role(&json!({"name": "user", "container": {"image": "python"}})),
            None
        );
    }

    #[test]
    fn emissary_wrapper_is_seen_through() {
        let c = json!({"command": ["/var/run/argo/argoexec", "emissary", "--loglevel", "info", "--", "driver"],
                       "args": ["--type", "ROOT_DAG"]});
        assert_eq!(effective_command(&c), ["driver", "--type", "ROOT_DAG"]);
        assert_eq!(image_name("quay.io/a/kfp-driver:2.5.0"), "kfp-driver");
        assert_eq!(image_name("localhost:5000/kfp-driver"), "kfp-driver");
    }
}
