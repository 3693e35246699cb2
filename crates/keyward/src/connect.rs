//! One entry point from a database URL to a ready verifier: [`connect`] and [`Connect`].
//!
//! The verifier is built from the store alone (a service that only checks keys never builds
//! the management `KeyService`), records usage behind to the same database, and hears of
//! changes made by any other process, `keyward serve` and the CLI included:
//!
//! | URL | change propagation | usage |
//! |---|---|---|
//! | `sqlite://path` (the file `keyward serve` uses) | the file's change log, polled every 100 ms | written behind to the file |
//! | `postgres://...` | `LISTEN`/`NOTIFY` | written behind to the database |
//!
//! While propagation is down the cache TTL (60 s by default) bounds staleness, and the store
//! policy ([`StorePolicy`]) says what happens when the database cannot be read.
//!
//! ```no_run
//! # async fn demo() -> Result<(), keyward::ConnectError> {
//! let keyward = keyward::connect("sqlite://keyward.db").await?;
//! # #[cfg(feature = "tower")]
//! let layer = keyward.layer().require_scope("orders:read".parse().unwrap());
//! // ... serve the app with the layer; on shutdown:
//! keyward.shutdown().await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use keyward_core::{KeyFormat, KeyHasher, KeyStore, StoreError, StorePolicy, UsageRecorder, Verifier};

/// Why [`Connect::build`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL names no backend this build supports.
    #[error("unsupported keyward URL {0:?}: use sqlite://path or postgres://... (with the matching feature)")]
    UnsupportedUrl(String),
    /// The database could not be opened.
    #[error("opening the key store: {0}")]
    Store(#[from] StoreError),
    /// The Redis URL is not valid.
    #[error("the Redis rate limiter: {0}")]
    Redis(String),
}

/// Settings for [`Connect::build`]; [`connect`] uses the defaults.
#[derive(Debug, Clone)]
pub struct Connect {
    url: String,
    cache_ttl: Duration,
    negative_ttl: Duration,
    cache_capacity: u64,
    store_policy: StorePolicy,
    usage_flush: Duration,
    format: KeyFormat,
    hasher: KeyHasher,
    poll_interval: Duration,
    schema: Option<String>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    redis: Option<String>,
}

/// Connects to the keys at `url` with the default settings. See the [module docs](self).
pub async fn connect(url: &str) -> Result<Keyward, ConnectError> {
    Connect::new(url).build().await
}

impl Connect {
    /// Settings for the keys at `url`: `sqlite://path` or `postgres://...`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            cache_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            cache_capacity: 100_000,
            store_policy: StorePolicy::FailClosed,
            usage_flush: Duration::from_secs(10),
            format: KeyFormat::default(),
            hasher: KeyHasher::sha256(),
            poll_interval: Duration::from_millis(100),
            schema: None,
            redis: None,
        }
    }
    /// How long a verified key stays cached (60 s); bounds staleness while propagation is down.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }
    /// How long an unknown key is remembered as unknown (5 s).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }
    /// Most keys cached at once (100,000).
    pub fn cache_capacity(mut self, capacity: u64) -> Self {
        self.cache_capacity = capacity;
        self
    }
    /// What to do when the database cannot be read (fail closed by default).
    pub fn store_policy(mut self, policy: StorePolicy) -> Self {
        self.store_policy = policy;
        self
    }
    /// How often usage is written behind (10 s at most).
    pub fn usage_flush(mut self, every: Duration) -> Self {
        self.usage_flush = every;
        self
    }
    /// The deployment's key format, as `keyward serve --key-prefix/--key-encoding` sets it.
    pub fn key_format(mut self, format: KeyFormat) -> Self {
        self.format = format;
        self
    }
    /// The deployment's pepper, as `keyward serve --pepper/--pepper-id` sets it.
    pub fn pepper(mut self, id: &str, pepper: &[u8]) -> Self {
        self.hasher = KeyHasher::hmac(id.to_owned(), pepper.to_vec());
        self
    }
    /// SQLite: how often the change log is read (100 ms).
    pub fn change_poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }
    /// PostgreSQL: the schema holding keyward's tables, as `--database-schema` sets it.
    pub fn database_schema(mut self, schema: &str) -> Self {
        self.schema = Some(schema.to_owned());
        self
    }
    /// Shares rate limits with every node through this Redis (feature `redis`); local limits
    /// otherwise.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, url: &str) -> Self {
        self.redis = Some(url.to_owned());
        self
    }

    /// Opens the store, starts change propagation and usage recording, and builds the verifier.
    pub async fn build(self) -> Result<Keyward, ConnectError> {
        let (store, propagation) = self.open().await?;
        let usage = UsageRecorder::spawn(store.clone(), self.usage_flush);
        let builder = Verifier::from_store(store)
            .format(self.format.clone())
            .hasher(self.hasher.clone())
            .cache_ttl(self.cache_ttl)
            .negative_ttl(self.negative_ttl)
            .cache_capacity(self.cache_capacity)
            .store_policy(self.store_policy)
            .usage(usage.clone());
        #[cfg(feature = "redis")]
        let builder = match &self.redis {
            Some(url) => {
                let limiter = keyward_redis::RedisRateLimiter::new(url)
                    .map_err(|e| ConnectError::Redis(e.to_string()))?;
                builder.rate_limiter(Arc::new(limiter))
            }
            None => builder,
        };
        let verifier = builder.build();
        let propagation = propagation.start(&verifier, self.poll_interval).await?;
        Ok(Keyward { verifier, usage, propagation })
    }

    async fn open(&self) -> Result<(Arc<dyn KeyStore>, Opened), ConnectError> {
        let url = self.url.as_str();
        #[cfg(feature = "postgres")]
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = keyward_store::PgStoreOptions { schema: self.schema.clone(), ..Default::default() };
            let store = keyward_store::PgStore::open_with(url, options).await?;
            return Ok((Arc::new(store.clone()), Opened::Postgres(store)));
        }
        #[cfg(feature = "sqlite")]
        if url.starts_with("sqlite:") {
            let store = keyward_store::SqliteStore::open(url).await?;
            return Ok((Arc::new(store.clone()), Opened::Sqlite(store)));
        }
        Err(ConnectError::UnsupportedUrl(url.to_owned()))
    }
}

enum Opened {
    #[cfg(feature = "sqlite")]
    Sqlite(keyward_store::SqliteStore),
    #[cfg(feature = "postgres")]
    Postgres(keyward_store::PgStore),
}

impl Opened {
    async fn start(self, verifier: &Verifier, poll: Duration) -> Result<Propagation, ConnectError> {
        #[cfg(not(feature = "sqlite"))]
        let _ = poll;
        Ok(match self {
            #[cfg(feature = "sqlite")]
            Opened::Sqlite(store) => {
                let config = keyward_store::ChangeLogConfig { interval: poll, ..Default::default() };
                let poller =
                    keyward_store::ChangeLogPoller::start_with(&store, verifier.clone(), config).await?;
                Propagation::Sqlite { poller, store }
            }
            #[cfg(feature = "postgres")]
            Opened::Postgres(store) => {
                let feed = keyward_store::ChangeFeed::start(&store, verifier.clone()).await?;
                Propagation::Postgres { feed, store }
            }
        })
    }
}

#[derive(Debug)]
enum Propagation {
    #[cfg(feature = "sqlite")]
    Sqlite { poller: keyward_store::ChangeLogPoller, store: keyward_store::SqliteStore },
    #[cfg(feature = "postgres")]
    Postgres { feed: keyward_store::ChangeFeed, store: keyward_store::PgStore },
}

/// A verifier connected to the keys a `keyward serve` manages. See the [module docs](self).
#[derive(Debug)]
pub struct Keyward {
    verifier: Verifier,
    usage: UsageRecorder,
    propagation: Propagation,
}

impl Keyward {
    /// The verifier, for the actix middleware or direct calls.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// A tower layer over the verifier (axum, tonic); add requirements with its builder
    /// methods, e.g. `.require_scope(..)`.
    #[cfg(feature = "tower")]
    pub fn layer(&self) -> keyward_tower::KeywardLayer {
        keyward_tower::KeywardLayer::new(self.verifier.clone())
    }

    /// Whether change propagation is running: the SQLite change log could be read at the last
    /// poll, or the PostgreSQL feed is listening.
    pub fn propagating(&self) -> bool {
        match &self.propagation {
            #[cfg(feature = "sqlite")]
            Propagation::Sqlite { poller, .. } => poller.is_healthy(),
            #[cfg(feature = "postgres")]
            Propagation::Postgres { feed, .. } => feed.is_connected(),
        }
    }

    /// Stops propagation, writes the usage not yet written and closes the database.
    pub async fn shutdown(self) -> Result<(), StoreError> {
        let flushed = self.usage.shutdown().await;
        match self.propagation {
            #[cfg(feature = "sqlite")]
            Propagation::Sqlite { poller, store } => {
                poller.stop();
                store.close().await;
            }
            #[cfg(feature = "postgres")]
            Propagation::Postgres { feed, store } => {
                feed.stop();
                store.close().await;
            }
        }
        flushed
    }
}
