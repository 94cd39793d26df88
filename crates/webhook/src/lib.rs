//! kfp-mesh webhook: the HTTPS admission server around the pure KFP run-pod mutation
//! ([`kfp_mesh_kfp::mutation`]).
//!
//! Entry point for the binary: [`WebhookArgs`] (a `clap::Args`) and [`run`] /
//! [`run_async`].

pub mod admission;
pub mod cli;
pub mod conns;
pub mod metrics;
pub mod server;
#[doc(hidden)]
pub mod testing;
pub mod tls;

pub use cli::{LogFormat, WebhookArgs, run, run_async};
pub use server::{RunningServer, Settings, start};
