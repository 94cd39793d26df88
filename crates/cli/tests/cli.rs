//! The `kfp-mesh` binary end to end: outputs, exit codes, input handling.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kfp-mesh"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("kfp-mesh runs")
}

fn run_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kfp-mesh runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("kfp-mesh ends")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Compare with a golden file; `KFP_MESH_UPDATE_GOLDEN=1` rewrites it.
fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("KFP_MESH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (create it with KFP_MESH_UPDATE_GOLDEN=1)",
            path.display()
        )
    });
    if want != actual {
        let diff: Vec<String> = want
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {}:\n  want: {a}\n  have: {b}", i + 1))
            .collect();
        panic!(
            "{} differs from the output ({} vs {} lines):\n{}\n(update with KFP_MESH_UPDATE_GOLDEN=1 after checking the change)",
            path.display(),
            want.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn tls_check_example_explains_the_reset_and_the_fix() {
    let o = run(&["tls-check", "--example"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("outcome:   reset"), "{out}");
    assert!(out.contains("filter_chain_not_found"), "{out}");
    assert!(out.contains("[B3] mesh-wide PeerAuthentication istio-system/default sets STRICT"));
    assert!(out.contains("fix:       Pod kubeflow/"), "{out}");
    golden("tls-check-example.txt", &out);
}

#[test]
fn tls_check_json_has_outcome_transport_and_explanation() {
    let o = run(&["tls-check", "--example", "-o", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["outcome"], "reset");
    assert!(v["transport"].is_null());
    let steps = v["explanation"].as_array().expect("explanation");
    assert!(steps.iter().any(|s| s["rule"] == "B5"));
    assert!(
        steps
            .iter()
            .flat_map(|s| s["objects"].as_array().into_iter().flatten())
            .any(|o| o["object"]["kind"] == "PeerAuthentication")
    );
}

#[test]
fn tls_check_allowed_connection_exits_zero() {
    let example = repo().join("examples/kfp-2.5.0-single-user/strict.yaml");
    let o = run(&[
        "tls-check",
        "-f",
        example.to_str().expect("path"),
        "--from",
        "kubeflow/ml-pipeline",
        "--to",
        "kubeflow/minio-service",
        "--port",
        "9000",
        "-o",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        (v["outcome"].as_str(), v["transport"].as_str()),
        (Some("allow"), Some("mtls"))
    );
}

#[test]
fn tls_check_unknown_names_list_what_exists() {
    let example = repo().join("examples/kfp-2.5.0-single-user/strict.yaml");
    let path = example.to_str().expect("path");
    let o = run(&[
        "tls-check",
        "-f",
        path,
        "--from",
        "kubeflow/nope",
        "--to",
        "kubeflow/ml-pipeline",
        "--port",
        "8888",
    ]);
    assert_eq!(o.status.code(), Some(3));
    let err = stderr(&o);
    assert!(err.contains("no workload kubeflow/nope"), "{err}");
    assert!(err.contains("ml-pipeline-ui (Deployment)"), "{err}");

    let o = run(&[
        "tls-check",
        "-f",
        path,
        "--from",
        "kubeflow/ml-pipeline",
        "--to",
        "kubeflow/ml-pipeline",
        "--port",
        "9999",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("has no port 9999; its ports: 8887 (grpc), 8888 (http)"),
        "{}",
        stderr(&o)
    );

    // Usage errors are exit code 2.
    let o = run(&["tls-check", "-f", path, "--to", "kubeflow/ml-pipeline"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run(&[
        "tls-check",
        "-f",
        path,
        "--from",
        "nonamespace",
        "--to",
        "kubeflow/ml-pipeline",
        "--port",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--from must be NAMESPACE/NAME"));
}

#[test]
fn check_example_table_json_and_sarif() {
    let o = run(&["check"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "the built-in example is a demonstration: exit 0 unless --fail-on is given"
    );
    let table = stdout(&o);
    assert!(table.contains("driver-wait-to-object-store"), "{table}");
    assert!(
        table.contains("26 flows: 24 over mTLS, 2 in plaintext from callers outside the mesh (kube-apiserver, kubelet), 0 failing; 0 findings."),
        "the example shows how the kfp-mesh components fix it: {table}"
    );
    let o = run(&["check", "--fail-on", "error"]);
    assert_eq!(o.status.code(), Some(1), "findings make the exit code 1");
    assert!(
        !table.contains("\x1b["),
        "no colour when stdout is not a terminal"
    );
    golden("check-example.txt", &table);

    let o = run(&["check", "-o", "json", "--fail-on", "error"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "findings change the exit code in JSON too"
    );
    let json = stdout(&o);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["kfp"]["namespace"]["value"], "kubeflow");
    let flow = v["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .find(|f| f["id"] == "executor-to-mlmd")
        .expect("executor-to-mlmd");
    assert_eq!(flow["outcome"], "reset");
    assert_eq!(flow["from"]["serviceAccount"], "pipeline-runner");
    assert_eq!(flow["to"]["port"], 8080);
    assert!(
        flow["findings"]
            .as_array()
            .is_some_and(|f| f.contains(&"KM001".into()))
    );
    let finding = &v["findings"][0];
    for key in ["code", "severity", "message", "object", "file", "line"] {
        assert!(!finding[key].is_null(), "finding has {key}: {finding}");
    }
    golden("check-example.json", &json);

    let o = run(&["check", "-o", "sarif", "--fail-on", "warning"]);
    assert_eq!(o.status.code(), Some(1));
    let sarif: serde_json::Value = serde_json::from_slice(&o.stdout).expect("sarif json");
    assert_sarif_2_1_0(&sarif);
    golden("check-example.sarif.json", &stdout(&o));

    let o = run(&["check", "--fail-on", "never"]);
    assert_eq!(o.status.code(), Some(0));
}

/// The parts of SARIF 2.1.0 (OASIS) that GitHub code scanning requires.
fn assert_sarif_2_1_0(s: &serde_json::Value) {
    assert_eq!(s["version"], "2.1.0");
    assert!(
        s["$schema"]
            .as_str()
            .is_some_and(|u| u.contains("sarif-2.1.0"))
    );
    let runs = s["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert_eq!(driver["name"], "kfp-mesh");
    let rules = driver["rules"].as_array().expect("rules");
    let ids: Vec<&str> = rules.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids.len(), rules.len(), "every rule has an id");
    for r in rules {
        assert!(r["shortDescription"]["text"].is_string());
        let level = r["defaultConfiguration"]["level"].as_str().expect("level");
        assert!(["none", "note", "warning", "error"].contains(&level));
    }
    let results = runs[0]["results"].as_array().expect("results");
    assert!(!results.is_empty());
    for r in results {
        let id = r["ruleId"].as_str().expect("ruleId");
        assert!(ids.contains(&id), "{id} is a declared rule");
        assert!(r["message"]["text"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(
            ["none", "note", "warning", "error"].contains(&r["level"].as_str().expect("level"))
        );
        if let Some(locs) = r["locations"].as_array() {
            for l in locs {
                let p = &l["physicalLocation"];
                assert!(p["artifactLocation"]["uri"].is_string());
                assert!(p["region"]["startLine"].as_u64().is_some_and(|n| n >= 1));
            }
        }
    }
}

/// The embedded "after" example is the real render of the example with the components.
#[test]
fn the_fixed_example_is_the_render_of_the_components() {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join("examples/kfp-2.5.0-single-user"))
        .output()
        .expect("kubectl is required (kubectl kustomize)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fixed = std::fs::read_to_string(repo().join("examples/kfp-2.5.0-single-user/fixed.yaml"))
        .expect("fixed.yaml");
    assert!(
        String::from_utf8_lossy(&out.stdout) == fixed,
        "examples/kfp-2.5.0-single-user/fixed.yaml is stale: run `kubectl kustomize examples/kfp-2.5.0-single-user > examples/kfp-2.5.0-single-user/fixed.yaml`"
    );
}

#[test]
fn check_explain_prints_one_flow() {
    let o = run(&["check", "--explain", "executor-to-mlmd"]);
    let out = stdout(&o);
    assert!(out.starts_with("executor-to-mlmd: kubeflow/"), "{out}");
    assert!(
        out.contains("[B5] STRICT has no plaintext filter chain"),
        "{out}"
    );
    let o = run(&["check", "--explain", "no-such-flow"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("flows: api-server-to-database"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_reads_stdin_directories_and_kustomize() {
    let example = repo().join("examples/kfp-2.5.0-single-user/strict.yaml");
    let text = std::fs::read_to_string(&example).expect("example");
    let o = run_stdin(&["check", "-f", "-", "-o", "json"], &text);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(
        v["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["file"] == "<stdin>"))
    );

    let dir = tempdir("kustomize");
    std::fs::create_dir_all(dir.join("nested")).expect("mkdir");
    std::fs::write(dir.join("nested/kfp.yaml"), &text).expect("write");
    std::fs::write(dir.join("nested/ignored.txt"), "not: yaml: at: all").expect("write");
    std::fs::write(
        dir.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- nested/kfp.yaml\n",
    )
    .expect("write");
    // A directory: *.yaml files recursively (the kustomization itself is not a KFP object).
    let o = run(&["check", "-f", dir.to_str().expect("dir"), "-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // -k renders with kubectl kustomize.
    let o = run(&["check", "-k", dir.to_str().expect("dir"), "-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(v["flows"].as_array().is_some_and(|f| f.len() > 20));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_names_file_line_and_reason() {
    let o = run(&["check", "-f", "/nonexistent/kfp.yaml"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("cannot read /nonexistent/kfp.yaml"),
        "{}",
        stderr(&o)
    );

    let example = repo().join("examples/kfp-2.5.0-single-user/strict.yaml");
    let text = std::fs::read_to_string(&example).expect("example");
    let input = format!("{text}---\nkind: [broken\n---\njust a string\n");
    let o = run_stdin(&["check", "-f", "-", "-o", "json"], &input);
    assert_eq!(
        o.status.code(),
        Some(3),
        "malformed documents are bad input"
    );
    let err = stderr(&o);
    let lines = text.lines().count();
    assert!(
        err.contains(&format!("<stdin>:{}: not valid YAML", lines + 2)),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "<stdin>:{}: expected a Kubernetes object",
            lines + 4
        )),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("the rest is analysed");
    assert!(v["flows"].as_array().is_some_and(|f| f.len() > 20));
}

#[test]
fn findings_markdown_is_docs_findings_md() {
    let o = run(&["findings", "--markdown"]);
    let docs = std::fs::read_to_string(repo().join("docs/findings.md")).expect("docs/findings.md");
    assert_eq!(stdout(&o), docs);
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kfp-mesh-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tempdir");
    dir
}

/// A failed render piped into `check` (empty stdin) is an error in every output format, never
/// "No findings." with exit code 0.
#[test]
fn empty_input_is_an_error_in_every_format() {
    for format in ["table", "json", "sarif"] {
        let o = run_stdin(&["check", "-f", "-", "-o", format], "");
        assert_eq!(o.status.code(), Some(3), "{format}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{format}: {}", stdout(&o));
        assert!(
            stderr(&o).contains("no Kubernetes object"),
            "{}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("pipefail"), "{}", stderr(&o));
    }
}

/// Input without a KFP install is an error unless `--generic` asks for the Istio checks alone.
#[test]
fn non_kfp_input_needs_generic() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\n";
    let o = run_stdin(&["check", "-f", "-", "-o", "json"], cm);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no Kubeflow Pipelines install"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("--generic"), "{}", stderr(&o));
    let o = run_stdin(&["check", "-f", "-", "-o", "json", "--generic"], cm);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["kfp"]["detected"], false);
}

/// `--namespace-labels` states what the input does not define; the table says what was
/// assumed otherwise.
#[test]
fn namespace_labels_flag_replaces_the_assumption() {
    let render = kfp_mesh_testdata::upstream("kfp-2.5.0-platform-agnostic.yaml");
    let render = render.to_string_lossy();
    let o = run(&["check", "-f", &render, "--fail-on", "never"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Namespace kubeflow: not in the input: assumed to have no labels"),
        "{}",
        stdout(&o)
    );
    let o = run(&[
        "check",
        "-f",
        &render,
        "--namespace-labels",
        "kubeflow=istio-injection=enabled",
        "-o",
        "json",
        "--fail-on",
        "never",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["assumedNamespaces"], serde_json::json!([]));
    let mtls = v["flows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["id"] == "persistence-agent-to-api-server")
        .all(|f| f["transport"] == "mtls");
    assert!(mtls, "labelled for injection: the control plane talks mTLS");
    let o = run(&["check", "-f", &render, "--namespace-labels", "kubeflow"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// An environment problem (kubectl missing) has its own exit code, 4, distinct from bad input.
#[test]
fn missing_kubectl_is_an_environment_error() {
    let dir = repo().join("examples/kfp-2.5.0-single-user");
    let o = bin()
        .args(["check", "-k"])
        .arg(&dir)
        .env("PATH", "/nonexistent")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("needs kubectl on the PATH"),
        "{}",
        stderr(&o)
    );
}

/// `tls-check` names its human output `table`, like `check` and `verify` (`text` still works).
#[test]
fn tls_check_output_names_match_check() {
    for format in ["table", "text"] {
        let o = run(&["tls-check", "--example", "-o", format]);
        assert_ne!(o.status.code(), Some(2), "{format}: {}", stderr(&o));
    }
}

/// A table that cannot be written (a full disk) is an error that says so, not a panic, and
/// the exit code is not a verdict.
#[test]
fn a_report_that_cannot_be_written_is_an_error() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full (Linux)");
    let o = bin()
        .args(["check", "--fail-on", "never"])
        .stdout(full)
        .output()
        .expect("kfp-mesh runs");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("cannot write the report to stdout: No space left on device"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
