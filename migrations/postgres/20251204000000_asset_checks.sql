-- Asset checks: named verdicts on a materialization's data (credit_health's ledger checks, …).
-- A failing check of severity 'error' fails its step, so nothing downstream reads the data.

CREATE TABLE asset_check_results (
    id            BIGSERIAL PRIMARY KEY,
    asset_key     TEXT NOT NULL,
    partition_key TEXT NOT NULL DEFAULT '',
    run_id        TEXT NOT NULL,
    check_name    TEXT NOT NULL,
    severity      TEXT NOT NULL CHECK (severity IN ('warn', 'error')),
    passed        BOOLEAN NOT NULL,
    message       TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX asset_check_results_asset ON asset_check_results (asset_key, partition_key, id);
