//! Properties of the whole engine over generated inputs:
//! - a verdict does not depend on the order of objects, documents or files;
//! - adding an unrelated namespace's objects never changes a verdict elsewhere;
//! - no input makes the reader panic;
//! - a bad byte or a broken JSON value loses only its own document or value.

use kfp_mesh_core::connection::{self, Caller, Outcome, RequestSpec, Target, Transport};
use kfp_mesh_core::inventory::{Inventory, parse_bytes, parse_stream};
use proptest::prelude::*;

const NAMESPACES: [&str; 2] = ["team-a", "team-b"];

/// A pool of objects, each with a unique name, from which inputs are drawn. Workloads and
/// Services are always present; policies are drawn.
fn base_objects() -> Vec<String> {
    let mut out = vec![
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a, labels: {istio-injection: enabled}}\n".to_string(),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-b}\n".to_string(),
    ];
    for ns in NAMESPACES {
        for (i, (port_name, inject)) in [("http", "true"), ("tcp", "true"), ("", "false")]
            .iter()
            .enumerate()
        {
            let name = format!("app{i}");
            out.push(format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  template:\n    metadata:\n      labels: {{app: {name}, sidecar.istio.io/inject: \"{inject}\"}}\n    spec:\n      serviceAccountName: sa{i}\n      containers: [{{name: main, ports: [{{containerPort: 8080}}]}}]\n"
            ));
            let named = if port_name.is_empty() {
                String::new()
            } else {
                format!("name: {port_name}, ")
            };
            out.push(format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{{named}port: 80, targetPort: 8080}}]\n"
            ));
        }
    }
    out
}

fn policy_pool() -> Vec<String> {
    let mut out = Vec::new();
    for mode in ["STRICT", "PERMISSIVE", "DISABLE"] {
        out.push(format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: mesh-{m}, namespace: istio-system}}\nspec: {{mtls: {{mode: {mode}}}}}\n",
            m = mode.to_lowercase()
        ));
        for ns in NAMESPACES {
            out.push(format!(
                "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: ns-{m}, namespace: {ns}}}\nspec: {{mtls: {{mode: {mode}}}}}\n",
                m = mode.to_lowercase()
            ));
            out.push(format!(
                "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: app0-{m}, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: app0}}}}\n  mtls: {{mode: {mode}}}\n  portLevelMtls: {{8080: {{mode: PERMISSIVE}}}}\n",
                m = mode.to_lowercase()
            ));
            out.push(format!(
                "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: dr-{m}, namespace: {ns}}}\nspec:\n  host: app1.team-a.svc.cluster.local\n  trafficPolicy: {{tls: {{mode: {dr}}}}}\n",
                m = mode.to_lowercase(),
                dr = if mode == "DISABLE" { "DISABLE" } else { "ISTIO_MUTUAL" }
            ));
        }
    }
    for ns in NAMESPACES {
        out.push(format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: allow-sa0, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: app1}}}}\n  rules: [{{from: [{{source: {{principals: [cluster.local/ns/team-a/sa/sa0]}}}}]}}]\n"
        ));
        out.push(format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: deny-get, namespace: {ns}}}\nspec:\n  action: DENY\n  rules: [{{to: [{{operation: {{methods: [GET], ports: [\"8080\"]}}}}]}}]\n"
        ));
        out.push(format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: allow-nothing, namespace: {ns}}}\nspec: {{}}\n"
        ));
    }
    out.push(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-plaintext, namespace: istio-system}\nspec:\n  action: DENY\n  rules: [{from: [{source: {notPrincipals: [\"*\"]}}]}]\n".to_string(),
    );
    out
}

/// Objects of a namespace no other object refers to.
fn unrelated_objects() -> Vec<String> {
    vec![
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: unrelated, labels: {istio-injection: enabled}}\n".to_string(),
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: unrelated}\nspec: {mtls: {mode: DISABLE}}\n".to_string(),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all, namespace: unrelated}\nspec: {action: DENY, rules: [{}]}\n".to_string(),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: everything, namespace: unrelated}\nspec: {host: \"*.local\", trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}\n".to_string(),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: unrelated}\nspec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n".to_string(),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: other, namespace: unrelated}\nspec:\n  template:\n    metadata: {labels: {app: app1}}\n    spec: {containers: [{name: c}]}\n".to_string(),
    ]
}

type Answer = Vec<(String, Outcome, Option<Transport>)>;

/// Every (client workload, service) pair of the two team namespaces.
fn verdicts(inv: &Inventory) -> Answer {
    let mut out = Vec::new();
    for from_ns in NAMESPACES {
        for from in ["app0", "app1", "app2"] {
            let Some(client) = inv.workload(from_ns, from) else {
                continue;
            };
            for to_ns in NAMESPACES {
                for to in ["app0", "app1", "app2"] {
                    let Some(service) = inv.service(to_ns, to) else {
                        continue;
                    };
                    for method in ["GET", "POST"] {
                        let request = RequestSpec {
                            method: Some(method.to_string()),
                            ..RequestSpec::default()
                        };
                        let key = format!("{from_ns}/{from} -> {to_ns}/{to} {method}");
                        match connection::evaluate(
                            inv,
                            Caller::Workload(client),
                            Target::Service { service, port: 80 },
                            &request,
                        ) {
                            Ok(v) => out.push((key, v.outcome, v.transport)),
                            Err(e) => panic!("{key}: {e}"),
                        }
                    }
                }
            }
        }
    }
    out
}

fn build(docs: &[String], files: usize) -> Inventory {
    // Spread the documents over `files` streams.
    let files = files.max(1);
    let mut streams = vec![String::new(); files];
    for (i, d) in docs.iter().enumerate() {
        let s = &mut streams[i % files];
        s.push_str("---\n");
        s.push_str(d);
    }
    let names: Vec<String> = (0..files).map(|i| format!("f{i}.yaml")).collect();
    Inventory::from_sources(
        names
            .iter()
            .map(String::as_str)
            .zip(streams.iter().map(String::as_str)),
    )
}

fn input_strategy() -> impl Strategy<Value = Vec<String>> {
    let pool = policy_pool();
    let n = pool.len();
    prop::collection::vec(0..n, 0..8).prop_map(move |picks| {
        let mut docs = base_objects();
        for p in picks {
            if let Some(d) = pool.get(p) {
                docs.push(d.clone());
            }
        }
        docs
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn verdicts_do_not_depend_on_order(docs in input_strategy(), seed in any::<u64>(), files in 1usize..4) {
        let reference = verdicts(&build(&docs, 1));
        let mut shuffled = docs.clone();
        // A deterministic Fisher-Yates shuffle driven by the seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let j = (state % (i as u64 + 1)) as usize;
            shuffled.swap(i, j);
        }
        prop_assert_eq!(reference, verdicts(&build(&shuffled, files)));
    }

    #[test]
    fn an_unrelated_namespace_changes_nothing(docs in input_strategy()) {
        let reference = verdicts(&build(&docs, 1));
        let mut more = docs.clone();
        more.extend(unrelated_objects());
        prop_assert_eq!(reference, verdicts(&build(&more, 2)));
    }

    #[test]
    fn the_reader_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let (objects, errors) = parse_stream("fuzz", &text);
        let _ = Inventory::from_objects(objects, errors);
    }

    #[test]
    fn the_reader_never_panics_on_yamlish_text(text in "(apiVersion: v1\n|kind: [A-Za-z]{1,12}\n|metadata: \\{name: [a-z]{1,5}\\}\n|spec:\n|  [a-z]{1,8}: [\\[\\]{}a-z0-9\"'*&!|>-]{0,12}\n|---\n|- \n){0,24}") {
        let (objects, errors) = parse_stream("fuzz", &text);
        let _ = Inventory::from_objects(objects, errors);
    }

    #[test]
    fn the_byte_reader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let (objects, errors) = parse_bytes("fuzz", &bytes);
        let _ = Inventory::from_objects(objects, errors);
    }

    #[test]
    fn a_bad_byte_loses_only_its_document(
        names in prop::collection::btree_set("[a-z]{1,8}", 1..8),
        bad in any::<prop::sample::Index>(),
        byte in 0x80u8..=0xff,
    ) {
        let names: Vec<String> = names.into_iter().collect();
        let bad = bad.index(names.len());
        let mut text = Vec::new();
        let mut bad_line = 0;
        for (i, name) in names.iter().enumerate() {
            // Quoted: `n`, `y`, `no` ... would be booleans.
            text.extend_from_slice(b"---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: \"");
            text.extend_from_slice(name.as_bytes());
            if i == bad {
                bad_line = text.iter().filter(|b| **b == b'\n').count() + 1;
                text.push(byte);
            }
            text.extend_from_slice(b"\"\n");
        }
        let (objects, errors) = parse_bytes("in.yaml", &text);
        let read: Vec<&str> = objects.iter().map(|o| o.meta.name.as_str()).collect();
        let want: Vec<&str> = names.iter().enumerate().filter(|(i, _)| *i != bad).map(|(_, n)| n.as_str()).collect();
        prop_assert_eq!(read, want);
        prop_assert_eq!(errors.len(), 1);
        prop_assert_eq!(errors[0].origin.line as usize, bad_line);
    }

    #[test]
    fn a_broken_json_value_loses_only_itself(
        names in prop::collection::btree_set("[a-z]{1,8}", 1..8),
        bad in any::<prop::sample::Index>(),
        cut in 2usize..60,
    ) {
        let names: Vec<String> = names.into_iter().collect();
        let bad = bad.index(names.len());
        let mut text = String::new();
        for (i, name) in names.iter().enumerate() {
            let value = format!("{{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Namespace\",\n  \"metadata\": {{\"name\": \"{name}\"}}\n}}\n");
            if i == bad {
                // Cut the value short (at least its closing `}`), keeping its first line.
                let keep = value.len().saturating_sub(cut).max(2);
                text.push_str(value.get(..keep).unwrap_or(&value));
                text.push('\n');
            } else {
                text.push_str(&value);
            }
        }
        let (objects, errors) = parse_stream("in.json", &text);
        let read: Vec<&str> = objects.iter().map(|o| o.meta.name.as_str()).collect();
        let want: Vec<&str> = names.iter().enumerate().filter(|(i, _)| *i != bad).map(|(_, n)| n.as_str()).collect();
        prop_assert_eq!(read, want);
        prop_assert_eq!(errors.len(), 1, "{:?}", errors);
        prop_assert!(errors[0].message.contains("skipped"), "{:?}", errors);
    }
}
