//! Hostile and careless input through the real binary: directory walks with symlink cycles and
//! special files, inputs without end, files that are not UTF-8, broken JSON streams, and `-k`
//! values that look like kubectl flags. Every run is bounded in time (and every writer in bytes):
//! a regression shows as a clear failure, never as a hung test.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The input cap of kfp-mesh (`kfp_mesh_core::inventory::MAX_INPUT_BYTES`).
const CAP: u64 = 512 * 1024 * 1024;
/// Long enough for a debug build on a busy 2-core machine; the bugs these tests catch never end.
const LIMIT: Duration = Duration::from_secs(120);

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kfp-mesh"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example() -> String {
    std::fs::read_to_string(repo().join("examples/kfp-2.5.0-single-user/strict.yaml"))
        .expect("example")
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kfp-mesh-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tempdir");
    dir
}

/// Wait for a spawned child with piped stdout and stderr, killing it (and failing) after `limit`.
fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Output {
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn run_bounded(cmd: &mut Command, what: &str) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kfp-mesh runs");
    wait_bounded(child, LIMIT, what)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); stderr: {}\nstdout: {}",
            stderr(o),
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

fn flows(v: &serde_json::Value) -> usize {
    v["flows"].as_array().map_or(0, Vec::len)
}

/// The KM050 findings of a `check -o json` report, as `file:line: message`.
fn km050(v: &serde_json::Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["code"] == "KM050")
        .map(|f| {
            format!(
                "{}:{}: {}",
                f["file"].as_str().unwrap_or("?"),
                f["line"],
                f["message"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// `$PATH` with `dir` first.
fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).expect("PATH")
}

fn symlink(target: impl AsRef<Path>, link: impl AsRef<Path>) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

#[test]
fn a_directory_with_symlink_cycles_is_read_once_and_ends() {
    let dir = tempdir("cycles");
    std::fs::create_dir_all(dir.join("sub/deeper")).expect("mkdir");
    std::fs::write(dir.join("sub/kfp.yaml"), example()).expect("write");
    // Two links back to the top and one to itself: a walk that follows them never ends.
    symlink("..", dir.join("sub/up"));
    symlink("..", dir.join("sub/up-again"));
    symlink("../..", dir.join("sub/deeper/top"));
    symlink(".", dir.join("sub/deeper/self"));
    // A second name for the same file is the same objects, not a redefinition.
    symlink("sub/kfp.yaml", dir.join("alias.yaml"));
    let o = run_bounded(
        bin().args(["check", "-f", dir.to_str().expect("dir"), "-o", "json"]),
        "check -f DIR-with-cycles",
    );
    let v = json(&o);
    assert!(km050(&v).is_empty(), "{:?}\n{}", km050(&v), stderr(&o));
    assert!(flows(&v) > 20, "the example is analysed: {}", stderr(&o));
    assert_eq!(
        o.status.code(),
        Some(1),
        "the example's findings: {}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fifos_and_devices_in_a_directory_are_skipped_and_said() {
    let dir = tempdir("special");
    std::fs::write(dir.join("kfp.yaml"), example()).expect("write");
    let mkfifo = Command::new("mkfifo")
        .arg(dir.join("pipe.yaml"))
        .status()
        .expect("mkfifo is required for this test (coreutils)");
    assert!(mkfifo.success(), "mkfifo failed");
    // Reading either would block forever or never end.
    symlink("/dev/zero", dir.join("zero.yaml"));
    let o = run_bounded(
        bin().args(["check", "-f", dir.to_str().expect("dir"), "-o", "json"]),
        "check -f DIR-with-fifo",
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "what was skipped is bad input: {}",
        stderr(&o)
    );
    let v = json(&o);
    assert!(flows(&v) > 20, "the rest is analysed: {}", stderr(&o));
    let skipped = km050(&v);
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped[0].contains("pipe.yaml") && skipped[0].contains("a FIFO"),
        "{skipped:?}"
    );
    assert!(
        skipped[1].contains("zero.yaml") && skipped[1].contains("a device"),
        "{skipped:?}"
    );
    let err = stderr(&o);
    assert!(
        err.contains("pipe.yaml") && err.contains("skipped"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn endless_stdin_stops_at_the_input_cap() {
    let mut child = bin()
        .args(["check", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kfp-mesh runs");
    let mut stdin = child.stdin.take().expect("stdin");
    // `yes 'a: b'`, bounded at twice the cap so that a reader without a cap ends too.
    let writer = std::thread::spawn(move || {
        let chunk = "a: b\n".repeat(64 * 1024);
        let mut written = 0u64;
        while written < 2 * CAP {
            if stdin.write_all(chunk.as_bytes()).is_err() {
                break;
            }
            written += chunk.len() as u64;
        }
        written
    });
    let o = wait_bounded(child, LIMIT, "yes 'a: b' | check -f -");
    let written = writer.join().expect("writer");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("<stdin>") && err.contains("more than 512 MiB"),
        "a clear size error: {err}"
    );
    assert!(
        written < CAP + 16 * 1024 * 1024,
        "kfp-mesh stopped reading at the cap, not after {written} bytes"
    );
}

#[test]
fn dev_zero_ends_with_a_size_error() {
    let o = run_bounded(
        bin().args(["check", "-f", "/dev/zero"]),
        "check -f /dev/zero",
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("/dev/zero") && err.contains("more than 512 MiB"),
        "{err}"
    );
}

/// `kubectl kustomize` output is capped like any input. Real kustomize cannot be made to print
/// 512 MiB in a test's time, so a `kubectl` that prints without end stands in for it.
#[test]
fn endless_kustomize_output_stops_at_the_input_cap() {
    let dir = tempdir("kustomize-endless");
    let fake = dir.join("bin");
    std::fs::create_dir_all(&fake).expect("mkdir");
    let kubectl = fake.join("kubectl");
    std::fs::write(&kubectl, "#!/bin/sh\nexec yes 'a: b'\n").expect("write");
    let mut perms = std::fs::metadata(&kubectl).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&kubectl, perms).expect("chmod");
    let o = run_bounded(
        bin()
            .args(["check", "-k", dir.to_str().expect("dir")])
            .env("PATH", path_with(&fake)),
        "check -k with endless kubectl output",
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("kubectl kustomize") && err.contains("more than 512 MiB"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_that_is_not_utf8_is_reported_with_its_line_and_the_rest_is_read() {
    let dir = tempdir("utf8");
    std::fs::write(dir.join("a-kfp.yaml"), example()).expect("write");
    let mut bad = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: latin1\n  namespace: kubeflow\ndata:\n  motto: caf".to_vec();
    bad.push(0xe9); // `é` in Latin-1
    bad.extend_from_slice(
        b"\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: after-the-bad-one, namespace: kubeflow}\n",
    );
    std::fs::write(dir.join("b-latin1.yaml"), &bad).expect("write");
    let o = run_bounded(
        bin().args(["check", "-f", dir.to_str().expect("dir"), "-o", "json"]),
        "check -f DIR-with-latin1",
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let v = json(&o);
    assert!(flows(&v) > 20, "the other file is analysed: {err}");
    let errors = km050(&v);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let bad_path = dir.join("b-latin1.yaml");
    assert!(
        errors[0].starts_with(&format!("{}:7: not UTF-8", bad_path.display())),
        "file and line of the byte: {errors:?}"
    );
    assert!(errors[0].contains("0xe9"), "{errors:?}");
    assert!(
        err.contains(&format!("{}:7: not UTF-8", bad_path.display())),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run with `text` on stdin (written from a thread, so a large text cannot dead-lock the pipes).
fn run_stdin_bounded(args: &[&str], text: String, what: &str) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kfp-mesh runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(text.as_bytes());
    });
    let o = wait_bounded(child, LIMIT, what);
    writer.join().expect("writer");
    o
}

#[test]
fn a_broken_json_value_loses_only_itself() {
    let object = |kind: &str, ns: &str, name: &str, spec: &str| {
        format!(
            "{{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"{kind}\",\n  \"metadata\": {{\"name\": \"{name}\", \"namespace\": \"{ns}\"}}{spec}\n}}\n"
        )
    };
    // `kubectl get -o json` objects one after the other; the second is cut short at line 9.
    let text = format!(
        "{}{{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Namespace\",\n  \"metadata\": {{\"name\": \"cut\n{}{}",
        object("Namespace", "", "first", ""),
        object("Namespace", "", "third", ""),
        object(
            "Service",
            "fourth",
            "web",
            ",\n  \"spec\": {\"ports\": [{\"port\": 80}]}"
        ),
    );
    // The Service after the broken value is read: tls-check finds it (it has no pods).
    let o = run_stdin_bounded(
        &["tls-check", "-f", "-", "--to", "fourth/web", "--port", "80"],
        text.clone(),
        "tls-check -f - (broken JSON)",
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("Service fourth/web selects no workload"),
        "the Service after the broken value is read: {err}"
    );
    assert!(err.contains("<stdin>:6: not valid JSON"), "{err}");
    assert!(
        err.contains("lines 6-9 skipped"),
        "says what was skipped: {err}"
    );

    // In `check`, the broken value is a KM050 finding and the rest is analysed.
    let strict = repo().join("examples/kfp-2.5.0-single-user/strict.yaml");
    let o = run_stdin_bounded(
        &[
            "check",
            "-f",
            strict.to_str().expect("path"),
            "-f",
            "-",
            "-o",
            "json",
        ],
        text,
        "check -f - (broken JSON)",
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v = json(&o);
    assert!(flows(&v) > 20, "{}", stderr(&o));
    let errors = km050(&v);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("<stdin>:6: not valid JSON")
            && errors[0].contains("lines 6-9 skipped"),
        "{errors:?}"
    );
}

#[test]
fn a_kustomize_dir_that_looks_like_a_flag_is_a_directory() {
    let dir = tempdir("kustomize-flag");
    std::fs::write(
        dir.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [kfp.yaml]\n",
    )
    .expect("write");
    std::fs::write(dir.join("kfp.yaml"), example()).expect("write");
    let written = dir.join("written-by-kubectl.yaml");
    let o = run_bounded(
        bin()
            .current_dir(&dir)
            .arg("check")
            .arg(format!("--kustomize=--output={}", written.display())),
        "check --kustomize=--output=FILE",
    );
    let err = stderr(&o);
    assert!(
        !written.exists(),
        "the -k value reached kubectl as a flag: kubectl wrote {}",
        written.display()
    );
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("kubectl kustomize"), "{err}");
    assert!(
        err.contains("--output="),
        "names the directory it could not render: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
