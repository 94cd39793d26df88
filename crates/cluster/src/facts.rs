//! Live facts: what the cluster shows beyond the manifests. Pure functions over the objects
//! read (the inventory), the live Pods and Workflows, and the static report.

use std::collections::{BTreeMap, BTreeSet};

use kfp_mesh_core::connection;
use kfp_mesh_core::inventory::Inventory;
use kfp_mesh_core::mesh::membership::{self, DataPlane};
use kfp_mesh_core::mesh::peer_authn::{self, MtlsMode};
use kfp_mesh_core::model::PeerMode;
use kfp_mesh_core::object::{Cited, Object, ObjectRef};
use kfp_mesh_kfp::check::{Report, Suppression};
use kfp_mesh_kfp::findings::{Code, Finding, Severity};
use kfp_mesh_kfp::runpods::{self, WebhookMode};
use serde::Serialize;
use serde_json::Value;

use crate::read::{KindRead, Snapshot};
use crate::strip::{LivePod, LiveWorkflow, Sidecar};

/// How many pod names a fact or a finding lists before it says "and N more".
const EXAMPLES: usize = 5;
const KILL_CMD: &str = "workflows.argoproj.io/kill-cmd-istio-proxy";

/// Run pods of the recent workflows of one run namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunPodsInNamespace {
    pub namespace: String,
    /// Workflows looked at (the most recent ones).
    pub workflows: Vec<String>,
    pub pods: usize,
    pub classic_sidecar: usize,
    pub native_sidecar: usize,
    pub ambient: usize,
    pub without_sidecar: usize,
    /// Some pods without `istio-proxy`.
    pub examples_without: Vec<String>,
}

/// A pod that stays Running only because its classic sidecar was never stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StuckPod {
    pub namespace: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// When its last other container finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The pod carries Argo's `kill-cmd-istio-proxy` annotation.
    pub kill_cmd: bool,
}

/// A kfp-mesh webhook and the Deployment serving it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookHealth {
    pub configuration: String,
    pub webhook: String,
    pub mode: WebhookMode,
    /// `namespace/name` of the Service it calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `namespace/name` of the Deployment behind the Service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    pub desired_replicas: i64,
    pub ready_replicas: i64,
    pub ready: bool,
    /// Pod mode: Kubernetes calls it after Istio's injector, which is not reinvoked.
    pub after_istio_injector: bool,
    #[serde(skip)]
    about: Option<Cited>,
}

/// One MutatingWebhookConfiguration, in the order Kubernetes calls them (by name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookOrder {
    pub name: String,
    /// `istio-injector`, `kfp-mesh` or `other`.
    pub role: &'static str,
    pub reinvocation: bool,
}

/// istiod's native sidecar setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NativeSidecars {
    /// `namespace/name` of the istiod Deployment.
    pub istiod: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub istio_version: Option<String>,
    /// `ENABLE_NATIVE_SIDECARS` as set on the Deployment (`None`: unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// What it means: `on`, `off`, or `auto` (on when every kubelet is 1.33 or newer).
    pub effective: &'static str,
}

/// PeerAuthentications and AuthorizationPolicies of one namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespacePolicies {
    pub namespace: String,
    /// `name (MODE)`.
    pub peer_authentications: Vec<String>,
    /// `name (ACTION)`.
    pub authorization_policies: Vec<String>,
}

/// Everything `verify` observed on the live cluster.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveFacts {
    pub context: String,
    pub server: String,
    /// The namespaces read (`null`: all).
    pub namespaces: Option<Vec<String>>,
    pub reads: Vec<KindRead>,
    /// Kinds whose API is not installed (e.g. `security.istio.io PeerAuthentication`).
    pub not_installed: Vec<String>,
    pub recent_workflows_per_namespace: usize,
    pub run_pods: Vec<RunPodsInNamespace>,
    pub stuck_pods: Vec<StuckPod>,
    pub webhooks: Vec<WebhookHealth>,
    pub webhook_order: Vec<WebhookOrder>,
    pub native_sidecars: Vec<NativeSidecars>,
    pub policies: Vec<NamespacePolicies>,
    /// Istio's ambient data plane, when KFP's flows use it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambient: Option<AmbientHealth>,
    /// The findings above (also merged into the report).
    pub findings: Vec<Finding>,
}

/// Istio's ambient data plane as the cluster runs it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AmbientHealth {
    /// ztunnel DaemonSets (`namespace/name`), pods desired and ready.
    pub ztunnel: Vec<DaemonSetHealth>,
    /// The waypoints KFP's flows pass, with the Deployment istiod runs for each.
    pub waypoints: Vec<WaypointHealth>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSetHealth {
    pub name: String,
    pub desired: i64,
    pub ready: i64,
    #[serde(skip)]
    pub about: Option<Cited>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaypointHealth {
    /// The Gateway `namespace/name`.
    pub waypoint: String,
    /// The Deployment of the same name, when the cluster has it.
    pub deployment: Option<String>,
    pub desired_replicas: i64,
    pub ready_replicas: i64,
    #[serde(skip)]
    pub about: Option<Cited>,
}

/// ztunnel and the waypoints, when some flow of the report is enforced by a ztunnel.
pub fn ambient_health(inv: &Inventory, report: &Report) -> Option<AmbientHealth> {
    let in_use = report
        .flows
        .iter()
        .any(|f| f.enforcement.iter().any(|e| e.ends_with("ztunnel")));
    if !in_use {
        return None;
    }
    let object = |kind: &str, ns: &str, name: &str| {
        inv.objects
            .iter()
            .find(|o| o.kind == kind && o.meta.name == name && o.meta.namespace_or_default() == ns)
    };
    let ztunnel = inv
        .workloads
        .iter()
        .filter(|w| {
            w.kind == "DaemonSet" && (w.name == "ztunnel" || w.label("app") == Some("ztunnel"))
        })
        .map(|w| {
            let body = object("DaemonSet", &w.namespace, &w.name);
            DaemonSetHealth {
                name: format!("{}/{}", w.namespace, w.name),
                desired: body
                    .and_then(|b| int_at(b, "/status/desiredNumberScheduled"))
                    .unwrap_or(0),
                ready: body
                    .and_then(|b| int_at(b, "/status/numberReady"))
                    .unwrap_or(0),
                about: Some(w.cite()),
            }
        })
        .collect();
    let waypoints: BTreeSet<&str> = report
        .flows
        .iter()
        .flat_map(|f| f.enforcement.iter())
        .filter_map(|e| e.strip_prefix("waypoint "))
        .collect();
    let waypoints = waypoints
        .into_iter()
        .map(|wp| {
            let (ns, name) = wp.split_once('/').unwrap_or(("", wp));
            let dep = object("Deployment", ns, name);
            WaypointHealth {
                waypoint: wp.to_string(),
                deployment: dep.map(|_| wp.to_string()),
                desired_replicas: dep.and_then(|o| int_at(o, "/spec/replicas")).unwrap_or(1),
                ready_replicas: dep
                    .and_then(|o| int_at(o, "/status/readyReplicas"))
                    .unwrap_or(0),
                about: dep.map(|o| o.cite()),
            }
        })
        .collect();
    Some(AmbientHealth { ztunnel, waypoints })
}

/// Derive the live facts and their findings.
pub fn live_facts(snap: &Snapshot, inv: &Inventory, report: &Report, recent: usize) -> LiveFacts {
    let mut namespaces: BTreeSet<String> = report
        .kfp
        .profiles
        .iter()
        .filter(|p| !p.synthetic)
        .map(|p| p.name.clone())
        .collect();
    if report.kfp.detected {
        namespaces.insert(report.kfp.kfp_namespace().to_string());
    }
    let mut facts = LiveFacts {
        context: snap.context.clone(),
        server: snap.server.clone(),
        namespaces: snap.scope.clone(),
        reads: snap.reads.clone(),
        not_installed: snap
            .reads
            .iter()
            .filter(|r| !r.installed)
            .map(|r| r.kind.clone())
            .collect(),
        recent_workflows_per_namespace: recent,
        run_pods: run_pods(&snap.pods, &snap.workflows, &namespaces, recent),
        stuck_pods: stuck_pods(&snap.pods),
        webhooks: webhook_health(inv),
        webhook_order: webhook_order(inv),
        native_sidecars: native_sidecars(inv),
        policies: policies(inv),
        ambient: ambient_health(inv, report),
        findings: Vec::new(),
    };
    facts.findings = findings(&facts, &snap.pods, inv, report);
    facts
}

/// The run pods of the `recent` most recent workflows of each namespace in `namespaces`.
pub fn run_pods(
    pods: &[LivePod],
    workflows: &[LiveWorkflow],
    namespaces: &BTreeSet<String>,
    recent: usize,
) -> Vec<RunPodsInNamespace> {
    // Workflow creation times: from the Workflow objects, else the first pod of each.
    let mut created: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for w in workflows {
        if let Some(c) = &w.created {
            created.insert((&w.namespace, &w.name), c);
        }
    }
    let mut by_ns: BTreeMap<&str, BTreeMap<&str, Vec<&LivePod>>> = BTreeMap::new();
    for p in pods.iter().filter(|p| p.is_kfp_run_pod()) {
        if !namespaces.contains(&p.namespace) {
            continue;
        }
        let Some(wf) = p.workflow() else { continue };
        by_ns
            .entry(&p.namespace)
            .or_default()
            .entry(wf)
            .or_default()
            .push(p);
    }
    let mut out = Vec::new();
    for (ns, wfs) in by_ns {
        let mut order: Vec<(&str, &str)> = wfs
            .iter()
            .map(|(wf, pods)| {
                let t = created.get(&(ns, *wf)).copied().unwrap_or_else(|| {
                    pods.iter()
                        .filter_map(|p| p.created.as_deref())
                        .min()
                        .unwrap_or("")
                });
                (t, *wf)
            })
            .collect();
        // Newest first; RFC 3339 UTC timestamps sort as text.
        order.sort_by(|a, b| b.cmp(a));
        order.truncate(recent);
        let mut fact = RunPodsInNamespace {
            namespace: ns.to_string(),
            ..RunPodsInNamespace::default()
        };
        for (_, wf) in &order {
            fact.workflows.push(wf.to_string());
            let mut wf_pods: Vec<&&LivePod> = wfs.get(wf).into_iter().flatten().collect();
            wf_pods.sort_by(|a, b| a.name.cmp(&b.name));
            for p in wf_pods {
                fact.pods += 1;
                match p.sidecar() {
                    Sidecar::Classic => fact.classic_sidecar += 1,
                    Sidecar::Native => fact.native_sidecar += 1,
                    Sidecar::Ambient => fact.ambient += 1,
                    Sidecar::None => {
                        fact.without_sidecar += 1;
                        if fact.examples_without.len() < EXAMPLES {
                            fact.examples_without.push(p.name.clone());
                        }
                    }
                }
            }
        }
        out.push(fact);
    }
    out
}

/// Pods kept Running by a classic sidecar nobody stopped.
pub fn stuck_pods(pods: &[LivePod]) -> Vec<StuckPod> {
    let mut out: Vec<StuckPod> = pods
        .iter()
        .filter(|p| p.stuck_on_sidecar())
        .map(|p| StuckPod {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            workflow: p.workflow().map(str::to_string),
            since: p.finished_at().map(str::to_string),
            kill_cmd: p.annotations.contains_key(KILL_CMD),
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

fn int_at(object: &Object, pointer: &str) -> Option<i64> {
    object.pointer(pointer).as_ref().and_then(Value::as_i64)
}

/// The kfp-mesh webhooks and the readiness of the Deployments serving them.
pub fn webhook_health(inv: &Inventory) -> Vec<WebhookHealth> {
    let mut out = Vec::new();
    for wh in runpods::kfp_mesh_webhooks(inv) {
        let svc_ref = inv
            .mutating_webhooks
            .iter()
            .find(|m| m.meta.name == wh.configuration.object.name)
            .and_then(|m| m.spec.webhooks.iter().find(|w| w.name == wh.webhook))
            .and_then(|w| w.client_config.as_ref())
            .and_then(|c| c.service.as_ref());
        let service = svc_ref.and_then(|s| inv.service(&s.namespace, &s.name));
        let server = service.and_then(|s| {
            inv.service_endpoints(s)
                .into_iter()
                .find(|w| !w.synthetic && w.kind != "Pod")
        });
        let object = server.and_then(|w| {
            inv.objects.iter().find(|o| {
                o.kind == w.kind
                    && o.meta.name == w.name
                    && o.meta.namespace_or_default() == w.namespace
            })
        });
        let desired = object
            .and_then(|o| int_at(o, "/spec/replicas"))
            .unwrap_or(1);
        let ready = object
            .and_then(|o| int_at(o, "/status/readyReplicas"))
            .unwrap_or(0);
        out.push(WebhookHealth {
            configuration: wh.configuration.object.name.clone(),
            webhook: wh.webhook.clone(),
            mode: wh.mode,
            service: svc_ref.map(|s| format!("{}/{}", s.namespace, s.name)),
            deployment: server.map(|w| format!("{}/{}", w.namespace, w.name)),
            desired_replicas: desired,
            ready_replicas: ready,
            ready: server.is_some() && ready > 0,
            after_istio_injector: wh.after_istio_injector,
            about: server
                .map(|w| w.cite())
                .or_else(|| Some(wh.configuration.clone())),
        });
    }
    out
}

fn is_istio_injector(m: &kfp_mesh_core::inventory::MutatingWebhookConfiguration) -> bool {
    m.meta.name.starts_with("istio-sidecar-injector")
        || m.meta.name.starts_with("istio-revision-tag")
        || m.spec
            .webhooks
            .iter()
            .any(|w| w.name.ends_with("sidecar-injector.istio.io"))
}

/// Every MutatingWebhookConfiguration in call order, Istio's injectors and kfp-mesh marked.
pub fn webhook_order(inv: &Inventory) -> Vec<WebhookOrder> {
    let ours: BTreeSet<String> = runpods::kfp_mesh_webhooks(inv)
        .into_iter()
        .map(|w| w.configuration.object.name.clone())
        .collect();
    let mut out: Vec<WebhookOrder> = inv
        .mutating_webhooks
        .iter()
        .map(|m| WebhookOrder {
            name: m.meta.name.clone(),
            role: if is_istio_injector(m) {
                "istio-injector"
            } else if ours.contains(&m.meta.name) {
                "kfp-mesh"
            } else {
                "other"
            },
            reinvocation: m
                .spec
                .webhooks
                .iter()
                .any(|w| w.reinvocation_policy.as_deref() == Some("IfNeeded")),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `1.29.1` from `docker.io/istio/pilot:1.29.1-distroless`.
fn istio_version(image: &str) -> Option<String> {
    let tag = kfp_mesh_kfp::detect::image_tag(image)?;
    let v: String = tag
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!v.is_empty()).then_some(v)
}

fn at_least(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let ma = parts.next().unwrap_or(0);
    let mi = parts.next().unwrap_or(0);
    (ma, mi) >= (major, minor)
}

/// istiod's `ENABLE_NATIVE_SIDECARS`, per istiod Deployment.
pub fn native_sidecars(inv: &Inventory) -> Vec<NativeSidecars> {
    let mut out = Vec::new();
    for w in inv
        .workloads
        .iter()
        .filter(|w| w.kind == "Deployment" && w.name.starts_with("istiod"))
    {
        let Some(c) = w
            .spec
            .containers
            .iter()
            .find(|c| c.name == "discovery")
            .or_else(|| w.spec.containers.first())
        else {
            continue;
        };
        let version = c.image.as_deref().and_then(istio_version);
        let env = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "ENABLE_NATIVE_SIDECARS")
            .map(|e| e.value.clone().unwrap_or_default());
        let effective = match env.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("true") => "on",
            Some("false") => "off",
            Some(_) => "auto",
            // Unset: off up to 1.26, `auto` from 1.27.
            None => match version.as_deref() {
                Some(v) if at_least(v, 1, 27) => "auto",
                _ => "off",
            },
        };
        out.push(NativeSidecars {
            istiod: format!("{}/{}", w.namespace, w.name),
            istio_version: version,
            env,
            effective,
        });
    }
    out
}

/// PeerAuthentications and AuthorizationPolicies per namespace.
pub fn policies(inv: &Inventory) -> Vec<NamespacePolicies> {
    let mut by_ns: BTreeMap<String, NamespacePolicies> = BTreeMap::new();
    for (ns, list) in &inv.peer_authentications {
        let e = by_ns
            .entry(ns.clone())
            .or_insert_with(|| NamespacePolicies {
                namespace: ns.clone(),
                ..NamespacePolicies::default()
            });
        for pa in list {
            let mode = match pa.spec.mtls.as_ref().map(|m| m.mode) {
                Some(PeerMode::Strict) => "STRICT",
                Some(PeerMode::Permissive) => "PERMISSIVE",
                Some(PeerMode::Disable) => "DISABLE",
                Some(PeerMode::Unset) | None => "UNSET",
            };
            let scope = if pa.spec.selector.is_some() {
                ", workload"
            } else {
                ""
            };
            e.peer_authentications
                .push(format!("{} ({mode}{scope})", pa.meta.name));
        }
    }
    for (ns, list) in &inv.authorization_policies {
        let e = by_ns
            .entry(ns.clone())
            .or_insert_with(|| NamespacePolicies {
                namespace: ns.clone(),
                ..NamespacePolicies::default()
            });
        for ap in list {
            let action = ap.spec.action.as_str();
            e.authorization_policies
                .push(format!("{} ({action})", ap.meta.name));
        }
    }
    by_ns.into_values().collect()
}

fn names(list: &[String], total: usize) -> String {
    let mut s = list.join(", ");
    if total > list.len() {
        s.push_str(&format!(" and {} more", total - list.len()));
    }
    s
}

/// A KFP server a run pod in `ns` must reach enforces STRICT mTLS (so a run pod without a
/// sidecar fails there).
fn run_pods_meet_strict(inv: &Inventory, report: &Report, ns: &str) -> bool {
    report
        .flows
        .iter()
        .filter(|f| f.required && f.from.synthetic)
        .filter(|f| f.from.namespace.as_deref() == Some(ns))
        .any(|f| {
            let Some(svc) = inv.service(&f.to.namespace, &f.to.service) else {
                return false;
            };
            let Some(port) = svc
                .spec
                .ports
                .iter()
                .find(|p| i64::from(f.to.port) == p.port)
            else {
                return false;
            };
            inv.service_endpoints(svc).into_iter().any(|ep| {
                membership::data_plane(inv, ep).value == DataPlane::Sidecar
                    && ep.target_port(port).is_some_and(|t| {
                        peer_authn::effective_mode(inv, ep, t).value == MtlsMode::Strict
                    })
            })
        })
}

fn pod_cite(pods: &[LivePod], ns: &str, name: &str) -> Option<Cited> {
    pods.iter()
        .find(|p| p.namespace == ns && p.name == name)
        .map(|p| {
            Cited::new(
                ObjectRef::new("Pod", Some(&p.namespace), &p.name),
                p.origin.clone(),
            )
        })
}

/// The codes only `verify`'s live facts emit (the rule registry of `check` is
/// `kfp_mesh_kfp::check::rules::RULES`; together they cover the catalog, each code once).
pub const LIVE_CODES: &[Code] = &[
    Code::LiveRunPodWithoutSidecar,
    Code::LivePodStuckOnSidecar,
    Code::LiveWebhookNotReady,
    Code::LiveZtunnelNotReady,
    Code::LiveWaypointNotReady,
];

/// The findings of the live facts: KM060 (run pods without a sidecar), KM061 (pods stuck on
/// their sidecar), KM062 (kfp-mesh webhook not ready).
pub fn findings(
    facts: &LiveFacts,
    pods: &[LivePod],
    inv: &Inventory,
    report: &Report,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for rp in &facts.run_pods {
        if rp.without_sidecar == 0 {
            continue;
        }
        let predicted_sidecar = report.flows.iter().any(|f| {
            f.from.synthetic
                && f.from.namespace.as_deref() == Some(rp.namespace.as_str())
                && f.transport == Some(connection::Transport::Mtls)
        });
        let mut message = format!(
            "{} of {} run pods of the {} most recent workflows in {} have no istio-proxy ({})",
            rp.without_sidecar,
            rp.pods,
            rp.workflows.len(),
            rp.namespace,
            names(&rp.examples_without, rp.without_sidecar)
        );
        if predicted_sidecar {
            message.push_str(
                "; the manifests predict a sidecar for them, so the kfp-mesh webhook did not mutate them (created before it was deployed, webhook not ready, or outside its selectors)",
            );
        }
        let strict = run_pods_meet_strict(inv, report, &rp.namespace);
        if strict {
            message.push_str(": KFP servers they call enforce STRICT mTLS, so these runs fail");
        }
        let about = rp
            .examples_without
            .first()
            .and_then(|n| pod_cite(pods, &rp.namespace, n));
        let f = Finding::new(Code::LiveRunPodWithoutSidecar, message, about.as_ref());
        out.push(if strict {
            f
        } else {
            f.with_severity(Severity::Warning)
        });
    }
    let mut stuck_by_ns: BTreeMap<&str, Vec<&StuckPod>> = BTreeMap::new();
    for s in &facts.stuck_pods {
        stuck_by_ns.entry(&s.namespace).or_default().push(s);
    }
    for (ns, stuck) in stuck_by_ns {
        let shown: Vec<String> = stuck
            .iter()
            .take(EXAMPLES)
            .map(|s| match &s.since {
                Some(t) => format!("{} (done since {t})", s.name),
                None => s.name.clone(),
            })
            .collect();
        let with_cmd = stuck.iter().filter(|s| s.kill_cmd).count();
        let mut message = format!(
            "{} pods in {ns} stay Running only because istio-proxy was not stopped after their containers finished: {}",
            stuck.len(),
            names(&shown, stuck.len())
        );
        if with_cmd > 0 {
            message.push_str(&format!(
                "; {with_cmd} carry `{KILL_CMD}`, so Argo's kill command failed (no pods/exec for the workflow controller, or a distroless proxy without that command)"
            ));
        }
        let about = stuck
            .first()
            .and_then(|s| pod_cite(pods, &s.namespace, &s.name));
        out.push(Finding::new(
            Code::LivePodStuckOnSidecar,
            message,
            about.as_ref(),
        ));
    }
    for wh in &facts.webhooks {
        if wh.ready {
            continue;
        }
        let message = match &wh.deployment {
            Some(d) => format!(
                "the kfp-mesh webhook {} ({}) is served by Deployment {d} with {}/{} replicas ready: with failurePolicy Ignore, run pods are created without its mutation meanwhile",
                wh.configuration, wh.webhook, wh.ready_replicas, wh.desired_replicas
            ),
            None => format!(
                "the kfp-mesh webhook {} ({}) calls Service {} but no Deployment serves it: run pods are created without its mutation",
                wh.configuration,
                wh.webhook,
                wh.service.as_deref().unwrap_or("(none)")
            ),
        };
        out.push(Finding::new(
            Code::LiveWebhookNotReady,
            message,
            wh.about.as_ref(),
        ));
    }
    if let Some(amb) = &facts.ambient {
        out.extend(ambient_findings(amb));
    }
    out
}

/// KM084 (ztunnel not ready) and KM085 (a waypoint without a ready pod).
fn ambient_findings(amb: &AmbientHealth) -> Vec<Finding> {
    let mut out = Vec::new();
    if amb.ztunnel.is_empty() {
        out.push(Finding::new(
            Code::LiveZtunnelNotReady,
            "KFP's flows are enforced by ztunnel, but the cluster has no ztunnel DaemonSet: ambient pods are not captured",
            None,
        ));
    }
    for ds in &amb.ztunnel {
        if ds.desired == 0 || ds.ready < ds.desired {
            out.push(Finding::new(
                Code::LiveZtunnelNotReady,
                format!(
                    "DaemonSet {} has {} of {} ztunnel pods ready: pods on the other nodes are not captured or lose their connections",
                    ds.name, ds.ready, ds.desired
                ),
                ds.about.as_ref(),
            ));
        }
    }
    for wp in &amb.waypoints {
        if wp.deployment.is_none() || wp.ready_replicas == 0 {
            out.push(Finding::new(
                Code::LiveWaypointNotReady,
                match &wp.deployment {
                    None => format!(
                        "waypoint {} has no Deployment in the cluster: the connections through it fail",
                        wp.waypoint
                    ),
                    Some(d) => format!(
                        "waypoint Deployment {d} has {} of {} replicas ready: the connections through it fail",
                        wp.ready_replicas, wp.desired_replicas
                    ),
                },
                wp.about.as_ref(),
            ));
        }
    }
    out
}

/// Merge the live findings into the report (after suppressions), in the report's order.
pub fn merge_findings(
    report: &mut Report,
    live: &[Finding],
    inv: &Inventory,
    suppress: &[Suppression],
) {
    let on_object = |f: &Finding| {
        f.object.as_ref().is_some_and(|o| {
            inv.objects.iter().any(|obj| {
                obj.kind == o.kind
                    && obj.meta.name == o.name
                    && obj.meta.namespace == o.namespace
                    && obj
                        .meta
                        .annotation(kfp_mesh_kfp::check::SUPPRESS_ANNOTATION)
                        .is_some_and(|codes| {
                            codes
                                .split(',')
                                .any(|c| Code::parse(c.trim()) == Some(f.code))
                        })
            })
        })
    };
    for f in live {
        let suppressed = on_object(f)
            || suppress.iter().any(|s| {
                s.code == f.code
                    && match &s.object {
                        None => true,
                        Some((ns, name)) => f.object.as_ref().is_some_and(|o| {
                            o.namespace.as_deref() == Some(ns.as_str()) && &o.name == name
                        }),
                    }
            });
        if suppressed {
            report.suppressed += 1;
        } else {
            report.findings.push(f.clone());
        }
    }
    report.findings.sort_by(|a, b| {
        (a.severity, a.code, &a.object, &a.flow, &a.message)
            .cmp(&(b.severity, b.code, &b.object, &b.flow, &b.message))
    });
}
