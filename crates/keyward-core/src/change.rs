//! Changes to what verifiers cache, as a store's change propagation announces them, and the
//! [`ChangeListener`]s that hear of them.
//!
//! A change feed (PostgreSQL `LISTEN`/`NOTIFY`), a change log poller (SQLite) or a remote
//! verifier's event stream turns what it hears into a [`Change`] and hands it to one listener:
//! a [`Verifier`](crate::Verifier) drops what it cached, a server relays it to the verifiers
//! connected to it, and [`Vec<Arc<dyn ChangeListener>>`] hands it to several.
//!
//! ```
//! # use std::sync::Arc;
//! # use keyward_core::{Change, ChangeListener, KeyStore, Verifier};
//! # async fn demo(store: Arc<dyn KeyStore>, relay: Arc<dyn ChangeListener>) {
//! let verifier = Verifier::from_store(store).build();
//! let listeners: Vec<Arc<dyn ChangeListener>> = vec![Arc::new(verifier.clone()), relay];
//! // A feed started with `listeners` tells both:
//! listeners.changed(&Change::Missed).await;
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use crate::hash::KeyDigest;
use crate::model::{PlanId, WorkspaceId};

/// Something a verifier may have cached changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The key stored under this digest (the store's digest, as [`ApiKey::hash`](crate::ApiKey)
    /// holds it) changed or was deleted.
    Key(KeyDigest),
    /// This workspace changed: any of its keys may be affected.
    Workspace(WorkspaceId),
    /// This plan changed: any key of a workspace on it may be affected.
    Plan(PlanId),
    /// Changes may have been missed (the feed reconnected, the log moved past the poller, the
    /// announcement was not understood): anything cached may be stale.
    Missed,
}

/// Hears of [`Change`]s. See the [module docs](self).
#[async_trait::async_trait]
pub trait ChangeListener: Send + Sync + fmt::Debug + 'static {
    /// Called once per change, in the order the changes were announced.
    async fn changed(&self, change: &Change);
}

#[async_trait::async_trait]
impl<L: ChangeListener + ?Sized> ChangeListener for Arc<L> {
    async fn changed(&self, change: &Change) {
        (**self).changed(change).await;
    }
}

#[async_trait::async_trait]
impl ChangeListener for Vec<Arc<dyn ChangeListener>> {
    async fn changed(&self, change: &Change) {
        for listener in self {
            listener.changed(change).await;
        }
    }
}
