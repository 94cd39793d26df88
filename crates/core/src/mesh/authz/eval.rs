//! D3–D8 and A6.3: whether one AuthorizationPolicy rule matches one request, at a sidecar,
//! gateway or waypoint (Envoy RBAC as Istio generates it) or at ztunnel (L4 only), with the
//! reasons and the notes (dropped fields, plaintext peers, trust domains) for the explanation.

use crate::model::{Condition, Operation, Rule, Source};

use super::matcher::{
    Peer, cidr_contains, glob_match, header_match, is_path_template, parse_cidr, parse_port,
    path_template_match, principal_trust_domain, request_principal_match, string_match,
    string_match_ci,
};
use super::{HttpRequest, Jwt, RequestContext};

/// Where the rule is evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Point {
    /// Envoy RBAC (sidecar, gateway, waypoint) on the HTTP or the TCP filter chain.
    Envoy { tcp: bool },
    /// ztunnel: L4 attributes only.
    Ztunnel,
}

/// How a rule treats what it cannot evaluate: ALLOW skips the rule (less is allowed),
/// DENY, AUDIT and CUSTOM drop the field (more is matched).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flavor {
    Allow,
    DenyLike,
}

/// The request attributes as the enforcing proxy sees them.
pub(super) struct Cx<'a> {
    pub req: &'a RequestContext,
    pub point: Point,
    pub peer: Option<Peer<'a>>,
    /// The JWT RequestAuthentication accepted (none when absent, ignored or not processed).
    pub jwt: Option<&'a Jwt>,
    /// The HTTP request when the enforcement point sees HTTP.
    pub http: Option<&'a HttpRequest>,
    /// The normalised path of `http`.
    pub path: Option<String>,
    pub trust_domain: &'a str,
    pub aliases: &'a [String],
}

/// Steps to add to the explanation: (rule id, message), deduplicated.
pub(super) type Notes = Vec<(&'static str, String)>;

fn note(notes: &mut Notes, rule: &'static str, message: String) {
    if !notes.iter().any(|(r, m)| *r == rule && *m == message) {
        notes.push((rule, message));
    }
}

/// The attribute a field or `when` key matches against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attr<'k> {
    Principal,
    Namespace,
    ServiceAccount,
    TrustDomain,
    RequestPrincipal,
    SourceIp,
    RemoteIp,
    Host,
    Port,
    Method,
    Path,
    Header(&'k str),
    AuthPrincipal,
    AuthAudiences,
    AuthPresenter,
    AuthClaim(&'k str),
    DestIp,
    DestPort,
    Sni,
    Experimental,
    /// Keys validation rejects (`destination.namespace`, ...).
    Rejected,
    Unknown,
}

impl Attr<'_> {
    /// D7: attributes the TCP filter chain cannot evaluate.
    fn http_only(self) -> bool {
        matches!(
            self,
            Attr::RequestPrincipal
                | Attr::Host
                | Attr::Method
                | Attr::Path
                | Attr::Header(_)
                | Attr::AuthPrincipal
                | Attr::AuthAudiences
                | Attr::AuthPresenter
                | Attr::AuthClaim(_)
        )
    }

    /// D5: attributes that come from the mTLS peer certificate.
    fn needs_peer(self) -> bool {
        matches!(
            self,
            Attr::Principal
                | Attr::Namespace
                | Attr::ServiceAccount
                | Attr::TrustDomain
                | Attr::Sni
        )
    }

    fn is_port(self) -> bool {
        matches!(self, Attr::Port | Attr::DestPort)
    }

    fn is_ip(self) -> bool {
        matches!(self, Attr::SourceIp | Attr::RemoteIp | Attr::DestIp)
    }
}

fn when_attr(key: &str) -> Attr<'_> {
    let bracket = |prefix: &str| {
        key.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(']'))
            .filter(|inner| !inner.is_empty())
    };
    match key {
        "source.ip" => Attr::SourceIp,
        "remote.ip" => Attr::RemoteIp,
        "source.namespace" => Attr::Namespace,
        "source.principal" => Attr::Principal,
        "source.serviceAccount" => Attr::ServiceAccount,
        "source.trustDomain" => Attr::TrustDomain,
        "request.auth.principal" => Attr::AuthPrincipal,
        "request.auth.audiences" => Attr::AuthAudiences,
        "request.auth.presenter" => Attr::AuthPresenter,
        "destination.ip" => Attr::DestIp,
        "destination.port" => Attr::DestPort,
        "connection.sni" => Attr::Sni,
        "destination.namespace" | "destination.name" | "destination.user" => Attr::Rejected,
        _ if key.starts_with("destination.labels[") => Attr::Rejected,
        _ if key.starts_with("experimental.envoy.filters.") => Attr::Experimental,
        _ => {
            if let Some(h) = bracket("request.headers[") {
                Attr::Header(h)
            } else if let Some(c) = bracket("request.auth.claims[") {
                Attr::AuthClaim(c)
            } else {
                Attr::Unknown
            }
        }
    }
}

/// How ztunnel treats an attribute (A6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ZtClass {
    L4,
    /// An "HTTP attribute" in ztunnel's sense: ALLOW drops the rule, DENY drops the field.
    Http,
    /// Not converted and not flagged (`trustDomains`): the field is ignored.
    Silent,
}

/// One field of a rule: a source or operation field pair (`principals`/`notPrincipals`) or
/// one `when` condition (`values`/`notValues`).
struct Field<'r> {
    name: &'static str,
    not_name: &'static str,
    key: Option<&'r str>,
    attr: Attr<'r>,
    values: &'r [String],
    not_values: &'r [String],
}

impl Field<'_> {
    fn label(&self) -> String {
        match self.key {
            Some(k) => crate::text!("when {k}"),
            None => self.name.to_string(),
        }
    }
    fn not_label(&self) -> String {
        match self.key {
            Some(k) => crate::text!("when {k} notValues"),
            None => self.not_name.to_string(),
        }
    }
    /// The names of the parts that are set, for messages.
    fn set_labels(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.values.is_empty() {
            out.push(self.label());
        }
        if !self.not_values.is_empty() {
            out.push(self.not_label());
        }
        out
    }
    fn zt_class(&self) -> ZtClass {
        if self.key.is_some() {
            return match self.attr {
                Attr::SourceIp
                | Attr::Namespace
                | Attr::Principal
                | Attr::DestIp
                | Attr::DestPort => ZtClass::L4,
                _ => ZtClass::Http,
            };
        }
        match self.attr {
            Attr::Principal
            | Attr::Namespace
            | Attr::ServiceAccount
            | Attr::SourceIp
            | Attr::Port => ZtClass::L4,
            Attr::TrustDomain => ZtClass::Silent,
            _ => ZtClass::Http,
        }
    }
}

fn list(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or_default()
}

fn source_fields(s: Option<&Source>) -> Vec<Field<'_>> {
    let Some(s) = s else { return Vec::new() };
    let all = [
        (
            "principals",
            "notPrincipals",
            Attr::Principal,
            &s.principals,
            &s.not_principals,
        ),
        (
            "requestPrincipals",
            "notRequestPrincipals",
            Attr::RequestPrincipal,
            &s.request_principals,
            &s.not_request_principals,
        ),
        (
            "namespaces",
            "notNamespaces",
            Attr::Namespace,
            &s.namespaces,
            &s.not_namespaces,
        ),
        (
            "serviceAccounts",
            "notServiceAccounts",
            Attr::ServiceAccount,
            &s.service_accounts,
            &s.not_service_accounts,
        ),
        (
            "trustDomains",
            "notTrustDomains",
            Attr::TrustDomain,
            &s.trust_domains,
            &s.not_trust_domains,
        ),
        (
            "ipBlocks",
            "notIpBlocks",
            Attr::SourceIp,
            &s.ip_blocks,
            &s.not_ip_blocks,
        ),
        (
            "remoteIpBlocks",
            "notRemoteIpBlocks",
            Attr::RemoteIp,
            &s.remote_ip_blocks,
            &s.not_remote_ip_blocks,
        ),
    ];
    fields_of(all)
}

fn operation_fields(o: Option<&Operation>) -> Vec<Field<'_>> {
    let Some(o) = o else { return Vec::new() };
    let all = [
        ("hosts", "notHosts", Attr::Host, &o.hosts, &o.not_hosts),
        ("ports", "notPorts", Attr::Port, &o.ports, &o.not_ports),
        (
            "methods",
            "notMethods",
            Attr::Method,
            &o.methods,
            &o.not_methods,
        ),
        ("paths", "notPaths", Attr::Path, &o.paths, &o.not_paths),
    ];
    fields_of(all)
}

type RawField<'r> = (
    &'static str,
    &'static str,
    Attr<'r>,
    &'r Option<Vec<String>>,
    &'r Option<Vec<String>>,
);

fn fields_of<'r, const N: usize>(all: [RawField<'r>; N]) -> Vec<Field<'r>> {
    all.into_iter()
        .filter_map(|(name, not_name, attr, values, not_values)| {
            let (values, not_values) = (list(values), list(not_values));
            (!values.is_empty() || !not_values.is_empty()).then_some(Field {
                name,
                not_name,
                key: None,
                attr,
                values,
                not_values,
            })
        })
        .collect()
}

fn when_field(c: &Condition) -> Field<'_> {
    Field {
        name: "values",
        not_name: "notValues",
        key: Some(c.key.as_str()),
        attr: when_attr(&c.key),
        values: list(&c.values),
        not_values: list(&c.not_values),
    }
}

/// What to do with a field at this enforcement point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disposition {
    Active,
    /// Left out of the generated rule (DENY-like on TCP, HTTP attributes at ztunnel).
    Drop,
    /// The whole rule is left out (ALLOW with an attribute it cannot evaluate).
    SkipRule,
}

fn disposition(f: &Field<'_>, point: Point, flavor: Flavor) -> Disposition {
    let unusable = match point {
        Point::Envoy { tcp } => tcp && f.attr.http_only(),
        Point::Ztunnel => match f.zt_class() {
            ZtClass::L4 => false,
            ZtClass::Silent => return Disposition::Drop,
            ZtClass::Http => true,
        },
    };
    match (unusable, flavor) {
        (false, _) => Disposition::Active,
        (true, Flavor::Allow) => Disposition::SkipRule,
        (true, Flavor::DenyLike) => Disposition::Drop,
    }
}

/// The result of one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RuleOutcome {
    Match,
    /// Evaluated and did not match: why.
    Miss(String),
    /// Not part of the generated configuration (or a no-op): why.
    Skipped(String),
}

/// What the policy holds for one request.
pub(super) struct Evaluation<'p> {
    pub cx: &'p Cx<'p>,
    pub policy_ns: &'p str,
    pub flavor: Flavor,
    pub notes: Notes,
}

impl Evaluation<'_> {
    /// D3: evaluate rule number `n` (1-based, for messages).
    pub fn rule(&mut self, rule: Option<&Rule>, n: usize) -> RuleOutcome {
        let Some(rule) = rule else {
            return RuleOutcome::Skipped(crate::words!("rule {n} is null; Istio skips it"));
        };
        let ztunnel = self.cx.point == Point::Ztunnel;
        let from: Vec<Vec<Field<'_>>> = rule
            .from
            .iter()
            .flatten()
            .map(|f| source_fields(f.as_ref().and_then(|f| f.source.as_ref())))
            .collect();
        let to: Vec<Vec<Field<'_>>> = rule
            .to
            .iter()
            .flatten()
            .map(|t| operation_fields(t.as_ref().and_then(|t| t.operation.as_ref())))
            .collect();
        let when: Vec<Field<'_>> = rule
            .when
            .iter()
            .flatten()
            .flatten()
            .map(when_field)
            .collect();

        // Keys Envoy cannot generate make the rule invalid: Istio skips it for every action.
        if !ztunnel {
            for w in &when {
                match w.attr {
                    Attr::Unknown => {
                        return RuleOutcome::Skipped(crate::words!(
                            "rule {n}: `when` key {} is not an Istio attribute; Istio skips the rule",
                            w.key.unwrap_or_default()
                        ));
                    }
                    Attr::Rejected => {
                        return RuleOutcome::Skipped(crate::words!(
                            "rule {n}: `when` key {} is rejected by Istio validation; the rule never applies",
                            w.key.unwrap_or_default()
                        ));
                    }
                    _ => {}
                }
            }
        }

        // D7 / A6.3: fields this point cannot evaluate.
        let mut skip = Vec::new();
        let mut dropped = Vec::new();
        let mut silent = Vec::new();
        let all = from
            .iter()
            .flatten()
            .chain(to.iter().flatten())
            .chain(when.iter());
        for f in all {
            match disposition(f, self.cx.point, self.flavor) {
                Disposition::Active => {}
                Disposition::SkipRule => skip.extend(f.set_labels()),
                Disposition::Drop if ztunnel && f.zt_class() == ZtClass::Silent => {
                    silent.extend(f.set_labels())
                }
                Disposition::Drop => dropped.extend(f.set_labels()),
            }
        }
        dedup(&mut skip);
        dedup(&mut dropped);
        dedup(&mut silent);
        if !silent.is_empty() {
            note(
                &mut self.notes,
                "A6.3",
                crate::words!(
                    "rule {n}: {} is not converted for ztunnel and is silently ignored",
                    silent.join(", ")
                ),
            );
        }
        if !skip.is_empty() {
            return RuleOutcome::Skipped(if ztunnel {
                crate::words!(
                    "rule {n} uses HTTP attributes ({}) that ztunnel cannot evaluate, so this ALLOW rule is dropped and never matches (A6.3); attach the policy to a waypoint with targetRefs to enforce it",
                    skip.join(", ")
                )
            } else {
                crate::words!(
                    "rule {n} uses HTTP-only attributes ({}), so on the TCP filter chain the whole ALLOW rule is skipped and never matches (D7); name the port protocol http/grpc or drop these fields",
                    skip.join(", ")
                )
            });
        }
        let any_dropped = !dropped.is_empty();
        // A6.3: an entry with nothing L4 left is an empty match, which ztunnel skips; its HTTP
        // fields make it match less, not more.
        if ztunnel && self.flavor == Flavor::DenyLike {
            for (clause, entries) in [("from", &from), ("to", &to)] {
                for fs in entries.iter() {
                    let active = fs
                        .iter()
                        .any(|f| disposition(f, self.cx.point, self.flavor) == Disposition::Active);
                    if !active && !fs.is_empty() {
                        let labels: Vec<String> = fs.iter().flat_map(|f| f.set_labels()).collect();
                        dropped.retain(|d| !labels.contains(d));
                        note(
                            &mut self.notes,
                            "A6.3",
                            crate::words!(
                                "rule {n}: the `{clause}` entry with only {} is an empty match at ztunnel, which skips it: that entry never matches",
                                labels.join(", ")
                            ),
                        );
                    }
                }
            }
        }
        if !dropped.is_empty() {
            let msg = if ztunnel {
                crate::words!(
                    "rule {n}: ztunnel drops the HTTP attributes {} of this rule and enforces only its L4 parts, so it matches more than written",
                    dropped.join(", ")
                )
            } else {
                crate::words!(
                    "rule {n}: {} HTTP-only, so on the TCP filter chain only that part is dropped and the rest of the rule still applies: it matches more than written",
                    if dropped.len() == 1 {
                        crate::words!("{} is", dropped.join(""))
                    } else {
                        crate::words!("{} are", dropped.join(", "))
                    }
                )
            };
            note(&mut self.notes, if ztunnel { "A6.3" } else { "D7" }, msg);
        }

        // A6.3: ztunnel skips a match with nothing in it. A clause (the `from` list, the `to`
        // list, each `when`) whose matches are all empty can never fire.
        if ztunnel {
            let active = |fs: &[Field<'_>]| {
                fs.iter()
                    .any(|f| disposition(f, self.cx.point, self.flavor) == Disposition::Active)
            };
            let empty_from = !from.is_empty() && !from.iter().any(|fs| active(fs));
            let empty_to = !to.is_empty() && !to.iter().any(|fs| active(fs));
            let empty_when = when
                .iter()
                .any(|w| disposition(w, self.cx.point, self.flavor) != Disposition::Active);
            if empty_from || empty_to || empty_when {
                let part = if empty_from {
                    "`from`"
                } else if empty_to {
                    "`to`"
                } else {
                    "a `when` condition"
                };
                return if self.flavor == Flavor::DenyLike && any_dropped {
                    RuleOutcome::Skipped(crate::words!(
                        "rule {n}: after dropping its HTTP attributes, {part} has nothing ztunnel can match, and ztunnel skips empty matches: this DENY rule has no effect and the traffic it names is allowed (A6.3, istio#61126)"
                    ))
                } else {
                    RuleOutcome::Skipped(crate::words!(
                        "rule {n}: {part} has nothing ztunnel can match, so the rule never matches (A6.3)"
                    ))
                };
            }
        }

        // D3: some `from` entry, some `to` entry, every `when` condition.
        if !from.is_empty() {
            let mut first_miss = None;
            let mut matched = false;
            for fs in &from {
                match self.entry(fs) {
                    Ok(()) => {
                        matched = true;
                        break;
                    }
                    Err(m) => {
                        first_miss.get_or_insert(m);
                    }
                }
            }
            if !matched {
                return RuleOutcome::Miss(crate::words!(
                    "rule {n}: {}",
                    first_miss.unwrap_or_else(|| "no `from` entry matches".to_string())
                ));
            }
        }
        if !to.is_empty() {
            let mut first_miss = None;
            let mut matched = false;
            for fs in &to {
                match self.entry(fs) {
                    Ok(()) => {
                        matched = true;
                        break;
                    }
                    Err(m) => {
                        first_miss.get_or_insert(m);
                    }
                }
            }
            if !matched {
                return RuleOutcome::Miss(crate::words!(
                    "rule {n}: {}",
                    first_miss.unwrap_or_else(|| "no `to` entry matches".to_string())
                ));
            }
        }
        for w in &when {
            if let Err(m) = self.entry(std::slice::from_ref(w)) {
                return RuleOutcome::Miss(crate::words!("rule {n}: {m}"));
            }
        }
        RuleOutcome::Match
    }

    /// All active fields of one `from`/`to` entry (or one condition) match.
    fn entry(&mut self, fields: &[Field<'_>]) -> Result<(), String> {
        // A6.3: istiod turns each entry into one ztunnel match; an entry with nothing L4 left
        // (or nothing at all) is an empty match, which ztunnel skips: it never matches, while
        // the other entries of the same `from`/`to` still can (a DENY rule is enforced on
        // them alone).
        if self.cx.point == Point::Ztunnel
            && !fields
                .iter()
                .any(|f| disposition(f, self.cx.point, self.flavor) == Disposition::Active)
        {
            let parts: Vec<String> = fields.iter().flat_map(|f| f.set_labels()).collect();
            return Err(if parts.is_empty() {
                "an empty entry is an empty match, which ztunnel skips".to_string()
            } else {
                crate::words!(
                    "the entry with only {} is an empty match at ztunnel, which skips it",
                    parts.join(", ")
                )
            });
        }
        for f in fields {
            if disposition(f, self.cx.point, self.flavor) != Disposition::Active {
                continue;
            }
            if f.attr == Attr::Experimental {
                note(
                    &mut self.notes,
                    "D3",
                    crate::words!(
                        "`when` key {} reads Envoy filter metadata, which kfp-mesh does not model; the condition is treated as not matching",
                        f.key.unwrap_or_default()
                    ),
                );
                return Err(crate::words!(
                    "{} is not modelled (treated as not matching)",
                    f.label()
                ));
            }
            self.check_values(f);
            if !f.values.is_empty() && !f.values.iter().any(|v| self.value(f.attr, v)) {
                self.explain_miss(f.attr, &f.label());
                return Err(crate::words!(
                    "{} [{}] do not match {}",
                    f.label(),
                    f.values.join(", "),
                    self.actual(f.attr)
                ));
            }
            if !f.not_values.is_empty() {
                if f.not_values.iter().any(|v| self.value(f.attr, v)) {
                    return Err(crate::words!(
                        "{} [{}] excludes {}",
                        f.not_label(),
                        f.not_values.join(", "),
                        self.actual(f.attr)
                    ));
                }
                if f.attr.needs_peer() && self.cx.peer.is_none() {
                    note(
                        &mut self.notes,
                        "D5",
                        crate::words!(
                            "{} matches a plaintext request: there is no peer identity, so nothing is excluded",
                            f.not_label()
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// Notes for values that can never match (bad ports, bad CIDRs) and for trust domains.
    fn check_values(&mut self, f: &Field<'_>) {
        for v in f.values.iter().chain(f.not_values) {
            if f.attr.is_port() && parse_port(v).is_none() {
                note(
                    &mut self.notes,
                    "D3",
                    crate::words!(
                        "{} value {v:?} is not a port number; it never matches",
                        f.label()
                    ),
                );
            }
            if f.attr.is_ip() && parse_cidr(v).is_none() {
                note(
                    &mut self.notes,
                    "D3",
                    crate::words!(
                        "{} value {v:?} is not an IP address or CIDR; it never matches",
                        f.label()
                    ),
                );
            }
            if f.attr == Attr::Principal
                && self.cx.point == Point::Ztunnel
                && let Some((td, rest)) = principal_trust_domain(v)
                && td != self.cx.trust_domain
            {
                note(
                    &mut self.notes,
                    "A6.3",
                    crate::words!(
                        "principal {v}: ztunnel compares principals as written and does not read {td} as the local trust domain or its aliases (istio/ztunnel#1260), so it matches no peer of trust domain {}; write {}{}",
                        self.cx.trust_domain,
                        self.cx.trust_domain,
                        rest
                    ),
                );
            } else if f.attr == Attr::Principal
                && let Some((td, rest)) = principal_trust_domain(v)
            {
                {
                    if self.is_local_td(td) {
                        if td != self.cx.trust_domain || !self.cx.aliases.is_empty() {
                            let mut all = vec![self.cx.trust_domain.to_string()];
                            all.extend(self.cx.aliases.iter().cloned());
                            note(
                                &mut self.notes,
                                "D6",
                                crate::words!(
                                    "principal {v}: trust domain {td} means the local trust domain and its aliases, so it matches {}",
                                    all.iter()
                                        .map(|d| crate::words!("{d}{rest}"))
                                        .collect::<Vec<_>>()
                                        .join(" or ")
                                ),
                            );
                        }
                    } else {
                        note(
                            &mut self.notes,
                            "D6",
                            crate::words!(
                                "principal {v}: trust domain {td} is neither the mesh trust domain {} nor one of its aliases, so it only matches peers of that trust domain; add it to meshConfig.trustDomainAliases if it is the old name of this mesh",
                                self.cx.trust_domain
                            ),
                        );
                    }
                }
            }
        }
    }

    fn explain_miss(&mut self, attr: Attr<'_>, label: &str) {
        if attr.needs_peer() && self.cx.peer.is_none() {
            note(
                &mut self.notes,
                "D5",
                crate::words!(
                    "{label} needs an mTLS peer identity; this request is plaintext, so it can never match"
                ),
            );
        }
        if attr.is_port() {
            note(
                &mut self.notes,
                "D8",
                crate::words!(
                    "{label} is matched against the workload (container) port {} the connection reaches, not the Service port",
                    self.cx.req.destination_port
                ),
            );
        }
    }

    fn is_local_td(&self, td: &str) -> bool {
        td == "cluster.local"
            || td == self.cx.trust_domain
            || self.cx.aliases.iter().any(|a| a == td)
    }

    /// One policy value against the request.
    fn value(&self, attr: Attr<'_>, v: &str) -> bool {
        let cx = self.cx;
        let peer = cx.peer.as_ref();
        match attr {
            Attr::Principal => peer.is_some_and(|p| self.principal_value(v, p.full)),
            Attr::Namespace => peer.and_then(|p| p.namespace).is_some_and(|ns| {
                if cx.point == Point::Ztunnel {
                    string_match(v, ns)
                } else {
                    glob_match(v, ns)
                }
            }),
            Attr::ServiceAccount => {
                let (ns, sa) = v.split_once('/').unwrap_or((self.policy_ns, v));
                peer.is_some_and(|p| p.namespace == Some(ns) && p.service_account == Some(sa))
            }
            Attr::TrustDomain => peer
                .and_then(|p| p.trust_domain)
                .is_some_and(|td| string_match(v, td)),
            Attr::RequestPrincipal | Attr::AuthPrincipal => cx
                .jwt
                .is_some_and(|j| request_principal_match(v, &j.issuer, &j.subject)),
            Attr::SourceIp => cx.req.source_ip.is_some_and(|ip| cidr_contains(v, ip)),
            Attr::RemoteIp => cx
                .req
                .remote_ip
                .or(cx.req.source_ip)
                .is_some_and(|ip| cidr_contains(v, ip)),
            Attr::DestIp => cx.req.destination_ip.is_some_and(|ip| cidr_contains(v, ip)),
            Attr::Port | Attr::DestPort => parse_port(v) == Some(cx.req.destination_port),
            Attr::Host => cx.http.is_some_and(|h| string_match_ci(v, &h.host)),
            Attr::Method => cx.http.is_some_and(|h| string_match(v, &h.method)),
            Attr::Path => cx.path.as_deref().is_some_and(|p| {
                if is_path_template(v) {
                    path_template_match(v, p)
                } else {
                    string_match(v, p)
                }
            }),
            Attr::Header(name) => cx.http.is_some_and(|h| {
                let value = h
                    .headers
                    .get(name)
                    .or_else(|| h.headers.get(&name.to_ascii_lowercase()));
                header_match(v, value.map(String::as_str))
            }),
            Attr::AuthAudiences => cx
                .jwt
                .is_some_and(|j| j.audiences.iter().any(|a| string_match(v, a))),
            Attr::AuthPresenter => cx
                .jwt
                .and_then(|j| j.presenter.as_deref())
                .is_some_and(|p| string_match(v, p)),
            Attr::AuthClaim(path) => cx.jwt.is_some_and(|j| {
                let key = path.replace("][", ".");
                j.claims
                    .get(&key)
                    .is_some_and(|vals| vals.iter().any(|c| string_match(v, c)))
            }),
            Attr::Sni => {
                peer.is_some() && cx.req.sni.as_deref().is_some_and(|s| string_match(v, s))
            }
            Attr::Experimental | Attr::Rejected | Attr::Unknown => false,
        }
    }

    /// D6: a policy principal against the peer, with the local trust domain expanded to the
    /// trust domain and its aliases. ztunnel does not expand: istiod sends the principal as
    /// written and ztunnel compares it with the peer's SPIFFE id (istio/ztunnel#1260), so
    /// `cluster.local/...` only matches when the trust domain is `cluster.local`.
    fn principal_value(&self, v: &str, peer: &str) -> bool {
        if self.cx.point == Point::Ztunnel {
            return string_match(v, peer);
        }
        match principal_trust_domain(v) {
            Some((td, rest)) if self.is_local_td(td) => std::iter::once(self.cx.trust_domain)
                .chain(self.cx.aliases.iter().map(String::as_str))
                .any(|d| string_match(&crate::text!("{d}{rest}"), peer)),
            _ => string_match(v, peer),
        }
    }

    /// The request's value of an attribute, for messages.
    fn actual(&self, attr: Attr<'_>) -> String {
        let cx = self.cx;
        let peer = cx.peer.as_ref();
        let plain = "a plaintext peer (no mTLS identity)".to_string();
        let opt = |what: &str, v: Option<&str>| match v {
            Some(v) => crate::text!("{what} {v}"),
            None => crate::text!("a request without {what}"),
        };
        match attr {
            Attr::Principal => peer.map_or(plain, |p| crate::text!("principal {}", p.full)),
            Attr::Namespace => peer.map_or(plain, |p| {
                crate::text!(
                    "source namespace {}",
                    p.namespace.unwrap_or("(none in the principal)")
                )
            }),
            Attr::ServiceAccount => peer.map_or(plain, |p| {
                crate::text!(
                    "service account {}/{}",
                    p.namespace.unwrap_or("?"),
                    p.service_account.unwrap_or("?")
                )
            }),
            Attr::TrustDomain => peer.map_or(plain, |p| {
                crate::text!(
                    "trust domain {}",
                    p.trust_domain.unwrap_or("(none in the principal)")
                )
            }),
            Attr::Sni => match peer {
                None => plain,
                Some(_) => opt("SNI", cx.req.sni.as_deref()),
            },
            Attr::RequestPrincipal | Attr::AuthPrincipal => match cx.jwt {
                Some(j) => crate::text!("request principal {}/{}", j.issuer, j.subject),
                None => "a request without an authenticated JWT (no request principal)".to_string(),
            },
            Attr::AuthAudiences => match cx.jwt {
                Some(j) => crate::text!("token audiences [{}]", j.audiences.join(", ")),
                None => "a request without an authenticated JWT".to_string(),
            },
            Attr::AuthPresenter => match cx.jwt {
                Some(j) => opt("presenter", j.presenter.as_deref()),
                None => "a request without an authenticated JWT".to_string(),
            },
            Attr::AuthClaim(path) => match cx.jwt {
                Some(j) => match j.claims.get(&path.replace("][", ".")) {
                    Some(v) => crate::text!("claim {path} [{}]", v.join(", ")),
                    None => crate::text!("a token without claim {path}"),
                },
                None => "a request without an authenticated JWT".to_string(),
            },
            Attr::SourceIp => opt(
                "source IP",
                cx.req.source_ip.map(|i| i.to_string()).as_deref(),
            ),
            Attr::RemoteIp => opt(
                "remote IP",
                cx.req
                    .remote_ip
                    .or(cx.req.source_ip)
                    .map(|i| i.to_string())
                    .as_deref(),
            ),
            Attr::DestIp => opt(
                "destination IP",
                cx.req.destination_ip.map(|i| i.to_string()).as_deref(),
            ),
            Attr::Port | Attr::DestPort => {
                crate::text!("workload port {}", cx.req.destination_port)
            }
            Attr::Host => opt("host", cx.http.map(|h| h.host.as_str())),
            Attr::Method => opt("method", cx.http.map(|h| h.method.as_str())),
            Attr::Path => opt("path", cx.path.as_deref()),
            Attr::Header(name) => {
                let v = cx.http.and_then(|h| {
                    h.headers
                        .get(name)
                        .or_else(|| h.headers.get(&name.to_ascii_lowercase()))
                });
                match v {
                    Some(v) => crate::text!("header {name}: {v}"),
                    None => crate::text!("a request without header {name}"),
                }
            }
            Attr::Experimental | Attr::Rejected | Attr::Unknown => "this request".to_string(),
        }
    }
}

/// A6.3: the fields of `rule` that ztunnel treats as HTTP attributes (istiod omits an ALLOW
/// rule that names any, and drops them from a DENY rule), as the policy names them.
pub(super) fn ztunnel_http_fields(rule: &Rule) -> Vec<String> {
    let mut fields: Vec<Field<'_>> = Vec::new();
    for f in rule.from.iter().flatten() {
        fields.extend(source_fields(f.as_ref().and_then(|f| f.source.as_ref())));
    }
    for t in rule.to.iter().flatten() {
        fields.extend(operation_fields(
            t.as_ref().and_then(|t| t.operation.as_ref()),
        ));
    }
    fields.extend(rule.when.iter().flatten().flatten().map(when_field));
    let mut out: Vec<String> = fields
        .iter()
        .filter(|f| f.zt_class() == ZtClass::Http)
        .flat_map(|f| f.set_labels())
        .collect();
    dedup(&mut out);
    out
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|s| seen.insert(s.clone()));
}
