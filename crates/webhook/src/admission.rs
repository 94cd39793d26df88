//! `admission.k8s.io/v1` AdmissionReview in, AdmissionReview out. Pure and synchronous: the
//! server calls [`review`] with the request body; the fuzz target calls it with anything.

use base64::Engine as _;
use kfp_mesh_kfp::mutation::{
    MutationConfig, MutationPlan, WorkflowView, mutate_pod, mutate_workflow, parse_workflow_view,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// Which objects an endpoint mutates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /mutate/workflows`: Argo `Workflow` objects.
    Workflows,
    /// `POST /mutate/pods`: Pods.
    Pods,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Workflows => "/mutate/workflows",
            Endpoint::Pods => "/mutate/pods",
        }
    }

    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            "/mutate/workflows" => Some(Endpoint::Workflows),
            "/mutate/pods" => Some(Endpoint::Pods),
            _ => None,
        }
    }
}

const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a> {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(borrow)]
    request: Option<RequestIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<'a> {
    uid: Option<String>,
    operation: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    /// Kept raw so that an object we cannot read is a fail-open case, not a bad request.
    #[serde(borrow)]
    object: Option<&'a RawValue>,
}

/// The same envelope with the object parsed in the same pass (the common, fast path).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewTyped<O> {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<RequestTyped<O>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestTyped<O> {
    uid: Option<String>,
    operation: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    object: Option<O>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// What was decided for one review (always `allowed: true`: this webhook never blocks).
#[derive(Debug)]
pub enum Outcome {
    /// A non-empty patch was returned.
    Patched(MutationPlan),
    /// A KFP run-pod object that needed no change (or no recognised role).
    Unchanged(MutationPlan),
    /// Not a CREATE, or nothing to do for this operation.
    Skipped(&'static str),
    /// The object could not be read: allowed without a patch, with a warning.
    FailOpen(String),
}

impl Outcome {
    /// The `result` label of the request metric.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Patched(_) => "patched",
            Outcome::Unchanged(_) => "unchanged",
            Outcome::Skipped(_) => "skipped",
            Outcome::FailOpen(_) => "fail_open",
        }
    }
}

/// A reviewed request: the JSON body to send back and what it means.
#[derive(Debug)]
pub struct Reviewed {
    pub uid: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub outcome: Outcome,
    pub body: Vec<u8>,
}

/// Why a body is not an AdmissionReview (answered with HTTP 400 and this text).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error(
        "expected apiVersion {API_VERSION:?} and kind {KIND:?}, got {api_version:?} and {kind:?}"
    )]
    NotAdmissionReview { api_version: String, kind: String },
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("AdmissionReview request has no uid")]
    NoUid,
}

/// Reviews one AdmissionReview body for `endpoint` under `config`.
///
/// Most of a review's cost is parsing the object, so the common case parses envelope and
/// object in one pass; any failure there falls back to [`review_two_pass`], which tells a bad
/// envelope (400) from an unreadable object (allowed, fail-open).
pub fn review(
    endpoint: Endpoint,
    body: &[u8],
    config: &MutationConfig,
) -> Result<Reviewed, BadRequest> {
    let fast = match endpoint {
        Endpoint::Workflows => serde_json::from_slice::<ReviewTyped<WorkflowView>>(body)
            .ok()
            .map(|r| map_object(r, WorkflowView::into_value)),
        Endpoint::Pods => serde_json::from_slice::<ReviewTyped<Value>>(body).ok(),
    };
    let Some(input) = fast else {
        return review_two_pass(endpoint, body, config);
    };
    if input.api_version.as_deref() != Some(API_VERSION) || input.kind.as_deref() != Some(KIND) {
        return review_two_pass(endpoint, body, config);
    }
    // Anything but a CREATE with an object and a uid takes the careful path.
    let Some(request) = input.request else {
        return review_two_pass(endpoint, body, config);
    };
    let (Some(uid), Some("CREATE"), Some(object)) = (
        request.uid.filter(|u| !u.is_empty()),
        request.operation.as_deref(),
        request.object.filter(|o| !o.is_null()),
    ) else {
        return review_two_pass(endpoint, body, config);
    };
    let outcome = mutate(endpoint, &object, config);
    Ok(respond(uid, request.namespace, request.name, outcome))
}

fn map_object<A, B>(r: ReviewTyped<A>, f: impl Fn(A) -> B) -> ReviewTyped<B> {
    ReviewTyped {
        api_version: r.api_version,
        kind: r.kind,
        request: r.request.map(|q| RequestTyped {
            uid: q.uid,
            operation: q.operation,
            namespace: q.namespace,
            name: q.name,
            object: q.object.map(f),
        }),
    }
}

/// The careful path: the object kept raw, so that an object we cannot read is a fail-open case
/// and only a broken envelope is a bad request.
fn review_two_pass(
    endpoint: Endpoint,
    body: &[u8],
    config: &MutationConfig,
) -> Result<Reviewed, BadRequest> {
    let input: ReviewIn<'_> =
        serde_json::from_slice(body).map_err(|e| BadRequest::NotJson(e.to_string()))?;
    let api_version = input.api_version.unwrap_or_default();
    let kind = input.kind.unwrap_or_default();
    if api_version != API_VERSION || kind != KIND {
        return Err(BadRequest::NotAdmissionReview { api_version, kind });
    }
    let request = input.request.ok_or(BadRequest::NoRequest)?;
    let uid = request
        .uid
        .filter(|u| !u.is_empty())
        .ok_or(BadRequest::NoUid)?;

    let outcome = decide(
        endpoint,
        request.operation.as_deref(),
        request.object,
        config,
    );
    Ok(respond(uid, request.namespace, request.name, outcome))
}

/// The AdmissionReview answer for an outcome (always `allowed: true`).
fn respond(
    uid: String,
    namespace: Option<String>,
    name: Option<String>,
    outcome: Outcome,
) -> Reviewed {
    let (patch_type, patch, warnings) = match &outcome {
        Outcome::Patched(plan) => {
            let json = serde_json::to_vec(&plan.patch).unwrap_or_default();
            (
                Some("JSONPatch"),
                Some(base64::engine::general_purpose::STANDARD.encode(json)),
                Vec::new(),
            )
        }
        Outcome::FailOpen(reason) => (
            None,
            None,
            vec![format!(
                "kfp-mesh webhook: object not mutated, it could not be read: {reason}"
            )],
        ),
        _ => (None, None, Vec::new()),
    };
    let out = ReviewOut {
        api_version: API_VERSION,
        kind: KIND,
        response: ResponseOut {
            uid: &uid,
            allowed: true,
            patch_type,
            patch,
            warnings,
        },
    };
    // Serialising these plain structs cannot fail.
    let body = serde_json::to_vec(&out).unwrap_or_default();
    Reviewed {
        uid,
        namespace,
        name,
        outcome,
        body,
    }
}

fn decide(
    endpoint: Endpoint,
    operation: Option<&str>,
    object: Option<&RawValue>,
    config: &MutationConfig,
) -> Outcome {
    if operation != Some("CREATE") {
        return Outcome::Skipped("not a CREATE");
    }
    let Some(raw) = object else {
        return Outcome::FailOpen("request.object is missing".to_string());
    };
    if raw.get() == "null" {
        return Outcome::FailOpen("request.object is null".to_string());
    }
    let parsed = match endpoint {
        // Only the fields the mutation reads: most of a review's cost is parsing.
        Endpoint::Workflows => parse_workflow_view(raw.get()),
        Endpoint::Pods => serde_json::from_str::<Value>(raw.get()),
    };
    match parsed {
        Ok(v) => mutate(endpoint, &v, config),
        Err(e) => Outcome::FailOpen(format!("request.object: {e}")),
    }
}

/// The mutation of a parsed object.
fn mutate(endpoint: Endpoint, object: &Value, config: &MutationConfig) -> Outcome {
    let result = match endpoint {
        Endpoint::Workflows => mutate_workflow(object, config),
        Endpoint::Pods => mutate_pod(object, config),
    };
    match result {
        Ok(plan) if plan.is_empty() => Outcome::Unchanged(plan),
        Ok(plan) => Outcome::Patched(plan),
        Err(e) => Outcome::FailOpen(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).expect("json")
    }

    fn envelope(op: &str, object: Value) -> Vec<u8> {
        body(json!({"apiVersion": API_VERSION, "kind": KIND, "request": {
            "uid": "u-1", "operation": op, "object": object,
            "kind": {"group": "", "version": "v1", "kind": "Pod"}}}))
    }

    /// The one-pass fast path answers exactly as the careful path, for every kind of body.
    #[test]
    fn fast_path_equals_the_careful_path() {
        let c = MutationConfig::default();
        let driver = json!({"name": "system-container-driver",
            "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
            "container": {"name": "main", "image": "ghcr.io/kubeflow/kfp-driver:2.5.0", "command": ["driver"]}});
        let workflow = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "wf"}, "spec": {"templates": [driver, {"name": "dag", "dag": {}}]}});
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "wf-system-container-driver-1",
            "annotations": {"sidecar.istio.io/inject": "false", "workflows.argoproj.io/node-name": "x"}},
            "spec": {"containers": [{"name": "main", "image": "ghcr.io/kubeflow/kfp-driver:2.5.0", "command": ["driver"]}]}});
        let bodies: Vec<Vec<u8>> = vec![
            envelope("CREATE", workflow.clone()),
            envelope("UPDATE", workflow.clone()),
            envelope("CREATE", pod.clone()),
            envelope("CREATE", json!({"spec": {"templates": {"not": "a list"}}})),
            envelope("CREATE", Value::Null),
            envelope("CREATE", json!(42)),
            body(
                json!({"apiVersion": API_VERSION, "kind": KIND, "request": {"operation": "CREATE", "object": workflow}}),
            ),
            body(
                json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": KIND, "request": {"uid": "u"}}),
            ),
            body(json!({"apiVersion": API_VERSION, "kind": KIND})),
            b"garbage".to_vec(),
        ];
        for (i, b) in bodies.iter().enumerate() {
            for ep in [Endpoint::Workflows, Endpoint::Pods] {
                let fast = review(ep, b, &c);
                let careful = review_two_pass(ep, b, &c);
                match (fast, careful) {
                    (Ok(f), Ok(k)) => {
                        assert_eq!(f.body, k.body, "body {i} at {ep:?}");
                        assert_eq!(f.outcome.label(), k.outcome.label(), "body {i} at {ep:?}");
                    }
                    (Err(f), Err(k)) => assert_eq!(f.to_string(), k.to_string(), "body {i}"),
                    (f, k) => panic!(
                        "body {i} at {ep:?}: fast {:?} careful {:?}",
                        f.map(|r| r.outcome),
                        k.map(|r| r.outcome)
                    ),
                }
            }
        }
    }

    #[test]
    fn bad_requests() {
        let c = MutationConfig::default();
        let ep = Endpoint::Pods;
        assert!(matches!(
            review(ep, b"garbage", &c),
            Err(BadRequest::NotJson(_))
        ));
        assert!(matches!(
            review(
                ep,
                &body(json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": KIND})),
                &c
            ),
            Err(BadRequest::NotAdmissionReview { .. })
        ));
        assert_eq!(
            review(
                ep,
                &body(json!({"apiVersion": API_VERSION, "kind": KIND})),
                &c
            )
            .err(),
            Some(BadRequest::NoRequest)
        );
        assert_eq!(
            review(
                ep,
                &body(json!({"apiVersion": API_VERSION, "kind": KIND, "request": {"uid": ""}})),
                &c
            )
            .err(),
            Some(BadRequest::NoUid)
        );
    }

    #[test]
    fn outcomes() {
        let c = MutationConfig::default();
        let ep = Endpoint::Pods;
        let r = review(ep, &envelope("UPDATE", json!({})), &c).expect("review");
        assert_eq!(r.outcome.label(), "skipped");
        let r = review(ep, &envelope("CREATE", json!([1])), &c).expect("review");
        assert_eq!(r.outcome.label(), "fail_open");
        let out: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(out["response"]["allowed"], true);
        assert_eq!(out["response"]["uid"], "u-1");
        assert!(
            out["response"]["warnings"][0]
                .as_str()
                .is_some_and(|w| w.contains("could not be read"))
        );
        assert!(out["response"].get("patch").is_none());
        let r = review(ep, &envelope("CREATE", Value::Null), &c).expect("review");
        assert_eq!(r.outcome.label(), "fail_open");
        let r = review(
            ep,
            &envelope("CREATE", json!({"kind": "Pod", "metadata": {"name": "x"}})),
            &c,
        )
        .expect("review");
        assert_eq!(r.outcome.label(), "unchanged");
    }
}
