//! A fake Kubernetes API server on loopback, for driving the real kube-rs client: HTTPS with
//! a test CA (rcgen), bearer-token authentication, the list API with `limit`/`continue`
//! pagination, `get` by name, 404 `Status` bodies for APIs that are not installed, 403
//! `Status` bodies for resources the user may not read, and slow answers. The responses are
//! shaped like the real API server's (list kinds, `metadata.continue`, items of built-in
//! kinds without `apiVersion`/`kind`, `managedFields` on every object).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::{Value, json};

pub const TOKEN: &str = "kfp-mesh-test-token";
pub const CONTEXT: &str = "fake-cluster";
pub const USER: &str = "system:serviceaccount:default:kfp-mesh-tester";

/// The objects of one resource: fixed, or made on demand (big lists without the memory).
#[derive(Clone)]
pub enum Items {
    Fixed(Arc<Vec<Value>>),
    Generated {
        count: usize,
        make: Arc<dyn Fn(usize) -> Value + Send + Sync>,
    },
}

#[derive(Clone)]
pub struct Resource {
    pub group: String,
    pub plural: String,
    pub kind: String,
    pub versions: Vec<String>,
    pub namespaced: bool,
    pub items: Items,
}

/// What the fake API server serves.
#[derive(Clone, Default)]
pub struct Cluster {
    resources: HashMap<(String, String), Resource>,
    forbidden: BTreeSet<(String, String)>,
    slow: HashMap<(String, String), Duration>,
}

fn key(group: &str, plural: &str) -> (String, String) {
    (group.to_string(), plural.to_string())
}

/// (group, plural, namespaced, versions) of the kinds the fake knows by `kind`.
/// The fake's name for the Gateway API's `Gateway` (`gateway.networking.k8s.io`).
pub const GATEWAY_API_GATEWAY: &str = "Gateway.gateway.networking.k8s.io";

pub fn kind_info(
    kind: &str,
) -> Option<(&'static str, &'static str, bool, &'static [&'static str])> {
    Some(match kind {
        "Namespace" => ("", "namespaces", false, &["v1"]),
        // The Gateway API's Gateway (waypoints), named apart from Istio's networking Gateway.
        GATEWAY_API_GATEWAY => ("gateway.networking.k8s.io", "gateways", true, &["v1"]),
        "Pod" => ("", "pods", true, &["v1"]),
        "Service" => ("", "services", true, &["v1"]),
        "ServiceAccount" => ("", "serviceaccounts", true, &["v1"]),
        "ConfigMap" => ("", "configmaps", true, &["v1"]),
        "Deployment" => ("apps", "deployments", true, &["v1"]),
        "StatefulSet" => ("apps", "statefulsets", true, &["v1"]),
        "DaemonSet" => ("apps", "daemonsets", true, &["v1"]),
        "ReplicaSet" => ("apps", "replicasets", true, &["v1"]),
        "Job" => ("batch", "jobs", true, &["v1"]),
        "CronJob" => ("batch", "cronjobs", true, &["v1"]),
        "MutatingWebhookConfiguration" => (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            false,
            &["v1"],
        ),
        "ValidatingWebhookConfiguration" => (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            false,
            &["v1"],
        ),
        "NetworkPolicy" => ("networking.k8s.io", "networkpolicies", true, &["v1"]),
        "PeerAuthentication" => (
            "security.istio.io",
            "peerauthentications",
            true,
            &["v1", "v1beta1"],
        ),
        "AuthorizationPolicy" => (
            "security.istio.io",
            "authorizationpolicies",
            true,
            &["v1", "v1beta1"],
        ),
        "RequestAuthentication" => (
            "security.istio.io",
            "requestauthentications",
            true,
            &["v1", "v1beta1"],
        ),
        "DestinationRule" => (
            "networking.istio.io",
            "destinationrules",
            true,
            &["v1", "v1beta1", "v1alpha3"],
        ),
        "Sidecar" => (
            "networking.istio.io",
            "sidecars",
            true,
            &["v1", "v1beta1", "v1alpha3"],
        ),
        "Gateway" => (
            "networking.istio.io",
            "gateways",
            true,
            &["v1", "v1beta1", "v1alpha3"],
        ),
        "Profile" => ("kubeflow.org", "profiles", false, &["v1", "v1beta1"]),
        "Workflow" => ("argoproj.io", "workflows", true, &["v1alpha1"]),
        _ => return None,
    })
}

/// Every built-in kind `verify` lists, installed and empty.
pub const BUILT_IN: &[&str] = &[
    "Namespace",
    "Pod",
    "Service",
    "ServiceAccount",
    "ConfigMap",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "NetworkPolicy",
];

/// Istio's CRDs.
pub const ISTIO: &[&str] = &[
    GATEWAY_API_GATEWAY,
    "PeerAuthentication",
    "AuthorizationPolicy",
    "RequestAuthentication",
    "DestinationRule",
    "Sidecar",
    "Gateway",
];

impl Cluster {
    /// A cluster with every built-in kind installed (and empty).
    pub fn new() -> Self {
        let mut c = Cluster::default();
        for k in BUILT_IN {
            c.install(k);
        }
        c
    }

    /// Install the API of `kind` (empty).
    pub fn install(&mut self, kind: &str) -> &mut Self {
        let (group, plural, namespaced, versions) =
            kind_info(kind).unwrap_or_else(|| panic!("unknown kind {kind}"));
        self.resources
            .entry(key(group, plural))
            .or_insert_with(|| Resource {
                group: group.to_string(),
                plural: plural.to_string(),
                kind: kind.split('.').next().unwrap_or(kind).to_string(),
                versions: versions.iter().map(|v| v.to_string()).collect(),
                namespaced,
                items: Items::Fixed(Arc::new(Vec::new())),
            });
        self
    }

    /// Serve `kind` only at these versions.
    pub fn versions(&mut self, kind: &str, versions: &[&str]) -> &mut Self {
        self.install(kind);
        let (group, plural, ..) = kind_info(kind).expect("kind");
        if let Some(r) = self.resources.get_mut(&key(group, plural)) {
            r.versions = versions.iter().map(|v| v.to_string()).collect();
        }
        self
    }

    pub fn uninstall(&mut self, kind: &str) -> &mut Self {
        let (group, plural, ..) = kind_info(kind).expect("kind");
        self.resources.remove(&key(group, plural));
        self
    }

    /// Add objects (parsed Kubernetes objects with apiVersion, kind, metadata); kinds the
    /// fake does not know are skipped. Installs their APIs.
    pub fn add(&mut self, objects: impl IntoIterator<Item = Value>) -> &mut Self {
        let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for o in objects {
            let mut kind = o.get("kind").and_then(Value::as_str).unwrap_or_default();
            if kind == "Gateway"
                && o.get("apiVersion")
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.starts_with("gateway.networking.k8s.io/"))
            {
                kind = GATEWAY_API_GATEWAY;
            }
            if kind_info(kind).is_some() {
                by_kind.entry(kind.to_string()).or_default().push(o);
            }
        }
        for (kind, objs) in by_kind {
            self.install(&kind);
            let (group, plural, ..) = kind_info(&kind).expect("kind");
            if let Some(r) = self.resources.get_mut(&key(group, plural)) {
                let mut items = match &r.items {
                    Items::Fixed(v) => v.as_ref().clone(),
                    Items::Generated { .. } => Vec::new(),
                };
                items.extend(objs);
                r.items = Items::Fixed(Arc::new(items));
            }
        }
        self
    }

    /// Serve `count` objects of `kind` made by `make(i)` on demand.
    pub fn generate(
        &mut self,
        kind: &str,
        count: usize,
        make: impl Fn(usize) -> Value + Send + Sync + 'static,
    ) -> &mut Self {
        self.install(kind);
        let (group, plural, ..) = kind_info(kind).expect("kind");
        if let Some(r) = self.resources.get_mut(&key(group, plural)) {
            r.items = Items::Generated {
                count,
                make: Arc::new(make),
            };
        }
        self
    }

    /// Answer 403 Forbidden to any request for `kind`.
    pub fn forbid(&mut self, kind: &str) -> &mut Self {
        let (group, plural, ..) = kind_info(kind).expect("kind");
        self.forbidden.insert(key(group, plural));
        self
    }

    /// Answer requests for `kind` after `delay`.
    pub fn slow(&mut self, kind: &str, delay: Duration) -> &mut Self {
        let (group, plural, ..) = kind_info(kind).expect("kind");
        self.slow.insert(key(group, plural), delay);
        self
    }
}

/// The Kubernetes `Status` body of a failed request.
pub fn status(code: u16, reason: &str, message: &str, details: Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    })
}

/// What the API server adds to every object it serves: bulk kfp-mesh must strip.
fn served(mut o: Value, api_version: &str, built_in: bool, i: usize) -> Value {
    if let Some(map) = o.as_object_mut() {
        if built_in {
            map.remove("apiVersion");
            map.remove("kind");
        } else {
            map.insert("apiVersion".into(), Value::String(api_version.to_string()));
        }
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            meta.insert("resourceVersion".into(), json!(format!("{}", 1000 + i)));
            meta.insert(
                "uid".into(),
                json!(format!("00000000-0000-4000-8000-{i:012}")),
            );
            meta.insert(
                "managedFields".into(),
                json!([{
                    "manager": "kubectl-client-side-apply",
                    "operation": "Update",
                    "apiVersion": api_version,
                    "time": "2026-08-01T10:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:annotations": {".": {}}, "f:labels": {".": {}}}, "f:spec": {".": {}}}
                }]),
            );
        }
    }
    o
}

fn object_ns(o: &Value) -> &str {
    o.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
}

fn object_name(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

struct Parsed {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<Parsed> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        ["namespaces", ns, plural, tail @ ..] => {
            (Some(ns.to_string()), plural.to_string(), tail.first())
        }
        [plural, tail @ ..] => (None, plural.to_string(), tail.first()),
        [] => return None,
    };
    Some(Parsed {
        group,
        version,
        namespace,
        plural,
        name: name.map(|n| n.to_string()),
    })
}

fn query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(code: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn not_found_api() -> Value {
    status(
        404,
        "NotFound",
        "the server could not find the requested resource",
        json!({}),
    )
}

async fn handle(
    cluster: Arc<Cluster>,
    log: Arc<Mutex<Vec<String>>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let q = req.uri().query().map(str::to_string);
    if let Ok(mut l) = log.lock() {
        l.push(match &q {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        });
    }
    let authorized = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorized {
        return respond(
            StatusCode::UNAUTHORIZED,
            &status(401, "Unauthorized", "Unauthorized", json!({})),
        );
    }
    let Some(p) = parse_path(&path) else {
        return respond(StatusCode::NOT_FOUND, &not_found_api());
    };
    let k = key(&p.group, &p.plural);
    if let Some(delay) = cluster.slow.get(&k) {
        tokio::time::sleep(*delay).await;
    }
    let Some(res) = cluster
        .resources
        .get(&k)
        .filter(|r| r.versions.contains(&p.version))
    else {
        return respond(StatusCode::NOT_FOUND, &not_found_api());
    };
    let api_version = if p.group.is_empty() {
        p.version.clone()
    } else {
        format!("{}/{}", p.group, p.version)
    };
    let verb = if p.name.is_some() { "get" } else { "list" };
    if cluster.forbidden.contains(&k) {
        let scope = match &p.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let resource = if p.group.is_empty() {
            p.plural.clone()
        } else {
            format!("{}.{}", p.plural, p.group)
        };
        let message = format!(
            "{resource} is forbidden: User \"{USER}\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
            p.plural, p.group
        );
        return respond(
            StatusCode::FORBIDDEN,
            &status(
                403,
                "Forbidden",
                &message,
                json!({"group": p.group, "kind": p.plural}),
            ),
        );
    }
    let built_in = !p.group.contains('.') || p.group.ends_with(".k8s.io");
    let in_scope = |o: &Value| -> bool {
        match (&p.namespace, res.namespaced) {
            (Some(ns), true) => object_ns(o) == ns,
            _ => true,
        }
    };
    if let Some(name) = &p.name {
        let found = match &res.items {
            Items::Fixed(v) => v
                .iter()
                .enumerate()
                .find(|(_, o)| object_name(o) == name && in_scope(o))
                .map(|(i, o)| (i, o.clone())),
            Items::Generated { count, make } => (0..*count)
                .map(|i| (i, make(i)))
                .find(|(_, o)| object_name(o) == name && in_scope(o)),
        };
        return match found {
            Some((i, o)) => {
                let mut o = served(o, &api_version, built_in, i);
                if let Some(m) = o.as_object_mut() {
                    m.insert("apiVersion".into(), json!(api_version));
                    m.insert("kind".into(), json!(res.kind));
                }
                respond(StatusCode::OK, &o)
            }
            None => respond(
                StatusCode::NOT_FOUND,
                &status(
                    404,
                    "NotFound",
                    &format!("{} \"{name}\" not found", p.plural),
                    json!({"name": name, "kind": p.plural}),
                ),
            ),
        };
    }
    let params = query(q.as_deref());
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let start: usize = match params.get("continue") {
        None => 0,
        Some(tok) => match tok
            .strip_prefix("rv:4242;start:")
            .and_then(|s| s.parse().ok())
        {
            Some(s) => s,
            None => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    &status(400, "BadRequest", "continue key is not valid", json!({})),
                );
            }
        },
    };
    let total = match &res.items {
        Items::Fixed(v) => v.len(),
        Items::Generated { count, .. } => *count,
    };
    let mut items = Vec::new();
    let mut next = total;
    let mut i = start;
    while i < total {
        let o = match &res.items {
            Items::Fixed(v) => v[i].clone(),
            Items::Generated { make, .. } => make(i),
        };
        i += 1;
        if !in_scope(&o) {
            continue;
        }
        items.push(served(o, &api_version, built_in, i));
        if items.len() == limit {
            next = i;
            break;
        }
    }
    let mut metadata = json!({"resourceVersion": "4242"});
    if next < total {
        metadata["continue"] = json!(format!("rv:4242;start:{next}"));
        metadata["remainingItemCount"] = json!(total - next);
    }
    respond(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", res.kind),
            "apiVersion": api_version,
            "metadata": metadata,
            "items": items,
        }),
    )
}

/// A running fake API server.
pub struct FakeApiServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    /// Start serving `cluster` on 127.0.0.1 (an ephemeral port) and write a kubeconfig for it.
    pub async fn start(cluster: Cluster) -> FakeApiServer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kfp-mesh fake apiserver CA");
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
        let leaf_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf");

        let cert = rustls::pki_types::CertificateDer::from(leaf.der().to_vec());
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key der");
        let mut tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_path = dir.path().join("ca.crt");
        std::fs::write(&ca_path, ca.pem()).expect("write CA");
        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, &format!("https://{addr}"), &ca_path, TOKEN);

        let cluster = Arc::new(cluster);
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let cluster = cluster.clone();
                let log = log2.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let cluster = cluster.clone();
                        let log = log.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(cluster, log, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        FakeApiServer {
            addr,
            dir,
            kubeconfig,
            log,
            task,
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// A kubeconfig with one context, [`CONTEXT`], for `server`.
pub fn write_kubeconfig(path: &Path, server: &str, ca: &Path, token: &str) {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server}
    certificate-authority: {ca}
contexts:
- name: {CONTEXT}
  context:
    cluster: fake
    user: tester
    namespace: default
current-context: {CONTEXT}
users:
- name: tester
  user:
    token: {token}
",
        ca = ca.display()
    );
    std::fs::write(path, text).expect("write kubeconfig");
}

/// The text of an upstream fixture (read at test time, never copied; see crates/testdata).
pub fn upstream(name: &str) -> (String, String) {
    let path = kfp_mesh_testdata::upstream(name);
    (
        path.display().to_string(),
        kfp_mesh_testdata::read_upstream(name),
    )
}
