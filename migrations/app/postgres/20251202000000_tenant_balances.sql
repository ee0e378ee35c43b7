-- Each tenant's balance, kept in the same transaction as every ledger write, so reading it is a
-- point lookup; credit_health checks it equals the ledger's sum.
ALTER TABLE tenants ADD COLUMN balance_millicredits BIGINT NOT NULL DEFAULT 0;
