//! `kfp-mesh check` over the real upstream renders in ../shared/upstream.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use kfp_mesh_core::connection::{Outcome, Transport};
use kfp_mesh_core::inventory::{Inventory, parse_stream};
use kfp_mesh_core::object::Object;
use kfp_mesh_kfp::check::{CheckOptions, Report, Suppression, check};
use kfp_mesh_kfp::findings::Severity;

/// A render of ../shared/upstream: its path (the origin of its objects) and its text.
fn upstream(name: &str) -> (String, String) {
    (
        common::upstream_dir().join(name).display().to_string(),
        common::read(name),
    )
}

const MESH_STRICT: &str = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
";

/// Objects of the given renders plus extra YAML; `inject` labels these namespaces
/// `istio-injection: enabled` the way `kubectl label` would.
fn inventory(files: &[&str], extra: &str, inject: &[&str]) -> Inventory {
    let mut objects: Vec<Object> = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let (name, text) = upstream(f);
        let (o, e) = parse_stream(&name, &text);
        objects.extend(o);
        errors.extend(e);
    }
    let (o, e) = parse_stream("extra.yaml", extra);
    objects.extend(o);
    errors.extend(e);
    for ns in inject {
        let found = objects
            .iter_mut()
            .find(|o| o.kind == "Namespace" && o.meta.name == *ns);
        match found {
            Some(o) => {
                o.meta.labels.insert("istio-injection", "enabled");
            }
            None => {
                let (o, _) = parse_stream(
                    "label.yaml",
                    &format!(
                        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{istio-injection: enabled}}}}\n"
                    ),
                );
                objects.extend(o);
            }
        }
    }
    let inv = Inventory::from_objects(objects, errors);
    assert!(inv.errors.is_empty(), "{:?}", inv.errors);
    inv
}

fn flows<'a>(r: &'a Report, id: &'a str) -> Vec<&'a kfp_mesh_kfp::check::FlowResult> {
    let found: Vec<_> = r.flows_named(id).collect();
    assert!(
        !found.is_empty(),
        "no flow {id}; flows: {:?}",
        r.flows.iter().map(|f| &f.id).collect::<Vec<_>>()
    );
    found
}

fn assert_all(r: &Report, id: &str, outcome: Outcome) {
    for f in flows(r, id) {
        assert_eq!(
            f.outcome,
            outcome,
            "{}: {:#?}",
            f.id,
            f.explanation.iter().map(|s| &s.message).collect::<Vec<_>>()
        );
    }
}

fn codes(r: &Report) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.code.as_str()).collect()
}

#[test]
fn kfp_2_5_0_under_strict_is_issue_12015() {
    let inv = inventory(
        &["kfp-2.5.0-platform-agnostic.yaml"],
        MESH_STRICT,
        &["kubeflow"],
    );
    let r = check(&inv, &CheckOptions::default());
    // The driver's `wait` container uploads main.log to MinIO: reset.
    for f in flows(&r, "driver-wait-to-object-store") {
        assert_eq!(f.to.service, "minio-service");
        assert_eq!(f.to.port, 9000);
        assert_eq!(f.from.container.as_deref(), Some("wait"));
    }
    assert_all(&r, "driver-wait-to-object-store", Outcome::Reset);
    assert_all(&r, "driver-to-mlmd", Outcome::Reset);
    assert_all(&r, "driver-to-api-server", Outcome::Reset);
    for id in [
        "executor-to-mlmd",
        "executor-to-api-server",
        "executor-to-object-store",
        "executor-wait-to-object-store",
    ] {
        assert_all(&r, id, Outcome::Reset);
    }
    for f in flows(&r, "driver-to-mlmd") {
        assert_eq!(f.to.port, 8080);
        assert_eq!(f.from.service_account.as_deref(), Some("pipeline-runner"));
        assert!(f.findings.iter().any(|c| *c == "KM001"), "{:?}", f.findings);
    }
    // The finding names the cause and cites the API server Deployment in the render.
    let km010 = r
        .findings
        .iter()
        .find(|f| f.code == "KM010")
        .expect("KM010 reported");
    assert!(
        km010.message.contains("sidecar.istio.io/inject: \"false\""),
        "{}",
        km010.message
    );
    assert_eq!(
        km010.object.as_ref().map(|o| o.to_string()).as_deref(),
        Some("Deployment kubeflow/ml-pipeline")
    );
    assert!(
        km010
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("kfp-2.5.0-platform-agnostic.yaml"))
    );
    assert!(km010.line.is_some_and(|l| l > 1));
    // Control-plane flows between injected pods keep working over mTLS.
    for id in ["persistence-agent-to-api-server", "api-server-to-database"] {
        for f in flows(&r, id) {
            assert_eq!(
                (f.outcome, f.transport),
                (Outcome::Allow, Some(Transport::Mtls)),
                "{id}"
            );
        }
    }
    assert_eq!(r.worst(), Some(Severity::Error));
}

#[test]
fn kfp_2_5_0_without_strict_works_in_plaintext_with_warnings() {
    let inv = inventory(&["kfp-2.5.0-platform-agnostic.yaml"], "", &["kubeflow"]);
    let r = check(&inv, &CheckOptions::default());
    assert!(!r.flows.is_empty());
    for f in r.flows.iter().filter(|f| f.required) {
        assert_eq!(f.outcome, Outcome::Allow, "{} is {}", f.id, f.outcome);
    }
    // Run pods have no sidecar: their flows are plaintext and reported as warnings.
    let driver = flows(&r, "driver-to-mlmd");
    for f in driver {
        assert_eq!(f.transport, Some(Transport::Plaintext));
        assert!(f.findings.iter().any(|c| *c == "KM006"), "{:?}", f.findings);
    }
    assert!(codes(&r).contains(&"KM006"));
    assert!(
        r.findings
            .iter()
            .filter(|f| f.code == "KM006")
            .all(|f| f.severity == Severity::Warning)
    );
    assert!(
        !r.findings.iter().any(|f| f.severity == Severity::Error),
        "{:#?}",
        r.findings
    );
}

#[test]
fn kubeflow_1_10_1_under_strict_reports_every_known_breakage_and_nothing_else() {
    let files = common::files_of("kubeflow-v1.10.1");
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let inv = inventory(&files, MESH_STRICT, &[]);
    let r = check(&inv, &CheckOptions::default());
    assert_eq!(r.kfp.mode.value.as_str(), "platform");
    // kfp-topology.md §6: what breaks.
    assert_all(&r, "metadata-envoy-to-mlmd", Outcome::Reset);
    for id in [
        "driver-to-mlmd",
        "driver-to-api-server",
        "driver-wait-to-object-store",
        "executor-to-mlmd",
        "executor-to-object-store",
        "importer-to-mlmd",
    ] {
        for f in flows(&r, id) {
            assert_eq!(f.outcome, Outcome::Reset, "{}", f.id);
            assert_eq!(
                f.from.namespace.as_deref(),
                Some("kubeflow-user-example-com")
            );
            assert_eq!(f.from.service_account.as_deref(), Some("default-editor"));
        }
    }
    let webhook = flows(&r, "kube-apiserver-to-cache-webhook");
    assert!(
        webhook
            .iter()
            .all(|f| f.outcome == Outcome::TlsFailure && f.findings.iter().any(|c| *c == "KM020"))
    );
    assert!(codes(&r).contains(&"KM010"));
    // §6: unaffected: flows whose server has no sidecar, in-mesh control-plane traffic.
    for id in [
        "ui-to-metadata-envoy",
        "metacontroller-to-kfp-profile-controller",
        "ingress-gateway-to-ui",
        "ui-to-api-server",
        "persistence-agent-to-api-server",
        "scheduled-workflow-to-api-server",
        "mlmd-to-database",
        "kubelet-probe-mlmd",
    ] {
        assert_all(&r, id, Outcome::Allow);
    }
    let broken: Vec<&str> = r
        .flows
        .iter()
        .filter(|f| f.outcome != Outcome::Allow)
        .map(|f| f.id.split(['@', '#']).next().unwrap_or(&f.id))
        .collect();
    for id in broken {
        assert!(
            id == "metadata-envoy-to-mlmd"
                || id == "kube-apiserver-to-cache-webhook"
                || id.starts_with("driver-")
                || id.starts_with("executor-")
                || id.starts_with("importer-"),
            "{id} is reported broken but kfp-topology.md §6 does not list it"
        );
    }
}

#[test]
fn kfp_master_multi_user_has_seaweedfs_and_profile_controller_flows() {
    let inv = inventory(
        &["kfp-master-platform-agnostic-multi-user.yaml"],
        MESH_STRICT,
        &["kubeflow"],
    );
    let r = check(&inv, &CheckOptions::default());
    let s3 = flows(&r, "driver-wait-to-object-store");
    assert!(
        s3.iter()
            .all(|f| f.to.service == "seaweedfs" && f.to.port == 9000)
    );
    let iam = flows(&r, "kfp-profile-controller-to-object-store-iam");
    assert!(iam.iter().all(|f| f.to.port == 8111));
    // The KFP profile controller has no sidecar: under STRICT its calls are reset.
    assert_all(
        &r,
        "kfp-profile-controller-to-object-store-iam",
        Outcome::Reset,
    );
    assert_all(
        &r,
        "kfp-profile-controller-to-object-store-s3",
        Outcome::Reset,
    );
}

#[test]
fn k8s_native_render_has_the_pipelineversion_webhook_flow() {
    let inv = inventory(
        &["kfp-master-cert-manager-platform-agnostic-multi-user-k8s-native.yaml"],
        MESH_STRICT,
        &["kubeflow"],
    );
    let r = check(&inv, &CheckOptions::default());
    let webhook = flows(&r, "kube-apiserver-to-pipelineversion-webhook");
    for f in webhook {
        assert_eq!((f.to.service.as_str(), f.to.port), ("ml-pipeline", 8443));
        assert_ne!(f.outcome, Outcome::Allow, "STRICT breaks the webhook");
        assert!(f.findings.iter().any(|c| *c == "KM020"), "{:?}", f.findings);
    }
}

#[test]
fn suppressions_by_flag_and_annotation() {
    let inv = inventory(
        &["kfp-2.5.0-platform-agnostic.yaml"],
        MESH_STRICT,
        &["kubeflow"],
    );
    let all = check(&inv, &CheckOptions::default());
    let opts = CheckOptions {
        suppress: vec![
            "KM001".parse::<Suppression>().expect("code"),
            "KM010=kubeflow/ml-pipeline".parse().expect("code=object"),
        ],
        ..CheckOptions::default()
    };
    let some = check(&inv, &opts);
    assert!(!codes(&some).contains(&"KM001"));
    assert!(!codes(&some).contains(&"KM010"));
    assert_eq!(
        some.suppressed,
        all.findings.len() - some.findings.len(),
        "the count of suppressed findings"
    );
    assert!(
        some.flows
            .iter()
            .all(|f| !f.findings.iter().any(|c| *c == "KM001")),
        "flows no longer list suppressed codes"
    );
    assert!("KM999".parse::<Suppression>().is_err());
    assert!("KM001=nonamespace".parse::<Suppression>().is_err());

    // The annotation on the object suppresses it too.
    let annotated = inventory(
        &["kfp-2.5.0-platform-agnostic.yaml"],
        &format!(
            "{MESH_STRICT}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: plaintext-mlmd\n  namespace: kubeflow\n  annotations: {{kfp-mesh.io/suppress: KM021}}\nspec:\n  host: metadata-grpc-service\n  trafficPolicy: {{tls: {{mode: DISABLE}}}}\n"
        ),
        &["kubeflow"],
    );
    let r = check(&annotated, &CheckOptions::default());
    assert!(!codes(&r).contains(&"KM021"), "{:?}", codes(&r));
    assert!(r.suppressed >= 1);
}

#[test]
fn destination_rule_disable_toward_strict_is_reported() {
    let inv = inventory(
        &["kfp-2.5.0-platform-agnostic.yaml"],
        &format!(
            "{MESH_STRICT}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: plaintext-mlmd, namespace: kubeflow}}\nspec:\n  host: metadata-grpc-service\n  trafficPolicy: {{tls: {{mode: DISABLE}}}}\n"
        ),
        &["kubeflow"],
    );
    let r = check(&inv, &CheckOptions::default());
    let km021: Vec<_> = r.findings.iter().filter(|f| f.code == "KM021").collect();
    assert_eq!(km021.len(), 1, "{:#?}", r.findings);
    assert_eq!(km021[0].file.as_deref(), Some("extra.yaml"));
    // And the flows through it fail in the client sidecar.
    assert_all(&r, "metadata-writer-to-mlmd", Outcome::UpstreamFailure);
}

#[test]
fn rejected_and_malformed_input_is_reported_and_the_rest_analysed() {
    let (name, text) = upstream("kfp-2.5.0-platform-agnostic.yaml");
    let bad = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: broken, namespace: kubeflow}
spec:
  action: DENY
---
this: is: not: yaml
---
- a
- list
";
    let inv = Inventory::from_sources([(name.as_str(), text.as_str()), ("bad.yaml", bad)]);
    let r = check(&inv, &CheckOptions::default());
    let km040 = r
        .findings
        .iter()
        .find(|f| f.code == "KM040")
        .expect("rejected policy");
    assert_eq!(
        (km040.file.as_deref(), km040.line),
        (Some("bad.yaml"), Some(1))
    );
    assert!(km040.message.contains("A7"), "{}", km040.message);
    let km050: Vec<_> = r.findings.iter().filter(|f| f.code == "KM050").collect();
    assert_eq!(km050.len(), 2, "{km050:#?}");
    assert_eq!(km050[0].file.as_deref(), Some("bad.yaml"));
    assert!(r.flows.len() > 20, "the rest is still analysed");
}

/// Issue #12015 on a current release: every run-pod flow, object store included, is predicted
/// (reset) and none is left unresolved except the calls that leave the mesh.
fn current_release_is_issue_12015(file: &str) -> Report {
    let inv = inventory(&[file], MESH_STRICT, &["kubeflow"]);
    let r = check(&inv, &CheckOptions::default());
    assert!(r.kfp.detected, "{file}");
    for id in [
        "driver-wait-to-object-store",
        "executor-to-object-store",
        "executor-wait-to-object-store",
        "importer-wait-to-object-store",
        "driver-to-mlmd",
        "executor-to-mlmd",
    ] {
        // Plaintext is reset; a run pod's own TLS (standalone-TLS env) fails its handshake.
        for f in flows(&r, id) {
            assert!(
                matches!(f.outcome, Outcome::Reset | Outcome::TlsFailure),
                "{file}: {id} {:?}",
                f.outcome
            );
        }
    }
    assert!(codes(&r).contains(&"KM010"), "{file}: {:?}", codes(&r));
    assert_eq!(r.worst(), Some(Severity::Error));
    r
}

fn open_unresolved(r: &Report) -> Vec<&kfp_mesh_kfp::check::Unresolved> {
    r.unresolved
        .iter()
        .filter(|u| u.kind != kfp_mesh_kfp::catalog::UnresolvedKind::OutsideMesh)
        .collect()
}

#[test]
fn kfp_2_15_object_store_is_reached_through_the_alias_service() {
    let r = current_release_is_issue_12015("kfp-2.15.0-platform-agnostic.yaml");
    // Clients are configured for `minio-service:9000` (-> SeaweedFS 8333); `seaweedfs` has no
    // port 9000, so checking it there left half of #12015 "not checked".
    for id in [
        "api-server-to-object-store",
        "ui-to-object-store",
        "driver-wait-to-object-store",
        "executor-to-object-store",
    ] {
        for f in flows(&r, id) {
            assert_eq!(
                (f.to.service.as_str(), f.to.port),
                ("minio-service", 9000),
                "{id}"
            );
        }
    }
    // The API server's destination comes from its env, cited with the object.
    let f = flows(&r, "api-server-to-object-store")[0];
    let first = &f.explanation[0];
    assert!(
        first.message.contains("OBJECTSTORECONFIG_HOST") && first.message.contains("minio-service"),
        "{}",
        first.message
    );
    // Argo's wait container: workflow-controller-configmap's artifact repository.
    let f = flows(&r, "driver-wait-to-object-store")[0];
    assert!(
        f.explanation[0]
            .message
            .contains("artifactRepository.s3.endpoint=minio-service.kubeflow:9000"),
        "{}",
        f.explanation[0].message
    );
    assert!(open_unresolved(&r).is_empty(), "{:#?}", open_unresolved(&r));
    // Item 8: under STRICT a server without ALLOW policies is open to every mesh identity,
    // not to plaintext (which STRICT resets): KM031 names that excess.
    let a = r
        .access
        .iter()
        .find(|a| a.service == "ml-pipeline")
        .expect("access entry for ml-pipeline");
    assert_eq!(a.allowed, ["any-mesh-identity"]);
    let km031 = r
        .findings
        .iter()
        .find(|f| f.code == "KM031" && f.message.starts_with("kubeflow/ml-pipeline "))
        .expect("KM031 on ml-pipeline");
    assert!(
        km031.message.contains("any-mesh-identity"),
        "{}",
        km031.message
    );
    assert!(!km031.message.contains("anyone"), "{}", km031.message);
}

#[test]
fn kfp_master_postgresql_checks_each_database_flow_against_its_real_server() {
    let r = current_release_is_issue_12015("kfp-master-platform-agnostic-postgresql.yaml");
    // MLMD uses its own database (--postgres_config_host=metadata-postgres-db).
    for id in ["mlmd-to-database", "mlmd-wait-for-database"] {
        for f in flows(&r, id) {
            assert_eq!(
                (f.to.service.as_str(), f.to.port),
                ("metadata-postgres-db", 5432),
                "{id}"
            );
        }
    }
    // The API server and the cache are configured for `postgres`, which no Service provides:
    // KM072 names the key and the ConfigMap, and the flows are unresolved, not silent.
    let km072: Vec<_> = r.findings.iter().filter(|f| f.code == "KM072").collect();
    let flows_named: BTreeSet<&str> = km072.iter().filter_map(|f| f.flow.as_deref()).collect();
    assert_eq!(
        flows_named,
        BTreeSet::from([
            "api-server-to-database",
            "api-server-wait-for-database",
            "cache-server-to-database"
        ])
    );
    for f in &km072 {
        assert_eq!(f.severity, Severity::Error);
        assert!(f.message.contains("postgresHost=postgres"), "{}", f.message);
        assert_eq!(
            f.object.as_ref().map(|o| o.to_string()).as_deref(),
            Some("ConfigMap kubeflow/pipeline-install-config")
        );
    }
    let open: BTreeSet<&str> = open_unresolved(&r)
        .iter()
        .map(|u| u.flow.as_str())
        .collect();
    assert_eq!(open, flows_named);
}

#[test]
fn kfp_2_17_standalone_tls_is_application_tls_through_the_sidecars() {
    let r = current_release_is_issue_12015(
        "kfp-2.17.0-cert-manager-platform-agnostic-standalone-tls.yaml",
    );
    // Renamed `tls` ports resolve through the container port names.
    assert!(open_unresolved(&r).is_empty(), "{:#?}", open_unresolved(&r));
    // The API server serves TLS (--tlsCertPath). Port 8887 keeps the name `grpc`, so the
    // persistence agent's sidecar has only plaintext HTTP for its HTTP chain: the TLS handshake
    // takes PassthroughCluster, without Istio mTLS, and the API server's STRICT sidecar
    // answers it with its mesh certificate: the handshake fails.
    for f in flows(&r, "persistence-agent-to-api-server") {
        assert_eq!(f.to.port, 8887);
        assert_eq!(f.outcome, Outcome::TlsFailure, "{f:?}");
        assert!(
            f.explanation
                .iter()
                .any(|s| s.rule == "D7" && s.message.contains("speaks TLS itself")),
            "{:#?}",
            f.explanation
        );
        assert!(
            f.fix
                .as_deref()
                .is_some_and(|x| x.contains("appProtocol: tls"))
        );
    }
    // Port 8888 is `tls` / `appProtocol: https`: the TLS passes inside Istio mTLS.
    for f in flows(&r, "ui-to-api-server") {
        assert_eq!(
            (f.to.port, f.outcome, f.transport),
            (8888, Outcome::Allow, Some(Transport::Mtls))
        );
    }
    // Run pods without a sidecar send their own TLS to a STRICT port: the handshake fails.
    assert_all(&r, "driver-to-api-server", Outcome::TlsFailure);
}

/// A Service port whose `targetPort` names a port no container declares (valid Kubernetes,
/// a plausible typo): the flow is an error finding naming the Service, not a silent gap.
#[test]
fn a_target_port_typo_is_an_unresolved_error_not_a_silent_clean() {
    let (name, text) = upstream("kfp-2.5.0-platform-agnostic.yaml");
    let broken = text.replacen(
        "  - name: grpc-api\n    port: 8080\n    protocol: TCP\n",
        "  - name: grpc-api\n    port: 8080\n    protocol: TCP\n    targetPort: grcp-api\n",
        1,
    );
    assert_ne!(broken, text, "the render changed: update the test");
    let (objects, errors) = parse_stream(&name, &broken);
    let (extra, _) = parse_stream("extra.yaml", MESH_STRICT);
    let inv = Inventory::from_objects(objects.into_iter().chain(extra).collect(), errors);
    let r = check(&inv, &CheckOptions::default());
    let hits: Vec<_> = r.findings.iter().filter(|f| f.code == "KM070").collect();
    assert!(!hits.is_empty(), "{:?}", codes(&r));
    for f in hits {
        assert_eq!(f.severity, Severity::Error);
        assert!(f.message.contains("grcp-api"), "{}", f.message);
        assert!(f.object.as_ref().is_some_and(|o| o.kind == "Service"));
    }
}

/// The caller is simply missing from the input: "not in the input" (KM071, a warning), not
/// "could not resolve".
#[test]
fn a_partial_render_says_not_in_the_input() {
    let (name, text) = upstream("kfp-2.5.0-platform-agnostic.yaml");
    let (objects, errors) = parse_stream(&name, &text);
    let objects: Vec<Object> = objects
        .into_iter()
        .filter(|o| !(o.kind == "Deployment" && o.meta.name == "ml-pipeline-persistenceagent"))
        .collect();
    let r = check(
        &Inventory::from_objects(objects, errors),
        &CheckOptions::default(),
    );
    let u = r
        .unresolved
        .iter()
        .find(|u| u.flow == "persistence-agent-to-api-server")
        .expect("listed as unresolved");
    assert_eq!(u.kind, kfp_mesh_kfp::catalog::UnresolvedKind::NotInInput);
    let f = r
        .findings
        .iter()
        .find(|f| f.code == "KM071" && f.flow.as_deref() == Some("persistence-agent-to-api-server"))
        .expect("KM071");
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.message.contains("not in the input"), "{}", f.message);
}

/// What was assumed for namespaces the input does not define is in the report.
#[test]
fn namespaces_the_input_does_not_define_are_reported_with_the_assumption() {
    let inv = inventory(&["kfp-2.5.0-platform-agnostic.yaml"], MESH_STRICT, &[]);
    let r = check(&inv, &CheckOptions::default());
    let a = r
        .assumed_namespaces
        .iter()
        .find(|a| a.namespace == "kubeflow")
        .expect("kubeflow is not defined by KFP's env renders");
    assert!(a.assumed.contains("no labels"), "{}", a.assumed);
    // Stated with labels (what --namespace-labels does), nothing is assumed and the sidecars
    // follow.
    let labels = BTreeMap::from([("istio-injection".to_string(), "enabled".to_string())]);
    let inv = inv.with_namespace_labels("kubeflow", &labels, "--namespace-labels");
    let r = check(&inv, &CheckOptions::default());
    assert!(
        r.assumed_namespaces
            .iter()
            .all(|a| a.namespace != "kubeflow")
    );
    assert_all(&r, "driver-to-mlmd", Outcome::Reset);
}

/// Item 6: KFP 2.17's `wait-for-*` init containers only open a TCP connection. Through the API
/// server's sidecar that connect succeeds whatever MySQL's policies decide, so the wait passes
/// while the real calls after it are denied: the wait flow carries what its probe observes
/// and no finding claims it fails; the real flow is the one reported.
#[test]
fn connect_only_waits_succeed_through_the_client_sidecar_where_the_real_call_is_denied() {
    let only_mlmd = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mysql-mlmd-only, namespace: kubeflow}
spec:
  selector: {matchLabels: {app: mysql}}
  action: ALLOW
  rules: [{from: [{source: {principals: [cluster.local/ns/kubeflow/sa/metadata-grpc-server]}}]}]
";
    let inv = inventory(
        &["kfp-master-platform-agnostic.yaml"],
        &format!("{MESH_STRICT}---\n{only_mlmd}"),
        &["kubeflow"],
    );
    let r = check(&inv, &CheckOptions::default());
    assert_all(&r, "api-server-to-database", Outcome::Deny);
    let wait = flows(&r, "api-server-wait-for-database")[0];
    let probe = wait
        .probe
        .as_ref()
        .expect("a connect-only flow carries its probe");
    assert_eq!(
        probe.result,
        kfp_mesh_core::connection::ProbeOutcome::Connected
    );
    assert_eq!(
        probe.accepted_by,
        Some(kfp_mesh_core::connection::ProbeAcceptor::ClientSidecar)
    );
    // Data on that connection would be denied, but the wait never sends any.
    assert_eq!(wait.outcome, Outcome::Deny);
    assert!(
        r.findings
            .iter()
            .all(|f| f.flow.as_deref() != Some("api-server-wait-for-database")),
        "{:#?}",
        r.findings
    );
    assert!(
        r.findings
            .iter()
            .any(|f| f.code == "KM003" && f.flow.as_deref() == Some("api-server-to-database")),
        "the real call is reported"
    );
    // Flows that are not connect-only carry no probe.
    assert!(flows(&r, "api-server-to-database")[0].probe.is_none());
}

/// Each flow names where the mesh enforces policy on it: the client's proxy, a waypoint, the
/// server's proxy (issue: ambient; the same for sidecars).
#[test]
fn flows_name_their_enforcement_points() {
    let ambient = "\
apiVersion: v1
kind: Namespace
metadata: {name: kubeflow, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: kfp-waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: kfp-waypoint, namespace: kubeflow}
spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
";
    let inv = inventory(&["kfp-2.5.0-platform-agnostic.yaml"], ambient, &[]);
    let r = check(&inv, &CheckOptions::default());
    let f = flows(&r, "ui-to-api-server")[0];
    assert_eq!(
        f.enforcement,
        [
            "client ztunnel",
            "waypoint kubeflow/kfp-waypoint",
            "server ztunnel"
        ]
    );
    // Sidecars on both sides, no waypoint.
    let inv = inventory(
        &["kfp-2.5.0-platform-agnostic.yaml"],
        MESH_STRICT,
        &["kubeflow"],
    );
    let r = check(&inv, &CheckOptions::default());
    assert_eq!(
        flows(&r, "persistence-agent-to-api-server")[0].enforcement,
        ["client sidecar", "server sidecar"]
    );
    // kubelet is no mesh client: only the server side enforces.
    assert_eq!(
        flows(&r, "kubelet-probe-mlmd")[0].enforcement,
        ["server sidecar"]
    );
}

/// The table's report (causes only; flows evaluated without the messages of their steps first)
/// says what the full report says: the same flows with the same verdicts, fixes and findings,
/// and for each flow that does not succeed the step the full explanation ends on. The cases
/// include verdicts decided by a principal (a DENY policy) and by a Service's host name (a
/// DestinationRule), which a text left unwritten would turn into a false `allow`.
#[test]
fn a_report_of_causes_only_agrees_with_the_full_report() {
    use kfp_mesh_kfp::check::Explanations;
    let kubeflow = common::files_of("kubeflow-v1.10.1");
    let kubeflow: Vec<&str> = kubeflow.iter().map(String::as_str).collect();
    let decided_by_names = format!(
        "{MESH_STRICT}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: no-api-server, namespace: kubeflow}}
spec:
  selector: {{matchLabels: {{app: mysql}}}}
  action: DENY
  rules: [{{from: [{{source: {{principals: [cluster.local/ns/kubeflow/sa/ml-pipeline]}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: minio-plaintext, namespace: kubeflow}}
spec:
  host: minio-service.kubeflow.svc.cluster.local
  trafficPolicy: {{tls: {{mode: DISABLE}}}}
"
    );
    let cases = [
        inventory(&kubeflow, &decided_by_names, &[]),
        inventory(&kubeflow, "", &[]),
        inventory(
            &["kfp-2.5.0-platform-agnostic.yaml"],
            MESH_STRICT,
            &["kubeflow"],
        ),
    ];
    let mut failing = 0;
    let mut reports = Vec::new();
    for inv in &cases {
        let causes = check(
            inv,
            &CheckOptions {
                explanations: Explanations::Cause,
                ..CheckOptions::default()
            },
        );
        let full = check(inv, &CheckOptions::default());
        let said = |r: &Report| -> Vec<String> {
            r.findings
                .iter()
                .map(|f| format!("{:?} {}", f.code, f.message))
                .collect()
        };
        assert_eq!(said(&full), said(&causes));
        assert!(full.findings == causes.findings, "the findings differ");
        assert_eq!(full.flows.len(), causes.flows.len());
        for (f, c) in full.flows.iter().zip(&causes.flows) {
            assert!(
                f.explanation.iter().all(|s| !s.message.is_empty()),
                "{}: {:?}",
                f.id,
                f.explanation
            );
            let expected: Vec<_> = match f.outcome {
                Outcome::Allow => Vec::new(),
                _ => {
                    failing += 1;
                    f.cause().cloned().into_iter().collect()
                }
            };
            assert_eq!(c.explanation, expected, "{}", f.id);
            let mut c = c.clone();
            c.explanation = f.explanation.clone();
            assert_eq!(*f, c);
        }
        reports.push(full);
    }
    assert!(failing > 20, "{failing}");
    // The names decided: the DENY policy and the DestinationRule took effect.
    assert_all(&reports[0], "api-server-to-database", Outcome::Deny);
    assert_all(
        &reports[0],
        "api-server-to-object-store",
        Outcome::UpstreamFailure,
    );
}
