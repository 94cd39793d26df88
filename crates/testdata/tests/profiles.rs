//! The synthetic profiles of the scale benchmark: what `docs/performance.md` says they hold, as
//! YAML and as one JSON `List` (`gen-profiles`).

use std::collections::BTreeSet;
use std::process::Command;

use kfp_mesh_testdata::profiles::{DEFAULT_PODS, profiles};

/// The identity (kind, namespace, name) of every document of a YAML stream.
fn identities(values: &[serde_json::Value]) -> BTreeSet<(String, String, String)> {
    values
        .iter()
        .map(|v| {
            let s = |p: &str| {
                v.pointer(p)
                    .and_then(|x| x.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            (s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
        })
        .collect()
}

fn documents(yaml: &str) -> Vec<serde_json::Value> {
    yaml.split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).expect("generated YAML reads"))
        .collect()
}

#[test]
fn each_profile_is_49_distinct_objects() {
    let docs = documents(&profiles(3, DEFAULT_PODS));
    assert_eq!(docs.len(), 3 * 49);
    let ids = identities(&docs);
    assert_eq!(ids.len(), docs.len(), "an object written twice");
    assert!(
        ids.iter()
            .all(|(kind, _, name)| !kind.is_empty() && !name.is_empty())
    );
    let pods = ids
        .iter()
        .filter(|(k, ns, _)| k == "Pod" && ns == "user-2")
        .count();
    assert_eq!(pods, DEFAULT_PODS);
    // 24 objects a profile besides its runs; a run is four pods and their Workflow.
    let runs = DEFAULT_PODS / 4;
    assert_eq!(documents(&profiles(1, 4)).len(), 49 - 5 * runs + 5);
}

fn gen_profiles(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gen-profiles"))
        .args(args)
        .output()
        .expect("gen-profiles runs")
}

#[test]
fn the_json_list_holds_the_same_objects() {
    let out = gen_profiles(&["2", "--json-list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON value");
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().expect("items").clone();
    assert_eq!(
        identities(&items),
        identities(&documents(&profiles(2, DEFAULT_PODS)))
    );
}

#[test]
fn help_and_bad_arguments() {
    let help = gen_profiles(&["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("usage: gen-profiles"));
    for (args, said) in [
        (&["--jsonlist", "2"][..], "`--jsonlist` is not a number"),
        (&["2", "3", "4"][..], "one number too many: `4`"),
        (&[][..], "how many profiles?"),
    ] {
        let out = gen_profiles(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(said),
            "{args:?}"
        );
    }
}
