-- The request queue: schedules, sensors, backfills and the CLI request materializations; workers
-- claim them with a lease, heartbeat, and complete them fenced on (lease owner, attempt).

CREATE TABLE materialization_requests (
    id                 TEXT PRIMARY KEY,               -- UUIDv7
    idempotency_key    TEXT NOT NULL UNIQUE,           -- a second submission returns the first request
    run_id             TEXT NOT NULL,                  -- requests submitted together form a run
    asset_key          TEXT NOT NULL,
    partition_key      TEXT NOT NULL DEFAULT '',
    origin             TEXT NOT NULL,                  -- manual | schedule | sensor | backfill
    pool               TEXT,                           -- concurrency pool, if the asset has one
    priority           INTEGER NOT NULL DEFAULT 0,
    state              TEXT NOT NULL CHECK (state IN
                           ('blocked', 'available', 'running', 'succeeded', 'failed', 'canceled', 'upstream_failed')),
    pending_deps       INTEGER NOT NULL DEFAULT 0,     -- upstream requests not yet succeeded
    run_at             TEXT NOT NULL,                  -- not before; also the retry time
    attempt            INTEGER NOT NULL DEFAULT 0,     -- incremented by each claim
    max_attempts       INTEGER NOT NULL,
    lease_owner        TEXT,
    lease_expires_at   TEXT,
    cancel_requested   INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT,
    materialization_id INTEGER,
    created_at         TEXT NOT NULL,
    started_at         TEXT,
    finished_at        TEXT,
    CHECK ((state = 'running') = (lease_owner IS NOT NULL))
);
CREATE INDEX requests_claim ON materialization_requests (priority DESC, run_at, id) WHERE state = 'available';
CREATE INDEX requests_leases ON materialization_requests (lease_expires_at) WHERE state = 'running';
CREATE INDEX requests_run ON materialization_requests (run_id, state);
CREATE INDEX requests_key ON materialization_requests (asset_key, partition_key, created_at);

CREATE TABLE request_edges (
    upstream_request_id   TEXT NOT NULL REFERENCES materialization_requests (id),
    downstream_request_id TEXT NOT NULL REFERENCES materialization_requests (id),
    PRIMARY KEY (upstream_request_id, downstream_request_id)
);
CREATE INDEX request_edges_downstream ON request_edges (downstream_request_id);

-- Concurrency pools: at most slot_limit running requests of a pool across all workers.
CREATE TABLE pools (
    name       TEXT PRIMARY KEY,
    slot_limit INTEGER NOT NULL CHECK (slot_limit > 0)
);
