//! The flow map of `kfp-mesh check`: a picture of every KFP connection under the mesh.
//!
//! Pure functions of a [`Report`]: [`html`] (one self-contained file: facts, the map as
//! inline SVG, the access view, the flow table with explanations, the findings), [`dot`]
//! (Graphviz) and [`mermaid`]. The layout is computed here ([`layout`]), deterministic, with
//! labels measured conservatively so that none overlaps another. With more than
//! [`FOLD_PROFILES_ABOVE`] profile namespaces the profiles are folded into one region.

mod graphs;
mod html;
pub mod layout;
pub mod model;
pub mod style;
pub mod text;

use kfp_mesh_kfp::check::Report;

pub use html::FINDINGS_DOC;
pub use model::FOLD_PROFILES_ABOVE;

/// The self-contained HTML report (no network access when opened).
pub fn html(report: &Report) -> String {
    html::render(report)
}

/// The flow map as a Graphviz digraph.
pub fn dot(report: &Report) -> String {
    graphs::dot(report)
}

/// The flow map as a Mermaid flowchart.
pub fn mermaid(report: &Report) -> String {
    graphs::mermaid(report)
}

/// The map's geometry, for tests and tools: regions, nodes (with their label boxes) and
/// edges, exactly as [`html`] draws them.
pub fn map_layout(report: &Report) -> layout::Layout {
    layout::layout(&model::build(report))
}
