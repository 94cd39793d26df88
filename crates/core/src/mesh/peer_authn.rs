//! B: the effective PeerAuthentication mode of a workload and port.

use serde::Serialize;

use crate::explain::Decision;
use crate::inventory::{Inventory, Workload};

/// The mode a server port enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MtlsMode {
    Strict,
    Permissive,
    Disable,
}

/// B1–B6 for a sidecar workload and target (container) port: mesh, namespace, workload and
/// port-level policies, oldest wins, UNSET inherits, PERMISSIVE by default, root-namespace
/// selector policies ignored.
pub fn effective_mode(inv: &Inventory, w: &Workload, port: u16) -> Decision<MtlsMode> {
    let _ = (inv, w, port);
    todo!("peer authentication helper")
}

/// A6.2 for an ambient workload: as [`effective_mode`] but DISABLE is ignored (treated as if
/// that policy were absent) and root-namespace selector policies are skipped.
pub fn effective_mode_ambient(inv: &Inventory, w: &Workload, port: u16) -> Decision<MtlsMode> {
    let _ = (inv, w, port);
    todo!("peer authentication helper")
}

/// C3 cluster level: the namespace-level mode of `ns`, else the mesh mode, else PERMISSIVE
/// (workload policies are not considered).
pub fn namespace_mode(inv: &Inventory, ns: &str) -> Decision<MtlsMode> {
    let _ = (inv, ns);
    todo!("peer authentication helper")
}
