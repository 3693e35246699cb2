//! A key's whole life through the SDK: create, list (paginated), get, patch, deactivate,
//! activate, rotate (at once and with grace), revoke, delete.

use keyward_client::{CatalogErrorExt, ErrorCode, types};

use crate::support::{Server, expect_catalog};

#[tokio::test]
async fn whole_key_lifecycle() {
    let s = Server::start().await;
    let status = s.root.status().send().await.unwrap();
    assert!(status.valid);
    assert_eq!(status.workspace_id, s.workspace);
    assert_eq!(status.scopes, ["*"]);

    // Create: the value is shown once, the view is masked.
    let created = s.create(&s.root, "ci", &["keys:read", "keys:write"]).await;
    let secret = created.secret.expose_secret().to_owned();
    assert!(secret.starts_with("kw_live_"));
    assert!(!format!("{created:?}").contains(&secret), "Debug redacts the value");
    assert_eq!(created.key.masked_key, format!("{}…{}", &secret[..12], &secret[secret.len() - 4..]));
    assert_eq!(created.key.status, types::KeyStatus::Active);
    let id = created.key.id;
    let ci = s.client(&created);
    assert_eq!(ci.status().send().await.unwrap().key_id, id, "the new key works");

    // Get.
    let detail = s.root.get_key().id(id).send().await.unwrap();
    assert_eq!(detail.key.name, "ci");
    assert_eq!(detail.key.scopes, ["keys:read", "keys:write"]);

    // Patch.
    let patch = types::UpdateKeyRequest::builder()
        .name(Some("ci-renamed".to_owned()))
        .scopes(Some(vec!["keys:read".to_owned()]))
        .metadata(Some([("team".to_owned(), "infra".to_owned())].into()));
    let patched = s.root.update_key().id(id).body(patch).send().await.unwrap();
    assert_eq!(patched.name, "ci-renamed");
    assert_eq!(patched.scopes, ["keys:read"]);
    assert_eq!(patched.metadata["team"], "infra");
    let refused = ci.create_key().body(types::CreateKeyRequest::builder().name("x")).send().await;
    expect_catalog(refused, 403, ErrorCode::InsufficientScope);

    // Deactivate and activate.
    let inactive = s.root.deactivate_key().id(id).send().await.unwrap();
    assert_eq!(inactive.status, types::KeyStatus::Inactive);
    expect_catalog(ci.status().send().await, 401, ErrorCode::KeyInactive);
    let active = s.root.activate_key().id(id).send().await.unwrap();
    assert_eq!(active.status, types::KeyStatus::Active);
    ci.status().send().await.unwrap();

    // Rotate at once: the old value stops, the new one works with the same settings.
    let rotated = s
        .root
        .rotate_key()
        .id(id)
        .body(types::RotateKeyRequest { grace_seconds: None })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_ne!(rotated.secret.expose_secret(), secret);
    assert_eq!(rotated.key.rotated_from, Some(id));
    assert_eq!(rotated.key.name, "ci-renamed");
    expect_catalog(ci.status().send().await, 401, ErrorCode::KeyRevoked);
    let second = s.client(&rotated);
    second.status().send().await.unwrap();

    // Rotate with grace: both work until the grace period ends.
    let graced = s
        .root
        .rotate_key()
        .id(rotated.key.id)
        .body(types::RotateKeyRequest { grace_seconds: Some(60) })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(graced.key.rotated_from == Some(rotated.key.id));
    let third = s.client(&graced);
    second.status().send().await.expect("the old key works during the grace period");
    third.status().send().await.unwrap();
    s.advance(61);
    expect_catalog(second.status().send().await, 401, ErrorCode::KeyRevoked);
    third.status().send().await.unwrap();

    // Delete needs a revoked key; revoke, then delete.
    let current = graced.key.id;
    expect_catalog(s.root.delete_key().id(current).send().await, 409, ErrorCode::KeyNotRevoked);
    let revoked = s.root.revoke_key().id(current).send().await.unwrap();
    assert_eq!(revoked.status, types::KeyStatus::Revoked);
    expect_catalog(third.status().send().await, 401, ErrorCode::KeyRevoked);
    expect_catalog(s.root.activate_key().id(current).send().await, 409, ErrorCode::Conflict);
    let deleted = s.root.delete_key().id(current).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    expect_catalog(s.root.get_key().id(current).send().await, 404, ErrorCode::NotFound);
    expect_catalog(third.status().send().await, 401, ErrorCode::InvalidApiKey);
}

#[tokio::test]
async fn rotation_without_a_body() {
    let s = Server::start().await;
    let created = s.create(&s.root, "k", &[]).await;
    // The spec makes the body optional; `None` is sent as JSON `null`.
    let result = s.root.rotate_key().id(created.key.id).body(None::<types::RotateKeyRequest>).send().await;
    match result {
        Ok(rotated) => assert_eq!(rotated.key.rotated_from, Some(created.key.id)),
        Err(e) => panic!("rotating with no body: {:?} {:?}", e.code(), e.message()),
    }
}

#[tokio::test]
async fn list_pages_through_every_key_once() {
    let s = Server::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(s.create(&s.root, &format!("k{i}"), &[]).await.key.id);
    }
    s.root.revoke_key().id(ids[1]).send().await.unwrap();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut request = s.root.list_keys().limit(2u32);
        if let Some(c) = cursor.take() {
            request = request.cursor(c);
        }
        let page = request.send().await.unwrap().into_inner();
        pages += 1;
        assert!(page.data.len() <= 2);
        seen.extend(page.data.iter().map(|k| k.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 6, "5 keys and the root key");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "each once");
    assert_eq!(seen[0], ids[4], "newest first");

    let revoked = s.root.list_keys().status("revoked").send().await.unwrap();
    assert_eq!(revoked.data.iter().map(|k| k.id).collect::<Vec<_>>(), [ids[1]]);
}
