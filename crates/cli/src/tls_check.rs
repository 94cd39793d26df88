//! `kfp-mesh tls-check`: one connection, explained.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::Result;
use kfp_mesh_core::connection::{self, Caller, RequestProtocol, RequestSpec, Target, Verdict};
use kfp_mesh_core::inventory::Inventory;
use kfp_mesh_core::mesh::authz::Jwt;

use crate::input::{self, InputArgs};
use crate::{ExitCode, OutputFormat};
use kfp_mesh_cluster::KubeArgs;

/// The built-in scenario of `--example`.
pub const EXAMPLE: &str = include_str!("../../../examples/driver-to-minio-strict.yaml");
const EXAMPLE_FROM: &str = "kubeflow/hello-world-7x2kq-system-container-driver-1234567890";
const EXAMPLE_TO: &str = "kubeflow/minio-service";
const EXAMPLE_PORT: u16 = 9000;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  kfp-mesh tls-check --example
  kfp-mesh tls-check -f manifests/ --from kubeflow/ml-pipeline --to kubeflow/minio-service --port 9000
  kfp-mesh tls-check -f render.yaml --from kube-apiserver --to kubeflow/cache-server --port 443
  kfp-mesh tls-check -f render.yaml --source-principal cluster.local/ns/team-a/sa/default-editor \\
      --to kubeflow/ml-pipeline --port 8888 --method GET --path /apis/v2beta1/runs

Exit codes: 0 the connection is allowed; 1 it is not (reset, denied, ...); 2 usage error;
3 unreadable input, malformed documents, or a workload/service/port not in the input.")]
pub struct TlsCheckArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Run on the built-in example: a KFP driver pod without a sidecar calling MinIO under
    /// mesh-wide STRICT mTLS (kubeflow/pipelines#12015). --from/--to/--port default to it.
    #[arg(long)]
    pub example: bool,
    /// Read the objects from the live cluster of the current kube context instead of files;
    /// --from / --to-pod also take live Pod names (a run pod, a pod of a Deployment).
    #[arg(long, conflicts_with = "example")]
    pub live: bool,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// The caller: NS/WORKLOAD (a Deployment, StatefulSet, DaemonSet, Job, CronJob, Pod ... of
    /// the input, by name), `external` (no identity) or `kube-apiserver`, or `kubelet`.
    #[arg(long, value_name = "NS/WORKLOAD|external|kube-apiserver|kubelet")]
    pub from: Option<String>,
    /// The Service called: NS/SERVICE (use with --port SERVICE_PORT).
    #[arg(long, value_name = "NS/SERVICE", conflicts_with = "to_pod")]
    pub to: Option<String>,
    /// A workload called directly on its pod IP: NS/WORKLOAD (use with --port CONTAINER_PORT).
    #[arg(long, value_name = "NS/WORKLOAD")]
    pub to_pod: Option<String>,
    /// The Service port (with --to) or the container port (with --to-pod).
    #[arg(long)]
    pub port: Option<u16>,
    /// Force the protocol; by default it follows the port's name or appProtocol.
    #[arg(long, value_enum)]
    pub protocol: Option<ProtocolArg>,
    /// The client application speaks TLS itself (implied for kube-apiserver).
    #[arg(long)]
    pub app_tls: bool,
    #[arg(long)]
    pub method: Option<String>,
    #[arg(long)]
    pub path: Option<String>,
    #[arg(long)]
    pub host: Option<String>,
    /// A request header K=V. Repeatable.
    #[arg(long = "header", value_name = "K=V")]
    pub headers: Vec<String>,
    /// A synthetic mesh identity for the caller: TRUST_DOMAIN/ns/NS/sa/SA.
    #[arg(long)]
    pub source_principal: Option<String>,
    /// A synthetic caller namespace (identity NS/sa/default).
    #[arg(long)]
    pub source_namespace: Option<String>,
    /// The caller's IP (for ipBlocks, remoteIpBlocks, NetworkPolicy ipBlock).
    #[arg(long)]
    pub source_ip: Option<IpAddr>,
    /// A valid JWT with this issuer.
    #[arg(long)]
    pub jwt_issuer: Option<String>,
    #[arg(long)]
    pub jwt_subject: Option<String>,
    /// A claim K=V of the JWT (several values of one claim: repeat the flag). Repeatable.
    #[arg(long = "jwt-claim", value_name = "K=V")]
    pub jwt_claims: Vec<String>,
    /// The JWT is rejected by the proxy (bad signature, expired).
    #[arg(long)]
    pub jwt_invalid: bool,
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: OutputFormat,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ProtocolArg {
    Http,
    Tcp,
}

fn split_ns(what: &str, s: &str) -> Result<(String, String)> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(crate::usage(&format!(
            "{what} must be NAMESPACE/NAME, got `{s}`"
        ))),
    }
}

fn key_values(flag: &str, items: &[String]) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| crate::usage(&format!("{flag} takes K=V, got `{kv}`")))
        })
        .collect()
}

/// Run the command; returns the exit code.
pub fn run(args: TlsCheckArgs) -> Result<ExitCode> {
    let inventory = if args.example {
        input::load_builtin("<example: driver-to-minio-strict.yaml>", EXAMPLE)
    } else if args.live {
        let names: Vec<(String, String)> = [args.from.as_deref(), args.to_pod.as_deref()]
            .into_iter()
            .flatten()
            .filter_map(|s| split_ns("", s).ok())
            .collect();
        kfp_mesh_cluster::live_inventory_blocking(&args.kube, &names)?
    } else if args.input.is_empty() {
        return Err(crate::usage(
            "tls-check needs input: -f FILE/DIR, -k KUSTOMIZE_DIR, --live, or --example",
        ));
    } else {
        input::load(&args.input)?
    };
    input::report_input_errors(&inventory.errors);
    input::report_rejected(&inventory);

    let (from, to, port) = if args.example {
        (
            args.from
                .clone()
                .unwrap_or_else(|| EXAMPLE_FROM.to_string()),
            args.to
                .clone()
                .or_else(|| args.to_pod.is_none().then(|| EXAMPLE_TO.to_string())),
            args.port.or(Some(EXAMPLE_PORT)),
        )
    } else {
        (
            args.from.clone().unwrap_or_else(|| "external".to_string()),
            args.to.clone(),
            args.port,
        )
    };
    let port = port.ok_or_else(|| crate::usage("--port is required"))?;
    let request = request_spec(&args, &from)?;

    let mut verdict = match evaluate(
        &inventory,
        &from,
        to.as_deref(),
        args.to_pod.as_deref(),
        port,
        &request,
    ) {
        Ok(v) => v,
        Err(e) if e.downcast_ref::<crate::UsageError>().is_some() => return Err(e),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::BadInput);
        }
    };
    // KFP's words for a KFP run pod (core words every fix for any workload).
    let client = from
        .split_once('/')
        .and_then(|(ns, name)| inventory.workload(ns, name));
    if let Some(fix) = verdict.fix.as_mut() {
        fix.text = kfp_mesh_kfp::check::fix_text(fix, client);
    }
    // What to call the caller in the output: a synthetic identity is named by it.
    let from_label = match (&args.from, &args.source_principal, &args.source_namespace) {
        (None, Some(p), _) => format!("principal {p}"),
        (None, None, Some(ns)) => format!("namespace {ns} (sa default)"),
        _ => from.clone(),
    };
    let from = from_label;
    match args.output {
        OutputFormat::Json => {
            let mut value = serde_json::to_value(&verdict)?;
            if let Some(map) = value.as_object_mut() {
                map.insert("from".to_string(), serde_json::Value::String(from.clone()));
                map.insert(
                    "to".to_string(),
                    serde_json::Value::String(format!(
                        "{}:{port}",
                        to.as_deref().or(args.to_pod.as_deref()).unwrap_or_default()
                    )),
                );
            }
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        OutputFormat::Table => print_text(
            &from,
            &format!(
                "{}{}:{port}",
                if args.to_pod.is_some() { "pod " } else { "" },
                to.as_deref().or(args.to_pod.as_deref()).unwrap_or_default()
            ),
            &verdict,
        ),
    }
    if !inventory.errors.is_empty() {
        return Ok(ExitCode::BadInput);
    }
    Ok(if verdict.outcome == connection::Outcome::Allow {
        ExitCode::Ok
    } else {
        ExitCode::Findings
    })
}

fn request_spec(args: &TlsCheckArgs, from: &str) -> Result<RequestSpec> {
    let jwt = if args.jwt_issuer.is_some() || args.jwt_invalid {
        let mut claims: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in key_values("--jwt-claim", &args.jwt_claims)? {
            claims.entry(k).or_default().push(v);
        }
        Some(Jwt {
            issuer: args.jwt_issuer.clone().unwrap_or_default(),
            subject: args.jwt_subject.clone().unwrap_or_default(),
            audiences: claims.get("aud").cloned().unwrap_or_default(),
            presenter: claims.get("azp").and_then(|v| v.first().cloned()),
            claims,
            valid: !args.jwt_invalid,
        })
    } else {
        None
    };
    Ok(RequestSpec {
        protocol: args.protocol.map(|p| match p {
            ProtocolArg::Http => RequestProtocol::Http,
            ProtocolArg::Tcp => RequestProtocol::Tcp,
        }),
        method: args.method.clone(),
        path: args.path.clone(),
        host: args.host.clone(),
        headers: key_values("--header", &args.headers)?.into_iter().collect(),
        jwt,
        app_tls: args.app_tls || from == "kube-apiserver",
        source_principal: args.source_principal.clone(),
        source_namespace: args.source_namespace.clone(),
        source_ip: args.source_ip,
        connect_only: false,
    })
}

fn evaluate(
    inv: &Inventory,
    from: &str,
    to: Option<&str>,
    to_pod: Option<&str>,
    port: u16,
    request: &RequestSpec,
) -> Result<Verdict> {
    let caller = match from {
        "external" => Caller::External,
        "kube-apiserver" => Caller::KubeApiserver,
        "kubelet" => Caller::Kubelet,
        other => {
            let (ns, name) = split_ns("--from", other)?;
            Caller::Workload(connection::resolve_workload(inv, &ns, &name)?)
        }
    };
    let target = match (to, to_pod) {
        (Some(svc), _) => {
            let (ns, name) = split_ns("--to", svc)?;
            Target::Service {
                service: connection::resolve_service(inv, &ns, &name)?,
                port,
            }
        }
        (None, Some(pod)) => {
            let (ns, name) = split_ns("--to-pod", pod)?;
            Target::Pod {
                workload: connection::resolve_workload(inv, &ns, &name)?,
                port,
            }
        }
        (None, None) => {
            return Err(crate::usage(
                "--to NS/SERVICE or --to-pod NS/WORKLOAD is required",
            ));
        }
    };
    Ok(connection::evaluate(inv, caller, target, request)?)
}

fn print_text(from: &str, to: &str, v: &Verdict) {
    println!("{from} -> {to}");
    println!("  outcome:   {}", v.outcome);
    println!(
        "  transport: {}",
        match v.transport {
            Some(connection::Transport::Mtls) => "mTLS",
            Some(connection::Transport::Plaintext) => "plaintext",
            None => "none (no connection established)",
        }
    );
    if let Some(provider) = &v.provider {
        println!("  decided by: ext-authz provider {provider}");
    }
    println!("  symptom:   {}", v.symptom);
    if let Some(fix) = &v.fix {
        println!("  fix:       {fix}");
    }
    println!();
    println!("Why:");
    for (i, step) in v.explanation.iter().enumerate() {
        println!("  {:>2}. [{}] {}", i + 1, step.rule, step.message);
        for o in &step.objects {
            println!("        by {o}");
        }
    }
}
