//! Kubernetes NetworkPolicy as the first gate (when the input has any).
//!
//! Semantics (networking.k8s.io/v1):
//!
//! * A pod is *isolated for ingress* when some NetworkPolicy in its namespace selects it
//!   (`podSelector`) and has `Ingress` among its policy types; likewise for egress. Absent or
//!   empty `policyTypes` mean `Ingress`, plus `Egress` when the policy has a non-empty `egress`
//!   section (the API server's defaulting).
//! * An isolated direction admits a connection iff some rule of some isolating policy matches
//!   both the peer and the port. Policies are additive; there is no deny rule.
//! * Peers: `podSelector` alone selects pods of the policy's namespace; `namespaceSelector`
//!   alone every pod of the matching namespaces; both in **one** peer is an AND; separate peers
//!   are ORed. `ipBlock` matches an address inside `cidr` and outside every `except`. A rule
//!   with `from`/`to` absent or empty matches every peer.
//! * Ports: absent or empty `ports` match every port; `protocol` defaults to TCP (the
//!   connections asked about are TCP); a numeric `port` with `endPort` is a range; a named port
//!   is resolved against the destination pod's container ports (for egress too).
//!
//! Assumptions, since the input carries no IP addresses:
//!
//! * The IP of a pod, and of an external peer given without one, is unknown. An unknown IP
//!   matches an `ipBlock` only when the block covers every address (`0.0.0.0/0` or `::/0`)
//!   and has no `except`. CNIs differ on whether `ipBlock` applies to pod IPs at all.
//! * `podSelector`/`namespaceSelector` peers never match an external peer.
//! * Host-network pods are not governed by NetworkPolicy (the behaviour is implementation
//!   defined; commonly their traffic is node traffic). As a destination they are never
//!   isolated; as a source they are treated as a peer with an unknown (node) IP and no egress
//!   isolation.

use std::net::IpAddr;

use crate::explain::{Decision, Step};
use crate::inventory::{Inventory, Memoized, NetworkPolicy, Workload};
use crate::model::{IntOrString, IpBlock, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec};

const RULE: &str = "NP";

/// Who opens the connection, as NetworkPolicy sees it.
#[derive(Clone, Copy, Debug)]
pub enum NetPeer<'a> {
    Pod(&'a Workload),
    /// Outside the pod network (kube-apiserver, an external client), with its IP when known.
    External(Option<IpAddr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn policy_type(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }
    fn lower(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// The other end of the connection, as a policy rule sees it.
#[derive(Clone, Copy, Debug)]
enum Endpoint<'a> {
    Pod(&'a Workload),
    /// Not a pod a selector can pick (external, or a host-network pod), IP when known.
    Address(Option<IpAddr>),
}

impl std::fmt::Display for Endpoint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Pod(w) => w.named().fmt(f),
            Endpoint::Address(Some(ip)) => write!(f, "address {ip}"),
            Endpoint::Address(None) => f.write_str("a peer outside the pod network (IP unknown)"),
        }
    }
}

/// Whether NetworkPolicies let `from` open a TCP connection to `to` on container `port`
/// (ingress policies selecting `to`, egress policies selecting `from`).
pub fn allows(inv: &Inventory, from: NetPeer<'_>, to: &Workload, port: u16) -> Decision<bool> {
    let mut steps = Vec::with_capacity(4);

    let egress_ok = match from {
        NetPeer::Pod(src) if src.host_network() => {
            steps.push(crate::step!(
                RULE,
                "{} uses the host network: egress NetworkPolicies do not govern it",
                src.named()
            ));
            true
        }
        NetPeer::Pod(src) => {
            let dest = if to.host_network() {
                Endpoint::Address(None)
            } else {
                Endpoint::Pod(to)
            };
            direction(inv, Direction::Egress, src, dest, to, port, &mut steps)
        }
        NetPeer::External(_) => true,
    };

    let ingress_ok = if to.host_network() {
        steps.push(crate::step!(
            RULE,
            "{} uses the host network: ingress NetworkPolicies do not govern it",
            to.named()
        ));
        true
    } else {
        let source = match from {
            NetPeer::Pod(src) if src.host_network() => Endpoint::Address(None),
            NetPeer::Pod(src) => Endpoint::Pod(src),
            NetPeer::External(ip) => Endpoint::Address(ip),
        };
        direction(inv, Direction::Ingress, to, source, to, port, &mut steps)
    };

    Decision::new(egress_ok && ingress_ok, steps)
}

/// Policy types of a policy, with the API server's defaulting.
fn has_type(spec: &NetworkPolicySpec, dir: Direction) -> bool {
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => types.iter().any(|t| t == dir.policy_type()),
        _ => match dir {
            Direction::Ingress => true,
            Direction::Egress => spec.egress.as_ref().is_some_and(|e| !e.is_empty()),
        },
    }
}

/// Evaluate one direction for the pod `subject` (the destination for ingress, the source for
/// egress). `peer` is the other end; `dest` is the destination workload (for named ports).
fn direction(
    inv: &Inventory,
    dir: Direction,
    subject: &Workload,
    peer: Endpoint<'_>,
    dest: &Workload,
    port: u16,
    steps: &mut Vec<Step>,
) -> bool {
    let isolation = isolation(inv, dir, subject);
    crate::explain::extend(steps, std::slice::from_ref(&isolation.step));
    let policies = inv.network_policies_in(&subject.namespace);
    let isolating: Vec<&NetworkPolicy> = isolation
        .policies
        .iter()
        .filter_map(|i| policies.get(*i))
        .collect();
    if isolating.is_empty() {
        return true;
    }

    for policy in &isolating {
        if let Some(why) = policy_allows(inv, policy, dir, peer, dest, port) {
            steps.push(
                crate::step!(
                    RULE,
                    "NetworkPolicy {}/{} {why}: {} {} allowed on port {port}/TCP",
                    policy.namespace(),
                    policy.name(),
                    dir.lower(),
                    flow(dir, subject, peer)
                )
                .by(policy.cite()),
            );
            return true;
        }
    }
    steps.push(crate::step!(
        RULE,
        "no {} rule of these policies admits {} on port {port}/TCP: connection dropped",
        dir.lower(),
        flow(dir, subject, peer)
    ));
    false
}

/// Which NetworkPolicies isolate a pod in one direction, as places in its namespace's
/// policies, and the step that says so.
struct Isolation {
    policies: Vec<usize>,
    step: Step,
}

/// The isolation of `subject` in direction `dir`: decided once per workload and direction
/// (every flow to a server, and every flow from a client, asks).
fn isolation<'w>(
    inv: &Inventory,
    dir: Direction,
    subject: &'w Workload,
) -> Memoized<'w, Isolation> {
    struct Ingress(Isolation);
    struct Egress(Isolation);
    let generation = inv.generation();
    let decide = || decide_isolation(inv, dir, subject);
    match dir {
        Direction::Ingress => match subject
            .memo
            .get_or_compute(generation, || Ingress(decide()))
        {
            Memoized::Kept(kept) => Memoized::Kept(&kept.0),
            Memoized::Fresh(fresh) => Memoized::Fresh(Box::new(fresh.0)),
        },
        Direction::Egress => match subject.memo.get_or_compute(generation, || Egress(decide())) {
            Memoized::Kept(kept) => Memoized::Kept(&kept.0),
            Memoized::Fresh(fresh) => Memoized::Fresh(Box::new(fresh.0)),
        },
    }
}

fn decide_isolation(inv: &Inventory, dir: Direction, subject: &Workload) -> Isolation {
    let (policies, isolating): (Vec<usize>, Vec<&NetworkPolicy>) = inv
        .network_policies_in(&subject.namespace)
        .iter()
        .enumerate()
        .filter(|(_, p)| has_type(&p.spec, dir) && p.spec.pod_selector.matches(&subject.labels))
        .unzip();
    if isolating.is_empty() {
        let step = crate::step!(
            RULE,
            "no NetworkPolicy in namespace {} selects {} for {}: not isolated, {} allowed",
            subject.namespace,
            subject.named(),
            dir.lower(),
            dir.lower()
        );
        return Isolation { policies, step };
    }
    let names: Vec<&str> = isolating.iter().map(|p| p.name()).collect();
    let step = crate::step!(
        RULE,
        "{} of {} is isolated by {} NetworkPolic{} ({}): only what a rule allows passes",
        dir.lower(),
        subject.named(),
        isolating.len(),
        if isolating.len() == 1 { "y" } else { "ies" },
        names.join(", ")
    )
    .by_all(isolating.iter().map(|p| p.cite()));
    Isolation { policies, step }
}

/// `source -> destination` for a step message.
fn flow<'a>(
    dir: Direction,
    subject: &'a Workload,
    peer: Endpoint<'a>,
) -> impl std::fmt::Display + 'a {
    struct Flow<'a>(Direction, &'a Workload, Endpoint<'a>);
    impl std::fmt::Display for Flow<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self.0 {
                Direction::Ingress => write!(f, "{} -> {}", self.2, self.1.named()),
                Direction::Egress => write!(f, "{} -> {}", self.1.named(), self.2),
            }
        }
    }
    Flow(dir, subject, peer)
}

/// One ingress or egress rule: its peers (`from`/`to`) and its ports.
type RuleView<'a> = (
    Option<&'a [NetworkPolicyPeer]>,
    Option<&'a [NetworkPolicyPort]>,
);

/// The first rule of `policy` (in direction `dir`) that admits `peer` on `port`, described.
fn policy_allows(
    inv: &Inventory,
    policy: &NetworkPolicy,
    dir: Direction,
    peer: Endpoint<'_>,
    dest: &Workload,
    port: u16,
) -> Option<String> {
    let (section, peer_field) = match dir {
        Direction::Ingress => ("ingress", "from"),
        Direction::Egress => ("egress", "to"),
    };
    let rules: Vec<RuleView<'_>> = match dir {
        Direction::Ingress => policy
            .spec
            .ingress
            .iter()
            .flatten()
            .map(|r| (r.from.as_deref(), r.ports.as_deref()))
            .collect(),
        Direction::Egress => policy
            .spec
            .egress
            .iter()
            .flatten()
            .map(|r| (r.to.as_deref(), r.ports.as_deref()))
            .collect(),
    };
    for (i, (peers, ports)) in rules.into_iter().enumerate() {
        let Some(peer_why) = peers_match(inv, policy.namespace(), peers, peer, peer_field) else {
            continue;
        };
        let Some(port_why) = ports_match(ports, dest, port) else {
            continue;
        };
        return Some(crate::words!("{section}[{i}] ({peer_why}; {port_why})"));
    }
    None
}

fn peers_match(
    inv: &Inventory,
    policy_ns: &str,
    peers: Option<&[NetworkPolicyPeer]>,
    who: Endpoint<'_>,
    field: &str,
) -> Option<String> {
    let peers = match peers {
        None | Some([]) => return Some(crate::words!("no `{field}`: every peer")),
        Some(p) => p,
    };
    peers.iter().enumerate().find_map(|(j, peer)| {
        peer_matches(inv, policy_ns, peer, who).map(|what| crate::words!("{field}[{j}] {what}"))
    })
}

/// Whether one peer entry selects `who`, described by what matched.
fn peer_matches(
    inv: &Inventory,
    policy_ns: &str,
    peer: &NetworkPolicyPeer,
    who: Endpoint<'_>,
) -> Option<String> {
    if let Some(block) = &peer.ip_block {
        // The API server forbids ipBlock together with selectors.
        let ip = match who {
            Endpoint::Pod(_) => None,
            Endpoint::Address(ip) => ip,
        };
        return ip_block_matches(block, ip).then(|| crate::words!("ipBlock {}", block.cidr));
    }
    let Endpoint::Pod(w) = who else {
        return None;
    };
    match (&peer.pod_selector, &peer.namespace_selector) {
        (None, None) => None,
        (pod_sel, ns_sel) => {
            let ns_ok = match ns_sel {
                Some(sel) => sel.matches(&*inv.namespace_labels(&w.namespace)),
                None => w.namespace == policy_ns,
            };
            let pod_ok = pod_sel.as_ref().is_none_or(|s| s.matches(&w.labels));
            (ns_ok && pod_ok).then(|| {
                match (pod_sel.is_some(), ns_sel.is_some()) {
                    (true, true) => "namespaceSelector AND podSelector",
                    (true, false) => "podSelector (policy namespace)",
                    _ => "namespaceSelector",
                }
                .to_string()
            })
        }
    }
}

/// `cidr` contains the address and no `except` does. An unknown address matches only a block
/// covering every address without exceptions.
fn ip_block_matches(block: &IpBlock, ip: Option<IpAddr>) -> bool {
    let Ok(net) = block.cidr.trim().parse::<ipnet::IpNet>() else {
        return false;
    };
    let excepts = block.except.as_deref().unwrap_or_default();
    match ip {
        Some(ip) => {
            net.contains(&ip)
                && !excepts.iter().any(|e| {
                    e.trim()
                        .parse::<ipnet::IpNet>()
                        .is_ok_and(|n| n.contains(&ip))
                })
        }
        None => net.prefix_len() == 0 && excepts.is_empty(),
    }
}

fn ports_match(ports: Option<&[NetworkPolicyPort]>, dest: &Workload, port: u16) -> Option<String> {
    let ports = match ports {
        None | Some([]) => return Some("every port".to_string()),
        Some(p) => p,
    };
    ports.iter().enumerate().find_map(|(k, p)| {
        if p.protocol.as_deref().unwrap_or("TCP") != "TCP" {
            return None;
        }
        let want = i64::from(port);
        match &p.port {
            None => Some(crate::words!("ports[{k}]: every TCP port")),
            Some(IntOrString::Int(n)) => match p.end_port {
                Some(end) => {
                    (*n <= want && want <= end).then(|| crate::words!("ports[{k}]: {n}-{end}"))
                }
                None => (*n == want).then(|| crate::words!("ports[{k}]: {n}")),
            },
            Some(IntOrString::String(name)) => {
                if let Ok(n) = name.parse::<u16>() {
                    return (n == port).then(|| crate::words!("ports[{k}]: {n}"));
                }
                named_port(dest, name).is_some_and(|n| n == port).then(|| {
                    crate::words!("ports[{k}]: named port {name} = {port} on {}", dest.name)
                })
            }
        }
    })
}

/// A named TCP container port of the destination workload.
fn named_port(w: &Workload, name: &str) -> Option<u16> {
    w.spec
        .containers
        .iter()
        .chain(w.spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
        })
        .and_then(|p| u16::try_from(p.container_port).ok())
}
