-- Webhooks (keyward_core::webhook): endpoints registered per workspace, the events written in
-- the transaction of the change they describe (the outbox), one delivery per event and
-- endpoint, and each delivery's attempts. Times are milliseconds since the Unix epoch.
ALTER TABLE api_keys ADD COLUMN credits_low_threshold INTEGER;

CREATE TABLE webhook_endpoints (
    id                   TEXT    NOT NULL PRIMARY KEY,
    workspace_id         TEXT    NOT NULL REFERENCES workspaces (id),
    url                  TEXT    NOT NULL,
    description          TEXT    NOT NULL,
    -- JSON array of event type names; [] receives every type.
    events               TEXT    NOT NULL,
    -- The signing secret (whsec_...): the worker needs it to sign, so it is kept as issued.
    secret               TEXT    NOT NULL,
    enabled              BOOLEAN NOT NULL,
    disabled_reason      TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_workspace ON webhook_endpoints (workspace_id, id);

CREATE TABLE webhook_events (
    id           TEXT    NOT NULL PRIMARY KEY,
    workspace_id TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
);

-- retry_from: when the retry window began (creation, or the last resend).
-- seq orders deliveries: per endpoint and ordering key (the key's id, or the workspace's), one
-- goes out after the other.
CREATE TABLE webhook_deliveries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    event_id        TEXT    NOT NULL REFERENCES webhook_events (id),
    endpoint_id     TEXT    NOT NULL,
    ordering_key    TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    created_at      INTEGER NOT NULL,
    retry_from      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, ordering_key, seq);

CREATE TABLE webhook_attempts (
    delivery_id TEXT    NOT NULL,
    number      INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    status      INTEGER,
    error       TEXT,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, number)
);

-- Notices sent once (key.expiring per key and expiry time).
CREATE TABLE webhook_notices (
    name TEXT NOT NULL PRIMARY KEY,
    at   INTEGER NOT NULL
);
