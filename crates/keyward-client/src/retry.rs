//! Retrying `429 Too Many Requests`: the policy, the `Retry-After` header, and the sleeper.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// How the client retries a request the server answered with `429 Too Many Requests`.
///
/// A `Retry-After` header (delta-seconds or an HTTP date) is honoured as sent; without one the
/// client waits a random time between zero and `base_delay * 2^(retry - 1)`, capped at
/// `max_delay` ("full jitter"). A `Retry-After` longer than `max_delay` is not waited for: the
/// caller gets the `RATE_LIMITED` error at once. When the attempts run out the caller gets the
/// last `429` as the operation's typed error. Requests whose body cannot be replayed (streams)
/// are sent once.
///
/// ```
/// use std::time::Duration;
/// use keyward_client::RetryPolicy;
///
/// let policy = RetryPolicy::default().with_max_attempts(6).with_max_delay(Duration::from_secs(30));
/// assert_eq!(policy.max_attempts(), 6);
/// assert_eq!(RetryPolicy::none().max_attempts(), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts in all, 200 ms base delay, 10 s cap.
    fn default() -> Self {
        Self { max_attempts: 4, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(10) }
    }
}

impl RetryPolicy {
    /// Never retries: every request is sent once.
    pub fn none() -> Self {
        Self::default().with_max_attempts(1)
    }

    /// Attempts in all, the first included (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The backoff before the first retry when the server sends no `Retry-After`.
    pub fn with_base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// The longest wait: the backoff cap, and the longest `Retry-After` the client waits for.
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff before the first retry.
    pub fn base_delay(&self) -> Duration {
        self.base_delay
    }

    /// The longest wait.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The exponential backoff ceiling before retry number `retry` (1 for the first retry):
    /// `base_delay * 2^(retry - 1)`, capped at `max_delay`.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The wait before retry number `retry`, or `None` when the client should not wait that
    /// long and gives the 429 to the caller. `jitter` is a uniform random number in `[0, 1)`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, jitter: f64) -> Option<Duration> {
        match retry_after {
            Some(wait) if wait > self.max_delay => None,
            Some(wait) => Some(wait),
            None => Some(self.backoff_ceiling(retry).mul_f64(jitter.clamp(0.0, 1.0))),
        }
    }
}

/// Parses a `Retry-After` value, delta-seconds (`"2"`) or an HTTP date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`), into a wait from `now`. A date in the past is no wait.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use keyward_client::parse_retry_after;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
/// assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
/// assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(10)));
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The `Retry-After` of a response, if present and well formed.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// The future a [`Sleeper`] returns.
pub type SleepFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Waits between retries. The default is [`TokioSleeper`]; tests inject one that records the
/// requested waits instead of sleeping. Closures `Fn(Duration) -> impl Future<Output = ()>`
/// are sleepers.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// let waits = Arc::new(Mutex::new(Vec::new()));
/// let record = waits.clone();
/// let sleeper = move |d: Duration| {
///     record.lock().unwrap().push(d);
///     std::future::ready(())
/// };
/// let client = keyward_client::KeywardClient::builder("http://127.0.0.1:8080", "kw_live_...")
///     .sleeper(sleeper)
///     .build()?;
/// # Ok::<(), keyward_client::BuildError>(())
/// ```
pub trait Sleeper: Send + Sync + 'static {
    /// A future that resolves after `duration`.
    fn sleep(&self, duration: Duration) -> SleepFuture;
}

impl<F, Fut> Sleeper for F
where
    F: Fn(Duration) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn sleep(&self, duration: Duration) -> SleepFuture {
        Box::pin(self(duration))
    }
}

/// Sleeps on the tokio timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, duration: Duration) -> SleepFuture {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A shared sleeper; `Debug` names no closure.
#[derive(Clone)]
pub(crate) struct SharedSleeper(pub(crate) Arc<dyn Sleeper>);

impl fmt::Debug for SharedSleeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sleeper")
    }
}

/// Sends `request`, retrying 429s as `policy` says.
pub(crate) async fn execute(
    client: &reqwest::Client,
    mut request: reqwest::Request,
    policy: &RetryPolicy,
    sleeper: &dyn Sleeper,
) -> reqwest::Result<reqwest::Response> {
    let mut attempt = 1;
    loop {
        // A copy for the next attempt, made before the request is consumed; `None` for bodies
        // that cannot be replayed, which are therefore sent once.
        let next = if attempt < policy.max_attempts { request.try_clone() } else { None };
        let response = client.execute(request).await?;
        if response.status() != StatusCode::TOO_MANY_REQUESTS {
            return Ok(response);
        }
        let Some(next) = next else { return Ok(response) };
        let Some(wait) = policy.delay(attempt, retry_after(response.headers()), fastrand::f64()) else {
            return Ok(response);
        };
        // Read the small error body so the connection can be reused.
        let _ = response.bytes().await;
        sleeper.sleep(wait).await;
        request = next;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let ceilings: Vec<_> = (1..=8).map(|r| p.backoff_ceiling(r).as_millis()).collect();
        assert_eq!(ceilings, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(p.backoff_ceiling(u32::MAX), Duration::from_secs(10), "no overflow");
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(3, None, 0.0), Some(Duration::ZERO));
        assert_eq!(p.delay(3, None, 0.5), Some(Duration::from_millis(400)));
        assert!(p.delay(3, None, 0.999_999).unwrap() <= Duration::from_millis(800));
        assert_eq!(p.delay(9, None, 2.0), Some(Duration::from_secs(10)), "clamped");
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, Some(Duration::from_secs(2)), 0.1), Some(Duration::from_secs(2)));
        assert_eq!(p.delay(1, Some(Duration::from_secs(10)), 0.1), Some(Duration::from_secs(10)));
        assert_eq!(p.delay(1, Some(Duration::from_secs(11)), 0.1), None);
    }

    #[test]
    fn retry_after_formats() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(5));
        let wait = parse_retry_after(&later, now).unwrap();
        assert!(wait > Duration::from_secs(3) && wait <= Duration::from_secs(5), "{wait:?}");
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(60));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
    }

    #[test]
    fn at_least_one_attempt() {
        assert_eq!(RetryPolicy::default().with_max_attempts(0).max_attempts(), 1);
    }
}
