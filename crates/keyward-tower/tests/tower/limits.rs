//! Rate, concurrency and credit limits, cache behaviour and revocation, through the layer.

use keyward_core::{Actor, NewKey};
use keyward_tower::KeywardLayer;

use crate::support::{Harness, per_minute, serve_app};

#[tokio::test]
async fn rate_limit_admits_exactly_the_policy() {
    let h = Harness::new().await;
    let key = h.key(|k| NewKey { rate_limit: per_minute(5), ..k }).await;
    let (client, _) = serve_app(KeywardLayer::new(h.verifier())).await;
    let plaintext = key.secret.expose_secret();

    for i in 0..5u64 {
        let reply = client.get("/whoami", plaintext).await;
        reply.ok();
        assert_eq!(reply.header_u64("x-ratelimit-limit"), 5);
        assert_eq!(reply.header_u64("x-ratelimit-remaining"), 4 - i, "request {i}");
    }
    let reply = client.get("/whoami", plaintext).await;
    let details = reply.error(429, "RATE_LIMITED");
    // GCRA at 5/min frees one request every 12 s; the 6th comes a few ms after the 1st.
    assert_eq!(reply.header_u64("retry-after"), 12);
    assert_eq!(details["retryAfterSeconds"], 12);
    assert_eq!(reply.header_u64("x-ratelimit-limit"), 5);
    assert_eq!(reply.header_u64("x-ratelimit-remaining"), 0);
    assert!(reply.header("x-ratelimit-reset").is_some());
}

#[tokio::test]
async fn concurrency_slot_is_held_until_the_response_is_done() {
    let h = Harness::new().await;
    let key = h.key(|k| NewKey { concurrency_limit: Some(1), ..k }).await;
    let (client, gate) = serve_app(KeywardLayer::new(h.verifier())).await;
    let plaintext = key.secret.expose_secret().to_owned();

    let slow = {
        let (client, plaintext) = (client.clone(), plaintext.clone());
        tokio::spawn(async move { client.get("/slow", &plaintext).await })
    };
    gate.entered.notified().await;
    let reply = client.get("/whoami", &plaintext).await;
    assert_eq!(reply.error(429, "CONCURRENCY_LIMITED")["limit"], 1);

    gate.release.notify_one();
    assert_eq!(slow.await.expect("slow request").status, 200);
    // The first response is complete, so its slot is free again.
    client.get("/whoami", &plaintext).await.ok();
    client.get("/whoami", &plaintext).await.ok();
}

#[tokio::test]
async fn credits_run_out_with_402() {
    let h = Harness::new().await;
    let key = h.key(|k| NewKey { credits: Some(2), ..k }).await;
    let free = h.key(|k| k).await;
    let (client, _) = serve_app(KeywardLayer::new(h.verifier()).cost(1)).await;
    let plaintext = key.secret.expose_secret();

    client.get("/whoami", plaintext).await.ok();
    client.get("/whoami", plaintext).await.ok();
    let reply = client.get("/whoami", plaintext).await;
    let details = reply.error(402, "INSUFFICIENT_CREDITS");
    assert_eq!(details["required"], 1);
    assert_eq!(details["remaining"], 0);
    // Keys without credits are not charged.
    for _ in 0..3 {
        client.get("/whoami", free.secret.expose_secret()).await.ok();
    }
}

#[tokio::test]
async fn revocation_is_seen_by_the_very_next_request() {
    let h = Harness::new().await;
    let key = h.key(|k| k).await;
    let (client, _) = serve_app(KeywardLayer::new(h.verifier())).await;
    let plaintext = key.secret.expose_secret();

    client.get("/whoami", plaintext).await.ok();
    h.service.revoke_key(h.workspace.id, key.key.id, &Actor::system()).await.expect("revoke");
    client.get("/whoami", plaintext).await.error(401, "KEY_REVOKED");
}

#[tokio::test]
async fn a_thousand_requests_read_the_store_once() {
    let h = Harness::new().await;
    let key = h.key(|k| NewKey { rate_limit: per_minute(50_000), ..k }).await;
    let (client, _) = serve_app(KeywardLayer::new(h.verifier())).await;
    let plaintext = key.secret.expose_secret().to_owned();
    let before = h.store.digest_lookups();

    // Four callers at once, so that the first misses race and must collapse into one read.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (client, plaintext) = (client.clone(), plaintext.clone());
            tokio::spawn(async move {
                for _ in 0..250 {
                    client.get("/whoami", &plaintext).await.ok();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller");
    }
    assert_eq!(h.store.digest_lookups() - before, 1);
}

#[tokio::test]
async fn the_verifier_chooses_which_rate_limit_headers_answers_carry() {
    use keyward_core::RateLimitHeaders;
    use keyward_core::http::RATE_LIMIT_HEADERS;

    let h = Harness::new().await;
    for (sent, expected) in [
        (RateLimitHeaders::All, &RATE_LIMIT_HEADERS[..]),
        (RateLimitHeaders::Legacy, &RATE_LIMIT_HEADERS[..3]),
        (RateLimitHeaders::Ietf, &RATE_LIMIT_HEADERS[3..]),
        (RateLimitHeaders::None, &[][..]),
    ] {
        let key = h.key(|k| NewKey { rate_limit: per_minute(1), ..k }).await;
        let verifier = h.verifier_with(|b| b.rate_limit_headers(sent));
        let (client, _) = serve_app(KeywardLayer::new(verifier)).await;
        let plaintext = key.secret.expose_secret();
        let passed = client.get("/whoami", plaintext).await;
        passed.ok();
        let refused = client.get("/whoami", plaintext).await;
        refused.error(429, "RATE_LIMITED");
        for reply in [&passed, &refused] {
            let carried: Vec<&str> =
                RATE_LIMIT_HEADERS.into_iter().filter(|name| reply.header(name).is_some()).collect();
            assert_eq!(carried, expected, "{sent:?}, status {}", reply.status);
        }
        // Whatever the choice, a refused client is told when to come back.
        assert_eq!(refused.header_u64("retry-after"), 60, "{sent:?}");
    }
}
