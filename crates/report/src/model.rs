//! From a [`Report`] to what the map draws: regions (namespaces), nodes (workloads), edges
//! (required flows) and the rows of the flow table. With more than [`FOLD_PROFILES_ABOVE`]
//! profile namespaces, the profiles are folded into one region and their flows are grouped
//! (the summarised map).

use std::collections::{BTreeMap, BTreeSet};

use kfp_mesh_kfp::check::{FlowResult, Report};

use crate::style::Style;

/// More profile namespaces than this are folded into one region.
pub const FOLD_PROFILES_ABOVE: usize = 10;
/// Stands for the profile namespace in the ids of folded flows.
pub const PROFILE_PLACEHOLDER: &str = "{profile}";

/// Where a node lives: outside every drawn namespace, or in a region.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeKey {
    External(String),
    Internal { region: RegionKey, name: String },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RegionKey {
    Namespace(String),
    /// All profile namespaces, folded.
    Profiles,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Workload,
    /// A run pod kfp-mesh synthesised (it exists only while a run executes).
    RunPod,
    /// A caller outside the mesh (kube-apiserver, kubelet, an ingress gateway whose namespace
    /// is not drawn), drawn at the edge of the picture.
    External,
}

#[derive(Clone, Debug)]
pub struct Region {
    pub key: RegionKey,
    pub title: String,
    /// Number of namespaces folded into it (0 for a namespace region).
    pub folded: usize,
    /// Required flows touching the region, by style.
    pub counts: BTreeMap<Style, usize>,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub key: NodeKey,
    pub region: Option<usize>,
    pub name: String,
    pub kind: NodeKind,
    /// The real namespace, when the node has one (an external ingress gateway keeps it).
    pub namespace: Option<String>,
    /// `service:port` it is called on.
    pub services: BTreeSet<String>,
    pub service_accounts: BTreeSet<String>,
    /// Profile namespaces it stands for (folded region).
    pub profiles: BTreeSet<String>,
}

impl Node {
    /// The small second line of the node.
    pub fn caption(&self) -> String {
        match self.kind {
            NodeKind::External => match &self.namespace {
                Some(ns) => format!("outside the map ({ns})"),
                None => "outside the mesh".to_string(),
            },
            NodeKind::RunPod if !self.profiles.is_empty() => {
                format!("run pod (synthesised) x{}", self.profiles.len())
            }
            NodeKind::RunPod => "run pod (synthesised)".to_string(),
            NodeKind::Workload => {
                let mut s = String::new();
                if !self.services.is_empty() {
                    let list: Vec<&str> =
                        self.services.iter().take(2).map(String::as_str).collect();
                    s = format!("svc {}", list.join(", "));
                    if self.services.len() > 2 {
                        s.push_str(&format!(" +{}", self.services.len() - 2));
                    }
                }
                if !self.profiles.is_empty() {
                    if !s.is_empty() {
                        s.push_str(", ");
                    }
                    s.push_str(&format!("x{}", self.profiles.len()));
                }
                s
            }
        }
    }
}

/// One line of the flow table: one flow, or (summarised map) the same flow of many profiles
/// with the same outcome.
#[derive(Clone, Debug)]
pub struct Row {
    pub id: String,
    /// Indexes into `Report::flows`; the first is the representative.
    pub flows: Vec<usize>,
    pub style: Style,
    /// Profiles the row stands for (summarised rows only).
    pub profiles: Vec<String>,
}

/// One drawn edge: one required flow, or (summarised map) one flow of all folded profiles.
#[derive(Clone, Debug)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub id: String,
    pub rows: Vec<usize>,
    /// The worst style of its flows.
    pub style: Style,
    pub counts: BTreeMap<Style, usize>,
}

impl Edge {
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }
}

pub struct Graph<'a> {
    pub report: &'a Report,
    pub regions: Vec<Region>,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub rows: Vec<Row>,
    /// The folded profile namespaces (empty when the map is not summarised).
    pub folded: Vec<String>,
}

/// `base`, `profile`, `source` of an instance id `base@profile#source`.
pub fn split_id(id: &str) -> (&str, Option<&str>, Option<&str>) {
    let (head, source) = match id.split_once('#') {
        Some((h, s)) => (h, Some(s)),
        None => (id, None),
    };
    match head.split_once('@') {
        Some((base, profile)) => (base, Some(profile), source),
        None => (head, None, source),
    }
}

struct Builder<'a> {
    folded: BTreeSet<&'a str>,
    /// (namespace, service) → the workload behind it, from the access view.
    servers: BTreeMap<(&'a str, &'a str), &'a str>,
    /// Workloads seen as callers, by region.
    callers: BTreeMap<RegionKey, BTreeSet<&'a str>>,
}

impl<'a> Builder<'a> {
    fn region_of(&self, ns: &str) -> RegionKey {
        if self.folded.contains(ns) {
            RegionKey::Profiles
        } else {
            RegionKey::Namespace(ns.to_string())
        }
    }

    /// The folded profile a flow belongs to, if any.
    fn fold_profile(&self, f: &'a FlowResult) -> Option<&'a str> {
        if self.folded.is_empty() {
            return None;
        }
        let (_, profile, _) = split_id(&f.id);
        profile
            .filter(|p| self.folded.contains(p))
            .or_else(|| {
                f.from
                    .namespace
                    .as_deref()
                    .filter(|ns| self.folded.contains(ns))
            })
            .or_else(|| Some(f.to.namespace.as_str()).filter(|ns| self.folded.contains(ns)))
    }

    fn canonical_id(&self, f: &FlowResult) -> String {
        match split_id(&f.id) {
            (base, Some(p), source) if self.folded.contains(p) => match source {
                Some(s) => format!("{base}@{PROFILE_PLACEHOLDER}#{s}"),
                None => format!("{base}@{PROFILE_PLACEHOLDER}"),
            },
            _ => f.id.clone(),
        }
    }

    fn source_key(&self, f: &FlowResult) -> NodeKey {
        match &f.from.namespace {
            None => NodeKey::External(f.from.workload.clone()),
            Some(ns) => NodeKey::Internal {
                region: self.region_of(ns),
                name: f.from.workload.clone(),
            },
        }
    }

    /// The workload behind a destination Service: the access view's, else a caller of the
    /// same namespace named like the Service (`minio-service` → `minio`,
    /// `metadata-grpc-service` → `metadata-grpc-deployment`), else the Service's name.
    fn destination_key(&self, f: &FlowResult) -> NodeKey {
        let ns = f.to.namespace.as_str();
        let svc = f.to.service.as_str();
        let region = self.region_of(ns);
        if let Some(w) = self.servers.get(&(ns, svc)) {
            return NodeKey::Internal {
                region,
                name: (*w).to_string(),
            };
        }
        if let Some(callers) = self.callers.get(&region) {
            let bases = [
                Some(svc),
                svc.strip_suffix("-service"),
                svc.strip_suffix("-svc"),
            ];
            for base in bases.into_iter().flatten() {
                for cand in [
                    base.to_string(),
                    format!("{base}-deployment"),
                    format!("{base}-server"),
                ] {
                    if callers.contains(cand.as_str()) {
                        return NodeKey::Internal { region, name: cand };
                    }
                }
            }
        }
        NodeKey::Internal {
            region,
            name: svc.to_string(),
        }
    }
}

/// The graph of a report.
pub fn build(report: &Report) -> Graph<'_> {
    let mut profiles: BTreeSet<&str> = report
        .kfp
        .profiles
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    for f in &report.flows {
        if let (_, Some(p), _) = split_id(&f.id) {
            profiles.insert(p);
        }
    }
    let folded: BTreeSet<&str> = if profiles.len() > FOLD_PROFILES_ABOVE {
        profiles.clone()
    } else {
        BTreeSet::new()
    };
    let mut b = Builder {
        folded,
        servers: BTreeMap::new(),
        callers: BTreeMap::new(),
    };
    for a in &report.access {
        b.servers.insert(
            (a.namespace.as_str(), a.service.as_str()),
            a.workload.as_str(),
        );
    }
    for f in &report.flows {
        if let Some(ns) = &f.from.namespace {
            let region = b.region_of(ns);
            b.callers
                .entry(region)
                .or_default()
                .insert(f.from.workload.as_str());
        }
    }

    // Rows of the table.
    let mut rows: Vec<Row> = Vec::new();
    let mut grouped: BTreeMap<(String, NodeKey, NodeKey, Style), usize> = BTreeMap::new();
    let mut row_ends: Vec<(NodeKey, NodeKey)> = Vec::new();
    for (i, f) in report.flows.iter().enumerate() {
        let style = Style::of(f.outcome, f.transport);
        let from = b.source_key(f);
        let to = b.destination_key(f);
        match b.fold_profile(f) {
            Some(p) => {
                let id = b.canonical_id(f);
                let key = (id.clone(), from.clone(), to.clone(), style);
                match grouped.get(&key) {
                    Some(&r) => {
                        rows[r].flows.push(i);
                        rows[r].profiles.push(p.to_string());
                    }
                    None => {
                        grouped.insert(key, rows.len());
                        rows.push(Row {
                            id,
                            flows: vec![i],
                            style,
                            profiles: vec![p.to_string()],
                        });
                        row_ends.push((from, to));
                    }
                }
            }
            None => {
                rows.push(Row {
                    id: f.id.clone(),
                    flows: vec![i],
                    style,
                    profiles: Vec::new(),
                });
                row_ends.push((from, to));
            }
        }
    }
    for r in &mut rows {
        r.profiles.sort();
        r.profiles.dedup();
    }

    // The ingress gateway alone in its namespace is drawn at the edge of the picture.
    let required: Vec<usize> = (0..rows.len())
        .filter(|&r| {
            rows[r]
                .flows
                .first()
                .and_then(|&i| report.flows.get(i))
                .is_some_and(|f| f.required)
        })
        .collect();
    if let Some(g) = &report.kfp.ingress_gateway {
        let gw = NodeKey::Internal {
            region: b.region_of(&g.namespace),
            name: g.workload.clone(),
        };
        let region = b.region_of(&g.namespace);
        let alone = required.iter().all(|&r| {
            let (from, to) = &row_ends[r];
            [from, to].into_iter().all(|k| match k {
                NodeKey::Internal { region: reg, .. } => *reg != region || *k == gw,
                NodeKey::External(_) => true,
            })
        });
        if alone && region != RegionKey::Profiles {
            for (from, to) in &mut row_ends {
                for k in [from, to] {
                    if *k == gw {
                        *k = NodeKey::External(g.workload.clone());
                    }
                }
            }
        }
    }

    // Nodes, in key order.
    let mut node_index: BTreeMap<NodeKey, usize> = BTreeMap::new();
    for &r in &required {
        let (from, to) = &row_ends[r];
        node_index.entry(from.clone()).or_insert(0);
        node_index.entry(to.clone()).or_insert(0);
    }
    let mut nodes: Vec<Node> = Vec::new();
    for (i, (key, slot)) in node_index.iter_mut().enumerate() {
        *slot = i;
        let (name, kind) = match key {
            NodeKey::External(n) => (n.clone(), NodeKind::External),
            NodeKey::Internal { name, .. } => (name.clone(), NodeKind::Workload),
        };
        nodes.push(Node {
            key: key.clone(),
            region: None,
            name,
            kind,
            namespace: None,
            services: BTreeSet::new(),
            service_accounts: BTreeSet::new(),
            profiles: BTreeSet::new(),
        });
    }

    // Edges (one per required row; summarised: one per flow of the folded profiles).
    let mut edges: Vec<Edge> = Vec::new();
    let mut edge_of: BTreeMap<(String, usize, usize), usize> = BTreeMap::new();
    for &r in &required {
        let row = &rows[r];
        let (fk, tk) = &row_ends[r];
        let (Some(&from), Some(&to)) = (node_index.get(fk), node_index.get(tk)) else {
            continue;
        };
        for &i in &row.flows {
            let Some(f) = report.flows.get(i) else {
                continue;
            };
            if let Some(n) = nodes.get_mut(from) {
                if f.from.synthetic && n.kind != NodeKind::External {
                    n.kind = NodeKind::RunPod;
                }
                if n.kind == NodeKind::External
                    || (n.namespace.is_none()
                        && !b.folded.contains(f.from.namespace.as_deref().unwrap_or("")))
                {
                    n.namespace = f.from.namespace.clone();
                }
                if let Some(sa) = &f.from.service_account {
                    n.service_accounts.insert(sa.clone());
                }
                if let Some(ns) = &f.from.namespace
                    && b.folded.contains(ns.as_str())
                {
                    n.profiles.insert(ns.clone());
                }
            }
            if let Some(n) = nodes.get_mut(to) {
                n.services.insert(format!("{}:{}", f.to.service, f.to.port));
                if b.folded.contains(f.to.namespace.as_str()) {
                    n.profiles.insert(f.to.namespace.clone());
                } else if n.namespace.is_none() {
                    n.namespace = Some(f.to.namespace.clone());
                }
            }
        }
        let key = if b.folded.is_empty() {
            (format!("#{r}"), from, to)
        } else {
            (row.id.clone(), from, to)
        };
        let e = match edge_of.get(&key) {
            Some(&e) => e,
            None => {
                edge_of.insert(key, edges.len());
                edges.push(Edge {
                    from,
                    to,
                    id: row.id.clone(),
                    rows: Vec::new(),
                    style: row.style,
                    counts: BTreeMap::new(),
                });
                edges.len() - 1
            }
        };
        if let Some(edge) = edges.get_mut(e) {
            edge.rows.push(r);
            *edge.counts.entry(row.style).or_insert(0) += row.flows.len();
            edge.style = edge.style.max(row.style);
        }
    }

    // Regions: other namespaces, the KFP namespace, profiles (or the folded region).
    let kfp_ns = report.kfp.kfp_namespace();
    let mut region_keys: BTreeSet<RegionKey> = BTreeSet::new();
    for n in &nodes {
        if let NodeKey::Internal { region, .. } = &n.key {
            region_keys.insert(region.clone());
        }
    }
    let order = |k: &RegionKey| -> (u8, String) {
        match k {
            RegionKey::Profiles => (3, String::new()),
            RegionKey::Namespace(ns) if ns == kfp_ns => (1, ns.clone()),
            RegionKey::Namespace(ns) if profiles.contains(ns.as_str()) => (2, ns.clone()),
            RegionKey::Namespace(ns) => (0, ns.clone()),
        }
    };
    let mut keys: Vec<RegionKey> = region_keys.into_iter().collect();
    keys.sort_by_key(|k| order(k));
    let mut regions: Vec<Region> = keys
        .into_iter()
        .map(|key| {
            let (title, folded) = match &key {
                RegionKey::Profiles => (
                    format!("{} profile namespaces (folded)", b.folded.len()),
                    b.folded.len(),
                ),
                RegionKey::Namespace(ns) if ns == kfp_ns => (format!("namespace {ns} (KFP)"), 0),
                RegionKey::Namespace(ns) if profiles.contains(ns.as_str()) => {
                    (format!("namespace {ns} (profile)"), 0)
                }
                RegionKey::Namespace(ns) => (format!("namespace {ns}"), 0),
            };
            Region {
                key,
                title,
                folded,
                counts: BTreeMap::new(),
            }
        })
        .collect();
    for n in &mut nodes {
        if let NodeKey::Internal { region, .. } = &n.key {
            n.region = regions.iter().position(|r| &r.key == region);
        }
    }
    for e in &edges {
        let mut touched: BTreeSet<usize> = BTreeSet::new();
        for n in [e.from, e.to] {
            if let Some(r) = nodes.get(n).and_then(|n| n.region) {
                touched.insert(r);
            }
        }
        for r in touched {
            if let Some(region) = regions.get_mut(r) {
                for (s, c) in &e.counts {
                    *region.counts.entry(*s).or_insert(0) += c;
                }
            }
        }
    }

    Graph {
        report,
        regions,
        nodes,
        edges,
        rows,
        folded: b.folded.iter().map(|s| s.to_string()).collect(),
    }
}
