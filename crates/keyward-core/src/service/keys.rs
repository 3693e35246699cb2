//! The key lifecycle: create, read, list, change, activate, deactivate, revoke, delete, rotate.

use chrono::{DateTime, Duration, Utc};

use super::cursor::decode_cursor;
use super::cursor::next_cursor;
use super::validate::{page_size, validate_expiry, validate_metadata, validate_name, validate_resources};
use super::{Actor, CreatedKey, KeyFilter, KeyPatch, KeyService, NewKey, Page};
use crate::clock::truncate_ms;
use crate::error::{Error, ErrorCode};
use crate::hash::KeyHash;
use crate::model::{ApiKey, AuditAction, CreditRefill, KeyId, KeyStatus, Plan, Workspace, WorkspaceId};
use crate::secret::ApiKeySecret;
use crate::store::{KeyGuard, KeyListQuery, StoreError};

impl KeyService {
    /// Creates a key; the plaintext is in the result and nowhere else.
    ///
    /// Errors: `VALIDATION_FAILED`, `NOT_FOUND` (workspace), `FEATURE_NOT_IN_PLAN`,
    /// `KEY_LIMIT_REACHED`, `INSUFFICIENT_SCOPE`/`RESOURCE_NOT_ALLOWED` (wider than the actor).
    pub async fn create_key(&self, mut new: NewKey, actor: &Actor) -> Result<CreatedKey, Error> {
        let now = self.clock.now();
        validate_new_key(&mut new, actor, now)?;
        let ws = self.get_workspace(new.workspace_id).await?;
        let plan = self.plan_allowing_api(&ws).await?;

        let secret = self.format.generate(ws.environment.key_environment());
        let key = new_record(
            new,
            &ws,
            display_prefix(&secret),
            display_last4(&secret),
            self.hasher.hash(&secret),
            actor,
            now,
        );
        let ev = self.event(AuditAction::KeyCreated, Some(ws.id), Some(key.id), actor);
        self.store.insert_key(&key, plan.max_keys, &ev).await?;
        // No cache holds a key just made; listeners hear of it all the same (the webhook worker
        // wakes for its `key.created`).
        self.notify(&key).await;
        Ok(CreatedKey { key, secret })
    }

    pub(super) async fn plan_allowing_api(&self, ws: &Workspace) -> Result<Plan, Error> {
        let plan = self
            .store
            .get_plan(&ws.plan_id)
            .await?
            .ok_or_else(|| Error::internal(format!("workspace {} names a missing plan", ws.id)))?;
        if !plan.api_access {
            return Err(Error::new(
                ErrorCode::FeatureNotInPlan,
                "the workspace's plan does not include API access",
            )
            .with_detail("plan", plan.id.0.clone()));
        }
        Ok(plan)
    }

    /// A key of `workspace`; deleted keys and other workspaces' keys are `NOT_FOUND`. A refill
    /// that is due happens first, so the credits read are current.
    pub async fn get_key(&self, workspace: WorkspaceId, id: KeyId) -> Result<ApiKey, Error> {
        let now = self.clock.now();
        match self.store.get_key(id).await? {
            Some(mut k) if k.workspace_id == workspace && k.deleted_at.is_none() => {
                if let Some(balance) = self.store.refill_if_due(&k, now).await? {
                    (k.credits, k.refilled_at) = (Some(balance), Some(now));
                }
                Ok(k.settled(now))
            }
            _ => Err(Error::not_found("key")),
        }
    }

    /// A page of a workspace's keys, newest first.
    pub async fn list_keys(&self, workspace: WorkspaceId, filter: KeyFilter) -> Result<Page<ApiKey>, Error> {
        let limit = page_size(filter.limit)?;
        let before = filter.cursor.as_deref().map(decode_cursor).transpose()?.map(KeyId);
        let mut items = self
            .store
            .list_keys(&KeyListQuery {
                workspace_id: workspace,
                status: filter.status,
                now: self.clock.now(),
                before,
                limit: limit + 1,
            })
            .await?;
        let next_cursor = next_cursor(&mut items, limit, |k| k.id.0);
        let now = self.clock.now();
        Ok(Page { items: items.into_iter().map(|k| k.settled(now)).collect(), next_cursor })
    }

    /// Changes a key's settings; its value stays the same.
    pub async fn update_key(
        &self,
        workspace: WorkspaceId,
        id: KeyId,
        mut patch: KeyPatch,
        actor: &Actor,
    ) -> Result<ApiKey, Error> {
        let now = self.clock.now();
        patch.expires_at = patch.expires_at.map(|e| e.map(truncate_ms));
        if let Some(n) = &patch.name {
            validate_name(n)?;
        }
        if let Some(r) = &patch.resources {
            validate_resources(r)?;
        }
        if let Some(m) = &patch.metadata {
            validate_metadata(m)?;
        }
        if let Some(e) = patch.expires_at {
            validate_expiry(e, now)?;
        }
        if let Some(Some(p)) = &patch.rate_limit {
            p.validate().map_err(|r| Error::validation("rateLimit", r))?;
        }
        if patch.concurrency_limit == Some(Some(0)) {
            return Err(Error::validation("concurrencyLimit", "must be at least 1"));
        }
        if let Some(Some(r)) = &patch.refill {
            validate_refill(r)?;
        }
        if let Some(Some(t)) = patch.credits_low_threshold {
            validate_credits_low(t)?;
        }
        let ip_allowlist = patch.ip_allowlist.take().map(validate_ip_allowlist).transpose()?;
        self.modify(workspace, id, actor, AuditAction::KeyUpdated, |key| {
            if key.status == KeyStatus::Revoked {
                return Err(Error::new(ErrorCode::Conflict, "a revoked key cannot be changed"));
            }
            let scopes = patch.scopes.clone().unwrap_or_else(|| key.scopes.clone());
            let resources = patch.resources.clone().unwrap_or_else(|| key.resources.clone());
            if patch.scopes.is_some() || patch.resources.is_some() {
                actor.check_grant(&scopes, &resources)?;
            }
            key.scopes = scopes;
            key.resources = resources;
            if let Some(n) = &patch.name {
                key.name = n.clone();
            }
            if let Some(active) = patch.active {
                key.status = if active { KeyStatus::Active } else { KeyStatus::Inactive };
            }
            if let Some(e) = patch.expires_at {
                key.expires_at = e;
            }
            if let Some(r) = &patch.rate_limit {
                key.rate_limit = r.clone();
            }
            if let Some(c) = patch.concurrency_limit {
                key.concurrency_limit = c;
            }
            if let Some(m) = &patch.metadata {
                key.metadata = m.clone();
            }
            if let Some(r) = patch.refill {
                key.refill = r;
            }
            if let Some(t) = patch.credits_low_threshold {
                key.credits_low_threshold = t;
            }
            if let Some(list) = &ip_allowlist {
                key.ip_allowlist = list.clone();
            }
            Ok(true)
        })
        .await
    }

    /// Switches a key on. Revoked keys cannot be.
    pub async fn activate_key(
        &self,
        workspace: WorkspaceId,
        id: KeyId,
        actor: &Actor,
    ) -> Result<ApiKey, Error> {
        self.set_active(workspace, id, actor, true).await
    }

    /// Switches a key off until it is activated again.
    pub async fn deactivate_key(
        &self,
        workspace: WorkspaceId,
        id: KeyId,
        actor: &Actor,
    ) -> Result<ApiKey, Error> {
        self.set_active(workspace, id, actor, false).await
    }

    async fn set_active(
        &self,
        workspace: WorkspaceId,
        id: KeyId,
        actor: &Actor,
        active: bool,
    ) -> Result<ApiKey, Error> {
        let (target, action) = if active {
            (KeyStatus::Active, AuditAction::KeyActivated)
        } else {
            (KeyStatus::Inactive, AuditAction::KeyDeactivated)
        };
        self.modify(workspace, id, actor, action, |key| match key.status {
            KeyStatus::Revoked => {
                Err(Error::new(ErrorCode::Conflict, "a revoked key cannot be activated or deactivated"))
            }
            s if s == target => Ok(false),
            _ => {
                key.status = target;
                Ok(true)
            }
        })
        .await
    }

    /// Revokes a key for good. Revoking a revoked key changes nothing.
    pub async fn revoke_key(
        &self,
        workspace: WorkspaceId,
        id: KeyId,
        actor: &Actor,
    ) -> Result<ApiKey, Error> {
        let now = self.clock.now();
        self.modify(workspace, id, actor, AuditAction::KeyRevoked, |key| {
            if key.status == KeyStatus::Revoked {
                return Ok(false);
            }
            key.status = KeyStatus::Revoked;
            key.revoked_at = Some(now);
            Ok(true)
        })
        .await
    }

    /// Deletes a revoked key (soft: the row stays for the audit log, the API no longer shows it).
    /// `KEY_NOT_REVOKED` (409) unless the key is revoked.
    pub async fn delete_key(&self, workspace: WorkspaceId, id: KeyId, actor: &Actor) -> Result<(), Error> {
        let now = self.clock.now();
        self.modify(workspace, id, actor, AuditAction::KeyDeleted, |key| {
            if key.status != KeyStatus::Revoked {
                return Err(Error::new(
                    ErrorCode::KeyNotRevoked,
                    "only a revoked key can be deleted; revoke it first",
                ));
            }
            key.deleted_at = Some(now);
            Ok(true)
        })
        .await
        .map(drop)
    }

    /// Issues a new value with the same configuration. The old key stops at once, or at the end
    /// of `grace` when one is given (at most the configured maximum).
    pub async fn rotate_key(
        &self,
        workspace: WorkspaceId,
        id: KeyId,
        grace: Option<Duration>,
        actor: &Actor,
    ) -> Result<CreatedKey, Error> {
        let grace = grace.filter(|g| !g.is_zero());
        if let Some(g) = grace
            && (g < Duration::zero() || g > self.max_grace)
        {
            return Err(Error::validation(
                "graceSeconds",
                format!("must be between 0 and {}", self.max_grace.num_seconds()),
            ));
        }
        loop {
            let now = self.clock.now();
            let old = self.get_key(workspace, id).await?;
            if old.status == KeyStatus::Revoked {
                return Err(Error::new(ErrorCode::Conflict, "a revoked key cannot be rotated"));
            }
            if old.rotated_to.is_some() {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    "the key was already rotated; rotate its successor",
                )
                .with_detail("successor", old.rotated_to.map(|k| k.to_string())));
            }
            // Rotating hands out a new plaintext, so the actor must cover the key's powers.
            actor.check_grant(&old.scopes, &old.resources)?;
            let ws = self.get_workspace(workspace).await?;
            self.plan_allowing_api(&ws).await?;

            let secret = self.format.generate(old.environment);
            let new = ApiKey {
                id: KeyId::new(),
                prefix: display_prefix(&secret),
                last4: display_last4(&secret),
                hash: self.hasher.hash(&secret),
                created_at: now,
                created_ip: actor.ip.clone(),
                updated_at: now,
                last_used_at: None,
                rotated_from: Some(old.id),
                rotated_to: None,
                grace_ends_at: None,
                revoked_at: None,
                version: 1,
                // A new value: neither leaked nor imported.
                leaked_at: None,
                leak_source: None,
                imported_at: None,
                ..old.clone()
            };
            let expected = old.version;
            let mut retired = old;
            retired.rotated_to = Some(new.id);
            retired.updated_at = now;
            retired.version += 1;
            match grace {
                None => {
                    retired.status = KeyStatus::Revoked;
                    retired.revoked_at = Some(now);
                }
                Some(g) => retired.grace_ends_at = Some(now + g),
            }
            let ev = self.event(AuditAction::KeyRotated, Some(workspace), Some(retired.id), actor);
            match self.store.rotate_key(&retired, expected, &new, &ev).await {
                Ok(()) => {
                    self.notify(&retired).await;
                    return Ok(CreatedKey { key: new, secret });
                }
                // Someone changed the key meanwhile: re-read and re-check the rules.
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Read-check-write with optimistic concurrency. `change` returns `Ok(false)` when there is
    /// nothing to write (idempotent operations).
    async fn modify<F>(
        &self,
        workspace: WorkspaceId,
        id: KeyId,
        actor: &Actor,
        action: AuditAction,
        mut change: F,
    ) -> Result<ApiKey, Error>
    where
        F: FnMut(&mut ApiKey) -> Result<bool, Error>,
    {
        loop {
            let mut key = self.get_key(workspace, id).await?;
            actor.check_acts_on(&key)?;
            let now = self.clock.now();
            let was_admin = key.can_manage_keys(now);
            let expected = key.version;
            if !change(&mut key)? {
                return Ok(key);
            }
            key.version += 1;
            key.updated_at = now;
            // A workspace must keep a key that can manage its keys, or it locks itself out.
            let guard = if was_admin && !key.can_manage_keys(now) {
                KeyGuard::KeepsKeyAdmin { now }
            } else {
                KeyGuard::None
            };
            let ev = self.event(action, Some(workspace), Some(id), actor);
            match self.store.update_key_guarded(&key, expected, &ev, guard).await {
                Ok(()) => {
                    self.notify(&key).await;
                    return Ok(key);
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// At most [`MAX_IP_ALLOWLIST`](crate::MAX_IP_ALLOWLIST) entries; ranges normalised (host bits
/// cleared), duplicates dropped.
pub(crate) fn validate_ip_allowlist(mut list: Vec<ipnet::IpNet>) -> Result<Vec<ipnet::IpNet>, Error> {
    if list.len() > crate::MAX_IP_ALLOWLIST {
        return Err(Error::validation("ipAllowlist", format!("at most {} entries", crate::MAX_IP_ALLOWLIST)));
    }
    list.iter_mut().for_each(|n| *n = n.trunc());
    let mut seen = std::collections::HashSet::new();
    list.retain(|n| seen.insert(*n));
    Ok(list)
}

fn validate_credits_low(threshold: i64) -> Result<(), Error> {
    if threshold < 0 {
        return Err(Error::validation("creditsLowThreshold", "must not be negative"));
    }
    Ok(())
}

fn validate_refill(r: &CreditRefill) -> Result<(), Error> {
    r.validate().map_err(|(field, reason)| Error::validation(&format!("refill.{field}"), reason))
}

fn display_prefix(secret: &ApiKeySecret) -> String {
    secret.expose_secret().chars().take(12).collect()
}

fn display_last4(secret: &ApiKeySecret) -> String {
    let s = secret.expose_secret();
    s[s.len().saturating_sub(4)..].to_owned()
}

/// Checks a new key's settings (the actor may grant them); times truncated to what stores keep.
pub(super) fn validate_new_key(new: &mut NewKey, actor: &Actor, now: DateTime<Utc>) -> Result<(), Error> {
    // Stores keep milliseconds: return exactly what a later read will return.
    new.expires_at = new.expires_at.map(truncate_ms);
    validate_name(&new.name)?;
    validate_resources(&new.resources)?;
    validate_metadata(&new.metadata)?;
    validate_expiry(new.expires_at, now)?;
    if let Some(p) = &new.rate_limit {
        p.validate().map_err(|r| Error::validation("rateLimit", r))?;
    }
    if new.concurrency_limit == Some(0) {
        return Err(Error::validation("concurrencyLimit", "must be at least 1"));
    }
    if new.credits.is_some_and(|c| c < 0) {
        return Err(Error::validation("credits", "must not be negative"));
    }
    if let Some(r) = &new.refill {
        validate_refill(r)?;
    }
    if let Some(t) = new.credits_low_threshold {
        validate_credits_low(t)?;
    }
    new.ip_allowlist = validate_ip_allowlist(std::mem::take(&mut new.ip_allowlist))?;
    actor.check_grant(&new.scopes, &new.resources)
}

/// The record of a new key of `ws`, stored under `hash`.
pub(super) fn new_record(
    new: NewKey,
    ws: &Workspace,
    prefix: String,
    last4: String,
    hash: KeyHash,
    actor: &Actor,
    now: DateTime<Utc>,
) -> ApiKey {
    ApiKey {
        id: KeyId::new(),
        workspace_id: ws.id,
        name: new.name,
        environment: ws.environment.key_environment(),
        prefix,
        last4,
        hash,
        scopes: new.scopes,
        resources: new.resources,
        status: if new.active { KeyStatus::Active } else { KeyStatus::Inactive },
        deleted_at: None,
        revoked_at: None,
        created_at: now,
        created_ip: actor.ip.clone(),
        updated_at: now,
        last_used_at: None,
        expires_at: new.expires_at,
        rotated_from: None,
        rotated_to: None,
        grace_ends_at: None,
        rate_limit: new.rate_limit,
        concurrency_limit: new.concurrency_limit,
        credits: new.credits.or(new.refill.map(|r| r.amount)),
        refill: new.refill,
        refilled_at: new.refill.map(|_| now),
        credits_low_threshold: new.credits_low_threshold,
        ip_allowlist: new.ip_allowlist,
        metadata: new.metadata,
        version: 1,
        leaked_at: None,
        leak_source: None,
        imported_at: None,
    }
}
