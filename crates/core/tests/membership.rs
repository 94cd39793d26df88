//! Truth tables for A (injection webhooks, injectRequired, ambient enrollment) and B7
//! (inbound interception).

use kfp_mesh_core::inventory::Inventory;
use kfp_mesh_core::mesh::membership::{
    DataPlane, advertises_istio_tls, data_plane, intercepts_inbound,
};

use DataPlane::{Ambient, Plain, Sidecar};

fn ns(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n---\n"
    )
}

/// A pod `p` in `namespace` with labels and annotations (flow mappings) and extra spec lines.
fn pod(namespace: &str, labels: &str, annotations: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: {namespace}\n  labels: {{{labels}}}\n  annotations: {{{annotations}}}\nspec:\n  containers:\n  - name: app\n    image: app\n{spec}---\n"
    )
}

/// The injector MutatingWebhookConfiguration a Helm install renders for revision `rev`
/// (`default_entries`: also namespace./object. and, with `auto`, auto.).
fn injector_mwc(name: &str, rev: &str, default_entries: bool, auto: bool) -> String {
    let mut s = format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: {name}
webhooks:
- name: rev.namespace.sidecar-injector.istio.io
  namespaceSelector:
    matchExpressions:
    - {{key: istio.io/rev, operator: In, values: ["{rev}"]}}
    - {{key: istio-injection, operator: DoesNotExist}}
  objectSelector:
    matchExpressions:
    - {{key: sidecar.istio.io/inject, operator: NotIn, values: ["false"]}}
- name: rev.object.sidecar-injector.istio.io
  namespaceSelector:
    matchExpressions:
    - {{key: istio.io/rev, operator: DoesNotExist}}
    - {{key: istio-injection, operator: DoesNotExist}}
  objectSelector:
    matchExpressions:
    - {{key: sidecar.istio.io/inject, operator: NotIn, values: ["false"]}}
    - {{key: istio.io/rev, operator: In, values: ["{rev}"]}}
"#
    );
    if default_entries {
        s.push_str(
            r#"- name: namespace.sidecar-injector.istio.io
  namespaceSelector:
    matchExpressions:
    - {key: istio-injection, operator: In, values: ["enabled"]}
  objectSelector:
    matchExpressions:
    - {key: sidecar.istio.io/inject, operator: NotIn, values: ["false"]}
- name: object.sidecar-injector.istio.io
  namespaceSelector:
    matchExpressions:
    - {key: istio-injection, operator: DoesNotExist}
    - {key: istio.io/rev, operator: DoesNotExist}
  objectSelector:
    matchExpressions:
    - {key: sidecar.istio.io/inject, operator: In, values: ["true"]}
    - {key: istio.io/rev, operator: DoesNotExist}
"#,
        );
    }
    if auto {
        s.push_str(
            r#"- name: auto.sidecar-injector.istio.io
  namespaceSelector:
    matchExpressions:
    - {key: istio-injection, operator: DoesNotExist}
    - {key: istio.io/rev, operator: DoesNotExist}
    - {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, kube-public, kube-node-lease, local-path-storage]}
  objectSelector:
    matchExpressions:
    - {key: sidecar.istio.io/inject, operator: DoesNotExist}
    - {key: istio.io/rev, operator: DoesNotExist}
"#,
        );
    }
    s.push_str("---\n");
    s
}

/// The injector ConfigMap with `data.config` and `data.values`.
fn injector_config(config: &str, values: &str) -> String {
    let indented: String = config.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio-sidecar-injector\n  namespace: istio-system\ndata:\n  config: |\n{indented}  values: '{values}'\n---\n"
    )
}

fn classify(yaml: &str, namespace: &str) -> (DataPlane, String) {
    let inv = Inventory::from_sources([("test.yaml", yaml)]);
    assert!(inv.errors.is_empty(), "input errors: {:?}", inv.errors);
    let w = inv
        .workload(namespace, "p")
        .unwrap_or_else(|| panic!("pod p in {namespace} not found"));
    let d = data_plane(&inv, w);
    let text = d
        .steps
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    (d.value, text)
}

struct Row {
    what: &'static str,
    input: String,
    namespace: &'static str,
    want: DataPlane,
    /// Text the explanation must contain.
    explains: &'static [&'static str],
}

fn run(rows: Vec<Row>) {
    for row in rows {
        let (got, text) = classify(&row.input, row.namespace);
        assert_eq!(got, row.want, "{}\nexplanation:\n{text}", row.what);
        for needle in row.explains {
            assert!(
                text.contains(needle),
                "{}: explanation lacks {needle:?}:\n{text}",
                row.what
            );
        }
    }
}

#[test]
fn a1_which_webhook_fires() {
    let default_install = injector_mwc("istio-sidecar-injector", "default", true, false);
    let canary = injector_mwc("istio-sidecar-injector-canary", "canary", false, false);
    let stable = injector_mwc("istio-sidecar-injector-stable", "stable", false, false);
    let rows = vec![
        Row {
            what: "no injector MWC in input: default webhooks assumed, istio-injection=enabled injects",
            input: ns("a", "istio-injection: enabled") + &pod("a", "", "", ""),
            namespace: "a",
            want: Sidecar,
            explains: &[
                "[A1] the input has no Istio injector MutatingWebhookConfiguration; assuming",
                "namespace.sidecar-injector.istio.io",
            ],
        },
        Row {
            what: "default install, namespace istio.io/rev=default injects through rev.namespace",
            input: default_install.clone()
                + &ns("a", "istio.io/rev: default")
                + &pod("a", "", "", ""),
            namespace: "a",
            want: Sidecar,
            explains: &["rev.namespace.sidecar-injector.istio.io"],
        },
        Row {
            what: "A1.1 both namespace labels, only the canary revision installed: istio-injection wins, nothing fires",
            input: canary.clone()
                + &ns("a", "istio-injection: enabled, istio.io/rev: canary")
                + &pod("a", "", "", ""),
            namespace: "a",
            want: Plain,
            explains: &["IST0103"],
        },
        Row {
            what: "A1.1 both namespace labels with the default install: the legacy entry fires, IST0123 flagged",
            input: default_install.clone()
                + &canary
                + &ns("a", "istio-injection: enabled, istio.io/rev: canary")
                + &pod("a", "", "", ""),
            namespace: "a",
            want: Sidecar,
            explains: &[
                "webhook `namespace.sidecar-injector.istio.io`",
                "the legacy label wins",
                "IST0123",
            ],
        },
        Row {
            what: "A1.2 istio-injection=disabled beats the pod label inject=true",
            input: default_install.clone()
                + &ns("a", "istio-injection: disabled")
                + &pod("a", "sidecar.istio.io/inject: \"true\"", "", ""),
            namespace: "a",
            want: Plain,
            explains: &["istio-injection=disabled on namespace `a`"],
        },
        Row {
            what: "A1.3 namespace rev=canary beats pod rev=stable",
            input: canary.clone()
                + &stable
                + &ns("a", "istio.io/rev: canary")
                + &pod("a", "istio.io/rev: stable", "", ""),
            namespace: "a",
            want: Sidecar,
            explains: &[
                "istio-sidecar-injector-canary",
                "istio.io/rev=canary beats the pod's istio.io/rev=stable",
            ],
        },
        Row {
            what: "A1.3 pod rev=stable in an unlabelled namespace: stable's rev.object fires",
            input: canary.clone() + &stable + &ns("a", "") + &pod("a", "istio.io/rev: stable", "", ""),
            namespace: "a",
            want: Sidecar,
            explains: &["`rev.object.sidecar-injector.istio.io` of MutatingWebhookConfiguration `istio-sidecar-injector-stable`"],
        },
        Row {
            what: "A1.4 pod label inject=true in an unlabelled namespace: object. fires",
            input: default_install.clone()
                + &ns("a", "")
                + &pod("a", "sidecar.istio.io/inject: \"true\"", "", ""),
            namespace: "a",
            want: Sidecar,
            explains: &["object.sidecar-injector.istio.io"],
        },
        Row {
            what: "A1.4 pod annotation inject=true in an unlabelled namespace: no webhook fires",
            input: default_install.clone()
                + &ns("a", "")
                + &pod("a", "", "sidecar.istio.io/inject: \"true\"", ""),
            namespace: "a",
            want: Plain,
            explains: &["the annotation cannot trigger injection; set it as a pod label"],
        },
        Row {
            what: "A1.4 exception: auto. entry (enableNamespacesByDefault) injects the annotated pod",
            input: injector_mwc("istio-sidecar-injector", "default", true, true)
                + &ns("a", "")
                + &pod("a", "", "sidecar.istio.io/inject: \"true\"", ""),
            namespace: "a",
            want: Sidecar,
            explains: &["auto.sidecar-injector.istio.io"],
        },
        Row {
            what: "auto. entry assumed from injector values when no MWC is given",
            input: injector_config(
                "policy: enabled",
                r#"{"sidecarInjectorWebhook":{"enableNamespacesByDefault":true}}"#,
            ) + &ns("a", "")
                + &pod("a", "", "", ""),
            namespace: "a",
            want: Sidecar,
            explains: &["auto.sidecar-injector.istio.io"],
        },
        Row {
            what: "auto. entry does not cover local-path-storage",
            input: injector_mwc("istio-sidecar-injector", "default", true, true)
                + &ns("local-path-storage", "")
                + &pod("local-path-storage", "", "", ""),
            namespace: "local-path-storage",
            want: Plain,
            explains: &["no Istio injector webhook fires"],
        },
        Row {
            what: "A1.5 pod label inject=false stops every webhook",
            input: default_install.clone()
                + &ns("a", "istio-injection: enabled")
                + &pod("a", "sidecar.istio.io/inject: \"false\"", "", ""),
            namespace: "a",
            want: Plain,
            explains: &["the pod label sidecar.istio.io/inject=false stops every injector webhook"],
        },
        Row {
            what: "A1.5 pod annotation inject=false: webhook fires, injectRequired says no",
            input: default_install.clone()
                + &ns("a", "istio-injection: enabled")
                + &pod("a", "", "sidecar.istio.io/inject: \"false\"", ""),
            namespace: "a",
            want: Plain,
            explains: &["namespace.sidecar-injector.istio.io", "[A2] the pod annotation sidecar.istio.io/inject=false"],
        },
        Row {
            what: "A1.6 namespace names a revision nobody installed",
            input: default_install.clone()
                + &ns("a", "istio.io/rev: missing")
                + &pod("a", "", "", ""),
            namespace: "a",
            want: Plain,
            explains: &["no installed injector webhook selects istio.io/rev=missing"],
        },
        Row {
            what: "revision tag istio-revision-tag-prod injects namespaces labelled istio.io/rev=prod",
            input: injector_mwc("istio-revision-tag-prod", "prod", false, false)
                + &ns("a", "istio.io/rev: prod")
                + &pod("a", "", "", ""),
            namespace: "a",
            want: Sidecar,
            explains: &["istio-revision-tag-prod"],
        },
        Row {
            what: "revision tag `default` also creates namespace./object. entries",
            input: injector_mwc("istio-revision-tag-default", "default", true, false)
                + &ns("a", "istio-injection: enabled")
                + &pod("a", "", "", ""),
            namespace: "a",
            want: Sidecar,
            explains: &["istio-revision-tag-default"],
        },
        Row {
            what: "a non-injector MWC alone does not count: defaults are assumed",
            input: "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata:\n  name: other\nwebhooks:\n- name: mutate.example.com\n---\n".to_string()
                + &ns("a", "istio-injection: enabled")
                + &pod("a", "", "", ""),
            namespace: "a",
            want: Sidecar,
            explains: &["assuming the default install"],
        },
    ];
    run(rows);
}

#[test]
fn a2_inject_required() {
    let enabled = ns("a", "istio-injection: enabled");
    let rows = vec![
        Row {
            what: "A2.1 hostNetwork pod in an injected namespace stays plain",
            input: enabled.clone() + &pod("a", "", "", "  hostNetwork: true\n"),
            namespace: "a",
            want: Plain,
            explains: &["uses hostNetwork"],
        },
        Row {
            what: "A2.2 kube-system is ignored even with istio-injection=enabled",
            input: ns("kube-system", "istio-injection: enabled") + &pod("kube-system", "", "", ""),
            namespace: "kube-system",
            want: Plain,
            explains: &["namespace `kube-system` is one the injector always ignores"],
        },
        Row {
            what: "A2.2 local-path-storage is ignored for the pod label inject=true",
            input: ns("local-path-storage", "")
                + &pod(
                    "local-path-storage",
                    "sidecar.istio.io/inject: \"true\"",
                    "",
                    "",
                ),
            namespace: "local-path-storage",
            want: Plain,
            explains: &["always ignores"],
        },
        Row {
            what: "A2.3 label true overrides annotation false",
            input: ns("a", "")
                + &pod(
                    "a",
                    "sidecar.istio.io/inject: \"true\"",
                    "sidecar.istio.io/inject: \"false\"",
                    "",
                ),
            namespace: "a",
            want: Sidecar,
            explains: &["the label wins"],
        },
        Row {
            what: "A2.3 invalid annotation value falls back to the default (policy enabled)",
            input: enabled.clone() + &pod("a", "", "sidecar.istio.io/inject: \"yes\"", ""),
            namespace: "a",
            want: Sidecar,
            explains: &["is not `true` or `false`"],
        },
        Row {
            what: "A2.3 invalid annotation value under policy disabled: no sidecar",
            input: injector_config("policy: disabled", "{}")
                + &enabled
                + &pod("a", "", "sidecar.istio.io/inject: \"yes\"", ""),
            namespace: "a",
            want: Plain,
            explains: &["injector policy `disabled` and nothing asks for injection"],
        },
        Row {
            what: "A2.4 neverInjectSelector matches: no sidecar",
            input: injector_config(
                "policy: enabled\nneverInjectSelector:\n- matchExpressions:\n  - {key: job-name, operator: Exists}",
                "{}",
            ) + &enabled
                + &pod("a", "job-name: x", "", ""),
            namespace: "a",
            want: Plain,
            explains: &["neverInjectSelector entry 1"],
        },
        Row {
            what: "A2.4 explicit annotation true beats neverInjectSelector",
            input: injector_config(
                "policy: enabled\nneverInjectSelector:\n- matchLabels: {job-name: x}",
                "{}",
            ) + &enabled
                + &pod("a", "job-name: x", "sidecar.istio.io/inject: \"true\"", ""),
            namespace: "a",
            want: Sidecar,
            explains: &["asks for injection"],
        },
        Row {
            what: "A2.4 alwaysInjectSelector under policy disabled injects",
            input: injector_config(
                "policy: disabled\nalwaysInjectSelector:\n- matchLabels: {mesh: \"yes\"}",
                "{}",
            ) + &enabled
                + &pod("a", "mesh: \"yes\"", "", ""),
            namespace: "a",
            want: Sidecar,
            explains: &["alwaysInjectSelector entry 1"],
        },
        Row {
            what: "A2.4 an empty neverInjectSelector is skipped",
            input: injector_config("policy: enabled\nneverInjectSelector:\n- {}", "{}")
                + &enabled
                + &pod("a", "", "", ""),
            namespace: "a",
            want: Sidecar,
            explains: &[],
        },
        Row {
            what: "A2.5 policy disabled with the pod label inject=true injects",
            input: injector_config("policy: disabled", "{}")
                + &enabled
                + &pod("a", "sidecar.istio.io/inject: \"true\"", "", ""),
            namespace: "a",
            want: Sidecar,
            explains: &["injector policy `disabled` follows the explicit choice: inject"],
        },
        Row {
            what: "A2.5 an unknown policy disables injection",
            input: injector_config("policy: sometimes", "{}")
                + &enabled
                + &pod("a", "sidecar.istio.io/inject: \"true\"", "", ""),
            namespace: "a",
            want: Plain,
            explains: &["neither `enabled` nor `disabled`"],
        },
    ];
    run(rows);
}

#[test]
fn a3_existing_proxy_and_tls_mode_label() {
    let with_proxy = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: a\n  labels: {security.istio.io/tlsMode: disabled}\nspec:\n  containers:\n  - name: app\n  - name: istio-proxy\n---\n";
    let native = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: a\nspec:\n  initContainers:\n  - name: istio-proxy\n    restartPolicy: Always\n  containers:\n  - name: app\n---\n";
    run(vec![
        Row {
            what: "A3 pod already carrying istio-proxy in an unlabelled namespace",
            input: ns("a", "") + with_proxy,
            namespace: "a",
            want: Sidecar,
            explains: &["already has an istio-proxy container"],
        },
        Row {
            what: "A3 native sidecar (init container with restartPolicy Always)",
            input: ns("a", "") + native,
            namespace: "a",
            want: Sidecar,
            explains: &[],
        },
    ]);
    let inv = Inventory::from_sources([("t.yaml", with_proxy)]);
    let w = inv.workload("a", "p").expect("pod");
    assert!(
        !advertises_istio_tls(w),
        "tlsMode: disabled is not advertised"
    );
    let inv = Inventory::from_sources([("t.yaml", native)]);
    let w = inv.workload("a", "p").expect("pod");
    assert!(advertises_istio_tls(w), "no tlsMode label means istio");
}

#[test]
fn a5_ambient_enrollment() {
    run(vec![
        Row {
            what: "A5 >=1.27 (a) / <1.27: pod label ambient in an unlabelled namespace",
            input: ns("a", "") + &pod("a", "istio.io/dataplane-mode: ambient", "", ""),
            namespace: "a",
            want: Ambient,
            explains: &["(any namespace)"],
        },
        Row {
            what: "A5 >=1.27 (b) / <1.27: namespace label ambient",
            input: ns("a", "istio.io/dataplane-mode: ambient") + &pod("a", "", "", ""),
            namespace: "a",
            want: Ambient,
            explains: &["namespace `a` has istio.io/dataplane-mode=ambient"],
        },
        Row {
            what: "A5 both styles: pod label dataplane-mode=none opts out of an ambient namespace",
            input: ns("a", "istio.io/dataplane-mode: ambient")
                + &pod("a", "istio.io/dataplane-mode: none", "", ""),
            namespace: "a",
            want: Plain,
            explains: &["opts it out"],
        },
        Row {
            what: "A5 pod label ambient wins over a namespace labelled none",
            input: ns("a", "istio.io/dataplane-mode: none")
                + &pod("a", "istio.io/dataplane-mode: ambient", "", ""),
            namespace: "a",
            want: Ambient,
            explains: &[],
        },
        Row {
            what: "A5 sidecar excludes ambient: injection and ambient on the same namespace",
            input: ns(
                "a",
                "istio-injection: enabled, istio.io/dataplane-mode: ambient",
            ) + &pod("a", "", "", ""),
            namespace: "a",
            want: Sidecar,
            explains: &["ztunnel leaves pods with a sidecar alone", "IST0123"],
        },
        Row {
            what: "A5 ambient pod opted out of injection by label stays ambient",
            input: ns(
                "a",
                "istio-injection: enabled, istio.io/dataplane-mode: ambient",
            ) + &pod("a", "sidecar.istio.io/inject: \"false\"", "", ""),
            namespace: "a",
            want: Ambient,
            explains: &[],
        },
        Row {
            what: "A5 hostNetwork pod in an ambient namespace is plain",
            input: ns("a", "istio.io/dataplane-mode: ambient")
                + &pod("a", "", "", "  hostNetwork: true\n"),
            namespace: "a",
            want: Plain,
            explains: &["hostNetwork"],
        },
        Row {
            what: "A5 live pod with ambient.istio.io/redirection=enabled",
            input: ns("a", "") + &pod("a", "", "ambient.istio.io/redirection: enabled", ""),
            namespace: "a",
            want: Ambient,
            explains: &["redirection=enabled"],
        },
        Row {
            what: "A5 a pod with the sidecar status annotation is not captured",
            input: ns("a", "istio.io/dataplane-mode: ambient")
                + &pod("a", "", "sidecar.istio.io/status: '{}'", ""),
            namespace: "a",
            want: Plain,
            explains: &["does not capture pods with a sidecar"],
        },
        Row {
            what: "plain pod: nothing applies",
            input: ns("a", "") + &pod("a", "", "", ""),
            namespace: "a",
            want: Plain,
            explains: &["plain pod"],
        },
    ]);
}

#[test]
fn b7_inbound_interception() {
    let rows: &[(&str, &str, u16, bool)] = &[
        ("no annotation: all ports", "", 8080, true),
        (
            "excluded port",
            "traffic.sidecar.istio.io/excludeInboundPorts: \"8443, 9443\"",
            9443,
            false,
        ),
        (
            "port not in the exclude list",
            "traffic.sidecar.istio.io/excludeInboundPorts: \"8443\"",
            8080,
            true,
        ),
        (
            "include * means all",
            "traffic.sidecar.istio.io/includeInboundPorts: \"*\"",
            8080,
            true,
        ),
        (
            "include list contains the port",
            "traffic.sidecar.istio.io/includeInboundPorts: \"8080,9000\"",
            9000,
            true,
        ),
        (
            "include list without the port",
            "traffic.sidecar.istio.io/includeInboundPorts: \"8080\"",
            9000,
            false,
        ),
        (
            "empty include list intercepts nothing",
            "traffic.sidecar.istio.io/includeInboundPorts: \"\"",
            8080,
            false,
        ),
        (
            "exclude beats include *",
            "traffic.sidecar.istio.io/includeInboundPorts: \"*\", traffic.sidecar.istio.io/excludeInboundPorts: \"8080\"",
            8080,
            false,
        ),
        (
            "garbage entries are skipped",
            "traffic.sidecar.istio.io/excludeInboundPorts: \"x,,99999,8080\"",
            8080,
            false,
        ),
    ];
    for (what, annotations, port, want) in rows {
        let yaml = pod("a", "", annotations, "");
        let inv = Inventory::from_sources([("t.yaml", yaml.as_str())]);
        let w = inv.workload("a", "p").expect("pod");
        let d = intercepts_inbound(w, *port);
        assert_eq!(d.value, *want, "{what}: {:?}", d.steps);
        assert!(
            d.steps.iter().all(|s| s.rule == "B7"),
            "{what}: steps name B7"
        );
    }
}

/// `holdApplicationUntilProxyStarts`: the pod's `proxy.istio.io/config` (ProxyConfig as YAML
/// or JSON) sets it when it names the field, otherwise meshConfig `defaultConfig` decides
/// (istio.io "ProxyConfig" / `proxy.istio.io/config` annotation reference).
#[test]
fn hold_application_until_proxy_starts_from_the_annotation_or_the_mesh() {
    use kfp_mesh_core::mesh::membership::holds_application_until_proxy_starts;
    let mesh_hold = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    defaultConfig:\n      holdApplicationUntilProxyStarts: true\n---\n";
    #[rustfmt::skip]
    let rows: [(&str, &str, bool, bool); 7] = [
        ("JSON annotation true",            r#"proxy.istio.io/config: '{"holdApplicationUntilProxyStarts": true}'"#,  false, true),
        ("YAML annotation true",            r#"proxy.istio.io/config: 'holdApplicationUntilProxyStarts: true'"#,      false, true),
        ("annotation false overrides mesh", r#"proxy.istio.io/config: '{"holdApplicationUntilProxyStarts": false}'"#, true,  false),
        ("other fields only: mesh decides", r#"proxy.istio.io/config: '{"concurrency": 2}'"#,                         true,  true),
        ("a string `true` is not a bool",   r#"proxy.istio.io/config: '{"holdApplicationUntilProxyStarts": "nope"}'"#, false, false),
        ("no annotation, mesh default off", "",                                                                      false, false),
        ("no annotation, mesh default on",  "",                                                                      true,  true),
    ];
    for (what, annotations, mesh, want) in rows {
        let mut yaml = ns("foo", "") + &pod("foo", "", annotations, "");
        if mesh {
            yaml.push_str(mesh_hold);
        }
        let inv = Inventory::from_sources([("t.yaml", yaml.as_str())]);
        assert!(inv.errors.is_empty(), "{what}: {:?}", inv.errors);
        let w = inv.workload("foo", "p").expect("pod");
        assert_eq!(
            holds_application_until_proxy_starts(&inv, w),
            want,
            "{what}"
        );
    }
}
