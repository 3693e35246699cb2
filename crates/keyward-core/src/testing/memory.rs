//! [`MemoryStore`]: a [`KeyStore`] in a mutex, so the lifecycle and verification rules can be
//! tested without I/O. It keeps the contract the SQL stores keep (compare-and-swap on versions,
//! each change written with its audit event or not at all, key limits and credits decided
//! atomically) and is what `keyward-core`'s own tests run on; the SQL backends prove the same
//! contract against real databases in `keyward-store`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::hash::KeyDigest;
use crate::model::{ApiKey, AuditEvent, KeyId, KeyStatus, Plan, PlanId, UsageDay, Workspace, WorkspaceId};
use crate::store::{AuditQuery, CreditOutcome, KeyGuard, KeyListQuery, KeyStore, StoreError, UsageBatch};

#[derive(Debug, Default, Clone)]
struct State {
    plans: BTreeMap<String, Plan>,
    workspaces: BTreeMap<WorkspaceId, Workspace>,
    keys: BTreeMap<KeyId, ApiKey>,
    digests: HashMap<KeyDigest, KeyId>,
    audit: BTreeMap<crate::model::AuditEventId, AuditEvent>,
    usage: BTreeMap<(KeyId, NaiveDate), u64>,
}

impl State {
    fn audit(&mut self, event: &AuditEvent) -> Result<(), StoreError> {
        if self.audit.contains_key(&event.id) {
            return Err(StoreError::Duplicate);
        }
        self.audit.insert(event.id, event.clone());
        Ok(())
    }

    fn check_new_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        if self.keys.contains_key(&key.id) || self.digests.contains_key(&key.hash.digest) {
            return Err(StoreError::Duplicate);
        }
        if !self.workspaces.contains_key(&key.workspace_id) {
            return Err(StoreError::Other(format!("no workspace {}", key.workspace_id)));
        }
        Ok(())
    }

    fn insert_new_key(&mut self, key: ApiKey) {
        self.digests.insert(key.hash.digest, key.id);
        self.keys.insert(key.id, key);
    }

    /// The stored key as `key` would leave it: every lifecycle field from `key`; the value, owner,
    /// credits and last use kept.
    fn cas(&self, key: &ApiKey, expected: u64) -> Result<ApiKey, StoreError> {
        match self.keys.get(&key.id) {
            Some(stored) if stored.version == expected => Ok(ApiKey {
                id: stored.id,
                workspace_id: stored.workspace_id,
                environment: stored.environment,
                prefix: stored.prefix.clone(),
                last4: stored.last4.clone(),
                hash: stored.hash.clone(),
                created_at: stored.created_at,
                created_ip: stored.created_ip.clone(),
                last_used_at: stored.last_used_at,
                credits: stored.credits,
                refilled_at: stored.refilled_at,
                imported_at: stored.imported_at,
                ..key.clone()
            }),
            _ => Err(StoreError::Conflict),
        }
    }

    fn live_keys(&self, ws: WorkspaceId) -> usize {
        self.keys
            .values()
            .filter(|k| k.workspace_id == ws && k.status != KeyStatus::Revoked && k.deleted_at.is_none())
            .count()
    }
}

/// A [`KeyStore`] in memory, keeping the same contract as the SQL stores.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn save_plan(&self, plan: &Plan, event: &AuditEvent) -> Result<(), StoreError> {
        let mut s = self.state();
        s.audit(event)?;
        s.plans.insert(plan.id.0.clone(), plan.clone());
        Ok(())
    }

    async fn get_plan(&self, id: &PlanId) -> Result<Option<Plan>, StoreError> {
        Ok(self.state().plans.get(&id.0).cloned())
    }

    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError> {
        Ok(self.state().plans.values().cloned().collect())
    }

    async fn insert_workspace(&self, ws: &Workspace, event: &AuditEvent) -> Result<(), StoreError> {
        let mut s = self.state();
        if s.workspaces.contains_key(&ws.id) {
            return Err(StoreError::Duplicate);
        }
        s.audit(event)?;
        s.workspaces.insert(ws.id, ws.clone());
        Ok(())
    }

    async fn update_workspace(&self, ws: &Workspace, event: &AuditEvent) -> Result<(), StoreError> {
        let mut s = self.state();
        if !s.workspaces.contains_key(&ws.id) {
            return Err(StoreError::NotFound);
        }
        s.audit(event)?;
        s.workspaces.insert(ws.id, ws.clone());
        Ok(())
    }

    async fn get_workspace(&self, id: WorkspaceId) -> Result<Option<Workspace>, StoreError> {
        Ok(self.state().workspaces.get(&id).cloned())
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
        let mut all: Vec<Workspace> = self.state().workspaces.values().cloned().collect();
        all.sort_by_key(|w| (w.created_at, w.id));
        Ok(all)
    }

    async fn insert_key(
        &self,
        key: &ApiKey,
        max_live_keys: Option<u32>,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        s.check_new_key(key)?;
        if let Some(max) = max_live_keys
            && s.live_keys(key.workspace_id) >= max as usize
        {
            return Err(StoreError::KeyLimitReached);
        }
        s.audit(event)?;
        s.insert_new_key(key.clone());
        Ok(())
    }

    async fn insert_keys(
        &self,
        keys: &[(ApiKey, AuditEvent)],
        max_live_keys: Option<u32>,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        // Checked on a copy, so that a failure leaves nothing behind.
        let mut next = s.clone();
        for (key, event) in keys {
            next.check_new_key(key)?;
            next.audit(event)?;
            next.insert_new_key(key.clone());
        }
        if let (Some(max), Some((first, _))) = (max_live_keys, keys.first())
            && next.live_keys(first.workspace_id) > max as usize
        {
            return Err(StoreError::KeyLimitReached);
        }
        *s = next;
        Ok(())
    }

    async fn get_key(&self, id: KeyId) -> Result<Option<ApiKey>, StoreError> {
        Ok(self.state().keys.get(&id).cloned())
    }

    async fn find_key_by_digest(&self, digest: &KeyDigest) -> Result<Option<ApiKey>, StoreError> {
        let s = self.state();
        Ok(s.digests.get(digest).and_then(|id| s.keys.get(id)).cloned())
    }

    async fn list_keys(&self, query: &KeyListQuery) -> Result<Vec<ApiKey>, StoreError> {
        let s = self.state();
        Ok(s.keys
            .values()
            .rev()
            .filter(|k| k.workspace_id == query.workspace_id && k.deleted_at.is_none())
            .filter(|k| query.status.is_none_or(|status| k.status_at(query.now) == status))
            .filter(|k| query.before.is_none_or(|before| k.id < before))
            .take(query.limit as usize)
            .cloned()
            .collect())
    }

    async fn count_live_keys(&self, workspace: WorkspaceId) -> Result<u64, StoreError> {
        Ok(self.state().live_keys(workspace) as u64)
    }

    async fn update_key_guarded(
        &self,
        key: &ApiKey,
        expected_version: u64,
        event: &AuditEvent,
        guard: KeyGuard,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let written = s.cas(key, expected_version)?;
        let remaining = s.keys.values().filter(|k| k.workspace_id == key.workspace_id && k.id != key.id);
        if !guard.holds(remaining.chain(std::iter::once(&written))) {
            return Err(StoreError::LastAdminKey);
        }
        s.audit(event)?;
        s.keys.insert(key.id, written);
        Ok(())
    }

    async fn rotate_key(
        &self,
        old: &ApiKey,
        expected_version: u64,
        new: &ApiKey,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let mut retired = s.cas(old, expected_version)?;
        s.check_new_key(new)?;
        if s.audit.contains_key(&event.id) {
            return Err(StoreError::Duplicate);
        }
        // The stored balance moves to the successor: credits may have been spent since the
        // caller read the key.
        let mut successor = new.clone();
        successor.credits = retired.credits;
        if retired.credits.is_some() {
            retired.credits = Some(0);
        }
        s.audit(event)?;
        s.keys.insert(retired.id, retired);
        s.insert_new_key(successor);
        Ok(())
    }

    async fn consume_credits(&self, id: KeyId, amount: i64) -> Result<CreditOutcome, StoreError> {
        if amount < 0 {
            return Err(StoreError::Other(format!("cannot consume a negative amount of credits ({amount})")));
        }
        let mut s = self.state();
        let key = s.keys.get_mut(&id).ok_or(StoreError::NotFound)?;
        Ok(match key.credits {
            None => CreditOutcome::Unlimited,
            Some(left) if left >= amount => {
                key.credits = Some(left - amount);
                CreditOutcome::Remaining(left - amount)
            }
            Some(left) => CreditOutcome::Insufficient(left),
        })
    }

    async fn refill_credits(
        &self,
        id: KeyId,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Option<i64>, StoreError> {
        let mut s = self.state();
        let key = s.keys.get(&id).ok_or(StoreError::NotFound)?;
        let Some(refill) = key.refill.filter(|r| r.is_due(key.refilled_at, now)) else {
            return Ok(None);
        };
        s.audit(event)?;
        let key = s.keys.get_mut(&id).expect("read above");
        key.credits = Some(refill.amount);
        key.refilled_at = Some(now);
        Ok(Some(refill.amount))
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let s = self.state();
        Ok(s.audit
            .values()
            .rev()
            .filter(|e| query.workspace_id.is_none_or(|ws| e.workspace_id == Some(ws)))
            .filter(|e| query.key_id.is_none_or(|k| e.key_id == Some(k)))
            .filter(|e| query.action.is_none_or(|a| e.action == a))
            .filter(|e| query.since.is_none_or(|t| e.at >= t))
            .filter(|e| query.until.is_none_or(|t| e.at < t))
            .filter(|e| query.before.is_none_or(|b| e.id < b))
            .take(query.limit as usize)
            .cloned()
            .collect())
    }

    async fn purge_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut s = self.state();
        let n = s.audit.len();
        s.audit.retain(|_, e| e.at >= before);
        Ok((n - s.audit.len()) as u64)
    }

    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        let mut s = self.state();
        for (&(key, day), &count) in &batch.counts {
            // Uses of unknown keys are dropped, as the SQL stores do.
            if s.keys.contains_key(&key) {
                *s.usage.entry((key, day)).or_default() += count;
            }
        }
        for (id, &at) in &batch.last_used {
            if let Some(k) = s.keys.get_mut(id)
                && k.last_used_at.is_none_or(|last| last < at)
            {
                k.last_used_at = Some(at);
            }
        }
        Ok(())
    }

    async fn usage(&self, key: KeyId, from: NaiveDate, to: NaiveDate) -> Result<Vec<UsageDay>, StoreError> {
        Ok(self
            .state()
            .usage
            .range((key, from)..=(key, to))
            .map(|(&(key_id, day), &count)| UsageDay { key_id, day, count })
            .collect())
    }
}
