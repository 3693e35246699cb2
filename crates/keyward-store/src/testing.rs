//! Test support for PostgreSQL (features `testing` and `postgres`): a schema of its own for each
//! test, so parallel tests and test runs sharing one database never see each other's rows or
//! change notifications.
//!
//! ```no_run
//! # async fn demo() {
//! use keyward_core::KeyStore;
//! use keyward_store::testing::PgTestSchema;
//!
//! // `None` (after printing "skipped") when KEYWARD_TEST_POSTGRES_URL is unset.
//! let Some(schema) = PgTestSchema::from_env() else { return };
//! let store = schema.open().await; // panics if the database cannot be reached
//! assert!(store.list_plans().await.unwrap().is_empty());
//! // The schema is dropped with `schema`.
//! # }
//! ```

use std::sync::{Arc, Once};

use chrono::Utc;
use keyward_core::testing::InstrumentedStore;
use sqlx::Connection;

use crate::PgStore;

/// The environment variable naming the test database.
pub const POSTGRES_URL_VAR: &str = "KEYWARD_TEST_POSTGRES_URL";

/// Prefix of the schemas tests create.
const PREFIX: &str = "kw_test_";

/// Schemas of test runs that were killed before cleaning up are dropped after this long.
const STALE_AFTER_MS: i64 = 3600 * 1000;

/// A fresh, uniquely named schema (`kw_test_<uuidv7>`), dropped (with everything in it) when
/// this value is dropped.
#[derive(Debug)]
pub struct PgTestSchema {
    url: String,
    name: String,
}

impl PgTestSchema {
    /// A new schema name on the database `KEYWARD_TEST_POSTGRES_URL` names; `None`, after
    /// printing that the test is skipped, when the variable is unset. The schema itself is
    /// created by the first store opened on it.
    pub fn from_env() -> Option<Self> {
        keyward_core::testing::service_url(POSTGRES_URL_VAR).map(|url| Self::new(&url))
    }

    /// A new schema name on the database at `url`.
    pub fn new(url: &str) -> Self {
        Self { url: url.to_owned(), name: format!("{PREFIX}{}", uuid::Uuid::now_v7().simple()) }
    }

    /// The database URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens a store on the schema (creating it and its tables). Panics when the database
    /// cannot be reached: a database that was named must be there.
    pub async fn open(&self) -> PgStore {
        static SWEEP: Once = Once::new();
        let store = PgStore::open_in_schema(&self.url, &self.name)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {} (from {POSTGRES_URL_VAR}): {e}", self.url));
        let pool = store.pool().clone();
        SWEEP.call_once(|| {
            tokio::spawn(async move { sweep(&pool).await });
        });
        store
    }
}

/// Drops the schemas that test runs left behind (killed before their cleanup) over an hour ago.
async fn sweep(pool: &sqlx::PgPool) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT nspname::text FROM pg_catalog.pg_namespace WHERE nspname LIKE 'kw\\_test\\_%'",
    )
    .fetch_all(pool)
    .await
    else {
        return;
    };
    let now = Utc::now().timestamp_millis();
    for name in names {
        // The first 48 bits of a UUIDv7 are its creation time in milliseconds.
        let created = name.strip_prefix(PREFIX).and_then(|hex| i64::from_str_radix(hex.get(..12)?, 16).ok());
        if created.is_some_and(|t| now - t > STALE_AFTER_MS) {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE")))
                .execute(pool)
                .await;
        }
    }
}

impl Drop for PgTestSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop may run inside or outside a runtime, during a panic or not: a thread with a
        // runtime of its own works in every case.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await.ok()?;
                // Never hang a test run on a lock a straggling connection holds.
                sqlx::raw_sql("SET lock_timeout = '5s'").execute(&mut conn).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE")))
                    .execute(&mut conn)
                    .await
                    .ok()?;
                conn.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("note: could not drop test schema {}; a later run drops it", self.name);
        }
    }
}

/// A [`PgStore`] on a [`PgTestSchema`] of its own, in keyward-core's one test store (which drops
/// the schema after the store): the factory the contract suite runs against PostgreSQL.
#[derive(Debug)]
pub struct PgTestStore;

impl PgTestStore {
    /// A store on a fresh schema of the database `KEYWARD_TEST_POSTGRES_URL` names; `None`
    /// (printing that the test is skipped) when the variable is unset.
    pub async fn from_env() -> Option<Arc<InstrumentedStore>> {
        Some(Self::on(PgTestSchema::from_env()?).await)
    }

    /// A store on `schema`, which it drops when the store is dropped.
    pub async fn on(schema: PgTestSchema) -> Arc<InstrumentedStore> {
        let store = schema.open().await;
        InstrumentedStore::with_guard(Arc::new(store), schema)
    }
}
