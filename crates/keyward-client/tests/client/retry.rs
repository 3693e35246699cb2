//! 429s are retried: `Retry-After` honoured (seconds and HTTP dates), jittered backoff without
//! one, bounded attempts ending in the typed `RATE_LIMITED` error, streams sent once.

use std::time::Duration;

use keyward_client::{CatalogErrorExt, ClientHooks, Error, ErrorCode, OperationInfo, RetryPolicy};

use crate::support::{RetryAfter, StandIn};

#[tokio::test]
async fn retry_after_seconds_is_honoured() {
    let s = StandIn::start(2, RetryAfter::Seconds(2)).await;
    let (client, waits) = s.client(RetryPolicy::default());
    let status = client.status().send().await.expect("the third attempt succeeds");
    assert!(status.valid);
    assert_eq!(s.hits(), 3, "two 429s, then 200");
    assert_eq!(*waits.lock().unwrap(), [Duration::from_secs(2); 2]);
}

#[tokio::test]
async fn retry_after_http_date_is_honoured() {
    let s = StandIn::start(1, RetryAfter::DateIn(3)).await;
    let (client, waits) = s.client(RetryPolicy::default());
    client.status().send().await.expect("the second attempt succeeds");
    assert_eq!(s.hits(), 2);
    let waits = waits.lock().unwrap();
    assert_eq!(waits.len(), 1);
    // The date has one-second resolution and the clock moved on a little.
    assert!(waits[0] > Duration::from_millis(1_500) && waits[0] <= Duration::from_secs(3), "{waits:?}");
}

#[tokio::test]
async fn without_retry_after_backoff_is_jittered_and_capped() {
    let base = Duration::from_millis(100);
    let cap = Duration::from_millis(300);
    let policy = RetryPolicy::default().with_max_attempts(6).with_base_delay(base).with_max_delay(cap);
    let s = StandIn::start(5, RetryAfter::None).await;
    let (client, waits) = s.client(policy);
    client.status().send().await.expect("the sixth attempt succeeds");
    assert_eq!(s.hits(), 6);
    let waits = waits.lock().unwrap();
    assert_eq!(waits.len(), 5);
    for (i, wait) in waits.iter().enumerate() {
        let ceiling = base.saturating_mul(1 << i).min(cap);
        assert!(*wait <= ceiling, "retry {} waited {wait:?}, more than {ceiling:?}", i + 1);
    }
    assert!(waits.iter().all(|w| *w <= cap), "never beyond the cap: {waits:?}");
}

#[tokio::test]
async fn attempts_run_out_into_the_typed_error() {
    let s = StandIn::start(100, RetryAfter::Seconds(1)).await;
    let (client, waits) = s.client(RetryPolicy::default());
    let err = client.status().send().await.expect_err("still limited");
    assert_eq!(s.hits(), 4, "the default policy makes 4 attempts");
    assert_eq!(waits.lock().unwrap().len(), 3);
    assert!(matches!(err, Error::ErrorResponse(_)), "a documented 429 is typed: {err:?}");
    assert_eq!(err.code(), Some(ErrorCode::RateLimited));
    assert_eq!(err.code().unwrap().to_string(), "RATE_LIMITED");
    assert_eq!(err.http_status().map(|s| s.as_u16()), Some(429));
    assert_eq!(err.message(), Some("Rate limit reached: 1 per 60 s."));
    assert_eq!(err.details().unwrap()["limit"], 1);
    assert_eq!(err.request_id(), Some("req-4"), "the last attempt's");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_is_not_waited_for() {
    let s = StandIn::start(100, RetryAfter::Seconds(3600)).await;
    let (client, waits) = s.client(RetryPolicy::default());
    let err = client.status().send().await.expect_err("limited for an hour");
    assert_eq!(s.hits(), 1);
    assert!(waits.lock().unwrap().is_empty());
    assert_eq!(err.code(), Some(ErrorCode::RateLimited));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
}

#[tokio::test]
async fn no_retry_policy_sends_once() {
    let s = StandIn::start(1, RetryAfter::Seconds(0)).await;
    let (client, waits) = s.client(RetryPolicy::none());
    let err = client.status().send().await.expect_err("one attempt only");
    assert_eq!(err.code(), Some(ErrorCode::RateLimited));
    assert_eq!(s.hits(), 1);
    assert!(waits.lock().unwrap().is_empty());
}

#[tokio::test]
async fn every_operation_types_its_429() {
    // The spec documents 429 on every operation, so even `GET /v1/keys` yields the typed
    // catalog error after the retries, with no `into_catalog` step.
    let s = StandIn::start(100, RetryAfter::Seconds(0)).await;
    let (client, _) = s.client(RetryPolicy::default().with_max_attempts(2));
    let err = client.list_keys().send().await.expect_err("limited");
    assert_eq!(s.hits(), 2, "retried");
    assert!(matches!(err, Error::ErrorResponse(_)), "{err:?}");
    assert_eq!(err.code(), Some(ErrorCode::RateLimited));
    assert_eq!(err.request_id(), Some("req-2"));
}

#[tokio::test]
async fn a_body_that_cannot_be_replayed_is_sent_once() {
    let s = StandIn::start(1, RetryAfter::Seconds(0)).await;
    let (client, waits) = s.client(RetryPolicy::default());
    let mut request =
        reqwest::Request::new(reqwest::Method::POST, format!("{}/v1/keys", s.base).parse().unwrap());
    *request.body_mut() = Some(reqwest::Body::wrap(String::from("{\"name\": \"streamed\"}")));
    assert!(request.try_clone().is_none(), "a streaming body");
    let info = OperationInfo { operation_id: "create_key" };
    let response = client.client().exec(request, &info).await.unwrap();
    assert_eq!(response.status(), 429, "given back, not retried");
    assert_eq!(s.hits(), 1);
    assert!(waits.lock().unwrap().is_empty());

    // The same request with a buffered body is retried.
    let s = StandIn::start(1, RetryAfter::Seconds(0)).await;
    let (client, waits) = s.client(RetryPolicy::default());
    let mut request =
        reqwest::Request::new(reqwest::Method::POST, format!("{}/v1/keys", s.base).parse().unwrap());
    *request.body_mut() = Some(reqwest::Body::from("{\"name\": \"buffered\"}"));
    let response = client.client().exec(request, &info).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(s.hits(), 2);
    assert_eq!(*waits.lock().unwrap(), [Duration::ZERO]);
}
