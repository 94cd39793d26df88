//! The self-contained HTML report: facts, the flow map (inline SVG), the access view, the
//! flow table with every explanation, and the findings. No external resource of any kind.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use kfp_mesh_kfp::check::{FlowResult, Report};
use kfp_mesh_kfp::detect::{Database, ObjectStore};
use kfp_mesh_kfp::findings::{self, Severity};

use crate::layout::{self, Layout, f};
use crate::model::{self, Graph, NodeKind, PROFILE_PLACEHOLDER};
use crate::style::Style;
use crate::text::{self, html as esc};

/// Where the finding codes are documented.
pub const FINDINGS_DOC: &str = "https://github.com/kfp-mesh/kfp-mesh/blob/main/docs/findings.md";

macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

pub fn render(report: &Report) -> String {
    let g = model::build(report);
    let lay = layout::layout(&g);
    let folded: BTreeSet<&str> = g.folded.iter().map(String::as_str).collect();
    let mut out = String::with_capacity(64 * 1024);
    let title = if report.kfp.detected {
        format!(
            "kfp-mesh flow map: KFP {} in {}",
            report.kfp.version.display,
            report.kfp.kfp_namespace()
        )
    } else {
        "kfp-mesh flow map".to_string()
    };
    w!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"kfp-mesh {}\">\n<title>{}</title>\n<style>\n{}</style>\n</head>\n<body>\n",
        env!("CARGO_PKG_VERSION"),
        esc(&title),
        css()
    );
    header(&mut out, report, &g);
    out.push_str(
        "<nav><a href=\"#map\">Flow map</a> · <a href=\"#access\">Access</a> · <a href=\"#flows\">Flows</a> · <a href=\"#findings\">Findings</a></nav>\n",
    );
    map_section(&mut out, &g, &lay);
    access_section(&mut out, report, &folded);
    flows_section(&mut out, &g);
    findings_section(&mut out, report, &g, &folded);
    if !report.assumed_namespaces.is_empty() {
        out.push_str(
            "<section id=\"assumed-namespaces\">\n<h2>Namespaces not in the input</h2>\n<ul>\n",
        );
        for a in &report.assumed_namespaces {
            w!(
                out,
                "<li><code>{}</code>: {}</li>\n",
                esc(&a.namespace),
                esc(&a.assumed)
            );
        }
        out.push_str("</ul>\n</section>\n");
    }
    if !report.unresolved.is_empty() {
        out.push_str("<section id=\"unresolved\">\n<h2>Not evaluated</h2>\n<ul>\n");
        for u in &report.unresolved {
            let object = u
                .object
                .as_ref()
                .map(|o| format!(" [{o}]"))
                .unwrap_or_default();
            w!(
                out,
                "<li><code>{}</code> ({}{}): {}{}</li>\n",
                esc(&u.flow),
                esc(u.kind.as_str()),
                if u.required { ", required" } else { "" },
                esc(&u.reason),
                esc(&object)
            );
        }
        out.push_str("</ul>\n</section>\n");
    }
    out.push_str("<pre id=\"layout-check\" hidden></pre>\n<script>\n");
    out.push_str(SCRIPT);
    out.push_str("</script>\n</body>\n</html>\n");
    out
}

fn css() -> String {
    let mut s = String::from(CSS);
    for st in Style::ALL {
        w!(
            s,
            ".s-{n}{{--c:{c}}}\n.badge.s-{n}{{background:{c}}}\n",
            n = st.name(),
            c = st.color()
        );
    }
    s
}

const CSS: &str = r#"body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1f2328;margin:0;padding:0 20px 40px;background:#fff}
header{border-bottom:1px solid #d0d7de;padding:14px 0 10px}
h1{font-size:22px;margin:0 0 6px}h2{font-size:18px;margin:26px 0 8px}h3{font-size:15px;margin:16px 0 6px}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:6px 0}
dl.facts dt{font-weight:600;color:#57606a}dl.facts dd{margin:0}
.totals span{margin-right:12px}
nav{margin:10px 0;font-size:13px}
a{color:#0969da}
code,.mono{font-family:"DejaVu Sans Mono","Liberation Mono",Menlo,Consolas,monospace;font-size:12px}
.note{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;border-radius:6px}
#legend{display:flex;flex-wrap:wrap;gap:6px 18px;margin:8px 0;font-size:13px}
#legend .item{display:flex;align-items:center;gap:6px}
.map-scroll{overflow:auto;border:1px solid #d0d7de;border-radius:6px;background:#fff}
#flowmap{display:block;max-width:100%;height:auto}
#flowmap text{font-family:"DejaVu Sans Mono","Liberation Mono",Menlo,Consolas,monospace}
#flowmap .region-box{fill:#f6f8fa;stroke:#d0d7de}
#flowmap .region.folded .region-box{fill:#fbefff;stroke:#8250df;stroke-dasharray:6 3}
#flowmap .region-label{font-size:13px;font-weight:bold;fill:#57606a}
#flowmap .region-summary{font-size:11px;fill:#57606a}
#flowmap .node-box{fill:#fff;stroke:#57606a;stroke-width:1.2}
#flowmap .k-runpod .node-box{fill:#fff8e1;stroke:#9a6700;stroke-dasharray:5 3}
#flowmap .k-external .node-box{fill:#eaeef2;stroke:#6e7781}
#flowmap .node-label{font-size:12px;fill:#1f2328}
#flowmap .node-caption{font-size:10px;fill:#57606a}
#flowmap .edge{fill:none}
#flowmap a:hover .edge,#flowmap a:focus .edge{stroke-width:5}
#flowmap .edge-of-picture{stroke:#8c959f;stroke-width:1;stroke-dasharray:2 4}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
tr.target,tr:target{outline:2px solid #0969da}
.badge{display:inline-block;color:#fff;border-radius:10px;padding:0 8px;font-size:12px;white-space:nowrap}
.badge.s-mtls{color:#fff}
.sev-error{color:#d1242f;font-weight:600}.sev-warning{color:#9a6700;font-weight:600}
tr.excess td{background:#ffebe9}tr.gap td{background:#fff8c5}
td.verdict{white-space:nowrap}
details>summary{cursor:pointer;color:#0969da}
.explain{max-width:900px}
.explain ol{padding-left:22px;margin:4px 0}
.explain .by{color:#57606a;font-size:12px}
.rule{font-family:"DejaVu Sans Mono",monospace;font-size:11px;background:#eaeef2;border-radius:4px;padding:0 4px}
.controls{margin:6px 0}
"#;

const SCRIPT: &str = r#"(function () {
  'use strict';
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    if (!id) return;
    var el = document.getElementById(id);
    if (!el) return;
    var d = el.querySelector('details');
    if (d) d.open = true;
  }
  window.addEventListener('hashchange', openTarget);
  openTarget();
  var q = document.getElementById('flow-filter');
  var bad = document.getElementById('flow-problems');
  function filter() {
    var text = (q.value || '').toLowerCase();
    var rows = document.querySelectorAll('#flow-table tbody tr');
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      var show = (!text || r.getAttribute('data-search').indexOf(text) >= 0) &&
        (!bad.checked || r.getAttribute('data-ok') !== 'true');
      r.hidden = !show;
    }
  }
  if (q && bad) {
    q.addEventListener('input', filter);
    bad.addEventListener('change', filter);
  }
  // Measurements of the rendered map, for the browser test and for anyone curious.
  function box(el) {
    var b = el.getBoundingClientRect();
    return { x: b.left, y: b.top, w: b.width, h: b.height };
  }
  function overlap(a, b) {
    return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  }
  var check = { nodes: [], regions: [], edges: [], overlaps: [] };
  var texts = [];
  var nodes = document.querySelectorAll('#flowmap .node');
  for (var i = 0; i < nodes.length; i++) {
    var g = nodes[i];
    var n = { node: g.getAttribute('data-node'), box: box(g.querySelector('.node-box')) };
    var l = g.querySelector('.node-label');
    var c = g.querySelector('.node-caption');
    n.label = box(l);
    texts.push({ what: n.node + ' label', b: n.label });
    if (c) { n.caption = box(c); texts.push({ what: n.node + ' caption', b: n.caption }); }
    check.nodes.push(n);
  }
  var titles = document.querySelectorAll('#flowmap .region-label, #flowmap .region-summary');
  for (var j = 0; j < titles.length; j++) {
    var t = { region: titles[j].textContent, box: box(titles[j]) };
    check.regions.push(t);
    texts.push({ what: 'region ' + t.region, b: t.box });
  }
  for (var a = 0; a < texts.length; a++) {
    for (var b = a + 1; b < texts.length; b++) {
      if (overlap(texts[a].b, texts[b].b)) check.overlaps.push([texts[a].what, texts[b].what]);
    }
  }
  var edges = document.querySelectorAll('#flowmap path.edge');
  for (var k = 0; k < edges.length; k++) {
    var p = edges[k], s = getComputedStyle(p);
    check.edges.push({ flow: p.getAttribute('data-flow'), outcome: p.getAttribute('data-outcome'),
      from: p.getAttribute('data-from'), to: p.getAttribute('data-to'),
      stroke: s.stroke, dash: s.strokeDasharray, width: s.strokeWidth,
      length: p.getTotalLength() });
  }
  check.resources = performance.getEntriesByType('resource').length;
  check.legend = document.querySelectorAll('#legend .item').length;
  check.flowRows = document.querySelectorAll('#flow-table tbody tr').length;
  check.findingRows = document.querySelectorAll('#findings-table tbody tr').length;
  var pre = document.getElementById('layout-check');
  if (pre) pre.textContent = JSON.stringify(check);
})();
"#;

fn header(out: &mut String, report: &Report, g: &Graph<'_>) {
    let k = &report.kfp;
    out.push_str("<header id=\"facts\">\n<h1>kfp-mesh flow map</h1>\n");
    if !k.detected {
        out.push_str(
            "<p class=\"note\">No Kubeflow Pipelines install found in the input (no <code>ml-pipeline</code> Deployment or Service, no <code>pipeline-install-config</code>): only generic findings are reported.</p>\n",
        );
    } else {
        out.push_str("<dl class=\"facts\">\n");
        let mut fact = |name: &str, value: String| {
            w!(out, "<dt>{}</dt><dd>{}</dd>\n", esc(name), esc(&value));
        };
        fact("KFP version", k.version.display.clone());
        fact("Mode", k.mode.value.as_str().to_string());
        fact("Namespace", k.kfp_namespace().to_string());
        fact(
            "Object store",
            match &k.object_store {
                Some(o) => format!(
                    "{} ({}:{})",
                    match o.kind {
                        ObjectStore::Minio => "MinIO",
                        ObjectStore::Seaweedfs => "SeaweedFS",
                    },
                    o.service,
                    o.port
                ),
                None => "not found".to_string(),
            },
        );
        fact(
            "Database",
            match &k.database {
                Some(d) => format!(
                    "{} ({}:{})",
                    match d.kind {
                        Database::Mysql => "MySQL",
                        Database::Postgresql => "PostgreSQL",
                    },
                    d.service.as_deref().unwrap_or("outside the input"),
                    d.port
                ),
                None => "not found".to_string(),
            },
        );
        let mut hooks = Vec::new();
        if let Some(c) = &k.cache_webhook {
            let how = if c.configuration.is_some() {
                "MutatingWebhookConfiguration in the input"
            } else if c.created_by.is_some() {
                "created at run time by the cache-deployer"
            } else {
                "no configuration found"
            };
            hooks.push(format!(
                "cache webhook {}:{} ({how}{})",
                c.service,
                c.port,
                c.failure_policy
                    .as_deref()
                    .map(|p| format!(", failurePolicy {p}"))
                    .unwrap_or_default()
            ));
        }
        if let Some(n) = &k.k8s_native {
            hooks.push(format!(
                "PipelineVersion webhooks {}:{} ({} configurations{})",
                n.service,
                n.port,
                n.configurations.len(),
                n.failure_policy
                    .as_deref()
                    .map(|p| format!(", failurePolicy {p}"))
                    .unwrap_or_default()
            ));
        }
        fact(
            "Webhook",
            if hooks.is_empty() {
                "none".to_string()
            } else {
                hooks.join("; ")
            },
        );
        if let Some(gw) = &k.ingress_gateway {
            fact(
                "Ingress gateway",
                format!("{}/{}", gw.namespace, gw.workload),
            );
        }
        if k.mode.value.is_multi_user() {
            let names: Vec<&str> = k.profiles.iter().map(|p| p.name.as_str()).collect();
            let shown = if names.len() <= 5 {
                names.join(", ")
            } else {
                format!("{}, …", names[..5].join(", "))
            };
            let modelled = if k.profiles.iter().any(|p| p.synthetic) {
                " (modelled: none in the input)"
            } else {
                ""
            };
            fact("Profiles", format!("{}: {shown}{modelled}", names.len()));
        }
        fact(
            "Run pods' service account",
            k.run_service_account.value.clone(),
        );
        out.push_str("</dl>\n");
    }
    // Totals.
    let mut by_style: BTreeMap<Style, usize> = BTreeMap::new();
    let mut required = 0;
    for fl in &report.flows {
        if fl.required {
            required += 1;
            *by_style
                .entry(Style::of(fl.outcome, fl.transport))
                .or_insert(0) += 1;
        }
    }
    let errors = report
        .findings
        .iter()
        .filter(|x| x.severity == Severity::Error)
        .count();
    w!(
        out,
        "<p class=\"totals\"><span><b>{}</b> flows ({} required)</span>",
        report.flows.len(),
        required
    );
    for (s, c) in by_style.iter().rev() {
        w!(
            out,
            "<span><span class=\"badge s-{}\">{}</span> {c}</span>",
            s.name(),
            esc(s.label())
        );
    }
    w!(
        out,
        "<span><b>{}</b> findings: {} errors, {} warnings{}</span></p>\n",
        report.findings.len(),
        errors,
        report.findings.len() - errors,
        if report.suppressed > 0 {
            format!(", {} suppressed", report.suppressed)
        } else {
            String::new()
        }
    );
    if !g.folded.is_empty() {
        w!(
            out,
            "<p class=\"note\">Summarised map: the {} profile namespaces are folded into one region, and the table groups their flows and findings (one row per flow and outcome, with the count and the namespaces).</p>\n",
            g.folded.len()
        );
    }
    out.push_str("</header>\n");
}

fn map_section(out: &mut String, g: &Graph<'_>, lay: &Layout) {
    out.push_str("<section id=\"map\">\n<h2>Flow map</h2>\n");
    out.push_str("<div id=\"legend\" role=\"list\" aria-label=\"legend\">\n");
    let mut counts: BTreeMap<Style, usize> = BTreeMap::new();
    for e in &g.edges {
        for (s, c) in &e.counts {
            *counts.entry(*s).or_insert(0) += c;
        }
    }
    for s in Style::ALL {
        w!(
            out,
            "<span class=\"item\" role=\"listitem\" title=\"{}\"><svg width=\"46\" height=\"12\" aria-hidden=\"true\"><line x1=\"2\" y1=\"6\" x2=\"44\" y2=\"6\" stroke=\"{}\" stroke-width=\"{}\"{}/></svg>{} <small>({})</small></span>\n",
            esc(s.describe()),
            s.color(),
            s.width(),
            s.dash()
                .map(|d| format!(" stroke-dasharray=\"{d}\""))
                .unwrap_or_default(),
            esc(s.label()),
            counts.get(&s).copied().unwrap_or(0)
        );
    }
    out.push_str(
        "<span class=\"item\" role=\"listitem\"><svg width=\"30\" height=\"16\" aria-hidden=\"true\"><rect x=\"1\" y=\"1\" width=\"28\" height=\"14\" rx=\"4\" fill=\"#fff\" stroke=\"#57606a\"/></svg>workload</span>\n\
         <span class=\"item\" role=\"listitem\"><svg width=\"30\" height=\"16\" aria-hidden=\"true\"><rect x=\"1\" y=\"1\" width=\"28\" height=\"14\" rx=\"4\" fill=\"#fff8e1\" stroke=\"#9a6700\" stroke-dasharray=\"5 3\"/></svg>run pod (synthesised by kfp-mesh)</span>\n\
         <span class=\"item\" role=\"listitem\"><svg width=\"30\" height=\"16\" aria-hidden=\"true\"><rect x=\"1\" y=\"1\" width=\"28\" height=\"14\" rx=\"4\" fill=\"#eaeef2\" stroke=\"#6e7781\"/></svg>caller outside the mesh (left edge)</span>\n</div>\n",
    );
    if g.edges.is_empty() {
        out.push_str("<p>No required flow to draw.</p>\n");
    }
    out.push_str("<p><small>One edge per required flow (optional flows are in the table). Click an edge for its row and explanation.</small></p>\n");
    out.push_str("<div class=\"map-scroll\">\n");
    svg(out, g, lay);
    out.push_str("</div>\n</section>\n");
}

fn svg(out: &mut String, g: &Graph<'_>, lay: &Layout) {
    w!(
        out,
        "<svg id=\"flowmap\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"flow map\">\n<defs>\n",
        w = f(lay.width),
        h = f(lay.height)
    );
    for s in Style::ALL {
        w!(
            out,
            "<marker id=\"arrow-{}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" markerUnits=\"userSpaceOnUse\" orient=\"auto\"><path d=\"M0 0L10 5L0 10z\" fill=\"{}\"/></marker>\n",
            s.name(),
            s.color()
        );
    }
    out.push_str("</defs>\n<g class=\"regions\">\n");
    for (region, placed) in g.regions.iter().zip(&lay.regions) {
        let r = placed.rect;
        w!(
            out,
            "<g class=\"region{}\" data-region=\"{}\"><rect class=\"region-box\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"8\"/><text class=\"region-label\" x=\"{}\" y=\"{}\">{}</text>",
            if region.folded > 0 { " folded" } else { "" },
            esc(&region_name(&region.key)),
            f(r.x),
            f(r.y),
            f(r.w),
            f(r.h),
            f(placed.title_at.0),
            f(placed.title_at.1),
            esc(&region.title)
        );
        if let Some((x, y)) = placed.summary_at {
            w!(
                out,
                "<text class=\"region-summary\" x=\"{}\" y=\"{}\">{}</text>",
                f(x),
                f(y),
                esc(&layout::summary(region))
            );
        }
        out.push_str("</g>\n");
    }
    out.push_str("</g>\n");
    if g.nodes.iter().any(|n| n.kind == NodeKind::External) {
        w!(
            out,
            "<line class=\"edge-of-picture\" x1=\"0.5\" y1=\"0\" x2=\"0.5\" y2=\"{}\"/>\n",
            f(lay.height)
        );
    }
    out.push_str("<g class=\"edges\">\n");
    for (k, (e, placed)) in g.edges.iter().zip(&lay.edges).enumerate() {
        let report = g.report;
        let first = e
            .rows
            .first()
            .and_then(|&r| g.rows.get(r))
            .and_then(|r| r.flows.first())
            .and_then(|&i| report.flows.get(i));
        let Some(fl) = first else {
            continue;
        };
        let from = node_ref(g, e.from);
        let to = format!(
            "{}/{}:{}",
            if g.folded.contains(&fl.to.namespace) {
                PROFILE_PLACEHOLDER
            } else {
                fl.to.namespace.as_str()
            },
            fl.to.service,
            fl.to.port
        );
        let counts: Vec<String> = e
            .counts
            .iter()
            .rev()
            .map(|(s, c)| format!("{} {c}", s.name()))
            .collect();
        let mut tip = format!("{}: {from} → {to}: {}", e.id, counts.join(", "));
        if let Some(c) = &fl.from.container {
            tip.push_str(&format!(" (container {c})"));
        }
        let anchor = e.rows.first().map(|r| format!("f{r}")).unwrap_or_default();
        w!(
            out,
            "<a href=\"#{anchor}\"><path id=\"e{k}\" class=\"edge s-{n}\" d=\"{d}\" stroke=\"{c}\" stroke-width=\"{wd}\"{dash} marker-end=\"url(#arrow-{n})\" data-flow=\"{id}\" data-outcome=\"{n}\" data-from=\"{from}\" data-to=\"{to}\" data-count=\"{total}\"><title>{tip}</title></path></a>\n",
            n = e.style.name(),
            d = placed.d,
            c = e.style.color(),
            wd = e.style.width(),
            dash = e
                .style
                .dash()
                .map(|d| format!(" stroke-dasharray=\"{d}\""))
                .unwrap_or_default(),
            id = esc(&e.id),
            from = esc(&from),
            to = esc(&to),
            total = e.total(),
            tip = esc(&tip),
        );
    }
    out.push_str("</g>\n<g class=\"nodes\">\n");
    for (i, (n, p)) in g.nodes.iter().zip(&lay.nodes).enumerate() {
        let kind = match n.kind {
            NodeKind::Workload => "k-workload",
            NodeKind::RunPod => "k-runpod",
            NodeKind::External => "k-external",
        };
        let mut tip = node_ref(g, i);
        if !n.services.is_empty() {
            let list: Vec<&str> = n.services.iter().map(String::as_str).collect();
            tip.push_str(&format!("\nServices: {}", list.join(", ")));
        }
        if !n.service_accounts.is_empty() {
            let list: Vec<&str> = n.service_accounts.iter().map(String::as_str).collect();
            tip.push_str(&format!("\nService account: {}", list.join(", ")));
        }
        if n.kind == NodeKind::RunPod {
            tip.push_str("\nA run pod kfp-mesh models: it exists only while a run executes.");
        }
        if !n.profiles.is_empty() {
            tip.push_str(&format!("\nIn {} profile namespaces", n.profiles.len()));
        }
        let r = p.rect;
        // Callers outside the mesh are attached to the left edge of the picture.
        let (x, wd) = if n.kind == NodeKind::External {
            (r.x - 8.0, r.w + 8.0)
        } else {
            (r.x, r.w)
        };
        w!(
            out,
            "<g class=\"node {kind}\" id=\"n{i}\" data-node=\"{key}\"><title>{tip}</title><rect class=\"node-box\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"6\"/><text class=\"node-label\" x=\"{}\" y=\"{}\">{}</text>",
            f(x),
            f(r.y),
            f(wd),
            f(r.h),
            f(p.label_at.0),
            f(p.label_at.1),
            esc(&p.label),
            key = esc(&node_ref(g, i)),
            tip = esc(&tip),
        );
        if !p.caption.is_empty() {
            w!(
                out,
                "<text class=\"node-caption\" x=\"{}\" y=\"{}\">{}</text>",
                f(p.caption_at.0),
                f(p.caption_at.1),
                esc(&p.caption)
            );
        }
        out.push_str("</g>\n");
    }
    out.push_str("</g>\n</svg>\n");
}

fn region_name(k: &model::RegionKey) -> String {
    match k {
        model::RegionKey::Namespace(ns) => ns.clone(),
        model::RegionKey::Profiles => "{profiles}".to_string(),
    }
}

/// `namespace/name`, `{profile}/name`, or the name of an outside caller.
pub fn node_ref(g: &Graph<'_>, i: usize) -> String {
    match g.nodes.get(i) {
        Some(n) => match &n.key {
            model::NodeKey::External(name) => name.clone(),
            model::NodeKey::Internal { region, name } => match region {
                model::RegionKey::Namespace(ns) => format!("{ns}/{name}"),
                model::RegionKey::Profiles => format!("{PROFILE_PLACEHOLDER}/{name}"),
            },
        },
        None => String::new(),
    }
}

fn allowed_via(allowed: &[String], identity: &str) -> Option<String> {
    if allowed.iter().any(|a| a == identity) {
        return Some("yes".to_string());
    }
    for wide in ["anyone", "any-plaintext"] {
        if allowed.iter().any(|a| a == wide) {
            return Some(format!("via {wide}"));
        }
    }
    let principal = identity.contains("/ns/") && identity.contains("/sa/");
    if principal {
        for wide in ["any-authenticated", "any-mesh-identity"] {
            if allowed.iter().any(|a| a == wide) {
                return Some(format!("via {wide}"));
            }
        }
        for a in allowed {
            if let Some(ns) = a.strip_prefix("ns:")
                && identity.contains(&format!("/ns/{ns}/sa/"))
            {
                return Some(format!("via {a}"));
            }
            // A principal pattern (`*/sa/default-editor`, `cluster.local/ns/team-*`).
            if a.contains('*')
                && !a.starts_with("ns:")
                && kfp_mesh_core::mesh::authz::principal_pattern_matches(a, identity)
            {
                return Some(format!("via {a}"));
            }
        }
    }
    None
}

fn access_section(out: &mut String, report: &Report, folded: &BTreeSet<&str>) {
    out.push_str("<section id=\"access\">\n<h2>Who can reach each KFP server</h2>\n");
    if report.access.is_empty() {
        out.push_str("<p>No KFP server with a sidecar in the input: the ALLOW policies have nothing to enforce.</p>\n</section>\n");
        return;
    }
    out.push_str("<p><small>For each KFP server with a sidecar: the identities its ALLOW policies admit and the callers the flow catalog needs. <b>Excess</b> rows are identities no KFP flow needs (least-privilege gaps); <b>not allowed</b> rows are needed callers the policies refuse.</small></p>\n");
    for a in &report.access {
        w!(
            out,
            "<h3 id=\"access-{}-{}\">{}/{} <small>(workload {})</small></h3>\n<table class=\"access\">\n<thead><tr><th>Identity</th><th>Allowed</th><th>Required</th><th>Verdict</th></tr></thead>\n<tbody>\n",
            esc(&a.namespace),
            esc(&a.service),
            esc(&a.namespace),
            esc(&a.service),
            esc(&a.workload)
        );
        // identity (profiles folded) → (allowed via, required, excess, count)
        let mut rows: BTreeMap<String, (Option<String>, bool, bool, usize)> = BTreeMap::new();
        let excess: BTreeSet<&str> = a.excess.iter().map(String::as_str).collect();
        let ids: BTreeSet<&str> = a
            .allowed
            .iter()
            .chain(&a.required)
            .map(String::as_str)
            .collect();
        for id in ids {
            let (shown, _) = text::fold_profiles(id, folded, PROFILE_PLACEHOLDER);
            let entry = rows
                .entry(shown.into_owned())
                .or_insert((None, false, false, 0));
            entry.3 += 1;
            if entry.0.is_none() {
                entry.0 = allowed_via(&a.allowed, id);
            }
            entry.1 |= a.required.iter().any(|r| r == id);
            entry.2 |= excess.contains(id);
        }
        for (id, (allowed, required, is_excess, count)) in rows {
            let (class, verdict) = if is_excess {
                ("excess", "excess: no KFP flow needs it")
            } else if required && allowed.is_none() {
                ("gap", "needed, not allowed")
            } else if required {
                ("ok", "needed")
            } else {
                ("ok", "")
            };
            let shown = if count > 1 {
                format!("{id} (×{count})")
            } else {
                id
            };
            w!(
                out,
                "<tr class=\"{class}\"><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td class=\"verdict\">{}</td></tr>\n",
                esc(&shown),
                esc(allowed.as_deref().unwrap_or("no")),
                if required { "yes" } else { "no" },
                esc(verdict)
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n");
}

fn endpoint_from(fl: &FlowResult) -> String {
    let mut s = fl.from.qualified().into_owned();
    if let Some(c) = &fl.from.container {
        s.push_str(&format!(" [{c}]"));
    }
    s
}

fn flows_section(out: &mut String, g: &Graph<'_>) {
    let report = g.report;
    let folded: BTreeSet<&str> = g.folded.iter().map(String::as_str).collect();
    out.push_str("<section id=\"flows\">\n<h2>Flows</h2>\n");
    out.push_str("<div class=\"controls\"><label>Filter <input id=\"flow-filter\" type=\"search\" placeholder=\"flow, workload, outcome\"></label> <label><input id=\"flow-problems\" type=\"checkbox\"> only problems</label></div>\n");
    out.push_str("<table id=\"flow-table\">\n<thead><tr><th>Flow</th><th>From</th><th>To</th><th>Protocol</th><th>Required</th><th>Outcome</th><th>Transport</th><th>Findings</th><th>Explanation</th></tr></thead>\n<tbody>\n");
    for (r, row) in g.rows.iter().enumerate() {
        let Some(fl) = row.flows.first().and_then(|&i| report.flows.get(i)) else {
            continue;
        };
        let from = text::fold_profiles(&endpoint_from(fl), &folded, PROFILE_PLACEHOLDER)
            .0
            .into_owned();
        let to = text::fold_profiles(
            &format!("{}/{}:{}", fl.to.namespace, fl.to.service, fl.to.port),
            &folded,
            PROFILE_PLACEHOLDER,
        )
        .0
        .into_owned();
        let transport = match fl.transport {
            Some(kfp_mesh_core::connection::Transport::Mtls) => "mTLS",
            Some(kfp_mesh_core::connection::Transport::Plaintext) => "plaintext",
            None => "-",
        };
        let search = format!(
            "{} {} {} {} {}",
            row.id,
            from,
            to,
            fl.outcome,
            row.style.name()
        )
        .to_lowercase();
        w!(
            out,
            "<tr id=\"f{r}\" data-ok=\"{}\" data-search=\"{}\"><td class=\"mono\">{}{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td><span class=\"badge s-{}\">{}</span></td><td>{}</td><td>",
            row.style.ok(),
            esc(&search),
            esc(&row.id),
            if row.flows.len() > 1 {
                format!(" <small>(×{})</small>", row.flows.len())
            } else {
                String::new()
            },
            esc(&from),
            esc(&to),
            esc(fl.protocol),
            if fl.required { "yes" } else { "no" },
            row.style.name(),
            esc(fl.outcome.as_str()),
            transport
        );
        for (n, code) in fl.findings.iter().enumerate() {
            if n > 0 {
                out.push(' ');
            }
            w!(
                out,
                "<a href=\"{FINDINGS_DOC}#{}\">{}</a>",
                esc(&code.as_str().to_lowercase()),
                esc(code.as_str())
            );
        }
        out.push_str("</td><td>");
        explanation(out, fl, row);
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn explanation(out: &mut String, fl: &FlowResult, row: &model::Row) {
    out.push_str("<details><summary>explain</summary><div class=\"explain\">");
    if row.flows.len() > 1 {
        w!(
            out,
            "<p>The same flow in {} profile namespaces, all with this outcome; the explanation below is for <code>{}</code>.</p><details><summary>the namespaces</summary><p class=\"mono\">{}</p></details>",
            row.profiles.len(),
            esc(&fl.id),
            esc(&row.profiles.join(", "))
        );
    }
    w!(out, "<p><b>Why KFP needs it:</b> {}</p>", esc(&fl.why));
    w!(
        out,
        "<p><b>Outcome:</b> {}: {}</p>",
        esc(fl.outcome.as_str()),
        esc(fl.outcome.symptom())
    );
    if let Some(fix) = &fl.fix {
        w!(out, "<p><b>Fix:</b> {}</p>", esc(fix));
    }
    out.push_str("<ol>");
    for s in &fl.explanation {
        w!(
            out,
            "<li><span class=\"rule\">{}</span> {}",
            esc(s.rule),
            esc(&s.message)
        );
        for o in &s.objects {
            w!(out, "<div class=\"by\">by {}</div>", esc(&o.to_string()));
        }
        out.push_str("</li>");
    }
    out.push_str("</ol></div></details>");
}

fn findings_section(out: &mut String, report: &Report, g: &Graph<'_>, folded: &BTreeSet<&str>) {
    out.push_str("<section id=\"findings\">\n<h2>Findings</h2>\n");
    if report.findings.is_empty() {
        out.push_str("<p>No findings.</p>\n");
    }
    // Row of each flow instance, to link findings to the table.
    let mut row_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (r, row) in g.rows.iter().enumerate() {
        for &i in &row.flows {
            if let Some(fl) = report.flows.get(i) {
                row_of.insert(fl.id.as_str(), r);
            }
        }
    }
    // Group findings that differ only by a folded profile name.
    struct Group<'a> {
        finding: &'a findings::Finding,
        message: String,
        profiles: BTreeSet<String>,
        count: usize,
    }
    let mut groups: Vec<Group<'_>> = Vec::new();
    let mut index: BTreeMap<(&str, String, String), usize> = BTreeMap::new();
    for fd in &report.findings {
        let (message, found) = text::fold_profiles(&fd.message, folded, PROFILE_PLACEHOLDER);
        if found.is_empty() {
            groups.push(Group {
                finding: fd,
                message: fd.message.clone(),
                profiles: BTreeSet::new(),
                count: 1,
            });
            continue;
        }
        let place = format!(
            "{}|{}|{}",
            fd.object
                .as_ref()
                .map(|o| o.to_string())
                .unwrap_or_default(),
            fd.file.as_deref().unwrap_or(""),
            fd.line.unwrap_or(0)
        );
        let key = (fd.code.as_str(), message.into_owned(), place);
        match index.get(&key) {
            Some(&k) => {
                if let Some(gr) = groups.get_mut(k) {
                    gr.count += 1;
                    gr.profiles.extend(found);
                }
            }
            None => {
                index.insert(key.clone(), groups.len());
                groups.push(Group {
                    finding: fd,
                    message: key.1,
                    profiles: found.into_iter().collect(),
                    count: 1,
                });
            }
        }
    }
    if !report.findings.is_empty() {
        out.push_str("<table id=\"findings-table\">\n<thead><tr><th>Code</th><th>Severity</th><th>Object</th><th>File:line</th><th>Message</th><th>Flow</th></tr></thead>\n<tbody>\n");
    }
    for gr in &groups {
        let fd = gr.finding;
        let summary = findings::kind(fd.code.as_str())
            .map(|k| k.summary.as_str())
            .unwrap_or("");
        let place = match (&fd.file, fd.line) {
            (Some(file), Some(line)) => format!("{file}:{line}"),
            (Some(file), None) => file.clone(),
            _ => String::new(),
        };
        let mut message = esc(&gr.message);
        if gr.count > 1 {
            message.push_str(&format!(
                " <small>(×{} in {} profile namespaces)</small>",
                gr.count,
                gr.profiles.len()
            ));
        }
        let flow = match fd.flow.as_deref() {
            Some(id) => match row_of.get(id) {
                Some(r) => format!(
                    "<a href=\"#f{r}\">{}</a>",
                    esc(g.rows.get(*r).map_or(id, |row| row.id.as_str()))
                ),
                None => esc(id),
            },
            None => String::new(),
        };
        w!(
            out,
            "<tr class=\"finding\"><td><a href=\"{FINDINGS_DOC}#{}\" title=\"{}\">{}</a></td><td class=\"sev-{}\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td><td class=\"mono\">{}</td></tr>\n",
            esc(&fd.code.as_str().to_lowercase()),
            esc(summary),
            esc(fd.code.as_str()),
            fd.severity.as_str(),
            fd.severity.as_str(),
            esc(&fd
                .object
                .as_ref()
                .map(|o| o.to_string())
                .unwrap_or_default()),
            esc(&place),
            message,
            flow
        );
    }
    if !report.findings.is_empty() {
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::allowed_via;

    #[test]
    fn allowed_via_knows_every_kind_of_entry() {
        let allowed = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let runner = "cluster.local/ns/team-a/sa/default-editor";
        let cases: &[(&[&str], Option<&str>)] = &[
            (&[runner], Some("yes")),
            (&["anyone"], Some("via anyone")),
            (&["any-authenticated"], Some("via any-authenticated")),
            (&["ns:team-a"], Some("via ns:team-a")),
            (&["ns:team-b"], None),
            (&["*/sa/default-editor"], Some("via */sa/default-editor")),
            (
                &["cluster.local/ns/team-*"],
                Some("via cluster.local/ns/team-*"),
            ),
            (&["*/sa/default-viewer"], None),
            (&["cluster.local/ns/kubeflow/sa/ml-pipeline"], None),
        ];
        for (entries, want) in cases {
            assert_eq!(
                allowed_via(&allowed(entries), runner).as_deref(),
                *want,
                "{entries:?}"
            );
        }
    }
}
