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
//! | `http(s)://<keyward serve>` + a service key (feature `remote`) | the server's event stream | sent back to the server in batches |
//!
//! While propagation is down the cache TTL (60 s by default) bounds staleness, and the store
//! policy ([`StorePolicy`]) says what happens when the database (or, in remote mode, the
//! server) cannot be read.
//!
//! In remote mode the service holds no database credentials, only a key with scope
//! `keys:verify` (an internal key, one that also holds `workspaces:admin`, verifies the keys
//! of every workspace; any other only those of its own workspace), given with
//! `Connect::service_key` or in `KEYWARD_SERVICE_KEY`. See `keyward::remote` for how it works;
//! rate limits are local unless [`Connect::redis`] is set.
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
    #[error(
        "unsupported keyward URL {0:?}: use sqlite://path, postgres://... or http(s)://server (with the matching feature)"
    )]
    UnsupportedUrl(String),
    /// The database could not be opened.
    #[error("opening the key store: {0}")]
    Store(#[from] StoreError),
    /// The Redis URL is not valid.
    #[error("the Redis rate limiter: {0}")]
    Redis(String),
    /// Remote mode without a service key.
    #[error(
        "an http(s):// keyward URL needs a service key with scope keys:verify: Connect::service_key or KEYWARD_SERVICE_KEY"
    )]
    MissingServiceKey,
    /// The keyward server could not be reached, or refused the service key.
    #[error("the keyward server: {0}")]
    Remote(String),
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
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    service_key: Option<ServiceKey>,
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    remote_timeout: Duration,
}

/// A service key; its `Debug` never shows it.
#[derive(Clone)]
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
struct ServiceKey(String);

impl std::fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
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
            service_key: std::env::var("KEYWARD_SERVICE_KEY")
                .ok()
                .filter(|k| !k.trim().is_empty())
                .map(ServiceKey),
            remote_timeout: Duration::from_secs(5),
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

    /// Remote mode: the key (scope `keys:verify`) the service asks the server with; read from
    /// `KEYWARD_SERVICE_KEY` when not set.
    #[cfg(feature = "remote")]
    pub fn service_key(mut self, key: &str) -> Self {
        self.service_key = Some(ServiceKey(key.trim().to_owned()));
        self
    }
    /// Remote mode: the longest a call to the server may take, connecting included (5 s); a
    /// cache miss the server does not answer in time is handled by the store policy.
    #[cfg(feature = "remote")]
    pub fn remote_timeout(mut self, timeout: Duration) -> Self {
        self.remote_timeout = timeout;
        self
    }

    /// Opens the store (or checks the server and the service key), starts change propagation
    /// and usage recording, and builds the verifier.
    pub async fn build(self) -> Result<Keyward, ConnectError> {
        #[cfg(feature = "remote")]
        if self.url.starts_with("http://") || self.url.starts_with("https://") {
            return self.build_remote().await;
        }
        let (store, propagation) = self.open().await?;
        let usage = UsageRecorder::spawn(store.clone(), self.usage_flush);
        let builder =
            self.configured(Verifier::from_store(store)).hasher(self.hasher.clone()).usage(usage.clone());
        let verifier = self.limited(builder)?.build();
        let propagation = propagation.start(&verifier, self.poll_interval).await?;
        Ok(Keyward { verifier, usage, propagation })
    }

    /// The cache and store-policy settings every mode shares.
    fn configured(&self, builder: keyward_core::VerifierBuilder) -> keyward_core::VerifierBuilder {
        builder
            .format(self.format.clone())
            .cache_ttl(self.cache_ttl)
            .negative_ttl(self.negative_ttl)
            .cache_capacity(self.cache_capacity)
            .store_policy(self.store_policy)
    }

    /// The Redis limiter when one is set; local limits otherwise.
    fn limited(
        &self,
        builder: keyward_core::VerifierBuilder,
    ) -> Result<keyward_core::VerifierBuilder, ConnectError> {
        #[cfg(feature = "redis")]
        if let Some(url) = &self.redis {
            let limiter =
                keyward_redis::RedisRateLimiter::new(url).map_err(|e| ConnectError::Redis(e.to_string()))?;
            return Ok(builder.rate_limiter(Arc::new(limiter)));
        }
        Ok(builder)
    }

    #[cfg(feature = "remote")]
    async fn build_remote(self) -> Result<Keyward, ConnectError> {
        let key = self.service_key.clone().ok_or(ConnectError::MissingServiceKey)?;
        let base = self.url.trim_end_matches('/').to_owned();
        let client = keyward_client::KeywardClient::builder(&base, &key.0)
            .timeout(self.remote_timeout)
            // A request waiting on a cache miss must not also wait out a Retry-After: a refusal
            // is answered by the store policy at once (and usage is retried at the next flush).
            .retry_policy(keyward_client::RetryPolicy::none())
            .build()
            .map_err(|e| ConnectError::Remote(e.to_string()))?;
        // Fail now, with a clear reason, rather than at the first request.
        let status =
            client.status().send().await.map_err(|e| ConnectError::Remote(e.to_string()))?.into_inner();
        if !status.scopes.iter().any(|s| {
            s.parse::<keyward_core::ScopeSet>()
                .is_ok_and(|s| s.allows(&"keys:verify".parse().expect("a valid scope")))
        }) {
            return Err(ConnectError::Remote("the service key lacks scope keys:verify".into()));
        }
        let remote = Arc::new(crate::remote::Remote::new(client));
        let usage = UsageRecorder::spawn_to(remote.clone(), self.usage_flush);
        let builder = self.configured(Verifier::remote(remote)).usage(usage.clone());
        let verifier = self.limited(builder)?.build();
        let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.0))
            .map_err(|_| ConnectError::Remote("the service key is not a valid header value".into()))?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(self.remote_timeout)
            .default_headers([(reqwest::header::AUTHORIZATION, auth)].into_iter().collect())
            .build()
            .map_err(|e| ConnectError::Remote(e.to_string()))?;
        let stream =
            crate::remote::EventStream::start(http, format!("{base}/v1/verifier/events"), verifier.clone());
        Ok(Keyward { verifier, usage, propagation: Propagation::Remote { stream } })
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
    // With neither store built (remote mode alone) there is nothing to start.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(unused_variables, unreachable_code))]
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
    #[cfg(feature = "remote")]
    Remote { stream: crate::remote::EventStream },
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
            #[cfg(feature = "remote")]
            Propagation::Remote { stream } => stream.is_connected(),
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
            #[cfg(feature = "remote")]
            Propagation::Remote { stream } => drop(stream),
        }
        flushed
    }
}
