//! Truth tables for B (PeerAuthentication resolution), A6.2 (ambient) and the C3 cluster-level
//! namespace mode, plus the istio.io authn-policy and mTLS-migration tasks.

use kfp_mesh_core::inventory::Inventory;
use kfp_mesh_core::mesh::peer_authn::{
    MtlsMode, effective_mode, effective_mode_ambient, namespace_mode,
};

use MtlsMode::{Disable, Permissive, Strict};

/// A PeerAuthentication. `selector`: matchLabels flow mapping content or "" for none;
/// `mtls`: mode or "" for no `mtls`; `ports`: portLevelMtls lines like `8080: {mode: DISABLE}`.
fn pa(namespace: &str, name: &str, selector: &str, mtls: &str, ports: &[&str]) -> String {
    pa_at(namespace, name, "", selector, mtls, ports)
}

fn pa_at(
    namespace: &str,
    name: &str,
    created: &str,
    selector: &str,
    mtls: &str,
    ports: &[&str],
) -> String {
    let mut s = format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
    );
    if !created.is_empty() {
        s.push_str(&format!("  creationTimestamp: \"{created}\"\n"));
    }
    s.push_str("spec:\n");
    if !selector.is_empty() {
        s.push_str(&format!("  selector:\n    matchLabels: {{{selector}}}\n"));
    }
    if !mtls.is_empty() {
        s.push_str(&format!("  mtls:\n    mode: {mtls}\n"));
    }
    if !ports.is_empty() {
        s.push_str("  portLevelMtls:\n");
        for p in ports {
            s.push_str(&format!("    {p}\n"));
        }
    }
    s.push_str("---\n");
    s
}

/// httpbin in `namespace`: Deployment (container port 8080) and Service 8000 -> 8080.
fn httpbin(namespace: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: httpbin
  namespace: {namespace}
spec:
  template:
    metadata:
      labels: {{app: httpbin, version: v1}}
    spec:
      containers:
      - name: httpbin
        ports:
        - {{name: http, containerPort: 8080}}
---
apiVersion: v1
kind: Service
metadata:
  name: httpbin
  namespace: {namespace}
spec:
  selector: {{app: httpbin}}
  ports:
  - {{name: http, port: 8000, targetPort: 8080}}
---
"#
    )
}

struct Row {
    what: &'static str,
    input: String,
    /// Workload `httpbin` in this namespace, at this container port.
    namespace: &'static str,
    port: u16,
    want: MtlsMode,
    explains: &'static [&'static str],
}

fn check(rows: Vec<Row>, ambient: bool) {
    for row in rows {
        let input = row.input + &httpbin(row.namespace);
        let inv = Inventory::from_sources([("test.yaml", input.as_str())]);
        assert!(inv.errors.is_empty(), "{}: {:?}", row.what, inv.errors);
        let w = inv.workload(row.namespace, "httpbin").expect("httpbin");
        let d = if ambient {
            effective_mode_ambient(&inv, w, row.port)
        } else {
            effective_mode(&inv, w, row.port)
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

#[test]
fn b1_b3_scopes_and_inheritance() {
    let rows = vec![
        Row {
            what: "B3 no policy at all: PERMISSIVE",
            input: String::new(),
            namespace: "foo",
            port: 8080,
            want: Permissive,
            explains: &["Istio's default is PERMISSIVE"],
        },
        Row {
            what: "B1 mesh STRICT",
            input: pa("istio-system", "default", "", "STRICT", &[]),
            namespace: "foo",
            port: 8080,
            want: Strict,
            explains: &["mesh-wide PeerAuthentication istio-system/default sets STRICT"],
        },
        Row {
            what: "B3 mesh UNSET counts as PERMISSIVE",
            input: pa("istio-system", "default", "", "UNSET", &[]),
            namespace: "foo",
            port: 8080,
            want: Permissive,
            explains: &["leaves the mode UNSET"],
        },
        Row {
            what: "B1 mesh selector with empty matchLabels is mesh-wide",
            input: pa("istio-system", "default", " ", "STRICT", &[]),
            namespace: "foo",
            port: 8080,
            want: Strict,
            explains: &[],
        },
        Row {
            what: "B2.1 namespace DISABLE overrides mesh STRICT",
            input: pa("istio-system", "default", "", "STRICT", &[])
                + &pa("foo", "ns", "", "DISABLE", &[]),
            namespace: "foo",
            port: 8080,
            want: Disable,
            explains: &["namespace-wide PeerAuthentication foo/ns sets DISABLE"],
        },
        Row {
            what: "B3 namespace without mtls inherits mesh STRICT",
            input: pa("istio-system", "default", "", "STRICT", &[]) + &pa("foo", "ns", "", "", &[]),
            namespace: "foo",
            port: 8080,
            want: Strict,
            explains: &["inherits STRICT"],
        },
        Row {
            what: "B2.1 workload PERMISSIVE overrides namespace STRICT",
            input: pa("foo", "ns", "", "STRICT", &[])
                + &pa("foo", "wl", "app: httpbin", "PERMISSIVE", &[]),
            namespace: "foo",
            port: 8080,
            want: Permissive,
            explains: &["workload PeerAuthentication foo/wl sets PERMISSIVE"],
        },
        Row {
            what: "B3 workload UNSET inherits namespace STRICT",
            input: pa("foo", "ns", "", "STRICT", &[])
                + &pa("foo", "wl", "app: httpbin", "UNSET", &[]),
            namespace: "foo",
            port: 8080,
            want: Strict,
            explains: &[],
        },
        Row {
            what: "B1 workload selector that does not match is not used",
            input: pa("foo", "ns", "", "STRICT", &[])
                + &pa("foo", "wl", "app: other", "DISABLE", &[]),
            namespace: "foo",
            port: 8080,
            want: Strict,
            explains: &[],
        },
        Row {
            what: "B1 a policy of another namespace does not apply",
            input: pa("bar", "ns", "", "STRICT", &[]),
            namespace: "foo",
            port: 8080,
            want: Permissive,
            explains: &[],
        },
        Row {
            what: "B1 meshConfig.rootNamespace moves the mesh scope",
            input: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n  mesh: |\n    rootNamespace: istio-config\n---\n".to_string()
                + &pa("istio-config", "default", "", "STRICT", &[])
                + &pa("istio-system", "default", "", "DISABLE", &[]),
            namespace: "foo",
            port: 8080,
            want: Strict,
            explains: &["istio-config/default"],
        },
    ];
    check(rows, false);
}

#[test]
fn b2_several_policies_in_one_scope() {
    let rows = vec![
        Row {
            what: "B2.2 oldest namespace policy wins (creationTimestamp)",
            input: pa_at("foo", "a-new", "2024-05-01T00:00:00Z", "", "STRICT", &[])
                + &pa_at("foo", "z-old", "2023-01-01T00:00:00Z", "", "DISABLE", &[]),
            namespace: "foo",
            port: 8080,
            want: Disable,
            explains: &[
                "PeerAuthentication foo/a-new is ignored",
                "foo/z-old wins because it is older",
            ],
        },
        Row {
            what: "B2.2 no timestamps: first by name wins, the other is named",
            input: pa("foo", "b", "", "STRICT", &[]) + &pa("foo", "a", "", "PERMISSIVE", &[]),
            namespace: "foo",
            port: 8080,
            want: Permissive,
            explains: &["PeerAuthentication foo/b is ignored", "name order"],
        },
        Row {
            what: "B2.2 duplicate mesh policies",
            input: pa("istio-system", "default", "", "STRICT", &[])
                + &pa("istio-system", "extra", "", "DISABLE", &[]),
            namespace: "foo",
            port: 8080,
            want: Strict,
            explains: &["istio-system/extra is ignored"],
        },
        Row {
            what: "B2.3 workload policies do not merge: only the first contributes its ports",
            input: pa("foo", "a-wl", "app: httpbin", "STRICT", &[])
                + &pa("foo", "b-wl", "version: v1", "", &["8080: {mode: DISABLE}"]),
            namespace: "foo",
            port: 8080,
            want: Strict,
            explains: &["foo/b-wl is ignored: several workload policies apply"],
        },
    ];
    check(rows, false);
}

#[test]
fn b4_b6_port_level_and_root_selector() {
    let wl_strict_8080_disable = pa(
        "foo",
        "wl",
        "app: httpbin",
        "STRICT",
        &["8080: {mode: DISABLE}"],
    );
    let rows = vec![
        Row {
            what: "B4 portLevelMtls on the target port",
            input: wl_strict_8080_disable.clone(),
            namespace: "foo",
            port: 8080,
            want: Disable,
            explains: &["portLevelMtls 8080: DISABLE of PeerAuthentication foo/wl"],
        },
        Row {
            what: "B4 other ports keep the workload mode",
            input: wl_strict_8080_disable.clone(),
            namespace: "foo",
            port: 9000,
            want: Strict,
            explains: &[],
        },
        Row {
            what: "B4 port UNSET inherits the workload mode",
            input: pa(
                "foo",
                "wl",
                "app: httpbin",
                "DISABLE",
                &["8080: {mode: UNSET}"],
            ),
            namespace: "foo",
            port: 8080,
            want: Disable,
            explains: &["is UNSET: port inherits DISABLE"],
        },
        Row {
            what: "B4 port UNSET with workload UNSET inherits the namespace",
            input: pa("foo", "ns", "", "STRICT", &[])
                + &pa(
                    "foo",
                    "wl",
                    "app: httpbin",
                    "",
                    &["8080: {mode: UNSET}", "9000: {mode: DISABLE}"],
                ),
            namespace: "foo",
            port: 8080,
            want: Strict,
            explains: &[],
        },
        Row {
            what: "B4 the key is the container port, not the Service port (8000 -> 8080)",
            input: pa("foo", "ns", "", "STRICT", &[])
                + &pa("foo", "wl", "app: httpbin", "", &["8000: {mode: DISABLE}"]),
            namespace: "foo",
            port: 8080,
            want: Strict,
            explains: &[
                "names the Service port of foo/httpbin, but the key is the container port: use 8080",
            ],
        },
        Row {
            what: "B6 root-namespace selector policy is ignored",
            input: pa("istio-system", "wl", "app: httpbin", "STRICT", &[]),
            namespace: "foo",
            port: 8080,
            want: Permissive,
            explains: &[
                "[B6] PeerAuthentication istio-system/wl selects",
                "has no effect",
            ],
        },
        Row {
            what: "B6 root-namespace selector policy is ignored for workloads in the root namespace too",
            input: pa("istio-system", "default", "", "PERMISSIVE", &[])
                + &pa("istio-system", "wl", "app: httpbin", "STRICT", &[]),
            namespace: "istio-system",
            port: 8080,
            want: Permissive,
            explains: &["[B6]"],
        },
    ];
    check(rows, false);
}

#[test]
fn a6_2_ambient_modes() {
    let rows = vec![
        Row {
            what: "ambient: mesh STRICT",
            input: pa("istio-system", "default", "", "STRICT", &[]),
            namespace: "foo",
            port: 8080,
            want: Strict,
            explains: &["ztunnel"],
        },
        Row {
            what: "ambient: mesh DISABLE is not supported, plaintext still accepted (never DISABLE)",
            input: pa("istio-system", "default", "", "DISABLE", &[]),
            namespace: "foo",
            port: 8080,
            want: Permissive,
            explains: &["[A6.2]", "ambient does not support"],
        },
        Row {
            // istiod `convertedSelectorPeerAuthentications`: a DISABLE level is "not STRICT".
            what: "ambient: namespace DISABLE under mesh STRICT makes the workload non-STRICT",
            input: pa("istio-system", "default", "", "STRICT", &[])
                + &pa("foo", "ns", "", "DISABLE", &[]),
            namespace: "foo",
            port: 8080,
            want: Permissive,
            explains: &["[A6.2]"],
        },
        Row {
            what: "ambient: workload STRICT with port DISABLE exempts the port",
            input: pa(
                "foo",
                "wl",
                "app: httpbin",
                "STRICT",
                &["8080: {mode: DISABLE}"],
            ),
            namespace: "foo",
            port: 8080,
            want: Permissive,
            explains: &["[A6.2] portLevelMtls 8080"],
        },
        Row {
            what: "ambient: port DISABLE under a workload policy with UNSET mode is ignored",
            input: pa("foo", "ns", "", "STRICT", &[])
                + &pa("foo", "wl", "app: httpbin", "", &["8080: {mode: DISABLE}"]),
            namespace: "foo",
            port: 8080,
            want: Strict,
            explains: &["is ignored in ambient"],
        },
        Row {
            what: "ambient: port STRICT under workload PERMISSIVE",
            input: pa(
                "foo",
                "wl",
                "app: httpbin",
                "PERMISSIVE",
                &["8080: {mode: STRICT}"],
            ),
            namespace: "foo",
            port: 8080,
            want: Strict,
            explains: &[],
        },
        Row {
            what: "ambient: root-namespace selector policy skipped",
            input: pa("istio-system", "wl", "app: httpbin", "STRICT", &[]),
            namespace: "foo",
            port: 8080,
            want: Permissive,
            explains: &["[A6.2] PeerAuthentication istio-system/wl", "ambient mode"],
        },
    ];
    check(rows, true);
}

#[test]
fn c3_namespace_mode() {
    let rows: Vec<(&str, String, &str, MtlsMode)> = vec![
        ("no policy", String::new(), "foo", Permissive),
        (
            "mesh STRICT",
            pa("istio-system", "default", "", "STRICT", &[]),
            "foo",
            Strict,
        ),
        (
            "namespace DISABLE over mesh STRICT",
            pa("istio-system", "default", "", "STRICT", &[]) + &pa("foo", "ns", "", "DISABLE", &[]),
            "foo",
            Disable,
        ),
        (
            "namespace UNSET falls back to mesh",
            pa("istio-system", "default", "", "STRICT", &[]) + &pa("foo", "ns", "", "UNSET", &[]),
            "foo",
            Strict,
        ),
        (
            "workload policies are not considered",
            pa("foo", "wl", "app: httpbin", "STRICT", &[]),
            "foo",
            Permissive,
        ),
        (
            "the root namespace itself uses the mesh policy",
            pa("istio-system", "default", "", "DISABLE", &[]),
            "istio-system",
            Disable,
        ),
    ];
    for (what, yaml, ns, want) in rows {
        let inv = Inventory::from_sources([("t.yaml", yaml.as_str())]);
        let d = namespace_mode(&inv, ns);
        assert_eq!(d.value, want, "{what}: {:?}", d.steps);
        assert!(d.steps.iter().any(|s| s.rule == "C3"), "{what}: C3 step");
    }
}

/// istio.io tasks/security/authentication/authn-policy and mtls-migration, re-expressed.
#[test]
fn istio_io_authn_tasks() {
    let rows = vec![
        Row {
            what: "authn-policy: globally STRICT",
            input: pa("istio-system", "default", "", "STRICT", &[]),
            namespace: "bar",
            port: 8080,
            want: Strict,
            explains: &[],
        },
        Row {
            what: "authn-policy: namespace-wide STRICT on foo leaves bar PERMISSIVE",
            input: pa("foo", "default", "", "STRICT", &[]),
            namespace: "bar",
            port: 8080,
            want: Permissive,
            explains: &[],
        },
        Row {
            what: "authn-policy: namespace-wide STRICT on foo",
            input: pa("foo", "default", "", "STRICT", &[]),
            namespace: "foo",
            port: 8080,
            want: Strict,
            explains: &[],
        },
        Row {
            what: "authn-policy: workload policy httpbin.bar STRICT",
            input: pa("bar", "httpbin", "app: httpbin", "STRICT", &[]),
            namespace: "bar",
            port: 8080,
            want: Strict,
            explains: &[],
        },
        Row {
            what: "authn-policy: port-level 8080 DISABLE on httpbin.bar (go-httpbin container port)",
            input: pa(
                "bar",
                "httpbin",
                "app: httpbin",
                "STRICT",
                &["8080: {mode: DISABLE}"],
            ),
            namespace: "bar",
            port: 8080,
            want: Disable,
            explains: &[],
        },
        Row {
            what: "authn-policy: workload PERMISSIVE overrides namespace STRICT (overwrite example)",
            input: pa("foo", "default", "", "STRICT", &[])
                + &pa("foo", "overwrite-example", "app: httpbin", "DISABLE", &[]),
            namespace: "foo",
            port: 8080,
            want: Disable,
            explains: &[],
        },
        Row {
            what: "mtls-migration: start with mesh PERMISSIVE",
            input: pa("istio-system", "default", "", "PERMISSIVE", &[]),
            namespace: "foo",
            port: 8080,
            want: Permissive,
            explains: &[],
        },
        Row {
            what: "mtls-migration: lock down foo",
            input: pa("istio-system", "default", "", "PERMISSIVE", &[])
                + &pa("foo", "default", "", "STRICT", &[]),
            namespace: "foo",
            port: 8080,
            want: Strict,
            explains: &[],
        },
        Row {
            what: "mtls-migration: lock down the mesh",
            input: pa("istio-system", "default", "", "STRICT", &[]),
            namespace: "bar",
            port: 8080,
            want: Strict,
            explains: &[],
        },
    ];
    check(rows, false);
}

#[test]
fn explanation_cites_the_deciding_policy() {
    let yaml = pa("foo", "ns", "", "STRICT", &[]) + &httpbin("foo");
    let inv = Inventory::from_sources([("t.yaml", yaml.as_str())]);
    let w = inv.workload("foo", "httpbin").expect("httpbin");
    let d = effective_mode(&inv, w, 8080);
    let last = d.steps.last().expect("a summary step");
    assert_eq!(last.rule, "B3");
    assert!(
        last.objects
            .iter()
            .any(|c| c.object.kind == "PeerAuthentication" && c.object.name == "ns"),
        "summary cites the PeerAuthentication: {last}"
    );
}

/// B4: a key that is not a port number is ignored. Validation (E1 P3) may reject such a policy
/// at read time, so the key is put into the inventory directly.
#[test]
fn b4_bad_port_key_is_ignored() {
    let yaml = pa(
        "foo",
        "wl",
        "app: httpbin",
        "STRICT",
        &["8080: {mode: PERMISSIVE}"],
    ) + &httpbin("foo");
    let mut inv = Inventory::from_sources([("t.yaml", yaml.as_str())]);
    let policy = inv
        .peer_authentications
        .get_mut("foo")
        .and_then(|l| l.first_mut())
        .expect("policy");
    let ports = policy
        .spec
        .port_level_mtls
        .get_or_insert_with(Default::default);
    let disable = kfp_mesh_core::model::PeerMtls {
        mode: kfp_mesh_core::model::PeerMode::Disable,
    };
    ports.insert("http".to_string(), disable);
    let w = inv.workload("foo", "httpbin").expect("httpbin");
    let d = effective_mode(&inv, w, 8080);
    assert_eq!(d.value, Permissive, "{:?}", d.steps);
    assert!(
        d.steps.iter().any(|s| s.rule == "B4"
            && s.message.contains("\"http\"")
            && s.message.contains("not a port number")),
        "{:?}",
        d.steps
    );
}
