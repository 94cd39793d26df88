//! KFP run pods (drivers, executors, importers) as Argo creates them: without a sidecar while
//! a server they call enforces STRICT (KM010), a pod webhook after Istio's injector (KM011),
//! classic sidecars that never stop (KM012) or are not ready at start (KM013).

use std::collections::BTreeSet;

use kfp_mesh_core::inventory::Inventory;
use kfp_mesh_core::mesh::authz::sources;
use kfp_mesh_core::mesh::membership::{self, DataPlane};
use kfp_mesh_core::mesh::peer_authn::{self, MtlsMode};

use crate::detect::KfpFacts;

use super::{Context, Rule};
use crate::findings::{Code, Finding};

pub const RULE: Rule = Rule {
    name: "run-pods",
    codes: &[
        Code::RunPodsWithoutSidecar,
        Code::WebhookAfterInjector,
        Code::SidecarNeverStops,
        Code::NoHoldApplication,
    ],
    run,
};

fn run(cx: &Context<'_>) -> Vec<Finding> {
    let (inv, facts, run_pods) = (cx.inv, cx.facts, cx.run_pods);
    let mut findings = Vec::new();
    let native_default = istiod_native_sidecars(inv);
    let strict_server = strict_kfp_server(inv, facts);
    let mut no_sidecar_ns: BTreeSet<String> = BTreeSet::new();
    for pod in run_pods {
        let w = &pod.workload;
        let dp = membership::data_plane(inv, w).value;
        if dp != DataPlane::Sidecar {
            // KM010 when a server that run pods call enforces STRICT.
            if strict_server {
                no_sidecar_ns.insert(w.namespace.clone());
            }
            continue;
        }
        for m in &pod.mutations {
            if m.after_istio_injector {
                findings.push(Finding::new(
                    Code::WebhookAfterInjector,
                    kfp_mesh_core::text!(
                        "{} (pod mode) sorts after Istio's injector, so the labels it adds to {} pods never lead to injection",
                        m.configuration.object, pod.kind.template()
                    ),
                    Some(&m.configuration),
                ));
            }
        }
        let native = w.annotation("sidecar.istio.io/nativeSidecar") == Some("true")
            || (w.annotation("sidecar.istio.io/nativeSidecar").is_none() && native_default);
        if native {
            continue;
        }
        if w.annotation(KILL_CMD_ANNOTATION).is_none() {
            findings.push(Finding::new(
                Code::SidecarNeverStops,
                kfp_mesh_core::text!(
                    "{} pods in {} get a classic istio-proxy sidecar and no `{KILL_CMD_ANNOTATION}` annotation: Argo cannot stop the proxy and the run hangs",
                    pod.kind.template(),
                    w.namespace
                ),
                facts.api_server.as_ref(),
            ));
        }
        let hold = membership::holds_application_until_proxy_starts(inv, w);
        if !hold {
            findings.push(Finding::new(
                Code::NoHoldApplication,
                kfp_mesh_core::text!(
                    "{} pods in {} connect at start but their classic sidecar may not be ready (no holdApplicationUntilProxyStarts)",
                    pod.kind.template(),
                    w.namespace
                ),
                facts.api_server.as_ref(),
            ));
        }
    }
    for ns in no_sidecar_ns {
        findings.push(Finding::new(
            Code::RunPodsWithoutSidecar,
            kfp_mesh_core::text!(
                "KFP run pods in {ns} start without a sidecar (the KFP API server stamps `sidecar.istio.io/inject: \"false\"` on every workflow template) while KFP servers they call enforce STRICT mTLS"
            ),
            facts.api_server.as_ref(),
        ));
    }
    findings
}

const KILL_CMD_ANNOTATION: &str = "workflows.argoproj.io/kill-cmd-istio-proxy";

/// istiod runs with `ENABLE_NATIVE_SIDECARS=true` in the input.
fn istiod_native_sidecars(inv: &Inventory) -> bool {
    inv.mesh.native_sidecars.unwrap_or(false)
        || inv.workloads.iter().any(|w| {
            w.name.starts_with("istiod")
                && w.spec.containers.iter().any(|c| {
                    c.env.iter().flatten().any(|e| {
                        e.name == "ENABLE_NATIVE_SIDECARS" && e.value.as_deref() == Some("true")
                    })
                })
        })
}

/// Some KFP server in the KFP namespace enforces STRICT on a port.
fn strict_kfp_server(inv: &Inventory, facts: &KfpFacts) -> bool {
    let ns = facts.kfp_namespace();
    inv.workloads_in(ns).any(|w| {
        membership::data_plane(inv, w).value == DataPlane::Sidecar
            && sources::container_ports(w)
                .into_iter()
                .any(|p| peer_authn::effective_mode(inv, w, p).value == MtlsMode::Strict)
    })
}
