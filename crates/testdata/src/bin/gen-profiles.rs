//! Write N synthetic Kubeflow profiles (see `kfp_mesh_testdata::profiles`) to stdout, for
//! timing `kfp-mesh check` at scale on top of a KFP multi-user or Kubeflow render:
//!
//! ```sh
//! cargo run --release -p kfp-mesh-testdata --bin gen-profiles -- 5000 [PODS] > profiles.yaml
//! ```

use std::io::Write;
use std::process::ExitCode;

use kfp_mesh_testdata::profiles::{DEFAULT_PODS, profiles};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: Option<usize>| -> Option<usize> {
        match args.get(i) {
            Some(a) => a.parse().ok(),
            None => default,
        }
    };
    let (Some(n), Some(pods)) = (number(0, None), number(1, Some(DEFAULT_PODS))) else {
        eprintln!(
            "usage: gen-profiles PROFILES [RUN_PODS_PER_PROFILE (default {DEFAULT_PODS})] > profiles.yaml"
        );
        return ExitCode::from(2);
    };
    let text = profiles(n, pods);
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-profiles: {e}");
            ExitCode::FAILURE
        }
    }
}
