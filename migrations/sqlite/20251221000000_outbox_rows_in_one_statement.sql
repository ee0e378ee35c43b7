-- The outbox rows of the two transitions every step makes, a claim (START) and a completion
-- (COMPLETE), are written by the statement that makes the transition instead of by a second
-- statement (the queue bench lost 7-11 % to those, BENCHMARKS.md; on SQLite each statement is a
-- round trip to sqlx's worker thread). SQLite has no data-modifying CTEs, so two triggers do it;
-- PostgreSQL wraps the two statements in one (`CLAIM_WITH_OUTBOX`, `COMPLETE_WITH_OUTBOX`). The
-- rarer transitions (a step failed, retried, released or canceled; a run started or ended)
-- write theirs from lineage/src/sql/outbox.rs.

-- When the attempt now running was claimed: the START event's time.
ALTER TABLE materialization_requests ADD COLUMN claimed_at TEXT;

CREATE TRIGGER openlineage_step_start AFTER UPDATE OF state ON materialization_requests
WHEN NEW.state = 'running' AND OLD.state <> 'running'
BEGIN
    INSERT INTO openlineage_outbox (run_id, request_id, attempt, event_type, event_time, asset_key, partition_key)
    VALUES (NEW.run_id, NEW.id, NEW.attempt, 'START', NEW.claimed_at, NEW.asset_key, NEW.partition_key);
END;

-- A completion records the request's materialization: the event's time is when it finished.
CREATE TRIGGER openlineage_step_complete AFTER UPDATE OF materialization_id ON materialization_requests
WHEN NEW.materialization_id IS NOT NULL AND OLD.materialization_id IS NULL
BEGIN
    INSERT INTO openlineage_outbox (run_id, request_id, attempt, event_type, event_time, asset_key, partition_key)
    SELECT NEW.run_id, NEW.id, NEW.attempt, 'COMPLETE', m.finished_at, NEW.asset_key, NEW.partition_key
    FROM materializations m WHERE m.id = NEW.materialization_id;
END;
