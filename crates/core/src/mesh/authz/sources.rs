//! Who the enforced ALLOW policies of a workload admit, as typed facts (the access view of a
//! server), and the policy facts built on them: the ports identity-less rules open, the
//! policies that name a principal, allow-all policies. The one interpreter of policy sources
//! outside request evaluation (`eval`).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::inventory::{Inventory, Workload};
use crate::mesh::peer_authn::{self, MtlsMode};
use crate::model::{AuthzAction, Rule};
use crate::object::Cited;

/// One kind of caller an ALLOW policy set admits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllowedSource {
    /// A principal (`<trust domain>/ns/NS/sa/SA`, or a pattern with `*` at one end).
    Principal(String),
    /// Every identity of a namespace.
    Namespace(String),
    /// `principals: ["*"]`: any authenticated (mTLS) caller.
    AnyAuthenticated,
    /// A rule naming no source identity (or no ALLOW policy) on ports that all enforce STRICT:
    /// every caller with a sidecar, whatever its identity (plaintext is reset there).
    AnyMeshIdentity,
    /// A rule naming no source identity on a port that accepts plaintext.
    AnyPlaintext,
    /// No ALLOW policy, and plaintext accepted.
    Anyone,
}

impl AllowedSource {
    /// The short label reports use: the principal, `ns:NAME`, `any-authenticated`,
    /// `any-mesh-identity`, `any-plaintext`, `anyone`.
    pub fn label(&self) -> String {
        match self {
            AllowedSource::Principal(p) => p.clone(),
            AllowedSource::Namespace(n) => crate::text!("ns:{n}"),
            AllowedSource::AnyAuthenticated => "any-authenticated".to_string(),
            AllowedSource::AnyMeshIdentity => "any-mesh-identity".to_string(),
            AllowedSource::AnyPlaintext => "any-plaintext".to_string(),
            AllowedSource::Anyone => "anyone".to_string(),
        }
    }
}

/// The container ports of a workload (80 when it declares none, as Kubernetes' default).
pub fn container_ports(w: &Workload) -> Vec<u16> {
    let mut ports: Vec<u16> = w
        .spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect();
    if ports.is_empty() {
        ports.push(80);
    }
    ports
}

/// The workload ports a rule applies to (`to.operation.ports`), all of them when it names none.
fn rule_ports(rule: &Rule, all_ports: &[u16]) -> Vec<u16> {
    let listed: Vec<u16> = rule
        .to
        .iter()
        .flatten()
        .flatten()
        .filter_map(|t| t.operation.as_ref())
        .flat_map(|o| o.ports.iter().flatten())
        .filter_map(|p| p.parse::<u16>().ok())
        .collect();
    if listed.is_empty() {
        all_ports.to_vec()
    } else {
        listed
    }
}

/// The `from.source` entries of a rule.
fn rule_sources(rule: &Rule) -> Vec<&crate::model::Source> {
    rule.from
        .iter()
        .flatten()
        .flatten()
        .filter_map(|f| f.source.as_ref())
        .collect()
}

/// What the enforced ALLOW policies of `server` admit (D1 to D4 sources), sorted.
pub fn allowed_sources(inv: &Inventory, server: &Workload) -> Vec<AllowedSource> {
    let all_ports = container_ports(server);
    let strict = |ports: &[u16]| {
        ports
            .iter()
            .all(|p| peer_authn::effective_mode(inv, server, *p).value == MtlsMode::Strict)
    };
    let no_identity = |rule: &Rule| {
        if strict(&rule_ports(rule, &all_ports)) {
            AllowedSource::AnyMeshIdentity
        } else {
            AllowedSource::AnyPlaintext
        }
    };
    let mut allowed = BTreeSet::new();
    let mut any_allow = false;
    for p in super::enforced_allow_policies(inv, server) {
        any_allow = true;
        for rule in p.spec.rules.iter().flatten().flatten() {
            let sources = rule_sources(rule);
            if sources.is_empty() {
                allowed.insert(no_identity(rule));
                continue;
            }
            for s in sources {
                let mut identity = false;
                for pr in s.principals.iter().flatten() {
                    identity = true;
                    if pr == "*" {
                        allowed.insert(AllowedSource::AnyAuthenticated);
                    } else {
                        allowed.insert(AllowedSource::Principal(pr.replacen(
                            "cluster.local/",
                            &crate::text!("{}/", inv.mesh.trust_domain),
                            1,
                        )));
                    }
                }
                for n in s.namespaces.iter().flatten() {
                    identity = true;
                    allowed.insert(AllowedSource::Namespace(n.clone()));
                }
                for sa in s.service_accounts.iter().flatten() {
                    identity = true;
                    let (sns, sname) = sa.split_once('/').unwrap_or((p.namespace(), sa));
                    allowed.insert(AllowedSource::Principal(crate::text!(
                        "{}/ns/{sns}/sa/{sname}",
                        inv.mesh.trust_domain
                    )));
                }
                if !identity {
                    allowed.insert(no_identity(rule));
                }
            }
        }
    }
    if !any_allow {
        allowed.insert(if strict(&all_ports) {
            AllowedSource::AnyMeshIdentity
        } else {
            AllowedSource::Anyone
        });
    }
    allowed.into_iter().collect()
}

/// A principal with Istio's prefix or suffix wildcard (`*/sa/default-editor`,
/// `cluster.local/ns/team-*`), other than `*` alone.
pub fn is_principal_pattern(p: &str) -> bool {
    p != "*" && (p.starts_with('*') || p.ends_with('*'))
}

/// The ports that the ALLOW rules admitting callers without an identity are restricted to;
/// `None` when one of them is not restricted to ports.
pub fn identityless_rule_ports(inv: &Inventory, server: &Workload) -> Option<BTreeSet<u16>> {
    let mut ports = BTreeSet::new();
    for p in super::enforced_allow_policies(inv, server) {
        for rule in p.spec.rules.iter().flatten().flatten() {
            let sources = rule_sources(rule);
            let open = sources.is_empty()
                || sources.iter().any(|s| {
                    s.principals.as_ref().is_none_or(Vec::is_empty)
                        && s.namespaces.as_ref().is_none_or(Vec::is_empty)
                        && s.service_accounts.as_ref().is_none_or(Vec::is_empty)
                });
            if !open {
                continue;
            }
            let ops: Vec<_> = rule
                .to
                .iter()
                .flatten()
                .flatten()
                .map(|t| t.operation.as_ref())
                .collect();
            if ops.is_empty() {
                return None;
            }
            for op in ops {
                let listed = op
                    .and_then(|o| o.ports.as_ref())
                    .filter(|p| !p.is_empty())?;
                for port in listed {
                    ports.insert(port.parse::<u16>().ok()?);
                }
            }
        }
    }
    Some(ports)
}

/// The enforced ALLOW policies of `server` that name `principal` in a source.
pub fn allow_policies_naming(inv: &Inventory, server: &Workload, principal: &str) -> Vec<Cited> {
    super::enforced_allow_policies(inv, server)
        .filter(|p| {
            p.spec
                .rules
                .iter()
                .flatten()
                .flatten()
                .flat_map(|r| r.from.iter().flatten().flatten())
                .filter_map(|f| f.source.as_ref())
                .flat_map(|s| s.principals.iter().flatten())
                .any(|pr| pr == principal)
        })
        .map(|p| p.cite())
        .collect()
}

/// The ALLOW policies of `server`'s own namespace that apply to it (selector or none) and
/// allow every caller (`rules: [{}]`: a rule with no `from`, `to` or `when`).
pub fn allow_all_policies(inv: &Inventory, server: &Workload) -> Vec<Cited> {
    inv.authorization_policies_in(&server.namespace)
        .iter()
        .filter(|p| {
            p.spec.action == AuthzAction::Allow
                && p.spec
                    .selector
                    .as_ref()
                    .and_then(|s| s.labels())
                    .is_none_or(|sel| sel.iter().all(|(k, v)| server.labels.get(k) == Some(v)))
                && p.spec
                    .rules
                    .iter()
                    .flatten()
                    .flatten()
                    .any(|r| r.from.is_none() && r.to.is_none() && r.when.is_none())
        })
        .map(|p| p.cite())
        .collect()
}
