-- The queue's depth for `/metrics` (`queue_depth`): what waits or runs, by state and pool, read
-- from this index alone however many finished requests the table keeps.
CREATE INDEX requests_waiting ON materialization_requests (state, pool)
    WHERE state IN ('blocked', 'available', 'running');
