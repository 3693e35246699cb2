//! `/v1/workspaces` and `/v1/plans`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keyward_core::{
    NewWorkspace, Plan, PlanId, RateLimitPolicy, WorkspaceEnvironment, WorkspaceId, WorkspacePatch,
};

use crate::AppState;
use crate::dto::workspaces::{
    CreateWorkspaceRequest, PlanList, PlanView, SavePlanRequest, UpdateWorkspaceRequest, WorkspaceList,
    WorkspaceView,
};
use crate::error::ApiError;
use crate::extract::{ADMIN_SCOPE, ApiJson, ApiPath, Caller, parse_id};

/// Lists every workspace. Needs `workspaces:admin`.
#[utoipa::path(
    get,
    path = "/v1/workspaces",
    tag = "workspaces",
    responses(
        (status = 200, description = "The workspaces", body = WorkspaceList),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `workspaces:admin`"),
    )
)]
pub(crate) async fn list_workspaces(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<WorkspaceList>, ApiError> {
    caller.require(ADMIN_SCOPE)?;
    let all = state.service.list_workspaces().await?;
    Ok(Json(WorkspaceList { data: all.iter().map(WorkspaceView::from).collect() }))
}

/// Creates a workspace. Needs `workspaces:admin`.
#[utoipa::path(
    post,
    path = "/v1/workspaces",
    tag = "workspaces",
    request_body = CreateWorkspaceRequest,
    responses(
        (status = 201, description = "Created", body = WorkspaceView),
        (status = 400, description = "VALIDATION_FAILED: a field breaks its rule (see the schema), or `planId` names no plan"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `workspaces:admin`"),
    )
)]
pub(crate) async fn create_workspace(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateWorkspaceRequest>,
) -> Result<(StatusCode, Json<WorkspaceView>), ApiError> {
    caller.require(ADMIN_SCOPE)?;
    let new = NewWorkspace {
        name: body.name,
        plan_id: body.plan_id.map(PlanId),
        environment: body.environment.unwrap_or(WorkspaceEnvironment::Live),
        rate_limit: body.rate_limit.map(RateLimitPolicy::new),
        ip_allowlist: super::parse_ip_allowlist(&body.ip_allowlist)?,
    };
    let ws = state.service.create_workspace(new, &caller.actor).await?;
    Ok((StatusCode::CREATED, Json(WorkspaceView::from(&ws))))
}

fn visible(caller: &Caller, id: WorkspaceId) -> Result<(), ApiError> {
    if id == caller.workspace || caller.is_admin() {
        Ok(())
    } else {
        // Another workspace is reported like a missing one.
        Err(ApiError(keyward_core::Error::not_found("workspace")))
    }
}

/// A workspace: the caller's own (needs `workspaces:read`) or any (needs `workspaces:admin`).
#[utoipa::path(
    get,
    path = "/v1/workspaces/{id}",
    tag = "workspaces",
    params(("id" = uuid::Uuid, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "The workspace", body = WorkspaceView),
        (status = 400, description = "VALIDATION_FAILED: the id is not a UUID"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `workspaces:read`"),
        (status = 404, description = "NOT_FOUND: no such workspace, or another workspace and the caller lacks `workspaces:admin`"),
    )
)]
pub(crate) async fn get_workspace(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<WorkspaceView>, ApiError> {
    caller.require("workspaces:read")?;
    let id: WorkspaceId = parse_id("id", &id)?;
    visible(&caller, id)?;
    Ok(Json(WorkspaceView::from(&state.service.get_workspace(id).await?)))
}

/// Changes a workspace's name, plan or rate limit. Needs `workspaces:admin`. A change that would
/// remove the caller's own API access (e.g. moving the caller's workspace to a plan without API
/// access) is refused.
#[utoipa::path(
    patch,
    path = "/v1/workspaces/{id}",
    tag = "workspaces",
    params(("id" = uuid::Uuid, Path, description = "Workspace id")),
    request_body = UpdateWorkspaceRequest,
    responses(
        (status = 200, description = "The updated workspace", body = WorkspaceView),
        (status = 400, description = "VALIDATION_FAILED: the id is not a UUID, a field breaks its rule (see the schema), or `planId` names no plan"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `workspaces:admin`"),
        (status = 404, description = "NOT_FOUND: no such workspace"),
        (status = 409, description = "SELF_LOCKOUT: the change would remove the caller's own API access: its workspace's plan without API access, or an `ipAllowlist` that refuses the calling key's own address (`details.address`) when the key has no list of its own"),
    )
)]
pub(crate) async fn update_workspace(
    State(state): State<AppState>,
    caller: Caller,
    crate::extract::ClientIp(client_ip): crate::extract::ClientIp,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<UpdateWorkspaceRequest>,
) -> Result<Json<WorkspaceView>, ApiError> {
    caller.require(ADMIN_SCOPE)?;
    let id: WorkspaceId = parse_id("id", &id)?;
    let patch = WorkspacePatch {
        name: body.name,
        plan_id: body.plan_id.map(PlanId),
        rate_limit: body.rate_limit.map(|r| r.map(RateLimitPolicy::new)),
        ip_allowlist: body.ip_allowlist.as_deref().map(super::parse_ip_allowlist).transpose()?,
    };
    if let Some(list) = &patch.ip_allowlist
        && id == caller.key.workspace_id()
    {
        super::keeps_own_address(&caller.key.key().ip_allowlist, list, client_ip)?;
    }
    let ws = state.service.update_workspace(id, patch, &caller.actor).await?;
    Ok(Json(WorkspaceView::from(&ws)))
}

/// Lists the plans. Needs `workspaces:read`.
#[utoipa::path(
    get,
    path = "/v1/plans",
    tag = "plans",
    responses(
        (status = 200, description = "The plans", body = PlanList),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `workspaces:read`"),
    )
)]
pub(crate) async fn list_plans(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PlanList>, ApiError> {
    caller.require("workspaces:read")?;
    let plans = state.service.list_plans().await?;
    Ok(Json(PlanList { data: plans.iter().map(PlanView::from).collect() }))
}

/// Creates or replaces a plan: API access, key limit and default key rate limit. Needs
/// `workspaces:admin`. A change that would remove the caller's own API access (e.g. `apiAccess`
/// false on the caller's own plan) is refused.
#[utoipa::path(
    put,
    path = "/v1/plans/{id}",
    tag = "plans",
    params(("id" = inline(crate::dto::PlanId), Path, description = "The plan's id")),
    request_body = SavePlanRequest,
    responses(
        (status = 200, description = "The saved plan", body = PlanView),
        (status = 400, description = "VALIDATION_FAILED: the id or a field breaks its rule (see the schema)"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `workspaces:admin`"),
        (status = 409, description = "SELF_LOCKOUT: the change would remove the caller's own API access"),
    )
)]
pub(crate) async fn save_plan(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<SavePlanRequest>,
) -> Result<Json<PlanView>, ApiError> {
    caller.require(ADMIN_SCOPE)?;
    let plan = Plan {
        id: PlanId(id),
        name: body.name.clone(),
        api_access: body.api_access,
        max_keys: body.max_keys,
        key_rate_limit: body.key_policy(),
    };
    let plan = state.service.save_plan(plan, &caller.actor).await?;
    Ok(Json(PlanView::from(&plan)))
}
