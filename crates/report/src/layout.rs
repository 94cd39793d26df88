//! The layout of the flow map, computed here so that the picture does not depend on the
//! browser: namespaces are horizontal bands, workloads sit on a grid of columns (layers of
//! the call graph, callers left of the servers they call), labels are measured
//! conservatively by character count, and edges are curves between the columns.
//! Deterministic: the same graph gives the same coordinates.

use std::collections::BTreeMap;

use crate::model::Graph;

/// Font size of node names (px), in a monospace font.
pub const LABEL_PX: f64 = 12.0;
/// Font size of the second line of a node.
pub const CAPTION_PX: f64 = 10.0;
/// Font size of region titles.
pub const TITLE_PX: f64 = 13.0;
/// Width budget per character in em: monospace fonts are 0.6em wide, the rest is margin.
const EM_BUDGET: f64 = 0.66;
/// Longer names are clipped (the full name is in the tooltip and the table).
pub const MAX_LABEL_CHARS: usize = 60;

const NODE_H: f64 = 40.0;
const NODE_PAD_X: f64 = 10.0;
const NODE_MIN_W: f64 = 110.0;
const ROW_GAP: f64 = 18.0;
const COL_GAP: f64 = 100.0;
const REGION_PAD_X: f64 = 18.0;
const REGION_HEADER: f64 = 30.0;
const REGION_SUMMARY: f64 = 18.0;
const REGION_PAD_BOTTOM: f64 = 14.0;
const REGION_GAP: f64 = 16.0;
const MARGIN: f64 = 12.0;
const EXT_GAP: f64 = 70.0;
const LOOP_ROOM: f64 = 44.0;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn right(&self) -> f64 {
        self.x + self.w
    }
    pub fn bottom(&self) -> f64 {
        self.y + self.h
    }
    pub fn cy(&self) -> f64 {
        self.y + self.h / 2.0
    }
    /// The interiors intersect.
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.right() && o.x < self.right() && self.y < o.bottom() && o.y < self.bottom()
    }
    pub fn contains(&self, o: &Rect) -> bool {
        o.x >= self.x && o.y >= self.y && o.right() <= self.right() && o.bottom() <= self.bottom()
    }
}

/// Character units of a text: ASCII counts 1, anything else 2 (wide glyphs, emoji).
pub fn text_units(s: &str) -> f64 {
    s.chars()
        .map(|c| if c.is_ascii() { 1.0 } else { 2.0 })
        .sum()
}

/// The width a text may take at a font size, conservatively.
pub fn text_width(s: &str, px: f64) -> f64 {
    text_units(s) * px * EM_BUDGET
}

/// At most `max` characters, with an ellipsis when clipped.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[derive(Clone, Debug)]
pub struct PlacedNode {
    pub rect: Rect,
    pub label: String,
    pub caption: String,
    /// Baseline start of the label and the caption.
    pub label_at: (f64, f64),
    pub caption_at: (f64, f64),
    /// The space the label and caption may take (their measured width, font height).
    pub label_box: Rect,
    pub caption_box: Rect,
    pub column: usize,
}

#[derive(Clone, Debug)]
pub struct PlacedRegion {
    pub rect: Rect,
    pub title_at: (f64, f64),
    pub title_box: Rect,
    /// Counts per outcome (folded region), drawn under the title.
    pub summary_at: Option<(f64, f64)>,
}

#[derive(Clone, Debug)]
pub struct PlacedEdge {
    /// SVG path data.
    pub d: String,
    pub start: (f64, f64),
    pub end: (f64, f64),
}

#[derive(Clone, Debug)]
pub struct Layout {
    pub width: f64,
    pub height: f64,
    pub regions: Vec<PlacedRegion>,
    pub nodes: Vec<PlacedNode>,
    pub edges: Vec<PlacedEdge>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// What occupies a slot of the grid: a node, or a lane that carries the edges of one
/// (caller, server) pair across a column they do not stop in (so that no edge runs under a
/// node).
#[derive(Clone, Copy, Debug)]
enum Item {
    Node(usize),
    Lane { bundle: usize },
}

const LANE_PITCH: f64 = 6.0;

/// Edges between the same two nodes that skip columns travel together through lanes.
struct Bundle {
    edges: Vec<usize>,
    /// (column, item) of each lane, left to right.
    lanes: Vec<(usize, usize)>,
}

/// Coordinates for every region, node and edge of the graph.
pub fn layout(g: &Graph<'_>) -> Layout {
    let n = g.nodes.len();
    let internal: Vec<bool> = g.nodes.iter().map(|nd| nd.region.is_some()).collect();
    let is_internal = |i: usize| internal.get(i).copied().unwrap_or(false);

    // Successors among internal nodes, deduplicated, in order.
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    for e in &g.edges {
        if e.from != e.to
            && is_internal(e.from)
            && is_internal(e.to)
            && let Some(s) = succ.get_mut(e.from)
            && !s.contains(&e.to)
        {
            s.push(e.to);
        }
    }
    for s in &mut succ {
        s.sort_unstable();
    }
    let dag = break_cycles(&succ);
    let rank = ranks(&dag);
    let columns = (0..n)
        .filter(|&i| is_internal(i))
        .map(|i| rank[i])
        .max()
        .map_or(1, |m| m + 1);
    let region_of = |i: usize| g.nodes.get(i).and_then(|nd| nd.region).unwrap_or(0);

    // Grid items: nodes, and lanes for edges that skip columns.
    let mut items: Vec<(Item, usize, usize)> = Vec::new(); // (item, region, column)
    let mut item_of_node = vec![usize::MAX; n];
    for i in 0..n {
        if is_internal(i) {
            item_of_node[i] = items.len();
            items.push((Item::Node(i), region_of(i), rank[i]));
        }
    }
    let mut bundle_of: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut bundles: Vec<Bundle> = Vec::new();
    let mut edge_bundle: Vec<Option<usize>> = vec![None; g.edges.len()];
    for (k, e) in g.edges.iter().enumerate() {
        if !is_internal(e.to) || e.from == e.to {
            continue;
        }
        let (first, region) = if is_internal(e.from) {
            (rank[e.from] + 1, region_of(e.from))
        } else {
            (0, region_of(e.to))
        };
        if first >= rank[e.to] {
            continue;
        }
        let b = *bundle_of.entry((e.from, e.to)).or_insert_with(|| {
            bundles.push(Bundle {
                edges: Vec::new(),
                lanes: Vec::new(),
            });
            bundles.len() - 1
        });
        if let Some(bundle) = bundles.get_mut(b) {
            if bundle.lanes.is_empty() {
                for c in first..rank[e.to] {
                    bundle.lanes.push((c, items.len()));
                    items.push((Item::Lane { bundle: b }, region, c));
                }
            }
            bundle.edges.push(k);
        }
        edge_bundle[k] = Some(b);
    }
    let item_height = |it: &Item| match it {
        Item::Node(_) => NODE_H,
        Item::Lane { bundle } => {
            bundles.get(*bundle).map_or(1.0, |b| b.edges.len() as f64) * LANE_PITCH + 2.0
        }
    };

    // Neighbours of items, along the chains.
    let mut neighbours: Vec<Vec<usize>> = vec![Vec::new(); items.len()];
    let link = |a: usize, b: usize, nb: &mut Vec<Vec<usize>>| {
        if a < nb.len() && b < nb.len() && a != b {
            nb[a].push(b);
            nb[b].push(a);
        }
    };
    for (k, e) in g.edges.iter().enumerate() {
        let from = item_of_node.get(e.from).copied().unwrap_or(usize::MAX);
        let to = item_of_node.get(e.to).copied().unwrap_or(usize::MAX);
        match edge_bundle[k].and_then(|b| bundles.get(b)) {
            Some(b) => {
                let mut prev = from;
                for &(_, it) in &b.lanes {
                    link(prev, it, &mut neighbours);
                    prev = it;
                }
                link(prev, to, &mut neighbours);
            }
            None => link(from, to, &mut neighbours),
        }
    }

    // Cells: (region, column) → items, ordered to reduce crossings.
    let regions = g.regions.len();
    let mut cells: Vec<Vec<Vec<usize>>> = vec![vec![Vec::new(); columns]; regions];
    for (it, (_, r, c)) in items.iter().enumerate() {
        if let Some(cell) = cells.get_mut(*r).and_then(|cs| cs.get_mut(*c)) {
            cell.push(it);
        }
    }
    order_cells(&mut cells, &neighbours, items.len());

    // Sizes.
    let labels: Vec<String> = g
        .nodes
        .iter()
        .map(|nd| clip(&nd.name, MAX_LABEL_CHARS))
        .collect();
    let captions: Vec<String> = g
        .nodes
        .iter()
        .map(|nd| clip(&nd.caption(), MAX_LABEL_CHARS))
        .collect();
    let width_of = |i: usize| {
        let lw = text_width(&labels[i], LABEL_PX);
        let cw = text_width(&captions[i], CAPTION_PX);
        (lw.max(cw) + 2.0 * NODE_PAD_X).max(NODE_MIN_W).ceil()
    };
    let mut col_w = vec![NODE_MIN_W; columns];
    for i in 0..n {
        if is_internal(i) {
            col_w[rank[i]] = col_w[rank[i]].max(width_of(i));
        }
    }
    let externals: Vec<usize> = (0..n).filter(|&i| !is_internal(i)).collect();
    let ext_w = externals
        .iter()
        .map(|&i| width_of(i))
        .fold(0.0_f64, f64::max);
    let x0 = if externals.is_empty() {
        MARGIN
    } else {
        ext_w + EXT_GAP
    };
    let mut col_x = vec![0.0; columns];
    let mut x = x0 + REGION_PAD_X;
    for c in 0..columns {
        col_x[c] = x;
        x += col_w[c] + COL_GAP;
    }
    let content_right = x - COL_GAP;
    let title_w = g
        .regions
        .iter()
        .map(|r| text_width(&r.title, TITLE_PX) + 2.0 * REGION_PAD_X)
        .fold(0.0_f64, f64::max);
    let summary_w = g
        .regions
        .iter()
        .map(|r| text_width(&summary(r), CAPTION_PX + 1.0) + 2.0 * REGION_PAD_X)
        .fold(0.0_f64, f64::max);
    // Room right of the last column for edges between two nodes of one column.
    let loops = g.edges.iter().any(|e| {
        e.from != e.to && is_internal(e.from) && is_internal(e.to) && rank[e.from] == rank[e.to]
    }) || g.edges.iter().any(|e| e.from == e.to);
    let loop_room = if loops { LOOP_ROOM } else { 0.0 };
    let region_w = (content_right + REGION_PAD_X + loop_room - x0)
        .max(title_w)
        .max(summary_w)
        .ceil();

    // Regions top to bottom, items stacked in their cells.
    let mut item_rect: Vec<Rect> = vec![Rect::default(); items.len()];
    let mut placed: Vec<Option<PlacedNode>> = vec![None; n];
    let mut placed_regions = Vec::new();
    let mut y = MARGIN;
    for (r, region) in g.regions.iter().enumerate() {
        let header = if region.folded > 0 {
            REGION_HEADER + REGION_SUMMARY
        } else {
            REGION_HEADER
        };
        let mut content: f64 = NODE_H;
        for (c, cell) in cells[r].iter().enumerate() {
            let mut cy = y + header;
            let mut prev: Option<Item> = None;
            for &it in cell {
                let (item, _, _) = items[it];
                if let Some(p) = prev {
                    cy += match (p, item) {
                        (Item::Node(_), Item::Node(_)) => ROW_GAP,
                        _ => ROW_GAP / 2.0,
                    };
                }
                let h = item_height(&item);
                item_rect[it] = Rect {
                    x: col_x[c],
                    y: cy,
                    w: col_w[c],
                    h,
                };
                if let Item::Node(i) = item {
                    placed[i] = Some(place_node(item_rect[it], &labels[i], &captions[i], c));
                }
                cy += h;
                prev = Some(item);
            }
            content = content.max(cy - (y + header));
        }
        let h = header + content + REGION_PAD_BOTTOM;
        let rect = Rect {
            x: x0,
            y,
            w: region_w,
            h,
        };
        let title_at = (x0 + 10.0, y + 19.0);
        placed_regions.push(PlacedRegion {
            rect,
            title_at,
            title_box: Rect {
                x: title_at.0,
                y: y + 6.0,
                w: text_width(&region.title, TITLE_PX),
                h: TITLE_PX + 4.0,
            },
            summary_at: (region.folded > 0).then_some((x0 + 10.0, y + 19.0 + REGION_SUMMARY)),
        });
        y += h + REGION_GAP;
    }
    let mut height = y - REGION_GAP + MARGIN;

    // The y where each edge leaves its caller and reaches its server (first and last hop).
    let lane_y = |k: usize, lane: usize| -> Option<f64> {
        let b = bundles.get(edge_bundle.get(k).copied().flatten()?)?;
        let j = b.edges.iter().position(|&x| x == k)? as f64;
        let (_, it) = *b.lanes.get(lane)?;
        Some(item_rect.get(it)?.y + 1.0 + LANE_PITCH * (j + 0.5))
    };
    let lanes_of = |k: usize| -> usize {
        edge_bundle
            .get(k)
            .copied()
            .flatten()
            .and_then(|b| bundles.get(b))
            .map_or(0, |b| b.lanes.len())
    };

    // Callers outside the mesh: at the left edge, next to what they call.
    let mut wanted: Vec<(f64, usize)> = externals
        .iter()
        .map(|&i| {
            let hops: Vec<f64> = g
                .edges
                .iter()
                .enumerate()
                .filter(|(_, e)| e.from == i)
                .filter_map(|(k, e)| {
                    lane_y(k, 0).or_else(|| {
                        placed
                            .get(e.to)
                            .and_then(|p| p.as_ref())
                            .map(|p| p.rect.cy())
                    })
                })
                .collect();
            let want = if hops.is_empty() {
                MARGIN
            } else {
                hops.iter().sum::<f64>() / hops.len() as f64 - NODE_H / 2.0
            };
            (want, i)
        })
        .collect();
    wanted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut next_y = MARGIN;
    for (want, i) in wanted {
        let top = want.max(next_y);
        let rect = Rect {
            x: 0.0,
            y: top,
            w: ext_w,
            h: NODE_H,
        };
        placed[i] = Some(place_node(rect, &labels[i], &captions[i], 0));
        next_y = top + NODE_H + ROW_GAP;
        height = height.max(next_y - ROW_GAP + MARGIN);
    }
    let nodes: Vec<PlacedNode> = placed
        .into_iter()
        .map(|p| p.unwrap_or_else(|| place_node(Rect::default(), "", "", 0)))
        .collect();

    // Edges.
    let sides: Vec<(Side, Side)> = g
        .edges
        .iter()
        .map(|e| {
            let (Some(a), Some(b)) = (nodes.get(e.from), nodes.get(e.to)) else {
                return (Side::Right, Side::Left);
            };
            if !is_internal(e.from) || a.column < b.column {
                (Side::Right, Side::Left)
            } else if a.column == b.column {
                (Side::Right, Side::Right)
            } else {
                (Side::Left, Side::Right)
            }
        })
        .collect();
    // Anchors: the edges at one side of a node, spread along it, sorted by where they go.
    let mut at: BTreeMap<(usize, u8), Vec<Anchor>> = BTreeMap::new();
    for (k, e) in g.edges.iter().enumerate() {
        let (s, t) = sides[k];
        let lanes = lanes_of(k);
        let first_hop = if lanes > 0 { lane_y(k, 0) } else { None }
            .or_else(|| nodes.get(e.to).map(|p| p.rect.cy()))
            .unwrap_or(0.0);
        let last_hop = if lanes > 0 {
            lane_y(k, lanes - 1)
        } else {
            None
        }
        .or_else(|| nodes.get(e.from).map(|p| p.rect.cy()))
        .unwrap_or(0.0);
        at.entry((e.from, side_key(s)))
            .or_default()
            .push((first_hop, k, true));
        at.entry((e.to, side_key(t)))
            .or_default()
            .push((last_hop, k, false));
    }
    let mut start = vec![(0.0, 0.0); g.edges.len()];
    let mut end = vec![(0.0, 0.0); g.edges.len()];
    for ((node, side), mut list) in at {
        list.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let Some(p) = nodes.get(node) else {
            continue;
        };
        let x = if side == side_key(Side::Left) {
            p.rect.x
        } else {
            p.rect.right()
        };
        let count = list.len() as f64;
        for (i, (_, k, is_start)) in list.into_iter().enumerate() {
            let y = p.rect.y + 4.0 + (p.rect.h - 8.0) * (i as f64 + 1.0) / (count + 1.0);
            if is_start {
                start[k] = (x, y);
            } else {
                end[k] = (x, y);
            }
        }
    }
    let edges = (0..g.edges.len())
        .map(|k| {
            let (x1, y1) = start[k];
            let (x2, y2) = end[k];
            let mut hops: Vec<(f64, f64, f64)> = Vec::new(); // (x in, x out, y)
            if let Some(b) = edge_bundle[k].and_then(|b| bundles.get(b)) {
                for (j, &(_, it)) in b.lanes.iter().enumerate() {
                    if let (Some(r), Some(ly)) = (item_rect.get(it), lane_y(k, j)) {
                        hops.push((r.x, r.right(), ly));
                    }
                }
            }
            let d = match sides[k] {
                (Side::Right, Side::Left) => {
                    let mut d = format!("M{} {}", f(x1), f(y1));
                    let (mut px, mut py) = (x1, y1);
                    for (xin, xout, ly) in hops {
                        d.push_str(&curve(px, py, xin, ly));
                        d.push_str(&format!(" L{} {}", f(xout), f(ly)));
                        (px, py) = (xout, ly);
                    }
                    d.push_str(&curve(px, py, x2, y2));
                    d
                }
                (Side::Right, Side::Right) => {
                    let cx = x1.max(x2) + 40.0;
                    format!(
                        "M{} {} C{} {} {} {} {} {}",
                        f(x1),
                        f(y1),
                        f(cx),
                        f(y1),
                        f(cx),
                        f(y2),
                        f(x2),
                        f(y2)
                    )
                }
                _ => {
                    let dx = ((x1 - x2) * 0.5).max(30.0);
                    format!(
                        "M{} {} C{} {} {} {} {} {}",
                        f(x1),
                        f(y1),
                        f(x1 - dx),
                        f(y1),
                        f(x2 + dx),
                        f(y2),
                        f(x2),
                        f(y2)
                    )
                }
            };
            PlacedEdge {
                d,
                start: (x1, y1),
                end: (x2, y2),
            }
        })
        .collect();
    let width = (x0 + region_w + MARGIN).ceil();
    Layout {
        width,
        height: height.ceil(),
        regions: placed_regions,
        nodes,
        edges,
    }
}

/// An edge end at a node side: where the edge goes (y), the edge, and whether it starts here.
type Anchor = (f64, usize, bool);

/// A left-to-right S curve from one point to another (horizontal at both ends).
fn curve(x1: f64, y1: f64, x2: f64, y2: f64) -> String {
    let dx = ((x2 - x1) * 0.5).max(20.0);
    format!(
        " C{} {} {} {} {} {}",
        f(x1 + dx),
        f(y1),
        f(x2 - dx),
        f(y2),
        f(x2),
        f(y2)
    )
}

/// `reset 7000 · mTLS 2000`: the counts of a region, worst first.
pub fn summary(r: &crate::model::Region) -> String {
    let mut parts: Vec<String> = r
        .counts
        .iter()
        .rev()
        .map(|(s, c)| format!("{} {c}", s.name()))
        .collect();
    if r.folded == 0 {
        parts.clear();
    }
    parts.join(" · ")
}

fn place_node(rect: Rect, label: &str, caption: &str, column: usize) -> PlacedNode {
    let label_at = (rect.x + NODE_PAD_X, rect.y + 17.0);
    let caption_at = (rect.x + NODE_PAD_X, rect.y + 32.0);
    PlacedNode {
        rect,
        label: label.to_string(),
        caption: caption.to_string(),
        label_at,
        caption_at,
        label_box: Rect {
            x: label_at.0,
            y: rect.y + 4.0,
            w: text_width(label, LABEL_PX),
            h: LABEL_PX + 4.0,
        },
        caption_box: Rect {
            x: caption_at.0,
            y: rect.y + 23.0,
            w: text_width(caption, CAPTION_PX),
            h: CAPTION_PX + 3.0,
        },
        column,
    }
}

/// Successor lists without the edges that close a cycle (depth-first, in index order).
fn break_cycles(succ: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = succ.len();
    // 0 unvisited, 1 on the stack, 2 done.
    let mut state = vec![0u8; n];
    let mut dag: Vec<Vec<usize>> = vec![Vec::new(); n];
    for start in 0..n {
        if state[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if let Some(&w) = succ[v].get(*next) {
                *next += 1;
                match state[w] {
                    0 => {
                        dag[v].push(w);
                        state[w] = 1;
                        stack.push((w, 0));
                    }
                    2 => dag[v].push(w),
                    _ => {} // back edge: dropped
                }
            } else {
                state[v] = 2;
                stack.pop();
            }
        }
    }
    dag
}

/// Longest-path layers of a DAG, then callers pulled right next to what they call.
fn ranks(dag: &[Vec<usize>]) -> Vec<usize> {
    let n = dag.len();
    let mut indeg = vec![0usize; n];
    for s in dag {
        for &w in s {
            indeg[w] += 1;
        }
    }
    let has_pred: Vec<bool> = indeg.iter().map(|&d| d > 0).collect();
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&v| indeg[v] == 0).collect();
    let mut rank = vec![0usize; n];
    while let Some(v) = ready.pop_first() {
        for &w in &dag[v] {
            rank[w] = rank[w].max(rank[v] + 1);
            indeg[w] -= 1;
            if indeg[w] == 0 {
                ready.insert(w);
            }
        }
    }
    for v in 0..n {
        if !has_pred[v]
            && let Some(m) = dag[v].iter().map(|&w| rank[w]).min()
        {
            rank[v] = m.saturating_sub(1);
        }
    }
    rank
}

/// Barycentre ordering inside every cell, a few sweeps, ties by the current order.
fn order_cells(cells: &mut [Vec<Vec<usize>>], neighbours: &[Vec<usize>], n: usize) {
    let position = |cells: &[Vec<Vec<usize>>]| -> Vec<f64> {
        let mut pos = vec![0.0; n];
        let mut base = 0.0;
        for region in cells {
            let rows = region.iter().map(Vec::len).max().unwrap_or(0);
            for cell in region {
                for (slot, &i) in cell.iter().enumerate() {
                    pos[i] = base + slot as f64;
                }
            }
            base += rows as f64 + 1.0;
        }
        pos
    };
    for _ in 0..4 {
        for r in 0..cells.len() {
            for c in 0..cells[r].len() {
                let pos = position(cells);
                let cell = &mut cells[r][c];
                let mut keyed: Vec<(f64, usize, usize)> = cell
                    .iter()
                    .enumerate()
                    .map(|(slot, &i)| {
                        let ns = &neighbours[i];
                        let bary = if ns.is_empty() {
                            pos[i]
                        } else {
                            ns.iter().map(|&w| pos[w]).sum::<f64>() / ns.len() as f64
                        };
                        (bary, slot, i)
                    })
                    .collect();
                keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                *cell = keyed.into_iter().map(|(_, _, i)| i).collect();
            }
        }
    }
}

fn side_key(s: Side) -> u8 {
    match s {
        Side::Left => 0,
        Side::Right => 1,
    }
}

/// A coordinate with one decimal, without a trailing `.0`.
pub fn f(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_broken_and_ranked() {
        let succ = vec![vec![1], vec![2], vec![0], vec![1]];
        let dag = break_cycles(&succ);
        assert_eq!(dag, vec![vec![1], vec![2], vec![], vec![1]]);
        assert_eq!(ranks(&dag), vec![0, 1, 2, 0]);
    }

    #[test]
    fn numbers_are_short_and_stable() {
        assert_eq!(f(12.0), "12");
        assert_eq!(f(12.34), "12.3");
        assert_eq!(f(-0.04), "0");
    }

    #[test]
    fn clipping_keeps_short_names() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "ab…");
        assert!(text_width("é", 10.0) > text_width("e", 10.0));
    }
}
