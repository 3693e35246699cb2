//! Time, injectable so that expiry, grace periods and retention can be tested.

use std::fmt;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now, truncated to milliseconds (the precision stores keep).
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        truncate_ms(Utc::now())
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(truncate_ms(start)))
    }

    /// A clock standing at the current system time.
    pub fn starting_now() -> Self {
        Self::new(Utc::now())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Nanoseconds on the process's monotonic clock since its first reading: quanta's TSC-based
/// clock, cheaper to read than `Instant::now`. What the rate limiter and the verifier's hit
/// cache measure time with, so that one reading per request serves both.
pub fn monotonic_nanos() -> u64 {
    static ORIGIN: OnceLock<quanta::Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(quanta::Instant::now);
    u64::try_from(quanta::Instant::now().duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
}

/// Drops sub-millisecond precision.
pub fn truncate_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(t)
}
