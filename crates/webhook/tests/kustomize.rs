//! The deployment manifests, built with the real `kubectl kustomize` through the test
//! kustomization `manifests/tests/driver-webhook` (both components, as a user adds them).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kfp_mesh_core::model::LabelSelector;
use kfp_mesh_kfp::mutation::MutationConfig;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn render() -> Vec<Value> {
    let dir = repo().join("manifests/tests/driver-webhook");
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("kubectl is required for this test and could not be run: {e}"));
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_saphyr::from_multiple::<Value>(&text).expect("kustomize output is YAML")
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} is rendered"))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn selector(v: &Value) -> LabelSelector {
    serde_json::from_value(v.clone()).expect("a label selector")
}

fn port_of(arg_prefix: &str, args: &[Value]) -> u64 {
    args.iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix(arg_prefix))
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{arg_prefix} in args"))
}

fn arg<'a>(prefix: &str, args: &'a [Value]) -> &'a str {
    args.iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("{prefix} in args"))
}

#[test]
fn driver_webhook_component_renders_a_safe_deployment() {
    let objs = render();
    let ns = "kfp-mesh-system";
    let mut kinds: Vec<String> = objs
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "Certificate/kfp-mesh-webhook-cert",
            "ConfigMap/kfp-mesh-webhook-config",
            "Deployment/kfp-mesh-webhook",
            "Issuer/kfp-mesh-webhook-selfsigned",
            "MutatingWebhookConfiguration/00-kfp-mesh-pods",
            "MutatingWebhookConfiguration/kfp-mesh-workflows",
            "Namespace/kfp-mesh-system",
            "NetworkPolicy/kfp-mesh-webhook",
            "PodDisruptionBudget/kfp-mesh-webhook",
            "Service/kfp-mesh-webhook",
            "ServiceAccount/kfp-mesh-webhook",
        ]
    );
    // No RBAC object: the webhook never calls the API.
    assert!(
        objs.iter()
            .all(|o| !o["kind"].as_str().unwrap_or("").contains("Role"))
    );

    let deploy = find(&objs, "Deployment", "kfp-mesh-webhook");
    assert_eq!(deploy["metadata"]["namespace"], ns);
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"];
    let pod_labels: BTreeMap<String, String> =
        serde_json::from_value(pod["metadata"]["labels"].clone()).expect("labels");
    assert_eq!(
        pod_labels["sidecar.istio.io/inject"], "false",
        "kube-apiserver calls it: not in the mesh"
    );
    assert!(selector(&deploy["spec"]["selector"]).matches(&pod_labels));
    let spec = &pod["spec"];
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert_eq!(spec["serviceAccountName"], "kfp-mesh-webhook");
    let c = &spec["containers"][0];
    assert_eq!(
        c["image"], "ghcr.io/kfp-mesh/kfp-mesh:0.1.0",
        "images: entry applied"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(
        c["resources"]["requests"]["memory"].is_string()
            && c["resources"]["limits"]["memory"].is_string()
    );
    let args = c["args"].as_array().expect("args");
    assert_eq!(args[0], "webhook");
    let ports: BTreeMap<String, u64> = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("").to_string(),
                p["containerPort"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(ports["admin"], port_of("--admin-addr=", args));
    assert_eq!(ports["https"], port_of("--addr=", args));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin");
    let grace = spec["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace period");
    let secs = |p: &str| {
        arg(p, args)
            .trim_end_matches('s')
            .parse::<u64>()
            .expect("seconds")
    };
    assert!(
        grace > secs("--shutdown-delay=") + secs("--shutdown-timeout="),
        "SIGKILL only after draining"
    );

    // Mounted files are where the arguments say.
    let mounts: BTreeMap<String, String> = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or("").to_string(),
                m["mountPath"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        arg("--cert-file=", args),
        format!("{}/tls.crt", mounts["tls"])
    );
    assert_eq!(
        arg("--key-file=", args),
        format!("{}/tls.key", mounts["tls"])
    );
    assert_eq!(
        arg("--config=", args),
        format!("{}/config.yaml", mounts["config"])
    );
    let volumes = spec["volumes"].as_array().expect("volumes");
    let tls_secret = volumes
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("tls volume")["secret"]["secretName"]
        .clone();
    let config_map = volumes
        .iter()
        .find(|v| v["name"] == "config")
        .expect("config volume")["configMap"]["name"]
        .clone();

    // The ConfigMap holds exactly the built-in default, valid for the webhook.
    let cm = find(&objs, "ConfigMap", config_map.as_str().expect("name"));
    let text = cm["data"]["config.yaml"].as_str().expect("config.yaml");
    assert_eq!(
        MutationConfig::from_yaml(text).expect("valid configuration"),
        MutationConfig::default()
    );

    // PDB.
    let pdb = find(&objs, "PodDisruptionBudget", "kfp-mesh-webhook");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(selector(&pdb["spec"]["selector"]).matches(&pod_labels));

    // Service → container port.
    let svc = find(&objs, "Service", "kfp-mesh-webhook");
    assert!(
        selector(&serde_json::json!({"matchLabels": svc["spec"]["selector"]})).matches(&pod_labels)
    );
    let https = svc["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["port"] == 443)
        .expect("443");
    assert_eq!(https["targetPort"], "https");

    // cert-manager: Certificate for the Service name into the Secret the pod mounts.
    let cert = find(&objs, "Certificate", "kfp-mesh-webhook-cert");
    assert_eq!(cert["spec"]["secretName"], tls_secret);
    let dns: Vec<&str> = cert["spec"]["dnsNames"]
        .as_array()
        .expect("dns")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(dns.contains(&"kfp-mesh-webhook.kfp-mesh-system.svc"));
    let issuer = find(
        &objs,
        "Issuer",
        cert["spec"]["issuerRef"]["name"].as_str().expect("issuer"),
    );
    assert_eq!(issuer["metadata"]["namespace"], ns);

    // Webhook configurations.
    let mut paths = Vec::new();
    for name in ["kfp-mesh-workflows", "00-kfp-mesh-pods"] {
        let mwc = find(&objs, "MutatingWebhookConfiguration", name);
        assert_eq!(
            mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            format!("{ns}/{}", cert["metadata"]["name"].as_str().expect("name")),
            "{name}"
        );
        for w in mwc["webhooks"].as_array().expect("webhooks") {
            let wn = w["name"].as_str().unwrap_or("?");
            assert_eq!(w["failurePolicy"], "Ignore", "{wn}");
            assert_eq!(w["sideEffects"], "None", "{wn}");
            assert_eq!(w["reinvocationPolicy"], "IfNeeded", "{wn}");
            assert_eq!(
                w["admissionReviewVersions"],
                serde_json::json!(["v1"]),
                "{wn}"
            );
            assert!(
                w["timeoutSeconds"].as_u64().is_some_and(|t| t <= 5),
                "{wn}: small timeout"
            );
            let s = &w["clientConfig"]["service"];
            assert_eq!(
                (
                    s["name"].as_str(),
                    s["namespace"].as_str(),
                    s["port"].as_u64()
                ),
                (Some("kfp-mesh-webhook"), Some(ns), Some(443))
            );
            paths.push(s["path"].as_str().unwrap_or("").to_string());
            for rule in w["rules"].as_array().expect("rules") {
                assert_eq!(rule["operations"], serde_json::json!(["CREATE"]), "{wn}");
            }
            let nss = selector(&w["namespaceSelector"]);
            for excluded in ["kube-system", ns] {
                let l = labels(&[
                    ("kubernetes.io/metadata.name", excluded),
                    ("pipelines.kubeflow.org/enabled", "true"),
                ]);
                assert!(!nss.matches(&l), "{wn} must exclude {excluded}");
            }
        }
    }
    paths.sort();
    assert_eq!(
        paths,
        [
            "/mutate/pods",
            "/mutate/pods",
            "/mutate/workflows",
            "/mutate/workflows"
        ]
    );

    // Workflow webhooks: each KFP namespace is selected by exactly one of them, others by none.
    let wf = find(&objs, "MutatingWebhookConfiguration", "kfp-mesh-workflows");
    let hooks: Vec<LabelSelector> = wf["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .map(|w| selector(&w["namespaceSelector"]))
        .collect();
    let count = |l: &BTreeMap<String, String>| hooks.iter().filter(|s| s.matches(l)).count();
    assert_eq!(
        count(&labels(&[
            ("kubernetes.io/metadata.name", "kubeflow"),
            ("istio-injection", "enabled")
        ])),
        1
    );
    assert_eq!(
        count(&labels(&[
            ("kubernetes.io/metadata.name", "team-a"),
            ("pipelines.kubeflow.org/enabled", "true")
        ])),
        1
    );
    assert_eq!(
        count(&labels(&[("kubernetes.io/metadata.name", "default")])),
        0
    );
    for w in wf["webhooks"].as_array().expect("webhooks") {
        assert_eq!(
            w["rules"][0]["apiGroups"],
            serde_json::json!(["argoproj.io"])
        );
        assert_eq!(w["rules"][0]["resources"], serde_json::json!(["workflows"]));
    }

    // Pods: sorts before Istio's injector, selects only KFP run pods created by Argo.
    let pods = find(&objs, "MutatingWebhookConfiguration", "00-kfp-mesh-pods");
    let name = pods["metadata"]["name"].as_str().expect("name");
    assert!(
        ["istio-sidecar-injector", "istio-revision-tag-default"]
            .iter()
            .all(|istio| name < *istio),
        "{name} must run before Istio's injector"
    );
    let run_pod = labels(&[
        ("pipelines.kubeflow.org/v2_component", "true"),
        ("workflows.argoproj.io/workflow", "hello-x"),
    ]);
    let pod_hooks = pods["webhooks"].as_array().expect("webhooks");
    for w in pod_hooks {
        let wn = w["name"].as_str().unwrap_or("?");
        let os = selector(&w["objectSelector"]);
        assert!(os.matches(&run_pod), "{wn}");
        assert!(
            !os.matches(&pod_labels),
            "{wn}: the webhook's own pods are not sent to it"
        );
        assert!(!os.matches(&labels(&[("app", "web")])), "{wn}");
        assert_eq!(w["rules"][0]["resources"], serde_json::json!(["pods"]));
    }
    // Scoped to KFP namespaces like the Workflow webhooks: a pod that carries the run-pod
    // labels (anyone creating a pod can set them) is sent to the webhook only there, once.
    let selects = |ns: &BTreeMap<String, String>| {
        pod_hooks
            .iter()
            .filter(|w| {
                selector(&w["namespaceSelector"]).matches(ns)
                    && selector(&w["objectSelector"]).matches(&run_pod)
            })
            .count()
    };
    for (ns, expected) in [
        (
            labels(&[
                ("kubernetes.io/metadata.name", "kubeflow"),
                ("istio-injection", "enabled"),
            ]),
            1,
        ),
        (
            labels(&[
                ("kubernetes.io/metadata.name", "team-a"),
                ("pipelines.kubeflow.org/enabled", "true"),
            ]),
            1,
        ),
        (labels(&[("kubernetes.io/metadata.name", "default")]), 0),
        (
            labels(&[
                ("kubernetes.io/metadata.name", "team-b"),
                ("istio-injection", "enabled"),
            ]),
            0,
        ),
    ] {
        assert_eq!(selects(&ns), expected, "{ns:?}");
    }
    // The same namespaces as the Workflow webhooks.
    for ns in [
        labels(&[("kubernetes.io/metadata.name", "kubeflow")]),
        labels(&[
            ("kubernetes.io/metadata.name", "team-a"),
            ("pipelines.kubeflow.org/enabled", "true"),
        ]),
        labels(&[("kubernetes.io/metadata.name", "team-b")]),
    ] {
        assert_eq!(selects(&ns), count(&ns), "{ns:?}");
    }
}

/// The arguments of the Deployment, parsed by the webhook's own command line.
#[derive(clap::Parser)]
struct WebhookCommand {
    #[command(flatten)]
    args: kfp_mesh_webhook::WebhookArgs,
}

#[test]
fn driver_webhook_component_limits_slow_peers_and_who_can_connect() {
    use clap::Parser as _;
    let objs = render();
    let deploy = find(&objs, "Deployment", "kfp-mesh-webhook");
    let pod = &deploy["spec"]["template"];
    let pod_labels: BTreeMap<String, String> =
        serde_json::from_value(pod["metadata"]["labels"].clone()).expect("labels");
    let c = &pod["spec"]["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args[0], "webhook");
    let settings = WebhookCommand::try_parse_from(
        std::iter::once("kfp-mesh-webhook").chain(args[1..].iter().copied()),
    )
    .unwrap_or_else(|e| panic!("the Deployment's arguments are the webhook's flags: {e}"))
    .args
    .settings();
    // Every limit is set in the Deployment, where an operator sees and patches it.
    for flag in [
        "--tls-handshake-timeout=",
        "--header-read-timeout=",
        "--body-read-timeout=",
        "--idle-timeout=",
        "--max-connections=",
    ] {
        assert!(args.iter().any(|a| a.starts_with(flag)), "{flag} in args");
    }
    // kube-apiserver gives up on a review after the webhook's timeoutSeconds; a request that
    // has not arrived by then is not worth waiting for much longer.
    let mwc = find(&objs, "MutatingWebhookConfiguration", "kfp-mesh-workflows");
    let call = Duration::from_secs(
        mwc["webhooks"][0]["timeoutSeconds"]
            .as_u64()
            .expect("timeout"),
    );
    for (name, t) in [
        ("handshake", settings.handshake_timeout),
        ("header", settings.header_read_timeout),
        ("body", settings.body_read_timeout),
    ] {
        assert!(
            t > call && t <= 10 * call,
            "{name} timeout {t:?} against {call:?}"
        );
    }
    assert!(settings.idle_timeout >= settings.header_read_timeout);
    assert!((100..=10_000).contains(&settings.max_connections));

    let ports: BTreeMap<String, u64> = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("").to_string(),
                p["containerPort"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(ports.keys().collect::<Vec<_>>(), ["admin", "https"]);

    // The Service carries only kube-apiserver's port.
    let svc = find(&objs, "Service", "kfp-mesh-webhook");
    let targets: Vec<&Value> = svc["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| &p["targetPort"])
        .collect();
    assert_eq!(
        targets,
        [&Value::from("https")],
        "admin port not in the Service"
    );

    // NetworkPolicy: selects the webhook pods, isolates both directions, admits the HTTPS
    // port from anywhere and the admin port from labelled namespaces only, nothing else.
    let np = find(&objs, "NetworkPolicy", "kfp-mesh-webhook");
    assert_eq!(np["metadata"]["namespace"], "kfp-mesh-system");
    assert!(selector(&np["spec"]["podSelector"]).matches(&pod_labels));
    assert_eq!(
        np["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    assert!(
        np["spec"]["egress"].as_array().is_none_or(Vec::is_empty),
        "the webhook opens no connection: no egress"
    );
    let rules = np["spec"]["ingress"].as_array().expect("ingress");
    let mut admitted = Vec::new();
    for rule in rules {
        let rule_ports: Vec<&str> = rule["ports"]
            .as_array()
            .expect("every rule names its ports")
            .iter()
            .map(|p| {
                assert_eq!(p["protocol"], "TCP");
                p["port"].as_str().expect("a named port")
            })
            .collect();
        for p in &rule_ports {
            assert!(ports.contains_key(*p), "{p} is a container port");
        }
        let from = rule["from"].as_array().filter(|f| !f.is_empty());
        match rule_ports.as_slice() {
            ["https"] => assert!(from.is_none(), "kube-apiserver: from any source"),
            ["admin"] => {
                let from = from.expect("the admin port is not open to all");
                assert_eq!(from.len(), 1);
                let ns = selector(&from[0]["namespaceSelector"]);
                assert!(ns.matches(&labels(&[
                    ("kubernetes.io/metadata.name", "monitoring"),
                    ("kfp-mesh.io/metrics-scraper", "true"),
                ])));
                assert!(!ns.matches(&labels(&[("kubernetes.io/metadata.name", "team-a")])));
                assert!(from[0].get("ipBlock").is_none());
            }
            other => panic!("unexpected ingress rule for {other:?}"),
        }
        admitted.extend(rule_ports);
    }
    admitted.sort();
    assert_eq!(admitted, ["admin", "https"]);
}
