-- No query reads asset_partitions by (asset, last attempt status) without the partition: every
-- one names the asset and the partitions, which the primary key serves. The index cost an entry
-- per state change (claimed, succeeded, failed) of every partition, and kept PostgreSQL's update
-- of a claimed partition's state from being a heap-only (HOT) update.
DROP INDEX asset_partitions_status;
