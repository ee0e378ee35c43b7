-- Staleness maintained when a materialization is recorded, not recomputed on every read.
--
-- asset_partitions.stale_inputs counts the inputs of the current materialization whose upstream
-- partition now has another data version than the one read (or none). Recording a new data
-- version of (A, p) adjusts only the current readers of (A, p), found through these two indexes;
-- identical bytes (the same data version) change nothing downstream.
CREATE INDEX materialization_inputs_upstream_key
    ON materialization_inputs (upstream_asset_key, upstream_partition_key);
CREATE INDEX asset_partitions_current ON asset_partitions (current_materialization_id);

-- blake3 over the ordered (asset, partition) keys the current materialization read: when the
-- definition's mappings now give other keys, its dependencies were added or removed.
ALTER TABLE asset_partitions ADD COLUMN input_keys_hash TEXT;

-- wipe keeps the materializations it forgets (ids stay unique and monotonic, so cursors and
-- the inputs that name them stay valid), hidden from history.
ALTER TABLE materializations ADD COLUMN wiped_at TIMESTAMPTZ;

-- Counts for what was recorded before this migration.
UPDATE asset_partitions SET stale_inputs = (
    SELECT COUNT(*) FROM materialization_inputs mi
    LEFT JOIN asset_partitions up
      ON up.asset_key = mi.upstream_asset_key AND up.partition_key = mi.upstream_partition_key
    WHERE mi.materialization_id = asset_partitions.current_materialization_id
      AND (up.data_version IS NULL OR up.data_version <> mi.upstream_data_version))
WHERE current_materialization_id IS NOT NULL;
