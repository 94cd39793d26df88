//! Catalog flows without a verdict: a required flow that could not be resolved (KM070), whose
//! caller or server is not in the input (KM071), or whose client is configured for a host no
//! Service provides (KM072, any flow).

use std::collections::BTreeSet;

use crate::catalog::UnresolvedKind;

use super::{Context, Rule};
use crate::findings::{Code, Finding};

pub const RULE: Rule = Rule {
    name: "unresolved",
    codes: &[
        Code::FlowUnresolved,
        Code::FlowNotInInput,
        Code::ConfiguredHostMissing,
    ],
    run,
};

fn run(cx: &Context<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut configured: BTreeSet<&str> = BTreeSet::new();
    for u in cx.unresolved {
        let Some(c) = &u.configured else { continue };
        configured.insert(u.flow.as_str());
        findings.push(
            Finding::new(
                Code::ConfiguredHostMissing,
                kfp_mesh_core::text!(
                    "{}: the client is configured to reach `{}` ({}), which no Service in the input provides; the connection fails in the cluster too",
                    u.flow, c.text, c.evidence.detail
                ),
                c.evidence.cite().as_ref(),
            )
            .for_flow(&u.flow),
        );
    }
    for u in cx.unresolved.iter().filter(|u| u.required) {
        let code = match u.kind {
            UnresolvedKind::CouldNotResolve if configured.contains(u.flow.as_str()) => continue,
            UnresolvedKind::CouldNotResolve => Code::FlowUnresolved,
            UnresolvedKind::NotInInput => Code::FlowNotInInput,
            UnresolvedKind::OutsideMesh => continue,
        };
        let message = match u.kind {
            UnresolvedKind::NotInInput => {
                kfp_mesh_core::text!("{}: not in the input: {}", u.flow, u.reason)
            }
            _ => kfp_mesh_core::text!("{}: {}", u.flow, u.reason),
        };
        findings.push(Finding::new(code, message, u.object.as_ref()).for_flow(&u.flow));
    }
    findings
}
