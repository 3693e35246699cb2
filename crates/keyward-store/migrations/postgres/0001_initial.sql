-- keyward schema for PostgreSQL.
-- Tables are created in the first schema of the connection's search_path (keyward sets it when
-- opened on a schema), so several keyward deployments, or test runs, can share one database.
-- Ids are TEXT COLLATE "C" (hyphenated lowercase UUIDs: byte order is UUID order, so UUIDv7 ids
-- sort by creation time and keyset pages are stable); times are BIGINT milliseconds since the
-- Unix epoch; scopes, resources, metadata and rate limits are JSON text. Key plaintext is never
-- stored: only its digest. The same row mapping as SQLite reads every table.

CREATE TABLE plans (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name            TEXT    NOT NULL,
    api_access      BOOLEAN NOT NULL,
    max_keys        BIGINT,
    key_rate_limit  TEXT    NOT NULL
);

CREATE TABLE workspaces (
    id          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name        TEXT   NOT NULL,
    plan_id     TEXT COLLATE "C" NOT NULL REFERENCES plans (id),
    environment TEXT   NOT NULL,
    rate_limit  TEXT,
    created_at  BIGINT NOT NULL
);

CREATE INDEX workspaces_created_at ON workspaces (created_at, id);

CREATE TABLE api_keys (
    id                TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    workspace_id      TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    name              TEXT   NOT NULL,
    environment       TEXT   NOT NULL,
    prefix            TEXT   NOT NULL,
    last4             TEXT   NOT NULL,
    digest_hex        TEXT COLLATE "C" NOT NULL,
    pepper_id         TEXT,
    scopes            TEXT   NOT NULL,
    resources         TEXT   NOT NULL,
    status            TEXT   NOT NULL CHECK (status IN ('active', 'inactive', 'revoked')),
    deleted_at        BIGINT,
    revoked_at        BIGINT,
    created_at        BIGINT NOT NULL,
    created_ip        TEXT,
    updated_at        BIGINT NOT NULL,
    last_used_at      BIGINT,
    expires_at        BIGINT,
    rotated_from      TEXT COLLATE "C",
    rotated_to        TEXT COLLATE "C",
    grace_ends_at     BIGINT,
    rate_limit        TEXT,
    concurrency_limit BIGINT,
    credits           BIGINT,
    metadata          TEXT   NOT NULL,
    version           BIGINT NOT NULL
);

CREATE UNIQUE INDEX api_keys_digest ON api_keys (digest_hex);
CREATE INDEX api_keys_workspace_id ON api_keys (workspace_id, id);

-- No foreign keys: the audit log outlives what it describes.
CREATE TABLE audit_events (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    workspace_id TEXT COLLATE "C",
    action       TEXT   NOT NULL,
    key_id       TEXT COLLATE "C",
    actor_key_id TEXT COLLATE "C",
    ip           TEXT,
    user_agent   TEXT,
    request_id   TEXT,
    at           BIGINT NOT NULL
);

CREATE INDEX audit_events_workspace_id ON audit_events (workspace_id, id);
CREATE INDEX audit_events_key_id ON audit_events (key_id, id);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE TABLE usage_daily (
    key_id TEXT COLLATE "C" NOT NULL REFERENCES api_keys (id),
    day    TEXT COLLATE "C" NOT NULL,
    count  BIGINT NOT NULL,
    PRIMARY KEY (key_id, day)
);

-- The change feed. Every change that a verifier may have cached is announced with pg_notify
-- from a trigger, so it is sent when (and only if) the writing transaction commits, whoever
-- wrote it (keyward or an operator's SQL). The channel is `keyward_<schema>` (a digest of the
-- schema name when that would exceed PostgreSQL's 63-byte limit), so deployments sharing a
-- database do not hear each other. Payloads: a key's digest (64 hex characters), or
-- `workspace:<id>` / `plan:<id>`, after which listeners drop everything they cached.
CREATE FUNCTION keyward_announce_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    channel text := CASE WHEN octet_length(TG_TABLE_SCHEMA) <= 55 THEN 'keyward_' || TG_TABLE_SCHEMA
                         ELSE 'keyward_' || md5(TG_TABLE_SCHEMA) END;
BEGIN
    IF TG_TABLE_NAME = 'api_keys' THEN
        PERFORM pg_notify(channel, OLD.digest_hex);
        IF TG_OP = 'UPDATE' AND NEW.digest_hex IS DISTINCT FROM OLD.digest_hex THEN
            PERFORM pg_notify(channel, NEW.digest_hex);
        END IF;
    ELSIF TG_TABLE_NAME = 'workspaces' THEN
        PERFORM pg_notify(channel, 'workspace:' || OLD.id);
    ELSE
        PERFORM pg_notify(channel, 'plan:' || OLD.id);
    END IF;
    RETURN NULL;
END
$$;

-- Credits and the last use have their own writers on the hot path and are not cached state
-- that matters for a decision: changing only those announces nothing.
CREATE TRIGGER api_keys_announce_update AFTER UPDATE ON api_keys FOR EACH ROW
    WHEN ((OLD.workspace_id, OLD.name, OLD.digest_hex, OLD.pepper_id, OLD.scopes, OLD.resources,
           OLD.status, OLD.deleted_at, OLD.revoked_at, OLD.expires_at, OLD.rotated_to,
           OLD.grace_ends_at, OLD.rate_limit, OLD.concurrency_limit, OLD.metadata, OLD.version)
          IS DISTINCT FROM
          (NEW.workspace_id, NEW.name, NEW.digest_hex, NEW.pepper_id, NEW.scopes, NEW.resources,
           NEW.status, NEW.deleted_at, NEW.revoked_at, NEW.expires_at, NEW.rotated_to,
           NEW.grace_ends_at, NEW.rate_limit, NEW.concurrency_limit, NEW.metadata, NEW.version))
    EXECUTE FUNCTION keyward_announce_change();
CREATE TRIGGER api_keys_announce_delete AFTER DELETE ON api_keys FOR EACH ROW
    EXECUTE FUNCTION keyward_announce_change();
CREATE TRIGGER workspaces_announce AFTER UPDATE OR DELETE ON workspaces FOR EACH ROW
    EXECUTE FUNCTION keyward_announce_change();
CREATE TRIGGER plans_announce AFTER UPDATE OR DELETE ON plans FOR EACH ROW
    EXECUTE FUNCTION keyward_announce_change();
