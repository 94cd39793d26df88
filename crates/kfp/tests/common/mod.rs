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
