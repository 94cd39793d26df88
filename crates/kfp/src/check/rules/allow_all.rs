//! KM030: an allow-all AuthorizationPolicy (`rules: [{}]`) on a KFP server whose every port
//! enforces STRICT, where naming the callers costs nothing.

use kfp_mesh_core::mesh::authz::sources;
use kfp_mesh_core::mesh::peer_authn::{self, MtlsMode};

use super::{Context, Rule};
use crate::findings::{Code, Finding};

pub const RULE: Rule = Rule {
    name: "allow-all",
    codes: &[Code::AllowAllPolicy],
    run,
};

fn run(cx: &Context<'_>) -> Vec<Finding> {
    let inv = cx.inv;
    let mut findings = Vec::new();
    for (a, server) in cx.servers() {
        let strict = sources::container_ports(server)
            .into_iter()
            .all(|p| peer_authn::effective_mode(inv, server, p).value == MtlsMode::Strict);
        if !strict {
            continue;
        }
        for p in sources::allow_all_policies(inv, server) {
            findings.push(Finding::new(
                Code::AllowAllPolicy,
                kfp_mesh_core::text!(
                    "{} allows every caller of {} (`rules: [{{}}]`) although every port of it enforces STRICT mTLS",
                    p.object, a.service
                ),
                Some(&p),
            ));
        }
    }
    findings
}
