//! Who acts: the system, or a key whose powers bound what it may do.

use crate::error::{Error, ErrorCode};
use crate::model::{ApiKey, KeyId, Plan, WorkspaceId};
use crate::scope::ScopeSet;

/// Who performs a change, and from where. Recorded in the audit log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Actor {
    /// The key that acts; `None` for the system (CLI, first start, internal jobs).
    pub key: Option<ActorKey>,
    /// The caller's IP address.
    pub ip: Option<String>,
    /// The caller's user agent.
    pub user_agent: Option<String>,
    /// The request's id.
    pub request_id: Option<String>,
}

/// The acting key's powers: it can never give another key more than these, nor act on a key
/// that has more.
#[derive(Debug, Clone, PartialEq)]
pub struct ActorKey {
    /// Id of the acting key.
    pub id: KeyId,
    /// The acting key's own workspace (not the one it may act on with `X-Workspace-Id`).
    pub workspace_id: WorkspaceId,
    /// Its scopes.
    pub scopes: ScopeSet,
    /// Its resource restrictions (empty: unrestricted).
    pub resources: Vec<String>,
}

impl Actor {
    /// The system itself: unrestricted.
    pub fn system() -> Self {
        Self::default()
    }

    /// A key acting.
    pub fn key(key: &ApiKey) -> Self {
        Self {
            key: Some(ActorKey {
                id: key.id,
                workspace_id: key.workspace_id,
                scopes: key.scopes.clone(),
                resources: key.resources.clone(),
            }),
            ..Self::default()
        }
    }

    /// Whether this actor may hand out `scopes` and `resources`.
    pub(super) fn check_grant(&self, scopes: &ScopeSet, resources: &[String]) -> Result<(), Error> {
        self.check_covers(scopes, resources, "grant")
    }

    /// Whether this actor may act on `target` at all: a key never acts on a wider key (one whose
    /// scopes or resources it does not cover), whatever the action.
    pub(super) fn check_acts_on(&self, target: &ApiKey) -> Result<(), Error> {
        self.check_covers(&target.scopes, &target.resources, "act on a key with")
    }

    fn check_covers(&self, scopes: &ScopeSet, resources: &[String], verb: &str) -> Result<(), Error> {
        let Some(me) = &self.key else { return Ok(()) };
        let missing = me.scopes.uncovered(scopes);
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|s| s.to_string()).collect();
            return Err(Error::new(
                ErrorCode::InsufficientScope,
                format!("a key cannot {verb} scopes beyond its own"),
            )
            .with_detail("missing", names));
        }
        if me.resources.is_empty() {
            return Ok(());
        }
        if resources.is_empty() {
            return Err(Error::new(
                ErrorCode::ResourceNotAllowed,
                format!("a resource-restricted key cannot {verb} unrestricted resources"),
            ));
        }
        let outside: Vec<String> = resources.iter().filter(|r| !me.resources.contains(r)).cloned().collect();
        if !outside.is_empty() {
            return Err(Error::new(
                ErrorCode::ResourceNotAllowed,
                format!("a key cannot {verb} resources beyond its own"),
            )
            .with_detail("resources", outside));
        }
        Ok(())
    }

    /// Refuses a change that would take API access away from the acting key itself: with
    /// `api_access` false on the plan of the key's own workspace, every request, including the
    /// one that would undo it, would be refused.
    pub(super) fn check_keeps_own_access(&self, workspace: WorkspaceId, plan: &Plan) -> Result<(), Error> {
        match &self.key {
            Some(me) if me.workspace_id == workspace && !plan.api_access => Err(Error::new(
                ErrorCode::SelfLockout,
                "the change would remove the calling key's own API access (its workspace's plan \
                 would have no API access); make it with a key of another workspace or the CLI",
            )
            .with_detail("plan", plan.id.0.clone())),
            _ => Ok(()),
        }
    }
}
