//! KM030: an allow-all AuthorizationPolicy (`rules: [{}]`) on a KFP server whose every port
//! enforces STRICT, where naming the callers costs nothing.

use kfp_mesh_core::mesh::peer_authn::{self, MtlsMode};
use kfp_mesh_core::model::AuthzAction;

use crate::check::access::container_ports;

use super::{Context, Rule};
use crate::findings::{Code, Finding};

pub const RULE: Rule = Rule {
    name: "allow-all",
    codes: &[Code::AllowAllPolicy],
    run,
};

fn run(cx: &Context<'_>) -> Vec<Finding> {
    let (inv, facts) = (cx.inv, cx.facts);
    let ns = facts.kfp_namespace();
    let mut findings = Vec::new();
    for a in cx.access {
        let Some(server) = inv.workload(&a.namespace, &a.workload) else {
            continue;
        };
        let strict = container_ports(server)
            .into_iter()
            .all(|p| peer_authn::effective_mode(inv, server, p).value == MtlsMode::Strict);
        if !strict {
            continue;
        }
        for p in inv.authorization_policies_in(ns) {
            let applies = p
                .spec
                .selector
                .as_ref()
                .and_then(|s| s.labels())
                .is_none_or(|sel| sel.iter().all(|(k, v)| server.labels.get(k) == Some(v)));
            if !applies || p.spec.action != AuthzAction::Allow {
                continue;
            }
            let allow_all = p
                .spec
                .rules
                .iter()
                .flatten()
                .flatten()
                .any(|r| r.from.is_none() && r.to.is_none() && r.when.is_none());
            if allow_all {
                findings.push(Finding::new(
                    Code::AllowAllPolicy,
                    format!(
                        "{} allows every caller of {} (`rules: [{{}}]`) although every port of it enforces STRICT mTLS",
                        p.object_ref(),
                        a.service
                    ),
                    Some(&p.cite()),
                ));
            }
        }
    }
    findings
}
