//! The access view: who may reach each KFP server (what its ALLOW policies admit) and whether
//! the flow catalog needs them.

use std::collections::{BTreeMap, BTreeSet};

use kfp_mesh_core::connection;
use kfp_mesh_core::inventory::{Inventory, Workload};
use kfp_mesh_core::mesh::authz;
use kfp_mesh_core::mesh::membership::{self, DataPlane};
use kfp_mesh_core::mesh::peer_authn::{self, MtlsMode};

use super::{FlowResult, ServerAccess};
use crate::detect::KfpFacts;

pub(crate) fn container_ports(w: &Workload) -> Vec<u16> {
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

/// The principal of a flow source, when it has a mesh identity.
fn source_principal(inv: &Inventory, f: &FlowResult) -> Option<String> {
    let ns = f.from.namespace.as_deref()?;
    let w = inv.workload(ns, &f.from.workload)?;
    Some(connection::principal_of(inv, w))
}

pub(super) fn server_access(
    inv: &Inventory,
    facts: &KfpFacts,
    flows: &[FlowResult],
) -> Vec<ServerAccess> {
    let mut by_server: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    // Service ports that required callers without any mesh identity (kube-apiserver) call;
    // kubelet probes are left out (the injector rewrites them past the proxy).
    let mut identityless: BTreeMap<(String, String), BTreeSet<u16>> = BTreeMap::new();
    for f in flows {
        let key = (f.to.namespace.clone(), f.to.service.clone());
        let entry = by_server.entry(key.clone()).or_default();
        if let Some(p) = source_principal(inv, f) {
            entry.insert(p);
        } else if f.from.namespace.is_none() {
            entry.insert(f.from.workload.clone());
            if f.required && f.from.workload != "kubelet" {
                identityless.entry(key).or_default().insert(f.to.port);
            }
        }
    }
    let kfp_ns = facts.kfp_namespace();
    // Several Services can front one server (2.15's `minio-service` alias of SeaweedFS): its
    // callers are those of all of them.
    let server_of = |ns: &str, svc: &str| {
        inv.service(ns, svc)
            .and_then(|s| inv.service_endpoints(s).into_iter().next())
            .map(|w| (w.namespace.clone(), w.name.clone()))
    };
    let mut by_workload: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for ((ns, svc), required) in &by_server {
        if let Some(w) = server_of(ns, svc) {
            by_workload
                .entry(w)
                .or_default()
                .extend(required.iter().cloned());
        }
    }
    let mut out = Vec::new();
    for ((ns, svc), required) in by_server {
        if ns != kfp_ns {
            continue;
        }
        let Some(service) = inv.service(&ns, &svc) else {
            continue;
        };
        let Some(server) = inv.service_endpoints(service).into_iter().next() else {
            continue;
        };
        let required = by_workload
            .get(&(server.namespace.clone(), server.name.clone()))
            .cloned()
            .unwrap_or(required);
        if membership::data_plane(inv, server).value != DataPlane::Sidecar {
            continue;
        }
        let allowed = allowed_identities(inv, server);
        // Target ports that callers without a mesh identity need open to any source.
        let needs_open: BTreeSet<u16> = identityless
            .get(&(ns.clone(), svc.clone()))
            .into_iter()
            .flatten()
            .filter_map(|sp| {
                let port = service
                    .spec
                    .ports
                    .iter()
                    .find(|p| p.port == i64::from(*sp))?;
                server.target_port(port)
            })
            .collect();
        // A whole namespace, any principal or any plaintext caller is always wider than the
        // principals the catalog needs, except: `any-plaintext` from rules restricted to the
        // ports identity-less callers need (kube-apiserver → a webhook port), and a principal
        // pattern that the catalog's callers need (reported as KM032 instead).
        let excess = allowed
            .iter()
            .filter(|a| !required.contains(*a))
            .filter(|a| {
                !(a.as_str() == "any-plaintext"
                    && !needs_open.is_empty()
                    && open_rule_ports(inv, server).is_some_and(|p| p.is_subset(&needs_open)))
            })
            .filter(|a| {
                !(is_principal_pattern(a)
                    && required
                        .iter()
                        .any(|r| authz::principal_pattern_matches(a, r)))
            })
            .cloned()
            .collect();
        out.push(ServerAccess {
            namespace: ns,
            service: svc,
            workload: server.name.clone(),
            required: required.into_iter().collect(),
            allowed,
            excess,
        });
    }
    out
}

/// What the enforced ALLOW policies of a workload admit, as identity descriptions:
/// principals, `ns:<namespace>`, `any-authenticated` (`principals: ["*"]`), and for rules that
/// name no source identity (or no ALLOW policy at all) what actually reaches the workload:
/// `any-mesh-identity` when every port the rule covers enforces STRICT (plaintext is reset
/// there, so only callers with a sidecar arrive, whatever their identity), else
/// `any-plaintext` (a rule) or `anyone` (no ALLOW policy).
pub fn allowed_identities(inv: &Inventory, server: &Workload) -> Vec<String> {
    let all_ports = container_ports(server);
    let strict = |ports: &[u16]| {
        ports
            .iter()
            .all(|p| peer_authn::effective_mode(inv, server, *p).value == MtlsMode::Strict)
    };
    // The workload ports a rule applies to (`to.operation.ports`), all of them when it names
    // none.
    let rule_ports = |rule: &kfp_mesh_core::model::Rule| -> Vec<u16> {
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
            all_ports.clone()
        } else {
            listed
        }
    };
    let no_identity = |rule: &kfp_mesh_core::model::Rule| {
        if strict(&rule_ports(rule)) {
            "any-mesh-identity"
        } else {
            "any-plaintext"
        }
    };
    let mut allowed = BTreeSet::new();
    let mut any_allow = false;
    for p in authz::enforced_allow_policies(inv, server) {
        let spec = &p.spec;
        any_allow = true;
        for rule in spec.rules.iter().flatten().flatten() {
            let sources: Vec<_> = rule
                .from
                .iter()
                .flatten()
                .flatten()
                .filter_map(|f| f.source.as_ref())
                .collect();
            if sources.is_empty() {
                allowed.insert(no_identity(rule).to_string());
                continue;
            }
            for s in sources {
                let mut identity = false;
                for pr in s.principals.iter().flatten() {
                    identity = true;
                    if pr == "*" {
                        allowed.insert("any-authenticated".to_string());
                    } else {
                        allowed.insert(pr.replacen(
                            "cluster.local/",
                            &format!("{}/", inv.mesh.trust_domain),
                            1,
                        ));
                    }
                }
                for n in s.namespaces.iter().flatten() {
                    identity = true;
                    allowed.insert(format!("ns:{n}"));
                }
                for sa in s.service_accounts.iter().flatten() {
                    identity = true;
                    let (sns, sname) = sa.split_once('/').unwrap_or((p.namespace(), sa));
                    allowed.insert(format!("{}/ns/{sns}/sa/{sname}", inv.mesh.trust_domain));
                }
                if !identity {
                    allowed.insert(no_identity(rule).to_string());
                }
            }
        }
    }
    if !any_allow {
        allowed.insert(if strict(&all_ports) {
            "any-mesh-identity".to_string()
        } else {
            "anyone".to_string()
        });
    }
    allowed.into_iter().collect()
}

/// An entry of [`allowed_identities`] in words, for messages.
pub(crate) fn describe_allowed(entry: &str) -> String {
    match entry {
        "any-mesh-identity" => "any-mesh-identity (a rule naming no source, or no ALLOW policy, on ports that enforce STRICT: every caller with a sidecar, whatever its identity)".to_string(),
        "any-plaintext" => "any-plaintext (a rule naming no source identity on a port that accepts plaintext: any caller, with or without a sidecar)".to_string(),
        "anyone" => "anyone (no ALLOW policy and plaintext accepted)".to_string(),
        other => other.to_string(),
    }
}

/// A principal with Istio's prefix or suffix wildcard (`*/sa/default-editor`,
/// `cluster.local/ns/team-*`), other than `*` alone.
pub(crate) fn is_principal_pattern(p: &str) -> bool {
    p != "*" && (p.starts_with('*') || p.ends_with('*'))
}

/// The ports that the ALLOW rules admitting callers without an identity (`any-plaintext`)
/// are restricted to; `None` when one of them is not restricted to ports.
fn open_rule_ports(inv: &Inventory, server: &Workload) -> Option<BTreeSet<u16>> {
    let mut ports = BTreeSet::new();
    for p in authz::enforced_allow_policies(inv, server) {
        let spec = &p.spec;
        for rule in spec.rules.iter().flatten().flatten() {
            let sources: Vec<_> = rule
                .from
                .iter()
                .flatten()
                .flatten()
                .filter_map(|f| f.source.as_ref())
                .collect();
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
