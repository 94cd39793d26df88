//! A: data-plane membership of a workload (sidecar, ambient or plain) and which inbound ports
//! its sidecar intercepts (B7).

use serde::Serialize;

use crate::explain::{Decision, Step};
use crate::inventory::{Inventory, Workload};
use crate::model::{LabelSelector, LabelSelectorRequirement};
use crate::object::{Cited, StringMap};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataPlane {
    /// An `istio-proxy` sidecar (present in the input, or predicted by A1 + A2).
    Sidecar,
    /// Captured by ztunnel (A5).
    Ambient,
    /// Neither: no mesh identity, plaintext only.
    Plain,
}

/// Suffix of the names of Istio's injector webhook entries.
pub const INJECTOR_WEBHOOK_SUFFIX: &str = "sidecar-injector.istio.io";
/// Namespaces the injector never injects into (A2 step 2), also excluded by the `auto.` entry.
pub const IGNORED_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];

const INJECT_KEY: &str = "sidecar.istio.io/inject";
const REV_KEY: &str = "istio.io/rev";
const INJECTION_NS_KEY: &str = "istio-injection";
const DATAPLANE_KEY: &str = "istio.io/dataplane-mode";
const STATUS_ANNOTATION: &str = "sidecar.istio.io/status";
const REDIRECTION_ANNOTATION: &str = "ambient.istio.io/redirection";
const EXCLUDE_INBOUND: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
const INCLUDE_INBOUND: &str = "traffic.sidecar.istio.io/includeInboundPorts";

pub use crate::model::InjectorWebhook;

fn req(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_string(),
        operator: operator.to_string(),
        values: if values.is_empty() {
            None
        } else {
            Some(values.iter().map(|v| v.to_string()).collect())
        },
    }
}

fn selector(reqs: Vec<LabelSelectorRequirement>) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: None,
        match_expressions: Some(reqs),
    })
}

/// The webhook entries a default Istio install creates for `revision` (A1 tables): the two
/// `rev.*` entries, plus `namespace.`, `object.` (and `auto.` when
/// `enable_namespaces_by_default`) for the default revision.
pub fn default_injector_webhooks(
    revision: &str,
    enable_namespaces_by_default: bool,
) -> Vec<InjectorWebhook> {
    let entry =
        |name: &str, ns: Option<LabelSelector>, obj: Option<LabelSelector>| InjectorWebhook {
            configuration: None,
            configuration_name: "istio-sidecar-injector".to_string(),
            name: crate::text!("{name}.{INJECTOR_WEBHOOK_SUFFIX}"),
            namespace_selector: ns,
            object_selector: obj,
        };
    let mut hooks = vec![
        entry(
            "rev.namespace",
            selector(vec![
                req(REV_KEY, "In", &[revision]),
                req(INJECTION_NS_KEY, "DoesNotExist", &[]),
            ]),
            selector(vec![req(INJECT_KEY, "NotIn", &["false"])]),
        ),
        entry(
            "rev.object",
            selector(vec![
                req(REV_KEY, "DoesNotExist", &[]),
                req(INJECTION_NS_KEY, "DoesNotExist", &[]),
            ]),
            selector(vec![
                req(INJECT_KEY, "NotIn", &["false"]),
                req(REV_KEY, "In", &[revision]),
            ]),
        ),
    ];
    if revision == "default" {
        hooks.push(entry(
            "namespace",
            selector(vec![req(INJECTION_NS_KEY, "In", &["enabled"])]),
            selector(vec![req(INJECT_KEY, "NotIn", &["false"])]),
        ));
        hooks.push(entry(
            "object",
            selector(vec![
                req(INJECTION_NS_KEY, "DoesNotExist", &[]),
                req(REV_KEY, "DoesNotExist", &[]),
            ]),
            selector(vec![
                req(INJECT_KEY, "In", &["true"]),
                req(REV_KEY, "DoesNotExist", &[]),
            ]),
        ));
        if enable_namespaces_by_default {
            hooks.push(entry(
                "auto",
                selector(vec![
                    req(INJECTION_NS_KEY, "DoesNotExist", &[]),
                    req(REV_KEY, "DoesNotExist", &[]),
                    req("kubernetes.io/metadata.name", "NotIn", &IGNORED_NAMESPACES),
                ]),
                selector(vec![
                    req(INJECT_KEY, "DoesNotExist", &[]),
                    req(REV_KEY, "DoesNotExist", &[]),
                ]),
            ));
        }
    }
    hooks
}

/// The injector webhook entries of the input (entries whose name ends in
/// `sidecar-injector.istio.io`, revision tags included). When the input has none, the default
/// install's entries for revision `default` are returned and the flag is true.
pub fn injector_webhooks(inv: &Inventory) -> (&[InjectorWebhook], bool) {
    let (hooks, assumed) = inv
        .injector_webhooks
        .get_or_init(|| compute_injector_webhooks(inv));
    (hooks, *assumed)
}

/// Compute the injector webhooks of an inventory (once per inventory, see
/// [`injector_webhooks`]).
fn compute_injector_webhooks(inv: &Inventory) -> (Vec<InjectorWebhook>, bool) {
    let hooks: Vec<InjectorWebhook> = inv
        .mutating_webhooks
        .iter()
        .flat_map(|mwc| {
            mwc.spec
                .webhooks
                .iter()
                .filter(|h| h.name.ends_with(INJECTOR_WEBHOOK_SUFFIX))
                .map(|h| InjectorWebhook {
                    configuration: Some(mwc.cite()),
                    configuration_name: mwc.name().to_string(),
                    name: h.name.clone(),
                    namespace_selector: h.namespace_selector.clone(),
                    object_selector: h.object_selector.clone(),
                })
        })
        .collect();
    if hooks.is_empty() {
        (
            default_injector_webhooks("default", inv.injector.enable_namespaces_by_default),
            true,
        )
    } else {
        (hooks, false)
    }
}

fn namespace_cite(inv: &Inventory, ns: &str) -> Option<Cited> {
    inv.namespaces.get(ns).map(|n| n.cite())
}

/// The labels that steer injection, for messages: `istio-injection=enabled, istio.io/rev=x`.
fn relevant_labels(labels: &StringMap, keys: &[&str]) -> String {
    let found: Vec<String> = keys
        .iter()
        .filter_map(|k| labels.get(k).map(|v| crate::text!("{k}={v}")))
        .collect();
    if found.is_empty() {
        "none of the injection labels".to_string()
    } else {
        found.join(", ")
    }
}

fn label_summary(ns: &str, ns_labels: &StringMap, w: &Workload) -> String {
    let mut s = crate::text!(
        "namespace `{ns}` has {}; the pod has {}",
        relevant_labels(ns_labels, &[INJECTION_NS_KEY, REV_KEY]),
        relevant_labels(&w.labels, &[INJECT_KEY, REV_KEY]),
    );
    if let Some(a) = w.annotation(INJECT_KEY) {
        s.push_str(&crate::text!(" (and the annotation {INJECT_KEY}={a})"));
    }
    s
}

/// A1: which injector webhooks fire. Returns whether any fired.
fn webhook_fires(inv: &Inventory, w: &Workload, steps: &mut Vec<Step>) -> bool {
    let ns = w.namespace.as_str();
    let ns_labels = inv.namespace_labels(ns);
    let ns_cite = namespace_cite(inv, ns);
    let (hooks, assumed) = injector_webhooks(inv);
    if assumed {
        let mut names: Vec<&str> = hooks.iter().map(|h| h.name.as_str()).collect();
        names.sort_unstable();
        steps.push(crate::step!("A1", "the input has no Istio injector MutatingWebhookConfiguration; assuming the default install's webhooks for revision `default` ({})",
                names.join(", ")));
    }
    let fired: Vec<&InjectorWebhook> = hooks
        .iter()
        .filter(|h| h.fires(&ns_labels, &w.labels))
        .collect();
    let summary = label_summary(ns, &ns_labels, w);
    let ns_injection = ns_labels.get(INJECTION_NS_KEY);
    let ns_rev = ns_labels.get(REV_KEY);
    let pod_rev = w.label(REV_KEY);
    let with_ns = |step: Step| match &ns_cite {
        Some(c) => step.by(c.clone()),
        None => step,
    };

    if let Some(first) = fired.first() {
        let step = crate::step!(
            "A1",
            "injector {} fires for {}: {summary}",
            first.describe(),
            w.named()
        );
        let step = match &first.configuration {
            Some(c) => step.by(c.clone()),
            None => step,
        };
        steps.push(with_ns(step).by(w.cite()));
        if ns_injection == Some("enabled") && ns_rev.is_some() {
            steps.push(with_ns(crate::step!("A1", "namespace `{ns}` has both istio-injection=enabled and istio.io/rev={}: the legacy label wins and the revision label is ignored (istioctl IST0123); remove one of them",
                    ns_rev.unwrap_or_default())));
        }
        if let (Some(nr), Some(pr)) = (ns_rev, pod_rev)
            && nr != pr
            && ns_injection.is_none()
        {
            steps.push(with_ns(crate::step!("A1", "the namespace revision istio.io/rev={nr} beats the pod's istio.io/rev={pr}: revision `{nr}` injects the pod")));
        }
        return true;
    }

    steps.push(with_ns(crate::step!("A1", "no Istio injector webhook fires for {}: {summary}; the pod is created without a sidecar",
            w.named()))
    .by(w.cite()));
    if let Some(v) = ns_injection.filter(|v| *v != "enabled") {
        steps.push(with_ns(crate::step!("A1", "istio-injection={v} on namespace `{ns}`: only the value `enabled` injects, and any value of this label stops every revision webhook, whatever the pod labels say")));
    } else if w.label(INJECT_KEY) == Some("false") {
        steps.push(
            Step::new(
                "A1",
                "the pod label sidecar.istio.io/inject=false stops every injector webhook from firing",
            )
            .by(w.cite()),
        );
    } else if w.annotation(INJECT_KEY) == Some("true") && w.label(INJECT_KEY).is_none() {
        steps.push(
            Step::new(
                "A1",
                "the pod has the annotation sidecar.istio.io/inject=true, but webhooks select on labels only, so the annotation cannot trigger injection; set it as a pod label instead, or label the namespace istio-injection=enabled",
            )
            .by(w.cite()),
        );
    }
    if w.label(INJECT_KEY) == Some("false") {
        // Already explained: the pod opted out.
    } else if ns_injection == Some("enabled") {
        steps.push(with_ns(crate::step!("A1", "namespace `{ns}` has istio-injection=enabled but the pod gets no proxy (istioctl IST0103 PodMissingProxy)")));
    } else if let Some(rev) = ns_rev.or(pod_rev).filter(|_| ns_injection.is_none()) {
        steps.push(crate::step!("A1", "no installed injector webhook selects istio.io/rev={rev}: is revision (or revision tag) `{rev}` installed?"));
    }
    false
}

/// A2 `injectRequired`, after a webhook fired. Returns whether the sidecar is injected.
fn inject_required(inv: &Inventory, w: &Workload, steps: &mut Vec<Step>) -> bool {
    let ns = w.namespace.as_str();
    if IGNORED_NAMESPACES.contains(&ns) {
        steps.push(crate::step!(
            "A2",
            "namespace `{ns}` is one the injector always ignores: no sidecar"
        ));
        return false;
    }
    let injector_cite = |step: Step| match &inv.injector_source {
        Some(c) => step.by(c.clone()),
        None => step,
    };

    // Step 3: the label overrides the annotation.
    let annotation = w.annotation(INJECT_KEY);
    let label = w.label(INJECT_KEY);
    let (value, from) = match (label, annotation) {
        (Some(l), _) => (l, "label"),
        (None, Some(a)) => (a, "annotation"),
        (None, None) => ("", ""),
    };
    if let (Some(l), Some(a)) = (label, annotation)
        && l != a
    {
        steps.push(
            crate::step!("A2", "the pod has the label {INJECT_KEY}={l} and the annotation {INJECT_KEY}={a}: the label wins")
            .by(w.cite()),
        );
    }
    // (explicit decision: Some(inject))
    let mut explicit: Option<bool> = match value {
        "true" => {
            steps.push(
                crate::step!("A2", "the pod {from} {INJECT_KEY}=true asks for injection")
                    .by(w.cite()),
            );
            Some(true)
        }
        "false" => {
            steps.push(
                crate::step!(
                    "A2",
                    "the pod {from} {INJECT_KEY}=false: the injector is called but skips the pod{}",
                    if from == "annotation" {
                        " (a pod label sidecar.istio.io/inject=true would override it)"
                    } else {
                        ""
                    }
                )
                .by(w.cite()),
            );
            Some(false)
        }
        "" => None,
        other => {
            steps.push(
                crate::step!("A2", "the pod {from} {INJECT_KEY}={other:?} is not `true` or `false`: Istio logs it as invalid and uses the default policy")
                .by(w.cite()),
            );
            None
        }
    };

    // Step 4: never/always selectors (only when still on the default).
    if explicit.is_none() {
        let never = inv
            .injector
            .never_inject_selector
            .iter()
            .position(|s| !s.is_empty() && s.matches(&w.labels));
        if let Some(i) = never {
            steps.push(injector_cite(crate::step!("A2", "neverInjectSelector entry {} of the injector config matches the pod labels: no injection",
                    i + 1)));
            explicit = Some(false);
        } else if let Some(i) = inv
            .injector
            .always_inject_selector
            .iter()
            .position(|s| !s.is_empty() && s.matches(&w.labels))
        {
            steps.push(injector_cite(crate::step!("A2", "alwaysInjectSelector entry {} of the injector config matches the pod labels: inject",
                    i + 1)));
            explicit = Some(true);
        }
    }

    // Step 5: injector policy.
    let policy = inv.injector.policy.as_str();
    let required = match (policy, explicit) {
        ("enabled", None) => true,
        ("disabled", None) => false,
        ("enabled" | "disabled", Some(v)) => v,
        _ => false,
    };
    let message = match (policy, explicit) {
        ("enabled", None) => "injector policy `enabled` with no explicit choice: inject".to_string(),
        ("disabled", None) => {
            "injector policy `disabled` and nothing asks for injection: no sidecar (set the pod label sidecar.istio.io/inject=true)".to_string()
        }
        ("enabled" | "disabled", Some(true)) => {
            crate::text!("injector policy `{policy}` follows the explicit choice: inject")
        }
        ("enabled" | "disabled", Some(false)) => {
            crate::text!("injector policy `{policy}` follows the explicit choice: no sidecar")
        }
        _ => crate::text!(
            "injector policy `{policy}` is neither `enabled` nor `disabled`: Istio disables injection"
        ),
    };
    steps.push(injector_cite(Step::new("A2", message)));
    required
}

/// A5: ztunnel enrollment of a pod without sidecar.
fn ambient_enrolled(inv: &Inventory, w: &Workload, steps: &mut Vec<Step>) -> bool {
    let ns = w.namespace.as_str();
    let ns_labels = inv.namespace_labels(ns);
    let ns_mode = ns_labels.get(DATAPLANE_KEY);
    let pod_mode = w.label(DATAPLANE_KEY);
    if w.annotation(STATUS_ANNOTATION).is_some() {
        if ns_mode == Some("ambient") || pod_mode == Some("ambient") {
            steps.push(
                Step::new(
                    "A5",
                    "the pod carries sidecar.istio.io/status (it was injected): ztunnel does not capture pods with a sidecar",
                )
                .by(w.cite()),
            );
        }
        return false;
    }
    if pod_mode == Some("ambient") {
        steps.push(
            crate::step!("A5", "the pod label {DATAPLANE_KEY}=ambient enrolls it in ambient (any namespace): ztunnel captures its traffic")
            .by(w.cite()),
        );
        return true;
    }
    let ns_step = |step: Step| match namespace_cite(inv, ns) {
        Some(c) => step.by(c),
        None => step,
    };
    if ns_mode == Some("ambient") {
        if pod_mode == Some("none") {
            steps.push(ns_step(
                crate::step!("A5", "namespace `{ns}` is ambient, but the pod label {DATAPLANE_KEY}=none opts it out: plain pod")
                .by(w.cite()),
            ));
            return false;
        }
        steps.push(ns_step(
            crate::step!("A5", "namespace `{ns}` has {DATAPLANE_KEY}=ambient and the pod does not opt out: ztunnel captures its traffic")
            .by(w.cite()),
        ));
        return true;
    }
    if w.annotation(REDIRECTION_ANNOTATION) == Some("enabled") {
        steps.push(
            Step::new(
                "A5",
                "the pod carries ambient.istio.io/redirection=enabled: the CNI agent enrolled it in ambient",
            )
            .by(w.cite()),
        );
        return true;
    }
    false
}

/// A1 + A2 + A5: which data plane a workload gets (decided once per workload and inventory
/// generation: every flow of the workload asks).
pub fn data_plane<'w>(
    inv: &Inventory,
    w: &'w Workload,
) -> crate::inventory::Memoized<'w, Decision<DataPlane>> {
    w.memo
        .get_or_compute(inv.generation(), || decide_data_plane(inv, w))
}

fn decide_data_plane(inv: &Inventory, w: &Workload) -> Decision<DataPlane> {
    let mut steps = Vec::new();
    if w.host_network() {
        steps.push(
            crate::step!("A2", "{} uses hostNetwork: Istio never injects it and ztunnel never captures it; it is a plain pod without mesh identity",
                    w.named())
            .by(w.cite()),
        );
        return Decision::new(DataPlane::Plain, steps);
    }
    let ambient_labelled = w.label(DATAPLANE_KEY) == Some("ambient")
        || inv
            .namespace_labels(&w.namespace)
            .get(DATAPLANE_KEY)
            .is_some_and(|v| v == "ambient");
    let sidecar_wins = |steps: &mut Vec<Step>| {
        if ambient_labelled {
            steps.push(crate::step!("A5", "{} is also labelled for ambient, but ztunnel leaves pods with a sidecar alone: it stays a sidecar workload (istioctl IST0123)",
                    w.named()));
        }
    };
    if w.has_istio_proxy() {
        steps.push(
            crate::step!(
                "A3",
                "{} already has an istio-proxy container: sidecar workload",
                w.named()
            )
            .by(w.cite()),
        );
        sidecar_wins(&mut steps);
        return Decision::new(DataPlane::Sidecar, steps);
    }
    if webhook_fires(inv, w, &mut steps) && inject_required(inv, w, &mut steps) {
        steps.push(
            crate::step!(
                "A2",
                "{} gets an istio-proxy sidecar at creation",
                w.named()
            )
            .by(w.cite()),
        );
        sidecar_wins(&mut steps);
        return Decision::new(DataPlane::Sidecar, steps);
    }
    if ambient_enrolled(inv, w, &mut steps) {
        return Decision::new(DataPlane::Ambient, steps);
    }
    steps.push(crate::step!("A5", "{} has no sidecar and is not enrolled in ambient: plain pod, plaintext only and no mesh identity",
            w.named()));
    Decision::new(DataPlane::Plain, steps)
}

/// Parse a comma-separated port list of a traffic annotation; entries that are not port
/// numbers are skipped.
pub fn parse_port_list(value: &str) -> Vec<u16> {
    value
        .split(',')
        .filter_map(|p| p.trim().parse::<u16>().ok())
        .collect()
}

/// B7: whether the sidecar intercepts inbound traffic to this container port
/// (`traffic.sidecar.istio.io/excludeInboundPorts` / `includeInboundPorts`).
pub fn intercepts_inbound(w: &Workload, port: u16) -> Decision<bool> {
    if let Some(v) = w.annotation(EXCLUDE_INBOUND)
        && parse_port_list(v).contains(&port)
    {
        return Decision::new(
            false,
            vec![
                crate::step!("B7", "port {port} is in {EXCLUDE_INBOUND}={v:?} on {}: it bypasses the sidecar, so plaintext always reaches the app and no PeerAuthentication or AuthorizationPolicy applies (sidecar clients still send mTLS unless a DestinationRule sets DISABLE)",
                        w.named())
                .by(w.cite()),
            ],
        );
    }
    match w.annotation(INCLUDE_INBOUND).map(str::trim) {
        None | Some("*") => Decision::new(
            true,
            vec![crate::step!(
                "B7",
                "the sidecar of {} intercepts inbound port {port}",
                w.named()
            )],
        ),
        Some(list) => {
            let included = parse_port_list(list).contains(&port);
            let message = if included {
                crate::text!(
                    "port {port} is listed in {INCLUDE_INBOUND}={list:?} on {}: the sidecar intercepts it",
                    w.named()
                )
            } else {
                crate::text!(
                    "port {port} is not listed in {INCLUDE_INBOUND}={list:?} on {}: it bypasses the sidecar, so plaintext always reaches the app and no PeerAuthentication or AuthorizationPolicy applies",
                    w.named()
                )
            };
            Decision::new(included, vec![Step::new("B7", message).by(w.cite())])
        }
    }
}

/// A3: whether endpoints of this sidecar workload advertise `security.istio.io/tlsMode: istio`
/// (false when the pod template pre-sets `tlsMode: disabled`).
pub fn advertises_istio_tls(w: &Workload) -> bool {
    w.label("security.istio.io/tlsMode")
        .is_none_or(|v| v == "istio")
}

/// Whether the sidecar of `w` holds the application until it is ready
/// (`holdApplicationUntilProxyStarts`): the pod's `proxy.istio.io/config` annotation (a
/// ProxyConfig in YAML or JSON) decides when it sets the field, else the mesh's
/// `defaultConfig`. An annotation that does not parse sets nothing (Istio's injector rejects
/// it; the mesh default stands).
pub fn holds_application_until_proxy_starts(inv: &Inventory, w: &Workload) -> bool {
    w.annotation("proxy.istio.io/config")
        .and_then(|text| serde_saphyr::from_str::<serde_json::Value>(text).ok())
        .and_then(|v| v.get("holdApplicationUntilProxyStarts")?.as_bool())
        .unwrap_or(inv.mesh.hold_application_until_proxy_starts)
}
