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
mod hot;
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
use crate::clock::{Clock, monotonic_nanos};
use crate::error::{Error, ErrorCode};
use crate::hash::{Digests, KeyDigest, KeyHasher};
use crate::metrics;
use crate::model::{ApiKey, KeyId, KeyStatus, Plan, PlanId, RateLimitPolicy, Workspace, WorkspaceId};
use crate::ratelimit::{HeldLimiters, LimitSubject, RateLimitStatus, RateLimiter};
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
///
/// `repr(C)` keeps the fields in the order written: what a cache hit reads (the gate, the held
/// limiters, the ids and policies) sits at the start of the allocation, beside the reference
/// count the hit bumps, so that a hit over many cached keys touches a few adjacent cache lines of
/// the entry instead of a line per field spread over the records.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct ResolvedKey {
    /// What decides most hits, copied out of the records.
    gate: Gate,
    /// The in-process limiters of the key and of its workspace, held so that a hit needs no
    /// limiter lookup.
    held: [HeldLimiters; 2],
    /// `key.id`.
    key_id: KeyId,
    /// `key.workspace_id`.
    workspace_id: WorkspaceId,
    /// The key's own rate limit, or its plan's.
    key_policy: RateLimitPolicy,
    /// The workspace's effective rate limit, computed once per load.
    workspace_policy: RateLimitPolicy,
    /// When it was loaded, on the hit cache's clock (see [`hot::HotCache::now`]).
    loaded: u64,
    /// The key record.
    pub key: ApiKey,
    /// Its workspace.
    pub workspace: Workspace,
    /// The workspace's plan.
    pub plan: Plan,
}

/// The parts of a key's records that [`checks::check_key`] and the admission read on every hit.
#[derive(Debug)]
struct Gate {
    /// The earlier of the key's expiry and the end of its rotation's grace period, in
    /// milliseconds since the Unix epoch; `i64::MAX` for neither.
    deadline_ms: i64,
    /// `key.concurrency_limit`.
    concurrency_limit: Option<u32>,
    /// Nothing but time and the route's scopes can refuse the key: it is not deleted, it is
    /// active, its plan has API access, and neither it nor its workspace restricts resources or
    /// addresses.
    plain: bool,
    /// The key spends credits (it has a balance or a refill).
    uses_credits: bool,
}

impl ResolvedKey {
    fn new(record: KeyRecord, loaded: u64) -> Self {
        let KeyRecord { key, workspace, plan } = record;
        let deadline_ms = [key.expires_at, key.grace_ends_at]
            .into_iter()
            .flatten()
            .map(|t| t.timestamp_millis())
            .min()
            .unwrap_or(i64::MAX);
        let gate = Gate {
            deadline_ms,
            concurrency_limit: key.concurrency_limit,
            plain: key.deleted_at.is_none()
                && key.status == KeyStatus::Active
                && plan.api_access
                && key.resources.is_empty()
                && key.ip_allowlist.is_empty()
                && workspace.ip_allowlist.is_empty(),
            uses_credits: key.credits.is_some() || key.refill.is_some(),
        };
        Self {
            gate,
            held: Default::default(),
            key_id: key.id,
            workspace_id: key.workspace_id,
            key_policy: key.rate_limit.clone().unwrap_or_else(|| plan.key_rate_limit.clone()),
            workspace_policy: workspace.effective_rate_limit(),
            loaded,
            key,
            workspace,
            plan,
        }
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

/// A cache entry: a key, or the remembered absence of one (a short negative entry, with the
/// time it was looked up on the hit cache's clock).
#[derive(Clone)]
enum CacheEntry {
    Key(Arc<ResolvedKey>),
    NoKey(u64),
}

/// A presented key whose format passed, hashed once: every digest it may be stored under, and
/// the plaintext only for a verifier that must hand it to a remote resolver on a miss. Made by
/// [`Verifier::prepare`]; its `Debug` shows nothing of the key.
pub struct PreparedKey {
    digests: Digests,
    plaintext: Option<ApiKeySecret>,
}

impl fmt::Debug for PreparedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PreparedKey")
    }
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
        self.resolved.key_id
    }
    /// The key's workspace.
    pub fn workspace_id(&self) -> WorkspaceId {
        self.resolved.workspace_id
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
    /// The hit cache in front of `cache`; none in remote mode, whose changes name keys by the
    /// source's digest.
    hot: Option<hot::HotCache>,
    stale: Option<moka::future::Cache<KeyDigest, Arc<ResolvedKey>>>,
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
        if let Some(hot) = &self.hot {
            hot.invalidating();
        }
        self.cache.invalidate(&local).await;
        if let Some(stale) = &self.stale {
            stale.invalidate(&local).await;
        }
        if let Some(hot) = &self.hot {
            hot.invalidated(Some(&local));
        }
    }

    fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(hot) = &self.hot {
            hot.invalidating();
        }
        self.cache.invalidate_all();
        if let Some(hot) = &self.hot {
            hot.invalidated(None);
        }
        ::metrics::gauge!(metrics::CACHE_ENTRIES).set(0.0);
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
        let Ok(key) = self.prepare_unrecorded(key) else {
            return Ok(None);
        };
        let candidates = key.digests.as_slice();
        let epoch = self.inner.hot.as_ref().map_or(0, hot::HotCache::epoch);
        let found = match self.cached(candidates, epoch).await {
            Lookup::Hit(r) => Ok(r),
            Lookup::KnownUnknown => return Ok(None),
            Lookup::Miss => self.resolve(candidates, &key).await,
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
        let start = monotonic_nanos();
        let verified = match self.prepare_unrecorded(key) {
            Ok(key) => match self.verify_cached_unrecorded(&key, req, start) {
                Some(decided) => decided,
                None => self.verify_unrecorded(&key, req).await,
            },
            Err(e) => Err(e),
        };
        Self::record(start, &verified);
        verified
    }

    /// Checks a presented key's format and checksum without any I/O, then hashes it once: what
    /// [`Verifier::verify_cached`] and [`Verifier::verify_prepared`] take, for integrations that
    /// refuse garbage before anything else and try the synchronous path first. A refusal is
    /// counted as a verification.
    pub fn prepare(&self, key: &str) -> Result<PreparedKey, Error> {
        let prepared = self.prepare_unrecorded(key);
        if let Err(e) = &prepared {
            metrics::record_verification(Err(e.code()));
        }
        prepared
    }

    /// [`Verifier::verify`] of a prepared key, decided without a future when it can be: a key
    /// the hit cache knows (or knows to be unknown), with an in-process rate limiter and no
    /// credits to spend. `None` when deciding needs I/O: call [`Verifier::verify_prepared`].
    /// A decision is recorded like [`Verifier::verify`]'s; `None` records nothing.
    pub fn verify_cached(&self, key: &PreparedKey, req: &Requirements) -> Option<Result<VerifiedKey, Error>> {
        let start = monotonic_nanos();
        let verified = self.verify_cached_unrecorded(key, req, start)?;
        Self::record(start, &verified);
        Some(verified)
    }

    /// [`Verifier::verify`] of a prepared key, through the store (or remote resolver) when the
    /// cache does not know it.
    pub async fn verify_prepared(&self, key: &PreparedKey, req: &Requirements) -> Result<VerifiedKey, Error> {
        let start = monotonic_nanos();
        let verified = match self.verify_cached_unrecorded(key, req, start) {
            Some(decided) => decided,
            None => self.verify_unrecorded(key, req).await,
        };
        Self::record(start, &verified);
        verified
    }

    /// Records the outcome, and the time since `start` (read from [`monotonic_nanos`]).
    fn record(start: u64, verified: &Result<VerifiedKey, Error>) {
        let elapsed = monotonic_nanos().saturating_sub(start);
        metrics::register!(register_histogram, &metrics::VERIFY_DURATION_KEY).record(elapsed as f64 * 1e-9);
        metrics::record_verification(verified.as_ref().map(drop).map_err(Error::code));
    }

    fn prepare_unrecorded(&self, key: &str) -> Result<PreparedKey, Error> {
        self.parse_format(key)?;
        let inner = &*self.inner;
        let plaintext = match inner.source {
            Source::Store(_) => None,
            Source::Remote(_) => Some(ApiKeySecret::from(key)),
        };
        Ok(PreparedKey { digests: inner.hasher.candidate_digests(key.as_bytes()), plaintext })
    }

    /// The synchronous path: `None`, having recorded nothing, when the key needs I/O. `now` is
    /// [`monotonic_nanos`], read once by the caller for the cache, the limiter and the metrics.
    fn verify_cached_unrecorded(
        &self,
        key: &PreparedKey,
        req: &Requirements,
        now: u64,
    ) -> Option<Result<VerifiedKey, Error>> {
        let inner = &*self.inner;
        let local = inner.limiter.as_local()?;
        let resolved = match inner.hot.as_ref()?.get(key.digests.as_slice(), now)? {
            hot::Hot::Key(r) => r,
            hot::Hot::NoKey => {
                metrics::register!(register_counter, &metrics::CACHE_HITS_KEY).increment(1);
                return Some(Err(invalid(None)));
            }
        };
        if needs_credits(&resolved, req) {
            return None;
        }
        metrics::register!(register_counter, &metrics::CACHE_HITS_KEY).increment(1);
        Some(self.decide_hit(local, resolved, req, now))
    }

    fn decide_hit(
        &self,
        local: &crate::ratelimit::LocalRateLimiter,
        resolved: Arc<ResolvedKey>,
        req: &Requirements,
        monotonic: u64,
    ) -> Result<VerifiedKey, Error> {
        // The wall clock is read only for a key that expires (or is in a rotation's grace) and
        // for usage: most hits need no second clock reading.
        let now = || self.inner.clock.now();
        check_key(&resolved, req, now)?;
        let rate = local.check_held(
            &[
                (LimitSubject::Key(resolved.key_id), &resolved.key_policy, &resolved.held[0]),
                (
                    LimitSubject::Workspace(resolved.workspace_id),
                    &resolved.workspace_policy,
                    &resolved.held[1],
                ),
            ],
            monotonic,
        );
        let (rate, permit) = self.admit(&resolved, rate)?;
        Ok(self.admitted(resolved, rate, None, permit, now))
    }

    async fn verify_unrecorded(&self, key: &PreparedKey, req: &Requirements) -> Result<VerifiedKey, Error> {
        let inner = &*self.inner;
        let candidates = key.digests.as_slice();
        let epoch = inner.hot.as_ref().map_or(0, hot::HotCache::epoch);
        let lookup = self.cached(candidates, epoch).await;
        let cache = if matches!(lookup, Lookup::Miss) {
            &metrics::CACHE_MISSES_KEY
        } else {
            &metrics::CACHE_HITS_KEY
        };
        metrics::register!(register_counter, cache).increment(1);
        let resolved = match lookup {
            Lookup::Hit(r) => r,
            Lookup::KnownUnknown => return Err(invalid(None)),
            // The store path is rare and large; boxing it keeps this future small for the hits.
            Lookup::Miss => Box::pin(self.resolve_counted(candidates, key)).await?,
        };
        let now = inner.clock.now();
        check_key(&resolved, req, || now)?;

        let rate = inner
            .limiter
            .check_all(&[
                (LimitSubject::Key(resolved.key_id), &resolved.key_policy),
                (LimitSubject::Workspace(resolved.workspace_id), &resolved.workspace_policy),
            ])
            .await
            .map_err(Error::internal)?;
        let (rate, permit) = self.admit(&resolved, rate)?;

        let mut credits_remaining = None;
        if needs_credits(&resolved, req) {
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
        Ok(self.admitted(resolved, rate, credits_remaining, permit, || now))
    }

    /// Records the rate-limit decision; refuses with `RATE_LIMITED` when a window ran out, or
    /// with `CONCURRENCY_LIMITED` when the key has no slot left; else takes its slot.
    fn admit(
        &self,
        resolved: &ResolvedKey,
        rate: RateLimitStatus,
    ) -> Result<(RateLimitStatus, Option<ConcurrencyPermit>), Error> {
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
        let permit = match resolved.gate.concurrency_limit {
            None => None,
            Some(max) => Some(self.acquire(resolved.key_id, max)?),
        };
        Ok((rate, permit))
    }

    /// The verified key, its use recorded.
    fn admitted(
        &self,
        resolved: Arc<ResolvedKey>,
        rate_limit: RateLimitStatus,
        credits_remaining: Option<i64>,
        permit: Option<ConcurrencyPermit>,
        now: impl FnOnce() -> chrono::DateTime<chrono::Utc>,
    ) -> VerifiedKey {
        if let Some(usage) = &self.inner.usage {
            usage.record(resolved.key_id, now());
        }
        VerifiedKey { resolved, rate_limit, credits_remaining, _permit: permit }
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

    /// What moka says about the candidates; what it knows goes to the hit cache too, unless an
    /// invalidation began after `epoch` was read.
    async fn cached(&self, candidates: &[KeyDigest], epoch: u64) -> Lookup {
        let mut absent = false;
        for digest in candidates {
            let entry = self.inner.cache.get(digest).await;
            if let (Some(hot), Some(entry)) = (&self.inner.hot, &entry) {
                hot.insert(*digest, entry.clone(), epoch);
            }
            match entry {
                Some(CacheEntry::Key(r)) => return Lookup::Hit(r),
                Some(CacheEntry::NoKey(_)) => {}
                None => absent = true,
            }
        }
        if absent { Lookup::Miss } else { Lookup::KnownUnknown }
    }

    /// [`Verifier::resolve`], then the cache's size, which only a miss (or an invalidation)
    /// changes; the store was read anyway, so bringing moka's count up to date costs little.
    async fn resolve_counted(
        &self,
        candidates: &[KeyDigest],
        key: &PreparedKey,
    ) -> Result<Arc<ResolvedKey>, Error> {
        let resolved = self.resolve(candidates, key).await;
        self.inner.cache.run_pending_tasks().await;
        ::metrics::gauge!(metrics::CACHE_ENTRIES).set(self.inner.cache.entry_count() as f64);
        resolved
    }

    /// Reads the key from the source, for the candidates the cache does not know; `key` (the
    /// plaintext) goes only to a remote source, which hashes it itself.
    async fn resolve(&self, candidates: &[KeyDigest], key: &PreparedKey) -> Result<Arc<ResolvedKey>, Error> {
        let inner = &*self.inner;
        let mut store_error = None;
        for &digest in candidates {
            if let Some(entry) = inner.cache.get(&digest).await {
                match entry {
                    CacheEntry::Key(r) => return Ok(r),
                    CacheEntry::NoKey(_) => continue,
                }
            }
            let loaded = loop {
                let epoch = inner.epoch.load(Ordering::Acquire);
                let hot_epoch = inner.hot.as_ref().map_or(0, hot::HotCache::epoch);
                let loaded = inner.cache.try_get_with(digest, self.load(digest, key)).await;
                if inner.epoch.load(Ordering::Acquire) == epoch {
                    if let (Some(hot), Ok(entry)) = (&inner.hot, &loaded) {
                        hot.insert(digest, entry.clone(), hot_epoch);
                    }
                    break loaded;
                }
                // A change was announced while the key was being read: what was read may predate
                // it, so drop it and read again.
                inner.cache.invalidate(&digest).await;
            };
            match loaded {
                Ok(CacheEntry::Key(r)) => return Ok(r),
                Ok(CacheEntry::NoKey(_)) => continue,
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

    async fn load(&self, digest: KeyDigest, key: &PreparedKey) -> Result<CacheEntry, StoreError> {
        let inner = &*self.inner;
        let record = match (&inner.source, &key.plaintext) {
            (Source::Store(store), _) => self.load_stored(store.as_ref(), &digest).await?,
            (Source::Remote(resolver), Some(plaintext)) => resolver.resolve(plaintext).await?,
            (Source::Remote(_), None) => unreachable!("prepared keys keep the plaintext in remote mode"),
        };
        let loaded = inner.hot.as_ref().map_or(0, hot::HotCache::now);
        let Some(record) = record else { return Ok(CacheEntry::NoKey(loaded)) };
        let resolved = ResolvedKey::new(record, loaded);
        if let Some(local) = inner.limiter.as_local() {
            // Held from the load, so that the hit cache can keep a hint to the key's limiters.
            local.hold(LimitSubject::Key(resolved.key_id), &resolved.key_policy, &resolved.held[0]);
        }
        let resolved = Arc::new(resolved);
        if let Some(index) = &inner.index {
            index.insert(resolved.key.hash.digest, digest);
        }
        if let Some(stale) = &inner.stale {
            stale.insert(digest, resolved.clone()).await;
        }
        Ok(CacheEntry::Key(resolved))
    }

    /// The key stored under `digest`, with its workspace and plan: one joined read.
    async fn load_stored(
        &self,
        store: &dyn crate::store::KeyStore,
        digest: &KeyDigest,
    ) -> Result<Option<KeyRecord>, StoreError> {
        store.find_key_record_by_digest(digest).await
    }
}

/// Whether this request spends credits of this key, which only the store (or resolver) can do.
fn needs_credits(resolved: &ResolvedKey, req: &Requirements) -> bool {
    req.cost > 0 && resolved.gate.uses_credits
}

/// Counts the decision of each subject the limiter looked at: the one whose window ran out is
/// `limited`, the others `allowed`.
fn record_rate_limit(status: &RateLimitStatus) {
    for (subject, [allowed, limited]) in metrics::rate_limit_decision_keys() {
        let mut windows = status.windows.iter().filter(|w| w.subject_kind == subject).peekable();
        if windows.peek().is_none() {
            continue;
        }
        let decision = if !status.allowed() && windows.any(|w| w.remaining == 0) { limited } else { allowed };
        metrics::register!(register_counter, decision).increment(1);
    }
}
