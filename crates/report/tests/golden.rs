//! Golden files for `-o dot` and `-o mermaid`: the output is stable, byte for byte.
//! `KFP_MESH_UPDATE_GOLDEN=1 cargo test -p kfp-mesh-report --test golden` rewrites them.

mod common;

use std::path::PathBuf;

use common::*;

fn golden(name: &str, have: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("KFP_MESH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, have).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (create it with KFP_MESH_UPDATE_GOLDEN=1)",
            path.display()
        )
    });
    if want != have {
        let diff: Vec<String> = want
            .lines()
            .zip(have.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {}:\n- {a}\n+ {b}", i + 1))
            .collect();
        panic!(
            "{} differs from the output ({} vs {} lines):\n{}\n(update with KFP_MESH_UPDATE_GOLDEN=1 after checking the change)",
            path.display(),
            want.lines().count(),
            have.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn dot_and_mermaid_of_the_builtin_example() {
    let r = example_report();
    golden("example.dot", &kfp_mesh_report::dot(&r));
    golden("example.mmd", &kfp_mesh_report::mermaid(&r));
}

#[test]
fn dot_and_mermaid_of_issue_12015() {
    let r = report_12015();
    let dot = kfp_mesh_report::dot(&r);
    assert!(dot.contains("-> n") && dot.contains("driver-wait-to-object-store"));
    golden("kfp-2.5.0-strict.dot", &dot);
    golden("kfp-2.5.0-strict.mmd", &kfp_mesh_report::mermaid(&r));
}

#[test]
fn dot_and_mermaid_of_a_summarised_map() {
    let r = profiles_report(12);
    let dot = kfp_mesh_report::dot(&r);
    assert!(dot.contains("12 profile namespaces (folded)"));
    golden("kfp-2.5.0-multi-user-12-profiles.dot", &dot);
    golden(
        "kfp-2.5.0-multi-user-12-profiles.mmd",
        &kfp_mesh_report::mermaid(&r),
    );
}

#[test]
fn mermaid_is_well_formed() {
    let m = kfp_mesh_report::mermaid(&report_12015());
    let mut lines = m.lines().filter(|l| !l.starts_with("%%"));
    assert_eq!(lines.next(), Some("flowchart LR"));
    let opened = m
        .lines()
        .filter(|l| l.trim_start().starts_with("subgraph "))
        .count();
    let closed = m.lines().filter(|l| l.trim() == "end").count();
    assert_eq!(opened, closed);
    let edges = m.lines().filter(|l| l.contains(" -->|")).count();
    let styles = m
        .lines()
        .filter(|l| l.trim_start().starts_with("linkStyle "))
        .count();
    assert_eq!(edges, styles);
    for l in m.lines().filter(|l| l.contains(" -->|")) {
        assert_eq!(l.matches('"').count(), 2, "{l}");
        assert_eq!(l.matches('|').count(), 2, "{l}");
    }
}
