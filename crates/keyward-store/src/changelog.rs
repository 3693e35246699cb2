//! The change log poller: cache invalidation across processes sharing one SQLite file.
//!
//! [`SqliteStore`]'s triggers write every change a verifier may have cached to the `changes`
//! table, numbered, in the changing transaction: a key's digest, a workspace or a plan. A
//! [`ChangeLogPoller`] reads the rows after the last number it saw, every
//! [`ChangeLogConfig::interval`] (100 ms by default: one indexed read of nothing when nothing
//! changed), and hands each to a [`ChangeListener`]: a [`Verifier`](keyward_core::Verifier)
//! drops the matching entries from its cache, so that a key revoked by `keyward serve` or the
//! CLI is refused by a service on the same file a moment later.
//!
//! The log keeps the last 10,000 changes. A poller that fell further behind (or could not read
//! the file for a while) clears the whole cache once it reads again; meanwhile the verifier's
//! cache TTL bounds how stale it can be.
//!
//! ```no_run
//! # async fn demo(store: keyward_store::SqliteStore, verifier: keyward_core::Verifier) -> Result<(), keyward_core::StoreError> {
//! use keyward_store::ChangeLogPoller;
//!
//! let poller = ChangeLogPoller::start(&store, verifier.clone()).await?;
//! // ... serve requests with `verifier` ...
//! poller.stop();
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use keyward_core::{Change, ChangeListener, KeyDigest, PlanId, StoreError};
use sqlx::SqlitePool;
use tokio::task::JoinHandle;

use crate::sqlite::SqliteStore;

/// Settings of a [`ChangeLogPoller`].
#[derive(Debug, Clone)]
pub struct ChangeLogConfig {
    /// How often the log is read.
    pub interval: Duration,
    /// Most rows read per poll; more are read at the next one, at once.
    pub batch: u32,
}

impl Default for ChangeLogConfig {
    fn default() -> Self {
        Self { interval: Duration::from_millis(100), batch: 1000 }
    }
}

#[derive(Debug, Default)]
struct PollState {
    last_seq: AtomicI64,
    changes: AtomicU64,
    full_clears: AtomicU64,
    healthy: AtomicBool,
}

/// Polls the change log of an SQLite file into a verifier's cache. Stops when dropped. See the
/// [module docs](self).
pub struct ChangeLogPoller {
    state: Arc<PollState>,
    inner: Arc<(SqlitePool, Arc<dyn ChangeListener>, ChangeLogConfig)>,
    task: JoinHandle<()>,
}

impl fmt::Debug for ChangeLogPoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeLogPoller")
            .field("last_seq", &self.last_seq())
            .field("changes", &self.changes())
            .finish_non_exhaustive()
    }
}

impl ChangeLogPoller {
    /// Starts polling with the default settings, from the log's current end: what the verifier
    /// caches from now on is read after this point.
    pub async fn start(store: &SqliteStore, listener: impl ChangeListener) -> Result<Self, StoreError> {
        Self::start_with(store, listener, ChangeLogConfig::default()).await
    }

    /// Starts polling with `config`.
    pub async fn start_with(
        store: &SqliteStore,
        listener: impl ChangeListener,
        config: ChangeLogConfig,
    ) -> Result<Self, StoreError> {
        let pool = store.pool().clone();
        let start = last_seq(&pool).await?;
        let state = Arc::new(PollState {
            last_seq: AtomicI64::new(start),
            healthy: AtomicBool::new(true),
            ..PollState::default()
        });
        let listener: Arc<dyn ChangeListener> = Arc::new(listener);
        let inner = Arc::new((pool, listener, config));
        let task = tokio::spawn(poll(inner.clone(), state.clone()));
        Ok(Self { state, inner, task })
    }

    /// Reads the log now, without waiting for the next poll: for a caller that knows another
    /// process just changed something.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let (pool, listener, config) = &*self.inner;
        poll_once(pool, listener, config, &self.state)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// The number of the last change applied.
    pub fn last_seq(&self) -> i64 {
        self.state.last_seq.load(Ordering::SeqCst)
    }

    /// Changes applied so far.
    pub fn changes(&self) -> u64 {
        self.state.changes.load(Ordering::SeqCst)
    }

    /// Times the whole cache was cleared because changes were missed.
    pub fn full_clears(&self) -> u64 {
        self.state.full_clears.load(Ordering::SeqCst)
    }

    /// Whether the last poll could read the log.
    pub fn is_healthy(&self) -> bool {
        self.state.healthy.load(Ordering::SeqCst)
    }

    /// Stops polling.
    pub fn stop(self) {
        // Drop does it.
    }
}

impl Drop for ChangeLogPoller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn last_seq(pool: &SqlitePool) -> Result<i64, StoreError> {
    sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(seq) FROM changes")
        .fetch_one(pool)
        .await
        .map(Option::unwrap_or_default)
        .map_err(|e| StoreError::Unavailable(e.to_string()))
}

async fn poll(inner: Arc<(SqlitePool, Arc<dyn ChangeListener>, ChangeLogConfig)>, state: Arc<PollState>) {
    let (pool, listener, config) = &*inner;
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match poll_once(pool, listener, config, &state).await {
            Ok(()) => {
                if !state.healthy.swap(true, Ordering::SeqCst) {
                    tracing::info!("change log readable again");
                }
            }
            Err(e) => {
                if state.healthy.swap(false, Ordering::SeqCst) {
                    tracing::warn!(error = %e, "cannot read the change log; the cache TTL bounds staleness meanwhile");
                }
            }
        }
    }
}

async fn poll_once(
    pool: &SqlitePool,
    listener: &Arc<dyn ChangeListener>,
    config: &ChangeLogConfig,
    state: &PollState,
) -> Result<(), sqlx::Error> {
    loop {
        let after = state.last_seq.load(Ordering::SeqCst);
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT seq, kind, ref FROM changes WHERE seq > ? ORDER BY seq LIMIT ?")
                .bind(after)
                .bind(i64::from(config.batch))
                .fetch_all(pool)
                .await?;
        let Some(&(first, _, _)) = rows.first() else { return Ok(()) };
        let missed = if first > after + 1 {
            // Numbers are dense (a rolled-back change takes its number back with it), so a gap
            // means rows were pruned before this poller read them.
            let oldest: Option<i64> =
                sqlx::query_scalar("SELECT MIN(seq) FROM changes").fetch_one(pool).await?;
            oldest.is_some_and(|o| o > after + 1)
        } else {
            false
        };
        if missed {
            tracing::warn!(after, first, "the change log moved past this poller; clearing the whole cache");
            listener.changed(&Change::Missed).await;
            state.full_clears.fetch_add(1, Ordering::SeqCst);
        } else {
            for (_, kind, reference) in &rows {
                listener.changed(&change(kind, reference)).await;
            }
        }
        let last = rows.last().map_or(after, |r| r.0);
        state.changes.fetch_add(rows.len() as u64, Ordering::SeqCst);
        state.last_seq.store(last, Ordering::SeqCst);
        if rows.len() < config.batch as usize {
            return Ok(());
        }
    }
}

/// A row of the log as a change; one not understood may have changed anything.
fn change(kind: &str, reference: &str) -> Change {
    let parsed = match kind {
        "key" => KeyDigest::from_hex(reference).map(Change::Key),
        "workspace" => reference.parse().ok().map(Change::Workspace),
        "plan" => Some(Change::Plan(PlanId::from(reference))),
        _ => None,
    };
    parsed.unwrap_or(Change::Missed)
}
