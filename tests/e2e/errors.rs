//! Each catalog error the API can produce reaches the SDK as a typed error with its code,
//! message, details and request id.

use keyward_client::{CatalogErrorExt, ErrorCode, types};

use crate::support::{Server, expect_catalog};

#[tokio::test]
async fn validation_and_not_found() {
    let s = Server::start().await;
    let err = expect_catalog(
        s.root.create_key().body(types::CreateKeyRequest::builder().name("")).send().await,
        400,
        ErrorCode::ValidationFailed,
    );
    assert_eq!(err.details().unwrap()["field"], "name", "{err:?}");
    let err = expect_catalog(s.root.list_keys().limit(101u32).send().await, 400, ErrorCode::ValidationFailed);
    assert_eq!(err.details().unwrap()["field"], "limit");
    let err = expect_catalog(
        s.root.list_keys().cursor("not-a-cursor!").send().await,
        400,
        ErrorCode::ValidationFailed,
    );
    assert_eq!(err.details().unwrap()["field"], "cursor");
    let huge = types::CreateKeyRequest::builder().name("big").metadata(
        [("blob".to_owned(), "a".repeat(keyward_server::MAX_BODY_BYTES))]
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
    );
    expect_catalog(s.root.create_key().body(huge).send().await, 413, ErrorCode::PayloadTooLarge);
    expect_catalog(s.root.get_key().id(uuid::Uuid::now_v7()).send().await, 404, ErrorCode::NotFound);
    expect_catalog(s.root.get_workspace().id(uuid::Uuid::now_v7()).send().await, 404, ErrorCode::NotFound);
}

#[tokio::test]
async fn authentication_failures() {
    let s = Server::start().await;
    expect_catalog(s.client_with("kw_live_garbage").status().send().await, 401, ErrorCode::InvalidApiKey);
    let unknown = keyward_core::KeyFormat::default().generate(keyward_core::KeyEnvironment::Live);
    let err = expect_catalog(
        s.client_with(unknown.expose_secret()).list_keys().send().await,
        401,
        ErrorCode::InvalidApiKey,
    );
    assert!(!format!("{err:?}").contains(unknown.expose_secret()), "the key is never echoed");
    // An empty bearer token is no key at all.
    expect_catalog(s.client_with("").status().send().await, 401, ErrorCode::MissingApiKey);

    let short = s
        .root
        .create_key()
        .body(
            types::CreateKeyRequest::builder()
                .name("short-lived")
                .expires_at(Some(chrono::Utc::now() + chrono::Duration::seconds(30))),
        )
        .send()
        .await
        .unwrap();
    let short = s.client(&short);
    short.status().send().await.unwrap();
    s.advance(31);
    expect_catalog(short.status().send().await, 401, ErrorCode::KeyExpired);
}

#[tokio::test]
async fn scope_and_resource_limits() {
    let s = Server::start().await;
    let writer = s.create(&s.root, "writer", &["keys:read", "keys:write"]).await;
    let writer = s.client(&writer);
    let wider = writer
        .create_key()
        .body(types::CreateKeyRequest::builder().name("wider").scopes(vec!["keys:*".to_owned()]));
    let err = expect_catalog(wider.send().await, 403, ErrorCode::InsufficientScope);
    assert_eq!(err.details().unwrap()["missing"], serde_json::json!(["keys:*"]));
    expect_catalog(writer.list_audit_events().send().await, 403, ErrorCode::InsufficientScope);

    let site = s
        .root
        .create_key()
        .body(
            types::CreateKeyRequest::builder()
                .name("site")
                .scopes(vec!["keys:*".to_owned()])
                .resources(vec!["site-1".to_owned()]),
        )
        .send()
        .await
        .unwrap();
    let site = s.client(&site);
    let all = site.create_key().body(types::CreateKeyRequest::builder().name("all")).send().await;
    expect_catalog(all, 403, ErrorCode::ResourceNotAllowed);
}

#[tokio::test]
async fn plans_limit_keys_and_api_access() {
    let s = Server::start().await;
    let pro = types::SavePlanRequest::builder().name("Professional").api_access(true).max_keys(Some(2));
    let plan = s.root.save_plan().id("professional").body(pro).send().await.unwrap();
    assert_eq!(plan.max_keys, Some(2));
    let starter = types::SavePlanRequest::builder().name("Starter").api_access(false);
    s.root.save_plan().id("starter").body(starter).send().await.unwrap();

    let ws = s
        .root
        .create_workspace()
        .body(types::CreateWorkspaceRequest::builder().name("pro").plan_id(Some("professional".to_owned())))
        .send()
        .await
        .unwrap();
    let admin = s.create(&s.root.in_workspace(ws.id), "admin", &["keys:*"]).await;
    let admin = s.client(&admin);
    s.create(&admin, "two", &[]).await;
    let third = admin.create_key().body(types::CreateKeyRequest::builder().name("three")).send().await;
    let err = expect_catalog(third, 403, ErrorCode::KeyLimitReached);
    assert!(err.message().unwrap().len() > 3);

    let downgrade = types::UpdateWorkspaceRequest::builder().plan_id(Some("starter".to_owned()));
    s.root.update_workspace().id(ws.id).body(downgrade).send().await.unwrap();
    expect_catalog(admin.list_keys().send().await, 403, ErrorCode::FeatureNotInPlan);
}

/// A failed call prints as one line that names the code, the message and the request id (not
/// the headers), and list-of-string fields take `&str` items as written.
#[tokio::test]
async fn a_failure_reads_as_one_line() {
    let s = Server::start().await;
    let reader = s.create(&s.root, "reader", &["keys:read"]).await;
    let reader = s.client(&reader);
    let request = types::CreateKeyRequest::builder().name("wider").scopes(["keys:write"]);
    let err = reader.create_key().body(request).send().await.unwrap_err();
    let line = err.to_string();
    assert!(line.starts_with("INSUFFICIENT_SCOPE: "), "{line}");
    assert!(line.ends_with(&format!("(request {})", err.request_id().expect("a request id"))), "{line}");
    assert!(!line.contains('\n') && !line.contains("headers"), "{line}");
    assert_eq!(err.code(), Some(ErrorCode::InsufficientScope));
    let debug = format!("{err:?}");
    assert!(!debug.contains("x-request-id") && debug.contains("403"), "{debug}");

    let created = s
        .root
        .create_key()
        .body(types::CreateKeyRequest::builder().name("ok").scopes(["keys:read"]).resources(["site-1"]))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.key.scopes, vec!["keys:read".to_owned()]);
}
