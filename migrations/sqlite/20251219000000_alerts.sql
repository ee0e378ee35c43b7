-- Failure alerts: one row each time a run's status becomes failed, written in the transaction that
-- fails it, so an alert is never lost (a crash after the run failed) and never sent for a run that
-- did not fail. The daemon posts each pending row to ROBO_ASSETS_ALERT_WEBHOOK in id order and
-- marks it; a row accepted but not yet marked (a crash in between) is sent again, with the same
-- alert id, so a receiver can drop the duplicate. Sent rows are marked, never deleted here.
CREATE TABLE alerts (
    id                INTEGER PRIMARY KEY,           -- delivery order
    run_id            TEXT NOT NULL,
    failed_at         TEXT NOT NULL,                 -- when the run's status became failed
    delivered_at      TEXT,                          -- sent, or refused for good (last_error says why)
    delivery_attempts INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT
);
CREATE INDEX alerts_pending ON alerts (id) WHERE delivered_at IS NULL;

-- Which process delivers what (`openlineage`, `alerts`): one process per kind at a time, for as
-- long as it renews its lease. Replaces openlineage_shipper, whose holder carries over.
CREATE TABLE delivery_leases (
    name        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    lease_until TEXT NOT NULL
);
INSERT INTO delivery_leases (name, owner, lease_until) SELECT 'openlineage', owner, lease_until FROM openlineage_shipper;
