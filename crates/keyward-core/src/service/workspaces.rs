//! Plans and workspaces.

use super::validate::{validate_name, validate_slug};
use super::{Actor, KeyService, NewWorkspace, WorkspaceChange, WorkspacePatch};
use crate::error::Error;
use crate::model::{AuditAction, Plan, PlanId, Workspace, WorkspaceId};

impl KeyService {
    /// Creates or replaces a plan.
    pub async fn save_plan(&self, plan: Plan, actor: &Actor) -> Result<Plan, Error> {
        validate_slug("id", &plan.id.0)?;
        validate_name(&plan.name)?;
        plan.key_rate_limit.validate().map_err(|r| Error::validation("keyRateLimit", r))?;
        if let Some(me) = &actor.key
            && !plan.api_access
            && let Some(own) = self.store.get_workspace(me.workspace_id).await?
            && own.plan_id == plan.id
        {
            actor.check_keeps_own_access(own.id, &plan)?;
        }
        self.store.save_plan(&plan, &self.event(AuditAction::PlanSaved, None, None, actor)).await?;
        // Every workspace on the plan is affected; listeners drop what they cached.
        self.notify_workspace(WorkspaceChange::Plan(plan.id.clone())).await;
        Ok(plan)
    }

    /// A plan.
    pub async fn get_plan(&self, id: &PlanId) -> Result<Plan, Error> {
        self.store.get_plan(id).await?.ok_or_else(|| Error::not_found("plan"))
    }

    /// Every plan.
    pub async fn list_plans(&self) -> Result<Vec<Plan>, Error> {
        Ok(self.store.list_plans().await?)
    }

    /// Creates a workspace. Without a plan it uses `default`, creating that plan if needed.
    pub async fn create_workspace(&self, new: NewWorkspace, actor: &Actor) -> Result<Workspace, Error> {
        validate_name(&new.name)?;
        if let Some(p) = &new.rate_limit {
            p.validate().map_err(|r| Error::validation("rateLimit", r))?;
        }
        let ip_allowlist = super::keys::validate_ip_allowlist(new.ip_allowlist)?;
        let plan_id = match new.plan_id {
            Some(id) => {
                self.store.get_plan(&id).await?.ok_or_else(|| Error::validation("planId", "no such plan"))?;
                id
            }
            None => {
                let default = Plan::default_plan();
                if self.store.get_plan(&default.id).await?.is_none() {
                    self.save_plan(default.clone(), actor).await?;
                }
                default.id
            }
        };
        let ws = Workspace {
            id: WorkspaceId::new(),
            name: new.name,
            plan_id,
            environment: new.environment,
            rate_limit: new.rate_limit,
            created_at: self.clock.now(),
            ip_allowlist,
        };
        let ev = self.event(AuditAction::WorkspaceCreated, Some(ws.id), None, actor);
        self.store.insert_workspace(&ws, &ev).await?;
        Ok(ws)
    }

    /// Changes a workspace.
    pub async fn update_workspace(
        &self,
        id: WorkspaceId,
        patch: WorkspacePatch,
        actor: &Actor,
    ) -> Result<Workspace, Error> {
        let mut ws = self.get_workspace(id).await?;
        if let Some(name) = patch.name {
            validate_name(&name)?;
            ws.name = name;
        }
        if let Some(plan) = patch.plan_id {
            let plan = self
                .store
                .get_plan(&plan)
                .await?
                .ok_or_else(|| Error::validation("planId", "no such plan"))?;
            actor.check_keeps_own_access(ws.id, &plan)?;
            ws.plan_id = plan.id;
        }
        if let Some(rl) = patch.rate_limit {
            if let Some(p) = &rl {
                p.validate().map_err(|r| Error::validation("rateLimit", r))?;
            }
            ws.rate_limit = rl;
        }
        if let Some(list) = patch.ip_allowlist {
            ws.ip_allowlist = super::keys::validate_ip_allowlist(list)?;
        }
        let ev = self.event(AuditAction::WorkspaceUpdated, Some(ws.id), None, actor);
        self.store.update_workspace(&ws, &ev).await?;
        self.notify_workspace(WorkspaceChange::Workspace(ws.id)).await;
        Ok(ws)
    }

    /// A workspace.
    pub async fn get_workspace(&self, id: WorkspaceId) -> Result<Workspace, Error> {
        self.store.get_workspace(id).await?.ok_or_else(|| Error::not_found("workspace"))
    }

    /// Every workspace.
    pub async fn list_workspaces(&self) -> Result<Vec<Workspace>, Error> {
        Ok(self.store.list_workspaces().await?)
    }
}
