//! The HTTPS admission server and its admin port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use bytes::BytesMut;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use kfp_mesh_kfp::mutation::MutationConfig;
use rustls::crypto::CryptoProvider;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use crate::admission::{Endpoint, Outcome, review};
use crate::conns::{Connections, Slot};
use crate::metrics::{PathLabel, ResultLabel};
use crate::tls::{self, CertStore};

/// Metric label of the admission port.
const HTTPS: &str = "https";
/// Metric label of the admin port.
const ADMIN: &str = "admin";
/// Cap on open connections to the admin port (probes and metrics scrapes need a few).
pub const ADMIN_MAX_CONNECTIONS: usize = 64;
/// Per-connection memory bounds (see docs/webhook.md, "Limits"). HTTP/1.1: the read buffer,
/// which also bounds the request head.
const H1_MAX_BUF: usize = 64 * 1024;
/// HTTP/2: requests in progress at once on one connection, and flow-control windows (the
/// data a peer may send before the server has read it).
const H2_MAX_STREAMS: u32 = 100;
const H2_STREAM_WINDOW: u32 = 256 * 1024;
const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// HTTP/2: response data queued per stream, and the size of a request head.
const H2_MAX_SEND_BUF: usize = 64 * 1024;
const H2_MAX_HEADER_LIST: u32 = 16 * 1024;

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
    /// Request bodies held at once, all connections together (503 above); at least
    /// `max_body_bytes`.
    pub max_body_bytes_in_flight: usize,
    /// After SIGTERM, keep accepting (while not ready) so endpoints can be removed.
    pub shutdown_delay: Duration,
    /// Then wait at most this long for in-flight reviews.
    pub shutdown_timeout: Duration,
    /// A TLS handshake not done within this time is abandoned.
    pub handshake_timeout: Duration,
    /// HTTP/1.1: the request head must arrive within this time once the server waits for it
    /// (after the handshake, or after the previous response on a keep-alive connection).
    pub header_read_timeout: Duration,
    /// The request body must arrive within this time after the request head (408 if not).
    pub body_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed (HTTP/2: GOAWAY).
    pub idle_timeout: Duration,
    /// Cap on open connections to the admission port (see [`crate::conns`]).
    pub max_connections: usize,
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
            max_body_bytes_in_flight: 64 * 1024 * 1024,
            shutdown_delay: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1000,
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
    /// Bytes of request bodies held now, all requests together: one permit per byte, of
    /// `body_budget_total`.
    body_budget: Arc<Semaphore>,
    body_budget_total: usize,
    body_read_timeout: Duration,
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
    anyhow::ensure!(
        settings.max_body_bytes_in_flight >= settings.max_body_bytes,
        "--max-body-bytes-in-flight ({}) is below --max-body-bytes ({}): a body of the largest \
         size accepted could never be read; raise the first or lower the second",
        settings.max_body_bytes_in_flight,
        settings.max_body_bytes
    );
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
        body_budget: Arc::new(Semaphore::new(settings.max_body_bytes_in_flight)),
        body_budget_total: settings.max_body_bytes_in_flight,
        body_read_timeout: settings.body_read_timeout,
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
    info!(
        %addr,
        %admin_addr,
        config = ?settings.config_file,
        max_connections = settings.max_connections,
        handshake_timeout = ?settings.handshake_timeout,
        header_read_timeout = ?settings.header_read_timeout,
        body_read_timeout = ?settings.body_read_timeout,
        idle_timeout = ?settings.idle_timeout,
        "kfp-mesh webhook listening"
    );

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
    let admin_conns = Connections::new(ADMIN, ADMIN_MAX_CONNECTIONS, &state.metrics);
    let admin_task = tokio::spawn(admin_loop(
        state.clone(),
        admin,
        admin_conns,
        settings.header_read_timeout,
        admin_stop_rx,
    ));
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

/// What every connection of the admission port shares.
struct Https {
    state: Arc<State>,
    acceptor: TlsAcceptor,
    /// HTTP/1.1 (ALPN `http/1.1` or none) and HTTP/2 (ALPN `h2`) connection settings.
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    /// After the server has asked an idle connection to close, the most it may take.
    close_grace: Duration,
}

impl Https {
    fn new(state: Arc<State>, acceptor: TlsAcceptor, settings: &Settings) -> Self {
        let mut h1 = auto::Builder::new(TokioExecutor::new()).http1_only();
        h1.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            .max_buf_size(H1_MAX_BUF);
        let mut h2 = auto::Builder::new(TokioExecutor::new()).http2_only();
        h2.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_STREAMS)
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .max_send_buf_size(H2_MAX_SEND_BUF)
            .max_header_list_size(H2_MAX_HEADER_LIST);
        Https {
            state,
            acceptor,
            h1,
            h2,
            handshake_timeout: settings.handshake_timeout,
            idle_timeout: settings.idle_timeout,
            close_grace: settings.header_read_timeout.max(settings.body_read_timeout),
        }
    }
}

async fn serve_loop(
    state: Arc<State>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    settings: &Settings,
    mut shutdown: watch::Receiver<bool>,
) {
    let conns = Connections::new(HTTPS, settings.max_connections, &state.metrics);
    let https = Arc::new(Https::new(state.clone(), acceptor, settings));
    let (drain_tx, drain_rx) = watch::channel(false);
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
                let Some(place) = conns.admit() else {
                    debug!(%peer, "connection cap reached and every connection is answering a request: refused");
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let slot = place.slot().clone();
                let https = https.clone();
                let drain = drain_rx.clone();
                let task = tokio::spawn(async move {
                    let slot = place.slot().clone();
                    serve_https(&https, tcp, peer, slot, drain).await;
                    drop(place);
                });
                slot.set_task(task.abort_handle());
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
    let _ = drain_tx.send(true);
    if tokio::time::timeout(settings.shutdown_timeout, conns.wait_empty())
        .await
        .is_err()
    {
        warn!(timeout = ?settings.shutdown_timeout, open = conns.len(), "in-flight reviews did not finish in time; closing their connections");
        conns.abort_all();
    }
}

/// Sleeps until `t`, forever for `None`.
async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// One connection of the admission port, from the TLS handshake to close.
async fn serve_https(
    https: &Https,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Arc<Slot>,
    mut drain: watch::Receiver<bool>,
) {
    let metrics = &https.state.metrics;
    let handshake = tokio::time::timeout(https.handshake_timeout, https.acceptor.accept(tcp));
    let tls = tokio::select! {
        done = handshake => match done {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                metrics.error("tls_handshake");
                debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                metrics.error("tls_handshake");
                metrics.closed(HTTPS, "handshake_timeout");
                debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        _ = drain.wait_for(|d| *d) => return,
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let svc = {
        let (state, slot) = (https.state.clone(), slot.clone());
        service_fn(move |req| handle(state.clone(), slot.clone(), req))
    };
    let builder = if h2 { &https.h2 } else { &https.h1 };
    let conn = builder.serve_connection(TokioIo::new(tls), svc);
    tokio::pin!(conn);
    // Whether the server has asked the connection to close (idle, or draining), and by when
    // an idle one must be gone.
    let mut closing = false;
    let mut close_by: Option<tokio::time::Instant> = None;
    loop {
        let idle_check = (!closing)
            .then(|| tokio::time::Instant::from_std(slot.idle_deadline(https.idle_timeout)));
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) {
                        metrics.closed(HTTPS, "header_timeout");
                        debug!(%peer, "request head not received in time: closed");
                    } else {
                        metrics.error("connection");
                        debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                return;
            }
            () = sleep_until(idle_check) => {
                if slot.idle_for(https.idle_timeout) {
                    metrics.closed(HTTPS, "idle_timeout");
                    if !slot.had_request() {
                        // Nothing to be graceful about (and an HTTP/2 peer that never sent
                        // its preface would never see a GOAWAY).
                        debug!(%peer, "no request since the handshake: closed");
                        return;
                    }
                    debug!(%peer, "idle: closing");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    close_by = Some(tokio::time::Instant::now() + https.close_grace);
                }
            }
            _ = drain.wait_for(|d| *d), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = sleep_until(close_by) => {
                debug!(%peer, "idle connection did not close in time: dropped");
                return;
            }
        }
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
    slot: Arc<Slot>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let started = Instant::now();
    let _in_progress = slot.request();
    let Some(endpoint) = Endpoint::from_path(req.uri().path()) else {
        state.metrics.request("other", "not_found");
        return Ok(text(
            StatusCode::NOT_FOUND,
            "not found; use POST /mutate/workflows or /mutate/pods\n",
        ));
    };
    let path = endpoint.path();
    let response = handle_review(&state, &slot, endpoint, req).await;
    state
        .metrics
        .latency
        .get_or_create(&PathLabel { path })
        .observe(started.elapsed().as_secs_f64());
    Ok(response)
}

async fn handle_review(
    state: &State,
    slot: &Arc<Slot>,
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
    let read = read_body(req.into_body(), state.max_body, &state.body_budget);
    // `_held`: the body's share of the server-wide budget, until the answer is sent.
    let (body, _held) = match tokio::time::timeout(state.body_read_timeout, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(BodyError::TooLarge)) => {
            state.metrics.request(path, "payload_too_large");
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {} bytes\n", state.max_body),
            );
        }
        Ok(Err(BodyError::Overloaded)) => {
            state.metrics.request(path, "overloaded");
            warn!(
                path,
                "request bodies held by other requests fill --max-body-bytes-in-flight: 503"
            );
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many request bodies in progress; retry\n",
            );
        }
        Ok(Err(BodyError::Read(e))) => {
            state.metrics.request(path, "bad_request");
            state.metrics.error("connection");
            return text(
                StatusCode::BAD_REQUEST,
                format!("could not read the body: {e}\n"),
            );
        }
        Err(_) => {
            state.metrics.request(path, "body_timeout");
            debug!(path, timeout = ?state.body_read_timeout, "request body not received in time");
            return text(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {:?}\n",
                    state.body_read_timeout
                ),
            );
        }
    };
    // Received in full: from here the connection is not closed to make room for another.
    let _serving = slot.serving();
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

/// Why a request body was not read.
enum BodyError {
    /// Larger than the limit for one body.
    TooLarge,
    /// The bodies held by all requests together would exceed their budget.
    Overloaded,
    Read(hyper::Error),
}

/// Reads a request body of at most `max` bytes, taking one permit of `budget` per byte as the
/// bytes arrive (never waiting for one); the permits are returned with the body.
async fn read_body(
    mut body: Incoming,
    max: usize,
    budget: &Arc<Semaphore>,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), BodyError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    let mut held: Option<OwnedSemaphorePermit> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        len += data.len();
        if len > max {
            return Err(BodyError::TooLarge);
        }
        let n = u32::try_from(data.len()).map_err(|_| BodyError::TooLarge)?;
        let permit = budget
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| BodyError::Overloaded)?;
        match &mut held {
            Some(h) => h.merge(permit),
            None => held = Some(permit),
        }
        chunks.push(data);
    }
    let bytes = if chunks.len() == 1 {
        chunks.pop().unwrap_or_default()
    } else {
        let mut all = BytesMut::with_capacity(len);
        for c in &chunks {
            all.extend_from_slice(c);
        }
        all.freeze()
    };
    Ok((bytes, held))
}

fn json_response(body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn admin_loop(
    state: Arc<State>,
    listener: TcpListener,
    conns: Arc<Connections>,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(H1_MAX_BUF);
    let http = Arc::new(http);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let Some(place) = conns.admit() else { continue };
                let slot = place.slot().clone();
                let (state, http) = (state.clone(), http.clone());
                let task = tokio::spawn(async move {
                    let svc = {
                        let (state, slot) = (state.clone(), place.slot().clone());
                        service_fn(move |req| {
                            let response = admin(&state, &req);
                            // An admin request is served in full at once.
                            drop(slot.serving());
                            async move { Ok::<_, Infallible>(response) }
                        })
                    };
                    if let Err(e) = http.serve_connection(TokioIo::new(tcp), svc).await
                        && e.is_timeout()
                    {
                        state.metrics.closed(ADMIN, "header_timeout");
                    }
                    drop(place);
                });
                slot.set_task(task.abort_handle());
            }
            _ = stop.changed() => break,
        }
    }
    conns.abort_all();
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
            let held = state
                .body_budget_total
                .saturating_sub(state.body_budget.available_permits());
            state
                .metrics
                .body_bytes_in_flight
                .set(i64::try_from(held).unwrap_or(i64::MAX));
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
