//! The key store going down: fail closed by default, stale entries only when configured.

use std::time::Duration;

use keyward_core::StorePolicy;
use keyward_tower::KeywardLayer;

use crate::support::{Harness, serve_app};

#[tokio::test]
async fn fail_closed_serves_only_live_cache_entries() {
    let h = Harness::new().await;
    let cached = h.key(|k| k).await;
    let uncached = h.key(|k| k).await;
    let (client, _) = serve_app(KeywardLayer::new(h.verifier())).await;

    client.get("/whoami", cached.secret.expose_secret()).await.ok();
    h.store.set_down(true);
    client.get("/whoami", cached.secret.expose_secret()).await.ok();
    client.get("/whoami", uncached.secret.expose_secret()).await.error(503, "STORE_UNAVAILABLE");

    h.store.set_down(false);
    client.get("/whoami", uncached.secret.expose_secret()).await.ok();
}

#[tokio::test]
async fn serve_stale_serves_expired_entries_during_an_outage() {
    let h = Harness::new().await;
    let key = h.key(|k| k).await;
    let never_seen = h.key(|k| k).await;
    let verifier = h.verifier_with(|b| {
        b.cache_ttl(Duration::from_millis(100)).store_policy(StorePolicy::ServeStale(Duration::from_secs(60)))
    });
    let (client, _) = serve_app(KeywardLayer::new(verifier)).await;

    client.get("/whoami", key.secret.expose_secret()).await.ok();
    tokio::time::sleep(Duration::from_millis(250)).await;
    h.store.set_down(true);
    let lookups = h.store.digest_lookups();
    client.get("/whoami", key.secret.expose_secret()).await.ok();
    assert!(h.store.digest_lookups() > lookups, "the live entry had expired: the store was tried");
    client.get("/whoami", never_seen.secret.expose_secret()).await.error(503, "STORE_UNAVAILABLE");
}

#[tokio::test]
async fn fail_closed_refuses_expired_entries_during_an_outage() {
    let h = Harness::new().await;
    let key = h.key(|k| k).await;
    let verifier = h.verifier_with(|b| b.cache_ttl(Duration::from_millis(100)));
    let (client, _) = serve_app(KeywardLayer::new(verifier)).await;

    client.get("/whoami", key.secret.expose_secret()).await.ok();
    tokio::time::sleep(Duration::from_millis(250)).await;
    h.store.set_down(true);
    client.get("/whoami", key.secret.expose_secret()).await.error(503, "STORE_UNAVAILABLE");
}
