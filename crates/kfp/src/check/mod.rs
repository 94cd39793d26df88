//! `kfp-mesh check`, the pure part: every flow of the catalog evaluated by the mesh engine,
//! the access view per KFP server, the findings of the rules (`rules/`, one file per rule),
//! suppressions.

mod access;
pub mod rules;
mod suppress;

use std::collections::{BTreeSet, HashMap};

/// A hash map keyed by names read from the input (foldhash, seeded per process).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

use kfp_mesh_core::connection::{
    self, Caller, Outcome, RequestProtocol, RequestSpec, Target, Transport,
};
use kfp_mesh_core::explain::Step;
use kfp_mesh_core::inventory::Inventory;
use kfp_mesh_core::object::Cited;
use serde::Serialize;

pub use access::allowed_identities;
pub use suppress::{SUPPRESS_ANNOTATION, Suppression};

use crate::catalog::{
    self, Catalog, Protocol, ResolveError, ResolvedFlow, RoleKind, UnresolvedKind,
};
use crate::detect::{self, DetectOptions, KfpFacts};
use crate::findings::{Code, Finding, Severity};
use crate::runpods;

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
    /// Only the step that decided the outcome of a flow that does not succeed (the table's
    /// CAUSE column); nothing for one that does. A flow is first evaluated without the
    /// messages of its steps ([`kfp_mesh_core::explain::quietly`]), and again with them when
    /// it does not succeed: wording the explanations of a large cluster's flows was 5 to 7 %
    /// of its check.
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

impl FlowSource {
    /// `namespace/workload`, or the workload alone for a caller outside the cluster's pods.
    pub fn qualified(&self) -> std::borrow::Cow<'_, str> {
        match &self.namespace {
            Some(ns) => std::borrow::Cow::Owned(kfp_mesh_core::text!("{ns}/{}", self.workload)),
            None => std::borrow::Cow::Borrowed(&self.workload),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowDestination {
    pub namespace: String,
    pub service: String,
    pub port: u16,
}

/// The verdict for one flow instance.
#[derive(Clone, Debug, PartialEq, Serialize)]
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
    /// The cause the fix addresses (core's typed fact).
    #[serde(skip)]
    pub fix_kind: Option<connection::FixKind>,
    /// For a connect-only flow (`nc -z`): what that probe observes, which can differ from the
    /// outcome of data sent on the connection (a client sidecar accepts it whatever the
    /// server decides).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<connection::ConnectProbe>,
    /// Where the mesh enforces policy on this flow, in order: `client sidecar` or `client
    /// ztunnel`, `waypoint NS/NAME`, `server sidecar` or `server ztunnel` (empty outside the
    /// mesh).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub enforcement: Vec<String>,
    /// Codes of the findings about this flow.
    pub findings: Vec<Code>,
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
    /// `any-mesh-identity` (no source named, ports STRICT), `any-plaintext`, `anyone` (no
    /// ALLOW policy, plaintext accepted); see [`allowed_identities`].
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
    /// The client's configured host that no Service provides (KM072).
    #[serde(skip)]
    pub configured: Option<Box<crate::clients::Configured>>,
}

impl Unresolved {
    fn new(flow: String, required: bool, e: ResolveError) -> Self {
        Unresolved {
            flow,
            kind: e.kind,
            required,
            reason: e.reason,
            object: e.object,
            configured: e.configured,
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

/// A namespace of a flow that the input has no Namespace object for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceAssumption {
    pub namespace: String,
    /// What the checker assumed, in words.
    pub assumed: String,
}

/// Run the whole check over an inventory.
pub fn check(inv: &Inventory, opts: &CheckOptions) -> Report {
    check_owned(inv.clone(), opts)
}

/// [`check`] on an inventory it may extend (saves a copy of a large input).
pub fn check_owned(mut full: Inventory, opts: &CheckOptions) -> Report {
    check_in_place(&mut full, opts)
}

/// [`check`] on an inventory it extends in place with the modelled run pods (and, for an
/// example profile, its objects): for a caller that has no other use for the inventory but
/// wants to decide when it is freed.
pub fn check_in_place(full: &mut Inventory, opts: &CheckOptions) -> Report {
    let facts = detect::detect(full, &opts.detect);
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
                configured: None,
            });
            None
        }
    };
    let run_pods = if facts.detected {
        runpods::add_run_pods(full, &facts)
    } else {
        Vec::new()
    };
    if let Some(catalog) = catalog
        && facts.detected
    {
        // One catalog flow at a time: its instances (one per profile for per-profile flows)
        // are resolved, then evaluated over the cores, then dropped, so a cluster with many
        // profiles never holds every resolved instance at once.
        // What each destination Service's server is (it terminates TLS itself, its data plane,
        // its waypoint): decided once per Service, not once per flow instance.
        let mut servers: FastMap<String, FastMap<String, ServerFacts>> = FastMap::default();
        // Flows that resolve but cannot be evaluated are listed after those that do not
        // resolve, as when every flow was resolved first.
        let mut not_evaluated = Vec::new();
        // The results of each catalog flow, joined at the end into one vector of the exact
        // size (a vector of tens of thousands of results grown one by one has up to twice the
        // room it needs).
        let mut per_flow: Vec<Vec<FlowResult>> = Vec::new();
        for flow in catalog::applicable_flows(&catalog.flows, &facts) {
            let mut resolved_flows = Vec::new();
            let mut results = Vec::new();
            for (profile, resolved) in catalog::resolve(catalog, flow, full, &facts) {
                match resolved {
                    Ok(r) => resolved_flows.push(r),
                    Err(e) => unresolved.push(Unresolved::new(
                        instance_id(&flow.id, profile.as_deref()),
                        flow.required,
                        e,
                    )),
                }
            }
            for r in &resolved_flows {
                let (ns, service) = (&r.destination.namespace, &r.destination.service);
                let known = servers
                    .get(ns.as_str())
                    .map(|in_ns| in_ns.contains_key(service));
                if known != Some(true) {
                    servers
                        .entry(ns.clone())
                        .or_default()
                        .insert(service.clone(), ServerFacts::of(full, ns, service));
                }
            }
            let evaluated = kfp_mesh_core::par::map(&resolved_flows, |r| {
                let server = servers
                    .get(r.destination.namespace.as_str())
                    .and_then(|in_ns| in_ns.get(r.destination.service.as_str()));
                evaluate_flow(full, catalog, r, server, opts.explanations)
            });
            // Made to measure: a flow of a large cluster has thousands of instances, and a
            // vector grown by doubling would move them all several times.
            results.reserve_exact(evaluated.iter().map(Vec::len).sum());
            for result in evaluated.into_iter().flatten() {
                match result {
                    Ok(f) => results.push(f),
                    Err(u) => not_evaluated.push(u),
                }
            }
            results.shrink_to_fit();
            per_flow.push(results);
        }
        flows.reserve_exact(per_flow.iter().map(Vec::len).sum());
        for results in per_flow {
            flows.extend(results);
        }
        unresolved.extend(not_evaluated);
        access = access::server_access(full, &facts, &flows);
    }
    let mut findings = rules::run_all(&rules::Context {
        inv: full,
        facts: &facts,
        flows: &flows,
        access: &access,
        run_pods: &run_pods,
        unresolved: &unresolved,
    });
    let before = findings.len();
    let annotated = suppress::annotations(full);
    findings.retain(|f| !suppress::suppressed(&annotated, &opts.suppress, f));
    let suppressed_count = before - findings.len();
    // Each flow lists the codes of the findings about it that were kept.
    let mut by_flow: FastMap<&str, BTreeSet<Code>> = FastMap::default();
    for f in &findings {
        if let Some(id) = &f.flow {
            by_flow.entry(id.as_str()).or_default().insert(f.code);
        }
    }
    for flow in &mut flows {
        if let Some(codes) = by_flow.get(flow.id.as_str()) {
            flow.findings = codes.iter().copied().collect();
        }
    }
    findings.sort_by(|a, b| {
        (a.severity, a.code, &a.object, &a.flow, &a.message)
            .cmp(&(b.severity, b.code, &b.object, &b.flow, &b.message))
    });
    findings.dedup();
    let assumed_namespaces = namespace_assumptions(full, &facts, &flows);
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
    // Each namespace once (in a hash set: the flows of a large cluster name the same few
    // thousand namespaces tens of thousands of times), then in order.
    let used: std::collections::HashSet<&str, foldhash::fast::RandomState> = flows
        .iter()
        .flat_map(|f| [f.from.namespace.as_deref(), Some(f.to.namespace.as_str())])
        .flatten()
        .chain(facts.detected.then(|| facts.kfp_namespace()))
        .collect();
    let used: BTreeSet<&str> = used.into_iter().collect();
    used.into_iter()
        .filter(|ns| !inv.namespaces.contains_key(*ns))
        .map(|ns| {
            // Kubernetes sets `kubernetes.io/metadata.name` on every namespace itself.
            let mut labels = inv.namespace_labels(ns).into_owned();
            labels.remove("kubernetes.io/metadata.name");
            let assumed = match facts.profile(ns) {
                Some(p) if p.synthetic => format!(
                    "an example profile namespace kfp-mesh models, labelled as Kubeflow's profile controller labels one ({})",
                    label_list(&(&p.labels).into())
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

fn label_list(labels: &kfp_mesh_core::object::StringMap) -> String {
    if labels.is_empty() {
        return "no labels".to_string();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The request of a flow instance. `server_tls` says the server terminates TLS itself, so the
/// client speaks TLS (KFP's standalone-TLS env): the mesh then sees opaque TLS.
fn request_for(r: &ResolvedFlow<'_>, server_tls: bool) -> RequestSpec {
    let req = r.flow.request.clone().unwrap_or_default();
    let mut headers = req.headers.clone();
    headers.extend(r.headers.clone());
    let (protocol, app_tls) = match r.flow.protocol {
        Protocol::Http | Protocol::Grpc if server_tls => (Some(RequestProtocol::Tcp), true),
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
        connect_only: r.flow.connect_only,
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

fn evaluate_flow(
    inv: &Inventory,
    catalog: &Catalog,
    r: &ResolvedFlow<'_>,
    server: Option<&ServerFacts>,
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
            configured: None,
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
    // A server that terminates TLS itself: its clients speak TLS (kubelet probes aside, which
    // the injector rewrites, and bare TCP connects, which never start a handshake).
    let server_tls = server
        .and_then(|s| s.app_tls.as_ref())
        .filter(|_| r.flow.protocol.is_http() && r.flow.source.role != "kubelet");
    let request = request_for(r, server_tls.is_some());
    // Made only for an explanation that is kept.
    let resolution = || {
        let mut steps = vec![r.resolution.clone()];
        if let Some(e) = &server_tls {
            steps.push(
                Step::new(
                    "KFP",
                    format!(
                        "the server {}: its clients speak TLS to it, which the mesh sees as opaque TLS",
                        e.detail
                    ),
                )
                .by_all(e.cite()),
            );
        }
        steps
    };
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
                        configured: None,
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
        let evaluate = || {
            connection::evaluate(
                inv,
                caller,
                Target::Service {
                    service,
                    port: r.destination.port,
                },
                &request,
            )
        };
        let result = match explanations {
            Explanations::Full => evaluate(),
            // Most flows of a cluster succeed, and a report of causes keeps nothing of their
            // explanations: evaluated without words first, and again with words when they do
            // not succeed.
            Explanations::Cause => match kfp_mesh_core::explain::quietly(evaluate) {
                Ok(v) if v.outcome == Outcome::Allow => Ok(v),
                _ => evaluate(),
            },
        };
        let v = match result {
            Ok(v) => v,
            Err(e) => {
                out.push(Err(Unresolved {
                    flow: instance_id,
                    kind: UnresolvedKind::CouldNotResolve,
                    required: r.flow.required,
                    reason: e.to_string(),
                    object: Some(service.cite()),
                    configured: None,
                }));
                continue;
            }
        };
        // With causes only, a flow that succeeds keeps none (its steps have no words).
        let explanation = if explanations == Explanations::Cause && v.outcome == Outcome::Allow {
            Vec::new()
        } else {
            let mut steps = resolution();
            steps.extend(v.explanation);
            keep(steps, explanations)
        };
        let client = match caller {
            Caller::Workload(w) => Some(w),
            _ => None,
        };
        let fix = v.fix.as_ref().map(|f| fix_text(f, client));
        out.push(Ok(FlowResult {
            id: instance_id,
            from,
            to,
            protocol: r.flow.protocol.as_str(),
            required: r.flow.required,
            why: r.flow.why.trim().to_string(),
            outcome: v.outcome,
            transport: v.transport,
            fix_kind: v.fix.as_ref().map(|f| f.kind),
            fix,
            probe: v.probe,
            enforcement: enforcement_points(inv, client, server),
            findings: Vec::new(),
            explanation,
        }));
    }
    out
}

/// A fix in KFP's words: a KFP run pod without a sidecar (labelled by Argo or KFP) is not fixed
/// by labelling its namespace (the KFP API server opts every run pod out) but by the kfp-mesh
/// webhook. Every other fix keeps core's wording.
pub fn fix_text(
    fix: &connection::Fix,
    client: Option<&kfp_mesh_core::inventory::Workload>,
) -> String {
    match (fix.kind, client) {
        (connection::FixKind::ClientWithoutSidecar { .. }, Some(w)) if runpods::is_run_pod(w) => {
            format!(
                "{} is a KFP run pod without a sidecar (the KFP API server stamps `sidecar.istio.io/inject: \"false\"` on every workflow template): deploy the kfp-mesh webhook (manifests/kustomize/components/driver-webhook) so run pods get `sidecar.istio.io/inject: \"true\"` as a label",
                w.object_ref()
            )
        }
        _ => fix.text.clone(),
    }
}

/// What a flow needs to know of the server behind a destination Service.
struct ServerFacts {
    /// The server terminates TLS itself (its clients speak TLS).
    app_tls: Option<detect::Evidence>,
    data_plane: Option<kfp_mesh_core::mesh::membership::DataPlane>,
    /// `NS/NAME` of the waypoint the Service uses (`istio.io/use-waypoint`).
    waypoint: Option<String>,
}

impl ServerFacts {
    fn of(inv: &Inventory, ns: &str, name: &str) -> ServerFacts {
        let service = inv.service(ns, name);
        let endpoints = service
            .map(|s| inv.service_endpoints(s))
            .unwrap_or_default();
        ServerFacts {
            app_tls: endpoints
                .iter()
                .find_map(|w| detect::serves_app_tls(inv, w)),
            data_plane: endpoints
                .first()
                .map(|w| kfp_mesh_core::mesh::membership::data_plane(inv, w).value),
            waypoint: service
                .and_then(|s| kfp_mesh_core::mesh::waypoint::service_waypoint(inv, s))
                .map(|wp| format!("{}/{}", wp.namespace, wp.name)),
        }
    }
}

/// Where the mesh enforces policy between `client` and the server (see
/// [`FlowResult::enforcement`]): the client's proxy, a waypoint (ambient servers, reached by
/// mesh clients through `istio.io/use-waypoint`), the server's proxy.
fn enforcement_points(
    inv: &Inventory,
    client: Option<&kfp_mesh_core::inventory::Workload>,
    server: Option<&ServerFacts>,
) -> Vec<String> {
    use kfp_mesh_core::mesh::membership::{self, DataPlane};
    let mut out = Vec::new();
    let client_dp = client.map(|w| membership::data_plane(inv, w).value);
    match client_dp {
        Some(DataPlane::Sidecar) => out.push("client sidecar".to_string()),
        Some(DataPlane::Ambient) => out.push("client ztunnel".to_string()),
        _ => {}
    }
    let server_dp = server.and_then(|s| s.data_plane);
    let mesh_client = matches!(client_dp, Some(DataPlane::Sidecar | DataPlane::Ambient));
    if server_dp == Some(DataPlane::Ambient)
        && mesh_client
        && let Some(wp) = server.and_then(|s| s.waypoint.as_ref())
    {
        out.push(format!("waypoint {wp}"));
    }
    match server_dp {
        Some(DataPlane::Sidecar) => out.push("server sidecar".to_string()),
        Some(DataPlane::Ambient) => out.push("server ztunnel".to_string()),
        _ => {}
    }
    out
}

/// Where the step that decided an explanation is: the last one that is not the engine's own
/// summary (rule `H`).
fn decisive(steps: &[Step]) -> Option<usize> {
    steps.iter().rposition(|s| s.rule != "H")
}

impl FlowResult {
    /// The step of its explanation that decided the outcome (what `--explain` shows last and
    /// the table's CAUSE column; the one step kept when only the cause is kept).
    pub fn cause(&self) -> Option<&Step> {
        decisive(&self.explanation).and_then(|i| self.explanation.get(i))
    }
}

/// The part of an explanation a report keeps: all of it, or the step that decided
/// ([`FlowResult::cause`]).
///
/// A report holds tens of thousands of them: they are trimmed to their length (a vector
/// grown step by step has up to twice the room it needs).
fn keep(mut steps: Vec<Step>, explanations: Explanations) -> Vec<Step> {
    if let Explanations::Cause = explanations {
        steps = match decisive(&steps) {
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
