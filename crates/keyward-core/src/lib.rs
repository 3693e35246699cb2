//! keyward's domain, without I/O: the key format, the secret type, hashing, scopes, the model,
//! the error catalog, the [`KeyStore`] contract and the lifecycle rules of [`KeyService`].
//!
//! ```
//! use keyward_core::{KeyEnvironment, KeyFormat, KeyHasher};
//!
//! let format = KeyFormat::default();
//! let key = format.generate(KeyEnvironment::Live);
//! format.parse(key.expose_secret()).expect("well-formed");
//! let stored = KeyHasher::sha256().hash(&key);
//! assert_eq!(stored.digest.to_hex().len(), 64);
//! ```

pub mod audit_chain;
pub mod change;
pub mod client_addr;
pub mod clock;
pub mod error;
pub mod format;
pub mod hash;
pub mod http;
pub mod metrics;
pub mod model;
pub mod ratelimit;
pub mod scope;
pub mod secret;
pub mod service;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod usage;
pub mod verifier;
pub mod webhook;
pub mod webhook_signature;

pub use change::{Change, ChangeListener};
pub use client_addr::{MAX_IP_ALLOWLIST, TrustedProxies, ip_allowed, parse_ip_allowlist};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, ErrorBody, ErrorCode, ErrorObject};
pub use format::{
    KeyEnvironment, KeyFormat, KeyFormatError, KeyParseError, LegacyFormat, ParsedKey, SecretEncoding,
};
pub use hash::{KeyDigest, KeyHash, KeyHasher};
pub use http::RateLimitHeaders;
pub use ipnet::IpNet;
pub use model::{
    ApiKey, AuditAction, AuditEvent, AuditEventId, CreditRefill, DeliveryId, KeyId, KeyStatus, Plan, PlanId,
    RateLimitPolicy, RateLimitWindow, RefillInterval, UsageDay, WebhookEventId, WebhookId, Workspace,
    WorkspaceEnvironment, WorkspaceId,
};
pub use ratelimit::{
    LimitSubject, LocalRateLimiter, RateLimitError, RateLimitStatus, RateLimiter, WindowState,
};
pub use scope::{Scope, ScopeParseError, ScopePart, ScopeSet};
pub use secret::ApiKeySecret;
pub use service::{
    Actor, ActorKey, AuditFilter, CreatedKey, CreatedWebhook, ImportedKey, KeyChangeListener, KeyFilter,
    KeyPatch, KeyService, LeakPolicy, MAX_IMPORT_KEYS, MAX_LEAK_SOURCE_LEN, NewKey, NewWebhook, NewWorkspace,
    Page, WebhookPatch, WorkspaceChange, WorkspacePatch,
};
pub use store::{AuditQuery, CreditOutcome, KeyGuard, KeyListQuery, KeyStore, StoreError, UsageBatch};
pub use usage::{Unwritten, UsageRecorder, UsageSink};
pub use verifier::{
    KeyRecord, KeyResolver, PreparedKey, Presented, Requirements, StorePolicy, VerifiedKey, Verifier,
    VerifierBuilder, VerifierConfig, VerifierListener,
};
pub use webhook::{WebhookEndpoint, WebhookEventType, WebhookStore};
