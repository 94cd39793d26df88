//! KM033: a KFP server port that still accepts plaintext although every caller the catalog
//! lists for it uses mTLS.

use std::collections::{BTreeMap, BTreeSet};

use kfp_mesh_core::connection::{Outcome, Transport};
use kfp_mesh_core::mesh::peer_authn::{self, MtlsMode};

use super::{Context, Rule};
use crate::findings::{Code, Finding};

pub const RULE: Rule = Rule {
    name: "plaintext-accepted",
    codes: &[Code::PlaintextAccepted],
    run,
};

fn run(cx: &Context<'_>) -> Vec<Finding> {
    let (inv, flows) = (cx.inv, cx.flows);
    let mut findings = Vec::new();
    for (a, server) in cx.servers() {
        let Some(service) = inv.service(&a.namespace, &a.service) else {
            continue;
        };
        // target port → (every caller over mTLS, service ports)
        let mut ports: BTreeMap<u16, (bool, BTreeSet<u16>)> = BTreeMap::new();
        for f in flows.iter().filter(|f| {
            f.to.namespace == a.namespace
                && f.to.service == a.service
                && !(f.from.workload == "kubelet" && f.from.namespace.is_none())
        }) {
            let Some(target) = service
                .spec
                .ports
                .iter()
                .find(|p| p.port == i64::from(f.to.port))
                .and_then(|p| server.target_port(p))
            else {
                continue;
            };
            let entry = ports.entry(target).or_insert((true, BTreeSet::new()));
            entry.0 &= f.outcome == Outcome::Allow && f.transport == Some(Transport::Mtls);
            entry.1.insert(f.to.port);
        }
        for (target, (all_mtls, service_ports)) in ports {
            if !all_mtls
                || peer_authn::effective_mode(inv, server, target).value != MtlsMode::Permissive
            {
                continue;
            }
            let listed: Vec<String> = service_ports.iter().map(u16::to_string).collect();
            findings.push(Finding::new(
                Code::PlaintextAccepted,
                kfp_mesh_core::text!(
                    "{}/{} accepts plaintext on port {} (container port {target}: PERMISSIVE) although every caller the flow catalog lists for it uses mTLS",
                    a.namespace,
                    a.service,
                    listed.join(", ")
                ),
                Some(&service.cite()),
            ));
        }
    }
    findings
}
