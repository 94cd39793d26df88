//! What Istio's validation rejects (E1, E2): rejected objects are reported and take no effect.
//!
//! The checks mirror the `validation.istio.io` webhook and the CRD schema/CEL rules listed in
//! `istio-semantics.md` E. Every issue carries the row code of that section and a message that
//! starts with the path of the offending field (`rules[0].from[1].source: ...`) followed by
//! Istio's own wording.
//!
//! Absent and empty are told apart where Istio's validation does: `from: []` is an error,
//! `from` absent is fine; `rules` absent on a DENY policy is an error, `rules: []` is not
//! (it never matches, D3).

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::model::{AuthorizationPolicy, DestinationRule, PeerAuthentication};
use crate::model::{
    AuthzAction, Condition, Operation, PolicyTargetReference, Rule, Source, TrafficPolicy,
    WorkloadSelector,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One validation finding: the row of `istio-semantics.md` E (`P1`..`P5`, `W1`, `A1`..`A16`,
/// `W-A1`) and Istio's message.
///
/// Codes outside the E tables: `W-A3` (AuthorizationPolicy selector without labels, the A3
/// note), `DRY-RUN` (the `istio.io/dry-run` annotation check Istio runs on every object),
/// `DR1`..`DR5` and `W-DR2`/`W-DR5` (DestinationRule, see [`validate_destination_rule`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValidationIssue {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
}

impl fmt::Display for ValidationIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev} {}: {}", self.code, self.message)
    }
}

/// Collects issues; every message is `<field path>: <text>`.
#[derive(Default)]
struct Issues(Vec<ValidationIssue>);

impl Issues {
    fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        path: &str,
        text: impl fmt::Display,
    ) {
        let message = if path.is_empty() {
            text.to_string()
        } else {
            crate::text!("{path}: {text}")
        };
        self.0.push(ValidationIssue {
            severity,
            code,
            message,
        });
    }
    fn error(&mut self, code: &'static str, path: &str, text: impl fmt::Display) {
        self.push(Severity::Error, code, path, text);
    }
    fn warning(&mut self, code: &'static str, path: &str, text: impl fmt::Display) {
        self.push(Severity::Warning, code, path, text);
    }
}

const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// Row codes used for the selector checks of one kind of object.
struct SelectorCodes {
    empty_key: &'static str,
    wildcard: &'static str,
    no_labels: &'static str,
}

/// `validateWorkloadSelector`: empty keys and `*` are errors, a selector without labels is a
/// warning (the object then acts as if it had no selector).
fn check_workload_selector(
    out: &mut Issues,
    selector: Option<&WorkloadSelector>,
    path: &str,
    codes: &SelectorCodes,
) {
    let Some(selector) = selector else {
        return;
    };
    let labels = selector.match_labels.iter().flatten();
    for (k, v) in labels {
        let at = crate::text!("{path}.matchLabels");
        if k.is_empty() {
            out.error(
                codes.empty_key,
                &at,
                format_args!("empty key is not supported in selector: \"{k}={v}\""),
            );
        }
        if k.contains('*') || v.contains('*') {
            out.error(
                codes.wildcard,
                &at,
                format_args!("wildcard is not supported in selector: \"{k}={v}\""),
            );
        }
    }
    if selector.labels().is_none() {
        out.warning(
            codes.no_labels,
            path,
            "workload selector specified without labels; it selects every workload in the namespace",
        );
    }
}

/// A non-negative decimal number the way Go's `strconv.ParseUint(s, 10, 32)` reads it: ASCII
/// digits only, no sign, no spaces.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok()
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// E1: PeerAuthentication

/// E1: PeerAuthentication validation.
pub fn validate_peer_authentication(pa: &PeerAuthentication) -> Vec<ValidationIssue> {
    let mut out = Issues::default();
    let spec = &pa.spec;

    // Only AuthorizationPolicy may carry the dry-run annotation.
    if pa.meta.annotations.contains_key(DRY_RUN_ANNOTATION) {
        out.error(
            "DRY-RUN",
            "metadata.annotations",
            format_args!(
                "{}/{} has unsupported annotation {DRY_RUN_ANNOTATION}, please remove the annotation",
                pa.namespace(),
                pa.name()
            ),
        );
    }

    let has_labels = spec.selector.as_ref().and_then(|s| s.labels()).is_some();
    if let Some(port_level) = &spec.port_level_mtls {
        if !has_labels && !port_level.is_empty() {
            out.error(
                "P1",
                "portLevelMtls",
                "mesh/namespace peer authentication cannot have port level mTLS (portLevelMtls requires selector)",
            );
        }
        if port_level.is_empty() {
            out.error(
                "P2",
                "portLevelMtls",
                "port level mTLS, if defined, must have at least one element",
            );
        }
        for key in port_level.keys() {
            let ok = parse_decimal(key).is_some_and(|p| (1..=65535).contains(&p));
            if !ok {
                out.error(
                    "P3",
                    &crate::text!("portLevelMtls[{key:?}]"),
                    "port must be in range 1..65535",
                );
            }
        }
    }

    check_workload_selector(
        &mut out,
        spec.selector.as_ref(),
        "selector",
        &SelectorCodes {
            empty_key: "P4",
            wildcard: "P5",
            no_labels: "W1",
        },
    );
    out.0
}

// ---------------------------------------------------------------------------------------------
// E2: AuthorizationPolicy

/// Kinds a `targetRef` may name: (canonical group, kind).
const ALLOWED_TARGET_KINDS: &[(&str, &str)] = &[
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
];
const MAX_TARGET_REFS: usize = 16;
const MAX_SERVICE_ACCOUNTS: usize = 16;
const MAX_SERVICE_ACCOUNT_LEN: usize = 320;

/// E2: AuthorizationPolicy validation.
pub fn validate_authorization_policy(ap: &AuthorizationPolicy) -> Vec<ValidationIssue> {
    let mut out = Issues::default();
    let spec = &ap.spec;
    let action = spec.action;

    if let Some(value) = ap.meta.annotations.get(DRY_RUN_ANNOTATION) {
        match action {
            AuthzAction::Allow | AuthzAction::Deny => {
                if parse_go_bool(value).is_none() {
                    out.error(
                        "DRY-RUN",
                        "metadata.annotations",
                        format_args!(
                            "{}/{} has annotation {DRY_RUN_ANNOTATION} with invalid value ({value:?})",
                            ap.namespace(),
                            ap.name()
                        ),
                    );
                }
            }
            other => out.error(
                "DRY-RUN",
                "metadata.annotations",
                format_args!(
                    "the annotation {DRY_RUN_ANNOTATION} currently only supports action ALLOW/DENY, found action {} in {}/{}",
                    other.as_str(),
                    ap.namespace(),
                    ap.name()
                ),
            ),
        }
    }

    // A1: one attachment style.
    let target_refs = spec.target_refs.as_deref().unwrap_or_default();
    let mut set = Vec::new();
    if spec.selector.is_some() {
        set.push("selector");
    }
    if spec.target_ref.is_some() {
        set.push("targetRef");
    }
    if !target_refs.is_empty() {
        set.push("targetRefs");
    }
    if set.len() > 1 {
        out.error(
            "A1",
            &set.join(", "),
            "only one of targetRefs or workloadSelector can be set",
        );
    }

    // A3: selector.
    check_workload_selector(
        &mut out,
        spec.selector.as_ref(),
        "selector",
        &SelectorCodes {
            empty_key: "A3",
            wildcard: "A3",
            no_labels: "W-A3",
        },
    );

    // A2: target references.
    if let Some(r) = &spec.target_ref {
        check_target_ref(&mut out, r, "targetRef");
    }
    for (i, r) in target_refs.iter().enumerate() {
        check_target_ref(&mut out, r, &crate::text!("targetRefs[{i}]"));
    }
    if target_refs.len() > MAX_TARGET_REFS {
        out.error(
            "A2",
            "targetRefs",
            format_args!(
                "must have at most {MAX_TARGET_REFS} items, found {}",
                target_refs.len()
            ),
        );
    }

    // A4, A5, A6: CUSTOM.
    if action == AuthzAction::Custom {
        match &spec.rules {
            None => out.error(
                "A4",
                "rules",
                "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
            ),
            Some(_) => {
                if spec.provider.as_ref().is_none_or(|p| p.name.is_empty()) {
                    out.error("A5", "provider.name", "`provider.name` must not be empty");
                }
            }
        }
        for (i, rule) in spec.rules.iter().flatten().enumerate() {
            if let Some(rule) = rule {
                check_custom_rule(&mut out, rule, i);
            }
        }
    }
    if spec.provider.is_some() && action != AuthzAction::Custom {
        out.error(
            "A5",
            "provider",
            format_args!(
                "`provider` must not be with non CUSTOM action, found {}",
                action.as_str()
            ),
        );
    }

    // A7: DENY without rules.
    if action == AuthzAction::Deny && spec.rules.is_none() {
        out.error(
            "A7",
            "rules",
            "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
        );
    }

    // A8..A16 and W-A1, per rule.
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        let at = crate::text!("rules[{i}]");
        match rule {
            None => out.error("A8", &at, "`rule` must not be nil"),
            Some(rule) => check_rule(&mut out, rule, &at, action),
        }
    }
    out.0
}

fn check_target_ref(out: &mut Issues, r: &PolicyTargetReference, path: &str) {
    if r.name.is_empty() {
        out.error("A2", path, "targetRef name must be set");
    }
    if r.namespace.as_deref().is_some_and(|ns| !ns.is_empty()) {
        out.error(
            "A2",
            path,
            "targetRef namespace must not be set; cross namespace referencing is not supported",
        );
    }
    let group = r.group.as_deref().unwrap_or_default();
    let canonical = if group.is_empty() { "core" } else { group };
    if !ALLOWED_TARGET_KINDS
        .iter()
        .any(|(g, k)| *g == canonical && *k == r.kind)
    {
        let allowed: Vec<String> = ALLOWED_TARGET_KINDS
            .iter()
            .map(|(g, k)| crate::text!("{g}/{k}"))
            .collect();
        out.error(
            "A2",
            path,
            format_args!(
                "targetRef must be to one of [{}] but was {group}/{}",
                allowed.join(", "),
                r.kind
            ),
        );
    }
}

/// Source fields CUSTOM cannot use (A6), with their field names.
fn custom_unsupported_source_fields(src: &Source) -> [(&'static str, &Option<Vec<String>>); 10] {
    [
        ("namespaces", &src.namespaces),
        ("notNamespaces", &src.not_namespaces),
        ("serviceAccounts", &src.service_accounts),
        ("notServiceAccounts", &src.not_service_accounts),
        ("trustDomains", &src.trust_domains),
        ("notTrustDomains", &src.not_trust_domains),
        ("principals", &src.principals),
        ("notPrincipals", &src.not_principals),
        ("requestPrincipals", &src.request_principals),
        ("notRequestPrincipals", &src.not_request_principals),
    ]
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

fn check_custom_rule(out: &mut Issues, rule: &Rule, i: usize) {
    for (j, from) in rule.from.iter().flatten().enumerate() {
        let Some(src) = from.as_ref().and_then(|f| f.source.as_ref()) else {
            continue;
        };
        for (field, values) in custom_unsupported_source_fields(src) {
            if values.as_ref().is_some_and(|v| !v.is_empty()) {
                out.error(
                    "A6",
                    &crate::text!("rules[{i}].from[{j}].source.{field}"),
                    format_args!(
                        "From.{} is currently not supported with CUSTOM action",
                        capitalize(field)
                    ),
                );
            }
        }
    }
    for (k, when) in rule.when.iter().flatten().enumerate() {
        let at = crate::text!("rules[{i}].when[{k}]");
        match when {
            None => out.error("A6", &at, "when field cannot be nil"),
            Some(c) => {
                let key = c.key.as_str();
                if matches!(
                    key,
                    "source.namespace"
                        | "source.principal"
                        | "source.serviceAccount"
                        | "source.trustDomain"
                ) || key.starts_with("request.auth.")
                {
                    out.error(
                        "A6",
                        &crate::text!("{at}.key"),
                        format_args!("{key} is currently not supported with CUSTOM action"),
                    );
                }
            }
        }
    }
}

/// Which source/operation fields are L4 ("TCP") attributes, for W-A1.
fn source_has_tcp_field(src: &Source) -> bool {
    [
        &src.principals,
        &src.not_principals,
        &src.ip_blocks,
        &src.not_ip_blocks,
        &src.namespaces,
        &src.not_namespaces,
        &src.remote_ip_blocks,
        &src.not_remote_ip_blocks,
        &src.service_accounts,
        &src.not_service_accounts,
        &src.trust_domains,
        &src.not_trust_domains,
    ]
    .iter()
    .any(|f| f.is_some())
}

fn source_fields(src: &Source) -> [(&'static str, &Option<Vec<String>>); 14] {
    [
        ("principals", &src.principals),
        ("notPrincipals", &src.not_principals),
        ("requestPrincipals", &src.request_principals),
        ("notRequestPrincipals", &src.not_request_principals),
        ("namespaces", &src.namespaces),
        ("notNamespaces", &src.not_namespaces),
        ("serviceAccounts", &src.service_accounts),
        ("notServiceAccounts", &src.not_service_accounts),
        ("trustDomains", &src.trust_domains),
        ("notTrustDomains", &src.not_trust_domains),
        ("ipBlocks", &src.ip_blocks),
        ("notIpBlocks", &src.not_ip_blocks),
        ("remoteIpBlocks", &src.remote_ip_blocks),
        ("notRemoteIpBlocks", &src.not_remote_ip_blocks),
    ]
}

fn operation_fields(op: &Operation) -> [(&'static str, &Option<Vec<String>>); 8] {
    [
        ("hosts", &op.hosts),
        ("notHosts", &op.not_hosts),
        ("ports", &op.ports),
        ("notPorts", &op.not_ports),
        ("methods", &op.methods),
        ("notMethods", &op.not_methods),
        ("paths", &op.paths),
        ("notPaths", &op.not_paths),
    ]
}

fn check_rule(out: &mut Issues, rule: &Rule, at: &str, action: AuthzAction) {
    let mut from_exists = false;
    let mut to_exists = false;
    let mut tcp_in_from = false;
    let mut tcp_in_to = false;

    // A8: from.
    if rule.from.as_ref().is_some_and(Vec::is_empty) {
        out.error("A8", &crate::text!("{at}.from"), "`from` must not be empty");
    }
    for (j, from) in rule.from.iter().flatten().enumerate() {
        let fat = crate::text!("{at}.from[{j}]");
        let Some(from) = from else {
            out.error("A8", &fat, "`from` must not be nil");
            continue;
        };
        let sat = crate::text!("{fat}.source");
        let Some(src) = &from.source else {
            out.error("A8", &sat, "`from.source` must not be nil");
            continue;
        };
        from_exists = true;
        let fields = source_fields(src);
        if fields
            .iter()
            .all(|(_, v)| v.as_ref().is_none_or(Vec::is_empty))
        {
            out.error("A8", &sat, "`from.source` must not be empty");
        }
        for (name, values) in fields {
            let values = values.as_deref().unwrap_or_default();
            // Every check below is of the values: a field without any has nothing to report
            // (and its path is worded only for a report).
            if values.is_empty() {
                continue;
            }
            let vat = crate::text!("{sat}.{name}");
            check_empty_values(out, &vat, name, values);
            if matches!(
                name,
                "ipBlocks" | "notIpBlocks" | "remoteIpBlocks" | "notRemoteIpBlocks"
            ) {
                check_ips(out, "A11", &vat, values);
            }
        }
        check_service_accounts(out, src, &sat);
        for (name, values) in [
            ("trustDomains", &src.trust_domains),
            ("notTrustDomains", &src.not_trust_domains),
        ] {
            let values = values.as_deref().unwrap_or_default();
            if !values.is_empty() {
                check_trust_domains(out, &crate::text!("{sat}.{name}"), values);
            }
        }
        tcp_in_from |= source_has_tcp_field(src);
    }

    // A9: to.
    if rule.to.as_ref().is_some_and(Vec::is_empty) {
        out.error("A9", &crate::text!("{at}.to"), "`to` must not be empty");
    }
    for (j, to) in rule.to.iter().flatten().enumerate() {
        let tat = crate::text!("{at}.to[{j}]");
        let Some(to) = to else {
            out.error("A9", &tat, "`to` must not be nil");
            continue;
        };
        let oat = crate::text!("{tat}.operation");
        let Some(op) = &to.operation else {
            out.error("A9", &oat, "`to.operation` must not be nil");
            continue;
        };
        to_exists = true;
        let fields = operation_fields(op);
        if fields
            .iter()
            .all(|(_, v)| v.as_ref().is_none_or(Vec::is_empty))
        {
            out.error("A9", &oat, "`to.operation` must not be empty");
        }
        for (name, values) in fields {
            let values = values.as_deref().unwrap_or_default();
            if values.is_empty() {
                continue;
            }
            let vat = crate::text!("{oat}.{name}");
            if matches!(name, "ports" | "notPorts") {
                check_ports(out, "A12", &vat, values);
            }
            check_empty_values(out, &vat, name, values);
            if matches!(name, "paths" | "notPaths") {
                check_path_templates(out, &vat, values);
            }
        }
        tcp_in_to |= op.ports.is_some() || op.not_ports.is_some();
    }

    // A16: when.
    for (k, when) in rule.when.iter().flatten().enumerate() {
        let wat = crate::text!("{at}.when[{k}]");
        match when {
            None => out.error("A16", &wat, "`key` must not be empty"),
            Some(c) => check_condition(out, c, &wat),
        }
    }

    // W-A1: a DENY rule whose only conditions are HTTP attributes denies all TCP traffic.
    if action == AuthzAction::Deny
        && ((from_exists && !to_exists && !tcp_in_from) || (to_exists && !tcp_in_to))
    {
        out.warning(
            "W-A1",
            at,
            "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port",
        );
    }
}

/// A10: `CheckEmptyValues`.
fn check_empty_values(out: &mut Issues, path: &str, name: &str, values: &[String]) {
    if values.iter().any(String::is_empty) {
        out.error(
            "A10",
            path,
            format_args!("empty value not allowed, found in {name}"),
        );
    }
}

/// A11 (and A16 for IP keys of `when`): `ValidateIPs`. An address or a CIDR prefix.
fn check_ips(out: &mut Issues, code: &'static str, path: &str, values: &[String]) {
    for v in values.iter().filter(|v| !v.is_empty()) {
        if v.contains('/') {
            if v.parse::<ipnet::IpNet>().is_err() {
                out.error(code, path, format_args!("bad CIDR range ({v})"));
            }
        } else if v.parse::<std::net::IpAddr>().is_err() {
            out.error(code, path, format_args!("bad IP address ({v})"));
        }
    }
}

/// A12 (and A16 for `destination.port`): `ValidatePorts`, a decimal number up to 65535.
fn check_ports(out: &mut Issues, code: &'static str, path: &str, values: &[String]) {
    for v in values.iter().filter(|v| !v.is_empty()) {
        if parse_decimal(v).is_none_or(|p| p > 65535) {
            out.error(code, path, format_args!("bad port ({v})"));
        }
    }
}

/// A13: `serviceAccounts`/`notServiceAccounts` (Istio 1.25+).
fn check_service_accounts(out: &mut Issues, src: &Source, sat: &str) {
    let identity_fields_set = [
        &src.principals,
        &src.not_principals,
        &src.namespaces,
        &src.not_namespaces,
    ]
    .iter()
    .any(|f| f.as_ref().is_some_and(|v| !v.is_empty()));
    for (name, values) in [
        ("serviceAccounts", &src.service_accounts),
        ("notServiceAccounts", &src.not_service_accounts),
    ] {
        let values = values.as_deref().unwrap_or_default();
        if values.is_empty() {
            continue;
        }
        let at = crate::text!("{sat}.{name}");
        if identity_fields_set {
            out.error(
                "A13",
                &at,
                "cannot set serviceAccounts with namespaces or principals",
            );
        }
        if values.len() > MAX_SERVICE_ACCOUNTS {
            out.error(
                "A13",
                &at,
                format_args!(
                    "must have at most {MAX_SERVICE_ACCOUNTS} items, found {}",
                    values.len()
                ),
            );
        }
        for v in values.iter().filter(|v| !v.is_empty()) {
            let parts: Vec<&str> = v.split('/').collect();
            if v.contains('*') {
                out.error(
                    "A13",
                    &at,
                    format_args!("wildcard is not supported in serviceAccounts, found {v:?}"),
                );
            } else if v.len() > MAX_SERVICE_ACCOUNT_LEN {
                out.error(
                    "A13",
                    &at,
                    format_args!(
                        "service account {v:?} is longer than {MAX_SERVICE_ACCOUNT_LEN} characters"
                    ),
                );
            } else if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
                out.error(
                    "A13",
                    &at,
                    format_args!(
                        "service account {v:?} must be of the form `<namespace>/<name>` or `<name>`"
                    ),
                );
            }
        }
    }
}

/// A14: trust domain values (Istio 1.30+): `*` only once, at the start or the end; no `/`.
fn check_trust_domains(out: &mut Issues, path: &str, values: &[String]) {
    for v in values.iter().filter(|v| !v.is_empty()) {
        let stars = v.matches('*').count();
        let placed_ok = stars == 0 || (stars == 1 && (v.starts_with('*') || v.ends_with('*')));
        if !placed_ok {
            out.error(
                "A14",
                path,
                format_args!(
                    "invalid trust domain {v:?}: '*' must appear only once, be at the start, end, or be '*'"
                ),
            );
        }
        if v.contains('/') {
            out.error(
                "A14",
                path,
                format_args!("invalid trust domain {v:?}: must not contain '/'"),
            );
        }
    }
}

const MATCH_ONE_TEMPLATE: &str = "{*}";
const MATCH_ANY_TEMPLATE: &str = "{**}";

/// RFC 3986 `pchar` without `/`: what Envoy accepts as a literal segment of a path template.
fn is_valid_literal(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |k: usize| bytes.get(k).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        let ok = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b);
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

/// A15: path templates (`{*}`, `{**}`) in `paths`/`notPaths`.
fn check_path_templates(out: &mut Issues, path: &str, values: &[String]) {
    for v in values {
        let templated = v.contains(MATCH_ONE_TEMPLATE) || v.contains(MATCH_ANY_TEMPLATE);
        let mut seen_any = false;
        for segment in v.trim_matches('/').split('/') {
            let is_template = segment == MATCH_ONE_TEMPLATE || segment == MATCH_ANY_TEMPLATE;
            if is_template && seen_any {
                out.error(
                    "A15",
                    path,
                    format_args!(
                        "invalid or unsupported path {v}: {{**}} is not the last operator"
                    ),
                );
                break;
            }
            if is_template {
                seen_any |= segment == MATCH_ANY_TEMPLATE;
                continue;
            }
            if segment.contains(['{', '}']) {
                out.error(
                    "A15",
                    path,
                    format_args!(
                        "invalid or unsupported path {v}: contains '{{' or '}}' beyond a supported path template"
                    ),
                );
                break;
            }
            if templated && !is_valid_literal(segment) {
                out.error(
                    "A15",
                    path,
                    format_args!(
                        "invalid or unsupported path {v}: contains segment {segment} with invalid string literal"
                    ),
                );
                break;
            }
        }
    }
}

/// `a[b]`: the form of `request.headers[...]`, `request.auth.claims[...]`, `experimental.*`.
fn is_map_key(key: &str) -> bool {
    match key.find('[') {
        Some(open) => key.ends_with(']') && open > 0 && open + 2 < key.len(),
        None => false,
    }
}

fn check_condition(out: &mut Issues, c: &Condition, wat: &str) {
    let key = c.key.as_str();
    if key.is_empty() {
        out.error("A16", &crate::text!("{wat}.key"), "`key` must not be empty");
        return;
    }
    let values = c.values.as_deref().unwrap_or_default();
    let not_values = c.not_values.as_deref().unwrap_or_default();
    if values.is_empty() && not_values.is_empty() {
        out.error(
            "A16",
            wat,
            format_args!("at least one of `values` or `notValues` must be set for key {key}"),
        );
        return;
    }
    for (field, list) in [("values", values), ("notValues", not_values)] {
        let vat = crate::text!("{wat}.{field}");
        if list.iter().any(String::is_empty) {
            out.error(
                "A10",
                &vat,
                format_args!(
                    "invalid `{field}` for `key` {key}: empty value not allowed, found in {key}"
                ),
            );
            continue;
        }
        check_attribute(out, key, list, &vat);
    }
}

/// `ValidateAttribute`: the known `when` keys and the shape of their values.
fn check_attribute(out: &mut Issues, key: &str, values: &[String], vat: &str) {
    let map_key = |out: &mut Issues| {
        if !is_map_key(key) {
            out.error(
                "A16",
                vat,
                format_args!("bad key ({key}): should have format a[b]"),
            );
        }
    };
    if key.starts_with("request.headers") {
        map_key(out);
        return;
    }
    match key {
        "source.ip" | "remote.ip" | "destination.ip" => check_ips(out, "A16", vat, values),
        "destination.port" => check_ports(out, "A16", vat, values),
        "source.trustDomain" => check_trust_domains(out, vat, values),
        "source.namespace"
        | "source.principal"
        | "source.serviceAccount"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter"
        | "connection.sni" => {}
        "destination.namespace" => out.error(
            "A16",
            vat,
            format_args!("attribute {key} is replaced by the metadata.namespace"),
        ),
        "destination.name" | "destination.user" => out.error(
            "A16",
            vat,
            format_args!("deprecated attribute {key}: only supported in v1alpha1"),
        ),
        _ if key.starts_with("request.auth.claims")
            || key.starts_with("experimental.envoy.filters.") =>
        {
            map_key(out)
        }
        _ if key.starts_with("destination.labels") => out.error(
            "A16",
            vat,
            format_args!("attribute {key} is replaced by the workload selector"),
        ),
        _ => out.error("A16", vat, format_args!("unknown attribute: {key}")),
    }
}

// ---------------------------------------------------------------------------------------------
// DestinationRule

/// DestinationRule validation, restricted to the well-known rejections of Istio's
/// `ValidateDestinationRule` that the typed model can see:
///
/// | Code | Check |
/// | --- | --- |
/// | `DR1` | `host`: not empty, at most 255 characters, `*` only as (a prefix of) the first label, DNS-1123 labels, top-level label not all digits |
/// | `DR2` | `portLevelSettings[]` without `port` ("portTrafficPolicy must have valid port"); `port.number` 0 or above 65535 (CRD/CEL) |
/// | `W-DR2` | `port: {}` with no number: accepted by Istio, but the entry matches no Service port |
/// | `DR3` | subset name empty, not a DNS-1123 label, or repeated |
/// | `DR4` | `exportTo`: duplicates, `~`, an entry that is not `.`/`*`/a namespace name, `*` with others; with `workloadSelector` only the own namespace |
/// | `DR5` / `W-DR5` | `workloadSelector` as for the security objects (empty key, `*`; no labels is a warning) |
///
/// Not an error: `tls` without `mode` (the mode defaults to `DISABLE`). Not checked because
/// the model does not carry the fields: `trafficPolicy`/port entries with no field at all
/// (connectionPool and outlierDetection are not modelled), MUTUAL TLS without client
/// certificates, certificate/credentialName conflicts.
pub fn validate_destination_rule(dr: &DestinationRule) -> Vec<ValidationIssue> {
    let mut out = Issues::default();
    let spec = &dr.spec;

    if dr.meta.annotations.contains_key(DRY_RUN_ANNOTATION) {
        out.error(
            "DRY-RUN",
            "metadata.annotations",
            format_args!(
                "{}/{} has unsupported annotation {DRY_RUN_ANNOTATION}, please remove the annotation",
                dr.namespace(),
                dr.name()
            ),
        );
    }

    if let Err(e) = check_wildcard_domain(&spec.host) {
        out.error("DR1", "host", e);
    }

    if let Some(tp) = &spec.traffic_policy {
        check_traffic_policy(&mut out, tp, "trafficPolicy");
    }

    let mut names = BTreeSet::new();
    for (i, subset) in spec.subsets.iter().flatten().enumerate() {
        let at = crate::text!("subsets[{i}]");
        if subset.name.is_empty() {
            out.error("DR3", &crate::text!("{at}.name"), "name cannot be empty");
        } else if !is_dns1123_label(&subset.name) {
            out.error(
                "DR3",
                &crate::text!("{at}.name"),
                format_args!("name {:?} must be a valid label", subset.name),
            );
        }
        if !names.insert(subset.name.as_str()) {
            out.error(
                "DR3",
                &crate::text!("{at}.name"),
                format_args!("duplicate subset names: {}", subset.name),
            );
        }
        if let Some(tp) = &subset.traffic_policy {
            check_traffic_policy(&mut out, tp, &crate::text!("{at}.trafficPolicy"));
        }
    }

    check_export_to(
        &mut out,
        dr.namespace(),
        spec.export_to.as_deref().unwrap_or_default(),
        spec.workload_selector.is_some(),
    );

    check_workload_selector(
        &mut out,
        spec.workload_selector.as_ref(),
        "workloadSelector",
        &SelectorCodes {
            empty_key: "DR5",
            wildcard: "DR5",
            no_labels: "W-DR5",
        },
    );
    out.0
}

fn check_traffic_policy(out: &mut Issues, tp: &TrafficPolicy, path: &str) {
    for (i, pls) in tp.port_level_settings.iter().flatten().enumerate() {
        let at = crate::text!("{path}.portLevelSettings[{i}].port");
        match &pls.port {
            None => out.error("DR2", &at, "portTrafficPolicy must have valid port"),
            Some(p) => match p.number {
                None => out.warning(
                    "W-DR2",
                    &at,
                    "port has no number: this port-level setting matches no Service port",
                ),
                Some(n) if n == 0 || n > 65535 => out.error(
                    "DR2",
                    &crate::text!("{at}.number"),
                    format_args!("port number {n} must be in the range 1..65535"),
                ),
                Some(_) => {}
            },
        }
    }
}

/// A DNS-1123 label as Istio checks it (letters of either case, digits, `-` inside).
fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            b.len() <= 63
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        }
        _ => false,
    }
}

/// `*`, or a label optionally prefixed with `*` or `*-`.
fn is_wildcard_dns1123_label(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let rest = s
        .strip_prefix("*-")
        .or_else(|| s.strip_prefix('*'))
        .unwrap_or(s);
    s.len() <= 63 && is_dns1123_label(rest)
}

/// `ValidateWildcardDomain`: what `DestinationRule.host` must look like.
fn check_wildcard_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("empty domain name not allowed".to_string());
    }
    if domain.len() > 255 {
        return Err(crate::text!("domain name {domain:?} too long (max 255)"));
    }
    let (first, rest) = match domain.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (domain, None),
    };
    if !is_wildcard_dns1123_label(first) {
        return Err(crate::text!(
            "domain name {domain:?} invalid (label {first:?} invalid)"
        ));
    }
    let Some(rest) = rest else {
        return Ok(());
    };
    let labels: Vec<&str> = rest.split('.').collect();
    let tld = labels.last().copied().unwrap_or_default();
    if !tld.is_empty() && tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(crate::text!(
            "domain name {domain:?} invalid (top level domain {tld:?} cannot be all-numeric)"
        ));
    }
    for (i, label) in labels.iter().enumerate() {
        // A trailing dot (`istio.io.`) is allowed.
        if i + 1 == labels.len() && label.is_empty() {
            break;
        }
        if !is_dns1123_label(label) {
            return Err(crate::text!(
                "domain name {domain:?} invalid (label {label:?} invalid)"
            ));
        }
    }
    Ok(())
}

fn check_export_to(out: &mut Issues, namespace: &str, export_to: &[String], has_selector: bool) {
    if export_to.is_empty() {
        return;
    }
    let mut set: BTreeSet<&str> = BTreeSet::new();
    for (i, e) in export_to.iter().enumerate() {
        let at = crate::text!("exportTo[{i}]");
        let key = if e == "." { namespace } else { e.as_str() };
        if set.contains(key) {
            if key != e {
                out.error(
                    "DR4",
                    &at,
                    format_args!(
                        "duplicate entries in exportTo: . and current namespace {namespace}"
                    ),
                );
            } else {
                out.error(
                    "DR4",
                    &at,
                    format_args!("duplicate entries in exportTo for entry {e}"),
                );
            }
        } else if key == "~" {
            out.error(
                "DR4",
                &at,
                "exportTo ~ (none) is not allowed for Istio configuration objects",
            );
        } else if key != "*" && !is_dns1123_label(key) {
            out.error(
                "DR4",
                &at,
                format_args!(
                    "only .,*, or a valid DNS 1123 label is allowed as exportTo entry, found {e:?}"
                ),
            );
        } else {
            set.insert(key);
        }
    }
    if has_selector && !set.is_empty() {
        if set.contains(namespace) {
            if set.len() > 1 {
                out.error(
                    "DR4",
                    "exportTo",
                    "destination rule with workload selector cannot have multiple entries in exportTo",
                );
            }
        } else {
            out.error(
                "DR4",
                "exportTo",
                "destination rule with workload selector cannot have exportTo beyond current namespace",
            );
        }
    }
    if set.contains("*") && export_to.len() > 1 {
        out.error(
            "DR4",
            "exportTo",
            "cannot have both public (*) and non-public exportTo values for a resource",
        );
    }
}
