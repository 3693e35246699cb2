//! The [`Verifier`]: the hot path every protected request takes, independent of any framework.
//!
//! header -> parse + checksum (no I/O) -> hash -> moka cache (positive entries and short
//! negative ones; concurrent misses for one key collapse into one store read) -> status, expiry,
//! plan, scopes, resources -> rate limits (every window of the key and of its workspace) ->
//! concurrency -> credits -> usage (written behind).
//!
//! ```
//! # use std::sync::Arc;
//! # use keyward_core::*;
//! # async fn demo(service: KeyService, plaintext: &str) -> Result<(), Error> {
//! let verifier = Verifier::builder(&service).build();
//! let presented = Presented { authorization: Some(plaintext.as_bytes()), ..Presented::default() };
//! let key = presented.key(verifier.config())?;
//! let verified = verifier.verify(key, &Requirements::scopes(["keys:read".parse().unwrap()])).await?;
//! println!("workspace {}", verified.workspace_id());
//! # Ok(()) }
//! ```

mod builder;
mod checks;
mod concurrency;
mod presented;
mod source;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use builder::VerifierBuilder;
pub use checks::Requirements;
use checks::check_key;
use concurrency::ConcurrencyPermit;
use presented::invalid;
pub use presented::{KEY_QUERY_PARAMS, Presented, VerifierConfig};
use source::Source;
pub use source::{KeyRecord, KeyResolver};

use crate::change::{Change, ChangeListener};
use crate::clock::Clock;
use crate::error::{Error, ErrorCode};
use crate::hash::{KeyDigest, KeyHash, KeyHasher};
use crate::metrics;
use crate::model::{ApiKey, KeyId, Plan, PlanId, RateLimitPolicy, Workspace, WorkspaceId};
use crate::ratelimit::{LimitSubject, RateLimitStatus, RateLimiter};
use crate::scope::{Scope, ScopeSet};
use crate::secret::ApiKeySecret;
use crate::service::{KeyChangeListener, WorkspaceChange};
use crate::store::{CreditOutcome, StoreError};
use crate::usage::UsageRecorder;

/// What the verifier does when the store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorePolicy {
    /// Refuse with 503 `STORE_UNAVAILABLE` whatever is not in the live cache (default).
    #[default]
    FailClosed,
    /// Serve entries loaded at most this long ago, even past the cache TTL.
    ServeStale(Duration),
}

/// A key as the verifier caches it, with its workspace and plan.
#[derive(Debug)]
pub(crate) struct ResolvedKey {
    /// The key record.
    pub key: ApiKey,
    /// Its workspace.
    pub workspace: Workspace,
    /// The workspace's plan.
    pub plan: Plan,
    /// The workspace's effective rate limit, computed once per load.
    workspace_policy: RateLimitPolicy,
}

impl ResolvedKey {
    fn new(record: KeyRecord) -> Self {
        let workspace_policy = record.workspace.effective_rate_limit();
        Self { key: record.key, workspace: record.workspace, plan: record.plan, workspace_policy }
    }

    fn key_policy(&self) -> &RateLimitPolicy {
        self.key.rate_limit.as_ref().unwrap_or(&self.plan.key_rate_limit)
    }
}

/// What the cache says about a presented key, over every candidate digest.
enum Lookup {
    /// A cached key.
    Hit(Arc<ResolvedKey>),
    /// Every candidate digest is cached as belonging to no key.
    KnownUnknown,
    /// At least one candidate is not cached: the store must be asked.
    Miss,
}

/// A cache entry: a key, or the remembered absence of one (a short negative entry).
#[derive(Clone)]
enum CacheEntry {
    Key(Arc<ResolvedKey>),
    NoKey,
}

/// A request that passed. Holds the key's concurrency slot until dropped.
#[derive(Debug)]
pub struct VerifiedKey {
    resolved: Arc<ResolvedKey>,
    rate_limit: RateLimitStatus,
    credits_remaining: Option<i64>,
    _permit: Option<ConcurrencyPermit>,
}

impl VerifiedKey {
    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        self.resolved.key.id
    }
    /// The key's workspace.
    pub fn workspace_id(&self) -> WorkspaceId {
        self.resolved.key.workspace_id
    }
    /// The key's name.
    pub fn name(&self) -> &str {
        &self.resolved.key.name
    }
    /// The key's scopes.
    pub fn scopes(&self) -> &ScopeSet {
        &self.resolved.key.scopes
    }
    /// The key's record (as cached).
    pub fn key(&self) -> &ApiKey {
        &self.resolved.key
    }
    /// The workspace (as cached).
    pub fn workspace(&self) -> &Workspace {
        &self.resolved.workspace
    }
    /// The plan (as cached).
    pub fn plan_id(&self) -> &PlanId {
        &self.resolved.plan.id
    }
    /// The rate-limit state after this request.
    pub fn rate_limit(&self) -> &RateLimitStatus {
        &self.rate_limit
    }
    /// Credits left after this request, for keys that use credits.
    pub fn credits_remaining(&self) -> Option<i64> {
        self.credits_remaining
    }
    /// Whether the key allows `scope`.
    pub fn allows(&self, scope: &Scope) -> bool {
        self.resolved.key.scopes.allows(scope)
    }
}

struct Inner {
    source: Source,
    /// Remote mode: the cache digest of each cached key by the digest its source stores it
    /// under, which is what changes name. Kept in step with the cache by its eviction listener.
    index: Option<Arc<dashmap::DashMap<KeyDigest, KeyDigest>>>,
    config: VerifierConfig,
    hasher: KeyHasher,
    clock: Arc<dyn Clock>,
    cache: moka::future::Cache<KeyDigest, CacheEntry>,
    stale: Option<moka::future::Cache<KeyDigest, Arc<ResolvedKey>>>,
    workspaces: moka::future::Cache<WorkspaceId, Arc<(Workspace, Plan)>>,
    limiter: Arc<dyn RateLimiter>,
    in_flight: Arc<Mutex<HashMap<KeyId, u32>>>,
    usage: Option<UsageRecorder>,
    /// Bumped by every invalidation, so that a load that raced with one is not trusted.
    epoch: AtomicU64,
}

/// The framework-neutral verifier. Cheap to clone. See the [module docs](self).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.inner.config)
            .field("cached", &self.inner.cache.entry_count())
            .field("limiter", &self.inner.limiter)
            .finish_non_exhaustive()
    }
}

/// A verifier's cache as a listener that does not keep the verifier alive: what
/// [`Verifier::listener`] gives a [`KeyService`](crate::KeyService) or a change feed. Does
/// nothing once the verifier is dropped.
#[derive(Debug)]
pub struct VerifierListener(std::sync::Weak<Inner>);

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier")
    }
}

#[async_trait::async_trait]
impl KeyChangeListener for VerifierListener {
    async fn key_changed(&self, key: &ApiKey) {
        if let Some(inner) = self.0.upgrade() {
            inner.invalidate_digest(&key.hash.digest).await;
        }
    }
    async fn workspace_changed(&self, _: &WorkspaceChange) {
        if let Some(inner) = self.0.upgrade() {
            inner.invalidate_all();
        }
    }
}

#[async_trait::async_trait]
impl ChangeListener for VerifierListener {
    async fn changed(&self, change: &Change) {
        if let Some(inner) = self.0.upgrade() {
            inner.apply(change).await;
        }
    }
}

#[async_trait::async_trait]
impl ChangeListener for Verifier {
    async fn changed(&self, change: &Change) {
        self.inner.apply(change).await;
    }
}

impl Inner {
    async fn apply(&self, change: &Change) {
        match change {
            Change::Key(digest) => self.invalidate_digest(digest).await,
            // A workspace or a plan may affect every cached key.
            Change::Workspace(_) | Change::Plan(_) | Change::Missed => self.invalidate_all(),
        }
    }

    /// Drops the key stored under `stored` (the store's digest).
    async fn invalidate_digest(&self, stored: &KeyDigest) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let local = match &self.index {
            None => *stored,
            Some(index) => match index.get(stored) {
                Some(local) => *local,
                None => return,
            },
        };
        self.cache.invalidate(&local).await;
        if let Some(stale) = &self.stale {
            stale.invalidate(&local).await;
        }
    }

    fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
        ::metrics::gauge!(metrics::CACHE_ENTRIES).set(0.0);
        self.workspaces.invalidate_all();
        if let Some(stale) = &self.stale {
            stale.invalidate_all();
        }
    }
}

impl Verifier {
    /// Header names and key format.
    pub fn config(&self) -> &VerifierConfig {
        &self.inner.config
    }

    /// Forgets a cached key, e.g. when another node announced a change. `digest` is the one
    /// the store keeps (the record's `hash`), in remote mode too.
    pub async fn invalidate(&self, digest: &KeyDigest) {
        self.inner.invalidate_digest(digest).await;
    }

    /// This verifier's cache as a listener that does not keep the verifier alive, for a
    /// [`KeyService`](crate::KeyService) to [subscribe](crate::KeyService::subscribe) so that
    /// changes made through it reach the cache before the change's call returns.
    pub fn listener(&self) -> Arc<VerifierListener> {
        Arc::new(VerifierListener(Arc::downgrade(&self.inner)))
    }

    /// The record behind `key`, whatever its status, through the cache (a miss reads the
    /// source, and concurrent misses for one key collapse into one read); `None` when the key
    /// is malformed or unknown. Checks nothing and counts nothing: for a server that answers
    /// remote verifiers, which decide for themselves.
    pub async fn lookup(&self, key: &str) -> Result<Option<KeyRecord>, Error> {
        if self.parse_format(key).is_err() {
            return Ok(None);
        }
        let candidates = self.inner.hasher.candidates(&ApiKeySecret::from(key));
        let found = match self.cached(&candidates).await {
            Lookup::Hit(r) => Ok(r),
            Lookup::KnownUnknown => return Ok(None),
            Lookup::Miss => self.resolve(&candidates, key).await,
        };
        match found {
            Ok(r) if r.key.deleted_at.is_none() => Ok(Some(KeyRecord {
                key: r.key.clone(),
                workspace: r.workspace.clone(),
                plan: r.plan.clone(),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.code() == ErrorCode::InvalidApiKey => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Forgets every cached key and workspace.
    pub fn invalidate_all(&self) {
        self.inner.invalidate_all();
    }

    /// Keys currently cached (approximate).
    pub fn cached_entries(&self) -> u64 {
        self.inner.cache.entry_count()
    }

    /// Verifies a presented key against `req`. Every failure is a catalog error; none is a
    /// panic or an `INTERNAL` for anything the caller sent.
    ///
    /// Records its outcome, its latency, the cache's answer and the rate-limit decisions (see
    /// [`metrics`]).
    pub async fn verify(&self, key: &str, req: &Requirements) -> Result<VerifiedKey, Error> {
        let start = std::time::Instant::now();
        let verified = self.verify_unrecorded(key, req).await;
        ::metrics::histogram!(metrics::VERIFY_DURATION).record(start.elapsed().as_secs_f64());
        metrics::record_verification(verified.as_ref().map(drop).map_err(Error::code));
        verified
    }

    async fn verify_unrecorded(&self, key: &str, req: &Requirements) -> Result<VerifiedKey, Error> {
        let inner = &*self.inner;
        self.parse_format(key)?;
        let secret = ApiKeySecret::from(key);
        let candidates = inner.hasher.candidates(&secret);
        drop(secret);
        let lookup = self.cached(&candidates).await;
        let cache = if matches!(lookup, Lookup::Miss) { metrics::CACHE_MISSES } else { metrics::CACHE_HITS };
        ::metrics::counter!(cache).increment(1);
        let resolved = match lookup {
            Lookup::Hit(r) => r,
            Lookup::KnownUnknown => return Err(invalid(None)),
            // The store path is rare and large; boxing it keeps this future small for the hits.
            Lookup::Miss => Box::pin(self.resolve_counted(&candidates, key)).await?,
        };
        let now = inner.clock.now();
        check_key(&resolved, req, now)?;

        let rate = inner
            .limiter
            .check_all(&[
                (LimitSubject::Key(resolved.key.id), resolved.key_policy()),
                (LimitSubject::Workspace(resolved.workspace.id), &resolved.workspace_policy),
            ])
            .await
            .map_err(Error::internal)?;
        record_rate_limit(&rate);
        if let Some(wait) = rate.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut e = Error::new(ErrorCode::RateLimited, "rate limit reached; retry later")
                .with_detail("retryAfterSeconds", secs)
                .with_retry_after(Duration::from_secs(secs.max(1)));
            if let Some(w) = rate.windows.iter().find(|w| w.remaining == 0) {
                e = e.with_detail("limit", w.window.limit).with_detail("periodSeconds", w.window.period_secs);
            }
            if let Some(w) = rate.tightest() {
                e = e.with_detail("reset", w.reset_epoch_secs());
            }
            return Err(e.with_rate_limit(rate));
        }

        let permit = match resolved.key.concurrency_limit {
            None => None,
            Some(max) => Some(self.acquire(resolved.key.id, max)?),
        };

        let mut credits_remaining = None;
        if req.cost > 0 && (resolved.key.credits.is_some() || resolved.key.refill.is_some()) {
            // During a rotation's grace period the old key spends its successor's credits.
            let account = resolved.key.rotated_to.unwrap_or(resolved.key.id);
            inner.source.refill_if_due(account, &resolved.key, now).await?;
            match inner.source.consume_credits(account, i64::from(req.cost)).await {
                Ok(CreditOutcome::Remaining(n)) => credits_remaining = Some(n),
                Ok(CreditOutcome::Unlimited) => {}
                Ok(CreditOutcome::Insufficient(n)) => {
                    return Err(Error::new(ErrorCode::InsufficientCredits, "insufficient credits")
                        .with_detail("required", req.cost)
                        .with_detail("remaining", n));
                }
                Err(e) => return Err(e.into()),
            }
        }

        if let Some(usage) = &inner.usage {
            usage.record(resolved.key.id, now);
        }
        Ok(VerifiedKey { resolved, rate_limit: rate, credits_remaining, _permit: permit })
    }

    fn acquire(&self, key: KeyId, max: u32) -> Result<ConcurrencyPermit, Error> {
        ConcurrencyPermit::acquire(&self.inner.in_flight, key, max)
    }

    /// Checks a key's format and checksum without any I/O: the first step of
    /// [`Verifier::verify`], exposed so integrations can refuse garbage before allocating. A
    /// refusal is counted as a verification; a key that passes is counted by `verify`.
    pub fn check_format(&self, key: &str) -> Result<(), Error> {
        let checked = self.parse_format(key);
        if let Err(e) = &checked {
            metrics::record_verification(Err(e.code()));
        }
        checked
    }

    fn parse_format(&self, key: &str) -> Result<(), Error> {
        let config = &self.inner.config;
        match config.format.parse(key) {
            Ok(_) => Ok(()),
            // Imported keys carry no checksum: only their shape is checked, then their hash.
            Err(_) if config.legacy.as_ref().is_some_and(|l| l.matches(key)) => Ok(()),
            Err(e) => Err(invalid(Some(e))),
        }
    }

    async fn cached(&self, candidates: &[KeyHash]) -> Lookup {
        let mut absent = false;
        for hash in candidates {
            match self.inner.cache.get(&hash.digest).await {
                Some(CacheEntry::Key(r)) => return Lookup::Hit(r),
                Some(CacheEntry::NoKey) => {}
                None => absent = true,
            }
        }
        if absent { Lookup::Miss } else { Lookup::KnownUnknown }
    }

    /// [`Verifier::resolve`], then the cache's size, which only a miss (or an invalidation)
    /// changes; the store was read anyway, so bringing moka's count up to date costs little.
    async fn resolve_counted(&self, candidates: &[KeyHash], key: &str) -> Result<Arc<ResolvedKey>, Error> {
        let resolved = self.resolve(candidates, key).await;
        self.inner.cache.run_pending_tasks().await;
        ::metrics::gauge!(metrics::CACHE_ENTRIES).set(self.inner.cache.entry_count() as f64);
        resolved
    }

    /// Reads the key from the source, for the candidates the cache does not know; `key` (the
    /// plaintext) goes only to a remote source, which hashes it itself.
    async fn resolve(&self, candidates: &[KeyHash], key: &str) -> Result<Arc<ResolvedKey>, Error> {
        let inner = &*self.inner;
        let mut store_error = None;
        for hash in candidates.iter() {
            let digest = hash.digest;
            if let Some(entry) = inner.cache.get(&digest).await {
                match entry {
                    CacheEntry::Key(r) => return Ok(r),
                    CacheEntry::NoKey => continue,
                }
            }
            let loaded = loop {
                let epoch = inner.epoch.load(Ordering::Acquire);
                let loaded = inner.cache.try_get_with(digest, self.load(digest, key)).await;
                if inner.epoch.load(Ordering::Acquire) == epoch {
                    break loaded;
                }
                // A change was announced while the key was being read: what was read may predate
                // it, so drop it and read again.
                inner.cache.invalidate(&digest).await;
            };
            match loaded {
                Ok(CacheEntry::Key(r)) => return Ok(r),
                Ok(CacheEntry::NoKey) => continue,
                Err(e) => {
                    if let Some(stale) = &inner.stale
                        && let Some(r) = stale.get(&digest).await
                    {
                        tracing::warn!(error = %e, "key store unavailable; serving a stale cache entry");
                        return Ok(r);
                    }
                    store_error = Some(e);
                }
            }
        }
        match store_error {
            Some(e) => Err(Error::from((*e).clone())),
            None => Err(invalid(None)),
        }
    }

    async fn load(&self, digest: KeyDigest, key: &str) -> Result<CacheEntry, StoreError> {
        let inner = &*self.inner;
        let record = match &inner.source {
            Source::Store(store) => self.load_stored(store.as_ref(), &digest).await?,
            Source::Remote(resolver) => resolver.resolve(&ApiKeySecret::from(key)).await?,
        };
        let Some(record) = record else { return Ok(CacheEntry::NoKey) };
        let resolved = Arc::new(ResolvedKey::new(record));
        if let Some(index) = &inner.index {
            index.insert(resolved.key.hash.digest, digest);
        }
        if let Some(stale) = &inner.stale {
            stale.insert(digest, resolved.clone()).await;
        }
        Ok(CacheEntry::Key(resolved))
    }

    /// The key stored under `digest`, with its workspace and plan (cached by workspace).
    async fn load_stored(
        &self,
        store: &dyn crate::store::KeyStore,
        digest: &KeyDigest,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let inner = &*self.inner;
        let Some(key) = store.find_key_by_digest(digest).await? else {
            return Ok(None);
        };
        let ws_plan = match inner.workspaces.get(&key.workspace_id).await {
            Some(wp) => wp,
            None => {
                let ws = store
                    .get_workspace(key.workspace_id)
                    .await?
                    .ok_or_else(|| StoreError::Other(format!("key {} has no workspace", key.id)))?;
                let plan = store
                    .get_plan(&ws.plan_id)
                    .await?
                    .ok_or_else(|| StoreError::Other(format!("workspace {} has no plan", ws.id)))?;
                let wp = Arc::new((ws, plan));
                inner.workspaces.insert(key.workspace_id, wp.clone()).await;
                wp
            }
        };
        Ok(Some(KeyRecord { key, workspace: ws_plan.0.clone(), plan: ws_plan.1.clone() }))
    }
}

/// Counts the decision of each subject the limiter looked at: the one whose window ran out is
/// `limited`, the others `allowed`.
fn record_rate_limit(status: &RateLimitStatus) {
    for subject in ["key", "workspace"] {
        let mut windows = status.windows.iter().filter(|w| w.subject_kind == subject).peekable();
        if windows.peek().is_none() {
            continue;
        }
        let limited = !status.allowed() && windows.any(|w| w.remaining == 0);
        let decision = if limited { "limited" } else { "allowed" };
        ::metrics::counter!(metrics::RATE_LIMIT_DECISIONS, "subject" => subject, "decision" => decision)
            .increment(1);
    }
}
