//! Istio mesh semantics, as pure functions over the [`crate::inventory::Inventory`].
//! `../shared/istio-semantics.md` is the specification; each step of an explanation names
//! the rule it applied.

pub mod authz;
pub mod client_tls;
pub mod membership;
pub mod netpol;
pub mod peer_authn;
pub mod protocol;
pub mod validation;
pub mod waypoint;
