//! kfp-mesh KFP layer: what Kubeflow Pipelines puts in a cluster and on its run pods, and the
//! mutation that puts run pods into the mesh. Pure: no IO, no async.

pub mod catalog;
pub mod check;
pub mod clients;
pub mod detect;
pub mod findings;
pub mod mutation;
pub mod runpods;
