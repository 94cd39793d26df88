//! kfp-mesh's cluster edge: read a live cluster with kube-rs (kubeconfig or in-cluster
//! configuration, paginated lists with bounded concurrency, typed errors that say what to
//! do), reduce every object to what the analysis needs, run the same analysis as
//! `kfp-mesh check`, and add the facts only a live cluster shows ([`facts`]).
//!
//! The CLI wires it: `kfp-mesh verify` ([`VerifyArgs`], [`verify_blocking`]) and
//! `kfp-mesh tls-check --live` ([`KubeArgs`], [`live_inventory_blocking`]).

pub mod args;
pub mod error;
pub mod facts;
pub mod kinds;
pub mod read;
pub mod strip;

use std::path::Path;

use kfp_mesh_core::inventory::Inventory;
use kfp_mesh_core::object::Object;
use kfp_mesh_kfp::check::{self, CheckOptions, Report, Suppression};
use kfp_mesh_kfp::detect::DetectOptions;

pub use args::{KubeArgs, VerifyArgs};
pub use error::ClusterError;
pub use facts::LiveFacts;
pub use read::{Connection, Snapshot};

/// The result of `verify`: the static report (live findings merged in), the live facts, and
/// the inventory they were computed from.
#[derive(Debug)]
pub struct Verified {
    pub report: Report,
    pub live: LiveFacts,
    pub inventory: Inventory,
}

/// A runtime for the blocking entry points (the CLI is synchronous).
pub fn runtime() -> Result<tokio::runtime::Runtime, ClusterError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClusterError::Client(format!("cannot start the async runtime: {e}")))
}

/// Read the cluster: the snapshot (objects for the analysis, live pods, workflows).
pub async fn load_live(args: &KubeArgs) -> Result<Snapshot, ClusterError> {
    let conn = read::connect(args).await?;
    read::read(&conn, args).await
}

/// Read the cluster and analyse it: `check` on the objects read, plus the live facts.
pub async fn verify(args: &VerifyArgs, suppress: &[Suppression]) -> Result<Verified, ClusterError> {
    let snapshot = load_live(&args.kube).await?;
    analyse(snapshot, args, suppress)
}

/// [`verify`] on a runtime of its own.
pub fn verify_blocking(
    args: &VerifyArgs,
    suppress: &[Suppression],
) -> Result<Verified, ClusterError> {
    runtime()?.block_on(verify(args, suppress))
}

/// The analysis part of `verify`, on a snapshot already read.
pub fn analyse(
    mut snapshot: Snapshot,
    args: &VerifyArgs,
    suppress: &[Suppression],
) -> Result<Verified, ClusterError> {
    if let Some(path) = &args.save_objects {
        save_objects(path, &snapshot.objects)?;
    }
    let objects = std::mem::take(&mut snapshot.objects);
    let inventory = Inventory::from_objects(objects, Vec::new());
    let opts = CheckOptions {
        detect: DetectOptions {
            kfp_namespace: args.kfp_namespace.clone(),
            profiles: args.profiles.clone(),
        },
        suppress: suppress.to_vec(),
        explanations: args.explanations,
    };
    let mut report = check::check(&inventory, &opts);
    let live = facts::live_facts(&snapshot, &inventory, &report, args.recent);
    facts::merge_findings(&mut report, &live.findings, &inventory, suppress);
    Ok(Verified {
        report,
        live,
        inventory,
    })
}

/// Write objects as one JSON `List` (what `kfp-mesh check -f` reads back).
pub fn save_objects(path: &Path, objects: &[Object]) -> Result<(), ClusterError> {
    let write_err = |e: String| ClusterError::Write {
        path: path.display().to_string(),
        reason: e,
    };
    let file = std::fs::File::create(path).map_err(|e| write_err(e.to_string()))?;
    let mut w = std::io::BufWriter::new(file);
    let list = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": objects.iter().map(Object::value).collect::<Vec<_>>(),
    });
    serde_json::to_writer_pretty(&mut w, &list).map_err(|e| write_err(e.to_string()))?;
    std::io::Write::flush(&mut w).map_err(|e| write_err(e.to_string()))
}

const WORKLOAD_KINDS: &[&str] = &[
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
];

/// The inventory of a live cluster for `tls-check --live`. `names` are the `(namespace,
/// name)`s the command line refers to: a name that is not a workload read from the cluster
/// but a live Pod (a run pod, a pod of a Deployment) is fetched and analysed as that Pod.
pub async fn live_inventory(
    args: &KubeArgs,
    names: &[(String, String)],
) -> Result<Inventory, ClusterError> {
    let conn = read::connect(args).await?;
    let mut snapshot = read::read(&conn, args).await?;
    for (ns, name) in names {
        let known = snapshot.objects.iter().any(|o| {
            WORKLOAD_KINDS.contains(&o.kind.as_str())
                && o.meta.name == *name
                && o.meta.namespace_or_default() == ns
        });
        if !known && let Some(pod) = conn.get_pod(ns, name).await? {
            snapshot.objects.push(pod);
        }
    }
    Ok(Inventory::from_objects(snapshot.objects, Vec::new()))
}

/// [`live_inventory`] on a runtime of its own.
pub fn live_inventory_blocking(
    args: &KubeArgs,
    names: &[(String, String)],
) -> Result<Inventory, ClusterError> {
    runtime()?.block_on(live_inventory(args, names))
}
