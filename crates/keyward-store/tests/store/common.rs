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

/// A Prometheus recorder for the whole test process, installed once: for what other threads
/// record (the change feed's task). Tests read only series labelled with names of their own.
#[cfg(feature = "postgres")]
pub(crate) fn global_metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().expect("the only recorder")
    })
}

/// The value of the series `series` (name and labels as rendered), or `None` when absent.
pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
