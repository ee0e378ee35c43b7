-- A run started by an in-process `materialize` belongs to that process: only its worker claims
-- the run's requests, and it renews the run's lease by heartbeat. When the process dies (seen at
-- once on its host, elsewhere when the lease expires), the run ends canceled with everything of
-- it that had not finished: nothing of it runs later. Runs without an owner (submitted runs,
-- backfills, schedules, sensors) are claimed by any worker.
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN owner_expires_at TEXT;
CREATE INDEX runs_owned ON runs (owner_expires_at) WHERE owner IS NOT NULL AND status IN ('queued', 'running');
