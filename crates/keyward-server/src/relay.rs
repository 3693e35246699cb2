//! The change relay: every change this node hears of - made through its own service, or by
//! another process or node through the change log or feed - for the remote verifiers listening
//! on `GET /v1/verifier/events`.

use std::sync::Arc;

use keyward_core::{ApiKey, Change, ChangeListener, KeyChangeListener, KeyService, WorkspaceChange};
use tokio::sync::{broadcast, watch};

/// Changes a listener may fall behind by before it is told to forget everything.
const BACKLOG: usize = 4096;

/// Fans changes out to the event streams. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ChangeRelay {
    tx: broadcast::Sender<Change>,
    closed: Arc<watch::Sender<bool>>,
}

impl Default for ChangeRelay {
    fn default() -> Self {
        Self { tx: broadcast::channel(BACKLOG).0, closed: Arc::new(watch::Sender::new(false)) }
    }
}

impl ChangeRelay {
    /// A relay that hears of the changes made through `service`.
    pub fn for_service(service: &KeyService) -> Self {
        let relay = Self::default();
        service.subscribe(Arc::new(relay.clone()));
        relay
    }

    /// The changes from now on. A receiver that lags behind by more than the backlog gets
    /// `Lagged`, and must assume it missed anything.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    /// Ends every event stream, now and from now on: a server shutting down does not wait for
    /// streams that never end by themselves. Remote verifiers reconnect to another node or
    /// to this one once it is back.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves once [`ChangeRelay::close`] was called.
    pub async fn closed(&self) {
        let mut closed = self.closed.subscribe();
        let _ = closed.wait_for(|c| *c).await;
    }

    /// Event streams listening now.
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }

    fn send(&self, change: Change) {
        // No receiver is no error: nobody is listening.
        let _ = self.tx.send(change);
    }
}

#[async_trait::async_trait]
impl ChangeListener for ChangeRelay {
    async fn changed(&self, change: &Change) {
        self.send(change.clone());
    }
}

#[async_trait::async_trait]
impl KeyChangeListener for ChangeRelay {
    async fn key_changed(&self, key: &ApiKey) {
        self.send(Change::Key(key.hash.digest));
    }

    async fn workspace_changed(&self, change: &WorkspaceChange) {
        self.send(match change {
            WorkspaceChange::Workspace(id) => Change::Workspace(*id),
            WorkspaceChange::Plan(id) => Change::Plan(id.clone()),
        });
    }
}
