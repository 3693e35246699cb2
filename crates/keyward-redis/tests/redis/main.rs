//! keyward-redis against the real Redis named by `KEYWARD_TEST_REDIS_URL` (skipped when unset;
//! a failure when set and unreachable).

use std::time::Duration;

use keyward_core::testing::{TcpProxy, service_url};
use keyward_core::{KeyId, LimitSubject, RateLimitPolicy, RateLimitWindow, RateLimiter};
use keyward_redis::{RedisLimiterConfig, RedisRateLimiter};

fn url() -> Option<String> {
    service_url("KEYWARD_TEST_REDIS_URL")
}

fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// A limiter that fails on Redis errors instead of silently falling back, for the accuracy tests.
async fn limiter(url: &str) -> RedisRateLimiter {
    let l = RedisRateLimiter::new(url).unwrap();
    // Prove the service is reachable: a set-but-unreachable Redis fails the test.
    let probe = l
        .check(LimitSubject::Key(KeyId::new()), &RateLimitPolicy::new([RateLimitWindow::per_minute(1)]))
        .await;
    assert!(probe.is_ok() && !l.in_outage(), "Redis at {url} is unreachable");
    l
}

#[tokio::test]
async fn admits_exactly_the_limit_with_a_retry_after() {
    let Some(url) = url() else { return };
    let l = limiter(&url).await;
    let subject = LimitSubject::Key(KeyId::new());
    let policy = RateLimitPolicy::new([RateLimitWindow::per_minute(5), RateLimitWindow::per_hour(100)]);
    for i in 0..5u32 {
        let s = l.check(subject, &policy).await.unwrap();
        assert!(s.allowed(), "request {i}");
        assert_eq!(s.windows[0].remaining, 4 - i);
        assert_eq!(s.windows[1].remaining, 99 - i);
    }
    let s = l.check(subject, &policy).await.unwrap();
    assert!(!s.allowed());
    let wait = s.retry_after.unwrap();
    assert!(wait > Duration::from_secs(11) && wait <= Duration::from_secs(12), "{wait:?}");
    // A refused request spends nothing: the hour window still shows 95.
    assert_eq!(s.windows[1].remaining, 95);
    assert!(!l.in_outage());
}

#[tokio::test]
async fn two_nodes_share_one_limit() {
    let Some(url) = url() else { return };
    let a = limiter(&url).await;
    let b = limiter(&url).await;
    let subject = LimitSubject::Workspace(keyward_core::WorkspaceId::new());
    let n = 20;
    let policy = RateLimitPolicy::new([RateLimitWindow::per_minute(n)]);
    let mut admitted = 0;
    for i in 0..2 * n {
        let node = if i % 2 == 0 { &a } else { &b };
        if node.check(subject, &policy).await.unwrap().allowed() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, n, "N in total across both nodes, not 2N");
}

#[tokio::test]
async fn concurrent_requests_never_exceed_the_limit() {
    let Some(url) = url() else { return };
    let a = std::sync::Arc::new(limiter(&url).await);
    let b = std::sync::Arc::new(limiter(&url).await);
    let subject = LimitSubject::Key(KeyId::new());
    let policy = RateLimitPolicy::new([RateLimitWindow::per_minute(50)]);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let l = if i % 2 == 0 { a.clone() } else { b.clone() };
        let p = policy.clone();
        tasks.push(tokio::spawn(async move { l.check(subject, &p).await.unwrap().allowed() }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += u32::from(t.await.unwrap());
    }
    assert_eq!(admitted, 50);
}

#[tokio::test]
async fn falls_back_to_local_limits_and_recovers() {
    let Some(url) = url() else { return };
    let proxy = TcpProxy::start(&host_port(&url)).await.unwrap();
    let proxied = format!("redis://{}", proxy.addr());
    let config = RedisLimiterConfig { retry_after_failure: Duration::from_millis(200), ..Default::default() };
    let l = RedisRateLimiter::with_config(&proxied, config).unwrap();
    let subject = LimitSubject::Key(KeyId::new());
    let policy = RateLimitPolicy::new([RateLimitWindow::per_minute(3)]);
    assert!(l.check(subject, &policy).await.unwrap().allowed());
    assert!(!l.in_outage());

    proxy.cut();
    // Decisions keep coming, from the local limiter, with the same shape.
    let s = l.check(subject, &policy).await.unwrap();
    assert!(l.in_outage(), "the failure was noticed");
    assert!(s.allowed());
    assert_eq!(s.windows.len(), 1);
    for _ in 0..2 {
        l.check(subject, &policy).await.unwrap();
    }
    assert!(!l.check(subject, &policy).await.unwrap().allowed(), "local limits apply during the outage");

    proxy.restore();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = l.check(subject, &policy).await.unwrap();
    assert!(!l.in_outage(), "back on Redis without a restart");
    // Redis saw one request before the cut: two left there, one spent now.
    assert!(s.allowed());
    assert_eq!(s.windows[0].remaining, 1);
}

#[tokio::test]
async fn a_key_and_its_workspace_are_decided_together() {
    let Some(url) = url() else { return };
    let l = limiter(&url).await;
    let key = LimitSubject::Key(KeyId::new());
    let workspace = LimitSubject::Workspace(keyward_core::WorkspaceId::new());
    let key_policy = RateLimitPolicy::new([RateLimitWindow::per_minute(10)]);
    let ws_policy = RateLimitPolicy::new([RateLimitWindow::per_minute(2)]);
    let checks = [(key, &key_policy), (workspace, &ws_policy)];
    for _ in 0..2 {
        assert!(l.check_all(&checks).await.unwrap().allowed());
    }
    let s = l.check_all(&checks).await.unwrap();
    assert!(!s.allowed(), "the workspace's limit refuses");
    assert_eq!(s.windows.len(), 2, "one decision covers both subjects");
    assert_eq!(
        (s.windows[0].subject_kind, s.windows[0].remaining),
        ("key", 8),
        "the refusal spent nothing on the key"
    );
    assert_eq!((s.windows[1].subject_kind, s.windows[1].remaining), ("workspace", 0));
}

/// A window faster than one request per microsecond (stored before validation bounded it, or
/// built in code) still gets a positive emission interval: the script never divides by zero and
/// the decision is a sane one, not an outage.
#[tokio::test]
async fn windows_faster_than_the_script_clock_are_decided() {
    let Some(url) = url() else { return };
    let l = limiter(&url).await;
    let policy = RateLimitPolicy::new([RateLimitWindow { limit: u32::MAX, period_secs: 1 }]);
    let s = l.check(LimitSubject::Key(KeyId::new()), &policy).await.unwrap();
    assert!(s.allowed(), "{s:?}");
    assert!(s.windows[0].remaining > 900_000, "{s:?}");
    assert!(!l.in_outage(), "the script answered");
}
