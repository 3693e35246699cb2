-- Leak reports and imported keys (issue 15, items 1 and 4); see the SQLite migration of the
-- same number for what the columns mean.
ALTER TABLE api_keys ADD COLUMN leaked_at BIGINT;
ALTER TABLE api_keys ADD COLUMN leak_source TEXT;
ALTER TABLE api_keys ADD COLUMN imported_at BIGINT;

-- The announce trigger of 0001, recreated whole with the leak columns added.
DROP TRIGGER api_keys_announce_update ON api_keys;
CREATE TRIGGER api_keys_announce_update AFTER UPDATE ON api_keys FOR EACH ROW
    WHEN ((OLD.workspace_id, OLD.name, OLD.digest_hex, OLD.pepper_id, OLD.scopes, OLD.resources,
           OLD.status, OLD.deleted_at, OLD.revoked_at, OLD.expires_at, OLD.rotated_to,
           OLD.grace_ends_at, OLD.rate_limit, OLD.concurrency_limit, OLD.metadata, OLD.version,
           OLD.refill, OLD.ip_allowlist, OLD.leaked_at, OLD.leak_source)
          IS DISTINCT FROM
          (NEW.workspace_id, NEW.name, NEW.digest_hex, NEW.pepper_id, NEW.scopes, NEW.resources,
           NEW.status, NEW.deleted_at, NEW.revoked_at, NEW.expires_at, NEW.rotated_to,
           NEW.grace_ends_at, NEW.rate_limit, NEW.concurrency_limit, NEW.metadata, NEW.version,
           NEW.refill, NEW.ip_allowlist, NEW.leaked_at, NEW.leak_source))
    EXECUTE FUNCTION keyward_announce_change();
