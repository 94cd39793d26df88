//! The object kinds `kfp-mesh verify` reads, and what each is read for.

/// What the objects of a kind are kept for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Handed to the static analysis (`kfp-mesh check` would read them from files).
    Analysis,
    /// Live Pods: kept compact for the live facts; bare pods also go to the analysis.
    Pods,
    /// Argo Workflows: which runs are recent.
    Workflows,
}

/// One kind of object, with the API versions to try (the first one served wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindSpec {
    pub group: &'static str,
    /// Versions to try, newest first. A 404 on one moves to the next; a 404 on the last
    /// means the kind is not installed (only allowed for `optional` kinds).
    pub versions: &'static [&'static str],
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// A custom resource that may not be installed (Istio, Argo, Kubeflow): a 404 is a fact.
    pub optional: bool,
    pub used_for: Use,
}

impl KindSpec {
    /// `pods`, `deployments.apps`, `peerauthentications.security.istio.io`: how RBAC and
    /// `kubectl` name the resource.
    pub fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// The URL path of a list (or, with `name`, a get).
    pub fn path(&self, version: &str, namespace: Option<&str>, name: Option<&str>) -> String {
        let mut p = if self.group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{}/{version}", self.group)
        };
        if let Some(ns) = namespace.filter(|_| self.namespaced) {
            p.push_str("/namespaces/");
            p.push_str(ns);
        }
        p.push('/');
        p.push_str(self.plural);
        if let Some(n) = name {
            p.push('/');
            p.push_str(n);
        }
        p
    }
}

const fn kind(
    group: &'static str,
    versions: &'static [&'static str],
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    optional: bool,
    used_for: Use,
) -> KindSpec {
    KindSpec {
        group,
        versions,
        kind,
        plural,
        namespaced,
        optional,
        used_for,
    }
}

const CORE: &[&str] = &["v1"];
const ISTIO_SECURITY: &[&str] = &["v1", "v1beta1"];
const ISTIO_NETWORKING: &[&str] = &["v1", "v1beta1", "v1alpha3"];

/// Everything `verify` lists: the kinds the inventory types (`Inventory::add`), the kinds
/// KFP detection looks at (Istio `Gateway`, `ValidatingWebhookConfiguration`, Kubeflow
/// `Profile`), Argo `Workflow`s and live Pods. ConfigMaps come last (see [`CONFIG_MAPS`]).
pub const KINDS: &[KindSpec] = &[
    kind(
        "",
        CORE,
        "Namespace",
        "namespaces",
        false,
        false,
        Use::Analysis,
    ),
    kind("", CORE, "Pod", "pods", true, false, Use::Pods),
    kind(
        "apps",
        CORE,
        "Deployment",
        "deployments",
        true,
        false,
        Use::Analysis,
    ),
    kind(
        "apps",
        CORE,
        "StatefulSet",
        "statefulsets",
        true,
        false,
        Use::Analysis,
    ),
    kind(
        "apps",
        CORE,
        "DaemonSet",
        "daemonsets",
        true,
        false,
        Use::Analysis,
    ),
    kind(
        "apps",
        CORE,
        "ReplicaSet",
        "replicasets",
        true,
        false,
        Use::Analysis,
    ),
    kind("batch", CORE, "Job", "jobs", true, false, Use::Analysis),
    kind(
        "batch",
        CORE,
        "CronJob",
        "cronjobs",
        true,
        false,
        Use::Analysis,
    ),
    kind("", CORE, "Service", "services", true, false, Use::Analysis),
    kind(
        "",
        CORE,
        "ServiceAccount",
        "serviceaccounts",
        true,
        false,
        Use::Analysis,
    ),
    kind(
        "admissionregistration.k8s.io",
        CORE,
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
        false,
        Use::Analysis,
    ),
    kind(
        "admissionregistration.k8s.io",
        CORE,
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
        false,
        Use::Analysis,
    ),
    kind(
        "networking.k8s.io",
        CORE,
        "NetworkPolicy",
        "networkpolicies",
        true,
        false,
        Use::Analysis,
    ),
    kind(
        "security.istio.io",
        ISTIO_SECURITY,
        "PeerAuthentication",
        "peerauthentications",
        true,
        true,
        Use::Analysis,
    ),
    kind(
        "security.istio.io",
        ISTIO_SECURITY,
        "AuthorizationPolicy",
        "authorizationpolicies",
        true,
        true,
        Use::Analysis,
    ),
    kind(
        "security.istio.io",
        ISTIO_SECURITY,
        "RequestAuthentication",
        "requestauthentications",
        true,
        true,
        Use::Analysis,
    ),
    kind(
        "networking.istio.io",
        ISTIO_NETWORKING,
        "DestinationRule",
        "destinationrules",
        true,
        true,
        Use::Analysis,
    ),
    kind(
        "networking.istio.io",
        ISTIO_NETWORKING,
        "Sidecar",
        "sidecars",
        true,
        true,
        Use::Analysis,
    ),
    kind(
        "networking.istio.io",
        ISTIO_NETWORKING,
        "Gateway",
        "gateways",
        true,
        true,
        Use::Analysis,
    ),
    // Gateway API Gateways: Istio's ambient waypoints (class `istio-waypoint`), which
    // `istio.io/use-waypoint` names.
    kind(
        "gateway.networking.k8s.io",
        &["v1", "v1beta1"],
        "Gateway",
        "gateways",
        true,
        true,
        Use::Analysis,
    ),
    kind(
        "kubeflow.org",
        &["v1", "v1beta1"],
        "Profile",
        "profiles",
        false,
        true,
        Use::Analysis,
    ),
    kind(
        "argoproj.io",
        &["v1alpha1"],
        "Workflow",
        "workflows",
        true,
        true,
        Use::Workflows,
    ),
];

/// ConfigMaps, read after everything else: only the ones the analysis reads are kept (see
/// [`crate::strip::keep_config_map`]).
pub const CONFIG_MAPS: KindSpec = kind(
    "",
    CORE,
    "ConfigMap",
    "configmaps",
    true,
    false,
    Use::Analysis,
);

/// The Namespace kind (read with `get` per namespace when `-n` restricts the read).
pub fn namespaces() -> &'static KindSpec {
    &KINDS[0]
}

/// The Pod kind.
pub fn pods() -> &'static KindSpec {
    &KINDS[1]
}
