-- The change log: every change a verifier may have cached, numbered, written by triggers in the
-- changing transaction (so changes made by any process on the file, or by direct SQL, are
-- logged too). Verifiers in other processes on the same file (keyward serve, a service using the
-- layer, the CLI) poll it by number and drop what they cached: the SQLite counterpart of
-- PostgreSQL's NOTIFY.
CREATE TABLE changes (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 'key' (ref: the key's digest_hex), 'workspace' or 'plan' (ref: its id).
    kind TEXT NOT NULL CHECK (kind IN ('key', 'workspace', 'plan')),
    ref  TEXT NOT NULL
);

-- Credits and the last use have their own writers on the hot path and are not cached state
-- that matters for a decision: changing only those logs nothing.
CREATE TRIGGER api_keys_log_update AFTER UPDATE ON api_keys FOR EACH ROW
    WHEN OLD.workspace_id IS NOT NEW.workspace_id OR OLD.name IS NOT NEW.name
      OR OLD.digest_hex IS NOT NEW.digest_hex OR OLD.pepper_id IS NOT NEW.pepper_id
      OR OLD.scopes IS NOT NEW.scopes OR OLD.resources IS NOT NEW.resources
      OR OLD.status IS NOT NEW.status OR OLD.deleted_at IS NOT NEW.deleted_at
      OR OLD.revoked_at IS NOT NEW.revoked_at OR OLD.expires_at IS NOT NEW.expires_at
      OR OLD.rotated_to IS NOT NEW.rotated_to OR OLD.grace_ends_at IS NOT NEW.grace_ends_at
      OR OLD.rate_limit IS NOT NEW.rate_limit OR OLD.concurrency_limit IS NOT NEW.concurrency_limit
      OR OLD.metadata IS NOT NEW.metadata OR OLD.version IS NOT NEW.version
BEGIN
    INSERT INTO changes (kind, ref) VALUES ('key', OLD.digest_hex);
    INSERT INTO changes (kind, ref) SELECT 'key', NEW.digest_hex WHERE NEW.digest_hex IS NOT OLD.digest_hex;
END;

CREATE TRIGGER api_keys_log_delete AFTER DELETE ON api_keys FOR EACH ROW
BEGIN
    INSERT INTO changes (kind, ref) VALUES ('key', OLD.digest_hex);
END;

CREATE TRIGGER workspaces_log_update AFTER UPDATE ON workspaces FOR EACH ROW
BEGIN
    INSERT INTO changes (kind, ref) VALUES ('workspace', OLD.id);
END;

CREATE TRIGGER workspaces_log_delete AFTER DELETE ON workspaces FOR EACH ROW
BEGIN
    INSERT INTO changes (kind, ref) VALUES ('workspace', OLD.id);
END;

CREATE TRIGGER plans_log_update AFTER UPDATE ON plans FOR EACH ROW
BEGIN
    INSERT INTO changes (kind, ref) VALUES ('plan', OLD.id);
END;

CREATE TRIGGER plans_log_delete AFTER DELETE ON plans FOR EACH ROW
BEGIN
    INSERT INTO changes (kind, ref) VALUES ('plan', OLD.id);
END;

-- The log keeps the last 10,000 changes; a poller that fell further behind clears its cache.
CREATE TRIGGER changes_prune AFTER INSERT ON changes FOR EACH ROW
    WHEN NEW.seq % 100 = 0
BEGIN
    DELETE FROM changes WHERE seq <= NEW.seq - 10000;
END;
