-- Plaid items linked with `robo-assets plaid link ITEM`: the access token each sync sends.
-- The token is a secret: it is read only to call Plaid and never shown.
CREATE TABLE plaid_items (
    item_id TEXT PRIMARY KEY,
    access_token TEXT NOT NULL,
    linked_at TIMESTAMPTZ NOT NULL
);
