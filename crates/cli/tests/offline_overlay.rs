//! The offline way of docs/istio-strict-mtls.md ("Offline and air-gapped"): a kustomization of
//! one's own whose resource is a local KFP render, with the kfp-mesh components on top, built by
//! the real `kubectl kustomize` from the doc's own YAML block, on the KFP 2.5.0 render of the
//! upstream fixtures (what the overlay's remote base gives). And docs/webhook.md's image
//! override by digest on the same build. No network is used.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kfp-mesh-offline-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// The fenced YAML block of `doc` whose first line is `first_line`.
fn doc_block(doc: &str, first_line: &str) -> String {
    let text = std::fs::read_to_string(repo().join(doc)).expect("read doc");
    let start = text
        .find(&format!("```yaml\n{first_line}\n"))
        .unwrap_or_else(|| panic!("{doc} has no yaml block starting with {first_line:?}"));
    let body = &text[start + "```yaml\n".len()..];
    let end = body.find("```").expect("closing fence");
    body[..end].to_string()
}

fn kustomize(dir: &Path) -> String {
    let o: Output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("`kubectl` is needed (kubectl kustomize): {e}"));
    assert!(
        o.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// The layout the doc describes: `kfp-mesh/` (this repository) next to `my-kfp/`, which holds
/// the render and the doc's kustomization.
fn my_kfp(root: &Path, kustomization: &str) -> PathBuf {
    std::os::unix::fs::symlink(repo(), root.join("kfp-mesh")).expect("symlink the repository");
    let dir = root.join("my-kfp");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(
        kfp_mesh_testdata::upstream("kfp-2.5.0-platform-agnostic.yaml"),
        dir.join("kfp-2.5.0.yaml"),
    )
    .expect("copy the KFP 2.5.0 render");
    std::fs::write(dir.join("kustomization.yaml"), kustomization).expect("write kustomization");
    dir
}

/// What the in-repository test kustomization of the overlay's components builds on the same
/// render (crates/kfp/tests/overlay.rs checks it in depth): manifests/ copied, the render as
/// `upstream/`.
fn tested_variant(root: &Path) -> String {
    let manifests = root.join("repo-manifests");
    let o = Command::new("cp")
        .arg("-r")
        .arg(repo().join("manifests"))
        .arg(&manifests)
        .output()
        .expect("cp");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let variant = manifests.join("tests/istio-strict-mtls/single-user");
    let up = variant.join("upstream");
    std::fs::create_dir_all(&up).expect("mkdir");
    std::fs::copy(
        kfp_mesh_testdata::upstream("kfp-2.5.0-platform-agnostic.yaml"),
        up.join("kfp-2.5.0.yaml"),
    )
    .expect("copy");
    std::fs::write(
        up.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- kfp-2.5.0.yaml\n",
    )
    .expect("write");
    kustomize(&variant)
}

#[test]
fn a_local_render_with_the_components_builds_offline_and_checks_clean() {
    let root = tempdir("render");
    let kustomization = doc_block("docs/istio-strict-mtls.md", "# my-kfp/kustomization.yaml");
    assert!(
        !kustomization.contains("https://") && !kustomization.contains("github.com"),
        "the offline kustomization must not name a remote base:\n{kustomization}"
    );
    let dir = my_kfp(&root, &kustomization);
    let built = kustomize(&dir);

    // The image comes from the mirror the doc names; nothing pulls from ghcr.io.
    assert!(
        built.contains("image: registry.example.internal/kfp-mesh/kfp-mesh:0.1.0"),
        "the images entry did not apply:\n{}",
        built
            .lines()
            .filter(|l| l.contains("image:"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !built.contains("ghcr.io/kfp-mesh"),
        "the upstream image name is left"
    );

    // The same objects as the tested overlay variant, but for that image.
    let tested = tested_variant(&root);
    assert_eq!(
        built.replace(
            "registry.example.internal/kfp-mesh/kfp-mesh:0.1.0",
            "ghcr.io/kfp-mesh/kfp-mesh:0.1.0"
        ),
        tested,
        "the offline kustomization builds something else than the overlay's components on the render"
    );

    // And kfp-mesh finds nothing wrong in it (as for the overlay).
    let o = Command::new(env!("CARGO_BIN_EXE_kfp-mesh"))
        .args([
            "check",
            "-k",
            dir.to_str().expect("utf-8 path"),
            "-o",
            "json",
        ])
        .output()
        .expect("kfp-mesh runs");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("check -o json: {e}\n{}", text(&o.stderr)));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let errors: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["severity"] == "error")
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(
        report["flows"].as_array().is_some_and(|f| !f.is_empty()),
        "no flow was evaluated"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_image_pinned_by_digest_in_ones_own_kustomization_wins() {
    let root = tempdir("digest");
    let mut kustomization = doc_block("docs/istio-strict-mtls.md", "# my-kfp/kustomization.yaml");
    // docs/webhook.md's hand-written entry, in place of the doc's images entry.
    let images = doc_block(
        "docs/webhook.md",
        "images:\n- name: ghcr.io/kfp-mesh/kfp-mesh        # the name the component gives the image",
    );
    let digest = format!("sha256:{}", "ab".repeat(32));
    let cut = kustomization.find("images:").expect("an images entry");
    kustomization.truncate(cut);
    kustomization.push_str(&images.replace("sha256:<digest>", &digest));
    let dir = my_kfp(&root, &kustomization);
    let built = kustomize(&dir);
    let want = format!("image: registry.example.com/kfp-mesh/kfp-mesh@{digest}");
    assert!(
        built.contains(&want),
        "{want} not in:\n{}",
        built
            .lines()
            .filter(|l| l.contains("image:"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let _ = std::fs::remove_dir_all(&root);
}
