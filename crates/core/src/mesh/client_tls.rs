//! C: what a client sidecar sends toward a service endpoint (DestinationRule TLS, auto mTLS,
//! Sidecar egress scoping).

use serde::Serialize;

use crate::explain::{Decision, Step};
use crate::inventory::{DestinationRule, Inventory, Service, Sidecar, Workload};
use crate::mesh::membership::{self, DataPlane};
use crate::mesh::peer_authn::{self, MtlsMode};
use crate::model::{ClientTlsSettings, LoadBalancerSettings, ServicePort, TlsMode, TrafficPolicy};
use crate::object::Cited;

/// What the client sidecar originates on the connection to one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientTls {
    /// Istio mTLS with the client's SPIFFE identity.
    IstioMutual,
    /// Plaintext (the application's own bytes, TLS included, pass through unchanged).
    Plaintext,
    /// One-way TLS originated by the sidecar (DR `SIMPLE`).
    Simple,
    /// mTLS with user certificates (DR `MUTUAL`); never an Istio identity.
    Mutual,
    /// The service is outside the client's `Sidecar` egress scope and the outbound policy is
    /// `REGISTRY_ONLY`: the sidecar answers 502 itself (BlackHoleCluster).
    BlackHole,
}

/// Where the connection goes: a Service port (by its `port`), or a pod IP and container port.
#[derive(Clone, Copy, Debug)]
pub enum Destination<'a> {
    Service {
        service: &'a Service,
        service_port: u16,
    },
    PodIp,
}

/// The cluster domain kfp-mesh assumes for Service host names.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// `name.namespace.svc.cluster.local`.
pub fn service_fqdn(svc: &Service) -> String {
    crate::text!("{}.{}.svc.{CLUSTER_DOMAIN}", svc.name(), svc.namespace())
}

/// How specifically a DestinationRule `host` (resolved relative to the DR's namespace, as
/// Istio's `ResolveShortnameToFQDN` does: only a name without a dot is a short name) matches a
/// service FQDN: `Some(usize::MAX)` for an exact match, `Some(suffix length)` for a wildcard,
/// `None` for no match.
pub fn dr_host_specificity(dr_host: &str, dr_namespace: &str, fqdn: &str) -> Option<usize> {
    let host = dr_host.trim().to_ascii_lowercase();
    let fqdn = fqdn.to_ascii_lowercase();
    if host == "*" {
        return Some(0);
    }
    if let Some(suffix) = host.strip_prefix('*') {
        return fqdn.ends_with(suffix).then_some(suffix.len());
    }
    let resolved = if host.contains('.') {
        host
    } else {
        crate::text!("{host}.{dr_namespace}.svc.{CLUSTER_DOMAIN}")
    };
    (resolved == fqdn).then_some(usize::MAX)
}

/// A DR `host` like `name.ns` or `name.ns.svc`: looks like a short name of `fqdn`, but Istio
/// takes names with a dot literally.
fn looks_like_partial_name(dr_host: &str, fqdn: &str) -> bool {
    let host = dr_host.trim().to_ascii_lowercase();
    host.contains('.')
        && !host.starts_with('*')
        && host != fqdn
        && fqdn
            .to_ascii_lowercase()
            .starts_with(&crate::text!("{host}."))
}

fn exported_to(dr: &DestinationRule, client_ns: &str) -> bool {
    match dr.spec.export_to.as_deref() {
        None | Some([]) => true,
        Some(list) => list.iter().any(|e| {
            let e = e.trim();
            e == "*" || e == client_ns || (e == "." && dr.namespace() == client_ns)
        }),
    }
}

fn dr_selector_labels(dr: &DestinationRule) -> Option<&std::collections::BTreeMap<String, String>> {
    dr.spec.workload_selector.as_ref().and_then(|s| s.labels())
}

/// The Sidecar resource that configures `client` (workloadSelector match first, then the
/// namespace-wide one, then the root namespace's selector-less default).
pub fn applicable_sidecar<'a>(inv: &'a Inventory, client: &Workload) -> Option<&'a Sidecar> {
    let selector_labels = |sc: &Sidecar| {
        sc.spec
            .workload_selector
            .as_ref()
            .and_then(|s| s.labels.as_ref())
            .filter(|l| !l.is_empty())
            .cloned()
    };
    let local = inv.sidecars_in(&client.namespace);
    local
        .iter()
        .find(|sc| {
            selector_labels(sc)
                .is_some_and(|l| l.iter().all(|(k, v)| client.labels.get(k) == Some(v)))
        })
        .or_else(|| local.iter().find(|sc| selector_labels(sc).is_none()))
        .or_else(|| {
            inv.sidecars_in(&inv.mesh.root_namespace)
                .iter()
                .find(|sc| selector_labels(sc).is_none())
        })
}

/// Whether a Sidecar's egress hosts (`ns/host`) include the service. `None` when the Sidecar
/// lists no egress hosts (no restriction).
fn sidecar_allows(
    sc: &Sidecar,
    root_ns: &str,
    client_ns: &str,
    svc_ns: &str,
    fqdn: &str,
) -> Option<bool> {
    let hosts: Vec<&str> = sc
        .spec
        .egress
        .iter()
        .flatten()
        .flat_map(|l| l.hosts.iter().map(String::as_str))
        .collect();
    if hosts.is_empty() {
        return None;
    }
    // `.` is the Sidecar's namespace; for the mesh-wide default in the root namespace it is the
    // namespace of the workload it configures.
    let own_ns = if sc.namespace() == root_ns {
        client_ns
    } else {
        sc.namespace()
    };
    let fqdn = fqdn.to_ascii_lowercase();
    Some(hosts.iter().any(|h| {
        let Some((ns, host)) = h.trim().split_once('/') else {
            return false;
        };
        let ns_ok = match ns {
            "*" => true,
            "." => own_ns == svc_ns,
            "~" => false,
            other => other == svc_ns,
        };
        let host = host.to_ascii_lowercase();
        let host_ok = host == "*"
            || host
                .strip_prefix('*')
                .is_some_and(|suffix| fqdn.ends_with(suffix))
            || host == fqdn;
        ns_ok && host_ok
    }))
}

fn registry_only(sc: &Sidecar) -> bool {
    sc.spec
        .outbound_traffic_policy
        .as_ref()
        .and_then(|o| o.mode.as_deref())
        .is_some_and(|m| m.eq_ignore_ascii_case("REGISTRY_ONLY"))
}

/// The client goes to PassthroughCluster (plaintext), or BlackHoleCluster under a
/// `REGISTRY_ONLY` Sidecar.
fn passthrough(
    inv: &Inventory,
    client: &Workload,
    rule: &'static str,
    reason: String,
    mut steps: Vec<Step>,
) -> Decision<ClientTls> {
    if let Some(sc) = applicable_sidecar(inv, client).filter(|sc| registry_only(sc)) {
        steps.push(
            crate::step!(rule, "{reason}; the Sidecar {}/{} sets outboundTrafficPolicy REGISTRY_ONLY, so the client sidecar sends it to BlackHoleCluster (502)",
                    sc.namespace(),
                    sc.name())
            .by(sc.cite()),
        );
        return Decision::new(ClientTls::BlackHole, steps);
    }
    steps.push(Step::new(
        rule,
        crate::text!("{reason}: the client sidecar uses PassthroughCluster, which has no TLS, so it sends plaintext"),
    ));
    Decision::new(ClientTls::Plaintext, steps)
}

fn cites_of(steps: &[Step]) -> Vec<Cited> {
    let mut out: Vec<Cited> = Vec::new();
    for c in steps.iter().flat_map(|s| s.objects.iter()) {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}

/// The objects of the concluding step of a nested decision (the ones that decided it).
fn decisive<T>(d: &Decision<T>) -> Vec<Cited> {
    d.steps
        .last()
        .map(|s| s.objects.clone())
        .unwrap_or_default()
}

/// The last message of a nested decision (its conclusion), for a one-line summary.
fn conclusion<T>(d: &Decision<T>) -> String {
    d.steps
        .last()
        .map(|s| s.message.clone())
        .unwrap_or_default()
}

struct Candidate<'a> {
    dr: &'a DestinationRule,
    specificity: usize,
    selector_match: bool,
}

/// C1: the DestinationRules that apply (one namespace, one host; in merge order), and where
/// they were found.
fn select_destination_rules<'a>(
    inv: &'a Inventory,
    client: &Workload,
    svc: &Service,
    fqdn: &str,
    steps: &mut Vec<Step>,
) -> Option<(Vec<&'a DestinationRule>, usize)> {
    let client_ns = client.namespace.as_str();
    let root = inv.mesh.root_namespace.as_str();
    let mut namespaces: Vec<(&str, &str)> = vec![(client_ns, "the client namespace (C1 step 1)")];
    if svc.namespace() != client_ns {
        namespaces.push((svc.namespace(), "the service namespace (C1 step 2)"));
    }
    if root != client_ns && root != svc.namespace() {
        namespaces.push((root, "the root namespace (C1 step 3)"));
    }
    for (index, (ns, label)) in namespaces.iter().enumerate() {
        let local = *ns == client_ns;
        let mut candidates: Vec<Candidate<'a>> = Vec::new();
        for dr in inv.destination_rules_in(ns) {
            let Some(specificity) = dr_host_specificity(&dr.spec.host, dr.namespace(), fqdn) else {
                if looks_like_partial_name(&dr.spec.host, fqdn) {
                    steps.push(
                        crate::step!("C1", "DestinationRule {}/{} has host `{}`, which Istio takes literally (only a name without a dot is expanded): it does not apply to {fqdn}; write `{}` or the full name",
                                dr.namespace(),
                                dr.name(),
                                dr.spec.host,
                                svc.name())
                        .by(dr.cite()),
                    );
                }
                continue;
            };
            if !local && !exported_to(dr, client_ns) {
                steps.push(
                    crate::step!("C1", "DestinationRule {}/{} matches {fqdn} but its exportTo does not include namespace `{client_ns}`: not used",
                            dr.namespace(),
                            dr.name())
                    .by(dr.cite()),
                );
                continue;
            }
            let mut selector_match = false;
            if let Some(labels) = dr_selector_labels(dr) {
                let matches = labels.iter().all(|(k, v)| client.labels.get(k) == Some(v));
                if !local || !matches {
                    steps.push(
                        crate::step!("C1", "DestinationRule {}/{} matches {fqdn} but its workloadSelector does not select {}{}: not used",
                                dr.namespace(),
                                dr.name(),
                                client.named(),
                                if local { "" } else { " (it only applies to clients in its own namespace)" })
                        .by(dr.cite()),
                    );
                    continue;
                }
                selector_match = true;
            }
            candidates.push(Candidate {
                dr,
                specificity,
                selector_match,
            });
        }
        let Some(best) = candidates.iter().map(|c| c.specificity).max() else {
            continue;
        };
        // The most specific host; rules with a matching workloadSelector before the others.
        let best_host = candidates
            .iter()
            .find(|c| c.specificity == best)
            .map(|c| c.dr.spec.host.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let mut group: Vec<&Candidate<'a>> = candidates
            .iter()
            .filter(|c| {
                c.specificity == best && c.dr.spec.host.trim().to_ascii_lowercase() == best_host
            })
            .collect();
        group.sort_by_key(|c| !c.selector_match);
        let rules: Vec<&'a DestinationRule> = group.iter().map(|c| c.dr).collect();
        let Some(first) = rules.first() else {
            continue;
        };
        let how = if best == usize::MAX {
            "exact host".to_string()
        } else {
            crate::text!("wildcard host `{}`", first.spec.host)
        };
        steps.push(
            crate::step!("C1", "DestinationRule {}/{} applies to {fqdn} ({how}), found in {label}; DestinationRules of later namespaces are not consulted",
                    first.namespace(),
                    first.name())
            .by(first.cite()),
        );
        return Some((rules, index));
    }
    steps.push(crate::step!(
        "C1",
        "no DestinationRule applies to {fqdn} for a client in namespace `{client_ns}`"
    ));
    None
}

/// The effective TLS and load-balancer settings of a traffic policy for a service port (C2).
fn port_settings(
    tp: &TrafficPolicy,
    service_port: u16,
) -> (
    Option<&ClientTlsSettings>,
    Option<&LoadBalancerSettings>,
    bool,
) {
    let port_level = tp
        .port_level_settings
        .iter()
        .flatten()
        .find(|p| p.port.as_ref().and_then(|p| p.number) == Some(u32::from(service_port)));
    match port_level {
        Some(p) => (p.tls.as_ref(), p.load_balancer.as_ref(), true),
        None => (tp.tls.as_ref(), tp.load_balancer.as_ref(), false),
    }
}

fn tls_mode_name(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::Disable => "DISABLE",
        TlsMode::Simple => "SIMPLE",
        TlsMode::Mutual => "MUTUAL",
        TlsMode::IstioMutual => "ISTIO_MUTUAL",
    }
}

/// C1–C5 for a client sidecar workload, destination and one endpoint (`endpoint` with its
/// target port). The endpoint's data plane and effective PeerAuthentication come from
/// [`membership::data_plane`] and [`peer_authn::effective_mode`].
pub fn client_tls(
    inv: &Inventory,
    client: &Workload,
    destination: Destination<'_>,
    endpoint: &Workload,
    target_port: u16,
) -> Decision<ClientTls> {
    let mut steps = Vec::new();
    let (svc, service_port) = match destination {
        Destination::PodIp => {
            return passthrough(
                inv,
                client,
                "C5",
                crate::text!(
                    "{} is called on its pod IP, port {target_port}, not through a Service",
                    endpoint.named()
                ),
                steps,
            );
        }
        Destination::Service {
            service,
            service_port,
        } => (service, service_port),
    };
    let fqdn = service_fqdn(svc);
    let Some(sp) = svc
        .spec
        .ports
        .iter()
        .find(|p| p.port == i64::from(service_port))
    else {
        steps.push(
            crate::step!("C5", "Service {fqdn} declares no port {service_port}").by(svc.cite()),
        );
        return passthrough(
            inv,
            client,
            "C5",
            crate::text!("port {service_port} is not a service port of {fqdn}"),
            steps,
        );
    };

    // Sidecar egress scoping.
    if let Some(sc) = applicable_sidecar(inv, client)
        && sidecar_allows(
            sc,
            &inv.mesh.root_namespace,
            &client.namespace,
            svc.namespace(),
            &fqdn,
        ) == Some(false)
    {
        steps.push(
            crate::step!("C1", "the Sidecar {}/{} that configures {} does not list {fqdn} in its egress hosts, so the client sidecar has no cluster for it",
                    sc.namespace(),
                    sc.name(),
                    client.named())
            .by(sc.cite()),
        );
        if registry_only(sc) {
            steps.push(
                crate::step!("C1", "the Sidecar {}/{} sets outboundTrafficPolicy REGISTRY_ONLY: the client sidecar answers 502 itself (BlackHoleCluster); add `{}/{fqdn}` to its egress hosts",
                        sc.namespace(),
                        sc.name(),
                        svc.namespace())
                .by(sc.cite()),
            );
            return Decision::new(ClientTls::BlackHole, steps);
        }
        steps.push(Step::new(
            "C1",
            crate::text!(
                "outboundTrafficPolicy is ALLOW_ANY (kfp-mesh assumes the mesh default): the connection goes to PassthroughCluster and is sent in plaintext, without Istio mTLS; add `{}/{fqdn}` to the Sidecar's egress hosts",
                svc.namespace()
            ),
        ));
        return Decision::new(ClientTls::Plaintext, steps);
    }

    // C1: DestinationRule.
    let mut passthrough_lb = false;
    if let Some((rules, found_at)) = select_destination_rules(inv, client, svc, &fqdn, &mut steps) {
        let with_policy = rules.iter().find(|dr| dr.spec.traffic_policy.is_some());
        if rules.len() > 1 {
            let others: Vec<String> = rules
                .iter()
                .skip(1)
                .map(|dr| crate::text!("{}/{}", dr.namespace(), dr.name()))
                .collect();
            let winner = with_policy.map_or_else(
                || "none of them has a trafficPolicy".to_string(),
                |dr| {
                    crate::text!(
                        "the trafficPolicy of {}/{} (the first that has one) is used; the others' trafficPolicy is ignored",
                        dr.namespace(),
                        dr.name()
                    )
                },
            );
            steps.push(
                crate::step!(
                    "C1",
                    "several DestinationRules for the same host are merged (also {}): {winner}",
                    others.join(", ")
                )
                .by_all(rules.iter().map(|dr| dr.cite())),
            );
        }
        let mut dr_tls: Option<(TlsMode, &DestinationRule)> = None;
        if let Some(dr) = with_policy
            && let Some(tp) = dr.spec.traffic_policy.as_ref()
        {
            let (tls, lb, port_level) = port_settings(tp, service_port);
            if port_level {
                let lost = if tp.tls.is_some() && tls.is_none() {
                    " (its top-level tls is not inherited: this port is back on auto mTLS)"
                } else {
                    ""
                };
                steps.push(
                    crate::step!("C2", "portLevelSettings for service port {service_port} in {}/{} replaces the top-level trafficPolicy wholesale{lost}",
                            dr.namespace(),
                            dr.name())
                    .by(dr.cite()),
                );
            }
            passthrough_lb = lb
                .and_then(|l| l.simple.as_deref())
                .is_some_and(|s| s.eq_ignore_ascii_case("PASSTHROUGH"));
            if let Some(t) = tls {
                let mode = t.mode.unwrap_or(TlsMode::Disable);
                dr_tls = Some((mode, dr));
                if t.mode.is_none() {
                    steps.push(
                        crate::step!(
                            "C2",
                            "{}/{} has a tls block without mode: the mode defaults to DISABLE",
                            dr.namespace(),
                            dr.name()
                        )
                        .by(dr.cite()),
                    );
                }
            } else {
                steps.push(
                    crate::step!(
                        "C2",
                        "{}/{} sets no tls for service port {service_port}: auto mTLS decides",
                        dr.namespace(),
                        dr.name()
                    )
                    .by(dr.cite()),
                );
            }
        }
        for dr in &rules {
            for subset in dr.spec.subsets.iter().flatten() {
                if subset
                    .traffic_policy
                    .as_ref()
                    .is_some_and(|tp| tp.tls.is_some())
                {
                    steps.push(
                        crate::step!("C2", "subset `{}` of {}/{} sets its own tls; it applies only to traffic a VirtualService routes to that subset, which kfp-mesh does not model",
                                subset.name,
                                dr.namespace(),
                                dr.name())
                        .by(dr.cite()),
                    );
                }
            }
        }
        if let Some((mode, dr)) = dr_tls {
            return dr_decides(inv, endpoint, target_port, &fqdn, mode, dr, steps);
        }
        // A DR without tls shadows DRs with tls further down the lookup (Kiali KIA0204).
        shadow_note(inv, client, svc, &fqdn, found_at, &mut steps);
    }

    // C3: auto mTLS.
    if !inv.mesh.enable_auto_mtls {
        let step = crate::step!(
            "C3",
            "meshConfig.enableAutoMtls is false and no DestinationRule sets tls for {fqdn}:{service_port}: the client sidecar sends plaintext"
        );
        steps.push(match &inv.mesh_source {
            Some(c) => step.by(c.clone()),
            None => step,
        });
        return Decision::new(ClientTls::Plaintext, steps);
    }
    let ns_mode = peer_authn::namespace_mode(inv, svc.namespace());
    if svc.spec.is_headless() || passthrough_lb {
        return headless(
            inv,
            svc,
            sp,
            endpoint,
            target_port,
            ns_mode,
            passthrough_lb,
            &fqdn,
            steps,
        );
    }
    let ns_cites = decisive(&ns_mode);
    if ns_mode.value == MtlsMode::Disable {
        steps.push(
            crate::step!("C3", "auto mTLS: the cluster-level mode of namespace `{}` is DISABLE ({}), so the client sidecar attaches no TLS context and sends plaintext to every endpoint",
                    svc.namespace(),
                    conclusion(&ns_mode))
            .by_all(ns_cites),
        );
        if membership::data_plane(inv, endpoint).value == DataPlane::Sidecar {
            let em = peer_authn::effective_mode(inv, endpoint, target_port);
            if em.value == MtlsMode::Strict {
                steps.push(
                    crate::step!("C3", "{} is STRICT on port {target_port} although its namespace is DISABLE: every sidecar client sends plaintext and fails (503); add a DestinationRule for {fqdn} with tls.mode ISTIO_MUTUAL",
                            endpoint.named())
                    .by_all(decisive(&em)),
                );
            }
        }
        return Decision::new(ClientTls::Plaintext, steps);
    }
    steps.push(
        crate::step!("C3", "auto mTLS: the cluster-level mode of namespace `{}` is {}, so the client sidecar uses mTLS toward endpoints labelled security.istio.io/tlsMode=istio and plaintext otherwise",
                svc.namespace(),
                ns_mode.value)
        .by_all(ns_cites),
    );
    let dp = membership::data_plane(inv, endpoint);
    let dp_cites = cites_of(&dp.steps);
    match dp.value {
        DataPlane::Plain => {
            steps.push(
                crate::step!(
                    "C3",
                    "endpoint {} has no sidecar ({}): plaintext",
                    endpoint.named(),
                    conclusion(&dp)
                )
                .by_all(dp_cites),
            );
            Decision::new(ClientTls::Plaintext, steps)
        }
        DataPlane::Ambient => {
            steps.push(
                crate::step!("A6.6", "endpoint {} is an ambient workload: a sidecar with ambient enabled reaches it over HBONE, treated as Istio mTLS with the client's identity (not verified in Istio sources)",
                        endpoint.named())
                .by_all(dp_cites),
            );
            Decision::new(ClientTls::IstioMutual, steps)
        }
        DataPlane::Sidecar => {
            if !membership::advertises_istio_tls(endpoint) {
                steps.push(
                    crate::step!("A3", "endpoint {} has a sidecar but its pod template sets security.istio.io/tlsMode={}: every auto-mTLS client sends it plaintext",
                            endpoint.named(),
                            endpoint.label("security.istio.io/tlsMode").unwrap_or_default())
                    .by(endpoint.cite()),
                );
                return Decision::new(ClientTls::Plaintext, steps);
            }
            let em = peer_authn::effective_mode(inv, endpoint, target_port);
            if em.value == MtlsMode::Disable {
                steps.push(
                    crate::step!("C3", "endpoint {} has a sidecar but its effective PeerAuthentication on port {target_port} is DISABLE: the per-endpoint check sends plaintext",
                            endpoint.named())
                    .by_all(decisive(&em)),
                );
                return Decision::new(ClientTls::Plaintext, steps);
            }
            steps.push(
                crate::step!("C3", "endpoint {} has a sidecar (tlsMode=istio) and its effective mode on port {target_port} is {}: Istio mTLS",
                        endpoint.named(),
                        em.value)
                .by_all(dp_cites)
                .by_all(decisive(&em)),
            );
            excluded_port_note(endpoint, target_port, &mut steps);
            Decision::new(ClientTls::IstioMutual, steps)
        }
    }
}

/// B7: auto mTLS does not know about excludeInboundPorts.
fn excluded_port_note(endpoint: &Workload, target_port: u16, steps: &mut Vec<Step>) {
    let ic = membership::intercepts_inbound(endpoint, target_port);
    if !ic.value {
        steps.push(
            crate::step!("B7", "port {target_port} of {} bypasses its sidecar, but clients still send Istio mTLS to it, which the app cannot read; add a DestinationRule with tls.mode DISABLE for this port",
                    endpoint.named())
            .by_all(cites_of(&ic.steps)),
        );
    }
}

/// A DR fixes the TLS mode (C2 table); flag the combinations that fail.
fn dr_decides(
    inv: &Inventory,
    endpoint: &Workload,
    target_port: u16,
    fqdn: &str,
    mode: TlsMode,
    dr: &DestinationRule,
    mut steps: Vec<Step>,
) -> Decision<ClientTls> {
    let value = match mode {
        TlsMode::Disable => ClientTls::Plaintext,
        TlsMode::Simple => ClientTls::Simple,
        TlsMode::Mutual => ClientTls::Mutual,
        TlsMode::IstioMutual => ClientTls::IstioMutual,
    };
    let what = match mode {
        TlsMode::Disable => "plaintext to every endpoint",
        TlsMode::Simple => "one-way TLS originated by the sidecar",
        TlsMode::Mutual => "mTLS with the DestinationRule's own certificates (no Istio identity)",
        TlsMode::IstioMutual => "Istio mTLS to every endpoint, with or without a sidecar",
    };
    steps.push(
        crate::step!(
            "C2",
            "DestinationRule {}/{} sets tls.mode {} for {fqdn}: the client sidecar sends {what}",
            dr.namespace(),
            dr.name(),
            tls_mode_name(mode)
        )
        .by(dr.cite()),
    );
    let dp = membership::data_plane(inv, endpoint);
    match (mode, dp.value) {
        (TlsMode::IstioMutual, DataPlane::Plain) => steps.push(
            crate::step!("C4", "endpoint {} has no sidecar, so Istio mTLS toward it fails (503); set tls.mode DISABLE for it or give it a sidecar",
                    endpoint.named())
            .by(dr.cite())
            .by_all(cites_of(&dp.steps)),
        ),
        (TlsMode::IstioMutual, DataPlane::Sidecar) => {
            let em = peer_authn::effective_mode(inv, endpoint, target_port);
            if em.value == MtlsMode::Disable {
                steps.push(
                    crate::step!("C4", "endpoint {} is DISABLE on port {target_port}, so Istio mTLS toward it fails (503)",
                            endpoint.named())
                    .by(dr.cite())
                    .by_all(decisive(&em)),
                );
            } else {
                excluded_port_note(endpoint, target_port, &mut steps);
            }
        }
        (TlsMode::Disable, DataPlane::Sidecar) => {
            let em = peer_authn::effective_mode(inv, endpoint, target_port);
            if em.value == MtlsMode::Strict {
                steps.push(
                    crate::step!("C4", "endpoint {} is STRICT on port {target_port}, so plaintext toward it fails (503 for HTTP, closed for TCP); remove the DISABLE or make the port PERMISSIVE",
                            endpoint.named())
                    .by(dr.cite())
                    .by_all(decisive(&em)),
                );
            }
        }
        _ => {}
    }
    Decision::new(value, steps)
}

/// C1 step 4: a DR without tls hides DRs with tls in later namespaces of the lookup.
fn shadow_note(
    inv: &Inventory,
    client: &Workload,
    svc: &Service,
    fqdn: &str,
    found_at: usize,
    steps: &mut Vec<Step>,
) {
    let root = inv.mesh.root_namespace.as_str();
    let mut later: Vec<&str> = Vec::new();
    if found_at == 0 && svc.namespace() != client.namespace {
        later.push(svc.namespace());
    }
    if found_at <= 1 && root != client.namespace && root != svc.namespace() {
        later.push(root);
    }
    for ns in later {
        for dr in inv.destination_rules_in(ns) {
            let has_tls = dr
                .spec
                .traffic_policy
                .as_ref()
                .is_some_and(|tp| tp.tls.is_some());
            if has_tls
                && exported_to(dr, &client.namespace)
                && dr_selector_labels(dr).is_none()
                && dr_host_specificity(&dr.spec.host, dr.namespace(), fqdn).is_some()
            {
                steps.push(
                    crate::step!("C1", "DestinationRule {}/{} also matches {fqdn} and sets tls, but the DestinationRule found earlier wins and there is no field-level merge across namespaces (Kiali KIA0204)",
                            dr.namespace(),
                            dr.name())
                    .by(dr.cite()),
                );
            }
        }
    }
}

/// C3/C5 for passthrough-resolution clusters (headless services, or DR `PASSTHROUGH`).
#[allow(clippy::too_many_arguments)]
fn headless(
    inv: &Inventory,
    svc: &Service,
    sp: &ServicePort,
    endpoint: &Workload,
    target_port: u16,
    ns_mode: Decision<MtlsMode>,
    passthrough_lb: bool,
    fqdn: &str,
    mut steps: Vec<Step>,
) -> Decision<ClientTls> {
    let kind = if passthrough_lb {
        "uses loadBalancer PASSTHROUGH"
    } else {
        "is headless (clusterIP: None)"
    };
    let mut endpoints: Vec<&Workload> = inv
        .service_endpoints(svc)
        .into_iter()
        .filter(|w| w.target_port(sp).is_some())
        .collect();
    if !endpoints.iter().any(|w| {
        w.kind == endpoint.kind && w.namespace == endpoint.namespace && w.name == endpoint.name
    }) {
        endpoints.push(endpoint);
    }
    let ns_cites = decisive(&ns_mode);
    if ns_mode.value == MtlsMode::Disable {
        steps.push(
            crate::step!(
                "C5",
                "{fqdn} {kind} and namespace `{}` is DISABLE: plaintext to all endpoints",
                svc.namespace()
            )
            .by(svc.cite())
            .by_all(ns_cites),
        );
        return Decision::new(ClientTls::Plaintext, steps);
    }
    let without: Vec<String> = endpoints
        .iter()
        .filter(|w| {
            membership::data_plane(inv, w).value != DataPlane::Sidecar
                || !membership::advertises_istio_tls(w)
        })
        .map(|w| w.named().to_string())
        .collect();
    if !without.is_empty() {
        steps.push(
            crate::step!("C5", "{fqdn} {kind}: mTLS only if every endpoint of the port has a sidecar, and {} does not, so the client sends plaintext to all endpoints",
                    without.join(", "))
            .by(svc.cite()),
        );
        return Decision::new(ClientTls::Plaintext, steps);
    }
    steps.push(
        crate::step!("C5", "{fqdn} {kind}, namespace `{}` is {} and every endpoint of the port has a sidecar: Istio mTLS to all endpoints (workload-level PeerAuthentication is not considered)",
                svc.namespace(),
                ns_mode.value)
        .by(svc.cite())
        .by_all(ns_cites),
    );
    let port = target_port;
    let em = peer_authn::effective_mode(inv, endpoint, port);
    if em.value == MtlsMode::Disable {
        steps.push(
            crate::step!("C5", "{} is DISABLE on port {port}, but the headless cluster still sends Istio mTLS: the connection fails; add a DestinationRule with tls.mode DISABLE for {fqdn}",
                    endpoint.named())
            .by_all(decisive(&em)),
        );
    }
    Decision::new(ClientTls::IstioMutual, steps)
}
