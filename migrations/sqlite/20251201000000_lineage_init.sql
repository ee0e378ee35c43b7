-- The lineage store: runs and their event log, materializations with the exact inputs they
-- read, and one current-state row per (asset, partition), written in the same transaction as
-- the materialization that changes it. Unpartitioned assets use partition_key = ''.

CREATE TABLE runs (
    id          TEXT PRIMARY KEY,                  -- UUIDv7
    status      TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    trigger     TEXT NOT NULL,                     -- manual | schedule | sensor | backfill
    selection   TEXT NOT NULL,
    n_steps     INTEGER NOT NULL,
    tags        TEXT NOT NULL DEFAULT '{}',        -- JSON object
    created_at  TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT
);
CREATE INDEX runs_status_created ON runs (status, created_at);
CREATE INDEX runs_created ON runs (created_at);

CREATE TABLE run_events (
    id            INTEGER PRIMARY KEY,
    run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    ts            TEXT NOT NULL,
    kind          TEXT NOT NULL,                   -- run_started | step_started | step_succeeded | ...
    asset_key     TEXT,
    partition_key TEXT,
    message       TEXT NOT NULL DEFAULT '',
    body          TEXT NOT NULL DEFAULT '{}'       -- JSON object
);
CREATE INDEX run_events_run ON run_events (run_id, id);

CREATE TABLE materializations (
    id              INTEGER PRIMARY KEY,           -- global, monotonic: the storage cursor
    asset_key       TEXT NOT NULL,
    partition_key   TEXT NOT NULL DEFAULT '',
    run_id          TEXT NOT NULL REFERENCES runs (id),
    attempt         INTEGER NOT NULL,
    data_version    TEXT NOT NULL,                 -- blake3 of the output bytes
    logical_version TEXT NOT NULL,                 -- blake3 of code version and ordered input versions
    code_version    TEXT NOT NULL,
    n_inputs        INTEGER NOT NULL,
    inputs_hash     TEXT NOT NULL,                 -- blake3 over the ordered (asset, partition, data version) read
    storage_uri     TEXT,
    bytes           INTEGER,
    row_count       INTEGER,
    schema          TEXT,                          -- JSON
    metadata        TEXT NOT NULL DEFAULT '{}',    -- JSON object
    started_at      TEXT NOT NULL,
    finished_at     TEXT NOT NULL,
    UNIQUE (run_id, asset_key, partition_key)
);
CREATE INDEX materializations_history ON materializations (asset_key, partition_key, id DESC);

CREATE TABLE materialization_inputs (
    materialization_id          INTEGER NOT NULL REFERENCES materializations (id) ON DELETE CASCADE,
    upstream_asset_key          TEXT NOT NULL,
    upstream_partition_key      TEXT NOT NULL DEFAULT '',
    upstream_materialization_id INTEGER,
    upstream_data_version       TEXT NOT NULL,
    PRIMARY KEY (materialization_id, upstream_asset_key, upstream_partition_key)
);
CREATE INDEX materialization_inputs_upstream ON materialization_inputs (upstream_materialization_id);

CREATE TABLE asset_partitions (
    asset_key                  TEXT NOT NULL,
    partition_key              TEXT NOT NULL DEFAULT '',
    current_materialization_id INTEGER REFERENCES materializations (id),
    data_version               TEXT,
    logical_version            TEXT,
    code_version               TEXT,
    materialized_at            TEXT,
    last_run_id                TEXT,
    last_attempt_status        TEXT NOT NULL CHECK (last_attempt_status IN ('running', 'materialized', 'failed')),
    last_error                 TEXT,
    -- The attempt status and error before the running attempt, restored if it is canceled.
    prev_attempt_status        TEXT,
    prev_error                 TEXT,
    stale_inputs               INTEGER NOT NULL DEFAULT 0,
    updated_at                 TEXT NOT NULL,
    PRIMARY KEY (asset_key, partition_key)
);
CREATE INDEX asset_partitions_status ON asset_partitions (asset_key, last_attempt_status);

CREATE TABLE dynamic_partitions (
    partitions_def TEXT NOT NULL,
    partition_key  TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (partitions_def, partition_key)
);
