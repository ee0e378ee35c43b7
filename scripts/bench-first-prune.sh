#!/usr/bin/env bash
# The first prune of a store that kept everything: two binaries compared (BENCHMARKS.md).
#
#   scripts/bench-first-prune.sh OLD NEW [RUNS]
#
# Seeds one SQLite store (with OLD) holding RUNS finished runs (default 100,000) from three months
# ago, each with one finished request, 10 run events and 4 delivered OpenLineage rows, then, on a
# fresh copy of it per binary, runs `prune --older-than 30d` while a second process takes SQLite's
# write lock every 5 ms (`BEGIN IMMEDIATE; COMMIT`, as a worker's claim or completion does), and
# prints how long the prune took and the longest the writer waited for the lock.
set -euo pipefail
old="$(realpath "$1")" new="$(realpath "$2")" runs="${3:-100000}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/seed" && cd "$work/seed"
"$old" materialize usage_snapshot --partition 2025-12-15T00:00 >/dev/null 2>&1
python3 - "$work/seed/.robo-assets/lineage.db" "$runs" <<'PY'
import datetime, sqlite3, sys, uuid
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
cols = [r[1] for r in c.execute("PRAGMA table_info(materialization_requests)")]
template = dict(zip(cols, c.execute("SELECT * FROM materialization_requests LIMIT 1").fetchone()))
start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=90)
c.execute("BEGIN")
for i in range(n):
    run, t = str(uuid.uuid4()), (start + datetime.timedelta(seconds=i)).isoformat()
    c.execute("INSERT INTO runs (id, status, trigger, selection, n_steps, tags, created_at, started_at, finished_at) "
              "VALUES (?, 'succeeded', 'schedule', 'usage_snapshot', 1, '{}', ?, ?, ?)", (run, t, t, t))
    q = dict(template, id=str(uuid.uuid4()), run_id=run, state="succeeded", idempotency_key=run,
             lease_owner=None, lease_expires_at=None, materialization_id=None)
    c.execute(f"INSERT INTO materialization_requests ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
              [q[k] for k in cols])
    c.executemany("INSERT INTO run_events (run_id, ts, kind, asset_key, partition_key, message) "
                  "VALUES (?, ?, 'step_started', 'usage_snapshot', '2025-12-15T00:00', ?)", [(run, t, "x" * 40)] * 10)
    c.executemany("INSERT INTO openlineage_outbox (run_id, request_id, attempt, event_type, event_time, delivered_at) "
                  "VALUES (?, ?, 1, 'START', ?, ?)", [(run, q["id"], t, t)] * 4)
c.execute("COMMIT")
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
PY
for b in "$old" "$new"; do
  rm -rf "$work/run" && cp -a "$work/seed" "$work/run"
  "$b" list >/dev/null 2>&1  # opens (and migrates) the store before the clock starts
  python3 - "$work/run" "$b" <<'PY'
import sqlite3, subprocess, sys, time
home, binary = sys.argv[1], sys.argv[2]
writer = sqlite3.connect(f"{home}/.robo-assets/lineage.db", timeout=600, isolation_level=None)
start = time.perf_counter()
prune = subprocess.Popen([binary, "prune", "--older-than", "30d"], cwd=home, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
waits = []
while prune.poll() is None:
    t = time.perf_counter()
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("COMMIT")
    waits.append(time.perf_counter() - t)
    time.sleep(0.005)
took = time.perf_counter() - start
total = [l for l in prune.stdout.read().decode().splitlines() if l.startswith("total")]
print(f"{binary}: prune {took:.2f} s, {total[0].split()[-1]} rows; a writer's longest wait {max(waits) * 1e3:.0f} ms ({len(waits)} takes of the lock)")
PY
done
