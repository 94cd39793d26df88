//! KM042: a PeerAuthentication in the root namespace with a selector, which Istio applies to no
//! workload.

use super::{Context, Rule};
use crate::findings::{Code, Finding};

pub const RULE: Rule = Rule {
    name: "root-selector",
    codes: &[Code::IneffectiveRootSelector],
    run,
};

fn run(cx: &Context<'_>) -> Vec<Finding> {
    let inv = cx.inv;
    let mut findings = Vec::new();
    let root = inv.mesh.root_namespace.clone();
    for pa in inv.peer_authentications_in(&root) {
        if pa.spec.selector.as_ref().and_then(|s| s.labels()).is_some() {
            findings.push(Finding::new(
                Code::IneffectiveRootSelector,
                kfp_mesh_core::text!(
                    "{} is in the root namespace {root} and has a selector: Istio applies it to no workload",
                    pa.object_ref()
                ),
                Some(&pa.cite()),
            ));
        }
    }
    findings
}
