//! Small manifest builders for the Envoy worlds.
#![allow(dead_code)]

pub fn namespace(name: &str, inject: bool) -> String {
    let labels = if inject {
        "\n  labels:\n    istio-injection: enabled"
    } else {
        ""
    };
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}{labels}\n---\n")
}

/// A Deployment `name` (label `app: name`, service account `sa`) with container ports 8080
/// and 9000, and a Service `name` mapping `http-web` 8000→8080 and `tcp-data` 9000→9000.
pub fn server(ns: &str, name: &str) -> String {
    workload(ns, name, name, &[8080, 9000], None)
        + &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  selector:\n    app: {name}\n  ports:\n  - name: http-web\n    port: 8000\n    targetPort: 8080\n  - name: tcp-data\n    port: 9000\n    targetPort: 9000\n---\n"
        )
}

/// A Deployment with `app: name`; `inject: Some(false)` opts the pod out of injection.
pub fn workload(ns: &str, name: &str, sa: &str, ports: &[u16], inject: Option<bool>) -> String {
    let inject = match inject {
        None => String::new(),
        Some(v) => format!("\n        sidecar.istio.io/inject: \"{v}\""),
    };
    let ports = if ports.is_empty() {
        String::new()
    } else {
        let mut s = "\n        ports:".to_string();
        for p in ports {
            s.push_str(&format!("\n        - containerPort: {p}"));
        }
        s
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}{inject}\n    spec:\n      serviceAccountName: {sa}\n      containers:\n      - name: app\n        image: example/{name}{ports}\n---\n"
    )
}

pub fn pa_namespace(ns: &str, mode: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: {ns}\nspec:\n  mtls:\n    mode: {mode}\n---\n"
    )
}

/// A workload PeerAuthentication selecting `app: app`; `mode` may be `UNSET`.
pub fn pa_workload(ns: &str, app: &str, mode: &str, ports: &[(u16, &str)]) -> String {
    let mut s = format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: {app}\n  namespace: {ns}\nspec:\n  selector:\n    matchLabels:\n      app: {app}\n  mtls:\n    mode: {mode}\n"
    );
    if !ports.is_empty() {
        s.push_str("  portLevelMtls:\n");
        for (p, m) in ports {
            s.push_str(&format!("    {p}:\n      mode: {m}\n"));
        }
    }
    s.push_str("---\n");
    s
}

pub fn destination_rule(ns: &str, name: &str, host: &str, mode: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  host: {host}\n  trafficPolicy:\n    tls:\n      mode: {mode}\n---\n"
    )
}

/// An AuthorizationPolicy selecting `app: app`, with `spec_rest` (YAML at the `spec` level,
/// indented by two spaces) after the selector.
pub fn policy(ns: &str, name: &str, app: &str, spec_rest: &str) -> String {
    policy_annotated(ns, name, app, "", spec_rest)
}

pub fn policy_annotated(
    ns: &str,
    name: &str,
    app: &str,
    annotations: &str,
    spec_rest: &str,
) -> String {
    let annotations = if annotations.is_empty() {
        String::new()
    } else {
        format!("\n  annotations:\n    {annotations}")
    };
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}{annotations}\nspec:\n  selector:\n    matchLabels:\n      app: {app}\n{spec_rest}---\n"
    )
}
