//! The embedded SQLite store.
//!
//! One database file, WAL journal (readers never wait for the writer), a busy timeout so writers
//! queue instead of failing, foreign keys on, a connection pool. Every write that reads before
//! it writes (the key limit, the compare-and-swap of a key's version) runs in a
//! `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock first: two such transactions
//! never both decide on the same snapshot, and none fails half-way with `SQLITE_BUSY` when it
//! upgrades from reading to writing.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use keyward_core::{
    ApiKey, AuditEvent, AuditQuery, CreditOutcome, KeyDigest, KeyGuard, KeyId, KeyListQuery, KeyStatus,
    KeyStore, Plan, PlanId, StoreError, UsageBatch, UsageDay, Workspace, WorkspaceId,
};
use sqlx::error::DatabaseError;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, Transaction};

use crate::error::map_sqlx;
use crate::rows::{
    AuditRow, AuditValues, KeyRow, KeyValues, PlanRow, PlanValues, UsageRow, WorkspaceRow, WorkspaceValues,
    audit_columns, day_text, key_columns, to_i64, to_ms,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for SQLite's write lock before the store reports `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most pooled connections to a database file (WAL lets them all read at once).
const MAX_CONNECTIONS: u32 = 8;

/// A [`KeyStore`] in an SQLite database. Cheap to clone: clones share one pool.
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
        let pool = pool.connect_with(options).await.map_err(db_err)?;
        Self::from_pool(pool).await
    }

    /// Uses an existing pool, applying the migrations.
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        MIGRATOR.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => db_err(e),
            other => StoreError::Other(format!("migration failed: {other}")),
        })?;
        Ok(Self { pool })
    }

    /// The connection pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection, waiting for those in use to be returned. Later calls fail with
    /// `Unavailable`.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)
    }
}

async fn insert_audit(conn: &mut SqliteConnection, ev: &AuditEvent) -> Result<(), StoreError> {
    let v = AuditValues::new(ev);
    sqlx::query(concat!(
        "INSERT INTO audit_events (",
        audit_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(v.id)
    .bind(v.workspace_id)
    .bind(v.action)
    .bind(v.key_id)
    .bind(v.actor_key_id)
    .bind(v.ip)
    .bind(v.user_agent)
    .bind(v.request_id)
    .bind(v.at)
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn insert_key_row(conn: &mut SqliteConnection, v: KeyValues) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "INSERT INTO api_keys (",
        key_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(v.id)
    .bind(v.workspace_id)
    .bind(v.name)
    .bind(v.environment)
    .bind(v.prefix)
    .bind(v.last4)
    .bind(v.digest_hex)
    .bind(v.pepper_id)
    .bind(v.scopes)
    .bind(v.resources)
    .bind(v.status)
    .bind(v.deleted_at)
    .bind(v.revoked_at)
    .bind(v.created_at)
    .bind(v.created_ip)
    .bind(v.updated_at)
    .bind(v.last_used_at)
    .bind(v.expires_at)
    .bind(v.rotated_from)
    .bind(v.rotated_to)
    .bind(v.grace_ends_at)
    .bind(v.rate_limit)
    .bind(v.concurrency_limit)
    .bind(v.credits)
    .bind(v.metadata)
    .bind(v.version)
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The compare-and-swap of [`KeyStore::update_key`]: everything a lifecycle change may touch,
/// never the key's value, owner, credits or last use.
async fn cas_key(conn: &mut SqliteConnection, key: &ApiKey, expected_version: u64) -> Result<(), StoreError> {
    let v = KeyValues::new(key)?;
    let done = sqlx::query(
        "UPDATE api_keys SET name = ?, scopes = ?, resources = ?, status = ?, deleted_at = ?, \
         revoked_at = ?, updated_at = ?, expires_at = ?, rotated_from = ?, rotated_to = ?, \
         grace_ends_at = ?, rate_limit = ?, concurrency_limit = ?, metadata = ?, version = ? \
         WHERE id = ? AND version = ?",
    )
    .bind(v.name)
    .bind(v.scopes)
    .bind(v.resources)
    .bind(v.status)
    .bind(v.deleted_at)
    .bind(v.revoked_at)
    .bind(v.updated_at)
    .bind(v.expires_at)
    .bind(v.rotated_from)
    .bind(v.rotated_to)
    .bind(v.grace_ends_at)
    .bind(v.rate_limit)
    .bind(v.concurrency_limit)
    .bind(v.metadata)
    .bind(v.version)
    .bind(v.id)
    .bind(to_i64("version", expected_version)?)
    .execute(conn)
    .await
    .map_err(db_err)?;
    if done.rows_affected() == 0 { Err(StoreError::Conflict) } else { Ok(()) }
}

fn keys(rows: Vec<KeyRow>) -> Result<Vec<ApiKey>, StoreError> {
    rows.into_iter().map(KeyRow::into_key).collect()
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn save_plan(&self, plan: &Plan, event: &AuditEvent) -> Result<(), StoreError> {
        let v = PlanValues::new(plan)?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO plans (id, name, api_access, max_keys, key_rate_limit) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, api_access = excluded.api_access, \
             max_keys = excluded.max_keys, key_rate_limit = excluded.key_rate_limit",
        )
        .bind(v.id)
        .bind(v.name)
        .bind(v.api_access)
        .bind(v.max_keys)
        .bind(v.key_rate_limit)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        insert_audit(&mut tx, event).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn get_plan(&self, id: &PlanId) -> Result<Option<Plan>, StoreError> {
        sqlx::query_as::<_, PlanRow>(
            "SELECT id, name, api_access, max_keys, key_rate_limit FROM plans WHERE id = ?",
        )
        .bind(&id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(PlanRow::into_plan)
        .transpose()
    }

    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError> {
        sqlx::query_as::<_, PlanRow>(
            "SELECT id, name, api_access, max_keys, key_rate_limit FROM plans ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(PlanRow::into_plan)
        .collect()
    }

    async fn insert_workspace(&self, ws: &Workspace, event: &AuditEvent) -> Result<(), StoreError> {
        let v = WorkspaceValues::new(ws)?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO workspaces (id, name, plan_id, environment, rate_limit, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(v.id)
        .bind(v.name)
        .bind(v.plan_id)
        .bind(v.environment)
        .bind(v.rate_limit)
        .bind(v.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        insert_audit(&mut tx, event).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn update_workspace(&self, ws: &Workspace, event: &AuditEvent) -> Result<(), StoreError> {
        let v = WorkspaceValues::new(ws)?;
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE workspaces SET name = ?, plan_id = ?, environment = ?, rate_limit = ?, created_at = ? \
             WHERE id = ?",
        )
        .bind(v.name)
        .bind(v.plan_id)
        .bind(v.environment)
        .bind(v.rate_limit)
        .bind(v.created_at)
        .bind(v.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        insert_audit(&mut tx, event).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn get_workspace(&self, id: WorkspaceId) -> Result<Option<Workspace>, StoreError> {
        sqlx::query_as::<_, WorkspaceRow>(
            "SELECT id, name, plan_id, environment, rate_limit, created_at FROM workspaces WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(WorkspaceRow::into_workspace)
        .transpose()
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
        sqlx::query_as::<_, WorkspaceRow>(
            "SELECT id, name, plan_id, environment, rate_limit, created_at FROM workspaces \
             ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(WorkspaceRow::into_workspace)
        .collect()
    }

    async fn insert_key(
        &self,
        key: &ApiKey,
        max_live_keys: Option<u32>,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let v = KeyValues::new(key)?;
        // IMMEDIATE: the count and the insert happen under the write lock, so concurrent
        // inserts at the limit are serialised and only the ones that fit get in.
        let mut tx = self.begin_write().await?;
        if let Some(max) = max_live_keys {
            let live: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM api_keys \
                 WHERE workspace_id = ? AND status <> 'revoked' AND deleted_at IS NULL",
            )
            .bind(&v.workspace_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            if live >= i64::from(max) {
                return Err(StoreError::KeyLimitReached);
            }
        }
        insert_key_row(&mut tx, v).await?;
        insert_audit(&mut tx, event).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn get_key(&self, id: KeyId) -> Result<Option<ApiKey>, StoreError> {
        sqlx::query_as::<_, KeyRow>(concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = ?"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .map(KeyRow::into_key)
            .transpose()
    }

    async fn find_key_by_digest(&self, digest: &KeyDigest) -> Result<Option<ApiKey>, StoreError> {
        sqlx::query_as::<_, KeyRow>(concat!("SELECT ", key_columns!(), " FROM api_keys WHERE digest_hex = ?"))
            .bind(digest.to_hex())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .map(KeyRow::into_key)
            .transpose()
    }

    async fn list_keys(&self, query: &KeyListQuery) -> Result<Vec<ApiKey>, StoreError> {
        let mut sql = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE deleted_at IS NULL AND workspace_id = "
        ));
        sql.push_bind(query.workspace_id.to_string());
        if let Some(status) = query.status {
            // A key whose rotation grace period has ended is revoked, whatever its stored status.
            let now = to_ms(query.now);
            match status {
                KeyStatus::Revoked => {
                    sql.push(" AND (status = 'revoked' OR grace_ends_at <= ").push_bind(now).push(")");
                }
                other => {
                    sql.push(" AND status = ").push_bind(other.as_str());
                    sql.push(" AND (grace_ends_at IS NULL OR grace_ends_at > ").push_bind(now).push(")");
                }
            }
        }
        if let Some(before) = query.before {
            // Ids are UUIDv7 in hyphenated lowercase text: text order is creation order.
            sql.push(" AND id < ").push_bind(before.to_string());
        }
        sql.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(query.limit));
        keys(sql.build_query_as::<KeyRow>().fetch_all(&self.pool).await.map_err(db_err)?)
    }

    async fn count_live_keys(&self, workspace: WorkspaceId) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_keys \
             WHERE workspace_id = ? AND status <> 'revoked' AND deleted_at IS NULL",
        )
        .bind(workspace.to_string())
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        u64::try_from(n).map_err(|_| StoreError::Other(format!("negative count {n}")))
    }

    async fn update_key_guarded(
        &self,
        key: &ApiKey,
        expected_version: u64,
        event: &AuditEvent,
        guard: KeyGuard,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        cas_key(&mut tx, key, expected_version).await?;
        if let KeyGuard::KeepsKeyAdmin { now } = guard {
            let candidates = keys(
                sqlx::query_as::<_, KeyRow>(concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM api_keys WHERE workspace_id = ? AND status = 'active' AND deleted_at IS NULL \
                     AND (expires_at IS NULL OR expires_at > ?) \
                     AND (grace_ends_at IS NULL OR grace_ends_at > ?)"
                ))
                .bind(key.workspace_id.to_string())
                .bind(to_ms(now))
                .bind(to_ms(now))
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?,
            )?;
            if !guard.holds(candidates.iter()) {
                return Err(StoreError::LastAdminKey);
            }
        }
        insert_audit(&mut tx, event).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn rotate_key(
        &self,
        old: &ApiKey,
        expected_version: u64,
        new: &ApiKey,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut new_values = KeyValues::new(new)?;
        let mut tx = self.begin_write().await?;
        cas_key(&mut tx, old, expected_version).await?;
        // The stored balance, not the caller's copy: credits may have been spent since it read.
        let credits: Option<i64> = sqlx::query_scalar("SELECT credits FROM api_keys WHERE id = ?")
            .bind(old.id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        if credits.is_some() {
            sqlx::query("UPDATE api_keys SET credits = 0 WHERE id = ?")
                .bind(old.id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        new_values.credits = credits;
        insert_key_row(&mut tx, new_values).await?;
        insert_audit(&mut tx, event).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn consume_credits(&self, id: KeyId, amount: i64) -> Result<CreditOutcome, StoreError> {
        if amount < 0 {
            return Err(StoreError::Other(format!("cannot consume a negative amount of credits ({amount})")));
        }
        let id = id.to_string();
        // One statement: the check and the decrement are atomic, so balances never go negative.
        let left: Option<i64> = sqlx::query_scalar(
            "UPDATE api_keys SET credits = credits - ? \
             WHERE id = ? AND credits IS NOT NULL AND credits >= ? RETURNING credits",
        )
        .bind(amount)
        .bind(&id)
        .bind(amount)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        if let Some(left) = left {
            return Ok(CreditOutcome::Remaining(left));
        }
        let row: Option<Option<i64>> = sqlx::query_scalar("SELECT credits FROM api_keys WHERE id = ?")
            .bind(&id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        match row {
            None => Err(StoreError::NotFound),
            Some(None) => Ok(CreditOutcome::Unlimited),
            Some(Some(left)) => Ok(CreditOutcome::Insufficient(left)),
        }
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let mut sql = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_events WHERE 1 = 1"
        ));
        if let Some(ws) = query.workspace_id {
            sql.push(" AND workspace_id = ").push_bind(ws.to_string());
        }
        if let Some(key) = query.key_id {
            sql.push(" AND key_id = ").push_bind(key.to_string());
        }
        if let Some(action) = query.action {
            sql.push(" AND action = ").push_bind(action.as_str());
        }
        if let Some(since) = query.since {
            sql.push(" AND at >= ").push_bind(to_ms(since));
        }
        if let Some(until) = query.until {
            sql.push(" AND at < ").push_bind(to_ms(until));
        }
        if let Some(before) = query.before {
            sql.push(" AND id < ").push_bind(before.to_string());
        }
        sql.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(query.limit));
        sql.build_query_as::<AuditRow>()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(AuditRow::into_event)
            .collect()
    }

    async fn purge_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM audit_events WHERE at < ?")
            .bind(to_ms(before))
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for ((key, day), count) in &batch.counts {
            let key = key.to_string();
            // Uses of a key the store does not know are dropped rather than failing the batch
            // (which the recorder would retry forever).
            sqlx::query(
                "INSERT INTO usage_daily (key_id, day, count) \
                 SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM api_keys WHERE id = ?) \
                 ON CONFLICT (key_id, day) DO UPDATE SET count = usage_daily.count + excluded.count",
            )
            .bind(&key)
            .bind(day_text(*day))
            .bind(to_i64("usage count", *count)?)
            .bind(&key)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        for (key, at) in &batch.last_used {
            let at = to_ms(*at);
            sqlx::query(
                "UPDATE api_keys SET last_used_at = ? \
                 WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
            )
            .bind(at)
            .bind(key.to_string())
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn usage(&self, key: KeyId, from: NaiveDate, to: NaiveDate) -> Result<Vec<UsageDay>, StoreError> {
        sqlx::query_as::<_, UsageRow>(
            "SELECT key_id, day, count FROM usage_daily \
             WHERE key_id = ? AND day >= ? AND day <= ? ORDER BY day",
        )
        .bind(key.to_string())
        .bind(day_text(from))
        .bind(day_text(to))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(UsageRow::into_usage)
        .collect()
    }
}
