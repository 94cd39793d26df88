//! The Envoy mesh-in-a-box harness: certificates, echo applications, Envoy processes, and
//! worlds of probes whose predictions are checked against a real proxy.
#![allow(dead_code)]

pub mod apps;
pub mod pki;
pub mod proxy;
pub mod waypoint;
pub mod world;
