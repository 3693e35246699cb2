//! Fresh SQLite stores in temporary directories, in keyward-core's one test store
//! ([`InstrumentedStore`], which counts usage writes and can simulate an outage).

use std::path::PathBuf;
use std::sync::Arc;

use keyward_core::testing::InstrumentedStore;
use keyward_store::SqliteStore;
use tempfile::TempDir;

/// An empty store in a new temporary directory (removed with the store): the contract suite's
/// factory.
pub(crate) async fn fresh() -> Arc<InstrumentedStore> {
    let file = sqlite_file().await;
    InstrumentedStore::with_guard(Arc::new(file.inner), file.dir)
}

/// An SQLite file of its own, for the tests that look at the file or the pool too.
#[derive(Debug)]
pub(crate) struct SqliteFile {
    /// The store, instrumented.
    pub(crate) store: Arc<InstrumentedStore>,
    /// The same store, uninstrumented, for its pool.
    pub(crate) inner: SqliteStore,
    dir: TempDir,
}

/// A new, empty SQLite file in a temporary directory.
pub(crate) async fn sqlite_file() -> SqliteFile {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keyward.db");
    let inner = SqliteStore::open(path.to_str().expect("utf-8 path")).await.expect("open store");
    SqliteFile { store: InstrumentedStore::new(Arc::new(inner.clone())), inner, dir }
}

impl SqliteFile {
    /// The database file.
    pub(crate) fn db_path(&self) -> PathBuf {
        self.dir.path().join("keyward.db")
    }
}
