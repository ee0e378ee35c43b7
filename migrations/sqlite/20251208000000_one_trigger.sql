-- A run's trigger and its requests' origin were one concept under two names: one name now.
ALTER TABLE materialization_requests RENAME COLUMN origin TO trigger;
