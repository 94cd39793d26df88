//! Write N synthetic Kubeflow profiles (see `kfp_mesh_testdata::profiles`) to stdout, for
//! timing `kfp-mesh check` at scale on top of a KFP multi-user or Kubeflow render:
//!
//! ```sh
//! cargo run --release -p kfp-mesh-testdata --bin gen-profiles -- 5000 [PODS] > profiles.yaml
//! # the same objects as one JSON `List` (one item a line):
//! cargo run --release -p kfp-mesh-testdata --bin gen-profiles -- --json-list 5000 > profiles.json
//! ```

use std::io::Write;
use std::process::ExitCode;

use kfp_mesh_testdata::profiles::{DEFAULT_PODS, profiles};

const USAGE: &str =
    "usage: gen-profiles [--json-list] PROFILES [RUN_PODS_PER_PROFILE] > profiles.yaml";

fn main() -> ExitCode {
    let mut json_list = false;
    let mut numbers = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-h" | "--help" => {
                println!(
                    "{USAGE}\n\nRUN_PODS_PER_PROFILE defaults to {DEFAULT_PODS}; --json-list writes one JSON `List` instead of a YAML stream."
                );
                return ExitCode::SUCCESS;
            }
            "--json-list" => json_list = true,
            _ => match arg.parse::<usize>() {
                Ok(n) if numbers.len() < 2 => numbers.push(n),
                Ok(_) => return usage(&format!("one number too many: `{arg}`")),
                Err(_) => return usage(&format!("`{arg}` is not a number or an option")),
            },
        }
    }
    let Some(&n) = numbers.first() else {
        return usage("how many profiles?");
    };
    let pods = numbers.get(1).copied().unwrap_or(DEFAULT_PODS);
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

fn usage(problem: &str) -> ExitCode {
    eprintln!("gen-profiles: {problem}\n{USAGE}");
    ExitCode::from(2)
}

/// The YAML stream's documents as the items of one JSON `List`, one item a line.
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
