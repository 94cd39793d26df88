//! ztunnel's L4 semantics end to end (`istio-semantics.md` A6.2–A6.4): one connection from a
//! client to an ambient server through `connection::evaluate`, as truth tables. Each row names
//! the source of the fact it checks:
//!
//! * [l4] istio.io `docs/ambient/usage/l4-policy`: ztunnel enforces the L4 fields of an
//!   AuthorizationPolicy at the destination; "If an AuthorizationPolicy has been configured that
//!   requires any traffic processing beyond L4 [...] ztunnel proxy will simply drop all traffic";
//!   a denied client sees "command terminated with exit code 56" (a reset, not a 403); behind a
//!   waypoint the destination ztunnel sees the waypoint's identity; `DISABLE` is not supported.
//! * [conv] istio `pilot/pkg/serviceregistry/ambient/authorization.go`: `handleRule` omits an
//!   ALLOW rule that names an HTTP attribute ("Within an ALLOW policy, rules matching HTTP
//!   attributes are omitted"); for DENY it drops the HTTP fields ("DENY policy with HTTP
//!   attributes is enforced without the HTTP rules") and, when nothing L4 is left, the policy
//!   has no effect ("this DENY policy has no enforceable rules at ztunnel and will have no
//!   effect", istio#61126); `convertPeerAuthentication` and `staticStrictPolicyName`
//!   (`istio_converted_static_strict`): STRICT is a DENY policy `notPrincipals: presence`, port
//!   exceptions a `notDestinationPorts` term; the principal strings are sent as written.
//! * [zt] istio/ztunnel `src/rbac.rs`: a match with no field set is skipped ("empty clause"),
//!   so it never matches; an ALLOW policy without rules never matches. The access log of a
//!   refused connection: `connection closed due to policy rejection: allow policies exist, but
//!   none allowed` or `... explicitly denied by: <ns>/<name>` (`src/proxy.rs`
//!   `AuthorizationPolicyRejection`; ztunnel's own tests assert the first).
//! * [zt#1260] istio/ztunnel#1260 (open): `cluster.local` in a principal is not read as the
//!   local trust domain at ztunnel; the principal must name the real trust domain.

use kfp_mesh_core::connection::{
    Caller, Outcome, RequestProtocol, RequestSpec, Target, Transport, Verdict,
    WAYPOINT_UPSTREAM_SYMPTOM, ZTUNNEL_DENIAL_SYMPTOM, evaluate,
};
use kfp_mesh_core::inventory::Inventory;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// `shop` is ambient, `legacy` is outside the mesh, `sc` injects sidecars. `shop/api` serves
/// HTTP on Service port 8000 → 8080 and TCP on 9000; `shop/client` and `shop/other` are
/// ambient clients, `legacy/curl` a plain pod, `sc/app` a sidecar client.
const SHOP: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}\n";

const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: legacy}
---
apiVersion: v1
kind: Namespace
metadata: {name: sc, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  template:
    metadata: {labels: {app: api}}
    spec:
      serviceAccountName: api
      containers: [{name: api, ports: [{containerPort: 8080}, {containerPort: 9000}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: shop}
spec:
  template:
    metadata: {labels: {app: client}}
    spec: {serviceAccountName: client, containers: [{name: c}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: other, namespace: shop}
spec:
  template:
    metadata: {labels: {app: other}}
    spec: {serviceAccountName: other, containers: [{name: c}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: curl, namespace: legacy}
spec:
  template:
    metadata: {labels: {app: curl}}
    spec: {serviceAccountName: curl, containers: [{name: c}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: sc}
spec:
  template:
    metadata: {labels: {app: app}}
    spec: {serviceAccountName: app, containers: [{name: c}]}
"#;

fn doc(kind: &str, ns: &str, name: &str, spec: &str) -> String {
    let api = match kind {
        "AuthorizationPolicy" | "PeerAuthentication" => "security.istio.io/v1",
        _ => unreachable!("fixture kind {kind}"),
    };
    format!(
        "apiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
    )
}

fn ap(ns: &str, name: &str, spec: &str) -> String {
    doc("AuthorizationPolicy", ns, name, spec)
}

fn pa(ns: &str, name: &str, spec: &str) -> String {
    doc("PeerAuthentication", ns, name, spec)
}

/// An AuthorizationPolicy selecting `shop/api`.
fn on_api(name: &str, rest: &str) -> String {
    ap(
        "shop",
        name,
        &format!("{{selector: {{matchLabels: {{app: api}}}}, {rest}}}"),
    )
}

const STRICT_SHOP: &str = "{mtls: {mode: STRICT}}";

/// The Service `shop/api` with these labels (flow style, may be empty).
fn api_service(labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: api, namespace: shop, labels: {{{labels}}}}}\nspec:\n  selector: {{app: api}}\n  ports:\n  - {{name: http, port: 8000, targetPort: 8080}}\n  - {{name: tcp, port: 9000, targetPort: 9000}}\n"
    )
}

fn world(extra: &[String]) -> Inventory {
    let labelled = extra.iter().any(|e| e.contains("kind: Service\n"));
    let own_shop = extra
        .iter()
        .any(|e| e.contains("kind: Namespace\nmetadata: {name: shop,"));
    let mut text = BASE.to_string();
    if !own_shop {
        text.push_str("\n---\n");
        text.push_str(SHOP);
    }
    if !labelled {
        text.push_str("\n---\n");
        text.push_str(&api_service(""));
    }
    for e in extra {
        text.push_str("\n---\n");
        text.push_str(e);
    }
    let inv = Inventory::from_sources([("ztunnel.yaml", text.as_str())]);
    assert!(inv.errors.is_empty(), "input errors: {:?}", inv.errors);
    assert!(inv.rejected.is_empty(), "rejected: {:?}", inv.rejected);
    inv
}

/// What the client sends.
#[derive(Clone, Debug)]
enum Send {
    Http(
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    ),
    Tcp,
}

const GET: Send = Send::Http("GET", "/", &[]);
const DELETE: Send = Send::Http("DELETE", "/items/1", &[]);
const TCP: Send = Send::Tcp;

fn call(inv: &Inventory, from: &str, port: u16, send: &Send) -> Verdict {
    let (ns, name) = from.split_once('/').expect("ns/name");
    let client = inv
        .workload(ns, name)
        .unwrap_or_else(|| panic!("no client {from}"));
    let service = inv.service("shop", "api").expect("shop/api");
    let request = match send {
        Send::Tcp => RequestSpec {
            protocol: Some(RequestProtocol::Tcp),
            ..RequestSpec::default()
        },
        Send::Http(method, path, headers) => RequestSpec {
            protocol: Some(RequestProtocol::Http),
            method: Some(method.to_string()),
            path: Some(path.to_string()),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..RequestSpec::default()
        },
    };
    evaluate(
        inv,
        Caller::Workload(client),
        Target::Service { service, port },
        &request,
    )
    .unwrap_or_else(|e| panic!("{from} -> shop/api:{port}: {e}"))
}

fn text(v: &Verdict) -> String {
    v.explanation
        .iter()
        .map(|s| format!("  {s}"))
        .collect::<Vec<_>>()
        .join("\n")
}

const ALLOW_MTLS: (Outcome, Option<Transport>) = (Outcome::Allow, Some(Transport::Mtls));
const ALLOW_PLAIN: (Outcome, Option<Transport>) = (Outcome::Allow, Some(Transport::Plaintext));
const RESET: (Outcome, Option<Transport>) = (Outcome::Reset, None);

/// A row: what, the caller, the Service port, the request, the expected outcome and transport.
type Row<'a> = (&'a str, &'a str, u16, Send, (Outcome, Option<Transport>));

fn table(inv: &Inventory, rows: &[Row<'_>]) {
    for (what, from, port, send, want) in rows {
        let v = call(inv, from, *port, send);
        // The transport is compared for allowed connections only.
        let got = if v.outcome == Outcome::Allow {
            (v.outcome, v.transport)
        } else {
            (v.outcome, None)
        };
        assert_eq!(
            got,
            *want,
            "{what}: {from} -> shop/api:{port}\n{}",
            text(&v)
        );
        // Every refusal at ztunnel is a closed connection in ztunnel's words, never Envoy's.
        if v.outcome == Outcome::Reset {
            assert_eq!(v.symptom, ZTUNNEL_DENIAL_SYMPTOM, "{what}: symptom");
            assert!(!v.symptom.contains("filter_chain_not_found"), "{what}");
        }
    }
}

fn explains(v: &Verdict, rule: &str, needle: &str) -> bool {
    v.explanation
        .iter()
        .any(|s| s.rule == rule && s.message.contains(needle))
}

const CLIENT: &str = "shop/client";
const OTHER: &str = "shop/other";
const PLAIN: &str = "legacy/curl";
const SIDECAR: &str = "sc/app";

// ---------------------------------------------------------------------------------------------
// A6.2: PeerAuthentication at ztunnel: STRICT is "deny when the source has no principal"

#[test]
#[rustfmt::skip]
fn strict_is_deny_without_principal() {
    // [conv] convertedSelectorPeerAuthentications + staticStrictPolicyName
    let inv = world(&[pa("shop", "default", STRICT_SHOP)]);
    table(&inv, &[
        ("ambient client: HBONE always carries its identity", CLIENT, 8000, GET, ALLOW_MTLS),
        ("ambient client, TCP",                               CLIENT, 9000, TCP, ALLOW_MTLS),
        ("plaintext client: no principal, denied",            PLAIN,  8000, GET, RESET),
        ("plaintext client, TCP",                             PLAIN,  9000, TCP, RESET),
    ]);
    let v = call(&inv, PLAIN, 8000, &GET);
    assert!(explains(&v, "A6.2", "istio_converted_static_strict"), "{}", text(&v));
    assert!(v.fix.as_ref().map(|f| f.text.as_str()).is_some_and(|f| f.contains("istio.io/dataplane-mode: ambient")), "{:?}", v.fix);

    // [l4] no PeerAuthentication: PERMISSIVE, ztunnel passes plaintext through.
    let inv = world(&[]);
    table(&inv, &[
        ("no policy: plaintext accepted", PLAIN,  8000, GET, ALLOW_PLAIN),
        ("no policy: ambient still mTLS", CLIENT, 8000, GET, ALLOW_MTLS),
    ]);

    // Mesh-wide STRICT in the root namespace.
    let inv = world(&[pa("istio-system", "default", STRICT_SHOP)]);
    table(&inv, &[("mesh-wide STRICT", PLAIN, 9000, TCP, RESET)]);

    // [l4] DISABLE is not supported in ambient: the policy is ignored, plaintext still works,
    // ambient clients still use HBONE.
    let inv = world(&[pa("istio-system", "default", STRICT_SHOP), pa("shop", "default", "{mtls: {mode: DISABLE}}")]);
    table(&inv, &[
        ("namespace DISABLE under mesh STRICT: not STRICT", PLAIN,  9000, TCP, ALLOW_PLAIN),
        ("DISABLE never turns HBONE off",                   CLIENT, 9000, TCP, ALLOW_MTLS),
    ]);

    // A root-namespace PeerAuthentication with a selector is skipped in ambient.
    let inv = world(&[pa("istio-system", "api", "{selector: {matchLabels: {app: api}}, mtls: {mode: STRICT}}")]);
    table(&inv, &[("root-namespace selector policy skipped", PLAIN, 9000, TCP, ALLOW_PLAIN)]);
}

#[test]
#[rustfmt::skip]
fn strict_with_port_exceptions() {
    // [conv] convertPeerAuthentication: a workload policy with portLevelMtls becomes a DENY
    // policy `notPrincipals: presence` AND `notDestinationPorts: [port]` (the container port).
    // The kube-apiserver -> webhook exception of KFP's cache server has this shape.
    let exception = pa("shop", "api-webhook", r#"{selector: {matchLabels: {app: api}}, mtls: {mode: STRICT}, portLevelMtls: {"9000": {mode: PERMISSIVE}}}"#);
    let inv = world(&[pa("shop", "default", STRICT_SHOP), exception.clone()]);
    table(&inv, &[
        ("exempt port: plaintext accepted",  PLAIN,  9000, TCP, ALLOW_PLAIN),
        ("other port: STRICT",               PLAIN,  8000, GET, RESET),
        ("exempt port: ambient still mTLS",  CLIENT, 9000, TCP, ALLOW_MTLS),
    ]);
    // The key is the container port, not the Service port: 8000 names nothing.
    let wrong = pa("shop", "api-webhook", r#"{selector: {matchLabels: {app: api}}, mtls: {mode: STRICT}, portLevelMtls: {"8000": {mode: PERMISSIVE}}}"#);
    let inv = world(&[pa("shop", "default", STRICT_SHOP), wrong]);
    table(&inv, &[("Service port as the key exempts nothing", PLAIN, 8000, GET, RESET)]);
    // Workload mode UNSET under namespace STRICT, port PERMISSIVE: merged into the workload's
    // converted policy, same result.
    let unset = pa("shop", "api-webhook", r#"{selector: {matchLabels: {app: api}}, portLevelMtls: {"9000": {mode: PERMISSIVE}}}"#);
    let inv = world(&[pa("shop", "default", STRICT_SHOP), unset]);
    table(&inv, &[
        ("UNSET workload, PERMISSIVE port",  PLAIN, 9000, TCP, ALLOW_PLAIN),
        ("UNSET workload, other port",       PLAIN, 8000, GET, RESET),
    ]);
    // Port-level DISABLE under an UNSET workload policy is ignored (only PERMISSIVE exempts
    // a port from the inherited STRICT).
    let disable = pa("shop", "api-webhook", r#"{selector: {matchLabels: {app: api}}, portLevelMtls: {"9000": {mode: DISABLE}}}"#);
    let inv = world(&[pa("shop", "default", STRICT_SHOP), disable]);
    table(&inv, &[("UNSET workload, port DISABLE ignored", PLAIN, 9000, TCP, RESET)]);
    // An exempt port still answers to the AuthorizationPolicies: an ALLOW that names only
    // the port lets the plaintext caller in, an identity rule does not.
    let inv = world(&[
        pa("shop", "default", STRICT_SHOP),
        exception,
        on_api("webhook-port", r#"rules: [{to: [{operation: {ports: ["9000"]}}]}]"#),
        on_api("callers", r#"rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/client"]}}]}]"#),
    ]);
    table(&inv, &[
        ("exempt port, ALLOW by port",            PLAIN,  9000, TCP, ALLOW_PLAIN),
        ("other port, ALLOW by principal",        CLIENT, 8000, GET, ALLOW_MTLS),
        ("other port, identity not admitted",     OTHER,  8000, GET, RESET),
    ]);
}

// ---------------------------------------------------------------------------------------------
// A6.3: AuthorizationPolicy at ztunnel

#[test]
#[rustfmt::skip]
fn allow_rules_with_http_attributes_are_omitted() {
    // [l4] [conv] the whole rule is omitted; an ALLOW policy whose every rule is omitted still
    // exists and matches nothing, so the workload refuses everyone it does not name elsewhere.
    let inv = world(&[on_api("get-only", r#"rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/client"]}}], to: [{operation: {methods: [GET]}}]}]"#)]);
    table(&inv, &[
        ("L4+HTTP rule omitted: the named caller is refused", CLIENT, 8000, GET, RESET),
        ("TCP too",                                           CLIENT, 9000, TCP, RESET),
    ]);
    let v = call(&inv, CLIENT, 8000, &GET);
    assert!(explains(&v, "A6.3", "ztunnel cannot evaluate"), "{}", text(&v));
    assert!(v.fix.as_ref().map(|f| f.text.as_str()).is_some_and(|f| f.contains("targetRefs") && f.contains("get-only")), "{:?}", v.fix);

    // KFP multi-user's API-server rule ("anyone without kubeflow-userid") on a selector: a run
    // pod that sends no header is refused by ztunnel.
    let inv = world(&[on_api("header-rule", r#"rules: [{when: [{key: "request.headers[kubeflow-userid]", notValues: ["*"]}]}]"#)]);
    table(&inv, &[("header rule omitted: header-less caller refused", CLIENT, 8000, GET, RESET)]);

    // The other rules of the policy still apply.
    let inv = world(&[on_api("mixed", r#"rules: [{to: [{operation: {paths: ["/admin"]}}]}, {from: [{source: {principals: ["cluster.local/ns/shop/sa/client"]}}]}]"#)]);
    table(&inv, &[
        ("L4 rule of the same policy admits client", CLIENT, 8000, DELETE, ALLOW_MTLS),
        ("anyone else refused",                      OTHER,  8000, GET,    RESET),
    ]);

    // requestPrincipals and remoteIpBlocks are HTTP attributes in ztunnel's sense.
    let inv = world(&[on_api("jwt", r#"rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]"#)]);
    table(&inv, &[("requestPrincipals rule omitted", CLIENT, 9000, TCP, RESET)]);
    let inv = world(&[on_api("remote", r#"rules: [{from: [{source: {remoteIpBlocks: ["0.0.0.0/0"]}}]}]"#)]);
    table(&inv, &[("remoteIpBlocks rule omitted", CLIENT, 9000, TCP, RESET)]);

    // A purely L4 policy behaves as in sidecar mode.
    let inv = world(&[on_api("l4", r#"rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/client"]}}], to: [{operation: {ports: ["8080"]}}]}]"#)]);
    table(&inv, &[
        ("L4: principal and container port",       CLIENT, 8000, GET, ALLOW_MTLS),
        ("L4: the port is the container port",     CLIENT, 9000, TCP, RESET),
        ("L4: other identity",                     OTHER,  8000, GET, RESET),
        ("L4: plaintext has no principal",         PLAIN,  8000, GET, RESET),
    ]);
}

#[test]
#[rustfmt::skip]
fn deny_is_wider_or_has_no_effect() {
    // [conv] mixed L4+HTTP: the HTTP fields are dropped, the rest enforced: wider than written.
    let inv = world(&[on_api("no-delete-8080", r#"action: DENY, rules: [{to: [{operation: {methods: [DELETE], ports: ["8080"]}}]}]"#)]);
    table(&inv, &[
        ("DENY methods+ports: every request on 8080 denied", CLIENT, 8000, GET, RESET),
        ("DENY methods+ports: 9000 untouched",               CLIENT, 9000, TCP, ALLOW_MTLS),
    ]);
    // [conv] istio#61126: nothing L4 left: an empty match, skipped: no effect at all.
    let inv = world(&[on_api("no-delete", r#"action: DENY, rules: [{to: [{operation: {methods: [DELETE]}}]}]"#)]);
    table(&inv, &[("DENY methods only: no effect, DELETE passes", CLIENT, 8000, DELETE, ALLOW_MTLS)]);
    let v = call(&inv, CLIENT, 8000, &DELETE);
    assert!(explains(&v, "A6.3", "has no effect"), "{}", text(&v));
    // A `when` on a header is its own clause; with nothing in it the whole rule never fires.
    let inv = world(&[on_api("no-header", r#"action: DENY, rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/client"]}}], when: [{key: "request.headers[x-debug]", values: ["1"]}]}]"#)]);
    table(&inv, &[("DENY principal + header: no effect", CLIENT, 8000, GET, ALLOW_MTLS)]);

    // [conv] + [zt]: each `to`/`from` entry is one match; an entry with nothing L4 in it is an
    // empty match, which ztunnel skips, while the other entries still fire.
    let inv = world(&[on_api("two-ops", r#"action: DENY, rules: [{to: [{operation: {methods: [DELETE]}}, {operation: {ports: ["9000"]}}]}]"#)]);
    table(&inv, &[
        ("DENY entries [methods], [ports 9000]: 8080 untouched", CLIENT, 8000, DELETE, ALLOW_MTLS),
        ("DENY entries [methods], [ports 9000]: 9000 denied",    CLIENT, 9000, TCP,    RESET),
    ]);
    let inv = world(&[on_api("two-sources", r#"action: DENY, rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/client"]}}, {source: {requestPrincipals: ["*"]}}]}]"#)]);
    table(&inv, &[
        ("DENY sources [principal], [requestPrincipals]: client denied", CLIENT, 8000, GET, RESET),
        ("DENY sources [principal], [requestPrincipals]: other passes",  OTHER,  8000, GET, ALLOW_MTLS),
    ]);
    let v = call(&inv, OTHER, 8000, &GET);
    assert!(explains(&v, "A6.3", "the `from` entry with only requestPrincipals is an empty match"), "{}", text(&v));
}

#[test]
#[rustfmt::skip]
fn principals_name_the_real_trust_domain() {
    // [zt#1260] + [conv] (`stringToMatch` sends the principal as written): with trust domain
    // `corp.example`, `cluster.local/...` matches nobody at ztunnel, while a sidecar (istiod
    // expands `cluster.local` to the trust domain and its aliases) admits the same caller.
    let mesh = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    trustDomain: corp.example\n".to_string();
    let literal = on_api("by-alias", r#"rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/client"]}}]}]"#);
    let inv = world(&[mesh.clone(), literal]);
    table(&inv, &[("cluster.local principal under trust domain corp.example", CLIENT, 8000, GET, RESET)]);
    let v = call(&inv, CLIENT, 8000, &GET);
    assert!(explains(&v, "A6.3", "istio/ztunnel#1260"), "{}", text(&v));
    let real = on_api("by-name", r#"rules: [{from: [{source: {principals: ["corp.example/ns/shop/sa/client"]}}]}]"#);
    let inv = world(&[mesh, real]);
    table(&inv, &[("the real trust domain matches", CLIENT, 8000, GET, ALLOW_MTLS)]);
    // Namespaces and service accounts carry no trust domain: unaffected.
    let inv = world(&[on_api("ns", "rules: [{from: [{source: {namespaces: [shop]}}]}]")]);
    table(&inv, &[("namespaces", CLIENT, 9000, TCP, ALLOW_MTLS)]);
}

// ---------------------------------------------------------------------------------------------
// How a refusal shows: ztunnel's words, a sidecar's 503, a waypoint's 503

#[test]
fn denial_symptoms_are_ztunnel_words() {
    let only_client = on_api(
        "only-client",
        r#"rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/client"]}}]}]"#,
    );
    let inv = world(&[pa("shop", "default", STRICT_SHOP), only_client.clone()]);
    // A client without a proxy: its connection is reset; ztunnel logs the policy rejection.
    let v = call(&inv, OTHER, 9000, &TCP);
    assert_eq!(v.outcome, Outcome::Reset, "{}", text(&v));
    assert_eq!(v.symptom, ZTUNNEL_DENIAL_SYMPTOM);
    for words in [
        "connection closed due to policy rejection",
        "allow policies exist, but none allowed",
        "explicitly denied by",
        "istio_converted_static_strict",
        "curl exit 56",
    ] {
        assert!(v.symptom.contains(words), "{words}: {}", v.symptom);
    }
    assert!(!v.symptom.contains("filter_chain_not_found"));
    assert!(explains(&v, "A6.3", "never an HTTP 403"), "{}", text(&v));
    // A sidecar client: its own Envoy turns the refusal into HTTP 503.
    let v = call(&inv, SIDECAR, 8000, &GET);
    assert_eq!(v.outcome, Outcome::UpstreamFailure, "{}", text(&v));
    assert!(explains(&v, "A6.3", "its own HTTP 503"), "{}", text(&v));
    // Sidecar-mode words stay with sidecars: plaintext into a STRICT sidecar is
    // `filter_chain_not_found`, into STRICT ztunnel it is ztunnel's rejection.
    let v = call(&inv, PLAIN, 9000, &TCP);
    assert_eq!(v.outcome, Outcome::Reset);
    assert_eq!(v.symptom, ZTUNNEL_DENIAL_SYMPTOM);
}

// ---------------------------------------------------------------------------------------------
// A6.4: waypoints

const WAYPOINT_GATEWAY: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop, labels: {istio.io/waypoint-for: service}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
"#;

/// `shop/api` labelled to use the waypoint `shop/waypoint`.
fn api_uses_waypoint() -> String {
    api_service("istio.io/use-waypoint: waypoint")
}

#[test]
#[rustfmt::skip]
fn waypoint_enforces_l7_and_ztunnel_sees_the_waypoint() {
    let l7 = ap("shop", "api-l7", r#"{targetRefs: [{kind: Service, group: "", name: api}], rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/client"]}}]}, {when: [{key: "request.headers[kubeflow-userid]", notValues: ["*"]}]}]}"#);
    let l4_waypoint = on_api("api-l4", r#"rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/waypoint"]}}]}]"#);
    let inv = world(&[pa("shop", "default", STRICT_SHOP), WAYPOINT_GATEWAY.to_string(), api_uses_waypoint(), l7.clone(), l4_waypoint]);
    const WITH_USER: Send = Send::Http("GET", "/apis/v2beta1/runs", &[("kubeflow-userid", "alice@example.com")]);
    table(&inv, &[
        ("waypoint: named principal, with user header", CLIENT, 8000, WITH_USER, ALLOW_MTLS),
        ("waypoint: anyone without the header",         OTHER,  8000, GET,       ALLOW_MTLS),
    ]);
    // The waypoint refuses the header from anyone else: an HTTP 403 from Envoy, not a reset.
    let v = call(&inv, OTHER, 8000, &WITH_USER);
    assert_eq!(v.outcome, Outcome::Deny, "{}", text(&v));
    // The same L7 policy attached to the waypoint's Gateway instead of the Service.
    let by_gateway = ap("shop", "api-l7", r#"{targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}], rules: [{when: [{key: "request.headers[kubeflow-userid]", notValues: ["*"]}]}]}"#);
    let l4_waypoint = on_api("api-l4", r#"rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/waypoint"]}}]}]"#);
    let inv_gw = world(&[pa("shop", "default", STRICT_SHOP), WAYPOINT_GATEWAY.to_string(), api_uses_waypoint(), by_gateway, l4_waypoint]);
    let v = call(&inv_gw, OTHER, 8000, &WITH_USER);
    assert_eq!(v.outcome, Outcome::Deny, "targetRefs Gateway applies at the waypoint\n{}", text(&v));
    let v = call(&inv_gw, OTHER, 8000, &GET);
    assert_eq!((v.outcome, v.transport), ALLOW_MTLS, "{}", text(&v));

    // [l4] the destination ztunnel sees the waypoint: an L4 policy that names the real caller
    // instead refuses the waypoint's connection, and the waypoint answers 503.
    let l4_client = on_api("api-l4", r#"rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/client"]}}]}]"#);
    let inv = world(&[pa("shop", "default", STRICT_SHOP), WAYPOINT_GATEWAY.to_string(), api_uses_waypoint(), l7, l4_client]);
    let v = call(&inv, CLIENT, 8000, &WITH_USER);
    assert_eq!(v.outcome, Outcome::UpstreamFailure, "{}", text(&v));
    assert_eq!(v.symptom, WAYPOINT_UPSTREAM_SYMPTOM);
    assert!(v.fix.as_ref().map(|f| f.text.as_str()).is_some_and(|f| f.contains("cluster.local/ns/shop/sa/waypoint")), "{:?}", v.fix);
}

#[test]
fn waypoint_facts() {
    use kfp_mesh_core::mesh::waypoint::{LabelSource, service_waypoint};
    // Service label, Gateway present.
    let inv = world(&[WAYPOINT_GATEWAY.to_string(), api_uses_waypoint()]);
    let svc = inv.service("shop", "api").expect("api");
    let w = service_waypoint(&inv, svc).expect("a waypoint");
    assert_eq!(
        (w.name.as_str(), w.namespace.as_str()),
        ("waypoint", "shop")
    );
    assert_eq!(w.source, LabelSource::Service);
    let g = w.gateway.as_ref().expect("the Gateway is in the input");
    assert_eq!(g.class, "istio-waypoint");
    assert!(g.takes_service_traffic());
    assert_eq!(w.principal(&inv), "cluster.local/ns/shop/sa/waypoint");
    // Label without the Gateway: referenced but not in the input.
    let inv = world(&[api_uses_waypoint()]);
    let svc = inv.service("shop", "api").expect("api");
    assert!(
        service_waypoint(&inv, svc)
            .expect("label")
            .gateway
            .is_none()
    );
    // Namespace label; the Service opts out with `none`.
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}}\n".to_string();
    let inv = world(std::slice::from_ref(&ns));
    let svc = inv.service("shop", "api").expect("api");
    assert_eq!(
        service_waypoint(&inv, svc).map(|w| w.source),
        Some(LabelSource::Namespace)
    );
    let none = api_uses_waypoint().replace(
        "istio.io/use-waypoint: waypoint",
        "istio.io/use-waypoint: none",
    );
    let inv = world(&[ns, none]);
    let svc = inv.service("shop", "api").expect("api");
    assert_eq!(service_waypoint(&inv, svc), None);
    // A waypoint for workload traffic only does not take Service traffic.
    let wl = WAYPOINT_GATEWAY.replace(
        "istio.io/waypoint-for: service",
        "istio.io/waypoint-for: workload",
    );
    let inv = world(&[wl, api_uses_waypoint()]);
    let svc = inv.service("shop", "api").expect("api");
    let w = service_waypoint(&inv, svc).expect("label");
    assert!(!w.gateway.expect("gateway").takes_service_traffic());
}

#[test]
#[rustfmt::skip]
fn plaintext_clients_do_not_pass_the_waypoint() {
    // [zt] `inbound_passthrough.rs`: plaintext into an ambient pod is checked by the pod's
    // ztunnel with no identity; no waypoint is involved. A webhook port that kube-apiserver
    // calls behind a waypointed Service therefore needs an L4 rule, not a waypoint rule.
    let l7 = ap("shop", "api-l7", r#"{targetRefs: [{kind: Service, group: "", name: api}], rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/client"]}}]}]}"#);
    let l4 = on_api("api-l4", r#"rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/waypoint"]}}]}, {to: [{operation: {ports: ["9000"]}}]}]"#);
    let inv = world(&[WAYPOINT_GATEWAY.to_string(), api_uses_waypoint(), l7, l4]);
    table(&inv, &[
        ("plaintext: L4 port rule at ztunnel, no waypoint", PLAIN,  9000, TCP, ALLOW_PLAIN),
        ("plaintext: the waypoint's principal is not its",  PLAIN,  8000, GET, RESET),
        ("mesh client: through the waypoint",               CLIENT, 8000, GET, ALLOW_MTLS),
    ]);
    let v = call(&inv, PLAIN, 9000, &TCP);
    assert!(explains(&v, "A6.4", "does not pass it"), "{}", text(&v));
}

// ---------------------------------------------------------------------------------------------
// NetworkPolicy under ambient: HBONE arrives on 15008

#[test]
#[rustfmt::skip]
fn network_policies_see_hbone_on_15008() {
    // istio.io `docs/ambient/usage/networkpolicy`: "ambient's secure L4 overlay will tunnel
    // traffic between your pods over port 15008 [...] you will have to add an exception to that
    // NetworkPolicy for port 15008".
    let np = |name: &str, ports: &str| format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  podSelector: {{matchLabels: {{app: api}}}}\n  policyTypes: [Ingress]\n  ingress: [{{ports: [{ports}]}}]\n");
    let inv = world(&[np("api-8080", "{port: 8080}")]);
    let blocked = (Outcome::Blocked, None);
    table(&inv, &[
        ("ambient client: HBONE on 15008 is not admitted", CLIENT, 8000, GET, blocked),
        ("plaintext client: port 8080 admitted",           PLAIN,  8000, GET, ALLOW_PLAIN),
    ]);
    let inv = world(&[np("api-8080", "{port: 8080}, {port: 15008}")]);
    table(&inv, &[("ambient client: 15008 admitted", CLIENT, 8000, GET, ALLOW_MTLS)]);
    // Behind a waypoint the hops are client -> waypoint and waypoint -> pod, both on 15008:
    // a same-namespace-only policy on every pod of `shop` (Kubeflow's
    // `default-allow-same-namespace`) admits shop/client but blocks a client from another
    // namespace at the waypoint.
    let same_ns = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: same-ns, namespace: shop}\nspec:\n  podSelector: {}\n  ingress: [{from: [{podSelector: {}}]}]\n".to_string();
    let elsewhere = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team, labels: {istio.io/dataplane-mode: ambient}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: runner, namespace: team}\nspec:\n  template:\n    metadata: {labels: {app: runner}}\n    spec: {serviceAccountName: runner, containers: [{name: c}]}\n".to_string();
    let inv = world(&[WAYPOINT_GATEWAY.to_string(), api_uses_waypoint(), same_ns, elsewhere]);
    table(&inv, &[
        ("same namespace, through the waypoint",  CLIENT,      8000, GET, ALLOW_MTLS),
        ("other namespace: blocked at the waypoint", "team/runner", 8000, GET, blocked),
    ]);
    let v = call(&inv, "team/runner", 8000, &GET);
    assert!(explains(&v, "NP", "through waypoint shop/waypoint"), "{}", text(&v));
}

#[test]
#[rustfmt::skip]
fn http_attributes_as_ztunnel_sees_them() {
    use kfp_mesh_core::mesh::authz::ztunnel_http_attributes;
    // [conv] httpOperations, httpSources, l4WhenAttributes.
    let rows: &[(&str, &[&str])] = &[
        (r#"{from: [{source: {principals: [a], namespaces: [b], ipBlocks: ["10.0.0.0/8"], serviceAccounts: [c]}}], to: [{operation: {ports: ["80"]}}]}"#, &[]),
        (r#"{when: [{key: source.ip, values: ["1.2.3.4"]}, {key: source.namespace, values: [x]}, {key: source.principal, values: [p]}, {key: destination.ip, values: ["1.2.3.4"]}, {key: destination.port, values: ["80"]}]}"#, &[]),
        (r#"{to: [{operation: {methods: [GET], paths: ["/x"], notHosts: [h], ports: ["80"]}}]}"#, &["notHosts", "methods", "paths"]),
        (r#"{from: [{source: {requestPrincipals: ["*"], notRemoteIpBlocks: ["0.0.0.0/0"]}}]}"#, &["requestPrincipals", "notRemoteIpBlocks"]),
        (r#"{when: [{key: "request.headers[kubeflow-userid]", notValues: ["*"]}, {key: source.serviceAccount, values: [x]}]}"#, &["when request.headers[kubeflow-userid] notValues", "when source.serviceAccount"]),
    ];
    for (rule, want) in rows {
        let r: kfp_mesh_core::model::Rule = serde_saphyr::from_str(rule).expect("rule");
        assert_eq!(ztunnel_http_attributes(&r), want.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{rule}");
    }
}
