//! B: the effective PeerAuthentication mode of a workload and port.

use serde::Serialize;

use crate::explain::{Decision, Step};
use crate::inventory::{Inventory, PeerAuthentication, Workload};
use crate::model::PeerMode;
use crate::object::Cited;

/// The mode a server port enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MtlsMode {
    Strict,
    Permissive,
    Disable,
}

impl MtlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MtlsMode::Strict => "STRICT",
            MtlsMode::Permissive => "PERMISSIVE",
            MtlsMode::Disable => "DISABLE",
        }
    }
}

impl std::fmt::Display for MtlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The mode a PeerAuthentication declares (`None` for UNSET or no `mtls`).
pub fn declared_mode(mode: PeerMode) -> Option<MtlsMode> {
    match mode {
        PeerMode::Unset => None,
        PeerMode::Disable => Some(MtlsMode::Disable),
        PeerMode::Permissive => Some(MtlsMode::Permissive),
        PeerMode::Strict => Some(MtlsMode::Strict),
    }
}

fn top_mode(pa: &PeerAuthentication) -> PeerMode {
    pa.spec.mtls.as_ref().map(|m| m.mode).unwrap_or_default()
}

fn has_selector(pa: &PeerAuthentication) -> bool {
    pa.spec.selector.as_ref().and_then(|s| s.labels()).is_some()
}

/// Why `winner` comes before `other` in Istio's order (B2).
fn order_reason(winner: &PeerAuthentication, other: &PeerAuthentication) -> &'static str {
    match (
        &winner.meta.creation_timestamp,
        &other.meta.creation_timestamp,
    ) {
        (Some(a), Some(b)) if a != b => "it is older (creationTimestamp)",
        (Some(_), None) => "only it has a creationTimestamp, so it was created first",
        _ => {
            "without distinct creationTimestamps kfp-mesh assumes creation in name order, as Istio breaks ties by name"
        }
    }
}

/// First policy of one scope (the list is in Istio's order); the others are named as ignored.
fn first_of_scope<'a>(
    candidates: Vec<&'a PeerAuthentication>,
    scope: &str,
    steps: &mut Vec<Step>,
) -> Option<&'a PeerAuthentication> {
    let (first, rest) = candidates.split_first()?;
    for other in rest {
        steps.push(
            crate::step!("B2", "PeerAuthentication {}/{} is ignored: several {scope} policies apply and {}/{} wins because {}; delete or merge the duplicate",
                    other.namespace(),
                    other.name(),
                    first.namespace(),
                    first.name(),
                    order_reason(first, other))
            .by(other.cite())
            .by(first.cite()),
        );
    }
    Some(*first)
}

struct Selected<'a> {
    mesh: Option<&'a PeerAuthentication>,
    namespace: Option<&'a PeerAuthentication>,
    workload: Option<&'a PeerAuthentication>,
}

/// B1, B2, B6: the policies of each scope that apply to a workload in `ns` with `labels`
/// (`labels == None`: namespace level only, workload policies not considered).
fn select<'a>(
    inv: &'a Inventory,
    ns: &str,
    workload: Option<&Workload>,
    ambient: bool,
    steps: &mut Vec<Step>,
) -> Selected<'a> {
    let root = inv.mesh.root_namespace.as_str();
    let root_pas = inv.peer_authentications_in(root);
    let mesh = first_of_scope(
        root_pas.iter().filter(|p| !has_selector(p)).collect(),
        "mesh-wide",
        steps,
    );
    if let Some(w) = workload {
        for pa in root_pas.iter().filter(|p| has_selector(p)) {
            let matches = pa
                .spec
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(&w.labels));
            if matches {
                steps.push(
                    crate::step!(if ambient { "A6.2" } else { "B6" }, "PeerAuthentication {}/{} selects {} but has no effect: Istio ignores selector policies in the root namespace `{root}` ({} mode); move it to namespace `{}`",
                            pa.namespace(),
                            pa.name(),
                            w.named(),
                            if ambient { "ambient" } else { "sidecar" },
                            w.namespace)
                    .by(pa.cite()),
                );
            }
        }
    }
    if ns == root {
        return Selected {
            mesh,
            namespace: None,
            workload: None,
        };
    }
    let pas = inv.peer_authentications_in(ns);
    let namespace = first_of_scope(
        pas.iter().filter(|p| !has_selector(p)).collect(),
        "namespace-wide",
        steps,
    );
    let workload = workload.and_then(|w| {
        first_of_scope(
            pas.iter()
                .filter(|p| {
                    has_selector(p)
                        && p.spec
                            .selector
                            .as_ref()
                            .is_some_and(|s| s.matches(&w.labels))
                })
                .collect(),
            "workload",
            steps,
        )
    });
    Selected {
        mesh,
        namespace,
        workload,
    }
}

/// In ambient, DISABLE is not supported: istiod treats such a level as "not STRICT", so
/// ztunnel accepts plaintext there (the same as PERMISSIVE).
fn ambient_mode(mode: Option<MtlsMode>, ambient: bool) -> Option<MtlsMode> {
    match mode {
        Some(MtlsMode::Disable) if ambient => Some(MtlsMode::Permissive),
        m => m,
    }
}

/// Apply one scope's declared mode (B3): UNSET inherits.
fn apply_level(
    pa: &PeerAuthentication,
    scope: &str,
    mode: &mut MtlsMode,
    decided_by: &mut Option<Cited>,
    ambient: bool,
    steps: &mut Vec<Step>,
) {
    let declared = declared_mode(top_mode(pa));
    match (declared, ambient_mode(declared, ambient)) {
        (None, _) => steps.push(
            crate::step!(
                "B3",
                "{scope} PeerAuthentication {}/{} leaves the mode UNSET: inherits {mode}",
                pa.namespace(),
                pa.name()
            )
            .by(pa.cite()),
        ),
        (Some(d), Some(effective)) if d != effective => {
            steps.push(
                crate::step!("A6.2", "{scope} PeerAuthentication {}/{} sets {d}, which ambient does not support: istiod treats it as not STRICT, so ztunnel accepts plaintext ({effective}); to get plaintext-only you must take the workload out of ambient",
                        pa.namespace(),
                        pa.name())
                .by(pa.cite()),
            );
            *mode = effective;
            *decided_by = Some(pa.cite());
        }
        (Some(d), _) => {
            steps.push(
                crate::step!(
                    "B3",
                    "{scope} PeerAuthentication {}/{} sets {d}",
                    pa.namespace(),
                    pa.name()
                )
                .by(pa.cite()),
            );
            *mode = d;
            *decided_by = Some(pa.cite());
        }
    }
}

fn compose(inv: &Inventory, w: &Workload, port: u16, ambient: bool) -> Decision<MtlsMode> {
    let mut steps = Vec::new();
    let selected = select(inv, &w.namespace, Some(w), ambient, &mut steps);
    let mut mode = MtlsMode::Permissive;
    let mut decided_by: Option<Cited> = None;
    if let Some(pa) = selected.mesh {
        apply_level(
            pa,
            "mesh-wide",
            &mut mode,
            &mut decided_by,
            ambient,
            &mut steps,
        );
    }
    if let Some(pa) = selected.namespace {
        apply_level(
            pa,
            "namespace-wide",
            &mut mode,
            &mut decided_by,
            ambient,
            &mut steps,
        );
    }
    if let Some(pa) = selected.workload {
        let workload_declared = declared_mode(top_mode(pa));
        apply_level(
            pa,
            "workload",
            &mut mode,
            &mut decided_by,
            ambient,
            &mut steps,
        );
        let mut unmatched: Vec<u16> = Vec::new();
        for (key, setting) in pa.spec.port_level_mtls.iter().flatten() {
            let Ok(p) = key.trim().parse::<u16>() else {
                steps.push(
                    crate::step!("B4", "portLevelMtls key {key:?} of PeerAuthentication {}/{} is not a port number: ignored",
                            pa.namespace(),
                            pa.name())
                    .by(pa.cite()),
                );
                continue;
            };
            if p != port {
                unmatched.push(p);
                continue;
            }
            let declared = declared_mode(setting.mode);
            match declared {
                None => steps.push(
                    crate::step!("B4", "portLevelMtls {p} of PeerAuthentication {}/{} is UNSET: port inherits {mode}",
                            pa.namespace(),
                            pa.name())
                    .by(pa.cite()),
                ),
                Some(MtlsMode::Disable) if ambient && workload_declared.is_none() => steps.push(
                    crate::step!("A6.2", "portLevelMtls {p}: DISABLE of PeerAuthentication {}/{} is ignored in ambient (the policy's own mode is UNSET): port keeps {mode}",
                            pa.namespace(),
                            pa.name())
                    .by(pa.cite()),
                ),
                Some(d) => {
                    let effective = ambient_mode(Some(d), ambient).unwrap_or(d);
                    let message = if effective != d {
                        crate::text!(
                            "portLevelMtls {p}: {d} of PeerAuthentication {}/{}: ambient does not support DISABLE, ztunnel accepts plaintext on this port ({effective})",
                            pa.namespace(),
                            pa.name()
                        )
                    } else {
                        crate::text!(
                            "portLevelMtls {p}: {d} of PeerAuthentication {}/{} applies to container port {port}",
                            pa.namespace(),
                            pa.name()
                        )
                    };
                    steps.push(
                        Step::new(if effective != d { "A6.2" } else { "B4" }, message)
                            .by(pa.cite()),
                    );
                    mode = effective;
                    decided_by = Some(pa.cite());
                }
            }
        }
        // A common mistake: the Service port used as the portLevelMtls key.
        for svc in inv.services_of(w) {
            for sp in &svc.spec.ports {
                let Ok(service_port) = u16::try_from(sp.port) else {
                    continue;
                };
                if unmatched.contains(&service_port)
                    && service_port != port
                    && w.target_port(sp) == Some(port)
                {
                    steps.push(
                        crate::step!("B4", "portLevelMtls {service_port} of PeerAuthentication {}/{} names the Service port of {}/{}, but the key is the container port: use {port}",
                                pa.namespace(),
                                pa.name(),
                                svc.namespace(),
                                svc.name())
                        .by(pa.cite())
                        .by(svc.cite()),
                    );
                }
            }
        }
    }
    let summary = match &decided_by {
        None if steps.is_empty() => crate::text!(
            "no PeerAuthentication applies to {}: Istio's default is PERMISSIVE",
            w.named()
        ),
        None => crate::text!(
            "no PeerAuthentication sets a mode for {}: PERMISSIVE (the default)",
            w.named()
        ),
        Some(_) => crate::text!(
            "effective mode of {} on container port {port}: {mode}{}",
            w.named(),
            if ambient {
                " (ambient, enforced by ztunnel)"
            } else {
                ""
            }
        ),
    };
    let summary = Step::new(if ambient { "A6.2" } else { "B3" }, summary);
    steps.push(match decided_by {
        Some(c) => summary.by(c),
        None => summary,
    });
    Decision::new(mode, steps)
}

/// B1–B6 for a sidecar workload and target (container) port: mesh, namespace, workload and
/// port-level policies, oldest wins, UNSET inherits, PERMISSIVE by default, root-namespace
/// selector policies ignored.
pub fn effective_mode(inv: &Inventory, w: &Workload, port: u16) -> Decision<MtlsMode> {
    compose(inv, w, port, false)
}

/// A6.2 for an ambient workload: as [`effective_mode`] but DISABLE is not supported and
/// root-namespace selector policies are skipped. Istio's conversion
/// (`convertedSelectorPeerAuthentications`) treats a DISABLE level as "not STRICT", so ztunnel
/// accepts plaintext there: the result is PERMISSIVE, never DISABLE. A port-level DISABLE under
/// a workload policy whose own mode is UNSET is ignored (the port keeps the inherited mode).
pub fn effective_mode_ambient(inv: &Inventory, w: &Workload, port: u16) -> Decision<MtlsMode> {
    compose(inv, w, port, true)
}

/// C3 cluster level: the namespace-level mode of `ns`, else the mesh mode, else PERMISSIVE
/// (workload policies are not considered).
pub fn namespace_mode(inv: &Inventory, ns: &str) -> Decision<MtlsMode> {
    let mut steps = Vec::new();
    let selected = select(inv, ns, None, false, &mut steps);
    let ns_level = selected
        .namespace
        .and_then(|pa| declared_mode(top_mode(pa)).map(|m| (pa, m)));
    let mesh_level = selected
        .mesh
        .and_then(|pa| declared_mode(top_mode(pa)).map(|m| (pa, m)));
    if let Some(pa) = selected.namespace.filter(|_| ns_level.is_none()) {
        steps.push(
            crate::step!(
                "C3",
                "namespace-wide PeerAuthentication {}/{} leaves the mode UNSET",
                pa.namespace(),
                pa.name()
            )
            .by(pa.cite()),
        );
    }
    let (mode, step) = match (ns_level, mesh_level) {
        (Some((pa, m)), _) => (
            m,
            crate::step!("C3", "namespace `{ns}` mode is {m}, set by the namespace-wide PeerAuthentication {}/{}",
                    pa.namespace(),
                    pa.name())
            .by(pa.cite()),
        ),
        (None, Some((pa, m))) => (
            m,
            crate::step!("C3", "namespace `{ns}` has no namespace-wide mode; the mesh-wide PeerAuthentication {}/{} sets {m}",
                    pa.namespace(),
                    pa.name())
            .by(pa.cite()),
        ),
        (None, None) => (
            MtlsMode::Permissive,
            crate::step!("C3", "no namespace-wide or mesh-wide PeerAuthentication sets a mode for namespace `{ns}`: PERMISSIVE"),
        ),
    };
    steps.push(step);
    Decision::new(mode, steps)
}
