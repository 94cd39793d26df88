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
    /// After SIGTERM, report not ready but keep serving this long (endpoint removal).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Then wait at most this long for in-flight reviews to finish.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

impl WebhookArgs {
    pub fn settings(&self) -> Settings {
        let mut s = Settings::new(self.cert_file.clone(), self.key_file.clone());
        s.config_file = self.config.clone();
        s.addr = self.addr;
        s.admin_addr = self.admin_addr;
        s.reload_interval = self.reload_interval;
        s.max_body_bytes = self.max_body_bytes;
        s.shutdown_delay = self.shutdown_delay;
        s.shutdown_timeout = self.shutdown_timeout;
        s
    }
}

/// `10s`, `500ms`, `2m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s or 500ms"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (use ms, s or m)")),
    }
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

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("s").is_err());
    }
}
