//! tonic: a real health server behind the layer, called by a real `HealthClient`.

use keyward_core::{Actor, NewKey};
use keyward_tower::KeywardLayer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{Harness, per_minute};

/// Serves the standard health service behind `layer` on `127.0.0.1:0`; returns a client.
async fn health_behind(layer: KeywardLayer) -> HealthClient<Channel> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _reporter = reporter;
        Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .expect("serve");
    });
    let channel =
        Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
    HealthClient::new(channel)
}

/// One `Check` call, with `key` as a bearer token when given.
async fn check(client: &mut HealthClient<Channel>, key: Option<&str>) -> Result<i32, Status> {
    let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
    if let Some(key) = key {
        request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().expect("ascii"));
    }
    client.check(request).await.map(|r| r.into_inner().status)
}

fn assert_status(result: Result<i32, Status>, code: Code, message: &str) {
    let status = result.expect_err("the call is refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), message);
    let request_id = status.metadata().get("x-request-id").expect("x-request-id in the metadata");
    assert!(!request_id.is_empty());
}

#[tokio::test]
async fn valid_key_gets_an_answer() {
    let h = Harness::new().await;
    let key = h.key(|k| k).await;
    let mut client = health_behind(KeywardLayer::new(h.verifier())).await;
    let status = check(&mut client, Some(key.secret.expose_secret())).await.expect("check");
    assert_eq!(status, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn missing_and_revoked_keys_are_unauthenticated() {
    let h = Harness::new().await;
    let key = h.key(|k| k).await;
    let mut client = health_behind(KeywardLayer::new(h.verifier())).await;

    assert_status(
        check(&mut client, None).await,
        Code::Unauthenticated,
        "no API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
    );
    assert_status(
        check(&mut client, Some("kw_live_garbage")).await,
        Code::Unauthenticated,
        "invalid API key: it has the wrong length (truncated?)",
    );

    check(&mut client, Some(key.secret.expose_secret())).await.expect("check");
    h.service.revoke_key(h.workspace.id, key.key.id, &Actor::system()).await.expect("revoke");
    assert_status(
        check(&mut client, Some(key.secret.expose_secret())).await,
        Code::Unauthenticated,
        "the API key was revoked",
    );
}

#[tokio::test]
async fn missing_scope_is_permission_denied() {
    let h = Harness::new().await;
    let key = h.key(|k| k.with_scopes("health:read".parse().unwrap())).await;
    let layer = KeywardLayer::new(h.verifier()).require_scope("grpc:call".parse().unwrap());
    let mut client = health_behind(layer).await;
    assert_status(
        check(&mut client, Some(key.secret.expose_secret())).await,
        Code::PermissionDenied,
        "the API key lacks scope `grpc:call`",
    );
}

#[tokio::test]
async fn rate_limit_is_resource_exhausted() {
    let h = Harness::new().await;
    let key = h.key(|k| NewKey { rate_limit: per_minute(2), ..k }).await;
    let mut client = health_behind(KeywardLayer::new(h.verifier())).await;
    let plaintext = key.secret.expose_secret();
    check(&mut client, Some(plaintext)).await.expect("first");
    check(&mut client, Some(plaintext)).await.expect("second");
    let result = check(&mut client, Some(plaintext)).await;
    let retry_after = result.as_ref().err().and_then(|s| s.metadata().get("retry-after").cloned());
    assert_eq!(retry_after.as_ref().and_then(|v| v.to_str().ok()), Some("30"));
    let remaining = result.as_ref().err().and_then(|s| s.metadata().get("x-ratelimit-remaining").cloned());
    assert_eq!(remaining.as_ref().and_then(|v| v.to_str().ok()), Some("0"));
    assert_status(result, Code::ResourceExhausted, "rate limit reached; retry later");
}
