//! `robo-assets lineage ASSET [--partition K]`: the asset graph around an asset, or the exact
//! versions a partition's current materialization read (and who read it), as a tree, JSON or DOT.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use engine::AssetId;
use engine::partition::compress_ranges;
use lineage::{MaterializationId, MaterializationRecord};
use serde::Serialize;

use crate::ExitStatus;
use crate::app::App;
use crate::cli::{LineageArgs, LineageCommand, LineageExportArgs, LineageFormat, LineageShowArgs, Since};
use crate::commands::{lookup, print_json, short, show_key};
use crate::user_error;

#[derive(Debug, Serialize)]
struct AssetNode {
    asset: String,
    partitions: Option<String>,
    /// The mapping on the edge to the parent node.
    mapping: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    children: Vec<AssetNode>,
}

#[derive(Debug, Serialize)]
struct AssetLineage {
    asset: String,
    upstream: Vec<AssetNode>,
    downstream: Vec<AssetNode>,
}

#[derive(Debug, Serialize)]
struct VersionNode {
    asset: String,
    partition: String,
    materialization_id: MaterializationId,
    data_version: String,
    code_version: String,
    run_id: lineage::RunId,
    finished_at: chrono::DateTime<chrono::Utc>,
    /// Where its output was stored (as `robo-assets path` prints it); none for an asset that
    /// records metadata only.
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    /// Whether this is still the partition's current materialization.
    current: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    inputs: Vec<InputGroup>,
}

#[derive(Debug, Serialize)]
struct InputGroup {
    asset: String,
    count: usize,
    ranges: Vec<String>,
    versions: Vec<VersionNode>,
}

#[derive(Debug, Serialize)]
struct PartitionLineage {
    materialization: VersionNode,
    read_by: Vec<VersionNode>,
}

fn asset_tree(app: &App, id: AssetId, depth: usize, upstream: bool, mapping: Option<String>) -> AssetNode {
    let graph = app.defs.graph();
    let def = graph.asset(id);
    let edges = if upstream { graph.upstream(id) } else { graph.downstream(id) };
    AssetNode {
        asset: def.key.to_string(),
        partitions: def.partitions.as_ref().map(engine::PartitionsDef::describe),
        mapping,
        children: if depth == 0 {
            Vec::new()
        } else {
            edges.iter().map(|e| asset_tree(app, e.asset, depth - 1, upstream, Some(e.mapping.to_string()))).collect()
        },
    }
}

async fn version_node(app: &App, m: MaterializationRecord, depth: usize) -> anyhow::Result<VersionNode> {
    let current = app
        .store
        .partition_states_of(&[(m.asset_key.clone(), m.partition_key.clone())])
        .await?
        .pop()
        .flatten()
        .and_then(|s| s.current_materialization_id)
        == Some(m.id);
    let mut inputs: Vec<InputGroup> = Vec::new();
    if depth > 0 {
        for input in app.store.inputs_of(m.id).await? {
            let record = match input.materialization_id {
                Some(id) => app.store.materialization(id).await?,
                None => None,
            };
            let group = match inputs.last_mut() {
                Some(g) if g.asset == input.asset_key => g,
                _ => {
                    inputs.push(InputGroup {
                        asset: input.asset_key.clone(),
                        count: 0,
                        ranges: Vec::new(),
                        versions: Vec::new(),
                    });
                    inputs.last_mut().expect("just pushed")
                }
            };
            group.count += 1;
            if let Some(record) = record {
                group.versions.push(Box::pin(version_node(app, record, depth - 1)).await?);
            }
        }
        for group in &mut inputs {
            let def = app.defs.graph().lookup(&group.asset).ok().map(|id| app.defs.graph().asset(id));
            let keys: Vec<String> = group.versions.iter().map(|v| v.partition.clone()).collect();
            group.ranges = compress_ranges(def.and_then(|d| d.partitions.as_ref()), &keys);
        }
    }
    Ok(VersionNode {
        asset: m.asset_key,
        partition: m.partition_key,
        materialization_id: m.id,
        data_version: m.data_version,
        code_version: m.code_version,
        run_id: m.run_id,
        finished_at: m.finished_at,
        path: m.storage_uri.as_deref().map(crate::commands::path::location),
        current,
        inputs,
    })
}

async fn readers(app: &App, id: MaterializationId, depth: usize) -> anyhow::Result<Vec<VersionNode>> {
    let mut out = Vec::new();
    if depth == 0 {
        return Ok(out);
    }
    for reader in app.store.readers_of(id).await? {
        let rid = reader.id;
        let mut node = version_node(app, reader, 0).await?;
        // Downstream of downstream, shown as the readers' own inputs list would be too wide.
        let next = Box::pin(readers(app, rid, depth - 1)).await?;
        node.inputs = next
            .into_iter()
            .map(|n| InputGroup {
                asset: n.asset.clone(),
                count: 1,
                ranges: vec![n.partition.clone()],
                versions: vec![n],
            })
            .collect();
        out.push(node);
    }
    Ok(out)
}

pub async fn lineage(app: &App, args: &LineageArgs) -> anyhow::Result<ExitStatus> {
    match &args.command {
        Some(LineageCommand::Export(export_args)) => export(app, export_args).await,
        None => show(app, &args.show).await,
    }
}

/// `lineage export --openlineage`: every outbox event since `--since` as a RunEvent per line, in
/// delivery order, read page by page.
async fn export(app: &App, args: &LineageExportArgs) -> anyhow::Result<ExitStatus> {
    use std::io::Write as _;
    let since = match args.since {
        Some(Since::At(t)) => t,
        Some(Since::Ago(d)) => app.clock.now() - d,
        None => chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
    };
    let config = app.openlineage_config();
    let renderer = engine::openlineage::Renderer { defs: &app.defs, store: &*app.store, config: &config };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut after = 0;
    loop {
        let page = app.store.outbox_events(since, after, 500).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for e in &page {
            let event = renderer.render(e).await?;
            serde_json::to_writer(&mut out, &event)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(ExitStatus::Success)
}

async fn show(app: &App, args: &LineageShowArgs) -> anyhow::Result<ExitStatus> {
    let graph = app.defs.graph();
    let id = lookup(app, args.asset.as_deref().unwrap_or_default())?;
    let def = graph.asset(id);
    let Some(partition) = &args.partition else {
        let value = AssetLineage {
            asset: def.key.to_string(),
            upstream: graph
                .upstream(id)
                .iter()
                .map(|e| asset_tree(app, e.asset, args.upstream.saturating_sub(1), true, Some(e.mapping.to_string())))
                .collect(),
            downstream: graph
                .downstream(id)
                .iter()
                .map(|e| {
                    asset_tree(app, e.asset, args.downstream.saturating_sub(1), false, Some(e.mapping.to_string()))
                })
                .collect(),
        };
        match args.format {
            LineageFormat::Json => print_json(&value)?,
            LineageFormat::Dot => print!("{}", asset_dot(app, id, args)),
            LineageFormat::Mermaid => print!("{}", asset_mermaid(app, id, args)),
            LineageFormat::Svg => print!("{}", asset_svg(app, id, args).await?),
            LineageFormat::Tree => {
                let mut out =
                    format!("{}{}\n", def.key, def.partitions.as_ref().map(|p| format!(" ({p})")).unwrap_or_default());
                if !value.upstream.is_empty() {
                    out.push_str("upstream:\n");
                    render_assets(&mut out, &value.upstream, "  ");
                }
                if !value.downstream.is_empty() {
                    out.push_str("downstream:\n");
                    render_assets(&mut out, &value.downstream, "  ");
                }
                print!("{out}");
            }
        }
        return Ok(ExitStatus::Success);
    };

    let key = match &def.partitions {
        Some(p) => p
            .resolve(partition, &app.partitions_context().await?)
            .map_err(|e| user_error(format!("asset {}: {e}", def.key)))?,
        None => {
            return Err(user_error(format!(
                "asset {} is not partitioned, so it takes no partition key (got {partition:?})",
                def.key
            )));
        }
    };
    let state = app.store.partition_states_of(&[(def.key.to_string(), key.clone())]).await?.pop().flatten();
    let Some(current) = state.and_then(|s| s.current_materialization_id) else {
        return Err(user_error(format!(
            "{} {key} has not been materialized; run `robo-assets materialize {} --partition {key} --with-upstream`",
            def.key,
            def.key.name()
        )));
    };
    let record = app.store.materialization(current).await?.expect("current materialization exists");
    if args.impact {
        return impact(app, record, args).await;
    }
    let value = PartitionLineage {
        materialization: version_node(app, record, args.upstream).await?,
        read_by: readers(app, current, args.downstream).await?,
    };
    match args.format {
        LineageFormat::Json => print_json(&value)?,
        LineageFormat::Dot => print!("{}", version_dot(&value)),
        LineageFormat::Svg => print!("{}", partition_svg(app, &value)),
        LineageFormat::Mermaid => {
            return Err(user_error(
                "--format mermaid draws the asset graph: leave out --partition (partition lineage: tree, json, dot or svg)",
            ));
        }
        LineageFormat::Tree => {
            let mut out = String::new();
            render_version_line(&mut out, "", &value.materialization, true);
            if let Some(path) = &value.materialization.path {
                let _ = writeln!(out, "  path {path}");
            }
            render_inputs(&mut out, &value.materialization.inputs, "");
            if !value.read_by.is_empty() {
                out.push_str("read by:\n");
                for (i, r) in value.read_by.iter().enumerate() {
                    let last = i + 1 == value.read_by.len();
                    render_version_line(&mut out, if last { "└── " } else { "├── " }, r, true);
                    render_inputs(&mut out, &r.inputs, if last { "    " } else { "│   " });
                }
            }
            print!("{out}");
        }
    }
    Ok(ExitStatus::Success)
}

fn render_assets(out: &mut String, nodes: &[AssetNode], prefix: &str) {
    for (i, n) in nodes.iter().enumerate() {
        let last = i + 1 == nodes.len();
        let _ = writeln!(
            out,
            "{prefix}{}{}{}  [{}]",
            if last { "└── " } else { "├── " },
            n.asset,
            n.partitions.as_ref().map(|p| format!(" ({p})")).unwrap_or_default(),
            n.mapping.as_deref().unwrap_or("")
        );
        render_assets(out, &n.children, &format!("{prefix}{}", if last { "    " } else { "│   " }));
    }
}

fn render_version_line(out: &mut String, prefix: &str, v: &VersionNode, root: bool) {
    // Run ids are UUIDv7: their first digits are a timestamp, so only whole ids tell runs apart.
    let (name, run) = if root {
        (format!("{} {}", v.asset, show_key(&v.partition)), format!("  run {}", v.run_id))
    } else {
        (show_key(&v.partition).to_owned(), String::new())
    };
    let _ = writeln!(
        out,
        "{prefix}{name}  data {}  code {}{run}  at {}{}",
        short(&v.data_version),
        v.code_version,
        v.finished_at.format("%Y-%m-%d %H:%M:%S"),
        if v.current { "" } else { "  (superseded: a newer materialization exists)" }
    );
}

fn render_inputs(out: &mut String, groups: &[InputGroup], prefix: &str) {
    for (i, g) in groups.iter().enumerate() {
        let last = i + 1 == groups.len();
        let _ = writeln!(
            out,
            "{prefix}{}{} ← {} partition{}: {}",
            if last { "└── " } else { "├── " },
            g.asset,
            g.count,
            if g.count == 1 { "" } else { "s" },
            g.ranges.join(", ")
        );
        let inner = format!("{prefix}{}", if last { "    " } else { "│   " });
        for (j, v) in g.versions.iter().enumerate() {
            let vlast = j + 1 == g.versions.len();
            render_version_line(out, &format!("{inner}{}", if vlast { "└── " } else { "├── " }), v, false);
            render_inputs(out, &v.inputs, &format!("{inner}{}", if vlast { "    " } else { "│   " }));
        }
    }
}

/// Every materialization that read `root`, transitively (breadth first, each once).
/// One materialization that read another, directly (1 hop) or through others.
#[derive(Debug, Serialize)]
pub(crate) struct Impacted {
    pub asset: String,
    pub partition: String,
    pub materialization_id: MaterializationId,
    pub data_version: String,
    pub hops: usize,
    /// Whether it is still its partition's current materialization.
    pub current: bool,
}

/// Every materialization that read `root`, transitively, breadth first, each once.
pub(crate) async fn impact_of(app: &App, root: MaterializationId) -> anyhow::Result<Vec<Impacted>> {
    let mut seen = std::collections::BTreeSet::from([root]);
    let mut queue = std::collections::VecDeque::from([(root, 0usize)]);
    let mut found: Vec<(usize, lineage::MaterializationRecord)> = Vec::new();
    while let Some((id, depth)) = queue.pop_front() {
        for reader in app.store.readers_of(id).await? {
            if seen.insert(reader.id) {
                queue.push_back((reader.id, depth + 1));
                found.push((depth + 1, reader));
            }
        }
    }
    let keys: Vec<(String, String)> =
        found.iter().map(|(_, m)| (m.asset_key.clone(), m.partition_key.clone())).collect();
    let states = app.store.partition_states_of(&keys).await?;
    Ok(found
        .into_iter()
        .zip(&states)
        .map(|((hops, m), s)| Impacted {
            current: s.as_ref().and_then(|s| s.current_materialization_id) == Some(m.id),
            asset: m.asset_key,
            partition: m.partition_key,
            materialization_id: m.id,
            data_version: m.data_version,
            hops,
        })
        .collect())
}

async fn impact(app: &App, root: lineage::MaterializationRecord, args: &LineageShowArgs) -> anyhow::Result<ExitStatus> {
    let rows = impact_of(app, root.id).await?;
    if matches!(args.format, LineageFormat::Json) {
        print_json(&serde_json::json!({ "materialization_id": root.id, "read_by": rows }))?;
        return Ok(ExitStatus::Success);
    }
    println!(
        "{} {} (materialization {}, data {}) was read by {} materialization{}, directly or through others:",
        root.asset_key,
        show_key(&root.partition_key),
        root.id,
        short(&root.data_version),
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    for r in &rows {
        println!(
            "  {:>2} hop{} {} {}  #{}  {}",
            r.hops,
            if r.hops == 1 { " " } else { "s" },
            r.asset,
            show_key(&r.partition),
            r.materialization_id,
            if r.current { "current" } else { "superseded since" }
        );
    }
    Ok(ExitStatus::Success)
}

/// The assets drawn around `id`: its upstream and downstream up to the requested depths.
fn neighbourhood(app: &App, id: AssetId, args: &LineageShowArgs) -> BTreeSet<AssetId> {
    let graph = app.defs.graph();
    let root = BTreeSet::from([id]);
    graph
        .upstream_closure(&root, Some(args.upstream))
        .union(&graph.downstream_closure(&root, Some(args.downstream)))
        .copied()
        .collect()
}

fn asset_mermaid(app: &App, id: AssetId, args: &LineageShowArgs) -> String {
    let graph = app.defs.graph();
    let nodes: Vec<AssetId> = neighbourhood(app, id, args).into_iter().collect();
    let index = |n: AssetId| nodes.iter().position(|x| *x == n).expect("drawn");
    let mut out = String::from("flowchart LR\n");
    for (i, &n) in nodes.iter().enumerate() {
        let def = graph.asset(n);
        let label = match &def.partitions {
            Some(p) => format!("{}<br/>{}", def.key, p),
            None => def.key.to_string(),
        };
        let _ = writeln!(out, "  n{i}[\"{}\"]", label.replace('"', "'"));
    }
    for &n in &nodes {
        for e in graph.upstream(n).iter().filter(|e| nodes.contains(&e.asset)) {
            let _ = writeln!(out, "  n{} -->|{}| n{}", index(e.asset), e.mapping, index(n));
        }
    }
    let _ = writeln!(out, "  style n{} stroke-width:3px", index(id));
    out
}

async fn asset_svg(app: &App, id: AssetId, args: &LineageShowArgs) -> anyhow::Result<String> {
    let key = app.defs.graph().asset(id).key.to_string();
    let title = format!("lineage of {key}: {} up, {} down", args.upstream, args.downstream);
    crate::view::asset_graph(app, &neighbourhood(app, id, args), Some(id), &title, |_| None).await
}

/// A partition's lineage as a picture: the materialization, its inputs collapsed per asset into
/// ranges (as the tree shows them), hop by hop, and what read it. A box counts the versions it
/// stands for; those read at a version that has since been superseded count as stale.
fn partition_svg(app: &App, value: &PartitionLineage) -> String {
    use crate::view::graph::{GraphEdge, GraphNode};
    use engine::status::StatusCounts;
    fn node(asset: &str, text: String, count: usize, versions: &[&VersionNode], highlight: bool) -> GraphNode {
        let superseded = versions.iter().filter(|v| !v.current).count();
        let text =
            if text.chars().count() > 64 { format!("{}…", text.chars().take(63).collect::<String>()) } else { text };
        GraphNode {
            key: asset.to_owned(),
            partitions: text,
            group: None,
            counts: StatusCounts {
                partitions: count,
                materialized: versions.len(),
                stale: superseded,
                missing: count - versions.len(),
                ..StatusCounts::default()
            },
            highlight,
            href: None,
        }
    }
    fn inputs(
        app: &App,
        groups: Vec<(String, usize, Vec<&VersionNode>)>,
        to: usize,
        nodes: &mut Vec<GraphNode>,
        edges: &mut Vec<GraphEdge>,
    ) {
        for (asset, count, versions) in groups {
            let def = app.defs.graph().lookup(&asset).ok().map(|id| app.defs.graph().asset(id));
            let keys: Vec<String> = versions.iter().map(|v| v.partition.clone()).collect();
            let ranges = compress_ranges(def.and_then(|d| d.partitions.as_ref()), &keys).join(", ");
            let label = format!("{count} partition{}", if count == 1 { "" } else { "s" });
            nodes.push(node(&asset, ranges, count, &versions, false));
            let from = nodes.len() - 1;
            edges.push(GraphEdge { from, to, label });
            // The next hop: the inputs of every version in this box, merged per asset.
            let mut next: Vec<(String, usize, Vec<&VersionNode>)> = Vec::new();
            for g in versions.iter().flat_map(|v| &v.inputs) {
                match next.iter_mut().find(|(a, _, _)| *a == g.asset) {
                    Some(entry) => {
                        entry.1 += g.count;
                        entry.2.extend(g.versions.iter());
                    }
                    None => next.push((g.asset.clone(), g.count, g.versions.iter().collect())),
                }
            }
            inputs(app, next, from, nodes, edges);
        }
    }
    let root = &value.materialization;
    let mut nodes = vec![node(
        &root.asset,
        format!("{}  data {}", show_key(&root.partition), short(&root.data_version)),
        1,
        &[root],
        true,
    )];
    let mut edges = Vec::new();
    let groups = root.inputs.iter().map(|g| (g.asset.clone(), g.count, g.versions.iter().collect())).collect();
    inputs(app, groups, 0, &mut nodes, &mut edges);
    fn readers(readers: &[VersionNode], from: usize, nodes: &mut Vec<GraphNode>, edges: &mut Vec<GraphEdge>) {
        for r in readers {
            nodes.push(node(
                &r.asset,
                format!("{}  data {}", show_key(&r.partition), short(&r.data_version)),
                1,
                &[r],
                false,
            ));
            let to = nodes.len() - 1;
            edges.push(GraphEdge { from, to, label: String::new() });
            let below: Vec<&VersionNode> = r.inputs.iter().flat_map(|g| &g.versions).collect();
            for b in below {
                nodes.push(node(
                    &b.asset,
                    format!("{}  data {}", show_key(&b.partition), short(&b.data_version)),
                    1,
                    &[b],
                    false,
                ));
                let last = nodes.len() - 1;
                edges.push(GraphEdge { from: to, to: last, label: String::new() });
            }
        }
    }
    readers(&value.read_by, 0, &mut nodes, &mut edges);
    let title = format!(
        "lineage of {} {}: inputs collapsed into ranges, then what read it (stale = read at a since-superseded version)",
        root.asset,
        show_key(&root.partition)
    );
    crate::view::graph::svg(&title, &nodes, &edges, true)
}

fn asset_dot(app: &App, id: AssetId, args: &LineageShowArgs) -> String {
    let graph = app.defs.graph();
    let nodes = neighbourhood(app, id, args);
    let mut out = String::from("digraph lineage {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n");
    for &n in &nodes {
        let def = graph.asset(n);
        let label = match &def.partitions {
            Some(p) => format!("{}\\n{}", def.key, p),
            None => def.key.to_string(),
        };
        let bold = if n == id { ", penwidth=2" } else { "" };
        let _ = writeln!(out, "  \"{}\" [label=\"{label}\"{bold}];", def.key);
    }
    for &n in &nodes {
        for e in graph.upstream(n).iter().filter(|e| nodes.contains(&e.asset)) {
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\" [label=\"{}\"];",
                graph.asset(e.asset).key,
                graph.asset(n).key,
                e.mapping
            );
        }
    }
    out.push_str("}\n");
    out
}

fn version_dot(value: &PartitionLineage) -> String {
    fn id(v: &VersionNode) -> String {
        format!("{}[{}]", v.asset, v.partition)
    }
    fn walk(out: &mut String, v: &VersionNode) {
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{} {}\\n{}\"];",
            id(v),
            v.asset,
            show_key(&v.partition),
            short(&v.data_version)
        );
        for g in &v.inputs {
            for i in &g.versions {
                walk(out, i);
                let _ = writeln!(out, "  \"{}\" -> \"{}\";", id(i), id(v));
            }
        }
    }
    let mut out = String::from("digraph lineage {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n");
    walk(&mut out, &value.materialization);
    for r in &value.read_by {
        walk(&mut out, r);
        let _ = writeln!(out, "  \"{}\" -> \"{}\";", id(&value.materialization), id(r));
    }
    out.push_str("}\n");
    out
}
