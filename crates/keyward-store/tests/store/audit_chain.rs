//! Tampering with the audit log in the database, as an administrator could: an edited, a deleted
//! and two swapped events, and a cut-off tail, are each found at the right event, on SQLite and
//! on PostgreSQL.

use std::sync::Arc;

use keyward_core::testing::fixture::{Fixture, setup};
use keyward_core::{AuditEventId, KeyStore};

/// Six events in the fixture's workspace: workspace.created, then key.created x 5. Returns the
/// event ids by position (1-based: index 0 is position 1).
async fn events(ctx: &Fixture) -> Vec<AuditEventId> {
    for i in 0..5 {
        ctx.create(ctx.new_key(&format!("k{i}"))).await;
    }
    let mut all = ctx
        .store
        .list_audit(&keyward_core::AuditQuery {
            workspace_id: Some(ctx.ws.id),
            limit: 100,
            ..keyward_core::AuditQuery::default()
        })
        .await
        .expect("audit");
    all.reverse();
    assert_eq!(all.len(), 6);
    all.into_iter().map(|e| e.id).collect()
}

async fn broken_at(store: &Arc<dyn KeyStore>, ctx: &Fixture) -> (u64, Option<AuditEventId>, String) {
    let chains = store.verify_audit(Some(ctx.ws.id), &[]).await.expect("verify");
    let b = chains[0].broken.clone().unwrap_or_else(|| panic!("tampering went unnoticed: {chains:#?}"));
    (b.seq, b.event_id, b.reason)
}

/// A tampering: its name, the SQL it runs on a chain, the position it must be found at, and
/// whether an event is there to name (or it is missing).
type Case = (&'static str, fn(&str) -> Vec<String>, u64, bool);

/// Runs every tampering case, each on a fresh store from `fresh` (with a handle on its
/// database); `exec` runs SQL through that handle.
pub(crate) async fn tampering_is_found<H, F, E>(fresh: F, exec: E)
where
    F: AsyncFn() -> (Arc<dyn KeyStore>, H),
    E: AsyncFn(&H, String),
{
    let cases: [Case; 4] = [
        (
            "edited",
            |c| vec![format!("UPDATE audit_events SET ip = '192.0.2.66' WHERE chain = '{c}' AND seq = 3")],
            3,
            true,
        ),
        ("deleted", |c| vec![format!("DELETE FROM audit_events WHERE chain = '{c}' AND seq = 3")], 3, false),
        (
            "swapped",
            |c| {
                vec![
                    format!("UPDATE audit_events SET seq = -3 WHERE chain = '{c}' AND seq = 3"),
                    format!("UPDATE audit_events SET seq = 3 WHERE chain = '{c}' AND seq = 4"),
                    format!("UPDATE audit_events SET seq = 4 WHERE chain = '{c}' AND seq = -3"),
                ]
            },
            3,
            true,
        ),
        ("cut off", |c| vec![format!("DELETE FROM audit_events WHERE chain = '{c}' AND seq >= 5")], 5, false),
    ];
    for (name, tamper, seq, names_event) in cases {
        let (dynamic, handle) = fresh().await;
        let ctx = setup(dynamic.clone()).await;
        let ids = events(&ctx).await;
        let chains = dynamic.verify_audit(Some(ctx.ws.id), &[]).await.expect("verify");
        assert_eq!(chains[0].broken, None, "{name}: intact before");
        for sql in tamper(&ctx.ws.id.to_string()) {
            exec(&handle, sql).await;
        }
        let (at, event, reason) = broken_at(&dynamic, &ctx).await;
        assert_eq!(at, seq, "{name}: {reason}");
        if names_event {
            // Position 3 now holds position 4's event when swapped.
            let expected = if name == "swapped" { ids[3] } else { ids[2] };
            assert_eq!(event, Some(expected), "{name}: {reason}");
        } else {
            assert_eq!(event, None, "{name}: the missing event is named by its position: {reason}");
        }
        // The other workspaces' chains are not affected.
        let all = dynamic.verify_audit(None, &[]).await.expect("verify all");
        assert_eq!(all.iter().filter(|c| c.broken.is_some()).count(), 1, "{name}");
    }
}
