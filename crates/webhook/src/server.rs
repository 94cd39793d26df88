//! The HTTPS admission server and its admin port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use kfp_mesh_kfp::mutation::MutationConfig;
use rustls::crypto::CryptoProvider;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use crate::admission::{Endpoint, Outcome, review};
use crate::metrics::{PathLabel, ResultLabel};
use crate::tls::{self, CertStore};

/// Everything the server needs; [`crate::WebhookArgs`] converts into it.
#[derive(Clone, Debug)]
pub struct Settings {
    /// YAML configuration; `None` = the built-in default configuration.
    pub config_file: Option<PathBuf>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// HTTPS address of the admission endpoints.
    pub addr: SocketAddr,
    /// Plain-HTTP admin address (`/livez`, `/readyz`, `/metrics`).
    pub admin_addr: SocketAddr,
    /// How often the certificate, key and configuration files are re-read.
    pub reload_interval: Duration,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// After SIGTERM, keep accepting (while not ready) so endpoints can be removed.
    pub shutdown_delay: Duration,
    /// Then wait at most this long for in-flight reviews.
    pub shutdown_timeout: Duration,
    pub handshake_timeout: Duration,
    /// Benchmark only: answer every POST with a fixed body without reading it as a review
    /// (the "no-op server on the same stack" of the load test).
    #[doc(hidden)]
    pub noop: bool,
}

impl Settings {
    pub fn new(cert_file: PathBuf, key_file: PathBuf) -> Self {
        Settings {
            config_file: None,
            cert_file,
            key_file,
            addr: SocketAddr::from(([0, 0, 0, 0], 8443)),
            admin_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            reload_interval: Duration::from_secs(10),
            max_body_bytes: 4 * 1024 * 1024,
            shutdown_delay: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            noop: false,
        }
    }
}

/// Shared state of a running server.
pub struct State {
    config: RwLock<Arc<MutationConfig>>,
    pub certs: Arc<CertStore>,
    pub metrics: crate::metrics::Metrics,
    shutting_down: AtomicBool,
    max_body: usize,
    noop: bool,
}

impl State {
    /// The configuration in force.
    pub fn config(&self) -> Arc<MutationConfig> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_config(&self, c: MutationConfig) {
        match self.config.write() {
            Ok(mut g) => *g = Arc::new(c),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(c),
        }
    }

    /// Why the server is not ready, or `None` when it is.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.shutting_down.load(Ordering::Relaxed) {
            Some("shutting down")
        } else if !self.certs.is_loaded() {
            Some("serving certificate not loaded")
        } else {
            None
        }
    }

    fn update_ready(&self) {
        self.metrics
            .ready
            .set(i64::from(self.not_ready_reason().is_none()));
    }
}

/// A started server. Drop does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<State>,
    shutdown: watch::Sender<bool>,
    serve: JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting (after the shutdown delay), finishes in-flight reviews, stops the admin
    /// port and the reloader.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.serve.await.context("server task")?;
        Ok(())
    }
}

/// Loads configuration and certificate, binds both ports and starts serving.
/// A configuration that is missing or invalid at start-up is an error; a certificate that is
/// not there yet is not (the server is simply not ready until it appears).
pub async fn start(settings: Settings) -> anyhow::Result<RunningServer> {
    let provider = tls::provider();
    let metrics = crate::metrics::Metrics::new();

    let (config, config_seen) = match &settings.config_file {
        None => (MutationConfig::default(), Ok(Vec::new())),
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading configuration {}", path.display()))?;
            let text = String::from_utf8_lossy(&bytes);
            let config = MutationConfig::from_yaml(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            (config, Ok(bytes))
        }
    };
    metrics
        .config_reloads
        .get_or_create(&ResultLabel { result: "success" })
        .inc();
    metrics.config_last_reload_ok.set(1);

    let certs = Arc::new(CertStore::default());
    let cert_seen = tls::read_pair(&settings.cert_file, &settings.key_file);
    match &cert_seen {
        Ok((c, k)) => match tls::load_pair(c, k, &provider) {
            Ok(ck) => {
                certs.set(Arc::new(ck));
                metrics
                    .cert_reloads
                    .get_or_create(&ResultLabel { result: "success" })
                    .inc();
            }
            Err(e) => {
                warn!(error = %e, "serving certificate not loaded yet; not ready");
                metrics
                    .cert_reloads
                    .get_or_create(&ResultLabel { result: "error" })
                    .inc();
                metrics.error("cert_reload");
            }
        },
        Err(e) => {
            warn!(error = %e, "serving certificate not readable yet; not ready");
            metrics.error("cert_reload");
        }
    }

    let state = Arc::new(State {
        config: RwLock::new(Arc::new(config)),
        certs: certs.clone(),
        metrics,
        shutting_down: AtomicBool::new(false),
        max_body: settings.max_body_bytes,
        noop: settings.noop,
    });
    state.update_ready();

    let tls_config = tls::server_config(certs, provider.clone()).context("TLS configuration")?;
    let acceptor = TlsAcceptor::from(Arc::new(tls_config));
    let listener = TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("binding {}", settings.addr))?;
    let admin = TcpListener::bind(settings.admin_addr)
        .await
        .with_context(|| format!("binding admin {}", settings.admin_addr))?;
    let addr = listener.local_addr()?;
    let admin_addr = admin.local_addr()?;
    info!(%addr, %admin_addr, config = ?settings.config_file, "kfp-mesh webhook listening");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let reloader = tokio::spawn(reload_loop(
        state.clone(),
        settings.clone(),
        provider,
        config_seen,
        cert_seen,
        shutdown_rx.clone(),
    ));
    let admin_task = tokio::spawn(admin_loop(state.clone(), admin, admin_stop_rx));
    let serve_state = state.clone();
    let serve = tokio::spawn(async move {
        serve_loop(serve_state, listener, acceptor, &settings, shutdown_rx).await;
        let _ = admin_stop_tx.send(true);
        let _ = admin_task.await;
        let _ = reloader.await;
        info!("kfp-mesh webhook stopped");
    });
    Ok(RunningServer {
        addr,
        admin_addr,
        state,
        shutdown: shutdown_tx,
        serve,
    })
}

async fn serve_loop(
    state: Arc<State>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    settings: &Settings,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut stop_at: Option<tokio::time::Instant> = None;
    loop {
        let stop = async {
            match stop_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // E.g. too many open files: back off a little instead of spinning.
                        state.metrics.error("accept");
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                let state = state.clone();
                let handshake_timeout = settings.handshake_timeout;
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            state.metrics.error("tls_handshake");
                            debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            state.metrics.error("tls_handshake");
                            debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let svc_state = state.clone();
                    let svc = service_fn(move |req| handle(svc_state.clone(), req));
                    let conn = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        state.metrics.error("connection");
                        debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            changed = shutdown.changed(), if stop_at.is_none() => {
                let _ = changed;
                state.shutting_down.store(true, Ordering::Relaxed);
                state.update_ready();
                info!(delay = ?settings.shutdown_delay, "shutdown requested: not ready, still accepting during the delay");
                stop_at = Some(tokio::time::Instant::now() + settings.shutdown_delay);
            }
            () = stop => break,
        }
    }
    drop(listener);
    info!("no longer accepting; draining in-flight reviews");
    if tokio::time::timeout(settings.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(timeout = ?settings.shutdown_timeout, "in-flight reviews did not finish in time");
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

const NOOP_BODY: &[u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}"#;

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let started = Instant::now();
    let Some(endpoint) = Endpoint::from_path(req.uri().path()) else {
        state.metrics.request("other", "not_found");
        return Ok(text(
            StatusCode::NOT_FOUND,
            "not found; use POST /mutate/workflows or /mutate/pods\n",
        ));
    };
    let path = endpoint.path();
    let response = handle_review(&state, endpoint, req).await;
    state
        .metrics
        .latency
        .get_or_create(&PathLabel { path })
        .observe(started.elapsed().as_secs_f64());
    Ok(response)
}

async fn handle_review(
    state: &State,
    endpoint: Endpoint,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = endpoint.path();
    if req.method() != Method::POST {
        state.metrics.request(path, "method_not_allowed");
        return text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body as u64) {
        state.metrics.request(path, "payload_too_large");
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {} bytes\n", state.max_body),
        );
    }
    let body = match Limited::new(req.into_body(), state.max_body)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            state.metrics.request(path, "payload_too_large");
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {} bytes\n", state.max_body),
            );
        }
        Err(e) => {
            state.metrics.request(path, "bad_request");
            state.metrics.error("connection");
            return text(
                StatusCode::BAD_REQUEST,
                format!("could not read the body: {e}\n"),
            );
        }
    };
    if state.noop {
        state.metrics.request(path, "noop");
        return json_response(Bytes::from_static(NOOP_BODY));
    }
    let config = state.config();
    match review(endpoint, &body, &config) {
        Ok(r) => {
            state.metrics.request(path, r.outcome.label());
            let ns = r.namespace.as_deref().unwrap_or("");
            let name = r.name.as_deref().unwrap_or("");
            match &r.outcome {
                Outcome::Patched(plan) => {
                    let ops = plan.patch.0.len() as u64;
                    state
                        .metrics
                        .patches
                        .get_or_create(&PathLabel { path })
                        .inc();
                    state
                        .metrics
                        .patch_operations
                        .get_or_create(&PathLabel { path })
                        .inc_by(ops);
                    info!(uid = %r.uid, namespace = ns, name, path, operations = ops, summary = %plan.summary(), "patched");
                }
                Outcome::Unchanged(plan) => {
                    debug!(uid = %r.uid, namespace = ns, name, path, summary = %plan.summary(), "unchanged");
                }
                Outcome::Skipped(why) => {
                    debug!(uid = %r.uid, namespace = ns, name, path, reason = why, "skipped")
                }
                Outcome::FailOpen(why) => {
                    state.metrics.error("fail_open");
                    warn!(uid = %r.uid, namespace = ns, name, path, reason = %why, "object not readable; allowed unchanged (fail open)");
                }
            }
            json_response(Bytes::from(r.body))
        }
        Err(e) => {
            state.metrics.request(path, "bad_request");
            state.metrics.error("bad_request");
            warn!(path, error = %e, "not an AdmissionReview");
            text(StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
    }
}

fn json_response(body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn admin_loop(state: Arc<State>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(admin(&state, &req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
            _ = stop.changed() => break,
        }
    }
}

fn admin(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        "/livez" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match state.not_ready_reason() {
            None => text(StatusCode::OK, "ok\n"),
            Some(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(state.metrics.encode())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

type Seen = Result<Vec<u8>, String>;
type SeenPair = Result<(Vec<u8>, Vec<u8>), String>;

/// File contents last applied, and a change seen once but not yet applied. A change is
/// applied when two consecutive polls read the same bytes, so a file caught half-written
/// (a plain rewrite rather than a Secret/ConfigMap volume's atomic symlink swap) is never
/// used.
struct Watched<T> {
    applied: T,
    pending: Option<T>,
}

impl<T: PartialEq + Clone> Watched<T> {
    fn new(applied: T) -> Self {
        Watched {
            applied,
            pending: None,
        }
    }

    /// The new contents once they are stable, else `None`.
    fn observe(&mut self, now: T) -> Option<T> {
        if now == self.applied {
            self.pending = None;
            return None;
        }
        if self.pending.as_ref() == Some(&now) {
            self.pending = None;
            self.applied = now.clone();
            return Some(now);
        }
        self.pending = Some(now);
        None
    }
}

async fn reload_loop(
    state: Arc<State>,
    settings: Settings,
    provider: Arc<CryptoProvider>,
    config_seen: Seen,
    cert_seen: SeenPair,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut config_seen = Watched::new(config_seen);
    let mut cert_seen = Watched::new(cert_seen);
    loop {
        tokio::select! {
            () = tokio::time::sleep(settings.reload_interval) => {}
            _ = shutdown.changed() => break,
        }
        if let Some(path) = &settings.config_file {
            let now: Seen = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
            if let Some(now) = config_seen.observe(now) {
                reload_config(&state, path, &now);
            }
        }
        let now = tls::read_pair(&settings.cert_file, &settings.key_file);
        if let Some(now) = cert_seen.observe(now) {
            match &now {
                Ok((c, k)) => match tls::load_pair(c, k, &provider) {
                    Ok(ck) => {
                        state.certs.set(Arc::new(ck));
                        state
                            .metrics
                            .cert_reloads
                            .get_or_create(&ResultLabel { result: "success" })
                            .inc();
                        info!(cert = %settings.cert_file.display(), "serving certificate (re)loaded");
                    }
                    Err(e) => {
                        state
                            .metrics
                            .cert_reloads
                            .get_or_create(&ResultLabel { result: "error" })
                            .inc();
                        state.metrics.error("cert_reload");
                        warn!(error = %e, "new certificate/key refused; keeping the current one");
                    }
                },
                Err(e) => {
                    state.metrics.error("cert_reload");
                    warn!(error = %e, "certificate/key not readable; keeping the current one");
                }
            }
            state.update_ready();
        }
    }
}

fn reload_config(state: &State, path: &std::path::Path, now: &Seen) {
    let parsed = match now {
        Ok(bytes) => {
            MutationConfig::from_yaml(&String::from_utf8_lossy(bytes)).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.clone()),
    };
    match parsed {
        Ok(config) => {
            state.set_config(config);
            state
                .metrics
                .config_reloads
                .get_or_create(&ResultLabel { result: "success" })
                .inc();
            state.metrics.config_last_reload_ok.set(1);
            info!(config = %path.display(), "configuration reloaded");
        }
        Err(e) => {
            state
                .metrics
                .config_reloads
                .get_or_create(&ResultLabel { result: "error" })
                .inc();
            state.metrics.config_last_reload_ok.set(0);
            state.metrics.error("config_reload");
            error!(config = %path.display(), error = %e, "new configuration refused; keeping the current one");
        }
    }
}
