//! `kfp-mesh check`: every KFP flow predicted from manifests, with findings and an exit code.

use std::io::IsTerminal;
use std::io::Write;

use anyhow::{Context, Result};
use kfp_mesh_core::connection::{Outcome, Transport};
use kfp_mesh_kfp::check::{self, CheckOptions, Explanations, Report, Suppression};
use kfp_mesh_kfp::detect::DetectOptions;
use kfp_mesh_kfp::findings::{self, Severity};

use crate::ExitCode;
use crate::input::{self, InputArgs};

/// The built-in example: a miniature KFP 2.5.0 single-user install under mesh-wide STRICT.
pub const EXAMPLE: &str = include_str!("../../../examples/kfp-2.5.0-single-user/strict.yaml");
const EXAMPLE_NAME: &str = "<example: kfp-2.5.0-single-user/strict.yaml>";
/// The same install with the kfp-mesh components (`kubectl kustomize
/// examples/kfp-2.5.0-single-user`).
pub const EXAMPLE_FIXED: &str = include_str!("../../../examples/kfp-2.5.0-single-user/fixed.yaml");
const EXAMPLE_FIXED_NAME: &str = "<example: kfp-2.5.0-single-user/fixed.yaml>";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    Table,
    Json,
    Sarif,
    Html,
    Dot,
    Mermaid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Error,
    Warning,
    Never,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  kfp-mesh check                                  # the built-in example (kubeflow/pipelines#12015)
  kubectl kustomize my-kfp | kfp-mesh check -f -
  kfp-mesh check -k manifests/kustomize/overlays/istio-strict-mtls -o sarif > kfp-mesh.sarif
  kfp-mesh check -f render.yaml --explain driver-to-mlmd

Exit codes: 0 no finding at or above --fail-on; 1 findings at or above --fail-on (whatever the
output format); 2 usage error; 3 unreadable input (missing file, malformed documents, input over
512 MiB) or nothing to check: no object at all (an empty stdin, e.g. a failed `kubectl kustomize` in a pipe), or no
KFP install without --generic.")]
pub struct CheckArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// The namespace KFP is installed in (default: where the `ml-pipeline` Deployment is).
    #[arg(long)]
    pub kfp_namespace: Option<String>,
    /// A profile namespace where runs execute (multi-user). Repeatable.
    #[arg(long = "profile", value_name = "NS")]
    pub profiles: Vec<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: CheckFormat,
    /// Lowest severity that makes the exit code 1 (default: error; for the built-in example,
    /// whose findings are the point, never).
    #[arg(long, value_enum)]
    pub fail_on: Option<FailOn>,
    /// Print the full explanation of one flow (its catalog id, e.g. driver-to-mlmd).
    #[arg(long, value_name = "FLOW_ID")]
    pub explain: Option<String>,
    /// Suppress a finding: CODE, or CODE=NAMESPACE/NAME for one object. Repeatable.
    #[arg(long = "suppress", value_name = "CODE[=NS/NAME]")]
    pub suppress: Vec<String>,
    /// Labels of a namespace, as `kubectl label` would set them: NS=KEY=VALUE[,KEY=VALUE...]
    /// (e.g. `kubeflow=istio-injection=enabled`). For namespaces the input does not define,
    /// which are otherwise taken as unlabelled. Repeatable.
    #[arg(long = "namespace-labels", value_name = "NS=KEY=VALUE[,...]")]
    pub namespace_labels: Vec<String>,
    /// Check input that holds no KFP install: only the generic Istio findings (rejected
    /// objects, ineffective policies). Without it such input is an error (exit code 3).
    #[arg(long)]
    pub generic: bool,
}

pub fn run(args: CheckArgs) -> Result<ExitCode> {
    let example = args.input.is_empty();
    let inventory = if example {
        input::load_builtin(EXAMPLE_NAME, EXAMPLE)
    } else {
        input::load(&args.input)?
    };
    input::report_input_errors(&inventory.errors);
    let mut inventory = inventory;
    for spec in &args.namespace_labels {
        let (ns, labels) = parse_namespace_labels(spec)
            .map_err(|e| crate::usage(&format!("--namespace-labels {e}")))?;
        inventory = inventory.with_namespace_labels(&ns, &labels, "--namespace-labels");
    }
    if !example && inventory.objects.is_empty() && inventory.errors.is_empty() {
        anyhow::bail!(
            "the input holds no Kubernetes object: nothing to check. An empty stdin usually means the command before the pipe failed (`kubectl kustomize DIR | kfp-mesh check -f -`: use `set -o pipefail`, or `kfp-mesh check -k DIR`)"
        );
    }
    let suppress = args
        .suppress
        .iter()
        .map(|s| s.parse::<Suppression>())
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| crate::usage(&format!("--suppress {e}")))?;
    let opts = CheckOptions {
        detect: DetectOptions {
            kfp_namespace: args.kfp_namespace.clone(),
            profiles: args.profiles.clone(),
        },
        suppress,
        // The table shows each flow's cause only; every other output carries the whole
        // explanation.
        explanations: if args.output == CheckFormat::Table && args.explain.is_none() {
            Explanations::Cause
        } else {
            Explanations::Full
        },
    };
    let input_errors = !inventory.errors.is_empty();
    let report_objects = inventory.objects.len();
    let report = check::check_in_place(&mut inventory, &opts);
    // The table and the JSON report are written as they are made: the inventory is left to the
    // process exit (freeing 245,000 objects one by one only costs time), on every path out of
    // here. The other outputs are built whole first, and reuse its memory.
    if matches!(args.output, CheckFormat::Table | CheckFormat::Json) {
        crate::leave_to_exit(inventory);
    } else {
        drop(inventory);
    }
    if !report.kfp.detected {
        if !args.generic && !input_errors {
            anyhow::bail!(
                "no Kubeflow Pipelines install found in the input ({} objects; no `ml-pipeline` Deployment or Service, no `pipeline-install-config`): nothing of KFP to check. Give the KFP manifests, name the namespace with --kfp-namespace, or pass --generic for the Istio checks alone",
                report_objects
            );
        }
        eprintln!(
            "warning: no Kubeflow Pipelines install found in the input (no `ml-pipeline` Deployment or Service, no `pipeline-install-config`); only generic findings are reported"
        );
    }

    if let Some(id) = &args.explain {
        let matching: Vec<_> = report.flows_named(id).collect();
        if matching.is_empty() {
            let mut ids: Vec<&str> = report
                .flows
                .iter()
                .map(|f| f.id.split(['@', '#']).next().unwrap_or(&f.id))
                .collect();
            ids.sort();
            ids.dedup();
            return Err(crate::usage(&format!(
                "no flow `{id}` in this install; flows: {}",
                ids.join(", ")
            )));
        }
        for f in matching {
            print_explanation(f);
        }
    } else {
        match args.output {
            CheckFormat::Table => print_table(&report, example)?,
            CheckFormat::Json => print_json(&report)?,
            CheckFormat::Sarif => print_json(&sarif(&report))?,
            CheckFormat::Html => print!("{}", kfp_mesh_report::html(&report)),
            CheckFormat::Dot => print!("{}", kfp_mesh_report::dot(&report)),
            CheckFormat::Mermaid => print!("{}", kfp_mesh_report::mermaid(&report)),
        }
    }

    if input_errors {
        return Ok(ExitCode::BadInput);
    }
    let default = if example {
        FailOn::Never
    } else {
        FailOn::Error
    };
    let code = exit_code(args.fail_on.unwrap_or(default), &report);
    crate::leave_to_exit(report);
    Ok(code)
}

/// `NS=KEY=VALUE[,KEY=VALUE...]`.
fn parse_namespace_labels(
    spec: &str,
) -> Result<(String, std::collections::BTreeMap<String, String>), String> {
    let bad = || format!("`{spec}`: expected NS=KEY=VALUE[,KEY=VALUE...]");
    let (ns, rest) = spec.split_once('=').ok_or_else(bad)?;
    if ns.is_empty() {
        return Err(bad());
    }
    let mut labels = std::collections::BTreeMap::new();
    for pair in rest.split(',') {
        let (k, v) = pair.split_once('=').ok_or_else(bad)?;
        if k.is_empty() {
            return Err(bad());
        }
        labels.insert(k.to_string(), v.to_string());
    }
    Ok((ns.to_string(), labels))
}

/// The exit code for a report under `--fail-on` (shared with `verify`).
pub(crate) fn exit_code(fail_on: FailOn, report: &Report) -> ExitCode {
    let fails = match (fail_on, report.worst()) {
        (FailOn::Never, _) | (_, None) => false,
        (FailOn::Error, Some(s)) => s == Severity::Error,
        (FailOn::Warning, Some(_)) => true,
    };
    if fails {
        ExitCode::Findings
    } else {
        ExitCode::Ok
    }
}

/// The built-in example after the fix, in two lines.
fn print_example_after() {
    let fixed = input::load_builtin(EXAMPLE_FIXED_NAME, EXAMPLE_FIXED);
    let report = check::check_owned(fixed, &CheckOptions::default());
    let mtls = report
        .flows
        .iter()
        .filter(|f| f.outcome == Outcome::Allow && f.transport == Some(Transport::Mtls))
        .count();
    let outside: Vec<&str> = report
        .flows
        .iter()
        .filter(|f| f.outcome == Outcome::Allow && f.transport == Some(Transport::Plaintext))
        .map(|f| f.from.workload.as_str())
        .collect();
    let failing = report.flows.len() - mtls - outside.len();
    println!(
        "\nAfter the fix (the same install with the kfp-mesh components: driver-webhook, istio-strict-mtls,\n\
         istio-strict-mtls/single-user; `kubectl kustomize examples/kfp-2.5.0-single-user`):\n  \
         {} flows: {mtls} over mTLS, {} in plaintext from callers outside the mesh ({}), {failing} failing; {} findings.\n  \
         Install it: kubectl apply -k manifests/kustomize/overlays/istio-strict-mtls",
        report.flows.len(),
        outside.len(),
        {
            let mut o = outside.clone();
            o.sort_unstable();
            o.dedup();
            o.join(", ")
        },
        report.findings.len()
    );
}

fn transport_str(t: Option<Transport>) -> &'static str {
    match t {
        Some(Transport::Mtls) => "mTLS",
        Some(Transport::Plaintext) => "plaintext",
        None => "-",
    }
}

struct Paint(bool);

impl Paint {
    fn outcome(&self, o: Outcome, t: Option<Transport>) -> String {
        let text = o.as_str();
        if !self.0 {
            return text.to_string();
        }
        let code = match (o, t) {
            (Outcome::Allow, Some(Transport::Mtls)) => "32",
            (Outcome::Allow, _) => "33",
            _ => "31;1",
        };
        kfp_mesh_core::text!("\x1b[{code}m{text}\x1b[0m")
    }
    fn severity(&self, s: Severity) -> String {
        if !self.0 {
            return s.as_str().to_string();
        }
        let code = match s {
            Severity::Error => "31;1",
            Severity::Warning => "33",
        };
        kfp_mesh_core::text!("\x1b[{code}m{}\x1b[0m", s.as_str())
    }
}

/// The table, written through one buffer (a 5,000-profile report has over 100,000 lines:
/// `println!` would make a system call for each).
pub(crate) fn print_table(report: &Report, example: bool) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    write_table(&mut out, report, example)
        .and_then(|()| out.flush())
        .context("cannot write the report to stdout")?;
    drop(out);
    if example {
        print_example_after();
    }
    Ok(())
}

fn write_table(out: &mut impl Write, report: &Report, example: bool) -> std::io::Result<()> {
    let paint = Paint(std::io::stdout().is_terminal());
    let k = &report.kfp;
    if example {
        writeln!(
            out,
            "Built-in example: a KFP 2.5.0 single-user install, `kubeflow` labelled for injection, mesh-wide STRICT mTLS (kubeflow/pipelines#12015).\n"
        )?;
    }
    if k.detected {
        writeln!(
            out,
            "KFP {} in namespace {} ({}), {} flows checked",
            k.version.display,
            k.kfp_namespace(),
            k.mode.value.as_str(),
            report.flows.len()
        )?;
    }
    for a in &report.assumed_namespaces {
        writeln!(out, "Namespace {}: {}", a.namespace, a.assumed)?;
    }
    // Two passes, nothing kept between them: the column widths, then the rows (a 5,000-profile
    // report has 75,000 of them).
    let headers = ["FLOW", "FROM", "TO", "OUTCOME", "TRANSPORT", "CAUSE"];
    let mut widths = [0; 5];
    for (w, h) in widths.iter_mut().zip(headers) {
        *w = h.len();
    }
    for f in &report.flows {
        for (w, c) in widths.iter_mut().zip(flow_cells(f)) {
            *w = (*w).max(c.chars().count());
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {:w4$}  {}",
        headers[0],
        headers[1],
        headers[2],
        headers[3],
        headers[4],
        headers[5],
        w0 = widths[0],
        w1 = widths[1],
        w2 = widths[2],
        w3 = widths[3],
        w4 = widths[4]
    )?;
    // Cells written as they are and padded by hand: the formatting machinery's padding was
    // most of the table's cost.
    for f in &report.flows {
        let [id, from, to, outcome_text, transport] = flow_cells(f);
        let outcome = paint.outcome(f.outcome, f.transport);
        write_padded(out, &id, widths[0])?;
        write_padded(out, &from, widths[1])?;
        write_padded(out, &to, widths[2])?;
        write!(out, "{outcome}")?;
        write_spaces(out, widths[3].saturating_sub(outcome_text.len()) + 2)?;
        write_padded(out, &transport, widths[4])?;
        out.write_all(flow_cause(f).as_bytes())?;
        out.write_all(b"\n")?;
    }
    writeln!(out)?;
    if report.findings.is_empty() {
        writeln!(out, "No findings.")?;
    } else {
        writeln!(out, "Findings ({}):", report.findings.len())?;
        for f in &report.findings {
            let place = match (&f.object, &f.file) {
                (Some(o), Some(file)) => match f.line {
                    Some(l) => kfp_mesh_core::text!(" [{o} at {file}:{l}]"),
                    None => kfp_mesh_core::text!(" [{o} in {file}]"),
                },
                (Some(o), None) => kfp_mesh_core::text!(" [{o}]"),
                (None, Some(file)) => kfp_mesh_core::text!(" [{file}:{}]", f.line.unwrap_or(0)),
                (None, None) => String::new(),
            };
            writeln!(
                out,
                "  {} {} {}{place}",
                f.code,
                paint.severity(f.severity),
                f.message
            )?;
        }
    }
    if report.suppressed > 0 {
        writeln!(out, "({} findings suppressed)", report.suppressed)?;
    }
    write_unresolved(out, report)?;
    if example {
        writeln!(
            out,
            "\nEvery run pod flow is reset: the KFP API server stamps `sidecar.istio.io/inject: \"false\"` on run pods.\n\
             Explain one flow: kfp-mesh check --explain driver-wait-to-object-store"
        )?;
    }
    Ok(())
}

/// `text`, then spaces to `width` characters and two more (the gap between columns).
fn write_padded(out: &mut impl Write, text: &str, width: usize) -> std::io::Result<()> {
    out.write_all(text.as_bytes())?;
    write_spaces(out, width.saturating_sub(text.chars().count()) + 2)
}

fn write_spaces(out: &mut impl Write, mut n: usize) -> std::io::Result<()> {
    const SPACES: &[u8; 64] = &[b' '; 64];
    while n > 0 {
        let now = n.min(SPACES.len());
        out.write_all(SPACES.get(..now).unwrap_or_default())?;
        n -= now;
    }
    Ok(())
}

/// The table's FLOW, FROM, TO, OUTCOME and TRANSPORT cells of a flow.
fn flow_cells(f: &check::FlowResult) -> [std::borrow::Cow<'_, str>; 5] {
    use std::borrow::Cow;
    [
        Cow::Borrowed(f.id.as_str()),
        f.from.qualified(),
        Cow::Owned(kfp_mesh_core::text!(
            "{}/{}:{}",
            f.to.namespace,
            f.to.service,
            f.to.port
        )),
        Cow::Borrowed(f.outcome.as_str()),
        Cow::Borrowed(transport_str(f.transport)),
    ]
}

/// The table's CAUSE cell of a flow.
fn flow_cause(f: &check::FlowResult) -> String {
    match (&f.probe, f.outcome) {
        // A connect-only wait (`nc -z`): what it observes, then what data would get.
        (Some(p), o) => kfp_mesh_core::text!(
            "the bare connect is {}{}; data on it: {}",
            p.result.as_str(),
            p.accepted_by
                .map(|a| kfp_mesh_core::text!(" (accepted by the {})", a.as_str()))
                .unwrap_or_default(),
            o.as_str()
        ),
        (None, _) => match f.outcome {
            Outcome::Allow
                if f.transport == Some(Transport::Plaintext) && f.from.namespace.is_none() =>
            {
                "caller outside the mesh".to_string()
            }
            Outcome::Allow if f.transport == Some(Transport::Plaintext) => {
                "no sidecar on one side".to_string()
            }
            Outcome::Allow => String::new(),
            _ => f.cause().map(|s| s.message.clone()).unwrap_or_default(),
        },
    }
}

/// The flows without a verdict: each one that is not simply outside the mesh on its own line
/// with the reason and the object, the calls that leave the mesh in one line.
fn write_unresolved(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    use kfp_mesh_kfp::catalog::UnresolvedKind;
    let (outside, open): (Vec<_>, Vec<_>) = report
        .unresolved
        .iter()
        .partition(|u| u.kind == UnresolvedKind::OutsideMesh);
    if !open.is_empty() {
        writeln!(out, "\nNot evaluated ({}):", open.len())?;
        for u in open {
            let object = u
                .object
                .as_ref()
                .map(|o| kfp_mesh_core::text!(" [{o}]"))
                .unwrap_or_default();
            writeln!(
                out,
                "  {} ({}{}): {}{object}",
                u.flow,
                u.kind.as_str(),
                if u.required { ", required" } else { "" },
                u.reason
            )?;
        }
    }
    if !outside.is_empty() {
        let mut ids: Vec<&str> = outside
            .iter()
            .map(|u| u.flow.split('@').next().unwrap_or(&u.flow))
            .collect();
        ids.dedup();
        writeln!(
            out,
            "\n{} calls leave the mesh (to kube-apiserver) and are not evaluated: {}",
            outside.len(),
            ids.join(", ")
        )?;
    }
    Ok(())
}

fn print_explanation(f: &check::FlowResult) {
    let from = f.from.qualified();
    println!(
        "{}: {from} -> {}/{}:{} ({})",
        f.id, f.to.namespace, f.to.service, f.to.port, f.protocol
    );
    println!("  why:       {}", f.why);
    println!("  outcome:   {}", f.outcome);
    println!("  transport: {}", transport_str(f.transport));
    if let Some(p) = &f.probe {
        println!(
            "  probe:     the bare connect is {}: {}",
            p.result.as_str(),
            p.why
        );
    }
    if let Some(fix) = &f.fix {
        println!("  fix:       {fix}");
    }
    println!("Explanation:");
    for (i, s) in f.explanation.iter().enumerate() {
        println!("  {:>2}. [{}] {}", i + 1, s.rule, s.message);
        for o in &s.objects {
            println!("        by {o}");
        }
    }
    println!();
}

/// Pretty JSON on stdout, written as it is serialised: the report of a large cluster is
/// hundreds of megabytes as text, and several times that as a `serde_json::Value`.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// The JSON report as a tree: `{kfp, flows, findings, access, unresolved, suppressed}` (for
/// `verify`, which adds its live facts to it).
pub(crate) fn json(report: &Report) -> serde_json::Value {
    serde_json::to_value(report).unwrap_or(serde_json::Value::Null)
}

/// SARIF 2.1.0, as GitHub code scanning takes it.
pub(crate) fn sarif(report: &Report) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = findings::kinds()
        .iter()
        .map(|k| {
            serde_json::json!({
                "id": k.code,
                "name": k.name,
                "shortDescription": {"text": k.summary},
                "fullDescription": {"text": k.description},
                "help": {"text": format!("{}\n\nFix: {}", k.description, k.fix),
                         "markdown": format!("{}\n\n**Fix.** {}", k.description, k.fix)},
                "helpUri": format!("https://github.com/kfp-mesh/kfp-mesh/blob/main/docs/findings.md#{}", k.code.to_lowercase()),
                "defaultConfiguration": {"level": sarif_level(k.severity)},
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|f| {
            let mut r = serde_json::json!({
                "ruleId": f.code,
                "level": sarif_level(f.severity),
                "message": {"text": f.message},
            });
            if let (Some(file), Some(map)) = (&f.file, r.as_object_mut())
                && !file.starts_with('<')
            {
                let uri = file.strip_prefix("./").unwrap_or(file);
                map.insert(
                    "locations".to_string(),
                    serde_json::json!([{
                        "physicalLocation": {
                            "artifactLocation": {"uri": uri},
                            "region": {"startLine": f.line.unwrap_or(1).max(1)}
                        }
                    }]),
                );
            }
            r
        })
        .collect();
    serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "kfp-mesh",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/kfp-mesh/kfp-mesh",
                "rules": rules,
            }},
            "results": results,
        }]
    })
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}
