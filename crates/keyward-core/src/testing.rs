//! Test support (feature `testing`): [`InstrumentedStore`] wraps a real store, counts the calls
//! that matter for the hot path, and can simulate an outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::hash::KeyDigest;
use crate::model::{ApiKey, AuditEvent, KeyId, Plan, PlanId, UsageDay, Workspace, WorkspaceId};
use crate::store::{AuditQuery, CreditOutcome, KeyGuard, KeyListQuery, KeyStore, StoreError, UsageBatch};

/// Delegates to a real store; counts digest lookups and usage writes; fails every call with
/// [`StoreError::Unavailable`] while [`InstrumentedStore::set_down`] is on.
#[derive(Debug)]
pub struct InstrumentedStore {
    inner: Arc<dyn KeyStore>,
    down: AtomicBool,
    digest_lookups: AtomicU64,
    usage_writes: AtomicU64,
    credit_writes: AtomicU64,
}

impl InstrumentedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn KeyStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            down: AtomicBool::new(false),
            digest_lookups: AtomicU64::new(0),
            usage_writes: AtomicU64::new(0),
            credit_writes: AtomicU64::new(0),
        })
    }
    /// Simulates the store going down (`true`) or coming back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
    /// Calls of [`KeyStore::find_key_by_digest`] so far.
    pub fn digest_lookups(&self) -> u64 {
        self.digest_lookups.load(Ordering::SeqCst)
    }
    /// Calls of [`KeyStore::record_usage`] so far.
    pub fn usage_writes(&self) -> u64 {
        self.usage_writes.load(Ordering::SeqCst)
    }
    /// Calls of [`KeyStore::consume_credits`] so far.
    pub fn credit_writes(&self) -> u64 {
        self.credit_writes.load(Ordering::SeqCst)
    }
    fn up(&self) -> Result<&dyn KeyStore, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("simulated outage".into()))
        } else {
            Ok(&*self.inner)
        }
    }
}

#[async_trait]
impl KeyStore for InstrumentedStore {
    async fn save_plan(&self, plan: &Plan, event: &AuditEvent) -> Result<(), StoreError> {
        self.up()?.save_plan(plan, event).await
    }
    async fn get_plan(&self, id: &PlanId) -> Result<Option<Plan>, StoreError> {
        self.up()?.get_plan(id).await
    }
    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError> {
        self.up()?.list_plans().await
    }
    async fn insert_workspace(&self, ws: &Workspace, event: &AuditEvent) -> Result<(), StoreError> {
        self.up()?.insert_workspace(ws, event).await
    }
    async fn update_workspace(&self, ws: &Workspace, event: &AuditEvent) -> Result<(), StoreError> {
        self.up()?.update_workspace(ws, event).await
    }
    async fn get_workspace(&self, id: WorkspaceId) -> Result<Option<Workspace>, StoreError> {
        self.up()?.get_workspace(id).await
    }
    async fn list_workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
        self.up()?.list_workspaces().await
    }
    async fn insert_key(&self, key: &ApiKey, max: Option<u32>, event: &AuditEvent) -> Result<(), StoreError> {
        self.up()?.insert_key(key, max, event).await
    }
    async fn get_key(&self, id: KeyId) -> Result<Option<ApiKey>, StoreError> {
        self.up()?.get_key(id).await
    }
    async fn find_key_by_digest(&self, digest: &KeyDigest) -> Result<Option<ApiKey>, StoreError> {
        self.digest_lookups.fetch_add(1, Ordering::SeqCst);
        self.up()?.find_key_by_digest(digest).await
    }
    async fn list_keys(&self, query: &KeyListQuery) -> Result<Vec<ApiKey>, StoreError> {
        self.up()?.list_keys(query).await
    }
    async fn count_live_keys(&self, workspace: WorkspaceId) -> Result<u64, StoreError> {
        self.up()?.count_live_keys(workspace).await
    }
    async fn update_key_guarded(
        &self,
        key: &ApiKey,
        expected: u64,
        event: &AuditEvent,
        guard: KeyGuard,
    ) -> Result<(), StoreError> {
        self.up()?.update_key_guarded(key, expected, event, guard).await
    }
    async fn rotate_key(
        &self,
        old: &ApiKey,
        expected: u64,
        new: &ApiKey,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.up()?.rotate_key(old, expected, new, event).await
    }
    async fn consume_credits(&self, id: KeyId, amount: i64) -> Result<CreditOutcome, StoreError> {
        self.credit_writes.fetch_add(1, Ordering::SeqCst);
        self.up()?.consume_credits(id, amount).await
    }
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        self.up()?.list_audit(query).await
    }
    async fn purge_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.up()?.purge_audit(before).await
    }
    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        self.usage_writes.fetch_add(1, Ordering::SeqCst);
        self.up()?.record_usage(batch).await
    }
    async fn usage(&self, key: KeyId, from: NaiveDate, to: NaiveDate) -> Result<Vec<UsageDay>, StoreError> {
        self.up()?.usage(key, from, to).await
    }
}

/// A TCP proxy on `127.0.0.1:0` in front of a real service, which a test can cut (every open
/// connection is dropped and new ones are refused) and restore, to simulate a network outage.
#[derive(Debug)]
pub struct TcpProxy {
    addr: std::net::SocketAddr,
    state: Arc<ProxyState>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct ProxyState {
    cut: AtomicBool,
    connections: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl TcpProxy {
    /// Starts forwarding to `target` (`host:port`).
    pub async fn start(target: &str) -> std::io::Result<TcpProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ProxyState::default());
        let target = target.to_owned();
        let bg = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if bg.cut.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut conns = bg.connections.lock().unwrap_or_else(|e| e.into_inner());
                conns.retain(|c| !c.is_finished());
                conns.push(task.abort_handle());
            }
        });
        Ok(TcpProxy { addr, state, accept })
    }

    /// The proxy's address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Drops every connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for c in self.state.connections.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            c.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Reads a test service URL from the environment: `None` (with a note on stderr) when unset, so
/// the test is skipped; when set, the test must reach the service or fail.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped: {var} is not set");
            None
        }
    }
}
