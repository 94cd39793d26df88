//! What Istio's validation rejects (E1, E2): rejected objects are reported and take no effect.

use serde::Serialize;

use crate::inventory::{AuthorizationPolicy, PeerAuthentication};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One validation finding: the row of `istio-semantics.md` E (`P1`..`P5`, `W1`, `A1`..`A16`,
/// `W-A1`) and Istio's message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValidationIssue {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
}

/// E1: PeerAuthentication validation.
pub fn validate_peer_authentication(pa: &PeerAuthentication) -> Vec<ValidationIssue> {
    let _ = pa;
    Vec::new()
}

/// E2: AuthorizationPolicy validation.
pub fn validate_authorization_policy(ap: &AuthorizationPolicy) -> Vec<ValidationIssue> {
    let _ = ap;
    Vec::new()
}
