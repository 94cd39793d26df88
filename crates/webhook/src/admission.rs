//! `admission.k8s.io/v1` AdmissionReview in, AdmissionReview out. Pure and synchronous: the
//! server calls [`review`] with the request body; the fuzz target calls it with anything.

use std::borrow::Cow;

use base64::Engine as _;
use kfp_mesh_kfp::mutation::{
    MutationConfig, MutationPlan, WorkflowView, mutate_pod, mutate_workflow, parse_workflow_view,
};
use serde::Deserialize;
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
struct ReviewTyped<'a, O> {
    #[serde(borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request: Option<RequestTyped<'a, O>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestTyped<'a, O> {
    uid: Option<String>,
    #[serde(borrow)]
    operation: Option<Cow<'a, str>>,
    namespace: Option<String>,
    name: Option<String>,
    object: Option<O>,
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
    // The object is read from a `&str`: the body's UTF-8 is checked once, up front (as the
    // careful path checks its raw object), instead of string by string.
    let Ok(text) = std::str::from_utf8(body) else {
        return review_two_pass(endpoint, body, config);
    };
    let fast = match endpoint {
        Endpoint::Workflows => serde_json::from_str::<ReviewTyped<'_, WorkflowView>>(text)
            .ok()
            .map(|r| map_object(r, WorkflowView::into_value)),
        Endpoint::Pods => serde_json::from_str::<ReviewTyped<'_, Value>>(text).ok(),
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

fn map_object<'a, A, B>(r: ReviewTyped<'a, A>, f: impl Fn(A) -> B) -> ReviewTyped<'a, B> {
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
    let body = response_body(&uid, &outcome);
    Reviewed {
        uid,
        namespace,
        name,
        outcome,
        body,
    }
}

/// The response JSON, written directly: the same bytes `serde_json` gives for
/// `{"apiVersion", "kind", "response": {"uid", "allowed", "patchType"?, "patch"?, "warnings"?}}`
/// (a test compares them), without building the patch's base64 text as a string first and
/// then scanning it for characters to escape (base64 has none).
fn response_body(uid: &str, outcome: &Outcome) -> Vec<u8> {
    const HEAD: &[u8] =
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#;
    let mut out = Vec::with_capacity(HEAD.len() + uid.len() + 64);
    out.extend_from_slice(HEAD);
    write_json_string(&mut out, uid);
    out.extend_from_slice(br#","allowed":true"#);
    match outcome {
        Outcome::Patched(plan) => {
            // Serialising a JSON Patch (strings and JSON values) into memory cannot fail.
            let patch = serde_json::to_vec(&plan.patch).unwrap_or_default();
            out.extend_from_slice(br#","patchType":"JSONPatch","patch":""#);
            append_base64(&mut out, &patch);
            out.push(b'"');
        }
        Outcome::FailOpen(reason) => {
            out.extend_from_slice(br#","warnings":["#);
            write_json_string(
                &mut out,
                &format!("kfp-mesh webhook: object not mutated, it could not be read: {reason}"),
            );
            out.push(b']');
        }
        Outcome::Unchanged(_) | Outcome::Skipped(_) => {}
    }
    out.extend_from_slice(b"}}");
    out
}

/// `s` as a JSON string (quoted and escaped as `serde_json` does).
fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Standard base64 (with padding) of `bytes`, appended to `out`.
fn append_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    let engine = &base64::engine::general_purpose::STANDARD;
    let start = out.len();
    match base64::encoded_len(bytes.len(), true) {
        Some(len) => {
            out.resize(start + len, 0);
            match engine.encode_slice(bytes, &mut out[start..]) {
                Ok(written) => out.truncate(start + written),
                Err(_) => {
                    out.truncate(start);
                    out.extend_from_slice(engine.encode(bytes).as_bytes());
                }
            }
        }
        // Only for a length beyond `usize` once encoded (which no body can reach).
        None => out.extend_from_slice(engine.encode(bytes).as_bytes()),
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

    /// A body that is not UTF-8 gets the careful path's answer, wherever the bad byte is.
    #[test]
    fn non_utf8_bodies_take_the_careful_path() {
        let c = MutationConfig::default();
        let workflow = json!({"kind": "Workflow", "spec": {"arguments": {"parameters": [{"value": "MARK"}]},
            "templates": [{"name": "system-container-driver", "container": {"image": "ghcr.io/kubeflow/kfp-driver:2.5.0"}}]}});
        let mut in_object = envelope("CREATE", workflow);
        let mut in_envelope = body(json!({"apiVersion": API_VERSION, "kind": KIND,
            "request": {"uid": "u", "operation": "CREATE", "userInfo": {"username": "MARK"},
            "object": {"kind": "Workflow"}}}));
        for b in [&mut in_object, &mut in_envelope] {
            let at = b.windows(4).position(|w| w == b"MARK").expect("marker");
            b[at] = 0xff;
        }
        for (i, b) in [in_object, in_envelope].iter().enumerate() {
            for ep in [Endpoint::Workflows, Endpoint::Pods] {
                let fast = review(ep, b, &c).map(|r| (r.body, r.outcome.label()));
                let careful = review_two_pass(ep, b, &c).map(|r| (r.body, r.outcome.label()));
                assert_eq!(fast, careful, "body {i} at {ep:?}");
            }
        }
    }

    /// The hand-written answer is byte for byte what serde_json writes for the response
    /// structure.
    #[test]
    fn response_bytes_are_serde_json_bytes() {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ReviewOut<'a> {
            api_version: &'static str,
            kind: &'static str,
            response: ResponseOut<'a>,
        }
        #[derive(serde::Serialize)]
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
        let c = MutationConfig::default();
        let driver = json!({"kind": "Workflow", "spec": {"templates": [{"name": "system-container-driver",
            "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
            "container": {"image": "ghcr.io/kubeflow/kfp-driver:2.5.0", "command": ["driver"]}}]}});
        let plan = mutate_workflow(&driver, &c).expect("readable");
        assert!(!plan.is_empty());
        let outcomes = [
            Outcome::Patched(plan),
            Outcome::Unchanged(MutationPlan::default()),
            Outcome::Skipped("not a CREATE"),
            Outcome::FailOpen("request.object: \"quoted\"\n\u{1}é".to_string()),
        ];
        for uid in ["u-1", "0d4c3f8e-5b7a-4d8e-9a51-6c2f0e1b7a93", "q\"\\\u{7}ü"] {
            for outcome in &outcomes {
                let (patch_type, patch, warnings) = match outcome {
                    Outcome::Patched(plan) => (
                        Some("JSONPatch"),
                        Some(
                            base64::engine::general_purpose::STANDARD
                                .encode(serde_json::to_vec(&plan.patch).expect("json")),
                        ),
                        Vec::new(),
                    ),
                    Outcome::FailOpen(reason) => (
                        None,
                        None,
                        vec![format!(
                            "kfp-mesh webhook: object not mutated, it could not be read: {reason}"
                        )],
                    ),
                    _ => (None, None, Vec::new()),
                };
                let expected = serde_json::to_vec(&ReviewOut {
                    api_version: API_VERSION,
                    kind: KIND,
                    response: ResponseOut {
                        uid,
                        allowed: true,
                        patch_type,
                        patch,
                        warnings,
                    },
                })
                .expect("json");
                assert_eq!(
                    String::from_utf8_lossy(&response_body(uid, outcome)),
                    String::from_utf8_lossy(&expected),
                    "{uid} {}",
                    outcome.label()
                );
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
