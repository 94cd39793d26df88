//! Reading the upstream renders from `../shared/upstream` (never copied into the repository).

#![allow(dead_code)]

use std::path::PathBuf;

use kfp_mesh_core::inventory::Inventory;

pub fn upstream_dir() -> PathBuf {
    kfp_mesh_testdata::upstream_dir()
}

/// The named render sets of the acceptance criteria.
pub const RENDERS: &[&str] = &[
    "kfp-2.5.0-su",
    "kfp-2.5.0-mu",
    "kfp-master-su",
    "kfp-master-mu",
    "kfp-master-k8s-native",
    "kubeflow-v1.10.1",
    "kubeflow-master",
    "kfp-2.15.0-su",
    "kfp-2.17.0-standalone-tls",
    "kfp-master-postgresql",
];

pub fn files_of(render: &str) -> Vec<String> {
    let single = |f: &str| vec![f.to_string()];
    match render {
        "kfp-2.5.0-su" => single("kfp-2.5.0-platform-agnostic.yaml"),
        "kfp-2.5.0-mu" => single("kfp-2.5.0-platform-agnostic-multi-user.yaml"),
        "kfp-master-su" => single("kfp-master-platform-agnostic.yaml"),
        "kfp-2.15.0-su" => single("kfp-2.15.0-platform-agnostic.yaml"),
        "kfp-2.17.0-standalone-tls" => {
            single("kfp-2.17.0-cert-manager-platform-agnostic-standalone-tls.yaml")
        }
        "kfp-master-postgresql" => single("kfp-master-platform-agnostic-postgresql.yaml"),
        "kfp-master-mu" => single("kfp-master-platform-agnostic-multi-user.yaml"),
        "kfp-master-k8s-native" => {
            single("kfp-master-cert-manager-platform-agnostic-multi-user-k8s-native.yaml")
        }
        "kubeflow-v1.10.1" | "kubeflow-master" => {
            let prefix = if render == "kubeflow-master" {
                "kubeflow-manifests-master-"
            } else {
                "kubeflow-manifests-v1.10.1-"
            };
            let mut files: Vec<String> = std::fs::read_dir(upstream_dir())
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", upstream_dir().display()))
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix) && n.ends_with(".yaml"))
                .collect();
            files.sort();
            assert!(files.len() >= 6, "{render}: only {files:?}");
            files
        }
        other => panic!("unknown render {other}"),
    }
}

pub fn read(file: &str) -> String {
    let path = upstream_dir().join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The inventory of a render set, plus extra YAML documents.
pub fn inventory_with(render: &str, extra: &str) -> Inventory {
    let texts: Vec<(String, String)> = files_of(render)
        .into_iter()
        .map(|f| {
            let t = read(&f);
            (format!("../shared/upstream/{f}"), t)
        })
        .chain((!extra.is_empty()).then(|| ("<test>".to_string(), extra.to_string())))
        .collect();
    let inv = Inventory::from_sources(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())));
    assert!(
        inv.objects.len() > 20,
        "{render}: {} objects",
        inv.objects.len()
    );
    inv
}

pub fn inventory(render: &str) -> Inventory {
    inventory_with(render, "")
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kfp-mesh-test-{}-{}-{what}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copy a directory tree (the test copies `manifests/` before it edits anything).
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            std::fs::copy(&path, &dest)
                .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", path.display(), dest.display()));
        }
    }
}

/// `kubectl kustomize DIR`. Fails the test (never skips) when kubectl is missing or the
/// build fails.
pub fn kustomize(dir: &std::path::Path) -> String {
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "kubectl is required for the kustomize tests (`kubectl kustomize`) and could not be run: {e}"
            )
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("kustomize output is not UTF-8: {e}"))
}

/// Check every Istio object file of a component directory (below `manifests/kustomize/
/// components/`, patches and kustomizations left out) with kfp-mesh's validation as written:
/// no read error, nothing Istio would reject or warn about. Returns how many Istio objects
/// (`*.istio.io` documents) the files hold.
pub fn assert_component_istio_objects_valid(component: &str) -> usize {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../manifests/kustomize/components")
        .join(component);
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap_or_else(|e| panic!("{e}")).path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                files.push(p);
            }
        }
    }
    let mut istio = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{e}"));
        // Objects only: not kustomizations, not patches.
        let object_file = !f.ends_with("kustomization.yaml")
            && !f.parent().is_some_and(|d| d.ends_with("patches"));
        if !object_file || !text.contains("istio.io") {
            continue;
        }
        let name = f.display().to_string();
        let inv = Inventory::from_sources([(name.as_str(), text.as_str())]);
        assert!(inv.errors.is_empty(), "{name}: {:#?}", inv.errors);
        assert!(inv.rejected.is_empty(), "{name}: {:#?}", inv.rejected);
        assert!(inv.warnings.is_empty(), "{name}: {:#?}", inv.warnings);
        istio += inv
            .objects
            .iter()
            .filter(|o| o.api_version.contains("istio.io"))
            .count();
    }
    istio
}
