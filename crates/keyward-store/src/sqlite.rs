//! The embedded SQLite store.
//!
//! One database file, WAL journal (readers never wait for the writer), a busy timeout so writers
//! queue instead of failing, foreign keys on, a connection pool. Every write that reads before
//! it writes (the key limit, the compare-and-swap of a key's version) runs in a
//! `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock first: two such transactions
//! never both decide on the same snapshot, and none fails half-way with `SQLITE_BUSY` when it
//! upgrades from reading to writing.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use keyward_core::{KeyDigest, StoreError, UsageBatch};
use sqlx::Sqlite;
use sqlx::error::DatabaseError;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteQueryResult, SqliteSynchronous,
};

use crate::direct::DirectReader;
use crate::error::map_sqlx;
use crate::rows::{day_text, to_i64, to_json, to_ms};
use crate::sql::{SqlBackend, impl_key_store};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for SQLite's write lock before the store reports `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most pooled connections to a database file (WAL lets them all read at once).
const MAX_CONNECTIONS: u32 = 8;

/// A [`KeyStore`](keyward_core::KeyStore) in an SQLite database. Cheap to clone: clones share one
/// pool.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use keyward_core::KeyStore;
/// use keyward_store::SqliteStore;
///
/// let store = SqliteStore::open("sqlite::memory:").await?;
/// assert!(store.list_plans().await?.is_empty());
/// store.close().await;
/// # Ok::<(), keyward_core::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Reads a cold key's record on the caller's thread (see `direct`); `None` for an
    /// in-memory database or a store made [`from_pool`](SqliteStore::from_pool).
    direct: Option<Arc<DirectReader>>,
}

fn sqlite_transient(e: &dyn DatabaseError) -> bool {
    // Extended result codes carry the primary code in their low byte.
    let primary = e.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
    // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.
    matches!(primary, Some(5 | 6 | 10 | 13 | 14))
}

fn db_err(e: sqlx::Error) -> StoreError {
    map_sqlx(e, sqlite_transient)
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url_or_path`: a `sqlite:` URL such as
    /// `sqlite://data/keyward.db` or `sqlite::memory:`, or a file path. Applies the migrations.
    pub async fn open(url_or_path: &str) -> Result<Self, StoreError> {
        let in_memory = url_or_path.contains(":memory:") || url_or_path.contains("mode=memory");
        let options = if url_or_path.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url_or_path).map_err(db_err)?
        } else {
            SqliteConnectOptions::new().filename(url_or_path)
        };
        if in_memory {
            // An in-memory database lives as long as one of its connections: keep exactly one.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options.foreign_keys(true).busy_timeout(BUSY_TIMEOUT))
                .await
                .map_err(db_err)?;
            return Self::from_pool(pool).await;
        }
        Self::open_with(options, SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)).await
    }

    /// Opens a database file with the given options; keyward adds its own settings on top
    /// (create if missing, WAL, busy timeout, foreign keys) and applies the migrations.
    pub async fn open_with(
        options: SqliteConnectOptions,
        pool: SqlitePoolOptions,
    ) -> Result<Self, StoreError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable in WAL mode except for the last commits before a power loss.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let file = options.get_filename().to_owned();
        let pool = pool.connect_with(options).await.map_err(db_err)?;
        let mut store = Self::from_pool(pool).await?;
        // An in-memory database has no file that another connection could open.
        if std::fs::metadata(&file).is_ok_and(|m| m.is_file()) {
            match DirectReader::open(&file) {
                Ok(reader) => store.direct = Some(Arc::new(reader)),
                Err(error) => tracing::warn!(%error, "cold keys will be read through the pool"),
            }
        }
        Ok(store)
    }

    /// Uses an existing pool, applying the migrations.
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        MIGRATOR.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => db_err(e),
            other => StoreError::Other(format!("migration failed: {other}")),
        })?;
        Ok(Self { pool, direct: None })
    }

    /// The connection pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection, waiting for those in use to be returned. Later calls fail with
    /// `Unavailable`.
    pub async fn close(&self) {
        if let Some(direct) = &self.direct {
            direct.close();
        }
        self.pool.close().await;
    }

    /// The reader of cold keys on the caller's thread, if the store has one.
    #[cfg(test)]
    pub(crate) fn direct_reader(&self) -> Option<&DirectReader> {
        self.direct.as_deref()
    }

    /// The versions of keyward's migrations that the database has not applied (none, once the
    /// store opened), read within `limit`, waiting for a connection included: a cheap query
    /// that tells whether the database answers, for readiness checks.
    pub async fn unapplied_migrations(&self, limit: Duration) -> Result<Vec<i64>, StoreError> {
        let read = async {
            let mut conn = self.pool.acquire().await.map_err(db_err)?;
            sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err)
        };
        let applied = tokio::time::timeout(limit, read).await.map_err(|_| {
            StoreError::Unavailable(format!("the database did not answer within {limit:?}"))
        })??;
        Ok(MIGRATOR.iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect())
    }
}

impl SqlBackend for SqliteStore {
    type Db = Sqlite;

    const BACKEND: &'static str = "sqlite";

    fn db_err(e: sqlx::Error) -> StoreError {
        db_err(e)
    }

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    async fn read<T>(
        &self,
        work: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        work(&mut conn).await
    }

    async fn write<T>(
        &self,
        work: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // IMMEDIATE takes the write lock first: what the transaction reads cannot change before
        // it commits, and it never fails half-way upgrading from reading to writing.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
        let out = work(&mut tx).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }

    // Every write transaction holds the database's write lock already.
    const LOCK_ROW: &'static str = "";
    const SKIP_LOCKED: &'static str = "";

    async fn lock_workspace(_: &mut SqliteConnection, _: &str) -> Result<(), StoreError> {
        // Every write transaction holds the database's write lock already.
        Ok(())
    }

    fn find_key_record_directly(
        &self,
        digest: &KeyDigest,
    ) -> Option<Result<Option<keyward_core::KeyRecord>, StoreError>> {
        self.direct.as_ref()?.key_record(digest)
    }

    async fn add_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        // A statement per chunk of rows, not per row: every statement is a round trip to the
        // connection's worker thread, and a busy node flushes thousands of keys at once. The
        // rows go in as one JSON array, which `json_each` reads back.
        let counts = batch
            .counts
            .iter()
            .map(|((key, day), n)| Ok((key.to_string(), day_text(*day), to_i64("usage count", *n)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let last_used: Vec<_> =
            batch.last_used.iter().map(|(key, at)| (key.to_string(), to_ms(*at))).collect();
        let counts = counts.chunks(USAGE_CHUNK).map(to_json).collect::<Result<Vec<_>, _>>()?;
        let last_used = last_used.chunks(USAGE_CHUNK).map(to_json).collect::<Result<Vec<_>, _>>()?;
        self.write(async |tx| {
            for rows in &counts {
                // Uses of a key the store does not know are dropped rather than failing the
                // batch (which the recorder would retry forever).
                sqlx::query(
                    "INSERT INTO usage_daily (key_id, day, count) \
                     SELECT u.value ->> 0, u.value ->> 1, u.value ->> 2 FROM json_each(?) AS u \
                     WHERE EXISTS (SELECT 1 FROM api_keys k WHERE k.id = u.value ->> 0) \
                     ON CONFLICT (key_id, day) DO UPDATE SET count = usage_daily.count + excluded.count",
                )
                .bind(rows)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            for rows in &last_used {
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = u.at \
                     FROM (SELECT value ->> 0 AS id, value ->> 1 AS at FROM json_each(?)) AS u \
                     WHERE api_keys.id = u.id \
                     AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < u.at)",
                )
                .bind(rows)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }
}

/// Most usage rows one statement writes: a bound on the JSON text a statement carries.
const USAGE_CHUNK: usize = 1000;

impl_key_store!(SqliteStore);
