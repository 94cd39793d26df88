//! The rules of `kfp-mesh check`, one per file, like the analyzers of Istio's
//! `pkg/config/analysis`: each declares the finding codes it can emit ([`Rule::codes`]) and
//! turns the evaluated install ([`Context`]) into findings. Every code of the catalog
//! (`catalog/findings.yaml`) belongs to exactly one rule here, or to `verify`'s live facts
//! (crates/cluster), and has a fixture that makes it fire and one that must not
//! (crates/kfp/tests/codes.rs).

mod allow_all;
mod ambient;
mod destination_rule_disable;
mod excess_access;
mod flow_outcome;
mod input;
mod plaintext_accepted;
mod principal_pattern;
mod root_selector;
mod run_pods;
mod unresolved;

use kfp_mesh_core::inventory::{Inventory, Workload};

use super::{FlowResult, ServerAccess, Unresolved};
use crate::detect::KfpFacts;
use crate::findings::{Code, Finding};
use crate::runpods::RunPod;

/// What every rule sees: the inventory (with the modelled run pods), the detected install, the
/// evaluated flows, the access view and the flows without a verdict.
pub struct Context<'a> {
    pub inv: &'a Inventory,
    pub facts: &'a KfpFacts,
    pub flows: &'a [FlowResult],
    pub access: &'a [ServerAccess],
    pub run_pods: &'a [RunPod],
    pub unresolved: &'a [Unresolved],
}

impl<'a> Context<'a> {
    /// Each KFP server of the access view, with its workload.
    pub fn servers(&self) -> impl Iterator<Item = (&'a ServerAccess, &'a Workload)> + '_ {
        let inv = self.inv;
        self.access
            .iter()
            .filter_map(move |a| Some((a, inv.workload(&a.namespace, &a.workload)?)))
    }
}

/// One rule: its name, the codes it may emit, and the function that finds them.
pub struct Rule {
    pub name: &'static str,
    pub codes: &'static [Code],
    pub run: fn(&Context<'_>) -> Vec<Finding>,
}

/// Every rule of `check`, in the order they run.
pub const RULES: &[Rule] = &[
    input::RULE,
    unresolved::RULE,
    flow_outcome::RULE,
    run_pods::RULE,
    allow_all::RULE,
    excess_access::RULE,
    principal_pattern::RULE,
    plaintext_accepted::RULE,
    destination_rule_disable::RULE,
    root_selector::RULE,
    ambient::RULE,
];

/// Run every rule. A rule that emits a code it does not declare is a defect: tests (debug
/// builds) stop on it.
pub fn run_all(cx: &Context<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for rule in RULES {
        let found = (rule.run)(cx);
        debug_assert!(
            found.iter().all(|f| rule.codes.contains(&f.code)),
            "rule {} emitted an undeclared code",
            rule.name
        );
        out.extend(found);
    }
    out
}
