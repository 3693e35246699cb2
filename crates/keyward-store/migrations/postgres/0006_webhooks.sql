-- Webhooks (see the SQLite migration of the same number). Webhooks (keyward_core::webhook): endpoints registered per workspace, the events written in
-- the transaction of the change they describe (the outbox), one delivery per event and
-- endpoint, and each delivery's attempts. Times are milliseconds since the Unix epoch.
ALTER TABLE api_keys ADD COLUMN credits_low_threshold BIGINT;

CREATE TABLE webhook_endpoints (
    id                   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    workspace_id         TEXT    NOT NULL REFERENCES workspaces (id),
    url                  TEXT    NOT NULL,
    description          TEXT    NOT NULL,
    -- JSON array of event type names; [] receives every type.
    events               TEXT    NOT NULL,
    -- The signing secret (whsec_...): the worker needs it to sign, so it is kept as issued.
    secret               TEXT    NOT NULL,
    enabled              BOOLEAN NOT NULL,
    disabled_reason      TEXT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_workspace ON webhook_endpoints (workspace_id, id);

CREATE TABLE webhook_events (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    workspace_id TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    created_at   BIGINT NOT NULL
);

-- retry_from: when the retry window began (creation, or the last resend).
-- seq orders deliveries: per endpoint and ordering key (the key's id, or the workspace's), one
-- goes out after the other.
CREATE TABLE webhook_deliveries (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT COLLATE "C" NOT NULL UNIQUE,
    event_id        TEXT    NOT NULL REFERENCES webhook_events (id),
    endpoint_id     TEXT    NOT NULL,
    ordering_key    TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    created_at      BIGINT NOT NULL,
    retry_from      BIGINT NOT NULL,
    delivered_at    BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, ordering_key, seq);

CREATE TABLE webhook_attempts (
    delivery_id TEXT    NOT NULL,
    number      BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    status      BIGINT,
    error       TEXT,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, number)
);

-- Notices sent once (key.expiring per key and expiry time).
CREATE TABLE webhook_notices (
    name TEXT NOT NULL PRIMARY KEY,
    at   BIGINT NOT NULL
);
