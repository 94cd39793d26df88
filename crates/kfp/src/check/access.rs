//! The access view: who may reach each KFP server (what its ALLOW policies admit) and whether
//! the flow catalog needs them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kfp_mesh_core::connection;
use kfp_mesh_core::inventory::{Inventory, Workload};
use kfp_mesh_core::mesh::authz::{self, sources};
use kfp_mesh_core::mesh::membership::{self, DataPlane};

use super::{FlowResult, ServerAccess};
use crate::detect::KfpFacts;

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
    // Keyed by the flows' own names: a large cluster has tens of thousands of flows, most to
    // a Service and from a caller already seen.
    let mut by_server: BTreeMap<(&str, &str), BTreeSet<String>> = BTreeMap::new();
    // Service ports that required callers without any mesh identity (kube-apiserver) call;
    // kubelet probes are left out (the injector rewrites them past the proxy).
    let mut identityless: BTreeMap<(&str, &str), BTreeSet<u16>> = BTreeMap::new();
    // Each caller's principal, worked out once.
    let mut principals: HashMap<(&str, &str), Option<String>, foldhash::fast::RandomState> =
        HashMap::default();
    for f in flows {
        let key = (f.to.namespace.as_str(), f.to.service.as_str());
        let entry = by_server.entry(key).or_default();
        let principal = match f.from.namespace.as_deref() {
            Some(ns) => principals
                .entry((ns, f.from.workload.as_str()))
                .or_insert_with(|| source_principal(inv, f))
                .as_deref(),
            None => None,
        };
        if let Some(p) = principal {
            if !entry.contains(p) {
                entry.insert(p.to_string());
            }
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
        let Some(service) = inv.service(ns, svc) else {
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
            .get(&(ns, svc))
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
                    && sources::identityless_rule_ports(inv, server)
                        .is_some_and(|p| p.is_subset(&needs_open)))
            })
            .filter(|a| {
                !(sources::is_principal_pattern(a)
                    && required
                        .iter()
                        .any(|r| authz::principal_pattern_matches(a, r)))
            })
            .cloned()
            .collect();
        out.push(ServerAccess {
            namespace: ns.to_string(),
            service: svc.to_string(),
            workload: server.name.clone(),
            required: required.into_iter().collect(),
            allowed,
            excess,
        });
    }
    out
}

/// What the enforced ALLOW policies of a workload admit, as the labels reports use (see
/// `kfp_mesh_core::mesh::authz::sources::AllowedSource::label`).
pub fn allowed_identities(inv: &Inventory, server: &Workload) -> Vec<String> {
    sources::allowed_sources(inv, server)
        .iter()
        .map(sources::AllowedSource::label)
        .collect()
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
