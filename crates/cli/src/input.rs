//! Reading the input: files, directories, stdin and `kubectl kustomize` output.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use kfp_mesh_core::inventory::{InputError, Inventory, parse_stream};

/// Where to read Kubernetes objects from.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct InputArgs {
    /// Manifests to read: files, directories (recursively, *.yaml, *.yml, *.json, except
    /// kustomization files), or `-` for stdin. Multi-document YAML, JSON and `kind: List` are understood. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Kustomize directories, rendered with `kubectl kustomize DIR`. Repeatable.
    #[arg(short = 'k', long = "kustomize", value_name = "DIR")]
    pub kustomize: Vec<PathBuf>,
}

impl InputArgs {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.kustomize.is_empty()
    }
}

/// Read every source into one inventory. IO failures (a missing file, kubectl not found) are
/// errors; malformed documents are kept in `Inventory::errors` and the rest is analysed.
pub fn load(args: &InputArgs) -> Result<Inventory> {
    let mut texts: Vec<(String, String)> = Vec::new();
    for path in &args.files {
        if path.as_os_str() == "-" {
            let text = std::io::read_to_string(std::io::stdin()).context("reading stdin")?;
            texts.push(("<stdin>".to_string(), text));
        } else {
            read_path(path, &mut texts)?;
        }
    }
    for dir in &args.kustomize {
        texts.push((format!("kustomize:{}", dir.display()), kustomize(dir)?));
    }
    Ok(Inventory::from_sources(
        texts.iter().map(|(n, t)| (n.as_str(), t.as_str())),
    ))
}

/// Parse built-in text (the embedded examples).
pub fn load_builtin(name: &str, text: &str) -> Inventory {
    let (objects, errors) = parse_stream(name, text);
    Inventory::from_objects(objects, errors)
}

fn read_path(path: &Path, out: &mut Vec<(String, String)>) -> Result<()> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}: no such file or directory", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list directory {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            let is_manifest = entry
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
            // Kustomize files describe a build, not objects: render those with -k.
            let is_kustomization = entry.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                matches!(
                    n,
                    "kustomization.yaml" | "kustomization.yml" | "Kustomization"
                )
            });
            if entry.is_dir() || (is_manifest && !is_kustomization) {
                read_path(&entry, out)?;
            }
        }
        return Ok(());
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text =
        String::from_utf8(bytes).map_err(|_| anyhow!("{} is not UTF-8 text", path.display()))?;
    out.push((path.display().to_string(), text));
    Ok(())
}

fn kustomize(dir: &Path) -> Result<String> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow!(
                    "`-k {}` needs kubectl on the PATH (kubectl kustomize renders the directory); install kubectl, or render it yourself and pass `-f -`",
                    dir.display()
                )
            } else {
                anyhow!("cannot run kubectl kustomize {}: {e}", dir.display())
            }
        })?;
    if !output.status.success() {
        bail!(
            "kubectl kustomize {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).map_err(|_| {
        anyhow!(
            "kubectl kustomize {} printed non-UTF-8 output",
            dir.display()
        )
    })
}

/// Print input errors to stderr, one line each.
pub fn report_input_errors(errors: &[InputError]) {
    for e in errors {
        eprintln!("error: {e}");
    }
}

/// Warn about Istio objects validation rejects: they take no effect on any verdict.
pub fn report_rejected(inventory: &kfp_mesh_core::inventory::Inventory) {
    for r in &inventory.rejected {
        for i in &r.issues {
            eprintln!(
                "warning: {} takes no effect: Istio rejects it ({}): {}",
                r.object, i.code, i.message
            );
        }
    }
}
