//! Running the server: opening the store, first-start bootstrap, one node's wiring, graceful
//! shutdown.
//!
//! A node is the management API over a [`Database`], with its own verifier cache. With SQLite
//! (the default) there is one node. With PostgreSQL (`--database postgres://...`) any number of
//! nodes share the database: each listens to the [`ChangeFeed`] so that a change made through
//! any node reaches every node's cache at once, and with `--redis` they share rate limits too.
//!
//! Connections are served by [`serve_http`], within [`ConnectionLimits`]: timeouts on request
//! heads, bodies and idle connections, and a cap on their number.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use keyward_server::serve::{ServeConfig, node, serve_http, shutdown_signal};
//!
//! let config = ServeConfig {
//!     database: "postgres://keyward@db.internal/keyward".into(),
//!     redis: Some("redis://cache.internal:6379".into()),
//!     ..ServeConfig::default()
//! };
//! let node = node(&config).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! serve_http(listener, node.app(), config.connections, shutdown_signal()).await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use keyward_core::{
    Actor, ChangeListener, CreatedKey, KeyFormat, KeyHasher, KeyService, KeyStore, LegacyFormat, NewKey,
    NewWorkspace, ScopeSet, SecretEncoding, StoreError, StorePolicy, UsageRecorder, Verifier,
};
use keyward_redis::{RedisLimiterConfig, RedisRateLimiter};
use keyward_store::{ChangeFeed, ChangeFeedConfig, ChangeLogPoller, PgStore, PgStoreOptions, SqliteStore};
use tokio::net::TcpListener;

use crate::webhooks::{WebhookConfig, WebhookWorker};
use crate::{AppState, Readiness, app};

mod transport;

pub use transport::{ConnectionLimits, serve_http};

/// Settings of `keyward serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// `sqlite://path` (or a bare path), or `postgres://...` for several nodes.
    pub database: String,
    /// PostgreSQL only: the schema holding keyward's tables (created when missing); `None` uses
    /// the connection's default (usually `public`).
    pub database_schema: Option<String>,
    /// PostgreSQL only: most pooled connections per node.
    pub database_max_connections: u32,
    /// PostgreSQL only: longest a store call may take, waiting for a connection included, before
    /// the request fails with 503 `STORE_UNAVAILABLE`, even when the database stops answering
    /// mid-query; also the sessions' statement timeout.
    pub database_timeout: Duration,
    /// PostgreSQL only: how the change feed reconnects and probes its connection.
    pub change_feed: ChangeFeedConfig,
    /// `redis://...` to share rate limits between nodes; `None` limits in process.
    pub redis: Option<String>,
    /// Prefix of every rate-limit key in Redis (deployments sharing a Redis need distinct ones).
    pub redis_prefix: String,
    /// Key prefix, e.g. `kw`.
    pub key_prefix: String,
    /// Secret encoding.
    pub key_encoding: SecretEncoding,
    /// HMAC pepper; `None` hashes with plain SHA-256.
    pub pepper: Option<String>,
    /// Id recorded with peppered hashes.
    pub pepper_id: String,
    /// Imported keys' format, accepted without keyward's checksum; `None` accepts only
    /// keyward's format.
    pub legacy_keys: Option<LegacyFormat>,
    /// What leak reports do (revoke or flag) and the keys GitHub's reports are signed with.
    pub leaks: crate::leaks::LeakSettings,
    /// Audit retention in days.
    pub audit_retention_days: u32,
    /// Verifier cache TTL: also the longest a node may act on a stale key while the change feed
    /// is down.
    pub cache_ttl: Duration,
    /// Serve cached keys this long when the store is down; `None` fails closed.
    pub serve_stale: Option<Duration>,
    /// Usage flush interval (at most 10 s).
    pub usage_flush: Duration,
    /// Timeouts of client connections, and how many there may be.
    pub connections: ConnectionLimits,
    /// Where to serve `GET /metrics` without a key, on a listener of its own; `None` serves it
    /// only on `bind`, to keys with scope `metrics:read` (see [`crate::metrics`]).
    pub metrics_bind: Option<SocketAddr>,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers name the client, for IP
    /// allowlists; empty (the default): the socket's peer is the client.
    pub trusted_proxies: Vec<keyward_core::IpNet>,
    /// How webhook events are delivered (see [`crate::webhooks`]).
    pub webhooks: WebhookConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        let pg = PgStoreOptions::default();
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: "sqlite://keyward.db".into(),
            database_schema: None,
            database_max_connections: pg.max_connections,
            database_timeout: pg.acquire_timeout,
            change_feed: ChangeFeedConfig::default(),
            redis: None,
            redis_prefix: RedisLimiterConfig::default().key_prefix,
            key_prefix: "kw".into(),
            key_encoding: SecretEncoding::Base62,
            pepper: None,
            pepper_id: "p1".into(),
            legacy_keys: None,
            leaks: crate::leaks::LeakSettings::default(),
            audit_retention_days: 90,
            cache_ttl: Duration::from_secs(60),
            serve_stale: None,
            usage_flush: Duration::from_secs(10),
            connections: ConnectionLimits::default(),
            metrics_bind: None,
            trusted_proxies: Vec::new(),
            webhooks: WebhookConfig::default(),
        }
    }
}

/// Whether a database URL names PostgreSQL.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The database a node runs on.
#[derive(Debug, Clone)]
pub enum Database {
    /// One embedded file: one node.
    Sqlite(SqliteStore),
    /// A PostgreSQL database any number of nodes share.
    Postgres(PgStore),
}

impl Database {
    /// Opens the database `config.database` names, applying the migrations.
    pub async fn open(config: &ServeConfig) -> anyhow::Result<Database> {
        let url = &config.database;
        let shown = redact_url(url);
        if is_postgres(url) {
            let options = PgStoreOptions {
                schema: config.database_schema.clone(),
                max_connections: config.database_max_connections,
                acquire_timeout: config.database_timeout,
                query_timeout: config.database_timeout,
            };
            let store = PgStore::open_with(url, options).await.with_context(|| format!("opening {shown}"))?;
            return Ok(Database::Postgres(store));
        }
        if config.database_schema.is_some() {
            bail!("a database schema applies to PostgreSQL only, not to {shown}");
        }
        let store = SqliteStore::open(url).await.with_context(|| format!("opening {shown}"))?;
        Ok(Database::Sqlite(store))
    }

    /// The store, for a [`KeyService`].
    pub fn store(&self) -> Arc<dyn KeyStore> {
        match self {
            Database::Sqlite(s) => Arc::new(s.clone()),
            Database::Postgres(s) => Arc::new(s.clone()),
        }
    }

    /// The versions of keyward's migrations the database has not applied, read within `limit`:
    /// fails when the database does not answer in time.
    pub async fn unapplied_migrations(&self, limit: Duration) -> Result<Vec<i64>, StoreError> {
        match self {
            Database::Sqlite(s) => s.unapplied_migrations(limit).await,
            Database::Postgres(s) => s.unapplied_migrations(limit).await,
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match self {
            Database::Sqlite(s) => s.close().await,
            Database::Postgres(s) => s.close().await,
        }
    }
}

/// Opens the store a database URL names (SQLite or PostgreSQL, default settings).
pub async fn open_store(url: &str) -> anyhow::Result<Arc<dyn KeyStore>> {
    let config = ServeConfig { database: url.to_owned(), ..ServeConfig::default() };
    Ok(Database::open(&config).await?.store())
}

/// The service for a configuration, over `store`.
pub fn service(config: &ServeConfig, store: Arc<dyn KeyStore>) -> anyhow::Result<KeyService> {
    let format = KeyFormat::new(&config.key_prefix)?.with_encoding(config.key_encoding);
    let hasher = match &config.pepper {
        // Imported keys are stored under their plain SHA-256 digest.
        Some(p) => KeyHasher::hmac(config.pepper_id.clone(), p.as_bytes().to_vec()).with_plain_fallback(),
        None => KeyHasher::sha256(),
    };
    let mut service = KeyService::new(store);
    if let Some(legacy) = &config.legacy_keys {
        // The verifiers built from the service take it too.
        service = service.with_legacy_format(legacy.clone());
    }
    Ok(service
        .with_insecure_webhooks(config.webhooks.allow_http)
        .with_format(format)
        .with_hasher(hasher)
        .with_audit_retention(chrono::Duration::days(i64::from(config.audit_retention_days))))
}

/// On an empty database, creates the `default` workspace and a root key (scope `*`) and returns
/// it; otherwise returns `None`. Not safe against another process bootstrapping at the same
/// time: nodes use [`bootstrap_once`].
pub async fn bootstrap(service: &KeyService) -> anyhow::Result<Option<CreatedKey>> {
    if !service.list_workspaces().await?.is_empty() {
        return Ok(None);
    }
    let ws = service.create_workspace(NewWorkspace::live("default"), &Actor::system()).await?;
    let root = NewKey::new(ws.id, "root").with_scopes("*".parse::<ScopeSet>().expect("valid scope"));
    Ok(Some(service.create_key(root, &Actor::system()).await?))
}

/// [`bootstrap`], run by one node at a time. On PostgreSQL, nodes starting together on an empty
/// database would otherwise each see no workspace and each create a root key: the check and the
/// creation run under an advisory lock (scoped to the schema), so the first node creates the
/// root key and the others, once they get the lock, find the workspace and create nothing. An
/// SQLite file has a single node.
pub async fn bootstrap_once(database: &Database, service: &KeyService) -> anyhow::Result<Option<CreatedKey>> {
    match database {
        Database::Sqlite(_) => bootstrap(service).await,
        Database::Postgres(pg) => pg.with_lock("bootstrap", bootstrap(service)).await?,
    }
}

/// One running node's parts: everything [`run`] serves, without the listener.
#[derive(Debug)]
pub struct Node {
    /// The service and verifier the handlers share.
    pub state: AppState,
    /// The database.
    pub database: Database,
    /// The write-behind usage recorder.
    pub usage: UsageRecorder,
    /// The change feed (PostgreSQL only).
    pub feed: Option<ChangeFeed>,
    /// The change log poller (SQLite only): changes other processes make on the file (the CLI,
    /// a service using the layer) reach this node's cache.
    pub poller: Option<ChangeLogPoller>,
    /// The shared rate limiter (with `redis` set).
    pub limiter: Option<Arc<RedisRateLimiter>>,
    /// The root key, when this node bootstrapped an empty database.
    pub root: Option<CreatedKey>,
    /// The webhook delivery worker.
    pub webhooks: Option<WebhookWorker>,
}

/// Opens the database, bootstraps it when empty, and wires the verifier: its cache, the change
/// feed invalidating it (PostgreSQL), the Redis rate limiter (with `redis`), usage recording and
/// the store policy; `/readyz` checks the database and the feed, and `/metrics` renders
/// keyward's Prometheus recorder, installed for the process (see [`crate::metrics::prometheus`]).
pub async fn node(config: &ServeConfig) -> anyhow::Result<Node> {
    let metrics = crate::metrics::prometheus();
    let database = Database::open(config).await?;
    let store = database.store();
    let service = service(config, store.clone())?;
    let root = bootstrap_once(&database, &service).await?;
    let usage = UsageRecorder::spawn(store, config.usage_flush);
    let mut verifier = Verifier::builder(&service).cache_ttl(config.cache_ttl).usage(usage.clone());
    if let Some(stale) = config.serve_stale {
        verifier = verifier.store_policy(StorePolicy::ServeStale(stale));
    }
    let limiter = match &config.redis {
        Some(url) => {
            let limits = RedisLimiterConfig {
                key_prefix: config.redis_prefix.clone(),
                ..RedisLimiterConfig::default()
            };
            let limiter = Arc::new(
                RedisRateLimiter::with_config(url, limits)
                    .with_context(|| format!("Redis at {}", redact_url(url)))?,
            );
            verifier = verifier.rate_limiter(limiter.clone());
            Some(limiter)
        }
        None => None,
    };
    let verifier = verifier.build();
    let mut state = AppState::new(service, verifier.clone()).with_leaks(config.leaks.clone());
    // Other processes' and nodes' changes reach this node's cache, then its remote verifiers.
    let listeners: Vec<Arc<dyn ChangeListener>> = vec![Arc::new(verifier), Arc::new(state.relay.clone())];
    let feed = match &database {
        Database::Postgres(pg) => Some(
            ChangeFeed::start_with(pg, listeners.clone(), config.change_feed.clone())
                .await
                .context("starting the change feed")?,
        ),
        Database::Sqlite(_) => None,
    };
    let poller = match &database {
        Database::Sqlite(sqlite) => {
            Some(ChangeLogPoller::start(sqlite, listeners).await.context("starting the change log poller")?)
        }
        Database::Postgres(_) => None,
    };
    let readiness = Readiness::database(database.clone(), feed.as_ref().map(ChangeFeed::status));
    state = state.with_readiness(readiness).with_trusted_proxies(config.trusted_proxies.clone());
    if let Some(handle) = metrics {
        state = state.with_metrics(handle);
    }
    let webhooks = WebhookWorker::spawn(state.service.store().clone(), &state.relay, config.webhooks.clone())
        .context("starting the webhook worker")?;
    Ok(Node { state, database, usage, feed, poller, limiter, root, webhooks })
}

impl Node {
    /// The application to serve.
    pub fn app(&self) -> axum::Router {
        app(self.state.clone())
    }

    /// Stops the change feed, flushes usage and closes the database.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        if let Some(worker) = self.webhooks {
            worker.shutdown().await;
        }
        drop(self.feed);
        drop(self.poller);
        let flushed = self.usage.shutdown().await.context("flushing usage on shutdown");
        self.database.close().await;
        flushed
    }
}

/// Runs the server until `shutdown` resolves, then flushes usage.
pub async fn run(
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let node = node(&config).await?;
    if let Some(root) = &node.root {
        // Printed to stdout once, never logged.
        println!("keyward: created workspace \"default\" ({}) and its root key.", root.key.workspace_id);
        println!("Root API key (shown once; it will not be shown again, store it now):");
        println!("{}", root.secret.expose_secret());
    }

    let purge = node.state.service.clone();
    let purger = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(6 * 3600));
        loop {
            tick.tick().await;
            match purge.purge_audit().await {
                Ok(n) => tracing::info!(purged = n, "audit retention applied"),
                Err(e) => tracing::warn!(error = %e, "audit purge failed"),
            }
        }
    });

    let listener =
        TcpListener::bind(config.bind).await.with_context(|| format!("binding {}", config.bind))?;
    // Both listeners stop on the one signal.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let relay = node.state.relay.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
        // Event streams never end by themselves; the graceful shutdown would wait for them.
        relay.close();
    });
    let on_stop = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let metrics_server = match (config.metrics_bind, node.state.metrics.clone()) {
        (Some(addr), Some(handle)) => {
            let listener =
                TcpListener::bind(addr).await.with_context(|| format!("binding {addr} for metrics"))?;
            tracing::info!(addr = %listener.local_addr()?, "keyward metrics listening");
            let app = crate::metrics::metrics_app(handle);
            Some(tokio::spawn(serve_http(listener, app, config.connections, on_stop())))
        }
        (Some(addr), None) => bail!("cannot serve metrics on {addr}: another metrics recorder is installed"),
        (None, _) => None,
    };
    tracing::info!(
        addr = %listener.local_addr()?,
        database = %redact_url(&config.database),
        schema = match &node.database {
            Database::Postgres(pg) => pg.schema(),
            Database::Sqlite(_) => "-",
        },
        redis = %config.redis.as_deref().map_or_else(|| "-".to_owned(), redact_url),
        "keyward listening"
    );
    serve_http(listener, node.app(), config.connections, on_stop()).await?;
    if let Some(metrics_server) = metrics_server {
        metrics_server.await.context("the metrics listener")??;
    }
    purger.abort();
    node.shutdown().await?;
    tracing::info!("keyward stopped; usage flushed");
    Ok(())
}

/// A database URL without its password, for logs: `postgres://user:pw@host/db` reads
/// `postgres://user:***@host/db`; a URL without a password is left as it is.
pub fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|s| s + 3) else { return url.to_owned() };
    // The userinfo ends at the last `@` of the authority (a password may hold `@`, a path not
    // before the authority ends).
    let authority_end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    let Some(at) = url[start..authority_end].rfind('@').map(|i| start + i) else { return url.to_owned() };
    match url[start..at].split_once(':') {
        Some((user, _password)) => format!("{}{user}:***{}", &url[..start], &url[at..]),
        None => url.to_owned(),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redact_url_hides_passwords_only() {
        assert_eq!(redact_url("postgres://user:pw@host/db"), "postgres://user:***@host/db");
        assert_eq!(redact_url("postgres://user@host/db"), "postgres://user@host/db");
        assert_eq!(redact_url("postgres://host:5432/db"), "postgres://host:5432/db");
        assert_eq!(redact_url("postgres://user:p%40ss@w@host:5432/db"), "postgres://user:***@host:5432/db");
        assert_eq!(redact_url("postgres://user:@host/db"), "postgres://user:***@host/db");
        assert_eq!(redact_url("redis://:secret@cache:6379"), "redis://:***@cache:6379");
        assert_eq!(redact_url("postgres://host/db?user=a@b"), "postgres://host/db?user=a@b");
        assert_eq!(redact_url("sqlite://keyward.db"), "sqlite://keyward.db");
        assert_eq!(redact_url("keyward.db"), "keyward.db");
    }
}
