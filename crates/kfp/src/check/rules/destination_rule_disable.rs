//! KM021: a DestinationRule with `tls.mode: DISABLE` toward a server that enforces STRICT
//! (sidecar clients get 503).

use kfp_mesh_core::inventory::{Inventory, Service};
use kfp_mesh_core::mesh::membership::{self, DataPlane};
use kfp_mesh_core::mesh::peer_authn::{self, MtlsMode};
use kfp_mesh_core::model::TlsMode;

use super::{Context, Rule};
use crate::findings::{Code, Finding};

pub const RULE: Rule = Rule {
    name: "destination-rule-disable",
    codes: &[Code::DestinationRuleDisableToStrict],
    run,
};

fn run(cx: &Context<'_>) -> Vec<Finding> {
    let inv = cx.inv;
    let mut findings = Vec::new();
    for (ns, drs) in &inv.destination_rules {
        for dr in drs {
            let Some(tp) = &dr.spec.traffic_policy else {
                continue;
            };
            let disabled_top = tp.tls.as_ref().and_then(|t| t.mode) == Some(TlsMode::Disable);
            let Some(service) = dr_service(inv, ns, &dr.spec.host) else {
                continue;
            };
            for port in &service.spec.ports {
                let port_level = tp.port_level_settings.iter().flatten().find(|p| {
                    p.port.as_ref().and_then(|p| p.number) == u32::try_from(port.port).ok()
                });
                let disabled = match port_level {
                    Some(pl) => pl.tls.as_ref().and_then(|t| t.mode) == Some(TlsMode::Disable),
                    None => disabled_top,
                };
                if !disabled {
                    continue;
                }
                for ep in inv.service_endpoints(service) {
                    let Some(target) = ep.target_port(port) else {
                        continue;
                    };
                    if membership::data_plane(inv, ep).value == DataPlane::Sidecar
                        && peer_authn::effective_mode(inv, ep, target).value == MtlsMode::Strict
                    {
                        findings.push(Finding::new(
                            Code::DestinationRuleDisableToStrict,
                            kfp_mesh_core::text!(
                                "{} sends plaintext to {}/{} port {} whose server {} enforces STRICT: sidecar clients get 503",
                                dr.object_ref(),
                                service.namespace(),
                                service.name(),
                                port.port,
                                ep.object_ref()
                            ),
                            Some(&dr.cite()),
                        ));
                    }
                }
            }
        }
    }
    findings
}

/// The Service a DestinationRule host names (short name relative to the rule's namespace, or
/// the full `name.ns.svc.cluster.local`).
fn dr_service<'a>(inv: &'a Inventory, dr_ns: &str, host: &str) -> Option<&'a Service> {
    if !host.contains('.') {
        return inv.service(dr_ns, host);
    }
    let trimmed = host.strip_suffix(".svc.cluster.local")?;
    let (name, ns) = trimmed.split_once('.')?;
    inv.service(ns, name)
}
