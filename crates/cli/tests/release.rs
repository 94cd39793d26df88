//! The release machinery that can run here: the archives scripts/package-dist packs, the krew
//! manifest scripts/krew-manifest fills in from them (checked against what krew itself
//! requires of a plugin manifest), the GitHub workflow files (validated against the workflow
//! schema by check-jsonschema, and their shell steps parsed by bash), and the Dockerfile's use
//! of scripts/build-dist. scripts/test also runs scripts/build-dist itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kfp-mesh-release-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    let program = program.as_ref();
    Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.to_string_lossy()))
}

fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn sha256(path: &Path) -> String {
    let out = ok(
        run("sha256sum", &[path.to_str().expect("utf-8 path")]),
        "sha256sum",
    );
    out.split_whitespace().next().expect("a digest").to_string()
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The release targets: (Rust target, krew os, krew arch).
const TARGETS: [(&str, &str, &str); 4] = [
    ("x86_64-unknown-linux-musl", "linux", "amd64"),
    ("aarch64-unknown-linux-musl", "linux", "arm64"),
    ("x86_64-apple-darwin", "darwin", "amd64"),
    ("aarch64-apple-darwin", "darwin", "arm64"),
];

/// The binary under test without its debug info (a test build is 200 MB; packing that would
/// measure gzip), in `dir`.
fn stripped_binary(dir: &Path) -> PathBuf {
    let bin = dir.join("kfp-mesh");
    std::fs::copy(env!("CARGO_BIN_EXE_kfp-mesh"), &bin).expect("copy the binary");
    ok(
        run(
            "strip",
            &["--strip-debug", bin.to_str().expect("utf-8 path")],
        ),
        "strip (binutils)",
    );
    bin
}

/// Pack the binary under test once per release target name (the binary is this machine's
/// build: the archive layout and the manifest are what is tested, not the cross builds).
fn package_all(out: &Path) {
    let bin = stripped_binary(out);
    for (target, _, _) in TARGETS {
        let archive = ok(
            run(
                repo().join("scripts/package-dist"),
                &[
                    target,
                    bin.to_str().expect("utf-8 path"),
                    out.to_str().expect("utf-8 path"),
                ],
            ),
            "scripts/package-dist",
        );
        assert_eq!(
            archive.trim(),
            out.join(format!("kfp-mesh-{VERSION}-{target}.tar.gz"))
                .to_str()
                .expect("utf-8 path")
        );
    }
}

fn tar_list(archive: &Path) -> BTreeSet<String> {
    ok(
        run("tar", &["-tzf", archive.to_str().expect("utf-8 path")]),
        "tar -tzf",
    )
    .lines()
    .map(|l| l.trim_end_matches('/').to_string())
    .collect()
}

#[test]
fn release_archive_holds_binary_license_completions_and_man_pages() {
    let out = tempdir("archive");
    let work = tempdir("archive-bin");
    let bin = stripped_binary(&work);
    let target = "x86_64-unknown-linux-musl";
    let pack = || {
        ok(
            run(
                repo().join("scripts/package-dist"),
                &[
                    target,
                    bin.to_str().expect("utf-8 path"),
                    out.to_str().expect("utf-8 path"),
                ],
            ),
            "scripts/package-dist",
        )
    };
    pack();
    let name = format!("kfp-mesh-{VERSION}-{target}");
    let archive = out.join(format!("{name}.tar.gz"));
    let entries = tar_list(&archive);
    for want in [
        "kfp-mesh",
        "LICENSE",
        "README.md",
        "completions/kfp-mesh.bash",
        "completions/_kfp-mesh",
        "completions/kfp-mesh.fish",
        "man/man1/kfp-mesh.1",
        "man/man1/kfp-mesh-check.1",
        "man/man1/kfp-mesh-webhook.1",
    ] {
        assert!(
            entries.contains(&format!("{name}/{want}")),
            "{} lacks {name}/{want}: {entries:?}",
            archive.display()
        );
    }
    assert!(
        entries
            .iter()
            .all(|e| e == &name || e.starts_with(&format!("{name}/"))),
        "one top directory: {entries:?}"
    );

    // The .sha256 file is the `sha256sum` line of the archive.
    let line =
        std::fs::read_to_string(out.join(format!("{name}.tar.gz.sha256"))).expect("sha256 file");
    assert_eq!(line, format!("{}  {name}.tar.gz\n", sha256(&archive)));

    // Packing the same binary again gives the same bytes (sorted entries, fixed times).
    let first = sha256(&archive);
    pack();
    assert_eq!(
        sha256(&archive),
        first,
        "scripts/package-dist is not reproducible"
    );

    // The packed binary runs.
    let x = tempdir("archive-x");
    ok(
        run(
            "tar",
            &[
                "-xzf",
                archive.to_str().expect("utf-8 path"),
                "-C",
                x.to_str().expect("utf-8 path"),
            ],
        ),
        "tar -x",
    );
    let v = ok(
        run(x.join(&name).join("kfp-mesh"), &["--version"]),
        "the packed kfp-mesh",
    );
    assert_eq!(v.trim(), format!("kfp-mesh {VERSION}"));
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&x);
    let _ = std::fs::remove_dir_all(&work);
}

fn str_field<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = cur
            .get(p)
            .unwrap_or_else(|| panic!("missing {}", path.join(".")));
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("{} is not a string: {cur}", path.join(".")))
}

/// krew's semantic version: `v` + MAJOR.MINOR.PATCH (+ optional pre-release / build).
fn is_krew_semver(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let core = rest.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// The rules krew applies to a plugin manifest before it installs it (krew's
/// `ValidatePlugin`: apiVersion, kind, a safe name equal to the file name, a one-line short
/// description, a semantic version with a leading v, and per platform a uri, a sha256 of 64 lower
/// hex digits, a bin, non-empty from/to file operations, and an os/arch selector), plus what
/// installing from it needs: the files exist in the archive and `bin` is among them.
fn assert_krew_accepts(manifest: &Value, file_stem: &str, archives: &Path) {
    assert_eq!(
        str_field(manifest, &["apiVersion"]),
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(str_field(manifest, &["kind"]), "Plugin");
    let name = str_field(manifest, &["metadata", "name"]);
    assert_eq!(
        name, file_stem,
        "the plugin name must equal the manifest's file name"
    );
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "unsafe plugin name {name}"
    );
    let short = str_field(manifest, &["spec", "shortDescription"]);
    assert!(
        !short.is_empty() && !short.contains(['\r', '\n']),
        "{short:?}"
    );
    let version = str_field(manifest, &["spec", "version"]);
    assert!(is_krew_semver(version), "version {version}");
    assert_eq!(version, format!("v{VERSION}"));
    assert!(str_field(manifest, &["spec", "homepage"]).starts_with("https://"));

    let platforms = manifest["spec"]["platforms"]
        .as_array()
        .expect("spec.platforms is a list");
    assert!(!platforms.is_empty());
    let mut seen = BTreeMap::new();
    for p in platforms {
        let labels = p["selector"]["matchLabels"]
            .as_object()
            .unwrap_or_else(|| panic!("platform without selector.matchLabels: {p}"));
        assert!(!labels.is_empty());
        for key in labels.keys() {
            assert!(
                key == "os" || key == "arch",
                "selector key {key} is not supported by krew"
            );
        }
        let os = labels["os"].as_str().expect("os");
        let arch = labels["arch"].as_str().expect("arch");
        let uri = str_field(p, &["uri"]);
        let sha = str_field(p, &["sha256"]);
        assert!(
            sha.len() == 64
                && sha
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "sha256 {sha:?}"
        );
        let bin = str_field(p, &["bin"]);
        assert!(!bin.is_empty());

        let (target, _, _) = TARGETS
            .iter()
            .find(|(_, o, a)| *o == os && *a == arch)
            .unwrap_or_else(|| panic!("platform {os}/{arch} is not a release target"));
        assert!(seen.insert((os, arch), uri).is_none(), "{os}/{arch} twice");
        let file = format!("kfp-mesh-{VERSION}-{target}.tar.gz");
        assert_eq!(
            uri,
            format!("https://github.com/kfp-mesh/kfp-mesh/releases/download/v{VERSION}/{file}")
        );
        let archive = archives.join(&file);
        assert_eq!(sha, sha256(&archive), "{os}/{arch}: sha256 of {file}");

        // What krew does on install: copy each `from` (a path in the archive) to `to`, then
        // link `bin` as kubectl-kfp_mesh.
        let entries = tar_list(&archive);
        let files = p["files"].as_array().expect("files is a list");
        assert!(!files.is_empty());
        let mut installed = BTreeSet::new();
        for f in files {
            let from = str_field(f, &["from"]);
            let to = str_field(f, &["to"]);
            assert!(!to.is_empty());
            assert!(entries.contains(from), "{file} has no {from}: {entries:?}");
            let base = from.rsplit('/').next().unwrap_or(from);
            installed.insert(if to == "." {
                base.to_string()
            } else {
                format!("{to}/{base}")
            });
        }
        assert!(
            installed.contains(bin),
            "{os}/{arch}: bin {bin} is not installed by files"
        );
        assert!(
            installed.contains("LICENSE"),
            "{os}/{arch}: the license must be installed too"
        );
    }
    assert_eq!(seen.len(), TARGETS.len(), "a platform per release target");
}

#[test]
fn krew_manifest_filled_from_the_archives_is_what_krew_accepts() {
    let out = tempdir("krew");
    package_all(&out);
    let filled = ok(
        run(
            repo().join("scripts/krew-manifest"),
            &[VERSION, out.to_str().expect("utf-8 path")],
        ),
        "scripts/krew-manifest",
    );
    let manifest: Value = serde_saphyr::from_str(&filled)
        .unwrap_or_else(|e| panic!("the filled manifest is not YAML: {e}\n{filled}"));
    assert_krew_accepts(&manifest, "kfp-mesh", &out);

    // The template itself keeps its placeholders and nothing else varies per release.
    let template =
        std::fs::read_to_string(repo().join("dist/krew/kfp-mesh.yaml")).expect("template");
    assert!(template.contains("@VERSION@") && template.contains("@SHA256:"));

    // A missing archive is an error that names it; nothing half-filled is printed.
    let missing = out.join(format!("kfp-mesh-{VERSION}-aarch64-apple-darwin.tar.gz"));
    std::fs::remove_file(&missing).expect("remove");
    let o = run(
        repo().join("scripts/krew-manifest"),
        &[VERSION, out.to_str().expect("utf-8 path")],
    );
    assert!(!o.status.success());
    assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
    assert!(
        text(&o.stderr).contains(missing.to_str().expect("utf-8 path")),
        "{}",
        text(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&out);
}

fn workflows() -> Vec<(PathBuf, Value)> {
    let dir = repo().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    files
        .into_iter()
        .map(|p| {
            let t = std::fs::read_to_string(&p).expect("read workflow");
            let v: Value =
                serde_saphyr::from_str(&t).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, v)
        })
        .collect()
}

/// `${{ ... }}` replaced by a word, so that bash can parse the step.
fn without_expressions(script: &str) -> String {
    let mut out = String::new();
    let mut rest = script;
    while let Some(i) = rest.find("${{") {
        out.push_str(&rest[..i]);
        out.push_str("EXPR");
        rest = match rest[i..].find("}}") {
            Some(j) => &rest[i + j + 2..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

#[test]
fn workflow_files_are_valid() {
    // 1. The GitHub workflow schema (vendored by check-jsonschema, no network).
    let checker = std::env::var_os("KFP_MESH_CHECK_JSONSCHEMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/check-jsonschema"));
    assert!(
        checker.exists(),
        "{} is missing: run scripts/install-tools (or set KFP_MESH_CHECK_JSONSCHEMA)",
        checker.display()
    );
    let files: Vec<String> = workflows()
        .iter()
        .map(|(p, _)| p.to_str().expect("utf-8 path").to_string())
        .collect();
    let mut args = vec!["--builtin-schema", "vendor.github-workflows"];
    args.extend(files.iter().map(String::as_str));
    ok(
        run(&checker, &args),
        "check-jsonschema on .github/workflows",
    );

    // 2. What the schema cannot see.
    for (path, wf) in workflows() {
        let jobs = wf["jobs"].as_object().expect("jobs");
        for (job, body) in jobs {
            let needs: Vec<&str> = match &body["needs"] {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            for n in needs {
                assert!(
                    jobs.contains_key(n),
                    "{}: job {job} needs unknown job {n}",
                    path.display()
                );
            }
            for step in body["steps"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let Some(script) = step["run"].as_str() else {
                    continue;
                };
                let parsed = without_expressions(script);
                let o = run("bash", &["-n", "-c", &parsed]);
                assert!(
                    o.status.success(),
                    "{}: job {job}: a run step is not valid bash: {}\n{script}",
                    path.display(),
                    text(&o.stderr)
                );
                // Every repository script a step calls exists and is executable.
                for word in parsed.split(|c: char| c.is_whitespace() || c == '(' || c == ';') {
                    if let Some(rel) = word.strip_prefix("scripts/") {
                        let rel = rel.trim_matches('"');
                        let script = repo().join("scripts").join(rel);
                        let meta = std::fs::metadata(&script).unwrap_or_else(|e| {
                            panic!("{}: job {job} runs scripts/{rel}: {e}", path.display())
                        });
                        use std::os::unix::fs::PermissionsExt;
                        assert!(
                            meta.permissions().mode() & 0o111 != 0,
                            "scripts/{rel} is not executable"
                        );
                    }
                }
            }
        }
        // Files named in hashFiles(...) exist (a cache key over a missing file never changes).
        let raw = std::fs::read_to_string(&path).expect("read");
        for part in raw.split("hashFiles('").skip(1) {
            let file = part.split('\'').next().unwrap_or("");
            assert!(
                repo().join(file).exists(),
                "{}: hashFiles('{file}') names no file",
                path.display()
            );
        }
    }
}

#[test]
fn ci_runs_scripts_test_and_release_builds_with_the_dist_scripts() {
    let all = workflows();
    let runs = |name: &str| -> Vec<String> {
        let (_, wf) = all
            .iter()
            .find(|(p, _)| p.file_name().is_some_and(|f| f == name))
            .unwrap_or_else(|| panic!(".github/workflows/{name} is missing"));
        wf["jobs"]
            .as_object()
            .expect("jobs")
            .values()
            .flat_map(|j| j["steps"].as_array().cloned().unwrap_or_default())
            .filter_map(|s| s["run"].as_str().map(str::to_string))
            .collect()
    };
    assert!(runs("ci.yml").iter().any(|r| r.trim() == "scripts/test"));
    let release = runs("release.yml").join("\n");
    for needed in [
        "scripts/build-dist",
        "scripts/package-dist",
        "scripts/krew-manifest",
        "cosign sign ",
    ] {
        assert!(
            release.contains(needed),
            "release.yml does not run {needed}"
        );
    }
    assert!(
        !release.contains("cargo build"),
        "release.yml must build through scripts/build-dist"
    );

    // The Dockerfile builds through the same script, and copies what it wrote.
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let joined = dockerfile.replace("\\\n", " ");
    let run_lines: Vec<&str> = joined.lines().filter(|l| l.starts_with("RUN ")).collect();
    assert!(
        !run_lines.iter().any(|l| l.contains("cargo build")),
        "the Dockerfile must build through scripts/build-dist: {run_lines:?}"
    );
    let build = run_lines
        .iter()
        .find(|l| l.contains("scripts/build-dist"))
        .expect("a RUN scripts/build-dist line");
    let out_dir = build
        .split_whitespace()
        .last()
        .expect("an output directory");
    assert!(
        dockerfile.contains(&format!("COPY --from=build {out_dir}/kfp-mesh ")),
        "the image must take the binary scripts/build-dist wrote into {out_dir}"
    );
}
