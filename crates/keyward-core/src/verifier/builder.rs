//! Building a [`Verifier`]: cache sizes and lifetimes, store policy, limiter, usage, headers.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use std::time::Duration;

use super::presented::VerifierConfig;
use super::{CacheEntry, Inner, Invalidator, StorePolicy, Verifier};
use crate::hash::KeyDigest;
use crate::ratelimit::{LocalRateLimiter, RateLimiter};
use crate::service::KeyService;
use crate::usage::UsageRecorder;

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

impl moka::Expiry<KeyDigest, CacheEntry> for Ttl {
    fn expire_after_create(
        &self,
        _: &KeyDigest,
        value: &CacheEntry,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(match value {
            CacheEntry::Key(_) => self.positive,
            CacheEntry::NoKey => self.negative,
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
}
