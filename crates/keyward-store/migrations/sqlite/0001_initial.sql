-- keyward schema for SQLite.
-- Ids are TEXT (hyphenated lowercase UUIDs, which sort like the UUID bytes, so UUIDv7 ids sort by
-- creation time); times are INTEGER milliseconds since the Unix epoch; scopes, resources,
-- metadata and rate limits are JSON text. Key plaintext is never stored: only its digest.

CREATE TABLE plans (
    id              TEXT    NOT NULL PRIMARY KEY,
    name            TEXT    NOT NULL,
    api_access      INTEGER NOT NULL,
    max_keys        INTEGER,
    key_rate_limit  TEXT    NOT NULL
);

CREATE TABLE workspaces (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    plan_id     TEXT    NOT NULL REFERENCES plans (id),
    environment TEXT    NOT NULL,
    rate_limit  TEXT,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id                TEXT    NOT NULL PRIMARY KEY,
    workspace_id      TEXT    NOT NULL REFERENCES workspaces (id),
    name              TEXT    NOT NULL,
    environment       TEXT    NOT NULL,
    prefix            TEXT    NOT NULL,
    last4             TEXT    NOT NULL,
    digest_hex        TEXT    NOT NULL,
    pepper_id         TEXT,
    scopes            TEXT    NOT NULL,
    resources         TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('active', 'inactive', 'revoked')),
    deleted_at        INTEGER,
    revoked_at        INTEGER,
    created_at        INTEGER NOT NULL,
    created_ip        TEXT,
    updated_at        INTEGER NOT NULL,
    last_used_at      INTEGER,
    expires_at        INTEGER,
    rotated_from      TEXT,
    rotated_to        TEXT,
    grace_ends_at     INTEGER,
    rate_limit        TEXT,
    concurrency_limit INTEGER,
    credits           INTEGER,
    metadata          TEXT    NOT NULL,
    version           INTEGER NOT NULL
);

CREATE UNIQUE INDEX api_keys_digest ON api_keys (digest_hex);
CREATE INDEX api_keys_workspace_id ON api_keys (workspace_id, id);

-- No foreign keys: the audit log outlives what it describes.
CREATE TABLE audit_events (
    id           TEXT    NOT NULL PRIMARY KEY,
    workspace_id TEXT,
    action       TEXT    NOT NULL,
    key_id       TEXT,
    actor_key_id TEXT,
    ip           TEXT,
    user_agent   TEXT,
    request_id   TEXT,
    at           INTEGER NOT NULL
);

CREATE INDEX audit_events_workspace_id ON audit_events (workspace_id, id);
CREATE INDEX audit_events_key_id ON audit_events (key_id, id);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE TABLE usage_daily (
    key_id TEXT    NOT NULL REFERENCES api_keys (id),
    day    TEXT    NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (key_id, day)
) WITHOUT ROWID;
