-- Automation: schedules and sensors ("instigators") request materializations; they never run
-- anything. A tick row is unique per (instigator, tick time): it is the lock that makes two
-- daemons on one database create one set of requests per tick. A sensor's cursor moves in the
-- same transaction as its tick and its requests.

CREATE TABLE instigators (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('schedule', 'sensor')),
    status      TEXT NOT NULL CHECK (status IN ('running', 'stopped')),
    cursor      TEXT,
    created_at  TEXT NOT NULL,               -- no catch-up before this
    updated_at  TEXT NOT NULL
);

CREATE TABLE ticks (
    id          INTEGER PRIMARY KEY,
    instigator  TEXT NOT NULL REFERENCES instigators (name),
    tick_time   TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('requested', 'skipped', 'failed')),
    run_id      TEXT,                       -- the run of its requests, if any
    requests    BIGINT NOT NULL DEFAULT 0,  -- requests it created
    message     TEXT NOT NULL DEFAULT '',   -- why skipped or failed; what was requested
    cursor      TEXT,                       -- a sensor's cursor after this tick
    created_at  TEXT NOT NULL,
    UNIQUE (instigator, tick_time)
);
CREATE INDEX ticks_recent ON ticks (instigator, tick_time DESC);
