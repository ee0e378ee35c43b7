//! The web view over real HTTP on loopback: every route's status, content type and headers,
//! escaping, 405, the loopback default, `dev`, and the API returning the CLI's JSON.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::Robo;

const DAY: &str = "2025-12-15";

/// A running `robo-assets ui` (or `dev`), killed on drop.
pub struct Ui {
    pub child: Child,
    pub addr: String,
    /// What it printed before its URL (warnings).
    pub preamble: String,
    pub stderr: BufReader<std::process::ChildStderr>,
}

impl Ui {
    pub fn start(robo: &Robo, args: &[&str]) -> Ui {
        let mut child =
            robo.command(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("robo-assets starts");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr piped"));
        let mut line = String::new();
        let mut preamble = String::new();
        let addr = loop {
            line.clear();
            assert!(stderr.read_line(&mut line).expect("stderr readable") > 0, "exited before listening: {preamble}");
            if let Some(rest) = line.trim().strip_prefix("Web view on http://") {
                break rest.split('/').next().expect("an address").to_owned();
            }
            preamble.push_str(&line);
        };
        Ui { child, addr, preamble, stderr }
    }

    pub fn get(&self, path: &str) -> Response {
        request(&self.addr, "GET", path)
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request with `Connection: close`, read to the end.
pub fn request(addr: &str, method: &str, path: &str) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("a response");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked");
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Response { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("chunk size");
        let n = usize::from_str_radix(size.trim(), 16).expect("hex size");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

/// A store with a bill for DAY and its 24 hours, plus a small backfill.
fn seeded() -> Robo {
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "--partition", DAY, "--with-upstream"]);
    robo.ok(&["backfill", "usage_snapshot", "--from", "2025-12-16T00:00", "--to", "2025-12-16T02:00"]);
    robo
}

fn first_run_id(robo: &Robo) -> String {
    let runs: serde_json::Value = serde_json::from_str(&robo.ok(&["runs", "--json"]).stdout).unwrap();
    runs["runs"].as_array().unwrap().last().unwrap()["run_id"].as_str().unwrap().to_owned()
}

#[test]
fn every_page_is_html_with_a_strict_csp_and_links_to_the_others() {
    let robo = seeded();
    let run = first_run_id(&robo);
    let backfill: serde_json::Value = serde_json::from_str(&robo.ok(&["backfill", "list", "--json"]).stdout).unwrap();
    let backfill = backfill["backfills"][0]["backfill_id"].as_str().unwrap().to_owned();
    let ui = Ui::start(&robo, &["ui", "--bind", "127.0.0.1:0"]);

    let pages = [
        "/".to_owned(),
        "/?select=%2Bstorage_bill".to_owned(),
        "/assets/storage_bill".to_owned(),
        "/assets/usage_snapshot".to_owned(),
        format!("/assets/storage_bill/partition?key={DAY}"),
        "/runs".to_owned(),
        "/runs?status=succeeded".to_owned(),
        format!("/runs/{run}"),
        "/backfills".to_owned(),
        format!("/backfills/{backfill}"),
        "/automation".to_owned(),
        "/queue".to_owned(),
    ];
    for path in &pages {
        let r = ui.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"), "{path}");
        let csp = r.header("content-security-policy").expect("a CSP");
        assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(r.body.starts_with("<!DOCTYPE html>") && r.body.contains("href=\"/runs\""), "{path}");
        assert!(!r.body.contains("<script"), "no script on {path}");
    }
    let css = ui.get("/static/style.css");
    assert_eq!((css.status, css.header("content-type")), (200, Some("text/css; charset=utf-8")));

    // The graph: a node per asset linking to its page, an edge per dependency with an arrowhead.
    let home = ui.get("/").body;
    assert_eq!(home.matches("<g class=\"node ").count(), assets::assets().len(), "{home}");
    assert_eq!(home.matches("<g class=\"edge\"").count(), 5);
    assert_eq!(home.matches("marker-end=\"url(#arrow)\"").count(), 5);
    assert!(home.contains("<a href=\"/assets/storage_bill\">"));
    // A selection narrows it: +storage_bill is the bill and its hours.
    let narrowed = ui.get("/?select=%2Bstorage_bill").body;
    assert_eq!(narrowed.matches("<g class=\"node ").count(), 2);
    // A bad selection says why, with 400.
    let bad = ui.get("/?select=nope_asset");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("nope_asset"), "{}", bad.body);

    // The asset page: definition, the health grid of December with 24 materialized hours on
    // the 15th (one range), links to each materialization's partition and run.
    let asset = ui.get("/assets/usage_snapshot").body;
    assert!(asset.contains("<g class=\"grid-row\" data-row=\"2025-12-15\">"), "{asset}");
    let row = asset.split("data-row=\"2025-12-15\">").nth(1).unwrap().split("</g>").next().unwrap();
    assert!(row.contains("data-status=\"materialized\" data-count=\"24\""), "{row}");
    assert!(asset.contains(&format!("href=\"/runs/{run}\"")), "{asset}");
    // The partition page: its inputs (24 hours) and the bill's current materialization.
    let part = ui.get(&format!("/assets/storage_bill/partition?key={DAY}")).body;
    assert!(part.contains("Inputs (24)") && part.contains("materialized: its code version"), "{part}");
    let hour = ui.get("/assets/usage_snapshot/partition?key=2025-12-15T07%3A00").body;
    assert!(hour.contains("Impact: everything downstream that read it (1)"), "{hour}");
    assert!(part.contains("/assets/usage_snapshot/partition?key=2025-12-15T07%3A00"), "{part}");
    // The run page: a Gantt bar per step (24 hours and the bill).
    let run_page = ui.get(&format!("/runs/{run}")).body;
    assert_eq!(run_page.matches("<rect class=\"gantt-bar succeeded\"").count(), 25, "{run_page}");
    // The backfill page: per-asset progress.
    let bf = ui.get(&format!("/backfills/{backfill}")).body;
    assert!(bf.contains("3 / 3 cells"), "{bf}");
}

#[test]
fn unknown_pages_are_404_and_writes_are_405() {
    let robo = Robo::new();
    let ui = Ui::start(&robo, &["ui", "--bind", "127.0.0.1:0"]);
    assert_eq!(ui.get("/runs/not-a-run").status, 400, "a malformed id is the request's fault");
    for path in ["/nope", "/assets/nope_asset", "/runs/01939c1e-0000-7000-8000-000000000000"] {
        let r = ui.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    }
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in ["/", "/runs", "/api/v1/status", "/nope"] {
            let r = request(&ui.addr, method, path);
            assert_eq!(r.status, 405, "{method} {path}");
            assert_eq!(r.header("allow"), Some("GET, HEAD"));
            assert!(r.header("content-security-policy").is_some());
        }
    }
    let head = request(&ui.addr, "HEAD", "/");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    // A bad partition key is the request's fault.
    let r = ui.get("/assets/storage_bill/partition?key=2025-13-45");
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("2025-13-45"), "{}", r.body);
}

#[test]
fn markup_in_data_renders_as_text() {
    let robo = Robo::new();
    let evil = "<img src=x onerror=alert(1)>";
    robo.ok(&["partitions", "add", "subscriptions", evil, "sub-\"quoted\"&amp"]);
    let ui = Ui::start(&robo, &["ui", "--bind", "127.0.0.1:0"]);
    let asset = ui.get("/assets/graph_provisioning").body;
    assert!(!asset.contains("<img"), "{asset}");
    assert!(asset.contains("&lt;img src=x onerror=alert(1)&gt;"), "{asset}");
    assert!(asset.contains("sub-&quot;quoted&quot;&amp;amp"), "{asset}");
    let encoded: String = evil.bytes().map(|b| format!("%{b:02X}")).collect();
    let part = ui.get(&format!("/assets/graph_provisioning/partition?key={encoded}"));
    assert_eq!(part.status, 200, "{}", part.body);
    assert!(!part.body.contains("<img") && part.body.contains("&lt;img src=x onerror=alert(1)&gt;"), "{}", part.body);
}

#[test]
fn the_api_serves_the_cli_json_bodies() {
    let robo = seeded();
    let run = first_run_id(&robo);
    let ui = Ui::start(&robo, &["ui", "--bind", "127.0.0.1:0"]);
    let cli = |args: &[&str]| -> serde_json::Value { serde_json::from_str(&robo.ok(args).stdout).unwrap() };
    for (path, args) in [
        ("/api/v1/status".to_owned(), vec!["status", "--json"]),
        ("/api/v1/status?select=%2Bstorage_bill".to_owned(), vec!["status", "+storage_bill", "--json"]),
        ("/api/v1/runs".to_owned(), vec!["runs", "--json"]),
        (
            "/api/v1/runs?limit=50&trigger=manual".to_owned(),
            vec!["runs", "--json", "--limit", "50", "--trigger", "manual"],
        ),
        (format!("/api/v1/runs/{run}"), vec!["runs", "show", &run, "--json"]),
        ("/api/v1/schedules".to_owned(), vec!["schedules", "--json"]),
        ("/api/v1/sensors".to_owned(), vec!["sensors", "--json"]),
    ] {
        let r = ui.get(&path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        assert_eq!(r.json(), cli(&args), "{path} = robo-assets {}", args.join(" "));
    }
    let why = ui.get(&format!("/api/v1/assets/storage_bill/partition?key={DAY}")).json();
    assert_eq!(why, cli(&["why", "storage_bill", "-p", DAY, "--json"]));
    // Status as ranges: the 24 hours of the 15th and the 3 backfilled after them are one range
    // of materialized between two of missing.
    let status = ui.get("/api/v1/status?select=usage_snapshot").json();
    let ranges = status[0]["ranges"].as_array().unwrap();
    assert!(
        ranges.len() == 3
            && ranges[1]["first"] == "2025-12-15T00:00"
            && ranges[1]["last"] == "2025-12-16T02:00"
            && ranges[1]["status"] == "materialized"
            && ranges[1]["count"] == 27,
        "{ranges:?}"
    );
    // Errors are JSON objects with a kind.
    let missing = ui.get("/api/v1/runs/01939c1e-0000-7000-8000-000000000000");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["kind"], "not_found");
    let bad = ui.get("/api/v1/status?select=nope_asset");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["kind"], "invalid_input");
    assert!(bad.json()["error"]["message"].as_str().unwrap().contains("nope_asset"));
    // Every API error is a JSON object, extractor and method errors included.
    for (path, status, kind) in [
        ("/api/v1/runs?limit=0", 400, "invalid_input"),
        ("/api/v1/runs?limit=abc", 400, "invalid_input"),
        ("/api/v1/runs/%FF", 400, "invalid_input"),
        ("/api/v1/nope", 404, "not_found"),
    ] {
        let r = ui.get(path);
        assert_eq!((r.status, r.json()["error"]["kind"].as_str()), (status, Some(kind)), "{path}: {}", r.body);
    }
    let post = request(&ui.addr, "POST", "/api/v1/runs");
    assert_eq!((post.status, post.json()["error"]["kind"].as_str()), (405, Some("method_not_allowed")));
}

#[test]
fn runs_are_paged_by_keyset_on_the_cli_and_the_page() {
    let robo = Robo::new();
    for hour in ["00", "01", "02"] {
        robo.ok(&["materialize", "usage_snapshot", "-p", &format!("{DAY}T{hour}:00")]);
    }
    let page = |args: &[&str]| -> serde_json::Value { serde_json::from_str(&robo.ok(args).stdout).unwrap() };
    let first = page(&["runs", "--json", "--limit", "2"]);
    let next = first["next_cursor"].as_str().expect("a next page").to_owned();
    assert_eq!(first["runs"].as_array().unwrap().len(), 2);
    assert_eq!(first["runs"][1]["run_id"], next.as_str());
    let second = page(&["runs", "--json", "--limit", "2", "--before", &next]);
    assert_eq!(second["runs"].as_array().unwrap().len(), 1);
    assert_eq!(second["next_cursor"], serde_json::Value::Null);
    assert!(second["runs"][0]["selection"].as_str().unwrap().contains("usage_snapshot"));

    let ui = Ui::start(&robo, &["ui", "--bind", "127.0.0.1:0"]);
    let html = ui.get("/runs?limit=2").body;
    assert_eq!(html.matches("<td><a href=\"/runs/").count(), 2, "{html}");
    assert!(
        html.contains(&format!(
            "href=\"/runs?before={next}&amp;status=&amp;trigger=&amp;asset=&amp;since=&amp;limit=2\""
        )),
        "{html}"
    );
    assert!(html.contains("3 runs match."), "{html}");
    // By creation time (the tests' clock is 2026-01-15T12:00Z).
    assert_eq!(ui.get("/runs?since=2026-01-15").body.matches("<td><a href=\"/runs/").count(), 3);
    assert!(ui.get("/runs?since=2026-01-16").body.contains("No runs."));
    assert_eq!(ui.get("/runs?since=yesterday").status, 400);
    // Filters: by asset (runs with a step of it) and by trigger.
    let of_hour = ui.get("/runs?asset=usage_snapshot&trigger=manual").body;
    assert_eq!(of_hour.matches("<td><a href=\"/runs/").count(), 3, "{of_hour}");
    let none = ui.get("/runs?asset=storage_bill").body;
    assert!(none.contains("No runs."), "{none}");
    let bad = ui.get("/runs?trigger=nope");
    assert_eq!(bad.status, 400, "{}", bad.body);
    let older = ui.get(&format!("/runs?limit=2&before={next}")).body;
    assert_eq!(older.matches("<td><a href=\"/runs/").count(), 1);
}

#[test]
fn ui_listens_on_loopback_unless_told_otherwise_and_then_warns() {
    let robo = Robo::new();
    let help = robo.ok(&["ui", "--help"]).stdout;
    assert!(help.contains("[default: 127.0.0.1:3000]"), "{help}");
    let open = Ui::start(&robo, &["ui", "--bind", "0.0.0.0:0"]);
    assert!(open.addr.starts_with("0.0.0.0:"), "{}", open.addr);
    assert!(open.preamble.contains("no authentication"), "{}", open.preamble);
    drop(open);
    let local = Ui::start(&robo, &["ui", "--bind", "127.0.0.1:0"]);
    assert!(!local.preamble.contains("no authentication"), "{}", local.preamble);
    drop(local);
    // A taken port is a clear error, exit 2.
    let taken = Ui::start(&robo, &["ui", "--bind", "127.0.0.1:0"]);
    let out = robo.run(&["ui", "--bind", &taken.addr]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains(&format!("cannot listen on {}", taken.addr)), "{}", out.stderr);
}

#[test]
fn dev_runs_daemon_worker_and_view_until_ctrl_c() {
    let robo = Robo::new();
    let mut dev = Ui::start(&robo, &["dev", "--bind", "127.0.0.1:0", "--interval-secs", "1"]);
    let page = dev.get("/automation");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("storage_bill_daily"), "{}", page.body);
    // The daemon ticks: a tick shows up on the page.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dev.get("/automation").body.contains("class=\"tick ") {
        assert!(Instant::now() < deadline, "no tick within a minute");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Ctrl-C stops all three, cleanly.
    let pid = dev.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = dev.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "dev did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    dev.stderr.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{status:?}: {rest}");
    assert!(rest.contains("Daemon stopped."), "{rest}");
    assert!(TcpStream::connect(&dev.addr).is_err(), "the view stopped too");
}

#[test]
fn a_request_naming_another_host_is_refused_against_dns_rebinding() {
    let robo = Robo::new();
    let ui = Ui::start(&robo, &["ui", "--bind", "127.0.0.1:0"]);
    let with_host = |host: &str| {
        let mut stream = TcpStream::connect(&ui.addr).unwrap();
        write!(stream, "GET /api/v1/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        raw.split(' ').nth(1).unwrap().parse::<u16>().unwrap()
    };
    assert_eq!(with_host("evil.example:3000"), 421);
    assert_eq!(with_host("127.0.0.1.evil.example"), 421);
    for ok in ["localhost:3000", "127.0.0.1", "[::1]:8080", ui.addr.as_str(), "LOCALHOST"] {
        assert_eq!(with_host(ok), 200, "{ok}");
    }
    // Markup in the selection (it is echoed in the title and the error) is text.
    let page = ui.get("/?select=%3Cb%3Ex%3C%2Fb%3E");
    assert_eq!(page.status, 400);
    assert!(!page.body.contains("<b>x") && page.body.contains("&lt;b&gt;x"), "{}", page.body);
}

/// Check verdicts and backfill ids as the CLI shows them (issue 16 §1, §3): a failed `warn` check
/// stands out on its asset's page and its run's page, in the CLI's words; a backfill is `bf-…`
/// wherever it is shown, and that form opens its page.
#[test]
fn pages_show_failed_checks_and_backfill_ids_as_the_cli_prints_them() {
    let robo = Robo::new();
    let run = robo.ok(&["materialize", "credit_health", "-p", "2026-01-05", "--json"]);
    let run: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let line =
        "! credit_health 2026-01-05 subscriptions_allocated (warn): acme (sub-acme) has no allocation for 2026-01";
    let shown = robo.ok(&["runs", "show", &run_id]).stdout;
    assert!(shown.contains(&format!("  {line}")), "the CLI's line: {shown}");
    robo.ok(&["backfill", "usage_snapshot", "--from", "2025-12-16T00:00", "--to", "2025-12-16T01:00"]);
    let list: serde_json::Value = serde_json::from_str(&robo.ok(&["backfill", "list", "--json"]).stdout).unwrap();
    let backfill = &list["backfills"][0];
    let id: uuid::Uuid = backfill["backfill_id"].as_str().unwrap().trim_start_matches("bf-").parse().unwrap();
    let listed = robo.ok(&["backfill", "list"]).stdout;
    let short = format!("bf-{}", lineage::short_id(&id));
    assert!(listed.contains(&short), "the CLI lists {short}: {listed}");
    let ui = Ui::start(&robo, &["ui", "--bind", "127.0.0.1:0"]);

    let asset = ui.get("/assets/credit_health").body;
    assert!(asset.contains("<span class=\"badge failed\">1 failed check</span>"), "{asset}");
    assert!(asset.contains("Latest verdicts: <span class=\"check-failed\">1 failed</span>"), "{asset}");
    assert!(asset.contains(&format!("<li class=\"check-failed\">{line}")), "{asset}");
    let run_page = ui.get(&format!("/runs/{run_id}")).body;
    assert!(run_page.contains("<span class=\"check-failed\">3 evaluated, 2 passed, 1 failed</span>"), "{run_page}");
    assert!(run_page.contains(&format!("<li class=\"check-failed\">{line}")), "{run_page}");
    // An asset whose checks all pass has no badge and no list.
    let bill = ui.get("/assets/storage_bill").body;
    assert!(bill.contains("Latest verdicts: <span>-</span>") && !bill.contains("failed check"), "{bill}");

    let backfills = ui.get("/backfills").body;
    assert!(backfills.contains(&format!("<a href=\"/backfills/bf-{id}\"><code>{short}</code></a>")), "{backfills}");
    let page = ui.get(&format!("/backfills/bf-{id}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&format!("Backfill <code>bf-{id}</code>")), "{}", page.body);
    let bf_run = backfill["run_id"].as_str().unwrap();
    let bf_run_page = ui.get(&format!("/runs/{bf_run}")).body;
    assert!(bf_run_page.contains(&format!("<a href=\"/backfills/bf-{id}\"><code>bf-{id}</code></a>")), "{bf_run_page}");
    assert!(!bf_run_page.contains("<h2>Checks</h2>"), "a run without verdicts has no checks section");
}
