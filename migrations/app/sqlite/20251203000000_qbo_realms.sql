-- QuickBooks Online companies (realms) connected by `robo-assets qbo connect`: the refresh token
-- that rotates on every refresh (stored in the same transaction that receives it, under the
-- write lock, so two workers never refresh one realm at once), and the access token it bought
-- (valid an hour), shared by every worker until it expires.
CREATE TABLE qbo_realms (
    realm_id          TEXT PRIMARY KEY,
    refresh_token     TEXT NOT NULL,
    access_token      TEXT,
    access_expires_at TEXT,
    connected_at      TEXT NOT NULL,
    refreshed_at      TEXT
);
