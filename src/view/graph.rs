//! The asset graph as SVG: one renderer for `lineage --format svg` and the web view's home page.
//!
//! Nodes are boxes sized to their text, coloured by the asset's overall status, with a bar of its
//! partitions by status; edges are routed by [`super::layout::layered`] (so none passes under a
//! node), end in an arrowhead, and carry their mapping as a label in the gap they leave from.

use std::fmt::Write as _;

use engine::status::{PartitionStatus, StatusCounts};
use strum::IntoEnumIterator as _;

use super::esc;
use super::layout::{NodeSize, Spacing, layered};

/// One asset to draw.
#[derive(Debug, Clone)]
pub struct GraphNode {
    /// The asset key.
    pub key: String,
    /// Its partitions definition, in words (`daily from 2025-01-01 (UTC)`), or `unpartitioned`.
    pub partitions: String,
    /// Its group, shown above the key.
    pub group: Option<String>,
    /// Its partitions by status.
    pub counts: StatusCounts,
    /// Drawn with a thick border (the asset the picture is about).
    pub highlight: bool,
    /// Where clicking it leads (the web view), or nowhere (the CLI's file).
    pub href: Option<String>,
}

/// One dependency: indices into the nodes, upstream first, and its mapping in words.
#[derive(Debug, Clone)]
pub struct GraphEdge {
    pub from: usize,
    pub to: usize,
    pub label: String,
}

/// Monospace character widths at the sizes used, in px (0.6 em).
const CHAR_12: f64 = 7.3;
const CHAR_10: f64 = 6.1;
const CHAR_14: f64 = 8.5;
const NODE_H: f64 = 78.0;
const MARGIN: f64 = 20.0;
const TITLE_H: f64 = 46.0;

/// The colours of a status: fill and stroke.
pub fn colours(s: PartitionStatus) -> (&'static str, &'static str) {
    match s {
        PartitionStatus::Materialized => ("#dff5e1", "#2e7d32"),
        PartitionStatus::Stale => ("#fff4d6", "#b26a00"),
        PartitionStatus::Failed => ("#fde2e1", "#c62828"),
        PartitionStatus::InProgress => ("#e3f0ff", "#1565c0"),
        PartitionStatus::Missing => ("#f1f1f1", "#757575"),
    }
}

/// The status classes as CSS, shared by the SVG and the pages.
pub fn status_css() -> String {
    PartitionStatus::iter()
        .map(|s| {
            let (fill, stroke) = colours(s);
            // Missing partitions are the background of a bar, so they are pale.
            let bar = if s == PartitionStatus::Missing { "#d6d6d6" } else { stroke };
            format!(".{s}{{fill:{fill};stroke:{stroke}}} .bar-{s}{{fill:{bar};stroke:none}} ")
        })
        .collect()
}

/// The counts line of a node: `24/31 materialized, 2 stale`.
pub fn counts_text(c: &StatusCounts) -> String {
    let mut text = format!("{}/{} materialized", c.materialized, c.partitions);
    for (n, word) in [(c.stale, "stale"), (c.failed, "failed"), (c.in_progress, "in_progress"), (c.late, "late")] {
        if n > 0 {
            let _ = write!(text, ", {n} {word}");
        }
    }
    text
}

/// The picture, with `title` above it. The SVG is as wide as the wider of the graph and the title.
/// `standalone`: it carries its own `<style>` (a file); inside a page the page's stylesheet has
/// the same rules (the Content-Security-Policy allows no inline style).
pub fn svg(title: &str, nodes: &[GraphNode], edges: &[GraphEdge], standalone: bool) -> String {
    let sizes: Vec<NodeSize> = nodes
        .iter()
        .map(|n| {
            let chars = [n.key.len(), n.partitions.len(), counts_text(&n.counts).len()];
            let group = n.group.as_ref().map_or(0, String::len);
            let w = chars.iter().map(|&c| c as f64 * CHAR_12).fold(group as f64 * CHAR_10, f64::max) + 20.0;
            NodeSize { w: w.max(160.0), h: NODE_H }
        })
        .collect();
    let pairs: Vec<(usize, usize)> = edges.iter().map(|e| (e.from, e.to)).collect();
    let labels: Vec<f64> = edges.iter().map(|e| e.label.chars().count() as f64 * CHAR_10).collect();
    let layout = layered(&sizes, &pairs, &labels, Spacing::default());
    let (ox, oy) = (MARGIN, MARGIN + TITLE_H);
    let title_w = title.chars().count() as f64 * CHAR_14;
    let width = (layout.width + 2.0 * MARGIN).max(title_w + 2.0 * MARGIN).ceil();
    let height = (layout.height + oy + MARGIN).ceil();

    let style = if standalone {
        format!(
            "<style>{} text{{fill:#222;stroke:none}} .edge path{{fill:none;stroke:#666;stroke-width:1.5}} \
             .edge text{{fill:#444;paint-order:stroke;stroke:#fff;stroke-width:4px}} .node rect.box{{stroke-width:1.5}} \
             .node.highlight rect.box{{stroke-width:3.5}} #arrow path{{fill:#666}}</style>\n",
            status_css()
        )
    } else {
        String::new()
    };
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"asset-graph\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"ui-monospace, monospace\" font-size=\"12\">\n{style}\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" \
         markerUnits=\"strokeWidth\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\"/></marker></defs>\n\
         <text x=\"{MARGIN}\" y=\"{}\" font-size=\"14\">{}</text>\n",
        MARGIN + 16.0,
        esc(title)
    );
    let _ = writeln!(
        out,
        "<text x=\"{MARGIN}\" y=\"{}\" font-size=\"10\" fill=\"#555\">node colour and bar: {}; arrows point downstream, labelled with their partition mapping</text>",
        MARGIN + 34.0,
        PartitionStatus::iter().map(PartitionStatus::as_str).collect::<Vec<_>>().join(", ")
    );

    for (edge, route) in edges.iter().zip(&layout.routes) {
        let p: Vec<(f64, f64)> = route.points.iter().map(|&(x, y)| (x + ox, y + oy)).collect();
        let mut d = format!("M{:.1},{:.1}", p[0].0, p[0].1);
        for (k, pair) in p.windows(2).enumerate() {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            if k % 2 == 0 {
                let _ = write!(d, " L{x1:.1},{y1:.1}");
            } else {
                let mid = (x0 + x1) / 2.0;
                let _ = write!(d, " C{mid:.1},{y0:.1} {mid:.1},{y1:.1} {x1:.1},{y1:.1}");
            }
        }
        let (lx, ly) =
            (route.label_at.0 + ox + 6.0, route.label_at.1 + oy + if route.label_below { 12.0 } else { -4.0 });
        let _ = writeln!(
            out,
            "<g class=\"edge\" data-from=\"{}\" data-to=\"{}\"><path d=\"{d}\" marker-end=\"url(#arrow)\"/>\
             <text x=\"{lx:.1}\" y=\"{ly:.1}\" font-size=\"10\">{}</text></g>",
            esc(&nodes[edge.from].key),
            esc(&nodes[edge.to].key),
            esc(&edge.label)
        );
    }

    for (node, placed) in nodes.iter().zip(&layout.nodes) {
        let (x, y, w, h) = (placed.x + ox, placed.y + oy, placed.w, placed.h);
        let status = node.counts.overall();
        let highlight = if node.highlight { " highlight" } else { "" };
        if let Some(href) = &node.href {
            let _ = write!(out, "<a href=\"{}\">", esc(href));
        }
        let _ = writeln!(
            out,
            "<g class=\"node {status}{highlight}\" data-asset=\"{}\" data-status=\"{status}\">\
             <rect class=\"box\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"8\"/>",
            esc(&node.key)
        );
        if let Some(group) = &node.group {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#666\">{}</text>",
                x + 10.0,
                y + 14.0,
                esc(group)
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-weight=\"bold\">{}</text>",
            x + 10.0,
            y + 30.0,
            esc(&node.key)
        );
        let _ = writeln!(out, "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>", x + 10.0, y + 45.0, esc(&node.partitions));
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 10.0,
            y + 60.0,
            esc(&counts_text(&node.counts))
        );
        bar(&mut out, &node.counts, x + 10.0, y + h - 11.0, w - 20.0, 5.0);
        out.push_str("</g>");
        if node.href.is_some() {
            out.push_str("</a>");
        }
        out.push('\n');
    }
    out.push_str("</svg>\n");
    out
}

/// A health bar: the partitions by status, left to right in status order.
pub fn bar(out: &mut String, c: &StatusCounts, x: f64, y: f64, w: f64, h: f64) {
    let total = c.partitions.max(1) as f64;
    let mut bx = x;
    for (status, n) in [
        (PartitionStatus::Materialized, c.materialized - c.stale),
        (PartitionStatus::Stale, c.stale),
        (PartitionStatus::Failed, c.failed),
        (PartitionStatus::InProgress, c.in_progress),
        (PartitionStatus::Missing, c.missing),
    ] {
        let bw = w * n as f64 / total;
        if bw > 0.0 {
            let _ = write!(
                out,
                "<rect class=\"bar-{status}\" x=\"{bx:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{h}\"/>"
            );
            bx += bw;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(key: &str) -> GraphNode {
        GraphNode {
            key: key.to_owned(),
            partitions: "daily from 2025-01-01 (UTC)".to_owned(),
            group: Some("billing".to_owned()),
            counts: StatusCounts { partitions: 2, materialized: 1, missing: 1, ..StatusCounts::default() },
            highlight: false,
            href: None,
        }
    }

    #[test]
    fn every_edge_has_an_arrowhead_and_its_label_and_markup_is_escaped() {
        let nodes = vec![node("a"), node("<img src=x onerror=alert(1)>")];
        let edges = vec![GraphEdge { from: 0, to: 1, label: "identity & more".to_owned() }];
        let svg = svg("lineage of <b>", &nodes, &edges, true);
        assert_eq!(svg.matches("marker-end=\"url(#arrow)\"").count(), 1);
        assert!(svg.contains("identity &amp; more"));
        assert!(svg.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!svg.contains("<img") && !svg.contains("<b>"));
    }

    #[test]
    fn the_picture_is_as_wide_as_its_title() {
        let title = "x".repeat(300);
        let svg = svg(&title, &[node("a")], &[], true);
        let width: f64 = svg.split("width=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        assert!(width >= 300.0 * CHAR_14, "{width}");
    }
}
