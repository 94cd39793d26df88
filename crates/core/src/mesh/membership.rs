//! A: data-plane membership of a workload (sidecar, ambient or plain) and which inbound ports
//! its sidecar intercepts (B7).

use serde::Serialize;

use crate::explain::Decision;
use crate::inventory::{Inventory, Workload};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataPlane {
    /// An `istio-proxy` sidecar (present in the input, or predicted by A1 + A2).
    Sidecar,
    /// Captured by ztunnel (A5).
    Ambient,
    /// Neither: no mesh identity, plaintext only.
    Plain,
}

/// A1 + A2 + A5: which data plane a workload gets.
pub fn data_plane(inv: &Inventory, w: &Workload) -> Decision<DataPlane> {
    let _ = (inv, w);
    todo!("membership helper")
}

/// B7: whether the sidecar intercepts inbound traffic to this container port
/// (`traffic.sidecar.istio.io/excludeInboundPorts` / `includeInboundPorts`).
pub fn intercepts_inbound(w: &Workload, port: u16) -> Decision<bool> {
    let _ = (w, port);
    todo!("membership helper")
}

/// A3: whether endpoints of this sidecar workload advertise `security.istio.io/tlsMode: istio`
/// (false when the pod template pre-sets `tlsMode: disabled`).
pub fn advertises_istio_tls(w: &Workload) -> bool {
    w.label("security.istio.io/tlsMode")
        .is_none_or(|v| v == "istio")
}
