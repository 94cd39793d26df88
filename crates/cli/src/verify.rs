//! `kfp-mesh verify`: `check` on the live cluster, plus the live facts.

use anyhow::Result;
use kfp_mesh_cluster::facts::LiveFacts;
use kfp_mesh_cluster::{VerifyArgs, verify_blocking};
use kfp_mesh_kfp::check::{Explanations, Suppression};

use crate::ExitCode;
use crate::check::{self, CheckFormat, FailOn};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  kfp-mesh verify                                 # the current kube context, every namespace
  kfp-mesh verify --context prod -n kubeflow,team-a
  kfp-mesh verify -o json | jq .live.runPods
  kfp-mesh verify --save-objects cluster.json     # then: kfp-mesh check -f cluster.json

RBAC: verify only reads (get, list). Grant the ClusterRole `kfp-mesh-verify`:
  kubectl apply -k manifests/kustomize/components/verify-rbac

Exit codes: 0 no finding at or above --fail-on; 1 findings at or above --fail-on; 2 usage
error; 3 the cluster could not be read (no kubeconfig, unreachable, forbidden, timeout).")]
pub struct VerifyCmd {
    #[command(flatten)]
    pub verify: VerifyArgs,
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: CheckFormat,
    /// Lowest severity that makes the exit code 1.
    #[arg(long, value_enum, default_value = "error")]
    pub fail_on: FailOn,
}

pub fn run(mut cmd: VerifyCmd) -> Result<ExitCode> {
    // The table shows each flow's cause only; every other output carries the whole explanation.
    cmd.verify.explanations = if cmd.output == CheckFormat::Table {
        Explanations::Cause
    } else {
        Explanations::Full
    };
    let suppress = cmd
        .verify
        .suppress
        .iter()
        .map(|s| s.parse::<Suppression>())
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| crate::usage(&format!("--suppress {e}")))?;
    let verified = verify_blocking(&cmd.verify, &suppress)?;
    let report = &verified.report;
    if !report.kfp.detected {
        eprintln!(
            "warning: no Kubeflow Pipelines install found in the cluster (no `ml-pipeline` Deployment or Service, no `pipeline-install-config`); only generic findings are reported"
        );
    }
    match cmd.output {
        CheckFormat::Table => {
            check::print_table(report, false)?;
            print_live(&verified.live);
        }
        CheckFormat::Json => {
            let mut value = check::json(report);
            if let Some(map) = value.as_object_mut() {
                map.insert("live".to_string(), serde_json::to_value(&verified.live)?);
            }
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        CheckFormat::Sarif => {
            let mut value = check::sarif(report);
            cluster_locations(&mut value);
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        CheckFormat::Html => print!("{}", kfp_mesh_report::html(report)),
        CheckFormat::Dot => print!("{}", kfp_mesh_report::dot(report)),
        CheckFormat::Mermaid => print!("{}", kfp_mesh_report::mermaid(report)),
    }
    Ok(check::exit_code(cmd.fail_on, report))
}

/// Objects read from a cluster have no file: their SARIF location is logical
/// (`cluster:<context>/<Kind>/<ns>/<name>`), not a path.
fn cluster_locations(sarif: &mut serde_json::Value) {
    let Some(results) = sarif
        .pointer_mut("/runs/0/results")
        .and_then(|r| r.as_array_mut())
    else {
        return;
    };
    for r in results {
        let uri = r
            .pointer("/locations/0/physicalLocation/artifactLocation/uri")
            .and_then(|u| u.as_str())
            .filter(|u| u.starts_with("cluster:"))
            .map(str::to_string);
        if let (Some(uri), Some(map)) = (uri, r.as_object_mut()) {
            map.insert(
                "locations".to_string(),
                serde_json::json!([{
                    "logicalLocations": [{"fullyQualifiedName": uri, "kind": "resource"}]
                }]),
            );
        }
    }
}

fn print_live(live: &LiveFacts) {
    let scope = match &live.namespaces {
        Some(ns) => format!("namespaces {}", ns.join(", ")),
        None => "all namespaces".to_string(),
    };
    println!(
        "\nLive facts (context {}, {}, {scope}):",
        live.context, live.server
    );
    let read: Vec<String> = live
        .reads
        .iter()
        .filter(|r| r.installed)
        .map(|r| format!("{} {}", r.listed, r.kind))
        .collect();
    println!("  read: {}", read.join(", "));
    if !live.not_installed.is_empty() {
        println!("  not installed: {}", live.not_installed.join(", "));
    }

    println!(
        "  run pods ({} most recent workflows per run namespace):",
        live.recent_workflows_per_namespace
    );
    if live.run_pods.is_empty() {
        println!("    none found");
    }
    for r in &live.run_pods {
        let mut line = format!(
            "    {}: {} pods of {} workflows: {} with istio-proxy ({} classic, {} native)",
            r.namespace,
            r.pods,
            r.workflows.len(),
            r.classic_sidecar + r.native_sidecar,
            r.classic_sidecar,
            r.native_sidecar
        );
        if r.ambient > 0 {
            line.push_str(&format!(", {} ambient", r.ambient));
        }
        line.push_str(&format!(", {} without", r.without_sidecar));
        if !r.examples_without.is_empty() {
            line.push_str(&format!(" (e.g. {})", r.examples_without.join(", ")));
        }
        println!("{line}");
    }

    if live.stuck_pods.is_empty() {
        println!("  pods stuck Running on their sidecar: none");
    } else {
        println!(
            "  pods stuck Running on their sidecar ({}):",
            live.stuck_pods.len()
        );
        for s in live.stuck_pods.iter().take(20) {
            println!(
                "    {}/{}{}{}",
                s.namespace,
                s.name,
                s.since
                    .as_deref()
                    .map(|t| format!(", containers done since {t}"))
                    .unwrap_or_default(),
                if s.kill_cmd {
                    ", has kill-cmd-istio-proxy"
                } else {
                    ""
                }
            );
        }
        if live.stuck_pods.len() > 20 {
            println!("    ... and {} more", live.stuck_pods.len() - 20);
        }
    }

    if live.webhooks.is_empty() {
        println!("  kfp-mesh webhook: not deployed");
    }
    for w in &live.webhooks {
        println!(
            "  kfp-mesh webhook: {} ({:?} mode) -> {}: {}/{} ready{}",
            w.configuration,
            w.mode,
            w.deployment
                .as_deref()
                .or(w.service.as_deref())
                .unwrap_or("no Service"),
            w.ready_replicas,
            w.desired_replicas,
            if w.after_istio_injector {
                ", sorts AFTER Istio's injector"
            } else {
                ""
            }
        );
    }
    let order: Vec<String> = live
        .webhook_order
        .iter()
        .filter(|o| o.role != "other")
        .map(|o| format!("{} [{}]", o.name, o.role))
        .collect();
    if !order.is_empty() {
        println!("  mutating webhook order: {}", order.join(" -> "));
    }
    if live.native_sidecars.is_empty() {
        println!("  istiod: not found");
    }
    for n in &live.native_sidecars {
        println!(
            "  istiod {}{}: ENABLE_NATIVE_SIDECARS={} (native sidecars {})",
            n.istiod,
            n.istio_version
                .as_deref()
                .map(|v| format!(" (Istio {v})"))
                .unwrap_or_default(),
            n.env.as_deref().unwrap_or("unset"),
            match n.effective {
                "auto" => "on only if every kubelet is 1.33 or newer",
                other => other,
            }
        );
    }
    if live.policies.is_empty() {
        println!("  PeerAuthentications / AuthorizationPolicies: none");
    } else {
        println!("  PeerAuthentications / AuthorizationPolicies per namespace:");
        for p in &live.policies {
            let list = |v: &[String]| -> String {
                if v.len() <= 4 {
                    v.join(", ")
                } else {
                    format!("{}, ... ({} in all)", v[..3].join(", "), v.len())
                }
            };
            let mut parts = Vec::new();
            if !p.peer_authentications.is_empty() {
                parts.push(format!("PA {}", list(&p.peer_authentications)));
            }
            if !p.authorization_policies.is_empty() {
                parts.push(format!("AP {}", list(&p.authorization_policies)));
            }
            println!("    {}: {}", p.namespace, parts.join("; "));
        }
    }
}
