//! Workspaces are isolated: the root key acts in another workspace with `X-Workspace-Id`
//! (`KeywardClient::in_workspace`); a key of that workspace cannot see ours.

use keyward_client::{ErrorCode, types};

use crate::support::{Server, expect_catalog};

#[tokio::test]
async fn another_workspaces_key_id_is_not_found() {
    let s = Server::start().await;
    let ws = s
        .root
        .create_workspace()
        .body(types::CreateWorkspaceRequest::builder().name("other"))
        .send()
        .await
        .unwrap();
    assert_eq!(ws.name, "other");
    let as_other = s.root.in_workspace(ws.id);
    let theirs = s.create(&as_other, "their admin", &["keys:*"]).await;
    assert_eq!(theirs.key.workspace_id, ws.id, "created in the named workspace");
    let them = s.client(&theirs);
    assert_eq!(them.status().send().await.unwrap().workspace_id, ws.id);

    let mine = s.create(&s.root, "mine", &["keys:read"]).await;
    expect_catalog(them.get_key().id(mine.key.id).send().await, 404, ErrorCode::NotFound);
    expect_catalog(them.revoke_key().id(mine.key.id).send().await, 404, ErrorCode::NotFound);
    expect_catalog(them.delete_key().id(mine.key.id).send().await, 404, ErrorCode::NotFound);
    let listed = them.list_keys().send().await.unwrap();
    assert_eq!(listed.data.iter().map(|k| k.id).collect::<Vec<_>>(), [theirs.key.id], "only its own key");

    // The root key sees both workspaces, one at a time.
    let there = as_other.list_keys().send().await.unwrap();
    assert_eq!(there.data.len(), 1);
    assert_eq!(s.root.get_key().id(mine.key.id).send().await.unwrap().key.id, mine.key.id);
    expect_catalog(as_other.get_key().id(mine.key.id).send().await, 404, ErrorCode::NotFound);
    // A non-internal key may not name another workspace.
    let sneaky = them.in_workspace(s.workspace);
    let err = sneaky.list_keys().send().await.expect_err("refused");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(403), "{err:?}");
}
