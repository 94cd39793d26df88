//! kfp-mesh core: Kubernetes objects, the Istio mesh semantics and connection verdicts with
//! their explanations. Pure: no IO, no async, no network; callers hand in text and get data.

pub mod connection;
pub mod duration;
pub mod explain;
pub mod inventory;
pub mod mesh;
pub mod model;
pub mod object;
pub mod par;
pub mod yaml;
