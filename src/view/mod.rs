//! What people look at: the asset graph as SVG (the CLI's `lineage --format svg` and the web
//! view's home page draw it with one renderer) and the web view (`ui`, `dev`).

pub(crate) mod graph;
pub(crate) mod layout;
pub(crate) mod pages;
pub(crate) mod server;

use std::collections::BTreeSet;

use engine::AssetId;

use crate::app::App;

/// Escapes text for HTML and SVG, attributes included.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The assets `ids` as an SVG graph, with the edges between them, titled `title`. `href` gives a
/// node's link (the web view, whose stylesheet styles it) or none (the CLI's standalone file).
pub(crate) async fn asset_graph(
    app: &App,
    ids: &BTreeSet<AssetId>,
    highlight: Option<AssetId>,
    title: &str,
    href: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let graph = app.defs.graph();
    let ctx = app.partitions_context().await?;
    let mut counts = std::collections::HashMap::new();
    for &id in ids {
        counts.insert(id, engine::status::asset_status(&*app.store, graph, id, None, &ctx).await?.counts);
    }
    Ok(asset_graph_of(app, ids, &counts, highlight, title, href))
}

/// [`asset_graph`] with the counts already computed (the home page has them for its table).
pub(crate) fn asset_graph_of(
    app: &App,
    ids: &BTreeSet<AssetId>,
    counts: &std::collections::HashMap<AssetId, engine::status::StatusCounts>,
    highlight: Option<AssetId>,
    title: &str,
    href: impl Fn(&str) -> Option<String>,
) -> String {
    let graph = app.defs.graph();
    let order: Vec<AssetId> = graph.topo_order().iter().copied().filter(|id| ids.contains(id)).collect();
    let mut nodes = Vec::with_capacity(order.len());
    for &id in &order {
        let def = graph.asset(id);
        let counts = counts.get(&id).copied().unwrap_or_default();
        nodes.push(graph::GraphNode {
            key: def.key.to_string(),
            partitions: def.partitions.as_ref().map_or("unpartitioned".to_owned(), engine::PartitionsDef::describe),
            group: Some(def.group.clone()),
            counts,
            highlight: Some(id) == highlight,
            href: href(def.key.as_str()),
        });
    }
    let standalone = nodes.iter().all(|n| n.href.is_none());
    let index = |id: AssetId| order.iter().position(|x| *x == id);
    let mut edges = Vec::new();
    for (to, &id) in order.iter().enumerate() {
        for e in graph.upstream(id) {
            if let Some(from) = index(e.asset) {
                edges.push(graph::GraphEdge { from, to, label: e.mapping.to_string() });
            }
        }
    }
    graph::svg(title, &nodes, &edges, standalone)
}
