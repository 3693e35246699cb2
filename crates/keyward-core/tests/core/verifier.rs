//! The verification rules, on the in-memory store: what every request through a layer or
//! `/v1/verify` is checked for, in order, and what the cache saves.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use keyward_core::testing::fixture::{Fixture, scopes, setup};
use keyward_core::testing::{InstrumentedStore, MemoryStore};
use keyward_core::{
    Actor, ErrorCode, KeyPatch, LocalRateLimiter, NewKey, Plan, RateLimitPolicy, RateLimitWindow,
    Requirements, StorePolicy, Verifier,
};

async fn fixture() -> (Fixture, Arc<InstrumentedStore>) {
    let store = InstrumentedStore::new(Arc::new(MemoryStore::new()));
    (setup(store.clone()).await, store)
}

fn needs(scope: &str) -> Requirements {
    Requirements::scopes([scope.parse().expect("scope")])
}

#[tokio::test]
async fn a_cached_key_costs_no_store_read_and_an_unknown_key_is_remembered() {
    let (ctx, store) = fixture().await;
    let verifier = Verifier::builder(&ctx.service).build();
    let key = ctx.create(ctx.new_key("k").with_scopes(scopes("orders:read"))).await;
    let plain = key.secret.expose_secret();
    verifier.verify(plain, &needs("orders:read")).await.expect("valid");
    verifier.verify(plain, &needs("orders:read")).await.expect("valid");
    assert_eq!(store.digest_lookups(), 1, "the second verify is a cache hit");

    let unknown = keyward_core::KeyFormat::default().generate(keyward_core::KeyEnvironment::Live);
    for _ in 0..3 {
        let e = verifier.verify(unknown.expose_secret(), &Requirements::default()).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidApiKey);
    }
    assert_eq!(store.digest_lookups(), 2, "an unknown key is looked up once, then remembered");

    let e = verifier.verify("kw_live_garbage", &Requirements::default()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidApiKey);
    assert_eq!(store.digest_lookups(), 2, "a malformed key never reaches the store");
}

#[tokio::test]
async fn changes_through_the_service_are_seen_by_the_next_request() {
    let (ctx, _) = fixture().await;
    let verifier = Verifier::builder(&ctx.service).build();
    let key = ctx.create(ctx.new_key("k").with_scopes(scopes("orders:*"))).await;
    let (plain, id, sys) = (key.secret.expose_secret(), key.key.id, Actor::system());
    verifier.verify(plain, &needs("orders:read")).await.expect("valid and cached");

    ctx.service.deactivate_key(ctx.ws.id, id, &sys).await.expect("deactivate");
    assert_eq!(
        verifier.verify(plain, &needs("orders:read")).await.unwrap_err().code(),
        ErrorCode::KeyInactive
    );
    ctx.service.activate_key(ctx.ws.id, id, &sys).await.expect("activate");
    verifier.verify(plain, &needs("orders:read")).await.expect("active again");

    let narrower = KeyPatch { scopes: Some(scopes("orders:read")), ..KeyPatch::default() };
    ctx.service.update_key(ctx.ws.id, id, narrower, &sys).await.expect("narrow");
    let e = verifier.verify(plain, &needs("orders:write")).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InsufficientScope);
    assert_eq!(e.details()["missing"], serde_json::json!(["orders:write"]));

    ctx.service.revoke_key(ctx.ws.id, id, &sys).await.expect("revoke");
    assert_eq!(
        verifier.verify(plain, &needs("orders:read")).await.unwrap_err().code(),
        ErrorCode::KeyRevoked
    );
}

#[tokio::test]
async fn expiry_grace_resources_and_plans_are_checked() {
    let (ctx, _) = fixture().await;
    let verifier = Verifier::builder(&ctx.service).build();
    let expiring =
        ctx.create(NewKey { expires_at: Some(ctx.now() + Duration::seconds(10)), ..ctx.new_key("e") }).await;
    verifier.verify(expiring.secret.expose_secret(), &Requirements::default()).await.expect("not yet");
    ctx.clock.advance(Duration::seconds(11));
    let e = verifier.verify(expiring.secret.expose_secret(), &Requirements::default()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::KeyExpired);

    let rotated = ctx.create(ctx.new_key("r")).await;
    let sys = Actor::system();
    ctx.service
        .rotate_key(ctx.ws.id, rotated.key.id, Some(Duration::seconds(30)), &sys)
        .await
        .expect("rotate");
    verifier.verify(rotated.secret.expose_secret(), &Requirements::default()).await.expect("in grace");
    ctx.clock.advance(Duration::seconds(31));
    let e = verifier.verify(rotated.secret.expose_secret(), &Requirements::default()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::KeyRevoked);

    let site = ctx.create(NewKey { resources: vec!["site-1".into()], ..ctx.new_key("s") }).await;
    let on = |r: &str| Requirements { resource: Some(r.into()), ..Requirements::default() };
    verifier.verify(site.secret.expose_secret(), &on("site-1")).await.expect("its resource");
    let e = verifier.verify(site.secret.expose_secret(), &on("site-2")).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ResourceNotAllowed);

    let closed = Plan { api_access: false, ..Plan::default_plan() };
    ctx.service.save_plan(closed, &sys).await.expect("plan");
    let e = verifier.verify(site.secret.expose_secret(), &on("site-1")).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::FeatureNotInPlan, "a plan change drops every cached key");
}

/// A key expires at the instant its expiry names, to the clock's precision, whether or not the
/// verification is a cache hit (which checks a deadline kept in whole milliseconds first), and
/// whether or not the clock is on a whole millisecond.
#[tokio::test]
async fn expiry_is_decided_at_its_instant() {
    let (ctx, _) = fixture().await;
    let verifier = Verifier::builder(&ctx.service).build();
    for skew in [Duration::zero(), Duration::microseconds(300)] {
        ctx.clock.advance(skew);
        let key = ctx
            .create(NewKey { expires_at: Some(ctx.now() + Duration::milliseconds(5)), ..ctx.new_key("edge") })
            .await;
        let at = key.key.expires_at.expect("expires");
        let plain = key.secret.expose_secret();
        verifier.verify(plain, &Requirements::default()).await.expect("before its expiry");
        ctx.clock.advance(at - ctx.now() - Duration::nanoseconds(1));
        verifier.verify(plain, &Requirements::default()).await.expect("a nanosecond before, a hit");
        ctx.clock.advance(Duration::nanoseconds(1));
        let e = verifier.verify(plain, &Requirements::default()).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::KeyExpired, "at its expiry (clock skewed by {skew})");
    }
}

#[tokio::test]
async fn credits_concurrency_and_rate_limits() {
    let (ctx, _) = fixture().await;
    let limiter = Arc::new(LocalRateLimiter::default().with_clock(ctx.clock.clone()));
    let verifier = Verifier::builder(&ctx.service).rate_limiter(limiter).build();
    let paying = ctx.create(NewKey { credits: Some(2), ..ctx.new_key("paying") }).await;
    let cost = |n| Requirements { cost: n, ..Requirements::default() };
    let v = verifier.verify(paying.secret.expose_secret(), &cost(2)).await.expect("two credits");
    assert_eq!(v.credits_remaining(), Some(0));
    let e = verifier.verify(paying.secret.expose_secret(), &cost(1)).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InsufficientCredits);
    assert_eq!(e.details()["remaining"], 0);
    verifier.verify(paying.secret.expose_secret(), &cost(0)).await.expect("free requests stay free");

    let single = ctx.create(NewKey { concurrency_limit: Some(1), ..ctx.new_key("single") }).await;
    let held = verifier.verify(single.secret.expose_secret(), &Requirements::default()).await.expect("first");
    let e = verifier.verify(single.secret.expose_secret(), &Requirements::default()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ConcurrencyLimited);
    drop(held);
    verifier.verify(single.secret.expose_secret(), &Requirements::default()).await.expect("slot given back");

    let limited = NewKey {
        rate_limit: Some(RateLimitPolicy::new([RateLimitWindow::per_minute(2)])),
        ..ctx.new_key("rl")
    };
    let limited = ctx.create(limited).await;
    for _ in 0..2 {
        verifier
            .verify(limited.secret.expose_secret(), &Requirements::default())
            .await
            .expect("within the limit");
    }
    let e = verifier.verify(limited.secret.expose_secret(), &Requirements::default()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::RateLimited);
    assert_eq!(e.retry_after(), Some(StdDuration::from_secs(30)));
    ctx.clock.advance(Duration::seconds(30));
    verifier.verify(limited.secret.expose_secret(), &Requirements::default()).await.expect("after the wait");
}

#[tokio::test]
async fn a_store_outage_fails_closed_unless_stale_entries_may_be_served() {
    let (ctx, store) = fixture().await;
    let closed = Verifier::builder(&ctx.service).cache_ttl(StdDuration::ZERO).build();
    let stale = Verifier::builder(&ctx.service)
        .cache_ttl(StdDuration::ZERO)
        .store_policy(StorePolicy::ServeStale(StdDuration::from_secs(60)))
        .build();
    let key = ctx.create(ctx.new_key("k")).await;
    let plain = key.secret.expose_secret();
    closed.verify(plain, &Requirements::default()).await.expect("loaded");
    stale.verify(plain, &Requirements::default()).await.expect("loaded");

    store.set_down(true);
    let e = closed.verify(plain, &Requirements::default()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::StoreUnavailable);
    stale.verify(plain, &Requirements::default()).await.expect("served from the stale cache");
    store.set_down(false);
    closed.verify(plain, &Requirements::default()).await.expect("back");
}

#[tokio::test]
async fn a_mistyped_or_truncated_key_is_told_so() {
    let (ctx, _) = fixture().await;
    let verifier = Verifier::builder(&ctx.service).build();
    let key = ctx.create(ctx.new_key("k")).await;
    let plain = key.secret.expose_secret();
    let mut typo = plain.to_owned().into_bytes();
    let i = typo.len() - 10;
    typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).expect("ascii");
    let e = verifier.verify(&typo, &Requirements::default()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidApiKey);
    assert!(e.message().contains("mistyped or truncated?"), "{}", e.message());
    let e = verifier.verify(&plain[..plain.len() - 3], &Requirements::default()).await.unwrap_err();
    assert!(e.message().contains("truncated?"), "{}", e.message());
    let e = verifier.verify(plain, &Requirements::default()).await;
    assert!(e.is_ok());
}

/// A remote verifier's source: the server's own verifier (through its cache, as
/// `POST /v1/verifier/resolve` answers), counting the calls.
#[derive(Debug)]
struct ServerSide {
    server: Verifier,
    store: Arc<dyn keyward_core::KeyStore>,
    resolves: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl keyward_core::KeyResolver for ServerSide {
    async fn resolve(
        &self,
        key: &keyward_core::ApiKeySecret,
    ) -> Result<Option<keyward_core::KeyRecord>, keyward_core::StoreError> {
        self.resolves.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.server
            .lookup(key.expose_secret())
            .await
            .map_err(|e| keyward_core::StoreError::Unavailable(e.to_string()))
    }

    async fn consume_credits(
        &self,
        id: keyward_core::KeyId,
        amount: i64,
    ) -> Result<keyward_core::CreditOutcome, keyward_core::StoreError> {
        self.store.consume_credits(id, amount).await
    }
}

#[tokio::test]
async fn a_remote_verifier_caches_by_the_presented_key_and_drops_by_the_servers_digest() {
    let store: Arc<dyn keyward_core::KeyStore> = Arc::new(MemoryStore::new());
    let mut ctx = setup(store.clone()).await;
    // The server hashes with a pepper the remote side never sees.
    ctx.service = ctx.service.clone().with_hasher(keyward_core::KeyHasher::hmac("p1", b"pepper".to_vec()));
    let server = Verifier::builder(&ctx.service).build();
    let side = Arc::new(ServerSide { server, store, resolves: Default::default() });
    let remote = Verifier::remote(side.clone()).build();
    let count = || side.resolves.load(std::sync::atomic::Ordering::SeqCst);

    let new =
        keyward_core::NewKey { credits: Some(2), ..ctx.new_key("k").with_scopes(scopes("orders:read")) };
    let key = ctx.create(new).await;
    let plain = key.secret.expose_secret();
    let stored = key.key.hash.digest;
    assert_ne!(stored, keyward_core::testing::fixture::digest_of(&key.secret), "peppered on the server");
    remote.verify(plain, &needs("orders:read")).await.expect("valid");
    remote.verify(plain, &needs("orders:read")).await.expect("valid");
    assert_eq!(count(), 1, "the second verify is a cache hit, no call to the server");

    // Credits are spent where they are kept.
    let metered = Requirements { cost: 2, ..needs("orders:read") };
    assert_eq!(remote.verify(plain, &metered).await.expect("enough").credits_remaining(), Some(0));
    let e = remote.verify(plain, &metered).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InsufficientCredits);

    // Deactivated on the server: the remote cache holds the key until told, by the digest the
    // server stores it under.
    ctx.service.deactivate_key(ctx.ws.id, key.key.id, &Actor::system()).await.expect("deactivate");
    remote.verify(plain, &needs("orders:read")).await.expect("still cached: nobody said");
    let other = keyward_core::KeyFormat::default().generate(keyward_core::KeyEnvironment::Live);
    remote.invalidate(&keyward_core::KeyHasher::sha256().hash(&other).digest).await;
    remote.verify(plain, &needs("orders:read")).await.expect("another key's change drops nothing");
    keyward_core::ChangeListener::changed(&remote, &keyward_core::Change::Key(stored)).await;
    let e = remote.verify(plain, &needs("orders:read")).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::KeyInactive);
    assert_eq!(count(), 2);

    // Unknown keys are remembered as unknown, like in the other modes.
    let unknown = keyward_core::KeyFormat::default().generate(keyward_core::KeyEnvironment::Live);
    for _ in 0..3 {
        let e = remote.verify(unknown.expose_secret(), &Requirements::default()).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidApiKey);
    }
    assert_eq!(count(), 3);
}

#[tokio::test]
async fn a_change_reaches_every_listener_of_a_fan_out_and_a_dropped_verifier_is_not_kept_alive() {
    let (ctx, store) = fixture().await;
    let a = Verifier::from_store(store.clone()).build();
    let b = Verifier::from_store(store.clone()).build();
    let key = ctx.create(ctx.new_key("k")).await;
    let plain = key.secret.expose_secret();
    for v in [&a, &b] {
        v.verify(plain, &Requirements::default()).await.expect("valid");
    }
    let listeners: Vec<Arc<dyn keyward_core::ChangeListener>> = vec![Arc::new(a.clone()), b.listener()];
    ctx.service.revoke_key(ctx.ws.id, key.key.id, &Actor::system()).await.expect("revoke");
    keyward_core::ChangeListener::changed(&listeners, &keyward_core::Change::Key(key.key.hash.digest)).await;
    for v in [&a, &b] {
        assert_eq!(
            v.verify(plain, &Requirements::default()).await.unwrap_err().code(),
            ErrorCode::KeyRevoked
        );
    }
    let weak = b.listener();
    drop((b, listeners));
    // The listener outlives its verifier harmlessly.
    keyward_core::ChangeListener::changed(&weak, &keyward_core::Change::Missed).await;
}
