//! KFP detection: which Kubeflow Pipelines install the input holds (namespace, version, mode,
//! database, object store, webhooks, ingress gateway, profile namespaces), each fact with the
//! objects that established it so findings can cite them.
//!
//! Pure: reads an [`Inventory`], returns [`KfpFacts`]. Nothing here panics on odd input; a
//! fact that cannot be established is `None` (or a documented default with a built-in origin).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use kfp_mesh_core::inventory::{Inventory, Workload};
use kfp_mesh_core::model::IntOrString;
use kfp_mesh_core::object::{Cited, Object, ObjectRef, Origin};
use serde::{Serialize, Serializer};
use serde_json::Value;

/// Where the KFP layer looks for things when the input does not say.
pub const DEFAULT_KFP_NAMESPACE: &str = "kubeflow";
/// Name of the example profile namespace modelled when a multi-user install names none.
pub const EXAMPLE_PROFILE: &str = "kubeflow-user-example-com";
/// Owner of the example profile (Kubeflow's `user@example.com` default user).
pub const EXAMPLE_PROFILE_OWNER: &str = "user@example.com";
/// Label the Kubeflow profile controller (via its namespace-labels file) puts on profile
/// namespaces, and that KFP's profile controller watches.
pub const PIPELINES_ENABLED_LABEL: &str = "pipelines.kubeflow.org/enabled";
/// Keys KFP's `pipeline-install-config` and API server use for admin driver-pod metadata.
pub const DRIVER_POD_LABELS: &str = "DRIVER_POD_LABELS";
pub const DRIVER_POD_ANNOTATIONS: &str = "DRIVER_POD_ANNOTATIONS";

/// Caller's overrides (`--kfp-namespace`, `--profile`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetectOptions {
    pub kfp_namespace: Option<String>,
    pub profiles: Vec<String>,
}

/// Why a fact holds: the object (when one) and its place, plus a one-line reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evidence {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    pub origin: Origin,
    pub detail: String,
}

impl Evidence {
    pub fn of_object(o: &Object, detail: impl Into<String>) -> Self {
        Evidence {
            object: Some(o.object_ref()),
            origin: o.origin.clone(),
            detail: detail.into(),
        }
    }
    pub fn of_workload(w: &Workload, detail: impl Into<String>) -> Self {
        Evidence {
            object: Some(w.object_ref()),
            origin: w.origin.clone(),
            detail: detail.into(),
        }
    }
    pub fn of_cited(c: &Cited, detail: impl Into<String>) -> Self {
        Evidence {
            object: Some(c.object.clone()),
            origin: c.origin.clone(),
            detail: detail.into(),
        }
    }
    /// A fact kfp-mesh assumes (a default, an option): no object, a built-in origin.
    pub fn builtin(what: &str, detail: impl Into<String>) -> Self {
        Evidence {
            object: None,
            origin: Origin::builtin(what),
            detail: detail.into(),
        }
    }
    /// The object and place, for findings (`None` for assumptions).
    pub fn cite(&self) -> Option<Cited> {
        self.object
            .as_ref()
            .map(|o| Cited::new(o.clone(), self.origin.clone()))
    }
}

/// A value and the evidence for it, strongest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fact<T> {
    pub value: T,
    pub evidence: Vec<Evidence>,
}

impl<T> Fact<T> {
    fn new(value: T, evidence: Evidence) -> Self {
        Fact {
            value,
            evidence: vec![evidence],
        }
    }
}

/// A KFP release number (`2.5.0`). Pre-release and build suffixes are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// `2.5.0`, `v2.5.0`, `2.17.0-rc.1`, `2.5` → a version; `latest`, digests → `None`.
    pub fn parse(text: &str) -> Option<Version> {
        let t = text.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        let core = t.split(['-', '+']).next().unwrap_or(t);
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Version::new(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Version::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not a KFP version: {text:?}")))
    }
}

/// The newest release without `DRIVER_POD_*`; a render that has them is newer ("master").
pub const LAST_RELEASE_WITHOUT_DRIVER_POD_CONFIG: Version = Version::new(2, 17, 99);
/// The version kfp-mesh uses for master renders (DRIVER_POD_* present on 2.17.0 images).
pub const MASTER: Version = Version::new(2, 18, 0);

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionFacts {
    /// The release the images (or `appVersion`) name.
    pub release: Option<Version>,
    /// `DRIVER_POD_LABELS`/`DRIVER_POD_ANNOTATIONS` present: master / 2.18+ behaviour.
    pub master_features: bool,
    /// The version behaviour is judged by: `release`, or [`MASTER`] when master features are
    /// present on a release that does not have them. `None` when unknown.
    pub effective: Option<Version>,
    /// For people: `2.5.0`, `master (2.17.0 images, DRIVER_POD_* present)`, `unknown`.
    pub display: String,
    pub evidence: Vec<Evidence>,
}

impl VersionFacts {
    /// Whether the detected version is at least `v`; `None` when the version is unknown.
    pub fn at_least(&self, v: Version) -> Option<bool> {
        self.effective.map(|e| e >= v)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    SingleUser,
    MultiUser,
    /// Multi-user KFP inside the Kubeflow platform (profiles, dashboard, Istio gateway).
    Platform,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::SingleUser => "single-user",
            Mode::MultiUser => "multi-user",
            Mode::Platform => "platform",
        }
    }
    /// Runs execute in profile namespaces.
    pub fn is_multi_user(self) -> bool {
        !matches!(self, Mode::SingleUser)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Database {
    Mysql,
    Postgresql,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseFacts {
    pub kind: Database,
    /// The Service in the KFP namespace, when the input has it.
    pub service: Option<String>,
    pub port: u16,
    pub evidence: Vec<Evidence>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectStore {
    Minio,
    Seaweedfs,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreFacts {
    pub kind: ObjectStore,
    /// The Service clients use (`minio-service` or `seaweedfs`).
    pub service: String,
    /// The S3 port clients call (9000 for both).
    pub port: u16,
    pub port_name: Option<String>,
    /// Where the port leads (SeaweedFS: 9000 → 8333).
    pub target_port: Option<IntOrString>,
    /// Other Services that select the same pods (2.15's `minio-service` alias of SeaweedFS).
    pub aliases: Vec<String>,
    /// `artifactRepository.s3.endpoint` of `workflow-controller-configmap` (Argo's log upload).
    pub argo_artifact_endpoint: Option<String>,
    pub evidence: Vec<Evidence>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheWebhookFacts {
    pub service: String,
    pub port: u16,
    pub target_port: Option<IntOrString>,
    /// The MutatingWebhookConfiguration in the input (cert-manager variants).
    pub configuration: Option<Cited>,
    /// The cache-deployer that creates `cache-webhook-<ns>` at run time (plain variants).
    pub created_by: Option<Cited>,
    pub failure_policy: Option<String>,
    pub evidence: Vec<Evidence>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct K8sNativeFacts {
    pub service: String,
    pub port: u16,
    /// The PipelineVersion Mutating/ValidatingWebhookConfigurations.
    pub configurations: Vec<Cited>,
    pub failure_policy: Option<String>,
    pub evidence: Vec<Evidence>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressGatewayFacts {
    pub namespace: String,
    pub workload: String,
    pub kind: String,
    pub service_account: String,
    pub service: Option<String>,
    pub evidence: Vec<Evidence>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileFacts {
    pub name: String,
    /// Not in the input: the example profile kfp-mesh models.
    pub synthetic: bool,
    /// The Namespace object is in the input.
    pub namespace_in_input: bool,
    pub owner: Option<String>,
    /// Namespace labels (from the input, or as the profile controller sets them).
    pub labels: BTreeMap<String, String>,
    pub evidence: Vec<Evidence>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverPodConfig {
    /// This KFP version reads `DRIVER_POD_LABELS`/`DRIVER_POD_ANNOTATIONS`.
    pub supported: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Values the API server would refuse (it then fails to start).
    pub errors: Vec<String>,
    pub evidence: Vec<Evidence>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageFacts {
    pub driver: Fact<String>,
    pub launcher: Fact<String>,
    pub argoexec: Fact<String>,
}

/// Everything the KFP layer knows about the install in the input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KfpFacts {
    /// Any KFP object was found (the API server, its Service or `pipeline-install-config`).
    pub detected: bool,
    pub namespace: Fact<String>,
    pub version: VersionFacts,
    pub mode: Fact<Mode>,
    pub api_server: Option<Cited>,
    pub database: Option<DatabaseFacts>,
    pub object_store: Option<ObjectStoreFacts>,
    pub cache_webhook: Option<CacheWebhookFacts>,
    pub k8s_native: Option<K8sNativeFacts>,
    pub ingress_gateway: Option<IngressGatewayFacts>,
    /// KFP's own profile controller (multi-user), which decorates profile namespaces.
    pub kfp_profile_controller: Option<Cited>,
    /// The per-namespace artifact proxy (`ml-pipeline-ui-artifact`) is created in profiles.
    pub artifact_proxy: Fact<bool>,
    /// In the order of their names (see [`KfpFacts::profile`]).
    pub profiles: Vec<ProfileFacts>,
    /// Service account of run pods (`pipeline-runner` / `default-editor`).
    pub run_service_account: Fact<String>,
    pub driver_pod_config: DriverPodConfig,
    pub images: ImageFacts,
    /// Header carrying the user identity in multi-user mode (`kubeflow-userid`).
    pub userid_header: String,
    pub userid_prefix: String,
    /// Where Argo's wait container uploads logs. Read once here: every run pod's wait
    /// container asks for it. (Not in the report: the object store's facts name the endpoint.)
    #[serde(skip)]
    pub argo_artifact_repository: Option<ArgoArtifactRepository>,
}

/// `artifactRepository.s3.endpoint` of Argo's `workflow-controller-configmap`, as written,
/// with the ConfigMap that says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgoArtifactRepository {
    pub endpoint: String,
    /// `artifactRepository.s3.endpoint=<endpoint> of <the ConfigMap>`.
    pub evidence: Evidence,
}

impl KfpFacts {
    /// Namespaces where runs (and so run pods) execute.
    pub fn run_namespaces(&self) -> Vec<String> {
        if self.mode.value.is_multi_user() {
            self.profiles.iter().map(|p| p.name.clone()).collect()
        } else {
            vec![self.namespace.value.clone()]
        }
    }
    pub fn kfp_namespace(&self) -> &str {
        &self.namespace.value
    }
    pub fn profile(&self, name: &str) -> Option<&ProfileFacts> {
        // A cluster has thousands of profiles, and this is asked for each flow of each one.
        self.profiles
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
            .and_then(|i| self.profiles.get(i))
    }
}

// ---------------------------------------------------------------------------------------------
// Look-ups on raw objects

/// The object of that kind, namespace and name.
pub(crate) fn find_object<'a>(
    inv: &'a Inventory,
    kind: &str,
    ns: &str,
    name: &str,
) -> Option<&'a Object> {
    inv.find(kind, Some(ns), name)
        .or_else(|| inv.find(kind, None, name))
}

/// The raw object a workload was read from.
pub(crate) fn workload_object<'a>(inv: &'a Inventory, w: &Workload) -> Option<&'a Object> {
    if w.synthetic {
        return None;
    }
    find_object(inv, &w.kind, &w.namespace, &w.name)
}

/// The pod spec (JSON) of a workload object.
pub(crate) fn pod_spec_json(o: &Object) -> Option<Value> {
    o.pod_spec()
}

pub(crate) fn config_map_data<'a>(
    inv: &'a Inventory,
    ns: &str,
    name: &str,
) -> Option<(&'a Object, Value)> {
    let o = find_object(inv, "ConfigMap", ns, name)?;
    Some((o, o.get("data")?))
}

/// An environment variable of a container of a workload, resolved through literal values,
/// `configMapKeyRef` and `envFrom` ConfigMaps of the same namespace.
pub(crate) fn resolve_env(inv: &Inventory, o: &Object, var: &str) -> Option<(String, Evidence)> {
    container_env(inv, o, None, var)
}

/// The containers of a workload object: the one named `container` (regular or init), or
/// every regular container when `None`.
pub(crate) fn containers_json(o: &Object, container: Option<&str>) -> Vec<Value> {
    let Some(spec) = pod_spec_json(o) else {
        return Vec::new();
    };
    let list = |key: &str| {
        spec.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    match container {
        None => list("containers"),
        Some(name) => list("containers")
            .into_iter()
            .chain(list("initContainers"))
            .filter(|c| c.get("name").and_then(Value::as_str) == Some(name))
            .collect(),
    }
}

/// [`resolve_env`] in one container (regular or init) when `container` names one.
pub(crate) fn container_env(
    inv: &Inventory,
    o: &Object,
    container: Option<&str>,
    var: &str,
) -> Option<(String, Evidence)> {
    let ns = o.meta.namespace_or_default();
    for c in &containers_json(o, container) {
        for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
            if e.get("name").and_then(Value::as_str) != Some(var) {
                continue;
            }
            if let Some(v) = e.get("value").and_then(Value::as_str) {
                return Some((
                    v.to_string(),
                    Evidence::of_object(o, format!("env {var}={v}")),
                ));
            }
            if let Some(r) = e.pointer("/valueFrom/configMapKeyRef") {
                let cm = r.get("name").and_then(Value::as_str)?;
                let key = r.get("key").and_then(Value::as_str)?;
                let (cmo, data) = config_map_data(inv, ns, cm)?;
                let v = data.get(key).and_then(Value::as_str)?;
                return Some((
                    v.to_string(),
                    Evidence::of_object(
                        cmo,
                        format!("{key}={v} (env {var} of {})", o.object_ref()),
                    ),
                ));
            }
        }
        for ef in c
            .get("envFrom")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(cm) = ef.pointer("/configMapRef/name").and_then(Value::as_str) else {
                continue;
            };
            let prefix = ef.get("prefix").and_then(Value::as_str).unwrap_or("");
            let Some(key) = var.strip_prefix(prefix) else {
                continue;
            };
            if let Some((cmo, data)) = config_map_data(inv, ns, cm)
                && let Some(v) = data.get(key).and_then(Value::as_str)
            {
                return Some((
                    v.to_string(),
                    Evidence::of_object(cmo, format!("{key}={v} (envFrom of {})", o.object_ref())),
                ));
            }
        }
    }
    None
}

/// Whether a container of the workload object declares this env var at all.
fn declares_env(o: &Object, var: &str) -> bool {
    let Some(spec) = pod_spec_json(o) else {
        return false;
    };
    spec.get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| c.get("env").and_then(Value::as_array).into_iter().flatten())
        .any(|e| e.get("name").and_then(Value::as_str) == Some(var))
}

/// Tag of an image reference (`ghcr.io/kubeflow/kfp-api-server:2.5.0` → `2.5.0`).
pub fn image_tag(image: &str) -> Option<&str> {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split_once(':').map(|(_, t)| t)
}

/// Last path element without tag or digest (`…/kfp-api-server:2.5.0` → `kfp-api-server`).
pub fn image_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

fn is_kfp_image(image: &str) -> bool {
    (image.contains("kubeflow/kfp-") || image.contains("ml-pipeline/"))
        && (image_name(image).starts_with("kfp-")
            || matches!(
                image_name(image),
                "api-server"
                    | "frontend"
                    | "persistenceagent"
                    | "scheduledworkflow"
                    | "viewer-crd-controller"
                    | "visualization-server"
                    | "cache-server"
                    | "metadata-writer"
                    | "metadata-envoy"
            ))
}

fn is_api_server_image(image: &str) -> bool {
    matches!(image_name(image), "kfp-api-server" | "api-server")
}

fn first_workload<'a>(inv: &'a Inventory, ns: &str, names: &[&str]) -> Option<&'a Workload> {
    names.iter().find_map(|n| inv.workload(ns, n))
}

// ---------------------------------------------------------------------------------------------
// Detection

/// Detect the KFP install of the inventory.
pub fn detect(inv: &Inventory, opts: &DetectOptions) -> KfpFacts {
    let namespace = detect_namespace(inv, opts);
    let ns = namespace.value.clone();
    let api = inv
        .workloads_in(&ns)
        .find(|w| w.name == "ml-pipeline" && w.kind != "Pod")
        .or_else(|| inv.workload(&ns, "ml-pipeline"));
    let api_obj = api.and_then(|w| workload_object(inv, w));
    let install_config_data = config_map_data(inv, &ns, "pipeline-install-config");
    let install_config = install_config_data.as_ref().map(|(o, data)| (*o, data));
    let detected =
        api.is_some() || inv.service(&ns, "ml-pipeline").is_some() || install_config.is_some();

    let driver_pod_config = detect_driver_pod_config(inv, api_obj, install_config);
    let version = detect_version(inv, &ns, api, install_config, &driver_pod_config);
    let kfp_profile_controller =
        first_workload(inv, &ns, &["kubeflow-pipelines-profile-controller"]);
    let mode = detect_mode(inv, api_obj, kfp_profile_controller);
    let database = detect_database(inv, &ns, api_obj, install_config);
    let argo_artifact_repository = detect_argo_artifact_repository(inv, &ns);
    let object_store = detect_object_store(inv, &ns, argo_artifact_repository.as_ref());
    let cache_webhook = detect_cache_webhook(inv, &ns);
    let k8s_native = detect_k8s_native(inv, &ns, api_obj);
    let ingress_gateway = detect_ingress_gateway(inv);
    let (userid_header, userid_prefix) = detect_userid(inv, api_obj);
    let profiles = detect_profiles(inv, opts, mode.value, &userid_header);
    let run_service_account = detect_runner(inv, api_obj, mode.value);
    let artifact_proxy =
        detect_artifact_proxy(inv, &ns, &version, kfp_profile_controller, mode.value);
    let images = detect_images(inv, &ns, api_obj, &version);

    KfpFacts {
        detected,
        namespace,
        version,
        mode,
        api_server: api.map(Workload::cite),
        database,
        object_store,
        cache_webhook,
        k8s_native,
        ingress_gateway,
        kfp_profile_controller: kfp_profile_controller.map(Workload::cite),
        artifact_proxy,
        profiles,
        run_service_account,
        driver_pod_config,
        images,
        userid_header,
        userid_prefix,
        argo_artifact_repository,
    }
}

fn detect_namespace(inv: &Inventory, opts: &DetectOptions) -> Fact<String> {
    if let Some(ns) = opts.kfp_namespace.as_ref().filter(|n| !n.is_empty()) {
        return Fact::new(
            ns.clone(),
            Evidence::builtin("--kfp-namespace", format!("given as option: {ns}")),
        );
    }
    let mut api: Vec<&Workload> = inv
        .workloads
        .iter()
        .map(|w| &**w)
        .filter(|w| w.name == "ml-pipeline" && w.kind == "Deployment")
        .collect();
    if api.is_empty() {
        api = inv
            .workloads
            .iter()
            .map(|w| &**w)
            .filter(|w| w.name == "ml-pipeline")
            .collect();
    }
    if let Some(w) = api.first() {
        return Fact::new(
            w.namespace.clone(),
            Evidence::of_workload(w, format!("the KFP API server runs in {}", w.namespace)),
        );
    }
    if let Some(((ns, _), svc)) = inv.services.iter().find(|((_, n), _)| n == "ml-pipeline") {
        return Fact::new(
            ns.clone(),
            Evidence::of_cited(&svc.cite(), format!("Service ml-pipeline is in {ns}")),
        );
    }
    if let Some(o) = inv
        .objects
        .iter()
        .find(|o| o.kind == "ConfigMap" && o.meta.name == "pipeline-install-config")
    {
        let ns = o.meta.namespace_or_default().to_string();
        return Fact::new(
            ns.clone(),
            Evidence::of_object(o, format!("pipeline-install-config is in {ns}")),
        );
    }
    Fact::new(
        DEFAULT_KFP_NAMESPACE.to_string(),
        Evidence::builtin(
            "default",
            "no KFP API server in the input; KFP's default namespace assumed",
        ),
    )
}

fn detect_version(
    inv: &Inventory,
    ns: &str,
    api: Option<&Workload>,
    install_config: Option<(&Object, &Value)>,
    driver_pod: &DriverPodConfig,
) -> VersionFacts {
    let mut evidence = Vec::new();
    let mut release: Option<Version> = None;
    // 1. The API server image.
    if let Some(w) = api {
        for c in &w.spec.containers {
            let Some(image) = c.image.as_deref() else {
                continue;
            };
            if !is_api_server_image(image) {
                continue;
            }
            match image_tag(image).and_then(Version::parse) {
                Some(v) => {
                    evidence.push(Evidence::of_workload(
                        w,
                        format!("API server image {image}"),
                    ));
                    release = release.or(Some(v));
                }
                None => evidence.push(Evidence::of_workload(
                    w,
                    format!("API server image {image} names no release"),
                )),
            }
        }
    }
    // 2. appVersion of pipeline-install-config.
    if let Some((o, data)) = install_config
        && let Some(app) = data.get("appVersion").and_then(Value::as_str)
    {
        let parsed = Version::parse(app);
        evidence.push(Evidence::of_object(o, format!("appVersion {app}")));
        if release.is_none() {
            release = parsed;
        } else if parsed.is_some() && parsed != release {
            evidence.push(Evidence::of_object(
                o,
                format!("appVersion {app} differs from the API server image; the image is used"),
            ));
        }
    }
    // 3. Any other KFP image (most frequent tag).
    if release.is_none() {
        let mut tags: BTreeMap<Version, (usize, &Workload, String)> = BTreeMap::new();
        for w in inv.workloads_in(ns) {
            for c in &w.spec.containers {
                let Some(image) = c.image.as_deref() else {
                    continue;
                };
                if let Some(v) = is_kfp_image(image)
                    .then(|| image_tag(image).and_then(Version::parse))
                    .flatten()
                {
                    let e = tags.entry(v).or_insert((0, w, image.to_string()));
                    e.0 += 1;
                }
            }
        }
        if let Some((v, (_, w, image))) = tags.iter().max_by_key(|(v, (n, _, _))| (*n, **v)) {
            release = Some(*v);
            evidence.push(Evidence::of_workload(w, format!("KFP image {image}")));
        }
    }
    let master_features = driver_pod.supported;
    if master_features {
        evidence.extend(driver_pod.evidence.iter().cloned());
    }
    let effective = match release {
        Some(v) if master_features && v <= LAST_RELEASE_WITHOUT_DRIVER_POD_CONFIG => Some(MASTER),
        Some(v) => Some(v),
        None if master_features => Some(MASTER),
        None => None,
    };
    let display = match (release, master_features, effective) {
        (Some(r), true, Some(e)) if e != r => {
            format!("master ({r} images, DRIVER_POD_* present)")
        }
        (None, true, _) => "master (DRIVER_POD_* present)".to_string(),
        (Some(r), _, _) => r.to_string(),
        (None, _, _) => "unknown".to_string(),
    };
    VersionFacts {
        release,
        master_features,
        effective,
        display,
        evidence,
    }
}

fn detect_driver_pod_config(
    inv: &Inventory,
    api_obj: Option<&Object>,
    install_config: Option<(&Object, &Value)>,
) -> DriverPodConfig {
    let mut out = DriverPodConfig::default();
    for key in [DRIVER_POD_LABELS, DRIVER_POD_ANNOTATIONS] {
        let mut value: Option<(String, Evidence)> = None;
        if let Some((o, data)) = install_config
            && let Some(v) = data.get(key)
        {
            out.supported = true;
            let text = v.as_str().unwrap_or_default().to_string();
            value = Some((
                text.clone(),
                Evidence::of_object(o, format!("{key}={text:?} in pipeline-install-config")),
            ));
        }
        if let Some(o) = api_obj
            && declares_env(o, key)
        {
            out.supported = true;
            if let Some(v) = resolve_env(inv, o, key) {
                value = Some(v);
            } else {
                out.evidence
                    .push(Evidence::of_object(o, format!("API server env {key}")));
            }
        }
        let Some((text, ev)) = value else { continue };
        out.evidence.push(ev);
        if text.trim().is_empty() {
            continue;
        }
        match parse_string_map(&text) {
            Ok(map) => {
                let map: BTreeMap<String, String> = map
                    .into_iter()
                    .filter(|(k, _)| !k.starts_with(crate::mutation::config::RESERVED_PREFIX))
                    .collect();
                if key == DRIVER_POD_LABELS {
                    out.labels = map;
                } else {
                    out.annotations = map;
                }
            }
            Err(e) => out
                .errors
                .push(format!("{key}: {e}; the KFP API server refuses to start")),
        }
    }
    out
}

/// A JSON object whose values are all strings (what KFP's driver config accepts).
fn parse_string_map(text: &str) -> Result<BTreeMap<String, String>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(m) = v else {
        return Err("not a JSON object".to_string());
    };
    let mut out = BTreeMap::new();
    for (k, v) in m {
        match v {
            Value::String(s) => {
                out.insert(k, s);
            }
            other => return Err(format!("value of {k:?} is {other}, not a string")),
        }
    }
    Ok(out)
}

fn detect_mode(
    inv: &Inventory,
    api_obj: Option<&Object>,
    kfp_profile_controller: Option<&Workload>,
) -> Fact<Mode> {
    let mut evidence = Vec::new();
    let mut multi = false;
    if let Some(o) = api_obj
        && let Some((v, ev)) = resolve_env(inv, o, "MULTIUSER")
    {
        multi = v.eq_ignore_ascii_case("true");
        evidence.push(ev);
    }
    if let Some(w) = kfp_profile_controller {
        evidence.push(Evidence::of_workload(
            w,
            "KFP profile controller (multi-user only)",
        ));
        multi = true;
    }
    if !multi {
        if evidence.is_empty() {
            evidence.push(Evidence::builtin(
                "default",
                "no MULTIUSER=true and no multi-user objects",
            ));
        }
        return Fact {
            value: Mode::SingleUser,
            evidence,
        };
    }
    let mut platform = Vec::new();
    for w in &inv.workloads {
        let images = w.spec.containers.iter().filter_map(|c| c.image.as_deref());
        if images
            .clone()
            .any(|i| image_name(i) == "profile-controller")
            || (w.name == "profiles-deployment" && w.kind == "Deployment")
        {
            platform.push(Evidence::of_workload(w, "Kubeflow profile controller"));
        } else if w.name == "centraldashboard"
            || images.clone().any(|i| image_name(i) == "centraldashboard")
        {
            platform.push(Evidence::of_workload(w, "Kubeflow central dashboard"));
        } else if w.namespace == "istio-system" && is_ingress_gateway(w) {
            platform.push(Evidence::of_workload(
                w,
                "Istio ingress gateway serving the Kubeflow gateway",
            ));
        }
    }
    for o in &inv.objects {
        if o.kind == "Gateway"
            && o.group() == "networking.istio.io"
            && o.meta.name == "kubeflow-gateway"
        {
            platform.push(Evidence::of_object(o, "Kubeflow gateway"));
        } else if o.kind == "Profile" && o.group() == "kubeflow.org" {
            platform.push(Evidence::of_object(o, "Kubeflow Profile"));
        }
    }
    if platform.is_empty() {
        Fact {
            value: Mode::MultiUser,
            evidence,
        }
    } else {
        evidence.extend(platform);
        Fact {
            value: Mode::Platform,
            evidence,
        }
    }
}

fn is_ingress_gateway(w: &Workload) -> bool {
    w.label("istio") == Some("ingressgateway") || w.name == "istio-ingressgateway"
}

fn detect_database(
    inv: &Inventory,
    ns: &str,
    api_obj: Option<&Object>,
    install_config: Option<(&Object, &Value)>,
) -> Option<DatabaseFacts> {
    let mut evidence = Vec::new();
    let mut kind = None;
    let mut host: Option<String> = None;
    if let Some(o) = api_obj
        && let Some((v, ev)) = resolve_env(inv, o, "DB_DRIVER_NAME")
    {
        kind = db_kind(&v);
        evidence.push(ev);
    } else if let Some((o, data)) = install_config
        && let Some(v) = data.get("dbType").and_then(Value::as_str)
    {
        kind = db_kind(v);
        evidence.push(Evidence::of_object(o, format!("dbType {v}")));
    }
    if let Some(o) = api_obj
        && let Some((v, ev)) = resolve_env(inv, o, "DBCONFIG_HOST")
            .or_else(|| resolve_env(inv, o, "DBCONFIG_MYSQLCONFIG_HOST"))
            .or_else(|| resolve_env(inv, o, "DBCONFIG_POSTGRESQLCONFIG_HOST"))
    {
        host = Some(v.split('.').next().unwrap_or(&v).to_string());
        evidence.push(ev);
    }
    let candidates: Vec<&str> = match kind {
        Some(Database::Postgresql) => vec!["postgres", "postgresql", "postgres-service"],
        _ => vec!["mysql"],
    };
    let service = host
        .clone()
        .filter(|h| inv.service(ns, h).is_some())
        .or_else(|| {
            candidates
                .iter()
                .find(|c| inv.service(ns, c).is_some())
                .map(|s| s.to_string())
        });
    if let Some(svc) = service.as_deref().and_then(|s| inv.service(ns, s)) {
        evidence.push(Evidence::of_cited(&svc.cite(), "database Service"));
        if kind.is_none() {
            kind = db_kind(svc.name());
        }
    }
    let kind = kind?;
    let default_port = match kind {
        Database::Mysql => 3306,
        Database::Postgresql => 5432,
    };
    let port = service
        .as_deref()
        .and_then(|s| inv.service(ns, s))
        .and_then(|s| s.spec.ports.first())
        .and_then(|p| u16::try_from(p.port).ok())
        .unwrap_or(default_port);
    Some(DatabaseFacts {
        kind,
        service,
        port,
        evidence,
    })
}

fn db_kind(v: &str) -> Option<Database> {
    let v = v.to_ascii_lowercase();
    if v.contains("mysql") {
        Some(Database::Mysql)
    } else if v.contains("postgres") || v == "pgx" {
        Some(Database::Postgresql)
    } else {
        None
    }
}

fn detect_object_store(
    inv: &Inventory,
    ns: &str,
    argo: Option<&ArgoArtifactRepository>,
) -> Option<ObjectStoreFacts> {
    let seaweed = inv.service(ns, "seaweedfs");
    let minio = inv.service(ns, "minio-service");
    let selects = |s: &kfp_mesh_core::inventory::Service, app: &str| {
        s.spec
            .selector
            .as_ref()
            .and_then(|m| m.get("app"))
            .is_some_and(|a| a == app)
    };
    let (kind, svc, aliases) = match (seaweed, minio) {
        (Some(s), Some(m)) if selects(m, "seaweedfs") => {
            (ObjectStore::Seaweedfs, s, vec![m.name().to_string()])
        }
        (Some(s), _) => (ObjectStore::Seaweedfs, s, Vec::new()),
        (None, Some(m)) if selects(m, "seaweedfs") => (ObjectStore::Seaweedfs, m, Vec::new()),
        (None, Some(m)) => (ObjectStore::Minio, m, Vec::new()),
        (None, None) => return None,
    };
    let mut evidence = vec![Evidence::of_cited(
        &svc.cite(),
        format!("object store Service ({kind:?})"),
    )];
    let port = svc
        .spec
        .ports
        .iter()
        .find(|p| p.port == 9000)
        .or_else(|| {
            svc.spec
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some("http-s3"))
        })
        .or_else(|| svc.spec.ports.first());
    let argo_artifact_endpoint = argo.map(|a| {
        evidence.push(Evidence {
            detail: format!("Argo artifact repository endpoint {}", a.endpoint),
            ..a.evidence.clone()
        });
        a.endpoint.clone()
    });
    Some(ObjectStoreFacts {
        kind,
        service: svc.name().to_string(),
        port: port
            .and_then(|p| u16::try_from(p.port).ok())
            .unwrap_or(9000),
        port_name: port.and_then(|p| p.name.clone()),
        target_port: port.and_then(|p| p.target_port.clone()),
        aliases,
        argo_artifact_endpoint,
        evidence,
    })
}

fn detect_argo_artifact_repository(inv: &Inventory, ns: &str) -> Option<ArgoArtifactRepository> {
    let (o, data) = config_map_data(inv, ns, "workflow-controller-configmap")?;
    // The repository is YAML text in the ConfigMap.
    let text = data.get("artifactRepository").and_then(Value::as_str)?;
    let v: Value = serde_saphyr::from_str(text).ok()?;
    let endpoint = v.pointer("/s3/endpoint").and_then(Value::as_str)?;
    Some(ArgoArtifactRepository {
        endpoint: endpoint.to_string(),
        evidence: Evidence::of_object(
            o,
            format!(
                "artifactRepository.s3.endpoint={endpoint} of {}",
                o.object_ref()
            ),
        ),
    })
}

fn detect_cache_webhook(inv: &Inventory, ns: &str) -> Option<CacheWebhookFacts> {
    let svc = inv.service(ns, "cache-server")?;
    let mut evidence = vec![Evidence::of_cited(&svc.cite(), "cache-server Service")];
    let mut configuration = None;
    let mut failure_policy = None;
    for mwc in &inv.mutating_webhooks {
        for wh in &mwc.spec.webhooks {
            if let Some(s) = wh.client_config.as_ref().and_then(|c| c.service.as_ref())
                && s.name == "cache-server"
                && s.namespace == ns
            {
                configuration.get_or_insert_with(|| mwc.cite());
                failure_policy = failure_policy.or_else(|| wh.failure_policy.clone());
            }
        }
    }
    if let Some(c) = &configuration {
        evidence.push(Evidence::of_cited(
            c,
            "MutatingWebhookConfiguration calling cache-server",
        ));
    }
    let deployer = inv.workloads_in(ns).find(|w| {
        w.name == "cache-deployer-deployment" || w.label("app") == Some("cache-deployer")
    });
    if let Some(d) = deployer {
        evidence.push(Evidence::of_workload(
            d,
            format!(
                "cache-deployer creates MutatingWebhookConfiguration cache-webhook-{ns} at run time"
            ),
        ));
        // The deployer's template (failurePolicy Ignore).
        failure_policy.get_or_insert_with(|| "Ignore".to_string());
    }
    if configuration.is_none() && deployer.is_none() {
        return None;
    }
    let port = svc
        .spec
        .ports
        .iter()
        .find(|p| p.port == 443)
        .or_else(|| svc.spec.ports.first());
    Some(CacheWebhookFacts {
        service: svc.name().to_string(),
        port: port.and_then(|p| u16::try_from(p.port).ok()).unwrap_or(443),
        target_port: port.and_then(|p| p.target_port.clone()),
        configuration,
        created_by: deployer.map(Workload::cite),
        failure_policy,
        evidence,
    })
}

fn detect_k8s_native(
    inv: &Inventory,
    ns: &str,
    api_obj: Option<&Object>,
) -> Option<K8sNativeFacts> {
    let mut configurations = Vec::new();
    let mut evidence = Vec::new();
    let mut failure_policy = None;
    let mut port = None;
    for o in &inv.objects {
        if !matches!(
            o.kind.as_str(),
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"
        ) || o.group() != "admissionregistration.k8s.io"
        {
            continue;
        }
        for wh in o
            .get("webhooks")
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(s) = wh.pointer("/clientConfig/service") else {
                continue;
            };
            let to_api = s.get("name").and_then(Value::as_str) == Some("ml-pipeline")
                && s.get("namespace").and_then(Value::as_str) == Some(ns);
            let pipelineversions = wh
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|r| {
                    r.get("resources")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
                .any(|r| r.as_str() == Some("pipelineversions"));
            if to_api && pipelineversions {
                let cited = o.cite();
                if !configurations.contains(&cited) {
                    evidence.push(Evidence::of_object(
                        o,
                        "PipelineVersion webhook on the KFP API server",
                    ));
                    configurations.push(cited);
                }
                failure_policy = failure_policy.or_else(|| {
                    wh.get("failurePolicy")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
                port = port.or_else(|| {
                    s.get("port")
                        .and_then(Value::as_u64)
                        .and_then(|p| u16::try_from(p).ok())
                });
            }
        }
    }
    if let Some(o) = api_obj
        && let Some(spec) = pod_spec_json(o)
    {
        let flag = spec
            .get("containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| {
                c.get("args")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .filter_map(Value::as_str)
            .any(|a| a == "--pipelinesStoreKubernetes=true" || a == "--pipelinesStoreKubernetes");
        if flag {
            evidence.push(Evidence::of_object(
                o,
                "API server flag --pipelinesStoreKubernetes=true",
            ));
        }
    }
    if evidence.is_empty() {
        return None;
    }
    Some(K8sNativeFacts {
        service: "ml-pipeline".to_string(),
        port: port.unwrap_or(8443),
        configurations,
        failure_policy,
        evidence,
    })
}

fn detect_ingress_gateway(inv: &Inventory) -> Option<IngressGatewayFacts> {
    let w = inv
        .workload("istio-system", "istio-ingressgateway")
        .or_else(|| {
            inv.workloads_in("istio-system")
                .find(|w| is_ingress_gateway(w))
        })?;
    let service = inv.services_of(w).first().map(|s| s.name().to_string());
    Some(IngressGatewayFacts {
        namespace: w.namespace.clone(),
        workload: w.name.clone(),
        kind: w.kind.clone(),
        service_account: w.service_account().to_string(),
        service,
        evidence: vec![Evidence::of_workload(w, "Istio ingress gateway")],
    })
}

fn detect_userid(inv: &Inventory, api_obj: Option<&Object>) -> (String, String) {
    let header = api_obj
        .and_then(|o| resolve_env(inv, o, "KUBEFLOW_USERID_HEADER"))
        .map(|(v, _)| v)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "kubeflow-userid".to_string());
    let prefix = api_obj
        .and_then(|o| resolve_env(inv, o, "KUBEFLOW_USERID_PREFIX"))
        .map(|(v, _)| v)
        // The renders set the literal `None` (a kustomize var that was never replaced)...
        .filter(|v| v != "None")
        .unwrap_or_default();
    (header, prefix)
}

/// Labels the Kubeflow profile controller puts on a profile namespace: its own
/// `istio-injection: enabled` plus the namespace-labels file (a ConfigMap in the input, or
/// Kubeflow's defaults).
pub fn profile_namespace_labels(inv: &Inventory, name: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert("istio-injection".to_string(), "enabled".to_string());
    let from_input = inv.objects.iter().find_map(|o| {
        if o.kind != "ConfigMap" {
            return None;
        }
        let text = o.value_at(&["data", "namespace-labels.yaml"])?;
        let text = text.as_str()?;
        let v: Value = serde_saphyr::from_str(text).ok()?;
        let m = v.as_object()?;
        Some(
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect::<BTreeMap<_, _>>(),
        )
    });
    match from_input {
        Some(m) => {
            for (k, v) in m {
                if v.is_empty() {
                    labels.remove(&k);
                } else {
                    labels.entry(k).or_insert(v);
                }
            }
        }
        None => {
            labels.insert(PIPELINES_ENABLED_LABEL.to_string(), "true".to_string());
            labels.insert(
                "app.kubernetes.io/part-of".to_string(),
                "kubeflow-profile".to_string(),
            );
        }
    }
    labels.insert("kubernetes.io/metadata.name".to_string(), name.to_string());
    labels
}

fn detect_profiles(
    inv: &Inventory,
    opts: &DetectOptions,
    mode: Mode,
    _header: &str,
) -> Vec<ProfileFacts> {
    let mut out: BTreeMap<String, ProfileFacts> = BTreeMap::new();
    let mut add = |name: &str, owner: Option<String>, ev: Evidence| {
        let entry = out.entry(name.to_string()).or_insert_with(|| {
            let in_input = inv.namespaces.contains_key(name);
            ProfileFacts {
                name: name.to_string(),
                synthetic: false,
                namespace_in_input: in_input,
                owner: None,
                labels: if in_input {
                    inv.namespace_labels(name).to_btree()
                } else {
                    profile_namespace_labels(inv, name)
                },
                evidence: Vec::new(),
            }
        });
        if entry.owner.is_none() {
            entry.owner = owner;
        }
        entry.evidence.push(ev);
    };
    for (name, ns) in &inv.namespaces {
        if ns.meta.label(PIPELINES_ENABLED_LABEL) == Some("true") {
            let owner = ns.meta.annotation("owner").map(str::to_string);
            add(
                name,
                owner,
                Evidence::of_cited(
                    &ns.cite(),
                    format!("namespace labelled {PIPELINES_ENABLED_LABEL}=true"),
                ),
            );
        }
    }
    for o in &inv.objects {
        if o.kind == "Profile"
            && o.group() == "kubeflow.org"
            && matches!(
                o.api_version.as_str(),
                "kubeflow.org/v1" | "kubeflow.org/v1beta1"
            )
        {
            let owner = o
                .pointer("/spec/owner/name")
                .as_ref()
                .and_then(Value::as_str)
                .map(str::to_string);
            add(
                &o.meta.name,
                owner,
                Evidence::of_object(o, "Kubeflow Profile"),
            );
        }
    }
    let mut seen = BTreeSet::new();
    for p in &opts.profiles {
        if !p.is_empty() && seen.insert(p.clone()) {
            add(
                p,
                None,
                Evidence::builtin("--profile", format!("given as option: {p}")),
            );
        }
    }
    if out.is_empty() && mode.is_multi_user() {
        let labels = profile_namespace_labels(inv, EXAMPLE_PROFILE);
        out.insert(
            EXAMPLE_PROFILE.to_string(),
            ProfileFacts {
                name: EXAMPLE_PROFILE.to_string(),
                synthetic: true,
                namespace_in_input: false,
                owner: Some(EXAMPLE_PROFILE_OWNER.to_string()),
                labels,
                evidence: vec![Evidence::builtin(
                    "example profile",
                    "multi-user install with no profile in the input; an example profile namespace is modelled as Kubeflow's profile controller creates it",
                )],
            },
        );
    }
    out.into_values().collect()
}

fn detect_runner(inv: &Inventory, api_obj: Option<&Object>, mode: Mode) -> Fact<String> {
    if let Some(o) = api_obj
        && let Some((v, ev)) = resolve_env(inv, o, "DEFAULTPIPELINERUNNERSERVICEACCOUNT")
        && !v.is_empty()
    {
        return Fact::new(v, ev);
    }
    let (sa, why) = if mode.is_multi_user() {
        (
            "default-editor",
            "multi-user default (DEFAULTPIPELINERUNNERSERVICEACCOUNT of the multi-user install)",
        )
    } else {
        (
            "pipeline-runner",
            "KFP's default pipeline runner service account",
        )
    };
    Fact::new(sa.to_string(), Evidence::builtin("default", why))
}

fn detect_artifact_proxy(
    inv: &Inventory,
    ns: &str,
    version: &VersionFacts,
    controller: Option<&Workload>,
    mode: Mode,
) -> Fact<bool> {
    let Some(ctrl) = controller.filter(|_| mode.is_multi_user()) else {
        return Fact::new(
            false,
            Evidence::builtin("default", "no KFP profile controller"),
        );
    };
    let obj = workload_object(inv, ctrl);
    if let Some((v, ev)) = obj.and_then(|o| resolve_env(inv, o, "ARTIFACTS_PROXY_ENABLED")) {
        return Fact::new(v.eq_ignore_ascii_case("true"), ev);
    }
    if let Some((o, data)) = config_map_data(inv, ns, "pipeline-install-config")
        && let Some(v) = data.get("ARTIFACTS_PROXY_ENABLED").and_then(Value::as_str)
    {
        return Fact::new(
            v.eq_ignore_ascii_case("true"),
            Evidence::of_object(o, format!("ARTIFACTS_PROXY_ENABLED={v}")),
        );
    }
    // Up to 2.14 the profile controller always created the proxy; from 2.15 it is opt-in.
    let always = version.at_least(Version::new(2, 15, 0)) != Some(true);
    Fact::new(
        always,
        Evidence::of_workload(
            ctrl,
            if always {
                "KFP profile controller before 2.15 always creates ml-pipeline-ui-artifact"
            } else {
                "ARTIFACTS_PROXY_ENABLED not set (off by default from 2.15)"
            },
        ),
    )
}

fn detect_images(
    inv: &Inventory,
    ns: &str,
    api_obj: Option<&Object>,
    version: &VersionFacts,
) -> ImageFacts {
    let tag = version
        .release
        .map(|v| v.to_string())
        .unwrap_or_else(|| "latest".to_string());
    let env_image = |var: &str, default: String| -> Fact<String> {
        match api_obj.and_then(|o| resolve_env(inv, o, var)) {
            Some((v, ev)) if !v.is_empty() => Fact::new(v, ev),
            _ => Fact::new(
                default,
                Evidence::builtin("default", format!("{var} not set; KFP's default image")),
            ),
        }
    };
    let driver = env_image(
        "V2_DRIVER_IMAGE",
        format!("ghcr.io/kubeflow/kfp-driver:{tag}"),
    );
    let launcher = env_image(
        "V2_LAUNCHER_IMAGE",
        format!("ghcr.io/kubeflow/kfp-launcher:{tag}"),
    );
    let argoexec = inv
        .workloads_in(ns)
        .find(|w| w.name == "workflow-controller")
        .and_then(|w| {
            w.spec.containers.iter().find_map(|c| {
                let args = c.args.as_deref().unwrap_or_default();
                let pos = args.iter().position(|a| a == "--executor-image")?;
                let image = args.get(pos + 1)?;
                Some(Fact::new(
                    image.clone(),
                    Evidence::of_workload(w, format!("--executor-image {image}")),
                ))
            })
        })
        .unwrap_or_else(|| {
            Fact::new(
                "quay.io/argoproj/argoexec:latest".to_string(),
                Evidence::builtin(
                    "default",
                    "no workflow-controller --executor-image in the input",
                ),
            )
        });
    ImageFacts {
        driver,
        launcher,
        argoexec,
    }
}

/// The workload serves TLS itself on its ports (KFP's `env/cert-manager/...-standalone-tls`):
/// the API server started with `--tlsCertPath`, MLMD configured with an `ssl_config` server
/// certificate, or an Envoy (metadata-envoy) whose mounted configuration has a
/// `DownstreamTlsContext`. `None` when nothing in its manifests says so.
pub fn serves_app_tls(inv: &Inventory, w: &Workload) -> Option<Evidence> {
    let o = workload_object(inv, w)?;
    let spec = pod_spec_json(o)?;
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten();
    for c in containers {
        let words: Vec<&str> = ["command", "args"]
            .iter()
            .filter_map(|k| c.get(*k).and_then(Value::as_array))
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if let Some(flag) = words
            .iter()
            .flat_map(|w| w.split_whitespace())
            .find(|w| w.starts_with("--tlsCertPath="))
        {
            return Some(Evidence::of_object(
                o,
                format!("serves TLS itself ({flag} of {})", o.object_ref()),
            ));
        }
        if words
            .iter()
            .any(|w| w.contains("ssl_config") && w.contains("server_cert"))
        {
            return Some(Evidence::of_object(
                o,
                format!(
                    "serves TLS itself (its gRPC configuration has an ssl_config server_cert, {})",
                    o.object_ref()
                ),
            ));
        }
    }
    let ns = o.meta.namespace_or_default();
    for v in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(cm) = v.pointer("/configMap/name").and_then(Value::as_str) else {
            continue;
        };
        let Some((cmo, data)) = config_map_data(inv, ns, cm) else {
            continue;
        };
        let tls = data
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, v)| v.as_str())
            .any(|text| text.contains("DownstreamTlsContext"));
        if tls {
            return Some(Evidence::of_object(
                cmo,
                format!(
                    "serves TLS itself (the Envoy configuration {} it mounts terminates TLS)",
                    cmo.object_ref()
                ),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(Version::parse("2.5.0"), Some(Version::new(2, 5, 0)));
        assert_eq!(Version::parse("v2.17.0-rc.1"), Some(Version::new(2, 17, 0)));
        assert_eq!(Version::parse("2.5"), Some(Version::new(2, 5, 0)));
        assert_eq!(Version::parse("latest"), None);
        assert_eq!(Version::parse("1.2.3.4"), None);
        assert!(Version::new(2, 14, 0) > Version::new(2, 5, 0));
    }

    #[test]
    fn images() {
        assert_eq!(
            image_tag("ghcr.io/kubeflow/kfp-api-server:2.5.0"),
            Some("2.5.0")
        );
        assert_eq!(image_tag("localhost:5000/kfp-api-server"), None);
        assert_eq!(
            image_name("gcr.io/ml-pipeline/api-server:2.5.0"),
            "api-server"
        );
        assert!(is_kfp_image("gcr.io/ml-pipeline/api-server:2.5.0"));
        assert!(is_kfp_image("ghcr.io/kubeflow/kfp-frontend:2.5.0"));
        assert!(!is_kfp_image("gcr.io/ml-pipeline/mysql:8.0.26"));
    }

    #[test]
    fn string_maps() {
        assert_eq!(
            parse_string_map(r#"{"sidecar.istio.io/inject":"true"}"#).map(|m| m.len()),
            Ok(1)
        );
        assert!(parse_string_map(r#"{"a": true}"#).is_err());
        assert!(parse_string_map("a=b").is_err());
    }
}
