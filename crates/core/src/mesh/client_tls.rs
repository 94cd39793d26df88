//! C: what a client sidecar sends toward a service endpoint (DestinationRule TLS, auto mTLS,
//! Sidecar egress scoping).

use serde::Serialize;

use crate::explain::Decision;
use crate::inventory::{Inventory, Service, Workload};

/// What the client sidecar originates on the connection to one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientTls {
    /// Istio mTLS with the client's SPIFFE identity.
    IstioMutual,
    /// Plaintext (the application's own bytes, TLS included, pass through unchanged).
    Plaintext,
    /// One-way TLS originated by the sidecar (DR `SIMPLE`).
    Simple,
    /// mTLS with user certificates (DR `MUTUAL`); never an Istio identity.
    Mutual,
    /// The service is outside the client's `Sidecar` egress scope and the outbound policy is
    /// `REGISTRY_ONLY`: the sidecar answers 502 itself (BlackHoleCluster).
    BlackHole,
}

/// Where the connection goes: a Service port (by its `port`), or a pod IP and container port.
#[derive(Clone, Copy, Debug)]
pub enum Destination<'a> {
    Service {
        service: &'a Service,
        service_port: u16,
    },
    PodIp,
}

/// C1–C5 for a client sidecar workload, destination and one endpoint (`endpoint` with its
/// target port; `endpoint_has_sidecar` and the endpoint's effective PA mode come from the
/// caller so this function stays about the client side).
pub fn client_tls(
    inv: &Inventory,
    client: &Workload,
    destination: Destination<'_>,
    endpoint: &Workload,
    target_port: u16,
) -> Decision<ClientTls> {
    let _ = (inv, client, destination, endpoint, target_port);
    todo!("client tls helper")
}
