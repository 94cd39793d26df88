//! The flow catalog: every connection KFP needs, as data the project owns
//! (`catalog/flows.yaml`, embedded at build time), parsed into typed structures, validated, and
//! resolved against an inventory (roles → workloads and Services, port names → numbers).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;

use kfp_mesh_core::explain::Step;
use kfp_mesh_core::inventory::{Inventory, Service, Workload};
use kfp_mesh_core::model::IntOrString;
use kfp_mesh_core::object::Cited;
use serde::{Deserialize, Serialize};

use crate::clients::{self, Configured};

use crate::detect::{self, KfpFacts, Mode, ObjectStore, Version};

/// The catalog text, as shipped.
pub const FLOWS_YAML: &str = include_str!("../catalog/flows.yaml");

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleKind {
    /// A Deployment/StatefulSet of the install.
    Workload,
    /// A pod Argo creates for every run (driver, executor, importer).
    RunPod,
    /// A caller or server outside the mesh (kube-apiserver, kubelet).
    External,
}

/// Where a workload role lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleNamespace {
    /// The KFP namespace.
    #[default]
    Kfp,
    /// Each profile namespace (multi-user).
    Profile,
    /// Istio's namespace (the ingress gateway).
    IstioSystem,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RoleDef {
    pub name: String,
    pub kind: RoleKind,
    #[serde(default)]
    pub namespace: RoleNamespace,
    /// Candidate workload names, first found wins.
    #[serde(default)]
    pub workloads: Vec<String>,
    /// Expected identities (empty: any).
    #[serde(default)]
    pub service_accounts: Vec<String>,
    /// Candidate Services when the role is a destination.
    #[serde(default)]
    pub services: Vec<String>,
    /// Argo templates of a run-pod role.
    #[serde(default)]
    pub run_pods: Vec<String>,
}

/// A Service port by name or number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(s) => f.write_str(s),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    Http,
    Grpc,
    Tcp,
    /// TLS the application terminates itself (webhooks): the mesh sees opaque TCP.
    HttpsAppTls,
    /// HTTPS to a server outside the mesh (kube-apiserver).
    Https,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::Tcp => "tcp",
            Protocol::HttpsAppTls => "https-app-tls",
            Protocol::Https => "https",
        }
    }
    /// Whether the mesh sees HTTP requests (so L7 authorization attributes apply).
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Grpc)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestSpec {
    pub method: Option<String>,
    pub path: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// In multi-user mode the request carries the user-id header (`kubeflow-userid`) with the
    /// profile owner's identity; see [`request_headers`].
    #[serde(default)]
    pub user_id_header: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SourceSpec {
    pub role: String,
    /// The container making the call (`wait` for Argo's log upload, init containers for waits).
    pub container: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DestinationSpec {
    pub role: String,
    pub port: PortRef,
}

/// Install features a flow depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Feature {
    CacheWebhook,
    CacheDeployer,
    K8sNative,
    IngressGateway,
    ArtifactProxy,
    KfpProfileController,
    Seaweedfs,
}

impl Feature {
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::CacheWebhook => "cache-webhook",
            Feature::CacheDeployer => "cache-deployer",
            Feature::K8sNative => "k8s-native",
            Feature::IngressGateway => "ingress-gateway",
            Feature::ArtifactProxy => "artifact-proxy",
            Feature::KfpProfileController => "kfp-profile-controller",
            Feature::Seaweedfs => "seaweedfs",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Flow {
    pub id: String,
    pub source: SourceSpec,
    pub destination: DestinationSpec,
    pub protocol: Protocol,
    #[serde(default)]
    pub request: Option<RequestSpec>,
    pub why: String,
    /// First KFP version with this flow.
    pub since: Option<Version>,
    /// First KFP version without it (exclusive).
    #[serde(default)]
    pub until: Option<Version>,
    pub modes: Vec<Mode>,
    #[serde(default)]
    pub requires: Vec<Feature>,
    pub required: bool,
    /// The caller only opens a TCP connection and closes it (`nc -z` in KFP 2.17's
    /// `wait-for-*` init containers): what matters is what that probe observes.
    #[serde(default)]
    pub connect_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub roles: Vec<RoleDef>,
    pub flows: Vec<Flow>,
}

impl Catalog {
    pub fn role(&self, name: &str) -> Option<&RoleDef> {
        self.roles.iter().find(|r| r.name == name)
    }
    pub fn flow(&self, id: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.id == id)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("flow catalog is not valid YAML for its schema: {0}")]
    Parse(String),
    #[error("flow catalog is inconsistent: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// Parse and validate a catalog text.
pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
    let c: Catalog =
        serde_saphyr::from_str(text).map_err(|e| CatalogError::Parse(e.to_string()))?;
    let problems = validate(&c);
    if problems.is_empty() {
        Ok(c)
    } else {
        Err(CatalogError::Invalid(problems))
    }
}

/// The shipped catalog, parsed once.
pub fn load() -> Result<&'static Catalog, CatalogError> {
    static CATALOG: OnceLock<Result<Catalog, CatalogError>> = OnceLock::new();
    CATALOG
        .get_or_init(|| parse(FLOWS_YAML))
        .as_ref()
        .map_err(Clone::clone)
}

/// The shipped flows.
pub fn catalog() -> Result<Vec<Flow>, CatalogError> {
    load().map(|c| c.flows.clone())
}

/// Consistency problems: duplicate ids or roles, unknown roles, since after until, roles of
/// the wrong kind, destinations without Services, no modes.
pub fn validate(c: &Catalog) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for r in &c.roles {
        if !names.insert(r.name.as_str()) {
            problems.push(format!("role {} defined twice", r.name));
        }
        match r.kind {
            RoleKind::Workload if r.workloads.is_empty() => {
                problems.push(format!("workload role {} names no workload", r.name))
            }
            RoleKind::RunPod if r.run_pods.is_empty() => {
                problems.push(format!("run-pod role {} names no template", r.name))
            }
            _ => {}
        }
    }
    let mut ids = BTreeSet::new();
    for f in &c.flows {
        if !ids.insert(f.id.as_str()) {
            problems.push(format!("flow id {} used twice", f.id));
        }
        if f.id.is_empty()
            || !f
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            problems.push(format!("flow id {:?} is not lower-case kebab", f.id));
        }
        if c.role(&f.source.role).is_none() {
            problems.push(format!(
                "flow {}: unknown source role {}",
                f.id, f.source.role
            ));
        }
        match c.role(&f.destination.role) {
            None => problems.push(format!(
                "flow {}: unknown destination role {}",
                f.id, f.destination.role
            )),
            Some(r) if r.services.is_empty() => problems.push(format!(
                "flow {}: destination role {} has no Service",
                f.id, f.destination.role
            )),
            Some(r) if r.kind == RoleKind::RunPod => problems.push(format!(
                "flow {}: run pods serve nothing ({})",
                f.id, r.name
            )),
            Some(_) => {}
        }
        if let (Some(s), Some(u)) = (f.since, f.until)
            && s >= u
        {
            problems.push(format!("flow {}: since {s} is not before until {u}", f.id));
        }
        if f.modes.is_empty() {
            problems.push(format!("flow {}: no modes", f.id));
        }
        if f.why.trim().is_empty() {
            problems.push(format!("flow {}: no why", f.id));
        }
    }
    problems
}

fn has_feature(facts: &KfpFacts, f: Feature) -> bool {
    match f {
        Feature::CacheWebhook => facts.cache_webhook.is_some(),
        Feature::CacheDeployer => facts
            .cache_webhook
            .as_ref()
            .is_some_and(|c| c.created_by.is_some()),
        Feature::K8sNative => facts.k8s_native.is_some(),
        Feature::IngressGateway => facts.ingress_gateway.is_some(),
        Feature::ArtifactProxy => facts.artifact_proxy.value,
        Feature::KfpProfileController => facts.kfp_profile_controller.is_some(),
        Feature::Seaweedfs => facts
            .object_store
            .as_ref()
            .is_some_and(|o| o.kind == ObjectStore::Seaweedfs),
    }
}

/// Whether a flow applies to this install; `Err` says why not. An unknown KFP version passes
/// the version test (the flow is then judged by what the input contains).
pub fn applicable(flow: &Flow, facts: &KfpFacts) -> Result<(), String> {
    if !facts.detected {
        return Err("no KFP install in the input".to_string());
    }
    let mode = facts.mode.value;
    if !flow.modes.contains(&mode) {
        return Err(format!(
            "only in {} mode; this install is {mode}",
            flow.modes
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join("/")
        ));
    }
    if let Some(v) = facts.version.effective {
        if let Some(since) = flow.since
            && v < since
        {
            return Err(format!(
                "since KFP {since}; this install is {}",
                facts.version.display
            ));
        }
        if let Some(until) = flow.until
            && v >= until
        {
            return Err(format!(
                "gone in KFP {until}; this install is {}",
                facts.version.display
            ));
        }
    }
    for f in &flow.requires {
        if !has_feature(facts, *f) {
            return Err(format!("needs {} and this install has none", f.as_str()));
        }
    }
    Ok(())
}

/// The applicable flows, in catalog order.
pub fn applicable_flows<'a>(flows: &'a [Flow], facts: &KfpFacts) -> Vec<&'a Flow> {
    flows
        .iter()
        .filter(|f| applicable(f, facts).is_ok())
        .collect()
}

/// Request headers of a flow for one instance: the catalog's headers plus, in multi-user mode
/// when the flow says so, the user-id header with the profile owner (or the example user).
pub fn request_headers(
    flow: &Flow,
    facts: &KfpFacts,
    profile: Option<&str>,
) -> BTreeMap<String, String> {
    let Some(req) = &flow.request else {
        return BTreeMap::new();
    };
    let mut h = req.headers.clone();
    if req.user_id_header && facts.mode.value.is_multi_user() {
        let owner = profile
            .and_then(|p| facts.profile(p))
            .or_else(|| facts.profiles.first())
            .and_then(|p| p.owner.clone())
            .unwrap_or_else(|| crate::detect::EXAMPLE_PROFILE_OWNER.to_string());
        h.insert(
            facts.userid_header.clone(),
            kfp_mesh_core::text!("{}{owner}", facts.userid_prefix),
        );
    }
    h
}

// ---------------------------------------------------------------------------------------------
// Resolution

/// One end of a flow as found in the inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Empty for callers outside the cluster's pods (kube-apiserver, kubelet).
    pub namespace: Option<String>,
    pub workload: String,
    pub kind: String,
    pub service_account: Option<String>,
    /// The identities the catalog expects (empty: any).
    pub expected_service_accounts: Vec<String>,
    pub container: Option<String>,
    pub synthetic: bool,
    pub external: bool,
}

impl Endpoint {
    /// The workload runs with an identity the catalog does not expect.
    pub fn unexpected_identity(&self) -> bool {
        !self.expected_service_accounts.is_empty()
            && self
                .service_account
                .as_ref()
                .is_some_and(|sa| !self.expected_service_accounts.contains(sa))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub namespace: String,
    pub service: String,
    pub port: u16,
    pub port_name: Option<String>,
    pub target_port: Option<IntOrString>,
    /// Workloads the Service selects.
    pub endpoints: Vec<String>,
    pub external: bool,
}

/// A flow instance resolved against the inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedFlow<'a> {
    #[serde(skip)]
    pub flow: &'a Flow,
    pub id: &'a str,
    /// The profile namespace of this instance (multi-user flows with a profile side).
    pub profile: Option<String>,
    pub sources: Vec<Endpoint>,
    pub destination: Destination,
    pub headers: BTreeMap<String, String>,
    /// How the destination was found: the client's configuration, or the catalog's default.
    #[serde(skip)]
    pub resolution: Step,
}

/// Why a catalog flow that applies has no verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnresolvedKind {
    /// Its caller or server is not part of the input at all (a partial render).
    NotInInput,
    /// Both are there but the connection cannot be placed: a Service without the port, a
    /// `targetPort` no container declares, a selector matching nothing, a configured host no
    /// Service provides.
    CouldNotResolve,
    /// The connection leaves the mesh (kube-apiserver); kfp-mesh does not evaluate it.
    OutsideMesh,
}

impl UnresolvedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnresolvedKind::NotInInput => "not in the input",
            UnresolvedKind::CouldNotResolve => "could not resolve",
            UnresolvedKind::OutsideMesh => "outside the mesh",
        }
    }
}

/// A flow instance that could not be resolved, with the reason and the object to look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveError {
    pub kind: UnresolvedKind,
    pub reason: String,
    pub object: Option<Cited>,
    /// The client's configuration names a host that no Service in the input provides.
    pub configured: Option<Box<Configured>>,
}

impl ResolveError {
    fn new(kind: UnresolvedKind, reason: impl Into<String>) -> Self {
        ResolveError {
            kind,
            reason: reason.into(),
            object: None,
            configured: None,
        }
    }
    fn about(mut self, object: Option<Cited>) -> Self {
        self.object = object;
        self
    }
}

/// Resolve a flow against an inventory that already holds the synthesised run pods (and, for
/// a synthetic example profile, its objects). One result per instance: per profile namespace
/// when a side lives in profiles (or run pods in multi-user mode), else one.
pub fn resolve<'a>(
    catalog: &Catalog,
    flow: &'a Flow,
    inv: &Inventory,
    facts: &KfpFacts,
) -> Vec<(Option<String>, Result<ResolvedFlow<'a>, ResolveError>)> {
    let (Some(src_role), Some(dst_role)) = (
        catalog.role(&flow.source.role),
        catalog.role(&flow.destination.role),
    ) else {
        return vec![(
            None,
            Err(ResolveError::new(
                UnresolvedKind::CouldNotResolve,
                "the catalog names an unknown role",
            )),
        )];
    };
    let per_profile = |r: &RoleDef| {
        r.namespace == RoleNamespace::Profile
            || (r.kind == RoleKind::RunPod && facts.mode.value.is_multi_user())
    };
    let instances: Vec<Option<String>> = if per_profile(src_role) || per_profile(dst_role) {
        facts
            .profiles
            .iter()
            .map(|p| Some(p.name.clone()))
            .collect()
    } else {
        vec![None]
    };
    if instances.is_empty() {
        return vec![(
            None,
            Err(ResolveError::new(
                UnresolvedKind::NotInInput,
                "no profile namespace to run it in (name one with --profile)",
            )),
        )];
    }
    instances
        .into_iter()
        .map(|profile| {
            let resolved = (|| {
                let (sources, source_workload) =
                    resolve_source(src_role, flow, inv, facts, profile.as_deref())?;
                let configured = clients::configured(inv, facts, flow, source_workload);
                let client_ns = sources.first().and_then(|s| s.namespace.clone());
                let (destination, resolution) = resolve_destination(
                    dst_role,
                    &flow.destination.port,
                    inv,
                    facts,
                    profile.as_deref(),
                    configured,
                    client_ns.as_deref(),
                )?;
                Ok(ResolvedFlow {
                    flow,
                    id: &flow.id,
                    headers: request_headers(flow, facts, profile.as_deref()),
                    profile: profile.clone(),
                    sources,
                    destination,
                    resolution,
                })
            })();
            (profile, resolved)
        })
        .collect()
}

fn role_namespace(r: &RoleDef, facts: &KfpFacts, profile: Option<&str>) -> Option<String> {
    match r.namespace {
        RoleNamespace::Kfp => Some(facts.kfp_namespace().to_string()),
        RoleNamespace::Profile => profile.map(str::to_string),
        RoleNamespace::IstioSystem => Some(
            facts
                .ingress_gateway
                .as_ref()
                .map(|g| g.namespace.clone())
                .unwrap_or_else(|| "istio-system".to_string()),
        ),
    }
}

/// The template a run pod (Argo POD_NAMES v2: `<workflow>-<template>-<hash>`) was made from.
pub fn run_pod_template<'t>(name: &str, templates: &'t [String]) -> Option<&'t str> {
    let (rest, hash) = name.rsplit_once('-')?;
    if hash.is_empty() || !hash.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    templates
        .iter()
        .find(|t| {
            rest.strip_suffix(t.as_str())
                .is_some_and(|p| p.ends_with('-'))
        })
        .map(String::as_str)
}

fn endpoint_of(w: &Workload, expected: &[String], container: Option<&str>) -> Endpoint {
    Endpoint {
        namespace: Some(w.namespace.clone()),
        workload: w.name.clone(),
        kind: w.kind.clone(),
        service_account: Some(w.service_account().to_string()),
        expected_service_accounts: expected.to_vec(),
        container: container.map(str::to_string),
        synthetic: w.synthetic,
        external: false,
    }
}

fn find_role_workload<'i>(
    r: &RoleDef,
    inv: &'i Inventory,
    ns: &str,
    facts: &KfpFacts,
) -> Option<&'i Workload> {
    if r.name == "object-store"
        && let Some(svc) = facts
            .object_store
            .as_ref()
            .and_then(|o| inv.service(ns, &o.service))
        && let Some(w) = inv.service_endpoints(svc).into_iter().next()
    {
        return Some(w);
    }
    if r.namespace == RoleNamespace::IstioSystem
        && let Some(g) = &facts.ingress_gateway
    {
        return inv.workload(&g.namespace, &g.workload);
    }
    r.workloads.iter().find_map(|n| inv.workload(ns, n))
}

fn resolve_source<'i>(
    r: &RoleDef,
    flow: &Flow,
    inv: &'i Inventory,
    facts: &KfpFacts,
    profile: Option<&str>,
) -> Result<(Vec<Endpoint>, Option<&'i Workload>), ResolveError> {
    let container = flow.source.container.as_deref();
    match r.kind {
        RoleKind::External => Ok((
            vec![Endpoint {
                namespace: None,
                workload: r.name.clone(),
                kind: "external".to_string(),
                service_account: None,
                expected_service_accounts: Vec::new(),
                container: None,
                synthetic: false,
                external: true,
            }],
            None,
        )),
        RoleKind::RunPod => {
            let ns = profile
                .map(str::to_string)
                .unwrap_or_else(|| facts.kfp_namespace().to_string());
            let expected = vec![facts.run_service_account.value.clone()];
            // The modelled run pods stand for every run; pods of past runs in the input are
            // only used when no model exists (they would repeat the same verdicts).
            let run_pod =
                |w: &&Workload| w.kind == "Pod" && run_pod_template(&w.name, &r.run_pods).is_some();
            let mut kept: Vec<&Workload> =
                inv.synthetic_workloads_in(&ns).filter(run_pod).collect();
            if kept.is_empty() {
                kept = inv.workloads_in(&ns).filter(run_pod).collect();
            }
            kept.sort_by(|a, b| a.name.cmp(&b.name));
            let found: Vec<Endpoint> = kept
                .iter()
                .map(|w| endpoint_of(w, &expected, container))
                .collect();
            if found.is_empty() {
                Err(ResolveError::new(
                    UnresolvedKind::NotInInput,
                    kfp_mesh_core::text!("no {} run pod in {ns}", r.name),
                ))
            } else {
                Ok((found, kept.first().copied()))
            }
        }
        RoleKind::Workload => {
            let ns = role_namespace(r, facts, profile).ok_or_else(|| {
                ResolveError::new(
                    UnresolvedKind::NotInInput,
                    kfp_mesh_core::text!("role {} needs a profile namespace", r.name),
                )
            })?;
            let w = find_role_workload(r, inv, &ns, facts).ok_or_else(|| {
                ResolveError::new(
                    UnresolvedKind::NotInInput,
                    kfp_mesh_core::text!(
                        "the caller is not in the input: no {} workload ({}) in {ns}",
                        r.name,
                        r.workloads.join(", ")
                    ),
                )
            })?;
            if let Some(c) = container
                && detect::workload_object(inv, w)
                    .is_some_and(|o| detect::containers_json(o, Some(c)).is_empty())
            {
                return Err(ResolveError::new(
                    UnresolvedKind::NotInInput,
                    kfp_mesh_core::text!("{} has no container `{c}`", w.object_ref()),
                )
                .about(Some(w.cite())));
            }
            Ok((
                vec![endpoint_of(w, &r.service_accounts, container)],
                Some(w),
            ))
        }
    }
}

fn resolve_destination(
    r: &RoleDef,
    port: &PortRef,
    inv: &Inventory,
    facts: &KfpFacts,
    profile: Option<&str>,
    configured: Option<Configured>,
    client_ns: Option<&str>,
) -> Result<(Destination, Step), ResolveError> {
    if r.kind == RoleKind::External {
        let n = match port {
            PortRef::Number(n) => *n,
            PortRef::Name(_) => 443,
        };
        let service = r
            .services
            .first()
            .cloned()
            .unwrap_or_else(|| r.name.clone());
        return Ok((
            Destination {
                namespace: "default".to_string(),
                service,
                port: n,
                port_name: Some("https".to_string()),
                target_port: None,
                endpoints: Vec::new(),
                external: true,
            },
            Step::new(
                "KFP",
                kfp_mesh_core::text!("{} is outside the mesh", r.name),
            ),
        ));
    }
    let role_ns = role_namespace(r, facts, profile).ok_or_else(|| {
        ResolveError::new(
            UnresolvedKind::NotInInput,
            kfp_mesh_core::text!("role {} needs a profile namespace", r.name),
        )
    })?;
    // A port the client's configuration names must exist as written.
    let mut exact = false;
    let (svc, wanted, resolution): (&Service, PortRef, Step) = match configured {
        Some(c) => {
            // A short name resolves in the client's namespace, as DNS search paths do.
            let ns = c
                .namespace
                .clone()
                .or_else(|| client_ns.map(str::to_string))
                .unwrap_or_else(|| role_ns.clone());
            let Some(svc) = inv.service(&ns, &c.service) else {
                let reason = kfp_mesh_core::text!(
                    "the client is configured to reach `{}` ({}) but no Service {ns}/{} is in the input: the connection fails in the cluster too (no DNS name)",
                    c.text,
                    c.evidence.detail,
                    c.service
                );
                let mut e = ResolveError::new(UnresolvedKind::CouldNotResolve, reason)
                    .about(c.evidence.cite());
                e.configured = Some(Box::new(c));
                return Err(e);
            };
            exact = c.port.is_some();
            let wanted = c.port.map_or_else(|| port.clone(), PortRef::Number);
            let step = Step::new(
                "KFP",
                kfp_mesh_core::text!(
                    "destination as the client is configured: `{}` ({}) is Service {ns}/{}",
                    c.text,
                    c.evidence.detail,
                    svc.name()
                ),
            )
            .by_all(c.evidence.cite());
            (svc, wanted, step)
        }
        None => {
            let preferred: Option<String> = match r.name.as_str() {
                "object-store" => facts.object_store.as_ref().map(|o| o.service.clone()),
                "database" => facts.database.as_ref().and_then(|d| d.service.clone()),
                _ => None,
            };
            let candidates: Vec<&Service> = preferred
                .iter()
                .chain(r.services.iter())
                .filter_map(|n| inv.service(&role_ns, n))
                .collect();
            let Some(first) = candidates.first().copied() else {
                return Err(ResolveError::new(
                    UnresolvedKind::NotInInput,
                    kfp_mesh_core::text!(
                        "the server is not in the input: no {} Service ({}) in {role_ns}",
                        r.name,
                        r.services.join(", ")
                    ),
                ));
            };
            // The first candidate that has the port (2.15 serves the object store's S3 port
            // 9000 through the alias Service `minio-service`, not through `seaweedfs`).
            let svc = candidates
                .iter()
                .copied()
                .find(|s| service_port(inv, r, s, port, false).is_some())
                .unwrap_or(first);
            let step = Step::new(
                "KFP",
                kfp_mesh_core::text!(
                    "destination by the catalog's default (the client's configuration is not in the input, so its built-in default is assumed): Service {role_ns}/{} port {port}",
                    svc.name()
                ),
            )
            .by(svc.cite());
            (svc, port.clone(), step)
        }
    };
    let ns = svc.namespace().to_string();
    let sp = service_port(inv, r, svc, &wanted, exact).ok_or_else(|| {
        let known: Vec<String> = svc
            .spec
            .ports
            .iter()
            .map(|p| match &p.name {
                Some(n) => kfp_mesh_core::text!("{} ({n})", p.port),
                None => p.port.to_string(),
            })
            .collect();
        ResolveError::new(
            UnresolvedKind::CouldNotResolve,
            kfp_mesh_core::text!(
                "Service {ns}/{} has no port {wanted} (its ports: {})",
                svc.name(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        )
        .about(Some(svc.cite()))
    })?;
    let number = u16::try_from(sp.port).map_err(|_| {
        ResolveError::new(
            UnresolvedKind::CouldNotResolve,
            kfp_mesh_core::text!(
                "Service {ns}/{} port {} is out of range",
                svc.name(),
                sp.port
            ),
        )
        .about(Some(svc.cite()))
    })?;
    let backends = inv.service_endpoints(svc);
    if backends.is_empty() {
        return Err(ResolveError::new(
            UnresolvedKind::CouldNotResolve,
            kfp_mesh_core::text!(
                "Service {ns}/{} selects no workload in the input (selector {})",
                svc.name(),
                svc.spec
                    .selector
                    .as_ref()
                    .map(|m| m
                        .iter()
                        .map(|(k, v)| kfp_mesh_core::text!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_else(|| "none".to_string())
            ),
        )
        .about(Some(svc.cite())));
    }
    if let Some(IntOrString::String(name)) = &sp.target_port
        && name.parse::<u16>().is_err()
        && backends.iter().all(|w| w.port_by_name(name).is_none())
    {
        return Err(ResolveError::new(
            UnresolvedKind::CouldNotResolve,
            kfp_mesh_core::text!(
                "Service {ns}/{} port {number} has targetPort `{name}`, which no container of {} declares: the Service has no endpoint on that port",
                svc.name(),
                backends
                    .iter()
                    .map(|w| w.object_ref().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .about(Some(svc.cite())));
    }
    Ok((
        Destination {
            namespace: ns,
            service: svc.name().to_string(),
            port: number,
            port_name: sp.name.clone(),
            target_port: sp.target_port.clone(),
            endpoints: backends.iter().map(|w| w.name.clone()).collect(),
            external: false,
        },
        resolution,
    ))
}

/// The port of `svc` a flow names (by number or name). Unless `exact`, a database Service
/// with one port is that port (the catalog's 3306 stands for PostgreSQL's own port too).
fn service_port<'s>(
    inv: &Inventory,
    r: &RoleDef,
    svc: &'s Service,
    port: &PortRef,
    exact: bool,
) -> Option<&'s kfp_mesh_core::model::ServicePort> {
    match port {
        PortRef::Number(n) => svc
            .spec
            .ports
            .iter()
            .find(|p| p.port == i64::from(*n))
            .or_else(|| {
                (!exact && r.name == "database" && svc.spec.ports.len() == 1)
                    .then(|| svc.spec.ports.first())
                    .flatten()
            }),
        PortRef::Name(name) => svc
            .spec
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .or_else(|| {
                // The Service port renamed (KFP's standalone-TLS env names the API server's
                // port `tls`): the one that leads to the container port of that name.
                let backends = inv.service_endpoints(svc);
                svc.spec.ports.iter().find(|p| {
                    backends.iter().any(|w| {
                        w.port_by_name(name)
                            .is_some_and(|n| w.target_port(p) == Some(n))
                    })
                })
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_catalog_parses_and_validates() {
        let c = match load() {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert!(c.flows.len() >= 50, "{} flows", c.flows.len());
        assert!(validate(c).is_empty());
    }

    #[test]
    fn validation_catches_mistakes() {
        let text = r#"
roles:
  - {name: a, kind: workload, workloads: [x], services: [x]}
  - {name: a, kind: external}
flows:
  - {id: f, source: {role: a}, destination: {role: b, port: 1}, protocol: tcp, why: w, since: "2.5.0", until: "2.5.0", modes: [single-user], required: true}
  - {id: f, source: {role: nope}, destination: {role: a, port: http}, protocol: tcp, why: w, since: "2.0.0", modes: [], required: true}
"#;
        let Err(CatalogError::Invalid(problems)) = parse(text) else {
            panic!("accepted a broken catalog");
        };
        let all = problems.join("\n");
        for needle in [
            "role a defined twice",
            "flow id f used twice",
            "unknown destination role b",
            "unknown source role nope",
            "since 2.5.0 is not before until 2.5.0",
            "no modes",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in\n{all}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = "roles: []\nflows:\n  - {id: f, sauce: {role: a}}\n";
        assert!(matches!(parse(text), Err(CatalogError::Parse(_))));
    }

    #[test]
    fn run_pod_names() {
        let t = vec![
            "system-dag-driver".to_string(),
            "system-container-driver".to_string(),
        ];
        assert_eq!(
            run_pod_template("run-abc-system-dag-driver-1234", &t),
            Some("system-dag-driver")
        );
        assert_eq!(
            run_pod_template("run-system-container-driver-9", &t),
            Some("system-container-driver")
        );
        assert_eq!(run_pod_template("run-system-container-impl-9", &t), None);
        assert_eq!(run_pod_template("system-dag-driver-1", &t), None);
        assert_eq!(run_pod_template("run-system-dag-driver-x1", &t), None);
    }
}
