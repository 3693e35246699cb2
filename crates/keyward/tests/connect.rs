//! `keyward::connect`: a service's verifier on the same database as the management side, which
//! sees its changes at once and writes usage back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward::{Actor, Connect, ErrorCode, KeyService, NewKey, NewWorkspace, Requirements};

/// Polls until `refused` says the key is refused; returns how long it took.
async fn until_refused(keyward: &keyward::Keyward, key: &str, code: ErrorCode) -> Duration {
    let start = Instant::now();
    loop {
        match keyward.verifier().verify(key, &Requirements::default()).await {
            Err(e) if e.code() == code => return start.elapsed(),
            _ => assert!(start.elapsed() < Duration::from_secs(5), "the change never arrived"),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_changes_made_elsewhere_arrive_and_usage_is_written_back() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    // The management side: its own handle on the file, as `keyward serve` has.
    let manager = KeyService::new(Arc::new(keyward::store::SqliteStore::open(&url).await.unwrap()));
    let ws = manager.create_workspace(NewWorkspace::live("acme"), &Actor::system()).await.unwrap();
    let key = manager.create_key(NewKey::new(ws.id, "svc"), &Actor::system()).await.unwrap();
    let plain = key.secret.expose_secret();

    let keyward = Connect::new(&url).usage_flush(Duration::from_millis(20)).build().await.unwrap();
    assert!(keyward.propagating());
    keyward.verifier().verify(plain, &Requirements::default()).await.expect("valid, now cached");

    manager.deactivate_key(ws.id, key.key.id, &Actor::system()).await.unwrap();
    let took = until_refused(&keyward, plain, ErrorCode::KeyInactive).await;
    assert!(took < Duration::from_secs(1), "seen in {took:?}, not after the cache TTL");

    manager.activate_key(ws.id, key.key.id, &Actor::system()).await.unwrap();
    let start = Instant::now();
    while keyward.verifier().verify(plain, &Requirements::default()).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    keyward.shutdown().await.unwrap();
    let stored = manager.get_key(ws.id, key.key.id).await.unwrap();
    assert!(stored.last_used_at.is_some(), "the service's usage reached the file");
    let today = chrono::Utc::now().date_naive();
    let usage = manager.usage(ws.id, key.key.id, 1).await.unwrap();
    assert!(usage.iter().any(|u| u.day == today && u.count >= 2), "{usage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_arrive_through_the_feed() {
    let Some(schema) = keyward_store::testing::PgTestSchema::from_env() else { return };
    let store = schema.open().await;
    let manager = KeyService::new(Arc::new(store));
    let ws = manager.create_workspace(NewWorkspace::live("acme"), &Actor::system()).await.unwrap();
    let key = manager.create_key(NewKey::new(ws.id, "svc"), &Actor::system()).await.unwrap();
    let plain = key.secret.expose_secret();

    let keyward = Connect::new(schema.url()).database_schema(schema.name()).build().await.unwrap();
    assert!(keyward.propagating());
    keyward.verifier().verify(plain, &Requirements::default()).await.expect("valid, now cached");
    manager.revoke_key(ws.id, key.key.id, &Actor::system()).await.unwrap();
    let took = until_refused(&keyward, plain, ErrorCode::KeyRevoked).await;
    assert!(took < Duration::from_secs(1), "seen in {took:?}");
    keyward.shutdown().await.unwrap();
}

#[tokio::test]
async fn other_urls_are_refused_with_a_clear_error() {
    let e = keyward::connect("mysql://db/keys").await.unwrap_err();
    assert!(matches!(e, keyward::ConnectError::UnsupportedUrl(_)));
    assert!(e.to_string().contains("sqlite://"), "{e}");
}
