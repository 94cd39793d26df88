//! The flow map as Graphviz DOT and as Mermaid, for people who put it in their own docs.
//! Same graph as the HTML map (folded profiles included); stable output.

use std::fmt::Write as _;

use kfp_mesh_kfp::check::Report;

use crate::model::{self, Graph, NodeKind};
use crate::style::Style;
use crate::text;

macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

fn headline(report: &Report) -> String {
    let k = &report.kfp;
    if k.detected {
        format!(
            "KFP {} ({}) in {}",
            k.version.display,
            k.mode.value.as_str(),
            k.kfp_namespace()
        )
    } else {
        "no Kubeflow Pipelines install found".to_string()
    }
}

fn edge_label(e: &model::Edge) -> String {
    let counts: Vec<String> = e
        .counts
        .iter()
        .rev()
        .map(|(s, c)| {
            if e.total() > 1 {
                format!("{} {c}", s.name())
            } else {
                s.name().to_string()
            }
        })
        .collect();
    format!("{}\n{}", e.id, counts.join(", "))
}

fn legend_comment(prefix: &str) -> String {
    let mut s = String::new();
    for st in Style::ALL {
        w!(
            s,
            "{prefix} {}: {} {}\n",
            st.name(),
            st.color(),
            st.dash()
                .map_or("solid".to_string(), |d| format!("dash {d}"))
        );
    }
    s
}

pub fn dot(report: &Report) -> String {
    let g = model::build(report);
    let mut out = String::new();
    w!(
        out,
        "// kfp-mesh flow map: {}\n// One edge per required flow, styled by outcome:\n{}// Render: dot -Tsvg flowmap.dot > flowmap.svg\n",
        text::dot(&headline(report)).replace('\n', " "),
        legend_comment("//")
    );
    out.push_str("digraph \"kfp-mesh\" {\n  graph [rankdir=LR, fontname=\"Helvetica\", fontsize=11, nodesep=0.3, ranksep=1.1];\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", color=\"#57606a\", fontname=\"monospace\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=9];\n");
    let node_line = |out: &mut String, g: &Graph<'_>, i: usize, indent: &str| {
        let Some(n) = g.nodes.get(i) else {
            return;
        };
        let caption = n.caption();
        let label = if caption.is_empty() {
            n.name.clone()
        } else {
            format!("{}\n{}", n.name, caption)
        };
        let style = match n.kind {
            NodeKind::Workload => String::new(),
            NodeKind::RunPod => {
                ", style=\"rounded,filled,dashed\", fillcolor=\"#fff8e1\", color=\"#9a6700\""
                    .to_string()
            }
            NodeKind::External => {
                ", shape=cds, style=\"filled\", fillcolor=\"#eaeef2\", color=\"#6e7781\""
                    .to_string()
            }
        };
        w!(
            out,
            "{indent}n{i} [label=\"{}\"{style}];\n",
            text::dot(&label)
        );
    };
    for (i, n) in g.nodes.iter().enumerate() {
        if n.region.is_none() {
            node_line(&mut out, &g, i, "  ");
        }
    }
    for (r, region) in g.regions.iter().enumerate() {
        w!(
            out,
            "  subgraph cluster_{r} {{\n    label=\"{}\";\n    style=\"rounded,filled{}\"; fillcolor=\"{}\"; color=\"{}\";\n",
            text::dot(&if region.folded > 0 {
                format!("{}\n{}", region.title, crate::layout::summary(region))
            } else {
                region.title.clone()
            }),
            if region.folded > 0 { ",dashed" } else { "" },
            if region.folded > 0 {
                "#fbefff"
            } else {
                "#f6f8fa"
            },
            if region.folded > 0 {
                "#8250df"
            } else {
                "#d0d7de"
            },
        );
        for (i, n) in g.nodes.iter().enumerate() {
            if n.region == Some(r) {
                node_line(&mut out, &g, i, "    ");
            }
        }
        out.push_str("  }\n");
    }
    for e in &g.edges {
        let s = e.style;
        w!(
            out,
            "  n{} -> n{} [label=\"{}\", color=\"{}\", fontcolor=\"{}\", style={}, penwidth={}];\n",
            e.from,
            e.to,
            text::dot(&edge_label(e)),
            s.color(),
            s.color(),
            s.dot_style(),
            s.width()
        );
    }
    out.push_str("}\n");
    out
}

pub fn mermaid(report: &Report) -> String {
    let g = model::build(report);
    let mut out = String::new();
    w!(
        out,
        "%% kfp-mesh flow map: {}\n%% One edge per required flow, styled by outcome:\n{}flowchart LR\n",
        text::mermaid(&headline(report)).replace("<br/>", " "),
        legend_comment("%%")
    );
    let node_line = |out: &mut String, g: &Graph<'_>, i: usize, indent: &str| {
        let Some(n) = g.nodes.get(i) else {
            return;
        };
        let caption = n.caption();
        let mut label = text::mermaid(&n.name);
        if !caption.is_empty() {
            label.push_str("<br/><small>");
            label.push_str(&text::mermaid(&caption));
            label.push_str("</small>");
        }
        let (open, close) = match n.kind {
            NodeKind::External => ("([\"", "\"])"),
            _ => ("[\"", "\"]"),
        };
        w!(out, "{indent}n{i}{open}{label}{close}\n");
    };
    for (i, n) in g.nodes.iter().enumerate() {
        if n.region.is_none() {
            node_line(&mut out, &g, i, "  ");
        }
    }
    for (r, region) in g.regions.iter().enumerate() {
        let mut title = text::mermaid(&region.title);
        if region.folded > 0 {
            title.push_str("<br/>");
            title.push_str(&text::mermaid(&crate::layout::summary(region)));
        }
        w!(out, "  subgraph r{r}[\"{title}\"]\n");
        for (i, n) in g.nodes.iter().enumerate() {
            if n.region == Some(r) {
                node_line(&mut out, &g, i, "    ");
            }
        }
        out.push_str("  end\n");
    }
    for e in &g.edges {
        let label = edge_label(e).replacen('\n', ": ", 1);
        w!(
            out,
            "  n{} -->|\"{}\"| n{}\n",
            e.from,
            text::mermaid(&label),
            e.to
        );
    }
    for (k, e) in g.edges.iter().enumerate() {
        let s = e.style;
        w!(
            out,
            "  linkStyle {k} stroke:{},stroke-width:{}px{}\n",
            s.color(),
            s.width(),
            s.dash()
                .map(|d| format!(",stroke-dasharray:{d}"))
                .unwrap_or_default()
        );
    }
    out.push_str("  classDef runpod fill:#fff8e1,stroke:#9a6700,stroke-dasharray:5 3\n  classDef external fill:#eaeef2,stroke:#6e7781\n");
    for (class, kind) in [
        ("runpod", NodeKind::RunPod),
        ("external", NodeKind::External),
    ] {
        let ids: Vec<String> = g
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.kind == kind)
            .map(|(i, _)| format!("n{i}"))
            .collect();
        if !ids.is_empty() {
            w!(out, "  class {} {class}\n", ids.join(","));
        }
    }
    out
}
