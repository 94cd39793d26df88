//! The webhook's AdmissionReview handler on arbitrary bytes: it must never panic; whatever it
//! accepts it answers with a well-formed, allowed AdmissionReview whose patch (if any) applies
//! to the object it was computed for.
#![no_main]

use base64::Engine as _;
use kfp_mesh_kfp::mutation::MutationConfig;
use kfp_mesh_webhook::admission::{Endpoint, review};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check(endpoint: Endpoint, body: &[u8], config: &MutationConfig) {
    let Ok(reviewed) = review(endpoint, body, config) else {
        return;
    };
    let out: Value = serde_json::from_slice(&reviewed.body).expect("response is JSON");
    assert_eq!(out["response"]["allowed"], true);
    assert_eq!(out["response"]["uid"], reviewed.uid.as_str());
    if let Some(patch) = out["response"]["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("base64");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSON patch");
        let input: Value = serde_json::from_slice(body).expect("accepted input is JSON");
        let mut object = input["request"]["object"].clone();
        json_patch::patch(&mut object, &patch).expect("the patch applies to the object");
    }
}

fuzz_target!(|data: &[u8]| {
    let config = MutationConfig::default();
    let (first, rest) = data.split_first().unwrap_or((&0, &[]));
    let endpoint = if first & 1 == 0 {
        Endpoint::Workflows
    } else {
        Endpoint::Pods
    };
    // The bytes as a whole body ...
    check(endpoint, rest, &config);
    // ... and as the object inside a valid envelope, to reach the mutation.
    if let Ok(object) = serde_json::from_slice::<Value>(rest) {
        let envelope = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "fuzz", "operation": "CREATE", "object": object}
        });
        let body = serde_json::to_vec(&envelope).expect("json");
        check(endpoint, &body, &config);
    }
});
