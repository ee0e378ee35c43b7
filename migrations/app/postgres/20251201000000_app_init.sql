-- The RoboSystems application database, production edition (PostgreSQL): the same tables and
-- meaning as migrations/app/sqlite at the same version.
-- Money is integer millicredits (1 credit = 1000 millicredits): exact, never floating point.

CREATE TABLE plans (
    id                                TEXT PRIMARY KEY,
    name                              TEXT NOT NULL,
    monthly_millicredits              BIGINT NOT NULL CHECK (monthly_millicredits >= 0),
    included_storage_gb               BIGINT NOT NULL CHECK (included_storage_gb >= 0),
    storage_millicredits_per_gb_day   BIGINT NOT NULL CHECK (storage_millicredits_per_gb_day >= 0)
);

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE subscriptions (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    plan_id    TEXT NOT NULL REFERENCES plans (id),
    status     TEXT NOT NULL CHECK (status IN ('provisioning', 'active', 'canceled')),
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX subscriptions_tenant ON subscriptions (tenant_id);

CREATE TABLE graphs (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    subscription_id TEXT REFERENCES subscriptions (id),
    status          TEXT NOT NULL CHECK (status IN ('active', 'deleted')),
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX graphs_tenant ON graphs (tenant_id);

-- Append-only: rows are never deleted. A re-materialization that changes a charge revises the
-- amount of the same keyed entry (revision + 1) and keeps the old amount in
-- credit_ledger_revisions, so the audit trail is complete and nothing is counted twice.
CREATE TABLE credit_ledger (
    id                  BIGSERIAL PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    idempotency_key     TEXT NOT NULL UNIQUE,
    kind                TEXT NOT NULL,               -- storage_charge | allocation | overage
    period              TEXT NOT NULL,               -- the partition it belongs to (2025-12-15)
    amount_millicredits BIGINT NOT NULL,             -- negative = debit
    description         TEXT NOT NULL,
    revision            BIGINT NOT NULL DEFAULT 1,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX credit_ledger_tenant ON credit_ledger (tenant_id);
CREATE INDEX credit_ledger_kind_period ON credit_ledger (kind, period);

CREATE TABLE credit_ledger_revisions (
    ledger_id           BIGINT NOT NULL REFERENCES credit_ledger (id),
    revision            BIGINT NOT NULL,
    amount_millicredits BIGINT NOT NULL,
    replaced_at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (ledger_id, revision)
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    name       TEXT NOT NULL,
    expires_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);
