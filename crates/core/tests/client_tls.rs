//! Truth tables for C (DestinationRule selection, port-level settings, auto mTLS, C4 matrix,
//! headless/passthrough, Sidecar egress scoping) and the istio.io auto-mTLS / authn tasks.

use kfp_mesh_core::inventory::Inventory;
use kfp_mesh_core::mesh::client_tls::{ClientTls, Destination, client_tls};

use ClientTls::{BlackHole, IstioMutual, Mutual, Plaintext, Simple};

/// Namespaces foo and bar are injected, legacy is not; `sleep` in foo and legacy; `httpbin`
/// (Service 8000 -> container 8080) in foo, bar and legacy.
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
        s.push_str(&deployment(ns, "httpbin", "app: httpbin", ""));
        s.push_str(&service(ns, "httpbin", "app: httpbin", ""));
    }
    s.push_str(&deployment("foo", "sleep", "app: sleep", ""));
    s.push_str(&deployment("legacy", "sleep", "app: sleep", ""));
    s
}

fn deployment(ns: &str, name: &str, labels: &str, annotations: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
spec:
  template:
    metadata:
      labels: {{{labels}}}
      annotations: {{{annotations}}}
    spec:
      containers:
      - name: app
        ports:
        - {{name: http, containerPort: 8080}}
---
"#
    )
}

/// A Service on port 8000 -> 8080 (`extra`: more spec lines, e.g. `  clusterIP: None`).
fn service(ns: &str, name: &str, selector: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  selector: {{{selector}}}\n{extra}  ports:\n  - {{name: http, port: 8000, targetPort: 8080}}\n  - {{name: tcp-other, port: 9000, targetPort: 9000}}\n---\n"
    )
}

fn pa(ns: &str, name: &str, selector: &str, mode: &str) -> String {
    let sel = if selector.is_empty() {
        String::new()
    } else {
        format!("  selector:\n    matchLabels: {{{selector}}}\n")
    };
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{sel}  mtls:\n    mode: {mode}\n---\n"
    )
}

/// A DestinationRule; `body` holds the spec lines after `host`.
fn dr(ns: &str, name: &str, host: &str, body: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  host: \"{host}\"\n{body}---\n"
    )
}

fn tls(mode: &str) -> String {
    format!("  trafficPolicy:\n    tls:\n      mode: {mode}\n")
}

fn sidecar(ns: &str, name: &str, body: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{body}---\n"
    )
}

/// The endpoint to look at: a workload `ns/name`, or a pod IP call to it.
#[derive(Clone, Copy)]
enum To {
    /// Service `ns/name` port, endpoint workload name in that namespace.
    Svc(&'static str, &'static str, u16, &'static str),
    PodIp(&'static str, &'static str, u16),
}

struct Row {
    what: &'static str,
    /// Added to [`base`].
    input: String,
    client: (&'static str, &'static str),
    to: To,
    want: ClientTls,
    explains: &'static [&'static str],
}

fn run(rows: Vec<Row>) {
    for row in rows {
        let input = base() + &row.input;
        let inv = Inventory::from_sources([("test.yaml", input.as_str())]);
        assert!(inv.errors.is_empty(), "{}: {:?}", row.what, inv.errors);
        let client = inv
            .workload(row.client.0, row.client.1)
            .unwrap_or_else(|| panic!("{}: no client", row.what));
        let d = match row.to {
            To::Svc(ns, name, port, endpoint) => {
                let svc = inv.service(ns, name).expect("service");
                let ep = inv.workload(ns, endpoint).expect("endpoint");
                let target = svc
                    .spec
                    .ports
                    .iter()
                    .find(|p| p.port == i64::from(port))
                    .and_then(|sp| ep.target_port(sp))
                    .unwrap_or(port);
                client_tls(
                    &inv,
                    client,
                    Destination::Service {
                        service: svc,
                        service_port: port,
                    },
                    ep,
                    target,
                )
            }
            To::PodIp(ns, name, port) => {
                let ep = inv.workload(ns, name).expect("endpoint");
                client_tls(&inv, client, Destination::PodIp, ep, port)
            }
        };
        let text = d
            .steps
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(d.value, row.want, "{}\nexplanation:\n{text}", row.what);
        for needle in row.explains {
            assert!(
                text.contains(needle),
                "{}: explanation lacks {needle:?}:\n{text}",
                row.what
            );
        }
    }
}

const SLEEP_FOO: (&str, &str) = ("foo", "sleep");
const HTTPBIN_BAR: To = To::Svc("bar", "httpbin", 8000, "httpbin");
const HTTPBIN_LEGACY: To = To::Svc("legacy", "httpbin", 8000, "httpbin");

#[test]
fn c1_which_destination_rule() {
    let fqdn = "httpbin.bar.svc.cluster.local";
    run(vec![
        Row {
            what: "C1.1 client namespace DR beats service namespace DR",
            input: dr("foo", "client-side", fqdn, &tls("ISTIO_MUTUAL"))
                + &dr("bar", "server-side", "httpbin", &tls("DISABLE")),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &["foo/client-side applies", "client namespace (C1 step 1)"],
        },
        Row {
            what: "C1.1 exact host before wildcard in the client namespace",
            input: dr("foo", "all", "*.local", &tls("DISABLE"))
                + &dr("foo", "exact", fqdn, &tls("SIMPLE")),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Simple,
            explains: &["exact host"],
        },
        Row {
            what: "C1.1 the most specific wildcard wins",
            input: dr("foo", "a-all", "*", &tls("DISABLE"))
                + &dr("foo", "b-bar", "*.bar.svc.cluster.local", &tls("MUTUAL")),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Mutual,
            explains: &["wildcard host `*.bar.svc.cluster.local`"],
        },
        Row {
            what: "C1.2 service namespace DR (short name resolved in its namespace)",
            input: dr("bar", "server-side", "httpbin", &tls("DISABLE")),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Plaintext,
            explains: &["service namespace (C1 step 2)"],
        },
        Row {
            what: "C1.2 a short name in the client namespace means the client namespace's service",
            input: dr("foo", "mine", "httpbin", &tls("DISABLE")),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &["no DestinationRule applies"],
        },
        Row {
            what: "C1.2 name.ns is taken literally by Istio and does not match",
            input: dr("bar", "dotted", "httpbin.bar", &tls("DISABLE")),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &["has host `httpbin.bar`, which Istio takes literally"],
        },
        Row {
            what: "C1.2 name.ns.svc is taken literally too",
            input: dr("bar", "dotted", "httpbin.bar.svc", &tls("DISABLE")),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &["takes literally"],
        },
        Row {
            what: "C1.2 exportTo [.] hides the service namespace DR from other namespaces",
            input: dr(
                "bar",
                "private",
                "httpbin",
                &(tls("DISABLE") + "  exportTo: [\".\"]\n"),
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &["exportTo does not include namespace `foo`"],
        },
        Row {
            what: "C1.2 exportTo naming the client namespace",
            input: dr(
                "bar",
                "shared",
                "httpbin",
                &(tls("DISABLE") + "  exportTo: [\"foo\"]\n"),
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Plaintext,
            explains: &[],
        },
        Row {
            what: "C1.3 root namespace DR as the last resort (*.local ISTIO_MUTUAL to a plain pod: 503)",
            input: dr("istio-system", "mesh", "*.local", &tls("ISTIO_MUTUAL")),
            client: SLEEP_FOO,
            to: HTTPBIN_LEGACY,
            want: IstioMutual,
            explains: &[
                "root namespace (C1 step 3)",
                "[C4] endpoint Deployment legacy/httpbin has no sidecar",
                "fails (503)",
            ],
        },
        Row {
            what: "C1.4 first namespace wins: a client-namespace DR without tls shadows the root DR",
            input: dr(
                "foo",
                "lb-only",
                fqdn,
                "  trafficPolicy:\n    loadBalancer:\n      simple: ROUND_ROBIN\n",
            ) + &dr("istio-system", "mesh", "*.local", &tls("DISABLE")),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &["auto mTLS decides", "KIA0204"],
        },
        Row {
            what: "C1.5 merge: the first DR with a trafficPolicy wins (the first has only subsets)",
            input: dr(
                "bar",
                "a-subsets",
                "httpbin",
                "  subsets:\n  - name: v1\n    labels: {version: v1}\n",
            ) + &dr("bar", "b-policy", "httpbin", &tls("DISABLE"))
                + &dr("bar", "c-policy", "httpbin", &tls("ISTIO_MUTUAL")),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Plaintext,
            explains: &["merged", "bar/b-policy (the first that has one) is used"],
        },
        Row {
            what: "C1.6 workloadSelector that selects the client",
            input: dr(
                "foo",
                "for-sleep",
                fqdn,
                &(tls("DISABLE") + "  workloadSelector:\n    matchLabels: {app: sleep}\n"),
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Plaintext,
            explains: &[],
        },
        Row {
            what: "C1.6 workloadSelector that does not select the client",
            input: dr(
                "foo",
                "for-other",
                fqdn,
                &(tls("DISABLE") + "  workloadSelector:\n    matchLabels: {app: other}\n"),
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &["workloadSelector does not select"],
        },
        Row {
            what: "C1.6 a selector DR in the service namespace does not apply to other namespaces",
            input: dr(
                "bar",
                "for-sleep",
                "httpbin",
                &(tls("DISABLE") + "  workloadSelector:\n    matchLabels: {app: sleep}\n"),
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &["only applies to clients in its own namespace"],
        },
    ]);
}

#[test]
fn c2_port_level_settings() {
    let fqdn = "httpbin.bar.svc.cluster.local";
    run(vec![
        Row {
            what: "C2 portLevelSettings for the service port replaces the top level",
            input: dr(
                "foo",
                "d",
                fqdn,
                "  trafficPolicy:\n    tls: {mode: DISABLE}\n    portLevelSettings:\n    - port: {number: 8000}\n      tls: {mode: ISTIO_MUTUAL}\n",
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &["replaces the top-level trafficPolicy wholesale"],
        },
        Row {
            what: "C2 port-level entry with only loadBalancer leaves the port on auto mTLS",
            input: dr(
                "foo",
                "d",
                fqdn,
                "  trafficPolicy:\n    tls: {mode: DISABLE}\n    portLevelSettings:\n    - port: {number: 8000}\n      loadBalancer: {simple: LEAST_REQUEST}\n",
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &["back on auto mTLS"],
        },
        Row {
            what: "C2 port-level entry keyed by the target port (8080) does not apply to service port 8000",
            input: dr(
                "foo",
                "d",
                fqdn,
                "  trafficPolicy:\n    tls: {mode: DISABLE}\n    portLevelSettings:\n    - port: {number: 8080}\n      tls: {mode: ISTIO_MUTUAL}\n",
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Plaintext,
            explains: &["sets tls.mode DISABLE"],
        },
        Row {
            what: "C2 tls without a mode means DISABLE",
            input: dr("foo", "d", fqdn, "  trafficPolicy:\n    tls: {sni: x}\n"),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Plaintext,
            explains: &["the mode defaults to DISABLE"],
        },
        Row {
            what: "C2 a DR without tls: auto mTLS",
            input: dr(
                "foo",
                "d",
                fqdn,
                "  trafficPolicy:\n    loadBalancer: {simple: RANDOM}\n",
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &["auto mTLS decides"],
        },
        Row {
            what: "C2 subset tls is flagged, not applied",
            input: dr(
                "foo",
                "d",
                fqdn,
                "  subsets:\n  - name: v1\n    labels: {version: v1}\n    trafficPolicy:\n      tls: {mode: DISABLE}\n",
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &["subset `v1`"],
        },
    ]);
}

#[test]
fn c3_auto_mtls() {
    let mesh_no_auto = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n  mesh: |\n    enableAutoMtls: false\n---\n";
    run(vec![
        Row {
            what: "C3 enableAutoMtls=false: plaintext without a DR",
            input: mesh_no_auto.to_string(),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Plaintext,
            explains: &["enableAutoMtls is false"],
        },
        Row {
            what: "C3 enableAutoMtls=false: a DR ISTIO_MUTUAL still gives mTLS",
            input: mesh_no_auto.to_string() + &dr("bar", "d", "httpbin", &tls("ISTIO_MUTUAL")),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &[],
        },
        Row {
            what: "C3 gotcha 1: namespace DISABLE + workload STRICT sends plaintext (503)",
            input: pa("bar", "ns", "", "DISABLE") + &pa("bar", "wl", "app: httpbin", "STRICT"),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Plaintext,
            explains: &[
                "cluster-level mode of namespace `bar` is DISABLE",
                "add a DestinationRule for httpbin.bar.svc.cluster.local with tls.mode ISTIO_MUTUAL",
            ],
        },
        Row {
            what: "C3 gotcha 1 fixed by a DR ISTIO_MUTUAL",
            input: pa("bar", "ns", "", "DISABLE")
                + &pa("bar", "wl", "app: httpbin", "STRICT")
                + &dr("bar", "fix", "httpbin", &tls("ISTIO_MUTUAL")),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &[],
        },
        Row {
            what: "C3 gotcha 2: namespace STRICT + workload DISABLE works through the per-endpoint check",
            input: pa("bar", "ns", "", "STRICT") + &pa("bar", "wl", "app: httpbin", "DISABLE"),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Plaintext,
            explains: &["per-endpoint check sends plaintext"],
        },
        Row {
            what: "C3 mesh DISABLE: plaintext at cluster level",
            input: pa("istio-system", "default", "", "DISABLE"),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Plaintext,
            explains: &["is DISABLE"],
        },
        Row {
            what: "A3 sidecar endpoint with tlsMode=disabled label gets plaintext",
            input: deployment(
                "bar",
                "special",
                "app: special, security.istio.io/tlsMode: disabled",
                "",
            ) + &service("bar", "special", "app: special", ""),
            client: SLEEP_FOO,
            to: To::Svc("bar", "special", 8000, "special"),
            want: Plaintext,
            explains: &["[A3]"],
        },
        Row {
            what: "B7 excluded port still gets auto mTLS, flagged",
            input: deployment(
                "bar",
                "webhook",
                "app: webhook",
                "traffic.sidecar.istio.io/excludeInboundPorts: \"8080\"",
            ) + &service("bar", "webhook", "app: webhook", ""),
            client: SLEEP_FOO,
            to: To::Svc("bar", "webhook", 8000, "webhook"),
            want: IstioMutual,
            explains: &["[B7] port 8080", "tls.mode DISABLE"],
        },
    ]);
}

#[test]
fn c4_client_server_matrix() {
    let strict = pa("bar", "wl", "app: httpbin", "STRICT");
    let permissive = pa("bar", "wl", "app: httpbin", "PERMISSIVE");
    let disable = pa("bar", "wl", "app: httpbin", "DISABLE");
    let istio_mutual_bar = dr("foo", "d", "*.svc.cluster.local", &tls("ISTIO_MUTUAL"));
    let disable_dr = dr("foo", "d", "*.svc.cluster.local", &tls("DISABLE"));
    run(vec![
        Row {
            what: "auto -> sidecar PERMISSIVE: mTLS",
            input: permissive.clone(),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &[],
        },
        Row {
            what: "auto -> sidecar STRICT: mTLS",
            input: strict.clone(),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &[],
        },
        Row {
            what: "auto -> sidecar DISABLE: plaintext",
            input: disable.clone(),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Plaintext,
            explains: &[],
        },
        Row {
            what: "auto -> plain pod: plaintext",
            input: String::new(),
            client: SLEEP_FOO,
            to: HTTPBIN_LEGACY,
            want: Plaintext,
            explains: &["has no sidecar"],
        },
        Row {
            what: "DR ISTIO_MUTUAL -> sidecar DISABLE: mTLS, flagged 503",
            input: disable.clone() + &istio_mutual_bar,
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &["is DISABLE on port 8080, so Istio mTLS toward it fails (503)"],
        },
        Row {
            what: "DR ISTIO_MUTUAL -> plain pod: mTLS, flagged 503",
            input: istio_mutual_bar.clone(),
            client: SLEEP_FOO,
            to: HTTPBIN_LEGACY,
            want: IstioMutual,
            explains: &["has no sidecar, so Istio mTLS toward it fails (503)"],
        },
        Row {
            what: "DR DISABLE -> sidecar STRICT: plaintext, flagged",
            input: strict.clone() + &disable_dr,
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Plaintext,
            explains: &["is STRICT on port 8080, so plaintext toward it fails"],
        },
        Row {
            what: "DR DISABLE -> sidecar PERMISSIVE: plaintext",
            input: permissive + &disable_dr,
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Plaintext,
            explains: &[],
        },
    ]);
}

#[test]
fn c5_pod_ip_and_headless() {
    let headless = |ns: &str, extra_pods: &str| {
        service(ns, "db", "app: db", "  clusterIP: None\n")
            + &deployment(ns, "db-0", "app: db", "")
            + extra_pods
    };
    let db = To::Svc("bar", "db", 8000, "db-0");
    run(vec![
        Row {
            what: "C5 pod IP: PassthroughCluster plaintext",
            input: pa("bar", "ns", "", "STRICT"),
            client: SLEEP_FOO,
            to: To::PodIp("bar", "httpbin", 9002),
            want: Plaintext,
            explains: &["PassthroughCluster"],
        },
        Row {
            what: "C5 pod IP under a REGISTRY_ONLY Sidecar: BlackHole",
            input: sidecar(
                "foo",
                "default",
                "  outboundTrafficPolicy:\n    mode: REGISTRY_ONLY\n",
            ),
            client: SLEEP_FOO,
            to: To::PodIp("bar", "httpbin", 9002),
            want: BlackHole,
            explains: &["BlackHoleCluster"],
        },
        Row {
            what: "C5 a port the Service does not declare",
            input: String::new(),
            client: SLEEP_FOO,
            to: To::Svc("bar", "httpbin", 7000, "httpbin"),
            want: Plaintext,
            explains: &["declares no port 7000"],
        },
        Row {
            what: "C5 headless, every endpoint has a sidecar: mTLS",
            input: headless("bar", ""),
            client: SLEEP_FOO,
            to: db,
            want: IstioMutual,
            explains: &["is headless", "every endpoint of the port has a sidecar"],
        },
        Row {
            what: "C5 headless with one endpoint without sidecar: plaintext to all",
            input: headless(
                "bar",
                &deployment(
                    "bar",
                    "db-1",
                    "app: db, sidecar.istio.io/inject: \"false\"",
                    "",
                ),
            ),
            client: SLEEP_FOO,
            to: db,
            want: Plaintext,
            explains: &["Deployment bar/db-1 does not"],
        },
        Row {
            what: "C5 headless in a DISABLE namespace: plaintext",
            input: headless("bar", "") + &pa("bar", "ns", "", "DISABLE"),
            client: SLEEP_FOO,
            to: db,
            want: Plaintext,
            explains: &[],
        },
        Row {
            what: "C5 headless ignores workload DISABLE: mTLS, flagged",
            input: headless("bar", "") + &pa("bar", "wl", "app: db", "DISABLE"),
            client: SLEEP_FOO,
            to: db,
            want: IstioMutual,
            explains: &["the headless cluster still sends Istio mTLS"],
        },
        Row {
            what: "C3 DR loadBalancer PASSTHROUGH behaves like headless (mixed endpoints: plaintext)",
            input: deployment(
                "bar",
                "httpbin-legacy",
                "app: httpbin, sidecar.istio.io/inject: \"false\"",
                "",
            ) + &dr(
                "foo",
                "pt",
                "httpbin.bar.svc.cluster.local",
                "  trafficPolicy:\n    loadBalancer: {simple: PASSTHROUGH}\n",
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Plaintext,
            explains: &["uses loadBalancer PASSTHROUGH"],
        },
    ]);
}

#[test]
fn sidecar_egress_scope() {
    let registry_only = "  outboundTrafficPolicy:\n    mode: REGISTRY_ONLY\n";
    run(vec![
        Row {
            what: "Sidecar ./* in foo: bar is out of scope, ALLOW_ANY -> passthrough plaintext",
            input: sidecar(
                "foo",
                "default",
                "  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]\n",
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Plaintext,
            explains: &[
                "does not list httpbin.bar.svc.cluster.local",
                "PassthroughCluster",
            ],
        },
        Row {
            what: "Sidecar ./* with REGISTRY_ONLY: BlackHole",
            input: sidecar(
                "foo",
                "default",
                &("  egress:\n  - hosts: [\"./*\"]\n".to_string() + registry_only),
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: BlackHole,
            explains: &["add `bar/httpbin.bar.svc.cluster.local`"],
        },
        Row {
            what: "Sidecar bar/* includes the service",
            input: sidecar(
                "foo",
                "default",
                &("  egress:\n  - hosts: [\"bar/*\"]\n".to_string() + registry_only),
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &[],
        },
        Row {
            what: "Sidecar */exact FQDN includes the service",
            input: sidecar(
                "foo",
                "default",
                &("  egress:\n  - hosts: [\"*/httpbin.bar.svc.cluster.local\"]\n".to_string()
                    + registry_only),
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &[],
        },
        Row {
            what: "Sidecar ~/* means no hosts",
            input: sidecar(
                "foo",
                "default",
                &("  egress:\n  - hosts: [\"~/*\"]\n".to_string() + registry_only),
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: BlackHole,
            explains: &[],
        },
        Row {
            what: "a workloadSelector Sidecar beats the namespace-wide one",
            input: sidecar(
                "foo",
                "default",
                &("  egress:\n  - hosts: [\"./*\"]\n".to_string() + registry_only),
            ) + &sidecar(
                "foo",
                "sleep",
                "  workloadSelector:\n    labels: {app: sleep}\n  egress:\n  - hosts: [\"*/*\"]\n",
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: IstioMutual,
            explains: &[],
        },
        Row {
            what: "root-namespace default Sidecar: `.` is the client's namespace",
            input: sidecar(
                "istio-system",
                "default",
                &("  egress:\n  - hosts: [\"./*\"]\n".to_string() + registry_only),
            ),
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: BlackHole,
            explains: &["Sidecar istio-system/default"],
        },
        Row {
            what: "root-namespace default Sidecar: same-namespace service stays in scope",
            input: sidecar(
                "istio-system",
                "default",
                &("  egress:\n  - hosts: [\"./*\"]\n".to_string() + registry_only),
            ),
            client: SLEEP_FOO,
            to: To::Svc("foo", "httpbin", 8000, "httpbin"),
            want: IstioMutual,
            explains: &[],
        },
    ]);
}

/// istio.io tasks/security/authentication/auto-mtls and authn-policy, re-expressed: namespace
/// `full` (all sidecars), `partial` (httpbin v1 with a sidecar, v2 without), `legacy`.
#[test]
fn istio_io_auto_mtls_task() {
    let partial = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: partial\n  labels: {istio-injection: enabled}\n---\n".to_string()
        + &deployment("partial", "httpbin-v1", "app: httpbin, version: v1", "")
        + &deployment(
            "partial",
            "httpbin-v2",
            "app: httpbin, version: v2, sidecar.istio.io/inject: \"false\"",
            "",
        )
        + &service("partial", "httpbin", "app: httpbin", "");
    let to_v1 = To::Svc("partial", "httpbin", 8000, "httpbin-v1");
    let to_v2 = To::Svc("partial", "httpbin", 8000, "httpbin-v2");
    run(vec![
        Row {
            what: "auto-mtls: sleep (full mesh) -> httpbin.partial v1 (sidecar): mTLS",
            input: partial.clone(),
            client: SLEEP_FOO,
            to: to_v1,
            want: IstioMutual,
            explains: &[],
        },
        Row {
            what: "auto-mtls: sleep (full mesh) -> httpbin.partial v2 (no sidecar): plaintext",
            input: partial.clone(),
            client: SLEEP_FOO,
            to: to_v2,
            want: Plaintext,
            explains: &[],
        },
        Row {
            what: "auto-mtls: mesh STRICT keeps the mixed service working from sidecars",
            input: partial.clone() + &pa("istio-system", "default", "", "STRICT"),
            client: SLEEP_FOO,
            to: to_v1,
            want: IstioMutual,
            explains: &[],
        },
        Row {
            what: "auto-mtls: DR ISTIO_MUTUAL on httpbin.partial breaks v2 (503)",
            input: partial.clone() + &dr("partial", "httpbin", "httpbin", &tls("ISTIO_MUTUAL")),
            client: SLEEP_FOO,
            to: to_v2,
            want: IstioMutual,
            explains: &["fails (503)"],
        },
        Row {
            what: "authn-policy: sleep.foo -> httpbin.legacy under mesh STRICT: plaintext (legacy has no sidecar)",
            input: pa("istio-system", "default", "", "STRICT"),
            client: SLEEP_FOO,
            to: HTTPBIN_LEGACY,
            want: Plaintext,
            explains: &[],
        },
        Row {
            what: "C1.4: a client-namespace *.local ISTIO_MUTUAL shadows the DR DISABLE in legacy",
            input: dr("foo", "all", "*.local", &tls("ISTIO_MUTUAL"))
                + &dr("legacy", "httpbin-legacy", "httpbin", &tls("DISABLE")),
            client: SLEEP_FOO,
            to: HTTPBIN_LEGACY,
            want: IstioMutual,
            explains: &["foo/all applies"],
        },
        Row {
            what: "authn-policy (1.1-1.4): root *.local ISTIO_MUTUAL, DR DISABLE in legacy wins for legacy",
            input: dr("istio-system", "default", "*.local", &tls("ISTIO_MUTUAL"))
                + &dr(
                    "legacy",
                    "httpbin-legacy",
                    "httpbin.legacy.svc.cluster.local",
                    &tls("DISABLE"),
                ),
            client: SLEEP_FOO,
            to: HTTPBIN_LEGACY,
            want: Plaintext,
            explains: &["legacy/httpbin-legacy applies"],
        },
        Row {
            what: "authn-policy: port-level DISABLE on httpbin.bar 8080 under namespace STRICT: plaintext",
            input: pa("bar", "ns", "", "STRICT")
                + "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: httpbin\n  namespace: bar\nspec:\n  selector:\n    matchLabels: {app: httpbin}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n---\n",
            client: SLEEP_FOO,
            to: HTTPBIN_BAR,
            want: Plaintext,
            explains: &["DISABLE"],
        },
    ]);
}

/// D7 with the application's own TLS (KFP's standalone-TLS env): a client with a sidecar that
/// speaks TLS itself to a server that terminates it. Istio decides by the Service port's
/// protocol (appProtocol first, then the name prefix; istio.io "Protocol Selection"):
/// declared TLS/HTTPS/TCP, or left to sniffing, the bytes pass through as opaque TCP inside
/// Istio mTLS, and the server sidecar hands the inner TLS to the application. Declared
/// HTTP/HTTP2/gRPC, the outbound listener is istiod's wildcard HTTP listener, whose HTTP chain
/// takes only plaintext HTTP (HTTP inspector, `raw_buffer`, ALPN `http/1.1`/`h2c`); the
/// handshake takes its PassthroughFilterChain to PassthroughCluster, without Istio mTLS
/// (`istio:pilot/pkg/networking/core/listener.go`, `buildSidecarOutboundListener`): a STRICT
/// server sidecar terminates it with its mesh certificate and demands one from the client,
/// so the application's handshake fails. Proved on real Envoy in
/// `crates/envoy/tests/envoy_app_tls.rs`.
#[test]
fn d7_application_tls_through_the_client_sidecar() {
    use kfp_mesh_core::connection::{
        Caller, FixKind, Outcome, RequestProtocol, RequestSpec, Target, Transport, evaluate,
    };
    let rows: [(&str, &str, Outcome, Option<Transport>); 7] = [
        (
            "name: grpc",
            "port named grpc (HTTP/2)",
            Outcome::TlsFailure,
            None,
        ),
        (
            "name: http-api",
            "port named http-*",
            Outcome::TlsFailure,
            None,
        ),
        (
            "name: tls, appProtocol: grpc",
            "appProtocol grpc wins over the name",
            Outcome::TlsFailure,
            None,
        ),
        (
            "name: grpc, appProtocol: tls",
            "appProtocol tls wins over the name",
            Outcome::Allow,
            Some(Transport::Mtls),
        ),
        (
            "name: tls",
            "port named tls",
            Outcome::Allow,
            Some(Transport::Mtls),
        ),
        (
            "name: https, appProtocol: https",
            "appProtocol https",
            Outcome::Allow,
            Some(Transport::Mtls),
        ),
        (
            "name: api",
            "no protocol: sniffed as TLS",
            Outcome::Allow,
            Some(Transport::Mtls),
        ),
    ];
    for (port, what, want, transport) in rows {
        let input = base()
            + &format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: secure\n  namespace: bar\nspec:\n  selector: {{app: httpbin}}\n  ports:\n  - {{{port}, port: 8443, targetPort: 8080}}\n---\n"
            )
            + &pa("bar", "default", "", "STRICT");
        let inv = Inventory::from_sources([("test.yaml", input.as_str())]);
        assert!(inv.errors.is_empty(), "{what}: {:?}", inv.errors);
        let client = inv.workload("foo", "sleep").expect("client");
        let service = inv.service("bar", "secure").expect("service");
        let request = RequestSpec {
            protocol: Some(RequestProtocol::Tcp),
            app_tls: true,
            ..RequestSpec::default()
        };
        let v = evaluate(
            &inv,
            Caller::Workload(client),
            Target::Service {
                service,
                port: 8443,
            },
            &request,
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let text: Vec<String> = v.explanation.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            (v.outcome, v.transport),
            (want, transport),
            "{what}\n{}",
            text.join("\n")
        );
        if want == Outcome::TlsFailure {
            assert!(
                v.explanation.iter().any(|s| s.rule == "D7"
                    && s.message.contains("speaks TLS itself")
                    && s.message.contains("PassthroughCluster")),
                "{what}: {text:?}"
            );
            let fix = v.fix.as_ref().expect("a fix");
            assert_eq!(fix.kind, FixKind::DeclarePortTls, "{what}");
            assert!(fix.text.contains("appProtocol: tls"), "{what}");
        }
    }
}

/// D7, where the application's TLS on an HTTP port goes: PassthroughCluster sends it on as it
/// is, so the server side decides as for a client without a sidecar (B5, C4), and a
/// `REGISTRY_ONLY` Sidecar sends it to BlackHoleCluster instead. Proved on real Envoy (the
/// first three rows) in `crates/envoy/tests/envoy_app_tls.rs`.
#[test]
fn d7_application_tls_on_an_http_port_takes_passthrough_cluster() {
    use kfp_mesh_core::connection::{
        Caller, Outcome, RequestProtocol, RequestSpec, Target, Transport, evaluate,
    };
    let registry_only = sidecar(
        "foo",
        "default",
        "  outboundTrafficPolicy:\n    mode: REGISTRY_ONLY\n",
    );
    let rows: [(&str, &str, String, Outcome, Option<Transport>); 4] = [
        (
            "legacy",
            "server without a sidecar: it answers its own TLS",
            String::new(),
            Outcome::Allow,
            Some(Transport::Plaintext),
        ),
        (
            "bar",
            "PERMISSIVE has no chain for TLS that is not Istio's on an HTTP port",
            pa("bar", "default", "", "PERMISSIVE"),
            Outcome::Reset,
            None,
        ),
        (
            "bar",
            "STRICT: the server sidecar's mesh certificate, and it demands one",
            pa("bar", "default", "", "STRICT"),
            Outcome::TlsFailure,
            None,
        ),
        (
            "bar",
            "REGISTRY_ONLY: BlackHoleCluster closes it",
            pa("bar", "default", "", "STRICT") + &registry_only,
            Outcome::Reset,
            None,
        ),
    ];
    for (ns, what, extra, want, transport) in rows {
        let input = base()
            + &format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: secure\n  namespace: {ns}\nspec:\n  selector: {{app: httpbin}}\n  ports:\n  - {{name: grpc, port: 8443, targetPort: 8080}}\n---\n"
            )
            + &extra;
        let inv = Inventory::from_sources([("test.yaml", input.as_str())]);
        assert!(inv.errors.is_empty(), "{what}: {:?}", inv.errors);
        let client = inv.workload("foo", "sleep").expect("client");
        let service = inv.service(ns, "secure").expect("service");
        let request = RequestSpec {
            protocol: Some(RequestProtocol::Tcp),
            app_tls: true,
            ..RequestSpec::default()
        };
        let v = evaluate(
            &inv,
            Caller::Workload(client),
            Target::Service {
                service,
                port: 8443,
            },
            &request,
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let text: Vec<String> = v.explanation.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            (v.outcome, v.transport),
            (want, transport),
            "{what}\n{}",
            text.join("\n")
        );
        assert!(
            v.explanation
                .iter()
                .any(|s| s.rule == "D7" && s.message.contains("PassthroughFilterChain")),
            "{what}: {text:?}"
        );
    }
}
