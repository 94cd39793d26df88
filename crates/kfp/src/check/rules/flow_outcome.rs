//! The verdict of each required flow as a finding: reset (KM001), upstream failure (KM002),
//! denied (KM003), blocked (KM004), TLS failure (KM005), plaintext where STRICT would break it
//! (KM006), kube-apiserver refused at a STRICT webhook port (KM020).

use kfp_mesh_core::connection::{Outcome, ProbeOutcome, Transport};
use kfp_mesh_core::object::Cited;

use crate::check::FlowResult;
use kfp_mesh_core::inventory::{Inventory, Workload};
use kfp_mesh_core::mesh::membership::{self, DataPlane};
use kfp_mesh_core::mesh::peer_authn::{self, MtlsMode};

use super::{Context, Rule};
use crate::findings::{Code, Finding};

pub const RULE: Rule = Rule {
    name: "flow-outcome",
    codes: &[
        Code::FlowReset,
        Code::FlowUpstreamFailure,
        Code::FlowDenied,
        Code::FlowBlocked,
        Code::FlowTlsFailure,
        Code::FlowPlaintext,
        Code::ApiserverWebhookStrict,
    ],
    run,
};

fn run(cx: &Context<'_>) -> Vec<Finding> {
    let (inv, facts) = (cx.inv, cx.facts);
    let mut findings = Vec::new();
    for flow in cx.flows {
        if !flow.required {
            continue;
        }
        let kubelet = flow.from.workload == "kubelet" && flow.from.namespace.is_none();
        let service = || inv.service(&flow.to.namespace, &flow.to.service);
        let apiserver = flow.from.workload == "kube-apiserver" && flow.from.namespace.is_none();
        // Kubelet probes are rewritten by the injector: plaintext is expected. kube-apiserver
        // never has a mesh identity: its plaintext (own TLS) is expected where a port-level
        // exception keeps the port open whatever the mesh or namespace mode.
        let plaintext_expected = kubelet
            || (apiserver
                && service().is_some_and(|s| apiserver_port_exception(inv, s, flow.to.port)));
        // A connect-only wait (`nc -z`) observes only whether the connection opens: where it
        // does (a client sidecar accepts it whatever the server decides), it never fails,
        // whatever data sent on it would get; the real calls are flows of their own.
        if let Some(probe) = &flow.probe {
            if probe.result == ProbeOutcome::TimedOut {
                findings.push(
                    Finding::new(
                        Code::FlowBlocked,
                        kfp_mesh_core::text!(
                            "{}: the bare TCP connect of {} times out ({}): it waits until its retries run out and the pod does not start",
                            flow.id,
                            from_desc_of(flow),
                            probe.why
                        ),
                        service_cite_of(inv, flow).as_ref(),
                    )
                    .for_flow(&flow.id),
                );
            }
            continue;
        }
        let code = match flow.outcome {
            Outcome::Allow
                if flow.transport == Some(Transport::Plaintext) && !plaintext_expected =>
            {
                Code::FlowPlaintext
            }
            Outcome::Allow => continue,
            // Decided by an ext-authz provider: no error finding; the flow shows it as its
            // outcome (`provider-decides`, with the provider in the explanation).
            Outcome::ProviderDecides => continue,
            Outcome::Reset | Outcome::TlsFailure if apiserver => Code::ApiserverWebhookStrict,
            Outcome::Reset => Code::FlowReset,
            Outcome::UpstreamFailure => Code::FlowUpstreamFailure,
            Outcome::Deny | Outcome::CustomDeny | Outcome::Unauthenticated => Code::FlowDenied,
            Outcome::Blocked => Code::FlowBlocked,
            Outcome::TlsFailure => Code::FlowTlsFailure,
        };
        let run_pod_without_sidecar = flow.from.synthetic
            && matches!(
                flow.fix_kind,
                Some(kfp_mesh_core::connection::FixKind::ClientWithoutSidecar { .. })
            );
        // Worded only for a finding: most flows of a large cluster succeed.
        let mut message = kfp_mesh_core::text!(
            "{}: {} -> {}/{}:{} is {}",
            flow.id,
            flow.from.qualified(),
            flow.to.namespace,
            flow.to.service,
            flow.to.port,
            flow.outcome
        );
        if code == Code::FlowPlaintext {
            message.push_str(" in plaintext (one side has no sidecar; STRICT would break it)");
        } else if run_pod_without_sidecar {
            message.push_str(": the run pod has no sidecar (see KM010)");
        } else if let Some(fix) = &flow.fix {
            message.push_str(&kfp_mesh_core::text!("; fix: {fix}"));
        }
        let service_cite = service().map(|s| s.cite());
        let about = if code == Code::FlowReset && flow.from.synthetic {
            facts.api_server.clone().or(service_cite)
        } else {
            service_cite
        };
        findings.push(Finding::new(code, message, about.as_ref()).for_flow(&flow.id));
    }
    findings
}

/// Every sidecar endpoint of `service` behind `service_port` has a workload-level
/// PeerAuthentication whose `portLevelMtls` sets the target port PERMISSIVE or DISABLE, so no
/// mesh-wide or namespace-wide STRICT can close it (B2, B3, B4). Vacuously true when no
/// endpoint has a sidecar.
fn apiserver_port_exception(
    inv: &Inventory,
    service: &kfp_mesh_core::inventory::Service,
    service_port: u16,
) -> bool {
    let Some(port) = service
        .spec
        .ports
        .iter()
        .find(|p| i64::from(service_port) == p.port)
    else {
        return false;
    };
    inv.service_endpoints(service).into_iter().all(|ep| {
        if membership::data_plane(inv, ep).value != DataPlane::Sidecar {
            return true;
        }
        ep.target_port(port)
            .is_some_and(|target| port_level_open(inv, ep, target))
    })
}

/// The winning workload-level PeerAuthentication of `w` (the oldest whose selector matches, in
/// the inventory's canonical order; root-namespace selectors never apply) sets `port` to
/// PERMISSIVE or DISABLE.
fn port_level_open(inv: &Inventory, w: &Workload, port: u16) -> bool {
    if w.namespace == inv.mesh.root_namespace {
        return false;
    }
    let winner = inv.peer_authentications_in(&w.namespace).iter().find(|pa| {
        pa.spec
            .selector
            .as_ref()
            .and_then(|s| s.labels())
            .is_some_and(|sel| sel.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
    });
    winner
        .and_then(|pa| pa.spec.port_level_mtls.as_ref())
        .and_then(|ports| ports.get(&port.to_string()))
        .and_then(|m| peer_authn::declared_mode(m.mode))
        .is_some_and(|m| matches!(m, MtlsMode::Permissive | MtlsMode::Disable))
}

fn from_desc_of(flow: &FlowResult) -> String {
    let container = flow
        .from
        .container
        .as_deref()
        .map(|c| kfp_mesh_core::text!(" (container {c})"))
        .unwrap_or_default();
    match &flow.from.namespace {
        Some(ns) => kfp_mesh_core::text!("{ns}/{}{container}", flow.from.workload),
        None => kfp_mesh_core::text!("{}{container}", flow.from.workload),
    }
}

fn service_cite_of(inv: &Inventory, flow: &FlowResult) -> Option<Cited> {
    inv.service(&flow.to.namespace, &flow.to.service)
        .map(|s| s.cite())
}
