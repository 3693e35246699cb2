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

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use keyward_core::{
    ApiKey, AuditEvent, AuditQuery, CreditOutcome, KeyDigest, KeyGuard, KeyId, KeyListQuery, KeyStatus,
    KeyStore, Plan, PlanId, StoreError, UsageBatch, UsageDay, Workspace, WorkspaceId,
};
use sqlx::error::DatabaseError;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres, QueryBuilder};

use crate::error::map_sqlx;
use crate::rows::{
    AuditRow, AuditValues, KeyRow, KeyValues, PlanRow, PlanValues, UsageRow, WorkspaceRow, WorkspaceValues,
    audit_columns, day_text, key_columns, to_i64, to_ms,
};

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

/// A [`KeyStore`] in a PostgreSQL database. Cheap to clone: clones share one pool.
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
        let limit = self.place.query_timeout;
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

async fn insert_audit(conn: &mut PgConnection, ev: &AuditEvent) -> Result<(), StoreError> {
    let v = AuditValues::new(ev);
    sqlx::query(concat!(
        "INSERT INTO audit_events (",
        audit_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
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

async fn insert_key_row(conn: &mut PgConnection, v: KeyValues) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "INSERT INTO api_keys (",
        key_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
         $20, $21, $22, $23, $24, $25, $26)"
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
/// never the key's value, owner, credits or last use. Returns the stored credits.
async fn cas_key(
    conn: &mut PgConnection,
    key: &ApiKey,
    expected_version: u64,
) -> Result<Option<i64>, StoreError> {
    let v = KeyValues::new(key)?;
    let done: Option<Option<i64>> = sqlx::query_scalar(
        "UPDATE api_keys SET name = $1, scopes = $2, resources = $3, status = $4, deleted_at = $5, \
         revoked_at = $6, updated_at = $7, expires_at = $8, rotated_from = $9, rotated_to = $10, \
         grace_ends_at = $11, rate_limit = $12, concurrency_limit = $13, metadata = $14, version = $15 \
         WHERE id = $16 AND version = $17 RETURNING credits",
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
    .fetch_optional(conn)
    .await
    .map_err(db_err)?;
    done.ok_or(StoreError::Conflict)
}

fn keys(rows: Vec<KeyRow>) -> Result<Vec<ApiKey>, StoreError> {
    rows.into_iter().map(KeyRow::into_key).collect()
}

// Every call runs through `bounded`: one connection, one deadline.
#[async_trait]
impl KeyStore for PgStore {
    async fn save_plan(&self, plan: &Plan, event: &AuditEvent) -> Result<(), StoreError> {
        let v = PlanValues::new(plan)?;
        self.bounded(async |conn| {
            let mut tx = conn.begin().await.map_err(db_err)?;
            sqlx::query(
                "INSERT INTO plans (id, name, api_access, max_keys, key_rate_limit) VALUES ($1, $2, $3, $4, $5) \
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
        })
        .await
    }

    async fn get_plan(&self, id: &PlanId) -> Result<Option<Plan>, StoreError> {
        self.bounded(async |conn| {
            sqlx::query_as::<_, PlanRow>(
                "SELECT id, name, api_access, max_keys, key_rate_limit FROM plans WHERE id = $1",
            )
            .bind(&id.0)
            .fetch_optional(conn)
            .await
            .map_err(db_err)?
            .map(PlanRow::into_plan)
            .transpose()
        })
        .await
    }

    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError> {
        self.bounded(async |conn| {
            sqlx::query_as::<_, PlanRow>(
                "SELECT id, name, api_access, max_keys, key_rate_limit FROM plans ORDER BY id",
            )
            .fetch_all(conn)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(PlanRow::into_plan)
            .collect()
        })
        .await
    }

    async fn insert_workspace(&self, ws: &Workspace, event: &AuditEvent) -> Result<(), StoreError> {
        let v = WorkspaceValues::new(ws)?;
        self.bounded(async |conn| {
            let mut tx = conn.begin().await.map_err(db_err)?;
            sqlx::query(
                "INSERT INTO workspaces (id, name, plan_id, environment, rate_limit, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
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
        })
        .await
    }

    async fn update_workspace(&self, ws: &Workspace, event: &AuditEvent) -> Result<(), StoreError> {
        let v = WorkspaceValues::new(ws)?;
        self.bounded(async |conn| {
            let mut tx = conn.begin().await.map_err(db_err)?;
            let done = sqlx::query(
                "UPDATE workspaces SET name = $1, plan_id = $2, environment = $3, rate_limit = $4, \
                 created_at = $5 WHERE id = $6",
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
        })
        .await
    }

    async fn get_workspace(&self, id: WorkspaceId) -> Result<Option<Workspace>, StoreError> {
        self.bounded(async |conn| {
            sqlx::query_as::<_, WorkspaceRow>(
                "SELECT id, name, plan_id, environment, rate_limit, created_at FROM workspaces WHERE id = $1",
            )
            .bind(id.to_string())
            .fetch_optional(conn)
            .await
            .map_err(db_err)?
            .map(WorkspaceRow::into_workspace)
            .transpose()
        })
        .await
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
        self.bounded(async |conn| {
            sqlx::query_as::<_, WorkspaceRow>(
                "SELECT id, name, plan_id, environment, rate_limit, created_at FROM workspaces \
                 ORDER BY created_at, id",
            )
            .fetch_all(conn)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(WorkspaceRow::into_workspace)
            .collect()
        })
        .await
    }

    async fn insert_key(
        &self,
        key: &ApiKey,
        max_live_keys: Option<u32>,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let v = KeyValues::new(key)?;
        self.bounded(async |conn| {
            let mut tx = conn.begin().await.map_err(db_err)?;
            if let Some(max) = max_live_keys {
                // The workspace's row lock serialises creates in one workspace (on every node),
                // so the count below cannot be overtaken by a concurrent insert. NO KEY UPDATE
                // does not block the foreign-key checks of other writes to the workspace's keys.
                sqlx::query("SELECT 1 FROM workspaces WHERE id = $1 FOR NO KEY UPDATE")
                    .bind(&v.workspace_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
                let live: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM api_keys \
                     WHERE workspace_id = $1 AND status <> 'revoked' AND deleted_at IS NULL",
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
        })
        .await
    }

    async fn get_key(&self, id: KeyId) -> Result<Option<ApiKey>, StoreError> {
        self.bounded(async |conn| {
            sqlx::query_as::<_, KeyRow>(concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(conn)
                .await
                .map_err(db_err)?
                .map(KeyRow::into_key)
                .transpose()
        })
        .await
    }

    async fn find_key_by_digest(&self, digest: &KeyDigest) -> Result<Option<ApiKey>, StoreError> {
        self.bounded(async |conn| {
            sqlx::query_as::<_, KeyRow>(concat!(
                "SELECT ",
                key_columns!(),
                " FROM api_keys WHERE digest_hex = $1"
            ))
            .bind(digest.to_hex())
            .fetch_optional(conn)
            .await
            .map_err(db_err)?
            .map(KeyRow::into_key)
            .transpose()
        })
        .await
    }

    async fn list_keys(&self, query: &KeyListQuery) -> Result<Vec<ApiKey>, StoreError> {
        let mut sql = QueryBuilder::<Postgres>::new(concat!(
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
            // `id` is COLLATE "C": byte order, which for hyphenated lowercase UUIDv7 text is
            // creation order.
            sql.push(" AND id < ").push_bind(before.to_string());
        }
        sql.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(query.limit));
        self.bounded(async |conn| keys(sql.build_query_as::<KeyRow>().fetch_all(conn).await.map_err(db_err)?))
            .await
    }

    async fn count_live_keys(&self, workspace: WorkspaceId) -> Result<u64, StoreError> {
        let n: i64 = self
            .bounded(async |conn| {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM api_keys \
                     WHERE workspace_id = $1 AND status <> 'revoked' AND deleted_at IS NULL",
                )
                .bind(workspace.to_string())
                .fetch_one(conn)
                .await
                .map_err(db_err)
            })
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Other(format!("negative count {n}")))
    }

    async fn update_key_guarded(
        &self,
        key: &ApiKey,
        expected_version: u64,
        event: &AuditEvent,
        guard: KeyGuard,
    ) -> Result<(), StoreError> {
        self.bounded(async |conn| {
            let mut tx = conn.begin().await.map_err(db_err)?;
            if guard != KeyGuard::None {
                // Serializes guarded changes within the workspace, so that two of them cannot
                // each see the other's key as the one that remains.
                sqlx::query("SELECT 1 FROM workspaces WHERE id = $1 FOR NO KEY UPDATE")
                    .bind(key.workspace_id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            cas_key(&mut tx, key, expected_version).await?;
            if let KeyGuard::KeepsKeyAdmin { now } = guard {
                let candidates = keys(
                    sqlx::query_as::<_, KeyRow>(concat!(
                        "SELECT ",
                        key_columns!(),
                        " FROM api_keys WHERE workspace_id = $1 AND status = 'active' AND deleted_at IS NULL \
                         AND (expires_at IS NULL OR expires_at > $2) \
                         AND (grace_ends_at IS NULL OR grace_ends_at > $2)"
                    ))
                    .bind(key.workspace_id.to_string())
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
        })
        .await
    }

    async fn rotate_key(
        &self,
        old: &ApiKey,
        expected_version: u64,
        new: &ApiKey,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut new_values = KeyValues::new(new)?;
        self.bounded(async |conn| {
            let mut tx = conn.begin().await.map_err(db_err)?;
            // The stored balance, not the caller's copy: credits may have been spent since it
            // read. The compare-and-swap holds the old row's lock, so no spend can slip in
            // between.
            let credits = cas_key(&mut tx, old, expected_version).await?;
            if credits.is_some() {
                sqlx::query("UPDATE api_keys SET credits = 0 WHERE id = $1")
                    .bind(old.id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            new_values.credits = credits;
            insert_key_row(&mut tx, new_values).await?;
            insert_audit(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
        .await
    }

    async fn consume_credits(&self, id: KeyId, amount: i64) -> Result<CreditOutcome, StoreError> {
        if amount < 0 {
            return Err(StoreError::Other(format!("cannot consume a negative amount of credits ({amount})")));
        }
        let id = id.to_string();
        self.bounded(async |conn| {
            // One statement: the check and the decrement are atomic, so balances never go
            // negative.
            let left: Option<i64> = sqlx::query_scalar(
                "UPDATE api_keys SET credits = credits - $1 \
                 WHERE id = $2 AND credits IS NOT NULL AND credits >= $1 RETURNING credits",
            )
            .bind(amount)
            .bind(&id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
            if let Some(left) = left {
                return Ok(CreditOutcome::Remaining(left));
            }
            let row: Option<Option<i64>> = sqlx::query_scalar("SELECT credits FROM api_keys WHERE id = $1")
                .bind(&id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_err)?;
            match row {
                None => Err(StoreError::NotFound),
                Some(None) => Ok(CreditOutcome::Unlimited),
                Some(Some(left)) => Ok(CreditOutcome::Insufficient(left)),
            }
        })
        .await
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let mut sql = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_events WHERE TRUE"
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
        self.bounded(async |conn| {
            sql.build_query_as::<AuditRow>()
                .fetch_all(conn)
                .await
                .map_err(db_err)?
                .into_iter()
                .map(AuditRow::into_event)
                .collect()
        })
        .await
    }

    async fn purge_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.bounded(async |conn| {
            let done = sqlx::query("DELETE FROM audit_events WHERE at < $1")
                .bind(to_ms(before))
                .execute(conn)
                .await
                .map_err(db_err)?;
            Ok(done.rows_affected())
        })
        .await
    }

    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
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

        self.bounded(async |conn| {
            let mut tx = conn.begin().await.map_err(db_err)?;
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
            tx.commit().await.map_err(db_err)
        })
        .await
    }

    async fn usage(&self, key: KeyId, from: NaiveDate, to: NaiveDate) -> Result<Vec<UsageDay>, StoreError> {
        self.bounded(async |conn| {
            sqlx::query_as::<_, UsageRow>(
                "SELECT key_id, day, count FROM usage_daily \
                 WHERE key_id = $1 AND day >= $2 AND day <= $3 ORDER BY day",
            )
            .bind(key.to_string())
            .bind(day_text(from))
            .bind(day_text(to))
            .fetch_all(conn)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(UsageRow::into_usage)
            .collect()
        })
        .await
    }
}
