//! Truth tables for whole connections (`istio-semantics.md` H): what the client application
//! observes when a client sidecar forwards with a TCP proxy (C4, C5: no HTTP 503 on TCP), a
//! CUSTOM provider that decides (D2), and connect-only probes. Each row quotes the Istio or
//! Envoy behaviour it encodes; the TCP and probe rows are also observed on a real Envoy in
//! `crates/envoy/tests`.

use kfp_mesh_core::connection::{
    self, Caller, ConnectProbe, Outcome, ProbeAcceptor, ProbeOutcome, RequestProtocol, RequestSpec,
    Target, Verdict,
};
use kfp_mesh_core::inventory::Inventory;

use Outcome::*;

/// `foo` and `bar` are injected, `legacy` is not. `bar/httpbin` listens on 8080 (Service port
/// 8000, `http`), 9000 (Service port 9000, `tcp-other`) and 9002 (no Service declares it);
/// `sleep` runs in `foo` (sidecar) and `legacy` (none); `legacy/httpbin` has no sidecar.
fn base() -> String {
    let mut s = String::new();
    for (ns, labels) in [
        ("foo", "istio-injection: enabled"),
        ("bar", "istio-injection: enabled"),
        ("legacy", ""),
    ] {
        s.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels: {{{labels}}}\n---\n"
        ));
        s.push_str(&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: httpbin, namespace: {ns}}}\nspec:\n  template:\n    metadata: {{labels: {{app: httpbin}}}}\n    spec:\n      serviceAccountName: httpbin\n      containers: [{{name: app, ports: [{{containerPort: 8080}}, {{containerPort: 9000}}, {{containerPort: 9002}}]}}]\n---\n"
        ));
        s.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: httpbin, namespace: {ns}}}\nspec:\n  selector: {{app: httpbin}}\n  ports:\n  - {{name: http, port: 8000, targetPort: 8080}}\n  - {{name: tcp-other, port: 9000, targetPort: 9000}}\n---\n"
        ));
    }
    for ns in ["foo", "legacy"] {
        s.push_str(&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: sleep, namespace: {ns}}}\nspec:\n  template:\n    metadata: {{labels: {{app: sleep}}}}\n    spec:\n      serviceAccountName: sleep\n      containers: [{{name: sleep}}]\n---\n"
        ));
    }
    s
}

fn pa(ns: &str, mode: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: {ns}}}\nspec: {{mtls: {{mode: {mode}}}}}\n---\n"
    )
}

fn dr(host: &str, mode: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d, namespace: foo}}\nspec: {{host: \"{host}\", trafficPolicy: {{tls: {{mode: {mode}}}}}}}\n---\n"
    )
}

fn ap(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n---\n"
    )
}

fn build(extra: &str) -> Inventory {
    let text = base() + extra;
    let inv = Inventory::from_sources([("test.yaml", text.as_str())]);
    assert!(inv.errors.is_empty(), "{:?}", inv.errors);
    assert!(inv.rejected.is_empty(), "{:?}", inv.rejected);
    inv
}

#[derive(Clone, Copy)]
enum To {
    /// Service `ns/httpbin` on a service port.
    Svc(&'static str, u16),
    /// The pod IP of `ns/httpbin` on a container port.
    Pod(&'static str, u16),
}

fn tcp() -> RequestSpec {
    RequestSpec {
        protocol: Some(RequestProtocol::Tcp),
        ..RequestSpec::default()
    }
}

fn http() -> RequestSpec {
    RequestSpec {
        protocol: Some(RequestProtocol::Http),
        path: Some("/headers".to_string()),
        ..RequestSpec::default()
    }
}

fn connect_only() -> RequestSpec {
    RequestSpec {
        connect_only: true,
        ..tcp()
    }
}

fn eval(inv: &Inventory, from: (&str, &str), to: To, request: &RequestSpec) -> Verdict {
    let client = inv.workload(from.0, from.1).expect("client");
    let target = match to {
        To::Svc(ns, port) => Target::Service {
            service: inv.service(ns, "httpbin").expect("service"),
            port,
        },
        To::Pod(ns, port) => Target::Pod {
            workload: inv.workload(ns, "httpbin").expect("server"),
            port,
        },
    };
    connection::evaluate(inv, Caller::Workload(client), target, request).expect("evaluates")
}

fn explanation(v: &Verdict) -> String {
    v.explanation
        .iter()
        .map(|s| format!("  {s}"))
        .collect::<Vec<_>>()
        .join("\n")
}

const SLEEP: (&str, &str) = ("foo", "sleep");
const LEGACY: (&str, &str) = ("legacy", "sleep");

/// One row: what, extra input, caller, target, request, outcome, words the symptom must have,
/// words the explanation must have.
type Row = (
    &'static str,
    String,
    (&'static str, &'static str),
    To,
    RequestSpec,
    Outcome,
    &'static str,
    &'static str,
);

fn run(rows: Vec<Row>) {
    for (what, extra, from, to, request, want, symptom, explains) in rows {
        let inv = build(&extra);
        let v = eval(&inv, from, to, &request);
        let text = explanation(&v);
        assert_eq!(v.outcome, want, "{what}\n{text}");
        assert!(
            v.symptom.contains(symptom),
            "{what}: symptom {:?} lacks {symptom:?}",
            v.symptom
        );
        assert!(
            text.contains(explains),
            "{what}: lacks {explains:?}\n{text}"
        );
        if request.protocol == Some(RequestProtocol::Tcp) {
            assert!(
                !v.symptom.contains("HTTP 503 from"),
                "{what}: a TCP client never sees an HTTP 503: {:?}",
                v.symptom
            );
        }
    }
}

/// C5, C4: a client sidecar's TCP proxy has no HTTP status to answer with. Istio's authz-tcp
/// task: "When strict-mode mTLS is enabled, only ports defined as a service are protected by
/// mTLS … we connect to port 9002, which was not configured as a service, so the connection
/// fails" (`io:…/authorization/authz-tcp/test.sh`); the pod IP goes through PassthroughCluster
/// (plaintext) and the server's STRICT listener has no chain for it (`NR
/// filter_chain_not_found`). Envoy 1.40's TCP proxy passes the upstream reset on to the
/// application (observed in `envoy_transport_passthrough_and_tcp_failures`).
#[test]
#[rustfmt::skip]
fn tcp_failures_through_a_client_sidecar_are_resets() {
    let strict = pa("bar", "STRICT");
    let http_8080_elsewhere = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: legacy}\nspec:\n  selector: {app: none}\n  ports: [{name: http, port: 8080}]\n---\n";
    run(vec![
        ("sidecar -> pod IP, port no Service declares, STRICT: PassthroughCluster, reset",
            strict.clone(), SLEEP, To::Pod("bar", 9002), tcp(), Reset, "no HTTP 503 on TCP", "PassthroughCluster"),
        ("sidecar -> pod IP, a TCP Service port, STRICT: TCP listeners bind the Service VIP, so passthrough",
            strict.clone(), SLEEP, To::Pod("bar", 9000), tcp(), Reset, "connection reset by peer", "forwards this connection with a TCP proxy"),
        ("sidecar -> pod IP, HTTP request, no Service declares port 8080 as HTTP: PassthroughFilterChain",
            strict.clone(), SLEEP, To::Pod("bar", 8080), http(), Reset, "connection reset by peer", "no HTTP 503 on TCP"),
        ("sidecar -> pod IP, HTTP request, a Service declares port 8080 HTTP: 0.0.0.0:8080 HCM answers 503",
            strict.clone() + http_8080_elsewhere, SLEEP, To::Pod("bar", 8080), http(), UpstreamFailure, "HTTP 503", "its own HTTP 503"),
        ("no sidecar -> pod IP, STRICT: reset",
            strict.clone(), LEGACY, To::Pod("bar", 9002), tcp(), Reset, "connection reset by peer", "filter_chain_not_found"),
        ("sidecar -> pod IP, PERMISSIVE: plaintext accepted",
            String::new(), SLEEP, To::Pod("bar", 9002), tcp(), Allow, "normal response", "PassthroughCluster"),
        ("DR DISABLE -> STRICT, TCP Service port: the TCP proxy passes the reset on",
            strict.clone() + &dr("*.bar.svc.cluster.local", "DISABLE"), SLEEP, To::Svc("bar", 9000), tcp(), Reset, "no HTTP 503 on TCP", "filter_chain_not_found"),
        ("DR DISABLE -> STRICT, HTTP Service port: the HCM answers 503",
            strict.clone() + &dr("*.bar.svc.cluster.local", "DISABLE"), SLEEP, To::Svc("bar", 8000), http(), UpstreamFailure, "HTTP 503", "its own HTTP 503"),
        ("DR ISTIO_MUTUAL -> DISABLE, TCP: no chain for TLS, reset passed on",
            pa("bar", "DISABLE") + &dr("*.bar.svc.cluster.local", "ISTIO_MUTUAL"), SLEEP, To::Svc("bar", 9000), tcp(), Reset, "connection reset by peer", "DISABLE has only plaintext chains"),
        ("DR ISTIO_MUTUAL -> server without sidecar, TCP: the client sidecar's own handshake fails",
            dr("*.legacy.svc.cluster.local", "ISTIO_MUTUAL"), SLEEP, To::Svc("legacy", 9000), tcp(), UpstreamFailure, "from the client's own sidecar", "the handshake fails"),
        ("DR ISTIO_MUTUAL -> server without sidecar, HTTP: 503",
            dr("*.legacy.svc.cluster.local", "ISTIO_MUTUAL"), SLEEP, To::Svc("legacy", 8000), http(), UpstreamFailure, "HTTP 503", "the handshake fails"),
    ]);
    // The fix for a passthrough reset names the way out.
    let inv = build(&strict);
    let v = eval(&inv, SLEEP, To::Pod("bar", 9002), &tcp());
    let fix = v.fix.map(|f| f.text).unwrap_or_default();
    assert!(fix.contains("through a Service that declares the port"), "{fix}");
}

/// D2: "if any CUSTOM policy rule matches, ask its ext-authz provider" (api
/// authorization_policy.proto). The answer is the provider's: the verdict says so, names the
/// provider and suggests no fix; a DENY that also matches still decides first.
#[test]
#[rustfmt::skip]
fn provider_decides_is_its_own_outcome() {
    let mesh = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    extensionProviders:\n    - name: authz\n      envoyExtAuthzGrpc: {service: ext-authz.bar.svc.cluster.local, port: 9000}\n---\n";
    let custom = ap("bar", "ext", r#"{action: CUSTOM, provider: {name: authz}, selector: {matchLabels: {app: httpbin}}, rules: [{to: [{operation: {paths: ["/headers"]}}]}]}"#);
    let inv = build(&(mesh.to_string() + &custom));
    let v = eval(&inv, SLEEP, To::Svc("bar", 8000), &http());
    assert_eq!(v.outcome, ProviderDecides, "{}", explanation(&v));
    assert_eq!(v.outcome.as_str(), "provider-decides");
    assert_eq!(v.provider.as_deref(), Some("authz"));
    assert!(v.fix.is_none());
    assert!(v.symptom.contains("decided by the ext-authz provider"), "{}", v.symptom);
    assert_eq!(v.endpoints[0].provider.as_deref(), Some("authz"));
    // The same request on another path is not sent to the provider.
    let other = RequestSpec { path: Some("/ip".to_string()), ..http() };
    let v = eval(&inv, SLEEP, To::Svc("bar", 8000), &other);
    assert_eq!((v.outcome, v.provider.clone()), (Allow, None), "{}", explanation(&v));
    // A gRPC provider also decides on the TCP chain (`paths` dropped there: D7).
    let v = eval(&inv, SLEEP, To::Svc("bar", 9000), &tcp());
    assert_eq!(v.outcome, ProviderDecides, "{}", explanation(&v));
    assert!(v.symptom.contains("closes the connection"), "{}", v.symptom);
    // A DENY that matches decides before anyone asks the provider's opinion matters.
    let deny = ap("bar", "deny-sleep", r#"{action: DENY, selector: {matchLabels: {app: httpbin}}, rules: [{from: [{source: {principals: ["cluster.local/ns/foo/sa/sleep"]}}]}]}"#);
    let inv = build(&(mesh.to_string() + &custom + &deny));
    let v = eval(&inv, SLEEP, To::Svc("bar", 8000), &http());
    assert_eq!((v.outcome, v.provider.clone()), (Deny, None), "{}", explanation(&v));
    // The provider missing from meshConfig: fail closed, no provider to name.
    let inv = build(&custom);
    let v = eval(&inv, SLEEP, To::Svc("bar", 8000), &http());
    assert_eq!((v.outcome, v.provider.clone()), (CustomDeny, None), "{}", explanation(&v));
    // provider-decides is better than any failure and worse than allow.
    assert!(Allow < ProviderDecides && ProviderDecides < Deny && ProviderDecides < Reset);
}

/// What, extra input, caller, target, the call's outcome, the probe's result and acceptor.
type ProbeRow = (
    &'static str,
    String,
    (&'static str, &'static str),
    To,
    Outcome,
    ProbeOutcome,
    Option<ProbeAcceptor>,
);

/// A connect-only probe (`nc -z`) observes only the TCP handshake. Istio redirects every
/// outbound connection of a sidecar pod to its Envoy (`15001`), whose listener accepts it
/// before its TCP proxy connects upstream; a server sidecar's inbound listener accepts before
/// it can choose a filter chain, which needs the first bytes (B5). So the probe succeeds where
/// the real call after it is reset or denied; only a NetworkPolicy drop in front of a client
/// without a proxy makes it time out.
#[test]
#[rustfmt::skip]
fn connect_only_probes_see_the_first_listener() {
    let netpol = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: bar}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n---\n";
    let allow_nobody = ap("bar", "allow-nobody", r#"{selector: {matchLabels: {app: httpbin}}, rules: [{from: [{source: {principals: ["cluster.local/ns/nobody/sa/nobody"]}}]}]}"#);
    let strict = pa("bar", "STRICT");
    // `baz/httpbin`: a sidecar that does not intercept port 9000, under STRICT.
    let excluded = "apiVersion: v1\nkind: Namespace\nmetadata: {name: baz, labels: {istio-injection: enabled}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: httpbin, namespace: baz}\nspec:\n  template:\n    metadata:\n      labels: {app: httpbin}\n      annotations: {traffic.sidecar.istio.io/excludeInboundPorts: \"9000\"}\n    spec:\n      serviceAccountName: httpbin\n      containers: [{name: app, ports: [{containerPort: 9000}]}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: httpbin, namespace: baz}\nspec:\n  selector: {app: httpbin}\n  ports: [{name: tcp-other, port: 9000}]\n---\n".to_string() + &pa("baz", "STRICT");
    let rows: Vec<ProbeRow> = vec![
        ("sidecar, DR DISABLE -> STRICT: the call is reset, the probe connects",
            strict.clone() + &dr("*.bar.svc.cluster.local", "DISABLE"), SLEEP, To::Svc("bar", 9000), Reset, ProbeOutcome::Connected, Some(ProbeAcceptor::ClientSidecar)),
        ("sidecar, pod IP under STRICT: the call is reset, the probe connects",
            strict.clone(), SLEEP, To::Pod("bar", 9002), Reset, ProbeOutcome::Connected, Some(ProbeAcceptor::ClientSidecar)),
        ("sidecar, denied by the ALLOW policies: the probe connects",
            allow_nobody.clone(), SLEEP, To::Svc("bar", 9000), Deny, ProbeOutcome::Connected, Some(ProbeAcceptor::ClientSidecar)),
        ("sidecar, NetworkPolicy drops: the local sidecar still accepts",
            netpol.to_string(), SLEEP, To::Svc("bar", 9000), Blocked, ProbeOutcome::Connected, Some(ProbeAcceptor::ClientSidecar)),
        ("no sidecar -> STRICT: the server sidecar accepts, data is then reset",
            strict.clone(), LEGACY, To::Svc("bar", 9000), Reset, ProbeOutcome::Connected, Some(ProbeAcceptor::ServerSidecar)),
        ("no sidecar -> ALLOW policies that exclude it: accepted, then denied",
            allow_nobody.clone(), LEGACY, To::Svc("bar", 9000), Deny, ProbeOutcome::Connected, Some(ProbeAcceptor::ServerSidecar)),
        ("no sidecar -> server without sidecar: the application accepts",
            String::new(), LEGACY, To::Svc("legacy", 9000), Allow, ProbeOutcome::Connected, Some(ProbeAcceptor::Application)),
        ("no sidecar -> a port the server sidecar does not intercept: the application",
            excluded, LEGACY, To::Svc("baz", 9000), Allow, ProbeOutcome::Connected, Some(ProbeAcceptor::Application)),
        ("no sidecar, NetworkPolicy drops: the handshake never completes",
            netpol.to_string(), LEGACY, To::Svc("bar", 9000), Blocked, ProbeOutcome::TimedOut, None),
    ];
    for (what, extra, from, to, outcome, probe, by) in rows {
        let inv = build(&extra);
        let v = eval(&inv, from, to, &connect_only());
        let text = explanation(&v);
        assert_eq!(v.outcome, outcome, "{what}: the call on that connection\n{text}");
        let ConnectProbe { result, accepted_by, why } = v.probe.clone().unwrap_or_else(|| panic!("{what}: no probe"));
        assert_eq!((result, accepted_by), (probe, by), "{what}: {why}\n{text}");
        assert!(text.contains("connect-only probe"), "{what}\n{text}");
    }
    // Without connect_only there is no probe in the verdict.
    let inv = build(&strict);
    assert!(eval(&inv, SLEEP, To::Svc("bar", 9000), &tcp()).probe.is_none());
}
