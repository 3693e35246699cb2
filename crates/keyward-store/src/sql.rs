//! The statements of the SQL backends, written once.
//!
//! Both backends hold the same tables in the same portable column types (see the row mapping in
//! `rows.rs`), so the statements differ only in their placeholders (`?` for SQLite, `$n` for
//! PostgreSQL). Each is built with [`QueryBuilder::push_bind`], which writes the placeholders of
//! the database it is built for.
//!
//! A backend implements [`SqlBackend`] with what really differs: how a call gets its connection,
//! how a write transaction starts, the workspace lock PostgreSQL takes where SQLite's writers
//! are serialised already, how a usage batch is written, and which errors are transient.
//! [`Queries`] holds the queries over any such backend, and [`impl_key_store!`] makes them the
//! backend's [`KeyStore`](keyward_core::KeyStore).

use std::marker::PhantomData;

use chrono::{DateTime, NaiveDate, Utc};
use keyward_core::audit_chain::{self, ChainCheck, ChainReport, KnownHead};
use keyward_core::{
    ApiKey, AuditEvent, AuditQuery, CreditOutcome, KeyDigest, KeyGuard, KeyId, KeyListQuery, KeyStatus, Plan,
    PlanId, StoreError, UsageBatch, UsageDay, Workspace, WorkspaceId,
};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};

use keyward_core::webhook::{
    self, AttemptResult, ClaimedDelivery, DeliveryAttempt, DeliveryQuery, DisablePolicy, EndpointOutcome,
    NewWebhookEvent, WebhookDelivery, WebhookEndpoint, WebhookEventType,
};
use keyward_core::{AuditAction, AuditEventId, DeliveryId, WebhookId};

use crate::rows::{
    AttemptRow, AuditRow, AuditValues, ChainedAuditRow, ClaimRow, DELIVERY_COLUMNS, DeliveryRow,
    ENDPOINT_COLUMNS, EndpointRow, HeadRow, KeyRecordRow, KeyRow, KeyValues, PlanRow, PlanValues, UsageRow,
    WorkspaceRow, WorkspaceValues, audit_columns, day_text, endpoint_events, from_ms, key_columns,
    key_record_columns, refill_of, to_i64, to_ms,
};

/// The statement that reads the key under one digest with its workspace and plan, around the
/// digest's placeholder: `key_record_by_digest!(head)`, the placeholder, then
/// `key_record_by_digest!(tail)`. Its columns are [`KeyRecordRow`]'s, in order.
macro_rules! key_record_by_digest {
    (head) => {
        concat!(
            "SELECT k.*, ",
            key_record_columns!(),
            " FROM (SELECT ",
            key_columns!(),
            " FROM api_keys WHERE digest_hex = "
        )
    };
    (tail) => {
        ") k LEFT JOIN workspaces w ON w.id = k.workspace_id LEFT JOIN plans p ON p.id = w.plan_id"
    };
}
pub(crate) use key_record_by_digest;

/// A connection to a backend's database.
pub(crate) type Conn<B> = <<B as SqlBackend>::Db as Database>::Connection;
type Row<B> = <<B as SqlBackend>::Db as Database>::Row;
type Done<B> = <<B as SqlBackend>::Db as Database>::QueryResult;

/// What a SQL store does its own way; [`Queries`] does the rest.
pub(crate) trait SqlBackend {
    /// The sqlx database.
    type Db: Database;

    /// The `backend` label of this store's metrics.
    const BACKEND: &'static str;

    /// Maps an error of this database onto [`StoreError`].
    fn db_err(e: sqlx::Error) -> StoreError;

    /// How many rows a statement changed.
    fn rows_affected(done: &Done<Self>) -> u64;

    /// Runs `work` on one connection, outside a transaction.
    async fn read<T>(
        &self,
        work: impl AsyncFnOnce(&mut Conn<Self>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;

    /// Runs `work` in a write transaction, committed if `work` succeeds and rolled back
    /// otherwise.
    async fn write<T>(
        &self,
        work: impl AsyncFnOnce(&mut Conn<Self>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;

    /// Within a write transaction, serialises until it ends the writes to one workspace that
    /// decide on what they read first (the key limit, the last key admin), where write
    /// transactions are not serialised anyway.
    async fn lock_workspace(conn: &mut Conn<Self>, workspace_id: &str) -> Result<(), StoreError>;

    /// Adds a usage batch that is not empty, in one transaction.
    async fn add_usage(&self, batch: &UsageBatch) -> Result<(), StoreError>;

    /// The key under `digest` with its workspace and plan, read on the calling thread without
    /// the pool, where the backend has such a reader (SQLite's `direct` reader); `None` to read
    /// it through the pool.
    fn find_key_record_directly(
        &self,
        _digest: &KeyDigest,
    ) -> Option<Result<Option<keyward_core::KeyRecord>, StoreError>> {
        None
    }

    /// What makes a `SELECT` of one row lock it until the transaction ends (`" FOR UPDATE"`),
    /// where write transactions are not serialised anyway; empty otherwise.
    const LOCK_ROW: &'static str;

    /// What makes a `SELECT ... LIMIT n` of webhook deliveries (alias `d`) lock the rows it
    /// returns and skip those another transaction holds (`" FOR UPDATE OF d SKIP LOCKED"`),
    /// where write transactions are not serialised anyway; empty otherwise.
    const SKIP_LOCKED: &'static str;
}

/// The queries of every [`SqlBackend`] whose database takes the column types of the row mapping:
/// text, 64-bit integers and booleans.
pub(crate) struct Queries<B>(PhantomData<B>);

impl<B: SqlBackend> Queries<B>
where
    // Connections that run the queries, and the bind and row types of those columns.
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    for<'q> bool: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> i64: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<i64>: Encode<'q, B::Db>,
    for<'q> String: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<String>: Encode<'q, B::Db>,
    for<'q> &'q str: Encode<'q, B::Db> + Type<B::Db>,
    (i64,): for<'r> FromRow<'r, Row<B>>,
    (Option<i64>,): for<'r> FromRow<'r, Row<B>>,
    (Option<String>, Option<i64>): for<'r> FromRow<'r, Row<B>>,
    PlanRow: for<'r> FromRow<'r, Row<B>>,
    WorkspaceRow: for<'r> FromRow<'r, Row<B>>,
    KeyRow: for<'r> FromRow<'r, Row<B>>,
    KeyRecordRow: for<'r> FromRow<'r, Row<B>>,
    AuditRow: for<'r> FromRow<'r, Row<B>>,
    UsageRow: for<'r> FromRow<'r, Row<B>>,
    HeadRow: for<'r> FromRow<'r, Row<B>>,
    ChainedAuditRow: for<'r> FromRow<'r, Row<B>>,
    (String, i64, String): for<'r> FromRow<'r, Row<B>>,
    (String, String): for<'r> FromRow<'r, Row<B>>,
    (Option<i64>, Option<i64>): for<'r> FromRow<'r, Row<B>>,
    EndpointRow: for<'r> FromRow<'r, Row<B>>,
    DeliveryRow: for<'r> FromRow<'r, Row<B>>,
    AttemptRow: for<'r> FromRow<'r, Row<B>>,
    ClaimRow: for<'r> FromRow<'r, Row<B>>,
{
    pub(crate) async fn save_plan(store: &B, plan: &Plan, event: &AuditEvent) -> Result<(), StoreError> {
        let v = PlanValues::new(plan)?;
        let mut sql =
            QueryBuilder::new("INSERT INTO plans (id, name, api_access, max_keys, key_rate_limit) VALUES (");
        sql.separated(", ")
            .push_bind(v.id)
            .push_bind(v.name)
            .push_bind(v.api_access)
            .push_bind(v.max_keys)
            .push_bind(v.key_rate_limit);
        sql.push(
            ") ON CONFLICT (id) DO UPDATE SET name = excluded.name, api_access = excluded.api_access, \
             max_keys = excluded.max_keys, key_rate_limit = excluded.key_rate_limit",
        );
        store
            .write(async |conn| {
                sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
                Self::insert_audit(conn, event).await
            })
            .await
    }

    pub(crate) async fn get_plan(store: &B, id: &PlanId) -> Result<Option<Plan>, StoreError> {
        let mut sql =
            QueryBuilder::new("SELECT id, name, api_access, max_keys, key_rate_limit FROM plans WHERE id = ");
        sql.push_bind(&id.0);
        Self::fetch_optional(store, sql, PlanRow::into_plan).await
    }

    pub(crate) async fn list_plans(store: &B) -> Result<Vec<Plan>, StoreError> {
        let sql =
            QueryBuilder::new("SELECT id, name, api_access, max_keys, key_rate_limit FROM plans ORDER BY id");
        Self::fetch_all(store, sql, PlanRow::into_plan).await
    }

    pub(crate) async fn insert_workspace(
        store: &B,
        ws: &Workspace,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let v = WorkspaceValues::new(ws)?;
        let mut sql = QueryBuilder::new(
            "INSERT INTO workspaces (id, name, plan_id, environment, rate_limit, created_at, ip_allowlist) VALUES (",
        );
        sql.separated(", ")
            .push_bind(v.id)
            .push_bind(v.name)
            .push_bind(v.plan_id)
            .push_bind(v.environment)
            .push_bind(v.rate_limit)
            .push_bind(v.created_at)
            .push_bind(v.ip_allowlist);
        sql.push(")");
        store
            .write(async |conn| {
                sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
                Self::insert_audit(conn, event).await
            })
            .await
    }

    pub(crate) async fn update_workspace(
        store: &B,
        ws: &Workspace,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let v = WorkspaceValues::new(ws)?;
        let mut sql = QueryBuilder::new("UPDATE workspaces SET name = ");
        sql.push_bind(v.name)
            .push(", plan_id = ")
            .push_bind(v.plan_id)
            .push(", environment = ")
            .push_bind(v.environment)
            .push(", rate_limit = ")
            .push_bind(v.rate_limit)
            .push(", created_at = ")
            .push_bind(v.created_at)
            .push(", ip_allowlist = ")
            .push_bind(v.ip_allowlist)
            .push(" WHERE id = ")
            .push_bind(v.id);
        store
            .write(async |conn| {
                let done = sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
                if B::rows_affected(&done) == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::insert_audit(conn, event).await
            })
            .await
    }

    pub(crate) async fn get_workspace(store: &B, id: WorkspaceId) -> Result<Option<Workspace>, StoreError> {
        let mut sql = QueryBuilder::new(
            "SELECT id, name, plan_id, environment, rate_limit, created_at, ip_allowlist FROM workspaces WHERE id = ",
        );
        sql.push_bind(id.to_string());
        Self::fetch_optional(store, sql, WorkspaceRow::into_workspace).await
    }

    pub(crate) async fn list_workspaces(store: &B) -> Result<Vec<Workspace>, StoreError> {
        let sql = QueryBuilder::new(
            "SELECT id, name, plan_id, environment, rate_limit, created_at, ip_allowlist FROM workspaces \
             ORDER BY created_at, id",
        );
        Self::fetch_all(store, sql, WorkspaceRow::into_workspace).await
    }

    pub(crate) async fn insert_key(
        store: &B,
        key: &ApiKey,
        max_live_keys: Option<u32>,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let v = KeyValues::new(key)?;
        store
            .write(async |conn| {
                if let Some(max) = max_live_keys {
                    // No concurrent insert may overtake the count before this one inserts.
                    B::lock_workspace(conn, &v.workspace_id).await?;
                    if Self::count_live(conn, &v.workspace_id).await? >= i64::from(max) {
                        return Err(StoreError::KeyLimitReached);
                    }
                }
                Self::insert_key_row(conn, v).await?;
                Self::insert_audit(conn, event).await
            })
            .await
    }

    pub(crate) async fn insert_keys(
        store: &B,
        keys: &[(ApiKey, AuditEvent)],
        max_live_keys: Option<u32>,
    ) -> Result<(), StoreError> {
        let Some((first, _)) = keys.first() else { return Ok(()) };
        let workspace = first.workspace_id.to_string();
        if keys.iter().any(|(k, _)| k.workspace_id != first.workspace_id) {
            return Err(StoreError::Other("insert_keys takes the keys of one workspace".into()));
        }
        let values = keys.iter().map(|(k, _)| KeyValues::new(k)).collect::<Result<Vec<_>, _>>()?;
        store
            .write(async |conn| {
                if max_live_keys.is_some() {
                    B::lock_workspace(conn, &workspace).await?;
                }
                for (v, (_, event)) in values.into_iter().zip(keys) {
                    Self::insert_key_row(conn, v).await?;
                    Self::insert_audit(conn, event).await?;
                }
                // Counted after the inserts, in the same transaction: the limit holds for the
                // whole batch.
                if let Some(max) = max_live_keys
                    && Self::count_live(conn, &workspace).await? > i64::from(max)
                {
                    return Err(StoreError::KeyLimitReached);
                }
                Ok(())
            })
            .await
    }

    pub(crate) async fn get_key(store: &B, id: KeyId) -> Result<Option<ApiKey>, StoreError> {
        Self::key_where(store, "id", id.to_string()).await
    }

    pub(crate) async fn find_key_by_digest(
        store: &B,
        digest: &KeyDigest,
    ) -> Result<Option<ApiKey>, StoreError> {
        Self::key_where(store, "digest_hex", digest.to_hex()).await
    }

    /// The key under `digest` with its workspace and plan, in one statement.
    pub(crate) async fn find_key_record_by_digest(
        store: &B,
        digest: &KeyDigest,
    ) -> Result<Option<keyward_core::KeyRecord>, StoreError> {
        if let Some(found) = store.find_key_record_directly(digest) {
            return found;
        }
        let mut sql = QueryBuilder::new(key_record_by_digest!(head));
        sql.push_bind(digest.to_hex()).push(key_record_by_digest!(tail));
        Self::fetch_optional(store, sql, KeyRecordRow::into_record).await
    }

    pub(crate) async fn list_keys(store: &B, query: &KeyListQuery) -> Result<Vec<ApiKey>, StoreError> {
        let mut sql = QueryBuilder::new(concat!(
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
            // Ids are UUIDv7 in hyphenated lowercase text, compared bytewise (`COLLATE "C"` on
            // PostgreSQL): text order is creation order.
            sql.push(" AND id < ").push_bind(before.to_string());
        }
        sql.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(query.limit));
        Self::fetch_all(store, sql, KeyRow::into_key).await
    }

    pub(crate) async fn count_live_keys(store: &B, workspace: WorkspaceId) -> Result<u64, StoreError> {
        let workspace = workspace.to_string();
        let n = store.read(async |conn| Self::count_live(conn, &workspace).await).await?;
        u64::try_from(n).map_err(|_| StoreError::Other(format!("negative count {n}")))
    }

    pub(crate) async fn update_key_guarded(
        store: &B,
        key: &ApiKey,
        expected_version: u64,
        event: &AuditEvent,
        guard: KeyGuard,
    ) -> Result<(), StoreError> {
        let workspace = key.workspace_id.to_string();
        store
            .write(async |conn| {
                if guard != KeyGuard::None {
                    // Two guarded changes must not each see the other's key as the one that
                    // remains.
                    B::lock_workspace(conn, &workspace).await?;
                }
                Self::cas_key(conn, key, expected_version).await?;
                if let KeyGuard::KeepsKeyAdmin { now } = guard
                    && !guard.holds(Self::usable_keys(conn, &workspace, now).await?.iter())
                {
                    return Err(StoreError::LastAdminKey);
                }
                Self::insert_audit(conn, event).await
            })
            .await
    }

    pub(crate) async fn rotate_key(
        store: &B,
        old: &ApiKey,
        expected_version: u64,
        new: &ApiKey,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut new_values = KeyValues::new(new)?;
        store
            .write(async |conn| {
                // The stored balance, not the caller's copy: credits may have been spent since it
                // read. The compare-and-swap reads it holding the old row, so no spend can slip
                // in between.
                let credits = Self::cas_key(conn, old, expected_version).await?;
                if credits.is_some() {
                    let mut sql = QueryBuilder::new("UPDATE api_keys SET credits = 0 WHERE id = ");
                    sql.push_bind(old.id.to_string());
                    sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
                }
                new_values.credits = credits;
                Self::insert_key_row(conn, new_values).await?;
                Self::insert_audit(conn, event).await
            })
            .await
    }

    pub(crate) async fn consume_credits(
        store: &B,
        id: KeyId,
        amount: i64,
    ) -> Result<CreditOutcome, StoreError> {
        if amount < 0 {
            return Err(StoreError::Other(format!("cannot consume a negative amount of credits ({amount})")));
        }
        let id = id.to_string();
        // One statement: the check and the decrement are atomic, so balances never go negative.
        let mut take = QueryBuilder::new("UPDATE api_keys SET credits = credits - ");
        take.push_bind(amount)
            .push(" WHERE id = ")
            .push_bind(&id)
            .push(" AND credits IS NOT NULL AND credits >= ")
            .push_bind(amount)
            .push(" RETURNING credits, credits_low_threshold");
        let mut balance = QueryBuilder::new("SELECT credits FROM api_keys WHERE id = ");
        balance.push_bind(&id);
        store
            .write(async |conn| {
                let left: Option<(Option<i64>, Option<i64>)> =
                    take.build_query_as().fetch_optional(&mut *conn).await.map_err(B::db_err)?;
                if let Some((Some(left), threshold)) = left {
                    // The spend that crosses the threshold sends `key.credits_low`, in its
                    // transaction.
                    if let Some(t) = threshold
                        && left <= t
                        && left.saturating_add(amount) > t
                    {
                        Self::credits_low(conn, &id, left).await?;
                    }
                    return Ok(CreditOutcome::Remaining(left));
                }
                let row: Option<Option<i64>> =
                    balance.build_query_scalar().fetch_optional(&mut *conn).await.map_err(B::db_err)?;
                match row {
                    None => Err(StoreError::NotFound),
                    Some(None) => Ok(CreditOutcome::Unlimited),
                    Some(Some(left)) => Ok(CreditOutcome::Insufficient(left)),
                }
            })
            .await
    }

    pub(crate) async fn refill_credits(
        store: &B,
        id: KeyId,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Option<i64>, StoreError> {
        let id = id.to_string();
        store
            .write(async |conn| {
                let mut read = QueryBuilder::new("SELECT refill, refilled_at FROM api_keys WHERE id = ");
                read.push_bind(&id);
                let row: Option<(Option<String>, Option<i64>)> =
                    read.build_query_as().fetch_optional(&mut *conn).await.map_err(B::db_err)?;
                let (seen, last) = row.ok_or(StoreError::NotFound)?;
                let Some(seen) = seen else { return Ok(None) };
                let refill = refill_of(&seen)?;
                let start = to_ms(refill.period_start(now));
                if last.is_some_and(|t| t >= start) {
                    return Ok(None);
                }
                // The compare-and-swap: of concurrent refills (any node) the first to write wins;
                // the others find `refilled_at` in this period and change nothing.
                let mut cas = QueryBuilder::new("UPDATE api_keys SET credits = ");
                cas.push_bind(refill.amount)
                    .push(", refilled_at = ")
                    .push_bind(to_ms(now))
                    .push(" WHERE id = ")
                    .push_bind(&id)
                    .push(" AND refill = ")
                    .push_bind(&seen)
                    .push(" AND (refilled_at IS NULL OR refilled_at < ")
                    .push_bind(start)
                    .push(") RETURNING credits");
                let done: Option<Option<i64>> =
                    cas.build_query_scalar().fetch_optional(&mut *conn).await.map_err(B::db_err)?;
                let Some(balance) = done else { return Ok(None) };
                Self::insert_audit(conn, event).await?;
                Ok(balance)
            })
            .await
    }

    pub(crate) async fn list_audit(store: &B, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let mut sql =
            QueryBuilder::new(concat!("SELECT ", audit_columns!(), " FROM audit_events WHERE TRUE"));
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
        Self::fetch_all(store, sql, AuditRow::into_event).await
    }

    /// Deletes, per chain, the events up to the newest one older than `before` (a prefix, so
    /// the rest still follows on) and makes that one the chain's anchor; then the events older
    /// than `before` that predate the chain.
    pub(crate) async fn purge_audit(store: &B, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = to_ms(before);
        store
            .write(async |conn| {
                let mut sql = QueryBuilder::new(
                    "SELECT e.chain, e.seq, e.hash FROM audit_events e JOIN (SELECT chain, MAX(seq) AS seq \
                     FROM audit_events WHERE seq IS NOT NULL AND at < ",
                );
                sql.push_bind(before).push(" GROUP BY chain) m ON e.chain = m.chain AND e.seq = m.seq");
                let anchors: Vec<(String, i64, String)> =
                    sql.build_query_as().fetch_all(&mut *conn).await.map_err(B::db_err)?;
                let mut purged = 0;
                for (chain, seq, hash) in anchors {
                    let mut sql = QueryBuilder::new("DELETE FROM audit_events WHERE chain = ");
                    sql.push_bind(chain.clone()).push(" AND seq <= ").push_bind(seq);
                    purged += B::rows_affected(&sql.build().execute(&mut *conn).await.map_err(B::db_err)?);
                    let mut sql = QueryBuilder::new("UPDATE audit_heads SET anchor_seq = ");
                    sql.push_bind(seq)
                        .push(", anchor_hash = ")
                        .push_bind(hash)
                        .push(" WHERE chain = ")
                        .push_bind(chain);
                    sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
                }
                let mut sql = QueryBuilder::new("DELETE FROM audit_events WHERE seq IS NULL AND at < ");
                sql.push_bind(before);
                purged += B::rows_affected(&sql.build().execute(&mut *conn).await.map_err(B::db_err)?);
                // Webhook deliveries that are done are kept as long as the audit log.
                Self::purge_deliveries(conn, before).await?;
                Ok(purged)
            })
            .await
    }

    /// Walks each chain (of `workspace`, or all) from its anchor to its head, a page at a time.
    pub(crate) async fn verify_audit(
        store: &B,
        workspace: Option<WorkspaceId>,
        known: &[KnownHead],
    ) -> Result<Vec<ChainReport>, StoreError> {
        const PAGE: i64 = 1000;
        let mut sql = QueryBuilder::new("SELECT chain, seq, hash, anchor_seq, anchor_hash FROM audit_heads");
        if let Some(ws) = workspace {
            sql.push(" WHERE chain = ").push_bind(ws.to_string());
        }
        sql.push(" ORDER BY chain");
        let heads: Vec<HeadRow> =
            store.read(async |conn| sql.build_query_as().fetch_all(conn).await.map_err(B::db_err)).await?;
        let corrupt = |what: &str| StoreError::Other(format!("corrupt audit head: {what}"));
        let mut reports = Vec::with_capacity(heads.len());
        for head in heads {
            let workspace_id = match head.chain.as_str() {
                "" => None,
                id => Some(id.parse::<WorkspaceId>().map_err(|_| corrupt("chain"))?),
            };
            let anchor_hash = audit_chain::from_hex(&head.anchor_hash).ok_or_else(|| corrupt("anchor"))?;
            let hash = audit_chain::from_hex(&head.hash).ok_or_else(|| corrupt("hash"))?;
            let mut check =
                ChainCheck::new(workspace_id, (head.anchor_seq as u64, anchor_hash), (head.seq as u64, hash));
            for k in known.iter().filter(|k| k.workspace_id == workspace_id) {
                check.expect(k.seq, k.hash);
            }
            let mut after = head.anchor_seq;
            loop {
                let mut sql = QueryBuilder::new(concat!(
                    "SELECT ",
                    audit_columns!(),
                    ", seq, prev_hash, hash FROM audit_events WHERE chain = "
                ));
                sql.push_bind(head.chain.clone())
                    .push(" AND seq > ")
                    .push_bind(after)
                    .push(" ORDER BY seq LIMIT ")
                    .push_bind(PAGE);
                let rows: Vec<ChainedAuditRow> = store
                    .read(async |conn| sql.build_query_as().fetch_all(conn).await.map_err(B::db_err))
                    .await?;
                let n = rows.len();
                for row in rows {
                    after = row.seq;
                    let (seq, prev, hash) =
                        (row.seq as u64, row.prev_hash.unwrap_or_default(), row.hash.unwrap_or_default());
                    match row.event.into_event() {
                        Ok(event) => check.next(&event, seq, &prev, &hash),
                        // A row that no longer reads as an event was edited.
                        Err(_) => check.unreadable(seq),
                    }
                }
                if check.is_broken() || (n as i64) < PAGE {
                    break;
                }
            }
            reports.push(check.finish());
        }
        Ok(reports)
    }

    pub(crate) async fn record_usage(store: &B, batch: &UsageBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        store.add_usage(batch).await
    }

    pub(crate) async fn usage(
        store: &B,
        key: KeyId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<UsageDay>, StoreError> {
        let mut sql = QueryBuilder::new("SELECT key_id, day, count FROM usage_daily WHERE key_id = ");
        sql.push_bind(key.to_string())
            .push(" AND day >= ")
            .push_bind(day_text(from))
            .push(" AND day <= ")
            .push_bind(day_text(to))
            .push(" ORDER BY day");
        Self::fetch_all(store, sql, UsageRow::into_usage).await
    }

    /// Runs `sql` on a connection of its own and converts every row it returns.
    async fn fetch_all<R, T>(
        store: &B,
        mut sql: QueryBuilder<B::Db>,
        convert: fn(R) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError>
    where
        R: for<'r> FromRow<'r, Row<B>> + Send + Unpin,
    {
        let rows =
            store.read(async |conn| sql.build_query_as().fetch_all(conn).await.map_err(B::db_err)).await?;
        rows.into_iter().map(convert).collect()
    }

    /// Runs `sql` on a connection of its own and converts the row it returns, if any.
    async fn fetch_optional<R, T>(
        store: &B,
        mut sql: QueryBuilder<B::Db>,
        convert: fn(R) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError>
    where
        R: for<'r> FromRow<'r, Row<B>> + Send + Unpin,
    {
        let row = store
            .read(async |conn| sql.build_query_as().fetch_optional(conn).await.map_err(B::db_err))
            .await?;
        row.map(convert).transpose()
    }

    /// The key whose `column` (a unique one) holds `value`.
    async fn key_where(store: &B, column: &str, value: String) -> Result<Option<ApiKey>, StoreError> {
        let mut sql = QueryBuilder::new(concat!("SELECT ", key_columns!(), " FROM api_keys WHERE "));
        sql.push(column).push(" = ").push_bind(value);
        Self::fetch_optional(store, sql, KeyRow::into_key).await
    }

    /// Keys of a workspace that authenticate at `now`: active, neither deleted nor expired, and
    /// not past a rotation's grace period.
    async fn usable_keys(
        conn: &mut Conn<B>,
        workspace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let now = to_ms(now);
        let mut sql =
            QueryBuilder::new(concat!("SELECT ", key_columns!(), " FROM api_keys WHERE workspace_id = "));
        sql.push_bind(workspace_id)
            .push(" AND status = 'active' AND deleted_at IS NULL")
            .push(" AND (expires_at IS NULL OR expires_at > ")
            .push_bind(now)
            .push(") AND (grace_ends_at IS NULL OR grace_ends_at > ")
            .push_bind(now)
            .push(")");
        keys(sql.build_query_as::<KeyRow>().fetch_all(conn).await.map_err(B::db_err)?)
    }

    /// Keys of a workspace that are neither revoked nor deleted.
    async fn count_live(conn: &mut Conn<B>, workspace_id: &str) -> Result<i64, StoreError> {
        let mut sql = QueryBuilder::new("SELECT COUNT(*) FROM api_keys WHERE workspace_id = ");
        sql.push_bind(workspace_id).push(" AND status <> 'revoked' AND deleted_at IS NULL");
        sql.build_query_scalar().fetch_one(conn).await.map_err(B::db_err)
    }

    async fn insert_key_row(conn: &mut Conn<B>, v: KeyValues) -> Result<(), StoreError> {
        let mut sql = QueryBuilder::new(concat!("INSERT INTO api_keys (", key_columns!(), ") VALUES ("));
        sql.separated(", ")
            .push_bind(v.id)
            .push_bind(v.workspace_id)
            .push_bind(v.name)
            .push_bind(v.environment)
            .push_bind(v.prefix)
            .push_bind(v.last4)
            .push_bind(v.digest_hex)
            .push_bind(v.pepper_id)
            .push_bind(v.scopes)
            .push_bind(v.resources)
            .push_bind(v.status)
            .push_bind(v.deleted_at)
            .push_bind(v.revoked_at)
            .push_bind(v.created_at)
            .push_bind(v.created_ip)
            .push_bind(v.updated_at)
            .push_bind(v.last_used_at)
            .push_bind(v.expires_at)
            .push_bind(v.rotated_from)
            .push_bind(v.rotated_to)
            .push_bind(v.grace_ends_at)
            .push_bind(v.rate_limit)
            .push_bind(v.concurrency_limit)
            .push_bind(v.credits)
            .push_bind(v.metadata)
            .push_bind(v.version)
            .push_bind(v.refill)
            .push_bind(v.refilled_at)
            .push_bind(v.ip_allowlist)
            .push_bind(v.leaked_at)
            .push_bind(v.leak_source)
            .push_bind(v.imported_at)
            .push_bind(v.credits_low_threshold);
        sql.push(")");
        sql.build().execute(conn).await.map_err(B::db_err)?;
        Ok(())
    }

    /// The compare-and-swap of [`KeyStore::update_key`](keyward_core::KeyStore::update_key):
    /// everything a lifecycle change may touch, never the key's value, owner, credits or last
    /// use. Returns the stored credits.
    async fn cas_key(
        conn: &mut Conn<B>,
        key: &ApiKey,
        expected_version: u64,
    ) -> Result<Option<i64>, StoreError> {
        let v = KeyValues::new(key)?;
        let mut sql = QueryBuilder::new("UPDATE api_keys SET name = ");
        sql.push_bind(v.name)
            .push(", scopes = ")
            .push_bind(v.scopes)
            .push(", resources = ")
            .push_bind(v.resources)
            .push(", status = ")
            .push_bind(v.status)
            .push(", deleted_at = ")
            .push_bind(v.deleted_at)
            .push(", revoked_at = ")
            .push_bind(v.revoked_at)
            .push(", updated_at = ")
            .push_bind(v.updated_at)
            .push(", expires_at = ")
            .push_bind(v.expires_at)
            .push(", rotated_from = ")
            .push_bind(v.rotated_from)
            .push(", rotated_to = ")
            .push_bind(v.rotated_to)
            .push(", grace_ends_at = ")
            .push_bind(v.grace_ends_at)
            .push(", rate_limit = ")
            .push_bind(v.rate_limit)
            .push(", concurrency_limit = ")
            .push_bind(v.concurrency_limit)
            .push(", metadata = ")
            .push_bind(v.metadata)
            .push(", version = ")
            .push_bind(v.version)
            .push(", refill = ")
            .push_bind(v.refill)
            .push(", ip_allowlist = ")
            .push_bind(v.ip_allowlist)
            .push(", leaked_at = ")
            .push_bind(v.leaked_at)
            .push(", leak_source = ")
            .push_bind(v.leak_source)
            .push(", credits_low_threshold = ")
            .push_bind(v.credits_low_threshold)
            .push(" WHERE id = ")
            .push_bind(v.id)
            .push(" AND version = ")
            .push_bind(to_i64("version", expected_version)?)
            .push(" RETURNING credits");
        let done: Option<Option<i64>> =
            sql.build_query_scalar().fetch_optional(conn).await.map_err(B::db_err)?;
        done.ok_or(StoreError::Conflict)
    }

    // ---- Webhooks (keyward_core::webhook) ----

    /// Within a spend's transaction: `key.credits_low` for key `id`, left with `left` credits.
    async fn credits_low(conn: &mut Conn<B>, id: &str, left: i64) -> Result<(), StoreError> {
        let id: KeyId = id.parse().map_err(|e| StoreError::Other(format!("bad key id: {e}")))?;
        let Some(key) = Self::key_in(conn, id).await? else { return Ok(()) };
        Self::send(conn, &webhook::credits_low_event(&key, left, Utc::now())).await
    }

    /// Writes `event` with a delivery to every subscribed enabled endpoint of its workspace (none
    /// when there is no such endpoint), in the caller's transaction.
    async fn send(conn: &mut Conn<B>, event: &NewWebhookEvent) -> Result<(), StoreError> {
        let targets = Self::subscribers(conn, event.workspace_id, event.event_type).await?;
        if targets.is_empty() {
            return Ok(());
        }
        Self::write_event(conn, event, &targets).await
    }

    /// Within a change's transaction: the webhook event `ev` sends, if any, with a delivery to
    /// every subscribed enabled endpoint of its workspace. Reads the key only when someone
    /// listens.
    async fn audit_webhook(conn: &mut Conn<B>, ev: &AuditEvent) -> Result<(), StoreError> {
        let (Some(ty), Some(ws)) = (WebhookEventType::for_action(ev.action), ev.workspace_id) else {
            return Ok(());
        };
        let targets = Self::subscribers(conn, ws, ty).await?;
        if targets.is_empty() {
            return Ok(());
        }
        let key = match ev.key_id {
            Some(id) => Self::key_in(conn, id).await?,
            None => None,
        };
        match webhook::event_for_audit(ev, key.as_ref()) {
            Some(event) => Self::write_event(conn, &event, &targets).await,
            None => Ok(()),
        }
    }

    /// The key `id`, read in the caller's transaction.
    async fn key_in(conn: &mut Conn<B>, id: KeyId) -> Result<Option<ApiKey>, StoreError> {
        let mut sql = QueryBuilder::new(concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = "));
        sql.push_bind(id.to_string());
        let row: Option<KeyRow> = sql.build_query_as().fetch_optional(conn).await.map_err(B::db_err)?;
        row.map(KeyRow::into_key).transpose()
    }

    /// The enabled endpoints of `ws` that receive `ty`.
    async fn subscribers(
        conn: &mut Conn<B>,
        ws: WorkspaceId,
        ty: WebhookEventType,
    ) -> Result<Vec<String>, StoreError> {
        let mut sql =
            QueryBuilder::new("SELECT id, events FROM webhook_endpoints WHERE enabled AND workspace_id = ");
        sql.push_bind(ws.to_string()).push(" ORDER BY id");
        let rows: Vec<(String, String)> = sql.build_query_as().fetch_all(conn).await.map_err(B::db_err)?;
        let mut out = Vec::new();
        for (id, events) in rows {
            let events: Vec<WebhookEventType> = serde_json::from_str(&events)
                .map_err(|e| StoreError::Other(format!("corrupt webhook endpoint events: {e}")))?;
            if webhook::subscribes(&events, ty) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Writes `event` and one delivery per endpoint of `targets`, in the caller's transaction.
    async fn write_event(
        conn: &mut Conn<B>,
        event: &NewWebhookEvent,
        targets: &[String],
    ) -> Result<(), StoreError> {
        let at = to_ms(event.at);
        let mut sql = QueryBuilder::new(
            "INSERT INTO webhook_events (id, workspace_id, type, payload, created_at) VALUES (",
        );
        sql.separated(", ")
            .push_bind(event.id.to_string())
            .push_bind(event.workspace_id.to_string())
            .push_bind(event.event_type.as_str())
            .push_bind(event.payload.clone())
            .push_bind(at);
        sql.push(")");
        sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
        let mut sql = QueryBuilder::new(
            "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, ordering_key, state, attempts, \
             next_attempt_at, created_at, retry_from) ",
        );
        sql.push_values(targets, |mut row, endpoint| {
            row.push_bind(DeliveryId::new().to_string())
                .push_bind(event.id.to_string())
                .push_bind(endpoint.clone())
                .push_bind(event.ordering_key.clone())
                .push_bind("pending")
                .push_bind(0i64)
                .push_bind(at)
                .push_bind(at)
                .push_bind(at);
        });
        sql.build().execute(conn).await.map_err(B::db_err)?;
        Ok(())
    }

    pub(crate) async fn insert_endpoint(
        store: &B,
        ep: &WebhookEndpoint,
        secret: &str,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let events = endpoint_events(ep)?;
        store
            .write(async |conn| {
                let mut sql = QueryBuilder::new(
                    "INSERT INTO webhook_endpoints (id, workspace_id, url, description, events, enabled, \
                     disabled_reason, consecutive_failures, created_at, updated_at, secret) VALUES (",
                );
                sql.separated(", ")
                    .push_bind(ep.id.to_string())
                    .push_bind(ep.workspace_id.to_string())
                    .push_bind(ep.url.clone())
                    .push_bind(ep.description.clone())
                    .push_bind(events)
                    .push_bind(ep.enabled)
                    .push_bind(ep.disabled_reason.clone())
                    .push_bind(i64::from(ep.consecutive_failures))
                    .push_bind(to_ms(ep.created_at))
                    .push_bind(to_ms(ep.updated_at))
                    .push_bind(secret.to_owned());
                sql.push(")");
                sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
                Self::insert_audit(conn, event).await
            })
            .await
    }

    pub(crate) async fn update_endpoint(
        store: &B,
        ep: &WebhookEndpoint,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let events = endpoint_events(ep)?;
        store
            .write(async |conn| {
                let mut sql = QueryBuilder::new("UPDATE webhook_endpoints SET url = ");
                sql.push_bind(ep.url.clone())
                    .push(", description = ")
                    .push_bind(ep.description.clone())
                    .push(", events = ")
                    .push_bind(events)
                    .push(", enabled = ")
                    .push_bind(ep.enabled)
                    .push(", disabled_reason = ")
                    .push_bind(ep.disabled_reason.clone())
                    .push(", consecutive_failures = ")
                    .push_bind(i64::from(ep.consecutive_failures))
                    .push(", updated_at = ")
                    .push_bind(to_ms(ep.updated_at))
                    .push(" WHERE id = ")
                    .push_bind(ep.id.to_string());
                let done = sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
                if B::rows_affected(&done) == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::insert_audit(conn, event).await
            })
            .await
    }

    pub(crate) async fn delete_endpoint(
        store: &B,
        ep: &WebhookEndpoint,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let id = ep.id.to_string();
        store
            .write(async |conn| {
                let mut sql = QueryBuilder::new(
                    "DELETE FROM webhook_attempts WHERE delivery_id IN \
                     (SELECT id FROM webhook_deliveries WHERE endpoint_id = ",
                );
                sql.push_bind(id.clone()).push(")");
                sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
                let mut sql = QueryBuilder::new("DELETE FROM webhook_deliveries WHERE endpoint_id = ");
                sql.push_bind(id.clone());
                sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
                let mut sql = QueryBuilder::new("DELETE FROM webhook_endpoints WHERE id = ");
                sql.push_bind(id.clone());
                let done = sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
                if B::rows_affected(&done) == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::insert_audit(conn, event).await
            })
            .await
    }

    pub(crate) async fn get_endpoint(
        store: &B,
        id: WebhookId,
    ) -> Result<Option<WebhookEndpoint>, StoreError> {
        let mut sql =
            QueryBuilder::new(format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = "));
        sql.push_bind(id.to_string());
        Self::fetch_optional(store, sql, EndpointRow::into_endpoint).await
    }

    pub(crate) async fn list_endpoints(
        store: &B,
        ws: WorkspaceId,
    ) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let mut sql = QueryBuilder::new(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE workspace_id = "
        ));
        sql.push_bind(ws.to_string()).push(" ORDER BY id");
        Self::fetch_all(store, sql, EndpointRow::into_endpoint).await
    }

    pub(crate) async fn enqueue(
        store: &B,
        event: &NewWebhookEvent,
        once: Option<&str>,
    ) -> Result<bool, StoreError> {
        store
            .write(async |conn| {
                if let Some(name) = once {
                    let mut sql = QueryBuilder::new("INSERT INTO webhook_notices (name, at) VALUES (");
                    sql.push_bind(name.to_owned())
                        .push(", ")
                        .push_bind(to_ms(event.at))
                        .push(") ON CONFLICT (name) DO NOTHING");
                    let done = sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
                    if B::rows_affected(&done) == 0 {
                        return Ok(false);
                    }
                }
                Self::send(conn, event).await?;
                Ok(true)
            })
            .await
    }

    pub(crate) async fn keys_expiring(
        store: &B,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let mut sql = QueryBuilder::new(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys k WHERE deleted_at IS NULL AND status <> 'revoked' AND expires_at > "
        ));
        sql.push_bind(to_ms(after))
            .push(" AND expires_at <= ")
            .push_bind(to_ms(until))
            // Keys already noticed are skipped, so that a page is never full of them.
            .push(
                " AND NOT EXISTS (SELECT 1 FROM webhook_notices n WHERE n.name = \
                 'key.expiring:' || k.id || ':' || CAST(k.expires_at AS TEXT)) ORDER BY expires_at, id LIMIT ",
            )
            .push_bind(i64::from(limit));
        Self::fetch_all(store, sql, KeyRow::into_key).await
    }

    pub(crate) async fn claim_deliveries(
        store: &B,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let now = to_ms(now);
        let lease_until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        store
            .write(async |conn| {
                let mut sql = QueryBuilder::new(
                    "SELECT d.seq FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
                     WHERE d.state = 'pending' AND e.enabled AND d.next_attempt_at <= ",
                );
                sql.push_bind(now)
                    .push(" AND (d.lease_until IS NULL OR d.lease_until <= ")
                    .push_bind(now)
                    // Per endpoint and key, one at a time and in order.
                    .push(
                        ") AND NOT EXISTS (SELECT 1 FROM webhook_deliveries o WHERE o.endpoint_id = d.endpoint_id \
                         AND o.ordering_key = d.ordering_key AND o.state = 'pending' AND o.seq < d.seq) \
                         ORDER BY d.seq LIMIT ",
                    )
                    .push_bind(i64::from(limit))
                    .push(B::SKIP_LOCKED);
                let seqs: Vec<(i64,)> = sql.build_query_as().fetch_all(&mut *conn).await.map_err(B::db_err)?;
                if seqs.is_empty() {
                    return Ok(Vec::new());
                }
                // The lease is taken only where no other worker took it meanwhile (re-checked on
                // the row as it stands), so that claims are exclusive even without the row locks.
                let mut sql = QueryBuilder::new("UPDATE webhook_deliveries SET lease_until = ");
                sql.push_bind(lease_until).push(" WHERE seq IN (");
                push_seqs(&mut sql, &seqs);
                sql.push(") AND state = 'pending' AND (lease_until IS NULL OR lease_until <= ")
                    .push_bind(now)
                    .push(") RETURNING seq");
                let seqs: Vec<(i64,)> = sql.build_query_as().fetch_all(&mut *conn).await.map_err(B::db_err)?;
                if seqs.is_empty() {
                    return Ok(Vec::new());
                }
                let mut sql = QueryBuilder::new(
                    "SELECT d.id, d.event_id, ev.type AS event_type, ev.payload, d.endpoint_id, e.url, e.secret, \
                     d.attempts, d.retry_from FROM webhook_deliveries d \
                     JOIN webhook_events ev ON ev.id = d.event_id \
                     JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.seq IN (",
                );
                push_seqs(&mut sql, &seqs);
                sql.push(") ORDER BY d.seq");
                let rows: Vec<ClaimRow> = sql.build_query_as().fetch_all(&mut *conn).await.map_err(B::db_err)?;
                rows.into_iter().map(|r| r.into_claimed(lease_until)).collect()
            })
            .await
    }

    pub(crate) async fn record_attempt(
        store: &B,
        delivery: &ClaimedDelivery,
        attempt: &DeliveryAttempt,
        result: &AttemptResult,
        policy: DisablePolicy,
    ) -> Result<EndpointOutcome, StoreError> {
        let (state, next, delivered) = match result {
            AttemptResult::Delivered => ("delivered", to_ms(attempt.at), Some(to_ms(attempt.at))),
            AttemptResult::RetryAt(t) => ("pending", to_ms(*t), None),
            AttemptResult::Failed => ("failed", to_ms(attempt.at), None),
        };
        let id = delivery.id.to_string();
        let endpoint_id = delivery.endpoint_id.to_string();
        store
            .write(async |conn| {
                // The lease is the fence: a worker whose lease ran out records nothing.
                let mut sql = QueryBuilder::new("UPDATE webhook_deliveries SET attempts = attempts + 1, state = ");
                sql.push_bind(state)
                    .push(", next_attempt_at = ")
                    .push_bind(next)
                    .push(", delivered_at = ")
                    .push_bind(delivered)
                    .push(", lease_until = NULL WHERE id = ")
                    .push_bind(id.clone())
                    .push(" AND lease_until = ")
                    .push_bind(delivery.lease)
                    .push(" RETURNING attempts");
                let number: Option<i64> =
                    sql.build_query_scalar().fetch_optional(&mut *conn).await.map_err(B::db_err)?;
                let Some(number) = number else { return Ok(EndpointOutcome::LeaseLost) };
                let mut sql = QueryBuilder::new(
                    "INSERT INTO webhook_attempts (delivery_id, number, at, status, error, duration_ms) VALUES (",
                );
                sql.separated(", ")
                    .push_bind(id.clone())
                    .push_bind(number)
                    .push_bind(to_ms(attempt.at))
                    .push_bind(attempt.status.map(i64::from))
                    .push_bind(attempt.error.clone())
                    .push_bind(i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX));
                sql.push(")");
                sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
                if *result == AttemptResult::Delivered {
                    let mut sql =
                        QueryBuilder::new("UPDATE webhook_endpoints SET consecutive_failures = 0 WHERE id = ");
                    sql.push_bind(endpoint_id.clone());
                    sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
                    return Ok(EndpointOutcome::Unchanged);
                }
                let mut sql = QueryBuilder::new(
                    "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1 WHERE enabled AND id = ",
                );
                sql.push_bind(endpoint_id.clone()).push(" RETURNING consecutive_failures");
                let failures: Option<i64> =
                    sql.build_query_scalar().fetch_optional(&mut *conn).await.map_err(B::db_err)?;
                let Some(failures) = failures else { return Ok(EndpointOutcome::Unchanged) };
                if failures < i64::from(policy.after_failures) {
                    return Ok(EndpointOutcome::Unchanged);
                }
                let reason = format!("disabled after {failures} consecutive failed attempts");
                let mut sql = QueryBuilder::new("UPDATE webhook_endpoints SET enabled = ");
                sql.push_bind(false)
                    .push(", disabled_reason = ")
                    .push_bind(reason)
                    .push(", updated_at = ")
                    .push_bind(to_ms(attempt.at))
                    .push(" WHERE id = ")
                    .push_bind(endpoint_id.clone());
                sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
                let mut sql =
                    QueryBuilder::new(format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = "));
                sql.push_bind(endpoint_id.clone());
                let ep: EndpointRow = sql.build_query_as().fetch_one(&mut *conn).await.map_err(B::db_err)?;
                let ep = ep.into_endpoint()?;
                let audit = AuditEvent {
                    id: AuditEventId::new(),
                    workspace_id: Some(ep.workspace_id),
                    action: AuditAction::WebhookDisabled,
                    key_id: None,
                    actor_key_id: None,
                    ip: None,
                    user_agent: None,
                    request_id: None,
                    at: attempt.at,
                };
                Self::insert_audit(conn, &audit).await?;
                let failures = u32::try_from(failures).unwrap_or(u32::MAX);
                Self::send(conn, &webhook::endpoint_disabled_event(&ep, failures, attempt.at)).await?;
                Ok(EndpointOutcome::Disabled)
            })
            .await
    }

    pub(crate) async fn list_deliveries(
        store: &B,
        query: &DeliveryQuery,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let mut sql = QueryBuilder::new(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id \
             WHERE d.endpoint_id = "
        ));
        sql.push_bind(query.endpoint_id.to_string());
        if let Some(state) = query.state {
            sql.push(" AND d.state = ").push_bind(state.as_str());
        }
        if let Some(before) = query.before {
            sql.push(" AND d.seq < (SELECT seq FROM webhook_deliveries WHERE id = ")
                .push_bind(before.to_string())
                .push(")");
        }
        sql.push(" ORDER BY d.seq DESC LIMIT ").push_bind(i64::from(query.limit));
        Self::deliveries(store, sql).await
    }

    pub(crate) async fn get_delivery(
        store: &B,
        id: DeliveryId,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        let mut sql = QueryBuilder::new(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id \
             WHERE d.id = "
        ));
        sql.push_bind(id.to_string());
        Ok(Self::deliveries(store, sql).await?.pop())
    }

    /// The deliveries `sql` selects, each with its attempts.
    async fn deliveries(store: &B, mut sql: QueryBuilder<B::Db>) -> Result<Vec<WebhookDelivery>, StoreError> {
        store
            .read(async |conn| {
                let rows: Vec<DeliveryRow> =
                    sql.build_query_as().fetch_all(&mut *conn).await.map_err(B::db_err)?;
                if rows.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = QueryBuilder::new(
                    "SELECT delivery_id, number, at, status, error, duration_ms FROM webhook_attempts \
                     WHERE delivery_id IN (",
                );
                let mut list = q.separated(", ");
                for r in &rows {
                    list.push_bind(r.id.clone());
                }
                q.push(") ORDER BY delivery_id, number");
                let attempts: Vec<AttemptRow> =
                    q.build_query_as().fetch_all(&mut *conn).await.map_err(B::db_err)?;
                let mut by_delivery: std::collections::HashMap<String, Vec<DeliveryAttempt>> =
                    std::collections::HashMap::new();
                for a in attempts {
                    let id = a.delivery_id.clone();
                    by_delivery.entry(id).or_default().push(a.into_attempt()?);
                }
                rows.into_iter()
                    .map(|r| {
                        let attempts = by_delivery.remove(&r.id).unwrap_or_default();
                        r.into_delivery(attempts)
                    })
                    .collect()
            })
            .await
    }

    pub(crate) async fn resend_delivery(
        store: &B,
        id: DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = to_ms(now);
        let mut sql =
            QueryBuilder::new("UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = ");
        sql.push_bind(now)
            .push(", retry_from = ")
            .push_bind(now)
            .push(" WHERE id = ")
            .push_bind(id.to_string());
        store
            .write(async |conn| {
                let done = sql.build().execute(conn).await.map_err(B::db_err)?;
                if B::rows_affected(&done) == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            })
            .await
    }

    /// Deletes deliveries that are done (delivered or failed) and created before `before`, their
    /// attempts, and events left without deliveries, in the caller's transaction.
    async fn purge_deliveries(conn: &mut Conn<B>, before: i64) -> Result<(), StoreError> {
        let done = "SELECT id FROM webhook_deliveries WHERE state <> 'pending' AND created_at < ";
        let mut sql = QueryBuilder::new(format!("DELETE FROM webhook_attempts WHERE delivery_id IN ({done}"));
        sql.push_bind(before).push(")");
        sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
        let mut sql =
            QueryBuilder::new("DELETE FROM webhook_deliveries WHERE state <> 'pending' AND created_at < ");
        sql.push_bind(before);
        sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
        let mut sql = QueryBuilder::new("DELETE FROM webhook_events WHERE created_at < ");
        sql.push_bind(before).push(
            " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)",
        );
        sql.build().execute(conn).await.map_err(B::db_err)?;
        Ok(())
    }

    /// Appends `ev` to its workspace's chain: locks the chain's head, links the event to it and
    /// moves the head, all in the caller's transaction, with
    /// the webhook event it sends.
    async fn insert_audit(conn: &mut Conn<B>, ev: &AuditEvent) -> Result<(), StoreError> {
        let v = AuditValues::new(ev);
        let chain = v.workspace_id.clone().unwrap_or_default();
        let genesis = audit_chain::to_hex(&audit_chain::GENESIS);
        let mut sql =
            QueryBuilder::new("INSERT INTO audit_heads (chain, seq, hash, anchor_seq, anchor_hash) VALUES (");
        sql.push_bind(chain.clone())
            .push(", 0, ")
            .push_bind(genesis.clone())
            .push(", 0, ")
            .push_bind(genesis)
            .push(") ON CONFLICT (chain) DO NOTHING");
        sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
        let mut sql = QueryBuilder::new(
            "SELECT chain, seq, hash, anchor_seq, anchor_hash FROM audit_heads WHERE chain = ",
        );
        sql.push_bind(chain.clone()).push(B::LOCK_ROW);
        let head: HeadRow = sql.build_query_as().fetch_one(&mut *conn).await.map_err(B::db_err)?;
        let prev = audit_chain::from_hex(&head.hash)
            .ok_or_else(|| StoreError::Other("corrupt audit head: hash".into()))?;
        let seq = head.seq + 1;
        // The hash covers what the row stores: the time to the millisecond.
        let stored = AuditEvent { at: from_ms(v.at)?, ..ev.clone() };
        let hash = audit_chain::to_hex(&audit_chain::link(&stored, seq as u64, &prev));
        let mut sql = QueryBuilder::new(concat!(
            "INSERT INTO audit_events (",
            audit_columns!(),
            ", chain, seq, prev_hash, hash) VALUES ("
        ));
        sql.separated(", ")
            .push_bind(v.id)
            .push_bind(v.workspace_id)
            .push_bind(v.action)
            .push_bind(v.key_id)
            .push_bind(v.actor_key_id)
            .push_bind(v.ip)
            .push_bind(v.user_agent)
            .push_bind(v.request_id)
            .push_bind(v.at)
            .push_bind(chain.clone())
            .push_bind(seq)
            .push_bind(audit_chain::to_hex(&prev))
            .push_bind(hash.clone());
        sql.push(")");
        sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
        let mut sql = QueryBuilder::new("UPDATE audit_heads SET seq = ");
        sql.push_bind(seq).push(", hash = ").push_bind(hash).push(" WHERE chain = ").push_bind(chain);
        sql.build().execute(&mut *conn).await.map_err(B::db_err)?;
        Self::audit_webhook(conn, ev).await
    }
}

/// Runs one store call, recording its latency and any error (see [`keyward_core::metrics`]).
pub(crate) async fn observed<T>(
    backend: &'static str,
    operation: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let start = std::time::Instant::now();
    let result = call.await;
    keyward_core::metrics::record_store_call(backend, operation, start.elapsed(), &result);
    result
}

/// Binds delivery positions as a comma-separated list (inside `IN (...)`).
fn push_seqs<Db: Database>(sql: &mut QueryBuilder<Db>, seqs: &[(i64,)])
where
    for<'q> i64: Encode<'q, Db> + Type<Db>,
{
    let mut list = sql.separated(", ");
    for (seq,) in seqs {
        list.push_bind(*seq);
    }
}

fn keys(rows: Vec<KeyRow>) -> Result<Vec<ApiKey>, StoreError> {
    rows.into_iter().map(KeyRow::into_key).collect()
}

/// Implements [`KeyStore`](keyward_core::KeyStore) for a [`SqlBackend`] with [`Queries`]. A
/// macro, because `KeyStore` is another crate's trait: no blanket impl over every backend may
/// implement it.
macro_rules! impl_key_store {
    ($store:ty) => {
        const _: () = {
            use chrono::{DateTime, NaiveDate, Utc};
            use keyward_core::{
                ApiKey, AuditEvent, AuditQuery, CreditOutcome, KeyDigest, KeyGuard, KeyId, KeyListQuery,
                KeyStore, Plan, PlanId, StoreError, UsageBatch, UsageDay, Workspace, WorkspaceId,
            };

            use keyward_core::webhook::{
                AttemptResult, ClaimedDelivery, DeliveryAttempt, DeliveryQuery, DisablePolicy,
                EndpointOutcome, NewWebhookEvent, WebhookDelivery, WebhookEndpoint,
            };
            use keyward_core::{DeliveryId, WebhookId};
            use $crate::sql::{Queries, SqlBackend, observed};

            #[async_trait::async_trait]
            impl KeyStore for $store {
                async fn save_plan(&self, plan: &Plan, event: &AuditEvent) -> Result<(), StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "save_plan",
                        Queries::save_plan(self, plan, event),
                    )
                    .await
                }

                async fn get_plan(&self, id: &PlanId) -> Result<Option<Plan>, StoreError> {
                    observed(<$store as SqlBackend>::BACKEND, "get_plan", Queries::get_plan(self, id)).await
                }

                async fn list_plans(&self) -> Result<Vec<Plan>, StoreError> {
                    observed(<$store as SqlBackend>::BACKEND, "list_plans", Queries::list_plans(self)).await
                }

                async fn insert_workspace(
                    &self,
                    ws: &Workspace,
                    event: &AuditEvent,
                ) -> Result<(), StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "insert_workspace",
                        Queries::insert_workspace(self, ws, event),
                    )
                    .await
                }

                async fn update_workspace(
                    &self,
                    ws: &Workspace,
                    event: &AuditEvent,
                ) -> Result<(), StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "update_workspace",
                        Queries::update_workspace(self, ws, event),
                    )
                    .await
                }

                async fn get_workspace(&self, id: WorkspaceId) -> Result<Option<Workspace>, StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "get_workspace",
                        Queries::get_workspace(self, id),
                    )
                    .await
                }

                async fn list_workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "list_workspaces",
                        Queries::list_workspaces(self),
                    )
                    .await
                }

                async fn insert_key(
                    &self,
                    key: &ApiKey,
                    max_live_keys: Option<u32>,
                    event: &AuditEvent,
                ) -> Result<(), StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "insert_key",
                        Queries::insert_key(self, key, max_live_keys, event),
                    )
                    .await
                }

                async fn insert_keys(
                    &self,
                    keys: &[(ApiKey, AuditEvent)],
                    max_live_keys: Option<u32>,
                ) -> Result<(), StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "insert_keys",
                        Queries::insert_keys(self, keys, max_live_keys),
                    )
                    .await
                }

                async fn get_key(&self, id: KeyId) -> Result<Option<ApiKey>, StoreError> {
                    observed(<$store as SqlBackend>::BACKEND, "get_key", Queries::get_key(self, id)).await
                }

                async fn find_key_by_digest(&self, digest: &KeyDigest) -> Result<Option<ApiKey>, StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "find_key_by_digest",
                        Queries::find_key_by_digest(self, digest),
                    )
                    .await
                }

                async fn find_key_record_by_digest(
                    &self,
                    digest: &KeyDigest,
                ) -> Result<Option<keyward_core::KeyRecord>, StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "find_key_record_by_digest",
                        Queries::find_key_record_by_digest(self, digest),
                    )
                    .await
                }

                async fn list_keys(&self, query: &KeyListQuery) -> Result<Vec<ApiKey>, StoreError> {
                    observed(<$store as SqlBackend>::BACKEND, "list_keys", Queries::list_keys(self, query))
                        .await
                }

                async fn count_live_keys(&self, workspace: WorkspaceId) -> Result<u64, StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "count_live_keys",
                        Queries::count_live_keys(self, workspace),
                    )
                    .await
                }

                async fn update_key_guarded(
                    &self,
                    key: &ApiKey,
                    expected_version: u64,
                    event: &AuditEvent,
                    guard: KeyGuard,
                ) -> Result<(), StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "update_key_guarded",
                        Queries::update_key_guarded(self, key, expected_version, event, guard),
                    )
                    .await
                }

                async fn rotate_key(
                    &self,
                    old: &ApiKey,
                    expected_version: u64,
                    new: &ApiKey,
                    event: &AuditEvent,
                ) -> Result<(), StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "rotate_key",
                        Queries::rotate_key(self, old, expected_version, new, event),
                    )
                    .await
                }

                async fn consume_credits(&self, id: KeyId, amount: i64) -> Result<CreditOutcome, StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "consume_credits",
                        Queries::consume_credits(self, id, amount),
                    )
                    .await
                }

                async fn refill_credits(
                    &self,
                    id: KeyId,
                    now: DateTime<Utc>,
                    event: &AuditEvent,
                ) -> Result<Option<i64>, StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "refill_credits",
                        Queries::refill_credits(self, id, now, event),
                    )
                    .await
                }

                async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
                    observed(<$store as SqlBackend>::BACKEND, "list_audit", Queries::list_audit(self, query))
                        .await
                }

                async fn purge_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "purge_audit",
                        Queries::purge_audit(self, before),
                    )
                    .await
                }

                async fn verify_audit(
                    &self,
                    workspace: Option<WorkspaceId>,
                    known: &[keyward_core::audit_chain::KnownHead],
                ) -> Result<Vec<keyward_core::audit_chain::ChainReport>, StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "verify_audit",
                        Queries::verify_audit(self, workspace, known),
                    )
                    .await
                }

                async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
                    observed(
                        <$store as SqlBackend>::BACKEND,
                        "record_usage",
                        Queries::record_usage(self, batch),
                    )
                    .await
                }

                async fn usage(
                    &self,
                    key: KeyId,
                    from: NaiveDate,
                    to: NaiveDate,
                ) -> Result<Vec<UsageDay>, StoreError> {
                    observed(<$store as SqlBackend>::BACKEND, "usage", Queries::usage(self, key, from, to))
                        .await
                }

                fn webhooks(&self) -> Option<&dyn keyward_core::WebhookStore> {
                    Some(self)
                }
            }

            #[async_trait::async_trait]
            impl keyward_core::WebhookStore for $store {
                async fn insert_endpoint(
                    &self,
                    endpoint: &WebhookEndpoint,
                    secret: &str,
                    event: &AuditEvent,
                ) -> Result<(), StoreError> {
                    let call = Queries::insert_endpoint(self, endpoint, secret, event);
                    observed(<$store as SqlBackend>::BACKEND, "insert_endpoint", call).await
                }
                async fn update_endpoint(
                    &self,
                    endpoint: &WebhookEndpoint,
                    event: &AuditEvent,
                ) -> Result<(), StoreError> {
                    let call = Queries::update_endpoint(self, endpoint, event);
                    observed(<$store as SqlBackend>::BACKEND, "update_endpoint", call).await
                }
                async fn delete_endpoint(
                    &self,
                    endpoint: &WebhookEndpoint,
                    event: &AuditEvent,
                ) -> Result<(), StoreError> {
                    let call = Queries::delete_endpoint(self, endpoint, event);
                    observed(<$store as SqlBackend>::BACKEND, "delete_endpoint", call).await
                }
                async fn get_endpoint(&self, id: WebhookId) -> Result<Option<WebhookEndpoint>, StoreError> {
                    observed(<$store as SqlBackend>::BACKEND, "get_endpoint", Queries::get_endpoint(self, id))
                        .await
                }
                async fn list_endpoints(
                    &self,
                    workspace: WorkspaceId,
                ) -> Result<Vec<WebhookEndpoint>, StoreError> {
                    let call = Queries::list_endpoints(self, workspace);
                    observed(<$store as SqlBackend>::BACKEND, "list_endpoints", call).await
                }
                async fn enqueue(
                    &self,
                    event: &NewWebhookEvent,
                    once: Option<&str>,
                ) -> Result<bool, StoreError> {
                    observed(<$store as SqlBackend>::BACKEND, "enqueue", Queries::enqueue(self, event, once))
                        .await
                }
                async fn keys_expiring(
                    &self,
                    after: DateTime<Utc>,
                    until: DateTime<Utc>,
                    limit: u32,
                ) -> Result<Vec<ApiKey>, StoreError> {
                    let call = Queries::keys_expiring(self, after, until, limit);
                    observed(<$store as SqlBackend>::BACKEND, "keys_expiring", call).await
                }
                async fn claim_deliveries(
                    &self,
                    now: DateTime<Utc>,
                    lease: std::time::Duration,
                    limit: u32,
                ) -> Result<Vec<ClaimedDelivery>, StoreError> {
                    let call = Queries::claim_deliveries(self, now, lease, limit);
                    observed(<$store as SqlBackend>::BACKEND, "claim_deliveries", call).await
                }
                async fn record_attempt(
                    &self,
                    delivery: &ClaimedDelivery,
                    attempt: &DeliveryAttempt,
                    result: &AttemptResult,
                    policy: DisablePolicy,
                ) -> Result<EndpointOutcome, StoreError> {
                    let call = Queries::record_attempt(self, delivery, attempt, result, policy);
                    observed(<$store as SqlBackend>::BACKEND, "record_attempt", call).await
                }
                async fn list_deliveries(
                    &self,
                    query: &DeliveryQuery,
                ) -> Result<Vec<WebhookDelivery>, StoreError> {
                    let call = Queries::list_deliveries(self, query);
                    observed(<$store as SqlBackend>::BACKEND, "list_deliveries", call).await
                }
                async fn get_delivery(&self, id: DeliveryId) -> Result<Option<WebhookDelivery>, StoreError> {
                    observed(<$store as SqlBackend>::BACKEND, "get_delivery", Queries::get_delivery(self, id))
                        .await
                }
                async fn resend_delivery(
                    &self,
                    id: DeliveryId,
                    now: DateTime<Utc>,
                ) -> Result<(), StoreError> {
                    let call = Queries::resend_delivery(self, id, now);
                    observed(<$store as SqlBackend>::BACKEND, "resend_delivery", call).await
                }
            }
        };
    };
}
pub(crate) use impl_key_store;
