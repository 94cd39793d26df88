//! Test fixtures: rcgen certificates, a Secret-volume-like directory, real KFP workflows.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kfp_mesh_webhook::{RunningServer, Settings};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::{Value, json};

pub const SERVER_NAME: &str = "kfp-mesh-webhook.kubeflow.svc";

pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "kfp-mesh test CA");
        let key = KeyPair::generate().expect("key");
        Pki {
            ca: CertifiedIssuer::self_signed(params, key).expect("CA"),
        }
    }

    pub fn ca_der(&self) -> Vec<u8> {
        self.ca.der().to_vec()
    }

    pub fn leaf(&self) -> Leaf {
        let params = CertificateParams::new(vec![SERVER_NAME.to_string(), "localhost".to_string()])
            .expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A directory laid out like a Kubernetes Secret volume: `tls.crt -> ..data/tls.crt`,
/// `..data -> ..<version>`; updates swap `..data` atomically, as the kubelet does.
pub struct SecretDir {
    pub dir: tempfile::TempDir,
    version: u32,
}

impl SecretDir {
    pub fn new(leaf: &Leaf) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = SecretDir { dir, version: 0 };
        s.update(leaf);
        std::os::unix::fs::symlink("..data/tls.crt", s.dir.path().join("tls.crt"))
            .expect("symlink");
        std::os::unix::fs::symlink("..data/tls.key", s.dir.path().join("tls.key"))
            .expect("symlink");
        s
    }

    /// An empty directory: the certificate has not been issued yet.
    pub fn empty() -> Self {
        SecretDir {
            dir: tempfile::tempdir().expect("tempdir"),
            version: 0,
        }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    pub fn update(&mut self, leaf: &Leaf) {
        self.version += 1;
        let root = self.dir.path();
        let name = format!(
            "..2026_01_01_00_00_{:02}.{}",
            self.version,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let versioned = root.join(&name);
        std::fs::create_dir(&versioned).expect("mkdir");
        std::fs::write(versioned.join("tls.crt"), &leaf.cert_pem).expect("write");
        std::fs::write(versioned.join("tls.key"), &leaf.key_pem).expect("write");
        let old = std::fs::read_link(root.join("..data")).ok();
        let tmp = root.join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).expect("symlink");
        std::fs::rename(&tmp, root.join("..data")).expect("rename");
        if let Some(old) = old {
            std::fs::remove_dir_all(root.join(old)).expect("remove old version");
        }
    }
}

pub fn settings(cert: &Path, key: &Path) -> Settings {
    let mut s = Settings::new(cert.to_path_buf(), key.to_path_buf());
    s.addr = "127.0.0.1:0".parse().expect("addr");
    s.admin_addr = "127.0.0.1:0".parse().expect("addr");
    s.reload_interval = Duration::from_millis(50);
    s.shutdown_delay = Duration::ZERO;
    s.shutdown_timeout = Duration::from_secs(10);
    s
}

pub async fn start(s: Settings) -> RunningServer {
    kfp_mesh_webhook::start(s).await.expect("server starts")
}

/// The upstream fixtures (`KFP_MESH_UPSTREAM`, ../shared/upstream or scripts/fetch-upstream's
/// cache; see crates/testdata).
pub fn upstream_dir() -> PathBuf {
    kfp_mesh_testdata::upstream_dir()
}

/// A compiled KFP workflow as the KFP API server submits it (inject annotation on every
/// template, run id, service account, namespace).
pub fn submitted_workflow(file: &str) -> Value {
    let path = upstream_dir().join("workflows").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut wf: Value = serde_saphyr::from_str(&text).expect("yaml");
    for t in wf["spec"]["templates"].as_array_mut().expect("templates") {
        let meta = t
            .as_object_mut()
            .expect("template")
            .entry("metadata")
            .or_insert(json!({}));
        if meta.get("annotations").is_none_or(Value::is_null) {
            meta["annotations"] = json!({});
        }
        meta["annotations"]
            .as_object_mut()
            .expect("annotations")
            .entry("sidecar.istio.io/inject")
            .or_insert(json!("false"));
    }
    wf["spec"]["podMetadata"]["labels"]["pipeline/runid"] =
        json!("7f3d0c1e-3c55-4f7b-a6b5-0d9f7c3e2a10");
    wf["spec"]["serviceAccountName"] = json!("default-editor");
    wf["metadata"]["namespace"] = json!("team-a");
    wf
}

pub fn review(uid: &str, operation: &str, group: &str, kind: &str, object: Value) -> Bytes {
    let (resource, version) = if kind == "Pod" {
        ("pods", "v1")
    } else {
        ("workflows", "v1alpha1")
    };
    let v = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "namespace": "team-a",
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kubeflow:ml-pipeline"},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    });
    Bytes::from(serde_json::to_vec(&v).expect("json"))
}

pub fn workflow_review(uid: &str, object: Value) -> Bytes {
    review(uid, "CREATE", "argoproj.io", "Workflow", object)
}

/// Decodes an AdmissionReview response: (response object, decoded patch if any).
pub fn decode(body: &[u8]) -> (Value, Option<json_patch::Patch>) {
    use base64::Engine as _;
    let v: Value = serde_json::from_slice(body).expect("response is JSON");
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    let resp = v["response"].clone();
    let patch = resp["patch"].as_str().map(|p| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p)
            .expect("base64");
        serde_json::from_slice(&bytes).expect("a JSON patch")
    });
    (resp, patch)
}

/// Polls `f` every 20 ms until it returns `Some`, failing after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
