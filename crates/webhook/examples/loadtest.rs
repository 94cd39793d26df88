//! Load test of the webhook's HTTPS server on loopback (see docs/performance.md, "Webhook").
//!
//! `cargo run --release -p kfp-mesh-webhook --example loadtest [-- --seconds 10 --rate 1000 --connections 32]`
//!
//! For each of two servers started as child processes of this binary — the no-op server (same
//! stack: tokio, hyper, rustls/ring, same accept loop, body read; answers a fixed body) and
//! the real webhook — it sends the AdmissionReview of a real compiled KFP Workflow (as the KFP
//! API server submits it):
//! 1. open loop at `--rate` requests/s over 16 keep-alive connections, latency measured from
//!    each request's scheduled start (no coordinated omission);
//! 2. closed loop over `--connections` connections as fast as possible (saturation).
//!
//! It reports throughput, p50/p99/p99.9 latency, errors and the server's peak resident memory.
//!
//! `loadtest slow [-- --seconds 20 --rate 1000 --slow 900,3000 --reconnect-ms 5000]`: the
//! real webhook with its default limits, reviews at `--rate` requests/s over 16 keep-alive
//! connections plus one review on a new connection every 100 ms, first alone, then (one phase
//! per number in `--slow`) while that many slow peers hold connections without completing
//! requests (in turn: TCP without a TLS handshake, TLS and nothing more, a request head
//! dripped one line every 2 s, a body dripped one byte every 2 s), each reconnecting
//! `--reconnect-ms` after the server closes it.
//!
//! Every loop is bounded in time and stops by itself; traffic goes to 127.0.0.1 only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kfp_mesh_webhook::testing::{Conn, client_config};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{Value, json};

const NAME: &str = "kfp-mesh-webhook.kfp-mesh-system.svc";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        return serve(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("handler") {
        return handler();
    }
    let opt = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    if args.get(1).map(String::as_str) == Some("slow") {
        return slow(SlowOptions {
            seconds: opt("--seconds", 20),
            rate: opt("--rate", 1000),
            peers: args
                .iter()
                .position(|a| a == "--slow")
                .and_then(|i| args.get(i + 1))
                .map_or(Ok(vec![900, 3000]), |v| {
                    v.split(',')
                        .map(str::parse)
                        .collect::<Result<Vec<usize>, _>>()
                })
                .map_err(|e| anyhow::anyhow!("--slow takes numbers like 900,3000: {e}"))?,
            reconnect: Duration::from_millis(opt("--reconnect-ms", 5000)),
        });
    }
    let seconds = opt("--seconds", 10);
    let rate = opt("--rate", 1000);
    let connections = opt("--connections", 32) as usize;
    drive(seconds, rate, connections)
}

/// The pure handler alone (no TLS, no HTTP): mean time of one review of the body, and of its
/// parts measured apart.
fn handler() -> anyhow::Result<()> {
    use kfp_mesh_kfp::mutation::{MutationConfig, mutate_workflow, parse_workflow_view};
    use kfp_mesh_webhook::admission::{Endpoint, Outcome, review};
    let body = review_body()?;
    let config = MutationConfig::default();
    let n = 20_000u32;
    let mean = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<Duration> {
        for _ in 0..n / 10 {
            f()?;
        }
        let t = Instant::now();
        for _ in 0..n {
            f()?;
        }
        Ok(t.elapsed() / n)
    };
    let per = mean(&mut || {
        let r = review(Endpoint::Workflows, &body, &config).map_err(|e| anyhow::anyhow!("{e}"))?;
        std::hint::black_box(r);
        Ok(())
    })?;
    let parse = mean(&mut || {
        std::hint::black_box(serde_json::from_slice::<Value>(&body)?);
        Ok(())
    })?;
    let skip = mean(&mut || {
        std::hint::black_box(serde_json::from_slice::<serde::de::IgnoredAny>(&body)?);
        Ok(())
    })?;
    let v: Value = serde_json::from_slice(&body)?;
    let object_text = v["request"]["object"].to_string();
    let view = mean(&mut || {
        std::hint::black_box(parse_workflow_view(&object_text)?);
        Ok(())
    })?;
    let object = parse_workflow_view(&object_text)?;
    let mutate = mean(&mut || {
        let plan = mutate_workflow(&object, &config).map_err(|e| anyhow::anyhow!("{e}"))?;
        std::hint::black_box(plan);
        Ok(())
    })?;
    let answer = review(Endpoint::Workflows, &body, &config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let operations = match &answer.outcome {
        Outcome::Patched(plan) => plan.patch.0.len(),
        _ => 0,
    };
    println!(
        "review(): {per:?} per AdmissionReview of {} bytes, answered with {} bytes ({operations} patch operations)",
        body.len(),
        answer.body.len()
    );
    println!(
        "  measured apart: view parse of the object {view:?}, mutate_workflow {mutate:?}; \
         for comparison: skipping the whole body (IgnoredAny) {skip:?}, parsing it into a Value {parse:?}"
    );
    Ok(())
}

/// Child process: one server until stdin closes.
fn serve(args: &[String]) -> anyhow::Result<()> {
    let (mode, cert, key, addr_file) = match args {
        [m, c, k, a] => (m.as_str(), c, k, a),
        _ => anyhow::bail!("usage: loadtest serve noop|webhook CERT KEY ADDR_FILE"),
    };
    kfp_mesh_webhook::cli::init_logging(kfp_mesh_webhook::LogFormat::Json);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut s = kfp_mesh_webhook::Settings::new(PathBuf::from(cert), PathBuf::from(key));
        s.addr = "127.0.0.1:0".parse()?;
        s.admin_addr = "127.0.0.1:0".parse()?;
        s.shutdown_delay = Duration::ZERO;
        s.noop = mode == "noop";
        let server = kfp_mesh_webhook::start(s).await?;
        std::fs::write(addr_file, format!("{} {}", server.addr, server.admin_addr))?;
        // Run until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            let _ = std::io::stdin().read_line(&mut sink);
        })
        .await?;
        server.shutdown().await
    })
}

struct Server {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Server {
    fn start(mode: &str, dir: &Path) -> anyhow::Result<Self> {
        let addr_file = dir.join(format!("{mode}.addr"));
        let _ = std::fs::remove_file(&addr_file);
        let child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg(mode)
            .arg(dir.join("tls.crt"))
            .arg(dir.join("tls.key"))
            .arg(&addr_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file)
                && let Some((addr, admin)) = text.trim().split_once(' ')
                && let (Ok(addr), Ok(admin)) = (addr.parse(), admin.parse())
            {
                return Ok(Server { child, addr, admin });
            }
            anyhow::ensure!(Instant::now() < deadline, "{mode} server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak and current resident memory in KiB (`/proc/PID/status`).
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    fn cpu_time(&self) -> Duration {
        cpu_time(&self.child.id().to_string())
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// CPU time (user and system, all threads) used so far by process `pid` (`self`: this one),
/// from `/proc/PID/stat`, whose times are in clock ticks of 10 ms (Linux's `USER_HZ`).
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may contain spaces) start at field 3; utime
    // and stime are fields 14 and 15.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// CPU time of the server and of this load generator over one phase.
struct CpuMeter {
    server: Duration,
    client: Duration,
}

impl CpuMeter {
    fn start(server: &Server) -> Self {
        CpuMeter {
            server: server.cpu_time(),
            client: cpu_time("self"),
        }
    }

    fn used(&self, server: &Server) -> (Duration, Duration) {
        (
            server.cpu_time().saturating_sub(self.server),
            cpu_time("self").saturating_sub(self.client),
        )
    }
}

fn review_body() -> anyhow::Result<Bytes> {
    let path = kfp_mesh_testdata::upstream("workflows/kfp-master-pipeline_with_importer.yaml");
    let mut wf: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path)?)?;
    // What the KFP API server adds at run creation.
    for t in wf["spec"]["templates"].as_array_mut().into_iter().flatten() {
        let meta = t["metadata"].as_object_mut();
        if let Some(meta) = meta {
            let ann = meta.entry("annotations").or_insert(json!({}));
            if let Some(ann) = ann.as_object_mut() {
                ann.entry("sidecar.istio.io/inject")
                    .or_insert(json!("false"));
            }
        }
    }
    wf["spec"]["podMetadata"]["labels"]["pipeline/runid"] =
        json!("7f3d0c1e-3c55-4f7b-a6b5-0d9f7c3e2a10");
    wf["spec"]["serviceAccountName"] = json!("default-editor");
    wf["metadata"]["namespace"] = json!("team-a");
    wf["metadata"]["name"] = json!("pipeline-with-importer-x7k2p");
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "0d4c3f8e-5b7a-4d8e-9a51-6c2f0e1b7a93",
            "kind": {"group": "argoproj.io", "version": "v1alpha1", "kind": "Workflow"},
            "resource": {"group": "argoproj.io", "version": "v1alpha1", "resource": "workflows"},
            "namespace": "team-a", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kubeflow:ml-pipeline"},
            "object": wf, "oldObject": null, "dryRun": false
        }
    });
    Ok(Bytes::from(serde_json::to_vec(&review)?))
}

#[derive(Default)]
struct Run {
    latencies: Vec<Duration>,
    errors: u64,
    elapsed: Duration,
}

impl Run {
    fn merge(&mut self, other: Run) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
    }

    /// One table row; `cpu` is the CPU time the server and this client (the load generator)
    /// used during the phase.
    fn line(
        &mut self,
        server: &str,
        phase: &str,
        mem: (u64, u64),
        cpu: (Duration, Duration),
    ) -> String {
        self.latencies.sort();
        let q = |p: f64| -> f64 {
            if self.latencies.is_empty() {
                return f64::NAN;
            }
            let i = ((p * self.latencies.len() as f64).ceil() as usize)
                .clamp(1, self.latencies.len())
                - 1;
            self.latencies[i].as_secs_f64() * 1000.0
        };
        let n = self.latencies.len().max(1) as f64;
        let rps = self.latencies.len() as f64 / self.elapsed.as_secs_f64();
        let per_request = |d: Duration| d.as_secs_f64() * 1e6 / n;
        format!(
            "| {server} | {phase} | {rps:.0} | {:.3} | {:.3} | {:.3} | {} | {:.1} | {:.1} | {:.1} |",
            q(0.50),
            q(0.99),
            q(0.999),
            self.errors,
            mem.0 as f64 / 1024.0,
            per_request(cpu.0),
            per_request(cpu.1),
        )
    }
}

/// Whether an answer is what the server should give: HTTP 200 and, from the webhook, a JSON
/// Patch (the same test as a byte-by-byte window search, at the speed of `memmem`: the
/// generator shares the two cores with the server, so its own work must stay small).
fn ok_response(status: hyper::StatusCode, body: &[u8], expect_patch: bool) -> bool {
    status == hyper::StatusCode::OK
        && (!expect_patch || memchr::memmem::find(body, b"JSONPatch").is_some())
}

async fn open_loop(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    body: Bytes,
    rate: u64,
    secs: u64,
    patch: bool,
) -> anyhow::Result<Run> {
    let conns = 16u64;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let total = rate * secs;
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for i in 0..conns {
        let mut conn = Conn::connect(addr, NAME, tls.clone()).await?;
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut run = Run::default();
            let mut k = i;
            let mut prev_done = tokio::time::Instant::now();
            while k < total {
                let scheduled = start + period * k as u32;
                tokio::time::sleep_until(scheduled).await;
                // Latency counts from the scheduled start when the previous request on this
                // connection made us late (no coordinated omission), and from the actual
                // start when only the client's 1 ms timer woke us late.
                let from = if prev_done <= scheduled {
                    tokio::time::Instant::now()
                } else {
                    scheduled
                };
                match conn.post("/mutate/workflows", body.clone()).await {
                    Ok((s, b)) if ok_response(s, &b, patch) => run.latencies.push(from.elapsed()),
                    _ => run.errors += 1,
                }
                prev_done = tokio::time::Instant::now();
                k += conns;
            }
            run
        }));
    }
    let mut run = Run::default();
    for t in tasks {
        run.merge(t.await?);
    }
    run.elapsed = start.elapsed();
    Ok(run)
}

async fn closed_loop(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    body: Bytes,
    conns: usize,
    secs: u64,
    patch: bool,
) -> anyhow::Result<Run> {
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let mut conn = Conn::connect(addr, NAME, tls.clone()).await?;
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut run = Run::default();
            while Instant::now() < end {
                let t = Instant::now();
                match conn.post("/mutate/workflows", body.clone()).await {
                    Ok((s, b)) if ok_response(s, &b, patch) => run.latencies.push(t.elapsed()),
                    _ => run.errors += 1,
                }
            }
            run
        }));
    }
    let mut run = Run::default();
    for t in tasks {
        run.merge(t.await?);
    }
    run.elapsed = start.elapsed();
    Ok(run)
}

/// A CA and a serving certificate for [`NAME`] in `dir`; the client configuration trusting it.
fn certificates(dir: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec![NAME.to_string()])?.signed_by(&key, &ca)?;
    std::fs::write(dir.join("tls.crt"), leaf.pem())?;
    std::fs::write(dir.join("tls.key"), key.serialize_pem())?;
    client_config(ca.der())
}

fn drive(seconds: u64, rate: u64, connections: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tls = certificates(dir.path())?;
    let body = review_body()?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "AdmissionReview body: {} bytes (kfp-master-pipeline_with_importer, {} s per phase, {} req/s open loop, {} connections closed loop)\n",
        body.len(),
        seconds,
        rate,
        connections
    );
    println!(
        "| server | phase | throughput (req/s) | p50 (ms) | p99 (ms) | p99.9 (ms) | errors | peak RSS (MiB) | server CPU/req (µs) | client CPU/req (µs) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for mode in ["noop", "webhook"] {
        let server = Server::start(mode, dir.path())?;
        let patch = mode == "webhook";
        rt.block_on(async {
            // Warm-up.
            closed_loop(server.addr, tls.clone(), body.clone(), 4, 1, patch).await?;
            let cpu = CpuMeter::start(&server);
            let mut open =
                open_loop(server.addr, tls.clone(), body.clone(), rate, seconds, patch).await?;
            println!(
                "{}",
                open.line(
                    mode,
                    &format!("open loop {rate}/s"),
                    server.memory(),
                    cpu.used(&server)
                )
            );
            let cpu = CpuMeter::start(&server);
            let mut sat = closed_loop(
                server.addr,
                tls.clone(),
                body.clone(),
                connections,
                seconds,
                patch,
            )
            .await?;
            println!(
                "{}",
                sat.line(
                    mode,
                    &format!("saturation, {connections} conns"),
                    server.memory(),
                    cpu.used(&server)
                )
            );
            anyhow::Ok(())
        })?;
        server.stop();
    }
    Ok(())
}

struct SlowOptions {
    seconds: u64,
    rate: u64,
    peers: Vec<usize>,
    reconnect: Duration,
}

/// What the slow peers did.
#[derive(Default)]
struct SlowStats {
    connections: AtomicU64,
    closed_by_server: AtomicU64,
    connect_errors: AtomicU64,
}

/// One slow peer: holds a connection without completing a request until the server closes
/// it, then reconnects after `reconnect`, until `end`.
/// The first connection is made `first` from now; reconnections are spread between half and
/// one and a half times `reconnect` (so that peers closed together do not return together).
async fn slow_peer(
    kind: usize,
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    first: Duration,
    end: tokio::time::Instant,
    reconnect: Duration,
    stats: Arc<SlowStats>,
) {
    tokio::time::sleep(first).await;
    let mut attempt = 0u32;
    while tokio::time::Instant::now() < end {
        match tokio::time::timeout_at(end, hold(kind, addr, &tls, &stats)).await {
            Ok(Ok(())) => {
                stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(_)) => {
                stats.connect_errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => return,
        }
        attempt += 1;
        let spread = 50 + (kind as u32 * 37 + attempt * 61) % 101;
        let pause = reconnect * spread / 100;
        tokio::time::sleep_until(end.min(tokio::time::Instant::now() + pause)).await;
    }
}

/// Returns when the server has closed the connection.
async fn hold(
    kind: usize,
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    stats: &SlowStats,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
    async fn until_closed<R: AsyncRead + Unpin>(r: &mut R) {
        let mut buf = [0u8; 512];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    }
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    stats.connections.fetch_add(1, Ordering::Relaxed);
    if kind.is_multiple_of(4) {
        // No TLS handshake.
        until_closed(&mut tcp).await;
        return Ok(());
    }
    let name = rustls::pki_types::ServerName::try_from(NAME)?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let drip = async {
        match kind % 4 {
            1 => std::future::pending::<()>().await,
            2 => {
                wr.write_all(b"POST /mutate/workflows HTTP/1.1\r\nhost: x\r\n")
                    .await?;
                for i in 0u64.. {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    wr.write_all(format!("x-slow-{i}: 1\r\n").as_bytes())
                        .await?;
                }
            }
            _ => {
                wr.write_all(
                    b"POST /mutate/workflows HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 20000\r\n\r\n{",
                )
                .await?;
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    wr.write_all(b" ").await?;
                }
            }
        }
        anyhow::Ok(())
    };
    tokio::select! {
        _ = drip => {}
        () = until_closed(&mut rd) => {}
    }
    Ok(())
}

/// One review on a new connection (TCP, TLS handshake, request) every `every`, for `secs`.
async fn fresh_loop(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    body: Bytes,
    every: Duration,
    secs: u64,
) -> Run {
    let start = tokio::time::Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tick = tokio::time::interval(every);
    let mut tasks = Vec::new();
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        let (tls, body) = (tls.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = async {
                let mut conn = Conn::connect(addr, NAME, tls).await?;
                let (s, b) = conn.post("/mutate/workflows", body).await?;
                anyhow::Ok(ok_response(s, &b, true))
            };
            // The webhook configurations' timeoutSeconds: later is a failed review.
            match tokio::time::timeout(Duration::from_secs(3), ok).await {
                Ok(Ok(true)) => Some(t.elapsed()),
                _ => None,
            }
        }));
    }
    let mut run = Run::default();
    for t in tasks {
        match t.await {
            Ok(Some(d)) => run.latencies.push(d),
            _ => run.errors += 1,
        }
    }
    run.elapsed = start.elapsed();
    run
}

fn quantiles(run: &mut Run) -> String {
    run.latencies.sort();
    let q = |p: f64| -> f64 {
        if run.latencies.is_empty() {
            return f64::NAN;
        }
        let i =
            ((p * run.latencies.len() as f64).ceil() as usize).clamp(1, run.latencies.len()) - 1;
        run.latencies[i].as_secs_f64() * 1000.0
    };
    format!(
        "{:.3} | {:.3} | {:.3} | {}",
        q(0.50),
        q(0.99),
        q(0.999),
        run.errors
    )
}

/// Sums the samples of one metric on the server's admin port whose line starts with `prefix`.
async fn scrape(admin: SocketAddr, prefix: &str) -> f64 {
    let Ok((_, text)) = kfp_mesh_webhook::testing::get(admin, "/metrics").await else {
        return f64::NAN;
    };
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn slow(opt: SlowOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tls = certificates(dir.path())?;
    let body = review_body()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let server = Server::start("webhook", dir.path())?;
    println!(
        "webhook with its default limits; reviews: {} req/s over 16 keep-alive connections, and one on a new connection every 100 ms; {} s per phase; slow peers reconnect {:?} after being closed\n",
        opt.rate, opt.seconds, opt.reconnect
    );
    println!(
        "| slow peers | keep-alive p50 (ms) | p99 (ms) | p99.9 (ms) | errors | new-connection p50 (ms) | p99 (ms) | p99.9 (ms) | errors | server RSS at end / peak (MiB) | CPU server / load generator (s) | most open (metric / fds) | slow connections made | closed: evicted / handshake / header / idle / body timeouts |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    rt.block_on(async {
        let base_fds = open_fds(server.child.id());
        // Warm-up.
        closed_loop(server.addr, tls.clone(), body.clone(), 4, 1, true).await?;
        for peers in std::iter::once(0).chain(opt.peers.iter().copied()) {
            let stats = Arc::new(SlowStats::default());
            let before: Vec<f64> = {
                let mut v = Vec::new();
                for reason in CLOSE_REASONS {
                    v.push(scrape(server.admin, reason).await);
                }
                v
            };
            let cpu = CpuMeter::start(&server);
            // The slow peers connect over 5 s, on their own thread (as peers are not in
            // kube-apiserver's process); the measurement starts once they have had time to
            // be closed and to come back once.
            let ramp = Duration::from_secs(5);
            let warm_up = ramp + opt.reconnect * 3 / 2;
            let end = tokio::time::Instant::now() + warm_up + Duration::from_secs(opt.seconds);
            let peers_thread = {
                let (addr, tls, stats, reconnect) =
                    (server.addr, tls.clone(), stats.clone(), opt.reconnect);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                std::thread::spawn(move || {
                    rt.block_on(async {
                        let mut tasks = Vec::new();
                        for i in 0..peers {
                            let first = ramp * i as u32 / peers.max(1) as u32;
                            tasks.push(tokio::spawn(slow_peer(
                                i,
                                addr,
                                tls.clone(),
                                first,
                                end,
                                reconnect,
                                stats.clone(),
                            )));
                        }
                        for t in tasks {
                            let _ = t.await;
                        }
                    })
                })
            };
            tokio::time::sleep_until(end - Duration::from_secs(opt.seconds)).await;
            // The most connections open at once, sampled every 250 ms during the measurement:
            // as the server counts them, and as its open file descriptors beyond those it had
            // before any connection (which also counts for a server without the metric).
            let (admin, pid) = (server.admin, server.child.id());
            let sampler = tokio::spawn(async move {
                let (mut most, mut most_fds) = (0f64, 0usize);
                while tokio::time::Instant::now() + Duration::from_millis(500) < end {
                    most = most.max(scrape(admin, OPEN).await);
                    most_fds = most_fds.max(open_fds(pid).saturating_sub(base_fds));
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                (most, most_fds)
            });
            let (keep, mut fresh) = tokio::join!(
                open_loop(
                    server.addr,
                    tls.clone(),
                    body.clone(),
                    opt.rate,
                    opt.seconds,
                    true
                ),
                fresh_loop(
                    server.addr,
                    tls.clone(),
                    body.clone(),
                    Duration::from_millis(100),
                    opt.seconds
                )
            );
            let mut keep = keep?;
            let (rss_peak, rss) = server.memory();
            let (open, fds) = sampler.await?;
            let mut closed = Vec::new();
            for (i, reason) in CLOSE_REASONS.iter().enumerate() {
                closed.push(format!(
                    "{:.0}",
                    scrape(server.admin, reason).await - before[i]
                ));
            }
            let (server_cpu, client_cpu) = cpu.used(&server);
            peers_thread
                .join()
                .map_err(|_| anyhow::anyhow!("the slow peers' thread panicked"))?;
            println!(
                "| {peers} | {} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {open:.0} / {fds} | {} | {} |",
                quantiles(&mut keep),
                quantiles(&mut fresh),
                rss as f64 / 1024.0,
                rss_peak as f64 / 1024.0,
                server_cpu.as_secs_f64(),
                client_cpu.as_secs_f64(),
                stats.connections.load(Ordering::Relaxed),
                closed.join(" / "),
            );
            // Let the last slow connections be reaped before the next phase.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        anyhow::Ok(())
    })?;
    server.stop();
    Ok(())
}

/// Open file descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

const OPEN: &str = "kfp_mesh_webhook_connections_open{port=\"https\"}";

const CLOSE_REASONS: [&str; 5] = [
    "kfp_mesh_webhook_connections_closed_total{port=\"https\",reason=\"evicted\"}",
    "kfp_mesh_webhook_connections_closed_total{port=\"https\",reason=\"handshake_timeout\"}",
    "kfp_mesh_webhook_connections_closed_total{port=\"https\",reason=\"header_timeout\"}",
    "kfp_mesh_webhook_connections_closed_total{port=\"https\",reason=\"idle_timeout\"}",
    "kfp_mesh_webhook_requests_total{path=\"/mutate/workflows\",result=\"body_timeout\"}",
];

// The allocator of the `kfp-mesh` binary: both servers run in this process image.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
