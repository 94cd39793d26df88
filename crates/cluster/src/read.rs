//! Reading a cluster with kube-rs: configuration, paginated lists with bounded concurrency,
//! error classification, a progress line on a terminal.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use kfp_mesh_core::object::Object;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::params::ListParams;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::args::KubeArgs;
use crate::error::{ClusterError, chain};
use crate::kinds::{self, KINDS, KindSpec};
use crate::strip::{self, Kept, LivePod, LiveWorkflow};

/// Install rustls' ring crypto provider as the process default, once (kube-rs builds its TLS
/// configuration from the process default; with more than one provider compiled in, rustls
/// cannot pick one by itself).
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error means a provider is already installed, which is what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// What the environment says about where the kubeconfig is.
#[derive(Clone, Debug, Default)]
pub struct ConfigEnv {
    /// `$KUBECONFIG` (a list of paths).
    pub kubeconfig: Option<OsString>,
    pub home: Option<PathBuf>,
    /// `$KUBERNETES_SERVICE_HOST` is set: running in a pod.
    pub in_cluster: bool,
}

impl ConfigEnv {
    pub fn from_process() -> Self {
        ConfigEnv {
            kubeconfig: std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()),
            home: std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            in_cluster: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
        }
    }
}

/// Where the client configuration comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    Files(Vec<PathBuf>),
    InCluster,
}

/// `--kubeconfig`, then `$KUBECONFIG`, then `~/.kube/config`, then the in-cluster
/// ServiceAccount, like kubectl.
pub fn config_source(flag: Option<&Path>, env: &ConfigEnv) -> Result<ConfigSource, ClusterError> {
    if let Some(p) = flag {
        if p.is_file() {
            return Ok(ConfigSource::Files(vec![p.to_path_buf()]));
        }
        return Err(ClusterError::NoKubeconfig {
            looked: format!("--kubeconfig {} does not exist", p.display()),
        });
    }
    let mut looked = Vec::new();
    if let Some(list) = &env.kubeconfig {
        let paths: Vec<PathBuf> = std::env::split_paths(list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        let existing: Vec<PathBuf> = paths.iter().filter(|p| p.is_file()).cloned().collect();
        if !existing.is_empty() {
            return Ok(ConfigSource::Files(existing));
        }
        looked.push(format!(
            "KUBECONFIG={} names no existing file",
            list.to_string_lossy()
        ));
    } else {
        looked.push("KUBECONFIG is not set".to_string());
    }
    match &env.home {
        Some(home) => {
            let p = home.join(".kube").join("config");
            if p.is_file() {
                return Ok(ConfigSource::Files(vec![p]));
            }
            looked.push(format!("{} does not exist", p.display()));
        }
        None => looked.push("HOME is not set (no ~/.kube/config)".to_string()),
    }
    if env.in_cluster {
        return Ok(ConfigSource::InCluster);
    }
    Err(ClusterError::NoKubeconfig {
        looked: looked.join(", "),
    })
}

/// A connected client, with the names its errors use.
#[derive(Clone)]
pub struct Connection {
    pub client: kube::Client,
    /// The kubeconfig context (`in-cluster` in a pod).
    pub context: String,
    /// The API server address.
    pub server: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("context", &self.context)
            .field("server", &self.server)
            .finish()
    }
}

/// Build a client from the options and the process environment.
pub async fn connect(args: &KubeArgs) -> Result<Connection, ClusterError> {
    connect_with_env(args, &ConfigEnv::from_process()).await
}

/// [`connect`] with an explicit environment.
pub async fn connect_with_env(
    args: &KubeArgs,
    env: &ConfigEnv,
) -> Result<Connection, ClusterError> {
    install_crypto_provider();
    let (mut config, context) = match config_source(args.kubeconfig.as_deref(), env)? {
        ConfigSource::Files(paths) => {
            let shown = paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":");
            let bad = |reason: String| ClusterError::BadKubeconfig {
                path: shown.clone(),
                reason,
            };
            let mut merged: Option<Kubeconfig> = None;
            for p in &paths {
                let kc = Kubeconfig::read_from(p).map_err(|e| bad(chain(&e)))?;
                merged = Some(match merged {
                    None => kc,
                    Some(m) => m.merge(kc).map_err(|e| bad(chain(&e)))?,
                });
            }
            let kc = merged.ok_or_else(|| bad("no file".to_string()))?;
            let context = match args.context.clone().or_else(|| kc.current_context.clone()) {
                Some(c) if !c.is_empty() => c,
                _ => {
                    return Err(bad(
                        "it sets no current-context; name one with `--context NAME`".to_string(),
                    ));
                }
            };
            if !kc.contexts.iter().any(|c| c.name == context) {
                let mut names: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
                names.sort();
                return Err(ClusterError::UnknownContext {
                    context,
                    path: shown,
                    available: if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    },
                });
            }
            let opts = KubeConfigOptions {
                context: Some(context.clone()),
                ..KubeConfigOptions::default()
            };
            let config = kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| bad(chain(&e)))?;
            (config, context)
        }
        ConfigSource::InCluster => {
            let config = kube::Config::incluster()
                .map_err(|e| ClusterError::InCluster { reason: chain(&e) })?;
            (config, "in-cluster".to_string())
        }
    };
    let timeout = args.request_timeout;
    config.connect_timeout = Some(timeout.min(Duration::from_secs(10)));
    // Our own timeout (per request) fires first and says which request it was.
    config.read_timeout = Some(timeout + Duration::from_secs(30));
    let server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let client = kube::Client::try_from(config).map_err(|e| ClusterError::Client(chain(&e)))?;
    Ok(Connection {
        client,
        context,
        server,
        timeout,
    })
}

/// A failed request: not found (a fact for optional kinds), or an error.
enum Fail {
    NotFound,
    Error(ClusterError),
}

impl From<ClusterError> for Fail {
    fn from(e: ClusterError) -> Self {
        Fail::Error(e)
    }
}

#[derive(Deserialize)]
struct ListPage {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Value>,
}

#[derive(Default, Deserialize)]
struct ListMeta {
    #[serde(rename = "continue", default)]
    continue_: Option<String>,
}

/// The user a 403 names: `User "alice" cannot ...`.
fn forbidden_user(message: &str) -> String {
    message
        .split_once("User \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(u, _)| format!("user `{u}`"))
        .unwrap_or_else(|| "the current user".to_string())
}

impl Connection {
    async fn request<T: serde::de::DeserializeOwned>(
        &self,
        req: http::Request<Vec<u8>>,
        verb: &str,
        spec: &KindSpec,
        namespace: Option<&str>,
    ) -> Result<T, Fail> {
        let what = format!("{verb} {}", req.uri());
        let text = match tokio::time::timeout(self.timeout, self.client.request_text(req)).await {
            Err(_) => {
                return Err(Fail::Error(ClusterError::Timeout {
                    server: self.server.clone(),
                    what,
                    timeout: self.timeout,
                }));
            }
            Ok(Ok(text)) => text,
            Ok(Err(kube::Error::Api(status))) => {
                return Err(match status.code {
                    404 => Fail::NotFound,
                    401 => Fail::Error(ClusterError::Unauthorized {
                        server: self.server.clone(),
                        context: self.context.clone(),
                        message: status.message.clone(),
                    }),
                    403 => Fail::Error(ClusterError::Forbidden {
                        user: forbidden_user(&status.message),
                        verb: verb.to_string(),
                        resource: spec.resource(),
                        scope: match namespace.filter(|_| spec.namespaced) {
                            Some(ns) => format!(" in namespace {ns}"),
                            None => " at the cluster scope".to_string(),
                        },
                        message: status.message.clone(),
                    }),
                    code => Fail::Error(ClusterError::Api {
                        server: self.server.clone(),
                        what,
                        code,
                        reason: status.reason.clone(),
                        message: status.message.clone(),
                    }),
                });
            }
            Ok(Err(e)) => {
                return Err(Fail::Error(ClusterError::Unreachable {
                    server: self.server.clone(),
                    context: self.context.clone(),
                    reason: chain(&e),
                }));
            }
        };
        serde_json::from_str(&text).map_err(|e| {
            Fail::Error(ClusterError::Decode {
                server: self.server.clone(),
                what,
                reason: e.to_string(),
            })
        })
    }

    /// List every object of `spec` at `version` (in `namespace`, or everywhere), page by
    /// page; `on_page` gets each page's items.
    async fn list_all(
        &self,
        spec: &KindSpec,
        version: &str,
        namespace: Option<&str>,
        page_size: u32,
        mut on_page: impl FnMut(Vec<Value>),
    ) -> Result<(), Fail> {
        let path = spec.path(version, namespace, None);
        let mut token: Option<String> = None;
        loop {
            let lp = ListParams {
                limit: Some(page_size),
                continue_token: token.take(),
                ..ListParams::default()
            };
            let req = kube::core::Request::new(path.clone())
                .list(&lp)
                .map_err(|e| ClusterError::Client(chain(&e)))?;
            let page: ListPage = self.request(req, "list", spec, namespace).await?;
            on_page(page.items);
            match page.metadata.continue_ {
                Some(c) if !c.is_empty() => token = Some(c),
                _ => return Ok(()),
            }
        }
    }

    /// Get one object; `None` when it does not exist.
    async fn get(
        &self,
        spec: &KindSpec,
        version: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ClusterError> {
        let req = kube::core::Request::new(spec.path(version, namespace, None))
            .get(name, &Default::default())
            .map_err(|e| ClusterError::Client(chain(&e)))?;
        match self.request::<Value>(req, "get", spec, namespace).await {
            Ok(v) => Ok(Some(v)),
            Err(Fail::NotFound) => Ok(None),
            Err(Fail::Error(e)) => Err(e),
        }
    }

    /// One live Pod as an analysis object (for `tls-check --live` on a pod name).
    pub async fn get_pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Object>, ClusterError> {
        let spec = kinds::pods();
        let Some(v) = self.get(spec, "v1", Some(namespace), name).await? else {
            return Ok(None);
        };
        let mut v = v;
        // Keep the pod itself for the analysis, whoever owns it.
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("ownerReferences");
        }
        Ok(match strip::convert(spec, "v1", v, &self.context) {
            Kept::Pod(_, Some(o)) => Some(*o),
            _ => None,
        })
    }
}

/// How one kind was read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KindRead {
    pub kind: String,
    /// The group/version served (`None` when the kind is not installed).
    pub api_version: Option<String>,
    /// Objects the API server returned.
    pub listed: usize,
    /// Objects kept for the analysis (Pods: kept as live pods).
    pub kept: usize,
    pub installed: bool,
}

/// Everything read from a cluster.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub context: String,
    pub server: String,
    /// The namespaces read (`None`: all).
    pub scope: Option<Vec<String>>,
    /// Objects for the analysis.
    pub objects: Vec<Object>,
    pub pods: Vec<LivePod>,
    pub workflows: Vec<LiveWorkflow>,
    pub reads: Vec<KindRead>,
}

struct Progress {
    enabled: bool,
    lists: usize,
    done: AtomicUsize,
    objects: AtomicUsize,
    context: String,
}

impl Progress {
    fn new(enabled: bool, lists: usize, context: &str) -> Self {
        Progress {
            enabled: enabled && std::io::stderr().is_terminal(),
            lists,
            done: AtomicUsize::new(0),
            objects: AtomicUsize::new(0),
            context: context.to_string(),
        }
    }
    fn page(&self, n: usize) {
        let total = self.objects.fetch_add(n, Ordering::Relaxed) + n;
        self.show(total);
    }
    fn list_done(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.show(self.objects.load(Ordering::Relaxed));
    }
    fn show(&self, objects: usize) {
        if !self.enabled {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2Kreading cluster `{}`: {}/{} lists, {objects} objects",
            self.context,
            self.done.load(Ordering::Relaxed),
            self.lists
        );
        let _ = err.flush();
    }
    fn finish(&self) {
        if self.enabled {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

/// One list task: a kind, everywhere or in one namespace.
struct Task<'a> {
    spec: &'a KindSpec,
    namespace: Option<String>,
    /// Namespaces with -n are fetched one by one (`get`), not listed.
    get_name: Option<String>,
}

struct TaskOut<'a> {
    spec: &'a KindSpec,
    version: Option<String>,
    listed: usize,
    kept: Vec<Kept>,
}

async fn run_task<'a>(
    conn: &Connection,
    task: Task<'a>,
    page_size: u32,
    progress: &Progress,
    keep: &(dyn Fn(&Value) -> bool + Sync),
) -> Result<TaskOut<'a>, ClusterError> {
    let spec = task.spec;
    let mut out = TaskOut {
        spec,
        version: None,
        listed: 0,
        kept: Vec::new(),
    };
    for version in spec.versions {
        let api_version = spec.api_version(version);
        if let Some(name) = &task.get_name {
            if let Some(v) = conn.get(spec, version, None, name).await? {
                out.listed += 1;
                out.kept
                    .push(strip::convert(spec, &api_version, v, &conn.context));
            }
            out.version = Some(api_version);
            break;
        }
        let mut listed = 0;
        let mut kept = Vec::new();
        let result = conn
            .list_all(
                spec,
                version,
                task.namespace.as_deref(),
                page_size,
                |items| {
                    listed += items.len();
                    progress.page(items.len());
                    for item in items {
                        if !keep(&item) {
                            continue;
                        }
                        match strip::convert(spec, &api_version, item, &conn.context) {
                            Kept::Dropped => {}
                            k => kept.push(k),
                        }
                    }
                },
            )
            .await;
        match result {
            Ok(()) => {
                out.version = Some(api_version);
                out.listed = listed;
                out.kept = kept;
                break;
            }
            Err(Fail::NotFound) => continue,
            Err(Fail::Error(e)) => return Err(e),
        }
    }
    if out.version.is_none() && !spec.optional {
        return Err(ClusterError::Api {
            server: conn.server.clone(),
            what: format!("list {}", spec.resource()),
            code: 404,
            reason: "NotFound".to_string(),
            message: format!(
                "the API server does not serve {} (a Kubernetes API every cluster has)",
                spec.resource()
            ),
        });
    }
    progress.list_done();
    Ok(out)
}

fn tasks_for<'a>(spec: &'a KindSpec, scope: Option<&[String]>) -> Vec<Task<'a>> {
    match scope {
        Some(namespaces) if spec.namespaced => namespaces
            .iter()
            .map(|ns| Task {
                spec,
                namespace: Some(ns.clone()),
                get_name: None,
            })
            .collect(),
        Some(namespaces) if std::ptr::eq(spec, kinds::namespaces()) => namespaces
            .iter()
            .map(|ns| Task {
                spec,
                namespace: None,
                get_name: Some(ns.clone()),
            })
            .collect(),
        _ => vec![Task {
            spec,
            namespace: None,
            get_name: None,
        }],
    }
}

/// Read everything `verify` needs from a cluster.
pub async fn read(conn: &Connection, args: &KubeArgs) -> Result<Snapshot, ClusterError> {
    let scope = args.namespace_scope();
    let concurrency = usize::from(args.max_concurrent_lists.max(1));
    let tasks: Vec<Task> = KINDS
        .iter()
        .flat_map(|s| tasks_for(s, scope.as_deref()))
        .collect();
    let cm_tasks = tasks_for(&kinds::CONFIG_MAPS, scope.as_deref());
    let progress = Progress::new(
        !args.no_progress,
        tasks.len() + cm_tasks.len(),
        &conn.context,
    );
    let keep_all = |_: &Value| true;
    let outs: Vec<TaskOut> = stream::iter(
        tasks
            .into_iter()
            .map(|t| run_task(conn, t, args.page_size, &progress, &keep_all)),
    )
    .buffer_unordered(concurrency)
    .try_collect()
    .await
    .inspect_err(|_| progress.finish())?;

    let mut snap = Snapshot {
        context: conn.context.clone(),
        server: conn.server.clone(),
        scope: scope.clone(),
        ..Snapshot::default()
    };
    absorb(&mut snap, outs);
    // ConfigMaps last: keep the ones the analysis reads, including those the workloads
    // just read reference.
    let referenced: BTreeSet<(String, String)> = strip::referenced_config_maps(&snap.objects);
    let keep_cm = |v: &Value| strip::keep_config_map(v, &referenced);
    let cm_outs: Vec<TaskOut> = stream::iter(
        cm_tasks
            .into_iter()
            .map(|t| run_task(conn, t, args.page_size, &progress, &keep_cm)),
    )
    .buffer_unordered(concurrency)
    .try_collect()
    .await
    .inspect_err(|_| progress.finish())?;
    absorb(&mut snap, cm_outs);
    progress.finish();
    snap.reads.sort_by(|a, b| a.kind.cmp(&b.kind));
    Ok(snap)
}

fn absorb(snap: &mut Snapshot, outs: Vec<TaskOut>) {
    for out in outs {
        let mut kept_count = 0;
        for k in out.kept {
            match k {
                Kept::Object(o) => {
                    kept_count += 1;
                    snap.objects.push(o);
                }
                Kept::Pod(p, o) => {
                    kept_count += 1;
                    snap.pods.push(*p);
                    if let Some(o) = o {
                        snap.objects.push(*o);
                    }
                }
                Kept::Workflow(w) => {
                    kept_count += 1;
                    snap.workflows.push(w);
                }
                Kept::Dropped => {}
            }
        }
        match snap
            .reads
            .iter_mut()
            .find(|r| r.kind == out.spec.kind && r.api_version == out.version)
        {
            Some(r) => {
                r.listed += out.listed;
                r.kept += kept_count;
            }
            None => snap.reads.push(KindRead {
                kind: out.spec.kind.to_string(),
                installed: out.version.is_some(),
                api_version: out.version,
                listed: out.listed,
                kept: kept_count,
            }),
        }
    }
}
