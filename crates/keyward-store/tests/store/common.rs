//! A fresh SQLite store in a temporary directory, counting its usage writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use keyward_core::{
    ApiKey, AuditEvent, AuditQuery, CreditOutcome, KeyDigest, KeyGuard, KeyId, KeyListQuery, KeyStore, Plan,
    PlanId, StoreError, UsageBatch, UsageDay, Workspace, WorkspaceId,
};
use keyward_store::SqliteStore;
use tempfile::TempDir;

/// Delegates to a [`SqliteStore`] whose file lives in `dir` (removed when this is dropped) and
/// counts [`KeyStore::record_usage`] calls.
#[derive(Debug)]
pub(crate) struct TestStore {
    pub(crate) inner: SqliteStore,
    pub(crate) dir: TempDir,
    record_usage_calls: AtomicUsize,
}

impl TestStore {
    /// An empty store in a new temporary directory.
    pub(crate) async fn fresh() -> Arc<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keyward.db");
        let inner = SqliteStore::open(path.to_str().expect("utf-8 path")).await.expect("open store");
        Arc::new(Self { inner, dir, record_usage_calls: AtomicUsize::new(0) })
    }

    /// The database file.
    pub(crate) fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("keyward.db")
    }

    /// How many times `record_usage` was called.
    pub(crate) fn record_usage_calls(&self) -> usize {
        self.record_usage_calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl KeyStore for TestStore {
    async fn save_plan(&self, plan: &Plan, event: &AuditEvent) -> Result<(), StoreError> {
        self.inner.save_plan(plan, event).await
    }
    async fn get_plan(&self, id: &PlanId) -> Result<Option<Plan>, StoreError> {
        self.inner.get_plan(id).await
    }
    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError> {
        self.inner.list_plans().await
    }
    async fn insert_workspace(&self, ws: &Workspace, event: &AuditEvent) -> Result<(), StoreError> {
        self.inner.insert_workspace(ws, event).await
    }
    async fn update_workspace(&self, ws: &Workspace, event: &AuditEvent) -> Result<(), StoreError> {
        self.inner.update_workspace(ws, event).await
    }
    async fn get_workspace(&self, id: WorkspaceId) -> Result<Option<Workspace>, StoreError> {
        self.inner.get_workspace(id).await
    }
    async fn list_workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
        self.inner.list_workspaces().await
    }
    async fn insert_key(&self, key: &ApiKey, max: Option<u32>, event: &AuditEvent) -> Result<(), StoreError> {
        self.inner.insert_key(key, max, event).await
    }
    async fn get_key(&self, id: KeyId) -> Result<Option<ApiKey>, StoreError> {
        self.inner.get_key(id).await
    }
    async fn find_key_by_digest(&self, digest: &KeyDigest) -> Result<Option<ApiKey>, StoreError> {
        self.inner.find_key_by_digest(digest).await
    }
    async fn list_keys(&self, query: &KeyListQuery) -> Result<Vec<ApiKey>, StoreError> {
        self.inner.list_keys(query).await
    }
    async fn count_live_keys(&self, workspace: WorkspaceId) -> Result<u64, StoreError> {
        self.inner.count_live_keys(workspace).await
    }
    async fn update_key_guarded(
        &self,
        key: &ApiKey,
        expected: u64,
        event: &AuditEvent,
        guard: KeyGuard,
    ) -> Result<(), StoreError> {
        self.inner.update_key_guarded(key, expected, event, guard).await
    }
    async fn rotate_key(
        &self,
        old: &ApiKey,
        expected: u64,
        new: &ApiKey,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.inner.rotate_key(old, expected, new, event).await
    }
    async fn consume_credits(&self, id: KeyId, amount: i64) -> Result<CreditOutcome, StoreError> {
        self.inner.consume_credits(id, amount).await
    }
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.list_audit(query).await
    }
    async fn purge_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.purge_audit(before).await
    }
    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        self.record_usage_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.record_usage(batch).await
    }
    async fn usage(&self, key: KeyId, from: NaiveDate, to: NaiveDate) -> Result<Vec<UsageDay>, StoreError> {
        self.inner.usage(key, from, to).await
    }
}
