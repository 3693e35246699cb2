-- IP allowlists: a key's own, and its workspace's default for keys with none; JSON arrays of
-- normalised CIDR ranges (`["203.0.113.0/24", "198.51.100.7/32"]`), empty for none.
ALTER TABLE api_keys ADD COLUMN ip_allowlist TEXT NOT NULL DEFAULT '[]';
ALTER TABLE workspaces ADD COLUMN ip_allowlist TEXT NOT NULL DEFAULT '[]';

-- Credits that refill (daily or monthly, set to an amount): the refill's settings as JSON
-- (`{"interval","amount","day"}`), and when the credits were last refilled, in ms since the
-- epoch. A refill is a compare-and-swap on `refilled_at`, so it happens once per period.
ALTER TABLE api_keys ADD COLUMN refill TEXT;
ALTER TABLE api_keys ADD COLUMN refilled_at BIGINT;

-- The allowlist and the refill settings decide verifications: a change to them is announced (`refilled_at`, like
-- credits, has its own writer and is not). Same trigger as in 0001, plus `refill` and `ip_allowlist`.
DROP TRIGGER api_keys_announce_update ON api_keys;
CREATE TRIGGER api_keys_announce_update AFTER UPDATE ON api_keys FOR EACH ROW
    WHEN ((OLD.workspace_id, OLD.name, OLD.digest_hex, OLD.pepper_id, OLD.scopes, OLD.resources,
           OLD.status, OLD.deleted_at, OLD.revoked_at, OLD.expires_at, OLD.rotated_to,
           OLD.grace_ends_at, OLD.rate_limit, OLD.concurrency_limit, OLD.metadata, OLD.version,
           OLD.refill, OLD.ip_allowlist)
          IS DISTINCT FROM
          (NEW.workspace_id, NEW.name, NEW.digest_hex, NEW.pepper_id, NEW.scopes, NEW.resources,
           NEW.status, NEW.deleted_at, NEW.revoked_at, NEW.expires_at, NEW.rotated_to,
           NEW.grace_ends_at, NEW.rate_limit, NEW.concurrency_limit, NEW.metadata, NEW.version,
           NEW.refill, NEW.ip_allowlist))
    EXECUTE FUNCTION keyward_announce_change();
