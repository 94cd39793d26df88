//! KM032: a principal pattern the catalog's callers need (multi-user run pods in profile
//! namespaces that cannot be listed), which admits more than them.

use kfp_mesh_core::mesh::authz::{self, sources};

use super::{Context, Rule};
use crate::findings::{Code, Finding};

pub const RULE: Rule = Rule {
    name: "principal-pattern",
    codes: &[Code::PrincipalPattern],
    run,
};

fn run(cx: &Context<'_>) -> Vec<Finding> {
    let inv = cx.inv;
    let mut findings = Vec::new();
    for (a, server) in cx.servers() {
        for pattern in a
            .allowed
            .iter()
            .filter(|e| sources::is_principal_pattern(e))
        {
            let served: Vec<&str> = a
                .required
                .iter()
                .filter(|r| authz::principal_pattern_matches(pattern, r))
                .map(String::as_str)
                .collect();
            if served.is_empty() {
                continue;
            }
            let policies = sources::allow_policies_naming(inv, server, pattern);
            let message = kfp_mesh_core::text!(
                "{}/{} admits the principal pattern `{pattern}` ({}): every identity that matches it reaches the server, not only the {} the flow catalog needs ({})",
                a.namespace,
                a.service,
                pattern_scope(pattern),
                served.len(),
                served.join(", ")
            );
            if policies.is_empty() {
                findings.push(Finding::new(
                    Code::PrincipalPattern,
                    message.clone(),
                    inv.service(&a.namespace, &a.service)
                        .map(|s| s.cite())
                        .as_ref(),
                ));
            }
            for p in policies {
                findings.push(Finding::new(
                    Code::PrincipalPattern,
                    message.clone(),
                    Some(&p),
                ));
            }
        }
    }
    findings
}

/// What a principal pattern admits, in words.
fn pattern_scope(pattern: &str) -> String {
    if let Some(suffix) = pattern.strip_prefix('*') {
        if let Some(sa) = suffix.strip_prefix("/sa/") {
            return kfp_mesh_core::text!(
                "the ServiceAccount `{sa}` of every namespace, in any trust domain"
            );
        }
        return kfp_mesh_core::text!("every principal ending in `{suffix}`");
    }
    let prefix = pattern.trim_end_matches('*');
    kfp_mesh_core::text!("every principal starting with `{prefix}`")
}
