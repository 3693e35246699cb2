//! Two nodes changing one key at once leave one consistent result; two nodes starting on an
//! empty database create one root key.

use keyward_core::{KeyId, KeyStatus};
use keyward_server::serve::node;
use keyward_store::testing::PgTestSchema;
use reqwest::{Method, StatusCode};

use crate::support::{Cluster, config};

const ROUNDS: usize = 15;

/// The same key rotated through both nodes at once: exactly one rotation wins (the other is a
/// 409), and the key has exactly one live successor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_on_two_nodes_leave_one_successor() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let c = Cluster::start(schema, None, |a| a, |b| b).await;
    let store = c.a.node.database.store();
    for round in 0..ROUNDS {
        let (id, _) = c.key(|k| k).await;
        let path = format!("/v1/keys/{id}/rotate");
        let body = || Some(serde_json::json!({}));
        let (ra, rb) = tokio::join!(
            c.a.call(Method::POST, &path, &c.admin, body()),
            c.b.call(Method::POST, &path, &c.admin, body())
        );
        let mut statuses = [ra.status.as_u16(), rb.status.as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}: one wins, one conflicts: {} / {}", ra.body, rb.body);
        let winner = if ra.status == StatusCode::CREATED { &ra } else { &rb };
        let successor: KeyId = winner.body["key"]["id"].as_str().expect("id").parse().expect("key id");

        let old = store.get_key(id.parse().expect("id")).await.expect("get").expect("old");
        assert_eq!(old.rotated_to, Some(successor));
        assert_eq!(old.status, KeyStatus::Revoked);
        let keys = c.a.node.state.service.list_keys(c.ws.id, Default::default()).await.expect("list");
        let successors: Vec<_> = keys.items.iter().filter(|k| k.rotated_from == Some(old.id)).collect();
        assert_eq!(successors.len(), 1, "round {round}: exactly one successor");
        assert_eq!((successors[0].id, successors[0].status), (successor, KeyStatus::Active));
    }
    c.stop().await;
}

/// A revocation on one node racing a rotation on the other: whichever wins, the key ends revoked,
/// with at most one successor, which exists exactly when the rotation succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_racing_a_rotation_is_consistent() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let c = Cluster::start(schema, None, |a| a, |b| b).await;
    let store = c.a.node.database.store();
    let mut rotated_first = 0;
    for round in 0..ROUNDS {
        let (id, _) = c.key(|k| k).await;
        let (revoke_path, rotate_path) = (format!("/v1/keys/{id}/revoke"), format!("/v1/keys/{id}/rotate"));
        let (revoke, rotate) = tokio::join!(
            c.a.call(Method::POST, &revoke_path, &c.admin, None),
            c.b.call(Method::POST, &rotate_path, &c.admin, Some(serde_json::json!({})))
        );
        assert_eq!(revoke.status, StatusCode::OK, "round {round}: revoking is idempotent: {}", revoke.body);
        let old = store.get_key(id.parse().expect("id")).await.expect("get").expect("old");
        assert_eq!(old.status, KeyStatus::Revoked, "round {round}");
        let keys = c.a.node.state.service.list_keys(c.ws.id, Default::default()).await.expect("list");
        let successors: Vec<_> = keys.items.iter().filter(|k| k.rotated_from == Some(old.id)).collect();
        match rotate.status {
            StatusCode::CREATED => {
                rotated_first += 1;
                assert_eq!(successors.len(), 1, "round {round}");
                assert_eq!(old.rotated_to, Some(successors[0].id));
            }
            StatusCode::CONFLICT => {
                assert!(successors.is_empty(), "round {round}: no successor for a refused rotation");
                assert_eq!(old.rotated_to, None);
            }
            other => panic!("round {round}: {other}: {}", rotate.body),
        }
    }
    eprintln!("revoke vs rotate: rotation won {rotated_first} of {ROUNDS} rounds");
    c.stop().await;
}

/// Nodes starting together on an empty schema: one root key in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_bootstrap_once() {
    for _ in 0..3 {
        let Some(schema) = PgTestSchema::from_env() else { return };
        let cfg = config(&schema, schema.url(), None);
        let (a, b, c) = tokio::join!(node(&cfg), node(&cfg), node(&cfg));
        let nodes = [a.expect("node"), b.expect("node"), c.expect("node")];
        assert_eq!(nodes.iter().filter(|n| n.root.is_some()).count(), 1, "exactly one node bootstraps");
        let service = &nodes[0].state.service;
        let workspaces = service.list_workspaces().await.expect("list");
        assert_eq!(workspaces.len(), 1);
        let keys = service.list_keys(workspaces[0].id, Default::default()).await.expect("keys");
        assert_eq!(keys.items.len(), 1, "one root key");
        let root = nodes.iter().find_map(|n| n.root.as_ref()).expect("root");
        let verified = nodes[2].state.verifier.verify(root.secret.expose_secret(), &Default::default()).await;
        assert!(verified.is_ok(), "the root key works on every node");
        for n in nodes {
            n.shutdown().await.expect("shutdown");
        }
    }
}
