//! A layered (Sugiyama-style) layout of a DAG, left to right, where no edge passes under a node.
//!
//! 1. Layers: each node one column right of its furthest upstream node (longest path).
//! 2. An edge spanning several columns gets a *dummy* slot in every column it crosses.
//! 3. Order within a column: barycentre sweeps (down, then up), which reduce crossings.
//! 4. Coordinates: a column is as wide as its widest node; items (nodes and dummies) are stacked
//!    top to bottom with gaps; the gap after a column is wide enough for the labels of the edges
//!    that leave it.
//!
//! Why no edge passes under a node, by construction: between two columns an edge is a curve whose
//! ends are on the columns' facing sides, and a cubic Bézier lies inside the convex hull of its
//! control points, all of which are in the gap between the columns; inside a column an edge is a
//! horizontal line at its dummy's slot, and slots of one column never overlap. The tests check it
//! on random graphs anyway.

/// A node to place: its size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeSize {
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

/// Spacing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spacing {
    /// Least horizontal gap between columns.
    pub gap_x: f64,
    /// Vertical gap between items of a column.
    pub gap_y: f64,
    /// Height of a dummy slot (an edge passing through a column).
    pub dummy_h: f64,
    /// Room around an edge label.
    pub label_pad: f64,
}

impl Default for Spacing {
    fn default() -> Self {
        Spacing { gap_x: 70.0, gap_y: 26.0, dummy_h: 14.0, label_pad: 70.0 }
    }
}

/// A placed node: its top-left corner and size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placed {
    /// Left.
    pub x: f64,
    /// Top.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

/// How one edge is drawn: straight inside columns (at its source's or its dummy's slot), curved
/// across the gaps between columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Index of the upstream node.
    pub from: usize,
    /// Index of the downstream node.
    pub to: usize,
    /// Its points, in order: the right side of `from`, the right side of `from`'s column (plus a
    /// straight run as long as its label), then
    /// the left and right sides of each column it passes, then the left side of `to`. Segments
    /// alternate: straight (inside a column: `points[0]→[1]`, `[2]→[3]`, …) and curved (across a
    /// gap: `[1]→[2]`, `[3]→[4]`, …, the last one into `to`).
    pub points: Vec<(f64, f64)>,
    /// Where its label starts: the left end of its first gap, on its line.
    pub label_at: (f64, f64),
    /// Whether the label goes below the line (the curve turns up) rather than above it.
    pub label_below: bool,
}

/// The whole layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// One per input node, in input order.
    pub nodes: Vec<Placed>,
    /// One per input edge, in input order.
    pub routes: Vec<Route>,
    /// Total width.
    pub width: f64,
    /// Total height.
    pub height: f64,
}

/// An item of a column: a node, or the slot of an edge passing through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Item {
    Node(usize),
    Dummy { edge: usize },
}

/// Lays out nodes (`sizes`) and edges (`(from, to)` indices; a DAG), left to right. `label_w`
/// gives the width of each edge's label (0 for none).
///
/// # Panics
/// If an edge names a node out of range or the edges form a cycle (callers pass validated DAGs).
pub fn layered(sizes: &[NodeSize], edges: &[(usize, usize)], label_w: &[f64], spacing: Spacing) -> Layout {
    let n = sizes.len();
    // 1. Longest-path layers, in topological order (Kahn).
    let mut indegree = vec![0usize; n];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (e, &(a, b)) in edges.iter().enumerate() {
        indegree[b] += 1;
        out[a].push(e);
    }
    let mut layer = vec![0usize; n];
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut seen = 0;
    while let Some(i) = ready.pop() {
        seen += 1;
        for &e in &out[i] {
            let b = edges[e].1;
            layer[b] = layer[b].max(layer[i] + 1);
            indegree[b] -= 1;
            if indegree[b] == 0 {
                ready.push(b);
            }
        }
    }
    assert_eq!(seen, n, "layered layout needs a DAG");
    let depth = layer.iter().max().map_or(0, |m| m + 1);

    // 2. Columns of items, with a dummy per column an edge crosses.
    let mut columns: Vec<Vec<Item>> = vec![Vec::new(); depth];
    for (i, &l) in layer.iter().enumerate() {
        columns[l].push(Item::Node(i));
    }
    for (e, &(a, b)) in edges.iter().enumerate() {
        for column in columns.iter_mut().take(layer[b]).skip(layer[a] + 1) {
            column.push(Item::Dummy { edge: e });
        }
    }

    // 3. Barycentre sweeps: an item's position is the mean position of its neighbours in the
    // previous (or next) column. Ties keep the current order, so the result is deterministic.
    let mut incoming: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (e, &(_, b)) in edges.iter().enumerate() {
        incoming[b].push(e);
    }
    let neighbours = |item: Item, column: usize, towards: isize| -> Vec<Item> {
        let target = column as isize + towards;
        let mut found = Vec::new();
        let mut add_edge = |e: usize| {
            let (a, b) = edges[e];
            let other = if towards < 0 { a } else { b };
            if layer[other] as isize == target {
                found.push(Item::Node(other));
            } else if (layer[a] as isize) < target && target < layer[b] as isize {
                found.push(Item::Dummy { edge: e });
            }
        };
        match item {
            Item::Node(i) => {
                for &e in if towards < 0 { &incoming[i] } else { &out[i] } {
                    add_edge(e);
                }
            }
            Item::Dummy { edge } => add_edge(edge),
        }
        found
    };
    for sweep in 0..8 {
        let (range, towards): (Vec<usize>, isize) =
            if sweep % 2 == 0 { ((1..depth).collect(), -1) } else { ((0..depth.saturating_sub(1)).rev().collect(), 1) };
        for c in range {
            let reference: std::collections::HashMap<Item, usize> =
                columns[(c as isize + towards) as usize].iter().enumerate().map(|(i, &item)| (item, i)).collect();
            let position = |item: &Item| reference.get(item).copied();
            let mut keyed: Vec<(f64, usize, Item)> = columns[c]
                .iter()
                .enumerate()
                .map(|(idx, &item)| {
                    let ps: Vec<usize> = neighbours(item, c, towards).iter().filter_map(position).collect();
                    let key =
                        if ps.is_empty() { idx as f64 } else { ps.iter().sum::<usize>() as f64 / ps.len() as f64 };
                    (key, idx, item)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            columns[c] = keyed.into_iter().map(|(_, _, item)| item).collect();
        }
    }

    // 4. Coordinates. Column widths; gaps wide enough for the labels of edges leaving a column.
    let width_of = |c: usize| {
        columns[c].iter().map(|item| if let Item::Node(i) = item { sizes[*i].w } else { 0.0 }).fold(0.0, f64::max)
    };
    let mut gap = vec![spacing.gap_x; depth];
    for (e, &(a, _)) in edges.iter().enumerate() {
        let g = &mut gap[layer[a]];
        *g = g.max(label_w.get(e).copied().unwrap_or(0.0) + spacing.label_pad);
    }
    let mut left = vec![0.0; depth];
    for c in 1..depth {
        left[c] = left[c - 1] + width_of(c - 1) + gap[c - 1];
    }
    let height_of = |item: &Item| if let Item::Node(i) = item { sizes[*i].h } else { spacing.dummy_h };
    let column_height = |c: usize| {
        columns[c].iter().map(height_of).sum::<f64>() + spacing.gap_y * columns[c].len().saturating_sub(1) as f64
    };
    let height = (0..depth).map(column_height).fold(0.0, f64::max);
    let mut nodes = vec![Placed { x: 0.0, y: 0.0, w: 0.0, h: 0.0 }; n];
    // slot[(edge, column)] = the y of the edge's line through that column.
    let mut slots: std::collections::HashMap<(usize, usize), f64> = std::collections::HashMap::new();
    for c in 0..depth {
        let mut y = (height - column_height(c)) / 2.0;
        for item in &columns[c] {
            let h = height_of(item);
            match *item {
                Item::Node(i) => nodes[i] = Placed { x: left[c], y, w: sizes[i].w, h: sizes[i].h },
                Item::Dummy { edge } => {
                    slots.insert((edge, c), y + h / 2.0);
                }
            }
            y += h + spacing.gap_y;
        }
    }
    let width = if depth == 0 { 0.0 } else { left[depth - 1] + width_of(depth - 1) };

    // Ports: a node's edges leave from points spread down its right side and arrive at points
    // spread down its left side, each side ordered by where the other end of the edge lies, so
    // edges sharing a node neither overlap nor cross at it.
    let next_y = |e: usize| {
        let (a, b) = edges[e];
        if layer[b] > layer[a] + 1 { slots[&(e, layer[a] + 1)] } else { nodes[b].y + nodes[b].h / 2.0 }
    };
    let prev_y = |e: usize, out_port: &[f64]| {
        let (a, b) = edges[e];
        if layer[b] > layer[a] + 1 { slots[&(e, layer[b] - 1)] } else { out_port[e] }
    };
    let spread = |ends: &mut Vec<(f64, usize)>, node: Placed, port: &mut [f64]| {
        ends.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        let k = ends.len() as f64;
        for (i, &(_, e)) in ends.iter().enumerate() {
            port[e] = node.y + node.h * (i as f64 + 1.0) / (k + 1.0);
        }
    };
    let mut out_port = vec![0.0; edges.len()];
    let mut in_port = vec![0.0; edges.len()];
    for (i, &node) in nodes.iter().enumerate() {
        let mut ends: Vec<(f64, usize)> = out[i].iter().map(|&e| (next_y(e), e)).collect();
        spread(&mut ends, node, &mut out_port);
    }
    for (i, &node) in nodes.iter().enumerate() {
        let mut ends: Vec<(f64, usize)> = incoming[i].iter().map(|&e| (prev_y(e, &out_port), e)).collect();
        spread(&mut ends, node, &mut in_port);
    }

    // Routes: out of `from`'s right side, through each dummy slot, into `to`'s left side.
    let routes = edges
        .iter()
        .enumerate()
        .map(|(e, &(a, b))| {
            let (pa, pb) = (nodes[a], nodes[b]);
            // Out of `from` straight to its column's right side (within its own slot), so the
            // first curve starts clear of the column's wider nodes.
            let ya = out_port[e];
            // The label rides on a straight run into the gap, so no curve crosses it.
            let column_right = left[layer[a]] + width_of(layer[a]);
            let run = label_w.get(e).copied().filter(|w| *w > 0.0).map_or(0.0, |w| w + 12.0);
            let mut points = vec![(pa.x + pa.w, ya), (column_right + run, ya)];
            for c in layer[a] + 1..layer[b] {
                let y = slots[&(e, c)];
                points.push((left[c], y));
                points.push((left[c] + width_of(c), y));
            }
            points.push((pb.x, in_port[e]));
            // The label sits on that run: above it, or below when the curve after it turns up
            // or (several edges leaving one node) the edge is one of the lower ones.
            let centre = pa.y + pa.h / 2.0;
            let below = if out[a].len() > 1 && (ya - centre).abs() > 1e-9 { ya > centre } else { points[2].1 < ya };
            let (x1, y1) = (column_right, ya);
            Route { from: a, to: b, points, label_at: (x1, y1), label_below: below }
        })
        .collect();
    Layout { nodes, routes, width, height }
}

#[cfg(test)]
mod tests;
