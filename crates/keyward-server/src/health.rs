//! `GET /healthz` and `GET /readyz`, for load balancers and orchestrators. Neither asks for a
//! key, and neither is an operation of the API document.
//!
//! - `/healthz` answers 200 `{"status":"ok"}` as long as the process serves HTTP: a liveness
//!   probe, which restarts a process that stopped answering.
//! - `/readyz` answers 200 when the node can serve requests, else 503; the body names each check
//!   and what failed, e.g. `{"status":"unavailable","checks":{"database":"unreachable",...}}`:
//!   - `database`: a cheap query answered within [`READY_TIMEOUT`];
//!   - `migrations`: every migration this build knows is applied (a node sharing its database
//!     with a newer one that rolled a migration back, or an operator's mistake);
//!   - `changeFeed` (PostgreSQL): the change feed listens, so changes made through other nodes
//!     reach this node's cache.
//!
//! The body says no more than that; the causes go to the log.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use keyward_core::{KeyStore, PlanId, StoreError};
use keyward_store::ChangeFeedStatus;
use serde_json::{Map, Value, json};

use crate::serve::Database;

/// Longest the readiness check waits for the database.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// What `/readyz` checks.
#[derive(Debug, Clone)]
pub struct Readiness {
    probe: Probe,
    feed: Option<ChangeFeedStatus>,
}

#[derive(Debug, Clone)]
enum Probe {
    /// Any store: a read of one plan.
    Store(Arc<dyn KeyStore>),
    /// keyward's own database: its migrations table.
    Database(Database),
}

impl Readiness {
    /// Checks that `store` answers a read of one plan.
    pub fn store(store: Arc<dyn KeyStore>) -> Self {
        Self { probe: Probe::Store(store), feed: None }
    }

    /// Checks that `database` answers and has every migration applied, and that `feed` (on
    /// PostgreSQL) listens.
    pub fn database(database: Database, feed: Option<ChangeFeedStatus>) -> Self {
        Self { probe: Probe::Database(database), feed }
    }

    /// Runs the checks: whether all passed, and each one's verdict.
    pub async fn check(&self) -> (bool, Map<String, Value>) {
        let mut checks = Map::new();
        let mut ready = true;
        let mut fail = |checks: &mut Map<String, Value>, name: &str, verdict: &str| {
            ready = false;
            checks.insert(name.into(), verdict.into());
        };
        match &self.probe {
            Probe::Store(store) => {
                let read =
                    tokio::time::timeout(READY_TIMEOUT, store.get_plan(&PlanId::from("default"))).await;
                match read {
                    Ok(Ok(_)) => {
                        checks.insert("database".into(), "ok".into());
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "readiness: the store failed");
                        fail(&mut checks, "database", verdict(&e));
                    }
                    Err(_) => {
                        tracing::warn!("readiness: the store did not answer within {READY_TIMEOUT:?}");
                        fail(&mut checks, "database", "unreachable");
                    }
                }
            }
            Probe::Database(database) => match database.unapplied_migrations(READY_TIMEOUT).await {
                Ok(unapplied) if unapplied.is_empty() => {
                    checks.insert("database".into(), "ok".into());
                    checks.insert("migrations".into(), "ok".into());
                }
                Ok(unapplied) => {
                    tracing::warn!(?unapplied, "readiness: migrations not applied");
                    checks.insert("database".into(), "ok".into());
                    fail(&mut checks, "migrations", &format!("{} not applied", unapplied.len()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "readiness: the database failed");
                    fail(&mut checks, "database", verdict(&e));
                    checks.insert("migrations".into(), "unknown".into());
                }
            },
        }
        if let Some(feed) = &self.feed {
            if feed.is_connected() {
                checks.insert("changeFeed".into(), "ok".into());
            } else {
                fail(&mut checks, "changeFeed", "disconnected");
            }
        }
        (ready, checks)
    }
}

/// What a failed check says of a store error.
fn verdict(e: &StoreError) -> &'static str {
    match e {
        StoreError::Unavailable(_) => "unreachable",
        _ => "failing",
    }
}

/// Liveness: the process serves HTTP.
pub(crate) async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 200 when every check passes, else 503.
pub(crate) async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let (ready, checks) = readiness.check().await;
    let (status, word) =
        if ready { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "unavailable") };
    (status, Json(json!({ "status": word, "checks": checks })))
}
