//! The webhook's configuration: what to put on which KFP run pods, validated the way the
//! Kubernetes API server would validate the result.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::quantity::Quantity;

/// Label (and annotation) that switches Istio sidecar injection per pod.
pub const INJECT_KEY: &str = "sidecar.istio.io/inject";
/// Per-pod switch for Kubernetes native sidecars in Istio's injection template.
pub const NATIVE_SIDECAR_KEY: &str = "sidecar.istio.io/nativeSidecar";
/// Prefix KFP reserves for itself (KFP's own `DRIVER_POD_*` drops such keys too).
pub const RESERVED_PREFIX: &str = "pipelines.kubeflow.org/";
/// Istio's own control ports: Envoy Prometheus stats (15090), health (15021) and the
/// pilot-agent merged-metrics port (15020). Calls to them on other pods are plain HTTP served
/// outside the mTLS listeners, so they are kept out of the proxy.
pub const DEFAULT_EXCLUDE_OUTBOUND_PORTS: &str = "15090,15021,15020";

/// Which KFP run pods a template or pod becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// `system-dag-driver` / `system-container-driver`.
    Driver,
    /// `system-container-impl` (the launcher pod running user code).
    Executor,
    /// `system-importer` (`dsl.importer`).
    Importer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Driver => "driver",
            Role::Executor => "executor",
            Role::Importer => "importer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Resources for one section (`limits` or `requests`): resource name → quantity.
pub type ResourceList = BTreeMap<String, Quantity>;

/// Validated mutation configuration. Build it with [`MutationConfig::default`] or
/// [`MutationConfig::from_yaml`]; both yield only valid configurations.
#[derive(Clone, Debug, PartialEq)]
pub struct MutationConfig {
    /// Labels added to the pod metadata of every enabled role.
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the pod metadata of every enabled role (including
    /// `sidecar.istio.io/nativeSidecar` when [`MutationConfig::native_sidecar`] is set).
    pub annotations: BTreeMap<String, String>,
    /// Resource limits for the main container of driver and importer pods.
    pub limits: ResourceList,
    /// Resource requests for the main container of driver and importer pods.
    pub requests: ResourceList,
    /// Mutate executor (`system-container-impl`) pods too (metadata only, see docs).
    pub executor: bool,
    /// Mutate importer (`system-importer`) pods too.
    pub importer: bool,
    /// Add `sidecar.istio.io/nativeSidecar: "true"`.
    pub native_sidecar: bool,
    /// Set configured resources even where the existing value is higher.
    pub allow_lower_resources: bool,
}

impl Default for MutationConfig {
    /// The seed behaviour (kubeflow/pipelines#12306, refined): sidecar label, component label,
    /// proxy config, port annotations, Argo kill command, sized driver resources.
    fn default() -> Self {
        let labels = [
            (INJECT_KEY, "true"),
            ("app.kubernetes.io/component", "kfp-driver"),
        ];
        let annotations = [
            (
                "proxy.istio.io/config",
                "{\"holdApplicationUntilProxyStarts\":true}",
            ),
            ("traffic.sidecar.istio.io/includeInboundPorts", "*"),
            (
                "traffic.sidecar.istio.io/excludeOutboundPorts",
                DEFAULT_EXCLUDE_OUTBOUND_PORTS,
            ),
            (
                "workflows.argoproj.io/kill-cmd-istio-proxy",
                "[\"pilot-agent\",\"request\",\"POST\",\"quitquitquit\"]",
            ),
        ];
        let q =
            |s: &str| Quantity::parse(s).unwrap_or_else(|e| panic!("built-in quantity {s}: {e}"));
        MutationConfig {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            limits: [
                ("cpu".to_string(), q("1000m")),
                ("memory".to_string(), q("1Gi")),
            ]
            .into(),
            requests: [
                ("cpu".to_string(), q("200m")),
                ("memory".to_string(), q("256Mi")),
            ]
            .into(),
            executor: false,
            importer: false,
            native_sidecar: false,
            allow_lower_resources: false,
        }
    }
}

impl MutationConfig {
    /// Whether pods of this role are mutated at all.
    pub fn role_enabled(&self, role: Role) -> bool {
        match role {
            Role::Driver => true,
            Role::Executor => self.executor,
            Role::Importer => self.importer,
        }
    }

    /// Whether resources are set on pods of this role. Executor pods run user code whose
    /// resources come from the pipeline (KFP's `pod-spec-patch`), so they never get ours.
    pub fn sets_resources(&self, role: Role) -> bool {
        matches!(role, Role::Driver | Role::Importer) && self.role_enabled(role)
    }

    /// Annotations to add, including the native-sidecar switch when configured.
    pub fn effective_annotations(&self) -> BTreeMap<String, String> {
        let mut a = self.annotations.clone();
        if self.native_sidecar {
            a.entry(NATIVE_SIDECAR_KEY.to_string())
                .or_insert_with(|| "true".to_string());
        }
        a
    }

    /// The value that replaces an existing `sidecar.istio.io/inject: "false"` annotation:
    /// `"true"` when the configuration turns injection on (by annotation or label).
    pub fn inject_override(&self) -> Option<&str> {
        let wanted = self
            .annotations
            .get(INJECT_KEY)
            .or_else(|| self.labels.get(INJECT_KEY))?;
        (wanted == "true").then_some("true")
    }

    /// Parses and validates the YAML configuration file. Top-level keys that are absent keep
    /// their default; a key that is present replaces the default entirely (maps are not merged).
    /// An empty file is refused; `{}` means "all defaults".
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            // Also what a reload sees when it catches a file being rewritten.
            return Err(ConfigError {
                problems: vec![Problem {
                    key: "(file)".to_string(),
                    reason: "the file is empty; write `{}` for the defaults".to_string(),
                }],
            });
        }
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| ConfigError {
            problems: vec![Problem {
                key: "(file)".to_string(),
                reason: format!("not a valid configuration: {e}"),
            }],
        })?;
        raw.validate()
    }
}

/// One reason a configuration is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where: `labels["key"]`, `resources.limits.cpu`, ...
    pub key: String,
    pub reason: String,
}

/// Every problem found in a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid webhook configuration:")?;
        for p in &self.problems {
            write!(f, "\n  {}: {}", p.key, p.reason)?;
        }
        Ok(())
    }
}

/// A YAML scalar as written, so that `true` (a boolean) can be told from `"true"` (a string).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Str(String),
    Bool(bool),
    Int(i64),
    Float(f64),
}

impl Scalar {
    fn describe(&self) -> String {
        match self {
            Scalar::Str(s) => format!("{s:?}"),
            Scalar::Bool(b) => format!("the boolean {b}"),
            Scalar::Int(i) => format!("the number {i}"),
            Scalar::Float(x) => format!("the number {x}"),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    labels: Option<BTreeMap<String, Option<Scalar>>>,
    annotations: Option<BTreeMap<String, Option<Scalar>>>,
    resources: Option<RawResources>,
    roles: Option<RawRoles>,
    native_sidecar: Option<bool>,
    allow_lower_resources: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    limits: Option<BTreeMap<String, Option<Scalar>>>,
    requests: Option<BTreeMap<String, Option<Scalar>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoles {
    executor: Option<bool>,
    importer: Option<bool>,
}

impl RawConfig {
    fn validate(self) -> Result<MutationConfig, ConfigError> {
        let defaults = MutationConfig::default();
        let mut problems = Vec::new();

        let labels = match self.labels {
            None => defaults.labels,
            Some(raw) => {
                let mut out = BTreeMap::new();
                for (k, v) in raw {
                    let key = format!("labels[{k:?}]");
                    check_metadata_key(&k, &key, &mut problems);
                    if let Some(v) = string_value(v, &key, &mut problems) {
                        if let Err(reason) = check_label_value(&v) {
                            problems.push(Problem {
                                key: key.clone(),
                                reason,
                            });
                        }
                        out.insert(k, v);
                    }
                }
                out
            }
        };

        let annotations = match self.annotations {
            None => defaults.annotations,
            Some(raw) => {
                let mut out = BTreeMap::new();
                let mut total = 0usize;
                for (k, v) in raw {
                    let key = format!("annotations[{k:?}]");
                    check_metadata_key(&k, &key, &mut problems);
                    if let Some(v) = string_value(v, &key, &mut problems) {
                        total += k.len() + v.len();
                        out.insert(k, v);
                    }
                }
                if total > 256 * 1024 {
                    problems.push(Problem {
                        key: "annotations".to_string(),
                        reason: format!(
                            "total size {total} bytes exceeds the Kubernetes limit of 262144"
                        ),
                    });
                }
                out
            }
        };

        let (limits, requests) = match self.resources {
            None => (defaults.limits, defaults.requests),
            Some(r) => (
                resource_list(r.limits, "resources.limits", &mut problems),
                resource_list(r.requests, "resources.requests", &mut problems),
            ),
        };
        for (name, request) in &requests {
            if let Some(limit) = limits.get(name)
                && request > limit
            {
                problems.push(Problem {
                    key: format!("resources.requests.{name}"),
                    reason: format!(
                        "request {request} is above the limit {limit} (resources.limits.{name}); Kubernetes rejects such a pod"
                    ),
                });
            }
        }

        let roles = self.roles.unwrap_or_default();
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(MutationConfig {
            labels,
            annotations,
            limits,
            requests,
            executor: roles.executor.unwrap_or(defaults.executor),
            importer: roles.importer.unwrap_or(defaults.importer),
            native_sidecar: self.native_sidecar.unwrap_or(defaults.native_sidecar),
            allow_lower_resources: self
                .allow_lower_resources
                .unwrap_or(defaults.allow_lower_resources),
        })
    }
}

fn string_value(v: Option<Scalar>, key: &str, problems: &mut Vec<Problem>) -> Option<String> {
    match v {
        Some(Scalar::Str(s)) => Some(s),
        None => {
            problems.push(Problem {
                key: key.to_string(),
                reason: "value is empty (null); write \"\" for an empty string".to_string(),
            });
            None
        }
        Some(other) => {
            problems.push(Problem {
                key: key.to_string(),
                reason: format!(
                    "value is {}, not a string; quote it (Kubernetes metadata values are strings)",
                    other.describe()
                ),
            });
            None
        }
    }
}

fn resource_list(
    raw: Option<BTreeMap<String, Option<Scalar>>>,
    section: &str,
    problems: &mut Vec<Problem>,
) -> ResourceList {
    let mut out = ResourceList::new();
    for (name, v) in raw.unwrap_or_default() {
        let key = format!("{section}.{name}");
        if let Err(reason) = check_qualified_name(&name) {
            problems.push(Problem {
                key: key.clone(),
                reason: format!("not a valid resource name: {reason}"),
            });
            continue;
        }
        let text = match v {
            Some(Scalar::Str(s)) => s,
            Some(Scalar::Int(i)) => i.to_string(),
            Some(Scalar::Float(x)) => x.to_string(),
            Some(Scalar::Bool(b)) => {
                problems.push(Problem {
                    key,
                    reason: format!("the boolean {b} is not a quantity"),
                });
                continue;
            }
            None => {
                problems.push(Problem {
                    key,
                    reason: "no quantity given".to_string(),
                });
                continue;
            }
        };
        match Quantity::parse(&text) {
            Ok(q) if q.is_negative() => problems.push(Problem {
                key,
                reason: format!("{text:?} is negative"),
            }),
            Ok(q) => {
                out.insert(name, q);
            }
            Err(e) => problems.push(Problem {
                key,
                reason: format!("not a Kubernetes quantity: {e}"),
            }),
        }
    }
    out
}

fn check_metadata_key(k: &str, key: &str, problems: &mut Vec<Problem>) {
    if let Err(reason) = check_qualified_name(k) {
        problems.push(Problem {
            key: key.to_string(),
            reason: format!("not a valid Kubernetes key: {reason}"),
        });
    } else if k.starts_with(RESERVED_PREFIX) {
        problems.push(Problem {
            key: key.to_string(),
            reason: format!("the prefix {RESERVED_PREFIX:?} is reserved for Kubeflow Pipelines"),
        });
    }
}

/// Kubernetes qualified name (label and annotation keys): `[prefix/]name`, the prefix a
/// DNS-1123 subdomain of at most 253 characters, the name at most 63 characters of
/// alphanumerics, `-`, `_` and `.`, starting and ending with an alphanumeric.
pub fn check_qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            return Err("the prefix before '/' is empty".to_string());
        }
        check_dns1123_subdomain(p).map_err(|e| format!("prefix {p:?}: {e}"))?;
    }
    if name.is_empty() {
        return Err("the name part is empty".to_string());
    }
    if name.len() > 63 {
        return Err(format!(
            "the name part {name:?} is longer than 63 characters"
        ));
    }
    check_name_chars(name).map_err(|e| format!("name part {name:?}: {e}"))
}

/// Kubernetes label value: empty, or at most 63 characters of alphanumerics, `-`, `_` and
/// `.`, starting and ending with an alphanumeric.
pub fn check_label_value(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    if v.len() > 63 {
        return Err(format!("label value {v:?} is longer than 63 characters"));
    }
    check_name_chars(v).map_err(|e| format!("label value {v:?}: {e}"))
}

fn check_name_chars(s: &str) -> Result<(), String> {
    let ok_inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if let Some(c) = s.chars().find(|&c| !ok_inner(c)) {
        return Err(format!(
            "character {c:?} is not allowed (only A-Z a-z 0-9 - _ .)"
        ));
    }
    let first = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let last = s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first || !last {
        return Err("must start and end with a letter or digit".to_string());
    }
    Ok(())
}

fn check_dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err("longer than 253 characters".to_string());
    }
    for label in s.split('.') {
        let ok = !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(
                "must be a lower-case DNS subdomain (a-z 0-9 - and '.', parts starting and ending alphanumeric)"
                    .to_string(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<Problem> {
        MutationConfig::from_yaml(yaml)
            .expect_err("configuration should be refused")
            .problems
    }

    #[test]
    fn default_is_the_seed_behaviour() {
        let c = MutationConfig::default();
        assert_eq!(c.labels[INJECT_KEY], "true");
        assert_eq!(c.labels["app.kubernetes.io/component"], "kfp-driver");
        assert_eq!(
            c.annotations["proxy.istio.io/config"],
            r#"{"holdApplicationUntilProxyStarts":true}"#
        );
        assert_eq!(
            c.annotations["traffic.sidecar.istio.io/includeInboundPorts"],
            "*"
        );
        assert_eq!(
            c.annotations["traffic.sidecar.istio.io/excludeOutboundPorts"],
            "15090,15021,15020"
        );
        assert_eq!(
            c.annotations["workflows.argoproj.io/kill-cmd-istio-proxy"],
            r#"["pilot-agent","request","POST","quitquitquit"]"#
        );
        assert_eq!(c.limits["cpu"].as_str(), "1000m");
        assert_eq!(c.limits["memory"].as_str(), "1Gi");
        assert_eq!(c.requests["cpu"].as_str(), "200m");
        assert_eq!(c.requests["memory"].as_str(), "256Mi");
        assert!(!c.executor && !c.importer && !c.native_sidecar && !c.allow_lower_resources);
        assert_eq!(c.inject_override(), Some("true"));
        // `{}` is the default configuration; an empty file is refused (it is also what a
        // reload sees when it catches the file being rewritten).
        assert_eq!(MutationConfig::from_yaml("{}\n").expect("valid"), c);
        assert!(MutationConfig::from_yaml(" \n").is_err());
    }

    #[test]
    fn present_keys_replace_absent_keys_default() {
        let c = MutationConfig::from_yaml(
            "labels:\n  team: ml\nroles:\n  executor: true\nnativeSidecar: true\n",
        )
        .expect("valid");
        assert_eq!(c.labels.len(), 1);
        assert_eq!(c.labels["team"], "ml");
        assert_eq!(c.annotations, MutationConfig::default().annotations);
        assert_eq!(c.limits, MutationConfig::default().limits);
        assert!(c.executor && !c.importer && c.native_sidecar);
        assert_eq!(c.effective_annotations()[NATIVE_SIDECAR_KEY], "true");
        assert_eq!(c.inject_override(), None);
    }

    #[test]
    fn quantities_may_be_numbers_and_resources_may_be_partial() {
        let c = MutationConfig::from_yaml(
            "resources:\n  limits:\n    cpu: 2\n  requests:\n    cpu: 0.5\n",
        )
        .expect("valid");
        assert_eq!(c.limits["cpu"].nanos(), 2_000_000_000);
        assert_eq!(c.requests["cpu"].nanos(), 500_000_000);
        assert!(!c.limits.contains_key("memory"));
    }

    #[test]
    fn errors_name_the_key_and_the_reason() {
        let p = problems(
            r#"
labels:
  "bad key!": "x"
  ok: "not valid value!"
  sidecar.istio.io/inject: true
  pipelines.kubeflow.org/v2_component: "true"
annotations:
  "Example.COM/x": "y"
  "/x": "y"
resources:
  limits:
    cpu: lots
    memory: 128Mi
  requests:
    memory: 1Gi
    cpu: -1
"#,
        );
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                r#"labels["bad key!"]"#,
                r#"labels["ok"]"#,
                r#"labels["pipelines.kubeflow.org/v2_component"]"#,
                r#"labels["sidecar.istio.io/inject"]"#,
                r#"annotations["/x"]"#,
                r#"annotations["Example.COM/x"]"#,
                "resources.limits.cpu",
                "resources.requests.cpu",
                "resources.requests.memory",
            ]
        );
        let reason = |k: &str| {
            p.iter()
                .find(|p| p.key == k)
                .map(|p| p.reason.clone())
                .unwrap_or_default()
        };
        assert!(reason(r#"labels["bad key!"]"#).contains("' '"));
        assert!(reason(r#"labels["ok"]"#).contains("not valid value!"));
        assert!(reason(r#"labels["sidecar.istio.io/inject"]"#).contains("boolean true"));
        assert!(reason(r#"labels["pipelines.kubeflow.org/v2_component"]"#).contains("reserved"));
        assert!(reason(r#"annotations["Example.COM/x"]"#).contains("DNS"));
        assert!(reason("resources.limits.cpu").contains("quantity"));
        assert!(reason("resources.requests.cpu").contains("negative"));
        assert!(reason("resources.requests.memory").contains("above the limit 128Mi"));
        let text = MutationConfig::from_yaml("labels: {a: 1}")
            .expect_err("refused")
            .to_string();
        assert!(
            text.contains(r#"labels["a"]: value is the number 1"#),
            "{text}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_yaml_are_refused() {
        assert!(problems("lables: {}\n")[0].reason.contains("lables"));
        assert!(
            problems("roles:\n  driver: false\n")[0]
                .reason
                .contains("driver")
        );
        assert_eq!(problems("labels: [\n")[0].key, "(file)");
    }

    #[test]
    fn key_syntax() {
        for good in ["a", "app.kubernetes.io/component", "x/y_z.1", "A-b"] {
            assert!(check_qualified_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "-a",
            "a-",
            "a/b/c",
            "/a",
            "a/",
            "UPPER.io/x",
            &long,
            "a b",
        ] {
            assert!(check_qualified_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_label_value("").is_ok());
        assert!(check_label_value(&long).is_err());
        assert!(check_label_value("{\"a\":1}").is_err());
    }
}
