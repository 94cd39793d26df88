//! The errors of reading a cluster, each naming the cause and the fix.

use std::time::Duration;

/// The kustomize component that grants `kfp-mesh verify` what it reads.
pub const RBAC_COMPONENT: &str = "manifests/kustomize/components/verify-rbac";
/// The read-only ClusterRole that component ships.
pub const RBAC_CLUSTER_ROLE: &str = "kfp-mesh-verify";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No kubeconfig anywhere and not in a pod.
    #[error(
        "no kubeconfig: {looked}, and kfp-mesh is not running in a pod (KUBERNETES_SERVICE_HOST is not set). Point at a kubeconfig with `--kubeconfig PATH` or `KUBECONFIG=PATH`, or run kfp-mesh in the cluster with a ServiceAccount bound to the ClusterRole `{RBAC_CLUSTER_ROLE}` ({RBAC_COMPONENT})"
    )]
    NoKubeconfig { looked: String },

    #[error(
        "cannot use kubeconfig {path}: {reason}. Fix the file (`kubectl config view --kubeconfig {path}` shows what kubectl makes of it), or point at another one with `--kubeconfig PATH`"
    )]
    BadKubeconfig { path: String, reason: String },

    #[error(
        "context `{context}` is not in the kubeconfig ({path}); its contexts: {available}. Pick one with `--context NAME` (`kubectl config get-contexts` lists them)"
    )]
    UnknownContext {
        context: String,
        path: String,
        available: String,
    },

    #[error(
        "the in-cluster configuration cannot be used: {reason}. Mount the ServiceAccount token (automountServiceAccountToken: true), or point at a kubeconfig with `--kubeconfig PATH`"
    )]
    InCluster { reason: String },

    #[error(
        "cannot reach the API server at {server} (context `{context}`): {reason}. Check that the cluster is running and that this address is reachable from here (VPN, proxy, port-forward), e.g. with `kubectl --context {context} get --raw /version`; or pick another context with `--context NAME`"
    )]
    Unreachable {
        server: String,
        context: String,
        reason: String,
    },

    #[error(
        "the API server at {server} rejected the credentials of context `{context}` (401 Unauthorized: {message}). Log in again or refresh the token, until `kubectl --context {context} get namespaces` works"
    )]
    Unauthorized {
        server: String,
        context: String,
        message: String,
    },

    #[error(
        "forbidden: {user} may not {verb} {resource}{scope} (API server: {message}). kfp-mesh verify only reads (get, list) and needs `{verb}` on `{resource}`. Grant the read-only ClusterRole `{RBAC_CLUSTER_ROLE}`: `kubectl apply -k {RBAC_COMPONENT}` creates it with a ServiceAccount kubeflow/kfp-mesh-verify bound to it; for your own user, `kubectl create clusterrolebinding kfp-mesh-verify --clusterrole={RBAC_CLUSTER_ROLE} --user=USER` (with only namespaced rights, read fewer namespaces with `-n NAMESPACE`)"
    )]
    Forbidden {
        user: String,
        verb: String,
        resource: String,
        /// ` in namespace NS` or ` at the cluster scope`.
        scope: String,
        message: String,
    },

    #[error(
        "timed out: the API server at {server} did not answer `{what}` within {}s. The API server may be overloaded or the list very large: raise the limit with `--request-timeout {}s`, or read fewer namespaces with `-n NAMESPACE`",
        .timeout.as_secs_f64(), (.timeout.as_secs() * 4).max(60)
    )]
    Timeout {
        server: String,
        what: String,
        timeout: Duration,
    },

    #[error("the API server at {server} answered `{what}` with {code} {reason}: {message}")]
    Api {
        server: String,
        what: String,
        code: u16,
        reason: String,
        message: String,
    },

    #[error("cannot read the answer of the API server at {server} to `{what}`: {reason}")]
    Decode {
        server: String,
        what: String,
        reason: String,
    },

    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },

    #[error("cannot start the client: {0}")]
    Client(String),
}

/// The text of an error and all its sources, `a: b: c`.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if parts.last().is_none_or(|p| !p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}
