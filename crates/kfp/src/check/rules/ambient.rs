//! Istio's ambient mode around KFP: L7 rules where ztunnel enforces (KM080), a waypoint that
//! is referenced but missing (KM081), sidecar and ambient in one flow (KM082), an
//! `istio.io/use-waypoint` label where it has no effect (KM083).

use std::collections::{BTreeSet, HashMap};

/// A hash map keyed by workloads and names (foldhash, seeded per process).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

use kfp_mesh_core::inventory::Workload;
use kfp_mesh_core::mesh::authz::{self, Attachment, Enforcer};
use kfp_mesh_core::mesh::membership::{self, DataPlane};
use kfp_mesh_core::mesh::waypoint::{self, USE_WAYPOINT_LABEL};
use kfp_mesh_core::model::AuthzAction;

use super::{Context, Rule};
use crate::findings::{Code, Finding};

pub const RULE: Rule = Rule {
    name: "ambient",
    codes: &[
        Code::L7RuleAtZtunnel,
        Code::WaypointMissing,
        Code::MixedDataPlanes,
        Code::UseWaypointNoEffect,
    ],
    run,
};

/// Kinds on which Istio reads `istio.io/use-waypoint`.
const USE_WAYPOINT_KINDS: &[&str] = &[
    "Namespace",
    "Service",
    "ServiceEntry",
    "Pod",
    "WorkloadEntry",
];

fn run(cx: &Context<'_>) -> Vec<Finding> {
    let inv = cx.inv;
    let mut findings = Vec::new();
    // The KFP servers: the endpoints of the flows' Services.
    let mut services = BTreeSet::new();
    let mut servers: Vec<&Workload> = Vec::new();
    // Each server once (by identity: a large cluster has tens of thousands of them).
    let mut seen: std::collections::HashSet<*const Workload, foldhash::fast::RandomState> =
        std::collections::HashSet::default();
    for f in cx.flows {
        if !services.insert((f.to.namespace.as_str(), f.to.service.as_str())) {
            continue;
        }
        if let Some(svc) = inv.service(&f.to.namespace, &f.to.service) {
            for w in inv.service_endpoints(svc) {
                if seen.insert(std::ptr::from_ref(w)) {
                    servers.push(w);
                }
            }
        }
    }

    // KM080: HTTP attributes in policies ztunnel enforces.
    for server in &servers {
        if membership::data_plane(inv, server).value != DataPlane::Ambient {
            continue;
        }
        let namespaces = [inv.mesh.root_namespace.as_str(), server.namespace.as_str()];
        for ns in namespaces {
            for p in inv.authorization_policies_in(ns) {
                if !matches!(
                    authz::policy_attachment(inv, server, Enforcer::Ztunnel, p),
                    Attachment::Applies(_)
                ) {
                    continue;
                }
                let http: BTreeSet<String> = p
                    .spec
                    .rules
                    .iter()
                    .flatten()
                    .flatten()
                    .flat_map(authz::ztunnel_http_attributes)
                    .collect();
                if http.is_empty() {
                    continue;
                }
                let effect = match p.spec.action {
                    AuthzAction::Deny => {
                        "ztunnel enforces its DENY rules without them, so they deny more than written (or nothing)"
                    }
                    _ => "ztunnel omits those rules, so callers only they admit are refused",
                };
                findings.push(Finding::new(
                    Code::L7RuleAtZtunnel,
                    kfp_mesh_core::text!(
                        "{} applies to {} (ambient, enforced by ztunnel) and uses HTTP attributes ({}): {effect}; move them to a policy with `targetRefs` enforced by a waypoint",
                        p.object_ref(),
                        server.object_ref(),
                        http.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                    Some(&p.cite()),
                ));
            }
        }
    }

    // KM081: a waypoint that is referenced but missing.
    for (ns, name) in &services {
        let Some(svc) = inv.service(ns, name) else {
            continue;
        };
        let Some(wp) = waypoint::service_waypoint(inv, svc) else {
            continue;
        };
        let problem = match &wp.gateway {
            None => kfp_mesh_core::text!("the input has no Gateway {}/{}", wp.namespace, wp.name),
            Some(g) if g.class != "istio-waypoint" => kfp_mesh_core::text!(
                "Gateway {}/{} has class `{}`, not `istio-waypoint`",
                wp.namespace,
                wp.name,
                g.class
            ),
            Some(g) if !g.takes_service_traffic() => kfp_mesh_core::text!(
                "Gateway {}/{} is a waypoint for `{}`, not for Services",
                wp.namespace,
                wp.name,
                g.waypoint_for
            ),
            Some(_) => continue,
        };
        let about = wp.labelled_by.clone().unwrap_or_else(|| svc.cite());
        findings.push(Finding::new(
            Code::WaypointMissing,
            kfp_mesh_core::text!(
                "Service {ns}/{name} is sent to waypoint {}/{} ({USE_WAYPOINT_LABEL} on its {}), but {problem}",
                wp.namespace,
                wp.name,
                match wp.source {
                    waypoint::LabelSource::Service => "Service",
                    waypoint::LabelSource::Namespace => "Namespace",
                }
            ),
            Some(&about),
        ));
    }

    // KM082: sidecar and ambient in one flow. The data plane of each client is decided once,
    // and each Service's endpoints with theirs (a large cluster has tens of thousands of flows
    // over a few thousand workloads and Services).
    let mut planes: FastMap<*const Workload, DataPlane> = FastMap::default();
    let mut servers_of: FastMap<(&str, &str), Vec<(&Workload, DataPlane)>> = FastMap::default();
    for f in cx.flows {
        let Some(ns) = f.from.namespace.as_deref() else {
            continue;
        };
        let Some(client) = inv.workload(ns, &f.from.workload) else {
            continue;
        };
        let client_dp = *planes
            .entry(std::ptr::from_ref(client))
            .or_insert_with(|| membership::data_plane(inv, client).value);
        // Only a client in the mesh can be on the other data plane from its server.
        if client_dp == DataPlane::Plain {
            continue;
        }
        let servers = servers_of
            .entry((f.to.namespace.as_str(), f.to.service.as_str()))
            .or_insert_with(|| match inv.service(&f.to.namespace, &f.to.service) {
                Some(svc) => inv
                    .service_endpoints(svc)
                    .into_iter()
                    .map(|w| (w, membership::data_plane(inv, w).value))
                    .collect(),
                None => Vec::new(),
            });
        for &(server, server_dp) in servers.iter() {
            let mixed = matches!(
                (client_dp, server_dp),
                (DataPlane::Sidecar, DataPlane::Ambient) | (DataPlane::Ambient, DataPlane::Sidecar)
            );
            if mixed {
                findings.push(
                    Finding::new(
                        Code::MixedDataPlanes,
                        kfp_mesh_core::text!(
                            "{}: {} ({}) -> {} ({}): one flow across a sidecar and ztunnel",
                            f.id,
                            client.object_ref(),
                            dp_name(client_dp),
                            server.object_ref(),
                            dp_name(server_dp)
                        ),
                        Some(&server.cite()),
                    )
                    .for_flow(&f.id),
                );
                break;
            }
        }
    }

    // KM083: `istio.io/use-waypoint` where Istio does not read it, or where nothing is ambient.
    for o in &inv.objects {
        if o.meta.label(USE_WAYPOINT_LABEL).is_none() {
            continue;
        }
        let why = if !USE_WAYPOINT_KINDS.contains(&o.kind.as_str()) {
            kfp_mesh_core::text!("Istio does not read it on a {}", o.kind)
        } else if o.kind == "Service"
            && let Some(svc) = inv.service(o.meta.namespace_or_default(), &o.meta.name)
            && let endpoints = inv.service_endpoints(svc)
            && !endpoints.is_empty()
            && endpoints
                .iter()
                .all(|w| membership::data_plane(inv, w).value != DataPlane::Ambient)
        {
            "none of the Service's pods is captured by ztunnel".to_string()
        } else {
            continue;
        };
        findings.push(Finding::new(
            Code::UseWaypointNoEffect,
            kfp_mesh_core::text!(
                "{} carries `{USE_WAYPOINT_LABEL}` but {why}: the label has no effect",
                o.object_ref()
            ),
            Some(&o.cite()),
        ));
    }
    findings
}

fn dp_name(dp: DataPlane) -> &'static str {
    match dp {
        DataPlane::Sidecar => "sidecar",
        DataPlane::Ambient => "ambient",
        DataPlane::Plain => "no mesh",
    }
}
