//! keyward's key stores: [`KeyStore`](keyward_core::KeyStore) over sqlx.
//!
//! The embedded SQLite store ([`SqliteStore`], feature `sqlite`, on by default) keeps everything
//! in one file: WAL journal, foreign keys on, migrations embedded and applied when it opens; a
//! [`ChangeLogPoller`] carries changes made by other processes on the file to a verifier's cache.
//! The PostgreSQL store (`PgStore`, feature `postgres`, on by default) is for several nodes
//! sharing one database: a pool, migrations applied on open, compare-and-swap writes, and a
//! `ChangeFeed` that carries every change to every node's verifier cache over
//! `LISTEN`/`NOTIFY`. Every backend shares the row mapping and error mapping of this crate and
//! must pass the same contract suite (feature `testing`, `keyward_store_contract!`).
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use keyward_core::{Actor, KeyService, NewKey, NewWorkspace};
//! use keyward_store::SqliteStore;
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("keyward.db");
//! let store = SqliteStore::open(path.to_str().unwrap()).await?;
//! let service = KeyService::new(Arc::new(store.clone()));
//! let ws = service.create_workspace(NewWorkspace::live("Acme"), &Actor::system()).await.unwrap();
//! let created = service.create_key(NewKey::new(ws.id, "CI"), &Actor::system()).await.unwrap();
//! assert_eq!(created.key.prefix.len(), 12);
//! store.close().await;
//! # Ok::<(), keyward_core::StoreError>(())
//! # }).unwrap();
//! ```

// Shared by the SQL backends; idle when none is compiled in.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports, unused_macros)
)]
mod error;
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports, unused_macros)
)]
mod rows;
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports, unused_macros)
)]
mod sql;

#[cfg(feature = "sqlite")]
pub mod changelog;
#[cfg(feature = "sqlite")]
mod direct;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
pub use changelog::{ChangeLogConfig, ChangeLogPoller};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

#[cfg(feature = "postgres")]
pub mod feed;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub use feed::{ChangeFeed, ChangeFeedConfig, ChangeFeedStatus};
#[cfg(feature = "postgres")]
pub use postgres::{PgStore, PgStoreOptions};

#[cfg(feature = "testing")]
pub mod contract;
#[cfg(all(feature = "testing", feature = "postgres"))]
pub mod testing;
