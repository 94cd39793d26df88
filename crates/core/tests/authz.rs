//! Truth tables for AuthorizationPolicy / RequestAuthentication evaluation
//! (`istio-semantics.md` D1–D9, A6.3–A6.5), plus the istio.io security tasks re-expressed as
//! small manifests. Each row: a name, a request, the expected verdict. Tables are kept one row
//! per line (`#[rustfmt::skip]`) so they read like truth tables.

#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::collections::BTreeMap;

use kfp_mesh_core::explain::Decision;
use kfp_mesh_core::inventory::{AuthorizationPolicy, Inventory, parse_stream};
use kfp_mesh_core::mesh::authz::{
    AuthzVerdict, AuthzVerdict::*, Chain, Enforcer, HttpRequest, Jwt, RequestContext, authorize,
    is_dry_run,
};
use kfp_mesh_core::model::AuthorizationPolicySpec;
use kfp_mesh_core::object::Resource;

// ---------------------------------------------------------------------------------------------
// Fixtures

const CURL: &str = "cluster.local/ns/foo/sa/curl";
const SLEEP_BAR: &str = "cluster.local/ns/bar/sa/sleep";

/// httpbin in `foo`: Service port 8000 → container port 8080, SA httpbin.
const HTTPBIN: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin, namespace: foo}
spec:
  template:
    metadata: {labels: {app: httpbin, version: v1}}
    spec:
      serviceAccountName: httpbin
      containers: [{name: httpbin, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000, targetPort: 8080}]
"#;

fn build(docs: &[&str]) -> Inventory {
    let text = docs.join("\n---\n");
    let inv = Inventory::from_sources([("test.yaml", text.as_str())]);
    assert!(inv.errors.is_empty(), "input errors: {:?}", inv.errors);
    assert!(
        inv.rejected.is_empty(),
        "validation rejects a test policy (use `with_unvalidated`): {:?}",
        inv.rejected
    );
    inv
}

/// An AuthorizationPolicy document with a flow-style spec.
fn ap(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
    )
}

fn ap_dry(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}, annotations: {{istio.io/dry-run: \"true\"}}}}\nspec: {spec}\n"
    )
}

fn ra(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
    )
}

fn mesh(body: &str) -> String {
    let indented: String = body.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n{indented}"
    )
}

/// httpbin plus one policy `foo/p` typed directly, bypassing validation: shapes Istio rejects
/// must still be evaluated without panicking, as Istio would generate them.
fn with_unvalidated(spec: &str) -> Inventory {
    let text = ap("foo", "p", spec);
    let (objects, errors) = parse_stream("test.yaml", &text);
    assert!(errors.is_empty(), "{errors:?}");
    let o = &objects[0];
    let policy: AuthorizationPolicy = Resource {
        api_version: o.api_version.clone(),
        kind: o.kind.clone(),
        meta: o.meta.clone(),
        spec: serde_json::from_value::<AuthorizationPolicySpec>(o.value()["spec"].clone()).unwrap(),
        origin: o.origin.clone(),
        cited: Default::default(),
    };
    let mut inv = build(&[HTTPBIN]);
    inv.authorization_policies
        .entry("foo".to_string())
        .or_default()
        .push(policy);
    inv
}

/// A request builder over [`RequestContext`].
#[derive(Clone, Debug)]
struct R(RequestContext);

/// An HTTP request to httpbin's container port 8080.
fn http(method: &str, path: &str) -> R {
    R(RequestContext {
        principal: None,
        source_ip: Some("10.0.0.9".parse().unwrap()),
        remote_ip: None,
        destination_ip: Some("10.0.1.1".parse().unwrap()),
        destination_port: 8080,
        sni: None,
        chain: Chain::Http,
        http: Some(HttpRequest {
            method: method.to_string(),
            path: path.to_string(),
            host: "httpbin.foo:8000".to_string(),
            headers: BTreeMap::new(),
        }),
        jwt: None,
    })
}

fn get(path: &str) -> R {
    http("GET", path)
}

/// A TCP connection to `port`.
fn tcp(port: u16) -> R {
    let mut r = get("/");
    r.0.chain = Chain::Tcp;
    r.0.http = None;
    r.0.destination_port = port;
    r
}

impl R {
    fn from(mut self, principal: &str) -> Self {
        self.0.principal = Some(principal.to_string());
        self
    }
    fn port(mut self, port: u16) -> Self {
        self.0.destination_port = port;
        self
    }
    fn host(mut self, host: &str) -> Self {
        if let Some(h) = self.0.http.as_mut() {
            h.host = host.to_string();
        }
        self
    }
    fn header(mut self, k: &str, v: &str) -> Self {
        if let Some(h) = self.0.http.as_mut() {
            h.headers.insert(k.to_string(), v.to_string());
        }
        self
    }
    fn src(mut self, ip: &str) -> Self {
        self.0.source_ip = Some(ip.parse().unwrap());
        self
    }
    fn remote(mut self, ip: &str) -> Self {
        self.0.remote_ip = Some(ip.parse().unwrap());
        self
    }
    fn dst(mut self, ip: &str) -> Self {
        self.0.destination_ip = Some(ip.parse().unwrap());
        self
    }
    fn sni(mut self, sni: &str) -> Self {
        self.0.sni = Some(sni.to_string());
        self
    }
    fn jwt(mut self, jwt: Jwt) -> Self {
        self.0.jwt = Some(jwt);
        self
    }
}

const ISS: &str = "testing@secure.istio.io";

fn token() -> Jwt {
    Jwt {
        issuer: ISS.to_string(),
        subject: ISS.to_string(),
        audiences: vec!["app".to_string()],
        presenter: Some("frontend".to_string()),
        claims: BTreeMap::from([("groups".to_string(), vec!["group1".to_string()])]),
        valid: true,
    }
}

fn custom(provider: &str) -> AuthzVerdict {
    Custom {
        provider: provider.to_string(),
    }
}

fn dump(d: &Decision<AuthzVerdict>) -> String {
    d.steps
        .iter()
        .map(|s| format!("  {s}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Some step with this rule id whose message contains `needle`.
fn explains(d: &Decision<AuthzVerdict>, rule: &str, needle: &str) -> bool {
    d.steps
        .iter()
        .any(|s| s.rule == rule && s.message.contains(needle))
}

type Row<'a> = (&'a str, R, AuthzVerdict);

fn decide(
    inv: &Inventory,
    ns: &str,
    name: &str,
    enforcer: Enforcer<'_>,
    r: &R,
) -> Decision<AuthzVerdict> {
    let w = inv
        .workload(ns, name)
        .unwrap_or_else(|| panic!("workload {ns}/{name}"));
    authorize(inv, w, enforcer, &r.0)
}

fn table(inv: &Inventory, ns: &str, name: &str, enforcer: Enforcer<'_>, rows: &[Row<'_>]) {
    for (row, r, want) in rows {
        let d = decide(inv, ns, name, enforcer, r);
        assert_eq!(&d.value, want, "row {row:?}: steps:\n{}", dump(&d));
    }
}

/// One policy `foo/p` with the given spec, evaluated per row at `enforcer` for httpbin.
fn spec_table_at<S: AsRef<str>>(enforcer: Enforcer<'_>, rows: Vec<(&str, S, R, AuthzVerdict)>) {
    for (row, spec, r, want) in rows {
        let spec = spec.as_ref();
        let inv = build(&[HTTPBIN, &ap("foo", "p", spec)]);
        let d = decide(&inv, "foo", "httpbin", enforcer, &r);
        assert_eq!(
            d.value,
            want,
            "row {row:?} (spec {spec}): steps:\n{}",
            dump(&d)
        );
    }
}

fn spec_table<S: AsRef<str>>(rows: Vec<(&str, S, R, AuthzVerdict)>) {
    spec_table_at(Enforcer::Sidecar, rows)
}

// ---------------------------------------------------------------------------------------------
// D1: attachment

#[test]
#[rustfmt::skip]
fn d1_sidecar_attachment() {
    let inv = build(&[
        HTTPBIN,
        &ap("istio-system", "root-all", r#"{action: DENY, rules: [{to: [{operation: {paths: ["/root-all"]}}]}]}"#),
        &ap("istio-system", "root-sel", r#"{action: DENY, selector: {matchLabels: {app: httpbin}}, rules: [{to: [{operation: {paths: ["/root-sel"]}}]}]}"#),
        &ap("istio-system", "root-other", r#"{action: DENY, selector: {matchLabels: {app: other}}, rules: [{to: [{operation: {paths: ["/root-other"]}}]}]}"#),
        &ap("foo", "ns-wide", r#"{action: DENY, rules: [{to: [{operation: {paths: ["/ns-wide"]}}]}]}"#),
        &ap("foo", "subset", r#"{action: DENY, selector: {matchLabels: {app: httpbin, version: v1}}, rules: [{to: [{operation: {paths: ["/subset"]}}]}]}"#),
        &ap("foo", "superset", r#"{action: DENY, selector: {matchLabels: {app: httpbin, version: v2}}, rules: [{to: [{operation: {paths: ["/superset"]}}]}]}"#),
        &ap("foo", "target-svc", r#"{action: DENY, targetRefs: [{kind: Service, group: "", name: httpbin}], rules: [{}]}"#),
        &ap("bar", "other-ns", r#"{action: DENY, rules: [{}]}"#),
    ]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("root namespace, no selector: mesh-wide",              get("/root-all"),   Deny),
        ("root namespace selector applies in every namespace",  get("/root-sel"),   Deny),
        ("root namespace selector for other labels",            get("/root-other"), Allow),
        ("namespace-wide policy",                               get("/ns-wide"),    Deny),
        ("selector ⊆ pod labels",                               get("/subset"),     Deny),
        ("selector label the pod lacks",                        get("/superset"),   Allow),
        ("targetRefs ignored, other namespaces not candidates", get("/anything"),   Allow),
    ]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/x"));
    assert!(explains(&d, "D1", "sidecars ignore it"), "{}", dump(&d));
    assert!(d.steps.iter().any(|s| s.rule == "D1" && s.objects.iter().any(|o| o.object.name == "target-svc")));
    assert!(!d.steps.iter().any(|s| s.objects.iter().any(|o| o.object.name == "other-ns")), "{}", dump(&d));
    assert!(explains(&d, "D1", "superset"), "not-selected policies are listed: {}", dump(&d));
}

const GATEWAY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: gw-istio, namespace: ingress}
spec:
  template:
    metadata: {labels: {gateway.networking.k8s.io/gateway-name: gw, app: gw}}
    spec: {containers: [{name: istio-proxy}]}
"#;

#[test]
#[rustfmt::skip]
fn d1_kubernetes_gateway_pod() {
    let inv = build(&[
        GATEWAY,
        &ap("ingress", "to-gw", r#"{action: DENY, targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}], rules: [{to: [{operation: {paths: ["/t"]}}]}]}"#),
        &ap("ingress", "to-other-gw", r#"{action: DENY, targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: other}], rules: [{to: [{operation: {paths: ["/o"]}}]}]}"#),
        &ap("ingress", "by-selector", r#"{action: DENY, selector: {matchLabels: {app: gw}}, rules: [{to: [{operation: {paths: ["/s"]}}]}]}"#),
        &ap("istio-system", "root-gw-ref", r#"{action: DENY, targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}], rules: [{to: [{operation: {paths: ["/r"]}}]}]}"#),
    ]);
    table(&inv, "ingress", "gw-istio", Enforcer::Sidecar, &[
        ("targetRefs to its Gateway",                               get("/t"), Deny),
        ("targetRefs to another Gateway",                           get("/o"), Allow),
        ("selector policies still honoured by gateway pods",        get("/s"), Deny),
        ("root-namespace targetRef names a root-namespace Gateway", get("/r"), Allow),
    ]);
}

const WAYPOINT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: waypoint, namespace: foo}
spec:
  template:
    metadata: {labels: {gateway.networking.k8s.io/gateway-name: waypoint, istio.io/dataplane-mode: none}}
    spec: {serviceAccountName: waypoint, containers: [{name: istio-proxy}]}
"#;

#[test]
#[rustfmt::skip]
fn d1_waypoint_attachment() {
    let inv = build(&[
        HTTPBIN,
        WAYPOINT,
        &ap("foo", "svc", r#"{action: DENY, targetRefs: [{kind: Service, group: "", name: httpbin}], rules: [{to: [{operation: {paths: ["/svc"]}}]}]}"#),
        &ap("foo", "svc-single", r#"{action: DENY, targetRef: {kind: Service, group: "", name: httpbin}, rules: [{to: [{operation: {paths: ["/single"]}}]}]}"#),
        &ap("istio-system", "class", r#"{action: DENY, targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}], rules: [{to: [{operation: {paths: ["/class"]}}]}]}"#),
        &ap("foo", "class-not-root", r#"{action: DENY, targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}], rules: [{to: [{operation: {paths: ["/class-ns"]}}]}]}"#),
        &ap("foo", "selector", r#"{action: DENY, selector: {matchLabels: {app: httpbin}}, rules: [{to: [{operation: {paths: ["/sel"]}}]}]}"#),
        &ap("foo", "ns-wide", r#"{action: DENY, rules: [{to: [{operation: {paths: ["/ns"]}}]}]}"#),
        &ap("foo", "other-svc", r#"{action: DENY, targetRefs: [{kind: Service, name: other}], rules: [{to: [{operation: {paths: ["/other"]}}]}]}"#),
        &ap("istio-system", "svc-wrong-ns", r#"{action: DENY, targetRefs: [{kind: Service, name: httpbin}], rules: [{to: [{operation: {paths: ["/wrong-ns"]}}]}]}"#),
    ]);
    let svc = inv.service("foo", "httpbin").unwrap();
    let wp = Enforcer::Waypoint { service: svc };
    table(&inv, "foo", "waypoint", wp, &[
        ("targetRefs Service in the Service's namespace",     get("/svc"),      Deny),
        ("singular targetRef",                                get("/single"),   Deny),
        ("GatewayClass istio-waypoint in the root namespace", get("/class"),    Deny),
        ("GatewayClass outside the root namespace",           get("/class-ns"), Allow),
        ("selector policy ignored by waypoints",              get("/sel"),      Allow),
        ("namespace-wide policy ignored by waypoints",        get("/ns"),       Allow),
        ("targetRefs another Service",                        get("/other"),    Allow),
        ("targetRefs the name from another namespace",        get("/wrong-ns"), Allow),
    ]);
    let d = decide(&inv, "foo", "waypoint", wp, &get("/sel"));
    assert!(explains(&d, "D1", "waypoints only apply policies"), "{}", dump(&d));
    // The same selector policies do apply at the sidecar (and targetRef ones do not).
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("sidecar: selector policy",         get("/sel"), Deny),
        ("sidecar: targetRef policy ignored", get("/svc"), Allow),
    ]);
}

// ---------------------------------------------------------------------------------------------
// D2: decision order, dry-run, CUSTOM

#[test]
#[rustfmt::skip]
fn d2_decision_order() {
    let inv = build(&[
        HTTPBIN,
        &ap("foo", "allow-get", r#"{rules: [{to: [{operation: {methods: [GET]}}]}]}"#),
        &ap("foo", "deny-admin", r#"{action: DENY, rules: [{to: [{operation: {paths: ["/admin*"]}}]}]}"#),
        &ap("istio-system", "root-deny", r#"{action: DENY, rules: [{to: [{operation: {paths: ["/root-denied"]}}]}]}"#),
        &ap("foo", "audit-all", r#"{action: AUDIT, rules: [{}]}"#),
    ]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("ALLOW matches",                               get("/ip"),            Allow),
        ("no ALLOW matches → deny",                     http("POST", "/ip"),   Deny),
        ("DENY wins over a matching ALLOW",             get("/admin/x"),       Deny),
        ("root DENY is not undone by a namespace ALLOW", get("/root-denied"),  Deny),
    ]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &http("POST", "/ip").from(CURL));
    assert!(explains(&d, "D2", "no ALLOW matched → deny"), "{}", dump(&d));
    assert!(explains(&d, "D3", "AuthorizationPolicy foo/allow-get (ALLOW): no rule matches principal cluster.local/ns/foo/sa/curl on port 8080"), "{}", dump(&d));
    assert!(explains(&d, "D2", "audit logging"), "AUDIT is reported: {}", dump(&d));

    // Only DENY / AUDIT policies: no ALLOW policy applies → allow.
    let inv = build(&[
        HTTPBIN,
        &ap("foo", "deny-admin", r#"{action: DENY, rules: [{to: [{operation: {paths: ["/admin"]}}]}]}"#),
        &ap("foo", "audit-all", r#"{action: AUDIT, rules: [{}]}"#),
    ]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("no ALLOW policy → allow", http("DELETE", "/x"), Allow),
        ("DENY",                    get("/admin"),        Deny),
    ]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/x"));
    assert!(explains(&d, "D2", "no ALLOW policy applies"), "{}", dump(&d));
    // No policy at all.
    let inv = build(&[HTTPBIN]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[("no policy", get("/"), Allow)]);
}

#[test]
#[rustfmt::skip]
fn d2_dry_run_authz_dry_run_task() {
    // authz-dry-run: a dry-run DENY /headers does not deny; the explanation says it would.
    let inv = build(&[
        HTTPBIN,
        &ap_dry("foo", "deny-path-headers", r#"{action: DENY, selector: {matchLabels: {app: httpbin}}, rules: [{to: [{operation: {paths: ["/headers"]}}]}]}"#),
    ]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("dry-run DENY /headers", get("/headers").from(CURL), Allow),
        ("other path",            get("/ip").from(CURL),      Allow),
    ]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/headers"));
    assert!(explains(&d, "D2", "would deny this request"), "{}", dump(&d));
    assert!(d.steps.iter().any(|s| s.message.contains("would deny") && s.objects.iter().any(|o| o.object.name == "deny-path-headers")));
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/ip"));
    assert!(explains(&d, "D2", "would not deny"), "{}", dump(&d));

    // A dry-run ALLOW does not count as "an ALLOW policy applies".
    let inv = build(&[HTTPBIN, &ap_dry("foo", "allow-ip", r#"{rules: [{to: [{operation: {paths: ["/ip"]}}]}]}"#)]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("dry-run ALLOW alone: still allow-by-default", get("/headers"), Allow),
        ("dry-run ALLOW matching",                      get("/ip"),      Allow),
    ]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/headers"));
    assert!(explains(&d, "D2", "dry-run ALLOW policies do not count"), "{}", dump(&d));
    assert!(explains(&d, "D2", "would deny"), "shadow ALLOW result: {}", dump(&d));

    // Enforced ALLOW plus dry-run ALLOW: only the enforced one decides.
    let inv = build(&[
        HTTPBIN,
        &ap("foo", "allow-get", r#"{rules: [{to: [{operation: {methods: [GET]}}]}]}"#),
        &ap_dry("foo", "allow-post", r#"{rules: [{to: [{operation: {methods: [POST]}}]}]}"#),
    ]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("enforced ALLOW matches",          get("/"),          Allow),
        ("only the dry-run ALLOW matches",  http("POST", "/"), Deny),
    ]);

    // Annotation values as Go's ParseBool reads them.
    let ann = |v: &str| BTreeMap::from([("istio.io/dry-run".to_string(), v.to_string())]);
    for (v, want) in [("true", true), ("True", true), ("1", true), ("t", true), ("false", false), ("yes", false), ("", false)] {
        assert_eq!(is_dry_run(&ann(v)), want, "istio.io/dry-run: {v:?}");
    }
}

#[test]
#[rustfmt::skip]
fn d2_custom_authz_custom_task() {
    let providers = mesh("extensionProviders:\n- name: sample-ext-authz-grpc\n  envoyExtAuthzGrpc: {service: ext-authz.foo.svc.cluster.local, port: 9000}\n- name: other-ext-authz\n  envoyExtAuthzHttp: {service: x.foo.svc.cluster.local, port: 8000}");
    let ext_headers = ap("foo", "ext-authz", r#"{action: CUSTOM, provider: {name: sample-ext-authz-grpc}, selector: {matchLabels: {app: httpbin}}, rules: [{to: [{operation: {paths: ["/headers"]}}]}]}"#);
    // authz-custom: provider present.
    let inv = build(&[HTTPBIN, &providers, &ext_headers]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("CUSTOM matches: provider decides",                 get("/headers"), custom("sample-ext-authz-grpc")),
        ("CUSTOM does not match: never sent to ext-authz",   get("/ip"),      Allow),
    ]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/headers"));
    assert!(explains(&d, "D2", "sent to ext-authz provider sample-ext-authz-grpc"), "{}", dump(&d));

    // Provider missing from meshConfig: fail closed for the requests CUSTOM matches.
    let missing = ap("foo", "ext-authz", r#"{action: CUSTOM, provider: {name: not-configured}, rules: [{to: [{operation: {paths: ["/headers"]}}]}]}"#);
    let inv = build(&[HTTPBIN, &providers, &missing]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("unknown provider, CUSTOM matches",         get("/headers"), CustomDeny),
        ("unknown provider, CUSTOM does not match",  get("/ip"),      Allow),
    ]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/headers"));
    assert!(explains(&d, "D2", "not-configured is not in meshConfig.extensionProviders"), "{}", dump(&d));
    // No mesh config at all: no provider exists.
    let inv = build(&[HTTPBIN, &ext_headers]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[("no meshConfig", get("/headers"), CustomDeny)]);

    // Two distinct providers on one workload: every CUSTOM rule fails closed.
    let second = ap("foo", "ext-authz-2", r#"{action: CUSTOM, provider: {name: other-ext-authz}, rules: [{to: [{operation: {paths: ["/status/*"]}}]}]}"#);
    let inv = build(&[HTTPBIN, &providers, &ext_headers, &second]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("two providers, first matches",  get("/headers"),    CustomDeny),
        ("two providers, second matches", get("/status/200"), CustomDeny),
        ("two providers, none matches",   get("/ip"),         Allow),
    ]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/headers"));
    assert!(explains(&d, "D2", "2 CUSTOM providers"), "{}", dump(&d));

    // CUSTOM then DENY then ALLOW: the provider is assumed to allow, later steps still apply.
    let inv = build(&[
        HTTPBIN,
        &providers,
        &ext_headers,
        &ap("foo", "deny-curl", &format!(r#"{{action: DENY, rules: [{{from: [{{source: {{principals: ["{CURL}"]}}}}]}}]}}"#)),
        &ap("foo", "allow-get", r#"{rules: [{to: [{operation: {methods: [GET]}}]}]}"#),
    ]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("CUSTOM matched, DENY matches",     get("/headers").from(CURL),               Deny),
        ("CUSTOM matched, ALLOW matches",    get("/headers").from(SLEEP_BAR),          custom("sample-ext-authz-grpc")),
        ("CUSTOM matched, no ALLOW matches", http("POST", "/headers").from(SLEEP_BAR), Deny),
    ]);
    // On the TCP chain the CUSTOM rule's HTTP-only field is dropped (wider, D7).
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &tcp(8080).from(SLEEP_BAR));
    // ... and the ALLOW `methods: [GET]` rule is skipped there, so TCP is denied anyway.
    assert_eq!(d.value, Deny, "{}", dump(&d));
    assert!(explains(&d, "D7", "paths is HTTP-only"), "{}", dump(&d));
    assert!(explains(&d, "D2", "envoyExtAuthzGrpc provider: Istio also enforces it on the TCP filter chain"), "{}", dump(&d));
}

/// D2 CUSTOM whose provider istiod cannot build (`builder/extauthz.go`: `processExtensionProvider`,
/// `getExtAuthz`, `parsePort`, `LookupCluster`, `parseStatusOnError`; validation
/// `ValidateExtensionProviderEnvoyExtAuthz*`): `buildHTTP`/`buildTCP` "will generate deny
/// configs", so what the CUSTOM rules match is denied (on both filter chains) and the rest is
/// not affected. Each row: the `extensionProviders` of the mesh config, and the words the
/// explanation must give.
#[test]
#[rustfmt::skip]
fn d2_custom_provider_missing_or_invalid_fails_closed() {
    let policy = ap("foo", "ext-authz", r#"{action: CUSTOM, provider: {name: authz}, selector: {matchLabels: {app: httpbin}}, rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]}"#);
    let grpc = |fields: &str| format!("- name: authz\n  envoyExtAuthzGrpc: {{{fields}}}");
    let http_p = |fields: &str| format!("- name: authz\n  envoyExtAuthzHttp: {{{fields}}}");
    let svc = "service: ext-authz.foo.svc.cluster.local";
    let failing: Vec<(&str, String, &str)> = vec![
        ("port out of range",          grpc(&format!("{svc}, port: 70000")),             "port must be in the range [1, 65535], found: 70000"),
        ("port 0",                     grpc(&format!("{svc}, port: 0")),                 "found: 0"),
        ("no port",                    grpc(svc),                                        "it has no `port`"),
        ("port not a number",          grpc(&format!("{svc}, port: grpc")),              "port `grpc` is not a number"),
        ("no service",                 grpc("port: 9000"),                               "service must not be empty"),
        ("service with two slashes",   grpc("service: foo/ext-authz/x, port: 9000"),     "neither `<namespace>/<host>` nor `<host>`"),
        ("namespace/host mismatch",    grpc("service: bar/ext-authz.foo.svc.cluster.local, port: 9000"), "is a Service of namespace foo"),
        ("statusOnError not a status", grpc(&format!("{svc}, port: 9000, statusOnError: \"600\"")), "statusOnError 600"),
        ("statusOnError not a number", grpc(&format!("{svc}, port: 9000, statusOnError: oops")), "statusOnError `oops` is not a number"),
        ("HTTP pathPrefix without /",  http_p(&format!("{svc}, port: 8000, pathPrefix: check")), "pathPrefix must begin with `/`"),
        ("HTTP bare * header list",    http_p(&format!("{svc}, port: 8000, includeRequestHeadersInCheck: [\"*\"]")), "a single wildcard"),
        ("a tracing provider",         format!("- name: authz\n  zipkin: {{{svc}, port: 9411}}"), "is a `zipkin` provider"),
        ("another name",               grpc(&format!("{svc}, port: 9000")).replace("name: authz", "name: other"), "provider authz is not in meshConfig.extensionProviders"),
        ("duplicate name, the later definition is invalid",
            grpc(&format!("{svc}, port: 9000")) + "\n" + &grpc(&format!("{svc}, port: 70000")), "found: 70000"),
    ];
    for (what, providers, needle) in failing {
        let inv = build(&[HTTPBIN, &mesh(&format!("extensionProviders:\n{providers}")), &policy]);
        table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
            (what, get("/admin/users"), CustomDeny),
            (what, get("/ip"),          Allow),
            // On the TCP chain the HTTP-only `paths` is dropped (DENY-like, D7): every
            // connection matches, and the bad provider denies it too (`buildTCP`).
            (what, tcp(8080),           CustomDeny),
        ]);
        let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/admin/users"));
        assert!(explains(&d, "D2", needle), "{what}: lacks {needle:?}:\n{}", dump(&d));
        assert!(explains(&d, "D2", "turns the CUSTOM rules into a DENY"), "{what}:\n{}", dump(&d));
    }

    // Usable providers: the provider decides what CUSTOM matches.
    let ext_service = "apiVersion: v1\nkind: Service\nmetadata: {name: ext-authz, namespace: foo}\nspec:\n  selector: {app: ext-authz}\n  ports: [{name: grpc, port: 9000}]\n";
    let usable: Vec<(&str, String)> = vec![
        ("grpc, port as a string",            grpc(&format!("{svc}, port: \"9000\"")) ),
        ("grpc, namespace/host form",         grpc("service: foo/ext-authz.foo.svc.cluster.local, port: 9000")),
        ("grpc, statusOnError 403",           grpc(&format!("{svc}, port: 9000, statusOnError: \"403\""))),
        ("duplicate name, the later definition is valid",
            grpc(&format!("{svc}, port: 70000")) + "\n" + &grpc(&format!("{svc}, port: 9000"))),
    ];
    for (what, providers) in usable {
        let inv = build(&[HTTPBIN, ext_service, &mesh(&format!("extensionProviders:\n{providers}")), &policy]);
        table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
            (what, get("/admin/users"), custom("authz")),
            (what, get("/ip"),          Allow),
            (what, tcp(8080),           custom("authz")),
        ]);
    }
    // An HTTP provider is not enforced on TCP filter chains at all ("ignored CUSTOM action
    // with HTTP provider on TCP filter chain"; builder test `custom-only-http`).
    let inv = build(&[HTTPBIN, ext_service, &mesh(&format!("extensionProviders:\n{}", http_p(&format!("{svc}, port: 8000, pathPrefix: /check")))), &policy]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("HTTP provider, HTTP chain", get("/admin/users"), custom("authz")),
        ("HTTP provider, TCP chain",  tcp(8080),           Allow),
    ]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &tcp(8080));
    assert!(explains(&d, "D7", "ignored CUSTOM action with HTTP provider on TCP filter chain"), "{}", dump(&d));
    // A provider whose Service is not in the input: usable, with what could not be checked.
    let inv = build(&[HTTPBIN, &mesh(&format!("extensionProviders:\n{}", grpc(&format!("{svc}, port: 9000")))), &policy]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/admin/users"));
    assert_eq!(d.value, custom("authz"), "{}", dump(&d));
    assert!(explains(&d, "D2", "ext-authz.foo.svc.cluster.local is not in the input"), "{}", dump(&d));
    // A short host name is not how Kubernetes Services are registered: said, not decided.
    let inv = build(&[HTTPBIN, ext_service, &mesh(&format!("extensionProviders:\n{}", grpc("service: ext-authz, port: 9000"))), &policy]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/admin/users"));
    assert_eq!(d.value, custom("authz"), "{}", dump(&d));
    assert!(explains(&d, "D2", "is not a Kubernetes Service host"), "{}", dump(&d));
}

/// The normalization table of Istio's own integration test
/// (`istio:tests/integration/security/normalization_test.go`, `TestNormalization`): the path
/// the application receives (and `paths` match) for each `meshConfig.pathNormalization`.
#[test]
#[rustfmt::skip]
fn d4_path_normalization_istio_table() {
    use kfp_mesh_core::mesh::authz::normalize_path;
    use kfp_mesh_core::model::PathNormalization::{self, *};
    let tables: &[(PathNormalization, &[(&str, &str)])] = &[
        (None, &[
            ("/", "/"), ("/app#foo", "/app"), ("/app/", "/app/"), ("/app/../admin", "/app/../admin"),
            ("/app", "/app"), ("/app//", "/app//"), ("/app/%2f", "/app/%2f"), ("/app%2f/", "/app%2f/"),
            ("/xyz%30..//abc", "/xyz%30..//abc"), ("/app/%2E./admin", "/app/%2E./admin"),
            (r"/app\admin", r"/app\admin"), (r"/app/\/\/\admin", r"/app/\/\/\admin"),
            ("/%2Fapp%5cadmin%5Cabc", "/%2Fapp%5cadmin%5Cabc"),
            (r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc", r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc"),
            ("/app//../admin", "/app//../admin"), ("/app//../../admin", "/app//../../admin"),
        ]),
        (Base, &[
            ("/", "/"), ("/app#foo", "/app"), ("/app/", "/app/"), ("/app/../admin", "/admin"),
            ("/app", "/app"), ("/app//", "/app//"), ("/app/%2f", "/app/%2f"), ("/app%2f/", "/app%2f/"),
            ("/xyz%30..//abc", "/xyz0..//abc"), ("/app/%2E./admin", "/admin"),
            (r"/app\admin", "/app/admin"), (r"/app/\/\/\admin", "/app//////admin"),
            ("/%2Fapp%5cadmin%5Cabc", "/%2Fapp%5cadmin%5Cabc"),
            (r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc", "/%5Capp%2f%5c%2F..%2fadmin%5c/abc"),
            ("/app//../admin", "/app/admin"), ("/app//../../admin", "/admin"),
        ]),
        (MergeSlashes, &[
            ("/", "/"), ("/app#foo", "/app"), ("/app/", "/app/"), ("/app/../admin", "/admin"),
            ("/app", "/app"), ("/app//", "/app/"), ("/app/%2f", "/app/%2f"), ("/app%2f/", "/app%2f/"),
            ("/xyz%30..//abc", "/xyz0../abc"), ("/app/%2E./admin", "/admin"),
            (r"/app\admin", "/app/admin"), (r"/app/\/\/\admin", "/app/admin"),
            ("/%2Fapp%5cadmin%5Cabc", "/%2Fapp%5cadmin%5Cabc"),
            (r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc", "/%5Capp%2f%5c%2F..%2fadmin%5c/abc"),
            ("/app//../admin", "/app/admin"), ("/app//../../admin", "/admin"),
        ]),
        (DecodeAndMergeSlashes, &[
            ("/", "/"), ("/app#foo", "/app"), ("/app/", "/app/"), ("/app/../admin", "/admin"),
            ("/app", "/app"), ("/app//", "/app/"), ("/app/%2f", "/app/"), ("/app%2f/", "/app/"),
            ("/xyz%30..//abc", "/xyz0../abc"), ("/app/%2E./admin", "/admin"),
            (r"/app\admin", "/app/admin"), (r"/app/\/\/\admin", "/app/admin"),
            ("/%2Fapp%5cadmin%5Cabc", "/app/admin/abc"),
            (r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc", "/app/admin/abc"),
            ("/app//../admin", "/app/admin"), ("/app//../../admin", "/admin"),
            ("/%c0%2e%c0%2e/admin", "/%c0.%c0./admin"), ("/%c0%2fadmin", "/%c0/admin"),
            // "NotNormalized": never decoded twice, no overlong UTF-8, no `;` parameters.
            ("/0x2e0x2e/admin", "/0x2e0x2e/admin"), ("/%25c0%25ae%25c1%259cadmin", "/%25c0%25ae%25c1%259cadmin"),
            ("/%252e%252e/admin", "/%252e%252e/admin"), ("/%252e%252e%252fadmin", "/%252e%252e%252fadmin"),
            ("/%c1%9cadmin", "/%c1%9cadmin"), ("/%c0%ae%c0%ae/admin", "/%c0%ae%c0%ae/admin"),
            ("/.../admin", "/.../admin"), ("/..../admin", "/..../admin"), ("/..;/admin", "/..;/admin"),
            ("/;/admin", "/;/admin"), ("/admin;a=b", "/admin;a=b"), ("/admin,a=b/xyz", "/admin,a=b/xyz"),
            ("/Admin", "/Admin"), ("/ADMIN", "/ADMIN"),
        ]),
    ];
    for (mode, rows) in tables {
        for (input, want) in *rows {
            assert_eq!(normalize_path(input, *mode), *want, "{mode:?}: {input}");
        }
    }
    // "PercentEncoded": `/admin%XX` for XX = 01..ff under DECODE_AND_MERGE_SLASHES: decoded
    // iff XX is an unreserved character, `/` or `\` (then a slash); kept as written otherwise.
    for i in 1u8..=0xff {
        let input = format!("/admin%{i:02x}");
        let c = i as char;
        let want = match c {
            '\\' | '/' => "/admin/".to_string(),
            _ if c.is_ascii_alphanumeric() || "-._~".contains(c) => format!("/admin{c}"),
            _ => input.clone(),
        };
        assert_eq!(normalize_path(&input, DecodeAndMergeSlashes), want, "{input}");
        // BASE decodes the same set except the two slashes.
        let base_want = if matches!(c, '/' | '\\') { input.clone() } else { want };
        assert_eq!(normalize_path(&input, Base), base_want, "BASE {input}");
    }
}

/// D4: `paths` match the normalised path (`io:content/en/docs/reference/config/security/normalization/index.md`:
/// "The normalized request will be used for both the evaluation of authorization policies and
/// the request that is ultimately sent to the backend server"). Istio's default is BASE.
#[test]
#[rustfmt::skip]
fn d4_paths_match_the_normalized_path() {
    let policies = [
        ap("foo", "allow-v1", r#"{selector: {matchLabels: {app: httpbin}}, rules: [{to: [{operation: {paths: ["/v1", "/admin/*", "/public/*"]}}]}]}"#),
        ap("foo", "deny-admin", r#"{action: DENY, selector: {matchLabels: {app: httpbin}}, rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]}"#),
    ];
    let default_mesh = build(&[HTTPBIN, &policies[0], &policies[1]]);
    table(&default_mesh, "foo", "httpbin", Enforcer::Sidecar, &[
        ("plain /v1",                              get("/v1"),                Allow),
        ("%31 is the unreserved digit 1",          get("/v%31"),              Allow),
        ("lower-case hex works as well",           get("/%76%31"),            Allow),
        ("/v2 matches no ALLOW",                   get("/v2"),                Deny),
        ("%61 is a: /admin/ is denied",            get("/%61dmin/users"),     Deny),
        ("dot segments resolved",                  get("/public/../admin/x"), Deny),
        ("%2E%2E is a dot segment too",            get("/public/%2E%2E/admin/x"), Deny),
        ("BASE keeps %2F: one segment, no match",  get("/admin%2Fusers"),     Deny),
        ("BASE keeps // (no DENY, no ALLOW)",      get("//admin/users"),      Deny),
        ("the query string is not part of paths", get("/v1?x=/admin/"),      Allow),
    ]);
    let d = decide(&default_mesh, "foo", "httpbin", Enforcer::Sidecar, &get("/v%31"));
    assert!(explains(&d, "D4", "`/v%31` is matched as `/v1`"), "{}", dump(&d));
    assert!(explains(&d, "D4", "BASE, Istio's default"), "{}", dump(&d));
    let d = decide(&default_mesh, "foo", "httpbin", Enforcer::Sidecar, &get("/admin%2Fusers"));
    assert!(explains(&d, "D2", "none matches"), "{}", dump(&d));

    // DENY `/public/*` catches nothing that BASE turns into another path; with a DENY on
    // `/admin/*`, MERGE_SLASHES and DECODE_AND_MERGE_SLASHES close the `//` and `%2F` holes.
    let with = |mode: &str| build(&[HTTPBIN, &policies[0], &policies[1], &mesh(&format!("pathNormalization:\n  normalization: {mode}"))]);
    table(&with("MERGE_SLASHES"), "foo", "httpbin", Enforcer::Sidecar, &[
        ("// merged",            get("//admin/users"),  Deny),
        ("%2F still kept",       get("/admin%2Fusers"), Deny),
        ("merged into /v1",      get("//v1"),           Allow),
    ]);
    table(&with("DECODE_AND_MERGE_SLASHES"), "foo", "httpbin", Enforcer::Sidecar, &[
        ("%2F decoded: DENY /admin/* matches", get("/admin%2Fusers"), Deny),
        ("%5C decoded then a slash: /v1",      get("/%5Cv1"),          Allow),
    ]);
    table(&with("NONE"), "foo", "httpbin", Enforcer::Sidecar, &[
        ("NONE: %31 stays, /v%31 is not /v1",  get("/v%31"),              Deny),
        ("NONE: dot segments stay",            get("/public/../admin/x"), Allow),
    ]);
}

// ---------------------------------------------------------------------------------------------
// D3: rule structure and every field

#[test]
#[rustfmt::skip]
fn d3_rule_structure() {
    spec_table(vec![
        ("ALLOW without rules (allow-nothing)",  "{}",                   get("/").from(CURL), Deny),
        ("ALLOW rules: [] never matches",        "{rules: []}",          get("/"),            Deny),
        ("ALLOW [{}] allows all",                "{rules: [{}]}",        http("DELETE", "/x"), Allow),
        ("DENY [{}] denies all",                 "{action: DENY, rules: [{}]}", get("/"),     Deny),
        ("from AND to: both match",              r#"{rules: [{from: [{source: {namespaces: [foo]}}], to: [{operation: {methods: [GET]}}]}]}"#, get("/").from(CURL), Allow),
        ("from AND to: to fails",                r#"{rules: [{from: [{source: {namespaces: [foo]}}], to: [{operation: {methods: [GET]}}]}]}"#, http("PUT", "/").from(CURL), Deny),
        ("from entries are ORed",                r#"{rules: [{from: [{source: {namespaces: [bar]}}, {source: {principals: ["cluster.local/ns/foo/sa/curl"]}}]}]}"#, get("/").from(CURL), Allow),
        ("fields inside a source are ANDed",     r#"{rules: [{from: [{source: {namespaces: [foo], principals: ["cluster.local/ns/foo/sa/other"]}}]}]}"#, get("/").from(CURL), Deny),
        ("rules are ORed",                       r#"{rules: [{to: [{operation: {methods: [POST]}}]}, {to: [{operation: {paths: ["/ip"]}}]}]}"#, get("/ip"), Allow),
        ("all when conditions must hold",        r#"{rules: [{when: [{key: "request.headers[x-a]", values: ["1"]}, {key: "request.headers[x-b]", values: ["2"]}]}]}"#, get("/").header("x-a", "1"), Deny),
        ("when values AND notValues: excluded",  r#"{rules: [{when: [{key: "request.headers[x-a]", values: ["1*"], notValues: ["12"]}]}]}"#, get("/").header("x-a", "12"), Deny),
        ("when values AND notValues: allowed",   r#"{rules: [{when: [{key: "request.headers[x-a]", values: ["1*"], notValues: ["12"]}]}]}"#, get("/").header("x-a", "13"), Allow),
    ]);
    // Shapes validation rejects (A7, A8, A16): evaluated as Istio would generate them.
    for (row, spec, want) in [
        ("DENY rules: [] never matches",      "{action: DENY, rules: []}",                                     Allow),
        ("DENY without rules never matches",  "{action: DENY}",                                                Allow),
        ("null rule never matches",           "{rules: [null]}",                                               Deny),
        ("DENY null rule",                    "{action: DENY, rules: [null]}",                                 Allow),
        ("unknown when key skips the ALLOW rule", r#"{rules: [{when: [{key: source.user, values: [x]}]}]}"#,  Deny),
        ("unknown when key skips the DENY rule",  r#"{action: DENY, rules: [{when: [{key: source.user, values: [x]}]}]}"#, Allow),
        ("rejected when key never applies",   r#"{action: DENY, rules: [{when: [{key: destination.namespace, values: [foo]}]}]}"#, Allow),
    ] {
        let inv = with_unvalidated(spec);
        let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/"));
        assert_eq!(d.value, want, "row {row:?}: {}", dump(&d));
    }
}

#[test]
#[rustfmt::skip]
fn d3_source_fields() {
    let from = |src: &str| format!("{{rules: [{{from: [{{source: {src}}}]}}]}}");
    let deny_from = |src: &str| format!("{{action: DENY, rules: [{{from: [{{source: {src}}}]}}]}}");
    spec_table(vec![
        ("principals match",                       from(r#"{principals: ["cluster.local/ns/foo/sa/curl"]}"#),    get("/").from(CURL),      Allow),
        ("principals other",                       from(r#"{principals: ["cluster.local/ns/foo/sa/curl"]}"#),    get("/").from(SLEEP_BAR), Deny),
        ("notPrincipals excludes",                 from(r#"{notPrincipals: ["cluster.local/ns/foo/sa/curl"]}"#), get("/").from(CURL),      Deny),
        ("notPrincipals others pass",              from(r#"{notPrincipals: ["cluster.local/ns/foo/sa/curl"]}"#), get("/").from(SLEEP_BAR), Allow),
        ("namespaces",                             from("{namespaces: [bar]}"),           get("/").from(SLEEP_BAR), Allow),
        ("namespaces other",                       from("{namespaces: [bar]}"),           get("/").from(CURL),      Deny),
        ("namespaces prefix",                      from(r#"{namespaces: ["ba*"]}"#),      get("/").from(SLEEP_BAR), Allow),
        ("namespaces middle * (regex .*)",         from(r#"{namespaces: ["b*r"]}"#),      get("/").from(SLEEP_BAR), Allow),
        ("notNamespaces",                          from("{notNamespaces: [bar]}"),        get("/").from(SLEEP_BAR), Deny),
        ("serviceAccounts ns/sa",                  from("{serviceAccounts: [bar/sleep]}"), get("/").from(SLEEP_BAR), Allow),
        ("serviceAccounts sa = policy namespace",  from("{serviceAccounts: [curl]}"),     get("/").from(CURL),      Allow),
        ("serviceAccounts sa, other namespace",    from("{serviceAccounts: [sleep]}"),    get("/").from(SLEEP_BAR), Deny),
        ("serviceAccounts any trust domain",       from("{serviceAccounts: [foo/curl]}"), get("/").from("other-td/ns/foo/sa/curl"), Allow),
        ("notServiceAccounts",                     from("{notServiceAccounts: [foo/curl]}"), get("/").from(CURL),   Deny),
        ("trustDomains",                           from("{trustDomains: [cluster.local]}"), get("/").from(CURL),    Allow),
        ("trustDomains other",                     from("{trustDomains: [other.td]}"),    get("/").from(CURL),      Deny),
        ("notTrustDomains",                        from("{notTrustDomains: [other.td]}"), get("/").from(CURL),      Allow),
        ("requestPrincipals without token",        from(r#"{requestPrincipals: ["*"]}"#), get("/"),                 Deny),
        ("notRequestPrincipals * denies no token", deny_from(r#"{notRequestPrincipals: ["*"]}"#), get("/"),         Deny),
        ("ipBlocks CIDR",                          from(r#"{ipBlocks: ["10.0.0.0/24"]}"#), get("/").src("10.0.0.9"), Allow),
        ("ipBlocks single IP",                     from(r#"{ipBlocks: ["10.0.0.9"]}"#),   get("/").src("10.0.0.9"), Allow),
        ("ipBlocks outside",                       from(r#"{ipBlocks: ["10.0.0.0/24"]}"#), get("/").src("10.0.1.9"), Deny),
        ("ipBlocks IPv6",                          from(r#"{ipBlocks: ["fd00::/8"]}"#),   get("/").src("fd00::1"),  Allow),
        ("notIpBlocks",                            from(r#"{notIpBlocks: ["10.0.0.0/24"]}"#), get("/").src("10.0.0.9"), Deny),
        ("remoteIpBlocks: original client IP",     from(r#"{remoteIpBlocks: ["1.2.3.4"]}"#), get("/").src("10.0.0.9").remote("1.2.3.4"), Allow),
        ("remoteIpBlocks: falls back to peer IP",  from(r#"{remoteIpBlocks: ["10.0.0.9"]}"#), get("/").src("10.0.0.9"), Allow),
        ("notRemoteIpBlocks",                      from(r#"{notRemoteIpBlocks: ["1.2.3.0/24"]}"#), get("/").remote("1.2.3.4"), Deny),
    ]);
}

#[test]
#[rustfmt::skip]
fn d3_operation_fields_and_d8_ports() {
    let to = |op: &str| format!("{{rules: [{{to: [{{operation: {op}}}]}}]}}");
    let when_port = |p: &str| format!(r#"{{rules: [{{when: [{{key: destination.port, values: ["{p}"]}}]}}]}}"#);
    spec_table(vec![
        ("hosts case-insensitive",               to(r#"{hosts: ["HTTPBIN.foo:8000"]}"#),  get("/"),  Allow),
        ("hosts exact does not strip the port",  to(r#"{hosts: ["httpbin.foo"]}"#),       get("/"),  Deny),
        ("hosts prefix",                         to(r#"{hosts: ["httpbin*"]}"#),          get("/"),  Allow),
        ("hosts suffix",                         to(r#"{hosts: ["*.example.com"]}"#),     get("/").host("API.Example.com"), Allow),
        ("notHosts",                             to(r#"{notHosts: ["httpbin*"]}"#),       get("/"),  Deny),
        ("ports = workload port",                to(r#"{ports: ["8080"]}"#),              get("/"),  Allow),
        ("ports = Service port never matches",   to(r#"{ports: ["8000"]}"#),              get("/"),  Deny),
        ("notPorts",                             to(r#"{notPorts: ["8080"]}"#),           get("/"),  Deny),
        ("methods",                              to("{methods: [GET, HEAD]}"),            http("HEAD", "/"),   Allow),
        ("methods are case-sensitive",           to("{methods: [get]}"),                  get("/"),            Deny),
        ("notMethods",                           to("{notMethods: [DELETE]}"),            http("DELETE", "/"), Deny),
        ("paths exact",                          to(r#"{paths: ["/ip"]}"#),               get("/ip"),          Allow),
        ("paths exact ignores the query",        to(r#"{paths: ["/ip"]}"#),               get("/ip?x=1"),      Allow),
        ("paths are normalised",                 to(r#"{paths: ["/ip"]}"#),               get("/status/../ip"), Allow),
        ("paths prefix",                         to(r#"{paths: ["/status/*"]}"#),         get("/status/418"),  Allow),
        ("paths suffix",                         to(r#"{paths: ["*.json"]}"#),            get("/a/b.json"),    Allow),
        ("paths {*} one segment",                to(r#"{paths: ["/api/{*}/runs"]}"#),     get("/api/v2/runs"), Allow),
        ("paths {*} not two segments",           to(r#"{paths: ["/api/{*}/runs"]}"#),     get("/api/v2/x/runs"), Deny),
        ("paths {**} the rest",                  to(r#"{paths: ["/api/{**}"]}"#),         get("/api/v2/x/runs"), Allow),
        ("paths middle * is literal",            to(r#"{paths: ["/a*b"]}"#),              get("/axb"),         Deny),
        ("notPaths",                             to(r#"{notPaths: ["/admin*"]}"#),        get("/admin/x"),     Deny),
        ("destination.port = workload port",     when_port("8080"),                       get("/"),            Allow),
        ("destination.port = Service port",      when_port("8000"),                       get("/"),            Deny),
    ]);
    let inv = build(&[HTTPBIN, &ap("foo", "p", &to(r#"{ports: ["8000"]}"#))]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/"));
    assert!(explains(&d, "D8", "workload (container) port 8080"), "{}", dump(&d));
}

#[test]
#[rustfmt::skip]
fn d3_when_keys() {
    let when = |key: &str, cond: &str| format!(r#"{{rules: [{{when: [{{key: "{key}", {cond}}}]}}]}}"#);
    let sni = "outbound_.8000_._.httpbin.foo.svc.cluster.local";
    spec_table(vec![
        ("request.headers",                  when("request.headers[x-token]", "values: [admin]"),       get("/").header("x-token", "admin"), Allow),
        ("request.headers name any case",    when("request.headers[X-Token]", "values: [admin]"),       get("/").header("x-token", "admin"), Allow),
        ("request.headers absent",           when("request.headers[x-token]", "values: [admin]"),       get("/"), Deny),
        ("request.headers presence",         when("request.headers[x-token]", r#"values: ["*"]"#),      get("/").header("x-token", ""), Allow),
        ("request.headers notValues, absent", when("request.headers[x-token]", "notValues: [admin]"),   get("/"), Allow),
        ("source.ip",                        when("source.ip", r#"values: ["10.0.0.0/16"]"#),           get("/").src("10.0.3.3"), Allow),
        ("remote.ip",                        when("remote.ip", r#"values: ["1.2.3.4"]"#),               get("/").remote("1.2.3.4"), Allow),
        ("source.namespace",                 when("source.namespace", "values: [foo]"),                 get("/").from(CURL), Allow),
        ("source.namespace plaintext",       when("source.namespace", "values: [foo]"),                 get("/"), Deny),
        ("source.serviceAccount ns/sa",      when("source.serviceAccount", "values: [foo/curl]"),       get("/").from(CURL), Allow),
        ("source.serviceAccount sa",         when("source.serviceAccount", "values: [curl]"),           get("/").from(CURL), Allow),
        ("source.trustDomain",               when("source.trustDomain", "values: [cluster.local]"),     get("/").from(CURL), Allow),
        ("source.principal",                 when("source.principal", &format!(r#"values: ["{CURL}"]"#)),    get("/").from(CURL), Allow),
        ("source.principal notValues",       when("source.principal", &format!(r#"notValues: ["{CURL}"]"#)), get("/").from(CURL), Deny),
        ("destination.ip",                   when("destination.ip", r#"values: ["10.0.1.0/24"]"#),      get("/").dst("10.0.1.1"), Allow),
        ("destination.ip other",             when("destination.ip", r#"values: ["10.0.2.0/24"]"#),      get("/").dst("10.0.1.1"), Deny),
        ("connection.sni",                   when("connection.sni", r#"values: ["*.foo.svc.cluster.local"]"#), get("/").from(CURL).sni(sni), Allow),
        ("connection.sni needs mTLS",        when("connection.sni", r#"values: ["*"]"#),                get("/").sni("x"), Deny),
        ("experimental.* not modelled",      when("experimental.envoy.filters.network.mysql_proxy[db.table]", "values: ['[update]']"), get("/").from(CURL), Deny),
    ]);
    // request.auth.* with a token RequestAuthentication accepted.
    let jwt_ra = ra("foo", "jwt", &format!(r#"{{jwtRules: [{{issuer: "{ISS}"}}]}}"#));
    for (row, spec, r, want) in [
        ("request.auth.principal",             when("request.auth.principal", &format!(r#"values: ["{ISS}/{ISS}"]"#)), get("/").jwt(token()), Allow),
        ("request.auth.principal no token",    when("request.auth.principal", r#"values: ["*"]"#),  get("/"),              Deny),
        ("request.auth.audiences",             when("request.auth.audiences", "values: [app]"),     get("/").jwt(token()), Allow),
        ("request.auth.audiences other",       when("request.auth.audiences", "values: [other]"),   get("/").jwt(token()), Deny),
        ("request.auth.presenter",             when("request.auth.presenter", "values: [front*]"),  get("/").jwt(token()), Allow),
        ("request.auth.claims[groups]",        when("request.auth.claims[groups]", "values: [group1]"), get("/").jwt(token()), Allow),
        ("request.auth.claims[groups] other",  when("request.auth.claims[groups]", "values: [group2]"), get("/").jwt(token()), Deny),
    ] {
        let inv = build(&[HTTPBIN, &jwt_ra, &ap("foo", "p", &spec)]);
        let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &r);
        assert_eq!(d.value, want, "row {row:?}: {}", dump(&d));
    }
    let inv = build(&[HTTPBIN, &ap("foo", "p", &when("experimental.envoy.filters.a[b]", "values: [x]"))]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/"));
    assert!(explains(&d, "D3", "does not model"), "{}", dump(&d));
}

#[test]
#[rustfmt::skip]
fn d4_string_matching() {
    let principals = |p: &str| format!(r#"{{rules: [{{from: [{{source: {{principals: ["{p}"]}}}}]}}]}}"#);
    spec_table(vec![
        ("exact",                    principals(CURL),                            get("/").from(CURL), Allow),
        ("exact is not a prefix",    principals("cluster.local/ns/foo/sa/cur"),   get("/").from(CURL), Deny),
        ("prefix abc*",              principals("cluster.local/ns/foo/*"),        get("/").from(CURL), Allow),
        ("prefix, other namespace",  principals("cluster.local/ns/bar/*"),        get("/").from(CURL), Deny),
        ("suffix *abc",              principals("*/sa/curl"),                     get("/").from(CURL), Allow),
        ("presence * with a peer",   principals("*"),                             get("/").from(CURL), Allow),
        ("middle * is literal",      principals("cluster.local/ns/*/sa/curl"),    get("/").from(CURL), Deny),
    ]);
}

#[test]
#[rustfmt::skip]
fn d5_plaintext_sources() {
    spec_table(vec![
        ("ALLOW principals * plaintext",      r#"{rules: [{from: [{source: {principals: ["*"]}}]}]}"#,     get("/"),            Deny),
        ("ALLOW principals * mTLS",           r#"{rules: [{from: [{source: {principals: ["*"]}}]}]}"#,     get("/").from(CURL), Allow),
        ("ALLOW namespaces * plaintext",      r#"{rules: [{from: [{source: {namespaces: ["*"]}}]}]}"#,     get("/"),            Deny),
        ("ALLOW serviceAccounts plaintext",   r#"{rules: [{from: [{source: {serviceAccounts: [curl]}}]}]}"#, get("/"),          Deny),
        ("ALLOW trustDomains plaintext",      r#"{rules: [{from: [{source: {trustDomains: ["*"]}}]}]}"#,   get("/"),            Deny),
        ("DENY notPrincipals * plaintext",    r#"{action: DENY, rules: [{from: [{source: {notPrincipals: ["*"]}}]}]}"#, get("/"), Deny),
        ("DENY notPrincipals * mTLS",         r#"{action: DENY, rules: [{from: [{source: {notPrincipals: ["*"]}}]}]}"#, get("/").from(CURL), Allow),
        ("ALLOW notNamespaces plaintext",     r#"{rules: [{from: [{source: {notNamespaces: [bar]}}]}]}"#, get("/"),             Allow),
        ("source.principal plaintext",        r#"{rules: [{when: [{key: source.principal, values: ["*"]}]}]}"#, get("/"),      Deny),
    ]);
    let inv = build(&[HTTPBIN, &ap("foo", "p", r#"{rules: [{from: [{source: {principals: ["*"]}}]}]}"#)]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/"));
    assert!(explains(&d, "D5", "needs an mTLS peer identity"), "{}", dump(&d));
    assert!(explains(&d, "D3", "a plaintext peer (no mTLS identity)"), "{}", dump(&d));
    let inv = build(&[HTTPBIN, &ap("foo", "p", r#"{action: DENY, rules: [{from: [{source: {notPrincipals: ["*"]}}]}]}"#)]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/"));
    assert!(explains(&d, "D5", "notPrincipals matches a plaintext request"), "{}", dump(&d));
}

#[test]
#[rustfmt::skip]
fn d6_trust_domains_authz_td_migration_task() {
    let allow_curl = |td: &str| ap("foo", "p", &format!(r#"{{rules: [{{from: [{{source: {{principals: ["{td}/ns/foo/sa/curl"]}}}}]}}]}}"#));
    // authz-td-migration: the mesh moved from old-td to new-td.
    let new_td = mesh("trustDomain: new-td");
    let new_td_alias = mesh("trustDomain: new-td\ntrustDomainAliases: [old-td]");
    for (row, meshcfg, policy_td, peer, want) in [
        ("old-td policy after the move, no alias",      &new_td,       "old-td",        "new-td/ns/foo/sa/curl",   Deny),
        ("old-td policy, old-td is an alias",           &new_td_alias, "old-td",        "new-td/ns/foo/sa/curl",   Allow),
        ("cluster.local means the local trust domain",  &new_td,       "cluster.local", "new-td/ns/foo/sa/curl",   Allow),
        ("cluster.local also covers aliases",           &new_td_alias, "cluster.local", "old-td/ns/foo/sa/curl",   Allow),
        ("the local trust domain itself",               &new_td,       "new-td",        "new-td/ns/foo/sa/curl",   Allow),
        ("foreign trust domain kept as-is",             &new_td,       "other-td",      "new-td/ns/foo/sa/curl",   Deny),
        ("foreign trust domain matches its own peers",  &new_td,       "other-td",      "other-td/ns/foo/sa/curl", Allow),
        ("principals starting with * not rewritten",    &new_td,       "*",             "new-td/ns/foo/sa/curl",   Allow),
        ("old-td peer without alias config",            &new_td,       "new-td",        "old-td/ns/foo/sa/curl",   Deny),
    ] {
        let inv = build(&[HTTPBIN, meshcfg, &allow_curl(policy_td)]);
        let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/").from(peer));
        assert_eq!(d.value, want, "row {row:?}: {}", dump(&d));
    }
    let inv = build(&[HTTPBIN, &new_td_alias, &allow_curl("old-td")]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/").from("new-td/ns/foo/sa/curl"));
    assert!(explains(&d, "D6", "old-td means the local trust domain and its aliases"), "{}", dump(&d));
    let inv = build(&[HTTPBIN, &new_td, &allow_curl("old-td")]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/").from("new-td/ns/foo/sa/curl"));
    assert!(explains(&d, "D6", "trustDomainAliases"), "{}", dump(&d));
    // source.principal in `when` gets the same treatment.
    let when = ap("foo", "p", r#"{rules: [{when: [{key: source.principal, values: ["old-td/ns/foo/sa/curl"]}]}]}"#);
    let inv = build(&[HTTPBIN, &new_td_alias, &when]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/").from("new-td/ns/foo/sa/curl"));
    assert_eq!(d.value, Allow, "{}", dump(&d));
}

// ---------------------------------------------------------------------------------------------
// D7: HTTP-only attributes on the TCP chain (authz-tcp)

const TCP_ECHO: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: tcp-echo, namespace: foo}
spec:
  template:
    metadata: {labels: {app: tcp-echo}}
    spec:
      containers: [{name: tcp-echo, ports: [{containerPort: 9000}, {containerPort: 9001}, {containerPort: 9002}]}]
"#;

fn tcp_echo(spec: &str) -> Inventory {
    build(&[TCP_ECHO, &ap("foo", "tcp-policy", spec)])
}

#[test]
#[rustfmt::skip]
fn d7_tcp_chain_authz_tcp_task() {
    let sleep = |port| tcp(port).from(SLEEP_BAR);
    // Step 1: allow ports 9000 and 9001.
    let inv = tcp_echo(r#"{selector: {matchLabels: {app: tcp-echo}}, action: ALLOW, rules: [{to: [{operation: {ports: ["9000", "9001"]}}]}]}"#);
    table(&inv, "foo", "tcp-echo", Enforcer::Sidecar, &[
        ("ports 9000",            sleep(9000), Allow),
        ("ports 9001",            sleep(9001), Allow),
        ("ports 9002 not listed", sleep(9002), Deny),
    ]);
    // Step 2: `methods: [GET]` on TCP: the ALLOW rule is skipped, everything is rejected.
    let inv = tcp_echo(r#"{selector: {matchLabels: {app: tcp-echo}}, action: ALLOW, rules: [{to: [{operation: {methods: [GET], ports: ["9000"]}}]}]}"#);
    table(&inv, "foo", "tcp-echo", Enforcer::Sidecar, &[
        ("ALLOW methods+ports on TCP: 9000",           sleep(9000),                       Deny),
        ("ALLOW methods+ports on TCP: 9001",           sleep(9001),                       Deny),
        ("same policy on the HTTP chain, GET 9000",    get("/").port(9000),               Allow),
        ("same policy on the HTTP chain, POST 9000",   http("POST", "/").port(9000),      Deny),
    ]);
    let d = decide(&inv, "foo", "tcp-echo", Enforcer::Sidecar, &sleep(9000));
    assert!(explains(&d, "D3", "whole ALLOW rule is skipped"), "{}", dump(&d));
    // Step 3: DENY `methods: [GET]` alone denies all TCP.
    let inv = tcp_echo(r#"{selector: {matchLabels: {app: tcp-echo}}, action: DENY, rules: [{to: [{operation: {methods: [GET]}}]}]}"#);
    table(&inv, "foo", "tcp-echo", Enforcer::Sidecar, &[
        ("DENY methods on TCP: 9000",    sleep(9000),                   Deny),
        ("DENY methods on TCP: 9001",    sleep(9001),                   Deny),
        ("DENY methods on HTTP: POST",   http("POST", "/").port(9000),  Allow),
    ]);
    let d = decide(&inv, "foo", "tcp-echo", Enforcer::Sidecar, &sleep(9000));
    assert!(explains(&d, "D7", "methods is HTTP-only"), "{}", dump(&d));
    // Step 4: DENY `methods: [GET], ports: [9000]`: only 9000 is denied.
    let inv = tcp_echo(r#"{selector: {matchLabels: {app: tcp-echo}}, action: DENY, rules: [{to: [{operation: {methods: [GET], ports: ["9000"]}}]}]}"#);
    table(&inv, "foo", "tcp-echo", Enforcer::Sidecar, &[
        ("DENY methods+port 9000 on TCP: 9000", sleep(9000), Deny),
        ("DENY methods+port 9000 on TCP: 9001", sleep(9001), Allow),
    ]);
}

#[test]
#[rustfmt::skip]
fn d7_http_only_fields_each() {
    // DENY drops the field (wider); ALLOW skips the rule; notX variants likewise.
    spec_table(vec![
        ("DENY notMethods on TCP → deny all",           r#"{action: DENY, rules: [{to: [{operation: {notMethods: [GET]}}]}]}"#,                   tcp(9000), Deny),
        ("DENY hosts on TCP → deny all",                r#"{action: DENY, rules: [{to: [{operation: {hosts: [x]}}]}]}"#,                          tcp(9000), Deny),
        ("DENY paths + from on TCP keeps from",         r#"{action: DENY, rules: [{from: [{source: {namespaces: [bar]}}], to: [{operation: {paths: ["/x"]}}]}]}"#, tcp(9000).from(CURL), Allow),
        ("DENY requestPrincipals on TCP → deny all",    r#"{action: DENY, rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]}"#,            tcp(9000), Deny),
        ("DENY notRequestPrincipals on TCP → deny all", r#"{action: DENY, rules: [{from: [{source: {notRequestPrincipals: ["*"]}}]}]}"#,         tcp(9000), Deny),
        ("DENY when header on TCP → deny all",          r#"{action: DENY, rules: [{when: [{key: "request.headers[x]", values: [v]}]}]}"#,       tcp(9000), Deny),
        ("DENY when claims on TCP → deny all",          r#"{action: DENY, rules: [{when: [{key: "request.auth.claims[g]", values: [v]}]}]}"#,   tcp(9000), Deny),
        ("ALLOW notPaths on TCP skips the rule",        r#"{rules: [{to: [{operation: {notPaths: ["/admin"]}}]}]}"#,                             tcp(9000), Deny),
        ("ALLOW when header on TCP skips the rule",     r#"{rules: [{when: [{key: "request.headers[x]", values: [v]}]}]}"#,                      tcp(9000), Deny),
        ("ALLOW: the other rule still matches",         r#"{rules: [{to: [{operation: {methods: [GET]}}]}, {to: [{operation: {ports: ["9000"]}}]}]}"#, tcp(9000), Allow),
        ("ALLOW remoteIpBlocks usable on TCP",          r#"{rules: [{from: [{source: {remoteIpBlocks: ["10.0.0.9"]}}]}]}"#,                      tcp(9000), Allow),
        ("ALLOW connection.sni usable on TCP",          r#"{rules: [{when: [{key: connection.sni, values: ["*"]}]}]}"#,                          tcp(9000).from(CURL).sni("x"), Allow),
    ]);
}

// ---------------------------------------------------------------------------------------------
// A6.3 / A6.5: ztunnel

#[test]
#[rustfmt::skip]
fn a6_ztunnel() {
    spec_table_at(Enforcer::Ztunnel, vec![
        ("targetRef policies are not sent",            r#"{action: DENY, targetRefs: [{kind: Service, name: httpbin}], rules: [{}]}"#, tcp(8080), Allow),
        ("AUDIT ignored",                              r#"{action: AUDIT, rules: [{}]}"#,                          tcp(8080), Allow),
        ("CUSTOM ignored",                             r#"{action: CUSTOM, provider: {name: x}, rules: [{}]}"#,    tcp(8080), Allow),
        ("ALLOW L4 principals",                        r#"{rules: [{from: [{source: {principals: ["cluster.local/ns/foo/sa/curl"]}}]}]}"#, tcp(8080).from(CURL), Allow),
        ("ALLOW L4, other principal",                  r#"{rules: [{from: [{source: {principals: ["cluster.local/ns/foo/sa/curl"]}}]}]}"#, tcp(8080).from(SLEEP_BAR), Deny),
        ("ALLOW serviceAccounts is L4",                "{rules: [{from: [{source: {serviceAccounts: [curl]}}]}]}", tcp(8080).from(CURL), Allow),
        ("ALLOW namespaces + ports",                   r#"{rules: [{from: [{source: {namespaces: [foo]}}], to: [{operation: {ports: ["8080"]}}]}]}"#, tcp(8080).from(CURL), Allow),
        ("ALLOW when source.ip",                       r#"{rules: [{when: [{key: source.ip, values: ["10.0.0.0/8"]}]}]}"#, tcp(8080), Allow),
        ("ALLOW methods: rule dropped, nothing allowed", "{rules: [{to: [{operation: {methods: [GET]}}]}]}",      tcp(8080).from(CURL), Deny),
        ("ALLOW L4+HTTP rule dropped entirely",        r#"{rules: [{from: [{source: {namespaces: [foo]}}], to: [{operation: {paths: ["/x"]}}]}]}"#, tcp(8080).from(CURL), Deny),
        ("ALLOW remoteIpBlocks is HTTP at ztunnel",    r#"{rules: [{from: [{source: {remoteIpBlocks: ["10.0.0.9"]}}]}]}"#, tcp(8080), Deny),
        ("ALLOW when source.serviceAccount is HTTP",   "{rules: [{when: [{key: source.serviceAccount, values: [curl]}]}]}", tcp(8080).from(CURL), Deny),
        ("ALLOW HTTP rule dropped, other rule matches", r#"{rules: [{to: [{operation: {methods: [GET]}}]}, {from: [{source: {namespaces: [foo]}}]}]}"#, tcp(8080).from(CURL), Allow),
        ("DENY mixed L4+HTTP: HTTP dropped, wider",    r#"{action: DENY, rules: [{to: [{operation: {methods: [GET], ports: ["8080"]}}]}]}"#, tcp(8080), Deny),
        ("DENY mixed L4+HTTP: other port",             r#"{action: DENY, rules: [{to: [{operation: {methods: [GET], ports: ["8080"]}}]}]}"#, tcp(9090), Allow),
        ("DENY HTTP-only rule is a no-op (#61126)",    "{action: DENY, rules: [{to: [{operation: {methods: [GET]}}]}]}", tcp(8080), Allow),
        ("DENY when header only: no-op",               r#"{action: DENY, rules: [{when: [{key: "request.headers[x]", values: [v]}]}]}"#, tcp(8080), Allow),
        ("DENY [{}] denies all",                       "{action: DENY, rules: [{}]}",                             tcp(8080), Deny),
        ("DENY notPrincipals * plaintext",             r#"{action: DENY, rules: [{from: [{source: {notPrincipals: ["*"]}}]}]}"#, tcp(8080), Deny),
        ("trustDomains silently ignored",              r#"{action: DENY, rules: [{from: [{source: {trustDomains: [other], namespaces: [foo]}}]}]}"#, tcp(8080).from(CURL), Deny),
        ("an HTTP request is L4 at ztunnel",           "{rules: [{to: [{operation: {methods: [GET]}}]}]}",       get("/").from(CURL), Deny),
    ]);
    let z = |spec: &str| build(&[HTTPBIN, &ap("foo", "p", spec)]);
    let d = decide(&z("{rules: [{to: [{operation: {methods: [GET]}}]}]}"), "foo", "httpbin", Enforcer::Ztunnel, &get("/").from(CURL));
    assert!(explains(&d, "A6.3", "ztunnel cannot evaluate"), "{}", dump(&d));
    let d = decide(&z("{action: DENY, rules: [{to: [{operation: {methods: [GET]}}]}]}"), "foo", "httpbin", Enforcer::Ztunnel, &tcp(8080));
    assert!(explains(&d, "A6.3", "istio#61126"), "{}", dump(&d));
    let d = decide(&z("{action: AUDIT, rules: [{}]}"), "foo", "httpbin", Enforcer::Ztunnel, &tcp(8080));
    assert!(explains(&d, "A6.3", "does not support the AUDIT action"), "{}", dump(&d));
    // A6.5: dry-run policies are not sent to ztunnel.
    let inv = build(&[HTTPBIN, &ap_dry("foo", "p", "{action: DENY, rules: [{}]}")]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Ztunnel, &tcp(8080));
    assert_eq!(d.value, Allow, "{}", dump(&d));
    assert!(explains(&d, "A6.5", "not send dry-run policies to ztunnel"), "{}", dump(&d));

    // A6.4: behind a waypoint the destination ztunnel sees the waypoint's identity.
    let inv = build(&[
        HTTPBIN,
        WAYPOINT,
        &ap("foo", "allow-waypoint", r#"{selector: {matchLabels: {app: httpbin}}, rules: [{from: [{source: {principals: ["cluster.local/ns/foo/sa/waypoint"]}}]}]}"#),
        &ap("foo", "l7", r#"{targetRefs: [{kind: Service, name: httpbin}], rules: [{from: [{source: {principals: ["cluster.local/ns/foo/sa/curl"]}}], to: [{operation: {methods: [GET]}}]}]}"#),
    ]);
    let svc = inv.service("foo", "httpbin").unwrap();
    table(&inv, "foo", "waypoint", Enforcer::Waypoint { service: svc }, &[
        ("waypoint: GET from curl",  get("/").from(CURL),          Allow),
        ("waypoint: POST from curl", http("POST", "/").from(CURL), Deny),
    ]);
    table(&inv, "foo", "httpbin", Enforcer::Ztunnel, &[
        ("ztunnel: hop from the waypoint",                tcp(8080).from("cluster.local/ns/foo/sa/waypoint"), Allow),
        ("ztunnel: direct from curl, bypassing waypoint", tcp(8080).from(CURL),                                Deny),
    ]);
}

// ---------------------------------------------------------------------------------------------
// RequestAuthentication (authz-jwt)

#[test]
#[rustfmt::skip]
fn jwt_authz_jwt_task() {
    let req_authn = ra("foo", "jwt-example", &format!(r#"{{selector: {{matchLabels: {{app: httpbin}}}}, jwtRules: [{{issuer: "{ISS}", jwksUri: "https://example.invalid/jwks.json"}}]}}"#));
    let bad = Jwt { valid: false, ..token() };
    let other_iss = Jwt { issuer: "other@example.com".to_string(), ..token() };
    // Step 1: RequestAuthentication only.
    let inv = build(&[HTTPBIN, &req_authn]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("invalid token → 401",                get("/headers").jwt(bad.clone()),        Unauthenticated),
        ("unknown issuer → 401",               get("/headers").jwt(other_iss.clone()),  Unauthenticated),
        ("missing token is allowed",           get("/headers"),                         Allow),
        ("valid token",                        get("/headers").jwt(token()),            Allow),
        ("token on the TCP chain is not read", tcp(8080).jwt(bad.clone()),              Allow),
    ]);
    table(&inv, "foo", "httpbin", Enforcer::Ztunnel, &[("ztunnel does not read JWTs", get("/").jwt(bad.clone()), Allow)]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/").jwt(bad.clone()));
    assert!(explains(&d, "D9", "invalid"), "{}", dump(&d));
    assert!(d.steps.iter().any(|s| s.objects.iter().any(|o| o.object.name == "jwt-example")));
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/"));
    assert!(explains(&d, "D9", "no JWT presented"), "{}", dump(&d));
    // Step 2: require a request principal.
    let require = ap("foo", "require-jwt", &format!(r#"{{selector: {{matchLabels: {{app: httpbin}}}}, action: ALLOW, rules: [{{from: [{{source: {{requestPrincipals: ["{ISS}/{ISS}"]}}}}]}}]}}"#));
    let inv = build(&[HTTPBIN, &req_authn, &require]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("valid token with the principal", get("/headers").jwt(token()),                                   Allow),
        ("missing token now denied",       get("/headers"),                                                Deny),
        ("invalid token still 401",        get("/headers").jwt(bad.clone()),                               Unauthenticated),
        ("valid token, other subject",     get("/headers").jwt(Jwt { subject: "x".into(), ..token() }),    Deny),
    ]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/headers").jwt(token()));
    assert!(explains(&d, "D3", &format!("request principal {ISS}/{ISS}")), "{}", dump(&d));
    // Step 3: claims[groups].
    let groups = ap("foo", "require-jwt", &format!(r#"{{selector: {{matchLabels: {{app: httpbin}}}}, rules: [{{from: [{{source: {{requestPrincipals: ["{ISS}/{ISS}"]}}}}], when: [{{key: "request.auth.claims[groups]", values: [group1]}}]}}]}}"#));
    let inv = build(&[HTTPBIN, &req_authn, &groups]);
    let no_group = Jwt { claims: BTreeMap::new(), ..token() };
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("token in group1",                get("/headers").jwt(token()),   Allow),
        ("token without the groups claim", get("/headers").jwt(no_group),  Deny),
    ]);
    // Audiences restrict which tokens of an issuer are accepted.
    let inv = build(&[HTTPBIN, &ra("foo", "jwt-aud", &format!(r#"{{jwtRules: [{{issuer: "{ISS}", audiences: [other-app]}}]}}"#))]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[("audience not allowed → 401", get("/").jwt(token()), Unauthenticated)]);
    // A JWT presented where no RequestAuthentication applies is not validated.
    let inv = build(&[HTTPBIN]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[("no RequestAuthentication", get("/").jwt(bad), Allow)]);
    // RequestAuthentication in the root namespace with a selector applies mesh-wide.
    let inv = build(&[HTTPBIN, &ra("istio-system", "root-jwt", &format!(r#"{{selector: {{matchLabels: {{app: httpbin}}}}, jwtRules: [{{issuer: "{ISS}"}}]}}"#))]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[("root RA", get("/").jwt(other_iss), Unauthenticated)]);
}

// ---------------------------------------------------------------------------------------------
// istio.io tasks re-expressed

const BOOKINFO: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: productpage-v1, namespace: default}
spec:
  template:
    metadata: {labels: {app: productpage}}
    spec: {serviceAccountName: bookinfo-productpage, containers: [{name: productpage, ports: [{containerPort: 9080}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: details-v1, namespace: default}
spec:
  template:
    metadata: {labels: {app: details}}
    spec: {serviceAccountName: bookinfo-details, containers: [{name: details, ports: [{containerPort: 9080}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ratings-v1, namespace: default}
spec:
  template:
    metadata: {labels: {app: ratings}}
    spec: {serviceAccountName: bookinfo-ratings, containers: [{name: ratings, ports: [{containerPort: 9080}]}]}
"#;

#[test]
#[rustfmt::skip]
fn task_authz_http() {
    let pp = "cluster.local/ns/default/sa/bookinfo-productpage";
    let reviews = "cluster.local/ns/default/sa/bookinfo-reviews";
    let g = |path: &str| get(path).port(9080);
    // allow-nothing alone.
    let inv = build(&[BOOKINFO, &ap("default", "allow-nothing", "{}")]);
    table(&inv, "default", "productpage-v1", Enforcer::Sidecar, &[("allow-nothing", g("/productpage"), Deny)]);
    table(&inv, "default", "details-v1", Enforcer::Sidecar, &[("allow-nothing details", g("/details/0").from(pp), Deny)]);
    let d = decide(&inv, "default", "details-v1", Enforcer::Sidecar, &g("/details/0").from(pp));
    assert!(explains(&d, "D3", "no rules, so it never matches"), "{}", dump(&d));
    // Then the viewer policies.
    let inv = build(&[
        BOOKINFO,
        &ap("default", "allow-nothing", "{}"),
        &ap("default", "productpage-viewer", r#"{selector: {matchLabels: {app: productpage}}, action: ALLOW, rules: [{to: [{operation: {methods: [GET], paths: ["/productpage", "/static/*", "/api/v1/products/{*}"]}}]}]}"#),
        &ap("default", "details-viewer", r#"{selector: {matchLabels: {app: details}}, action: ALLOW, rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/bookinfo-productpage"]}}], to: [{operation: {methods: [GET]}}]}]}"#),
        &ap("default", "ratings-viewer", r#"{selector: {matchLabels: {app: ratings}}, action: ALLOW, rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/bookinfo-reviews"]}}], to: [{operation: {methods: [GET]}}]}]}"#),
    ]);
    table(&inv, "default", "productpage-v1", Enforcer::Sidecar, &[
        ("GET /productpage from anywhere (plaintext)", g("/productpage"),                       Allow),
        ("POST /productpage",                          http("POST", "/productpage").port(9080), Deny),
        ("GET /static/ prefix",                        g("/static/css/x.css"),                  Allow),
        ("GET /api/v1/products/{*}",                   g("/api/v1/products/0"),                 Allow),
        ("GET /api/v1/products/0/reviews",             g("/api/v1/products/0/reviews"),         Deny),
        ("GET an unlisted path",                       g("/logout"),                            Deny),
    ]);
    table(&inv, "default", "details-v1", Enforcer::Sidecar, &[
        ("GET details from the productpage principal", g("/details/0").from(pp),                        Allow),
        ("GET details from reviews",                   g("/details/0").from(reviews),                   Deny),
        ("GET details, plaintext",                     g("/details/0"),                                 Deny),
        ("DELETE details from productpage",            http("DELETE", "/details/0").port(9080).from(pp), Deny),
    ]);
    table(&inv, "default", "ratings-v1", Enforcer::Sidecar, &[
        ("GET ratings from reviews",     g("/ratings/0").from(reviews), Allow),
        ("GET ratings from productpage", g("/ratings/0").from(pp),      Deny),
    ]);
}

#[test]
#[rustfmt::skip]
fn task_authz_deny() {
    let deny_get = ap("foo", "deny-method-get", r#"{selector: {matchLabels: {app: httpbin}}, action: DENY, rules: [{to: [{operation: {methods: [GET]}}], when: [{key: "request.headers[x-token]", notValues: [admin]}]}]}"#);
    let inv = build(&[HTTPBIN, &deny_get]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("GET without x-token: admin", get("/get"),                           Deny),
        ("GET with x-token: admin",    get("/get").header("x-token", "admin"), Allow),
        ("POST is not covered",        http("POST", "/post"),                  Allow),
    ]);
    let inv = build(&[
        HTTPBIN,
        &deny_get,
        &ap("foo", "allow-path-ip", r#"{selector: {matchLabels: {app: httpbin}}, action: ALLOW, rules: [{to: [{operation: {paths: ["/ip"]}}]}]}"#),
        &ap("foo", "deny-other-namespaces", r#"{action: DENY, rules: [{from: [{source: {notNamespaces: [foo]}}]}]}"#),
    ]);
    table(&inv, "foo", "httpbin", Enforcer::Sidecar, &[
        ("admin GET /ip from foo",            get("/ip").header("x-token", "admin").from(CURL),      Allow),
        ("admin GET /get: not /ip",           get("/get").header("x-token", "admin").from(CURL),     Deny),
        ("GET /ip without the token",         get("/ip").from(CURL),                                 Deny),
        ("from namespace bar",                get("/ip").header("x-token", "admin").from(SLEEP_BAR), Deny),
        ("plaintext: notNamespaces matches",  get("/ip").header("x-token", "admin"),                 Deny),
    ]);
}

const INGRESS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  template:
    metadata: {labels: {app: istio-ingressgateway, istio: ingressgateway}}
    spec: {serviceAccountName: istio-ingressgateway-service-account, containers: [{name: istio-proxy, ports: [{containerPort: 8080}]}]}
"#;

#[test]
#[rustfmt::skip]
fn task_authz_ingress() {
    let sel = "selector: {matchLabels: {app: istio-ingressgateway}}";
    let client = |src: &str| get("/headers").src(src);
    let via_lb = |remote: &str| get("/headers").src("10.0.0.5").remote(remote);
    for (row, spec, r, want) in [
        // Network LB preserving the client IP: ipBlocks sees the client.
        ("ALLOW ipBlocks, client IP preserved",       format!(r#"{{{sel}, rules: [{{from: [{{source: {{ipBlocks: ["1.2.3.4", "5.6.7.0/24"]}}}}]}}]}}"#), client("5.6.7.8"), Allow),
        ("ALLOW ipBlocks, other client",              format!(r#"{{{sel}, rules: [{{from: [{{source: {{ipBlocks: ["1.2.3.4", "5.6.7.0/24"]}}}}]}}]}}"#), client("8.8.8.8"), Deny),
        // HTTP LB with X-Forwarded-For: the peer is the LB, the client is remote.ip.
        ("ALLOW ipBlocks behind an L7 LB sees the LB", format!(r#"{{{sel}, rules: [{{from: [{{source: {{ipBlocks: ["1.2.3.4"]}}}}]}}]}}"#),  via_lb("1.2.3.4"), Deny),
        ("ALLOW remoteIpBlocks behind an L7 LB",       format!(r#"{{{sel}, rules: [{{from: [{{source: {{remoteIpBlocks: ["1.2.3.4"]}}}}]}}]}}"#), via_lb("1.2.3.4"), Allow),
        ("DENY remoteIpBlocks",                        format!(r#"{{{sel}, action: DENY, rules: [{{from: [{{source: {{remoteIpBlocks: ["1.2.3.4"]}}}}]}}]}}"#), via_lb("1.2.3.4"), Deny),
        ("DENY remoteIpBlocks, other client",          format!(r#"{{{sel}, action: DENY, rules: [{{from: [{{source: {{remoteIpBlocks: ["1.2.3.4"]}}}}]}}]}}"#), via_lb("9.9.9.9"), Allow),
    ] {
        let inv = build(&[INGRESS, &ap("istio-system", "ingress-policy", &spec)]);
        let d = decide(&inv, "istio-system", "istio-ingressgateway", Enforcer::Sidecar, &r);
        assert_eq!(d.value, want, "row {row:?}: {}", dump(&d));
    }
}

// ---------------------------------------------------------------------------------------------
// Robustness and explanations

#[test]
#[rustfmt::skip]
fn invalid_values_never_match_and_never_panic() {
    // Validation rejects all of these (A11, A12, A16); typed directly, they must still be safe.
    let inv = with_unvalidated(r#"{rules: [{from: [{source: {ipBlocks: ["not-a-cidr", "10.0.0.0/99"]}}]}, {to: [{operation: {ports: ["http", "99999", "-1"]}}]}, {when: [{key: destination.ip, values: ["::zz"]}]}, {when: [{key: "request.headers[", values: [x]}]}, {when: [{key: "destination.labels[app]", values: [x]}]}]}"#);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/").from(CURL));
    assert_eq!(d.value, Deny, "{}", dump(&d));
    assert!(explains(&d, "D3", "is not an IP address or CIDR"), "{}", dump(&d));
    assert!(explains(&d, "D3", "is not a port number"), "{}", dump(&d));
    assert!(explains(&d, "D3", "not an Istio attribute"), "{}", dump(&d));
    // Same at ztunnel and on the TCP chain.
    assert_eq!(decide(&inv, "foo", "httpbin", Enforcer::Ztunnel, &tcp(8080)).value, Deny);
    assert_eq!(decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &tcp(8080)).value, Deny);
    // A request with no IPs, no HTTP part on the HTTP chain and an empty principal.
    let mut r = get("/");
    r.0.source_ip = None;
    r.0.destination_ip = None;
    r.0.http = None;
    r.0.principal = Some(String::new());
    assert_eq!(decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &r).value, Deny);
    // A bad notIpBlocks value never matches, so the negation holds.
    let inv = with_unvalidated(r#"{rules: [{from: [{source: {notIpBlocks: ["bogus"]}}]}]}"#);
    assert_eq!(decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/")).value, Allow);
}

#[test]
#[rustfmt::skip]
fn explanations_cite_every_policy() {
    let inv = build(&[
        HTTPBIN,
        &ap("foo", "allow-a", r#"{rules: [{from: [{source: {principals: ["cluster.local/ns/kubeflow/sa/ml-pipeline-ui"]}}], to: [{operation: {ports: ["8887"]}}]}]}"#),
        &ap("foo", "deny-b", r#"{action: DENY, rules: [{to: [{operation: {paths: ["/never"]}}]}]}"#),
        &ap_dry("foo", "dry-c", r#"{action: DENY, rules: [{}]}"#),
    ]);
    let d = decide(&inv, "foo", "httpbin", Enforcer::Sidecar, &get("/").from("cluster.local/ns/kubeflow/sa/pipeline-runner"));
    assert_eq!(d.value, Deny, "{}", dump(&d));
    for name in ["allow-a", "deny-b", "dry-c"] {
        assert!(
            d.steps.iter().any(|s| s.rule != "D1" && s.objects.iter().any(|o| o.object.name == name && o.origin.source.as_ref() == "test.yaml")),
            "{name} cited outside D1: {}", dump(&d)
        );
    }
    assert!(explains(&d, "D3", "AuthorizationPolicy foo/allow-a (ALLOW): no rule matches principal cluster.local/ns/kubeflow/sa/pipeline-runner on port 8080"), "{}", dump(&d));
    assert!(explains(&d, "D3", "principals [cluster.local/ns/kubeflow/sa/ml-pipeline-ui] do not match principal cluster.local/ns/kubeflow/sa/pipeline-runner"), "{}", dump(&d));
    assert!(explains(&d, "D2", "→ no ALLOW matched → deny"), "{}", dump(&d));
}
