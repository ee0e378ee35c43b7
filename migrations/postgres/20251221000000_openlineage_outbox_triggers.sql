-- The outbox rows of the two transitions every step makes, a claim (START) and a completion
-- (COMPLETE), are written by the statement that makes the transition, through a trigger, instead
-- of by a second statement: on SQLite each statement costs a round trip to sqlx's worker thread,
-- on PostgreSQL one over the socket, and these two ran once per claim and per completion batch
-- (the queue bench lost 7-11 %, BENCHMARKS.md). The rows are the same as before; the rarer
-- transitions (a step failed, retried, released or canceled; a run started or ended) still
-- write theirs from `lineage/src/sql/outbox.rs`.

-- When the attempt now running was claimed: the START event's time.
ALTER TABLE materialization_requests ADD COLUMN claimed_at TIMESTAMPTZ;

CREATE FUNCTION openlineage_step_start() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO openlineage_outbox (run_id, request_id, attempt, event_type, event_time, asset_key, partition_key)
    VALUES (NEW.run_id, NEW.id, NEW.attempt, 'START', NEW.claimed_at, NEW.asset_key, NEW.partition_key);
    RETURN NULL;
END
$$;
CREATE TRIGGER openlineage_step_start AFTER UPDATE OF state ON materialization_requests
FOR EACH ROW WHEN (NEW.state = 'running' AND OLD.state <> 'running')
EXECUTE FUNCTION openlineage_step_start();

-- A completion records the request's materialization: the event's time is when it finished.
CREATE FUNCTION openlineage_step_complete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO openlineage_outbox (run_id, request_id, attempt, event_type, event_time, asset_key, partition_key)
    SELECT NEW.run_id, NEW.id, NEW.attempt, 'COMPLETE', m.finished_at, NEW.asset_key, NEW.partition_key
    FROM materializations m WHERE m.id = NEW.materialization_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER openlineage_step_complete AFTER UPDATE OF materialization_id ON materialization_requests
FOR EACH ROW WHEN (NEW.materialization_id IS NOT NULL AND OLD.materialization_id IS NULL)
EXECUTE FUNCTION openlineage_step_complete();
