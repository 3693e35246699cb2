//! A rate limiter shared by every node: GCRA for all windows of a policy in one Lua script, with
//! Redis `TIME` as the clock so nodes need no clock agreement. When Redis cannot be reached the
//! limiter falls back to in-process GCRA limits (logging a warning once per outage) and
//! returns to Redis by itself once it answers again.
//!
//! ```no_run
//! # async fn demo(service: keyward_core::KeyService) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use keyward_core::Verifier;
//! use keyward_redis::RedisRateLimiter;
//!
//! let limiter = RedisRateLimiter::new("redis://127.0.0.1:6379")?;
//! let verifier = Verifier::builder(&service).rate_limiter(Arc::new(limiter)).build();
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use keyward_core::{
    LimitSubject, LocalRateLimiter, RateLimitError, RateLimitPolicy, RateLimitStatus, RateLimitWindow,
    RateLimiter, WindowState,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

const SCRIPT: &str = include_str!("gcra.lua");

/// Settings of a [`RedisRateLimiter`].
#[derive(Debug, Clone)]
pub struct RedisLimiterConfig {
    /// Prefix of every key the limiter writes.
    pub key_prefix: String,
    /// Longest wait for Redis on one request before falling back.
    pub timeout: Duration,
    /// After a failure, how long to use local limits before trying Redis again.
    pub retry_after_failure: Duration,
}

impl Default for RedisLimiterConfig {
    fn default() -> Self {
        Self {
            key_prefix: "keyward:rl".into(),
            timeout: Duration::from_millis(250),
            retry_after_failure: Duration::from_secs(1),
        }
    }
}

/// The distributed limiter. See the [crate docs](crate).
pub struct RedisRateLimiter {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    script: redis::Script,
    local: LocalRateLimiter,
    config: RedisLimiterConfig,
    /// When set, Redis failed and is not tried again before this instant.
    outage: Mutex<Option<Instant>>,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("config", &self.config)
            .field("in_outage", &self.in_outage())
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter on the Redis at `url` with default settings. Connects lazily.
    pub fn new(url: &str) -> Result<Self, RateLimitError> {
        Self::with_config(url, RedisLimiterConfig::default())
    }

    /// A limiter with explicit settings.
    pub fn with_config(url: &str, config: RedisLimiterConfig) -> Result<Self, RateLimitError> {
        let client = redis::Client::open(url).map_err(|e| RateLimitError(format!("bad Redis URL: {e}")))?;
        Ok(Self {
            client,
            connection: OnceCell::new(),
            script: redis::Script::new(SCRIPT),
            local: LocalRateLimiter::default(),
            config,
            outage: Mutex::new(None),
        })
    }

    /// Whether the limiter is currently using local limits because Redis failed.
    pub fn in_outage(&self) -> bool {
        self.outage.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    async fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.config.timeout))
            .set_response_timeout(Some(self.config.timeout))
            .set_number_of_retries(1);
        self.connection
            .get_or_try_init(|| self.client.get_connection_manager_with_config(config))
            .await
            .cloned()
    }

    /// Every window of every subject in one script call: decided and spent atomically.
    async fn check_redis(
        &self,
        checks: &[(LimitSubject, &RateLimitPolicy)],
    ) -> Result<RateLimitStatus, String> {
        let mut con = self.connection().await.map_err(|e| e.to_string())?;
        let mut invocation = self.script.prepare_invoke();
        let mut windows = Vec::new();
        for (subject, policy) in checks {
            for w in &policy.windows {
                let period_us = u64::from(w.period_secs.max(1)) * 1_000_000;
                invocation
                    .key(format!("{}:{}:{}:{}", self.config.key_prefix, subject, w.limit, w.period_secs))
                    .arg(emission_interval_us(w))
                    .arg(period_us);
                windows.push((subject.kind(), *w));
            }
        }
        let reply: Vec<i64> = tokio::time::timeout(self.config.timeout, invocation.invoke_async(&mut con))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        decode(&windows, &reply)
    }
}

fn decode(windows: &[(&'static str, RateLimitWindow)], reply: &[i64]) -> Result<RateLimitStatus, String> {
    if reply.len() != 2 + 2 * windows.len() {
        return Err(format!("unexpected script reply of {} values", reply.len()));
    }
    let micros = |v: i64| Duration::from_micros(v.max(0) as u64);
    let allowed = reply[0] == 1;
    let states = windows
        .iter()
        .zip(reply[2..].chunks(2))
        .map(|((kind, w), pair)| WindowState {
            subject_kind: kind,
            window: *w,
            remaining: u32::try_from(pair[0].max(0)).unwrap_or(u32::MAX).min(w.limit),
            reset_after: micros(pair[1]),
        })
        .collect();
    Ok(RateLimitStatus { windows: states, retry_after: (!allowed).then(|| micros(reply[1])) })
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(
        &self,
        subject: LimitSubject,
        policy: &RateLimitPolicy,
    ) -> Result<RateLimitStatus, RateLimitError> {
        self.check_all(&[(subject, policy)]).await
    }

    async fn check_all(
        &self,
        checks: &[(LimitSubject, &RateLimitPolicy)],
    ) -> Result<RateLimitStatus, RateLimitError> {
        if checks.iter().all(|(_, p)| p.windows.is_empty()) {
            return Ok(RateLimitStatus::default());
        }
        let skip = {
            let outage = self.outage.lock().unwrap_or_else(|e| e.into_inner());
            outage.is_some_and(|retry_at| Instant::now() < retry_at)
        };
        if !skip {
            match self.check_redis(checks).await {
                Ok(status) => {
                    let mut outage = self.outage.lock().unwrap_or_else(|e| e.into_inner());
                    if outage.take().is_some() {
                        tracing::warn!("Redis is reachable again; shared rate limits resume");
                    }
                    return Ok(status);
                }
                Err(e) => {
                    let mut outage = self.outage.lock().unwrap_or_else(|e| e.into_inner());
                    if outage.is_none() {
                        tracing::warn!(error = %e, "Redis unreachable; falling back to local rate limits on this node");
                    }
                    *outage = Some(Instant::now() + self.config.retry_after_failure);
                }
            }
        }
        Ok(self.local.check_all_now(checks))
    }
}

/// A window's emission interval in whole microseconds (the script's unit), never zero: a window
/// allowing more than one request per microsecond would otherwise divide by zero in the script.
fn emission_interval_us(w: &RateLimitWindow) -> u64 {
    (u64::from(w.period_secs.max(1)) * 1_000_000 / u64::from(w.limit.max(1))).max(1)
}
