//! Where each KFP client is configured to connect: the host and port a flow's caller really
//! uses, read from the install (environment variables and the ConfigMaps they point to,
//! command-line flags, Argo's artifact repository), so that a flow is checked against the
//! server its client calls, not against the catalog's default Service.
//!
//! Pure: plain functions over the inventory. `None` means the client's configuration is not in
//! the input (the client's built-in default applies, which the catalog stands for).

use kfp_mesh_core::inventory::{Inventory, Workload};
use serde_json::Value;

use crate::catalog::Flow;
use crate::detect::{self, Database, Evidence, KfpFacts};

/// A destination as a client's configuration names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Configured {
    /// The Service name (first DNS label of the host).
    pub service: String,
    /// The namespace named by the host (`name.ns[.svc[.cluster.local]]`); `None` for a short
    /// name, which resolves in the client's own namespace.
    pub namespace: Option<String>,
    pub port: Option<u16>,
    /// The host (and port) as written.
    pub text: String,
    /// The setting that names it, with its object: `postgresHost=postgres (env
    /// DBCONFIG_HOST_NAME of Deployment kubeflow/cache-server)`.
    pub evidence: Evidence,
}

/// Parse `[scheme://]host[:port][/path]` into the Service name, its namespace (if the host
/// names one) and the port. `None` for an empty host or a host that is an IP address.
pub fn parse_endpoint(text: &str) -> Option<(String, Option<String>, Option<u16>)> {
    let t = text.trim();
    let t = t.split_once("://").map_or(t, |(_, rest)| rest);
    let t = t.split('/').next().unwrap_or(t);
    let (host, port) = match t.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
        None => (t, None),
    };
    if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let mut labels = host.split('.');
    let service = labels.next()?.to_ascii_lowercase();
    let namespace = labels
        .next()
        .filter(|n| *n != "svc" && !n.is_empty())
        .map(str::to_ascii_lowercase);
    Some((service, namespace, port))
}

fn configured_from(
    host: (String, Evidence),
    port: Option<(String, Evidence)>,
) -> Option<Configured> {
    let (text, evidence) = host;
    let (service, namespace, mut parsed_port) = parse_endpoint(&text)?;
    let mut full_text = text.clone();
    let mut evidence = evidence;
    if parsed_port.is_none()
        && let Some((p, ev)) = port
        && let Ok(n) = p.trim().parse::<u16>()
    {
        parsed_port = Some(n);
        full_text = format!("{text}:{n}");
        evidence.detail = format!("{}, {}", evidence.detail, ev.detail);
    }
    Some(Configured {
        service,
        namespace,
        port: parsed_port,
        text: full_text,
        evidence,
    })
}

/// `--flag=value` or `--flag value` of a container, with Kubernetes' `$(VAR)` references
/// expanded from the container's environment.
fn container_flag(
    inv: &Inventory,
    o: &kfp_mesh_core::object::Object,
    container: Option<&str>,
    flag: &str,
) -> Option<(String, Evidence)> {
    for c in detect::containers_json(o, container) {
        let name = c.get("name").and_then(Value::as_str).map(str::to_string);
        let words: Vec<String> = ["command", "args"]
            .iter()
            .filter_map(|k| c.get(*k).and_then(Value::as_array))
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let mut raw = None;
        for (i, w) in words.iter().enumerate() {
            if let Some(v) = w.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                raw = Some(v.to_string());
                break;
            }
            if w == flag {
                raw = words.get(i + 1).cloned();
                break;
            }
        }
        let Some(raw) = raw else { continue };
        let detail = format!("{flag}={raw} of {}", o.object_ref());
        // `$(VAR)`: the value of the container's env var.
        if let Some(var) = raw.strip_prefix("$(").and_then(|r| r.strip_suffix(')')) {
            let (value, ev) = detect::container_env(inv, o, name.as_deref(), var)?;
            return Some((
                value,
                Evidence {
                    detail: format!("{} via {detail}", ev.detail),
                    ..ev
                },
            ));
        }
        return Some((raw, Evidence::of_object(o, detail)));
    }
    None
}

/// The destination `flow`'s caller `source` is configured to use, if its configuration is in
/// the input. `source` is `None` for callers outside the inventory's workloads.
pub fn configured(
    inv: &Inventory,
    facts: &KfpFacts,
    flow: &Flow,
    source: Option<&Workload>,
) -> Option<Configured> {
    let container = flow.source.container.as_deref();
    let dest = flow.destination.role.as_str();
    let src = flow.source.role.as_str();
    // Argo's wait container uploads logs to the artifact repository of the workflow
    // controller's ConfigMap.
    if dest == "object-store" && container == Some("wait") {
        return argo_artifact_repository(facts);
    }
    let o = source.and_then(|w| detect::workload_object(inv, w))?;
    let env = |var: &str| detect::container_env(inv, o, container, var);
    let flag = |f: &str| container_flag(inv, o, container, f);
    // KFP 2.17's `wait-for-*` init containers: `nc -z $WAIT_HOST $WAIT_PORT`.
    if container.is_some_and(|c| c.starts_with("wait-for-")) {
        return configured_from(env("WAIT_HOST")?, env("WAIT_PORT"));
    }
    match (dest, src) {
        ("object-store", "api-server") => env("OBJECTSTORECONFIG_HOST")
            .map(|h| (h, env("OBJECTSTORECONFIG_PORT")))
            .or_else(|| {
                env("MINIO_SERVICE_SERVICE_HOST").map(|h| (h, env("MINIO_SERVICE_SERVICE_PORT")))
            })
            .and_then(|(h, p)| configured_from(h, p)),
        ("object-store", "ui" | "artifact-proxy") => {
            let mut c = configured_from(env("MINIO_HOST")?, env("MINIO_PORT"))?;
            if c.namespace.is_none()
                && let Some((ns, _)) = env("MINIO_NAMESPACE").filter(|(n, _)| !n.is_empty())
            {
                c.namespace = Some(ns);
            }
            Some(c)
        }
        ("object-store", "kfp-profile-controller") => {
            let var = match &flow.destination.port {
                crate::catalog::PortRef::Name(n) if n == "http-iam" => "AWS_ENDPOINT_URL",
                _ => "S3_ENDPOINT_URL",
            };
            configured_from(env(var)?, None)
        }
        ("database", "api-server") => {
            let (host, port) = match facts.database.as_ref().map(|d| d.kind) {
                Some(Database::Postgresql) => (
                    "DBCONFIG_POSTGRESQLCONFIG_HOST",
                    "DBCONFIG_POSTGRESQLCONFIG_PORT",
                ),
                _ => ("DBCONFIG_MYSQLCONFIG_HOST", "DBCONFIG_MYSQLCONFIG_PORT"),
            };
            env(host)
                .map(|h| (h, env(port)))
                .or_else(|| env("DBCONFIG_HOST").map(|h| (h, env("DBCONFIG_PORT"))))
                .and_then(|(h, p)| configured_from(h, p))
        }
        ("database", "cache-server") => configured_from(flag("--db_host")?, flag("--db_port")),
        ("database", "mlmd") => flag("--postgres_config_host")
            .map(|h| (h, flag("--postgres_config_port")))
            .or_else(|| flag("--mysql_config_host").map(|h| (h, flag("--mysql_config_port"))))
            .and_then(|(h, p)| configured_from(h, p)),
        _ => None,
    }
}

/// `artifactRepository.s3.endpoint` of `workflow-controller-configmap`.
fn argo_artifact_repository(facts: &KfpFacts) -> Option<Configured> {
    let argo = facts.argo_artifact_repository.as_ref()?;
    configured_from((argo.endpoint.clone(), argo.evidence.clone()), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_like_dns_names() {
        let p = |s| parse_endpoint(s);
        assert_eq!(
            p("minio-service.kubeflow:9000"),
            Some(("minio-service".into(), Some("kubeflow".into()), Some(9000)))
        );
        assert_eq!(
            p("seaweedfs.kubeflow.svc:9000"),
            Some(("seaweedfs".into(), Some("kubeflow".into()), Some(9000)))
        );
        assert_eq!(
            p("http://seaweedfs.kubeflow:8111"),
            Some(("seaweedfs".into(), Some("kubeflow".into()), Some(8111)))
        );
        assert_eq!(
            p("mysql.kubeflow.svc.cluster.local"),
            Some(("mysql".into(), Some("kubeflow".into()), None))
        );
        assert_eq!(p("postgres"), Some(("postgres".into(), None, None)));
        assert_eq!(p("10.0.0.1:9000"), None);
        assert_eq!(p("host:notaport"), None);
        assert_eq!(p(""), None);
    }
}
