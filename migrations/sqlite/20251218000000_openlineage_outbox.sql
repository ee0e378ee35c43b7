-- The OpenLineage outbox: one row per lineage event (a run or a step attempt started, completed,
-- failed or aborted), written in the same transaction as the state change it describes, so an
-- event is never lost and never describes something that did not happen. A row holds the facts;
-- the event's JSON is rendered from them (and the materialization they point at) when it is
-- shipped or exported, the same JSON every time. Delivered rows are marked, never deleted here.
CREATE TABLE openlineage_outbox (
    id                INTEGER PRIMARY KEY,           -- delivery order
    run_id            TEXT NOT NULL,
    request_id        TEXT,                          -- a step's request; NULL for the run's own events
    attempt           INTEGER,                       -- the step's attempt
    event_type        TEXT NOT NULL CHECK (event_type IN ('START', 'COMPLETE', 'FAIL', 'ABORT')),
    event_time        TEXT NOT NULL,
    asset_key         TEXT,
    partition_key     TEXT,
    error             TEXT,                          -- why a step failed or was aborted
    delivered_at      TEXT,
    delivery_attempts INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT                           -- the last delivery failure
);
CREATE INDEX openlineage_outbox_pending ON openlineage_outbox (id) WHERE delivered_at IS NULL;

-- Which process delivers the outbox: one at a time (several daemons may run), for as long as it
-- renews its lease; when it stops renewing, another takes over.
CREATE TABLE openlineage_shipper (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    owner       TEXT NOT NULL,
    lease_until TEXT NOT NULL
);
