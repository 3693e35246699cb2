//! Where a verifier reads keys from: a [`KeyStore`], or a [`KeyResolver`] for a verifier that
//! holds no database credentials (keyward's remote mode, which asks a `keyward serve`).

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::model::{ApiKey, KeyId, Plan, Workspace};
use crate::secret::ApiKeySecret;
use crate::store::{CreditOutcome, KeyStore, StoreError};

/// A key as a verifier needs it: the record, its workspace and the workspace's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// The key, whatever its status (the verifier decides); never a deleted one.
    pub key: ApiKey,
    /// Its workspace.
    pub workspace: Workspace,
    /// The workspace's plan.
    pub plan: Plan,
}

/// Resolves presented keys for a verifier built with [`Verifier::remote`](super::Verifier::remote).
///
/// The verifier caches what it returns under the SHA-256 digest of the presented key and asks
/// again only on a miss, so the plaintext goes to the resolver once per key and cache lifetime.
/// Changes reach the cache through [`Verifier::invalidate`](super::Verifier::invalidate) with
/// the digest the resolver returned in [`KeyRecord::key`]'s `hash`.
#[async_trait::async_trait]
pub trait KeyResolver: Send + Sync + fmt::Debug + 'static {
    /// The key presented as `key`; `None` when there is no such key (or it is deleted, or the
    /// resolver may not see it). Errors mean the answer is unknown (`Unavailable`, `Timeout`).
    async fn resolve(&self, key: &ApiKeySecret) -> Result<Option<KeyRecord>, StoreError>;

    /// Takes `amount` credits from key `id`, atomically, where the credits are kept.
    async fn consume_credits(&self, id: KeyId, amount: i64) -> Result<CreditOutcome, StoreError>;
}

/// The verifier's source of keys.
#[derive(Debug, Clone)]
pub(super) enum Source {
    Store(Arc<dyn KeyStore>),
    Remote(Arc<dyn KeyResolver>),
}

impl Source {
    /// Refills `account` (`key`, or its successor) when `key`'s copy says a refill is due. A
    /// remote source refills where the credits are kept, when they are spent.
    pub(super) async fn refill_if_due(
        &self,
        account: KeyId,
        key: &ApiKey,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            Source::Store(store) if key.refill.is_some() => {
                if account == key.id {
                    store.refill_if_due(key, now).await?;
                } else {
                    store.refill_if_due(&ApiKey { id: account, ..key.clone() }, now).await?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub(super) async fn consume_credits(&self, id: KeyId, amount: i64) -> Result<CreditOutcome, StoreError> {
        match self {
            Source::Store(store) => store.consume_credits(id, amount).await,
            Source::Remote(resolver) => resolver.consume_credits(id, amount).await,
        }
    }
}
