-- A run's check verdicts (`runs show`, the `materialize` summary): the latest per (asset,
-- partition, check) of one run is an index range, not a scan of every verdict ever recorded.
CREATE INDEX asset_check_results_run ON asset_check_results (run_id, asset_key, partition_key, check_name, id);
