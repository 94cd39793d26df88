//! Kubernetes NetworkPolicy truth table: each row adds policies to a small fixture and asks
//! whether one peer may open a TCP connection to a workload port.

use std::net::IpAddr;

use kfp_mesh_core::inventory::Inventory;
use kfp_mesh_core::mesh::netpol::{NetPeer, allows};

/// Namespaces `shop` (team=shop), `ops` (team=ops), `kubeflow` (no Namespace object) and pods.
const FIXTURE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops, labels: {team: ops}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  containers:
  - name: app
    ports:
    - {name: http, containerPort: 8080}
    - {name: metrics, containerPort: 9090}
    - {name: dns, containerPort: 5353, protocol: UDP}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec:
  containers:
  - name: pg
    ports: [{name: pg, containerPort: 5432}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: monitor, namespace: shop, labels: {app: monitor}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: monitor, namespace: ops, labels: {app: monitor}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: ops, labels: {app: client}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: kubeflow, labels: {app: web}}
spec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: node-agent, namespace: shop, labels: {app: agent}}
spec: {hostNetwork: true, containers: [{name: c, ports: [{containerPort: 9100}]}]}
"#;

#[derive(Clone, Copy, Debug)]
enum Src {
    Pod(&'static str, &'static str),
    External(Option<&'static str>),
}
use Src::{External, Pod};

/// (row name, NetworkPolicies in YAML, from, to `ns/name`, port, allowed?)
type Row = (
    &'static str,
    &'static str,
    Src,
    (&'static str, &'static str),
    u16,
    bool,
);

/// A NetworkPolicy document.
macro_rules! np {
    ($ns:literal, $name:literal, $spec:literal) => {
        concat!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ",
            $name,
            ", namespace: ",
            $ns,
            "}\nspec: ",
            $spec,
            "\n---\n"
        )
    };
}

const DENY_SHOP: &str = np!(
    "shop",
    "default-deny-ingress",
    "{podSelector: {}, policyTypes: [Ingress]}"
);

fn inventory(policies: &str) -> Inventory {
    let inv = Inventory::from_sources([("fixture.yaml", FIXTURE), ("policies.yaml", policies)]);
    assert!(inv.errors.is_empty(), "input errors: {:?}", inv.errors);
    inv
}

fn eval(
    policies: &str,
    from: Src,
    to: (&str, &str),
    port: u16,
) -> kfp_mesh_core::explain::Decision<bool> {
    let inv = inventory(policies);
    let to_w = inv
        .workload(to.0, to.1)
        .unwrap_or_else(|| panic!("fixture has no workload {}/{}", to.0, to.1));
    match from {
        Pod(ns, name) => {
            let src = inv
                .workload(ns, name)
                .unwrap_or_else(|| panic!("fixture has no workload {ns}/{name}"));
            allows(&inv, NetPeer::Pod(src), to_w, port)
        }
        External(ip) => {
            let ip = ip.map(|s| s.parse::<IpAddr>().unwrap_or_else(|e| panic!("{s}: {e}")));
            allows(&inv, NetPeer::External(ip), to_w, port)
        }
    }
}

#[rustfmt::skip]
fn rows() -> Vec<Row> {
    let ns_by_label = [DENY_SHOP, np!("shop", "allow-ops", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: ops}}}]}]}")].concat();
    let and_peer = np!("shop", "and", "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: ops}}, podSelector: {matchLabels: {app: monitor}}}]}]}");
    let or_peers = np!("shop", "or", "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: ops}}}, {podSelector: {matchLabels: {app: monitor}}}]}]}");
    let pod_only = np!("shop", "same-ns", "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]}");
    let by_name = np!("shop", "by-name", "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kubeflow}}}]}]}");
    let named = np!("shop", "named", "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: http}]}]}");
    let named_udp = np!("shop", "named-udp", "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: http, protocol: UDP}]}]}");
    let range = np!("shop", "range", "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 8000, endPort: 8100}]}]}");
    let single = np!("shop", "single", "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{protocol: TCP, port: 9090}]}]}");
    let ip_except = np!("shop", "ip", "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]}]}");
    let ip_all = np!("shop", "ip-all", "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}]}]}");
    let ip_all_except = np!("shop", "ip-all-except", "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0, except: [169.254.0.0/16]}}]}]}");
    let open_rule = np!("shop", "open", "{podSelector: {matchLabels: {app: web}}, ingress: [{}]}");
    let empty_from = np!("shop", "empty-from", "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [], ports: [{port: 8080}]}]}");
    let all_ns = np!("shop", "all-ns", "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{namespaceSelector: {}}]}]}");
    let egress_db = np!("shop", "client-egress", "{podSelector: {matchLabels: {app: client}}, policyTypes: [Egress], egress: [{to: [{podSelector: {matchLabels: {app: db}}}], ports: [{port: 5432}]}]}");
    let egress_default_types = np!("shop", "client-egress-implicit", "{podSelector: {matchLabels: {app: client}}, egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]}");
    let ingress_only_default_types = np!("shop", "client-ingress", "{podSelector: {matchLabels: {app: client}}, ingress: [{}]}");
    let egress_named = np!("shop", "egress-named", "{podSelector: {matchLabels: {app: client}}, policyTypes: [Egress], egress: [{ports: [{port: pg}]}]}");
    let egress_ip_all = np!("shop", "egress-ip-all", "{podSelector: {matchLabels: {app: client}}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}]}]}");
    let egress_deny_all = np!("shop", "egress-deny-all", "{podSelector: {}, policyTypes: [Egress]}");
    let egress_to_ops = np!("shop", "egress-to-ops", "{podSelector: {matchLabels: {app: client}}, policyTypes: [Egress], egress: [{to: [{namespaceSelector: {matchLabels: {team: ops}}}]}]}");
    let deny_kubeflow = np!("kubeflow", "deny-all", "{podSelector: {}, policyTypes: [Ingress, Egress]}");
    let other_pod = np!("shop", "db-only", "{podSelector: {matchLabels: {app: db}}, policyTypes: [Ingress]}");
    let union = [DENY_SHOP, np!("shop", "allow-web-8080", "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 8080}]}]}")].concat();
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let (ns_by_label, union) = (leak(ns_by_label), leak(union));

    vec![
        ("no policy: allowed", "", Pod("shop", "client"), ("shop", "web"), 8080, true),
        ("default-deny-ingress: denied", DENY_SHOP, Pod("shop", "client"), ("shop", "web"), 8080, false),
        ("default-deny-ingress: external denied", DENY_SHOP, External(Some("10.2.3.4")), ("shop", "web"), 8080, false),
        ("default-deny without policyTypes is Ingress", np!("shop", "deny", "{podSelector: {}}"), Pod("ops", "client"), ("shop", "web"), 8080, false),
        ("default-deny in shop: kubeflow pod unaffected", DENY_SHOP, Pod("shop", "client"), ("kubeflow", "other"), 8080, true),
        ("policy selecting another pod: web not isolated", other_pod, Pod("shop", "client"), ("shop", "web"), 8080, true),
        ("policy in kubeflow does not apply to shop", deny_kubeflow, Pod("ops", "client"), ("shop", "web"), 8080, true),
        ("policy in kubeflow isolates kubeflow", deny_kubeflow, Pod("shop", "client"), ("kubeflow", "other"), 8080, false),
        ("namespace by label: ops allowed", ns_by_label, Pod("ops", "client"), ("shop", "web"), 8080, true),
        ("namespace by label: shop denied", ns_by_label, Pod("shop", "client"), ("shop", "web"), 8080, false),
        ("namespace by metadata.name (no Namespace object)", by_name, Pod("kubeflow", "other"), ("shop", "web"), 8080, true),
        ("namespace by metadata.name: others denied", by_name, Pod("ops", "client"), ("shop", "web"), 8080, false),
        ("AND peer: ops monitor allowed", and_peer, Pod("ops", "monitor"), ("shop", "web"), 8080, true),
        ("AND peer: ops client denied", and_peer, Pod("ops", "client"), ("shop", "web"), 8080, false),
        ("AND peer: shop monitor denied", and_peer, Pod("shop", "monitor"), ("shop", "web"), 8080, false),
        ("OR peers: ops client allowed", or_peers, Pod("ops", "client"), ("shop", "web"), 8080, true),
        ("OR peers: shop monitor allowed", or_peers, Pod("shop", "monitor"), ("shop", "web"), 8080, true),
        ("OR peers: shop client denied", or_peers, Pod("shop", "client"), ("shop", "web"), 8080, false),
        ("podSelector alone: same namespace allowed", pod_only, Pod("shop", "client"), ("shop", "web"), 8080, true),
        ("podSelector alone: other namespace denied", pod_only, Pod("ops", "client"), ("shop", "web"), 8080, false),
        ("named port: 8080 allowed", named, Pod("shop", "client"), ("shop", "web"), 8080, true),
        ("named port: 9090 denied", named, Pod("shop", "client"), ("shop", "web"), 9090, false),
        ("named port UDP: TCP 8080 denied", named_udp, Pod("shop", "client"), ("shop", "web"), 8080, false),
        ("endPort: 8080 inside 8000-8100", range, Pod("shop", "client"), ("shop", "web"), 8080, true),
        ("endPort: 8000 lower bound", range, Pod("shop", "client"), ("shop", "web"), 8000, true),
        ("endPort: 8100 upper bound", range, Pod("shop", "client"), ("shop", "web"), 8100, true),
        ("endPort: 9090 outside", range, Pod("shop", "client"), ("shop", "web"), 9090, false),
        ("single port: 9090 allowed", single, Pod("shop", "client"), ("shop", "web"), 9090, true),
        ("single port: 8080 denied", single, Pod("shop", "client"), ("shop", "web"), 8080, false),
        ("ipBlock: inside cidr", ip_except, External(Some("10.2.3.4")), ("shop", "web"), 8080, true),
        ("ipBlock: in except", ip_except, External(Some("10.1.2.3")), ("shop", "web"), 8080, false),
        ("ipBlock: outside cidr", ip_except, External(Some("192.168.1.1")), ("shop", "web"), 8080, false),
        ("ipBlock: unknown external IP", ip_except, External(None), ("shop", "web"), 8080, false),
        ("ipBlock: pod (IP unknown)", ip_except, Pod("shop", "client"), ("shop", "web"), 8080, false),
        ("ipBlock 0.0.0.0/0: unknown external IP", ip_all, External(None), ("shop", "web"), 8080, true),
        ("ipBlock 0.0.0.0/0: pod", ip_all, Pod("ops", "client"), ("shop", "web"), 8080, true),
        ("ipBlock 0.0.0.0/0 with except: unknown IP", ip_all_except, External(None), ("shop", "web"), 8080, false),
        ("ipBlock 0.0.0.0/0 with except: known IP", ip_all_except, External(Some("8.8.8.8")), ("shop", "web"), 8080, true),
        ("rule without from: unknown external", open_rule, External(None), ("shop", "web"), 8080, true),
        ("from: [] matches everyone", empty_from, External(None), ("shop", "web"), 8080, true),
        ("from: [] still needs the port", empty_from, External(None), ("shop", "web"), 9090, false),
        ("namespaceSelector {}: any pod", all_ns, Pod("kubeflow", "other"), ("shop", "web"), 8080, true),
        ("namespaceSelector {}: not external", all_ns, External(Some("10.2.3.4")), ("shop", "web"), 8080, false),
        ("egress: client to db 5432 allowed", egress_db, Pod("shop", "client"), ("shop", "db"), 5432, true),
        ("egress: client to web denied", egress_db, Pod("shop", "client"), ("shop", "web"), 8080, false),
        ("egress: client to db other port denied", egress_db, Pod("shop", "client"), ("shop", "db"), 5433, false),
        ("egress: web not selected", egress_db, Pod("shop", "web"), ("shop", "db"), 5432, true),
        ("egress: policy of shop does not bind ops client", egress_db, Pod("ops", "client"), ("shop", "web"), 8080, true),
        ("egress implied by an egress section", egress_default_types, Pod("shop", "client"), ("shop", "web"), 8080, false),
        ("egress implied: allowed destination", egress_default_types, Pod("shop", "client"), ("shop", "db"), 5432, true),
        ("no egress section: egress not isolated", ingress_only_default_types, Pod("shop", "client"), ("shop", "web"), 8080, true),
        ("egress named port resolved on destination", egress_named, Pod("shop", "client"), ("shop", "db"), 5432, true),
        ("egress named port: other port denied", egress_named, Pod("shop", "client"), ("shop", "web"), 8080, false),
        ("egress ipBlock 0.0.0.0/0 covers pods", egress_ip_all, Pod("shop", "client"), ("ops", "monitor"), 80, true),
        ("egress deny-all", egress_deny_all, Pod("shop", "client"), ("ops", "monitor"), 80, false),
        ("egress namespaceSelector: ops allowed", egress_to_ops, Pod("shop", "client"), ("ops", "monitor"), 80, true),
        ("egress namespaceSelector: kubeflow denied", egress_to_ops, Pod("shop", "client"), ("kubeflow", "other"), 8080, false),
        ("egress ok but ingress denied", leak([egress_to_ops, np!("ops", "deny", "{podSelector: {}}")].concat()), Pod("shop", "client"), ("ops", "monitor"), 80, false),
        ("union: a second policy allows 8080", union, Pod("shop", "client"), ("shop", "web"), 8080, true),
        ("union: 9090 still denied", union, Pod("shop", "client"), ("shop", "web"), 9090, false),
        ("hostNetwork destination not isolated", DENY_SHOP, Pod("shop", "client"), ("shop", "node-agent"), 9100, true),
        ("hostNetwork source: unknown IP", ns_by_label, Pod("shop", "node-agent"), ("shop", "web"), 8080, false),
        ("hostNetwork source matches 0.0.0.0/0", ip_all, Pod("shop", "node-agent"), ("shop", "web"), 8080, true),
    ]
}

#[test]
fn network_policy_table() {
    let rows = rows();
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|(name, policies, from, to, port, want)| {
            let d = eval(policies, *from, *to, *port);
            (d.value != *want).then(|| {
                let steps: Vec<String> = d.steps.iter().map(|s| s.to_string()).collect();
                format!(
                    "row {name:?}: {from:?} -> {}/{}:{port}: expected {}, got {}\n    {}",
                    to.0,
                    to.1,
                    if *want { "allow" } else { "deny" },
                    if d.value { "allow" } else { "deny" },
                    steps.join("\n    ")
                )
            })
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

#[test]
fn steps_cite_isolating_and_allowing_policies() {
    let policies = [
        DENY_SHOP,
        np!(
            "shop",
            "allow-web-8080",
            "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 8080}]}]}"
        ),
    ]
    .concat();
    let d = eval(&policies, Pod("shop", "client"), ("shop", "web"), 8080);
    assert!(d.value);
    assert!(d.steps.iter().all(|s| s.rule == "NP"), "{:?}", d.steps);
    let isolated = d
        .steps
        .iter()
        .find(|s| s.message.contains("isolated by 2"))
        .unwrap_or_else(|| panic!("no isolation step: {:?}", d.steps));
    let mut names: Vec<&str> = isolated
        .objects
        .iter()
        .map(|c| c.object.name.as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["allow-web-8080", "default-deny-ingress"]);
    let allowed = d.steps.last().unwrap_or_else(|| panic!("no steps"));
    assert_eq!(allowed.objects.len(), 1);
    assert_eq!(allowed.objects[0].object.name, "allow-web-8080");
    assert_eq!(allowed.objects[0].origin.source.as_ref(), "policies.yaml");
    assert!(
        allowed.message.contains("ingress[0]"),
        "{}",
        allowed.message
    );
}

#[test]
fn steps_explain_a_denial_and_both_directions() {
    let policies = [
        np!("shop", "client-egress", "{podSelector: {matchLabels: {app: client}}, policyTypes: [Egress], egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]}"),
        DENY_SHOP,
    ]
    .concat();
    let d = eval(&policies, Pod("shop", "client"), ("shop", "db"), 5432);
    assert!(!d.value, "egress allows, ingress default-deny denies");
    let text: Vec<String> = d.steps.iter().map(|s| s.to_string()).collect();
    let text = text.join("\n");
    assert!(text.contains("egress"), "{text}");
    assert!(text.contains("client-egress"), "{text}");
    assert!(text.contains("default-deny-ingress"), "{text}");
    assert!(text.contains("no ingress rule"), "{text}");

    let d = eval("", External(None), ("shop", "web"), 8080);
    assert!(d.value);
    assert_eq!(d.steps.len(), 1, "{:?}", d.steps);
    assert!(d.steps[0].objects.is_empty());
}

/// The Kubeflow platform's own NetworkPolicies (kubeflow namespace) over the KFP multi-user
/// manifests, with an ingress gateway pod, a profile namespace and an unrelated namespace.
#[test]
fn kubeflow_upstream_policies() {
    // The fixtures are required: a missing file fails the test (see scripts/fetch-upstream).
    let platform =
        kfp_mesh_testdata::read_upstream("kubeflow-manifests-master-kubeflow-namespace.yaml");
    let kfp = kfp_mesh_testdata::read_upstream("kfp-master-platform-agnostic-multi-user.yaml");
    let extra = r#"
apiVersion: v1
kind: Pod
metadata: {name: istio-ingressgateway, namespace: istio-system, labels: {app: istio-ingressgateway}}
spec: {containers: [{name: istio-proxy}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: kubeflow-user-example-com, labels: {app.kubernetes.io/part-of: kubeflow-profile}}
---
apiVersion: v1
kind: Pod
metadata: {name: run, namespace: kubeflow-user-example-com, labels: {workflows.argoproj.io/workflow: hello}}
spec: {containers: [{name: main}]}
---
apiVersion: v1
kind: Pod
metadata: {name: stranger, namespace: other}
spec: {containers: [{name: main}]}
"#;
    let inv = Inventory::from_sources([
        ("platform.yaml", platform.as_str()),
        ("kfp.yaml", kfp.as_str()),
        ("extra.yaml", extra),
    ]);
    let w = |ns: &str, name: &str| {
        inv.workload(ns, name)
            .unwrap_or_else(|| panic!("no workload {ns}/{name}"))
    };
    let gateway = w("istio-system", "istio-ingressgateway");
    let run = w("kubeflow-user-example-com", "run");
    let stranger = w("other", "stranger");
    let api = w("kubeflow", "ml-pipeline");
    let ui = w("kubeflow", "ml-pipeline-ui");
    let cache = w("kubeflow", "cache-server");
    #[rustfmt::skip]
    let rows: [(&str, NetPeer<'_>, &kfp_mesh_core::inventory::Workload, u16, bool); 7] = [
        ("ui from the ingress gateway", NetPeer::Pod(gateway), ui, 3000, true),
        ("ui from a profile namespace", NetPeer::Pod(run), ui, 3000, false),
        ("ui from the kubeflow namespace (default-allow-same-namespace)", NetPeer::Pod(api), ui, 3000, true),
        ("api from a profile namespace", NetPeer::Pod(run), api, 8888, true),
        ("api from an unrelated namespace", NetPeer::Pod(stranger), api, 8888, false),
        ("cache webhook from kube-apiserver", NetPeer::External(None), cache, 8443, true),
        ("cache server other port from kube-apiserver", NetPeer::External(None), cache, 8080, false),
    ];
    for (name, from, to, port, want) in rows {
        let d = allows(&inv, from, to, port);
        let steps: Vec<String> = d.steps.iter().map(|s| s.to_string()).collect();
        assert_eq!(d.value, want, "row {name:?}:\n{}", steps.join("\n"));
    }
}
