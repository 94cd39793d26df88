//! Kubernetes NetworkPolicy as the first gate (when the input has any).

use std::net::IpAddr;

use crate::explain::Decision;
use crate::inventory::{Inventory, Workload};

/// Who opens the connection, as NetworkPolicy sees it.
#[derive(Clone, Copy, Debug)]
pub enum NetPeer<'a> {
    Pod(&'a Workload),
    /// Outside the pod network (kube-apiserver, an external client), with its IP when known.
    External(Option<IpAddr>),
}

/// Whether NetworkPolicies let `from` open a TCP connection to `to` on container `port`
/// (ingress policies selecting `to`, egress policies selecting `from`).
pub fn allows(inv: &Inventory, from: NetPeer<'_>, to: &Workload, port: u16) -> Decision<bool> {
    let _ = (inv, from, to, port);
    todo!("netpol helper")
}
