//! The report in a real browser: headless Chromium opens the #12015 report (KFP 2.5.0,
//! `kubeflow` labelled for injection, mesh-wide STRICT) with JavaScript on and the network
//! off, and the test reads back what the page measured of itself: the driver → object-store
//! edge is drawn as reset, the legend and the tables are there, and no node label overlaps
//! another. It also leaves a screenshot in target/test-output/report/browser/flowmap.png.
//!
//! Chromium is required: `scripts/install-chromium` installs Debian's `chromium`
//! (`KFP_MESH_CHROMIUM` names another binary). Without it this test fails; it never skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("KFP_MESH_CHROMIUM") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "KFP_MESH_CHROMIUM={} is not a file",
            p.display()
        );
        return p;
    }
    let p = PathBuf::from("/usr/bin/chromium");
    assert!(
        p.is_file(),
        "\n\nheadless Chromium is required for the flow-map browser test and /usr/bin/chromium is missing.\n\
         Install it with scripts/install-chromium (apt-get install chromium), or set KFP_MESH_CHROMIUM.\n"
    );
    p
}

/// Run Chromium headless with the network off, in a fresh profile; its stdout.
fn run_chromium(dir: &Path, tag: &str, extra: &[String], url: &str) -> String {
    let profile = dir.join(format!("profile-{tag}"));
    if profile.exists() {
        std::fs::remove_dir_all(&profile)
            .unwrap_or_else(|e| panic!("cannot clear {}: {e}", profile.display()));
    }
    std::fs::create_dir_all(&profile).expect("create the Chromium profile directory");
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        // No network: every request goes to a proxy that does not exist, and no name resolves.
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--window-size=1600,1200",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium().display()));
    let started = Instant::now();
    // Read stdout/stderr on threads so a full pipe cannot block Chromium.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for Chromium") {
            break st;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("Chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        status.success(),
        "Chromium failed ({status}):\n{}",
        stderr.lines().take(30).collect::<Vec<_>>().join("\n")
    );
    stdout
}

/// The JSON the page wrote into `<pre id="layout-check">`, from the dumped DOM.
fn layout_check(dom: &str) -> Value {
    let start = dom
        .find("<pre id=\"layout-check\"")
        .and_then(|i| dom[i..].find('>').map(|j| i + j + 1))
        .unwrap_or_else(|| {
            panic!(
                "no <pre id=\"layout-check\"> in the DOM:\n{}",
                &dom[..dom.len().min(2000)]
            )
        });
    let end = dom[start..]
        .find("</pre>")
        .map(|j| start + j)
        .expect("</pre>");
    let text = dom[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&");
    assert!(
        !text.trim().is_empty(),
        "the page's script did not run (JavaScript off?)"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("layout-check is not JSON ({e}): {text}"))
}

#[derive(Debug, Clone, Copy)]
struct Box2 {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Box2 {
    fn of(v: &Value) -> Box2 {
        let n = |k: &str| {
            v.get(k)
                .and_then(Value::as_f64)
                .unwrap_or_else(|| panic!("no {k} in {v}"))
        };
        Box2 {
            x: n("x"),
            y: n("y"),
            w: n("w"),
            h: n("h"),
        }
    }
    fn overlaps(&self, o: &Box2) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }
    fn inside(&self, o: &Box2) -> bool {
        const EPS: f64 = 0.5;
        self.x >= o.x - EPS
            && self.y >= o.y - EPS
            && self.x + self.w <= o.x + o.w + EPS
            && self.y + self.h <= o.y + o.h + EPS
    }
}

#[test]
fn the_12015_report_in_a_real_browser() {
    let report = report_12015();
    let html = kfp_mesh_report::html(&report);
    let dir = output_dir().join("browser");
    std::fs::create_dir_all(&dir).expect("create the output directory");
    let page = dir.join("flowmap.html");
    std::fs::write(&page, &html).expect("write the report");
    let page = page.canonicalize().expect("canonical path");
    let url = format!("file://{}", page.display());

    let dom = run_chromium(
        &dir,
        "dom",
        &[
            "--virtual-time-budget=5000".to_string(),
            "--dump-dom".to_string(),
        ],
        &url,
    );
    std::fs::write(dir.join("flowmap.dom.html"), &dom).expect("write the DOM");
    let check = layout_check(&dom);

    // The driver's upload of its logs to the object store: reset, in red, from run pods to
    // the MinIO Service.
    let edges = check["edges"].as_array().expect("edges");
    assert_eq!(
        edges.len(),
        report.flows.iter().filter(|f| f.required).count()
    );
    let driver: Vec<&Value> = edges
        .iter()
        .filter(|e| {
            e["flow"]
                .as_str()
                .is_some_and(|f| f.starts_with("driver-wait-to-object-store"))
        })
        .collect();
    assert_eq!(driver.len(), 2, "{edges:?}");
    for e in &driver {
        assert_eq!(e["outcome"], "reset", "{e}");
        assert_eq!(e["stroke"], "rgb(209, 36, 47)", "the reset colour: {e}");
        assert_eq!(e["to"], "kubeflow/minio-service:9000", "{e}");
        assert!(
            e["from"].as_str().is_some_and(|f| f.contains("-driver-")),
            "{e}"
        );
        assert!(e["length"].as_f64().is_some_and(|l| l > 50.0), "{e}");
    }
    let mtls = edges
        .iter()
        .find(|e| e["flow"] == "api-server-to-database")
        .expect("api-server-to-database edge");
    assert_eq!(mtls["outcome"], "mtls");
    assert_eq!(mtls["stroke"], "rgb(26, 127, 55)");

    // Legend (7 outcomes + 3 node kinds), flow table, findings table.
    assert_eq!(check["legend"], 10, "legend items");
    assert_eq!(check["flowRows"], report.flows.len());
    assert_eq!(check["findingRows"], report.findings.len());
    assert_eq!(check["resources"], 0, "the page loaded something");

    // No node label overlaps another; every label and caption lies inside its own node.
    let nodes = check["nodes"].as_array().expect("nodes");
    assert!(nodes.len() >= 14, "{} nodes", nodes.len());
    let mut texts: Vec<(String, Box2)> = Vec::new();
    for n in nodes {
        let name = n["node"].as_str().unwrap_or("?").to_string();
        let node_box = Box2::of(&n["box"]);
        let label = Box2::of(&n["label"]);
        assert!(
            label.w > 10.0 && label.h > 5.0,
            "{name}: label not rendered"
        );
        assert!(
            label.inside(&node_box),
            "{name}: label {label:?} outside {node_box:?}"
        );
        texts.push((format!("{name} label"), label));
        if !n["caption"].is_null() {
            let caption = Box2::of(&n["caption"]);
            assert!(
                caption.inside(&node_box),
                "{name}: caption outside its node"
            );
            texts.push((format!("{name} caption"), caption));
        }
    }
    for r in check["regions"].as_array().expect("regions") {
        texts.push((format!("region {}", r["region"]), Box2::of(&r["box"])));
    }
    for (i, (a, ba)) in texts.iter().enumerate() {
        for (b, bb) in &texts[i + 1..] {
            assert!(!ba.overlaps(bb), "{a} {ba:?} overlaps {b} {bb:?}");
        }
    }
    assert_eq!(
        check["overlaps"],
        Value::Array(Vec::new()),
        "the page's own check"
    );

    // A screenshot, for people.
    let png = dir.join("flowmap.png");
    let _ = std::fs::remove_file(&png);
    run_chromium(
        &dir,
        "shot",
        &[format!("--screenshot={}", png.display())],
        &url,
    );
    let bytes =
        std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(bytes.len() > 20_000, "{} bytes", bytes.len());
    eprintln!("screenshot: {}", png.display());
}
