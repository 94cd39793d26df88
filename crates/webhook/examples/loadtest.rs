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
//! Every loop is bounded in time and stops by itself; traffic goes to 127.0.0.1 only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
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
        std::fs::write(addr_file, server.addr.to_string())?;
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
                && let Ok(addr) = text.trim().parse()
            {
                return Ok(Server { child, addr });
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

fn drive(seconds: u64, rate: u64, connections: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec![NAME.to_string()])?.signed_by(&key, &ca)?;
    std::fs::write(dir.path().join("tls.crt"), leaf.pem())?;
    std::fs::write(dir.path().join("tls.key"), key.serialize_pem())?;
    let body = review_body()?;
    let tls = client_config(ca.der())?;

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

// The allocator of the `kfp-mesh` binary: both servers run in this process image.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
