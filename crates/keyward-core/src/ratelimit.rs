//! Rate limiting: a [`RateLimiter`] decides for every window of a policy at once.
//!
//! [`LocalRateLimiter`] keeps GCRA state in process: one atomic theoretical arrival time per
//! window, updated with a compare-and-swap. Each subject (a key or a workspace) gets its own
//! cells, one per window, in a concurrent map; a cached key holds its own and its workspace's, so
//! a hit needs no lookup. Entries idle for
//! longer than their longest window (when their state would be full again anyway) are swept out,
//! so memory stays bounded by the number of recently active subjects.
//! keyward-redis provides a limiter shared by several nodes behind the same trait.

use std::fmt;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dashmap::DashMap;

use crate::clock::{Clock, monotonic_nanos};
use crate::model::{KeyId, RateLimitPolicy, RateLimitWindow, WorkspaceId};

/// Whose budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitSubject {
    /// One key.
    Key(KeyId),
    /// A whole workspace.
    Workspace(WorkspaceId),
}

impl LimitSubject {
    /// `key` or `workspace`, used in policy names.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Key(_) => "key",
            Self::Workspace(_) => "workspace",
        }
    }
}

impl fmt::Display for LimitSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(id) => write!(f, "key:{id}"),
            Self::Workspace(id) => write!(f, "workspace:{id}"),
        }
    }
}

/// The state of one window after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    /// Whose window.
    pub subject_kind: &'static str,
    /// The window.
    pub window: RateLimitWindow,
    /// Requests still allowed right now.
    pub remaining: u32,
    /// Time until the window is full again.
    pub reset_after: Duration,
}

impl WindowState {
    /// When the window is full again, in seconds since the Unix epoch.
    pub fn reset_epoch_secs(&self) -> u64 {
        let at = SystemTime::now() + self.reset_after;
        at.duration_since(UNIX_EPOCH).map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(0)
    }

    /// A name for the window in `RateLimit-Policy`, e.g. `key-60s`.
    pub fn policy_name(&self) -> String {
        format!("{}-{}s", self.subject_kind, self.window.period_secs)
    }
}

/// A rate-limit decision over every window of one or more policies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimitStatus {
    /// Every window checked.
    pub windows: Vec<WindowState>,
    /// When rejected: how long to wait.
    pub retry_after: Option<Duration>,
}

impl RateLimitStatus {
    /// Whether the request may go ahead.
    pub fn allowed(&self) -> bool {
        self.retry_after.is_none()
    }

    /// The window with the fewest requests left, which the `X-RateLimit-*` headers describe.
    pub fn tightest(&self) -> Option<&WindowState> {
        self.windows.iter().min_by_key(|w| (w.remaining, std::cmp::Reverse(w.reset_after)))
    }

    /// Adds another subject's decision.
    pub fn merge(&mut self, other: RateLimitStatus) {
        self.windows.extend(other.windows);
        self.retry_after = match (self.retry_after, other.retry_after) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Why a limiter could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct RateLimitError(pub String);

/// Decides whether one more request fits every window of `policy` for `subject`.
#[async_trait]
pub trait RateLimiter: Send + Sync + fmt::Debug + 'static {
    /// Spends one request if every window allows it; otherwise spends nothing in the windows
    /// that were not reached and says how long to wait.
    async fn check(
        &self,
        subject: LimitSubject,
        policy: &RateLimitPolicy,
    ) -> Result<RateLimitStatus, RateLimitError>;

    /// Decides for several subjects at once (a key and its workspace): the request must fit
    /// every window of every policy. The default checks them in order and stops at the first
    /// refusal; limiters that can decide all of them in one step (Redis) override it.
    async fn check_all(
        &self,
        checks: &[(LimitSubject, &RateLimitPolicy)],
    ) -> Result<RateLimitStatus, RateLimitError> {
        let mut status = RateLimitStatus::default();
        for (subject, policy) in checks {
            let one = self.check(*subject, policy).await?;
            let refused = !one.allowed();
            status.merge(one);
            if refused {
                break;
            }
        }
        Ok(status)
    }

    /// The in-process limiter behind this one, when it decides alone and at once: lets the
    /// verifier decide for a cached key without a future. `None` by default.
    fn as_local(&self) -> Option<&LocalRateLimiter> {
        None
    }
}

/// The limiter's time source, read as nanoseconds since an origin: the process's monotonic
/// clock by default ([`monotonic_nanos`]), or a shared [`Clock`] (a
/// [`ManualClock`](crate::ManualClock) in tests, so that limiter tests move time instead of
/// sleeping).
#[derive(Clone)]
enum LimiterClock {
    Monotonic,
    Shared(Arc<dyn Clock>),
}

impl LimiterClock {
    fn now(&self) -> u64 {
        match self {
            Self::Monotonic => monotonic_nanos(),
            // Since the Unix epoch; a clock set before it reads as the origin.
            Self::Shared(clock) => (clock.now() - DateTime::<Utc>::UNIX_EPOCH)
                .to_std()
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        }
    }
}

/// One window's GCRA cell: the theoretical arrival time of the next request, in nanoseconds on
/// the limiter's clock (0 while unused), spent with a compare-and-swap.
///
/// A request at `now` fits when `now >= tat - tau`; it moves `tat` to `max(tat, now) + t`. `t`
/// is the window's emission interval (`period / limit`) and `tau = t * (limit - 1)`, so a full
/// window admits `limit` requests at once and one more every `t`.
struct WindowCell {
    window: RateLimitWindow,
    t: u64,
    tau: u64,
    tat: AtomicU64,
}

impl WindowCell {
    fn new(window: RateLimitWindow) -> Self {
        let t = u64::try_from(emission_interval(&window).as_nanos()).unwrap_or(u64::MAX);
        let tau = t.saturating_mul(u64::from(window.limit.max(1) - 1));
        Self { window, t, tau, tat: AtomicU64::new(0) }
    }

    /// Spends one request at `now`: the requests still allowed after it, or when the next one
    /// fits (nanoseconds on the same clock).
    fn check(&self, now: u64) -> Result<u32, u64> {
        let mut prev = self.tat.load(Ordering::Acquire);
        loop {
            let tat = if prev == 0 { now } else { prev };
            let earliest = tat.saturating_sub(self.tau);
            if now < earliest {
                return Err(earliest);
            }
            // Never 0 again, since `t` is at least 1.
            let next = tat.max(now).saturating_add(self.t);
            match self.tat.compare_exchange_weak(prev, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let room = now.saturating_add(self.tau).saturating_add(self.t).saturating_sub(next);
                    let remaining = room.min(self.tau.saturating_add(self.t)) / self.t;
                    return Ok(u32::try_from(remaining).unwrap_or(u32::MAX));
                }
                Err(actual) => prev = actual,
            }
        }
    }
}

struct SubjectLimiters {
    policy: RateLimitPolicy,
    /// The shortest window, kept inline: most policies have one or two windows, and a check
    /// then reads no allocation besides this one.
    first: Option<WindowCell>,
    /// The other windows, longer ones later.
    rest: Box<[WindowCell]>,
    /// The longest window, after which idle state is dropped.
    longest: Duration,
    /// Last use, in nanoseconds since the limiter's origin.
    last_used: AtomicU64,
    /// No longer in the map (swept, or replaced for a new policy): whoever holds it must look the
    /// subject up again.
    retired: AtomicBool,
}

/// A subject's limiters held by whoever checks that subject often (a cached key holds its own
/// and its workspace's), so that a check needs no map lookup. Filled on first use.
#[derive(Default)]
pub(crate) struct HeldLimiters(OnceLock<Arc<SubjectLimiters>>);

impl fmt::Debug for HeldLimiters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeldLimiters")
    }
}

impl HeldLimiters {
    /// What to [touch](LimiterHint::touch) ahead of a check of the held state, if it is held.
    pub(crate) fn hint(&self) -> Option<LimiterHint> {
        self.0.get().cloned().map(LimiterHint)
    }
}

/// A subject's held state, kept beside a cache's entry so that a hit can start reading it from
/// memory at the same time as the entry, instead of after it. Only read, never decided on: a
/// check still goes through the [`HeldLimiters`].
pub(crate) struct LimiterHint(Arc<SubjectLimiters>);

impl LimiterHint {
    /// Reads what a check reads first, so that its cache miss overlaps with others.
    pub(crate) fn touch(&self) {
        let l = &*self.0;
        std::hint::black_box((
            l.retired.load(Ordering::Relaxed),
            l.first.as_ref().map(|c| c.tat.load(Ordering::Relaxed)),
        ));
    }
}

impl SubjectLimiters {
    fn new(policy: &RateLimitPolicy, now: u64) -> Self {
        let mut windows: Vec<RateLimitWindow> = policy.windows.clone();
        // Short windows reject first in practice, so a rejected request seldom spends budget in
        // the longer windows checked after it.
        windows.sort_by_key(|w| w.period_secs);
        let longest =
            windows.iter().map(|w| Duration::from_secs(u64::from(w.period_secs))).max().unwrap_or_default();
        let mut cells = windows.into_iter().map(WindowCell::new);
        let first = cells.next();
        let rest = cells.collect();
        Self {
            policy: policy.clone(),
            first,
            rest,
            longest,
            last_used: AtomicU64::new(now),
            retired: AtomicBool::new(false),
        }
    }
}

impl SubjectLimiters {
    /// Every window's cell, shortest window first.
    fn cells(&self) -> impl Iterator<Item = &WindowCell> {
        self.first.iter().chain(self.rest.iter())
    }
}

/// The GCRA emission interval of a window: `period / limit`, never zero. Validation keeps
/// windows at most [`MAX_RATE_PER_SEC`](crate::model::MAX_RATE_PER_SEC) per second, but policies
/// stored before that bound (or built in code) must not make the limiter panic.
pub fn emission_interval(window: &RateLimitWindow) -> Duration {
    let period = Duration::from_secs(u64::from(window.period_secs.max(1)));
    (period / window.limit.max(1)).max(Duration::from_nanos(1))
}

/// The in-process limiter. See the [module docs](self).
#[derive(Clone)]
pub struct LocalRateLimiter {
    subjects: Arc<DashMap<LimitSubject, Arc<SubjectLimiters>>>,
    max_subjects: usize,
    checks: Arc<AtomicU64>,
    clock: LimiterClock,
}

impl fmt::Debug for LocalRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRateLimiter").field("subjects", &self.subjects.len()).finish()
    }
}

impl Default for LocalRateLimiter {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

/// Sweep idle subjects every this many checks that go through the map (and whenever the map is
/// over capacity).
const SWEEP_EVERY: u64 = 1 << 16;

impl LocalRateLimiter {
    /// A limiter that tracks at most about `max_subjects` subjects at once.
    pub fn new(max_subjects: u64) -> Self {
        Self {
            subjects: Arc::new(DashMap::new()),
            max_subjects: usize::try_from(max_subjects).unwrap_or(usize::MAX),
            checks: Arc::new(AtomicU64::new(0)),
            clock: LimiterClock::Monotonic,
        }
    }

    /// Reads time from `clock` instead of the process's monotonic clock, e.g. a
    /// [`ManualClock`](crate::ManualClock) in tests. State already kept is forgotten.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { subjects: Arc::new(DashMap::new()), clock: LimiterClock::Shared(clock), ..self }
    }

    fn now_nanos(&self) -> u64 {
        self.clock.now()
    }

    /// Drops subjects idle for longer than their longest window: their state is full again, so
    /// forgetting it changes no decision.
    ///
    /// Subjects whose limiters a cached key still holds are kept whatever their age, so that
    /// every holder and the map agree on one state per subject; they go once the key leaves the
    /// cache, which bounds them by the cache's size.
    pub fn sweep(&self) {
        let now = self.now_nanos();
        self.subjects.retain(|_, l| {
            let keep = Arc::strong_count(l) > 1
                || Duration::from_nanos(now.saturating_sub(l.last_used.load(Ordering::Relaxed))) <= l.longest;
            if !keep {
                l.retired.store(true, Ordering::Release);
            }
            keep
        });
    }

    /// Subjects currently tracked (approximate; for tests and metrics).
    pub fn tracked_subjects(&self) -> u64 {
        self.subjects.len() as u64
    }

    /// [`RateLimiter::check_all`] without the future: subjects in order, stopping at the first
    /// refusal (a cell cannot take back what earlier subjects spent).
    pub fn check_all_now(&self, checks: &[(LimitSubject, &RateLimitPolicy)]) -> RateLimitStatus {
        let mut status = RateLimitStatus::default();
        for (subject, policy) in checks {
            let one = self.check_now(*subject, policy);
            let refused = !one.allowed();
            status.merge(one);
            if refused {
                break;
            }
        }
        status
    }

    /// The synchronous decision; [`RateLimiter::check`] wraps it.
    pub fn check_now(&self, subject: LimitSubject, policy: &RateLimitPolicy) -> RateLimitStatus {
        let mut status = RateLimitStatus::default();
        if policy.windows.is_empty() {
            return status;
        }
        self.count_check();
        let now = self.now_nanos();
        let limiters = self.limiters(subject, policy, now);
        status.windows.reserve_exact(policy.windows.len());
        self.decide(subject.kind(), &limiters, now, &mut status);
        status
    }

    /// [`LocalRateLimiter::check_all_now`] for subjects whose limiters the caller holds: the
    /// same decisions, without a map lookup per subject once `held` is filled.
    ///
    /// `now` is [`monotonic_nanos`] read by the caller, used when this limiter runs on that
    /// clock (the default); a limiter given a shared clock reads that instead.
    pub(crate) fn check_held(
        &self,
        checks: &[(LimitSubject, &RateLimitPolicy, &HeldLimiters)],
        now: u64,
    ) -> RateLimitStatus {
        let now = match self.clock {
            LimiterClock::Monotonic => now,
            LimiterClock::Shared(_) => self.now_nanos(),
        };
        // The first push allocates room for four windows, which is enough for most policies;
        // the policies themselves are not read for a held subject.
        let mut status = RateLimitStatus::default();
        for (subject, policy, held) in checks {
            let looked_up;
            let limiters = match held.0.get() {
                // A held subject adds nothing to the map, so it is not counted towards a sweep:
                // a shared counter would be one more contended line per hit.
                Some(l) if !l.retired.load(Ordering::Acquire) => l,
                _ => {
                    if policy.windows.is_empty() {
                        continue;
                    }
                    looked_up = self.fill(*subject, policy, held, now);
                    &looked_up
                }
            };
            if self.decide(subject.kind(), limiters, now, &mut status) {
                break;
            }
        }
        status
    }

    /// Fills `held` for `subject` ahead of its first check, so that the holder can hand out a
    /// [`LimiterHint`] from the start. Does nothing for a subject already held or without limits.
    pub(crate) fn hold(&self, subject: LimitSubject, policy: &RateLimitPolicy, held: &HeldLimiters) {
        if held.0.get().is_none() && !policy.windows.is_empty() {
            self.fill(subject, policy, held, self.now_nanos());
        }
    }

    /// Looks `subject` up (counting the lookup towards a sweep) and holds what it found.
    fn fill(
        &self,
        subject: LimitSubject,
        policy: &RateLimitPolicy,
        held: &HeldLimiters,
        now: u64,
    ) -> Arc<SubjectLimiters> {
        self.count_check();
        let found = self.limiters(subject, policy, now);
        let _ = held.0.set(found.clone());
        found
    }

    /// Counts a check, sweeping every [`SWEEP_EVERY`] of them.
    fn count_check(&self) {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
    }

    /// The subject's limiters from the map, made (or made anew for a changed policy) as needed.
    fn limiters(&self, subject: LimitSubject, policy: &RateLimitPolicy, now: u64) -> Arc<SubjectLimiters> {
        let existing = self.subjects.get(&subject).map(|l| l.value().clone());
        match existing {
            Some(l) if l.policy == *policy => l,
            // New subject, or the policy changed: start fresh limiters for its windows.
            _ => {
                // Counting locks every shard, so it happens only when a subject is added.
                if self.subjects.len() >= self.max_subjects {
                    self.sweep();
                }
                let fresh = Arc::new(SubjectLimiters::new(policy, now));
                if let Some(old) = self.subjects.insert(subject, fresh.clone()) {
                    old.retired.store(true, Ordering::Release);
                }
                fresh
            }
        }
    }

    /// Spends one request in every window of `limiters`, shortest first, stopping at the first
    /// that refuses; adds each window's state to `status`. Whether it refused.
    fn decide(
        &self,
        kind: &'static str,
        limiters: &SubjectLimiters,
        now: u64,
        status: &mut RateLimitStatus,
    ) -> bool {
        // Written only when it moved by a millisecond: the sweep needs no finer time, and a
        // store per request would keep the line busy between cores.
        if now.saturating_sub(limiters.last_used.load(Ordering::Relaxed)) > 1_000_000 {
            limiters.last_used.store(now, Ordering::Relaxed);
        }
        for cell in limiters.cells() {
            let window = &cell.window;
            let period = Duration::from_secs(u64::from(window.period_secs));
            let per_request = period / window.limit.max(1);
            match cell.check(now) {
                Ok(remaining) => {
                    status.windows.push(WindowState {
                        subject_kind: kind,
                        window: *window,
                        remaining,
                        reset_after: per_request * (window.limit - remaining.min(window.limit)),
                    });
                }
                Err(earliest) => {
                    let wait = Duration::from_nanos(earliest.saturating_sub(now));
                    status.windows.push(WindowState {
                        subject_kind: kind,
                        window: *window,
                        remaining: 0,
                        reset_after: per_request * window.limit,
                    });
                    status.retry_after = Some(wait);
                    return true;
                }
            }
        }
        false
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn check(
        &self,
        subject: LimitSubject,
        policy: &RateLimitPolicy,
    ) -> Result<RateLimitStatus, RateLimitError> {
        Ok(self.check_now(subject, policy))
    }

    async fn check_all(
        &self,
        checks: &[(LimitSubject, &RateLimitPolicy)],
    ) -> Result<RateLimitStatus, RateLimitError> {
        Ok(self.check_all_now(checks))
    }

    fn as_local(&self) -> Option<&LocalRateLimiter> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_clock_drives_the_windows() {
        let clock = Arc::new(crate::ManualClock::starting_now());
        let l = LocalRateLimiter::default().with_clock(clock.clone());
        let subject = LimitSubject::Key(KeyId::new());
        let policy = RateLimitPolicy::new([RateLimitWindow::per_minute(2)]);
        assert!(l.check_now(subject, &policy).allowed());
        assert!(l.check_now(subject, &policy).allowed());
        let refused = l.check_now(subject, &policy);
        assert_eq!(refused.retry_after, Some(Duration::from_secs(30)), "exactly, with time standing still");
        clock.advance(chrono::Duration::seconds(29));
        assert!(!l.check_now(subject, &policy).allowed());
        clock.advance(chrono::Duration::seconds(1));
        assert!(l.check_now(subject, &policy).allowed(), "one request back after period / limit");
    }

    #[test]
    fn admits_exactly_the_limit_then_says_when() {
        let l = LocalRateLimiter::default();
        let subject = LimitSubject::Key(KeyId::new());
        let policy = RateLimitPolicy::new([RateLimitWindow::per_minute(5), RateLimitWindow::per_hour(100)]);
        for i in 0..5 {
            let s = l.check_now(subject, &policy);
            assert!(s.allowed(), "request {i}");
            assert_eq!(s.tightest().unwrap().remaining, 4 - i);
        }
        let s = l.check_now(subject, &policy);
        assert!(!s.allowed());
        let wait = s.retry_after.unwrap();
        assert!(wait > Duration::from_secs(11) && wait <= Duration::from_secs(12), "{wait:?}");
        // The rejected request did not spend the hourly budget: 95 left after 5 admitted.
        let hour = l.subjects.get(&subject).unwrap().value().clone();
        assert_eq!(hour.rest[0].check(l.now_nanos()), Ok(94));
    }

    #[test]
    fn concurrent_checks_never_admit_more_than_the_window() {
        let clock = Arc::new(crate::ManualClock::starting_now());
        let l = LocalRateLimiter::default().with_clock(clock.clone());
        let subject = LimitSubject::Key(KeyId::new());
        let policy = RateLimitPolicy::new([RateLimitWindow::per_hour(1000)]);
        let admitted = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..600 {
                        if l.check_now(subject, &policy).allowed() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 1000, "2400 tries with time standing still");
        // One request back every period / limit (3.6 s), none sooner.
        clock.advance(chrono::Duration::milliseconds(3599));
        assert!(!l.check_now(subject, &policy).allowed());
        clock.advance(chrono::Duration::milliseconds(1));
        let s = l.check_now(subject, &policy);
        assert!(s.allowed());
        assert_eq!(s.windows[0].remaining, 0);
    }

    #[test]
    fn subjects_and_policies_are_separate() {
        let l = LocalRateLimiter::default();
        let a = LimitSubject::Key(KeyId::new());
        let b = LimitSubject::Workspace(WorkspaceId::new());
        let one = RateLimitPolicy::new([RateLimitWindow::per_minute(1)]);
        assert!(l.check_now(a, &one).allowed());
        assert!(!l.check_now(a, &one).allowed());
        assert!(l.check_now(b, &one).allowed());
        let two = RateLimitPolicy::new([RateLimitWindow::per_minute(2)]);
        assert!(l.check_now(a, &two).allowed(), "a new policy starts fresh");
        assert_eq!(l.tracked_subjects(), 2);
    }

    #[test]
    fn held_limiters_share_the_map_s_state_and_keep_it_from_the_sweep() {
        let clock = Arc::new(crate::ManualClock::starting_now());
        let l = LocalRateLimiter::default().with_clock(clock.clone());
        let policy = RateLimitPolicy::new([RateLimitWindow::per_second(3)]);
        let a = LimitSubject::Key(KeyId::new());
        let held = HeldLimiters::default();
        assert_eq!(l.check_held(&[(a, &policy, &held)], 0).windows[0].remaining, 2);
        assert_eq!(l.check_now(a, &policy).windows[0].remaining, 1, "one state, held or looked up");
        assert_eq!(l.check_held(&[(a, &policy, &held)], 0).windows[0].remaining, 0);
        clock.advance(chrono::Duration::seconds(5));
        l.sweep();
        assert_eq!(l.tracked_subjects(), 1, "held state is kept past its window");
        drop(held);
        l.sweep();
        assert_eq!(l.tracked_subjects(), 0, "and swept once nobody holds it");

        // A holder whose state was replaced (a new policy) looks the subject up again.
        let held = HeldLimiters::default();
        assert!(l.check_held(&[(a, &policy, &held)], 0).allowed());
        let other = RateLimitPolicy::new([RateLimitWindow::per_second(1)]);
        assert!(l.check_now(a, &other).allowed());
        let status = l.check_held(&[(a, &policy, &held)], 0);
        assert_eq!(status.windows[0].remaining, 2, "a fresh state for the held policy");
    }

    #[test]
    fn idle_subjects_are_swept_after_their_longest_window() {
        let clock = Arc::new(crate::ManualClock::starting_now());
        let l = LocalRateLimiter::default().with_clock(clock.clone());
        let policy = RateLimitPolicy::new([RateLimitWindow::per_second(1)]);
        let a = LimitSubject::Key(KeyId::new());
        assert!(l.check_now(a, &policy).allowed());
        l.sweep();
        assert_eq!(l.tracked_subjects(), 1, "recently used state is kept");
        clock.advance(chrono::Duration::milliseconds(1100));
        l.sweep();
        assert_eq!(l.tracked_subjects(), 0, "state idle past its window is dropped");
        assert!(l.check_now(a, &policy).allowed(), "and a dropped subject starts full");
    }
}
