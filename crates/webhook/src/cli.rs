//! `kfp-mesh webhook`: arguments and entry points.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tracing::info;

use crate::server::{Settings, start};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Plain,
}

/// Run the KFP run-pod admission webhook (HTTPS).
#[derive(Clone, Debug, clap::Args)]
pub struct WebhookArgs {
    /// YAML configuration file (reloaded on change); without it the built-in default applies.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// PEM certificate chain served to kube-apiserver (reloaded on change).
    #[arg(long, value_name = "FILE")]
    pub cert_file: PathBuf,
    /// PEM private key of the certificate (reloaded on change).
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// HTTPS address of /mutate/workflows and /mutate/pods.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub addr: SocketAddr,
    /// Plain-HTTP admin address: /livez, /readyz, /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, default_value = "json")]
    pub log_format: LogFormat,
    /// How often certificate, key and configuration files are checked for changes.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub reload_interval: Duration,
    /// Largest AdmissionReview body accepted, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Request bodies held at once by all requests together, in bytes; a request whose body
    /// would exceed it gets 503. At least --max-body-bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub max_body_bytes_in_flight: usize,
    /// After SIGTERM, report not ready but keep serving this long (endpoint removal).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Then wait at most this long for in-flight reviews to finish.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Close a connection whose TLS handshake is not done within this time.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub tls_handshake_timeout: Duration,
    /// HTTP/1.1: close a connection whose request head has not arrived within this time once
    /// the server waits for it (after the handshake or the previous response, so this also
    /// ends HTTP/1.1 keep-alive connections idle this long).
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    pub header_read_timeout: Duration,
    /// Answer 408 to a request whose body has not arrived within this time after its head.
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    pub body_read_timeout: Duration,
    /// Close a connection with no request in progress for this long (HTTP/2: with GOAWAY).
    #[arg(long, default_value = "60s", value_parser = parse_timeout)]
    pub idle_timeout: Duration,
    /// Cap on open HTTPS connections. At the cap a new connection closes another: the oldest
    /// that never completed a request, else the one served least recently; it is refused only
    /// when every open connection is answering a request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

impl WebhookArgs {
    pub fn settings(&self) -> Settings {
        let mut s = Settings::new(self.cert_file.clone(), self.key_file.clone());
        s.config_file = self.config.clone();
        s.addr = self.addr;
        s.admin_addr = self.admin_addr;
        s.reload_interval = self.reload_interval;
        s.max_body_bytes = self.max_body_bytes;
        s.max_body_bytes_in_flight = self.max_body_bytes_in_flight;
        s.shutdown_delay = self.shutdown_delay;
        s.shutdown_timeout = self.shutdown_timeout;
        s.handshake_timeout = self.tls_handshake_timeout;
        s.header_read_timeout = self.header_read_timeout;
        s.body_read_timeout = self.body_read_timeout;
        s.idle_timeout = self.idle_timeout;
        s.max_connections = usize::try_from(self.max_connections).unwrap_or(usize::MAX);
        s
    }
}

pub use kfp_mesh_core::duration::parse_duration;

/// A [`parse_duration`] that is not zero (a zero timeout would close every connection).
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!(
            "{s:?}: a timeout of zero would close every connection at once; give a duration like 10s"
        ));
    }
    Ok(d)
}

/// Installs the global `tracing` subscriber (level from `RUST_LOG`, default `info`). Does
/// nothing if one is installed already.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Plain => builder.try_init(),
    };
}

/// Runs the webhook until SIGTERM or SIGINT, then shuts down gracefully. For callers that
/// are already inside a tokio runtime.
pub async fn run_async(args: WebhookArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let server = start(args.settings()).await?;
    wait_for_signal().await?;
    info!("signal received, shutting down");
    server.shutdown().await
}

/// Runs the webhook on its own tokio runtime (for a synchronous `main`).
pub fn run(args: WebhookArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(run_async(args))
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("Ctrl-C handler")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The units are `core::duration`'s (tested there); a timeout must not be zero.
    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_timeout("0s").unwrap_err().contains("zero"));
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: WebhookArgs,
    }

    #[test]
    fn hardening_flags_reach_the_settings() {
        use clap::Parser as _;
        let base = ["kfp-mesh", "--cert-file", "c", "--key-file", "k"];
        let defaults = Cli::try_parse_from(base).expect("defaults").args.settings();
        let built_in = Settings::new("c".into(), "k".into());
        assert_eq!(
            (
                defaults.handshake_timeout,
                defaults.header_read_timeout,
                defaults.body_read_timeout,
                defaults.idle_timeout,
                defaults.max_connections,
                defaults.max_body_bytes_in_flight
            ),
            (
                built_in.handshake_timeout,
                built_in.header_read_timeout,
                built_in.body_read_timeout,
                built_in.idle_timeout,
                built_in.max_connections,
                built_in.max_body_bytes_in_flight
            ),
            "--help's defaults are the server's"
        );
        let s = Cli::try_parse_from(base.iter().copied().chain([
            "--tls-handshake-timeout=1s",
            "--header-read-timeout=2s",
            "--body-read-timeout=3s",
            "--idle-timeout=4s",
            "--max-connections=5",
        ]))
        .expect("flags")
        .args
        .settings();
        assert_eq!(
            (
                s.handshake_timeout,
                s.header_read_timeout,
                s.body_read_timeout,
                s.idle_timeout,
                s.max_connections
            ),
            (
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(3),
                Duration::from_secs(4),
                5
            )
        );
        for bad in ["--max-connections=0", "--idle-timeout=0"] {
            assert!(
                Cli::try_parse_from(base.iter().copied().chain([bad])).is_err(),
                "{bad}"
            );
        }
    }
}
