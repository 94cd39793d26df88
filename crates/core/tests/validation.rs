//! Truth tables for `istio-semantics.md` E1 (PeerAuthentication), E2 (AuthorizationPolicy) and
//! the DestinationRule checks: every row is a manifest read through `Inventory::from_sources`,
//! and the object must land in `inv.rejected` (with the row code), in `inv.warnings`, or in
//! the effective lists only.

use kfp_mesh_core::inventory::{Inventory, Rejected};
use kfp_mesh_core::mesh::validation::Severity;

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Rejected: an error with this code; the object takes no effect.
    Reject(&'static str),
    /// Takes effect, with a warning of this code.
    Warn(&'static str),
    /// Takes effect, no issue at all.
    Accept,
}
use Expect::*;

/// (row name, `spec` in YAML flow style, expectation, text an issue message must contain).
type Row = (&'static str, &'static str, Expect, &'static str);

#[derive(Clone, Copy)]
enum Kind {
    PeerAuthentication,
    AuthorizationPolicy,
    DestinationRule,
}

impl Kind {
    fn header(self) -> (&'static str, &'static str) {
        match self {
            Kind::PeerAuthentication => ("security.istio.io/v1", "PeerAuthentication"),
            Kind::AuthorizationPolicy => ("security.istio.io/v1", "AuthorizationPolicy"),
            Kind::DestinationRule => ("networking.istio.io/v1", "DestinationRule"),
        }
    }
    fn effective(self, inv: &Inventory, name: &str) -> bool {
        match self {
            Kind::PeerAuthentication => inv
                .peer_authentications_in("demo")
                .iter()
                .any(|r| r.name() == name),
            Kind::AuthorizationPolicy => inv
                .authorization_policies_in("demo")
                .iter()
                .any(|r| r.name() == name),
            Kind::DestinationRule => inv
                .destination_rules_in("demo")
                .iter()
                .any(|r| r.name() == name),
        }
    }
}

fn manifest(kind: Kind, annotations: &str, spec: &str) -> String {
    let (api, kind) = kind.header();
    format!(
        "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: subject\n  namespace: demo\n  annotations: {annotations}\nspec: {spec}\n"
    )
}

fn find<'a>(list: &'a [Rejected], name: &str) -> Option<&'a Rejected> {
    list.iter().find(|r| r.object.object.name == name)
}

/// Check one row; `Err` describes the mismatch.
fn check_row(kind: Kind, annotations: &str, row: &Row) -> Result<(), String> {
    let (_, spec, expect, text) = *row;
    let yaml = manifest(kind, annotations, spec);
    let inv = Inventory::from_sources([("test.yaml", yaml.as_str())]);
    if !inv.errors.is_empty() {
        return Err(format!("input errors: {:?}", inv.errors));
    }
    let rejected = find(&inv.rejected, "subject");
    let warned = find(&inv.warnings, "subject");
    let effective = kind.effective(&inv, "subject");
    let issues = rejected
        .or(warned)
        .map(|r| r.issues.as_slice())
        .unwrap_or_default();
    let show = || {
        issues
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    match expect {
        Reject(code) => {
            if rejected.is_none() || effective {
                return Err(format!("expected rejection {code}, got [{}]", show()));
            }
            if !issues
                .iter()
                .any(|i| i.code == code && i.severity == Severity::Error)
            {
                return Err(format!("expected error {code}, got [{}]", show()));
            }
        }
        Warn(code) => {
            if rejected.is_some() || !effective {
                return Err(format!("expected only warning {code}, got [{}]", show()));
            }
            if !issues
                .iter()
                .any(|i| i.code == code && i.severity == Severity::Warning)
            {
                return Err(format!("expected warning {code}, got [{}]", show()));
            }
        }
        Accept => {
            if rejected.is_some() || warned.is_some() || !effective {
                return Err(format!("expected clean acceptance, got [{}]", show()));
            }
        }
    }
    if !text.is_empty() && !issues.iter().any(|i| i.message.contains(text)) {
        return Err(format!("no message contains {text:?}: [{}]", show()));
    }
    Ok(())
}

fn run_table(kind: Kind, annotations: &str, rows: &[Row]) {
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            check_row(kind, annotations, row)
                .err()
                .map(|e| format!("row {:?}: {e}", row.0))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// E1: PeerAuthentication

#[rustfmt::skip]
const PEER_AUTHENTICATION: &[Row] = &[
    ("P1 portLevelMtls without selector",
     r#"{portLevelMtls: {"8080": {mode: DISABLE}}}"#,
     Reject("P1"), "portLevelMtls: mesh/namespace peer authentication cannot have port level mTLS"),
    ("P1 portLevelMtls with selector {}",
     r#"{selector: {}, portLevelMtls: {"8080": {mode: DISABLE}}}"#, Reject("P1"), ""),
    ("P1 portLevelMtls with empty matchLabels",
     r#"{selector: {matchLabels: {}}, portLevelMtls: {"8080": {mode: DISABLE}}}"#, Reject("P1"), ""),
    ("P2 portLevelMtls: {}",
     r#"{selector: {matchLabels: {app: a}}, portLevelMtls: {}}"#,
     Reject("P2"), "port level mTLS, if defined, must have at least one element"),
    ("P3 port 0",
     r#"{selector: {matchLabels: {app: a}}, portLevelMtls: {"0": {mode: DISABLE}}}"#,
     Reject("P3"), r#"portLevelMtls["0"]: port must be in range 1..65535"#),
    ("P3 port 65536",
     r#"{selector: {matchLabels: {app: a}}, portLevelMtls: {"65536": {mode: STRICT}}}"#, Reject("P3"), "65536"),
    ("P3 port not a number",
     r#"{selector: {matchLabels: {app: a}}, portLevelMtls: {http: {mode: STRICT}}}"#, Reject("P3"), "http"),
    ("P4 empty selector key",
     r#"{selector: {matchLabels: {"": x}}, mtls: {mode: STRICT}}"#,
     Reject("P4"), "selector.matchLabels: empty key is not supported in selector"),
    ("P5 wildcard in selector value",
     r#"{selector: {matchLabels: {app: "web*"}}}"#, Reject("P5"), "wildcard is not supported in selector: \"app=web*\""),
    ("P5 wildcard in selector key",
     r#"{selector: {matchLabels: {"app*": web}}}"#, Reject("P5"), ""),
    ("W1 selector: {}",
     r#"{selector: {}, mtls: {mode: STRICT}}"#, Warn("W1"), "selector: workload selector specified without labels"),
    ("W1 selector with empty matchLabels",
     r#"{selector: {matchLabels: {}}, mtls: {mode: PERMISSIVE}}"#, Warn("W1"), ""),
    // Valid policies (istio.io authn-policy and mtls-migration tasks).
    ("ok mesh-wide STRICT", r#"{mtls: {mode: STRICT}}"#, Accept, ""),
    ("ok empty spec", r#"{}"#, Accept, ""),
    ("ok namespace PERMISSIVE", r#"{mtls: {mode: PERMISSIVE}}"#, Accept, ""),
    ("ok workload portLevelMtls (quoted key)",
     r#"{selector: {matchLabels: {app: httpbin}}, mtls: {mode: STRICT}, portLevelMtls: {"8080": {mode: DISABLE}}}"#, Accept, ""),
    ("ok workload portLevelMtls (plain key)",
     r#"{selector: {matchLabels: {app: httpbin}}, mtls: {mode: STRICT}, portLevelMtls: {80: {mode: DISABLE}}}"#, Accept, ""),
    ("ok workload UNSET mode",
     r#"{selector: {matchLabels: {app: a}}, portLevelMtls: {"9000": {mode: UNSET}}}"#, Accept, ""),
];

#[test]
fn e1_peer_authentication_table() {
    run_table(Kind::PeerAuthentication, "{}", PEER_AUTHENTICATION);
}

// ---------------------------------------------------------------------------------------------
// E2: AuthorizationPolicy

#[rustfmt::skip]
const AUTHORIZATION_POLICY: &[Row] = &[
    // A1
    ("A1 selector and targetRef",
     r#"{selector: {matchLabels: {app: a}}, targetRef: {kind: Service, group: "", name: a}}"#,
     Reject("A1"), "only one of targetRefs or workloadSelector can be set"),
    ("A1 selector and targetRefs",
     r#"{selector: {matchLabels: {app: a}}, targetRefs: [{kind: Service, group: "", name: a}]}"#, Reject("A1"), "selector, targetRefs"),
    ("A1 targetRef and targetRefs",
     r#"{targetRef: {kind: Service, name: a}, targetRefs: [{kind: Service, name: b}]}"#, Reject("A1"), ""),
    // A2
    ("A2 targetRef without name",
     r#"{targetRef: {kind: Service, group: ""}}"#, Reject("A2"), "targetRef: targetRef name must be set"),
    ("A2 targetRefs with namespace",
     r#"{targetRefs: [{kind: Service, group: "", name: a, namespace: other}]}"#,
     Reject("A2"), "targetRefs[0]: targetRef namespace must not be set; cross namespace referencing is not supported"),
    ("A2 targetRef to a Deployment",
     r#"{targetRef: {kind: Deployment, group: apps, name: a}}"#, Reject("A2"), "but was apps/Deployment"),
    ("A2 Gateway in the core group",
     r#"{targetRefs: [{kind: Gateway, name: waypoint}]}"#, Reject("A2"), "/Gateway"),
    ("A2 more than 16 targetRefs",
     r#"{targetRefs: [{kind: Service, name: s1}, {kind: Service, name: s2}, {kind: Service, name: s3}, {kind: Service, name: s4}, {kind: Service, name: s5}, {kind: Service, name: s6}, {kind: Service, name: s7}, {kind: Service, name: s8}, {kind: Service, name: s9}, {kind: Service, name: s10}, {kind: Service, name: s11}, {kind: Service, name: s12}, {kind: Service, name: s13}, {kind: Service, name: s14}, {kind: Service, name: s15}, {kind: Service, name: s16}, {kind: Service, name: s17}]}"#,
     Reject("A2"), "at most 16"),
    // A3
    ("A3 empty selector key",
     r#"{selector: {matchLabels: {"": a}}, rules: [{}]}"#, Reject("A3"), "empty key is not supported in selector"),
    ("A3 wildcard selector value",
     r#"{selector: {matchLabels: {app: "*"}}, rules: [{}]}"#, Reject("A3"), "wildcard is not supported in selector"),
    ("W-A3 selector without labels",
     r#"{selector: {}, rules: [{}]}"#, Warn("W-A3"), "selector: workload selector specified without labels"),
    // A4, A5, A6: CUSTOM
    ("A4 CUSTOM without rules",
     r#"{action: CUSTOM, provider: {name: ext-authz}}"#, Reject("A4"), "CUSTOM action without `rules` is meaningless"),
    ("A5 CUSTOM without provider",
     r#"{action: CUSTOM, rules: [{}]}"#, Reject("A5"), "provider.name: `provider.name` must not be empty"),
    ("A5 CUSTOM with empty provider name",
     r#"{action: CUSTOM, provider: {name: ""}, rules: [{}]}"#, Reject("A5"), ""),
    ("A5 provider on ALLOW",
     r#"{provider: {name: ext-authz}, rules: [{}]}"#, Reject("A5"), "`provider` must not be with non CUSTOM action, found ALLOW"),
    ("A5 provider on DENY",
     r#"{action: DENY, provider: {name: ext-authz}, rules: [{}]}"#, Reject("A5"), "found DENY"),
    ("A6 CUSTOM with namespaces",
     r#"{action: CUSTOM, provider: {name: x}, rules: [{from: [{source: {namespaces: [foo]}}]}]}"#,
     Reject("A6"), "rules[0].from[0].source.namespaces: From.Namespaces is currently not supported with CUSTOM action"),
    ("A6 CUSTOM with notPrincipals",
     r#"{action: CUSTOM, provider: {name: x}, rules: [{from: [{source: {notPrincipals: [a]}}]}]}"#, Reject("A6"), "From.NotPrincipals"),
    ("A6 CUSTOM with requestPrincipals",
     r#"{action: CUSTOM, provider: {name: x}, rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]}"#, Reject("A6"), "From.RequestPrincipals"),
    ("A6 CUSTOM with serviceAccounts",
     r#"{action: CUSTOM, provider: {name: x}, rules: [{from: [{source: {serviceAccounts: [sa]}}]}]}"#, Reject("A6"), "From.ServiceAccounts"),
    ("A6 CUSTOM with trustDomains",
     r#"{action: CUSTOM, provider: {name: x}, rules: [{from: [{source: {trustDomains: [td]}}]}]}"#, Reject("A6"), "From.TrustDomains"),
    ("A6 CUSTOM with when source.principal",
     r#"{action: CUSTOM, provider: {name: x}, rules: [{when: [{key: source.principal, values: [a]}]}]}"#,
     Reject("A6"), "rules[0].when[0].key: source.principal is currently not supported with CUSTOM action"),
    ("A6 CUSTOM with when source.namespace",
     r#"{action: CUSTOM, provider: {name: x}, rules: [{when: [{key: source.namespace, values: [a]}]}]}"#, Reject("A6"), ""),
    ("A6 CUSTOM with when request.auth.claims",
     r#"{action: CUSTOM, provider: {name: x}, rules: [{when: [{key: "request.auth.claims[iss]", values: [a]}]}]}"#, Reject("A6"), "request.auth.claims[iss]"),
    ("A6 CUSTOM with nil when",
     r#"{action: CUSTOM, provider: {name: x}, rules: [{when: [null]}]}"#, Reject("A6"), "rules[0].when[0]: when field cannot be nil"),
    ("ok CUSTOM with ipBlocks and paths",
     r#"{action: CUSTOM, provider: {name: x}, rules: [{from: [{source: {ipBlocks: [10.0.0.0/8]}}], to: [{operation: {paths: ["/admin/*"]}}]}]}"#, Accept, ""),
    // A7
    ("A7 DENY without rules",
     r#"{action: DENY}"#, Reject("A7"), "rules: DENY action without `rules` is meaningless"),
    ("A7 not for DENY with rules: [] (absent is not empty; never matches)",
     r#"{action: DENY, rules: []}"#, Accept, ""),
    ("A7 not for AUDIT without rules", r#"{action: AUDIT}"#, Accept, ""),
    // A8
    ("A8 nil rule", r#"{rules: [null]}"#, Reject("A8"), "rules[0]: `rule` must not be nil"),
    ("A8 from: []", r#"{rules: [{from: []}]}"#, Reject("A8"), "rules[0].from: `from` must not be empty"),
    ("A8 from: [null]", r#"{rules: [{from: [null]}]}"#, Reject("A8"), "rules[0].from[0]: `from` must not be nil"),
    ("A8 from without source", r#"{rules: [{from: [{}]}]}"#, Reject("A8"), "rules[0].from[0].source: `from.source` must not be nil"),
    ("A8 empty source (second entry)",
     r#"{rules: [{from: [{source: {principals: [a]}}, {source: {}}]}]}"#,
     Reject("A8"), "rules[0].from[1].source: `from.source` must not be empty"),
    ("A8 source with only empty lists",
     r#"{rules: [{from: [{source: {principals: [], namespaces: []}}]}]}"#, Reject("A8"), "`from.source` must not be empty"),
    ("A8 nil rule after a valid one", r#"{rules: [{}, null]}"#, Reject("A8"), "rules[1]"),
    // A9
    ("A9 to: []", r#"{rules: [{to: []}]}"#, Reject("A9"), "rules[0].to: `to` must not be empty"),
    ("A9 to: [null]", r#"{rules: [{to: [null]}]}"#, Reject("A9"), "rules[0].to[0]: `to` must not be nil"),
    ("A9 to without operation", r#"{rules: [{to: [{}]}]}"#, Reject("A9"), "rules[0].to[0].operation: `to.operation` must not be nil"),
    ("A9 empty operation", r#"{rules: [{to: [{operation: {}}]}]}"#, Reject("A9"), "`to.operation` must not be empty"),
    // A10
    ("A10 empty principal",
     r#"{rules: [{from: [{source: {principals: [""]}}]}]}"#,
     Reject("A10"), "rules[0].from[0].source.principals: empty value not allowed, found in principals"),
    ("A10 empty method",
     r#"{rules: [{to: [{operation: {methods: [GET, ""]}}]}]}"#, Reject("A10"), "found in methods"),
    ("A10 empty notNamespaces value",
     r#"{rules: [{from: [{source: {notNamespaces: [""]}}]}]}"#, Reject("A10"), "found in notNamespaces"),
    ("A10 empty when value",
     r#"{rules: [{when: [{key: source.ip, values: [""]}]}]}"#, Reject("A10"), "rules[0].when[0].values"),
    // A11
    ("A11 bad ipBlocks address",
     r#"{rules: [{from: [{source: {ipBlocks: [10.0.0.300]}}]}]}"#, Reject("A11"), "bad IP address (10.0.0.300)"),
    ("A11 bad notIpBlocks prefix",
     r#"{rules: [{from: [{source: {notIpBlocks: [10.0.0.0/33]}}]}]}"#, Reject("A11"), "bad CIDR range (10.0.0.0/33)"),
    ("A11 bad remoteIpBlocks",
     r#"{rules: [{from: [{source: {remoteIpBlocks: [example.com]}}]}]}"#, Reject("A11"), "remoteIpBlocks"),
    ("A11 bad notRemoteIpBlocks",
     r#"{rules: [{from: [{source: {notRemoteIpBlocks: ["1.2.3.4/abc"]}}]}]}"#, Reject("A11"), ""),
    // A12
    ("A12 named port", r#"{rules: [{to: [{operation: {ports: [http]}}]}]}"#, Reject("A12"), "rules[0].to[0].operation.ports: bad port (http)"),
    ("A12 port above 65535", r#"{rules: [{to: [{operation: {notPorts: ["65536"]}}]}]}"#, Reject("A12"), "bad port (65536)"),
    ("A12 negative port", r#"{rules: [{to: [{operation: {ports: ["-1"]}}]}]}"#, Reject("A12"), ""),
    ("A12 signed port", r#"{rules: [{to: [{operation: {ports: ["+80"]}}]}]}"#, Reject("A12"), ""),
    // A13
    ("A13 serviceAccounts with principals",
     r#"{rules: [{from: [{source: {serviceAccounts: [a], principals: [b]}}]}]}"#,
     Reject("A13"), "cannot set serviceAccounts with namespaces or principals"),
    ("A13 notServiceAccounts with namespaces",
     r#"{rules: [{from: [{source: {notServiceAccounts: [a], namespaces: [b]}}]}]}"#, Reject("A13"), "notServiceAccounts"),
    ("A13 wildcard service account",
     r#"{rules: [{from: [{source: {serviceAccounts: ["ns/*"]}}]}]}"#, Reject("A13"), "wildcard is not supported in serviceAccounts"),
    ("A13 too many slashes",
     r#"{rules: [{from: [{source: {serviceAccounts: [a/b/c]}}]}]}"#, Reject("A13"), "a/b/c"),
    ("A13 empty namespace part",
     r#"{rules: [{from: [{source: {serviceAccounts: [/sa]}}]}]}"#, Reject("A13"), ""),
    ("A13 more than 16 service accounts",
     r#"{rules: [{from: [{source: {serviceAccounts: [a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17]}}]}]}"#,
     Reject("A13"), "at most 16"),
    ("ok serviceAccounts", r#"{rules: [{from: [{source: {serviceAccounts: [sleep, other/curl]}}]}]}"#, Accept, ""),
    // A14
    ("A14 trust domain with inner *",
     r#"{rules: [{from: [{source: {trustDomains: ["a*b"]}}]}]}"#, Reject("A14"), "'*' must appear only once"),
    ("A14 trust domain with two *",
     r#"{rules: [{from: [{source: {notTrustDomains: ["*td*"]}}]}]}"#, Reject("A14"), ""),
    ("A14 trust domain with /",
     r#"{rules: [{from: [{source: {trustDomains: [td/ns]}}]}]}"#, Reject("A14"), "must not contain '/'"),
    ("A14 when source.trustDomain",
     r#"{rules: [{when: [{key: source.trustDomain, values: ["a*b"]}]}]}"#, Reject("A14"), ""),
    ("ok trust domains", r#"{rules: [{from: [{source: {trustDomains: ["*.corp", "td-*", "*"]}}]}]}"#, Accept, ""),
    // A15
    ("A15 {**} not last",
     r#"{rules: [{to: [{operation: {paths: ["/api/{**}/{*}"]}}]}]}"#, Reject("A15"), "{**} is not the last operator"),
    ("A15 brace outside a template",
     r#"{rules: [{to: [{operation: {paths: ["/api/{v1}"]}}]}]}"#, Reject("A15"), "beyond a supported path template"),
    ("A15 invalid literal in a templated path",
     r#"{rules: [{to: [{operation: {notPaths: ["/{*}/a b"]}}]}]}"#, Reject("A15"), "invalid string literal"),
    ("ok path templates",
     r#"{rules: [{to: [{operation: {paths: ["/api/{*}/reviews", "/static/{**}", "/headers", "/api/*", "*"]}}]}]}"#, Accept, ""),
    // A16
    ("A16 empty key", r#"{rules: [{when: [{key: "", values: [a]}]}]}"#, Reject("A16"), "rules[0].when[0].key: `key` must not be empty"),
    ("A16 nil condition", r#"{rules: [{when: [null]}]}"#, Reject("A16"), "`key` must not be empty"),
    ("A16 no values", r#"{rules: [{when: [{key: source.ip}]}]}"#,
     Reject("A16"), "at least one of `values` or `notValues` must be set for key source.ip"),
    ("A16 unknown key", r#"{rules: [{when: [{key: source.labels, values: [a]}]}]}"#, Reject("A16"), "unknown attribute: source.labels"),
    ("A16 request.headers without brackets", r#"{rules: [{when: [{key: request.headers, values: [a]}]}]}"#,
     Reject("A16"), "bad key (request.headers): should have format a[b]"),
    ("A16 request.headers[]", r#"{rules: [{when: [{key: "request.headers[]", values: [a]}]}]}"#, Reject("A16"), ""),
    ("A16 request.auth.claims without brackets", r#"{rules: [{when: [{key: request.auth.claims, values: [a]}]}]}"#, Reject("A16"), ""),
    ("A16 bad source.ip", r#"{rules: [{when: [{key: source.ip, values: [1.2.3]}]}]}"#, Reject("A16"), "bad IP address (1.2.3)"),
    ("A16 bad destination.ip notValues", r#"{rules: [{when: [{key: destination.ip, notValues: [10.0.0.0/99]}]}]}"#, Reject("A16"), "notValues"),
    ("A16 bad destination.port", r#"{rules: [{when: [{key: destination.port, values: [http]}]}]}"#, Reject("A16"), "bad port (http)"),
    ("A16 destination.namespace", r#"{rules: [{when: [{key: destination.namespace, values: [a]}]}]}"#, Reject("A16"), "replaced by the metadata.namespace"),
    ("A16 destination.labels", r#"{rules: [{when: [{key: "destination.labels[app]", values: [a]}]}]}"#, Reject("A16"), "replaced by the workload selector"),
    ("A16 destination.name", r#"{rules: [{when: [{key: destination.name, values: [a]}]}]}"#, Reject("A16"), "only supported in v1alpha1"),
    ("A16 destination.user", r#"{rules: [{when: [{key: destination.user, values: [a]}]}]}"#, Reject("A16"), ""),
    ("ok known when keys",
     r#"{rules: [{when: [{key: "request.headers[x-token]", values: [a]}, {key: source.ip, values: [10.0.0.1, 10.0.0.0/8]}, {key: remote.ip, notValues: ["::1"]}, {key: source.namespace, values: [a]}, {key: source.principal, values: ["*"]}, {key: source.serviceAccount, values: [ns/sa]}, {key: request.auth.principal, values: [a]}, {key: request.auth.audiences, values: [a]}, {key: request.auth.presenter, values: [a]}, {key: "request.auth.claims[groups]", values: [a]}, {key: destination.ip, values: [10.0.0.1]}, {key: destination.port, values: ["8080"]}, {key: connection.sni, values: [a]}, {key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: ["[update]"]}]}]}"#,
     Accept, ""),
    // W-A1
    ("W-A1 DENY with only methods",
     r#"{action: DENY, rules: [{to: [{operation: {methods: [GET]}}]}]}"#,
     Warn("W-A1"), "rules[0]: configured AuthorizationPolicy will deny all traffic to TCP ports"),
    ("W-A1 DENY with only requestPrincipals",
     r#"{action: DENY, rules: [{from: [{source: {notRequestPrincipals: ["*"]}}]}]}"#, Warn("W-A1"), ""),
    ("W-A1 DENY principals plus paths (operation has no port)",
     r#"{action: DENY, rules: [{from: [{source: {principals: [a]}}], to: [{operation: {paths: ["/x"]}}]}]}"#, Warn("W-A1"), ""),
    ("W-A1 second rule only",
     r#"{action: DENY, rules: [{to: [{operation: {ports: ["80"]}}]}, {to: [{operation: {hosts: [a.com]}}]}]}"#, Warn("W-A1"), "rules[1]"),
    ("no W-A1 for DENY methods plus ports",
     r#"{action: DENY, rules: [{to: [{operation: {methods: [GET], ports: ["9000"]}}]}]}"#, Accept, ""),
    ("no W-A1 for DENY notPrincipals",
     r#"{action: DENY, rules: [{from: [{source: {notPrincipals: ["*"]}}]}]}"#, Accept, ""),
    ("no W-A1 for DENY when only",
     r#"{action: DENY, rules: [{when: [{key: "request.headers[x]", values: [a]}]}]}"#, Accept, ""),
    ("no W-A1 for ALLOW methods", r#"{rules: [{to: [{operation: {methods: [GET]}}]}]}"#, Accept, ""),
    // Valid policies from the istio.io security tasks.
    ("istio.io allow-nothing", r#"{}"#, Accept, ""),
    ("istio.io allow-all", r#"{rules: [{}]}"#, Accept, ""),
    ("istio.io deny-all (DENY {})", r#"{action: DENY, rules: [{}]}"#, Accept, ""),
    ("istio.io productpage-viewer",
     r#"{selector: {matchLabels: {app: productpage}}, action: ALLOW, rules: [{to: [{operation: {methods: [GET]}}]}]}"#, Accept, ""),
    ("istio.io details-viewer",
     r#"{selector: {matchLabels: {app: details}}, action: ALLOW, rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/bookinfo-productpage]}}], to: [{operation: {methods: [GET]}}]}]}"#, Accept, ""),
    ("istio.io tcp-policy",
     r#"{selector: {matchLabels: {app: tcp-echo}}, action: ALLOW, rules: [{to: [{operation: {ports: ["9000", "9001"]}}]}]}"#, Accept, ""),
    ("istio.io deny-method-get (warns, not rejected)",
     r#"{selector: {matchLabels: {app: httpbin, version: v1}}, action: DENY, rules: [{to: [{operation: {methods: [GET]}}], when: [{key: "request.headers[x-token]", notValues: [admin]}]}]}"#,
     Warn("W-A1"), ""),
    ("istio.io deny-path-headers",
     r#"{selector: {matchLabels: {app: httpbin}}, action: DENY, rules: [{to: [{operation: {paths: ["/headers"]}}], from: [{source: {notNamespaces: [foo]}}]}]}"#,
     Warn("W-A1"), ""),
    ("istio.io ingress ipBlocks",
     r#"{selector: {matchLabels: {app: istio-ingressgateway}}, action: ALLOW, rules: [{from: [{source: {ipBlocks: [1.2.3.4, 5.6.7.0/24]}}]}]}"#, Accept, ""),
    ("istio.io ingress remoteIpBlocks DENY",
     r#"{selector: {matchLabels: {app: istio-ingressgateway}}, action: DENY, rules: [{from: [{source: {remoteIpBlocks: [1.2.3.4]}}]}]}"#, Accept, ""),
    ("istio.io require-jwt",
     r#"{selector: {matchLabels: {app: httpbin}}, action: ALLOW, rules: [{from: [{source: {requestPrincipals: [testing@secure.istio.io/testing@secure.istio.io]}}], when: [{key: "request.auth.claims[groups]", values: [group1]}]}]}"#, Accept, ""),
    ("istio.io ext-authz CUSTOM",
     r#"{selector: {matchLabels: {app: httpbin}}, action: CUSTOM, provider: {name: sample-ext-authz-grpc}, rules: [{to: [{operation: {paths: ["/headers"]}}]}]}"#, Accept, ""),
    ("istio.io td-migration principals",
     r#"{selector: {matchLabels: {app: httpbin}}, rules: [{from: [{source: {principals: [old-td/ns/sleep-allow/sa/sleep]}}]}]}"#, Accept, ""),
    ("istio.io waypoint targetRefs Gateway",
     r#"{targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}], action: ALLOW, rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/curl]}}], to: [{operation: {methods: [GET]}}]}]}"#, Accept, ""),
    ("istio.io targetRefs Service",
     r#"{targetRefs: [{kind: Service, group: "", name: productpage}], rules: [{to: [{operation: {methods: [GET]}}]}]}"#, Accept, ""),
    ("targetRef ServiceEntry and GatewayClass",
     r#"{targetRefs: [{kind: ServiceEntry, group: networking.istio.io, name: ext}, {kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}], rules: [{}]}"#, Accept, ""),
    ("ambient L4 ztunnel policy",
     r#"{selector: {matchLabels: {app: productpage}}, action: ALLOW, rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/bookinfo-gateway-istio]}}]}]}"#, Accept, ""),
];

#[test]
fn e2_authorization_policy_table() {
    run_table(Kind::AuthorizationPolicy, "{}", AUTHORIZATION_POLICY);
}

#[test]
fn dry_run_annotation() {
    let ann_true = r#"{istio.io/dry-run: "true"}"#;
    let ann_bad = r#"{istio.io/dry-run: "maybe"}"#;
    run_table(
        Kind::AuthorizationPolicy,
        ann_true,
        &[
            ("dry-run ALLOW", r#"{rules: [{}]}"#, Accept, ""),
            ("dry-run DENY", r#"{action: DENY, rules: [{}]}"#, Accept, ""),
            (
                "dry-run CUSTOM",
                r#"{action: CUSTOM, provider: {name: x}, rules: [{}]}"#,
                Reject("DRY-RUN"),
                "only supports action ALLOW/DENY, found action CUSTOM",
            ),
        ],
    );
    run_table(
        Kind::AuthorizationPolicy,
        ann_bad,
        &[(
            "dry-run not a boolean",
            r#"{rules: [{}]}"#,
            Reject("DRY-RUN"),
            "invalid value",
        )],
    );
    run_table(
        Kind::PeerAuthentication,
        ann_true,
        &[(
            "dry-run on PeerAuthentication",
            r#"{mtls: {mode: STRICT}}"#,
            Reject("DRY-RUN"),
            "unsupported annotation istio.io/dry-run",
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// DestinationRule

#[rustfmt::skip]
const DESTINATION_RULE: &[Row] = &[
    ("DR1 host absent", r#"{trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}"#, Reject("DR1"), "host: empty domain name not allowed"),
    ("DR1 wildcard inside", r#"{host: "foo.*.com"}"#, Reject("DR1"), "label \"*\" invalid"),
    ("DR1 wildcard suffix label", r#"{host: "foo*.example.com"}"#, Reject("DR1"), ""),
    ("DR1 underscore", r#"{host: bad_name.default.svc.cluster.local}"#, Reject("DR1"), "bad_name"),
    ("DR1 IP address", r#"{host: 10.0.0.1}"#, Reject("DR1"), "cannot be all-numeric"),
    ("DR2 portLevelSettings without port",
     r#"{host: a, trafficPolicy: {portLevelSettings: [{tls: {mode: DISABLE}}]}}"#,
     Reject("DR2"), "trafficPolicy.portLevelSettings[0].port: portTrafficPolicy must have valid port"),
    ("DR2 port number 0",
     r#"{host: a, trafficPolicy: {portLevelSettings: [{port: {number: 0}, tls: {mode: DISABLE}}]}}"#, Reject("DR2"), "port number 0"),
    ("DR2 port number above 65535",
     r#"{host: a, trafficPolicy: {portLevelSettings: [{port: {number: 70000}, tls: {mode: DISABLE}}]}}"#, Reject("DR2"), ""),
    ("DR2 in a subset policy",
     r#"{host: a, subsets: [{name: v1, trafficPolicy: {portLevelSettings: [{tls: {mode: DISABLE}}]}}]}"#,
     Reject("DR2"), "subsets[0].trafficPolicy.portLevelSettings[0].port"),
    ("W-DR2 port without number",
     r#"{host: a, trafficPolicy: {portLevelSettings: [{port: {}, tls: {mode: DISABLE}}]}}"#, Warn("W-DR2"), "matches no Service port"),
    ("DR3 subset without name", r#"{host: a, subsets: [{labels: {version: v1}}]}"#, Reject("DR3"), "subsets[0].name: name cannot be empty"),
    ("DR3 duplicate subset", r#"{host: a, subsets: [{name: v1}, {name: v1}]}"#, Reject("DR3"), "duplicate subset names: v1"),
    ("DR3 subset name not a label", r#"{host: a, subsets: [{name: v1.0}]}"#, Reject("DR3"), "must be a valid label"),
    ("DR4 exportTo ~", r#"{host: a, exportTo: ["~"]}"#, Reject("DR4"), "exportTo[0]: exportTo ~ (none) is not allowed"),
    ("DR4 exportTo own namespace and .", r#"{host: a, exportTo: [demo, "."]}"#, Reject("DR4"), "duplicate entries in exportTo: . and current namespace demo"),
    ("DR4 exportTo duplicate", r#"{host: a, exportTo: [foo, foo]}"#, Reject("DR4"), "duplicate entries in exportTo for entry foo"),
    ("DR4 exportTo * with others", r#"{host: a, exportTo: ["*", "."]}"#, Reject("DR4"), "cannot have both public (*) and non-public"),
    ("DR4 exportTo invalid name", r#"{host: a, exportTo: [Bad_Ns]}"#, Reject("DR4"), "valid DNS 1123 label"),
    ("DR4 workloadSelector exported beyond the namespace",
     r#"{host: a, workloadSelector: {matchLabels: {app: c}}, exportTo: ["*"]}"#, Reject("DR4"), "cannot have exportTo beyond current namespace"),
    ("DR5 workloadSelector empty key", r#"{host: a, workloadSelector: {matchLabels: {"": c}}}"#, Reject("DR5"), "workloadSelector.matchLabels"),
    ("W-DR5 workloadSelector without labels", r#"{host: a, workloadSelector: {}}"#, Warn("W-DR5"), ""),
    // Accepted.
    ("ok tls without mode (defaults to DISABLE)", r#"{host: a, trafficPolicy: {tls: {sni: a.example.com}}}"#, Accept, ""),
    ("ok trafficPolicy without tls", r#"{host: a, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}"#, Accept, ""),
    ("ok ISTIO_MUTUAL *.local", r#"{host: "*.local", trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}"#, Accept, ""),
    ("ok mesh-wide *", r#"{host: "*", trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}"#, Accept, ""),
    ("ok short host", r#"{host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}"#, Accept, ""),
    ("ok FQDN with trailing dot", r#"{host: api.example.com., trafficPolicy: {tls: {mode: SIMPLE}}}"#, Accept, ""),
    ("ok kube-apiserver DISABLE",
     r#"{host: kubernetes.default.svc.cluster.local, trafficPolicy: {tls: {mode: DISABLE}}}"#, Accept, ""),
    ("ok port-level DISABLE",
     r#"{host: httpbin.foo.svc.cluster.local, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, portLevelSettings: [{port: {number: 8000}, tls: {mode: DISABLE}}]}}"#, Accept, ""),
    ("ok exportTo . and *-less list", r#"{host: a, exportTo: [".", other]}"#, Accept, ""),
    ("ok workloadSelector exported to .", r#"{host: a, workloadSelector: {matchLabels: {app: c}}, exportTo: ["."]}"#, Accept, ""),
];

#[test]
fn destination_rule_table() {
    run_table(Kind::DestinationRule, "{}", DESTINATION_RULE);
}

#[test]
fn rejected_destination_rule_takes_no_effect_and_others_stay() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: broken, namespace: demo}
spec: {trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: fine, namespace: demo}
spec: {host: a.demo.svc.cluster.local, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
"#;
    let inv = Inventory::from_sources([("test.yaml", yaml)]);
    let names: Vec<&str> = inv
        .destination_rules_in("demo")
        .iter()
        .map(|d| d.name())
        .collect();
    assert_eq!(names, ["fine"], "only the valid DR takes effect");
    assert_eq!(inv.rejected.len(), 1, "{:?}", inv.rejected);
    assert_eq!(inv.rejected[0].object.object.name, "broken");
    assert_eq!(
        inv.rejected[0].object.origin.line, 2,
        "the rejection cites the document"
    );
}

/// The real upstream manifests (KFP, Kubeflow platform) are accepted by Istio, so none of their
/// Istio objects may be rejected here.
#[test]
fn upstream_manifests_are_not_rejected() {
    let dir = kfp_mesh_testdata::upstream_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "{} (the upstream fixtures, see scripts/fetch-upstream) must be readable: {e}",
            dir.display()
        )
    });
    let mut files: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter_map(|p| Some((p.display().to_string(), std::fs::read_to_string(&p).ok()?)))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    let mut policies = 0;
    for (name, text) in &files {
        let inv = Inventory::from_sources([(name.as_str(), text.as_str())]);
        assert!(
            inv.rejected.is_empty(),
            "{name}: rejected {:#?}",
            inv.rejected
        );
        policies += inv
            .authorization_policies
            .values()
            .map(Vec::len)
            .sum::<usize>()
            + inv
                .peer_authentications
                .values()
                .map(Vec::len)
                .sum::<usize>()
            + inv.destination_rules.values().map(Vec::len).sum::<usize>();
    }
    assert!(
        policies > 10,
        "expected upstream Istio policies, found {policies}"
    );
}
