//! The change feed: cross-node cache invalidation over PostgreSQL `LISTEN`/`NOTIFY`.
//!
//! [`PgStore`]'s triggers announce every change a verifier may have cached, on the schema's
//! channel, when the writing transaction commits: a key's digest, or `workspace:<id>` /
//! `plan:<id>`. A [`ChangeFeed`] listens on that channel on a connection of its own and hands
//! each change to a [`ChangeListener`]: a [`Verifier`](keyward_core::Verifier) drops the
//! matching entries from its cache, so that a key revoked through one node is
//! refused by every node a moment later.
//!
//! When its connection drops, the feed logs a warning, reconnects by itself with a capped
//! backoff, and once it listens again clears the whole cache, because notifications sent while
//! it was away are lost. Until then the verifier's cache TTL bounds how stale a node can be. An
//! idle connection is probed with a query now and then, so a silently dead one is noticed too.
//!
//! ```no_run
//! # async fn demo(service: keyward_core::KeyService, store: keyward_store::PgStore) -> Result<(), keyward_core::StoreError> {
//! use keyward_core::Verifier;
//! use keyward_store::ChangeFeed;
//!
//! let verifier = Verifier::builder(&service).build();
//! let feed = ChangeFeed::start(&store, verifier.clone()).await?;
//! assert!(feed.is_connected());
//! // ... serve requests with `verifier` ...
//! feed.stop();
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keyward_core::{Change, ChangeListener, KeyDigest, PlanId, StoreError, metrics};
use sqlx::postgres::{PgConnectOptions, PgListener, PgNotification, PgPoolOptions};
use tokio::task::JoinHandle;

use crate::postgres::{PgStore, db_err};

/// Settings of a [`ChangeFeed`].
#[derive(Debug, Clone)]
pub struct ChangeFeedConfig {
    /// First wait before retrying after a failed reconnection (the first retry is immediate).
    pub reconnect_min: Duration,
    /// Longest wait between reconnection attempts.
    pub reconnect_max: Duration,
    /// After this long without a notification the connection is probed with a query, which
    /// must answer within the same time.
    pub heartbeat: Duration,
    /// Longest wait to open the listening connection.
    pub connect_timeout: Duration,
    /// While disconnected, how often the warning is repeated.
    pub warn_every: Duration,
}

impl Default for ChangeFeedConfig {
    fn default() -> Self {
        Self {
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(2),
            heartbeat: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            warn_every: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default)]
struct FeedState {
    connected: AtomicBool,
    connections: AtomicU64,
    notifications: AtomicU64,
}

/// What a [`ChangeFeed`] is doing, readable from anywhere (e.g. a readiness check) without
/// owning the feed. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ChangeFeedStatus {
    state: Arc<FeedState>,
}

impl ChangeFeedStatus {
    /// Whether the feed is listening right now (always `false` once the feed is stopped).
    pub fn is_connected(&self) -> bool {
        self.state.connected.load(Ordering::SeqCst)
    }

    /// How many times the feed started listening.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Notifications received so far.
    pub fn notifications(&self) -> u64 {
        self.state.notifications.load(Ordering::SeqCst)
    }
}

/// Listens for changes announced by any node and hands them to a [`ChangeListener`], e.g. a
/// [`Verifier`](keyward_core::Verifier), which drops them from its cache. See the
/// [module docs](self). Stops when dropped.
///
/// Reports its state as metrics (see [`keyward_core::metrics`]): whether it is connected, the
/// notifications it received, its reconnections, and when it last heard from the database.
pub struct ChangeFeed {
    state: Arc<FeedState>,
    channel: String,
    task: JoinHandle<()>,
}

impl fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("channel", &self.channel)
            .field("connected", &self.is_connected())
            .field("connections", &self.connections())
            .field("notifications", &self.notifications())
            .finish()
    }
}

struct Listening {
    connect: PgConnectOptions,
    channel: String,
    config: ChangeFeedConfig,
    listener: Arc<dyn ChangeListener>,
    state: Arc<FeedState>,
}

impl ChangeFeed {
    /// Starts listening on `store`'s channel with the default settings. Returns once the feed
    /// listens; fails with `Unavailable` when the database cannot be reached now.
    pub async fn start(store: &PgStore, listener: impl ChangeListener) -> Result<ChangeFeed, StoreError> {
        Self::start_with(store, listener, ChangeFeedConfig::default()).await
    }

    /// Starts listening with explicit settings.
    pub async fn start_with(
        store: &PgStore,
        listener: impl ChangeListener,
        config: ChangeFeedConfig,
    ) -> Result<ChangeFeed, StoreError> {
        let listening = Listening {
            connect: store.connect_options().clone(),
            channel: store.channel().to_owned(),
            config,
            listener: Arc::new(listener),
            state: Arc::default(),
        };
        let listener = listening.connect().await?;
        listening.connected(true);
        listening.state.connections.fetch_add(1, Ordering::SeqCst);
        tracing::debug!(channel = %listening.channel, "change feed listening");
        let state = listening.state.clone();
        let channel = listening.channel.clone();
        let task = tokio::spawn(listening.run(listener));
        Ok(ChangeFeed { state, channel, task })
    }

    /// Whether the feed is listening right now.
    pub fn is_connected(&self) -> bool {
        self.state.connected.load(Ordering::SeqCst)
    }

    /// How many times the feed started listening: 1 after [`ChangeFeed::start`], one more after
    /// each reconnection.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Notifications received so far.
    pub fn notifications(&self) -> u64 {
        self.state.notifications.load(Ordering::SeqCst)
    }

    /// The channel listened to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// A handle on the feed's state that outlives borrows of the feed.
    pub fn status(&self) -> ChangeFeedStatus {
        ChangeFeedStatus { state: self.state.clone() }
    }

    /// Stops listening.
    pub fn stop(self) {
        // Drop does it.
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.task.abort();
        self.state.connected.store(false, Ordering::SeqCst);
        ::metrics::gauge!(metrics::CHANGE_FEED_CONNECTED, "channel" => self.channel.clone()).set(0.0);
    }
}

/// Now, in seconds since the Unix epoch.
fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl Listening {
    /// Records whether the feed listens; listening, it has just heard from the database.
    fn connected(&self, connected: bool) {
        self.state.connected.store(connected, Ordering::SeqCst);
        let channel = self.channel.clone();
        ::metrics::gauge!(metrics::CHANGE_FEED_CONNECTED, "channel" => channel)
            .set(f64::from(u8::from(connected)));
        if connected {
            self.heard();
        }
    }

    /// The database answered: the node has every change announced until now.
    fn heard(&self) {
        ::metrics::gauge!(metrics::CHANGE_FEED_CONFIRMED, "channel" => self.channel.clone()).set(unix_now());
    }

    async fn connect(&self) -> Result<PgListener, StoreError> {
        // A pool of one connection of the feed's own: the store's pool stays whole, and the
        // listener's connection never sits in a pool used for queries.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(self.config.connect_timeout)
            .connect_lazy_with(self.connect.clone());
        let mut listener = PgListener::connect_with(&pool).await.map_err(db_err)?;
        // Reconnection is this feed's job: it must know when the connection was lost.
        listener.eager_reconnect(false);
        listener.ignore_pool_close_event(true);
        tokio::time::timeout(self.config.connect_timeout, listener.listen(&self.channel))
            .await
            .map_err(|_| StoreError::Unavailable("timed out starting to listen".into()))?
            .map_err(db_err)?;
        Ok(listener)
    }

    async fn run(self, mut listener: PgListener) {
        loop {
            let lost = self.listen(&mut listener).await;
            self.connected(false);
            drop(listener);
            tracing::warn!(
                channel = %self.channel, error = %lost,
                "change feed disconnected; other nodes' changes reach this node only when cached entries expire, until it reconnects"
            );
            listener = self.reconnect().await;
            // Whatever was announced while away is lost: forget everything, now that every
            // later change will be heard.
            self.listener.changed(&Change::Missed).await;
            self.connected(true);
            self.state.connections.fetch_add(1, Ordering::SeqCst);
            ::metrics::counter!(metrics::CHANGE_FEED_RECONNECTIONS, "channel" => self.channel.clone())
                .increment(1);
            tracing::warn!(channel = %self.channel, "change feed reconnected; verifier cache cleared");
        }
    }

    /// Handles notifications until the connection is lost; returns why.
    async fn listen(&self, listener: &mut PgListener) -> String {
        let beat = self.config.heartbeat;
        loop {
            // `try_recv` is cancel-safe: a message is consumed only once it is complete.
            match tokio::time::timeout(beat, listener.try_recv()).await {
                Ok(Ok(Some(n))) => self.apply(&n).await,
                Ok(Ok(None)) => return "connection closed".into(),
                Ok(Err(e)) => return e.to_string(),
                Err(_idle) => {
                    match tokio::time::timeout(beat, sqlx::query("SELECT 1").execute(&mut *listener)).await {
                        Ok(Ok(_)) => self.heard(),
                        Ok(Err(e)) => return e.to_string(),
                        Err(_) => return "the connection did not answer a probe".into(),
                    }
                }
            }
        }
    }

    async fn apply(&self, n: &PgNotification) {
        self.state.notifications.fetch_add(1, Ordering::SeqCst);
        ::metrics::counter!(metrics::CHANGE_FEED_NOTIFICATIONS, "channel" => self.channel.clone())
            .increment(1);
        self.heard();
        self.listener.changed(&change(n.payload())).await;
    }

    async fn reconnect(&self) -> PgListener {
        let mut delay = Duration::ZERO;
        let mut warned = Instant::now();
        loop {
            tokio::time::sleep(delay).await;
            match self.connect().await {
                Ok(listener) => return listener,
                Err(e) => {
                    if warned.elapsed() >= self.config.warn_every {
                        tracing::warn!(channel = %self.channel, error = %e, "change feed still disconnected");
                        warned = Instant::now();
                    } else {
                        tracing::debug!(channel = %self.channel, error = %e, "change feed reconnection failed");
                    }
                    delay = (delay * 2).clamp(self.config.reconnect_min, self.config.reconnect_max);
                }
            }
        }
    }
}

/// A notification's payload as a change; one not understood may have changed anything.
fn change(payload: &str) -> Change {
    if let Some(digest) = KeyDigest::from_hex(payload) {
        return Change::Key(digest);
    }
    let parsed = match payload.split_once(':') {
        Some(("workspace", id)) => id.parse().ok().map(Change::Workspace),
        Some(("plan", id)) => Some(Change::Plan(PlanId::from(id))),
        _ => None,
    };
    parsed.unwrap_or(Change::Missed)
}
