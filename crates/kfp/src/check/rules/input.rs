//! Input the analysis could not use: documents that do not read (KM050), objects Istio's
//! validation rejects (KM040) or warns about (KM041).

use kfp_mesh_core::object::Cited;

use super::{Context, Rule};
use crate::findings::{Code, Finding};

pub const RULE: Rule = Rule {
    name: "input",
    codes: &[Code::IstioRejects, Code::IstioWarns, Code::UnreadableInput],
    run,
};

fn run(cx: &Context<'_>) -> Vec<Finding> {
    let inv = cx.inv;
    let mut findings = Vec::new();
    for e in &inv.errors {
        let about = e
            .object
            .clone()
            .map(|object| Cited::new(object, e.origin.clone()));
        let mut f = Finding::new(Code::UnreadableInput, e.message.clone(), about.as_ref());
        if about.is_none() {
            f.file = Some(e.origin.source.to_string());
            f.line = Some(e.origin.line);
        }
        findings.push(f);
    }
    for r in &inv.rejected {
        for i in &r.issues {
            findings.push(Finding::new(
                Code::IstioRejects,
                kfp_mesh_core::text!("Istio rejects it ({}): {}", i.code, i.message),
                Some(&r.object),
            ));
        }
    }
    for r in &inv.warnings {
        for i in &r.issues {
            findings.push(Finding::new(
                Code::IstioWarns,
                kfp_mesh_core::text!("Istio warns ({}): {}", i.code, i.message),
                Some(&r.object),
            ));
        }
    }
    findings
}
