//! Mapping sqlx errors onto [`StoreError`], shared by every backend.

use keyward_core::StoreError;
use sqlx::error::DatabaseError;

/// Maps a sqlx error. `transient` tells which database errors of the backend mean "cannot be
/// reached or too busy right now" (lock timeouts, shutdown...), which become `Unavailable`.
pub(crate) fn map_sqlx(e: sqlx::Error, transient: fn(&dyn DatabaseError) -> bool) -> StoreError {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate,
        sqlx::Error::Database(db) if transient(db.as_ref()) => StoreError::Unavailable(db.to_string()),
        other => StoreError::Other(other.to_string()),
    }
}
