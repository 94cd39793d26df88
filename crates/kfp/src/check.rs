//! `kfp-mesh check`, the pure part: every flow of the catalog evaluated by the mesh engine,
//! the findings only KFP knowledge can give, the access view per KFP server, suppressions.

use std::collections::{BTreeMap, BTreeSet};

use kfp_mesh_core::connection::{
    self, Caller, Outcome, RequestProtocol, RequestSpec, Target, Transport,
};
use kfp_mesh_core::explain::Step;
use kfp_mesh_core::inventory::{Inventory, Workload};
use kfp_mesh_core::mesh::authz;
use kfp_mesh_core::mesh::membership::{self, DataPlane};
use kfp_mesh_core::mesh::peer_authn::{self, MtlsMode};
use kfp_mesh_core::model::{AuthzAction, TlsMode};
use kfp_mesh_core::object::Cited;
use serde::Serialize;

use crate::catalog::{
    self, Catalog, Protocol, ResolveError, ResolvedFlow, RoleKind, UnresolvedKind,
};
use crate::detect::{self, DetectOptions, KfpFacts};
use crate::findings::{Finding, Severity};
use crate::runpods::{self, RunPod};

/// Annotation listing finding codes to suppress on the object it is set on.
pub const SUPPRESS_ANNOTATION: &str = "kfp-mesh.io/suppress";
const KILL_CMD_ANNOTATION: &str = "workflows.argoproj.io/kill-cmd-istio-proxy";

/// `--suppress CODE` or `--suppress CODE=NAMESPACE/NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppression {
    pub code: String,
    pub object: Option<(String, String)>,
}

impl std::str::FromStr for Suppression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (code, object) = match s.split_once('=') {
            None => (s, None),
            Some((code, obj)) => match obj.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                    (code, Some((ns.to_string(), name.to_string())))
                }
                _ => return Err(format!("`{s}`: the object must be NAMESPACE/NAME")),
            },
        };
        if crate::findings::kind(code).is_none() {
            return Err(format!(
                "`{code}` is not a finding code (see docs/findings.md)"
            ));
        }
        Ok(Suppression {
            code: code.to_string(),
            object,
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    pub detect: DetectOptions,
    pub suppress: Vec<Suppression>,
    /// How much of each flow's explanation the report keeps.
    pub explanations: Explanations,
}

/// How much of each flow's explanation a report keeps. Full explanations are most of a large
/// report's memory (tens of thousands of flows of about 20 steps each), so outputs that show
/// only the cause (the table) keep only that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Explanations {
    /// Every step (JSON, SARIF, HTML, `--explain`).
    #[default]
    Full,
    /// Only the step that decided the outcome (the table's CAUSE column).
    Cause,
}

/// One side of a flow instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub workload: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// A run pod kfp-mesh models (it does not exist until a run starts).
    pub synthetic: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowDestination {
    pub namespace: String,
    pub service: String,
    pub port: u16,
}

/// The verdict for one flow instance.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowResult {
    /// Catalog id, with the profile namespace for per-profile instances (`id@profile`).
    pub id: String,
    pub from: FlowSource,
    pub to: FlowDestination,
    pub protocol: &'static str,
    pub required: bool,
    pub why: String,
    pub outcome: Outcome,
    pub transport: Option<Transport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    pub findings: Vec<&'static str>,
    pub explanation: Vec<Step>,
}

/// Who may reach one KFP server, and whether they need to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerAccess {
    pub namespace: String,
    pub service: String,
    pub workload: String,
    /// Identities of the flow catalog's callers (principals).
    pub required: Vec<String>,
    /// What the ALLOW policies admit: principals, `ns:<namespace>`, `any-authenticated`,
    /// `any-plaintext`, `anyone` (no ALLOW policy).
    pub allowed: Vec<String>,
    /// Allowed entries no required caller needs.
    pub excess: Vec<String>,
}

/// A catalog flow that applies to the install but has no verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unresolved {
    /// Catalog id, with the profile namespace for per-profile instances (`id@profile`).
    pub flow: String,
    pub kind: UnresolvedKind,
    pub required: bool,
    pub reason: String,
    /// The object to look at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Cited>,
}

impl Unresolved {
    fn new(flow: String, required: bool, e: ResolveError) -> Self {
        Unresolved {
            flow,
            kind: e.kind,
            required,
            reason: e.reason,
            object: e.object,
        }
    }
}

/// Everything `kfp-mesh check` reports.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub kfp: KfpFacts,
    pub flows: Vec<FlowResult>,
    pub findings: Vec<Finding>,
    pub access: Vec<ServerAccess>,
    /// Catalog flows that apply but have no verdict, with the reason and the object to look at.
    pub unresolved: Vec<Unresolved>,
    /// Namespaces the flows run in that the input does not define, and what was assumed.
    pub assumed_namespaces: Vec<NamespaceAssumption>,
    pub suppressed: usize,
}

/// A namespace of a flow that the input has no Namespace object for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceAssumption {
    pub namespace: String,
    /// What the checker assumed, in words.
    pub assumed: String,
}

impl Report {
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).min()
    }
    /// The flows whose catalog id is `id`, or whose full instance id (`id@profile#source`)
    /// is `id`.
    pub fn flows_named<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a FlowResult> + 'a {
        self.flows
            .iter()
            .filter(move |f| f.id == id || f.id.split(['@', '#']).next() == Some(id))
    }
}

/// Run the whole check over an inventory.
pub fn check(inv: &Inventory, opts: &CheckOptions) -> Report {
    check_owned(inv.clone(), opts)
}

/// [`check`] on an inventory it may extend in place (saves a copy of a large input).
pub fn check_owned(mut full: Inventory, opts: &CheckOptions) -> Report {
    let facts = detect::detect(&full, &opts.detect);
    let mut findings = Vec::new();
    input_findings(&full, &mut findings);
    let mut flows = Vec::new();
    let mut unresolved = Vec::new();
    let mut access = Vec::new();

    let catalog = match catalog::load() {
        Ok(c) => Some(c),
        Err(e) => {
            unresolved.push(Unresolved {
                flow: "*".to_string(),
                kind: UnresolvedKind::CouldNotResolve,
                required: true,
                reason: format!("the flow catalog does not load: {e}"),
                object: None,
            });
            None
        }
    };
    let run_pods = if facts.detected {
        runpods::add_run_pods(&mut full, &facts)
    } else {
        Vec::new()
    };
    if let Some(catalog) = catalog
        && facts.detected
    {
        let mut resolved_flows = Vec::new();
        for flow in catalog::applicable_flows(&catalog.flows, &facts) {
            for (profile, resolved) in catalog::resolve(catalog, flow, &full, &facts) {
                match resolved {
                    Ok(r) => resolved_flows.push(r),
                    Err(e) => {
                        if let Some(c) = &e.configured {
                            findings.push(
                                Finding::new(
                                    "KM072",
                                    format!(
                                        "{}: the client is configured to reach `{}` ({}), which no Service in the input provides; the connection fails in the cluster too",
                                        instance_id(&flow.id, profile.as_deref()),
                                        c.text,
                                        c.evidence.detail
                                    ),
                                    c.evidence.cite().as_ref(),
                                )
                                .for_flow(&instance_id(&flow.id, profile.as_deref())),
                            );
                        }
                        unresolved.push(Unresolved::new(
                            instance_id(&flow.id, profile.as_deref()),
                            flow.required,
                            e,
                        ));
                    }
                }
            }
        }
        // One evaluation per flow instance and source, spread over the cores (a Kubeflow
        // cluster with many profiles has tens of thousands).
        for result in kfp_mesh_core::par::map(&resolved_flows, |r| {
            evaluate_flow(&full, catalog, r, opts.explanations)
        })
        .into_iter()
        .flatten()
        {
            match result {
                Ok(f) => flows.push(f),
                Err(u) => unresolved.push(u),
            }
        }
        unresolved_findings(&unresolved, &mut findings);
        flow_findings(&full, &facts, &mut flows, &mut findings);
        run_pod_findings(&full, &facts, &run_pods, &mut findings);
        access = server_access(&full, &facts, &flows);
        policy_findings(&full, &facts, &access, &mut findings);
        plaintext_findings(&full, &flows, &access, &mut findings);
    }
    static_findings(&full, &mut findings);

    let before = findings.len();
    let annotated = suppress_annotations(&full);
    findings.retain(|f| !suppressed(&annotated, &opts.suppress, f));
    let suppressed_count = before - findings.len();
    let kept: BTreeSet<(&'static str, Option<String>)> =
        findings.iter().map(|f| (f.code, f.flow.clone())).collect();
    for flow in &mut flows {
        flow.findings
            .retain(|c| kept.contains(&(*c, Some(flow.id.clone()))));
    }
    findings.sort_by(|a, b| {
        (a.severity, a.code, &a.object, &a.flow, &a.message)
            .cmp(&(b.severity, b.code, &b.object, &b.flow, &b.message))
    });
    findings.dedup();
    let assumed_namespaces = namespace_assumptions(&full, &facts, &flows);
    Report {
        kfp: facts,
        flows,
        findings,
        access,
        unresolved,
        assumed_namespaces,
        suppressed: suppressed_count,
    }
}

/// The namespaces of the flows' callers and servers that the input does not define: their
/// labels (injection, ambient) are unknown, so kfp-mesh takes them as unlabelled, or as KFP's
/// profile controller labels a profile namespace it models.
fn namespace_assumptions(
    inv: &Inventory,
    facts: &KfpFacts,
    flows: &[FlowResult],
) -> Vec<NamespaceAssumption> {
    let used: BTreeSet<&str> = flows
        .iter()
        .flat_map(|f| [f.from.namespace.as_deref(), Some(f.to.namespace.as_str())])
        .flatten()
        .chain(facts.detected.then(|| facts.kfp_namespace()))
        .collect();
    used.into_iter()
        .filter(|ns| !inv.namespaces.contains_key(*ns))
        .map(|ns| {
            // Kubernetes sets `kubernetes.io/metadata.name` on every namespace itself.
            let mut labels = inv.namespace_labels(ns);
            labels.remove("kubernetes.io/metadata.name");
            let assumed = match facts.profile(ns) {
                Some(p) if p.synthetic => format!(
                    "an example profile namespace kfp-mesh models, labelled as Kubeflow's profile controller labels one ({})",
                    label_list(&p.labels)
                ),
                _ if labels.is_empty() => "not in the input: assumed to have no labels (no sidecar injection, not ambient); state its labels with --namespace-labels".to_string(),
                _ => format!("not in the input: labels assumed {}", label_list(&labels)),
            };
            NamespaceAssumption {
                namespace: ns.to_string(),
                assumed,
            }
        })
        .collect()
}

fn label_list(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "no labels".to_string();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn input_findings(inv: &Inventory, findings: &mut Vec<Finding>) {
    for e in &inv.errors {
        let about = e
            .object
            .clone()
            .map(|object| Cited::new(object, e.origin.clone()));
        let mut f = Finding::new("KM050", e.message.clone(), about.as_ref());
        if about.is_none() {
            f.file = Some(e.origin.source.to_string());
            f.line = Some(e.origin.line);
        }
        findings.push(f);
    }
    for r in &inv.rejected {
        for i in &r.issues {
            findings.push(Finding::new(
                "KM040",
                format!("Istio rejects it ({}): {}", i.code, i.message),
                Some(&r.object),
            ));
        }
    }
    for r in &inv.warnings {
        for i in &r.issues {
            findings.push(Finding::new(
                "KM041",
                format!("Istio warns ({}): {}", i.code, i.message),
                Some(&r.object),
            ));
        }
    }
}

fn request_for(r: &ResolvedFlow<'_>) -> RequestSpec {
    let req = r.flow.request.clone().unwrap_or_default();
    let mut headers = req.headers.clone();
    headers.extend(r.headers.clone());
    let (protocol, app_tls) = match r.flow.protocol {
        Protocol::Http | Protocol::Grpc => (Some(RequestProtocol::Http), false),
        Protocol::Tcp => (Some(RequestProtocol::Tcp), false),
        Protocol::HttpsAppTls | Protocol::Https => (Some(RequestProtocol::Tcp), true),
    };
    let method = req
        .method
        .clone()
        .or_else(|| (r.flow.protocol == Protocol::Grpc).then(|| "POST".to_string()));
    RequestSpec {
        protocol,
        method,
        path: req.path.clone(),
        host: Some(format!(
            "{}.{}.svc.cluster.local:{}",
            r.destination.service, r.destination.namespace, r.destination.port
        )),
        headers,
        app_tls,
        ..RequestSpec::default()
    }
}

/// `id`, or `id@profile` for a per-profile instance.
fn instance_id(id: &str, profile: Option<&str>) -> String {
    match profile {
        Some(p) => format!("{id}@{p}"),
        None => id.to_string(),
    }
}

/// KM070 for each required flow that could not be resolved (unless KM072 already names its
/// cause), KM071 for each required flow whose caller or server is not in the input.
fn unresolved_findings(unresolved: &[Unresolved], findings: &mut Vec<Finding>) {
    let configured: BTreeSet<String> = findings
        .iter()
        .filter(|f| f.code == "KM072")
        .filter_map(|f| f.flow.clone())
        .collect();
    for u in unresolved.iter().filter(|u| u.required) {
        let code = match u.kind {
            UnresolvedKind::CouldNotResolve if configured.contains(&u.flow) => continue,
            UnresolvedKind::CouldNotResolve => "KM070",
            UnresolvedKind::NotInInput => "KM071",
            UnresolvedKind::OutsideMesh => continue,
        };
        findings.push(
            Finding::new(
                code,
                match u.kind {
                    UnresolvedKind::NotInInput => {
                        format!("{}: not in the input: {}", u.flow, u.reason)
                    }
                    _ => format!("{}: {}", u.flow, u.reason),
                },
                u.object.as_ref(),
            )
            .for_flow(&u.flow),
        );
    }
}

fn evaluate_flow(
    inv: &Inventory,
    catalog: &Catalog,
    r: &ResolvedFlow<'_>,
    explanations: Explanations,
) -> Vec<Result<FlowResult, Unresolved>> {
    let id = instance_id(r.id, r.profile.as_deref());
    let unresolved = |kind, reason: String, object: Option<Cited>| {
        vec![Err(Unresolved {
            flow: id.clone(),
            kind,
            required: r.flow.required,
            reason,
            object,
        })]
    };
    if r.destination.external {
        return unresolved(
            UnresolvedKind::OutsideMesh,
            format!(
                "calls {} outside the mesh; kfp-mesh does not evaluate it",
                r.flow.destination.role
            ),
            None,
        );
    }
    let Some(service) = inv.service(&r.destination.namespace, &r.destination.service) else {
        return unresolved(
            UnresolvedKind::CouldNotResolve,
            format!(
                "no Service {}/{} in the input",
                r.destination.namespace, r.destination.service
            ),
            None,
        );
    };
    let role_kind = catalog.role(&r.flow.source.role).map(|role| role.kind);
    let request = request_for(r);
    let mut out = Vec::new();
    for source in &r.sources {
        let caller = if source.external {
            match source.workload.as_str() {
                "kube-apiserver" => Caller::KubeApiserver,
                "kubelet" => Caller::Kubelet,
                _ => Caller::External,
            }
        } else {
            match source
                .namespace
                .as_deref()
                .and_then(|ns| inv.workload(ns, &source.workload))
            {
                Some(w) => Caller::Workload(w),
                None => {
                    out.push(Err(Unresolved {
                        flow: id.clone(),
                        kind: UnresolvedKind::NotInInput,
                        required: r.flow.required,
                        reason: format!(
                            "the caller {}/{} is not in the input",
                            source.namespace.as_deref().unwrap_or_default(),
                            source.workload
                        ),
                        object: None,
                    }));
                    continue;
                }
            }
        };
        let from = FlowSource {
            namespace: source.namespace.clone(),
            workload: source.workload.clone(),
            service_account: source.service_account.clone(),
            container: source.container.clone(),
            synthetic: source.synthetic || role_kind == Some(RoleKind::RunPod),
        };
        let to = FlowDestination {
            namespace: r.destination.namespace.clone(),
            service: r.destination.service.clone(),
            port: r.destination.port,
        };
        let instance_id = if r.sources.len() > 1 {
            format!("{id}#{}", short_role(&source.workload))
        } else {
            id.clone()
        };
        let result = connection::evaluate(
            inv,
            caller,
            Target::Service {
                service,
                port: r.destination.port,
            },
            &request,
        );
        let v = match result {
            Ok(v) => v,
            Err(e) => {
                out.push(Err(Unresolved {
                    flow: instance_id,
                    kind: UnresolvedKind::CouldNotResolve,
                    required: r.flow.required,
                    reason: e.to_string(),
                    object: Some(service.cite()),
                }));
                continue;
            }
        };
        let mut steps = Vec::with_capacity(v.explanation.len() + 1);
        steps.push(r.resolution.clone());
        steps.extend(v.explanation);
        out.push(Ok(FlowResult {
            id: instance_id,
            from,
            to,
            protocol: r.flow.protocol.as_str(),
            required: r.flow.required,
            why: r.flow.why.trim().to_string(),
            outcome: v.outcome,
            transport: v.transport,
            fix: v.fix,
            findings: Vec::new(),
            explanation: keep(steps, explanations),
        }));
    }
    out
}

/// The part of an explanation a report keeps: all of it, or the step that decided (the last
/// one that is not the engine's own summary).
///
/// A report holds tens of thousands of them: they are trimmed to their length (a vector
/// grown step by step has up to twice the room it needs).
fn keep(mut steps: Vec<Step>, explanations: Explanations) -> Vec<Step> {
    if let Explanations::Cause = explanations {
        steps = match steps.iter().rposition(|s| s.rule != "H") {
            Some(i) => vec![steps.swap_remove(i)],
            None => Vec::new(),
        };
    }
    steps.shrink_to_fit();
    for step in &mut steps {
        step.objects.shrink_to_fit();
        step.message.shrink_to_fit();
    }
    steps
}

/// `system-dag-driver` for a run pod named `<wf>-system-dag-driver-<hash>`, else the name.
fn short_role(workload: &str) -> String {
    for t in [
        "system-dag-driver",
        "system-container-driver",
        "system-container-impl",
        "system-importer",
    ] {
        if workload.contains(t) {
            return t.to_string();
        }
    }
    workload.to_string()
}

fn flow_findings(
    inv: &Inventory,
    facts: &KfpFacts,
    flows: &mut [FlowResult],
    findings: &mut Vec<Finding>,
) {
    for flow in flows.iter_mut() {
        if !flow.required {
            continue;
        }
        let from_desc = match &flow.from.namespace {
            Some(ns) => format!("{ns}/{}", flow.from.workload),
            None => flow.from.workload.clone(),
        };
        let what = format!(
            "{}: {} -> {}/{}:{} is {}",
            flow.id, from_desc, flow.to.namespace, flow.to.service, flow.to.port, flow.outcome
        );
        let kubelet = flow.from.workload == "kubelet" && flow.from.namespace.is_none();
        let service = inv.service(&flow.to.namespace, &flow.to.service);
        let service_cite = service.map(|s| s.cite());
        let apiserver = flow.from.workload == "kube-apiserver" && flow.from.namespace.is_none();
        // Kubelet probes are rewritten by the injector: plaintext is expected. kube-apiserver
        // never has a mesh identity: its plaintext (own TLS) is expected where a port-level
        // exception keeps the port open whatever the mesh or namespace mode.
        let plaintext_expected = kubelet
            || (apiserver
                && service.is_some_and(|s| apiserver_port_exception(inv, s, flow.to.port)));
        let code = match flow.outcome {
            Outcome::Allow
                if flow.transport == Some(Transport::Plaintext) && !plaintext_expected =>
            {
                "KM006"
            }
            Outcome::Allow => continue,
            // Decided by an ext-authz provider: no error finding; the flow shows it as its
            // outcome (`provider-decides`, with the provider in the explanation).
            Outcome::ProviderDecides => continue,
            Outcome::Reset | Outcome::TlsFailure if apiserver => "KM020",
            Outcome::Reset => "KM001",
            Outcome::UpstreamFailure => "KM002",
            Outcome::Deny | Outcome::CustomDeny | Outcome::Unauthenticated => "KM003",
            Outcome::Blocked => "KM004",
            Outcome::TlsFailure => "KM005",
        };
        let run_pod_without_sidecar = flow.from.synthetic
            && flow
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("KFP run pod without a sidecar"));
        let mut message = what;
        if code == "KM006" {
            message.push_str(" in plaintext (one side has no sidecar; STRICT would break it)");
        } else if run_pod_without_sidecar {
            message.push_str(": the run pod has no sidecar (see KM010)");
        } else if let Some(fix) = &flow.fix {
            message.push_str(&format!("; fix: {fix}"));
        }
        let about = if code == "KM001" && flow.from.synthetic {
            facts.api_server.clone().or(service_cite)
        } else {
            service_cite
        };
        flow.findings.push(code);
        findings.push(Finding::new(code, message, about.as_ref()).for_flow(&flow.id));
    }
}

fn run_pod_findings(
    inv: &Inventory,
    facts: &KfpFacts,
    run_pods: &[RunPod],
    findings: &mut Vec<Finding>,
) {
    let native_default = istiod_native_sidecars(inv);
    let strict_server = strict_kfp_server(inv, facts);
    let mut no_sidecar_ns: BTreeSet<String> = BTreeSet::new();
    for pod in run_pods {
        let w = &pod.workload;
        let dp = membership::data_plane(inv, w).value;
        if dp != DataPlane::Sidecar {
            // KM010 when a server that run pods call enforces STRICT.
            if strict_server {
                no_sidecar_ns.insert(w.namespace.clone());
            }
            continue;
        }
        for m in &pod.mutations {
            if m.after_istio_injector {
                findings.push(Finding::new(
                    "KM011",
                    format!(
                        "{} (pod mode) sorts after Istio's injector, so the labels it adds to {} pods never lead to injection",
                        m.configuration.object, pod.kind.template()
                    ),
                    Some(&m.configuration),
                ));
            }
        }
        let native = w.annotation("sidecar.istio.io/nativeSidecar") == Some("true")
            || (w.annotation("sidecar.istio.io/nativeSidecar").is_none() && native_default);
        if native {
            continue;
        }
        if w.annotation(KILL_CMD_ANNOTATION).is_none() {
            findings.push(Finding::new(
                "KM012",
                format!(
                    "{} pods in {} get a classic istio-proxy sidecar and no `{KILL_CMD_ANNOTATION}` annotation: Argo cannot stop the proxy and the run hangs",
                    pod.kind.template(),
                    w.namespace
                ),
                facts.api_server.as_ref(),
            ));
        }
        let hold = w
            .annotation("proxy.istio.io/config")
            .is_some_and(|c| c.contains("holdApplicationUntilProxyStarts") && c.contains("true"))
            || inv.mesh.hold_application_until_proxy_starts;
        if !hold {
            findings.push(Finding::new(
                "KM013",
                format!(
                    "{} pods in {} connect at start but their classic sidecar may not be ready (no holdApplicationUntilProxyStarts)",
                    pod.kind.template(),
                    w.namespace
                ),
                facts.api_server.as_ref(),
            ));
        }
    }
    for ns in no_sidecar_ns {
        findings.push(Finding::new(
            "KM010",
            format!(
                "KFP run pods in {ns} start without a sidecar (the KFP API server stamps `sidecar.istio.io/inject: \"false\"` on every workflow template) while KFP servers they call enforce STRICT mTLS"
            ),
            facts.api_server.as_ref(),
        ));
    }
}

/// Every sidecar endpoint of `service` behind `service_port` has a workload-level
/// PeerAuthentication whose `portLevelMtls` sets the target port PERMISSIVE or DISABLE, so no
/// mesh-wide or namespace-wide STRICT can close it (B2, B3, B4). Vacuously true when no
/// endpoint has a sidecar.
fn apiserver_port_exception(
    inv: &Inventory,
    service: &kfp_mesh_core::inventory::Service,
    service_port: u16,
) -> bool {
    let Some(port) = service
        .spec
        .ports
        .iter()
        .find(|p| i64::from(service_port) == p.port)
    else {
        return false;
    };
    inv.service_endpoints(service).into_iter().all(|ep| {
        if membership::data_plane(inv, ep).value != DataPlane::Sidecar {
            return true;
        }
        connection::target_port(port, ep).is_some_and(|target| port_level_open(inv, ep, target))
    })
}

/// The winning workload-level PeerAuthentication of `w` (the oldest whose selector matches, in
/// the inventory's canonical order; root-namespace selectors never apply) sets `port` to
/// PERMISSIVE or DISABLE.
fn port_level_open(inv: &Inventory, w: &Workload, port: u16) -> bool {
    if w.namespace == inv.mesh.root_namespace {
        return false;
    }
    let winner = inv.peer_authentications_in(&w.namespace).iter().find(|pa| {
        pa.spec
            .selector
            .as_ref()
            .and_then(|s| s.labels())
            .is_some_and(|sel| sel.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
    });
    winner
        .and_then(|pa| pa.spec.port_level_mtls.as_ref())
        .and_then(|ports| ports.get(&port.to_string()))
        .and_then(|m| peer_authn::declared_mode(m.mode))
        .is_some_and(|m| matches!(m, MtlsMode::Permissive | MtlsMode::Disable))
}

/// istiod runs with `ENABLE_NATIVE_SIDECARS=true` in the input.
fn istiod_native_sidecars(inv: &Inventory) -> bool {
    inv.mesh.native_sidecars.unwrap_or(false)
        || inv.workloads.iter().any(|w| {
            w.name.starts_with("istiod")
                && w.spec.containers.iter().any(|c| {
                    c.env.iter().flatten().any(|e| {
                        e.name == "ENABLE_NATIVE_SIDECARS" && e.value.as_deref() == Some("true")
                    })
                })
        })
}

/// Some KFP server in the KFP namespace enforces STRICT on a port.
fn strict_kfp_server(inv: &Inventory, facts: &KfpFacts) -> bool {
    let ns = facts.kfp_namespace();
    inv.workloads_in(ns).any(|w| {
        membership::data_plane(inv, w).value == DataPlane::Sidecar
            && container_ports(w)
                .into_iter()
                .any(|p| peer_authn::effective_mode(inv, w, p).value == MtlsMode::Strict)
    })
}

fn container_ports(w: &Workload) -> Vec<u16> {
    let mut ports: Vec<u16> = w
        .spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect();
    if ports.is_empty() {
        ports.push(80);
    }
    ports
}

/// The principal of a flow source, when it has a mesh identity.
fn source_principal(inv: &Inventory, f: &FlowResult) -> Option<String> {
    let ns = f.from.namespace.as_deref()?;
    let w = inv.workload(ns, &f.from.workload)?;
    Some(connection::principal_of(inv, w))
}

fn server_access(inv: &Inventory, facts: &KfpFacts, flows: &[FlowResult]) -> Vec<ServerAccess> {
    let mut by_server: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    // Service ports that required callers without any mesh identity (kube-apiserver) call;
    // kubelet probes are left out (the injector rewrites them past the proxy).
    let mut identityless: BTreeMap<(String, String), BTreeSet<u16>> = BTreeMap::new();
    for f in flows {
        let key = (f.to.namespace.clone(), f.to.service.clone());
        let entry = by_server.entry(key.clone()).or_default();
        if let Some(p) = source_principal(inv, f) {
            entry.insert(p);
        } else if f.from.namespace.is_none() {
            entry.insert(f.from.workload.clone());
            if f.required && f.from.workload != "kubelet" {
                identityless.entry(key).or_default().insert(f.to.port);
            }
        }
    }
    let kfp_ns = facts.kfp_namespace();
    // Several Services can front one server (2.15's `minio-service` alias of SeaweedFS): its
    // callers are those of all of them.
    let server_of = |ns: &str, svc: &str| {
        inv.service(ns, svc)
            .and_then(|s| inv.service_endpoints(s).into_iter().next())
            .map(|w| (w.namespace.clone(), w.name.clone()))
    };
    let mut by_workload: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for ((ns, svc), required) in &by_server {
        if let Some(w) = server_of(ns, svc) {
            by_workload
                .entry(w)
                .or_default()
                .extend(required.iter().cloned());
        }
    }
    let mut out = Vec::new();
    for ((ns, svc), required) in by_server {
        if ns != kfp_ns {
            continue;
        }
        let Some(service) = inv.service(&ns, &svc) else {
            continue;
        };
        let Some(server) = inv.service_endpoints(service).into_iter().next() else {
            continue;
        };
        let required = by_workload
            .get(&(server.namespace.clone(), server.name.clone()))
            .cloned()
            .unwrap_or(required);
        if membership::data_plane(inv, server).value != DataPlane::Sidecar {
            continue;
        }
        let allowed = allowed_identities(inv, server);
        // Target ports that callers without a mesh identity need open to any source.
        let needs_open: BTreeSet<u16> = identityless
            .get(&(ns.clone(), svc.clone()))
            .into_iter()
            .flatten()
            .filter_map(|sp| {
                let port = service
                    .spec
                    .ports
                    .iter()
                    .find(|p| p.port == i64::from(*sp))?;
                connection::target_port(port, server)
            })
            .collect();
        // A whole namespace, any principal or any plaintext caller is always wider than the
        // principals the catalog needs, except: `any-plaintext` from rules restricted to the
        // ports identity-less callers need (kube-apiserver → a webhook port), and a principal
        // pattern that the catalog's callers need (reported as KM032 instead).
        let excess = allowed
            .iter()
            .filter(|a| !required.contains(*a))
            .filter(|a| {
                !(a.as_str() == "any-plaintext"
                    && !needs_open.is_empty()
                    && open_rule_ports(inv, server).is_some_and(|p| p.is_subset(&needs_open)))
            })
            .filter(|a| {
                !(is_principal_pattern(a)
                    && required
                        .iter()
                        .any(|r| authz::principal_pattern_matches(a, r)))
            })
            .cloned()
            .collect();
        out.push(ServerAccess {
            namespace: ns,
            service: svc,
            workload: server.name.clone(),
            required: required.into_iter().collect(),
            allowed,
            excess,
        });
    }
    out
}

/// What the enforced ALLOW policies of a workload admit, as identity descriptions.
pub fn allowed_identities(inv: &Inventory, server: &Workload) -> Vec<String> {
    let mut allowed = BTreeSet::new();
    let mut any_allow = false;
    for p in authz::enforced_allow_policies(inv, server) {
        let spec = &p.spec;
        any_allow = true;
        for rule in spec.rules.iter().flatten().flatten() {
            let sources: Vec<_> = rule
                .from
                .iter()
                .flatten()
                .flatten()
                .filter_map(|f| f.source.as_ref())
                .collect();
            if sources.is_empty() {
                allowed.insert("any-plaintext".to_string());
                continue;
            }
            for s in sources {
                let mut identity = false;
                for pr in s.principals.iter().flatten() {
                    identity = true;
                    if pr == "*" {
                        allowed.insert("any-authenticated".to_string());
                    } else {
                        allowed.insert(pr.replacen(
                            "cluster.local/",
                            &format!("{}/", inv.mesh.trust_domain),
                            1,
                        ));
                    }
                }
                for n in s.namespaces.iter().flatten() {
                    identity = true;
                    allowed.insert(format!("ns:{n}"));
                }
                for sa in s.service_accounts.iter().flatten() {
                    identity = true;
                    let (sns, sname) = sa.split_once('/').unwrap_or((p.namespace(), sa));
                    allowed.insert(format!("{}/ns/{sns}/sa/{sname}", inv.mesh.trust_domain));
                }
                if !identity {
                    allowed.insert("any-plaintext".to_string());
                }
            }
        }
    }
    if !any_allow {
        allowed.insert("anyone".to_string());
    }
    allowed.into_iter().collect()
}

/// A principal with Istio's prefix or suffix wildcard (`*/sa/default-editor`,
/// `cluster.local/ns/team-*`), other than `*` alone.
fn is_principal_pattern(p: &str) -> bool {
    p != "*" && (p.starts_with('*') || p.ends_with('*'))
}

/// The ports that the ALLOW rules admitting callers without an identity (`any-plaintext`)
/// are restricted to; `None` when one of them is not restricted to ports.
fn open_rule_ports(inv: &Inventory, server: &Workload) -> Option<BTreeSet<u16>> {
    let mut ports = BTreeSet::new();
    for p in authz::enforced_allow_policies(inv, server) {
        let spec = &p.spec;
        for rule in spec.rules.iter().flatten().flatten() {
            let sources: Vec<_> = rule
                .from
                .iter()
                .flatten()
                .flatten()
                .filter_map(|f| f.source.as_ref())
                .collect();
            let open = sources.is_empty()
                || sources.iter().any(|s| {
                    s.principals.as_ref().is_none_or(Vec::is_empty)
                        && s.namespaces.as_ref().is_none_or(Vec::is_empty)
                        && s.service_accounts.as_ref().is_none_or(Vec::is_empty)
                });
            if !open {
                continue;
            }
            let ops: Vec<_> = rule
                .to
                .iter()
                .flatten()
                .flatten()
                .map(|t| t.operation.as_ref())
                .collect();
            if ops.is_empty() {
                return None;
            }
            for op in ops {
                let listed = op
                    .and_then(|o| o.ports.as_ref())
                    .filter(|p| !p.is_empty())?;
                for port in listed {
                    ports.insert(port.parse::<u16>().ok()?);
                }
            }
        }
    }
    Some(ports)
}

fn policy_findings(
    inv: &Inventory,
    facts: &KfpFacts,
    access: &[ServerAccess],
    findings: &mut Vec<Finding>,
) {
    let ns = facts.kfp_namespace();
    for a in access {
        let Some(server) = inv.workload(&a.namespace, &a.workload) else {
            continue;
        };
        let strict = container_ports(server)
            .into_iter()
            .all(|p| peer_authn::effective_mode(inv, server, p).value == MtlsMode::Strict);
        // KM030: allow-all / plaintext-permitting rules that STRICT makes unnecessary.
        if strict {
            for p in inv.authorization_policies_in(ns) {
                let applies = p
                    .spec
                    .selector
                    .as_ref()
                    .and_then(|s| s.labels())
                    .is_none_or(|sel| sel.iter().all(|(k, v)| server.labels.get(k) == Some(v)));
                if !applies || p.spec.action != AuthzAction::Allow {
                    continue;
                }
                let allow_all = p
                    .spec
                    .rules
                    .iter()
                    .flatten()
                    .flatten()
                    .any(|r| r.from.is_none() && r.to.is_none() && r.when.is_none());
                if allow_all {
                    findings.push(Finding::new(
                        "KM030",
                        format!(
                            "{} allows every caller of {} (`rules: [{{}}]`) although every port of it enforces STRICT mTLS",
                            p.object_ref(),
                            a.service
                        ),
                        Some(&p.cite()),
                    ));
                }
            }
        }
        let excess: Vec<&String> = a
            .excess
            .iter()
            .filter(|e| !a.required.iter().any(|r| r == *e))
            .collect();
        if !excess.is_empty() {
            let list: Vec<&str> = excess.iter().map(|s| s.as_str()).collect();
            findings.push(Finding::new(
                "KM031",
                format!(
                    "{}/{} admits identities no KFP flow needs: {}",
                    a.namespace,
                    a.service,
                    list.join(", ")
                ),
                inv.service(&a.namespace, &a.service)
                    .map(|s| s.cite())
                    .as_ref(),
            ));
        }
        // KM032: a principal pattern the catalog's callers need (multi-user run pods in
        // profile namespaces that cannot be listed), which admits more than them.
        for pattern in a.allowed.iter().filter(|e| is_principal_pattern(e)) {
            let served: Vec<&str> = a
                .required
                .iter()
                .filter(|r| authz::principal_pattern_matches(pattern, r))
                .map(String::as_str)
                .collect();
            if served.is_empty() {
                continue;
            }
            let policies = policies_naming(inv, server, pattern);
            let message = format!(
                "{}/{} admits the principal pattern `{pattern}` ({}): every identity that matches it reaches the server, not only the {} the flow catalog needs ({})",
                a.namespace,
                a.service,
                pattern_scope(pattern),
                served.len(),
                served.join(", ")
            );
            if policies.is_empty() {
                findings.push(Finding::new(
                    "KM032",
                    message.clone(),
                    inv.service(&a.namespace, &a.service)
                        .map(|s| s.cite())
                        .as_ref(),
                ));
            }
            for p in policies {
                findings.push(Finding::new("KM032", message.clone(), Some(&p)));
            }
        }
    }
}

/// KM033: a KFP server port that still accepts plaintext (PERMISSIVE) although every caller
/// the flow catalog lists for it arrives over mTLS and none lacks a mesh identity, so STRICT
/// would cost nothing. Kubelet probes do not count (the injector rewrites them).
fn plaintext_findings(
    inv: &Inventory,
    flows: &[FlowResult],
    access: &[ServerAccess],
    findings: &mut Vec<Finding>,
) {
    for a in access {
        let Some(server) = inv.workload(&a.namespace, &a.workload) else {
            continue;
        };
        let Some(service) = inv.service(&a.namespace, &a.service) else {
            continue;
        };
        // target port → (every caller over mTLS, service ports)
        let mut ports: BTreeMap<u16, (bool, BTreeSet<u16>)> = BTreeMap::new();
        for f in flows.iter().filter(|f| {
            f.to.namespace == a.namespace
                && f.to.service == a.service
                && !(f.from.workload == "kubelet" && f.from.namespace.is_none())
        }) {
            let Some(target) = service
                .spec
                .ports
                .iter()
                .find(|p| p.port == i64::from(f.to.port))
                .and_then(|p| connection::target_port(p, server))
            else {
                continue;
            };
            let entry = ports.entry(target).or_insert((true, BTreeSet::new()));
            entry.0 &= f.outcome == Outcome::Allow && f.transport == Some(Transport::Mtls);
            entry.1.insert(f.to.port);
        }
        for (target, (all_mtls, service_ports)) in ports {
            if !all_mtls
                || peer_authn::effective_mode(inv, server, target).value != MtlsMode::Permissive
            {
                continue;
            }
            let listed: Vec<String> = service_ports.iter().map(u16::to_string).collect();
            findings.push(Finding::new(
                "KM033",
                format!(
                    "{}/{} accepts plaintext on port {} (container port {target}: PERMISSIVE) although every caller the flow catalog lists for it uses mTLS",
                    a.namespace,
                    a.service,
                    listed.join(", ")
                ),
                Some(&service.cite()),
            ));
        }
    }
}

/// What a principal pattern admits, in words.
fn pattern_scope(pattern: &str) -> String {
    if let Some(suffix) = pattern.strip_prefix('*') {
        if let Some(sa) = suffix.strip_prefix("/sa/") {
            return format!("the ServiceAccount `{sa}` of every namespace, in any trust domain");
        }
        return format!("every principal ending in `{suffix}`");
    }
    let prefix = pattern.trim_end_matches('*');
    format!("every principal starting with `{prefix}`")
}

/// The enforced ALLOW policies of `server` that name `principal` in a source.
fn policies_naming(inv: &Inventory, server: &Workload, principal: &str) -> Vec<Cited> {
    let mut out = Vec::new();
    for p in authz::enforced_allow_policies(inv, server) {
        let spec = &p.spec;
        let names = spec
            .rules
            .iter()
            .flatten()
            .flatten()
            .flat_map(|r| r.from.iter().flatten().flatten())
            .filter_map(|f| f.source.as_ref())
            .flat_map(|s| s.principals.iter().flatten())
            .any(|pr| pr == principal);
        if names {
            out.push(p.cite());
        }
    }
    out
}

/// Findings that need no flow: DestinationRule DISABLE toward STRICT, ineffective
/// root-namespace PeerAuthentications.
fn static_findings(inv: &Inventory, findings: &mut Vec<Finding>) {
    let root = inv.mesh.root_namespace.clone();
    for pa in inv.peer_authentications_in(&root) {
        if pa.spec.selector.as_ref().and_then(|s| s.labels()).is_some() {
            findings.push(Finding::new(
                "KM042",
                format!(
                    "{} is in the root namespace {root} and has a selector: Istio applies it to no workload",
                    pa.object_ref()
                ),
                Some(&pa.cite()),
            ));
        }
    }
    for (ns, drs) in &inv.destination_rules {
        for dr in drs {
            let Some(tp) = &dr.spec.traffic_policy else {
                continue;
            };
            let disabled_top = tp.tls.as_ref().and_then(|t| t.mode) == Some(TlsMode::Disable);
            let Some(service) = dr_service(inv, ns, &dr.spec.host) else {
                continue;
            };
            for port in &service.spec.ports {
                let port_level = tp.port_level_settings.iter().flatten().find(|p| {
                    p.port.as_ref().and_then(|p| p.number) == u32::try_from(port.port).ok()
                });
                let disabled = match port_level {
                    Some(pl) => pl.tls.as_ref().and_then(|t| t.mode) == Some(TlsMode::Disable),
                    None => disabled_top,
                };
                if !disabled {
                    continue;
                }
                for ep in inv.service_endpoints(service) {
                    let Some(target) = connection::target_port(port, ep) else {
                        continue;
                    };
                    if membership::data_plane(inv, ep).value == DataPlane::Sidecar
                        && peer_authn::effective_mode(inv, ep, target).value == MtlsMode::Strict
                    {
                        findings.push(Finding::new(
                            "KM021",
                            format!(
                                "{} sends plaintext to {}/{} port {} whose server {} enforces STRICT: sidecar clients get 503",
                                dr.object_ref(),
                                service.namespace(),
                                service.name(),
                                port.port,
                                ep.object_ref()
                            ),
                            Some(&dr.cite()),
                        ));
                    }
                }
            }
        }
    }
}

/// The Service a DestinationRule host names (short name relative to the rule's namespace, or
/// the full `name.ns.svc.cluster.local`).
fn dr_service<'a>(
    inv: &'a Inventory,
    dr_ns: &str,
    host: &str,
) -> Option<&'a kfp_mesh_core::inventory::Service> {
    if !host.contains('.') {
        return inv.service(dr_ns, host);
    }
    let trimmed = host.strip_suffix(".svc.cluster.local")?;
    let (name, ns) = trimmed.split_once('.')?;
    inv.service(ns, name)
}

/// Objects carrying the suppression annotation: (kind, namespace, name) → codes.
fn suppress_annotations(
    inv: &Inventory,
) -> BTreeMap<(String, Option<String>, String), Vec<String>> {
    inv.objects
        .iter()
        .filter_map(|o| {
            let codes = o.meta.annotation(SUPPRESS_ANNOTATION)?;
            Some((
                (
                    o.kind.clone(),
                    o.meta.namespace.clone(),
                    o.meta.name.clone(),
                ),
                codes.split(',').map(|c| c.trim().to_string()).collect(),
            ))
        })
        .collect()
}

fn suppressed(
    annotated: &BTreeMap<(String, Option<String>, String), Vec<String>>,
    rules: &[Suppression],
    f: &Finding,
) -> bool {
    if let Some(o) = &f.object
        && annotated
            .get(&(o.kind.clone(), o.namespace.clone(), o.name.clone()))
            .is_some_and(|codes| codes.iter().any(|c| c == f.code))
    {
        return true;
    }
    rules.iter().any(|s| {
        s.code == f.code
            && match &s.object {
                None => true,
                Some((ns, name)) => f.object.as_ref().is_some_and(|o| {
                    o.namespace.as_deref() == Some(ns.as_str()) && &o.name == name
                }),
            }
    })
}
