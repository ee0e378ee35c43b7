//! The web view's pages, rendered on the server with maud (every interpolated string is escaped
//! by maud; the SVG pictures escape their own text with [`super::esc`]).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use engine::AssetId;
use engine::status::{PartitionReport, PartitionStatus};
use lineage::{MaterializationRecord, RunEvent, RunRecord};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::server::{PageResult, PartitionQuery, RunsQuery, SelectQuery, Shared, WebError};
use crate::app::App;
use crate::commands::{short, show_key};

/// Percent-encodes a path segment or query value (everything but unreserved characters).
pub(crate) fn urlenc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub(crate) fn asset_href(key: &str) -> String {
    format!("/assets/{}", urlenc(key))
}

pub(crate) fn partition_href(asset: &str, key: &str) -> String {
    format!("/assets/{}/partition?key={}", urlenc(asset), urlenc(key))
}

fn run_href(id: impl std::fmt::Display) -> String {
    format!("/runs/{id}")
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

const NAV: [(&str, &str); 6] = [
    ("/", "Assets"),
    ("/runs", "Runs"),
    ("/backfills", "Backfills"),
    ("/automation", "Automation"),
    ("/queue", "Queue"),
    ("/api/v1/status", "API"),
];

/// A whole page. `refresh`: reload every few seconds (pages showing running work).
fn page(title: &str, active: &str, refresh: bool, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if refresh { meta http-equiv="refresh" content="3"; }
                title { (title) " · robo-assets" }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                header {
                    a.brand href="/" { "robo-assets" }
                    nav {
                        @for (href, label) in NAV {
                            a href=(href) class=[(href == active).then_some("active")] { (label) }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status.canonical_reason().unwrap_or("error"),
        "",
        false,
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.error { (message) }
            p { a href="/" { "Back to the asset graph" } }
        },
    )
}

fn status_badge(s: PartitionStatus) -> Markup {
    html! { span class={"badge " (s)} { (s) } }
}

fn lookup(app: &App, key: &str) -> Result<AssetId, WebError> {
    app.defs.graph().lookup(key).map_err(|e| WebError::not_found(e.to_string()))
}

/// The asset and the canonical partition key of `/assets/{asset}/partition?key=`.
pub(crate) async fn resolve_partition(app: &App, asset: &str, key: &str) -> Result<(AssetId, String), WebError> {
    let id = lookup(app, asset)?;
    let def = app.defs.graph().asset(id);
    let key = match &def.partitions {
        None if key.is_empty() => String::new(),
        None => return Err(WebError::bad_request(format!("asset {} is not partitioned (got {key:?})", def.key))),
        Some(p) => p
            .resolve(key, &app.partitions_context().await?)
            .map_err(|e| WebError::not_found(format!("asset {}: {e}", def.key)))?,
    };
    Ok((id, key))
}

// ---------------------------------------------------------------------------------------------
// Asset graph (home)

pub(crate) async fn home(State(app): State<Shared>, Query(q): Query<SelectQuery>) -> PageResult {
    let graph = app.defs.graph();
    let selection = q.select.clone().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "*".to_owned());
    let (ids, problem) = match crate::commands::select(&app, &selection) {
        Ok(ids) => (ids, None),
        Err(e) => (BTreeSet::new(), Some(e.to_string())),
    };
    let rows = crate::commands::status::rows(
        &app,
        &ids,
        &engine::PartitionSpec::None,
        crate::commands::status::Detail::Summary,
    )
    .await?;
    let counts = rows
        .iter()
        .filter_map(|r| graph.lookup(&r.asset).ok().map(|id| (id, r.counts)))
        .collect::<std::collections::HashMap<_, _>>();
    let svg = if ids.is_empty() {
        String::new()
    } else {
        let title = format!("{} of {} assets: {selection}", ids.len(), graph.assets().len());
        super::asset_graph_of(&app, &ids, &counts, None, &title, |k| Some(asset_href(k)))
    };
    let groups: BTreeSet<&str> = graph.assets().iter().map(|a| a.group.as_str()).collect();
    let body = html! {
        h1 { "Assets" }
        form.filter method="get" action="/" {
            label for="select" { "Selection" }
            input #select type="text" name="select" value=(selection) placeholder="+storage_bill, group:billing, *";
            button type="submit" { "Filter" }
            span.hint {
                "e.g. " code { "+storage_bill" } " (it and its upstream), " code { "storage_bill+" } ", "
                @for g in &groups { a href={ "/?select=" (urlenc(&format!("group:{g}"))) } { code { "group:" (g) } } " " }
            }
        }
        @if let Some(p) = &problem { p.error { (p) } }
        div.graph { (PreEscaped(svg)) }
        table {
            thead { tr { th { "Asset" } th { "Group" } th { "Partitions" } th { "Status" } th.num { "Materialized" }
                th.num { "Stale" } th.num { "Failed" } th.num { "In progress" } th.num { "Missing" } th.num { "Late" } th { "Health" } } }
            tbody {
                @for r in &rows {
                    @let def = graph.asset(graph.lookup(&r.asset).expect("listed assets exist"));
                    tr {
                        td { a href=(asset_href(&r.asset)) { (r.asset) } }
                        td { (def.group) }
                        td { (r.partitions.as_deref().unwrap_or("unpartitioned")) }
                        td { (status_badge(r.status)) }
                        td.num { (r.counts.materialized) " / " (r.counts.partitions) }
                        td.num { (r.counts.stale) } td.num { (r.counts.failed) } td.num { (r.counts.in_progress) }
                        td.num { (r.counts.missing) } td.num { (r.counts.late) }
                        td { (health_bar(&r.counts)) }
                    }
                }
            }
        }
    };
    let status = if problem.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok((status, page("Assets", "/", false, body)).into_response())
}

fn health_bar(c: &engine::status::StatusCounts) -> Markup {
    let mut svg = String::from("<svg class=\"bar\" width=\"160\" height=\"8\" viewBox=\"0 0 160 8\">");
    super::graph::bar(&mut svg, c, 0.0, 0.0, 160.0, 8.0);
    svg.push_str("</svg>");
    PreEscaped(svg)
}

// ---------------------------------------------------------------------------------------------
// Asset page

pub(crate) async fn asset(State(app): State<Shared>, Path(key): Path<String>) -> PageResult {
    let graph = app.defs.graph();
    let id = lookup(&app, &key)?;
    let def = graph.asset(id);
    let key = def.key.to_string();
    let row = crate::commands::status::rows(
        &app,
        &BTreeSet::from([id]),
        &engine::PartitionSpec::None,
        crate::commands::status::Detail::Reports,
    )
    .await?
    .remove(0);
    let history = app.store.history(&key, None, None, 50).await?;
    let checks = app.store.check_results(&key, None, None, 20).await?;
    let conditions: Vec<String> =
        app.automation.conditions.iter().filter(|(a, _)| *a == key).map(|(_, c)| format!("{c:?}")).collect();
    let schedules: Vec<&engine::automation::ScheduleDef> = app
        .automation
        .schedules
        .iter()
        .filter(|s| engine::selection::resolve(graph, &s.selection).is_ok_and(|ids| ids.contains(&id)))
        .collect();
    let grid = health_grid(&key, def.partitions.as_ref(), &row.reports);
    let running = row.counts.in_progress > 0;
    let body = html! {
        h1 { (key) " " (status_badge(row.status)) @if row.checks.failed > 0 { " " span.badge.failed { (row.checks.render()) " check" @if row.checks.failed > 1 { "s" } } } }
        @if !def.description.is_empty() { p.description { (def.description) } }
        h2 { "Definition" }
        table.definition {
            tr { th { "Group" } td { a href={ "/?select=" (urlenc(&format!("group:{}", def.group))) } { (def.group) } } }
            @if !def.owners.is_empty() { tr { th { "Owners" } td { (def.owners.join(", ")) } } }
            @if !def.tags.is_empty() { tr { th { "Tags" } td { @for (k, v) in &def.tags { code { (k) "=" (v) } " " } } } }
            tr { th { "Code version" } td { code { (def.code_version) } } }
            tr { th { "Partitions" } td {
                (def.partitions.as_ref().map_or("unpartitioned".to_owned(), engine::PartitionsDef::describe))
                @if let Some(tw) = def.partitions.as_ref().and_then(engine::PartitionsDef::as_time_window) {
                    ", from " code { (tw.key(0)) } " in " (tw.timezone().name())
                }
                " — " (row.counts.partitions) " partitions now"
            } }
            tr { th { "Upstream" } td {
                @for e in graph.upstream(id) { @let up = &graph.asset(e.asset).key;
                    a href=(asset_href(up.as_str())) { (up) } " (" (e.mapping.to_string()) ") " }
                @if graph.upstream(id).is_empty() { "none" }
            } }
            tr { th { "Downstream" } td {
                @for e in graph.downstream(id) { @let down = &graph.asset(e.asset).key;
                    a href=(asset_href(down.as_str())) { (down) } " (" (e.mapping.to_string()) ") " }
                @if graph.downstream(id).is_empty() { "none" }
            } }
            tr { th { "Retry" } td { (def.retry.max_attempts) " attempts, first delay " (format!("{:?}", def.retry.initial_delay)) ", at most " (format!("{:?}", def.retry.max_delay)) } }
            tr { th { "Pool" } td { (def.pool.as_deref().unwrap_or("none")) } }
            tr { th { "Freshness" } td { (freshness(def.freshness)) } }
            tr { th { "Automation condition" } td { (if conditions.is_empty() { "none".to_owned() } else { conditions.join("; ") }) } }
            tr { th { "Schedules" } td {
                @for s in &schedules { code { (s.name) } " (" (s.cron()) " " (s.tz.name()) ") " }
                @if schedules.is_empty() { "none" }
            } }
        }
        h2 { "Partitions" }
        p { (super::graph::counts_text(&row.counts)) " " (health_bar(&row.counts)) }
        (PreEscaped(grid))
        h2 { "Latest materializations" }
        (materializations_table(&history, false))
        (metadata_plots(&history))
        h2 { "Checks" }
        p.checks { "Latest verdicts: " span class=[(row.checks.failed > 0).then_some("check-failed")] { (row.checks.render()) } }
        (failed_checks(&row.failed_check_results))
        h3 { "Recent verdicts" }
        (checks_table(&checks))
    };
    Ok(page(&key, "/", running, body))
}

/// A JSON value for people: strings without quotes.
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn freshness(f: Option<engine::FreshnessPolicy>) -> String {
    let hours = |d: std::time::Duration| {
        let s = d.as_secs();
        if s.is_multiple_of(3600) { format!("{} h", s / 3600) } else { format!("{} min", s / 60) }
    };
    match f {
        None => "none".to_owned(),
        Some(engine::FreshnessPolicy::AfterWindowEnd(d)) => {
            format!("each partition due {} after its window ends", hours(d))
        }
        Some(engine::FreshnessPolicy::MaxLag(d)) => format!("the latest partition materialized within {}", hours(d)),
    }
}

fn materializations_table(ms: &[MaterializationRecord], with_asset: bool) -> Markup {
    html! {
        @if ms.is_empty() { p { "None yet." } } @else {
            table {
                thead { tr { @if with_asset { th { "Asset" } } th { "Partition" } th { "Data version" } th { "Code" } th.num { "Rows" } th.num { "Bytes" }
                    th.num { "Duration" } th { "Finished" } th { "Run" } th { "Output" } } }
                tbody { @for m in ms { tr {
                    @if with_asset { td { a href=(asset_href(&m.asset_key)) { (m.asset_key) } } }
                    td { a href=(partition_href(&m.asset_key, &m.partition_key)) { (show_key(&m.partition_key)) } }
                    td { code { (short(&m.data_version)) } }
                    td { code { (m.code_version) } }
                    td.num { (m.row_count.map(|n| n.to_string()).unwrap_or_default()) }
                    td.num { (m.bytes.map(|n| n.to_string()).unwrap_or_default()) }
                    td.num { ((m.finished_at - m.started_at).num_milliseconds()) " ms" }
                    td { (time(m.finished_at)) }
                    td { a href=(run_href(m.run_id)) { (short(&m.run_id.to_string())) } }
                    td.uri { (m.storage_uri.as_deref().map(lineage::redact_url).unwrap_or_default()) }
                } } }
            }
        }
    }
}

/// Each numeric series over the materializations, oldest to newest, as a small line plot:
/// rows, bytes, duration, and every numeric metadata entry (e.g. `total_credits`).
fn metadata_plots(history: &[MaterializationRecord]) -> Markup {
    let mut series: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for m in history.iter().rev() {
        let mut add = |k: &str, v: Option<f64>| {
            if let Some(v) = v {
                series.entry(k.to_owned()).or_default().push(v);
            }
        };
        add("rows", m.row_count.map(|n| n as f64));
        add("bytes", m.bytes.map(|n| n as f64));
        add("duration_ms", Some((m.finished_at - m.started_at).num_milliseconds() as f64));
        if let Some(obj) = m.metadata.as_object() {
            for (k, v) in obj {
                let n = v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
                add(k, n);
            }
        }
    }
    series.retain(|_, v| v.len() >= 2);
    html! {
        @if !series.is_empty() {
            h2 { "Over time" }
            div.plots { @for (name, values) in &series { figure.plot {
                figcaption { (name) " (last " (values.len()) ")" }
                (PreEscaped(sparkline(values)))
            } } }
        }
    }
}

fn sparkline(values: &[f64]) -> String {
    let (w, h) = (220.0, 50.0);
    let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let step = w / (values.len().max(2) - 1) as f64;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * step, h - 4.0 - (v - lo) / span * (h - 8.0)))
        .collect();
    format!(
        "<svg class=\"spark\" width=\"{w}\" height=\"{}\" viewBox=\"0 0 {w} {}\"><polyline points=\"{}\"/>\
         <text x=\"0\" y=\"{}\">min {}</text><text x=\"{w}\" y=\"{}\" text-anchor=\"end\">max {}</text></svg>",
        h + 14.0,
        h + 14.0,
        points.join(" "),
        h + 12.0,
        trim_number(lo),
        h + 12.0,
        trim_number(hi)
    )
}

fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v:.3}") }
}

/// Failed verdicts, one line each as the CLI prints them (`credit_health 2026-01-05
/// subscriptions_allocated (warn): …`).
fn failed_checks(failed: &[lineage::CheckResultRecord]) -> Markup {
    html! {
        @if !failed.is_empty() {
            ul.failed-checks { @for c in failed { li.check-failed { "! " (crate::commands::check_line(c)) } } }
        }
    }
}

fn checks_table(checks: &[lineage::CheckResultRecord]) -> Markup {
    html! {
        @if checks.is_empty() { p { "No check results." } } @else {
            table {
                thead { tr { th { "Partition" } th { "Check" } th { "Severity" } th { "Passed" } th { "When" } th { "Message" } } }
                tbody { @for c in checks { tr class=[(!c.passed).then_some("check-failed")] {
                    td { a href=(partition_href(&c.asset_key, &c.partition_key)) { (show_key(&c.partition_key)) } }
                    td { (c.check_name) } td { (c.severity) }
                    td { @if c.passed { "yes" } @else { strong { "NO" } } }
                    td { (time(c.created_at)) } td { (c.message) }
                } } }
            }
        }
    }
}

/// The partition health view: rows of a calendar (days × 24 hours, months × days, years ×
/// months) or rows of 50 for other partitions, each row drawn as runs of one status, so a
/// hundred thousand partitions are a few thousand rectangles. Late missing partitions have their
/// own colour. Newest row first; multi-dimensional assets get a matrix ([`matrix_placement`]).
fn health_grid(asset: &str, def: Option<&engine::PartitionsDef>, reports: &[PartitionReport]) -> String {
    use engine::partition::Cadence;
    let cadence =
        def.and_then(engine::PartitionsDef::as_time_window).map(engine::partition::TimeWindowPartitions::cadence);
    // Which row (its label) and column the i-th partition, keyed k, goes in.
    type RowOf = Box<dyn Fn(usize, &str) -> (String, usize)>;
    // A run of one status in a row: first column, length, class, first and last partition index.
    type Run = (usize, usize, &'static str, usize, usize);
    let (columns, row_of): (usize, RowOf) = match cadence {
        Some(Cadence::Hourly) => (24, Box::new(|_, k: &str| (k[..10].to_owned(), k[11..13].parse().unwrap_or(0)))),
        Some(Cadence::Daily) => {
            (31, Box::new(|_, k: &str| (k[..7].to_owned(), k[8..10].parse::<usize>().unwrap_or(1) - 1)))
        }
        Some(Cadence::Monthly) => {
            (12, Box::new(|_, k: &str| (k[..4].to_owned(), k[5..7].parse::<usize>().unwrap_or(1) - 1)))
        }
        _ => (50, Box::new(|i, _: &str| (format!("{}–", i / 50 * 50 + 1), i % 50))),
    };
    // Where each partition goes: (row label, column, index into reports), in row order.
    let (columns, axis, placed) = match def {
        Some(engine::PartitionsDef::Multi(m)) => matrix_placement(m, reports),
        _ => {
            let placed: Vec<(String, usize, usize)> = reports
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let (label, col) = row_of(i, &r.partition);
                    (label, col, i)
                })
                .collect();
            let axis = match cadence {
                Some(Cadence::Hourly) => "hour of day →",
                Some(Cadence::Daily) => "day of month →",
                Some(Cadence::Monthly) => "month →",
                _ => "partitions in order →",
            };
            (columns, axis.to_owned(), placed)
        }
    };
    // Rows in order, each a list of runs (first column, length, class, first key, last key).
    let mut rows: Vec<(String, Vec<Run>)> = Vec::new();
    for (label, col, i) in placed {
        let r = &reports[i];
        let class =
            if r.late_since.is_some() && r.status == PartitionStatus::Missing { "late" } else { r.status.as_str() };
        if rows.last().is_none_or(|(l, _)| *l != label) {
            rows.push((label, Vec::new()));
        }
        let runs = &mut rows.last_mut().expect("pushed").1;
        match runs.last_mut() {
            Some(run) if run.2 == class && run.0 + run.1 == col => {
                run.1 += 1;
                run.4 = i;
            }
            _ => runs.push((col, 1, class, i, i)),
        }
    }
    if rows.is_empty() {
        return "<p>No partitions yet.</p>".to_owned();
    }
    let cell = if matches!(def, Some(engine::PartitionsDef::Multi(_))) {
        (900.0 / columns as f64).clamp(2.0, 18.0)
    } else if columns > 24 {
        14.0
    } else {
        18.0
    };
    let row_h = if rows.len() > 400 {
        3.0
    } else if rows.len() > 120 {
        8.0
    } else {
        cell
    };
    let label_w = rows.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0).max(14) as f64 * 6.5;
    let width = label_w + (columns as f64 * cell).max(axis.chars().count() as f64 * 6.0) + 10.0;
    let height = 22.0 + rows.len() as f64 * row_h;
    let mut out = format!(
        "<svg class=\"grid\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-size=\"10\">\
         <text x=\"{label_w}\" y=\"12\">{}</text>",
        super::esc(&axis)
    );
    let label_every = if row_h >= 8.0 { 1 } else { 30 };
    // Calendars show the newest row first; a matrix keeps its rows in dimension order.
    let ordered: Vec<&(String, Vec<Run>)> = if matches!(def, Some(engine::PartitionsDef::Multi(_))) {
        rows.iter().collect()
    } else {
        rows.iter().rev().collect()
    };
    for (n, (label, runs)) in ordered.into_iter().enumerate() {
        let y = 18.0 + n as f64 * row_h;
        let _ = write!(out, "<g class=\"grid-row\" data-row=\"{}\">", super::esc(label));
        if n % label_every == 0 {
            let _ = write!(out, "<text x=\"0\" y=\"{:.1}\">{}</text>", y + row_h.min(10.0), super::esc(label));
        }
        for &(col, len, class, first, last) in runs {
            let (a, b) = (&reports[first].partition, &reports[last].partition);
            let title = if first == last { format!("{a}: {class}") } else { format!("{a} … {b}: {len} {class}") };
            let href = partition_href(asset, a);
            let _ = write!(
                out,
                "<a href=\"{}\"><rect class=\"cell {class}\" data-status=\"{class}\" data-count=\"{len}\" x=\"{:.1}\" y=\"{y:.1}\" \
                 width=\"{:.1}\" height=\"{:.1}\"><title>{}</title></rect></a>",
                super::esc(&href),
                label_w + col as f64 * cell,
                len as f64 * cell - 1.0,
                if row_h >= 8.0 { row_h - 1.0 } else { row_h },
                super::esc(&title)
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    let legend: String = ["materialized", "stale", "failed", "in_progress", "missing", "late"]
        .iter()
        .map(|s| format!("<span class=\"legend-item\"><span class=\"swatch {s}\"></span>{s}</span>"))
        .collect();
    format!("<div class=\"legend\">{legend}</div><div class=\"grid-wrap\">{out}</div>")
}

/// The partition matrix of a multi-dimensional asset: a row per combination of the other
/// dimensions (`kind=order`), a column per partition of the time dimension (from the first
/// listed). Without a time dimension: a row per key of the first dimension, a column per
/// combination of the others. Returns (columns, axis label, placement in row order).
fn matrix_placement(
    m: &engine::partition::MultiPartitions,
    reports: &[PartitionReport],
) -> (usize, String, Vec<(String, usize, usize)>) {
    let time = m.time_dimension();
    let mut first_index = i64::MAX;
    let mut split: Vec<(usize, Vec<&str>)> = Vec::with_capacity(reports.len());
    for (i, r) in reports.iter().enumerate() {
        let Ok(values) = m.split(&r.partition) else { continue };
        if let Some((t, tw)) = time
            && let Ok(idx) = tw.parse_index(values[t])
        {
            first_index = first_index.min(idx);
        }
        split.push((i, values));
    }
    let dims = m.dimensions();
    let mut columns_seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut placed: Vec<(String, usize, usize)> = Vec::with_capacity(split.len());
    for (i, values) in split {
        let (label, col) = match time {
            Some((t, tw)) => {
                let label: Vec<String> =
                    (0..dims.len()).filter(|&d| d != t).map(|d| format!("{}={}", dims[d].name, values[d])).collect();
                let col = tw.parse_index(values[t]).map_or(0, |idx| (idx - first_index) as usize);
                (if label.is_empty() { dims[t].name.clone() } else { label.join("|") }, col)
            }
            None => {
                let rest: Vec<String> = (1..dims.len()).map(|d| format!("{}={}", dims[d].name, values[d])).collect();
                let next = columns_seen.len();
                let col = *columns_seen.entry(rest.join("|")).or_insert(next);
                (format!("{}={}", dims[0].name, values[0]), col)
            }
        };
        placed.push((label, col, i));
    }
    placed.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let columns = placed.iter().map(|p| p.1 + 1).max().unwrap_or(1);
    let axis = match time {
        Some((t, tw)) if first_index != i64::MAX => {
            format!("{} → {} … {}", dims[t].name, tw.key(first_index), tw.key(first_index + columns as i64 - 1))
        }
        Some((t, _)) => format!("{} →", dims[t].name),
        None => format!("{} →", dims[1..].iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(" × ")),
    };
    (columns, axis, placed)
}

// ---------------------------------------------------------------------------------------------
// Partition page

pub(crate) async fn partition(
    State(app): State<Shared>,
    Path(asset): Path<String>,
    Query(q): Query<PartitionQuery>,
) -> PageResult {
    let (id, key) = resolve_partition(&app, &asset, &q.key).await?;
    let graph = app.defs.graph();
    let asset = graph.asset(id).key.to_string();
    let why = crate::commands::why::explain(&app, id, &key).await?;
    let state = app.store.partition_states_of(&[(asset.clone(), key.clone())]).await?.remove(0);
    let current = match state.as_ref().and_then(|s| s.current_materialization_id) {
        Some(m) => app.store.materialization(m).await?,
        None => None,
    };
    let (inputs, readers, impact) = match &current {
        Some(m) => (
            app.store.inputs_of(m.id).await?,
            app.store.readers_of(m.id).await?,
            crate::commands::impact_of(&app, m.id).await?,
        ),
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    let history = app.store.history(&asset, Some(&key), None, 20).await?;
    let checks = app.store.check_results(&asset, Some(&key), None, 20).await?;
    let evaluations = app.store.condition_evaluations(&asset, Some(&key), 10).await?;
    let tree = why.tree();
    let title = format!("{asset} {}", show_key(&key));
    let body = html! {
        h1 { a href=(asset_href(&asset)) { (asset) } " " (show_key(&key)) " " (status_badge(why.status)) }
        p.headline { (why.headline()) @if let Some(d) = why.late_since { " " strong.late { "LATE: due " (d.format("%Y-%m-%d %H:%M %Z")) } } }
        @if !tree.is_empty() { h2 { "Root causes, hop by hop" } pre.tree { (tree) } }
        @if let Some(m) = &current {
            h2 { "Current materialization" }
            table.definition {
                tr { th { "Data version" } td { code { (m.data_version) } } }
                tr { th { "Logical version" } td { code { (m.logical_version) } } }
                tr { th { "Code version" } td { code { (m.code_version) } } }
                tr { th { "Run" } td { a href=(run_href(m.run_id)) { (m.run_id) } " (attempt " (m.attempt) ")" } }
                tr { th { "Materialized" } td { (time(m.finished_at)) " in " ((m.finished_at - m.started_at).num_milliseconds()) " ms" } }
                tr { th { "Output" } td.uri { (m.storage_uri.as_deref().map(lineage::redact_url).unwrap_or_else(|| "(no output)".to_owned())) } }
                tr { th { "Rows, bytes" } td { (m.row_count.map(|n| n.to_string()).unwrap_or("-".into())) ", " (m.bytes.map(|n| n.to_string()).unwrap_or("-".into())) } }
            }
            @if let Some(obj) = m.metadata.as_object().filter(|o| !o.is_empty()) {
                h2 { "Metadata" }
                table.definition { @for (k, v) in obj { tr { th { (k) } td { code { (plain(v)) } } } } }
            }
            @if let Some(schema) = &m.schema {
                h2 { "Schema" }
                @if let Some(fields) = schema.get("fields").and_then(|f| f.as_array()) {
                    table { thead { tr { th { "Column" } th { "Type" } th { "Nullable" } } }
                        tbody { @for f in fields { tr {
                            td { code { (f.get("name").and_then(|v| v.as_str()).unwrap_or("")) } }
                            td { code { (f.get("type").map(plain).unwrap_or_default()) } }
                            td { (if f.get("nullable").and_then(serde_json::Value::as_bool).unwrap_or(true) { "yes" } else { "no" }) }
                        } } } }
                } @else {
                    pre { (serde_json::to_string_pretty(schema).unwrap_or_default()) }
                }
            }
            h2 { "Inputs (" (inputs.len()) ")" }
            (inputs_table(&inputs))
            h2 { "Read by (" (readers.len()) ")" }
            (materializations_table(&readers, true))
            h2 { "Impact: everything downstream that read it (" (impact.len()) ")" }
            @if impact.is_empty() { p { "Nothing read it." } } @else {
                table.impact {
                    thead { tr { th.num { "Hops" } th { "Asset" } th { "Partition" } th { "Data version" } th { "Now" } } }
                    tbody { @for r in &impact { tr {
                        td.num { (r.hops) }
                        td { a href=(asset_href(&r.asset)) { (r.asset) } }
                        td { a href=(partition_href(&r.asset, &r.partition)) { (show_key(&r.partition)) } }
                        td { code { (short(&r.data_version)) } }
                        td { (if r.current { "current" } else { "superseded since" }) }
                    } } }
                }
            }
        }
        h2 { "Checks" }
        (checks_table(&checks))
        h2 { "History" }
        (history_table(&history))
        @if !evaluations.is_empty() {
            h2 { "Automation condition" }
            table { thead { tr { th { "Evaluated" } th { "Condition" } th { "Requested" } th { "Reason" } } }
                tbody { @for e in &evaluations { tr { td { (time(e.evaluated_at)) } td { (e.condition) } td { (if e.requested { "yes" } else { "no" }) } td { (e.reason) } } } } }
        }
    };
    Ok(page(&title, "/", why.status == PartitionStatus::InProgress, body))
}

/// Inputs, with consecutive partitions of one asset read at one code version collapsed into a
/// range (`usage_snapshot 2025-12-15T00:00 … T23:00, 24 partitions`).
fn inputs_table(inputs: &[lineage::InputVersion]) -> Markup {
    html! {
        @if inputs.is_empty() { p { "It read no inputs." } } @else {
            table {
                thead { tr { th { "Asset" } th { "Partition" } th { "Data version read" } } }
                tbody { @for i in inputs { tr {
                    td { a href=(asset_href(&i.asset_key)) { (i.asset_key) } }
                    td { a href=(partition_href(&i.asset_key, &i.partition_key)) { (show_key(&i.partition_key)) } }
                    td { code { (short(&i.data_version)) } }
                } } }
            }
        }
    }
}

/// The partition's materializations, newest first, each with what changed from the one before.
fn history_table(history: &[MaterializationRecord]) -> Markup {
    html! {
        @if history.is_empty() { p { "Never materialized." } } @else {
            table {
                thead { tr { th { "Finished" } th { "Data version" } th { "Run" } th { "What changed" } } }
                tbody { @for (i, m) in history.iter().enumerate() { tr {
                    td { (time(m.finished_at)) }
                    td { code { (short(&m.data_version)) } }
                    td { a href=(run_href(m.run_id)) { (short(&m.run_id.to_string())) } }
                    td { (history.get(i + 1).map_or("first materialization".to_owned(), |before| changed(before, m))) }
                } } }
            }
        }
    }
}

fn changed(before: &MaterializationRecord, after: &MaterializationRecord) -> String {
    let mut parts = Vec::new();
    if before.code_version != after.code_version {
        parts.push(format!("code version {} → {}", before.code_version, after.code_version));
    }
    if before.inputs_hash != after.inputs_hash {
        parts.push("inputs changed".to_owned());
    }
    if before.data_version != after.data_version {
        if parts.is_empty() {
            parts.push("same code and inputs, other data (its source changed)".to_owned());
        } else {
            parts.push("data changed".to_owned());
        }
    } else {
        parts.push("same data".to_owned());
    }
    parts.join("; ")
}

// ---------------------------------------------------------------------------------------------
// Runs

fn duration_ms(run: &RunRecord) -> Option<i64> {
    Some((run.finished_at? - run.started_at?).num_milliseconds())
}

pub(crate) async fn runs(State(app): State<Shared>, Query(q): Query<RunsQuery>) -> PageResult {
    let page_ = super::server::runs_page(&app, &q).await?;
    let running = page_.runs.iter().any(|r| !r.status.is_terminal());
    let status = q.status.clone().unwrap_or_default();
    let trigger = q.trigger.clone().unwrap_or_default();
    let asset = q.asset.clone().unwrap_or_default();
    let since = q.since.clone().unwrap_or_default();
    let body = html! {
        h1 { "Runs" }
        form.filter method="get" action="/runs" {
            label for="status" { "Status" }
            select #status name="status" {
                option value="" selected[status.is_empty()] { "any" }
                @for s in <lineage::RunStatus as strum::VariantNames>::VARIANTS { option value=(s) selected[status == *s] { (s) } }
            }
            label for="trigger" { "Trigger" }
            select #trigger name="trigger" {
                option value="" selected[trigger.is_empty()] { "any" }
                @for s in <lineage::Trigger as strum::VariantNames>::VARIANTS { option value=(s) selected[trigger == *s] { (s) } }
            }
            label for="asset" { "Asset" }
            input #asset type="text" name="asset" value=(asset) placeholder="storage_bill";
            label for="since" { "Since" }
            input #since type="text" name="since" value=(since) placeholder="2026-01-01";
            button type="submit" { "Filter" }
        }
        p { (page_.total) " runs match." }
        (runs_table(&page_.runs))
        @if let Some(next) = page_.next_cursor {
            p { a.next href={ "/runs?before=" (next) "&status=" (urlenc(&status)) "&trigger=" (urlenc(&trigger)) "&asset=" (urlenc(&asset)) "&since=" (urlenc(&since)) "&limit=" (page_.runs.len()) } { "Older runs →" } }
        }
    };
    Ok(page("Runs", "/runs", running, body))
}

fn runs_table(runs: &[RunRecord]) -> Markup {
    html! {
        @if runs.is_empty() { p { "No runs." } } @else {
            table {
                thead { tr { th { "Run" } th { "Status" } th { "Trigger" } th.num { "Steps" } th { "Created" } th.num { "Duration" } th { "Selection" } } }
                tbody { @for r in runs { tr {
                    td { a href=(run_href(r.id)) { code { (r.id) } } }
                    td { span class={"badge run-" (r.status)} { (r.status) } }
                    td { (r.trigger) } td.num { (r.n_steps) } td { (time(r.created_at)) }
                    td.num { (duration_ms(r).map(|d| format!("{d} ms")).unwrap_or_else(|| "-".into())) }
                    td { code { (r.selection) } }
                } } }
            }
        }
    }
}

pub(crate) async fn run(State(app): State<Shared>, Path(id): Path<String>) -> PageResult {
    // No such run is 404; a malformed id is the request's fault (400); the rest is ours (500).
    let run = crate::commands::runs::find(&app, &id).await.map_err(|e| {
        let message = e.to_string();
        if message.starts_with("no run") { WebError::not_found(message) } else { WebError::from(e) }
    })?;
    let detail = crate::commands::runs::show(&app, run).await?;
    let mut ms = detail.materializations.clone();
    ms.sort_by(|a, b| (&a.asset_key, &a.partition_key).cmp(&(&b.asset_key, &b.partition_key)));
    // A backfill's run carries the backfill's id in its tags.
    let backfill = detail.run.tags.get("backfill").and_then(|b| b.as_str()).and_then(|b| b.parse::<uuid::Uuid>().ok());
    let failed_run_checks: Vec<lineage::CheckResultRecord> =
        detail.check_results.iter().filter(|c| !c.passed).cloned().collect();
    let r = &detail.run;
    let body = html! {
        h1 { "Run " code { (r.id) } " " span class={"badge run-" (r.status)} { (r.status) } }
        table.definition {
            tr { th { "Trigger" } td { (r.trigger) } }
            tr { th { "Selection" } td { code { (r.selection) } } }
            @if let Some(b) = &backfill { tr { th { "Backfill" } td { a href=(backfill_href(b)) { code { (backfill_id(b)) } } } } }
            tr { th { "Steps" } td { (r.n_steps) } }
            tr { th { "Created" } td { (time(r.created_at)) } }
            tr { th { "Duration" } td { (duration_ms(r).map(|d| format!("{d} ms")).unwrap_or_else(|| "-".into())) } }
        }
        @if !detail.check_results.is_empty() {
            h2 { "Checks" }
            p.checks { span class=[detail.check_results.iter().any(|c| !c.passed).then_some("check-failed")] {
                (crate::commands::checks_summary(&detail.check_results))
            } }
            (failed_checks(&failed_run_checks))
            (checks_table(&detail.check_results))
        }
        h2 { "Timeline" }
        (PreEscaped(gantt(&detail.events, &detail.materializations)))
        h2 { "Materializations (" (ms.len()) ")" }
        (materializations_table(&ms, true))
        h2 { "Event log (" (detail.events.len()) ")" }
        table.events {
            thead { tr { th { "Time" } th { "Event" } th { "Asset" } th { "Partition" } th { "Message" } } }
            tbody { @for e in &detail.events { tr class={"ev-" (e.kind.as_str())} {
                td { (e.ts.format("%H:%M:%S%.3f")) } td { (e.kind.as_str()) }
                td { @if let Some(a) = &e.asset_key { a href=(asset_href(a)) { (a) } } }
                td { @if let (Some(a), Some(p)) = (&e.asset_key, &e.partition_key) { a href=(partition_href(a, p)) { (show_key(p)) } } }
                td { (e.message) }
            } } }
        }
    };
    Ok(page(&format!("Run {}", short(&r.id.to_string())), "/runs", !r.status.is_terminal(), body))
}

/// One bar per step attempt, from its start to its end event, on a common time axis. A run
/// whose event log retention pruned has one bar per materialization instead (its start and
/// finish are lineage, kept), and says so.
fn gantt(events: &[RunEvent], materializations: &[lineage::MaterializationRecord]) -> String {
    use lineage::EventKind as K;
    struct Bar {
        label: String,
        start: chrono::DateTime<chrono::Utc>,
        end: Option<chrono::DateTime<chrono::Utc>>,
        outcome: &'static str,
    }
    let mut bars: Vec<Bar> = Vec::new();
    let mut open: std::collections::HashMap<(String, String), usize> = Default::default();
    for e in events {
        let (Some(a), Some(p)) = (&e.asset_key, &e.partition_key) else { continue };
        let step = (a.clone(), p.clone());
        match e.kind {
            K::StepStarted => {
                open.insert(step, bars.len());
                bars.push(Bar { label: format!("{a} {}", show_key(p)), start: e.ts, end: None, outcome: "running" });
            }
            K::StepSucceeded | K::StepFailed | K::StepRetried | K::StepCanceled => {
                if let Some(i) = open.remove(&step) {
                    bars[i].end = Some(e.ts);
                    bars[i].outcome = match e.kind {
                        K::StepSucceeded => "succeeded",
                        K::StepFailed => "failed",
                        K::StepRetried => "retried",
                        _ => "canceled",
                    };
                }
            }
            _ => {}
        }
    }
    let mut note = "";
    if bars.is_empty() && !materializations.is_empty() {
        note = "<p>The event log was pruned (retention): bars are the materializations, attempts that failed are \
                not shown.</p>";
        bars = materializations
            .iter()
            .map(|m| Bar {
                label: format!("{} {}", m.asset_key, show_key(&m.partition_key)),
                start: m.started_at,
                end: Some(m.finished_at),
                outcome: "succeeded",
            })
            .collect();
    }
    if bars.is_empty() {
        return "<p>No step has started.</p>".to_owned();
    }
    let t0 = bars.iter().map(|b| b.start).min().expect("bars");
    let t1 =
        bars.iter().map(|b| b.end.unwrap_or(b.start)).max().expect("bars").max(t0 + chrono::Duration::milliseconds(1));
    let total_ms = (t1 - t0).num_microseconds().unwrap_or(1).max(1) as f64 / 1000.0;
    let (label_w, plot_w, row_h) = (260.0, 700.0, 16.0);
    let height = 24.0 + bars.len() as f64 * row_h;
    let mut out = format!(
        "<svg class=\"gantt\" width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\" font-size=\"10\">\
         <text x=\"{label_w}\" y=\"12\">0 ms</text><text x=\"{}\" y=\"12\" text-anchor=\"end\">{total_ms:.1} ms</text>",
        label_w + plot_w + 10.0,
        label_w + plot_w + 10.0,
        label_w + plot_w
    );
    for (i, b) in bars.iter().enumerate() {
        let y = 18.0 + i as f64 * row_h;
        let ms = |t: chrono::DateTime<chrono::Utc>| (t - t0).num_microseconds().unwrap_or(0) as f64 / 1000.0;
        let x = label_w + ms(b.start) / total_ms * plot_w;
        let w = (b.end.map_or(total_ms, ms) - ms(b.start)) / total_ms * plot_w;
        let took = b.end.map(|e| format!("{:.1} ms", (e - b.start).num_microseconds().unwrap_or(0) as f64 / 1000.0));
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{:.1}\">{}</text><rect class=\"gantt-bar {}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" \
             height=\"{:.1}\"><title>{}: {} {}</title></rect>",
            y + 11.0,
            super::esc(&b.label),
            b.outcome,
            w.max(1.5),
            row_h - 4.0,
            super::esc(&b.label),
            b.outcome,
            took.unwrap_or_default()
        );
    }
    out.push_str("</svg>");
    format!("{note}<div class=\"gantt-wrap\">{out}</div>")
}

// ---------------------------------------------------------------------------------------------
// Backfills

/// A backfill's id as the CLI prints it (`bf-…`), whole.
fn backfill_id(id: &uuid::Uuid) -> String {
    crate::commands::printed_id(lineage::IdKind::Backfill, id)
}

/// A backfill's id as listings print it (`bf-` and its last hex digits).
fn backfill_short_id(id: &uuid::Uuid) -> String {
    crate::commands::printed_short_id(lineage::IdKind::Backfill, id)
}

fn backfill_href(id: &uuid::Uuid) -> String {
    format!("/backfills/{}", backfill_id(id))
}

pub(crate) async fn backfills(State(app): State<Shared>) -> PageResult {
    let list = app.store.backfills(None, None, 100).await?;
    let running = list.iter().any(|b| !b.status.is_terminal());
    let mut rows = Vec::with_capacity(list.len());
    for b in &list {
        let progress = engine::status::backfill_progress(&*app.store, app.defs.graph(), b).await?;
        rows.push((b, progress.done_of_total()));
    }
    let body = html! {
        h1 { "Backfills" }
        @if rows.is_empty() { p { "No backfills. Start one with " code { "robo-assets backfill SELECTION --from A --to B" } "." } } @else {
            table {
                thead { tr { th { "Backfill" } th { "Status" } th { "Selection" } th { "Range" } th { "Policy" } th.num { "Done" } th { "Progress" } th { "Created" } } }
                tbody { @for (b, (done, total)) in &rows { tr {
                    td { a href=(backfill_href(&b.id.0)) { code { (backfill_short_id(&b.id.0)) } } }
                    td { span class={"badge run-" (b.status)} { (b.status) } }
                    td { code { (b.selection) } } td { (b.partition_from) " → " (b.partition_to) } td { (b.policy) }
                    td.num { (done) " / " (total) }
                    td { progress max=(total.max(&1)) value=(done) {} }
                    td { (time(b.created_at)) }
                } } }
            }
        }
    };
    Ok(page("Backfills", "/backfills", running, body))
}

pub(crate) async fn backfill(State(app): State<Shared>, Path(id): Path<String>) -> PageResult {
    // The printed form (`bf-…`) or the bare UUID.
    let bare = id.strip_prefix(crate::commands::BACKFILL_ID_PREFIX).unwrap_or(&id);
    let parsed: lineage::BackfillId =
        bare.parse().map_err(|_| WebError::not_found(format!("{id:?} is not a backfill id")))?;
    let b = app
        .store
        .backfills(Some(parsed), None, 1)
        .await?
        .pop()
        .ok_or_else(|| WebError::not_found(format!("no backfill with id {parsed}")))?;
    let progress = engine::status::backfill_progress(&*app.store, app.defs.graph(), &b).await?;
    let failed = app.store.requests(Some(b.run_id), Some(lineage::RequestState::Failed), None, 200).await?;
    let (done, total) = progress.done_of_total();
    let body = html! {
        h1 { "Backfill " code { (backfill_id(&b.id.0)) } " " span class={"badge run-" (b.status)} { (b.status) } }
        table.definition {
            tr { th { "Selection" } td { code { (b.selection) } } }
            tr { th { "Range" } td { (b.partition_from) " → " (b.partition_to) } }
            tr { th { "Policy" } td { (b.policy) } }
            tr { th { "Run" } td { a href=(run_href(b.run_id)) { (b.run_id) } } }
            tr { th { "Progress" } td { (done) " / " (total) " cells " progress max=(total.max(1)) value=(done) {} } }
        }
        h2 { "Per asset" }
        table {
            thead { tr { th { "Asset" } th.num { "Done" } th.num { "Running" } th.num { "Queued" } th.num { "Failed" } th.num { "Upstream failed" } th.num { "Canceled" } th.num { "Skipped" } th.num { "Total" } } }
            tbody { @for (asset, c) in &progress.assets { tr {
                td { a href=(asset_href(asset)) { (asset) } }
                td.num { (c.done) } td.num { (c.running) } td.num { (c.queued) } td.num { (c.failed) }
                td.num { (c.upstream_failed) } td.num { (c.canceled) } td.num { (c.skipped) } td.num { (c.total()) }
            } } }
        }
        h2 { "Failed cells (" (failed.len()) ")" }
        @if failed.is_empty() { p { "None." } } @else {
            table { thead { tr { th { "Asset" } th { "Partition" } th.num { "Attempts" } th { "Error" } } }
                tbody { @for r in &failed { tr {
                    td { a href=(asset_href(&r.asset_key)) { (r.asset_key) } }
                    td { a href=(partition_href(&r.asset_key, &r.partition_key)) { (show_key(&r.partition_key)) } }
                    td.num { (r.attempt) } td { (r.last_error.as_deref().unwrap_or("")) }
                } } } }
        }
        h2 { "Skipped by the policy" }
        @if b.skipped.as_array().is_none_or(Vec::is_empty) && b.skipped.as_object().is_none_or(serde_json::Map::is_empty) { p { "Nothing." } }
        @else { pre { (serde_json::to_string_pretty(&b.skipped).unwrap_or_default()) } }
    };
    Ok(page("Backfill", "/backfills", !b.status.is_terminal(), body))
}

// ---------------------------------------------------------------------------------------------
// Automation

pub(crate) async fn automation(State(app): State<Shared>) -> PageResult {
    let states = app.store.instigators().await?;
    let now = app.clock.now();
    let state_of = |name: &str| states.iter().find(|s| s.name == name);
    let mut ticks = std::collections::BTreeMap::new();
    for name in app.automation.schedules.iter().map(|s| &s.name).chain(app.automation.sensors.iter().map(|s| &s.name)) {
        ticks.insert(name.clone(), app.store.ticks(name, None, 10).await?);
    }
    let mut evaluations = Vec::new();
    for (asset, _) in &app.automation.conditions {
        evaluations.extend(app.store.condition_evaluations(asset, None, 5).await?);
    }
    let body = html! {
        h1 { "Automation" }
        h2 { "Schedules" }
        table {
            thead { tr { th { "Schedule" } th { "Status" } th { "Cron" } th { "Timezone" } th { "Last tick" } th { "Next tick" } th { "Selection" } } }
            tbody { @for s in &app.automation.schedules { tr {
                td { a href={ "#ticks-" (urlenc(&s.name)) } { (s.name) } }
                td { (state_of(&s.name).map_or("running (not yet seen by a daemon)", |st| st.status.as_str())) }
                td { code { (s.cron()) } } td { (s.tz.name()) }
                td { (ticks[&s.name].first().map_or("-".to_owned(), |t| time(t.tick_time))) }
                td { (s.next_tick(now).map_or("-".to_owned(), time)) }
                td { code { (s.selection) } }
            } } }
        }
        h2 { "Sensors" }
        table {
            thead { tr { th { "Sensor" } th { "Status" } th.num { "Interval" } th { "Last tick" } th { "Cursor" } } }
            tbody { @for s in &app.automation.sensors { tr {
                td { a href={ "#ticks-" (urlenc(&s.name)) } { (s.name) } }
                td { (state_of(&s.name).map_or("running (not yet seen by a daemon)", |st| st.status.as_str())) }
                td.num { (s.min_interval.as_secs()) " s" }
                td { (ticks[&s.name].first().map_or("-".to_owned(), |t| time(t.tick_time))) }
                td { code { (state_of(&s.name).and_then(|st| st.cursor.clone()).unwrap_or_else(|| "-".into())) } }
            } } }
        }
        h2 { "Ticks" }
        @for (name, list) in &ticks {
            h3 id={ "ticks-" (urlenc(name)) } { (name) }
            @if list.is_empty() { p { "No ticks yet." } } @else {
                ol.ticks { @for t in list { li class={"tick " (t.status)} {
                    span.when { (time(t.tick_time)) } " " span class={"badge tick-" (t.status)} { (t.status) } " "
                    (t.requests) " requests " (t.message)
                    @if let Some(r) = t.run_id { " · " a href=(run_href(r)) { "run " (short(&r.to_string())) } }
                } } }
            }
        }
        h2 { "Condition evaluations" }
        @if evaluations.is_empty() { p { "None yet." } } @else {
            table { thead { tr { th { "Evaluated" } th { "Asset" } th { "Partition" } th { "Condition" } th { "Requested" } th { "Reason" } } }
                tbody { @for e in &evaluations { tr {
                    td { (time(e.evaluated_at)) }
                    td { a href=(asset_href(&e.asset_key)) { (e.asset_key) } }
                    td { a href=(partition_href(&e.asset_key, &e.partition_key)) { (show_key(&e.partition_key)) } }
                    td { (e.condition) } td { (if e.requested { "yes" } else { "no" }) } td { (e.reason) }
                } } } }
        }
    };
    Ok(page("Automation", "/automation", false, body))
}

// ---------------------------------------------------------------------------------------------
// Queue

pub(crate) async fn queue(State(app): State<Shared>) -> PageResult {
    let pools = app.store.pools().await?;
    let workers = app.store.lease_holders().await?;
    let mut by_state = Vec::new();
    for state in [lineage::RequestState::Running, lineage::RequestState::Available, lineage::RequestState::Blocked] {
        by_state.push((state, app.store.requests(None, Some(state), None, 500).await?));
    }
    let body = html! {
        h1 { "Queue" }
        p { "Open requests by state (at most 500 each are listed), pools and the workers holding leases. This page refreshes itself." }
        h2 { "Requests" }
        table {
            thead { tr { th { "State" } th.num { "Requests" } } }
            tbody { @for (s, list) in &by_state { tr { td { (s) } td.num { (list.len()) @if list.len() == 500 { "+" } } } } }
        }
        @for (s, list) in &by_state { @if !list.is_empty() {
            h3 { (s) }
            table { thead { tr { th { "Request" } th { "Asset" } th { "Partition" } th { "Run" } th.num { "Attempt" } th { "Worker" } th { "Lease until" } } }
                tbody { @for r in list.iter().take(100) { tr {
                    td { code { (short(&r.id.to_string())) } }
                    td { a href=(asset_href(&r.asset_key)) { (r.asset_key) } }
                    td { a href=(partition_href(&r.asset_key, &r.partition_key)) { (show_key(&r.partition_key)) } }
                    td { a href=(run_href(r.run_id)) { (short(&r.run_id.to_string())) } }
                    td.num { (r.attempt) " / " (r.max_attempts) }
                    td { (r.lease_owner.as_deref().unwrap_or("-")) }
                    td { (r.lease_expires_at.map_or("-".to_owned(), time)) }
                } } } }
        } }
        h2 { "Pools" }
        @if pools.is_empty() { p { "No pool has a limit." } } @else {
            table { thead { tr { th { "Pool" } th.num { "Limit" } th.num { "Running" } } }
                tbody { @for p in &pools { tr { td { (p.name) } td.num { (p.slot_limit) } td.num { (p.running) } } } } }
        }
        h2 { "Workers holding leases" }
        @if workers.is_empty() { p { "None: no request is running." } } @else {
            p { "A worker's heartbeat extends its leases; a lease that runs out is reclaimed by another worker." }
            table { thead { tr { th { "Worker" } th.num { "Running" } th { "Leases until" } } }
                tbody { @for w in &workers {
                    @let held: Vec<&lineage::RequestRecord> = by_state[0].1.iter().filter(|r| r.lease_owner.as_deref() == Some(w.as_str())).collect();
                    tr { td { code { (w) } } td.num { (held.len()) }
                        td { (held.iter().filter_map(|r| r.lease_expires_at).max().map_or("-".to_owned(), time)) } }
                } } }
        }
    };
    Ok(page("Queue", "/queue", true, body))
}

#[cfg(test)]
mod tests {
    use engine::PartitionsDef;
    use engine::status::{PartitionReport, PartitionStatus};

    fn report(partition: &str, status: PartitionStatus) -> PartitionReport {
        PartitionReport { partition: partition.to_owned(), status, stale_causes: Vec::new(), late_since: None }
    }

    /// The matrix of a realm × month asset: a row per realm in order, a column per month from
    /// the first, runs of one status drawn as one rectangle linking to the run's first cell.
    #[test]
    fn a_two_dimensional_asset_is_drawn_as_a_matrix() {
        let def = PartitionsDef::multi([
            ("realm", PartitionsDef::fixed(["123", "456"])),
            ("month", PartitionsDef::monthly("2025-01-01")),
        ]);
        let m = def.as_multi().unwrap();
        let mut reports = Vec::new();
        for month in ["2025-03", "2025-04", "2025-05"] {
            for realm in ["123", "456"] {
                let status = if realm == "456" && month == "2025-05" {
                    PartitionStatus::Failed
                } else {
                    PartitionStatus::Materialized
                };
                reports.push(report(&format!("month={month}|realm={realm}"), status));
            }
        }
        let (columns, axis, placed) = super::matrix_placement(m, &reports);
        assert_eq!(columns, 3);
        assert_eq!(axis, "month → 2025-03 … 2025-05");
        let rows: Vec<(&str, usize)> = placed.iter().map(|(l, c, _)| (l.as_str(), *c)).collect();
        assert_eq!(
            rows,
            [
                ("realm=123", 0),
                ("realm=123", 1),
                ("realm=123", 2),
                ("realm=456", 0),
                ("realm=456", 1),
                ("realm=456", 2)
            ]
        );
        let svg = super::health_grid("qbo_profit_and_loss", Some(&def), &reports);
        let row_456 = &svg[svg.find("data-row=\"realm=456\"").unwrap()..];
        assert!(row_456.contains("data-status=\"materialized\" data-count=\"2\""), "{row_456}");
        assert!(row_456.contains("data-status=\"failed\" data-count=\"1\""), "{row_456}");
        assert!(
            svg.find("data-row=\"realm=123\"").unwrap() < svg.find("data-row=\"realm=456\"").unwrap(),
            "rows in dimension order"
        );
    }
}
