-- Retention walks the runs that ended before its cutoff in the order they finished, a batch per
-- transaction (lineage/src/sql/retention.rs): each batch seeks here instead of scanning every run.
CREATE INDEX runs_finished ON runs (finished_at, id);
