//! Usage recording, written behind: uses are counted in memory and flushed to the store in one
//! batch on an interval and on shutdown, never one write per request.
//!
//! ```
//! # use std::sync::Arc;
//! # use keyward_core::{UsageRecorder, KeyId};
//! # async fn demo(store: Arc<dyn keyward_core::KeyStore>) {
//! let recorder = UsageRecorder::spawn(store, std::time::Duration::from_secs(10));
//! recorder.record(KeyId::new(), chrono::Utc::now());
//! recorder.shutdown().await; // flushes what is left
//! # }
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::metrics;
use crate::model::KeyId;
use crate::store::{KeyStore, StoreError, UsageBatch};

/// Default and maximum flush interval.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// Where a [`UsageRecorder`] writes its batches: a [`KeyStore`], or e.g. a server that records
/// them for a remote verifier.
#[async_trait::async_trait]
pub trait UsageSink: Send + Sync + fmt::Debug + 'static {
    /// Writes `batch`. On an error, gives back the part it did not write, which the recorder
    /// keeps and retries at the next flush: a sink that writes in parts loses nothing and
    /// writes nothing twice.
    async fn record_usage(&self, batch: UsageBatch) -> Result<(), Unwritten>;
}

/// What a [`UsageSink`] could not write, and why.
#[derive(Debug)]
pub struct Unwritten {
    /// Why.
    pub error: StoreError,
    /// The part not written.
    pub batch: UsageBatch,
}

#[derive(Debug)]
struct StoreSink(Arc<dyn KeyStore>);

#[async_trait::async_trait]
impl UsageSink for StoreSink {
    async fn record_usage(&self, batch: UsageBatch) -> Result<(), Unwritten> {
        // One transaction: all of it or none.
        match self.0.record_usage(&batch).await {
            Ok(()) => Ok(()),
            Err(error) => Err(Unwritten { error, batch }),
        }
    }
}

struct Shared {
    store: Arc<dyn UsageSink>,
    pending: Mutex<UsageBatch>,
    stop: Notify,
}

/// Counts key uses in memory and writes them behind. Cheap to clone.
#[derive(Clone)]
pub struct UsageRecorder {
    shared: Arc<Shared>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl fmt::Debug for UsageRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageRecorder").finish_non_exhaustive()
    }
}

impl UsageRecorder {
    /// Starts the background flusher on the current tokio runtime. `interval` is capped at
    /// [`DEFAULT_FLUSH_INTERVAL`].
    pub fn spawn(store: Arc<dyn KeyStore>, interval: Duration) -> Self {
        Self::spawn_to(Arc::new(StoreSink(store)), interval)
    }

    /// [`UsageRecorder::spawn`], writing to `sink`.
    pub fn spawn_to(sink: Arc<dyn UsageSink>, interval: Duration) -> Self {
        let store = sink;
        let interval = interval.min(DEFAULT_FLUSH_INTERVAL).max(Duration::from_millis(1));
        let shared =
            Arc::new(Shared { store, pending: Mutex::new(UsageBatch::default()), stop: Notify::new() });
        let bg = shared.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = flush(&bg).await {
                            tracing::warn!(error = %e, "usage flush failed; will retry");
                        }
                    }
                    _ = bg.stop.notified() => break,
                }
            }
        });
        Self { shared, task: Arc::new(Mutex::new(Some(task))) }
    }

    /// Counts one use of `key` at `at`. Never does I/O.
    pub fn record(&self, key: KeyId, at: DateTime<Utc>) {
        self.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).add(key, at);
    }

    /// Writes what is pending now.
    pub async fn flush(&self) -> Result<(), StoreError> {
        flush(&self.shared).await
    }

    /// Stops the background task and writes what is pending.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            self.shared.stop.notify_one();
            let _ = task.await;
        }
        flush(&self.shared).await
    }
}

async fn flush(shared: &Shared) -> Result<(), StoreError> {
    let batch = std::mem::take(&mut *shared.pending.lock().unwrap_or_else(|e| e.into_inner()));
    if batch.is_empty() {
        return Ok(());
    }
    let uses: u64 = batch.counts.values().sum();
    if let Err(unwritten) = shared.store.record_usage(batch).await {
        ::metrics::counter!(metrics::USAGE_FLUSH_FAILURES).increment(1);
        // Put it back so nothing is lost; the next flush retries.
        shared.pending.lock().unwrap_or_else(|e| e.into_inner()).merge(unwritten.batch);
        return Err(unwritten.error);
    }
    ::metrics::histogram!(metrics::USAGE_FLUSH_SIZE).record(uses as f64);
    Ok(())
}
