//! A fixture per finding code, like kube-linter's per-check test data: for every code that
//! `check` can emit, `tests/codes/KMnnn.yaml` holds one input where it fires and one where it
//! must not. A code without a fixture (or a fixture for a code no rule declares) fails here.
//!
//! Fixture format: `fires` and `quiet`, each a case `{base, add, remove, replace}`: `base` is
//! `strict` / `fixed` (the built-in example before and after the kfp-mesh components,
//! examples/kfp-2.5.0-single-user) or `upstream/FILE` (a render of ../shared/upstream); `add`
//! is YAML documents appended, `remove` drops objects (`Kind/namespace/name`), `replace` is a
//! list of `[from, to]` text substitutions on the base (each must match).

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use kfp_mesh_core::inventory::{Inventory, parse_stream};
use kfp_mesh_kfp::check::rules::RULES;
use kfp_mesh_kfp::check::{CheckOptions, check};
use kfp_mesh_kfp::findings::Code;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    fires: Case,
    quiet: Case,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    base: String,
    #[serde(default)]
    add: Option<String>,
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    replace: Vec<[String; 2]>,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/codes")
}

fn example(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/kfp-2.5.0-single-user")
        .join(format!("{name}.yaml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn inventory(code: &str, what: &str, c: &Case) -> Inventory {
    let mut text = match c.base.as_str() {
        "strict" | "fixed" => example(&c.base),
        other => match other.strip_prefix("upstream/") {
            Some(file) => common::read(file),
            None => panic!("{code} {what}: unknown base {other}"),
        },
    };
    for [from, to] in &c.replace {
        assert!(
            text.contains(from.as_str()),
            "{code} {what}: {from:?} is not in the base"
        );
        text = text.replacen(from.as_str(), to, 1);
    }
    let (mut objects, mut errors) = parse_stream(&c.base, &text);
    for r in &c.remove {
        let before = objects.len();
        objects.retain(|o| {
            format!(
                "{}/{}/{}",
                o.kind,
                o.meta.namespace.as_deref().unwrap_or_default(),
                o.meta.name
            ) != *r
        });
        assert!(
            objects.len() < before,
            "{code} {what}: nothing to remove for {r}"
        );
    }
    if let Some(add) = &c.add {
        let (o, e) = parse_stream(&format!("{code}.yaml"), add);
        objects.extend(o);
        errors.extend(e);
    }
    Inventory::from_objects(objects, errors)
}

fn fixtures() -> Vec<(Code, Fixture)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir()).unwrap_or_else(|e| panic!("tests/codes: {e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let code =
            Code::parse(&stem).unwrap_or_else(|| panic!("{}: not a finding code", path.display()));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let f: Fixture = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{stem}: {e}"));
        out.push((code, f));
    }
    out.sort_by_key(|(c, _)| *c);
    out
}

#[test]
fn every_code_fires_on_its_fixture_and_stays_quiet_on_the_other() {
    let mut failures = Vec::new();
    for (code, f) in fixtures() {
        for (what, case, want) in [("fires", &f.fires, true), ("quiet", &f.quiet, false)] {
            let inv = inventory(code.as_str(), what, case);
            let r = check(&inv, &CheckOptions::default());
            let found: BTreeSet<Code> = r.findings.iter().map(|f| f.code).collect();
            if found.contains(&code) != want {
                failures.push(format!(
                    "{code} {what}: {} (findings: {:?})",
                    if want { "does not fire" } else { "fires" },
                    r.findings
                        .iter()
                        .map(|f| format!("{} {}", f.code, f.message))
                        .collect::<Vec<_>>()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_code_of_check_has_a_fixture() {
    let declared: BTreeSet<Code> = RULES.iter().flat_map(|r| r.codes.iter().copied()).collect();
    let with_fixture: BTreeSet<Code> = fixtures().into_iter().map(|(c, _)| c).collect();
    let missing: Vec<&Code> = declared.difference(&with_fixture).collect();
    assert!(
        missing.is_empty(),
        "codes without a fixture in tests/codes: {missing:?}"
    );
    let stray: Vec<&Code> = with_fixture.difference(&declared).collect();
    assert!(
        stray.is_empty(),
        "fixtures for codes no rule of check declares: {stray:?}"
    );
}
