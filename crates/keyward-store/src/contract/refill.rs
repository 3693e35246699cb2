//! Credits that refill: once per period, decided by the store on the stored row.

use chrono::{TimeZone, Utc};
use keyward_core::{CreditRefill, RefillInterval};

use super::*;

fn at(y: i32, m: u32, d: u32, h: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).single().expect("a valid time")
}

fn daily(amount: i64) -> CreditRefill {
    CreditRefill { interval: RefillInterval::Daily, amount, day: None }
}

/// A daily refill sets the credits to its amount at the first call of the next UTC day, once;
/// the call that refilled writes one `key.credits_refilled` event, later calls nothing.
pub async fn daily_refill_sets_credits_once_per_day(store: Arc<dyn KeyStore>) {
    let ctx = setup_at(store, ManualClock::new(at(2027, 3, 10, 15))).await;
    let key = ctx.create(NewKey { refill: Some(daily(10)), ..ctx.new_key("daily") }).await.key;
    assert_eq!((key.credits, key.refilled_at), (Some(10), Some(ctx.now())), "created full, refilled now");
    assert_eq!(ctx.stored(key.id).await, key);
    assert_eq!(ctx.store.consume_credits(key.id, 7).await.expect("consume"), CreditOutcome::Remaining(3));

    ctx.clock.advance(Duration::hours(8)); // 23:00, the same day
    assert_eq!(ctx.store.refill_if_due(&key, ctx.now()).await.expect("refill"), None, "not in the same day");
    assert_eq!(ctx.stored(key.id).await.credits, Some(3));

    ctx.clock.advance(Duration::hours(1)); // 00:00 the next day
    let stale = key.clone(); // a copy from before, as a cache holds it
    assert_eq!(ctx.store.refill_if_due(&stale, ctx.now()).await.expect("refill"), Some(10));
    assert_eq!(ctx.store.refill_if_due(&stale, ctx.now()).await.expect("refill"), None, "once per day");
    let stored = ctx.stored(key.id).await;
    assert_eq!((stored.credits, stored.refilled_at), (Some(10), Some(ctx.now())));
    assert_eq!(stored.version, key.version, "a refill is not a change of the record");
    assert_eq!(ctx.count_events(key.id, AuditAction::KeyCreditsRefilled).await, 1);
    let ev = ctx.events(key.id).await.into_iter().next().expect("an event");
    assert_eq!(
        (ev.action, ev.actor_key_id, ev.workspace_id),
        (AuditAction::KeyCreditsRefilled, None, Some(ctx.ws.id))
    );

    // Reads through the service refill too.
    ctx.store.consume_credits(key.id, 10).await.expect("consume");
    ctx.clock.advance(Duration::days(1));
    assert_eq!(ctx.service.get_key(ctx.ws.id, key.id).await.expect("get").credits, Some(10));
    assert_eq!(ctx.count_events(key.id, AuditAction::KeyCreditsRefilled).await, 2);

    let plain = ctx.key("no refill").await;
    assert_eq!(
        ctx.store
            .refill_credits(
                plain.id,
                ctx.now(),
                &raw_event(AuditAction::KeyCreditsRefilled, ctx.ws.id, plain.id, ctx.now())
            )
            .await,
        Ok(None)
    );
    assert_eq!(ctx.count_events(plain.id, AuditAction::KeyCreditsRefilled).await, 0);
}

/// A monthly refill on day 31 refills on the last day of shorter months (Feb 28), and only at
/// 00:00 UTC of that day.
pub async fn monthly_refill_on_day_31_crosses_short_months(store: Arc<dyn KeyStore>) {
    let ctx = setup_at(store, ManualClock::new(at(2027, 1, 31, 12))).await;
    let refill = CreditRefill { interval: RefillInterval::Monthly, amount: 100, day: Some(31) };
    let key =
        ctx.create(NewKey { credits: Some(5), refill: Some(refill), ..ctx.new_key("monthly") }).await.key;
    assert_eq!(key.credits, Some(5), "given credits are kept until the first refill");

    let mut now = at(2027, 2, 27, 23);
    assert_eq!(ctx.store.refill_if_due(&key, now).await.expect("refill"), None, "February 27 is too early");
    now = at(2027, 2, 28, 0);
    assert_eq!(ctx.store.refill_if_due(&key, now).await.expect("refill"), Some(100), "February has no 31st");
    ctx.store.consume_credits(key.id, 40).await.expect("consume");
    now = at(2027, 3, 30, 23);
    assert_eq!(ctx.store.refill_if_due(&key, now).await.expect("refill"), None, "March 30 is too early");
    assert_eq!(ctx.stored(key.id).await.credits, Some(60));
    now = at(2027, 3, 31, 1);
    assert_eq!(ctx.store.refill_if_due(&key, now).await.expect("refill"), Some(100));
    assert_eq!(ctx.count_events(key.id, AuditAction::KeyCreditsRefilled).await, 2);
}

/// Many concurrent refills in one period (from one copy of the key, as nodes' caches hold it)
/// refill once and write one audit event.
pub async fn concurrent_refills_refill_once(store: Arc<dyn KeyStore>) {
    let ctx = setup_at(store, ManualClock::new(at(2027, 5, 1, 9))).await;
    let key = ctx.create(NewKey { refill: Some(daily(50)), ..ctx.new_key("busy") }).await.key;
    ctx.store.consume_credits(key.id, 50).await.expect("consume");
    let next_day = at(2027, 5, 2, 0);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, key) = (ctx.store.clone(), key.clone());
            tokio::spawn(async move { store.refill_if_due(&key, next_day).await })
        })
        .collect();
    let mut refilled = 0;
    for t in tasks {
        if t.await.expect("task").expect("refill").is_some() {
            refilled += 1;
        }
    }
    assert_eq!(refilled, 1, "exactly one call refills");
    assert_eq!(ctx.stored(key.id).await.credits, Some(50));
    assert_eq!(ctx.count_events(key.id, AuditAction::KeyCreditsRefilled).await, 1);
}

/// A rotated key's successor inherits the refill, the credits and the last refill; the old key
/// keeps neither credits nor a refill of its own that could be spent twice.
pub async fn rotation_hands_the_refill_to_the_successor(store: Arc<dyn KeyStore>) {
    let ctx = setup_at(store, ManualClock::new(at(2027, 6, 1, 9))).await;
    let key = ctx.create(NewKey { refill: Some(daily(20)), ..ctx.new_key("rotating") }).await.key;
    ctx.store.consume_credits(key.id, 5).await.expect("consume");
    let rotated = ctx.service.rotate_key(ctx.ws.id, key.id, None, &Actor::system()).await.expect("rotate");
    let successor = ctx.stored(rotated.key.id).await;
    assert_eq!(
        (successor.refill, successor.credits, successor.refilled_at),
        (Some(daily(20)), Some(15), key.refilled_at)
    );
    assert_eq!(ctx.stored(key.id).await.credits, Some(0));
    ctx.clock.advance(Duration::days(1));
    assert_eq!(ctx.service.get_key(ctx.ws.id, successor.id).await.expect("get").credits, Some(20));
}
