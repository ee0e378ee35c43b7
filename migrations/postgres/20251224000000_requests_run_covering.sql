-- A run's requests counted by asset and state (`backfill list`, `backfill status`, the web view's
-- backfills): with the asset in the run's index the count reads the index alone, instead of
-- fetching every request of the run from the table (74 ms for a year of the chain, 9,125
-- requests, BENCHMARKS.md). The asset never changes, so the wider entry costs no extra write.
DROP INDEX requests_run;
CREATE INDEX requests_run ON materialization_requests (run_id, state, asset_key);
