//! AuthorizationPolicy → Envoy RBAC, the way istiod's authorization builder does it
//! (`istio-semantics.md` D1–D9).
//!
//! * Which policies apply to a workload is the engine's decision
//!   ([`authz::policy_attachment`] at the sidecar); rejected policies are not in the inventory.
//! * Each rule becomes one Envoy policy named `ns[<ns>]-policy[<name>]-rule[<i>]`: its `from`
//!   entries become OR'ed principals, its `to` entries OR'ed permissions, and each `when`
//!   condition is AND'ed into every principal (source keys, request headers) or permission
//!   (destination keys). Inside one source or operation the fields are AND'ed, the values of a
//!   field OR'ed, `notX` values negated.
//! * Principals are matched as `spiffe://` + value on the authenticated peer certificate, with
//!   `abc*` prefix, `*abc` suffix and `*` presence; `cluster.local`, the trust domain and its
//!   aliases expand to the trust domain and every alias. Namespaces are the regex
//!   `.*/ns/<ns>/.*` on the same principal.
//! * DENY policies go into a DENY filter placed before the ALLOW filter; a workload with no
//!   enforced ALLOW policy gets no ALLOW rules. Dry-run policies become `shadow_rules` of the
//!   filter of their action. A policy without rules never matches.
//! * CUSTOM policies whose provider istiod cannot build (missing, invalid, several providers)
//!   become an RBAC DENY filter of their rules before the others, as istiod generates them;
//!   CUSTOM with a usable provider is not lowered (it needs an external authorizer).
//! * On a TCP filter chain, HTTP-only keys (methods, paths, hosts, request headers, request
//!   principals, `request.auth.*`) make an ALLOW rule be skipped entirely and are dropped from
//!   DENY/AUDIT rules, leaving the rest of the rule (D7).

use std::collections::BTreeMap;
use std::net::IpAddr;

use kfp_mesh_core::inventory::{AuthorizationPolicy, Inventory, Workload};
use kfp_mesh_core::mesh::authz::{self, Attachment, Chain, Enforcer};
use kfp_mesh_core::model::{AuthzAction, Condition, Operation, Rule, Source};
use serde_json::{Map, Value, json};

use crate::LowerError;

/// `type.googleapis.com` names of the two RBAC filters.
pub const HTTP_RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
pub const NETWORK_RBAC: &str = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";

/// The RBAC configuration of one action (DENY or ALLOW) for one filter chain.
#[derive(Clone, Debug, PartialEq)]
pub struct RbacAction {
    /// `"DENY"` or `"ALLOW"`.
    pub action: &'static str,
    /// Enforced rules (`None`: no enforced policy of this action applies).
    pub rules: Option<Value>,
    /// Dry-run rules (`istio.io/dry-run`), evaluated and counted but never enforced.
    pub shadow_rules: Option<Value>,
    /// The fail-closed DENY of CUSTOM policies whose provider istiod cannot build; its stats
    /// carry `custom_deny` so a test can tell it from an ordinary DENY.
    pub custom: bool,
}

/// The RBAC filters of one filter chain, in the order Envoy runs them (DENY, then ALLOW),
/// with notes saying what was translated, skipped or dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RbacFilters {
    pub actions: Vec<RbacAction>,
    pub notes: Vec<String>,
}

impl RbacFilters {
    /// The filters as Envoy HTTP filters (`envoy.filters.http.rbac`).
    pub fn http_filters(&self) -> Vec<Value> {
        self.actions
            .iter()
            .map(|a| {
                let mut cfg = Map::new();
                cfg.insert("@type".into(), json!(HTTP_RBAC));
                if let Some(r) = &a.rules {
                    cfg.insert("rules".into(), r.clone());
                }
                if a.custom {
                    cfg.insert("rules_stat_prefix".into(), json!("custom_deny_"));
                }
                if let Some(r) = &a.shadow_rules {
                    cfg.insert("shadow_rules".into(), r.clone());
                    cfg.insert(
                        "shadow_rules_stat_prefix".into(),
                        json!(format!("istio_dry_run_{}_", a.action.to_ascii_lowercase())),
                    );
                }
                json!({"name": "envoy.filters.http.rbac", "typed_config": Value::Object(cfg)})
            })
            .collect()
    }

    /// The filters as Envoy network filters (`envoy.filters.network.rbac`).
    pub fn network_filters(&self, stat_prefix: &str) -> Vec<Value> {
        self.actions
            .iter()
            .map(|a| {
                let mut cfg = Map::new();
                cfg.insert("@type".into(), json!(NETWORK_RBAC));
                let label = if a.custom {
                    "custom_deny".to_string()
                } else {
                    a.action.to_ascii_lowercase()
                };
                cfg.insert(
                    "stat_prefix".into(),
                    json!(format!("{stat_prefix}{label}.")),
                );
                if let Some(r) = &a.rules {
                    cfg.insert("rules".into(), r.clone());
                }
                if let Some(r) = &a.shadow_rules {
                    cfg.insert("shadow_rules".into(), r.clone());
                    cfg.insert(
                        "shadow_rules_stat_prefix".into(),
                        json!(format!("istio_dry_run_{}_", a.action.to_ascii_lowercase())),
                    );
                }
                json!({"name": "envoy.filters.network.rbac", "typed_config": Value::Object(cfg)})
            })
            .collect()
    }
}

/// The AuthorizationPolicies that apply to `server`'s sidecar (D1, decided by the engine), in
/// the inventory's canonical order.
pub fn applicable_policies<'a>(
    inv: &'a Inventory,
    server: &'a Workload,
) -> Vec<&'a AuthorizationPolicy> {
    applicable_policies_at(inv, server, Enforcer::Sidecar)
}

/// The AuthorizationPolicies that apply to `server` at `enforcer` (a sidecar, or the waypoint
/// in front of one of its Services), as the engine decides (D1, A6.4).
pub fn applicable_policies_at<'a>(
    inv: &'a Inventory,
    server: &'a Workload,
    enforcer: Enforcer<'a>,
) -> Vec<&'a AuthorizationPolicy> {
    let mut out = Vec::new();
    for ns in authz::candidate_namespaces(inv, server, enforcer) {
        for p in inv.authorization_policies_in(ns) {
            if matches!(
                authz::policy_attachment(inv, server, enforcer, p),
                Attachment::Applies(_)
            ) {
                out.push(p);
            }
        }
    }
    out
}

/// Translate the policies that apply to `server`'s sidecar into the RBAC filters of one filter
/// chain.
pub fn lower_policies(
    inv: &Inventory,
    server: &Workload,
    chain: Chain,
) -> Result<RbacFilters, LowerError> {
    lower_policies_at(inv, server, Enforcer::Sidecar, chain)
}

/// [`lower_policies`] for the policies that apply at `enforcer` (Envoy enforcers only: a
/// sidecar, or a waypoint).
pub fn lower_policies_at(
    inv: &Inventory,
    server: &Workload,
    enforcer: Enforcer<'_>,
    chain: Chain,
) -> Result<RbacFilters, LowerError> {
    if matches!(enforcer, Enforcer::Ztunnel) {
        return Err(LowerError::unsupported(
            format!("ztunnel in front of {}", server.object_ref()),
            "ztunnel is not an Envoy",
        ));
    }
    let cx = Cx {
        trust_domain: &inv.mesh.trust_domain,
        aliases: &inv.mesh.trust_domain_aliases,
        tcp: chain == Chain::Tcp,
    };
    let mut out = RbacFilters::default();
    let mut deny = Bucket::default();
    let mut allow = Bucket::default();
    let mut custom: Vec<&AuthorizationPolicy> = Vec::new();
    for p in applicable_policies_at(inv, server, enforcer) {
        let dry = authz::is_dry_run(&p.meta.annotations);
        let (bucket, action) = match p.spec.action {
            AuthzAction::Deny => (&mut deny, AuthzAction::Deny),
            AuthzAction::Allow => (&mut allow, AuthzAction::Allow),
            AuthzAction::Audit => {
                out.notes.push(format!(
                    "AuthorizationPolicy {}/{}: AUDIT never changes the decision; not lowered",
                    p.namespace(),
                    p.name()
                ));
                continue;
            }
            AuthzAction::Custom => {
                custom.push(p);
                continue;
            }
        };
        let policies = lower_policy(&cx, p, action, &mut out.notes)?;
        let target = if dry {
            &mut bucket.shadow
        } else {
            &mut bucket.enforced
        };
        target.get_or_insert_with(Map::new).extend(policies);
    }
    if let Some(bad) = lower_custom(&cx, inv, &custom, &mut out.notes)? {
        out.actions.push(bad);
    }
    for (name, bucket) in [("DENY", deny), ("ALLOW", allow)] {
        if bucket.enforced.is_none() && bucket.shadow.is_none() {
            continue;
        }
        let wrap = |m: Map<String, Value>| json!({"action": name, "policies": Value::Object(m)});
        out.actions.push(RbacAction {
            action: name,
            rules: bucket.enforced.map(wrap),
            shadow_rules: bucket.shadow.map(wrap),
            custom: false,
        });
    }
    Ok(out)
}

/// CUSTOM policies. istiod builds an ext-authz filter per usable provider; when the provider
/// is missing or invalid, or several providers apply, it builds instead an RBAC DENY filter of
/// the enforced CUSTOM rules, placed before the DENY and ALLOW filters
/// (`builder.go` `buildHTTP`/`buildTCP`, `getBadCustomDenyRules`). Only that fail-closed form
/// is lowered: a usable provider needs an external authorizer.
fn lower_custom(
    cx: &Cx<'_>,
    inv: &Inventory,
    custom: &[&AuthorizationPolicy],
    notes: &mut Vec<String>,
) -> Result<Option<RbacAction>, LowerError> {
    if custom.is_empty() {
        return Ok(None);
    }
    let provider = |p: &AuthorizationPolicy| {
        p.spec
            .provider
            .as_ref()
            .map(|x| x.name.clone())
            .unwrap_or_default()
    };
    let providers: std::collections::BTreeSet<String> =
        custom.iter().map(|p| provider(p)).collect();
    let mut rules = Map::new();
    for p in custom {
        let what = format!("AuthorizationPolicy {}/{}", p.namespace(), p.name());
        let name = provider(p);
        let status = authz::provider_status(inv, &name);
        if providers.len() == 1 && matches!(status, authz::ProviderStatus::Usable { .. }) {
            return Err(LowerError::unsupported(
                what,
                format!("CUSTOM with the usable provider {name} needs an external authorizer"),
            ));
        }
        if authz::is_dry_run(&p.meta.annotations) {
            notes.push(format!(
                "{what} (CUSTOM, dry-run): not part of the fail-closed DENY (istiod denies with the enforced CUSTOM rules only)"
            ));
            continue;
        }
        notes.push(format!(
            "{what} (CUSTOM, provider {name}): istiod cannot build the provider ({status:?}{}), so its rules become an RBAC DENY",
            if providers.len() > 1 {
                ", and several providers apply"
            } else {
                ""
            }
        ));
        for (k, v) in lower_policy(cx, p, AuthzAction::Deny, notes)? {
            rules.insert(format!("istio-ext-authz-{k}-bad-custom-action"), v);
        }
    }
    if rules.is_empty() {
        return Ok(None);
    }
    Ok(Some(RbacAction {
        action: "DENY",
        rules: Some(json!({"action": "DENY", "policies": Value::Object(rules)})),
        shadow_rules: None,
        custom: true,
    }))
}

#[derive(Default)]
struct Bucket {
    enforced: Option<Map<String, Value>>,
    shadow: Option<Map<String, Value>>,
}

struct Cx<'a> {
    trust_domain: &'a str,
    aliases: &'a [String],
    tcp: bool,
}

/// One policy → its Envoy policies (one per rule that is not skipped).
fn lower_policy(
    cx: &Cx<'_>,
    p: &AuthorizationPolicy,
    action: AuthzAction,
    notes: &mut Vec<String>,
) -> Result<Map<String, Value>, LowerError> {
    let name = |i: usize| format!("ns[{}]-policy[{}]-rule[{i}]", p.namespace(), p.name());
    let what = format!("AuthorizationPolicy {}/{}", p.namespace(), p.name());
    let mut out = Map::new();
    let rules = p.spec.rules.as_deref().unwrap_or_default();
    if rules.is_empty() {
        // D3: no rules, the policy never matches (istiod's rbacPolicyMatchNever).
        out.insert(name(0), match_never());
        notes.push(format!("{what} has no rules: it never matches"));
        return Ok(out);
    }
    for (i, rule) in rules.iter().enumerate() {
        let default = Rule::default();
        let rule = rule.as_ref().unwrap_or(&default);
        match lower_rule(cx, p.namespace(), rule, action, &what)? {
            Ok(policy) => {
                out.insert(name(i), policy);
            }
            Err(skip) => notes.push(format!(
                "{what} rule {}: skipped on the TCP filter chain because it uses the HTTP-only {skip} (ALLOW rules with HTTP fields never match TCP, D7)",
                i + 1
            )),
        }
    }
    if out.is_empty() {
        // Every rule was skipped: the ALLOW policy still exists and matches nothing.
        out.insert(name(0), match_never());
    }
    Ok(out)
}

fn match_never() -> Value {
    json!({
        "permissions": [{"not_rule": {"any": true}}],
        "principals": [{"not_id": {"any": true}}],
    })
}

/// One attribute of a rule: the Envoy matchers of its values and of its `notX` values.
struct Key {
    label: String,
    http_only: bool,
    values: Vec<Value>,
    not_values: Vec<Value>,
}

/// `Ok(Ok(policy))`, `Ok(Err(key))` when an ALLOW rule is skipped on TCP because of `key`.
fn lower_rule(
    cx: &Cx<'_>,
    policy_ns: &str,
    rule: &Rule,
    action: AuthzAction,
    what: &str,
) -> Result<Result<Value, String>, LowerError> {
    let mut when_principal = Vec::new();
    let mut when_permission = Vec::new();
    for c in rule.when.iter().flatten().flatten() {
        let (side, key) = condition_key(cx, policy_ns, c, what)?;
        match side {
            Side::Principal => when_principal.push(key),
            Side::Permission => when_permission.push(key),
        }
    }
    let mut principal_lists: Vec<Vec<&Key>> = Vec::new();
    let from_keys: Vec<Vec<Key>> = rule
        .from
        .iter()
        .flatten()
        .flatten()
        .map(|f| match &f.source {
            Some(s) => source_keys(cx, policy_ns, s, what),
            None => Ok(Vec::new()),
        })
        .collect::<Result<_, _>>()?;
    if from_keys.is_empty() {
        principal_lists.push(when_principal.iter().collect());
    }
    for keys in &from_keys {
        principal_lists.push(keys.iter().chain(when_principal.iter()).collect());
    }
    let mut permission_lists: Vec<Vec<&Key>> = Vec::new();
    let to_keys: Vec<Vec<Key>> = rule
        .to
        .iter()
        .flatten()
        .flatten()
        .map(|t| match &t.operation {
            Some(o) => operation_keys(o, what),
            None => Ok(Vec::new()),
        })
        .collect::<Result<_, _>>()?;
    if to_keys.is_empty() {
        permission_lists.push(when_permission.iter().collect());
    }
    for keys in &to_keys {
        permission_lists.push(keys.iter().chain(when_permission.iter()).collect());
    }
    let mut principals = Vec::new();
    for list in &principal_lists {
        match combine(cx, list, action, SetKind::Principal) {
            Ok(v) => principals.push(v),
            Err(skip) => return Ok(Err(skip)),
        }
    }
    let mut permissions = Vec::new();
    for list in &permission_lists {
        match combine(cx, list, action, SetKind::Permission) {
            Ok(v) => permissions.push(v),
            Err(skip) => return Ok(Err(skip)),
        }
    }
    Ok(Ok(
        json!({"permissions": permissions, "principals": principals}),
    ))
}

#[derive(Clone, Copy)]
enum SetKind {
    Principal,
    Permission,
}

impl SetKind {
    fn and(self) -> &'static str {
        match self {
            SetKind::Principal => "and_ids",
            SetKind::Permission => "and_rules",
        }
    }
    fn or(self) -> &'static str {
        match self {
            SetKind::Principal => "or_ids",
            SetKind::Permission => "or_rules",
        }
    }
    fn not(self) -> &'static str {
        match self {
            SetKind::Principal => "not_id",
            SetKind::Permission => "not_rule",
        }
    }
    fn set(self, items: Vec<Value>, or: bool) -> Value {
        let op = if or { self.or() } else { self.and() };
        let field = match self {
            SetKind::Principal => "ids",
            SetKind::Permission => "rules",
        };
        json!({op: {field: items}})
    }
}

/// AND the keys of one source/operation (plus the conditions); `Err` names the HTTP-only key
/// that makes an ALLOW rule be skipped on TCP.
fn combine(
    cx: &Cx<'_>,
    keys: &[&Key],
    action: AuthzAction,
    kind: SetKind,
) -> Result<Value, String> {
    let mut and = Vec::new();
    for k in keys {
        if k.http_only && cx.tcp {
            if action == AuthzAction::Allow {
                return Err(k.label.clone());
            }
            // DENY/AUDIT: the field is dropped, the rest of the rule stays (wider).
            continue;
        }
        if !k.values.is_empty() {
            and.push(kind.set(k.values.clone(), true));
        }
        if !k.not_values.is_empty() {
            and.push(json!({kind.not(): kind.set(k.not_values.clone(), true)}));
        }
    }
    Ok(if and.is_empty() {
        json!({"any": true})
    } else {
        kind.set(and, false)
    })
}

enum Side {
    Principal,
    Permission,
}

/// D4: `*` presence, `*abc` suffix, `abc*` prefix, else exact, with `prefix` prepended to
/// prefix and exact values (`spiffe://` for principals).
fn string_match(v: &str, prefix: &str) -> Value {
    if v == "*" {
        json!({"safe_regex": {"regex": ".+"}})
    } else if let Some(s) = v.strip_prefix('*') {
        json!({"suffix": s})
    } else if let Some(p) = v.strip_suffix('*') {
        json!({"prefix": format!("{prefix}{p}")})
    } else {
        json!({"exact": format!("{prefix}{v}")})
    }
}

/// A header matcher as istiod builds it: `*` is presence, else prefix/suffix/exact.
fn header_match(name: &str, v: &str, ignore_case: bool) -> Value {
    if v == "*" {
        return json!({"name": name, "present_match": true});
    }
    let mut m = string_match(v, "");
    if ignore_case && let Some(o) = m.as_object_mut() {
        o.insert("ignore_case".into(), json!(true));
    }
    json!({"name": name, "string_match": m})
}

/// D6: principals naming the local trust domain, `cluster.local` or an alias match under the
/// trust domain and every alias.
fn expand_principal(cx: &Cx<'_>, v: &str) -> Vec<String> {
    if v.starts_with('*') {
        return vec![v.to_string()];
    }
    let Some((td, rest)) = v.split_once('/') else {
        return vec![v.to_string()];
    };
    let local =
        td == cx.trust_domain || td == "cluster.local" || cx.aliases.iter().any(|a| a == td);
    if !local {
        return vec![v.to_string()];
    }
    std::iter::once(cx.trust_domain)
        .chain(cx.aliases.iter().map(String::as_str))
        .map(|d| format!("{d}/{rest}"))
        .collect()
}

fn principal_ids(cx: &Cx<'_>, v: &str) -> Vec<Value> {
    expand_principal(cx, v)
        .into_iter()
        .map(|p| json!({"authenticated": {"principal_name": string_match(&p, "spiffe://")}}))
        .collect()
}

fn namespace_id(v: &str) -> Value {
    json!({"authenticated": {"principal_name": {"safe_regex": {
        "regex": format!(".*/ns/{}/.*", v.replace('*', ".*"))
    }}}})
}

fn service_account_ids(cx: &Cx<'_>, policy_ns: &str, v: &str) -> Vec<Value> {
    let (ns, sa) = v.split_once('/').unwrap_or((policy_ns, v));
    principal_ids(cx, &format!("{}/ns/{ns}/sa/{sa}", cx.trust_domain))
}

fn cidr(v: &str, what: &str) -> Result<Value, LowerError> {
    let (ip, len) = match v.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (v, None),
    };
    let addr: IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| LowerError::Invalid(format!("{what}: {v:?} is not an IP address or CIDR")))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len: u32 =
        match len {
            None => max,
            Some(l) => l.trim().parse().ok().filter(|l| *l <= max).ok_or_else(|| {
                LowerError::Invalid(format!("{what}: bad prefix length in {v:?}"))
            })?,
        };
    Ok(json!({"address_prefix": addr.to_string(), "prefix_len": len}))
}

fn port_number(v: &str, what: &str) -> Result<u16, LowerError> {
    v.trim()
        .parse::<u16>()
        .map_err(|_| LowerError::Invalid(format!("{what}: {v:?} is not a port number")))
}

fn key(
    label: &str,
    http_only: bool,
    values: &Option<Vec<String>>,
    not_values: &Option<Vec<String>>,
    mut f: impl FnMut(&str) -> Result<Vec<Value>, LowerError>,
) -> Result<Option<Key>, LowerError> {
    let conv = |vs: &Option<Vec<String>>,
                f: &mut dyn FnMut(&str) -> Result<Vec<Value>, LowerError>|
     -> Result<Vec<Value>, LowerError> {
        let mut out = Vec::new();
        for v in vs.iter().flatten() {
            out.extend(f(v)?);
        }
        Ok(out)
    };
    let values = conv(values, &mut f)?;
    let not_values = conv(not_values, &mut f)?;
    if values.is_empty() && not_values.is_empty() {
        return Ok(None);
    }
    Ok(Some(Key {
        label: label.to_string(),
        http_only,
        values,
        not_values,
    }))
}

fn source_keys(
    cx: &Cx<'_>,
    policy_ns: &str,
    s: &Source,
    what: &str,
) -> Result<Vec<Key>, LowerError> {
    let mut keys = Vec::new();
    let mut push = |k: Option<Key>| {
        if let Some(k) = k {
            keys.push(k);
        }
    };
    push(key(
        "principals",
        false,
        &s.principals,
        &s.not_principals,
        |v| Ok(principal_ids(cx, v)),
    )?);
    push(key(
        "namespaces",
        false,
        &s.namespaces,
        &s.not_namespaces,
        |v| Ok(vec![namespace_id(v)]),
    )?);
    push(key(
        "serviceAccounts",
        false,
        &s.service_accounts,
        &s.not_service_accounts,
        |v| Ok(service_account_ids(cx, policy_ns, v)),
    )?);
    push(key(
        "ipBlocks",
        false,
        &s.ip_blocks,
        &s.not_ip_blocks,
        |v| Ok(vec![json!({"direct_remote_ip": cidr(v, what)?})]),
    )?);
    push(key(
        "remoteIpBlocks",
        false,
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
        |v| Ok(vec![json!({"remote_ip": cidr(v, what)?})]),
    )?);
    if s.trust_domains.is_some() || s.not_trust_domains.is_some() {
        return Err(LowerError::unsupported(what, "trustDomains is not lowered"));
    }
    let request_principals = key(
        "requestPrincipals",
        true,
        &s.request_principals,
        &s.not_request_principals,
        |_| Ok(vec![json!({"any": true})]),
    )?;
    if let Some(k) = request_principals {
        if !cx.tcp {
            return Err(LowerError::unsupported(
                what,
                "requestPrincipals need a JWT filter (RequestAuthentication), which is not lowered",
            ));
        }
        keys.push(k);
    }
    Ok(keys)
}

fn operation_keys(o: &Operation, what: &str) -> Result<Vec<Key>, LowerError> {
    let mut keys = Vec::new();
    for k in [
        key("hosts", true, &o.hosts, &o.not_hosts, |v| {
            Ok(vec![json!({"header": header_match(":authority", v, true)})])
        })?,
        key("ports", false, &o.ports, &o.not_ports, |v| {
            Ok(vec![json!({"destination_port": port_number(v, what)?})])
        })?,
        key("methods", true, &o.methods, &o.not_methods, |v| {
            Ok(vec![json!({"header": header_match(":method", v, false)})])
        })?,
        key("paths", true, &o.paths, &o.not_paths, |v| {
            if v.contains('{') {
                return Err(LowerError::unsupported(
                    what,
                    format!("path template {v:?} is not lowered"),
                ));
            }
            Ok(vec![json!({"url_path": {"path": string_match(v, "")}})])
        })?,
    ]
    .into_iter()
    .flatten()
    {
        keys.push(k);
    }
    Ok(keys)
}

/// A `when` condition: which side of the Envoy policy it goes to, and its matchers.
fn condition_key(
    cx: &Cx<'_>,
    policy_ns: &str,
    c: &Condition,
    what: &str,
) -> Result<(Side, Key), LowerError> {
    let k = c.key.trim();
    let label = format!("`when` key {k}");
    let build = |http_only: bool,
                 f: &mut dyn FnMut(&str) -> Result<Vec<Value>, LowerError>|
     -> Result<Key, LowerError> {
        key(&label, http_only, &c.values, &c.not_values, f)?
            .ok_or_else(|| LowerError::Invalid(format!("{what}: condition {k} has no values")))
    };
    if let Some(header) = k
        .strip_prefix("request.headers[")
        .and_then(|r| r.strip_suffix(']'))
    {
        let header = header.to_ascii_lowercase();
        let key = build(true, &mut |v| {
            Ok(vec![json!({"header": header_match(&header, v, false)})])
        })?;
        return Ok((Side::Principal, key));
    }
    let (side, key) = match k {
        "source.principal" => (
            Side::Principal,
            build(false, &mut |v| Ok(principal_ids(cx, v)))?,
        ),
        "source.namespace" => (
            Side::Principal,
            build(false, &mut |v| Ok(vec![namespace_id(v)]))?,
        ),
        "source.serviceAccount" => (
            Side::Principal,
            build(false, &mut |v| Ok(service_account_ids(cx, policy_ns, v)))?,
        ),
        "source.ip" => (
            Side::Principal,
            build(false, &mut |v| {
                Ok(vec![json!({"direct_remote_ip": cidr(v, what)?})])
            })?,
        ),
        "remote.ip" => (
            Side::Principal,
            build(false, &mut |v| {
                Ok(vec![json!({"remote_ip": cidr(v, what)?})])
            })?,
        ),
        "destination.port" => (
            Side::Permission,
            build(false, &mut |v| {
                Ok(vec![json!({"destination_port": port_number(v, what)?})])
            })?,
        ),
        "destination.ip" => (
            Side::Permission,
            build(false, &mut |v| {
                Ok(vec![json!({"destination_ip": cidr(v, what)?})])
            })?,
        ),
        "connection.sni" => (
            Side::Permission,
            build(false, &mut |v| {
                Ok(vec![json!({"requested_server_name": string_match(v, "")})])
            })?,
        ),
        k if k.starts_with("request.auth.") && cx.tcp => (
            Side::Principal,
            build(true, &mut |_| Ok(vec![json!({"any": true})]))?,
        ),
        other => {
            return Err(LowerError::unsupported(
                what,
                format!("`when` key {other} is not lowered"),
            ));
        }
    };
    Ok((side, key))
}

/// The RBAC policies of a filter set by name, for tests and diagnostics.
pub fn policy_names(filters: &RbacFilters) -> BTreeMap<&'static str, Vec<String>> {
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for a in &filters.actions {
        for (shadow, rules) in [(false, &a.rules), (true, &a.shadow_rules)] {
            let Some(policies) = rules
                .as_ref()
                .and_then(|r| r.get("policies"))
                .and_then(Value::as_object)
            else {
                continue;
            };
            out.entry(a.action)
                .or_default()
                .extend(policies.keys().map(|k| {
                    if shadow {
                        format!("{k} (dry-run)")
                    } else {
                        k.clone()
                    }
                }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORLD: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {serviceAccountName: api, containers: [{name: app, image: x}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-get, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/*"]}}]
    to: [{operation: {methods: ["GET"]}}]
  - from: [{source: {namespaces: ["ops"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin/*"], ports: ["8080"]}}]
"#;

    fn lower(chain: Chain) -> RbacFilters {
        let inv = Inventory::from_sources([("world.yaml", WORLD)]);
        let w = inv.workload("shop", "api").expect("workload");
        lower_policies(&inv, w, chain).expect("lowers")
    }

    #[test]
    fn deny_comes_before_allow_and_rules_become_policies() {
        let f = lower(Chain::Http);
        let actions: Vec<&str> = f.actions.iter().map(|a| a.action).collect();
        assert_eq!(actions, ["DENY", "ALLOW"]);
        let names = policy_names(&f);
        assert_eq!(
            names["ALLOW"],
            [
                "ns[shop]-policy[allow-get]-rule[0]",
                "ns[shop]-policy[allow-get]-rule[1]"
            ]
        );
        let allow = f.actions[1].rules.as_ref().expect("rules");
        let rule0 = &allow["policies"]["ns[shop]-policy[allow-get]-rule[0]"];
        assert_eq!(
            rule0["principals"][0],
            json!({"and_ids": {"ids": [{"or_ids": {"ids": [
                {"authenticated": {"principal_name": {"prefix": "spiffe://cluster.local/ns/shop/"}}}
            ]}}]}})
        );
        assert_eq!(
            rule0["permissions"][0],
            json!({"and_rules": {"rules": [{"or_rules": {"rules": [
                {"header": {"name": ":method", "string_match": {"exact": "GET"}}}
            ]}}]}})
        );
    }

    #[test]
    fn http_fields_on_tcp_skip_allow_rules_and_widen_deny_rules() {
        let f = lower(Chain::Tcp);
        let names = policy_names(&f);
        // The ALLOW rule with `methods` is skipped; the namespace rule stays.
        assert_eq!(names["ALLOW"], ["ns[shop]-policy[allow-get]-rule[1]"]);
        assert!(f.notes.iter().any(|n| n.contains("HTTP-only methods")));
        // The DENY rule keeps only its port.
        let deny = f.actions[0].rules.as_ref().expect("rules");
        assert_eq!(
            deny["policies"]["ns[shop]-policy[deny-admin]-rule[0]"]["permissions"][0],
            json!({"and_rules": {"rules": [{"or_rules": {"rules": [{"destination_port": 8080}]}}]}})
        );
    }

    #[test]
    fn string_matching_follows_istio() {
        assert_eq!(
            string_match("*", "spiffe://"),
            json!({"safe_regex": {"regex": ".+"}})
        );
        assert_eq!(
            string_match("*/sa/x", "spiffe://"),
            json!({"suffix": "/sa/x"})
        );
        assert_eq!(
            string_match("a/b*", "spiffe://"),
            json!({"prefix": "spiffe://a/b"})
        );
        assert_eq!(string_match("a*b", ""), json!({"exact": "a*b"}));
        assert_eq!(
            namespace_id("kube*"),
            json!({"authenticated": {"principal_name": {"safe_regex": {"regex": ".*/ns/kube.*/.*"}}}})
        );
    }
}
