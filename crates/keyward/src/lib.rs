//! keyward: API keys for Rust services.
//!
//! Keys are issued once in a scanner-friendly format (`kw_live_...` with an offline checksum),
//! stored only as SHA-256 hashes, scoped (`resource:action` with wildcards), grouped in workspaces
//! with plans, rate-limited, rotated with grace and revoked at once. One [`Verifier`] checks them
//! on every request, through the tower [`KeywardLayer`](tower::KeywardLayer) (axum, tonic) or the
//! actix-web middleware.
//!
//! This crate re-exports the parts behind features: `sqlite` (default), `postgres`, `tower`
//! (default; also what tonic services use), `axum`, `actix`, `redis`, `remote` (verify through a
//! `keyward serve`, no database; `rustls` for https). Each store feature builds only its own
//! database driver. [`connect()`] turns a URL into a ready verifier and layer.
//!
//! A service that receives keyward's webhooks checks each delivery with
//! [`webhook_signature::verify`]; it needs no feature (`default-features = false`), and
//! `docs/webhooks.md` describes the deliveries.
//!
//! ```
//! # #[cfg(all(feature = "sqlite", feature = "tower"))]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use keyward::{Actor, KeyService, NewKey, NewWorkspace, Verifier};
//! use keyward::store::SqliteStore;
//! use keyward::tower::KeywardLayer;
//!
//! let service = KeyService::new(Arc::new(SqliteStore::open("sqlite://keys.db").await?));
//! let ws = service.create_workspace(NewWorkspace::live("acme"), &Actor::system()).await?;
//! let key = service.create_key(NewKey::new(ws.id, "CI").with_scopes("orders:read".parse()?), &Actor::system()).await?;
//! println!("shown once: {}", key.secret.expose_secret());
//! let layer = KeywardLayer::new(Verifier::builder(&service).build()).require_scope("orders:read".parse()?);
//! # let _ = layer; Ok(()) }
//! ```

pub use keyward_core::*;

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "remote"))]
pub mod connect;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "remote"))]
pub use connect::{Connect, ConnectError, Keyward, connect};
#[cfg(feature = "remote")]
pub mod remote;

/// Stores: SQLite (`sqlite`) and PostgreSQL with its change feed (`postgres`).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod store {
    pub use keyward_store::*;
}

/// The tower `Layer` for axum and tonic (`tower`, `axum`).
#[cfg(feature = "tower")]
pub mod tower {
    pub use keyward_tower::*;
}

/// The actix-web middleware (`actix`).
#[cfg(feature = "actix")]
pub mod actix {
    pub use keyward_actix::*;
}

/// The distributed rate limiter (`redis`).
#[cfg(feature = "redis")]
pub mod redis {
    pub use keyward_redis::*;
}
