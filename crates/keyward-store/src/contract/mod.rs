//! The contract every [`KeyStore`] backend must pass (feature `testing`).
//!
//! Each case is a public async function taking a fresh, empty store, about what a store itself
//! must guarantee: records round-trip, listing and pagination (also under concurrent inserts),
//! compare-and-swap and all-or-nothing writes with their audit events, guards and key limits and
//! credits decided atomically under concurrency, the audit log and usage. The lifecycle rules on
//! top (who may do what, which state allows which change) are the service's, tested in
//! keyward-core on its in-memory store. Nothing here knows which database is underneath.
//!
//! A backend's test binary runs the whole suite with [`keyward_store_contract!`](crate::keyward_store_contract), given an
//! async expression that makes a fresh store each time it is evaluated. The calling crate needs
//! `tokio` (features `macros`, `rt-multi-thread`) among its dev-dependencies.
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")]
//! mod contract {
//!     use std::sync::Arc;
//!     use keyward_store::SqliteStore;
//!
//!     async fn fresh() -> Arc<SqliteStore> {
//!         Arc::new(SqliteStore::open("sqlite::memory:").await.expect("open"))
//!     }
//!
//!     keyward_store::keyward_store_contract!(fresh());
//! }
//! # fn main() {}
//! ```
//!
//! A backend whose database may be absent (PostgreSQL without `KEYWARD_TEST_POSTGRES_URL`)
//! uses the `optional` form, whose factory returns `Option<Arc<dyn KeyStore>>`: `None` prints
//! that the case was skipped.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{Duration, NaiveDate};
use keyward_core::{
    Actor, ApiKey, AuditAction, AuditEvent, AuditEventId, AuditFilter, AuditQuery, CreatedKey, CreditOutcome,
    ErrorCode, KeyDigest, KeyEnvironment, KeyFilter, KeyGuard, KeyHasher, KeyId, KeyListQuery, KeyPatch,
    KeyRecord, KeyStatus, KeyStore, ManualClock, NewKey, NewWorkspace, Plan, RateLimitPolicy,
    RateLimitWindow, StoreError, UsageBatch, UsageDay, Workspace, WorkspaceEnvironment, WorkspaceId,
    WorkspacePatch,
};

pub use keyward_core::testing::fixture::*;

mod atomicity;
mod audit;
mod import;
mod limits;
mod listing;
mod lookup;
mod refill;
mod webhooks;

pub use atomicity::*;
pub use audit::*;
pub use import::*;
pub use limits::*;
pub use listing::*;
pub use lookup::*;
pub use refill::*;
pub use webhooks::*;

/// Runs every contract case as a `#[tokio::test]` against the stores `$make` builds.
///
/// `$make` is an async expression evaluated once per case, e.g. `fresh_store()` for an
/// `async fn fresh_store() -> Arc<dyn KeyStore>` (any `Arc<impl KeyStore>` works too). With
/// `optional $make`, the expression yields an `Option` and `None` skips the case with a message.
/// See the [module docs](crate::contract).
#[macro_export]
macro_rules! keyward_store_contract {
    (optional $make:expr) => {
        $crate::keyward_store_contract!(@cases [optional] $make);
    };
    ($make:expr) => {
        $crate::keyward_store_contract!(@cases [required] $make);
    };
    (@cases [$mode:ident] $make:expr) => {
        $crate::keyward_store_contract!(@each [$mode] $make;
            find_key_by_digest,
            find_key_record_by_digest,
            key_round_trips_every_field,
            list_filters_by_status,
            list_paginates_newest_first,
            pagination_is_stable_under_concurrent_inserts,
            concurrent_rotations_leave_one_successor,
            store_rotation_is_compare_and_swap,
            rotation_is_never_seen_half_done,
            concurrent_creates_at_the_key_limit,
            store_key_limit_counts_only_live_keys,
            audit_list_filters_and_pages,
            audit_purge_keeps_recent_events,
            audit_chain_holds_across_writes_and_purges,
            consume_credits_outcomes,
            concurrent_consumption_never_goes_negative,
            usage_counts_per_day,
            update_key_conflicts_on_a_stale_version,
            update_key_leaves_credits_and_last_use,
            duplicates_are_rejected,
            writes_are_atomic_with_their_audit_event,
            plans_and_workspaces,
            guarded_updates_keep_a_key_admin,
            concurrent_guarded_updates_keep_a_key_admin,
            list_filter_sees_ended_grace_as_revoked,
            daily_refill_sets_credits_once_per_day,
            monthly_refill_on_day_31_crosses_short_months,
            concurrent_refills_refill_once,
            rotation_hands_the_refill_to_the_successor,
            insert_keys_is_all_or_nothing,
            insert_keys_respects_the_key_limit,
            webhook_events_follow_their_changes_in_order_per_key,
            webhook_failures_retry_fail_and_disable_the_endpoint,
            concurrent_webhook_claims_never_share_a_delivery,
            credits_low_and_expiry_notices_are_sent_once,
        );
    };
    (@each [$mode:ident] $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $crate::keyward_store_contract!(@store [$mode] $make, $case);
                $crate::contract::$case(store).await;
            }
        )+
    };
    (@store [required] $make:expr, $case:ident) => {
        $make.await
    };
    (@store [optional] $make:expr, $case:ident) => {
        match $make.await {
            ::std::option::Option::Some(store) => store,
            ::std::option::Option::None => {
                ::std::eprintln!("skipped {}: no store configured", ::std::stringify!($case));
                return;
            }
        }
    };
}
