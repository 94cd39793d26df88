//! The HTML report: content, escaping, determinism, self-containment, folding, and a layout
//! without overlapping labels for every upstream render.

mod common;

use common::*;
use kfp_mesh_core::connection::Outcome;
use kfp_mesh_core::object::{Cited, Origin};
use kfp_mesh_kfp::check::Report;
use kfp_mesh_report::layout::Rect;

/// Every geometric promise of the layout: nodes apart, labels inside their node, regions
/// apart and holding their nodes, region titles clear of every node.
fn assert_clean_layout(name: &str, r: &Report) {
    let lay = kfp_mesh_report::map_layout(r);
    let nodes = &lay.nodes;
    assert!(!nodes.is_empty(), "{name}: no node");
    for (i, a) in nodes.iter().enumerate() {
        assert!(
            a.rect.contains(&a.label_box),
            "{name}: label {} does not fit its node",
            a.label
        );
        assert!(
            a.caption.is_empty() || a.rect.contains(&a.caption_box),
            "{name}: caption {} does not fit its node",
            a.caption
        );
        assert!(!a.label_box.overlaps(&a.caption_box), "{name}: {}", a.label);
        for b in &nodes[i + 1..] {
            assert!(
                !a.rect.overlaps(&b.rect),
                "{name}: nodes {} and {} overlap",
                a.label,
                b.label
            );
        }
        assert!(
            a.rect.x >= 0.0 && a.rect.right() <= lay.width,
            "{name}: {}",
            a.label
        );
        assert!(
            a.rect.y >= 0.0 && a.rect.bottom() <= lay.height,
            "{name}: {}",
            a.label
        );
    }
    for (i, ra) in lay.regions.iter().enumerate() {
        for rb in &lay.regions[i + 1..] {
            assert!(!ra.rect.overlaps(&rb.rect), "{name}: regions overlap");
        }
        for nd in nodes {
            assert!(
                !ra.title_box.overlaps(&nd.rect),
                "{name}: a region title overlaps node {}",
                nd.label
            );
        }
    }
    let g = kfp_mesh_report::model::build(r);
    for (nd, placed) in g.nodes.iter().zip(nodes) {
        if let Some(region) = nd.region {
            let rect: Rect = lay.regions[region].rect;
            assert!(
                rect.contains(&placed.rect),
                "{name}: {} is outside its region",
                nd.name
            );
        }
    }
    assert_eq!(lay.edges.len(), g.edges.len());
}

#[test]
fn every_upstream_render_is_laid_out_without_overlaps() {
    for (name, files) in render_sets() {
        for strict in [false, true] {
            let r = render_report(&files, strict);
            assert_clean_layout(&format!("{name} (strict: {strict})"), &r);
            let html = kfp_mesh_report::html(&r);
            let out = output_dir().join(format!(
                "{name}{}.html",
                if strict { "-strict" } else { "" }
            ));
            std::fs::write(&out, &html).unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
        }
    }
    assert_clean_layout("example", &example_report());
    assert_clean_layout("#12015", &report_12015());
    assert_clean_layout("12 profiles", &profiles_report(12));
}

#[test]
fn the_platform_render_draws_every_required_flow() {
    let files = render_sets()
        .into_iter()
        .find(|(n, _)| *n == "kubeflow-v1.10.1")
        .map(|(_, f)| f)
        .expect("kubeflow-v1.10.1 render");
    let r = render_report(&files, true);
    let g = kfp_mesh_report::model::build(&r);
    let required = r.flows.iter().filter(|f| f.required).count();
    assert_eq!(g.edges.len(), required, "one edge per required flow");
    // kube-apiserver and kubelet at the edge of the picture; the ingress gateway too (its
    // namespace holds nothing else that is drawn).
    let external: Vec<&str> = g
        .nodes
        .iter()
        .filter(|n| n.region.is_none())
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(
        external,
        vec!["istio-ingressgateway", "kube-apiserver", "kubelet"]
    );
    let lay = kfp_mesh_report::map_layout(&r);
    for (n, p) in g.nodes.iter().zip(&lay.nodes) {
        if n.region.is_none() {
            assert_eq!(p.rect.x, 0.0, "{} is not at the edge", n.name);
        }
    }
    assert!(g.nodes.len() >= 18, "{} nodes", g.nodes.len());
}

#[test]
fn the_12015_report_shows_the_reset_driver_edge_and_everything_else() {
    let r = report_12015();
    let html = kfp_mesh_report::html(&r);
    // Facts in the header.
    assert!(
        html.contains("<dt>KFP version</dt><dd>2.5.0</dd>"),
        "version"
    );
    assert!(html.contains("<dt>Mode</dt><dd>single-user</dd>"));
    assert!(html.contains("<dt>Object store</dt><dd>MinIO (minio-service:9000)</dd>"));
    assert!(html.contains("<dt>Webhook</dt><dd>cache webhook cache-server:443"));
    // The driver's upload to the object store: reset, drawn from the run pod to minio.
    let edges: Vec<&str> = html
        .lines()
        .filter(|l| l.contains("data-flow=\"driver-wait-to-object-store"))
        .collect();
    assert_eq!(edges.len(), 2, "{edges:?}");
    for e in &edges {
        assert!(e.contains("class=\"edge s-reset\""), "{e}");
        assert!(e.contains("data-outcome=\"reset\""), "{e}");
        assert!(e.contains("data-to=\"kubeflow/minio-service:9000\""), "{e}");
        assert!(e.contains("-driver-"), "{e}");
    }
    // Run pods are marked as synthesised.
    assert!(html.contains("class=\"node k-runpod\""));
    assert!(html.contains("run pod (synthesised)"));
    // Legend, access view, flow table (one row per flow), findings with documentation.
    assert!(html.contains("<div id=\"legend\""));
    for s in kfp_mesh_report::style::Style::ALL {
        assert!(html.contains(s.label()), "legend lacks {}", s.label());
    }
    assert!(html.contains("<section id=\"access\">"));
    assert!(
        html.contains("class=\"excess\""),
        "excess identities highlighted"
    );
    let rows = html.matches("<tr id=\"f").count();
    assert_eq!(rows, r.flows.len());
    assert_eq!(
        html.matches("<summary>explain</summary>").count(),
        r.flows.len()
    );
    assert!(html.contains(&format!("{}#km001", kfp_mesh_report::FINDINGS_DOC)));
    assert_eq!(
        html.matches("<tr class=\"finding\">").count(),
        r.findings.len()
    );
    for f in &r.findings {
        if let (Some(file), Some(line)) = (&f.file, f.line) {
            assert!(
                html.contains(&format!(
                    "{}:{line}",
                    file.replace('<', "&lt;").replace('>', "&gt;")
                )),
                "{file}:{line}"
            );
        }
    }
    std::fs::write(output_dir().join("12015.html"), &html).expect("write the report");
}

#[test]
fn the_report_is_deterministic() {
    let a = kfp_mesh_report::html(&report_12015());
    let b = kfp_mesh_report::html(&report_12015());
    assert!(a == b, "two renders of the same input differ");
    let r = profiles_report(12);
    assert!(kfp_mesh_report::html(&r) == kfp_mesh_report::html(&profiles_report(12)));
    assert_eq!(kfp_mesh_report::dot(&r), kfp_mesh_report::dot(&r));
}

#[test]
fn the_report_is_self_contained() {
    let html = kfp_mesh_report::html(&report_12015());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));
    for banned in [
        " src=", "<link", "@import", "<iframe", "<object", "<embed", "<img",
    ] {
        assert!(!html.contains(banned), "{banned}");
    }
    // url(...) only for the arrow markers of the map.
    for (i, _) in html.match_indices("url(") {
        assert!(html[i..].starts_with("url(#arrow-"), "{}", &html[i..i + 40]);
    }
    // Links: anchors in the page, the findings documentation, and the SVG namespace.
    for (i, _) in html.match_indices("href=\"") {
        let rest = &html[i + 6..];
        assert!(
            rest.starts_with('#') || rest.starts_with(kfp_mesh_report::FINDINGS_DOC),
            "{}",
            &rest[..rest.len().min(60)]
        );
    }
    for (i, _) in html.match_indices("://") {
        let i = html[..i].rfind(['"', ' ', '>']).map_or(0, |j| j + 1);
        let rest = &html[i..];
        assert!(
            rest.starts_with("http://www.w3.org/2000/svg")
                || rest.starts_with(kfp_mesh_report::FINDINGS_DOC),
            "{}",
            &rest[..rest.len().min(60)]
        );
    }
}

const PAYLOADS: [&str; 4] = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(2)>",
    "' onmouseover='alert(3)",
    "]]></svg><script>alert(4)</script>",
];

/// Every string of a report that reaches the output, poisoned.
fn poisoned() -> Report {
    let mut r = report_12015();
    let p = |i: usize| PAYLOADS[i % PAYLOADS.len()].to_string();
    r.kfp.version.display = p(0);
    r.kfp.namespace.value = p(1);
    r.kfp.run_service_account.value = p(2);
    for (i, f) in r.flows.iter_mut().enumerate() {
        f.id = format!("{}{}", f.id, p(i));
        f.from.workload = format!("{}{}", f.from.workload, p(i + 1));
        if let Some(ns) = &mut f.from.namespace {
            ns.push_str(&p(i + 2));
        }
        f.from.container = Some(p(i + 3));
        f.from.service_account = Some(p(i));
        f.to.namespace.push_str(&p(i + 1));
        f.to.service.push_str(&p(i + 2));
        f.why = p(i + 3);
        f.fix = Some(p(i));
        for s in &mut f.explanation {
            s.message = p(i + 1);
            for o in &mut s.objects {
                let mut object = o.object.clone();
                object.name = p(i + 2);
                *o = Cited::new(object, Origin::new(p(i + 3), o.origin.line));
            }
        }
    }
    for (i, f) in r.findings.iter_mut().enumerate() {
        f.message = p(i);
        f.file = Some(p(i + 1));
        f.flow = f.flow.as_ref().map(|_| p(i + 2));
        if let Some(o) = &mut f.object {
            o.name = p(i + 3);
            o.kind = p(i);
        }
    }
    for (i, a) in r.access.iter_mut().enumerate() {
        a.namespace = p(i);
        a.service = p(i + 1);
        a.workload = p(i + 2);
        a.allowed.push(p(i + 3));
        a.excess.push(p(i));
        a.required.push(p(i + 1));
    }
    r.unresolved.push(kfp_mesh_kfp::check::Unresolved {
        flow: p(0),
        kind: kfp_mesh_kfp::catalog::UnresolvedKind::CouldNotResolve,
        required: true,
        reason: p(1),
        object: None,
        configured: None,
    });
    r
}

#[test]
fn object_names_cannot_inject_html() {
    let r = poisoned();
    let html = kfp_mesh_report::html(&r);
    for p in PAYLOADS {
        assert!(!html.contains(p), "raw {p} in the HTML");
    }
    for raw in ["<img", "' onmouseover='", "</svg><script>", "<script>alert"] {
        assert!(!html.contains(raw), "raw {raw} in the HTML");
    }
    assert_eq!(
        html.matches("</svg>").count(),
        1 + 7 + 3,
        "the map, the legend's samples"
    );
    assert_eq!(
        html.matches("<script>").count(),
        1,
        "only the report's own script"
    );
    assert_eq!(html.matches("</script>").count(), 1);
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"));
    // DOT: every payload stays inside its quoted string.
    let dot = kfp_mesh_report::dot(&r);
    for line in dot.lines().filter(|l| !l.starts_with("//")) {
        let unescaped = line
            .char_indices()
            .filter(|&(i, c)| c == '"' && !line[..i].ends_with('\\'))
            .count();
        assert!(unescaped % 2 == 0, "unbalanced quotes: {line}");
    }
    // Mermaid: no quote, angle bracket or pipe from the input survives.
    let mermaid = kfp_mesh_report::mermaid(&r);
    for p in PAYLOADS {
        assert!(!mermaid.contains(p), "raw {p} in Mermaid");
    }
    assert!(!mermaid.contains("<script") && !mermaid.contains("<img"));
}

#[test]
fn many_profiles_fold_into_one_region() {
    let ten = profiles_report(10);
    let g = kfp_mesh_report::model::build(&ten);
    assert!(g.folded.is_empty(), "10 profiles are drawn one by one");
    assert!(g.regions.len() >= 11, "{} regions", g.regions.len());

    let r = profiles_report(12);
    let g = kfp_mesh_report::model::build(&r);
    assert_eq!(g.folded.len(), 12);
    let folded: Vec<_> = g.regions.iter().filter(|r| r.folded > 0).collect();
    assert_eq!(folded.len(), 1);
    assert_eq!(folded[0].title, "12 profile namespaces (folded)");
    let total: usize = folded[0].counts.values().sum();
    assert!(
        total >= 12 * 10,
        "{total} flows counted in the folded region"
    );
    // Same picture as one profile, with counts.
    let one_report = profiles_report(1);
    let one = kfp_mesh_report::model::build(&one_report);
    assert_eq!(g.nodes.len(), one.nodes.len());
    assert_eq!(g.edges.len(), one.edges.len());
    let html = kfp_mesh_report::html(&r);
    assert!(html.contains("12 profile namespaces (folded)"));
    assert!(html.contains("@{profile}"));
    assert!(html.contains("(×12)"));
    // The reset from the UI to each profile's artifact proxy is one edge with its count.
    assert!(
        html.lines().any(
            |l| l.contains("data-flow=\"ui-to-artifact-proxy@{profile}\"")
                && l.contains("data-count=\"12\"")
        ),
        "no folded ui-to-artifact-proxy edge"
    );
    assert!(r.flows.iter().any(|f| f.outcome != Outcome::Allow));
    std::fs::write(output_dir().join("profiles-12.html"), &html).expect("write the report");
}

#[test]
fn an_input_without_kfp_still_renders() {
    let (objects, errors) = kfp_mesh_core::inventory::parse_stream(
        "<test>",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\n",
    );
    let inv = kfp_mesh_core::inventory::Inventory::from_objects(objects, errors);
    let r = kfp_mesh_kfp::check::check(&inv, &Default::default());
    assert!(!r.kfp.detected);
    let html = kfp_mesh_report::html(&r);
    assert!(html.contains("No Kubeflow Pipelines install found"));
    assert!(html.contains("No required flow to draw."));
    assert!(kfp_mesh_report::dot(&r).ends_with("}\n"));
    assert!(kfp_mesh_report::mermaid(&r).contains("flowchart LR"));
}
