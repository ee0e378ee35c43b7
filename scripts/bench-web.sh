#!/usr/bin/env bash
# The web view's server times and idle memory (BENCHMARKS.md, "The web view").
#
#   cargo build --release --example synthetic && scripts/bench-web.sh
#
# Fills a fresh lineage store for the synthetic project (examples/synthetic.rs): 1,000 assets
# (SYNTHETIC_ASSETS) materialized as one run of as many steps, an hourly asset with 100,000 partitions of which two
# ranges are materialized, and 1,000,000 runs inserted with SQL; then times each page with
# hyperfine (curl included: the figures are upper bounds of the server's time).
set -euo pipefail
target="${CARGO_TARGET_DIR:-target}"
bin="${BIN:-$target/release/examples/synthetic}"
work="$(mktemp -d)"
trap 'kill "${ui_pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
export ROBO_ASSETS_HOME="$work/home" RUST_LOG=warn
cd "$work"

echo "filling: 1,000 assets in one run"
"$bin" materialize 'tag:kind=synthetic' >/dev/null
run_1000="$("$bin" runs --json --limit 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["run_id"])')"
first="$("$bin" list --json | python3 -c 'import json,sys; print([a for a in json.load(sys.stdin) if a["asset"]=="hourly"][0]["partitions_def"]["start"])')"
echo "filling: hourly ranges (first partition $first)"
"$bin" backfill hourly --from "$first" --to "$(python3 -c "import datetime as d; print((d.datetime.fromisoformat('$first')+d.timedelta(hours=999)).strftime('%Y-%m-%dT%H:%M'))")" >/dev/null
"$bin" backfill hourly --from "$(python3 -c "import datetime as d; print((d.datetime.fromisoformat('$first')+d.timedelta(hours=50000)).strftime('%Y-%m-%dT%H:%M'))")" \
  --to "$(python3 -c "import datetime as d; print((d.datetime.fromisoformat('$first')+d.timedelta(hours=50999)).strftime('%Y-%m-%dT%H:%M'))")" >/dev/null
echo "filling: 1,000,000 runs"
sqlite3 "$ROBO_ASSETS_HOME/lineage.db" <<'SQL'
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)
INSERT INTO runs (id, status, trigger, selection, n_steps, tags, created_at, started_at, finished_at)
SELECT printf('01900000-%04x-7%03x-8000-%012x', i / 65536, i % 4096, i),
       CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'succeeded' END, 'schedule', 'a00001', 1, '{}',
       '2025-01-01T00:00:00+00:00', '2025-01-01T00:00:00+00:00', '2025-01-01T00:00:01+00:00'
FROM n;
SQL

port=3917
"$bin" ui --bind "127.0.0.1:$port" 2>/dev/null &
ui_pid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/static/style.css" && break; sleep 0.1; done
url="http://127.0.0.1:$port"
n="${SYNTHETIC_ASSETS:-1000}"
hyperfine -N --warmup 2 --runs 10 \
  -n "asset graph, $n assets (+1 hourly)" "curl -sf -o /dev/null $url/" \
  -n "asset page, 100,000 hourly partitions" "curl -sf -o /dev/null $url/assets/hourly" \
  -n "runs page over 1,001,001 runs" "curl -sf -o /dev/null $url/runs" \
  -n "runs page, failed only" "curl -sf -o /dev/null $url/runs?status=failed" \
  -n "run page, $n steps" "curl -sf -o /dev/null $url/runs/$run_1000"
sleep 2
echo "ui idle RSS: $(grep VmRSS /proc/$ui_pid/status)"
