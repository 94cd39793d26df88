//! The `istio-strict-mtls` components and overlays, built with the real `kubectl kustomize` on
//! top of the real upstream renders in `../shared/upstream`, then checked with `kfp-mesh check`.
//!
//! The test kustomizations live in `manifests/tests/istio-strict-mtls/<variant>`; each lists
//! `upstream` as its only resource, where the overlays name the remote KFP base. A test copies
//! `manifests/` to a temporary directory (so the relative component paths hold), writes the
//! render(s) into `upstream/` there, and builds. Nothing is written into the repository.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kfp_mesh_core::connection::{Outcome, Transport};
use kfp_mesh_core::inventory::Inventory;
use kfp_mesh_core::mesh::protocol::{PortProtocol, service_port_protocol};
use kfp_mesh_kfp::catalog::UnresolvedKind;
use kfp_mesh_kfp::check::{CheckOptions, FlowResult, Report, check};
use kfp_mesh_kfp::findings::Severity;
use kfp_mesh_kfp::mutation::MutationConfig;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn upstream_dir() -> PathBuf {
    kfp_mesh_testdata::upstream_dir()
}

const MESH_STRICT: &str = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
";

/// One acceptance case: a render set and the test kustomization it is built with.
struct Case {
    name: &'static str,
    variant: &'static str,
    files: Vec<String>,
}

fn kubeflow_files(prefix: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(upstream_dir())
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", upstream_dir().display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{prefix}: only {files:?}");
    files
}

fn case(name: &str) -> Case {
    let one = |f: &str| vec![f.to_string()];
    let (name, variant, files) = match name {
        "kfp-2.5.0-su" => (
            "kfp-2.5.0-su",
            "single-user",
            one("kfp-2.5.0-platform-agnostic.yaml"),
        ),
        "kfp-2.5.0-mu" => (
            "kfp-2.5.0-mu",
            "multi-user",
            one("kfp-2.5.0-platform-agnostic-multi-user.yaml"),
        ),
        "kfp-master-su" => (
            "kfp-master-su",
            "single-user-master",
            one("kfp-master-platform-agnostic.yaml"),
        ),
        "kfp-master-mu" => (
            "kfp-master-mu",
            "multi-user-master",
            one("kfp-master-platform-agnostic-multi-user.yaml"),
        ),
        "kfp-master-k8s-native" => (
            "kfp-master-k8s-native",
            "multi-user-k8s-native",
            one("kfp-master-cert-manager-platform-agnostic-multi-user-k8s-native.yaml"),
        ),
        // 2.15: SeaweedFS behind the alias Service `minio-service` (9000 -> 8333).
        "kfp-2.15.0-su" => (
            "kfp-2.15.0-su",
            "single-user-2.15",
            one("kfp-2.15.0-platform-agnostic.yaml"),
        ),
        // PostgreSQL for KFP (`postgres-service`) and for MLMD (`metadata-postgres-db`).
        "kfp-master-postgresql" => (
            "kfp-master-postgresql",
            "single-user-postgresql",
            one("kfp-master-platform-agnostic-postgresql.yaml"),
        ),
        // KFP serving TLS itself (API server, MLMD, metadata-envoy).
        "kfp-2.17.0-standalone-tls" => (
            "kfp-2.17.0-standalone-tls",
            "single-user-standalone-tls",
            one("kfp-2.17.0-cert-manager-platform-agnostic-standalone-tls.yaml"),
        ),
        // Pipeline + Istio install + namespaces + Istio resources + profiles + network policies.
        "kubeflow-v1.10.1" => (
            "kubeflow-v1.10.1",
            "multi-user",
            kubeflow_files("kubeflow-manifests-v1.10.1-"),
        ),
        "kubeflow-master" => (
            "kubeflow-master",
            "multi-user",
            kubeflow_files("kubeflow-manifests-master-"),
        ),
        other => panic!("unknown case {other}"),
    };
    Case {
        name,
        variant,
        files,
    }
}

const CASES: &[&str] = &[
    "kfp-2.5.0-su",
    "kfp-2.5.0-mu",
    "kfp-master-su",
    "kfp-master-mu",
    "kfp-master-k8s-native",
    "kubeflow-v1.10.1",
    "kubeflow-master",
    "kfp-2.15.0-su",
    "kfp-master-postgresql",
    "kfp-2.17.0-standalone-tls",
];

/// Build the case's test kustomization with its render(s) and `extra` files in `upstream/`;
/// `edit` may change the temporary copy of `manifests/` first (it gets the copy's root).
fn build_custom(c: &Case, extra: &[(&str, &str)], edit: impl FnOnce(&Path)) -> String {
    let tmp = common::TempDir::new(c.name);
    let manifests = tmp.0.join("manifests");
    common::copy_tree(&repo().join("manifests"), &manifests);
    let dir = manifests.join("tests/istio-strict-mtls").join(c.variant);
    let up = dir.join("upstream");
    std::fs::create_dir_all(&up).unwrap_or_else(|e| panic!("{}: {e}", up.display()));
    let mut k = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for f in &c.files {
        std::fs::copy(upstream_dir().join(f), up.join(f))
            .unwrap_or_else(|e| panic!("{f} is needed (the upstream renders in ../shared): {e}"));
        k.push_str(&format!("- {f}\n"));
    }
    for (name, text) in extra {
        std::fs::write(up.join(name), text).unwrap_or_else(|e| panic!("{name}: {e}"));
        k.push_str(&format!("- {name}\n"));
    }
    std::fs::write(up.join("kustomization.yaml"), k).unwrap_or_else(|e| panic!("{e}"));
    edit(&manifests);
    common::kustomize(&dir)
}

fn build(c: &Case) -> String {
    build_custom(c, &[], |_| {})
}

fn inventory(built: &str, extra: &str) -> Inventory {
    let mut sources = vec![("kustomize-output.yaml", built)];
    if !extra.is_empty() {
        sources.push(("extra.yaml", extra));
    }
    let inv = Inventory::from_sources(sources);
    assert!(inv.errors.is_empty(), "{:#?}", inv.errors);
    inv
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap_or_else(|e| panic!("not YAML: {e}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn base(id: &str) -> &str {
    id.split(['@', '#']).next().unwrap_or(id)
}

const KFP_NS: &str = "kubeflow";
const GATEWAY: &str = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";
const PROFILE_RUN_PODS: &str = "*/sa/default-editor";
const ANY_PLAINTEXT: &str = "any-plaintext";
const ANY_MESH_IDENTITY: &str = "any-mesh-identity";

fn sa(name: &str) -> String {
    format!("cluster.local/ns/{KFP_NS}/sa/{name}")
}

/// Flows whose caller can never have a mesh identity: they succeed in plaintext through the
/// documented port-level exceptions. Kubelet probes are rewritten by the injector.
fn plaintext_expected(f: &FlowResult) -> bool {
    matches!(
        base(&f.id),
        "kube-apiserver-to-cache-webhook" | "kube-apiserver-to-pipelineversion-webhook"
    ) || (f.from.workload == "kubelet" && f.from.namespace.is_none())
}

fn is_multi_user(c: &Case) -> bool {
    c.variant.starts_with("multi-user")
}

/// KFP 2.17 or later (master): the API server's init container waits for MLMD.
fn is_master(c: &Case) -> bool {
    c.name.starts_with("kfp-master") || c.name.starts_with("kfp-2.17")
}

/// The least-privilege table: for each KFP server, exactly what its ALLOW policies admit
/// (`Report.access[].allowed`). Every entry is a caller of the flow catalog, or one of the
/// documented exceptions (docs/istio-strict-mtls.md, "Least privilege"):
/// * `any-plaintext` on cache-server: port 8443 only, for kube-apiserver (no identity);
/// * `any-plaintext` on ml-pipeline in multi-user mode: upstream's header rule (any caller
///   that does not send kubeflow-userid), kept; in k8s-native mode also port 8443;
/// * `*/sa/default-editor` on MLMD and the object store in multi-user mode (KM032);
/// * the ingress gateway on the UI and metadata-envoy in multi-user mode, also where the
///   render lacks the gateway (KFP's multi-user env routes to it).
fn expected_allowed(c: &Case, service: &str) -> Vec<String> {
    let mu = is_multi_user(c);
    let runner = sa("pipeline-runner");
    let mut v: Vec<String> = match service {
        "mysql" => vec![
            sa("ml-pipeline"),
            sa("kubeflow-pipelines-cache"),
            sa("metadata-grpc-server"),
        ],
        "postgres-service" => vec![sa("ml-pipeline"), sa("kubeflow-pipelines-cache")],
        "metadata-postgres-db" => vec![sa("metadata-grpc-server")],
        "cache-server" => vec![ANY_PLAINTEXT.into()],
        "metadata-envoy-service" if mu => vec![sa("ml-pipeline-ui"), GATEWAY.into()],
        "metadata-envoy-service" => vec![sa("ml-pipeline-ui")],
        "metadata-grpc-service" => {
            let mut v = vec![
                sa("metadata-envoy"),
                sa("kubeflow-pipelines-metadata-writer"),
            ];
            v.push(if mu { PROFILE_RUN_PODS.into() } else { runner });
            if is_master(c) {
                v.push(sa("ml-pipeline"));
            }
            v
        }
        "minio-service" | "seaweedfs" => {
            let mut v = vec![sa("ml-pipeline"), sa("ml-pipeline-ui")];
            v.push(if mu { PROFILE_RUN_PODS.into() } else { runner });
            if mu && service == "seaweedfs" {
                v.push(sa("kubeflow-pipelines-profile-controller"));
            }
            v
        }
        "ml-pipeline" => {
            let mut v = vec![
                sa("ml-pipeline-ui"),
                sa("ml-pipeline-persistenceagent"),
                sa("ml-pipeline-scheduledworkflow"),
            ];
            // Upstream's multi-user header rule names no source: under STRICT it admits every
            // caller with a sidecar; in k8s-native mode it also covers the PERMISSIVE webhook
            // port 8443, so plaintext callers too.
            v.push(match (mu, c.name.contains("k8s-native")) {
                (true, true) => ANY_PLAINTEXT.into(),
                (true, false) => ANY_MESH_IDENTITY.into(),
                (false, _) => runner,
            });
            v
        }
        "ml-pipeline-ui" if mu => vec![GATEWAY.into()],
        "ml-pipeline-ui" => vec![],
        "ml-pipeline-visualizationserver" => vec![sa("ml-pipeline")],
        "kubeflow-pipelines-profile-controller" => vec![sa("meta-controller-service")],
        other => panic!("{}: no least-privilege expectation for {other}", c.name),
    };
    v.sort();
    v
}

/// Warnings the components leave on purpose (code, server), all documented.
fn expected_warnings(c: &Case) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    if !is_multi_user(c) {
        return out;
    }
    let store = if c.name.contains("2.5.0") || c.name == "kubeflow-v1.10.1" {
        "minio-service"
    } else {
        "seaweedfs"
    };
    let mut add = |code: &str, server: &str| {
        out.insert((code.to_string(), format!("{KFP_NS}/{server}")));
    };
    add("KM032", "metadata-grpc-service");
    add("KM032", store);
    add("KM031", "ml-pipeline");
    if !c.name.starts_with("kubeflow-") {
        // KFP's standalone multi-user env routes to Kubeflow's gateway but does not ship it.
        add("KM031", "metadata-envoy-service");
        if is_master(c) {
            add("KM031", "ml-pipeline-ui");
        }
    }
    out
}

/// `namespace/service` a finding is about (its message starts with it, or names a flow).
fn finding_subject(message: &str) -> String {
    message
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_end_matches(':')
        .to_string()
}

fn summary(r: &Report) -> String {
    let mut s = String::new();
    for f in &r.flows {
        s.push_str(&format!("  {} {} {:?}\n", f.id, f.outcome, f.transport));
    }
    for f in &r.findings {
        s.push_str(&format!(
            "  {} {} {}\n",
            f.code,
            f.severity.as_str(),
            f.message
        ));
    }
    for a in &r.access {
        s.push_str(&format!(
            "  {}: allowed {:?} required {:?}\n",
            a.service, a.allowed, a.required
        ));
    }
    s
}

/// Every flow works (mTLS, or plaintext through a documented exception), no error, only the
/// documented warnings, and the least-privilege table holds.
fn assert_strict_and_least_privilege(c: &Case, r: &Report, with: &str) {
    let ctx = format!("{} ({with})", c.name);
    assert!(r.kfp.detected, "{ctx}: KFP not detected");
    assert!(r.flows.len() > 20, "{ctx}: {} flows", r.flows.len());
    for f in &r.flows {
        let transport = if plaintext_expected(f) {
            Transport::Plaintext
        } else {
            Transport::Mtls
        };
        assert_eq!(
            (f.outcome, f.transport),
            (Outcome::Allow, Some(transport)),
            "{ctx}: flow {} ({} -> {}/{}:{})\n{}",
            f.id,
            f.from.workload,
            f.to.namespace,
            f.to.service,
            f.to.port,
            f.explanation
                .iter()
                .map(|s| s.message.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // The run pods are there, in the mesh, in every run namespace.
    for id in [
        "driver-to-mlmd",
        "driver-to-api-server",
        "driver-wait-to-object-store",
        "executor-to-mlmd",
        "executor-to-api-server",
        "executor-to-object-store",
        "executor-wait-to-object-store",
        "importer-to-mlmd",
        "importer-wait-to-object-store",
    ] {
        let found: Vec<_> = r.flows_named(id).collect();
        assert!(!found.is_empty(), "{ctx}: no flow {id}");
        for f in found {
            assert!(f.from.synthetic, "{ctx}: {}", f.id);
            let expected_sa = if is_multi_user(c) {
                "default-editor"
            } else {
                "pipeline-runner"
            };
            assert_eq!(
                f.from.service_account.as_deref(),
                Some(expected_sa),
                "{ctx}"
            );
        }
    }
    let errors: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{ctx}: errors {errors:#?}");
    let warnings: BTreeSet<(String, String)> = r
        .findings
        .iter()
        .map(|f| (f.code.to_string(), finding_subject(&f.message)))
        .collect();
    assert_eq!(
        warnings,
        expected_warnings(c),
        "{ctx}: findings\n{}",
        summary(r)
    );
    // Least privilege, server by server.
    let servers: BTreeSet<&str> = r.access.iter().map(|a| a.service.as_str()).collect();
    // Every flow that applies has a verdict: nothing unresolved but the calls that leave the
    // mesh (kube-apiserver).
    let open: Vec<_> = r
        .unresolved
        .iter()
        .filter(|u| u.kind != UnresolvedKind::OutsideMesh)
        .collect();
    assert!(open.is_empty(), "{ctx}: unresolved {open:#?}");
    let database = if c.name.contains("postgresql") {
        "postgres-service"
    } else {
        "mysql"
    };
    for must in [
        "ml-pipeline",
        "metadata-grpc-service",
        database,
        "cache-server",
        "metadata-envoy-service",
    ] {
        assert!(servers.contains(must), "{ctx}: no access entry for {must}");
    }
    for a in &r.access {
        let mut allowed = a.allowed.clone();
        allowed.sort();
        assert_eq!(
            allowed,
            expected_allowed(c, &a.service),
            "{ctx}: who may reach {}/{} (required: {:?})",
            a.namespace,
            a.service,
            a.required
        );
        // Every caller with an identity is admitted by name, pattern or the header rule.
        for req in a.required.iter().filter(|r| r.contains("/sa/")) {
            let admitted = a.allowed.iter().any(|x| {
                x == req
                    || x == ANY_PLAINTEXT
                    || x == ANY_MESH_IDENTITY
                    || x.strip_prefix('*')
                        .is_some_and(|suffix| req.ends_with(suffix))
            });
            assert!(
                admitted,
                "{ctx}: {req} needs {} but is not admitted",
                a.service
            );
        }
    }
}

fn acceptance(name: &str) {
    let c = case(name);
    let built = build(&c);
    for (with, extra) in [
        ("the components alone", ""),
        ("plus mesh-wide STRICT", MESH_STRICT),
    ] {
        let inv = inventory(&built, extra);
        let r = check(&inv, &CheckOptions::default());
        assert_strict_and_least_privilege(&c, &r, with);
    }
}

#[test]
fn overlay_kfp_2_15_0_single_user() {
    acceptance("kfp-2.15.0-su");
}

#[test]
fn overlay_kfp_master_postgresql() {
    acceptance("kfp-master-postgresql");
}

#[test]
fn overlay_kfp_2_17_0_standalone_tls() {
    acceptance("kfp-2.17.0-standalone-tls");
}

#[test]
fn overlay_kfp_2_5_0_single_user() {
    acceptance("kfp-2.5.0-su");
}

#[test]
fn overlay_kfp_2_5_0_multi_user() {
    acceptance("kfp-2.5.0-mu");
}

#[test]
fn overlay_kfp_master_single_user() {
    acceptance("kfp-master-su");
}

#[test]
fn overlay_kfp_master_multi_user() {
    acceptance("kfp-master-mu");
}

#[test]
fn overlay_kfp_master_k8s_native() {
    acceptance("kfp-master-k8s-native");
}

#[test]
fn overlay_kubeflow_v1_10_1() {
    acceptance("kubeflow-v1.10.1");
}

#[test]
fn overlay_kubeflow_master() {
    acceptance("kubeflow-master");
}

/// Several profile namespaces: the run pods of each reach MLMD, the KFP API and the object
/// store over mTLS (the webhook's scope covers every namespace labelled
/// `pipelines.kubeflow.org/enabled=true`, the policies every `default-editor`).
#[test]
fn overlay_multi_user_every_profile_over_mtls() {
    let c = case("kubeflow-master");
    let profiles = ["team-a", "team-b", "kubeflow-user-example-com"];
    let opts = CheckOptions {
        detect: kfp_mesh_kfp::detect::DetectOptions {
            profiles: profiles.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        },
        ..CheckOptions::default()
    };
    let r = check(&inventory(&build(&c), MESH_STRICT), &opts);
    for profile in profiles {
        for id in [
            "driver-to-mlmd",
            "driver-to-api-server",
            "executor-to-object-store",
            "importer-to-mlmd",
        ] {
            let found: Vec<_> = r
                .flows_named(id)
                .filter(|f| f.from.namespace.as_deref() == Some(profile))
                .collect();
            assert!(!found.is_empty(), "{id} from {profile}");
            for f in found {
                assert_eq!(
                    (f.outcome, f.transport),
                    (Outcome::Allow, Some(Transport::Mtls)),
                    "{}",
                    f.id
                );
            }
        }
    }
    assert!(r.findings.iter().all(|f| f.severity == Severity::Warning));
}

/// Every Istio object the components ship passes kfp-mesh's validation (what Istio's webhook
/// and CRD schema would reject or warn about), both as written and as built.
#[test]
fn overlay_istio_objects_pass_validation() {
    let istio = common::assert_component_istio_objects_valid("istio-strict-mtls");
    assert!(istio >= 20, "only {istio} Istio objects found");
    for name in CASES {
        let inv = inventory(&build(&case(name)), MESH_STRICT);
        let ours = |o: &kfp_mesh_core::object::Cited| {
            inv.objects.iter().any(|x| {
                x.kind == o.object.kind
                    && x.meta.name == o.object.name
                    && x.meta.label("app.kubernetes.io/part-of") == Some("kfp-mesh")
            })
        };
        for r in inv.rejected.iter().chain(&inv.warnings) {
            assert!(!ours(&r.object), "{name}: {:#?}", r);
        }
    }
}

/// The port-level exceptions really work: the webhook target ports keep a TLS passthrough
/// chain (their Service ports are not HTTP-class, B5) and are PERMISSIVE, everything else of
/// the KFP namespace's sidecar workloads is STRICT.
#[test]
fn overlay_exceptions_are_exactly_the_webhook_ports() {
    use kfp_mesh_core::mesh::membership::{DataPlane, data_plane};
    use kfp_mesh_core::mesh::peer_authn::{MtlsMode, effective_mode};
    for name in ["kfp-master-k8s-native", "kubeflow-v1.10.1", "kfp-2.5.0-su"] {
        let c = case(name);
        let inv = inventory(&build(&c), "");
        let mut open = BTreeSet::new();
        for w in inv.workloads_in(KFP_NS) {
            if data_plane(&inv, w).value != DataPlane::Sidecar {
                continue;
            }
            for p in w
                .spec
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
            {
                let Ok(port) = u16::try_from(p.container_port) else {
                    continue;
                };
                let mode = effective_mode(&inv, w, port).value;
                if mode != MtlsMode::Strict {
                    open.insert((w.name.clone(), port, mode.as_str()));
                }
            }
        }
        let mut expected = BTreeSet::from([(
            "cache-server".to_string(),
            8443,
            MtlsMode::Permissive.as_str(),
        )]);
        if name.contains("k8s-native") {
            expected.insert((
                "ml-pipeline".to_string(),
                8443,
                MtlsMode::Permissive.as_str(),
            ));
        }
        assert_eq!(open, expected, "{name}");
        for (svc, port) in [("cache-server", 443), ("ml-pipeline", 8443)] {
            let Some(s) = inv.service(KFP_NS, svc) else {
                continue;
            };
            if let Some(sp) = s.spec.ports.iter().find(|p| p.port == port) {
                assert_ne!(
                    service_port_protocol(sp),
                    PortProtocol::Http,
                    "{name}: {svc}:{port} must not be named http*/grpc* (no TLS passthrough)"
                );
            }
        }
    }
}

fn kustomization(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    yaml_docs(&text)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{} is empty", path.display()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Component paths of a kustomization, relative to `manifests/kustomize/components`.
fn components_of(path: &Path) -> Vec<String> {
    strings(&kustomization(path)["components"])
        .into_iter()
        .map(|c| {
            c.split("components/")
                .nth(1)
                .unwrap_or_else(|| panic!("{}: component {c}", path.display()))
                .to_string()
        })
        .collect()
}

/// The overlays are what the tests build: the same components, on a pinned upstream release.
#[test]
fn overlays_match_the_tested_kustomizations() {
    for (overlay, test, env) in [
        ("istio-strict-mtls", "single-user", "env/platform-agnostic"),
        (
            "istio-strict-mtls-multi-user",
            "multi-user",
            "env/platform-agnostic-multi-user",
        ),
    ] {
        let o = repo().join("manifests/kustomize/overlays").join(overlay);
        let t = repo().join("manifests/tests/istio-strict-mtls").join(test);
        assert_eq!(
            components_of(&o.join("kustomization.yaml")),
            components_of(&t.join("kustomization.yaml")),
            "{overlay} vs the test kustomization {test}"
        );
        let resources = strings(&kustomization(&o.join("kustomization.yaml"))["resources"]);
        assert_eq!(
            resources,
            vec![format!(
                "https://github.com/kubeflow/pipelines/manifests/kustomize/{env}?ref=2.5.0"
            )],
            "{overlay}: the remote base, pinned"
        );
        assert_eq!(
            strings(&kustomization(&t.join("kustomization.yaml"))["resources"]),
            vec!["upstream".to_string()]
        );
    }
    // Every test kustomization lists the webhook before the component that configures it.
    for v in [
        "single-user",
        "single-user-master",
        "multi-user",
        "multi-user-master",
        "multi-user-k8s-native",
    ] {
        let comps = components_of(
            &repo()
                .join("manifests/tests/istio-strict-mtls")
                .join(v)
                .join("kustomization.yaml"),
        );
        assert_eq!(comps[..2], ["driver-webhook", "istio-strict-mtls"], "{v}");
    }
}

fn config_map_data<'a>(objs: &'a [Value], ns: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| {
            o["kind"] == "ConfigMap"
                && o["metadata"]["name"] == name
                && o["metadata"]["namespace"] == ns
        })
        .map(|o| &o["data"])
        .unwrap_or_else(|| panic!("ConfigMap {ns}/{name} is built"))
}

/// DRIVER_POD_LABELS / DRIVER_POD_ANNOTATIONS carry exactly what the webhook applies, and
/// the webhook is configured for every run-pod role.
#[test]
fn overlay_driver_pod_config_equals_the_webhook_mutation() {
    let objs = yaml_docs(&build(&case("kfp-master-su")));
    let text = config_map_data(&objs, "kfp-mesh-system", "kfp-mesh-webhook-config")["config.yaml"]
        .as_str()
        .unwrap_or_else(|| panic!("config.yaml"));
    let config = MutationConfig::from_yaml(text).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        config.executor && config.importer,
        "executors and importers enabled"
    );
    assert_eq!(config.labels, MutationConfig::default().labels);
    let data = config_map_data(&objs, KFP_NS, "pipeline-install-config");
    let parse = |key: &str| -> BTreeMap<String, String> {
        let v = data[key].as_str().unwrap_or_else(|| panic!("{key}"));
        serde_json::from_str(v).unwrap_or_else(|e| panic!("{key}: {e}"))
    };
    assert_eq!(parse("DRIVER_POD_LABELS"), config.labels);
    assert_eq!(
        parse("DRIVER_POD_ANNOTATIONS"),
        config.effective_annotations()
    );
    // And kfp-mesh reads them as KFP would.
    let r = check(
        &inventory(&build(&case("kfp-master-su")), ""),
        &CheckOptions::default(),
    );
    assert!(r.kfp.driver_pod_config.supported);
    assert!(r.kfp.driver_pod_config.errors.is_empty());
    assert_eq!(r.kfp.driver_pod_config.labels, config.labels);
}

/// DRIVER_POD_* is not dead weight next to the webhook: with the webhook down (its
/// MutatingWebhookConfiguration gone; it fails open), KFP itself keeps the drivers in the mesh,
/// while executors fall out of it.
#[test]
fn overlay_driver_pod_config_keeps_drivers_in_the_mesh_without_the_webhook() {
    let c = case("kfp-master-su");
    let built = build_custom(&c, &[], |m| {
        let f = m.join("kustomize/components/driver-webhook/mutatingwebhookconfiguration.yaml");
        std::fs::write(&f, "").unwrap_or_else(|e| panic!("{e}"));
    });
    let r = check(&inventory(&built, MESH_STRICT), &CheckOptions::default());
    for f in r.flows_named("driver-to-mlmd") {
        assert_eq!(
            (f.outcome, f.transport),
            (Outcome::Allow, Some(Transport::Mtls)),
            "{}",
            f.id
        );
    }
    for f in r.flows_named("executor-to-mlmd") {
        assert_eq!(f.outcome, Outcome::Reset, "{}", f.id);
    }
}

/// The KFP namespace is labelled for injection when the Namespace is part of the build (as
/// with KFP's cluster-scoped-resources), and left alone when it is not.
#[test]
fn overlay_labels_the_kfp_namespace_when_it_is_built() {
    let c = case("kfp-2.5.0-su");
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kubeflow\n  labels:\n    pod-security.kubernetes.io/enforce: baseline\n";
    let objs = yaml_docs(&build_custom(&c, &[("namespace.yaml", ns)], |_| {}));
    let kubeflow = objs
        .iter()
        .find(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == KFP_NS)
        .unwrap_or_else(|| panic!("Namespace kubeflow"));
    assert_eq!(kubeflow["metadata"]["labels"]["istio-injection"], "enabled");
    assert_eq!(
        kubeflow["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "baseline",
        "other labels kept"
    );
    let without = yaml_docs(&build(&c));
    assert!(
        !without
            .iter()
            .any(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == KFP_NS)
    );
}

// ---------------------------------------------------------------------------------------------
// No dead parts

/// One part of a component: a resource document, or a `patches` entry.
#[derive(Clone, Debug)]
enum Part {
    /// Document `index` of `file` (relative to the component); removing a ServiceAccount also
    /// removes the patch that makes a workload use it (without it the pods cannot start, which
    /// kfp-mesh does not model: the two are one part).
    Resource {
        component: String,
        file: String,
        index: usize,
        id: String,
    },
    Patch {
        component: String,
        index: usize,
        id: String,
    },
}

impl Part {
    fn component(&self) -> &str {
        match self {
            Part::Resource { component, .. } | Part::Patch { component, .. } => component,
        }
    }
    fn describe(&self) -> String {
        match self {
            Part::Resource {
                component,
                file,
                id,
                ..
            } => format!("{component}/{file}: {id}"),
            Part::Patch { component, id, .. } => format!("{component}: patch {id}"),
        }
    }
}

const COMPONENTS: &[&str] = &[
    "istio-strict-mtls",
    "istio-strict-mtls/single-user",
    "istio-strict-mtls/multi-user",
    "istio-strict-mtls/kfp-2.17",
    "istio-strict-mtls/k8s-native",
    "istio-strict-mtls/driver-pod-config",
];

fn components_dir(manifests: &Path) -> PathBuf {
    manifests.join("kustomize/components")
}

fn parts() -> Vec<Part> {
    let mut out = Vec::new();
    for comp in COMPONENTS {
        let dir = components_dir(&repo().join("manifests")).join(comp);
        let k = kustomization(&dir.join("kustomization.yaml"));
        for file in strings(&k["resources"]) {
            let text = std::fs::read_to_string(dir.join(&file)).unwrap_or_else(|e| panic!("{e}"));
            for (index, d) in yaml_docs(&text).iter().enumerate() {
                out.push(Part::Resource {
                    component: comp.to_string(),
                    file: file.clone(),
                    index,
                    id: format!(
                        "{} {}/{}",
                        d["kind"].as_str().unwrap_or("?"),
                        d["metadata"]["namespace"].as_str().unwrap_or(""),
                        d["metadata"]["name"].as_str().unwrap_or("?")
                    ),
                });
            }
        }
        for (index, p) in k["patches"].as_array().into_iter().flatten().enumerate() {
            let target = &p["target"];
            out.push(Part::Patch {
                component: comp.to_string(),
                index,
                id: format!(
                    "{} (target {} {})",
                    p["path"].as_str().unwrap_or("inline"),
                    target["kind"].as_str().unwrap_or("by name"),
                    target["name"].as_str().unwrap_or("")
                ),
            });
        }
    }
    out
}

/// Remove one part from a copy of `manifests/` (files rewritten as JSON, which is YAML).
fn remove_part(manifests: &Path, part: &Part) {
    let dir = components_dir(manifests).join(part.component());
    let kpath = dir.join("kustomization.yaml");
    let mut k = kustomization(&kpath);
    let mut drop_patches: BTreeSet<usize> = BTreeSet::new();
    match part {
        Part::Resource { file, index, .. } => {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
            let mut docs = yaml_docs(&text);
            let removed = docs.remove(*index);
            if removed["kind"] == "ServiceAccount" {
                let needle = format!(
                    "serviceAccountName: {}",
                    removed["metadata"]["name"].as_str().unwrap_or("?")
                );
                for (i, p) in k["patches"].as_array().into_iter().flatten().enumerate() {
                    let uses = p["path"].as_str().is_some_and(|f| {
                        std::fs::read_to_string(dir.join(f)).is_ok_and(|t| t.contains(&needle))
                    });
                    if uses {
                        drop_patches.insert(i);
                    }
                }
            }
            let text: Vec<String> = docs.iter().map(Value::to_string).collect();
            std::fs::write(&path, text.join("\n---\n")).unwrap_or_else(|e| panic!("{e}"));
        }
        Part::Patch { index, .. } => {
            drop_patches.insert(*index);
        }
    }
    if !drop_patches.is_empty() {
        if let Some(list) = k.get_mut("patches").and_then(Value::as_array_mut) {
            let kept: Vec<Value> = list
                .iter()
                .enumerate()
                .filter(|(i, _)| !drop_patches.contains(i))
                .map(|(_, v)| v.clone())
                .collect();
            *list = kept;
        }
        std::fs::write(&kpath, k.to_string()).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// What got worse from `before` to `after`: a flow that no longer works (or lost mTLS), or a
/// finding that was not there.
fn regressions(before: &Report, after: &Report) -> Vec<String> {
    let was: BTreeMap<&str, (Outcome, Option<Transport>)> = before
        .flows
        .iter()
        .map(|f| (f.id.as_str(), (f.outcome, f.transport)))
        .collect();
    let mut out = Vec::new();
    for f in after.flows.iter().filter(|f| f.required) {
        let now = (f.outcome, f.transport);
        if was.get(f.id.as_str()).is_some_and(|w| *w != now) {
            out.push(format!(
                "flow {} is {} ({:?})",
                f.id, f.outcome, f.transport
            ));
        }
    }
    let known: BTreeSet<(&str, &str)> = before
        .findings
        .iter()
        .map(|f| (f.code.as_str(), f.message.as_str()))
        .collect();
    for f in &after.findings {
        if !known.contains(&(f.code.as_str(), f.message.as_str())) {
            out.push(format!("{} {}", f.code, f.message));
        }
    }
    out
}

/// Parts kept on purpose although `kfp-mesh check` cannot see them go, with the reason; each
/// is proved by its own test.
const REDUNDANT_BY_DESIGN: &[(&str, &str)] = &[
    (
        "patches/namespace-injection.yaml",
        "the pod label injects KFP's own pods anyway; the namespace label covers the other pods of the namespace (TensorBoard viewers in single-user mode) and keeps istioctl analyze quiet (overlay_labels_the_kfp_namespace_when_it_is_built)",
    ),
    (
        "pipeline-install-config.yaml",
        "DRIVER_POD_* puts drivers into the mesh as the webhook does; it keeps them there while the fail-open webhook is down (overlay_driver_pod_config_keeps_drivers_in_the_mesh_without_the_webhook)",
    ),
];

/// Removing any one part of the components makes `kfp-mesh check` report what it protects:
/// a flow that breaks (or falls back to plaintext), or a finding (excess access, plaintext
/// accepted, a webhook port under STRICT). Checked on the components alone (no mesh-wide
/// STRICT), in the first acceptance case that uses the part and where the part applies.
#[test]
fn overlay_has_no_dead_parts() {
    let order = [
        "kubeflow-master",
        "kfp-master-k8s-native",
        "kfp-master-su",
        "kfp-master-mu",
        "kfp-2.5.0-su",
        "kfp-2.5.0-mu",
        "kubeflow-v1.10.1",
    ];
    let mut baselines: BTreeMap<&str, Report> = BTreeMap::new();
    let mut dead = Vec::new();
    let all = parts();
    assert!(all.len() >= 30, "{} parts", all.len());
    for part in &all {
        if REDUNDANT_BY_DESIGN
            .iter()
            .any(|(id, _)| part.describe().contains(id))
        {
            continue;
        }
        let mut live = None;
        for name in order {
            let c = case(name);
            let comps = components_of(
                &repo()
                    .join("manifests/tests/istio-strict-mtls")
                    .join(c.variant)
                    .join("kustomization.yaml"),
            );
            if !comps.iter().any(|x| x == part.component()) {
                continue;
            }
            let before = baselines
                .entry(name)
                .or_insert_with(|| check(&inventory(&build(&c), ""), &CheckOptions::default()));
            let built = build_custom(&c, &[], |m| remove_part(m, part));
            let after = check(&inventory(&built, ""), &CheckOptions::default());
            let r = regressions(before, &after);
            if !r.is_empty() {
                live = Some(format!("{name}: {}", r.join("; ")));
                break;
            }
        }
        match live {
            Some(what) => eprintln!("{} protects: {what}", part.describe()),
            None => dead.push(part.describe()),
        }
    }
    assert!(
        dead.is_empty(),
        "parts whose removal kfp-mesh check does not notice: {dead:#?}"
    );
}

/// KM033 on the upstream platform (no STRICT anywhere): servers whose callers all use mTLS
/// are reported as accepting plaintext for nothing; servers with plaintext callers (MLMD,
/// called by sidecar-less run pods) are not: STRICT would break them.
#[test]
fn upstream_kubeflow_reports_plaintext_accepted_only_where_strict_is_free() {
    let files = kubeflow_files("kubeflow-manifests-v1.10.1-");
    let texts: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            let t = std::fs::read_to_string(upstream_dir().join(f))
                .unwrap_or_else(|e| panic!("{f}: {e}"));
            (f.clone(), t)
        })
        .collect();
    let inv = Inventory::from_sources(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())));
    let r = check(&inv, &CheckOptions::default());
    let km033: BTreeSet<String> = r
        .findings
        .iter()
        .filter(|f| f.code == "KM033")
        .map(|f| finding_subject(&f.message))
        .collect();
    assert!(km033.contains("kubeflow/mysql"), "{km033:?}");
    assert!(
        !km033.contains("kubeflow/metadata-grpc-service"),
        "{km033:?}"
    );
    assert!(!km033.contains("kubeflow/cache-server"), "{km033:?}");
}
