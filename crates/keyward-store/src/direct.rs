//! SQLite's direct reader: the data plane's one store read (the key under a digest, with its
//! workspace and plan) run on the calling thread through rusqlite, not through sqlx's pool.
//!
//! sqlx runs each SQLite statement on a worker thread of its connection, handing the statement
//! there and the rows back over channels, and its pool pings a connection when it is taken and
//! again when it is returned: a cold key's point lookup costs several thread wake-ups, tens of
//! microseconds and a long tail. The same statement on a connection of the caller's own is a
//! B-tree probe of a few microseconds, cheaper than one hand-off. So a verification that misses
//! the cache reads here; every write, and every read of the management plane, stays on the pool.
//!
//! The reader's connections are read-only and wait for no lock (busy timeout 0: in WAL mode a
//! reader does not wait for writers, and the rare `SQLITE_BUSY` is not waited out on an async
//! thread). They are opened when needed, at most [`MAX_CONNECTIONS`] at once. Whatever goes
//! wrong here (a lock, an I/O error, a connection that cannot be opened, a column that does not
//! decode) is not taken for the answer: the read falls back to the pool, which gives the
//! authoritative one, error included.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use keyward_core::{KeyDigest, KeyRecord, StoreError};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::rows::{KeyRecordRow, key_columns, key_record_columns};
use crate::sql::key_record_by_digest;

/// Most connections the reader holds at once; a read that finds them all busy uses the pool.
pub(crate) const MAX_CONNECTIONS: usize = 8;

/// The statement, with SQLite's numbered placeholder.
const STATEMENT: &str = concat!(key_record_by_digest!(head), "?1", key_record_by_digest!(tail));

/// Reads key records from a database file on connections of its own.
#[derive(Debug)]
pub(crate) struct DirectReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Connections open now, idle or in use.
    open: AtomicUsize,
    closed: AtomicBool,
}

impl DirectReader {
    /// A reader of the database file at `path`, with one connection open and its statement
    /// checked against [`KeyRecordRow`]'s columns; an error says why the file cannot be read
    /// this way.
    pub(crate) fn open(path: &Path) -> Result<Self, String> {
        let first = connect(path)?;
        Ok(Self {
            path: path.to_owned(),
            idle: Mutex::new(vec![first]),
            open: AtomicUsize::new(1),
            closed: AtomicBool::new(false),
        })
    }

    /// The key under `digest` with its workspace and plan; `None` when this reader could not
    /// tell (read through the pool instead).
    pub(crate) fn key_record(&self, digest: &KeyDigest) -> Option<Result<Option<KeyRecord>, StoreError>> {
        let conn = self.take()?;
        let read = query(&conn, &digest.to_hex());
        self.give_back(conn);
        match read {
            Ok(row) => Some(row.map(KeyRecordRow::into_record).transpose()),
            Err(error) => {
                tracing::debug!(%error, "direct read of a key failed; reading it through the pool");
                None
            }
        }
    }

    /// Closes the idle connections; from now on every read goes to the pool.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        self.open.fetch_sub(idle.len(), Ordering::SeqCst);
    }

    fn take(&self) -> Option<Connection> {
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        if let Some(conn) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Some(conn);
        }
        // Every connection is in use: open another, within the bound.
        if self.open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            self.open.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        match connect(&self.path) {
            Ok(conn) => Some(conn),
            Err(error) => {
                self.open.fetch_sub(1, Ordering::SeqCst);
                tracing::warn!(%error, "could not open a direct reader connection; reading through the pool");
                None
            }
        }
    }

    fn give_back(&self, conn: Connection) {
        if self.closed.load(Ordering::SeqCst) {
            self.open.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
    }
}

/// A read-only connection to `path` with the statement prepared and its columns checked.
fn connect(path: &Path) -> Result<Connection, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::ZERO).map_err(|e| e.to_string())?;
    let statement = conn.prepare_cached(STATEMENT).map_err(|e| e.to_string())?;
    if !statement.column_names().into_iter().eq(KeyRecordRow::columns()) {
        return Err(format!(
            "the statement's columns {:?} are not the row's {:?}",
            statement.column_names(),
            KeyRecordRow::columns().collect::<Vec<_>>()
        ));
    }
    drop(statement);
    Ok(conn)
}

fn query(conn: &Connection, digest_hex: &str) -> rusqlite::Result<Option<KeyRecordRow>> {
    conn.prepare_cached(STATEMENT)?.query_row([digest_hex], KeyRecordRow::from_direct).optional()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use keyward_core::{
        Actor, KeyHasher, KeyService, KeyStore, NewKey, NewWorkspace, RateLimitPolicy, RateLimitWindow,
    };
    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;
    use crate::SqliteStore;

    #[tokio::test]
    async fn reads_what_the_pool_reads_and_gives_way_when_it_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("direct.db");
        let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
        assert!(store.direct_reader().is_some(), "a database file is read directly");
        // The same file without a direct reader: every read through the pool.
        let pooled = SqliteStore::from_pool(
            SqlitePoolOptions::new().connect(&format!("sqlite://{}", path.display())).await.unwrap(),
        )
        .await
        .unwrap();
        assert!(pooled.direct_reader().is_none());

        let service = KeyService::new(Arc::new(store.clone()) as Arc<dyn KeyStore>);
        let ws = service.create_workspace(NewWorkspace::live("direct"), &Actor::system()).await.unwrap();
        let everything = NewKey {
            rate_limit: Some(RateLimitPolicy::new([RateLimitWindow::per_minute(10)])),
            concurrency_limit: Some(3),
            credits: Some(500),
            credits_low_threshold: Some(50),
            ip_allowlist: vec!["198.51.100.7/32".parse().unwrap()],
            metadata: BTreeMap::from([("team".into(), "ops ✓".into())]),
            expires_at: Some(chrono::Utc::now() + chrono::Duration::days(3)),
            ..NewKey::new(ws.id, "everything")
        };
        let created = service.create_key(everything, &Actor::system()).await.unwrap();
        let plain = service.create_key(NewKey::new(ws.id, "plain"), &Actor::system()).await.unwrap();

        let reader = store.direct_reader().unwrap();
        for secret in [&created.secret, &plain.secret] {
            let digest = KeyHasher::sha256().hash(secret).digest;
            let direct = reader.key_record(&digest).expect("answered directly").unwrap().expect("found");
            let through_pool = pooled.find_key_record_by_digest(&digest).await.unwrap().expect("found");
            assert_eq!(direct, through_pool);
        }
        assert_eq!(reader.key_record(&KeyDigest([7; 32])).expect("answered directly").unwrap(), None);

        // A reader with every connection busy gives way to the pool.
        let held: Vec<_> = std::iter::from_fn(|| reader.take()).collect();
        assert_eq!(held.len(), MAX_CONNECTIONS, "bounded");
        assert!(reader.key_record(&KeyDigest([7; 32])).is_none());
        held.into_iter().for_each(|c| reader.give_back(c));
        assert!(reader.key_record(&KeyDigest([7; 32])).is_some());

        // A closed store answers nothing directly, and the pool says it is closed.
        store.close().await;
        assert!(reader.key_record(&KeyDigest([7; 32])).is_none());
        let closed = store.find_key_record_by_digest(&KeyDigest([7; 32])).await.expect_err("closed");
        assert!(matches!(closed, StoreError::Unavailable(_)), "{closed:?}");
        pooled.close().await;
    }

    #[tokio::test]
    async fn in_memory_databases_are_read_through_the_pool() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        assert!(store.direct_reader().is_none());
        assert_eq!(store.find_key_record_by_digest(&KeyDigest([7; 32])).await.unwrap(), None);
    }
}
