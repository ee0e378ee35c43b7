//! `/metrics` scraped over real HTTP and read with a real exposition parser (`prometheus-parse`):
//! the queue's depth during a backfill (from `ui`, which runs nothing), then what a worker with
//! `--metrics-bind` observed carrying the backfill out, and Prometheus's naming conventions.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use prometheus_parse::{Sample, Scrape, Value};

use crate::common::Robo;
use crate::web::{Ui, request};

const FROM: &str = "2025-12-01";
const TO: &str = "2025-12-02";

fn parse(body: &str) -> Scrape {
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("a valid exposition")
}

/// Every sample of `metric` whose labels include `labels`.
fn samples<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect()
}

/// The sum of the values of `metric` over the samples matching `labels` (0 when none).
fn total(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    samples(scrape, metric, labels)
        .iter()
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{metric} is not a number: {other:?}"),
        })
        .sum()
}

/// Prometheus's conventions: counters end in `_total`, durations in `_seconds`, every family has
/// help, and no label names a partition, run or request (labels stay bounded).
fn assert_conventions(body: &str) {
    let mut families = 0;
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families += 1;
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(name.starts_with("robo_assets_"), "{name} has the robo_assets_ prefix");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} ends in _total");
            }
            if kind == "histogram" {
                assert!(name.ends_with("_seconds"), "histogram {name} is in seconds");
            }
            assert!(body.contains(&format!("# HELP {name} ")), "{name} has help");
        } else if !line.starts_with('#') && !line.is_empty() {
            for forbidden in ["partition=", "run_id=", "request=", "run="] {
                assert!(!line.contains(forbidden), "unbounded label in {line}");
            }
        }
    }
    // A family with no samples yet (no step has run) is left out, as client libraries do.
    assert!(families >= 3, "the queue's families at least: {body}");
}

#[test]
fn metrics_show_the_queue_during_a_backfill_and_what_a_worker_did() {
    let robo = Robo::new();
    // Two days of the bill with its upstream, submitted for workers: nothing runs yet.
    robo.ok(&["backfill", "+storage_bill", "--from", FROM, "--to", TO, "--detach"]);

    let ui = Ui::start(&robo, &["ui", "--bind", "127.0.0.1:0"]);
    let response = ui.get("/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert_conventions(&response.body);
    let during = parse(&response.body);
    // 48 hourly snapshots can start; the two daily bills wait on them.
    assert_eq!(total(&during, "robo_assets_requests", &[("state", "available")]), 48.0, "{}", response.body);
    assert_eq!(total(&during, "robo_assets_requests", &[("state", "blocked")]), 2.0, "{}", response.body);
    assert_eq!(total(&during, "robo_assets_requests", &[("state", "running")]), 0.0);
    assert_eq!(total(&during, "robo_assets_runs", &[("status", "queued")]), 1.0, "{}", response.body);
    drop(ui);

    // A worker with its own metrics listener carries the backfill out.
    let mut worker = robo
        .command(&["worker", "--metrics-bind", "127.0.0.1:0", "--concurrency", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the worker starts");
    let mut stderr = BufReader::new(worker.stderr.take().expect("stderr piped"));
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).expect("stderr readable") > 0, "the worker exited before listening");
        if let Some(rest) = line.trim().strip_prefix("Metrics on http://") {
            break rest.trim_end_matches("/metrics").to_owned();
        }
    };
    // Scrape until the queue is empty (the store's figures), then read what the worker counted.
    let deadline = Instant::now() + Duration::from_secs(120);
    let after = loop {
        let response = request(&addr, "GET", "/metrics");
        assert_eq!(response.status, 200);
        let scrape = parse(&response.body);
        if total(&scrape, "robo_assets_runs", &[("status", "succeeded")]) == 1.0 {
            assert_conventions(&response.body);
            break scrape;
        }
        assert!(Instant::now() < deadline, "the backfill did not finish: {}", response.body);
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = worker.kill();
    let _ = worker.wait();

    for state in ["available", "blocked", "running"] {
        assert_eq!(total(&after, "robo_assets_requests", &[("state", state)]), 0.0, "nothing {state}");
    }
    let steps =
        |asset| total(&after, "robo_assets_step_duration_seconds_count", &[("asset", asset), ("outcome", "succeeded")]);
    assert_eq!(steps("usage_snapshot"), 48.0);
    assert_eq!(steps("storage_bill"), 2.0);
    assert_eq!(total(&after, "robo_assets_claim_latency_seconds_count", &[]), 50.0, "one claim per cell");
    assert_eq!(total(&after, "robo_assets_step_retries_total", &[]), 0.0);
    assert_eq!(total(&after, "robo_assets_fenced_completions_total", &[]), 0.0);
    let bills = samples(&after, "robo_assets_step_duration_seconds", &[("asset", "storage_bill")]);
    match &bills.first().expect("a histogram for storage_bill").value {
        Value::Histogram(buckets) => {
            assert_eq!(buckets.last().map(|b| (b.less_than, b.count)), Some((f64::INFINITY, 2.0)), "{buckets:?}");
        }
        other => panic!("not a histogram: {other:?}"),
    }
}

#[test]
fn a_metrics_bind_that_is_not_an_address_is_refused() {
    let robo = Robo::new();
    let run = robo.run(&["worker", "--metrics-bind", "nowhere"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("HOST:PORT"), "{}", run.stderr);
    let run = robo.run(&["daemon", "--metrics-bind", "127.0.0.1:99999"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}
