//! The PostgreSQL store, for deployments of several nodes.
//!
//! A connection pool; migrations embedded and applied on open (under sqlx's migration lock, so
//! nodes starting together apply them once; recorded in `_keyward_migrations`); runtime queries
//! only. Every change is safe when
//! several nodes write at once:
//!
//! - a key's changes are compare-and-swaps (`UPDATE ... WHERE id = $1 AND version = $2`): under
//!   READ COMMITTED the second of two concurrent updates waits for the first, re-reads the row,
//!   finds another version and changes nothing, which the service sees as a conflict;
//! - the key limit is counted while holding a row lock on the workspace
//!   (`SELECT ... FOR NO KEY UPDATE`), so concurrent creates in one workspace are serialised;
//! - usage batches lock the rows they touch in key order, so two nodes flushing at once never
//!   deadlock.
//!
//! Every change a verifier may have cached announces itself with `pg_notify` from a trigger in
//! the writing transaction (see [`ChangeFeed`](crate::ChangeFeed)).
//!
//! Every call has [`PgStoreOptions::query_timeout`], waiting for its connection included: a
//! database that stops answering (a frozen network, a stuck host) fails the call with
//! [`StoreError::Unavailable`] within it, and the connection it was using is closed. The same
//! bound is each session's `statement_timeout`, so the server stops what the store gave up on.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use keyward_core::{StoreError, UsageBatch};
use sqlx::error::DatabaseError;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgQueryResult};
use sqlx::{Connection, Postgres};

use crate::error::map_sqlx;
use crate::rows::{day_text, to_i64, to_ms};
use crate::sql::{SqlBackend, impl_key_store};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Where applied migrations are recorded, in keyward's schema.
const MIGRATIONS_TABLE: &str = "_keyward_migrations";

/// The longest schema name PostgreSQL accepts (NAMEDATALEN - 1 bytes).
const MAX_IDENTIFIER: usize = 63;

/// How a [`PgStore`] connects.
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    /// The schema holding keyward's tables, created when missing and put first on every
    /// connection's `search_path`; `None` uses the connection's own default (usually `public`).
    pub schema: Option<String>,
    /// Most pooled connections.
    pub max_connections: u32,
    /// Longest wait for a connection (an unreachable database is reported as
    /// [`StoreError::Unavailable`] after this long at most).
    pub acquire_timeout: Duration,
    /// Longest one store call may take, waiting for its connection included; past it the call
    /// fails with [`StoreError::Unavailable`]. Also each session's `statement_timeout` and
    /// `idle_in_transaction_session_timeout`, so that the database gives up too (and releases
    /// any locks) when the store has.
    pub query_timeout: Duration,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        Self {
            schema: None,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(5),
        }
    }
}

impl PgStoreOptions {
    /// Uses `schema` for keyward's tables.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }
}

/// A [`KeyStore`](keyward_core::KeyStore) in a PostgreSQL database. Cheap to clone: clones share
/// one pool.
///
/// ```no_run
/// # async fn demo() -> Result<(), keyward_core::StoreError> {
/// use keyward_core::KeyStore;
/// use keyward_store::PgStore;
///
/// let store = PgStore::open_in_schema("postgres://postgres@127.0.0.1:5432/keyward", "keyward").await?;
/// assert_eq!(store.schema(), "keyward");
/// println!("{} plans", store.list_plans().await?.len());
/// store.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    place: Arc<Place>,
}

/// Where the store is: how to connect, which schema, which channel.
#[derive(Debug)]
struct Place {
    connect: PgConnectOptions,
    schema: String,
    channel: String,
    query_timeout: Duration,
}

/// SQLSTATEs that mean "not reachable or too busy right now": connection exceptions (08),
/// insufficient resources (53), operator intervention (57: shutdown, cancelled by a statement
/// timeout), lock not available (55P03), and serialisation failures and deadlocks (40), which
/// the caller may simply retry.
fn pg_transient(e: &dyn DatabaseError) -> bool {
    let code = e.code();
    let code = code.as_deref().unwrap_or("");
    ["08", "53", "57", "40"].iter().any(|class| code.starts_with(class)) || code == "55P03"
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    map_sqlx(e, pg_transient)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl PgStore {
    /// Opens the database at `url` (`postgres://user:password@host:port/database`) with the
    /// default options, applying the migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, PgStoreOptions::default()).await
    }

    /// Opens the database at `url` with keyward's tables in `schema` (created when missing).
    pub async fn open_in_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        Self::open_with(url, PgStoreOptions::default().schema(schema)).await
    }

    /// Opens the database at `url` with explicit options.
    pub async fn open_with(url: &str, options: PgStoreOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url).map_err(db_err)?;
        Self::connect_with(connect, options).await
    }

    /// Opens the database `connect` names with explicit options.
    pub async fn connect_with(
        connect: PgConnectOptions,
        options: PgStoreOptions,
    ) -> Result<Self, StoreError> {
        let mut connect = connect.application_name("keyward");
        if let Some(schema) = &options.schema {
            if schema.is_empty() || schema.len() > MAX_IDENTIFIER || schema.contains('\0') {
                return Err(StoreError::Other(format!("invalid schema name {schema:?}")));
            }
            connect = connect.options([("search_path", quote_ident(schema))]);
        }
        let query_timeout = options.query_timeout;
        let millis = query_timeout.as_millis();
        if millis == 0 || millis > i32::MAX as u128 {
            return Err(StoreError::Other(format!("invalid query timeout {query_timeout:?}")));
        }
        // The server-side halves of the query timeout: a statement the store has given up on
        // stops running, and a transaction whose client went silent releases its locks.
        connect =
            connect.options([("statement_timeout", millis), ("idle_in_transaction_session_timeout", millis)]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(db_err)?;
        migrate(&pool, options.schema.as_deref()).await?;
        // Where the tables really are, and the channel their triggers announce changes on
        // (computed exactly as the trigger does).
        let (schema, channel): (String, String) = sqlx::query_as(
            "SELECT n.nspname::text, CASE WHEN octet_length(n.nspname) <= 55 THEN 'keyward_' || n.nspname \
             ELSE 'keyward_' || md5(n.nspname) END \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = 'api_keys'::regclass",
        )
        .fetch_one(&pool)
        .await
        .map_err(db_err)?;
        Ok(Self { pool, place: Arc::new(Place { connect, schema, channel, query_timeout }) })
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The connection settings, `search_path` included.
    pub fn connect_options(&self) -> &PgConnectOptions {
        &self.place.connect
    }

    /// The schema holding keyward's tables.
    pub fn schema(&self) -> &str {
        &self.place.schema
    }

    /// The `LISTEN`/`NOTIFY` channel on which this schema's changes are announced.
    pub fn channel(&self) -> &str {
        &self.place.channel
    }

    /// Closes every connection, waiting for those in use to be returned. Later calls fail with
    /// `Unavailable`.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs `work` while holding a PostgreSQL advisory lock named `name` (scoped to this schema),
    /// so that at most one node at a time runs it, e.g. the first-start bootstrap. The lock is
    /// held by a connection of its own, which is closed afterwards: even if `work` panics or is
    /// cancelled, the session ends and the lock is released.
    pub async fn with_lock<T>(&self, name: &str, work: impl Future<Output = T>) -> Result<T, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?.detach();
        let key = format!("keyward:{}:{name}", self.place.schema);
        sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
            .bind(&key)
            .execute(&mut conn)
            .await
            .map_err(db_err)?;
        let out = work.await;
        // Closing the session releases the lock; unlock first anyway so the release does not
        // wait for the server to notice the closed socket.
        let _ = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
            .bind(&key)
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
        Ok(out)
    }

    /// Runs `work` on a pooled connection within the query timeout, waiting for the connection
    /// included: a database that stops answering mid-query fails the call with
    /// [`StoreError::Unavailable`] instead of holding it for the whole outage (the server's
    /// `statement_timeout` cannot help when its answers do not arrive).
    async fn bounded<T>(
        &self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.bounded_by(self.place.query_timeout, work).await
    }

    /// [`PgStore::bounded`] with another limit.
    async fn bounded_by<T>(
        &self,
        limit: Duration,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let deadline = tokio::time::Instant::now() + limit;
        let silent = || StoreError::Unavailable(format!("the database did not answer within {limit:?}"));
        let mut conn = match tokio::time::timeout_at(deadline, self.pool.acquire()).await {
            Ok(conn) => conn.map_err(db_err)?,
            Err(_) => return Err(silent()),
        };
        match tokio::time::timeout_at(deadline, work(&mut conn)).await {
            Ok(done) => done,
            Err(_) => {
                // Cut off mid-exchange: closed (within sqlx's bound) rather than returned to the
                // pool, whose check of it would wait, holding a slot, as long as the database
                // stays silent.
                conn.close_on_drop();
                Err(silent())
            }
        }
    }
}

impl PgStore {
    /// The versions of keyward's migrations that the database has not applied (none, once the
    /// store opened), read within `limit`, waiting for a connection included: a cheap query
    /// that tells whether the database answers, for readiness checks.
    pub async fn unapplied_migrations(&self, limit: Duration) -> Result<Vec<i64>, StoreError> {
        let applied: Vec<i64> = self
            .bounded_by(limit, async |conn| {
                // `MIGRATIONS_TABLE`.
                sqlx::query_scalar("SELECT version FROM _keyward_migrations WHERE success")
                    .fetch_all(conn)
                    .await
                    .map_err(db_err)
            })
            .await?;
        Ok(MIGRATOR.iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect())
    }
}

/// Applies keyward's migrations on a connection of their own, without the sessions' statement
/// timeout: a migration (or the wait for another node's) may rightly take longer than a query.
async fn migrate(pool: &PgPool, schema: Option<&str>) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await.map_err(db_err)?.detach();
    sqlx::query("SET statement_timeout = 0").execute(&mut conn).await.map_err(db_err)?;
    let migrated = migrator(schema).run(&mut conn).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(e) => db_err(e),
        other => StoreError::Other(format!("migration failed: {other}")),
    });
    let _ = conn.close().await;
    migrated
}

/// keyward's migrations, tracked in `_keyward_migrations` (so that an application's own sqlx
/// migrations can live in the same schema), creating the schema first when one is named. Both
/// happen under sqlx's migration lock, so nodes starting together neither race to create the
/// schema nor apply a migration twice.
fn migrator(schema: Option<&str>) -> Migrator {
    let mut migrator = Migrator::with_migrations(MIGRATOR.iter().cloned().collect());
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    if let Some(schema) = schema {
        migrator.create_schema(quote_ident(schema));
    }
    migrator
}

// Every call runs through `bounded`: one connection, one deadline.
impl SqlBackend for PgStore {
    type Db = Postgres;

    const BACKEND: &'static str = "postgres";
    const LOCK_ROW: &'static str = " FOR UPDATE";
    const SKIP_LOCKED: &'static str = " FOR UPDATE OF d SKIP LOCKED";

    fn db_err(e: sqlx::Error) -> StoreError {
        db_err(e)
    }

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    async fn read<T>(
        &self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.bounded(work).await
    }

    async fn write<T>(
        &self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.bounded(async |conn| {
            let mut tx = conn.begin().await.map_err(db_err)?;
            let out = work(&mut tx).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(out)
        })
        .await
    }

    async fn lock_workspace(conn: &mut PgConnection, workspace_id: &str) -> Result<(), StoreError> {
        // The workspace's row lock, held to the end of the transaction, serialises these writes
        // on every node. NO KEY UPDATE does not block the foreign-key checks of other writes to
        // the workspace's keys.
        sqlx::query("SELECT 1 FROM workspaces WHERE id = $1 FOR NO KEY UPDATE")
            .bind(workspace_id)
            .execute(conn)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn add_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        // Sorted, so that every node takes the rows' locks in the same order: two batches
        // flushed at once by two nodes wait for each other instead of deadlocking.
        let mut counts: Vec<(String, String, i64)> = batch
            .counts
            .iter()
            .map(|((key, day), n)| Ok((key.to_string(), day_text(*day), to_i64("usage count", *n)?)))
            .collect::<Result<_, StoreError>>()?;
        counts.sort_unstable();
        let mut last_used: Vec<(String, i64)> =
            batch.last_used.iter().map(|(key, at)| (key.to_string(), to_ms(*at))).collect();
        last_used.sort_unstable();

        self.write(async |tx| {
            if !counts.is_empty() {
                let (keys, (days, ns)): (Vec<String>, (Vec<String>, Vec<i64>)) =
                    counts.into_iter().map(|(k, d, n)| (k, (d, n))).unzip();
                // Uses of a key the store does not know are dropped rather than failing the
                // batch (which the recorder would retry forever).
                sqlx::query(
                    "INSERT INTO usage_daily (key_id, day, count) \
                     SELECT u.key_id, u.day, u.count FROM UNNEST($1::text[], $2::text[], $3::bigint[]) \
                     AS u (key_id, day, count) \
                     WHERE EXISTS (SELECT 1 FROM api_keys k WHERE k.id = u.key_id) \
                     ORDER BY u.key_id, u.day \
                     ON CONFLICT (key_id, day) DO UPDATE SET count = usage_daily.count + excluded.count",
                )
                .bind(keys)
                .bind(days)
                .bind(ns)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            if !last_used.is_empty() {
                let (keys, ats): (Vec<String>, Vec<i64>) = last_used.into_iter().unzip();
                // Lock in key order first; the update then waits for nothing.
                sqlx::query("SELECT id FROM api_keys WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
                    .bind(&keys)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                sqlx::query(
                    "UPDATE api_keys k SET last_used_at = u.at \
                     FROM UNNEST($1::text[], $2::bigint[]) AS u (id, at) \
                     WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)",
                )
                .bind(keys)
                .bind(ats)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }
}

impl_key_store!(PgStore);
