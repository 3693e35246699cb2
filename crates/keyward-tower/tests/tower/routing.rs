//! `Router::route_layer`, the optional extractor, and the extractor without the layer.

use axum::Router;
use axum::routing::get;
use keyward_tower::{KeywardLayer, VerifiedApiKey};

use crate::support::{Auth, Client, Harness, serve, whoami};

async fn greet(key: Option<VerifiedApiKey>) -> String {
    match key {
        Some(key) => format!("hello {}", key.key_id()),
        None => "hello stranger".to_owned(),
    }
}

#[tokio::test]
async fn route_layer_protects_only_the_routes_before_it() {
    let h = Harness::new().await;
    let key = h.key(|k| k).await;
    let app = Router::new()
        .route("/private", get(whoami))
        .route_layer(KeywardLayer::new(h.verifier()))
        .route("/public", get(greet))
        .route("/unprotected-whoami", get(whoami));
    let client = Client::new(serve(app).await);
    let plaintext = key.secret.expose_secret();

    client.send("/private", Auth::None, &[]).await.error(401, "MISSING_API_KEY");
    assert_eq!(client.get("/private", plaintext).await.ok()["keyId"], key.key.id.to_string());

    // The open route stays open; its optional extractor sees no key.
    let public = client.send("/public", Auth::None, &[]).await;
    assert_eq!(public.status, 200);
    assert_eq!(public.body, "hello stranger");
    assert!(public.header("x-ratelimit-limit").is_none());
    // Unmatched paths are 404s, not 401s: route_layer runs only for matched routes.
    assert_eq!(client.send("/nowhere", Auth::None, &[]).await.status, 404);

    // The mandatory extractor without the layer refuses with the catalog error, whatever was sent.
    client.get("/unprotected-whoami", plaintext).await.error(401, "MISSING_API_KEY");
}

#[tokio::test]
async fn the_optional_extractor_sees_the_key_behind_the_layer() {
    let h = Harness::new().await;
    let key = h.key(|k| k).await;
    let app = Router::new().route("/greet", get(greet)).layer(KeywardLayer::new(h.verifier()));
    let client = Client::new(serve(app).await);
    let reply = client.get("/greet", key.secret.expose_secret()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, format!("hello {}", key.key.id));
}
