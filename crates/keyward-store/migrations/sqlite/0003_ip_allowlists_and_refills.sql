-- IP allowlists: a key's own, and its workspace's default for keys with none; JSON arrays of
-- normalised CIDR ranges (`["203.0.113.0/24", "198.51.100.7/32"]`), empty for none.
ALTER TABLE api_keys ADD COLUMN ip_allowlist TEXT NOT NULL DEFAULT '[]';
ALTER TABLE workspaces ADD COLUMN ip_allowlist TEXT NOT NULL DEFAULT '[]';

-- Credits that refill (daily or monthly, set to an amount): the refill's settings as JSON
-- (`{"interval","amount","day"}`), and when the credits were last refilled, in ms since the
-- epoch. A refill is a compare-and-swap on `refilled_at`, so it happens once per period.
ALTER TABLE api_keys ADD COLUMN refill TEXT;
ALTER TABLE api_keys ADD COLUMN refilled_at INTEGER;

-- The allowlist and the refill settings decide verifications: a change to them is logged (`refilled_at`, like
-- credits, has its own writer and is not). Same trigger as in 0002, plus `refill` and `ip_allowlist`.
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
BEGIN
    INSERT INTO changes (kind, ref) VALUES ('key', OLD.digest_hex);
    INSERT INTO changes (kind, ref) SELECT 'key', NEW.digest_hex WHERE NEW.digest_hex IS NOT OLD.digest_hex;
END;
