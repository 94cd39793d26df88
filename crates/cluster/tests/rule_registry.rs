//! The finding catalog and the rules agree: every code of `catalog/findings.yaml` is emitted by
//! exactly one rule of `check` (`kfp_mesh_kfp::check::rules::RULES`) or by `verify`'s live
//! facts (`kfp_mesh_cluster::facts::LIVE_CODES`), and every live code has a live test that
//! makes it fire (tests/verify_cluster.rs; the check codes have theirs in
//! crates/kfp/tests/codes).

use std::collections::BTreeMap;

use kfp_mesh_cluster::facts::LIVE_CODES;
use kfp_mesh_kfp::check::rules::RULES;
use kfp_mesh_kfp::findings::Code;

#[test]
fn every_catalog_code_belongs_to_exactly_one_rule() {
    let mut owners: BTreeMap<Code, Vec<&str>> = BTreeMap::new();
    for rule in RULES {
        for code in rule.codes {
            owners.entry(*code).or_default().push(rule.name);
        }
    }
    for code in LIVE_CODES {
        owners.entry(*code).or_default().push("verify (live facts)");
    }
    let mut problems = Vec::new();
    for code in Code::ALL {
        match owners.get(code).map(Vec::as_slice) {
            None | Some([]) => problems.push(format!("{code} belongs to no rule")),
            Some([_]) => {}
            Some(many) => problems.push(format!("{code} belongs to several rules: {many:?}")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_live_code_fires_in_a_live_test() {
    let tests = include_str!("verify_cluster.rs");
    for code in LIVE_CODES {
        let needle = format!("f.code == \"{code}\"");
        assert!(
            tests.contains(&needle),
            "{code}: no live test asserts it (`{needle}` in tests/verify_cluster.rs)"
        );
    }
}
