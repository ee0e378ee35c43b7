-- The claim's START and the completion's COMPLETE rows of the outbox are written with the
-- claim's and the completion's own statements on PostgreSQL (data-modifying CTEs,
-- `CLAIM_WITH_OUTBOX` and `COMPLETE_WITH_OUTBOX` in lineage/src/postgres.rs): no second round
-- trip. SQLite, which has none, writes them with one multi-row INSERT each.

-- When the attempt now running was claimed: the START event's time.
ALTER TABLE materialization_requests ADD COLUMN claimed_at TIMESTAMPTZ;
