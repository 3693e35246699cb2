-- Leak reports and imported keys (issue 15, items 1 and 4).
-- leaked_at / leak_source: when a leak report named the key and where the leak was found (a
-- flagged key keeps working; a revoked one is revoked as usual). imported_at: the key was
-- issued by another system and imported by its SHA-256 digest (pepper_id NULL), so its prefix
-- and last4 are what the import said, or empty.
ALTER TABLE api_keys ADD COLUMN leaked_at INTEGER;
ALTER TABLE api_keys ADD COLUMN leak_source TEXT;
ALTER TABLE api_keys ADD COLUMN imported_at INTEGER;

-- The change-log trigger of 0002, recreated whole with the leak columns added: a verifier that
-- cached a key must hear that it was reported leaked, even when the mark was set by direct SQL.
-- (imported_at never changes after the insert.)
DROP TRIGGER api_keys_log_update;
CREATE TRIGGER api_keys_log_update AFTER UPDATE ON api_keys FOR EACH ROW
    WHEN OLD.workspace_id IS NOT NEW.workspace_id OR OLD.name IS NOT NEW.name
      OR OLD.digest_hex IS NOT NEW.digest_hex OR OLD.pepper_id IS NOT NEW.pepper_id
      OR OLD.scopes IS NOT NEW.scopes OR OLD.resources IS NOT NEW.resources
      OR OLD.status IS NOT NEW.status OR OLD.deleted_at IS NOT NEW.deleted_at
      OR OLD.revoked_at IS NOT NEW.revoked_at OR OLD.expires_at IS NOT NEW.expires_at
      OR OLD.rotated_to IS NOT NEW.rotated_to OR OLD.grace_ends_at IS NOT NEW.grace_ends_at
      OR OLD.rate_limit IS NOT NEW.rate_limit OR OLD.concurrency_limit IS NOT NEW.concurrency_limit
      OR OLD.metadata IS NOT NEW.metadata OR OLD.version IS NOT NEW.version
      OR OLD.refill IS NOT NEW.refill OR OLD.ip_allowlist IS NOT NEW.ip_allowlist
      OR OLD.leaked_at IS NOT NEW.leaked_at OR OLD.leak_source IS NOT NEW.leak_source
BEGIN
    INSERT INTO changes (kind, ref) VALUES ('key', OLD.digest_hex);
    INSERT INTO changes (kind, ref) SELECT 'key', NEW.digest_hex WHERE NEW.digest_hex IS NOT OLD.digest_hex;
END;
