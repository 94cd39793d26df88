//! The inventory reader: streams, lists, locations, typed kinds and malformed input.

use kfp_mesh_core::inventory::{
    Inventory, MAX_DEPTH, MIN_NODE_BUDGET, Memo, node_budget, parse_bytes, parse_stream,
};
use kfp_mesh_core::model::{PathNormalization, PeerMode};

fn inv(text: &str) -> Inventory {
    Inventory::from_sources([("in.yaml", text)])
}

#[test]
fn multi_document_yaml_keeps_the_line_of_each_object() {
    let text = "\
# leading comment
apiVersion: v1
kind: Namespace
metadata:
  name: kubeflow
---
# a comment before the second object
apiVersion: v1
kind: ServiceAccount
metadata:
  name: pipeline-runner
  namespace: kubeflow
--- 
---
apiVersion: v1
kind: Service
metadata: {name: minio-service, namespace: kubeflow}
spec:
  ports: [{port: 9000, targetPort: 9000, name: http}]
...
";
    let (objects, errors) = parse_stream("in.yaml", text);
    assert!(errors.is_empty(), "{errors:?}");
    let lines: Vec<(String, u32)> = objects
        .iter()
        .map(|o| (o.kind.clone(), o.origin.line))
        .collect();
    assert_eq!(
        lines,
        vec![
            ("Namespace".to_string(), 2),
            ("ServiceAccount".to_string(), 8),
            ("Service".to_string(), 15)
        ]
    );
}

/// Each object's name and the line it is cited at.
fn names_and_lines(objects: &[kfp_mesh_core::object::Object]) -> Vec<(&str, u32)> {
    objects
        .iter()
        .map(|o| (o.meta.name.as_str(), o.origin.line))
        .collect()
}

#[test]
fn document_markers_are_found_with_content_after_them_and_with_crlf_lines() {
    let text = "--- apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n...\r\n---\r\napiVersion: v1\r\nkind: Namespace\r\nmetadata:\r\n  name: b\r\n  labels: {x: '---'}\r\n---\t# a tab, then a comment\n# only comments\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: c\n  annotations:\n    note: |\n      --- not a marker: indented\n      ...\n";
    let (objects, errors) = parse_stream("in.yaml", text);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(names_and_lines(&objects), [("a", 1), ("b", 6), ("c", 14)]);
    assert_eq!(
        objects[2].meta.annotations.get("note"),
        Some("--- not a marker: indented\n...\n")
    );
}

#[test]
fn json_streams_arrays_and_lists_are_expanded() {
    let text = r#"
{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}
]}
{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa", "namespace": "a"}}
[{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}}]
"#;
    let (objects, errors) = parse_stream("in.json", text);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        names_and_lines(&objects),
        [("a", 2), ("b", 2), ("sa", 6), ("c", 7)]
    );
}

#[test]
fn yaml_list_kind_is_expanded() {
    let i = inv(
        "apiVersion: v1\nkind: ConfigMapList\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: x}\n",
    );
    assert!(i.namespaces.contains_key("x"));
}

#[test]
fn a_malformed_document_is_reported_and_the_rest_is_read() {
    let text = "\
apiVersion: v1
kind: Namespace
metadata: {name: good-1}
---
apiVersion: v1
kind: Namespace
metadata: {name: [unclosed
---
- just
- a list
---
kind: Namespace
metadata: {name: no-api-version}
---
apiVersion: v1
kind: Namespace
metadata: {name: good-2}
";
    let i = inv(text);
    assert!(i.namespaces.contains_key("good-1"));
    assert!(i.namespaces.contains_key("good-2"));
    let errors: Vec<String> = i.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0].starts_with("in.yaml:5: not valid YAML"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("in.yaml:9: expected a Kubernetes object"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].starts_with("in.yaml:12: object has no `kind` or no `apiVersion`"),
        "{}",
        errors[2]
    );
}

#[test]
fn a_spec_of_the_wrong_shape_names_the_object() {
    let i = inv(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: ns}\nspec:\n  mtls: STRICT\n",
    );
    assert!(i.peer_authentications_in("ns").is_empty());
    assert_eq!(i.errors.len(), 1);
    let e = i.errors[0].to_string();
    assert!(e.contains("PeerAuthentication ns/pa"), "{e}");
    assert!(e.contains("unreadable spec"), "{e}");
}

#[test]
fn deep_nesting_is_refused_not_a_crash() {
    let mut text =
        String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata:\n  x: ");
    for _ in 0..(MAX_DEPTH * 4) {
        text.push('[');
    }
    text.push('\n');
    let i = inv(&text);
    assert_eq!(i.errors.len(), 1, "{:?}", i.errors);

    let mut json = String::from(
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "deep"}, "data": "#,
    );
    for _ in 0..10_000 {
        json.push('[');
    }
    let i = Inventory::from_sources([("in.json", json.as_str())]);
    assert_eq!(i.errors.len(), 1, "{:?}", i.errors);
    assert!(i.errors[0].message.contains("not valid JSON"));
}

#[test]
fn unknown_kinds_are_kept_and_ignored() {
    let i = inv(
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: wf, namespace: kubeflow}\nspec: {templates: []}\n",
    );
    assert!(i.errors.is_empty());
    assert_eq!(i.objects.len(), 1);
    assert!(i.workloads.is_empty());
}

#[test]
fn pod_templates_of_every_controller_become_workloads() {
    let template = "  template:\n    metadata: {labels: {app: x}}\n    spec:\n      serviceAccountName: sa\n      containers: [{name: c, ports: [{name: web, containerPort: 8080}]}]\n";
    let mut text = String::new();
    for (api, kind) in [
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("apps/v1", "ReplicaSet"),
        ("batch/v1", "Job"),
    ] {
        text.push_str(&format!(
            "---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: {}, namespace: ns}}\nspec:\n{template}",
            kind.to_lowercase()
        ));
    }
    text.push_str("---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {name: cron, namespace: ns}\nspec:\n  jobTemplate:\n    spec:\n");
    text.push_str(
        &template
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>(),
    );
    text.push_str("---\napiVersion: v1\nkind: Pod\nmetadata: {name: pod, namespace: ns, labels: {app: x}}\nspec:\n  containers: [{name: c}]\n");
    let i = inv(&text);
    assert!(i.errors.is_empty(), "{:?}", i.errors);
    let mut kinds: Vec<String> = i.workloads.iter().map(|w| w.kind.clone()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "CronJob",
            "DaemonSet",
            "Deployment",
            "Job",
            "Pod",
            "ReplicaSet",
            "StatefulSet"
        ]
    );
    let cron = i.workload("ns", "cron").expect("cron job workload");
    assert_eq!(cron.service_account(), "sa");
    assert_eq!(cron.label("app"), Some("x"));
    assert_eq!(cron.port_by_name("web"), Some(8080));
    assert_eq!(
        i.workload("ns", "pod").map(|p| p.service_account()),
        Some("default")
    );
}

#[test]
fn services_select_endpoints_and_named_target_ports() {
    let i = inv("\
apiVersion: apps/v1
kind: Deployment
metadata: {name: ml-pipeline, namespace: kubeflow}
spec:
  template:
    metadata: {labels: {app: ml-pipeline}}
    spec:
      containers: [{name: api, ports: [{name: grpc, containerPort: 8887}]}]
---
apiVersion: v1
kind: Service
metadata: {name: ml-pipeline, namespace: kubeflow}
spec:
  selector: {app: ml-pipeline}
  ports: [{name: grpc, port: 8887, targetPort: grpc}]
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: kubeflow}
spec:
  clusterIP: None
  selector: {app: nothing}
  ports: [{port: 1}]
");
    let svc = i.service("kubeflow", "ml-pipeline").expect("service");
    let eps = i.service_endpoints(svc);
    assert_eq!(eps.len(), 1);
    let port = &svc.spec.ports[0];
    assert_eq!(eps[0].target_port(port), Some(8887));
    let headless = i.service("kubeflow", "headless").expect("headless");
    assert!(headless.spec.is_headless());
    assert!(i.service_endpoints(headless).is_empty());
    assert_eq!(i.services_of(eps[0]).len(), 1);
}

#[test]
fn istio_kinds_at_every_served_version_are_typed() {
    let mut text = String::new();
    for v in ["v1", "v1beta1"] {
        for kind in [
            "PeerAuthentication",
            "AuthorizationPolicy",
            "RequestAuthentication",
        ] {
            text.push_str(&format!(
                "---\napiVersion: security.istio.io/{v}\nkind: {kind}\nmetadata: {{name: {}-{v}, namespace: ns}}\nspec: {{}}\n",
                kind.to_lowercase()
            ));
        }
    }
    for v in ["v1", "v1beta1", "v1alpha3"] {
        text.push_str(&format!("---\napiVersion: networking.istio.io/{v}\nkind: DestinationRule\nmetadata: {{name: dr-{v}, namespace: ns}}\nspec: {{host: x}}\n"));
        text.push_str(&format!("---\napiVersion: networking.istio.io/{v}\nkind: Sidecar\nmetadata: {{name: sc-{v}, namespace: ns}}\nspec: {{}}\n"));
    }
    text.push_str("---\napiVersion: security.istio.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: not-served, namespace: ns}\nspec: {}\n");
    text.push_str("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: ns}\nspec: {podSelector: {}}\n");
    let i = inv(&text);
    assert!(i.errors.is_empty(), "{:?}", i.errors);
    assert_eq!(i.peer_authentications_in("ns").len(), 2);
    assert_eq!(i.authorization_policies_in("ns").len(), 2);
    assert_eq!(i.request_authentications_in("ns").len(), 2);
    assert_eq!(i.destination_rules_in("ns").len(), 3);
    assert_eq!(i.sidecars_in("ns").len(), 3);
    assert_eq!(i.network_policies_in("ns").len(), 1);
}

#[test]
fn mesh_and_injector_config_maps_are_read() {
    let i = inv(r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    trustDomain: example.org
    trustDomainAliases: [old-td]
    enableAutoMtls: false
    defaultConfig:
      holdApplicationUntilProxyStarts: true
    extensionProviders:
    - name: oauth2-proxy
      envoyExtAuthzHttp: {service: oauth2-proxy.oauth2-proxy.svc.cluster.local, port: 80}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio-sidecar-injector, namespace: istio-system}
data:
  config: |-
    policy: disabled
    alwaysInjectSelector:
    - matchLabels: {inject: always}
    neverInjectSelector:
    - matchExpressions: [{key: openshift.io/build.name, operator: Exists}]
    template: |
      {{ if .Values.x }}not yaml {{ end }}
  values: '{"sidecarInjectorWebhook": {"enableNamespacesByDefault": true}}'
"#);
    assert!(i.errors.is_empty(), "{:?}", i.errors);
    assert_eq!(i.mesh.root_namespace, "istio-system");
    assert_eq!(i.mesh.trust_domain, "example.org");
    assert_eq!(i.mesh.trust_domain_aliases, vec!["old-td"]);
    assert!(!i.mesh.enable_auto_mtls);
    assert!(i.mesh.hold_application_until_proxy_starts);
    let names: Vec<&str> = i
        .mesh
        .extension_providers
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, vec!["oauth2-proxy"]);
    let p = i.mesh.extension_provider("oauth2-proxy").expect("provider");
    assert_eq!(p.kind, "envoyExtAuthzHttp");
    assert_eq!(
        p.service.as_deref(),
        Some("oauth2-proxy.oauth2-proxy.svc.cluster.local")
    );
    assert_eq!(p.port.as_deref(), Some("80"));
    assert_eq!(
        i.mesh.path_normalization,
        PathNormalization::Base,
        "Istio's default"
    );
    assert_eq!(i.injector.policy, "disabled");
    assert_eq!(i.injector.always_inject_selector.len(), 1);
    assert_eq!(i.injector.never_inject_selector.len(), 1);
    assert!(i.injector.enable_namespaces_by_default);
}

#[test]
fn mesh_path_normalization_and_provider_fields_are_read() {
    let mesh = |body: &str| {
        let indented: String = body.lines().map(|l| format!("    {l}\n")).collect();
        inv(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n{indented}"
        ))
    };
    for (value, want) in [
        ("DEFAULT", PathNormalization::Base),
        ("BASE", PathNormalization::Base),
        ("NONE", PathNormalization::None),
        ("MERGE_SLASHES", PathNormalization::MergeSlashes),
        (
            "DECODE_AND_MERGE_SLASHES",
            PathNormalization::DecodeAndMergeSlashes,
        ),
    ] {
        let i = mesh(&format!("pathNormalization:\n  normalization: {value}"));
        assert!(i.errors.is_empty(), "{value}: {:?}", i.errors);
        assert_eq!(i.mesh.path_normalization, want, "{value}");
    }
    // An unknown value: istiod cannot parse the mesh config; kfp-mesh says so.
    let i = mesh("pathNormalization:\n  normalization: STRICTEST");
    assert_eq!(i.errors.len(), 1, "{:?}", i.errors);
    assert!(
        i.errors[0].message.contains("STRICTEST"),
        "{}",
        i.errors[0].message
    );

    // Ports written as strings (protobuf JSON accepts both), statusOnError, pathPrefix, bare
    // `*` header lists, and a provider of another kind; duplicates are kept in order and the
    // later definition is the effective one.
    let i = mesh(
        "extensionProviders:\n- name: a\n  envoyExtAuthzGrpc: {service: a.ns.svc.cluster.local, port: \"9000\", statusOnError: \"503\", failOpen: true}\n- name: b\n  envoyExtAuthzHttp: {service: ns/b.ns.svc.cluster.local, port: 8000, pathPrefix: check, includeRequestHeadersInCheck: [\"*\"]}\n- name: t\n  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}\n- name: a\n  envoyExtAuthzHttp: {service: a.ns.svc.cluster.local, port: 70000}",
    );
    assert!(i.errors.is_empty(), "{:?}", i.errors);
    assert_eq!(i.mesh.extension_providers.len(), 4);
    let a = i.mesh.extension_provider("a").expect("a");
    assert_eq!(
        (a.kind.as_str(), a.port.as_deref()),
        ("envoyExtAuthzHttp", Some("70000"))
    );
    let first = &i.mesh.extension_providers[0];
    assert_eq!(first.port.as_deref(), Some("9000"));
    assert_eq!(first.status_on_error.as_deref(), Some("503"));
    assert!(first.fail_open);
    let b = i.mesh.extension_provider("b").expect("b");
    assert_eq!(b.path_prefix.as_deref(), Some("check"));
    assert_eq!(b.bare_wildcard_fields, vec!["includeRequestHeadersInCheck"]);
    assert_eq!(
        i.mesh.extension_provider("t").map(|t| t.kind.as_str()),
        Some("zipkin")
    );
}

#[test]
fn port_level_mtls_keys_are_read_from_integer_yaml_keys() {
    let i = inv(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: ns}\nspec:\n  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    8443: {mode: PERMISSIVE}\n",
    );
    assert!(i.errors.is_empty(), "{:?}", i.errors);
    let pa = &i.peer_authentications_in("ns")[0];
    let ports = pa.spec.port_level_mtls.as_ref().expect("port level");
    assert_eq!(
        ports.get("8443").map(|m| m.mode),
        Some(PeerMode::Permissive)
    );
}

#[test]
fn a_redefined_object_keeps_the_first_and_reports_the_second() {
    let a = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {istio-injection: enabled}}\n";
    let b = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n";
    let i = Inventory::from_sources([("a.yaml", a), ("b.yaml", b)]);
    assert_eq!(
        i.namespace_labels("x").get("istio-injection"),
        Some("enabled")
    );
    assert_eq!(i.errors.len(), 1);
    assert!(
        i.errors[0]
            .to_string()
            .starts_with("b.yaml:1: Namespace x: defined again")
    );
}

#[test]
fn objects_are_held_by_kind_namespace_and_name_and_the_first_definition_is_kept() {
    // Out of order, across two files, and one object defined twice in one List document
    // (the same place for both): the first item read is kept.
    let a = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: b, namespace: team}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: z}\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: x, labels: {first: 'yes'}}}\n- {apiVersion: v1, kind: Namespace, metadata: {name: x, labels: {second: 'yes'}}}\n";
    let b = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a, namespace: team}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: w}\n";
    let i = Inventory::from_sources([("a.yaml", a), ("b.yaml", b)]);
    let held: Vec<String> = i
        .objects
        .iter()
        .map(|o| o.object_ref().to_string())
        .collect();
    assert_eq!(
        held,
        [
            "Namespace w",
            "Namespace x",
            "Namespace z",
            "ServiceAccount team/a",
            "ServiceAccount team/b"
        ]
    );
    assert_eq!(
        i.namespace_labels("x").get("first"),
        Some("yes"),
        "{:?}",
        i.errors
    );
    assert_eq!(i.errors.len(), 1, "{:?}", i.errors);
}

/// A `kubectl get services -A -o yaml` dump of `n` Services: one `kind: List` document.
fn service_list(n: usize) -> String {
    let mut text = String::from("apiVersion: v1\nitems:\n");
    for i in 0..n {
        text.push_str(&format!(
            "\
- apiVersion: v1
  kind: Service
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {{\"apiVersion\":\"v1\",\"kind\":\"Service\"}}
    creationTimestamp: \"2025-01-01T00:00:00Z\"
    labels:
      app: app-{i}
      app.kubernetes.io/part-of: shop
    name: svc-{i}
    namespace: ns-{ns}
    resourceVersion: \"{i}\"
    uid: 00000000-0000-0000-0000-{i:012}
  spec:
    clusterIP: 10.0.{a}.{b}
    clusterIPs:
    - 10.0.{a}.{b}
    internalTrafficPolicy: Cluster
    ipFamilies:
    - IPv4
    ipFamilyPolicy: SingleStack
    ports:
    - name: http
      port: 80
      protocol: TCP
      targetPort: 8080
    - name: grpc
      port: 9090
      protocol: TCP
      targetPort: 9090
    selector:
      app: app-{i}
    sessionAffinity: None
    type: ClusterIP
  status:
    loadBalancer: {{}}
",
            ns = i % 50,
            a = i / 250,
            b = i % 250
        ));
    }
    text.push_str("kind: List\nmetadata:\n  resourceVersion: \"\"\n");
    text
}

#[test]
fn a_large_kind_list_is_read() {
    // The size of the dump in issue 14: far more nodes than the parser's default budget.
    let text = service_list(10_416);
    assert!(text.len() * 2 > 4 * MIN_NODE_BUDGET, "the list is large");
    let (objects, errors) = parse_stream("services.yaml", &text);
    assert!(errors.is_empty(), "{:?}", errors.first());
    assert_eq!(objects.len(), 10_416);
    assert!(objects.iter().all(|o| o.kind == "Service"));
}

/// A billion laughs: ten aliases of ten aliases ..., nine levels, in a few hundred bytes.
fn alias_bomb() -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for level in 1..9 {
        let prev = format!("*a{}", level - 1);
        text.push_str(&format!(
            "  a{level}: &a{level} [{}]\n",
            [prev.as_str(); 10].join(", ")
        ));
    }
    text
}

#[test]
fn an_alias_bomb_is_refused_as_a_size_limit_that_says_what_to_do() {
    let (objects, errors) = parse_stream("bomb.yaml", &alias_bomb());
    assert!(objects.is_empty());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = errors[0].to_string();
    assert!(e.starts_with("bomb.yaml:1: YAML size limit"), "{e}");
    assert!(
        e.contains(&format!("more than {MIN_NODE_BUDGET} nodes")),
        "names the limit: {e}"
    );
    assert!(e.contains("alias"), "names the cause: {e}");
    assert!(
        e.contains("write the repeated parts out"),
        "says what to do: {e}"
    );
    assert!(!e.contains("budget breached"), "in kfp-mesh's words: {e}");

    // The budget grows with the document, but an alias bomb stays out of reach: padding the
    // bomb to 1 MiB allows 2 Mi nodes, still far fewer than its 10^9.
    let padded = format!("{}  pad: \"{}\"\n", alias_bomb(), "x".repeat(1024 * 1024));
    assert_eq!(node_budget(padded.len()), 2 * padded.len());
    let (_, errors) = parse_stream("bomb.yaml", &padded);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].message.starts_with("YAML size limit"),
        "{errors:?}"
    );
}

#[test]
fn aliases_within_the_budget_are_read() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok, labels: &l {app: a, tier: b}}\ndata:\n  x: &x [1, 2, 3]\n  y: *x\n  z: *x\n";
    let (objects, errors) = parse_stream("ok.yaml", text);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].meta.labels.get("tier"), Some("b"));
}

#[test]
fn a_document_that_is_not_utf8_is_skipped_with_its_line_and_the_others_are_read() {
    let mut bytes = b"apiVersion: v1\nkind: Namespace\nmetadata: {name: before}\n---\n# Latin-1\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: latin1}\ndata:\n  motto: caf".to_vec();
    bytes.push(0xe9);
    bytes.extend_from_slice(b"\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: after}\n");
    let (objects, errors) = parse_bytes("mixed.yaml", &bytes);
    let names: Vec<&str> = objects.iter().map(|o| o.meta.name.as_str()).collect();
    assert_eq!(names, ["before", "after"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].to_string(),
        "mixed.yaml:10: not UTF-8 text: byte 0xe9 at column 13; the document that starts at line 6 is skipped (convert the file to UTF-8, e.g. `iconv -f LATIN1 -t UTF-8`)"
    );

    // In JSON the broken value is skipped the same way.
    let mut bytes =
        b"{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"caf"
            .to_vec();
    bytes.push(0xe9);
    bytes.extend_from_slice(b"\"}}\n{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"after\"}}\n");
    let (objects, errors) = parse_bytes("mixed.json", &bytes);
    let names: Vec<&str> = objects.iter().map(|o| o.meta.name.as_str()).collect();
    assert_eq!(names, ["after"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .to_string()
            .starts_with("mixed.json:1: not valid JSON"),
        "{errors:?}"
    );
}

#[test]
fn a_broken_json_value_loses_only_itself_and_says_so() {
    let ns = |name: &str| {
        format!(
            "{{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Namespace\",\n  \"metadata\": {{\"name\": \"{name}\"}}\n}}\n"
        )
    };
    let text = format!(
        "{}{{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Namespace\",\n  \"metadata\": {{\"name\": \"cut\n{}{}{{\"kind\": ",
        ns("first"),
        ns("third"),
        ns("fourth")
    );
    let (objects, errors) = parse_stream("in.json", &text);
    assert_eq!(
        names_and_lines(&objects),
        [("first", 1), ("third", 10), ("fourth", 15)]
    );
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            "in.json:6: not valid JSON: control character (\\u0000-\\u001F) found while parsing a string at line 9 column 27; lines 6-9 skipped, reading on at line 10",
            "in.json:20: not valid JSON: EOF while parsing a value at line 20 column 9; lines 20-20 (the rest) skipped",
        ]
    );
}

/// A duplicate key is named, with the object, in kfp-mesh's words (not the YAML library's
/// hint about its own options).
#[test]
fn duplicate_key_names_the_key_and_the_object() {
    let text =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: kubeflow\n  name: b\n";
    let (objects, errors) = kfp_mesh_core::inventory::parse_stream("dup.yaml", text);
    assert!(objects.is_empty());
    let e = errors.first().expect("an error");
    assert!(
        e.message
            .contains("duplicate key `name` in ConfigMap kubeflow/a"),
        "{}",
        e.message
    );
    assert!(!e.message.contains("DuplicateKeyPolicy"), "{}", e.message);
    assert!(!e.message.contains("Options"), "{}", e.message);
}

/// Pods with equal specs (the replicas of one controller, the run pods of one component)
/// share one copy of it; a different spec is its own.
#[test]
fn equal_pod_specs_are_held_once() {
    let pod = |name: &str, image: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: ns\nspec:\n  containers:\n  - name: main\n    image: {image}\n---\n"
        )
    };
    let text = [pod("a", "i:1"), pod("b", "i:1"), pod("c", "i:2")].concat();
    let inv = Inventory::from_sources([("in", text.as_str())]);
    let spec = |name: &str| {
        inv.workloads
            .iter()
            .find(|w| w.name == name)
            .map(|w| std::sync::Arc::clone(&w.spec))
            .expect("workload")
    };
    assert!(std::sync::Arc::ptr_eq(&spec("a"), &spec("b")));
    assert!(!std::sync::Arc::ptr_eq(&spec("a"), &spec("c")));
    assert_eq!(spec("c").containers[0].image.as_deref(), Some("i:2"));
}

/// Pod specs of the same text (read once through the inventory's cache of spec texts): a
/// Deployment's template and Pods in other namespaces share one spec, each keeping its own
/// metadata, also when a different spec came between them; a spec that does not read is named
/// for every object that has it, not remembered as read.
#[test]
fn pod_specs_of_one_text_are_shared_and_an_unreadable_one_named_each_time() {
    let spec = "spec:\n  containers:\n  - name: main\n    image: i:1\n";
    let bad = "spec:\n  containers: 7\n";
    let pod = |ns: &str, name: &str, spec: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    app: {name}\n{spec}---\n"
        )
    };
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n  namespace: x\nspec:\n  template:\n    metadata:\n      labels:\n        app: d\n    {}---\n",
        spec.replace("\n  ", "\n      ")
    );
    let text = [
        pod("a", "p", spec),
        pod("b", "q", bad),
        pod("c", "r", spec),
        deployment,
        pod("d", "s", bad),
    ]
    .concat();
    let inv = Inventory::from_sources([("in", text.as_str())]);
    let workload = |ns: &str, name: &str| {
        inv.workload(ns, name)
            .unwrap_or_else(|| panic!("{ns}/{name}: {:?}", inv.errors))
    };
    let (p, r, d) = (workload("a", "p"), workload("c", "r"), workload("x", "d"));
    assert!(std::sync::Arc::ptr_eq(&p.spec, &r.spec));
    assert!(std::sync::Arc::ptr_eq(&p.spec, &d.spec));
    assert_eq!(p.spec.containers[0].image.as_deref(), Some("i:1"));
    assert_eq!(
        [p.label("app"), r.label("app"), d.label("app")],
        [Some("p"), Some("r"), Some("d")]
    );
    let unreadable: Vec<String> = inv
        .errors
        .iter()
        .filter(|e| e.message.starts_with("unreadable pod spec"))
        .filter_map(|e| e.object.as_ref().map(|o| o.to_string()))
        .collect();
    assert_eq!(unreadable, ["Pod b/q", "Pod d/s"], "{:?}", inv.errors);
    assert!(inv.workload("b", "q").is_none() && inv.workload("d", "s").is_none());
}

/// A Service's endpoints: the workloads of its namespace its selector selects, including
/// workloads added after the inventory was built, and for a Service that is not the
/// inventory's own (another selector), what that selector selects.
#[test]
fn service_endpoints_follow_added_workloads_and_the_selector_asked_about() {
    let mut inv = inv("\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: ns, labels: {app: web}}
spec: {containers: [{name: main}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db-1, namespace: ns, labels: {app: db}}
spec: {containers: [{name: main}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: other, labels: {app: web}}
spec: {containers: [{name: main}]}
");
    let names = |inv: &Inventory, svc: &kfp_mesh_core::inventory::Service| {
        inv.service_endpoints(svc)
            .iter()
            .map(|w| format!("{}/{}", w.namespace, w.name))
            .collect::<Vec<_>>()
    };
    let svc = inv.service("ns", "web").expect("service").clone();
    assert_eq!(names(&inv, &svc), ["ns/web-1"]);

    let mut added = (*inv.workloads[0]).clone();
    added.name = "web-2".to_string();
    added.namespace = "ns".to_string();
    added.labels = [("app", "web")].into_iter().collect();
    inv.add_workload(added);
    assert_eq!(names(&inv, &svc), ["ns/web-1", "ns/web-2"]);

    let mut db = svc.clone();
    db.spec.selector = Some([("app".to_string(), "db".to_string())].into());
    assert_eq!(names(&inv, &db), ["ns/db-1"]);
    db.spec.selector = None;
    assert!(names(&inv, &db).is_empty());
}

/// Pod templates are read from each object's text: what a pod spec holds is read whole (every
/// container and its ports, env, command), and a spec that does not read is named in the
/// user's terms, with no place in kfp-mesh's own copy of the text.
#[test]
fn pod_templates_read_whole_and_unreadable_ones_are_named() {
    let i = inv("\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: ns
spec:
  template:
    metadata:
      labels:
        app: web
      annotations:
        sidecar.istio.io/inject: \"true\"
    spec:
      serviceAccountName: web-sa
      volumes:
      - name: v
        emptyDir: {}
      initContainers:
      - name: init
        restartPolicy: Always
      containers:
      - name: a
        command: [\"/bin/a\"]
        args:
        - --port
        - \"8080\"
        ports:
        - containerPort: 8080
          name: http
        - containerPort: 9090
        env:
        - name: K
          value: v
      - name: b
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
  namespace: ns
spec:
  template:
    spec:
      hostNetwork: \"yes\"
      containers:
      - name: a
");
    let w = i.workload("ns", "web").expect("the Deployment's pods");
    assert_eq!(w.labels.get("app"), Some("web"));
    assert_eq!(w.annotations.get("sidecar.istio.io/inject"), Some("true"));
    assert_eq!(w.spec.service_account_name.as_deref(), Some("web-sa"));
    let names: Vec<&str> = w.spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let a = &w.spec.containers[0];
    assert_eq!(a.command, Some(vec!["/bin/a".to_string()]));
    assert_eq!(a.args, Some(vec!["--port".to_string(), "8080".to_string()]));
    let ports: Vec<(Option<&str>, i64)> = a
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.container_port))
        .collect();
    assert_eq!(ports, [(Some("http"), 8080), (None, 9090)]);
    let env: Vec<(&str, Option<&str>)> = a
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.as_deref()))
        .collect();
    assert_eq!(env, [("K", Some("v"))]);
    let init = w.spec.init_containers.as_deref().unwrap_or_default();
    assert_eq!(init.len(), 1);
    assert_eq!(init[0].restart_policy.as_deref(), Some("Always"));

    assert!(i.workload("ns", "broken").is_none());
    let errors: Vec<String> = i.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errors,
        [
            "in.yaml:36: Deployment ns/broken: unreadable pod spec: invalid type: string \"yes\", expected a boolean"
        ],
    );
}

/// A workload's memo keeps one value of each type, for the inventory generation it was
/// computed in: a second kind of fact does not push out the first, and a new generation
/// computes each again.
#[test]
fn a_memo_keeps_one_value_of_each_type_for_one_generation() {
    let memo = Memo::default();
    assert_eq!(*memo.get_or_compute(1, || 7u32), 7);
    assert_eq!(*memo.get_or_compute(1, || 8u32), 7);
    assert_eq!(*memo.get_or_compute(1, || "first"), "first");
    assert_eq!(*memo.get_or_compute(1, || 9u32), 7);
    assert_eq!(*memo.get_or_compute(1, || "second"), "first");
    assert_eq!(*memo.get_or_compute(2, || 10u32), 10);
    assert_eq!(*memo.get_or_compute(2, || 11u32), 10);
    assert_eq!(*memo.get_or_compute(2, || "third"), "third");
    // Room for a few more; past it, each answer is computed anew and nothing kept is lost.
    let kept = 4;
    for generation in 3..3 + (Memo::MAX_KEPT - kept) as u64 {
        assert_eq!(*memo.get_or_compute(generation, || generation), generation);
        assert_eq!(*memo.get_or_compute(generation, || 0u64), generation);
    }
    assert_eq!(*memo.get_or_compute(100, || 100u64), 100);
    assert_eq!(*memo.get_or_compute(100, || 101u64), 101);
    assert_eq!(*memo.get_or_compute(1, || 12u32), 7);
    assert_eq!(*memo.get_or_compute(2, || "fourth"), "third");
}

/// Threads asking one memo at once all get the one value kept.
#[test]
fn a_memo_asked_from_many_threads_keeps_one_value() {
    let memo = Memo::default();
    let computed = std::sync::atomic::AtomicUsize::new(0);
    let answers: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (memo, computed) = (&memo, &computed);
                scope.spawn(move || {
                    *memo.get_or_compute(1, || {
                        computed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        i
                    })
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    assert_eq!(answers.len(), 8);
    let kept = *memo.get_or_compute(1, || usize::MAX);
    assert!(answers.iter().all(|a| *a == kept), "{answers:?} {kept}");
}

/// A workload is found by namespace and name: a controller before a Pod of the same name, of
/// two controllers the first kind by name; workloads added after the inventory was built are
/// found too, and a name in another namespace is not.
#[test]
fn workloads_are_found_by_namespace_and_name() {
    let pod = |ns: &str, name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{containers: [{{name: main}}]}}\n---\n"
        )
    };
    let controller = |kind: &str, ns: &str, name: &str| {
        format!(
            "apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{template: {{spec: {{containers: [{{name: main}}]}}}}}}\n---\n"
        )
    };
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&pod("ns", &format!("p{i:02}")));
    }
    text.push_str(&pod("ns", "web"));
    text.push_str(&controller("StatefulSet", "ns", "web"));
    text.push_str(&controller("Deployment", "ns", "web"));
    text.push_str(&pod("ns", "only-pod"));
    text.push_str(&pod("other", "elsewhere"));
    let mut i = inv(&text);
    let kind = |i: &Inventory, ns: &str, name: &str| i.workload(ns, name).map(|w| w.kind.clone());
    assert_eq!(kind(&i, "ns", "web").as_deref(), Some("Deployment"));
    assert_eq!(kind(&i, "ns", "only-pod").as_deref(), Some("Pod"));
    assert_eq!(kind(&i, "ns", "p00").as_deref(), Some("Pod"));
    assert_eq!(kind(&i, "ns", "p49").as_deref(), Some("Pod"));
    assert_eq!(kind(&i, "ns", "elsewhere"), None);
    assert_eq!(kind(&i, "ns", "absent"), None);
    assert_eq!(kind(&i, "other", "elsewhere").as_deref(), Some("Pod"));

    let mut added = i.workload("ns", "p10").expect("p10").clone();
    added.name = "a-new-one".to_string();
    i.add_workload(added.clone());
    added.name = "web".to_string();
    added.kind = "DaemonSet".to_string();
    i.add_workload(added);
    assert_eq!(kind(&i, "ns", "a-new-one").as_deref(), Some("Pod"));
    assert_eq!(kind(&i, "ns", "web").as_deref(), Some("DaemonSet"));
    assert_eq!(kind(&i, "ns", "p10").as_deref(), Some("Pod"));
}

/// Inside `explain::quietly` only the messages of steps are left unwritten, not other text;
/// a fact kept for later is worded even when it is first asked for quietly, since later
/// callers read it as kept.
#[test]
fn a_fact_first_asked_for_quietly_is_kept_with_its_words() {
    use kfp_mesh_core::explain;
    use kfp_mesh_core::mesh::membership;
    let inv = inv("\
apiVersion: v1
kind: Namespace
metadata: {name: team, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: team}
spec: {containers: [{name: app, image: app}]}
");
    let w = inv.workload("team", "app").expect("the pod is a workload");
    let quiet_steps = explain::quietly(|| {
        assert_eq!(kfp_mesh_core::step!("H", "step {}", 1).message, "");
        assert_eq!(kfp_mesh_core::text!("text {}", 1), "text 1");
        membership::data_plane(&inv, w).steps.len()
    });
    assert!(quiet_steps > 1);
    // Quietly, a step cites nothing and a nested decision's steps are not copied in.
    let cite = inv.namespaces.get("team").expect("the namespace").cite();
    let nested = [kfp_mesh_core::step!("H", "nested").by(cite.clone())];
    let (quiet_cites, quiet_copied) = explain::quietly(|| {
        let mut steps = Vec::new();
        explain::extend(&mut steps, &nested);
        (
            kfp_mesh_core::step!("H", "x")
                .by(cite.clone())
                .objects
                .len(),
            steps.len(),
        )
    });
    assert_eq!((quiet_cites, quiet_copied), (0, 0));
    // A clause of a message is neither written nor worked out quietly.
    let mut worked_out = 0;
    let mut clause = || {
        kfp_mesh_core::words!("rule {}", {
            worked_out += 1;
            2
        })
    };
    assert_eq!(explain::quietly(&mut clause), "");
    assert_eq!(clause(), "rule 2");
    assert_eq!(worked_out, 1);
    let mut steps = Vec::new();
    explain::extend(&mut steps, &nested);
    assert_eq!(steps, nested);
    assert_eq!(steps.first().map(|s| s.objects.len()), Some(1));
    let kept = membership::data_plane(&inv, w);
    // The kept fact cites the Namespace that decided it, though first asked for quietly.
    assert!(kept.steps.iter().any(|s| s.objects.contains(&cite)));
    assert_eq!(kept.steps.len(), quiet_steps);
    assert!(
        kept.steps.iter().all(|s| !s.message.is_empty()),
        "{:?}",
        kept.steps
    );
    assert_eq!(kfp_mesh_core::step!("H", "step {}", 1).message, "step 1");
}
