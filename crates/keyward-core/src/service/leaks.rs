//! Leak reports: a key found where it should not be (a public repository, a paste) is revoked
//! at once, or flagged for its owner to rotate.

use std::str::FromStr;

use super::{Actor, KeyService};
use crate::error::Error;
use crate::model::{ApiKey, AuditAction, KeyStatus, WorkspaceId};
use crate::secret::ApiKeySecret;
use crate::store::{KeyGuard, StoreError};

/// Longest leak source (a URL) kept on a key; longer ones are cut.
pub const MAX_LEAK_SOURCE_LEN: usize = 2048;

/// What happens to a key a leak report names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeakPolicy {
    /// Revoke it at once (the default): whoever found it can no longer use it. A leaked key is
    /// revoked even when it is its workspace's last key able to manage keys; the operator gets
    /// back in with `keyward root-key --reset`.
    #[default]
    Revoke,
    /// Mark it leaked (`leaked_at`, `leak_source`) and leave it working, for its owner to rotate.
    Flag,
}

impl FromStr for LeakPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "revoke" => Ok(Self::Revoke),
            "flag" => Ok(Self::Flag),
            other => Err(format!("{other:?} is neither `revoke` nor `flag`")),
        }
    }
}

impl KeyService {
    /// Handles one reported token: if it has a key's shape (keyward's format with a valid
    /// checksum, or the [legacy format](crate::LegacyFormat)) and is stored (and not deleted),
    /// marks the key leaked at `source` with a `key.leaked` audit event and, with
    /// [`LeakPolicy::Revoke`], revokes it, bypassing the last-key-admin guard. Returns the key as
    /// it now stands, or `None` (a false positive) when no such key exists.
    ///
    /// `within` limits the search to one workspace's keys that `actor` may act on (an operator's
    /// scanner); any other key answers `None` as if it did not exist. `None` searches every
    /// workspace (a trusted reporter such as GitHub's secret scanning). Reporting a key again
    /// changes nothing but a missing leak mark.
    pub async fn report_leak(
        &self,
        token: &ApiKeySecret,
        source: Option<&str>,
        policy: LeakPolicy,
        within: Option<WorkspaceId>,
        actor: &Actor,
    ) -> Result<Option<ApiKey>, Error> {
        let plain = token.expose_secret();
        let shaped =
            self.format.parse(plain).is_ok() || self.legacy.as_ref().is_some_and(|l| l.matches(plain));
        if !shaped {
            return Ok(None);
        }
        let source = source.map(|s| s.chars().take(MAX_LEAK_SOURCE_LEN).collect::<String>());
        loop {
            let Some(mut key) = self.find_leaked(token).await? else { return Ok(None) };
            if let Some(ws) = within
                && (key.workspace_id != ws || actor.check_acts_on(&key).is_err())
            {
                return Ok(None);
            }
            let now = self.clock.now();
            let expected = key.version;
            let mut changed = false;
            if key.leaked_at.is_none() {
                key.leaked_at = Some(now);
                key.leak_source = source.clone();
                changed = true;
            }
            if policy == LeakPolicy::Revoke && key.status != KeyStatus::Revoked {
                key.status = KeyStatus::Revoked;
                key.revoked_at = Some(now);
                changed = true;
            }
            if !changed {
                return Ok(Some(key.settled(now)));
            }
            key.version += 1;
            key.updated_at = now;
            let ev = self.event(AuditAction::KeyLeaked, Some(key.workspace_id), Some(key.id), actor);
            // No last-key-admin guard: a leaked key is revoked even if it locks the workspace out.
            match self.store.update_key_guarded(&key, expected, &ev, KeyGuard::None).await {
                Ok(()) => {
                    self.notify(&key).await;
                    return Ok(Some(key.settled(now)));
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The stored, not deleted, key behind `token`, under any of the hasher's candidates.
    async fn find_leaked(&self, token: &ApiKeySecret) -> Result<Option<ApiKey>, Error> {
        for hash in self.hasher.candidates(token) {
            if let Some(key) = self.store.find_key_by_digest(&hash.digest).await?
                && key.deleted_at.is_none()
            {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }
}
