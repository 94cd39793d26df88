//! D: AuthorizationPolicy (with RequestAuthentication) evaluation for one request at one
//! enforcement point.

mod eval;
mod matcher;
pub mod sources;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;

use crate::explain::{Decision, Step};
use crate::inventory::{AuthorizationPolicy, Inventory, RequestAuthentication, Service, Workload};
use crate::model::{AuthzAction, PolicyTargetReference, WorkloadSelector};
use crate::object::{Cited, Labels};

use eval::{Cx, Evaluation, Flavor, Notes, Point, RuleOutcome};
use matcher::Peer;
pub use matcher::normalize_path;

/// Which proxy enforces the policies.
#[derive(Clone, Copy, Debug)]
pub enum Enforcer<'a> {
    /// The server's sidecar (selector policies; targetRef policies ignored).
    Sidecar,
    /// The destination ztunnel (ambient, L4 only, A6.3).
    Ztunnel,
    /// A waypoint in front of `service` (targetRef policies only, L7).
    Waypoint { service: &'a Service },
}

/// The filter chain the request lands in: HTTP (L7 attributes available) or TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    Http,
    Tcp,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub host: String,
    /// Lower-case header names.
    pub headers: BTreeMap<String, String>,
}

/// A JWT presented by the client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Jwt {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
    pub presenter: Option<String>,
    /// Claim values by name; a nested claim (`request.auth.claims[a][b]`) is looked up as
    /// `a.b`. A string claim is a one-element list.
    pub claims: BTreeMap<String, Vec<String>>,
    /// False for a token the proxy rejects (bad signature, expired).
    pub valid: bool,
}

/// The attributes of one request as the enforcing proxy sees them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestContext {
    /// mTLS peer identity without `spiffe://`: `<td>/ns/<ns>/sa/<sa>`; `None` for plaintext.
    pub principal: Option<String>,
    pub source_ip: Option<IpAddr>,
    pub remote_ip: Option<IpAddr>,
    pub destination_ip: Option<IpAddr>,
    /// The workload (container) port.
    pub destination_port: u16,
    pub sni: Option<String>,
    pub chain: Chain,
    /// The HTTP request (ignored on the TCP chain).
    pub http: Option<HttpRequest>,
    pub jwt: Option<Jwt>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthzVerdict {
    Allow,
    /// A DENY matched, or ALLOW policies exist and none matched.
    Deny,
    /// A CUSTOM rule matched and fails closed (provider unknown or several providers).
    CustomDeny,
    /// A CUSTOM rule matched, the named ext-authz provider is usable, and no other policy
    /// denies: the provider's answer decides.
    Custom {
        provider: String,
    },
    /// 401: a JWT was presented and RequestAuthentication rejects it.
    Unauthenticated,
}

pub use crate::mesh::waypoint::GATEWAY_NAME_LABEL;
/// The gateway class of a Gateway API gateway pod, when the pod carries it.
pub const GATEWAY_CLASS_LABEL: &str = "gateway.networking.k8s.io/gateway-class-name";
/// The GatewayClass of waypoints; a root-namespace policy naming it applies to every waypoint.
pub const WAYPOINT_GATEWAY_CLASS: &str = "istio-waypoint";
/// The annotation that puts an AuthorizationPolicy in shadow mode.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// `istio.io/dry-run` as istiod reads it (Go `strconv.ParseBool`: `1`, `t`, `T`, `true`,
/// `TRUE`, `True`); anything else, or no annotation, is enforce mode.
pub fn is_dry_run(annotations: &impl Labels) -> bool {
    annotations
        .value_of(DRY_RUN_ANNOTATION)
        .is_some_and(|v| matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True"))
}

/// D1: how a policy (AuthorizationPolicy or RequestAuthentication) relates to one
/// enforcement point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "attachment", content = "reason")]
pub enum Attachment {
    /// The policy applies; how it attaches (mesh-wide, namespace-wide, selector, targetRefs).
    Applies(String),
    /// It is meant for other workloads (selector or targetRefs name something else).
    NotSelected,
    /// It names this workload in a way this enforcement point does not honour.
    Ignored(String),
}

/// D1 (and A6.3, A6.4): the namespaces whose policies can apply: the root namespace, the
/// workload's namespace and, for a waypoint, the namespace of the Service.
pub fn candidate_namespaces<'a>(
    inv: &'a Inventory,
    server: &'a Workload,
    enforcer: Enforcer<'a>,
) -> Vec<&'a str> {
    let mut out: Vec<&str> = vec![inv.mesh.root_namespace.as_str()];
    let mut push = |ns: &'a str| {
        if !out.contains(&ns) {
            out.push(ns);
        }
    };
    push(server.namespace.as_str());
    if let Enforcer::Waypoint { service } = enforcer {
        push(service.namespace());
    }
    out
}

/// D1: whether a policy in `policy_ns` with this selector / targetRefs applies at `enforcer`.
pub fn attachment(
    inv: &Inventory,
    server: &Workload,
    enforcer: Enforcer<'_>,
    policy_ns: &str,
    selector: Option<&WorkloadSelector>,
    target_refs: &[&PolicyTargetReference],
) -> Attachment {
    let root = inv.mesh.root_namespace.as_str();
    // Cross-namespace references are rejected by validation; such a ref never matches.
    let refs = || {
        target_refs.iter().filter(|r| {
            r.namespace
                .as_deref()
                .is_none_or(|n| n.is_empty() || n == policy_ns)
        })
    };
    match enforcer {
        Enforcer::Waypoint { service } => {
            if target_refs.is_empty() {
                return Attachment::Ignored(
                    "waypoints only apply policies that name them with targetRefs (Service, Gateway or GatewayClass istio-waypoint); selector and namespace-wide policies are ignored (A6.4)"
                        .to_string(),
                );
            }
            for r in refs() {
                match r.kind.as_str() {
                    "Service" if r.name == service.name() && policy_ns == service.namespace() => {
                        return Attachment::Applies(crate::text!(
                            "targetRefs Service {}/{}",
                            policy_ns,
                            r.name
                        ));
                    }
                    "GatewayClass" if r.name == WAYPOINT_GATEWAY_CLASS && policy_ns == root => {
                        return Attachment::Applies(crate::text!(
                            "targetRefs GatewayClass {WAYPOINT_GATEWAY_CLASS} in the root namespace (every waypoint)"
                        ));
                    }
                    "Gateway"
                        if (server.label(GATEWAY_NAME_LABEL) == Some(r.name.as_str())
                            && policy_ns == server.namespace)
                            || crate::mesh::waypoint::service_waypoint(inv, service)
                                .is_some_and(|w| w.name == r.name && w.namespace == policy_ns) =>
                    {
                        return Attachment::Applies(crate::text!(
                            "targetRefs Gateway {}/{}",
                            policy_ns,
                            r.name
                        ));
                    }
                    _ => {}
                }
            }
            Attachment::NotSelected
        }
        Enforcer::Sidecar | Enforcer::Ztunnel => {
            if !target_refs.is_empty() {
                if let (Enforcer::Sidecar, Some(gateway)) =
                    (enforcer, server.label(GATEWAY_NAME_LABEL))
                {
                    for r in refs() {
                        if r.kind == "Gateway" && r.name == gateway && policy_ns == server.namespace
                        {
                            return Attachment::Applies(crate::text!(
                                "targetRefs Gateway {}/{}",
                                policy_ns,
                                r.name
                            ));
                        }
                        if r.kind == "GatewayClass"
                            && policy_ns == root
                            && server.label(GATEWAY_CLASS_LABEL) == Some(r.name.as_str())
                        {
                            return Attachment::Applies(crate::text!(
                                "targetRefs GatewayClass {} in the root namespace",
                                r.name
                            ));
                        }
                    }
                    return Attachment::NotSelected;
                }
                return Attachment::Ignored(match enforcer {
                    Enforcer::Ztunnel => "policies with targetRef/targetRefs are not sent to ztunnel; they apply only at the waypoint or gateway they name (A6.3)".to_string(),
                    _ => "a policy with targetRef/targetRefs applies only to the gateway or waypoint it names; sidecars ignore it (D1)".to_string(),
                });
            }
            match selector.and_then(WorkloadSelector::labels) {
                None if policy_ns == root => {
                    Attachment::Applies("mesh-wide (root namespace, no selector)".to_string())
                }
                None => Attachment::Applies("namespace-wide (no selector)".to_string()),
                Some(labels) => {
                    if labels.iter().all(|(k, v)| server.labels.get(k) == Some(v)) {
                        Attachment::Applies(crate::text!("selector {}", fmt_labels(labels)))
                    } else {
                        Attachment::NotSelected
                    }
                }
            }
        }
    }
}

fn fmt_labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| crate::text!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn target_refs_of<'a>(
    one: &'a Option<PolicyTargetReference>,
    many: &'a Option<Vec<PolicyTargetReference>>,
) -> Vec<&'a PolicyTargetReference> {
    one.iter().chain(many.iter().flatten()).collect()
}

/// A6.3: the fields of an AuthorizationPolicy rule that ztunnel cannot enforce ("HTTP
/// attributes" in istiod's conversion: hosts, methods, paths, requestPrincipals,
/// remoteIpBlocks and their negations, `when` keys other than source.ip, source.namespace,
/// source.principal, destination.ip, destination.port), as the rule names them. Empty for a
/// rule ztunnel enforces as written.
pub fn ztunnel_http_attributes(rule: &crate::model::Rule) -> Vec<String> {
    eval::ztunnel_http_fields(rule)
}

/// D4: whether a value of a `principals` field (exact, `prefix*`, `*suffix`, or `*`) matches a
/// principal. Trust-domain aliases are not expanded here.
pub fn principal_pattern_matches(pattern: &str, principal: &str) -> bool {
    matcher::string_match(pattern, principal)
}

/// The AuthorizationPolicies that enforce ALLOW at the sidecar of `server` (D1, D2): attached
/// to it, action ALLOW, not dry-run. What "who may reach this workload" is computed from.
pub fn enforced_allow_policies<'a>(
    inv: &'a Inventory,
    server: &'a Workload,
) -> impl Iterator<Item = &'a AuthorizationPolicy> + 'a {
    candidate_namespaces(inv, server, Enforcer::Sidecar)
        .into_iter()
        .flat_map(move |ns| inv.authorization_policies_in(ns))
        .filter(move |p| {
            p.spec.action == AuthzAction::Allow
                && !is_dry_run(&p.meta.annotations)
                && matches!(
                    policy_attachment(inv, server, Enforcer::Sidecar, p),
                    Attachment::Applies(_)
                )
        })
}

/// D1 for an AuthorizationPolicy.
pub fn policy_attachment(
    inv: &Inventory,
    server: &Workload,
    enforcer: Enforcer<'_>,
    policy: &AuthorizationPolicy,
) -> Attachment {
    let refs = target_refs_of(&policy.spec.target_ref, &policy.spec.target_refs);
    attachment(
        inv,
        server,
        enforcer,
        policy.namespace(),
        policy.spec.selector.as_ref(),
        &refs,
    )
}

/// D1 for a RequestAuthentication (same rules as AuthorizationPolicy).
pub fn request_authentication_attachment(
    inv: &Inventory,
    server: &Workload,
    enforcer: Enforcer<'_>,
    ra: &RequestAuthentication,
) -> Attachment {
    let refs = target_refs_of(&ra.spec.target_ref, &ra.spec.target_refs);
    attachment(
        inv,
        server,
        enforcer,
        ra.namespace(),
        ra.spec.selector.as_ref(),
        &refs,
    )
}

fn describe_enforcer(server: &Workload, enforcer: Enforcer<'_>) -> String {
    let w = server.named();
    match enforcer {
        Enforcer::Sidecar if server.label(GATEWAY_NAME_LABEL).is_some() => {
            crate::text!("gateway {w}")
        }
        Enforcer::Sidecar => crate::text!("the sidecar of {w}"),
        Enforcer::Ztunnel => crate::text!("ztunnel in front of {w}"),
        Enforcer::Waypoint { service } => crate::text!(
            "the waypoint for Service {}/{} ({w})",
            service.namespace(),
            service.name()
        ),
    }
}

/// `AuthorizationPolicy ns/name`, written where it is used.
fn policy_name(p: &AuthorizationPolicy) -> impl std::fmt::Display + '_ {
    struct Name<'a>(&'a AuthorizationPolicy);
    impl std::fmt::Display for Name<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "AuthorizationPolicy {}/{}",
                self.0.namespace(),
                self.0.name()
            )
        }
    }
    Name(p)
}

/// D1: the AuthorizationPolicies that apply, with steps for those that apply, are ignored
/// here, or select other workloads.
fn attached_policies<'a>(
    inv: &'a Inventory,
    server: &Workload,
    enforcer: Enforcer<'_>,
    at: &str,
    steps: &mut Vec<Step>,
) -> Vec<&'a AuthorizationPolicy> {
    // Decided once per server for its sidecar and for its ztunnel: every flow to it asks.
    /// What applies at a server's sidecar.
    struct AtSidecar(Attached);
    /// What applies at a server's ztunnel.
    struct AtZtunnel(Attached);
    let generation = inv.generation();
    let decide = || find_attached_policies(inv, server, enforcer, at);
    let (at_sidecar, at_ztunnel, at_waypoint);
    let attached = match enforcer {
        Enforcer::Sidecar => {
            at_sidecar = server
                .memo
                .get_or_compute(generation, || AtSidecar(decide()));
            &at_sidecar.0
        }
        Enforcer::Ztunnel => {
            at_ztunnel = server
                .memo
                .get_or_compute(generation, || AtZtunnel(decide()));
            &at_ztunnel.0
        }
        Enforcer::Waypoint { .. } => {
            at_waypoint = decide();
            &at_waypoint
        }
    };
    crate::explain::extend(steps, &attached.steps);
    attached
        .policies
        .iter()
        .filter_map(|(ns, i)| inv.authorization_policies_in(ns).get(*i))
        .collect()
}

/// The AuthorizationPolicies that apply at an enforcer, as their namespace and place in it,
/// and the steps that say which apply and which do not.
struct Attached {
    policies: Vec<(String, usize)>,
    steps: Vec<Step>,
}

fn find_attached_policies(
    inv: &Inventory,
    server: &Workload,
    enforcer: Enforcer<'_>,
    at: &str,
) -> Attached {
    let mut steps = Vec::new();
    let mut applies: Vec<(&AuthorizationPolicy, String, usize)> = Vec::new();
    let mut not_selected: Vec<&AuthorizationPolicy> = Vec::new();
    let namespaces = candidate_namespaces(inv, server, enforcer);
    for ns in &namespaces {
        for (i, p) in inv.authorization_policies_in(ns).iter().enumerate() {
            match policy_attachment(inv, server, enforcer, p) {
                Attachment::Applies(how) => applies.push((p, how, i)),
                Attachment::NotSelected => not_selected.push(p),
                Attachment::Ignored(why) => steps.push(
                    crate::step!("D1", "{} does not apply at {at}: {why}", policy_name(p))
                        .by(p.cite()),
                ),
            }
        }
    }
    if !not_selected.is_empty() {
        steps.push(
            crate::step!(
                "D1",
                "{} select{} other workloads (selector or targetRefs do not match {} {}/{})",
                not_selected
                    .iter()
                    .map(|p| policy_name(p).to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if not_selected.len() == 1 { "s" } else { "" },
                server.kind,
                server.namespace,
                server.name
            )
            .by_all(not_selected.iter().map(|p| p.cite())),
        );
    }
    if applies.is_empty() {
        steps.push(crate::step!(
            "D1",
            "no AuthorizationPolicy applies at {at} (looked in namespaces {})",
            namespaces.join(", ")
        ));
    } else {
        steps.push(
            crate::step!(
                "D1",
                "{} AuthorizationPolic{} appl{} at {at}: {}",
                applies.len(),
                if applies.len() == 1 { "y" } else { "ies" },
                if applies.len() == 1 { "ies" } else { "y" },
                applies
                    .iter()
                    .map(|(p, how, _)| crate::text!(
                        "{}/{} ({}{}, {how})",
                        p.namespace(),
                        p.name(),
                        p.spec.action.as_str(),
                        if is_dry_run(&p.meta.annotations) {
                            ", dry-run"
                        } else {
                            ""
                        }
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
            .by_all(applies.iter().map(|(p, _, _)| p.cite())),
        );
    }
    let policies = applies
        .into_iter()
        .map(|(p, _, i)| (p.namespace().to_string(), i))
        .collect();
    Attached { policies, steps }
}

/// RequestAuthentication: `Ok(Some(jwt))` when a token was accepted, `Ok(None)` when there is
/// no token to use, `Err(())` for a 401.
fn authenticate<'a>(
    inv: &Inventory,
    server: &Workload,
    enforcer: Enforcer<'_>,
    request: &'a RequestContext,
    at: &str,
    steps: &mut Vec<Step>,
) -> Result<Option<&'a Jwt>, ()> {
    if matches!(enforcer, Enforcer::Ztunnel) {
        if request.jwt.is_some() {
            steps.push(Step::new(
                "A6.3",
                "ztunnel works at L4 and does not read JWTs: the token is neither validated nor used as a request principal",
            ));
        }
        return Ok(None);
    }
    let mut ras: Vec<&RequestAuthentication> = Vec::new();
    for ns in candidate_namespaces(inv, server, enforcer) {
        for ra in inv.request_authentications_in(ns) {
            if let Attachment::Applies(_) =
                request_authentication_attachment(inv, server, enforcer, ra)
            {
                ras.push(ra);
            }
        }
    }
    let cites = || ras.iter().map(|r| r.cite()).collect::<Vec<Cited>>();
    let names = || {
        ras.iter()
            .map(|r| crate::text!("{}/{}", r.namespace(), r.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(jwt) = request.jwt.as_ref() else {
        if !ras.is_empty() {
            steps.push(
                crate::step!("D9", "no JWT presented: RequestAuthentication {} accepts requests without a token; they get no request principal, so only an AuthorizationPolicy that requires requestPrincipals can reject them",
                        names())
                .by_all(cites()),
            );
        }
        return Ok(None);
    };
    if request.chain == Chain::Tcp {
        steps.push(crate::step!("D7", "the request is on the TCP filter chain at {at}: JWTs are HTTP, so the token is not read"));
        return Ok(None);
    }
    if ras.is_empty() {
        steps.push(crate::step!("D9", "a JWT is presented but no RequestAuthentication applies at {at}: the token is not validated and gives no request principal"));
        return Ok(None);
    }
    if !jwt.valid {
        steps.push(
            crate::step!("D9", "the JWT from issuer {} is invalid (bad signature or expired): RequestAuthentication {} rejects it → 401",
                    jwt.issuer,
                    names())
            .by_all(cites()),
        );
        return Err(());
    }
    let rules: Vec<_> = ras
        .iter()
        .flat_map(|r| r.spec.jwt_rules.iter().flatten().map(move |j| (*r, j)))
        .filter(|(_, rule)| rule.issuer == jwt.issuer)
        .collect();
    if rules.is_empty() {
        steps.push(
            crate::step!("D9", "the JWT issuer {} is not named by any jwtRules of RequestAuthentication {} (\"Jwt issuer is not configured\") → 401",
                    jwt.issuer,
                    names())
            .by_all(cites()),
        );
        return Err(());
    }
    let audience_ok = |aud: &Option<Vec<String>>| match aud.as_deref() {
        None | Some([]) => true,
        Some(allowed) => jwt.audiences.iter().any(|a| allowed.contains(a)),
    };
    let Some((ra, _)) = rules.iter().find(|(_, rule)| audience_ok(&rule.audiences)) else {
        steps.push(
            crate::step!("D9", "the JWT audiences [{}] are not among the audiences the jwtRules for issuer {} allow (\"Audiences in Jwt are not allowed\") → 401",
                    jwt.audiences.join(", "),
                    jwt.issuer)
            .by_all(rules.iter().map(|(r, _)| r.cite())),
        );
        return Err(());
    };
    steps.push(
        crate::step!(
            "D3",
            "RequestAuthentication {}/{} accepts the JWT: request principal {}/{}",
            ra.namespace(),
            ra.name(),
            jwt.issuer,
            jwt.subject
        )
        .by(ra.cite()),
    );
    Ok(Some(jwt))
}

/// The request as explanations name it, written where it is used (inside
/// [`crate::explain::quietly`] the messages it goes into are not written at all).
struct Described<'c, 'a>(&'c Cx<'a>);

impl std::fmt::Display for Described<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cx = self.0;
        match &cx.peer {
            Some(p) => write!(f, "principal {}", p.full)?,
            None => f.write_str("a plaintext peer (no mTLS identity)")?,
        }
        write!(f, " on port {}", cx.req.destination_port)?;
        match (cx.point, cx.http) {
            (Point::Envoy { tcp: false }, Some(h)) => {
                write!(f, " ({} {}, host {})", h.method, h.path, h.host)?;
            }
            (Point::Envoy { tcp: true }, _) => f.write_str(" (TCP filter chain)")?,
            (Point::Ztunnel, _) => f.write_str(" (L4 at ztunnel)")?,
            _ => {}
        }
        if let Some(j) = cx.jwt {
            write!(f, ", request principal {}/{}", j.issuer, j.subject)?;
        }
        Ok(())
    }
}

/// The result of one policy for the request.
struct PolicyResult {
    /// 1-based number of the first matching rule.
    matched: Option<usize>,
    reasons: Vec<String>,
    notes: Notes,
}

impl PolicyResult {
    fn why_not(&self) -> String {
        const MAX: usize = 6;
        let mut parts: Vec<&str> = self.reasons.iter().take(MAX).map(String::as_str).collect();
        let more = self.reasons.len().saturating_sub(MAX);
        let extra = crate::text!("and {more} more rules");
        if more > 0 {
            parts.push(&extra);
        }
        parts.join("; ")
    }
}

fn run_policy(p: &AuthorizationPolicy, flavor: Flavor, cx: &Cx<'_>) -> PolicyResult {
    let mut ev = Evaluation {
        cx,
        policy_ns: p.namespace(),
        flavor,
        notes: Vec::new(),
    };
    let mut result = PolicyResult {
        matched: None,
        reasons: Vec::new(),
        notes: Vec::new(),
    };
    match p.spec.rules.as_deref() {
        None | Some([]) => result
            .reasons
            .push("it has no rules, so it never matches (D3)".to_string()),
        Some(rules) => {
            for (i, rule) in rules.iter().enumerate() {
                match ev.rule(rule.as_ref(), i + 1) {
                    RuleOutcome::Match => {
                        result.matched = Some(i + 1);
                        break;
                    }
                    RuleOutcome::Miss(r) | RuleOutcome::Skipped(r) => result.reasons.push(r),
                }
            }
        }
    }
    result.notes = ev.notes;
    result
}

/// Push the notes of a policy evaluation, each citing the policy.
fn push_notes(steps: &mut Vec<Step>, p: &AuthorizationPolicy, notes: &Notes) {
    for (rule, msg) in notes {
        steps.push(crate::step!(rule, "{}: {msg}", policy_name(p)).by(p.cite()));
    }
}

/// D1–D9 (and A6.3 for ztunnel, A6.4 for waypoints): evaluate the policies that apply to
/// `server` at `enforcer` for the request.
pub fn authorize(
    inv: &Inventory,
    server: &Workload,
    enforcer: Enforcer<'_>,
    request: &RequestContext,
) -> Decision<AuthzVerdict> {
    let mut steps = Vec::with_capacity(8);
    let at = describe_enforcer(server, enforcer);
    let point = match enforcer {
        Enforcer::Ztunnel => Point::Ztunnel,
        _ => Point::Envoy {
            tcp: request.chain == Chain::Tcp,
        },
    };
    let policies = attached_policies(inv, server, enforcer, &at, &mut steps);
    let jwt = match authenticate(inv, server, enforcer, request, &at, &mut steps) {
        Ok(jwt) => jwt,
        Err(()) => return Decision::new(AuthzVerdict::Unauthenticated, steps),
    };
    let http = match point {
        Point::Envoy { tcp: false } => request.http.as_ref(),
        _ => None,
    };
    let cx = Cx {
        req: request,
        point,
        peer: request
            .principal
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(Peer::parse),
        jwt,
        http,
        path: http.map(|h| normalize_path(&h.path, inv.mesh.path_normalization)),
        trust_domain: &inv.mesh.trust_domain,
        aliases: &inv.mesh.trust_domain_aliases,
    };
    if let (Some(h), Some(p)) = (cx.http, cx.path.as_deref()) {
        let sent = h.path.split(['?', '#']).next().unwrap_or_default();
        if sent != p {
            steps.push(
                crate::step!("D4", "Envoy normalizes the path before `paths` match (meshConfig pathNormalization {}{}): `{sent}` is matched as `{p}`",
                        inv.mesh.path_normalization.as_str(),
                        if inv.mesh_source.is_none() {
                            ", Istio's default"
                        } else {
                            ""
                        })
                .by_all(inv.mesh_source.iter().cloned()),
            );
        }
    }
    let req = Described(&cx);
    let rule_id = if point == Point::Ztunnel {
        "A6.3"
    } else {
        "D3"
    };

    // Partition by action and mode.
    let mut custom = Vec::new();
    let mut deny = Vec::new();
    let mut allow = Vec::new();
    let mut audit = Vec::new();
    let mut shadow = Vec::new();
    for p in policies {
        let dry = is_dry_run(&p.meta.annotations);
        if point == Point::Ztunnel {
            if dry {
                steps.push(
                    crate::step!("A6.5", "{} is dry-run: istiod does not send dry-run policies to ztunnel (unless AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY=true), so it has no effect here",
                            policy_name(p))
                    .by(p.cite()),
                );
                continue;
            }
            if matches!(p.spec.action, AuthzAction::Audit | AuthzAction::Custom) {
                steps.push(
                    crate::step!("A6.3", "{}: ztunnel does not support the {} action; the policy is ignored at ztunnel (use a waypoint)",
                            policy_name(p),
                            p.spec.action.as_str())
                    .by(p.cite()),
                );
                continue;
            }
        }
        match (p.spec.action, dry) {
            (AuthzAction::Custom, _) => custom.push(p),
            (_, true) => shadow.push(p),
            (AuthzAction::Deny, false) => deny.push(p),
            (AuthzAction::Allow, false) => allow.push(p),
            (AuthzAction::Audit, false) => audit.push(p),
        }
    }

    // 1. CUSTOM.
    let (custom_provider, custom_deny) = evaluate_custom(inv, &custom, &cx, &req, &mut steps);

    let verdict = if custom_deny {
        AuthzVerdict::CustomDeny
    } else {
        // AUDIT: evaluated like DENY, never decides.
        for p in &audit {
            let r = run_policy(p, Flavor::DenyLike, &cx);
            push_notes(&mut steps, p, &r.notes);
            let msg = match r.matched {
                Some(n) => crate::text!(
                    "{} (AUDIT): rule {n} matches {req}; the request is marked for audit logging, which never changes the decision",
                    policy_name(p)
                ),
                None => crate::text!("{} (AUDIT): no rule matches {req}", policy_name(p)),
            };
            steps.push(Step::new("D2", msg).by(p.cite()));
        }
        // 2. DENY.
        let mut denied_by = Vec::new();
        for p in &deny {
            let r = run_policy(p, Flavor::DenyLike, &cx);
            push_notes(&mut steps, p, &r.notes);
            match r.matched {
                Some(n) => {
                    steps.push(
                        crate::step!(
                            rule_id,
                            "{} (DENY): rule {n} matches {req} → deny",
                            policy_name(p)
                        )
                        .by(p.cite()),
                    );
                    denied_by.push(*p);
                }
                None => steps.push(
                    crate::step!(
                        rule_id,
                        "{} (DENY): no rule matches {req} ({})",
                        policy_name(p),
                        r.why_not()
                    )
                    .by(p.cite()),
                ),
            }
        }
        if !denied_by.is_empty() {
            steps.push(
                crate::step!(
                    "D2",
                    "a DENY policy matches ({}) → deny; no ALLOW policy can override a DENY",
                    denied_by
                        .iter()
                        .map(|p| crate::text!("{}/{}", p.namespace(), p.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
                .by_all(denied_by.iter().map(|p| p.cite())),
            );
            AuthzVerdict::Deny
        } else if allow.is_empty() {
            // 3. No enforced ALLOW policy.
            let dry_allows: Vec<_> = shadow
                .iter()
                .filter(|p| p.spec.action == AuthzAction::Allow)
                .collect();
            let msg = if dry_allows.is_empty() {
                crate::text!("no ALLOW policy applies at {at} → allow")
            } else {
                crate::text!(
                    "no enforced ALLOW policy applies at {at} (dry-run ALLOW policies do not count) → allow"
                )
            };
            steps.push(Step::new("D2", msg).by_all(dry_allows.iter().map(|p| p.cite())));
            AuthzVerdict::Allow
        } else {
            // 4./5. ALLOW.
            let mut allowed_by = None;
            let mut misses = Vec::new();
            for p in &allow {
                let r = run_policy(p, Flavor::Allow, &cx);
                push_notes(&mut steps, p, &r.notes);
                match r.matched {
                    Some(n) => {
                        steps.push(
                            crate::step!(
                                rule_id,
                                "{} (ALLOW): rule {n} matches {req}",
                                policy_name(p)
                            )
                            .by(p.cite()),
                        );
                        allowed_by = Some(*p);
                        break;
                    }
                    None => {
                        steps.push(
                            crate::step!(
                                rule_id,
                                "{} (ALLOW): no rule matches {req} ({})",
                                policy_name(p),
                                r.why_not()
                            )
                            .by(p.cite()),
                        );
                        misses.push(*p);
                    }
                }
            }
            match allowed_by {
                Some(p) => {
                    steps.push(
                        crate::step!("D2", "{} allows the request → allow", policy_name(p))
                            .by(p.cite()),
                    );
                    AuthzVerdict::Allow
                }
                None => {
                    steps.push(
                        crate::step!("D2", "ALLOW policies apply at {at} ({}) but none matches {req} → no ALLOW matched → deny",
                                misses
                                    .iter()
                                    .map(|p| crate::text!("{}/{}", p.namespace(), p.name()))
                                    .collect::<Vec<_>>()
                                    .join(", "))
                        .by_all(misses.iter().map(|p| p.cite())),
                    );
                    AuthzVerdict::Deny
                }
            }
        }
    };

    // Dry-run policies: what they would have done (shadow result).
    shadow_results(&shadow, &cx, &req, &mut steps);

    let value = match (verdict, custom_provider) {
        (AuthzVerdict::Allow, Some(provider)) => {
            steps.push(crate::step!("D2", "no other policy denies: the decision belongs to ext-authz provider {provider}, whose answer kfp-mesh cannot know"));
            AuthzVerdict::Custom { provider }
        }
        (v, _) => v,
    };
    Decision::new(value, steps)
}

/// What istiod makes of the extension provider a CUSTOM policy names
/// (`istio:pilot/pkg/security/authz/builder/extauthz.go` `processExtensionProvider`,
/// `getExtAuthz`, `buildExtAuthzHTTP`/`buildExtAuthzGRPC`; `istio:pkg/config/validation`
/// `ValidateExtensionProviderEnvoyExtAuthz*`). When the provider is missing or cannot be built,
/// `buildHTTP`/`buildTCP` log "failed to process CUSTOM action ..., will generate deny
/// configs" and turn the CUSTOM rules into an RBAC DENY (`getBadCustomDenyRules`): what the
/// rules match is denied. An invalid provider is only a *warning* when istiod loads the mesh
/// config ("can be ignored if the given extension provider is not used"), so the rest of the
/// mesh config still applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum ProviderStatus {
    /// No ext-authz provider of that name: CUSTOM fails closed.
    Missing { why: String },
    /// The entry exists but istiod cannot build it: CUSTOM fails closed.
    Invalid { problems: Vec<String> },
    /// Built. `grpc`: an `envoyExtAuthzGrpc` provider, the only kind Istio also enforces on
    /// TCP filter chains. `notes`: what kfp-mesh could not check from the input.
    Usable { grpc: bool, notes: Vec<String> },
}

/// Envoy's `envoy.type.v3.StatusCode` values, the codes `statusOnError` may name.
const ENVOY_STATUS_CODES: &[u16] = &[
    100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308,
    400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421,
    422, 423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
];

/// D2 CUSTOM: the status of extension provider `name` in the mesh config of `inv`.
pub fn provider_status(inv: &Inventory, name: &str) -> ProviderStatus {
    use crate::model::ExtensionProvider as P;
    let in_config = inv
        .mesh_source
        .as_ref()
        .map(|c| crate::text!(" ({c})"))
        .unwrap_or_else(|| " (no mesh config in the input: Istio's default has none)".to_string());
    if name.is_empty() {
        return ProviderStatus::Missing {
            why: "it names no provider".to_string(),
        };
    }
    let Some(p) = inv.mesh.extension_provider(name) else {
        let known: Vec<&str> = inv
            .mesh
            .extension_providers
            .iter()
            .filter(|p| p.kind == P::EXT_AUTHZ_HTTP || p.kind == P::EXT_AUTHZ_GRPC)
            .map(|p| p.name.as_str())
            .collect();
        return ProviderStatus::Missing {
            why: crate::text!(
                "provider {name} is not in meshConfig.extensionProviders{in_config}; ext-authz providers there: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        };
    };
    let grpc = p.kind == P::EXT_AUTHZ_GRPC;
    if !grpc && p.kind != P::EXT_AUTHZ_HTTP {
        return ProviderStatus::Missing {
            why: crate::text!(
                "provider {name} is a `{}` provider, not envoyExtAuthzHttp or envoyExtAuthzGrpc: istiod does not build it for authorization{in_config}",
                if p.kind.is_empty() {
                    "(no kind)"
                } else {
                    p.kind.as_str()
                }
            ),
        };
    }
    let mut problems = Vec::new();
    match p.port.as_deref().map(str::parse::<u64>) {
        None => problems
            .push("it has no `port` (port must be in the range [1, 65535], found: 0)".to_string()),
        Some(Ok(n)) if (1..=65535).contains(&n) => {}
        Some(Ok(n)) => problems.push(crate::text!(
            "port must be in the range [1, 65535], found: {n}"
        )),
        Some(Err(_)) => problems.push(crate::text!(
            "port `{}` is not a number",
            p.port.as_deref().unwrap_or_default()
        )),
    }
    let mut notes = Vec::new();
    match p.service.as_deref().map(str::trim) {
        None | Some("") => problems.push("service must not be empty".to_string()),
        Some(svc) => match resolve_provider_service(inv, svc) {
            Ok(None) => {}
            Ok(Some(note)) => notes.push(note),
            Err(problem) => problems.push(problem),
        },
    }
    if let Some(status) = p.status_on_error.as_deref().filter(|s| !s.is_empty()) {
        match status.parse::<i64>() {
            Ok(code) if u16::try_from(code).is_ok_and(|c| ENVOY_STATUS_CODES.contains(&c)) => {}
            Ok(code) => problems.push(crate::text!(
                "statusOnError {code} is not an HTTP status Envoy knows"
            )),
            Err(_) => problems.push(crate::text!("statusOnError `{status}` is not a number")),
        }
    }
    if !grpc {
        if let Some(prefix) = p.path_prefix.as_deref().filter(|s| !s.is_empty())
            && !prefix.starts_with('/')
        {
            problems.push(crate::text!(
                "pathPrefix must begin with `/`, found: {prefix:?}"
            ));
        }
        for f in &p.bare_wildcard_fields {
            problems.push(crate::text!(
                "a single wildcard (\"*\") is not supported in {f} (use a prefix or suffix match)"
            ));
        }
    }
    if problems.is_empty() {
        ProviderStatus::Usable { grpc, notes }
    } else {
        ProviderStatus::Invalid { problems }
    }
}

/// `extensionproviders.LookupCluster`: `<namespace>/<host>` or a `<host>` that only one
/// namespace has. Kubernetes Services are registered under `<name>.<namespace>.svc.<domain>`.
/// `Ok(None)`: found in the input; `Ok(Some(note))`: not decidable from the input; `Err`: Istio
/// cannot resolve it.
fn resolve_provider_service(inv: &Inventory, svc: &str) -> Result<Option<String>, String> {
    let parts: Vec<&str> = svc.split('/').collect();
    let (ns, host) = match parts.as_slice() {
        [host] => (None, *host),
        [ns, host] => (Some(*ns), *host),
        _ => {
            return Err(crate::text!(
                "service `{svc}` is neither `<namespace>/<host>` nor `<host>`: istiod cannot find it in its service registry"
            ));
        }
    };
    let domain = crate::mesh::client_tls::CLUSTER_DOMAIN;
    let kube = host
        .strip_suffix(&crate::text!(".svc.{domain}"))
        .and_then(|rest| rest.split_once('.'))
        .filter(|(name, svc_ns)| !name.is_empty() && !svc_ns.contains('.'));
    match kube {
        Some((name, svc_ns)) if ns.is_none_or(|n| n == svc_ns) => {
            if inv.service(svc_ns, name).is_some() {
                Ok(None)
            } else {
                Ok(Some(crate::text!(
                    "its service {host} is not in the input; if it does not exist in the cluster, istiod cannot build the provider and the CUSTOM rules deny"
                )))
            }
        }
        Some((_, svc_ns)) => Err(crate::text!(
            "service `{svc}` names namespace {} but host {host} is a Service of namespace {svc_ns}: istiod cannot find it",
            ns.unwrap_or_default()
        )),
        None => Ok(Some(crate::text!(
            "its service `{svc}` is not a Kubernetes Service host (`<name>.<namespace>.svc.{domain}`); istiod resolves it only if a ServiceEntry declares that exact host (kfp-mesh does not read ServiceEntries), else the CUSTOM rules deny"
        ))),
    }
}

/// D2 CUSTOM: returns the provider a matching CUSTOM policy sends the request to, and
/// whether a matching CUSTOM policy fails closed.
fn evaluate_custom(
    inv: &Inventory,
    custom: &[&AuthorizationPolicy],
    cx: &Cx<'_>,
    req: &Described<'_, '_>,
    steps: &mut Vec<Step>,
) -> (Option<String>, bool) {
    if custom.is_empty() {
        return (None, false);
    }
    let provider_of = |p: &AuthorizationPolicy| {
        p.spec
            .provider
            .as_ref()
            .map(|x| x.name.clone())
            .unwrap_or_default()
    };
    let providers: BTreeSet<String> = custom.iter().map(|p| provider_of(p)).collect();
    let several = providers.len() > 1;
    if several {
        steps.push(
            crate::step!("D2", "{} CUSTOM providers on one workload ({}): without PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS (Istio < 1.30) every CUSTOM rule fails closed",
                    providers.len(),
                    providers.iter().cloned().collect::<Vec<_>>().join(", "))
            .by_all(custom.iter().map(|p| p.cite())),
        );
    }
    let tcp = cx.point == (Point::Envoy { tcp: true });
    let mut sent_to = None;
    let mut fail_closed = false;
    for p in custom {
        let provider = provider_of(p);
        let dry = is_dry_run(&p.meta.annotations);
        let r = run_policy(p, Flavor::DenyLike, cx);
        push_notes(steps, p, &r.notes);
        let name = policy_name(p);
        let Some(n) = r.matched else {
            steps.push(
                crate::step!("D2", "{name} (CUSTOM, provider {provider}): no rule matches {req}, so the request is not sent to ext-authz ({})",
                        r.why_not())
                .by(p.cite()),
            );
            continue;
        };
        if dry {
            steps.push(
                crate::step!("D2", "{name} (CUSTOM, dry-run): rule {n} matches {req}; a dry-run policy does not decide")
                .by(p.cite()),
            );
            continue;
        }
        let status = provider_status(inv, &provider);
        let fail_why = if several {
            Some("several CUSTOM providers apply to this workload".to_string())
        } else {
            match &status {
                ProviderStatus::Missing { why } => Some(why.clone()),
                ProviderStatus::Invalid { problems } => Some(crate::text!(
                    "provider {provider} is invalid in meshConfig.extensionProviders{}: {}",
                    inv.mesh_source
                        .as_ref()
                        .map(|c| crate::text!(" ({c})"))
                        .unwrap_or_default(),
                    problems.join("; ")
                )),
                ProviderStatus::Usable { .. } => None,
            }
        };
        if let Some(why) = fail_why {
            steps.push(
                crate::step!("D2", "{name} (CUSTOM): rule {n} matches {req}, and {why}: istiod cannot build the ext-authz filter and turns the CUSTOM rules into a DENY (fail closed) → deny")
                .by_all([p.cite()].into_iter().chain(inv.mesh_source.iter().cloned())),
            );
            fail_closed = true;
            continue;
        }
        let (grpc, notes) = match status {
            ProviderStatus::Usable { grpc, notes } => (grpc, notes),
            _ => (false, Vec::new()),
        };
        if tcp && !grpc {
            steps.push(
                crate::step!("D7", "{name} (CUSTOM): rule {n} matches {req}, but {provider} is an envoyExtAuthzHttp provider: Istio builds no ext-authz filter for TCP filter chains with an HTTP provider (\"ignored CUSTOM action with HTTP provider on TCP filter chain\"), so nothing is sent to it")
                .by(p.cite()),
            );
            continue;
        }
        steps.push(
            crate::step!("D2", "{name} (CUSTOM): rule {n} matches {req} → the request is sent to ext-authz provider {provider}{}; evaluation continues with the other policies",
                    if tcp {
                        " (an envoyExtAuthzGrpc provider: Istio also enforces it on the TCP filter chain)"
                    } else {
                        ""
                    })
            .by(p.cite()),
        );
        for note in notes {
            steps.push(
                crate::step!("D2", "provider {provider}: {note}")
                    .by_all(inv.mesh_source.iter().cloned()),
            );
        }
        sent_to.get_or_insert(provider);
    }
    (sent_to, fail_closed)
}

/// D2 dry-run: record what each dry-run policy would have done.
fn shadow_results(
    shadow: &[&AuthorizationPolicy],
    cx: &Cx<'_>,
    req: &Described<'_, '_>,
    steps: &mut Vec<Step>,
) {
    let mut allow_shadow: Vec<(&AuthorizationPolicy, Option<usize>)> = Vec::new();
    for p in shadow {
        let flavor = if p.spec.action == AuthzAction::Allow {
            Flavor::Allow
        } else {
            Flavor::DenyLike
        };
        let r = run_policy(p, flavor, cx);
        push_notes(steps, p, &r.notes);
        let name = policy_name(p);
        let msg = match (p.spec.action, r.matched) {
            (AuthzAction::Deny, Some(n)) => crate::text!(
                "{name} is dry-run (istio.io/dry-run): rule {n} matches {req}, so in enforce mode it would deny this request; in dry-run it only records the shadow result and does not change the decision"
            ),
            (AuthzAction::Deny, None) => crate::text!(
                "{name} is dry-run: it would not deny this request ({})",
                r.why_not()
            ),
            (AuthzAction::Allow, m) => {
                allow_shadow.push((p, m));
                match m {
                    Some(n) => crate::text!(
                        "{name} is dry-run (ALLOW): rule {n} matches {req}; it does not count as an ALLOW policy and does not change the decision"
                    ),
                    None => crate::text!(
                        "{name} is dry-run (ALLOW): no rule matches {req} ({}); it does not count as an ALLOW policy and does not change the decision",
                        r.why_not()
                    ),
                }
            }
            (AuthzAction::Audit, m) => crate::text!(
                "{name} is dry-run (AUDIT): {}; no effect",
                if m.is_some() {
                    "it would mark the request for audit"
                } else {
                    "it does not match"
                }
            ),
            (AuthzAction::Custom, _) => continue,
        };
        steps.push(Step::new("D2", msg).by(p.cite()));
    }
    if !allow_shadow.is_empty() {
        let would_allow = allow_shadow.iter().any(|(_, m)| m.is_some());
        steps.push(
            crate::step!("D2", "shadow result of the dry-run ALLOW policies: in enforce mode they would {} this request",
                    if would_allow {
                        "allow"
                    } else {
                        "deny (no dry-run ALLOW rule matches)"
                    })
            .by_all(allow_shadow.iter().map(|(p, _)| p.cite())),
        );
    }
}
