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

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::error::{Error, ErrorCode};
use crate::format::{KeyFormat, KeyParseError};
use crate::hash::{KeyDigest, KeyHash, KeyHasher};
use crate::model::{ApiKey, KeyId, KeyStatus, Plan, PlanId, RateLimitPolicy, Workspace, WorkspaceId};
use crate::ratelimit::{LimitSubject, LocalRateLimiter, RateLimitStatus, RateLimiter};
use crate::scope::{Scope, ScopeSet};
use crate::secret::ApiKeySecret;
use crate::service::{KeyChangeListener, KeyService};
use crate::store::{CreditOutcome, KeyStore, StoreError};
use crate::usage::UsageRecorder;

/// Query parameters that are refused because they look like a key sent in the URL.
pub const KEY_QUERY_PARAMS: &[&str] =
    &["api_key", "apikey", "api-key", "key", "access_token", "token", "x-api-key"];

/// What the verifier does when the store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorePolicy {
    /// Refuse with 503 `STORE_UNAVAILABLE` whatever is not in the live cache (default).
    #[default]
    FailClosed,
    /// Serve entries loaded at most this long ago, even past the cache TTL.
    ServeStale(Duration),
}

/// Settings shared by the framework integrations.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Header holding `Bearer <key>` (lowercase), `authorization` by default.
    pub bearer_header: String,
    /// Header holding the bare key (lowercase), `x-api-key` by default.
    pub api_key_header: String,
    /// The key format, to parse keys and to spot them in query strings.
    pub format: KeyFormat,
}

/// The credentials a request presents, as raw header values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    /// The value of the bearer header.
    pub authorization: Option<&'a [u8]>,
    /// The value of the API-key header.
    pub api_key: Option<&'a [u8]>,
    /// The raw query string.
    pub query: Option<&'a str>,
}

impl<'a> Presented<'a> {
    /// Picks the key out of the request. Refuses keys in the URL with `API_KEY_IN_URL` (400) and
    /// requests without a key with `MISSING_API_KEY` (401).
    pub fn key(&self, config: &VerifierConfig) -> Result<&'a str, Error> {
        if let Some(q) = self.query
            && query_has_key(q, config.format.prefix())
        {
            return Err(Error::new(
                ErrorCode::ApiKeyInUrl,
                "API keys must not be sent in the URL; use the Authorization or X-API-Key header",
            ));
        }
        let api_key = match self.api_key {
            Some(v) => {
                Some(std::str::from_utf8(v).map_err(|_| invalid(None))?.trim()).filter(|v| !v.is_empty())
            }
            None => None,
        };
        let bearer = match self.authorization {
            Some(v) => {
                let v = std::str::from_utf8(v).map_err(|_| invalid(None))?.trim();
                let token = v
                    .split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, t)| t.trim())
                    .filter(|t| !t.is_empty());
                match (token, api_key) {
                    (Some(t), _) => Some(t),
                    // `Authorization` may carry other credentials (e.g. for a proxy) beside X-API-Key.
                    (None, Some(_)) => None,
                    (None, None) => {
                        return Err(Error::new(
                            ErrorCode::MissingApiKey,
                            "the Authorization header must be `Bearer <key>`",
                        ));
                    }
                }
            }
            None => None,
        };
        match (api_key, bearer) {
            // Which of two different keys to trust is the caller's mistake, not ours to guess.
            (Some(a), Some(b)) if a != b => {
                return Err(Error::new(
                    ErrorCode::ConflictingApiKeys,
                    "the request sent two different API keys (X-API-Key and Authorization: Bearer); send one",
                ));
            }
            (Some(k), _) | (None, Some(k)) => return Ok(k),
            (None, None) => {}
        }
        Err(Error::new(
            ErrorCode::MissingApiKey,
            "no API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
        ))
    }
}

fn query_has_key(query: &str, prefix: &str) -> bool {
    query.split('&').any(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        KEY_QUERY_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p))
            || value
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with("_live_") || rest.starts_with("_test_"))
    })
}

fn invalid(reason: Option<KeyParseError>) -> Error {
    let e = Error::new(ErrorCode::InvalidApiKey, "invalid API key");
    match reason {
        Some(r) => e.with_detail("reason", r.to_string()),
        None => e,
    }
}

/// What a route needs from a key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    /// Every one of these scopes must be allowed.
    pub scopes: Vec<Scope>,
    /// The resource the request touches, checked against the key's restrictions.
    pub resource: Option<String>,
    /// Credits the request costs (only for keys that use credits); 0 costs nothing.
    pub cost: u32,
}

impl Requirements {
    /// Requires these scopes.
    pub fn scopes(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self { scopes: scopes.into_iter().collect(), ..Self::default() }
    }
}

/// A key as the verifier caches it, with its workspace and plan.
#[derive(Debug)]
pub struct ResolvedKey {
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
    fn key_policy(&self) -> &RateLimitPolicy {
        self.key.rate_limit.as_ref().unwrap_or(&self.plan.key_rate_limit)
    }
}

enum Cached {
    Found(Arc<ResolvedKey>),
    /// Every candidate digest is cached as unknown.
    Unknown,
    Absent,
}

#[derive(Clone)]
enum Entry {
    Found(Arc<ResolvedKey>),
    Missing,
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

/// Counts a key's requests in flight; the slot is given back on drop.
pub struct ConcurrencyPermit {
    key: KeyId,
    table: Arc<Mutex<HashMap<KeyId, u32>>>,
}

impl fmt::Debug for ConcurrencyPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyPermit").field("key", &self.key).finish()
    }
}

impl Drop for ConcurrencyPermit {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = t.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.key);
            }
        }
    }
}

struct Inner {
    store: Arc<dyn KeyStore>,
    config: VerifierConfig,
    hasher: KeyHasher,
    clock: Arc<dyn Clock>,
    cache: moka::future::Cache<KeyDigest, Entry>,
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

/// Builds a [`Verifier`].
#[derive(Debug)]
pub struct VerifierBuilder {
    service: KeyService,
    ttl: Duration,
    negative_ttl: Duration,
    capacity: u64,
    policy: StorePolicy,
    limiter: Option<Arc<dyn RateLimiter>>,
    usage: Option<UsageRecorder>,
    bearer_header: String,
    api_key_header: String,
}

struct Ttl {
    positive: Duration,
    negative: Duration,
}

impl moka::Expiry<KeyDigest, Entry> for Ttl {
    fn expire_after_create(&self, _: &KeyDigest, value: &Entry, _: std::time::Instant) -> Option<Duration> {
        Some(match value {
            Entry::Found(_) => self.positive,
            Entry::Missing => self.negative,
        })
    }
}

impl VerifierBuilder {
    /// How long a found key is cached (60 s by default); bounds staleness when the change feed
    /// is down.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
    /// How long an unknown key is remembered as unknown (5 s by default).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }
    /// Most keys cached at once (100 000 by default).
    pub fn cache_capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }
    /// What to do when the store is unreachable.
    pub fn store_policy(mut self, policy: StorePolicy) -> Self {
        self.policy = policy;
        self
    }
    /// Uses another rate limiter (e.g. Redis); in-process governor limits by default.
    pub fn rate_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }
    /// Records usage through this write-behind recorder.
    pub fn usage(mut self, recorder: UsageRecorder) -> Self {
        self.usage = Some(recorder);
        self
    }
    /// Header names for `Bearer` and bare keys (matched case-insensitively).
    pub fn headers(mut self, bearer: &str, api_key: &str) -> Self {
        self.bearer_header = bearer.to_ascii_lowercase();
        self.api_key_header = api_key.to_ascii_lowercase();
        self
    }

    /// Builds the verifier and subscribes it to the service's changes, so that a change made
    /// through the service is seen by the very next request.
    pub fn build(self) -> Verifier {
        let cache = moka::future::Cache::builder()
            .max_capacity(self.capacity)
            .expire_after(Ttl { positive: self.ttl, negative: self.negative_ttl })
            .build();
        let stale = match self.policy {
            StorePolicy::FailClosed => None,
            StorePolicy::ServeStale(max) => {
                Some(moka::future::Cache::builder().max_capacity(self.capacity).time_to_live(max).build())
            }
        };
        let workspaces =
            moka::future::Cache::builder().max_capacity(self.capacity).time_to_live(self.ttl).build();
        let verifier = Verifier {
            inner: Arc::new(Inner {
                store: self.service.store().clone(),
                config: VerifierConfig {
                    bearer_header: self.bearer_header,
                    api_key_header: self.api_key_header,
                    format: self.service.format().clone(),
                },
                hasher: self.service.hasher().clone(),
                clock: self.service.clock().clone(),
                cache,
                stale,
                workspaces,
                limiter: self.limiter.unwrap_or_else(|| Arc::new(LocalRateLimiter::default())),
                in_flight: Arc::default(),
                usage: self.usage,
                epoch: AtomicU64::new(0),
            }),
        };
        self.service.subscribe(Arc::new(Invalidator(Arc::downgrade(&verifier.inner))));
        verifier
    }
}

#[derive(Debug)]
struct Invalidator(std::sync::Weak<Inner>);

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier")
    }
}

#[async_trait::async_trait]
impl KeyChangeListener for Invalidator {
    async fn key_changed(&self, key: &ApiKey) {
        if let Some(inner) = self.0.upgrade() {
            inner.invalidate_digest(&key.hash.digest).await;
        }
    }
    async fn workspace_changed(&self, _: WorkspaceId) {
        if let Some(inner) = self.0.upgrade() {
            inner.invalidate_all();
        }
    }
}

impl Inner {
    async fn invalidate_digest(&self, digest: &KeyDigest) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate(digest).await;
        if let Some(stale) = &self.stale {
            stale.invalidate(digest).await;
        }
    }

    fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
        self.workspaces.invalidate_all();
        if let Some(stale) = &self.stale {
            stale.invalidate_all();
        }
    }
}

impl Verifier {
    /// Starts building a verifier over the service's store, format, hasher and clock.
    pub fn builder(service: &KeyService) -> VerifierBuilder {
        VerifierBuilder {
            service: service.clone(),
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            capacity: 100_000,
            policy: StorePolicy::FailClosed,
            limiter: None,
            usage: None,
            bearer_header: "authorization".into(),
            api_key_header: "x-api-key".into(),
        }
    }

    /// Header names and key format.
    pub fn config(&self) -> &VerifierConfig {
        &self.inner.config
    }

    /// Forgets a cached key, e.g. when another node announced a change.
    pub async fn invalidate(&self, digest: &KeyDigest) {
        self.inner.invalidate_digest(digest).await;
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
    pub async fn verify(&self, key: &str, req: &Requirements) -> Result<VerifiedKey, Error> {
        let inner = &*self.inner;
        self.check_format(key)?;
        let secret = ApiKeySecret::from(key);
        let candidates = inner.hasher.candidates(&secret);
        drop(secret);
        let resolved = match self.cached(&candidates).await {
            Cached::Found(r) => r,
            Cached::Unknown => return Err(invalid(None)),
            // The store path is rare and large; boxing it keeps this future small for the hits.
            Cached::Absent => Box::pin(self.resolve(&candidates)).await?,
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
        if req.cost > 0 && resolved.key.credits.is_some() {
            // During a rotation's grace period the old key spends its successor's credits.
            let account = resolved.key.rotated_to.unwrap_or(resolved.key.id);
            match inner.store.consume_credits(account, i64::from(req.cost)).await {
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
        let mut t = self.inner.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let n = t.entry(key).or_insert(0);
        if *n >= max {
            return Err(Error::new(
                ErrorCode::ConcurrencyLimited,
                "too many requests in flight for this key",
            )
            .with_detail("limit", max)
            .with_retry_after(Duration::from_secs(1)));
        }
        *n += 1;
        Ok(ConcurrencyPermit { key, table: self.inner.in_flight.clone() })
    }

    /// Checks a key's format and checksum without any I/O: the first step of
    /// [`Verifier::verify`], exposed so integrations can refuse garbage before allocating.
    pub fn check_format(&self, key: &str) -> Result<(), Error> {
        self.inner.config.format.parse(key).map(drop).map_err(|e| invalid(Some(e)))
    }

    async fn cached(&self, candidates: &[KeyHash]) -> Cached {
        let mut absent = false;
        for hash in candidates {
            match self.inner.cache.get(&hash.digest).await {
                Some(Entry::Found(r)) => return Cached::Found(r),
                Some(Entry::Missing) => {}
                None => absent = true,
            }
        }
        if absent { Cached::Absent } else { Cached::Unknown }
    }

    async fn resolve(&self, candidates: &[KeyHash]) -> Result<Arc<ResolvedKey>, Error> {
        let inner = &*self.inner;
        let mut store_error = None;
        for hash in candidates.iter() {
            let digest = hash.digest;
            if let Some(entry) = inner.cache.get(&digest).await {
                match entry {
                    Entry::Found(r) => return Ok(r),
                    Entry::Missing => continue,
                }
            }
            let loaded = loop {
                let epoch = inner.epoch.load(Ordering::Acquire);
                let loaded = inner.cache.try_get_with(digest, self.load(digest)).await;
                if inner.epoch.load(Ordering::Acquire) == epoch {
                    break loaded;
                }
                // A change was announced while the key was being read: what was read may predate
                // it, so drop it and read again.
                inner.cache.invalidate(&digest).await;
            };
            match loaded {
                Ok(Entry::Found(r)) => return Ok(r),
                Ok(Entry::Missing) => continue,
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

    async fn load(&self, digest: KeyDigest) -> Result<Entry, StoreError> {
        let inner = &*self.inner;
        let Some(key) = inner.store.find_key_by_digest(&digest).await? else {
            return Ok(Entry::Missing);
        };
        let ws_plan = match inner.workspaces.get(&key.workspace_id).await {
            Some(wp) => wp,
            None => {
                let ws = inner
                    .store
                    .get_workspace(key.workspace_id)
                    .await?
                    .ok_or_else(|| StoreError::Other(format!("key {} has no workspace", key.id)))?;
                let plan = inner
                    .store
                    .get_plan(&ws.plan_id)
                    .await?
                    .ok_or_else(|| StoreError::Other(format!("workspace {} has no plan", ws.id)))?;
                let wp = Arc::new((ws, plan));
                inner.workspaces.insert(key.workspace_id, wp.clone()).await;
                wp
            }
        };
        let workspace_policy = ws_plan.0.effective_rate_limit();
        let resolved = Arc::new(ResolvedKey {
            key,
            workspace: ws_plan.0.clone(),
            plan: ws_plan.1.clone(),
            workspace_policy,
        });
        if let Some(stale) = &inner.stale {
            stale.insert(digest, resolved.clone()).await;
        }
        Ok(Entry::Found(resolved))
    }
}

/// Status, expiry, plan, scopes and resources: every check that needs no I/O.
fn check_key(r: &ResolvedKey, req: &Requirements, now: DateTime<Utc>) -> Result<(), Error> {
    let key = &r.key;
    if key.deleted_at.is_some() {
        return Err(invalid(None));
    }
    match key.status {
        KeyStatus::Revoked => return Err(Error::new(ErrorCode::KeyRevoked, "the API key was revoked")),
        KeyStatus::Inactive => return Err(Error::new(ErrorCode::KeyInactive, "the API key is deactivated")),
        KeyStatus::Active => {}
    }
    if key.grace_ends_at.is_some_and(|t| t <= now) {
        return Err(Error::new(ErrorCode::KeyRevoked, "the API key was rotated; use its successor"));
    }
    if key.expires_at.is_some_and(|t| t <= now) {
        return Err(Error::new(ErrorCode::KeyExpired, "the API key has expired"));
    }
    if !r.plan.api_access {
        return Err(Error::new(
            ErrorCode::FeatureNotInPlan,
            "the workspace's plan does not include API access",
        ));
    }
    let missing: Vec<String> =
        req.scopes.iter().filter(|s| !key.scopes.allows(s)).map(ToString::to_string).collect();
    if !missing.is_empty() {
        return Err(Error::new(
            ErrorCode::InsufficientScope,
            format!("the API key lacks scope `{}`", missing[0]),
        )
        .with_detail("missing", missing));
    }
    if let Some(resource) = &req.resource
        && !key.resources.is_empty()
        && !key.resources.iter().any(|r| r == resource)
    {
        return Err(Error::new(
            ErrorCode::ResourceNotAllowed,
            "the API key is not allowed to use this resource",
        )
        .with_detail("resource", resource.clone()));
    }
    Ok(())
}
