//! What a route needs from a key, and the checks that need no I/O.

use chrono::{DateTime, Utc};

use super::ResolvedKey;
use super::presented::invalid;
use crate::error::{Error, ErrorCode};
use crate::model::KeyStatus;
use crate::scope::Scope;

/// What a route needs from a key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    /// Every one of these scopes must be allowed.
    pub scopes: Vec<Scope>,
    /// The resource the request touches, checked against the key's restrictions.
    pub resource: Option<String>,
    /// Credits the request costs (only for keys that use credits); 0 costs nothing.
    pub cost: u32,
    /// The client's address, checked against the key's IP allowlist (or its workspace's). `None`
    /// (unknown) is refused by every key that has a list: 403 `IP_NOT_ALLOWED`.
    pub client_ip: Option<std::net::IpAddr>,
}

impl Requirements {
    /// Requires these scopes.
    pub fn scopes(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self { scopes: scopes.into_iter().collect(), ..Self::default() }
    }
}

/// Status, expiry, plan, scopes and resources: every check that needs no I/O. `now` is called
/// only for a key that expires or is in a rotation's grace period.
pub(super) fn check_key(
    r: &ResolvedKey,
    req: &Requirements,
    now: impl Fn() -> DateTime<Utc>,
) -> Result<(), Error> {
    // Most hits: a plain key before its deadline, and the route's scopes. Only a `true` here is
    // final; anything else is decided below, with the error that says why. The deadline is
    // stored in whole milliseconds, so `deadline_ms > now_ms` means the deadline is after now.
    let gate = &r.gate;
    if gate.plain
        && (gate.deadline_ms == i64::MAX || gate.deadline_ms > now().timestamp_millis())
        && req.scopes.iter().all(|s| r.key.scopes.allows(s))
    {
        return Ok(());
    }
    let key = &r.key;
    if key.deleted_at.is_some() {
        return Err(invalid(None));
    }
    match key.status {
        KeyStatus::Revoked => return Err(Error::new(ErrorCode::KeyRevoked, "the API key was revoked")),
        KeyStatus::Inactive => return Err(Error::new(ErrorCode::KeyInactive, "the API key is deactivated")),
        KeyStatus::Active => {}
    }
    if key.grace_ends_at.is_some_and(|t| t <= now()) {
        return Err(Error::new(ErrorCode::KeyRevoked, "the API key was rotated; use its successor"));
    }
    if key.expires_at.is_some_and(|t| t <= now()) {
        return Err(Error::new(ErrorCode::KeyExpired, "the API key has expired"));
    }
    if !r.plan.api_access {
        return Err(Error::new(
            ErrorCode::FeatureNotInPlan,
            "the workspace's plan does not include API access",
        ));
    }
    let missing: Vec<String> =
        req.scopes.iter().filter(|s| !key.scopes.allows(s)).map(ToString::to_string).collect();
    if !missing.is_empty() {
        return Err(Error::new(
            ErrorCode::InsufficientScope,
            format!("the API key lacks scope `{}`", missing[0]),
        )
        .with_detail("missing", missing));
    }
    if let Some(resource) = &req.resource
        && !key.resources.is_empty()
        && !key.resources.iter().any(|r| r == resource)
    {
        return Err(Error::new(
            ErrorCode::ResourceNotAllowed,
            "the API key is not allowed to use this resource",
        )
        .with_detail("resource", resource.clone()));
    }
    if let Err(addr) =
        crate::client_addr::ip_allowed(&key.ip_allowlist, &r.workspace.ip_allowlist, req.client_ip)
    {
        let e = Error::new(ErrorCode::IpNotAllowed, "the API key may not be used from this address");
        return Err(match addr {
            Some(a) => e.with_detail("address", a.to_string()),
            None => e.with_detail("reason", "the client's address is unknown"),
        });
    }
    Ok(())
}
