//! AuthorizationPolicy on real Envoys: ALLOW and DENY on principals (exact, prefix, suffix,
//! `*`), namespaces, `not*` fields, methods, paths (exact, prefix, suffix), headers, ports,
//! HTTP-only fields on a TCP port, several policies at once, dry-run, and callers with no
//! identity (plaintext into PERMISSIVE) against principal rules.
//!
//! Each world has one namespace `shop` (PERMISSIVE, the default) with one server Deployment per
//! policy under test (`app: <server>`, HTTP port 8000→8080 and TCP port 9000), and four
//! callers: `shop/frontend` and `shop/reporter` and `other/intruder` with sidecars, and
//! `legacy/curl` without one (no identity).

mod common;
mod support;

use common::*;
use support::world::{Req, World, check};

const FRONTEND: &str = "shop/frontend";
const REPORTER: &str = "shop/reporter";
const INTRUDER: &str = "other/intruder";
const LEGACY: &str = "legacy/curl";

/// The namespaces, callers and one server per `(name, policies)`.
fn shop(servers: &[(&str, String)]) -> String {
    let mut s = namespace("shop", true)
        + &namespace("other", true)
        + &namespace("legacy", false)
        + &workload("shop", "frontend", "frontend", &[], None)
        + &workload("shop", "reporter", "reporter", &[], None)
        + &workload("other", "intruder", "intruder", &[], None)
        + &workload("legacy", "curl", "curl", &[], None);
    for (name, policies) in servers {
        s += &server("shop", name);
        s += policies;
    }
    s
}

fn http(server: &str) -> String {
    format!("shop/{server}:8000")
}
fn tcp(server: &str) -> String {
    format!("shop/{server}:9000")
}

fn allow(server: &str, rules: &str) -> String {
    policy(
        "shop",
        server,
        server,
        &format!("  action: ALLOW\n  rules:\n{rules}"),
    )
}
fn deny(server: &str, name: &str, rules: &str) -> String {
    policy(
        "shop",
        name,
        server,
        &format!("  action: DENY\n  rules:\n{rules}"),
    )
}

#[tokio::test]
async fn envoy_authz_identities() {
    let servers = [
        (
            "p-exact",
            allow(
                "p-exact",
                "  - from:\n    - source:\n        principals: [\"cluster.local/ns/shop/sa/frontend\"]\n",
            ),
        ),
        (
            "p-prefix",
            allow(
                "p-prefix",
                "  - from:\n    - source:\n        principals: [\"cluster.local/ns/shop/*\"]\n",
            ),
        ),
        (
            "p-suffix",
            allow(
                "p-suffix",
                "  - from:\n    - source:\n        principals: [\"*/sa/reporter\"]\n",
            ),
        ),
        (
            "p-any",
            allow(
                "p-any",
                "  - from:\n    - source:\n        principals: [\"*\"]\n",
            ),
        ),
        (
            "ns-exact",
            allow(
                "ns-exact",
                "  - from:\n    - source:\n        namespaces: [\"shop\"]\n",
            ),
        ),
        (
            "ns-prefix",
            allow(
                "ns-prefix",
                "  - from:\n    - source:\n        namespaces: [\"sh*\"]\n",
            ),
        ),
        (
            "not-ns",
            allow(
                "not-ns",
                "  - from:\n    - source:\n        notNamespaces: [\"other\"]\n",
            ),
        ),
        (
            "not-principal",
            allow(
                "not-principal",
                "  - from:\n    - source:\n        notPrincipals: [\"cluster.local/ns/shop/sa/frontend\"]\n",
            ),
        ),
        (
            "deny-plaintext",
            deny(
                "deny-plaintext",
                "deny-plaintext",
                "  - from:\n    - source:\n        notPrincipals: [\"*\"]\n",
            ),
        ),
        (
            "deny-intruder",
            deny(
                "deny-intruder",
                "deny-intruder",
                "  - from:\n    - source:\n        principals: [\"cluster.local/ns/other/sa/intruder\"]\n",
            ),
        ),
    ];
    let text = shop(&servers);
    let get = || Req::get("/");
    let world = World::new("authz: identities", &[("authz-identities.yaml", &text)])
        // exact principal
        .probe(FRONTEND, &http("p-exact"), get())
        .probe(REPORTER, &http("p-exact"), get())
        .probe(INTRUDER, &http("p-exact"), get())
        .probe(LEGACY, &http("p-exact"), get())
        .probe(FRONTEND, &tcp("p-exact"), Req::Tcp)
        .probe(INTRUDER, &tcp("p-exact"), Req::Tcp)
        .probe(LEGACY, &tcp("p-exact"), Req::Tcp)
        // prefix, suffix, presence
        .probe(REPORTER, &http("p-prefix"), get())
        .probe(INTRUDER, &http("p-prefix"), get())
        .probe(REPORTER, &http("p-suffix"), get())
        .probe(FRONTEND, &http("p-suffix"), get())
        .probe(INTRUDER, &http("p-any"), get())
        .probe(LEGACY, &http("p-any"), get())
        .probe(LEGACY, &tcp("p-any"), Req::Tcp)
        // namespaces
        .probe(FRONTEND, &http("ns-exact"), get())
        .probe(INTRUDER, &http("ns-exact"), get())
        .probe(LEGACY, &http("ns-exact"), get())
        .probe(INTRUDER, &tcp("ns-exact"), Req::Tcp)
        .probe(REPORTER, &http("ns-prefix"), get())
        .probe(INTRUDER, &http("ns-prefix"), get())
        // not* fields: a plaintext caller has no namespace or principal, so NOT matches it
        .probe(LEGACY, &http("not-ns"), get())
        .probe(FRONTEND, &http("not-ns"), get())
        .probe(INTRUDER, &http("not-ns"), get())
        .probe(REPORTER, &http("not-principal"), get())
        .probe(FRONTEND, &http("not-principal"), get())
        .probe(LEGACY, &http("not-principal"), get())
        // DENY notPrincipals ["*"]: the "deny non-mTLS" idiom
        .probe(LEGACY, &http("deny-plaintext"), get())
        .probe(LEGACY, &tcp("deny-plaintext"), Req::Tcp)
        .probe(FRONTEND, &http("deny-plaintext"), get())
        .probe(INTRUDER, &http("deny-intruder"), get())
        .probe(INTRUDER, &tcp("deny-intruder"), Req::Tcp)
        .probe(FRONTEND, &http("deny-intruder"), get())
        .probe(LEGACY, &http("deny-intruder"), get());
    check(world).await;
}

#[tokio::test]
async fn envoy_authz_request_attributes() {
    let servers = [
        (
            "methods",
            allow(
                "methods",
                "  - to:\n    - operation:\n        methods: [\"GET\", \"HEAD\"]\n",
            ),
        ),
        (
            "not-methods",
            allow(
                "not-methods",
                "  - to:\n    - operation:\n        notMethods: [\"DELETE\"]\n",
            ),
        ),
        (
            "paths",
            allow(
                "paths",
                "  - to:\n    - operation:\n        paths: [\"/api/v1/status\", \"/static/*\", \"*.png\"]\n",
            ),
        ),
        (
            "deny-admin",
            deny(
                "deny-admin",
                "deny-admin",
                "  - to:\n    - operation:\n        paths: [\"/admin/*\"]\n",
            ),
        ),
        (
            "headers",
            allow(
                "headers",
                "  - when:\n    - key: request.headers[x-team]\n      values: [\"blue\"]\n",
            ),
        ),
        (
            "no-debug-header",
            allow(
                "no-debug-header",
                "  - when:\n    - key: request.headers[x-debug]\n      notValues: [\"*\"]\n",
            ),
        ),
        (
            "ports",
            allow(
                "ports",
                "  - to:\n    - operation:\n        ports: [\"8080\"]\n",
            ),
        ),
        (
            "deny-not-ports",
            deny(
                "deny-not-ports",
                "deny-not-ports",
                "  - to:\n    - operation:\n        notPorts: [\"8080\"]\n",
            ),
        ),
    ];
    let text = shop(&servers);
    let req = |m: &str, p: &str| Req::http(m, p, &[]);
    let world = World::new(
        "authz: request attributes",
        &[("authz-request.yaml", &text)],
    )
    // methods
    .probe(FRONTEND, &http("methods"), req("GET", "/"))
    .probe(FRONTEND, &http("methods"), req("POST", "/"))
    .probe(FRONTEND, &tcp("methods"), Req::Tcp)
    .probe(FRONTEND, &http("not-methods"), req("GET", "/"))
    .probe(FRONTEND, &http("not-methods"), req("DELETE", "/items/1"))
    // paths: exact, prefix, suffix
    .probe(FRONTEND, &http("paths"), req("GET", "/api/v1/status"))
    .probe(FRONTEND, &http("paths"), req("GET", "/api/v1/status/extra"))
    .probe(FRONTEND, &http("paths"), req("GET", "/static/app.js"))
    .probe(FRONTEND, &http("paths"), req("GET", "/img/logo.png"))
    .probe(FRONTEND, &http("paths"), req("GET", "/admin"))
    .probe(FRONTEND, &http("deny-admin"), req("GET", "/admin/users"))
    .probe(FRONTEND, &http("deny-admin"), req("GET", "/public"))
    .probe(LEGACY, &http("deny-admin"), req("GET", "/admin/users"))
    // DENY with only HTTP fields on a TCP port: the field is dropped, so all TCP is denied
    .probe(FRONTEND, &tcp("deny-admin"), Req::Tcp)
    // headers
    .probe(
        FRONTEND,
        &http("headers"),
        Req::http("GET", "/", &[("x-team", "blue")]),
    )
    .probe(
        FRONTEND,
        &http("headers"),
        Req::http("GET", "/", &[("x-team", "red")]),
    )
    .probe(FRONTEND, &http("headers"), req("GET", "/"))
    .probe(
        LEGACY,
        &http("headers"),
        Req::http("GET", "/", &[("x-team", "blue")]),
    )
    .probe(FRONTEND, &http("no-debug-header"), req("GET", "/"))
    .probe(
        FRONTEND,
        &http("no-debug-header"),
        Req::http("GET", "/", &[("x-debug", "1")]),
    )
    // ports are container ports
    .probe(FRONTEND, &http("ports"), req("GET", "/"))
    .probe(FRONTEND, &tcp("ports"), Req::Tcp)
    .probe(FRONTEND, &http("deny-not-ports"), req("GET", "/"))
    .probe(FRONTEND, &tcp("deny-not-ports"), Req::Tcp);
    check(world).await;
}

#[tokio::test]
async fn envoy_authz_tcp_several_policies_and_dry_run() {
    let servers = [
        // ALLOW rule with an HTTP field: skipped on the TCP chain, so TCP is denied.
        (
            "allow-get",
            allow(
                "allow-get",
                "  - from:\n    - source:\n        principals: [\"cluster.local/ns/shop/sa/frontend\"]\n    to:\n    - operation:\n        methods: [\"GET\"]\n",
            ),
        ),
        // DENY {methods: [GET], ports: [8080]}: on TCP only the port stays, 9000 is allowed.
        (
            "deny-get-8080",
            deny(
                "deny-get-8080",
                "deny-get-8080",
                "  - to:\n    - operation:\n        methods: [\"GET\"]\n        ports: [\"8080\"]\n",
            ),
        ),
        // Several policies: two ALLOWs and a DENY that wins over them.
        (
            "several",
            allow(
                "several",
                "  - from:\n    - source:\n        principals: [\"cluster.local/ns/shop/sa/frontend\"]\n",
            ) + &policy(
                "shop",
                "several-reports",
                "several",
                "  action: ALLOW\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/shop/sa/reporter\"]\n    to:\n    - operation:\n        paths: [\"/reports/*\"]\n",
            ) + &deny(
                "several",
                "several-secret",
                "  - to:\n    - operation:\n        paths: [\"/reports/secret\"]\n",
            ),
        ),
        // Dry-run policies never decide; a dry-run ALLOW does not count as an ALLOW policy.
        (
            "dry-run",
            policy_annotated(
                "shop",
                "dry-run-deny-all",
                "dry-run",
                "istio.io/dry-run: \"true\"",
                "  action: DENY\n  rules:\n  - {}\n",
            ) + &policy_annotated(
                "shop",
                "dry-run-allow-nobody",
                "dry-run",
                "istio.io/dry-run: \"true\"",
                "  action: ALLOW\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/shop/sa/nobody\"]\n",
            ),
        ),
        // ALLOW without rules: allow-nothing.
        (
            "allow-nothing",
            policy("shop", "allow-nothing", "allow-nothing", ""),
        ),
        (
            "when-source-ns",
            allow(
                "when-source-ns",
                "  - when:\n    - key: source.namespace\n      values: [\"shop\"]\n",
            ),
        ),
    ];
    let text = shop(&servers);
    let req = |m: &str, p: &str| Req::http(m, p, &[]);
    let world = World::new(
        "authz: TCP, several policies, dry-run",
        &[("authz-mixed.yaml", &text)],
    )
    .probe(FRONTEND, &http("allow-get"), req("GET", "/"))
    .probe(FRONTEND, &http("allow-get"), req("POST", "/"))
    .probe(FRONTEND, &tcp("allow-get"), Req::Tcp)
    .probe(FRONTEND, &http("deny-get-8080"), req("GET", "/"))
    .probe(FRONTEND, &http("deny-get-8080"), req("POST", "/"))
    .probe(FRONTEND, &tcp("deny-get-8080"), Req::Tcp)
    .probe(FRONTEND, &http("several"), req("GET", "/anything"))
    .probe(REPORTER, &http("several"), req("GET", "/reports/q1"))
    .probe(REPORTER, &http("several"), req("GET", "/anything"))
    .probe(FRONTEND, &http("several"), req("GET", "/reports/secret"))
    .probe(INTRUDER, &http("several"), req("GET", "/reports/q1"))
    .probe(FRONTEND, &tcp("several"), Req::Tcp)
    .probe(REPORTER, &tcp("several"), Req::Tcp)
    .probe(FRONTEND, &http("dry-run"), req("GET", "/"))
    .probe(LEGACY, &http("dry-run"), req("GET", "/"))
    .probe(INTRUDER, &tcp("dry-run"), Req::Tcp)
    .probe(FRONTEND, &http("allow-nothing"), req("GET", "/"))
    .probe(FRONTEND, &tcp("allow-nothing"), Req::Tcp)
    .probe(FRONTEND, &http("when-source-ns"), req("GET", "/"))
    .probe(INTRUDER, &http("when-source-ns"), req("GET", "/"))
    .probe(LEGACY, &tcp("when-source-ns"), Req::Tcp);
    check(world).await;
}

/// `paths` match the path Envoy normalized (`istio-semantics.md` D4), as
/// `meshConfig.pathNormalization` makes istiod program the HTTP connection managers: Istio's
/// default BASE decodes percent-encoded unreserved characters (`/v%31` is `/v1`) and resolves
/// dot segments, but keeps `%2F` and `//`; MERGE_SLASHES merges `//`; DECODE_AND_MERGE_SLASHES
/// also decodes `%2F`; NONE leaves the path alone. One world per mode, the same policies:
/// ALLOW `/v1`, `/admin/*`, `/public/*`, DENY `/admin/*`.
#[tokio::test]
async fn envoy_authz_path_normalization() {
    let policies = allow(
        "paths",
        "  - to:\n    - operation:\n        paths: [\"/v1\", \"/admin/*\", \"/public/*\"]\n",
    ) + &deny(
        "paths",
        "deny-admin",
        "  - to:\n    - operation:\n        paths: [\"/admin/*\"]\n",
    );
    let mesh = |mode: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n  mesh: |\n    pathNormalization:\n      normalization: {mode}\n---\n"
        )
    };
    let text = shop(&[("paths", policies)]);
    let get = Req::get;
    let cases = |w: World, callers: &[&str], paths: &[&str]| {
        let mut w = w;
        for c in callers {
            for p in paths {
                w = w.probe(c, &http("paths"), get(p));
            }
        }
        w
    };
    let paths = [
        "/v1",
        "/v%31",
        "/%76%31",
        "/v2",
        "/public/%2e%2e/v1",
        "/%61dmin/users",
        "/public/../admin/x",
        "/public%2Fx",
        "/admin%2Fusers",
        "//v1",
    ];
    for mode in [
        None,
        Some("MERGE_SLASHES"),
        Some("DECODE_AND_MERGE_SLASHES"),
        Some("NONE"),
    ] {
        let input = match mode {
            None => text.clone(),
            Some(m) => text.clone() + &mesh(m),
        };
        let world = World::new(
            &format!(
                "authz: path normalization {}",
                mode.unwrap_or("BASE (default)")
            ),
            &[("authz-paths.yaml", &input)],
        );
        check(cases(world, &[FRONTEND, LEGACY], &paths)).await;
    }
}

/// A CUSTOM policy whose provider istiod cannot build (`istio-semantics.md` D2,
/// `builder/extauthz.go`): missing from `meshConfig.extensionProviders`, of another kind, with
/// a port out of range, or several providers on one workload. istiod turns its rules into an
/// RBAC DENY ("will generate deny configs"), so what the CUSTOM rules match is denied, on
/// the HTTP and (with the HTTP-only `paths` dropped) the TCP chain; the rest is allowed.
#[tokio::test]
async fn envoy_authz_custom_provider_fails_closed() {
    let mesh = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n  mesh: |\n    extensionProviders:\n    - name: bad-port\n      envoyExtAuthzGrpc: {service: ext-authz.shop.svc.cluster.local, port: 70000}\n    - name: tracing\n      zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}\n    - name: grpc-a\n      envoyExtAuthzGrpc: {service: ext-authz.shop.svc.cluster.local, port: 9000}\n    - name: grpc-b\n      envoyExtAuthzGrpc: {service: ext-authz.shop.svc.cluster.local, port: 9001}\n---\n";
    let custom = |server: &str, name: &str, provider: &str| {
        policy(
            "shop",
            name,
            server,
            &format!(
                "  action: CUSTOM\n  provider:\n    name: {provider}\n  rules:\n  - to:\n    - operation:\n        paths: [\"/admin/*\"]\n"
            ),
        )
    };
    let servers = [
        ("c-bad-port", custom("c-bad-port", "c-bad-port", "bad-port")),
        ("c-missing", custom("c-missing", "c-missing", "nope")),
        ("c-tracing", custom("c-tracing", "c-tracing", "tracing")),
        (
            "c-two",
            custom("c-two", "c-two-a", "grpc-a") + &custom("c-two", "c-two-b", "grpc-b"),
        ),
    ];
    let text = shop(&servers) + mesh;
    let mut world = World::new(
        "authz: CUSTOM fails closed",
        &[("authz-custom.yaml", &text)],
    );
    for (server, _) in &servers {
        world = world
            .probe(FRONTEND, &http(server), Req::get("/admin/users"))
            .probe(FRONTEND, &http(server), Req::get("/public"))
            .probe(LEGACY, &http(server), Req::get("/admin/users"))
            .probe(FRONTEND, &tcp(server), Req::Tcp);
    }
    check(world).await;
}
