//! scripts/fetch-upstream, run for real: its check of a mirror against the pinned SHA-256 sums,
//! the one message when there is neither network nor a mirror, and the whole fetch (git fetch of
//! a pinned ref, `kubectl kustomize`, verification, the cache) against git repositories served
//! from this machine the way GitHub serves them (partial, shallow fetches by commit or tag).
//! The fetch from GitHub itself needs network; these tests do not.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    kfp_mesh_testdata::repo_dir()
}

fn script() -> PathBuf {
    repo().join("scripts/fetch-upstream")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kfp-mesh-fetch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Run a command with a clean view of the fixture variables.
fn cmd(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(program);
    c.args(args)
        .env_remove("KFP_MESH_UPSTREAM")
        .env_remove("KFP_MESH_CACHE")
        .env_remove("KFP_MESH_PINS")
        .env_remove("KFP_MESH_GIT_BASE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap_or_else(|e| panic!("`git` is needed: {e}"));
    assert!(o.status.success(), "git {args:?}: {}", text(&o.stderr));
    text(&o.stdout).trim().to_string()
}

fn sha256(path: &Path) -> String {
    let o = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum runs");
    text(&o.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

#[test]
fn the_mirror_matches_the_pins_and_a_changed_file_is_named() {
    let mirror = kfp_mesh_testdata::upstream_dir();
    let o = cmd(
        &script(),
        &["--verify", mirror.to_str().expect("utf-8")],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("24 pinned files"),
        "{}",
        text(&o.stderr)
    );

    let copy = tempdir("verify");
    copy_dir(&mirror, &copy);
    let changed = copy.join("kfp-2.5.0-platform-agnostic.yaml");
    let mut t = std::fs::read_to_string(&changed).expect("read");
    t.push_str("# one more line\n");
    std::fs::write(&changed, t).expect("write");
    std::fs::remove_file(copy.join("workflows/kfp-master-hello_world.yaml")).expect("rm");
    let o = cmd(&script(), &["--verify", copy.to_str().expect("utf-8")], &[]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("sha256 mismatch") && err.contains("kfp-2.5.0-platform-agnostic.yaml"),
        "{err}"
    );
    assert!(
        err.contains("missing") && err.contains("workflows/kfp-master-hello_world.yaml"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&copy);
}

/// The script and its pins in a directory with no ../shared next to it: a fresh clone.
fn fresh_clone(root: &Path) -> PathBuf {
    let clone = root.join("clone");
    std::fs::create_dir_all(clone.join("scripts")).expect("mkdir");
    for f in ["fetch-upstream", "upstream.pins"] {
        std::fs::copy(
            repo().join("scripts").join(f),
            clone.join("scripts").join(f),
        )
        .expect("copy");
    }
    clone.join("scripts/fetch-upstream")
}

fn assert_one_clear_message(err: &str, cache: &Path) {
    assert!(err.contains("scripts/fetch-upstream"), "{err}");
    assert!(err.contains("network access to GitHub"), "{err}");
    assert!(err.contains("KFP_MESH_UPSTREAM"), "{err}");
    assert!(
        err.contains(&cache.join("upstream").display().to_string()),
        "{err}"
    );
    assert_eq!(err.matches("Get them one of two ways").count(), 1, "{err}");
}

#[test]
fn neither_network_nor_mirror_is_one_clear_error() {
    let root = tempdir("offline");
    let script = fresh_clone(&root);
    let cache = root.join("cache");
    let env = [
        ("KFP_MESH_CACHE", cache.to_str().expect("utf-8")),
        // Nothing listens on port 9 here: the fetch fails at once, as without network.
        ("KFP_MESH_GIT_BASE", "http://127.0.0.1:9"),
    ];
    let o = cmd(&script, &[], &env);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("not reachable"), "{err}");
    assert_one_clear_message(&err, &cache);
    assert!(
        !cache.join("upstream").exists(),
        "nothing is cached after a failed fetch"
    );

    // Where the tests would read from: the same message.
    let o = cmd(&script, &["--locate"], &env);
    assert_eq!(o.status.code(), Some(1));
    assert_one_clear_message(&text(&o.stderr), &cache);

    // The Rust side (what every test calls) says the same.
    let err = kfp_mesh_testdata::locate(
        &kfp_mesh_testdata::Env {
            cache: Some(cache.clone()),
            ..Default::default()
        },
        &root.join("shared/upstream"),
    )
    .expect_err("no fixtures");
    assert_one_clear_message(&err, &cache);
    let _ = std::fs::remove_dir_all(&root);
}

const KUSTOMIZATION: &str = "\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: kubeflow
resources:
- ../../base
";

const BASE: &str = "\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- configmap.yaml
";

/// A git repository like an upstream one, served the way GitHub serves it (fetch by commit id,
/// partial clone): `manifests/env/x` renders a ConfigMap through a relative base, and
/// `test_data/wf.yaml` is a plain file. Returns (commit, tag).
fn upstream_repo(git_root: &Path, name: &str, value: &str) -> (String, String) {
    let work = git_root.join(format!("{name}.work"));
    std::fs::create_dir_all(work.join("manifests/env/x")).expect("mkdir");
    std::fs::create_dir_all(work.join("manifests/base")).expect("mkdir");
    std::fs::create_dir_all(work.join("test_data")).expect("mkdir");
    std::fs::write(
        work.join("manifests/env/x/kustomization.yaml"),
        KUSTOMIZATION,
    )
    .expect("w");
    std::fs::write(work.join("manifests/base/kustomization.yaml"), BASE).expect("w");
    std::fs::write(
        work.join("manifests/base/configmap.yaml"),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pins\ndata:\n  value: {value}\n"
        ),
    )
    .expect("w");
    std::fs::write(
        work.join("test_data/wf.yaml"),
        format!("kind: Workflow # {value}\n"),
    )
    .expect("w");
    git(&work, &["init", "-q"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "upstream"]);
    git(&work, &["tag", "-a", "1.0.0", "-m", "release"]);
    let commit = git(&work, &["rev-parse", "HEAD"]);
    let bare = git_root.join(name);
    std::fs::create_dir_all(bare.parent().expect("parent")).expect("mkdir");
    let o = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(&bare)
        .output()
        .expect("git clone");
    assert!(o.status.success(), "{}", text(&o.stderr));
    git(&bare, &["config", "uploadpack.allowFilter", "true"]);
    git(&bare, &["config", "uploadpack.allowAnySHA1InWant", "true"]);
    (commit, "refs/tags/1.0.0".to_string())
}

#[test]
fn fetch_renders_verifies_and_caches_from_pinned_refs() {
    let root = tempdir("fetch");
    let git_root = root.join("git");
    let (commit, tag) = upstream_repo(&git_root, "org/pipelines", "one");

    // The expected sums: kubectl kustomize run here on a checkout, and the file's bytes.
    let check = root.join("check");
    git(
        &root,
        &[
            "clone",
            "-q",
            git_root.join("org/pipelines").to_str().expect("utf-8"),
            "check",
        ],
    );
    let render = Command::new("kubectl")
        .args(["kustomize", "manifests/env/x"])
        .current_dir(&check)
        .output()
        .unwrap_or_else(|e| panic!("`kubectl` is needed (kustomize): {e}"));
    assert!(render.status.success(), "{}", text(&render.stderr));
    std::fs::write(root.join("render.yaml"), &render.stdout).expect("w");
    let render_sum = sha256(&root.join("render.yaml"));
    let blob_sum = sha256(&check.join("test_data/wf.yaml"));

    let pins = |render_sum: &str, tag_commit: &str| {
        format!(
            "# test pins\n\
             x.yaml {render_sum} org/pipelines {commit} {commit} kustomize manifests/env/x\n\
             workflows/wf.yaml {blob_sum} org/pipelines {tag} {tag_commit} blob test_data/wf.yaml\n"
        )
    };
    let pins_file = root.join("upstream.pins");
    std::fs::write(&pins_file, pins(&render_sum, &commit[..8])).expect("w");
    let cache = root.join("cache");
    let git_base = format!("file://{}", git_root.display());
    let env = [
        ("KFP_MESH_CACHE", cache.to_str().expect("utf-8")),
        ("KFP_MESH_GIT_BASE", git_base.as_str()),
        ("KFP_MESH_PINS", pins_file.to_str().expect("utf-8")),
    ];

    let o = cmd(&script(), &[], &env);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    let dir = cache.join("upstream");
    assert_eq!(text(&o.stdout).trim(), dir.display().to_string());
    assert_eq!(
        std::fs::read(dir.join("x.yaml")).expect("render"),
        render.stdout
    );
    assert_eq!(sha256(&dir.join("workflows/wf.yaml")), blob_sum);
    assert_eq!(
        std::fs::read_to_string(dir.join("PINS")).expect("PINS"),
        std::fs::read_to_string(&pins_file).expect("pins")
    );
    assert!(
        std::fs::read_dir(&cache).expect("cache").count() == 1,
        "only the finished cache is left in {}",
        cache.display()
    );

    // A second run finds the cache current and fetches nothing.
    let o = cmd(&script(), &[], &env);
    assert!(o.status.success());
    assert!(
        text(&o.stderr).contains("up to date"),
        "{}",
        text(&o.stderr)
    );

    // A render that differs from its pinned sum fails, names the file and the kustomize used,
    // and leaves the previous cache in place.
    std::fs::write(&pins_file, pins(&"0".repeat(64), &commit[..8])).expect("w");
    let o = cmd(&script(), &[], &env);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("sha256 mismatch") && err.contains("x.yaml"),
        "{err}"
    );
    assert!(err.contains("kustomize v5.5.0"), "{err}");
    assert_eq!(
        std::fs::read(dir.join("x.yaml")).expect("old cache"),
        render.stdout
    );

    // A tag that no longer names the pinned commit is refused.
    std::fs::write(&pins_file, pins(&render_sum, "deadbeef")).expect("w");
    let o = cmd(&script(), &[], &env);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the ref moved") && err.contains("deadbeef"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
