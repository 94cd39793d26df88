//! KM031: a KFP server admits identities (or, under STRICT, any mesh identity) that no flow of
//! the catalog needs.

use crate::check::access::describe_allowed;

use super::{Context, Rule};
use crate::findings::{Code, Finding};

pub const RULE: Rule = Rule {
    name: "excess-access",
    codes: &[Code::ExcessAccess],
    run,
};

fn run(cx: &Context<'_>) -> Vec<Finding> {
    let inv = cx.inv;
    let mut findings = Vec::new();
    for a in cx.access {
        let excess: Vec<&String> = a
            .excess
            .iter()
            .filter(|e| !a.required.iter().any(|r| r == *e))
            .collect();
        if excess.is_empty() {
            continue;
        }
        let list: Vec<String> = excess.iter().map(|s| describe_allowed(s)).collect();
        findings.push(Finding::new(
            Code::ExcessAccess,
            kfp_mesh_core::text!(
                "{}/{} admits identities no KFP flow needs: {}",
                a.namespace,
                a.service,
                list.join(", ")
            ),
            inv.service(&a.namespace, &a.service)
                .map(|s| s.cite())
                .as_ref(),
        ));
    }
    findings
}
