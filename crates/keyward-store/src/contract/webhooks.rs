//! Webhooks: events written with their change, claimed with leases, in order per key, retried,
//! failed, and endpoints disabled after too many failures.

use std::time::Duration as StdDuration;

use keyward_core::webhook::{
    AttemptResult, ClaimedDelivery, DeliveryAttempt, DeliveryState, DisablePolicy, EndpointOutcome,
    WebhookEventType,
};
use keyward_core::{KeyService, NewWebhook, WebhookStore};

use super::*;

const LEASE: StdDuration = StdDuration::from_secs(60);
const NEVER: DisablePolicy = DisablePolicy { after_failures: u32::MAX };

fn hooks(ctx: &Fixture) -> &dyn WebhookStore {
    ctx.store.webhooks().expect("the store keeps webhooks")
}

async fn endpoint(
    service: &KeyService,
    ws: WorkspaceId,
    events: &[WebhookEventType],
) -> keyward_core::WebhookId {
    let new = NewWebhook {
        workspace_id: ws,
        url: "https://hooks.example.invalid/keyward".into(),
        description: String::new(),
        events: events.to_vec(),
        enabled: true,
    };
    service.create_webhook(new, &Actor::system()).await.expect("create webhook").endpoint.id
}

async fn claim(ctx: &Fixture) -> Vec<ClaimedDelivery> {
    hooks(ctx).claim_deliveries(chrono::Utc::now(), LEASE, 100).await.expect("claim")
}

fn attempt(status: Option<u16>) -> DeliveryAttempt {
    DeliveryAttempt { number: 0, at: chrono::Utc::now(), status, error: None, duration_ms: 3 }
}

async fn deliver(ctx: &Fixture, d: &ClaimedDelivery) {
    let done = hooks(ctx).record_attempt(d, &attempt(Some(200)), &AttemptResult::Delivered, NEVER).await;
    assert_eq!(done.expect("record"), EndpointOutcome::Unchanged);
}

fn payload(d: &ClaimedDelivery) -> serde_json::Value {
    serde_json::from_str(&d.payload).expect("a JSON payload")
}

/// A key's changes each write their event in their own transaction, to the endpoints that
/// subscribe; one endpoint receives one key's events one at a time, in order; no payload
/// carries the key's plaintext or digest.
pub async fn webhook_events_follow_their_changes_in_order_per_key(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let ws = ctx.ws.id;
    let all = endpoint(&ctx.service, ws, &[]).await;
    let revokes = endpoint(&ctx.service, ws, &[WebhookEventType::KeyRevoked]).await;
    let created = ctx.create(ctx.new_key("billing")).await;
    let other = ctx.create(ctx.new_key("other")).await;
    let id = created.key.id;
    ctx.service.deactivate_key(ws, id, &Actor::system()).await.expect("deactivate");
    ctx.service.revoke_key(ws, id, &Actor::system()).await.expect("revoke");

    // One per key and endpoint at a time: the first change of each key for `all`, and the
    // revocation for `revokes` (its only subscription).
    let first = claim(&ctx).await;
    let seen: Vec<_> = first
        .iter()
        .map(|d| (d.endpoint_id, d.event_type, payload(d)["data"]["key"]["id"].clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (all, WebhookEventType::KeyCreated, serde_json::json!(id)),
            (all, WebhookEventType::KeyCreated, serde_json::json!(other.key.id)),
            (revokes, WebhookEventType::KeyRevoked, serde_json::json!(id)),
        ]
    );
    for d in &first {
        let text = &d.payload;
        assert!(!text.contains(created.secret.expose_secret()), "a payload carries the plaintext");
        assert!(!text.contains(&created.key.hash.digest.to_hex()), "a payload carries the digest");
        assert!(!text.contains(other.secret.expose_secret()), "a payload carries the plaintext");
    }
    assert_eq!(payload(&first[0])["type"], "key.created");
    assert_eq!(payload(&first[0])["data"]["key"]["maskedKey"], created.key.masked());
    assert!(claim(&ctx).await.is_empty(), "claimed deliveries are leased; the next of a key waits");

    // Delivering the first makes the next change of the key due, and so on.
    for d in &first {
        deliver(&ctx, d).await;
    }
    let next = claim(&ctx).await;
    assert_eq!(
        next.iter().map(|d| (d.endpoint_id, d.event_type)).collect::<Vec<_>>(),
        vec![(all, WebhookEventType::KeyUpdated)]
    );
    assert_eq!(payload(&next[0])["data"]["key"]["status"], "inactive");
    assert_eq!(payload(&next[0])["data"]["action"], "key.deactivated");
    deliver(&ctx, &next[0]).await;
    let last = claim(&ctx).await;
    assert_eq!(
        last.iter().map(|d| (d.endpoint_id, d.event_type)).collect::<Vec<_>>(),
        vec![(all, WebhookEventType::KeyRevoked)]
    );
    // One event, one id, whichever endpoint receives it.
    assert_eq!(last[0].event_id, first[2].event_id);
    deliver(&ctx, &last[0]).await;
    assert!(claim(&ctx).await.is_empty());

    let page = hooks(&ctx)
        .list_deliveries(&keyward_core::webhook::DeliveryQuery {
            endpoint_id: all,
            state: None,
            before: None,
            limit: 10,
        })
        .await
        .expect("list");
    assert_eq!(page.len(), 4);
    assert!(page.iter().all(|d| d.state == DeliveryState::Delivered && d.attempts.len() == 1));
    assert_eq!(page[0].event_type, WebhookEventType::KeyRevoked, "newest first");
}

/// A failed attempt is retried at the time the worker chose; past its window it fails; an
/// endpoint failing too often is disabled, with an audit event and a `webhook.disabled` event to
/// the workspace's other endpoints; a resend makes a failed delivery due again.
pub async fn webhook_failures_retry_fail_and_disable_the_endpoint(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let ws = ctx.ws.id;
    let failing = endpoint(&ctx.service, ws, &[WebhookEventType::KeyCreated]).await;
    let watcher = endpoint(&ctx.service, ws, &[WebhookEventType::WebhookDisabled]).await;
    let policy = DisablePolicy { after_failures: 2 };
    ctx.create(ctx.new_key("a")).await;

    let d = claim(&ctx).await.pop().expect("a delivery");
    let later = chrono::Utc::now() + Duration::seconds(30);
    let outcome =
        hooks(&ctx).record_attempt(&d, &attempt(Some(500)), &AttemptResult::RetryAt(later), policy).await;
    assert_eq!(outcome.expect("record"), EndpointOutcome::Unchanged);
    assert!(claim(&ctx).await.is_empty(), "not due before its retry time");
    let again = hooks(&ctx).claim_deliveries(later, LEASE, 10).await.expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    // Recording under a lease that was lost changes nothing.
    let stale = hooks(&ctx).record_attempt(&d, &attempt(None), &AttemptResult::Failed, policy).await;
    assert_eq!(stale.expect("record"), EndpointOutcome::LeaseLost);

    let outcome = hooks(&ctx).record_attempt(&again[0], &attempt(None), &AttemptResult::Failed, policy).await;
    assert_eq!(outcome.expect("record"), EndpointOutcome::Disabled);
    let disabled = ctx.service.webhook(ws, failing).await.expect("get");
    assert!(!disabled.enabled);
    assert_eq!(disabled.consecutive_failures, 2);
    assert!(disabled.disabled_reason.as_deref().is_some_and(|r| r.contains('2')));
    let audit = ctx
        .store
        .list_audit(&AuditQuery {
            action: Some(AuditAction::WebhookDisabled),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    assert_eq!(audit.len(), 1);
    let notice = claim(&ctx).await;
    assert_eq!(notice.len(), 1);
    assert_eq!((notice[0].endpoint_id, notice[0].event_type), (watcher, WebhookEventType::WebhookDisabled));
    assert_eq!(payload(&notice[0])["data"]["webhookId"], serde_json::json!(failing));

    let failed = ctx.service.webhook_deliveries(ws, failing, None, None, None).await.expect("list").items;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].state, DeliveryState::Failed);
    assert_eq!(
        failed[0].attempts.iter().map(|a| (a.number, a.status)).collect::<Vec<_>>(),
        vec![(1, Some(500)), (2, None)]
    );

    // A disabled endpoint's deliveries wait; enabled again (failures reset) and resent, it is
    // due again, with the same event id.
    let patch = keyward_core::WebhookPatch { enabled: Some(true), ..Default::default() };
    let enabled = ctx.service.update_webhook(ws, failing, patch, &Actor::system()).await.expect("enable");
    assert_eq!((enabled.enabled, enabled.consecutive_failures, enabled.disabled_reason), (true, 0, None));
    assert!(claim(&ctx).await.iter().all(|c| c.endpoint_id != failing), "a failed delivery stays failed");
    let resent = ctx.service.resend_delivery(ws, failed[0].id).await.expect("resend");
    assert_eq!(resent.state, DeliveryState::Pending);
    let due = claim(&ctx).await;
    assert_eq!(due.iter().map(|c| c.event_id).collect::<Vec<_>>(), vec![d.event_id]);
}

/// Concurrent workers never claim one delivery twice, and together claim every one.
pub async fn concurrent_webhook_claims_never_share_a_delivery(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let ws = ctx.ws.id;
    endpoint(&ctx.service, ws, &[WebhookEventType::KeyCreated]).await;
    const KEYS: usize = 60;
    for i in 0..KEYS {
        ctx.create(ctx.new_key(&format!("k{i}"))).await;
    }
    let workers = (0..4).map(|_| {
        let store = ctx.store.clone();
        tokio::spawn(async move {
            let hooks = store.webhooks().expect("webhooks");
            let mut mine = Vec::new();
            loop {
                let got = hooks.claim_deliveries(chrono::Utc::now(), LEASE, 7).await.expect("claim");
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|d| d.id));
            }
        })
    });
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "a delivery was claimed twice");
    assert_eq!(all.len(), KEYS);
}

/// `key.credits_low` is written by the spend that crosses the key's threshold, once; refilled
/// above it, the key crosses again. `key.expiring` notices are sent once per expiry.
pub async fn credits_low_and_expiry_notices_are_sent_once(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let ws = ctx.ws.id;
    endpoint(&ctx.service, ws, &[WebhookEventType::KeyCreditsLow, WebhookEventType::KeyExpiring]).await;
    let mut new = ctx.new_key("metered");
    new.credits = Some(10);
    new.credits_low_threshold = Some(5);
    let key = ctx.create(new).await.key;
    for _ in 0..4 {
        ctx.store.consume_credits(key.id, 1).await.expect("spend");
    }
    assert!(claim(&ctx).await.is_empty(), "6 left: above the threshold");
    ctx.store.consume_credits(key.id, 2).await.expect("spend");
    let low = claim(&ctx).await;
    assert_eq!(low.len(), 1);
    assert_eq!(low[0].event_type, WebhookEventType::KeyCreditsLow);
    assert_eq!(payload(&low[0])["data"]["credits"], 4);
    assert_eq!(payload(&low[0])["data"]["threshold"], 5);
    deliver(&ctx, &low[0]).await;
    ctx.store.consume_credits(key.id, 1).await.expect("spend");
    assert!(claim(&ctx).await.is_empty(), "sent once, when crossing");

    let now = ctx.now();
    let mut soon = ctx.new_key("soon");
    soon.expires_at = Some(now + Duration::days(3));
    let soon = ctx.create(soon).await.key;
    let mut late = ctx.new_key("late");
    late.expires_at = Some(now + Duration::days(30));
    ctx.create(late).await;
    let hooks = hooks(&ctx);
    let expiring = hooks.keys_expiring(now, now + Duration::days(7), 100).await.expect("expiring");
    assert_eq!(expiring.iter().map(|k| k.id).collect::<Vec<_>>(), vec![soon.id]);
    let notice = keyward_core::webhook::expiring_notice(&soon).expect("an expiry");
    let event = keyward_core::webhook::expiring_event(&soon, now);
    assert!(hooks.enqueue(&event, Some(&notice)).await.expect("enqueue"));
    assert!(!hooks.enqueue(&event, Some(&notice)).await.expect("enqueue"), "sent once");
    assert!(hooks.keys_expiring(now, now + Duration::days(7), 100).await.expect("expiring").is_empty());
    let sent = claim(&ctx).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].event_type, WebhookEventType::KeyExpiring);
}
