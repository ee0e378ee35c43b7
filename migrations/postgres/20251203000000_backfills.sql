-- Backfills: a persisted request to materialize a selection over a partition range. Its cells
-- are requests of one run, keyed `backfill:<id>:<asset>:<partition>`; its progress and status
-- are read from that run and its requests, never stored twice.

CREATE TABLE backfills (
    id             TEXT PRIMARY KEY,              -- UUIDv7
    selection      TEXT NOT NULL,                 -- as the user wrote it
    partition_from TEXT NOT NULL,
    partition_to   TEXT NOT NULL,
    policy         TEXT NOT NULL CHECK (policy IN ('missing', 'failed', 'stale', 'all')),
    run_id         TEXT NOT NULL UNIQUE REFERENCES runs (id),
    cells          BIGINT NOT NULL,               -- cells requested
    skipped        JSONB NOT NULL,                -- [{asset, reason, count, keys}] the policy left out
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX backfills_created ON backfills (created_at);
