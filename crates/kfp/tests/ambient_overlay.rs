//! The `istio-ambient` components, built with the real `kubectl kustomize` on top of the real
//! upstream renders in `../shared/upstream`, then checked with `kfp-mesh check` under Istio's
//! ambient data plane (ztunnel, and the waypoint of the multi-user sub-component).
//!
//! The test kustomizations live in `manifests/tests/istio-ambient/<variant>`; each lists
//! `upstream` as its only resource. A test copies `manifests/` to a temporary directory (so the
//! relative component paths hold), writes the render(s) into `upstream/` there, and builds.
//! Nothing is written into the repository.

mod common;

use std::path::{Path, PathBuf};

use kfp_mesh_core::connection::{Outcome, Transport};
use kfp_mesh_core::inventory::{AuthorizationPolicy, Inventory};
use kfp_mesh_core::mesh::authz::{Attachment, Enforcer, policy_attachment};
use kfp_mesh_core::mesh::membership::{DataPlane, data_plane};
use kfp_mesh_core::mesh::waypoint::service_waypoint;
use kfp_mesh_core::model::Rule;
use kfp_mesh_kfp::catalog::UnresolvedKind;
use kfp_mesh_kfp::check::{CheckOptions, FlowResult, Report, check};
use kfp_mesh_kfp::findings::Severity;

use common::{files_of, upstream_dir};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const WAYPOINT_PRINCIPAL: &str = "cluster.local/ns/kubeflow/sa/kfp-waypoint";
/// The profile namespace a KFP standalone multi-user install gets from its user (nothing in
/// KFP's own envs creates one): labelled as docs/istio-ambient.md says.
const PROFILE: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: kubeflow-user-example-com
  labels:
    pipelines.kubeflow.org/enabled: \"true\"
    app.kubernetes.io/part-of: kubeflow-profile
    istio.io/dataplane-mode: ambient
";

/// One acceptance case: a render set, the test kustomization it is built with, and the
/// objects the user adds around it.
struct Case {
    render: &'static str,
    variant: &'static str,
    extra: &'static [(&'static str, &'static str)],
}

const CASES: &[Case] = &[
    Case {
        render: "kfp-2.5.0-su",
        variant: "single-user",
        extra: &[],
    },
    Case {
        render: "kfp-2.5.0-mu",
        variant: "multi-user",
        extra: &[("profile.yaml", PROFILE)],
    },
    Case {
        render: "kfp-master-su",
        variant: "single-user-master",
        extra: &[],
    },
    Case {
        render: "kfp-master-mu",
        variant: "multi-user-master",
        extra: &[("profile.yaml", PROFILE)],
    },
    Case {
        render: "kfp-master-k8s-native",
        variant: "multi-user-k8s-native",
        extra: &[("profile.yaml", PROFILE)],
    },
    Case {
        render: "kfp-2.15.0-su",
        variant: "single-user-2.15",
        extra: &[],
    },
    Case {
        render: "kfp-master-postgresql",
        variant: "single-user-postgresql",
        extra: &[],
    },
    Case {
        render: "kfp-2.17.0-standalone-tls",
        variant: "single-user-standalone-tls",
        extra: &[],
    },
    Case {
        render: "kubeflow-v1.10.1",
        variant: "kubeflow",
        extra: &[],
    },
    Case {
        render: "kubeflow-master",
        variant: "kubeflow",
        extra: &[],
    },
];

fn case(render: &str) -> &'static Case {
    CASES
        .iter()
        .find(|c| c.render == render)
        .unwrap_or_else(|| panic!("unknown case {render}"))
}

fn multi_user(c: &Case) -> bool {
    c.variant.starts_with("multi-user") || c.variant == "kubeflow"
}

// ---------------------------------------------------------------------------------------------
// Building

/// Build the case's test kustomization with its render(s); `edit` may change the temporary
/// copy of `manifests/` first (it gets the test kustomization's directory).
fn build_custom(c: &Case, edit: impl FnOnce(&Path)) -> String {
    let tmp = common::TempDir::new(c.render);
    let manifests = tmp.0.join("manifests");
    common::copy_tree(&repo().join("manifests"), &manifests);
    let dir = manifests.join("tests/istio-ambient").join(c.variant);
    let up = dir.join("upstream");
    std::fs::create_dir_all(&up).unwrap_or_else(|e| panic!("{}: {e}", up.display()));
    let mut k = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for f in files_of(c.render) {
        std::fs::copy(upstream_dir().join(&f), up.join(&f))
            .unwrap_or_else(|e| panic!("{f} is needed (the upstream renders in ../shared): {e}"));
        k.push_str(&format!("- {f}\n"));
    }
    std::fs::write(up.join("kustomization.yaml"), k).unwrap_or_else(|e| panic!("{e}"));
    edit(&dir);
    common::kustomize(&dir)
}

fn build(c: &Case) -> String {
    build_custom(c, |_| {})
}

/// Drop one component line from the test kustomization in `dir`.
fn without_component(dir: &Path, component: &str) {
    let path = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let line = format!("- ../../../kustomize/components/{component}\n");
    assert!(
        text.contains(&line),
        "{component} is not in {}",
        path.display()
    );
    std::fs::write(&path, text.replace(&line, "")).unwrap_or_else(|e| panic!("{e}"));
}

/// Replace the content of a file of the temporary `manifests/` copy (`dir` is the test
/// kustomization's directory).
fn rewrite(dir: &Path, component_file: &str, from: &str, to: &str) {
    let path = dir
        .join("../../../kustomize/components")
        .join(component_file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.contains(from), "{component_file}: no {from:?}");
    std::fs::write(&path, text.replace(from, to)).unwrap_or_else(|e| panic!("{e}"));
}

fn inventory(c: &Case, built: &str) -> Inventory {
    let mut sources = vec![("kustomize-output.yaml", built)];
    sources.extend(c.extra.iter().copied());
    let inv = Inventory::from_sources(sources);
    assert!(inv.errors.is_empty(), "{}: {:#?}", c.render, inv.errors);
    inv
}

// ---------------------------------------------------------------------------------------------
// What must hold

fn base(id: &str) -> &str {
    id.split(['@', '#']).next().unwrap_or(id)
}

/// Flows whose caller can never have a mesh identity: they reach the pod's ztunnel in
/// plaintext through the documented port exceptions. Kubelet probes are not mesh traffic.
fn plaintext_expected(f: &FlowResult) -> bool {
    matches!(
        base(&f.id),
        "kube-apiserver-to-cache-webhook" | "kube-apiserver-to-pipelineversion-webhook"
    ) || (f.from.workload == "kubelet" && f.from.namespace.is_none())
}

fn explained(f: &FlowResult) -> String {
    f.explanation
        .iter()
        .map(|s| format!("  {s}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn has_step(f: &FlowResult, rule: &str, needle: &str) -> bool {
    f.explanation
        .iter()
        .any(|s| s.rule == rule && s.message.contains(needle))
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
    s
}

/// Every flow allowed, over mTLS (plaintext only through the webhook exceptions), every mesh
/// endpoint on ztunnel (no sidecar anywhere), the waypoint exactly in front of ml-pipeline in
/// multi-user mode, nothing unresolved, no error.
fn assert_ambient(c: &Case, r: &Report) {
    let ctx = c.render;
    assert!(r.kfp.detected, "{ctx}: KFP not detected");
    assert!(r.flows.len() > 20, "{ctx}: {} flows", r.flows.len());
    for f in &r.flows {
        let want = if plaintext_expected(f) {
            Transport::Plaintext
        } else {
            Transport::Mtls
        };
        assert_eq!(
            (f.outcome, f.transport),
            (Outcome::Allow, Some(want)),
            "{ctx}: flow {} ({} -> {}/{}:{})\n{}",
            f.id,
            f.from.workload,
            f.to.namespace,
            f.to.service,
            f.to.port,
            explained(f)
        );
        // No sidecar on either side: ztunnel (or, for the gateway, its own Envoy) carries
        // every mesh connection.
        assert!(
            !f.explanation.iter().any(|s| (s.rule == "A2"
                && s.message.contains("gets an istio-proxy sidecar"))
                || (s.rule == "A3"
                    && s.message.contains("already has an istio-proxy")
                    && !s.message.contains("istio-ingressgateway"))),
            "{ctx}: flow {} has a sidecar\n{}",
            f.id,
            explained(f)
        );
        if f.from.workload == "kubelet" {
            continue;
        }
        assert!(
            has_step(f, "A5", "ztunnel captures its traffic"),
            "{ctx}: flow {}: the server is not on ztunnel\n{}",
            f.id,
            explained(f)
        );
        let via_waypoint = has_step(f, "A6.4", "goes through waypoint");
        let expect_waypoint =
            multi_user(c) && f.to.service == "ml-pipeline" && !plaintext_expected(f);
        assert_eq!(
            via_waypoint,
            expect_waypoint,
            "{ctx}: flow {} to {}: waypoint in the path\n{}",
            f.id,
            f.to.service,
            explained(f)
        );
        if expect_waypoint {
            assert!(
                has_step(f, "D1", "kfp-mesh-ml-pipeline-waypoint")
                    && has_step(f, "A6.4", "waypoint's identity"),
                "{ctx}: flow {}: L7 at the waypoint, L4 at ztunnel\n{}",
                f.id,
                explained(f)
            );
        }
    }
    // The run pods are there, on ztunnel, in every run namespace.
    for id in [
        "driver-to-mlmd",
        "driver-to-api-server",
        "driver-wait-to-object-store",
        "executor-to-mlmd",
        "executor-to-api-server",
        "executor-to-object-store",
        "importer-to-mlmd",
    ] {
        let found: Vec<_> = r.flows_named(id).collect();
        assert!(!found.is_empty(), "{ctx}: no flow {id}");
        for f in found {
            assert!(f.from.synthetic, "{ctx}: {}", f.id);
            assert!(
                has_step(f, "A6.1", "ztunnels carry the connection over HBONE"),
                "{ctx}: {} is not ambient to ambient\n{}",
                f.id,
                explained(f)
            );
        }
    }
    let errors: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert!(
        errors.is_empty(),
        "{ctx}: errors {errors:#?}\n{}",
        summary(r)
    );
    let open: Vec<_> = r
        .unresolved
        .iter()
        .filter(|u| u.kind != UnresolvedKind::OutsideMesh)
        .collect();
    assert!(open.is_empty(), "{ctx}: unresolved {open:#?}");
}

/// ztunnel's L4 attributes (`pilot/pkg/serviceregistry/ambient/authorization.go`): anything
/// else in a rule is an HTTP attribute ztunnel cannot enforce.
fn l7_attributes(rule: &Rule) -> Vec<String> {
    let mut out = Vec::new();
    let set = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    for s in rule
        .from
        .iter()
        .flatten()
        .flatten()
        .filter_map(|f| f.source.as_ref())
    {
        for (name, v) in [
            ("requestPrincipals", &s.request_principals),
            ("notRequestPrincipals", &s.not_request_principals),
            ("remoteIpBlocks", &s.remote_ip_blocks),
            ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
        ] {
            if set(v) {
                out.push(name.to_string());
            }
        }
    }
    for o in rule
        .to
        .iter()
        .flatten()
        .flatten()
        .filter_map(|t| t.operation.as_ref())
    {
        for (name, v) in [
            ("hosts", &o.hosts),
            ("notHosts", &o.not_hosts),
            ("methods", &o.methods),
            ("notMethods", &o.not_methods),
            ("paths", &o.paths),
            ("notPaths", &o.not_paths),
        ] {
            if set(v) {
                out.push(name.to_string());
            }
        }
    }
    const L4_WHEN: [&str; 5] = [
        "source.ip",
        "source.namespace",
        "source.principal",
        "destination.ip",
        "destination.port",
    ];
    for w in rule.when.iter().flatten().flatten() {
        if !L4_WHEN.contains(&w.key.as_str()) {
            out.push(format!("when {}", w.key));
        }
    }
    out
}

/// The L4/L7 split: every AuthorizationPolicy ztunnel enforces on an ambient workload names L4
/// attributes only; every policy with `targetRefs` names a Service whose waypoint the build
/// has (a Gateway of class `istio-waypoint` that takes Service traffic).
fn assert_l4_l7_split(c: &Case, inv: &Inventory) {
    let ctx = c.render;
    let ambient: Vec<_> = inv
        .workloads
        .iter()
        .filter(|w| data_plane(inv, w).value == DataPlane::Ambient)
        .collect();
    assert!(
        ambient.len() > 8,
        "{ctx}: {} ambient workloads",
        ambient.len()
    );
    let policies: Vec<&AuthorizationPolicy> =
        inv.authorization_policies.values().flatten().collect();
    let mut at_ztunnel = 0;
    let mut at_waypoint = 0;
    for p in &policies {
        let name = format!("{}/{}", p.namespace(), p.name());
        let targeted = p.spec.target_ref.is_some()
            || p.spec.target_refs.as_ref().is_some_and(|v| !v.is_empty());
        let enforced_by_ztunnel: Vec<_> = ambient
            .iter()
            .filter(|w| {
                matches!(
                    policy_attachment(inv, w, Enforcer::Ztunnel, p),
                    Attachment::Applies(_)
                )
            })
            .map(|w| w.name.clone())
            .collect();
        if !enforced_by_ztunnel.is_empty() {
            at_ztunnel += 1;
            assert!(!targeted, "{ctx}: {name}");
            for (i, rule) in p.spec.rules.iter().flatten().enumerate() {
                let Some(rule) = rule else { continue };
                let l7 = l7_attributes(rule);
                assert!(
                    l7.is_empty(),
                    "{ctx}: {name} rule {} is enforced by ztunnel on {enforced_by_ztunnel:?} but names HTTP attributes {l7:?}",
                    i + 1
                );
            }
        }
        if targeted {
            at_waypoint += 1;
            for r in p
                .spec
                .target_refs
                .iter()
                .flatten()
                .chain(p.spec.target_ref.iter())
            {
                assert_eq!(r.kind, "Service", "{ctx}: {name} targets {}", r.kind);
                let svc = inv.service(p.namespace(), &r.name).unwrap_or_else(|| {
                    panic!("{ctx}: {name} targets a missing Service {}", r.name)
                });
                let w = service_waypoint(inv, svc).unwrap_or_else(|| {
                    panic!("{ctx}: {name}: Service {} uses no waypoint", r.name)
                });
                let g = w.gateway.as_ref().unwrap_or_else(|| {
                    panic!("{ctx}: {name}: waypoint {} not in the build", w.name)
                });
                assert_eq!(g.class, "istio-waypoint", "{ctx}: {name}");
                assert!(g.takes_service_traffic(), "{ctx}: {name}");
                assert_eq!(w.principal(inv), WAYPOINT_PRINCIPAL, "{ctx}");
            }
        }
    }
    assert!(at_ztunnel >= 8, "{ctx}: only {at_ztunnel} ztunnel policies");
    assert_eq!(
        at_waypoint,
        usize::from(multi_user(c)),
        "{ctx}: policies with targetRefs"
    );
    // No sidecar machinery: the driver webhook is not part of an ambient install.
    assert!(
        !inv.objects
            .iter()
            .any(|o| o.kind == "MutatingWebhookConfiguration" && o.meta.name.contains("kfp-mesh")),
        "{ctx}: the kfp-mesh driver webhook is not needed under ambient"
    );
}

fn acceptance(render: &str) {
    let c = case(render);
    let built = build(c);
    let inv = inventory(c, &built);
    assert_l4_l7_split(c, &inv);
    let r = check(&inv, &CheckOptions::default());
    println!("{render}:\n{}", summary(&r));
    assert_ambient(c, &r);
}

#[test]
fn ambient_kfp_2_5_0_single_user() {
    acceptance("kfp-2.5.0-su");
}

#[test]
fn ambient_kfp_2_5_0_multi_user() {
    acceptance("kfp-2.5.0-mu");
}

#[test]
fn ambient_kfp_master_single_user() {
    acceptance("kfp-master-su");
}

#[test]
fn ambient_kfp_master_multi_user() {
    acceptance("kfp-master-mu");
}

#[test]
fn ambient_kfp_master_k8s_native() {
    acceptance("kfp-master-k8s-native");
}

#[test]
fn ambient_kfp_2_15_0_single_user() {
    acceptance("kfp-2.15.0-su");
}

#[test]
fn ambient_kfp_master_postgresql() {
    acceptance("kfp-master-postgresql");
}

#[test]
fn ambient_kfp_2_17_0_standalone_tls() {
    acceptance("kfp-2.17.0-standalone-tls");
}

#[test]
fn ambient_kubeflow_v1_10_1() {
    acceptance("kubeflow-v1.10.1");
}

#[test]
fn ambient_kubeflow_master() {
    acceptance("kubeflow-master");
}

// ---------------------------------------------------------------------------------------------
// Each piece is needed: without it, `check` shows the failure it prevents.

/// Flows of `id` (all instances) with their outcomes.
fn outcomes<'a>(r: &'a Report, id: &'a str) -> Vec<&'a FlowResult> {
    let v: Vec<_> = r.flows_named(id).collect();
    assert!(!v.is_empty(), "no flow {id}");
    v
}

#[test]
fn without_the_waypoint_ztunnel_refuses_every_call_to_the_api_server() {
    // The L4 policy admits the waypoint alone; without the waypoint (no Gateway, no
    // `istio.io/use-waypoint`) the L7 policy is enforced nowhere and ztunnel refuses everyone.
    let c = case("kfp-master-mu");
    let built = build_custom(c, |dir| {
        rewrite(
            dir,
            "istio-ambient/multi-user/kustomization.yaml",
            "- waypoint.yaml\n",
            "",
        );
        rewrite(
            dir,
            "istio-ambient/multi-user/kustomization.yaml",
            "- path: patches/ml-pipeline-use-waypoint.yaml\n",
            "",
        );
    });
    let r = check(&inventory(c, &built), &CheckOptions::default());
    for id in [
        "ui-to-api-server",
        "driver-to-api-server",
        "persistence-agent-to-api-server",
    ] {
        for f in outcomes(&r, id) {
            assert_eq!(f.outcome, Outcome::Reset, "{}\n{}", f.id, explained(f));
            assert!(
                has_step(
                    f,
                    "D1",
                    "policies with targetRef/targetRefs are not sent to ztunnel"
                ),
                "{}\n{}",
                f.id,
                explained(f)
            );
        }
    }
    // Everything else is unaffected.
    for f in outcomes(&r, "driver-to-mlmd") {
        assert_eq!(f.outcome, Outcome::Allow, "{}", f.id);
    }
    // `check` fails the install (exit 1).
    assert!(
        r.findings.iter().any(|f| f.severity == Severity::Error),
        "{}",
        summary(&r)
    );
}

#[test]
fn upstream_header_rule_on_a_selector_is_omitted_by_ztunnel() {
    // Kubeflow's ambient variants keep KFP's own `ml-pipeline` policy, whose second rule is
    // the HTTP header rule: at ztunnel that ALLOW rule is omitted, so run pods (which send no
    // header and are not in its principal list) are refused; the listed principals still pass.
    let c = case("kfp-master-mu");
    let built = build_custom(c, |dir| {
        let k = "istio-ambient/multi-user/kustomization.yaml";
        rewrite(dir, k, "- waypoint.yaml\n", "");
        rewrite(dir, k, "- authorizationpolicy-waypoint.yaml\n", "");
        rewrite(
            dir,
            k,
            "- path: patches/ml-pipeline-use-waypoint.yaml\n",
            "",
        );
        rewrite(dir, k, "name: ^(ml-pipeline|", "name: ^(");
    });
    let r = check(&inventory(c, &built), &CheckOptions::default());
    for f in outcomes(&r, "driver-to-api-server") {
        assert_eq!(f.outcome, Outcome::Reset, "{}\n{}", f.id, explained(f));
        assert!(
            has_step(f, "A6.3", "request.headers[kubeflow-userid]")
                && has_step(f, "A6.3", "ztunnel cannot evaluate"),
            "{}\n{}",
            f.id,
            explained(f)
        );
    }
    for f in outcomes(&r, "ui-to-api-server") {
        assert_eq!(f.outcome, Outcome::Allow, "{}\n{}", f.id, explained(f));
    }
    assert!(
        r.findings.iter().any(|f| f.severity == Severity::Error),
        "{}",
        summary(&r)
    );
}

#[test]
fn kubeflow_profiles_put_run_pods_on_ztunnel() {
    // Without the namespace-labels change, Kubeflow's profile controller labels profile
    // namespaces `istio-injection: enabled`; KFP's run pods opt out of injection
    // (`sidecar.istio.io/inject: "false"`) and are then outside the mesh altogether: their
    // plaintext is refused by STRICT at ztunnel (kubeflow/pipelines#12015 under ambient).
    let c = case("kubeflow-master");
    let built = build_custom(c, |dir| {
        without_component(dir, "istio-ambient/kubeflow-profiles");
    });
    let r = check(&inventory(c, &built), &CheckOptions::default());
    for id in ["driver-to-mlmd", "executor-to-object-store"] {
        for f in outcomes(&r, id) {
            assert_eq!(f.outcome, Outcome::Reset, "{}\n{}", f.id, explained(f));
            assert!(
                has_step(f, "A5", "not enrolled in ambient")
                    && has_step(f, "A6.2", "istio_converted_static_strict"),
                "{}\n{}",
                f.id,
                explained(f)
            );
        }
    }
}

#[test]
fn without_the_hbone_network_policies_mesh_traffic_is_dropped() {
    // KFP's `seaweedfs` NetworkPolicy admits 8333/8111, not HBONE's 15008; Kubeflow's
    // `default-allow-same-namespace` keeps profile namespaces off the waypoint.
    let c = case("kubeflow-master");
    let built = build_custom(c, |dir| {
        without_component(dir, "istio-ambient/networkpolicy");
    });
    let r = check(&inventory(c, &built), &CheckOptions::default());
    for id in ["driver-wait-to-object-store", "driver-to-api-server"] {
        for f in outcomes(&r, id) {
            assert_eq!(f.outcome, Outcome::Blocked, "{}\n{}", f.id, explained(f));
            assert!(has_step(f, "NP", "15008"), "{}\n{}", f.id, explained(f));
        }
    }
    for f in outcomes(&r, "driver-to-mlmd") {
        assert_eq!(f.outcome, Outcome::Allow, "{}\n{}", f.id, explained(f));
    }
}

#[test]
fn without_the_namespace_label_nothing_is_in_the_mesh() {
    // KFP's envs carry no Namespace: without the `namespace` sub-component (or a label set by
    // hand) no pod is captured and every call is plaintext.
    let c = case("kfp-2.5.0-su");
    let built = build_custom(c, |dir| {
        without_component(dir, "istio-ambient/namespace");
    });
    let r = check(&inventory(c, &built), &CheckOptions::default());
    for f in outcomes(&r, "driver-to-mlmd") {
        assert_eq!(
            (f.outcome, f.transport),
            (Outcome::Allow, Some(Transport::Plaintext)),
            "{}\n{}",
            f.id,
            explained(f)
        );
    }
}

/// Every Istio object the components ship passes kfp-mesh's validation (what Istio's webhook
/// and CRD schema would reject or warn about), as written.
#[test]
fn ambient_istio_objects_pass_validation() {
    let istio = common::assert_component_istio_objects_valid("istio-ambient");
    assert!(istio >= 18, "only {istio} Istio objects found");
}
