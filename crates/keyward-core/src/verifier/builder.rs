//! Building a [`Verifier`]: cache sizes and lifetimes, store policy, limiter, usage, headers.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use std::time::Duration;

use super::presented::VerifierConfig;
use super::source::Source;
use super::{CacheEntry, Inner, KeyResolver, StorePolicy, Verifier};
use crate::clock::{Clock, SystemClock};
use crate::format::{KeyFormat, LegacyFormat};
use crate::hash::{KeyDigest, KeyHasher};
use crate::http::RateLimitHeaders;
use crate::ratelimit::{LocalRateLimiter, RateLimiter};
use crate::service::KeyService;
use crate::store::KeyStore;
use crate::usage::UsageRecorder;

/// Builds a [`Verifier`].
#[derive(Debug)]
pub struct VerifierBuilder {
    source: Source,
    format: KeyFormat,
    legacy: Option<LegacyFormat>,
    hasher: KeyHasher,
    clock: Arc<dyn Clock>,
    /// Subscribed to at build, so changes through it reach the cache at once.
    service: Option<KeyService>,
    ttl: Duration,
    negative_ttl: Duration,
    capacity: u64,
    policy: StorePolicy,
    limiter: Option<Arc<dyn RateLimiter>>,
    usage: Option<UsageRecorder>,
    bearer_header: String,
    api_key_header: String,
    rate_limit_headers: RateLimitHeaders,
}

struct Ttl {
    positive: Duration,
    negative: Duration,
}

impl moka::Expiry<KeyDigest, CacheEntry> for Ttl {
    fn expire_after_create(
        &self,
        _: &KeyDigest,
        value: &CacheEntry,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(match value {
            CacheEntry::Key(_) => self.positive,
            CacheEntry::NoKey(_) => self.negative,
        })
    }
}

impl VerifierBuilder {
    /// Parses keys of this format (`kw` by default). Only for [`Verifier::from_store`]: a
    /// verifier built from a service uses the service's.
    pub fn format(mut self, format: KeyFormat) -> Self {
        self.format = format;
        self
    }
    /// Also accepts keys of `legacy` (imported from another system): their shape is checked
    /// instead of keyward's format and checksum, then they are looked up by hash like others.
    pub fn legacy_format(mut self, legacy: LegacyFormat) -> Self {
        self.legacy = Some(legacy);
        self
    }
    /// Hashes keys this way (plain SHA-256 by default; HMAC with the deployment's pepper).
    pub fn hasher(mut self, hasher: KeyHasher) -> Self {
        self.hasher = hasher;
        self
    }
    /// Reads time from this clock (the system's by default).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
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
    /// Uses another rate limiter (e.g. Redis); in-process GCRA limits by default.
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

    /// Which rate-limit headers the integrations put on answers: all five by default.
    /// `Retry-After` on a refusal is sent whatever this says.
    pub fn rate_limit_headers(mut self, sent: RateLimitHeaders) -> Self {
        self.rate_limit_headers = sent;
        self
    }

    /// Builds the verifier; built from a service, subscribes it to the service's changes, so
    /// that a change made through the service is seen by the very next request.
    pub fn build(self) -> Verifier {
        let mut cache = moka::future::Cache::builder()
            .max_capacity(self.capacity)
            .expire_after(Ttl { positive: self.ttl, negative: self.negative_ttl });
        let index = match self.source {
            Source::Store(_) => None,
            Source::Remote(_) => {
                let index = Arc::new(dashmap::DashMap::<KeyDigest, KeyDigest>::new());
                let kept = index.clone();
                // An entry leaves the index with the cache entry it points to; a replaced entry
                // was replaced under the same digest, which the index still points to.
                cache = cache.eviction_listener(move |local: Arc<KeyDigest>, entry, cause| {
                    if let (CacheEntry::Key(r), false) =
                        (entry, cause == moka::notification::RemovalCause::Replaced)
                    {
                        kept.remove_if(&r.key.hash.digest, |_, l| l == &*local);
                    }
                });
                Some(index)
            }
        };
        let cache = cache.build();
        let hot = match self.source {
            Source::Store(_) => Some(super::hot::HotCache::new(self.capacity, self.ttl, self.negative_ttl)),
            Source::Remote(_) => None,
        };
        let stale = match self.policy {
            StorePolicy::FailClosed => None,
            StorePolicy::ServeStale(max) => {
                Some(moka::future::Cache::builder().max_capacity(self.capacity).time_to_live(max).build())
            }
        };
        let verifier = Verifier {
            inner: Arc::new(Inner {
                source: self.source,
                index,
                config: VerifierConfig {
                    bearer_header: self.bearer_header,
                    api_key_header: self.api_key_header,
                    format: self.format,
                    legacy: self.legacy,
                    rate_limit_headers: self.rate_limit_headers,
                },
                hasher: self.hasher,
                clock: self.clock,
                cache,
                hot,
                stale,
                limiter: self.limiter.unwrap_or_else(|| Arc::new(LocalRateLimiter::default())),
                in_flight: Arc::default(),
                usage: self.usage,
                epoch: AtomicU64::new(0),
            }),
        };
        if let Some(service) = &self.service {
            service.subscribe(verifier.listener());
        }
        verifier
    }
}

impl Verifier {
    /// Starts building a verifier over the service's store, format, hasher and clock; changes
    /// made through the service reach its cache at once.
    pub fn builder(service: &KeyService) -> VerifierBuilder {
        VerifierBuilder {
            format: service.format().clone(),
            legacy: service.legacy_format().cloned(),
            hasher: service.hasher().clone(),
            clock: service.clock().clone(),
            service: Some(service.clone()),
            ..Self::from_store(service.store().clone())
        }
    }

    /// Starts building a verifier that holds no store: cache misses ask `resolver` (keyward's
    /// remote mode asks a `keyward serve`), which also keeps the credits. Keys are cached under
    /// their SHA-256 digest whatever the deployment's hashing, and changes are applied with
    /// [`Verifier::invalidate`] by the digest the resolver's records carry.
    pub fn remote(resolver: Arc<dyn KeyResolver>) -> VerifierBuilder {
        Self::with_source(Source::Remote(resolver))
    }

    /// Starts building a verifier over a store alone, for a service that only checks keys and
    /// never changes them: default key format, SHA-256 hashing and the system clock unless set.
    /// Changes made elsewhere reach its cache through the store's change propagation
    /// (`keyward_store::ChangeLogPoller`, `ChangeFeed`) or the cache TTL.
    pub fn from_store(store: Arc<dyn KeyStore>) -> VerifierBuilder {
        Self::with_source(Source::Store(store))
    }

    fn with_source(source: Source) -> VerifierBuilder {
        VerifierBuilder {
            source,
            format: KeyFormat::default(),
            legacy: None,
            hasher: KeyHasher::sha256(),
            clock: Arc::new(SystemClock),
            service: None,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            capacity: 100_000,
            policy: StorePolicy::FailClosed,
            limiter: None,
            usage: None,
            bearer_header: "authorization".into(),
            api_key_header: "x-api-key".into(),
            rate_limit_headers: RateLimitHeaders::All,
        }
    }
}
