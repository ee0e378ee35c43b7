-- The outbox rows of the two transitions every step makes, a claim (START) and a completion
-- (COMPLETE), are written by the statement that makes the transition instead of by a second
-- statement (the queue bench lost 7-11 % to those, BENCHMARKS.md). On PostgreSQL that statement
-- is a data-modifying CTE (`CLAIM_WITH_OUTBOX`, `COMPLETE_WITH_OUTBOX` in lineage/src/postgres.rs);
-- SQLite, which has none, uses two triggers (this version's SQLite migration).

-- When the attempt now running was claimed: the START event's time.
ALTER TABLE materialization_requests ADD COLUMN claimed_at TIMESTAMPTZ;
