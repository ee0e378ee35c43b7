-- Runs are listed newest first by id (UUIDv7: creation order) and paged by keyset
-- (`id < $before`), optionally of one status: an index per status in id order keeps a page of a
-- million runs a range scan.
DROP INDEX runs_status_created;
CREATE INDEX runs_status_id ON runs (status, id);
