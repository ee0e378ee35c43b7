//! The web view in real headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them). Without them the tests skip, saying so, unless
//! `CI` is set: then they fail.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::common::Robo;
use crate::web::Ui;

/// A chromedriver process and a headless Chromium session on it; both end on drop.
struct Browser {
    driver: Child,
    client: Option<Client>,
    runtime: tokio::runtime::Runtime,
}

fn find(program: &str) -> Option<String> {
    let out = Command::new("sh").args(["-c", &format!("command -v {program}")]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Browser {
    /// `None` (with the reason on stderr) when Chromium or its driver is missing outside CI.
    fn start() -> Option<Browser> {
        let (driver, chromium) = match (find("chromedriver"), find("chromium").or_else(|| find("chromium-browser"))) {
            (Some(d), Some(c)) => (d, c),
            _ if std::env::var_os("CI").is_some() => {
                panic!("CI is set but chromium or chromedriver is missing (apt install chromium chromium-driver)")
            }
            _ => {
                eprintln!(
                    "skipped: chromium and chromedriver are not installed (apt install chromium chromium-driver)"
                );
                return None;
            }
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(driver)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".to_owned()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"],
            }),
        );
        let client = runtime
            .block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .expect("a Chromium session");
        Some(Browser { driver, client: Some(client), runtime })
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("open")
    }

    fn goto(&self, url: &str) {
        self.runtime.block_on(self.client().goto(url)).expect("page loads");
    }

    fn js(&self, script: &str) -> serde_json::Value {
        self.runtime.block_on(self.client().execute(script, vec![])).expect("script runs")
    }

    fn count(&self, css: &str) -> usize {
        self.runtime.block_on(self.client().find_all(Locator::Css(css))).expect("query").len()
    }

    fn text(&self, css: &str) -> String {
        self.runtime.block_on(async { self.client().find(Locator::Css(css)).await?.text().await }).expect("element")
    }

    fn click(&self, css: &str) {
        self.runtime.block_on(async { self.client().find(Locator::Css(css)).await?.click().await }).expect("click");
    }

    fn url(&self) -> String {
        self.runtime.block_on(self.client().current_url()).expect("url").to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Points along every edge of the asset graph that fall inside a node other than the edge's own
/// ends, measured on the rendered SVG.
const EDGES_UNDER_NODES: &str = r#"
const boxes = [...document.querySelectorAll('svg.asset-graph g.node')]
  .map(g => ({ key: g.dataset.asset, b: g.querySelector('rect.box').getBBox() }));
const bad = [];
for (const e of document.querySelectorAll('svg.asset-graph g.edge')) {
  const path = e.querySelector('path');
  const len = path.getTotalLength();
  for (let i = 0; i <= 400; i++) {
    const p = path.getPointAtLength(len * i / 400);
    for (const n of boxes) {
      if (n.key === e.dataset.from || n.key === e.dataset.to) continue;
      if (p.x > n.b.x && p.x < n.b.x + n.b.width && p.y > n.b.y && p.y < n.b.y + n.b.height) {
        bad.push(`${e.dataset.from}->${e.dataset.to} under ${n.key}`);
      }
    }
  }
}
return [...new Set(bad)];
"#;

#[test]
fn the_graph_grid_gantt_and_escaping_in_chromium() {
    let Some(browser) = Browser::start() else { return };
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "--partition", "2025-12-15", "--with-upstream"]);
    robo.ok(&["backfill", "usage_snapshot", "--from", "2025-12-01T00:00", "--to", "2025-12-31T23:00"]);
    let evil = "<img src=x onerror=alert(1)>";
    robo.ok(&["partitions", "add", "subscriptions", evil]);
    let runs: serde_json::Value = serde_json::from_str(&robo.ok(&["runs", "--json"]).stdout).unwrap();
    let first_run = runs["runs"].as_array().unwrap().last().unwrap()["run_id"].as_str().unwrap().to_owned();
    let ui = Ui::start(&robo, &["ui", "--bind", "127.0.0.1:0"]);
    let base = format!("http://{}", ui.addr);

    // The graph: a node per asset, an arrow per dependency, and no edge under a node.
    browser.goto(&format!("{base}/"));
    assert_eq!(browser.count("svg.asset-graph g.node"), assets::assets().len());
    assert_eq!(browser.count("svg.asset-graph g.edge path[marker-end='url(#arrow)']"), 5);
    assert_eq!(browser.count("svg.asset-graph marker#arrow path"), 1);
    assert_eq!(browser.js(EDGES_UNDER_NODES), json!([]), "edges pass under nodes");
    // The stylesheet applied (the CSP allows it): edges are drawn, not filled black.
    let stroke = browser.js("return getComputedStyle(document.querySelector('g.edge path')).fill");
    assert_eq!(stroke, json!("none"));

    // Clicking an asset opens its page.
    browser.click("svg.asset-graph g.node[data-asset='storage_bill']");
    assert!(browser.url().ends_with("/assets/storage_bill"), "{}", browser.url());
    assert!(browser.text("h1").starts_with("storage_bill"), "{}", browser.text("h1"));

    // December of the hourly snapshots: 31 rows of 24 hours, all 744 materialized.
    browser.goto(&format!("{base}/assets/usage_snapshot"));
    let december = browser.js(
        "const rows = document.querySelectorAll('g.grid-row[data-row^=\"2025-12-\"]');
         let n = 0;
         for (const r of rows) for (const c of r.querySelectorAll('rect[data-status=materialized]')) n += +c.dataset.count;
         return [rows.length, n];",
    );
    assert_eq!(december, json!([31, 744]));

    // The run page: a Gantt bar per step, each with a width.
    browser.goto(&format!("{base}/runs/{first_run}"));
    let bars = browser.js(
        "return [...document.querySelectorAll('svg.gantt rect.gantt-bar')].filter(r => r.getBBox().width > 0).length",
    );
    assert_eq!(bars, json!(25));

    // A partition key with markup is text, and no image element exists.
    let encoded: String = evil.bytes().map(|b| format!("%{b:02X}")).collect();
    browser.goto(&format!("{base}/assets/graph_provisioning/partition?key={encoded}"));
    assert!(browser.text("h1").contains(evil), "{}", browser.text("h1"));
    assert_eq!(browser.count("img"), 0);
}
