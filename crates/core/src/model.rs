//! Typed views of the Kubernetes and Istio objects the analysis understands.
//!
//! Only the fields the semantics read are modelled; everything else stays in
//! [`crate::object::Object::body`]. Optional lists are `Option<Vec<_>>` where Istio's
//! validation distinguishes "absent" from "present but empty" (see `istio-semantics.md` E).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::object::{Cited, Labels, Resource, StringMap};

pub type Service = Resource<ServiceSpec>;
pub type Namespace = Resource<()>;
pub type PeerAuthentication = Resource<PeerAuthenticationSpec>;
pub type DestinationRule = Resource<DestinationRuleSpec>;
pub type AuthorizationPolicy = Resource<AuthorizationPolicySpec>;
pub type RequestAuthentication = Resource<RequestAuthenticationSpec>;
pub type Sidecar = Resource<SidecarSpec>;
pub type NetworkPolicy = Resource<NetworkPolicySpec>;
pub type MutatingWebhookConfiguration = Resource<MutatingWebhookConfigurationSpec>;

// ---------------------------------------------------------------------------------------------
// Kubernetes

/// `metav1.LabelSelector`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LabelSelector {
    pub match_labels: Option<BTreeMap<String, String>>,
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LabelSelectorRequirement {
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub operator: String,
    pub values: Option<Vec<String>>,
}

impl LabelSelector {
    /// Kubernetes semantics: an empty selector matches everything. An unknown operator
    /// matches nothing (the API server would have rejected it).
    pub fn matches(&self, labels: &impl Labels) -> bool {
        if let Some(ml) = &self.match_labels
            && !ml
                .iter()
                .all(|(k, v)| labels.value_of(k) == Some(v.as_str()))
        {
            return false;
        }
        for req in self.match_expressions.iter().flatten() {
            let values = req.values.as_deref().unwrap_or_default();
            let value = labels.value_of(&req.key);
            let ok = match req.operator.as_str() {
                "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
                "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
            && self.match_expressions.as_ref().is_none_or(Vec::is_empty)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: i64,
    pub protocol: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    pub name: String,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub ports: Option<Vec<ContainerPort>>,
    pub env: Option<Vec<EnvVar>>,
    /// `Always` for a native sidecar (an init container that keeps running).
    pub restart_policy: Option<String>,
}

/// The subset of `PodSpec` the analysis uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    pub service_account_name: Option<String>,
    /// Deprecated alias of `serviceAccountName`, still honoured by Kubernetes.
    pub service_account: Option<String>,
    pub host_network: Option<bool>,
    pub containers: Vec<Container>,
    pub init_containers: Option<Vec<Container>>,
}

impl PodSpec {
    /// Give back the room its vectors have beyond their length (a spec read from text has up
    /// to twice the room it needs; a large cluster keeps many).
    pub fn shrink_to_fit(&mut self) {
        fn strings(v: &mut Option<Vec<String>>) {
            if let Some(v) = v {
                v.shrink_to_fit();
            }
        }
        let init = self.init_containers.iter_mut().flatten();
        for c in self.containers.iter_mut().chain(init) {
            strings(&mut c.command);
            strings(&mut c.args);
            if let Some(ports) = &mut c.ports {
                ports.shrink_to_fit();
            }
            if let Some(env) = &mut c.env {
                env.shrink_to_fit();
            }
        }
        self.containers.shrink_to_fit();
        if let Some(init) = &mut self.init_containers {
            init.shrink_to_fit();
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: i64,
    /// A number or a container port name; absent means the same as `port`.
    pub target_port: Option<IntOrString>,
    pub protocol: Option<String>,
    pub app_protocol: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceSpec {
    pub selector: Option<BTreeMap<String, String>>,
    pub ports: Vec<ServicePort>,
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub external_name: Option<String>,
}

impl ServiceSpec {
    pub fn is_headless(&self) -> bool {
        self.cluster_ip.as_deref() == Some("None")
    }
}

/// `admissionregistration.k8s.io/v1` MutatingWebhookConfiguration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MutatingWebhookConfigurationSpec {
    pub webhooks: Vec<MutatingWebhook>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MutatingWebhook {
    pub name: String,
    pub namespace_selector: Option<LabelSelector>,
    pub object_selector: Option<LabelSelector>,
    pub rules: Option<Vec<WebhookRule>>,
    pub client_config: Option<WebhookClientConfig>,
    pub failure_policy: Option<String>,
    pub reinvocation_policy: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WebhookRule {
    pub operations: Vec<String>,
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    pub resources: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WebhookClientConfig {
    pub service: Option<WebhookService>,
    pub url: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WebhookService {
    pub namespace: String,
    pub name: String,
    pub path: Option<String>,
    pub port: Option<i64>,
}

/// `networking.k8s.io/v1` NetworkPolicy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkPolicySpec {
    pub pod_selector: LabelSelector,
    pub policy_types: Option<Vec<String>>,
    pub ingress: Option<Vec<NetworkPolicyIngressRule>>,
    pub egress: Option<Vec<NetworkPolicyEgressRule>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkPolicyIngressRule {
    pub from: Option<Vec<NetworkPolicyPeer>>,
    pub ports: Option<Vec<NetworkPolicyPort>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkPolicyEgressRule {
    pub to: Option<Vec<NetworkPolicyPeer>>,
    pub ports: Option<Vec<NetworkPolicyPort>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkPolicyPeer {
    pub pod_selector: Option<LabelSelector>,
    pub namespace_selector: Option<LabelSelector>,
    pub ip_block: Option<IpBlock>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IpBlock {
    pub cidr: String,
    pub except: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkPolicyPort {
    pub protocol: Option<String>,
    pub port: Option<IntOrString>,
    pub end_port: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// Istio

/// `istio.type.v1beta1.WorkloadSelector` (`selector` of PeerAuthentication,
/// AuthorizationPolicy, RequestAuthentication).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkloadSelector {
    pub match_labels: Option<BTreeMap<String, String>>,
}

impl WorkloadSelector {
    /// Labels of the selector (`None` when absent or empty: Istio treats both as "no selector").
    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.match_labels.as_ref().filter(|m| !m.is_empty())
    }
    /// Subset match: every selector label is on the workload.
    pub fn matches(&self, labels: &StringMap) -> bool {
        self.match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// `istio.type.v1beta1.PolicyTargetReference`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyTargetReference {
    pub group: Option<String>,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

/// PeerAuthentication mTLS mode as written (`UNSET` when absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PeerMode {
    #[default]
    Unset,
    Disable,
    Permissive,
    Strict,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PeerMtls {
    pub mode: PeerMode,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PeerAuthenticationSpec {
    pub selector: Option<WorkloadSelector>,
    pub mtls: Option<PeerMtls>,
    /// Keys are workload (container) ports, kept as written so validation can report bad ones.
    pub port_level_mtls: Option<BTreeMap<String, PeerMtls>>,
}

/// DestinationRule `tls.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsMode {
    Disable,
    Simple,
    Mutual,
    IstioMutual,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientTlsSettings {
    pub mode: Option<TlsMode>,
    pub sni: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadBalancerSettings {
    pub simple: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PortSelector {
    pub number: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PortTrafficPolicy {
    pub port: Option<PortSelector>,
    pub tls: Option<ClientTlsSettings>,
    pub load_balancer: Option<LoadBalancerSettings>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TrafficPolicy {
    pub tls: Option<ClientTlsSettings>,
    pub load_balancer: Option<LoadBalancerSettings>,
    pub port_level_settings: Option<Vec<PortTrafficPolicy>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Subset {
    pub name: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub traffic_policy: Option<TrafficPolicy>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DestinationRuleSpec {
    pub host: String,
    pub traffic_policy: Option<TrafficPolicy>,
    pub subsets: Option<Vec<Subset>>,
    pub export_to: Option<Vec<String>>,
    pub workload_selector: Option<WorkloadSelector>,
}

/// AuthorizationPolicy action (`ALLOW` when absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthzAction {
    #[default]
    Allow,
    Deny,
    Audit,
    Custom,
}

impl AuthzAction {
    /// The action as Istio spells it (`ALLOW`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthzAction::Allow => "ALLOW",
            AuthzAction::Deny => "DENY",
            AuthzAction::Audit => "AUDIT",
            AuthzAction::Custom => "CUSTOM",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtensionProviderRef {
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuthorizationPolicySpec {
    pub selector: Option<WorkloadSelector>,
    pub target_ref: Option<PolicyTargetReference>,
    pub target_refs: Option<Vec<PolicyTargetReference>>,
    pub action: AuthzAction,
    pub provider: Option<ExtensionProviderRef>,
    /// `None`: absent (the policy never matches); `Some([{}])`: match everything.
    pub rules: Option<Vec<Option<Rule>>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Rule {
    pub from: Option<Vec<Option<RuleFrom>>>,
    pub to: Option<Vec<Option<RuleTo>>>,
    pub when: Option<Vec<Option<Condition>>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RuleFrom {
    pub source: Option<Source>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RuleTo {
    pub operation: Option<Operation>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Source {
    pub principals: Option<Vec<String>>,
    pub not_principals: Option<Vec<String>>,
    pub request_principals: Option<Vec<String>>,
    pub not_request_principals: Option<Vec<String>>,
    pub namespaces: Option<Vec<String>>,
    pub not_namespaces: Option<Vec<String>>,
    pub service_accounts: Option<Vec<String>>,
    pub not_service_accounts: Option<Vec<String>>,
    pub trust_domains: Option<Vec<String>>,
    pub not_trust_domains: Option<Vec<String>>,
    pub ip_blocks: Option<Vec<String>>,
    pub not_ip_blocks: Option<Vec<String>>,
    pub remote_ip_blocks: Option<Vec<String>>,
    pub not_remote_ip_blocks: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Operation {
    pub hosts: Option<Vec<String>>,
    pub not_hosts: Option<Vec<String>>,
    pub ports: Option<Vec<String>>,
    pub not_ports: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub not_methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub not_paths: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Condition {
    pub key: String,
    pub values: Option<Vec<String>>,
    pub not_values: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JwtRule {
    pub issuer: String,
    pub audiences: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestAuthenticationSpec {
    pub selector: Option<WorkloadSelector>,
    pub target_ref: Option<PolicyTargetReference>,
    pub target_refs: Option<Vec<PolicyTargetReference>>,
    pub jwt_rules: Option<Vec<JwtRule>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SidecarWorkloadSelector {
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IstioEgressListener {
    pub hosts: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OutboundTrafficPolicy {
    /// `ALLOW_ANY` (default) or `REGISTRY_ONLY`.
    pub mode: Option<String>,
}

/// `networking.istio.io` Sidecar (egress scoping).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SidecarSpec {
    pub workload_selector: Option<SidecarWorkloadSelector>,
    pub egress: Option<Vec<IstioEgressListener>>,
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

// ---------------------------------------------------------------------------------------------
// Mesh-wide configuration

/// What the `istio` ConfigMap (`data.mesh`) says, with Istio's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MeshConfig {
    pub root_namespace: String,
    pub trust_domain: String,
    pub trust_domain_aliases: Vec<String>,
    pub enable_auto_mtls: bool,
    /// `defaultConfig.holdApplicationUntilProxyStarts`.
    pub hold_application_until_proxy_starts: bool,
    /// `extensionProviders` in the order given (for CUSTOM authorization). Istio merges
    /// entries of the same name (the later definition wins): see
    /// [`MeshConfig::extension_provider`].
    pub extension_providers: Vec<ExtensionProvider>,
    /// Pod-level setting of `ENABLE_NATIVE_SIDECARS` when known (from istiod's env).
    pub native_sidecars: Option<bool>,
    /// `pathNormalization.normalization`: what Envoy does to a request path before routing
    /// and authorization (`paths` / `notPaths`).
    pub path_normalization: PathNormalization,
}

impl MeshConfig {
    /// The effective definition of the extension provider `name`: `ApplyMeshConfig` merges
    /// entries of the same name into one, the later definition replacing the earlier
    /// (`istio:pkg/config/mesh/mesh.go`).
    pub fn extension_provider(&self, name: &str) -> Option<&ExtensionProvider> {
        self.extension_providers
            .iter()
            .rev()
            .find(|p| p.name == name)
    }
}

/// One `meshConfig.extensionProviders` entry, with what authorization needs of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExtensionProvider {
    pub name: String,
    /// The provider key: `envoyExtAuthzHttp`, `envoyExtAuthzGrpc`, or another kind (e.g.
    /// `zipkin`, `envoyFileAccessLog`); empty when the entry has none.
    pub kind: String,
    /// `service`: `<namespace>/<host>` or `<host>`.
    pub service: Option<String>,
    /// `port` as written: a number, or a string of digits (protobuf JSON accepts both).
    pub port: Option<String>,
    pub status_on_error: Option<String>,
    /// `pathPrefix` (HTTP providers).
    pub path_prefix: Option<String>,
    /// Header-list fields that contain a bare `*` (HTTP providers reject it).
    pub bare_wildcard_fields: Vec<String>,
    pub fail_open: bool,
}

impl ExtensionProvider {
    pub const EXT_AUTHZ_HTTP: &'static str = "envoyExtAuthzHttp";
    pub const EXT_AUTHZ_GRPC: &'static str = "envoyExtAuthzGrpc";
}

/// `meshConfig.pathNormalization.normalization`, as istiod programs Envoy's HTTP connection
/// manager with it (`istio:pilot/pkg/networking/core/listener_builder.go`): `NONE` turns
/// `normalize_path` off; `BASE` (and `DEFAULT`, the default) turns it on; `MERGE_SLASHES` adds
/// `merge_slashes`; `DECODE_AND_MERGE_SLASHES` adds `path_with_escaped_slashes_action:
/// UNESCAPE_AND_FORWARD`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathNormalization {
    None,
    #[default]
    Base,
    MergeSlashes,
    DecodeAndMergeSlashes,
}

impl PathNormalization {
    /// The `normalization` value of the mesh config (`DEFAULT` is `BASE`).
    pub fn parse(value: &str) -> Option<PathNormalization> {
        Some(match value {
            "DEFAULT" | "BASE" => PathNormalization::Base,
            "NONE" => PathNormalization::None,
            "MERGE_SLASHES" => PathNormalization::MergeSlashes,
            "DECODE_AND_MERGE_SLASHES" => PathNormalization::DecodeAndMergeSlashes,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            PathNormalization::None => "NONE",
            PathNormalization::Base => "BASE",
            PathNormalization::MergeSlashes => "MERGE_SLASHES",
            PathNormalization::DecodeAndMergeSlashes => "DECODE_AND_MERGE_SLASHES",
        }
    }
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            root_namespace: "istio-system".to_string(),
            trust_domain: "cluster.local".to_string(),
            trust_domain_aliases: Vec::new(),
            enable_auto_mtls: true,
            hold_application_until_proxy_starts: false,
            extension_providers: Vec::new(),
            native_sidecars: None,
            path_normalization: PathNormalization::Base,
        }
    }
}

/// What the injector (`istio-sidecar-injector` ConfigMap `config` and `values`) says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InjectorConfig {
    /// `enabled` (default) or `disabled`; anything else means no injection.
    pub policy: String,
    pub never_inject_selector: Vec<LabelSelector>,
    pub always_inject_selector: Vec<LabelSelector>,
    /// `sidecarInjectorWebhook.enableNamespacesByDefault`.
    pub enable_namespaces_by_default: bool,
}

impl Default for InjectorConfig {
    fn default() -> Self {
        InjectorConfig {
            policy: "enabled".to_string(),
            never_inject_selector: Vec::new(),
            always_inject_selector: Vec::new(),
            enable_namespaces_by_default: false,
        }
    }
}

/// One injector webhook entry, as read from a MutatingWebhookConfiguration or assumed from the
/// default install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectorWebhook {
    /// The MutatingWebhookConfiguration it comes from (`None` for an assumed default entry).
    pub configuration: Option<Cited>,
    /// Name of the configuration (`istio-sidecar-injector` for assumed entries).
    pub configuration_name: String,
    /// The webhook entry's name, e.g. `rev.namespace.sidecar-injector.istio.io`.
    pub name: String,
    pub namespace_selector: Option<LabelSelector>,
    pub object_selector: Option<LabelSelector>,
}

impl InjectorWebhook {
    /// Whether Kubernetes calls this webhook for a pod with these labels in a namespace with
    /// these labels (an absent selector matches everything).
    pub fn fires(&self, namespace_labels: &StringMap, pod_labels: &StringMap) -> bool {
        self.namespace_selector
            .as_ref()
            .is_none_or(|s| s.matches(namespace_labels))
            && self
                .object_selector
                .as_ref()
                .is_none_or(|s| s.matches(pod_labels))
    }

    /// `webhook `NAME` of MutatingWebhookConfiguration `CONFIG``, for explanations.
    pub fn describe(&self) -> String {
        format!(
            "webhook `{}` of MutatingWebhookConfiguration `{}`",
            self.name, self.configuration_name
        )
    }
}
