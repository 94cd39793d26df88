//! Write N synthetic Kubeflow profiles (see `kfp_mesh_testdata::profiles`) to stdout, for
//! timing `kfp-mesh check` at scale on top of a KFP multi-user or Kubeflow render:
//!
//! ```sh
//! cargo run --release -p kfp-mesh-testdata --bin gen-profiles -- 5000 [PODS] > profiles.yaml
//! # the same objects as one JSON `List`, as `kubectl get -o json` writes them:
//! cargo run --release -p kfp-mesh-testdata --bin gen-profiles -- --json-list 5000 > profiles.json
//! ```

use std::io::Write;
use std::process::ExitCode;

use kfp_mesh_testdata::profiles::{DEFAULT_PODS, profiles};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let json_list = args.first().is_some_and(|a| a == "--json-list");
    if json_list {
        args.remove(0);
    }
    let number = |i: usize, default: Option<usize>| -> Option<usize> {
        match args.get(i) {
            Some(a) => a.parse().ok(),
            None => default,
        }
    };
    let (Some(n), Some(pods)) = (number(0, None), number(1, Some(DEFAULT_PODS))) else {
        eprintln!(
            "usage: gen-profiles [--json-list] PROFILES [RUN_PODS_PER_PROFILE (default {DEFAULT_PODS})] > profiles.yaml"
        );
        return ExitCode::from(2);
    };
    let text = profiles(n, pods);
    let written = if json_list {
        write_json_list(&text)
    } else {
        std::io::stdout().lock().write_all(text.as_bytes())
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-profiles: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The YAML stream's documents as the items of one JSON `List`, one item per line.
fn write_json_list(yaml: &str) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    out.write_all(b"{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\n")?;
    let mut first = true;
    for doc in yaml.split("---\n").filter(|d| !d.trim().is_empty()) {
        let value: serde_json::Value = serde_saphyr::from_str(doc)
            .map_err(|e| std::io::Error::other(format!("generated YAML: {e}")))?;
        if !first {
            out.write_all(b",\n")?;
        }
        first = false;
        serde_json::to_writer(&mut out, &value)?;
    }
    out.write_all(b"\n]}\n")?;
    out.flush()
}
