//! Command-line options for reading a cluster (`verify`, `tls-check --live`).

use std::path::PathBuf;
use std::time::Duration;

/// Which cluster to read, and how.
#[derive(Clone, Debug, clap::Args)]
pub struct KubeArgs {
    /// The kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config, then the in-cluster
    /// ServiceAccount when running in a pod).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current-context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Read only these namespaces (plus the Istio root namespace, see --istio-namespace, and
    /// cluster-scoped objects). Repeatable or comma-separated. Default: all namespaces.
    #[arg(
        short = 'n',
        long = "namespace",
        value_name = "NS",
        value_delimiter = ',',
        conflicts_with = "all_namespaces"
    )]
    pub namespaces: Vec<String>,
    /// Read every namespace (the default).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Istio's root namespace, always read with -n (mesh config, mesh-wide policies).
    #[arg(long, value_name = "NS", default_value = "istio-system")]
    pub istio_namespace: String,
    /// Give up on an API request after this long (e.g. 30s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Lists running at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrent_lists: u16,
    /// Objects per list page (the `limit` of a paginated list).
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub page_size: u32,
    /// Never print the progress line (it is only printed when stderr is a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

impl Default for KubeArgs {
    fn default() -> Self {
        KubeArgs {
            kubeconfig: None,
            context: None,
            namespaces: Vec::new(),
            all_namespaces: false,
            istio_namespace: "istio-system".to_string(),
            request_timeout: Duration::from_secs(30),
            max_concurrent_lists: 4,
            page_size: 500,
            no_progress: false,
        }
    }
}

impl KubeArgs {
    /// The namespaces to read, or `None` for all of them.
    pub fn namespace_scope(&self) -> Option<Vec<String>> {
        if self.all_namespaces || self.namespaces.is_empty() {
            return None;
        }
        let mut v = self.namespaces.clone();
        v.push(self.istio_namespace.clone());
        v.sort();
        v.dedup();
        Some(v)
    }
}

/// `kfp-mesh verify`'s own options (the output format and exit policy are the CLI's).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// The namespace KFP is installed in (default: where the `ml-pipeline` Deployment is).
    #[arg(long)]
    pub kfp_namespace: Option<String>,
    /// A profile namespace where runs execute (multi-user). Repeatable.
    #[arg(long = "profile", value_name = "NS")]
    pub profiles: Vec<String>,
    /// How many of the most recent Workflows per run namespace the run-pod facts look at.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub recent: usize,
    /// Suppress a finding: CODE, or CODE=NAMESPACE/NAME for one object. Repeatable.
    #[arg(long = "suppress", value_name = "CODE[=NS/NAME]")]
    pub suppress: Vec<String>,
    /// Also write the objects the analysis read, as one JSON `List`: `kfp-mesh check -f FILE`
    /// then reproduces the static part offline.
    #[arg(long, value_name = "FILE")]
    pub save_objects: Option<PathBuf>,
    /// How much of each flow's explanation the report keeps: set by the CLI from the output
    /// format (the table shows each flow's cause only).
    #[arg(skip)]
    pub explanations: kfp_mesh_kfp::check::Explanations,
}

/// `30s`, `2m`, `1500ms`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = kfp_mesh_core::duration::parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("`{s}` must be more than 0"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3 fortnights").is_err());
        assert!(parse_duration("").is_err());
    }
}
