-- The lineage store on PostgreSQL: the same tables, columns and meaning as ../sqlite at the same
-- version (a test checks that the version sets match). Unpartitioned assets use partition_key = ''.

CREATE TABLE runs (
    id          TEXT PRIMARY KEY,                  -- UUIDv7
    status      TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    trigger     TEXT NOT NULL,
    selection   TEXT NOT NULL,
    n_steps     BIGINT NOT NULL,
    tags        JSONB NOT NULL DEFAULT '{}',
    created_at  TIMESTAMPTZ NOT NULL,
    started_at  TIMESTAMPTZ,
    finished_at TIMESTAMPTZ
);
CREATE INDEX runs_status_created ON runs (status, created_at);
CREATE INDEX runs_created ON runs (created_at);

CREATE TABLE run_events (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    ts            TIMESTAMPTZ NOT NULL,
    kind          TEXT NOT NULL,
    asset_key     TEXT,
    partition_key TEXT,
    message       TEXT NOT NULL DEFAULT '',
    body          JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX run_events_run ON run_events (run_id, id);

CREATE TABLE materializations (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset_key       TEXT NOT NULL,
    partition_key   TEXT NOT NULL DEFAULT '',
    run_id          TEXT NOT NULL REFERENCES runs (id),
    attempt         BIGINT NOT NULL,
    data_version    TEXT NOT NULL,
    logical_version TEXT NOT NULL,
    code_version    TEXT NOT NULL,
    n_inputs        BIGINT NOT NULL,
    inputs_hash     TEXT NOT NULL,
    storage_uri     TEXT,
    bytes           BIGINT,
    row_count       BIGINT,
    schema          JSONB,
    metadata        JSONB NOT NULL DEFAULT '{}',
    started_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (run_id, asset_key, partition_key)
);
CREATE INDEX materializations_history ON materializations (asset_key, partition_key, id DESC);

CREATE TABLE materialization_inputs (
    materialization_id          BIGINT NOT NULL REFERENCES materializations (id) ON DELETE CASCADE,
    upstream_asset_key          TEXT NOT NULL,
    upstream_partition_key      TEXT NOT NULL DEFAULT '',
    upstream_materialization_id BIGINT,
    upstream_data_version       TEXT NOT NULL,
    PRIMARY KEY (materialization_id, upstream_asset_key, upstream_partition_key)
);
CREATE INDEX materialization_inputs_upstream ON materialization_inputs (upstream_materialization_id);

CREATE TABLE asset_partitions (
    asset_key                  TEXT NOT NULL,
    partition_key              TEXT NOT NULL DEFAULT '',
    current_materialization_id BIGINT REFERENCES materializations (id),
    data_version               TEXT,
    logical_version            TEXT,
    code_version               TEXT,
    materialized_at            TIMESTAMPTZ,
    last_run_id                TEXT,
    last_attempt_status        TEXT NOT NULL CHECK (last_attempt_status IN ('running', 'materialized', 'failed')),
    last_error                 TEXT,
    prev_attempt_status        TEXT,
    prev_error                 TEXT,
    stale_inputs               BIGINT NOT NULL DEFAULT 0,
    updated_at                 TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (asset_key, partition_key)
);
CREATE INDEX asset_partitions_status ON asset_partitions (asset_key, last_attempt_status);

CREATE TABLE dynamic_partitions (
    partitions_def TEXT NOT NULL,
    partition_key  TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    seq            BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (partitions_def, partition_key)
);
