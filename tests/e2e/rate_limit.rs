//! A key's own rate limit reached through the SDK: the client honours the server's
//! `Retry-After` (recorded, not slept), then surfaces the typed `RATE_LIMITED` error.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyward_client::{CatalogErrorExt, ErrorCode, KeywardClient, RetryPolicy, types};

use crate::support::{Server, expect_catalog};

#[tokio::test]
async fn rate_limited_after_retries() {
    let s = Server::start().await;
    let limited = s
        .root
        .create_key()
        .body(types::CreateKeyRequest::builder().name("one a minute").rate_limit(Some(vec![
            types::RateLimitWindow { limit: NonZeroU32::MIN, period_secs: NonZeroU32::new(60).unwrap() },
        ])))
        .send()
        .await
        .unwrap();
    let waits = Arc::new(Mutex::new(Vec::new()));
    let record = waits.clone();
    let policy = RetryPolicy::default().with_max_attempts(3).with_max_delay(Duration::from_secs(120));
    let client = KeywardClient::builder(&s.base, limited.secret.expose_secret())
        .retry_policy(policy)
        .sleeper(move |d: Duration| {
            record.lock().unwrap().push(d);
            std::future::ready(())
        })
        .build()
        .unwrap();
    client.status().send().await.expect("the first request is within the limit");
    let err = expect_catalog(client.status().send().await, 429, ErrorCode::RateLimited);
    let waits = waits.lock().unwrap().clone();
    assert_eq!(waits.len(), 2, "3 attempts, 2 waits: {waits:?}");
    for wait in &waits {
        assert!(
            *wait > Duration::from_secs(50) && *wait <= Duration::from_secs(60),
            "Retry-After honoured: {wait:?}"
        );
    }
    assert!(err.retry_after().is_some());

    // The default policy does not wait a minute: the error comes at once.
    let impatient = s.client(&limited);
    let started = std::time::Instant::now();
    expect_catalog(impatient.status().send().await, 429, ErrorCode::RateLimited);
    assert!(started.elapsed() < Duration::from_secs(5));
}
