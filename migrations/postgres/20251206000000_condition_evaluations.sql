-- Declarative automation conditions (eager, on_missing, on_cron): every evaluation of an
-- (asset, partition) is stored with its reason, so `robo-assets why` can say why it was or was
-- not requested. Written in the same transaction as the daemon's tick.

CREATE TABLE condition_evaluations (
    id            BIGSERIAL PRIMARY KEY,
    asset_key     TEXT NOT NULL,
    partition_key TEXT NOT NULL DEFAULT '',
    condition     TEXT NOT NULL,
    evaluated_at  TIMESTAMPTZ NOT NULL,
    requested     BOOLEAN NOT NULL,
    reason        TEXT NOT NULL,
    request_key   TEXT
);
CREATE INDEX condition_evaluations_partition ON condition_evaluations (asset_key, partition_key, id);
