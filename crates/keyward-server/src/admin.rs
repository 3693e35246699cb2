//! Operator commands that work on the database directly, with no running server and no API key:
//! the way back when a workspace is locked out (its keys lost or revoked, its plan's API access
//! withdrawn). `keyward root-key --reset` and `keyward plans enable-api-access` call these.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use keyward_server::{admin, serve::{ServeConfig, open_store, service}};
//!
//! let config = ServeConfig { database: "sqlite://keyward.db".into(), ..ServeConfig::default() };
//! let service = service(&config, open_store(&config.database).await?)?;
//! admin::enable_api_access(&service, "default").await?;
//! let root = admin::reset_root_key(&service, None).await?;
//! println!("{}", root.secret.expose_secret()); // shown once
//! # Ok(()) }
//! ```

use anyhow::{Context, bail};
use keyward_core::{Actor, CreatedKey, KeyService, NewKey, Plan, PlanId, ScopeSet, Workspace};

/// The actor the audit log records for operator commands: the system, with this user agent.
pub const CLI_USER_AGENT: &str = "keyward-cli";

/// The audit actor of a CLI command.
pub fn cli_actor() -> Actor {
    Actor { user_agent: Some(CLI_USER_AGENT.to_owned()), ..Actor::system() }
}

/// The workspace an operator names by id or name; with `None`, the only workspace there is.
pub async fn find_workspace(service: &KeyService, named: Option<&str>) -> anyhow::Result<Workspace> {
    let all = service.list_workspaces().await?;
    let list = || all.iter().map(|w| format!("{} ({})", w.name, w.id)).collect::<Vec<_>>().join(", ");
    match named {
        Some(n) => {
            let found: Vec<&Workspace> =
                all.iter().filter(|w| w.id.to_string() == n || w.name == n).collect();
            match found.as_slice() {
                [one] => Ok((*one).clone()),
                [] => bail!("no workspace has the id or name {n:?}; workspaces: {}", list()),
                _ => bail!("several workspaces are named {n:?}; name one by id: {}", list()),
            }
        }
        None => match all.as_slice() {
            [one] => Ok(one.clone()),
            [] => bail!("the database has no workspace yet; `keyward serve` creates one on first start"),
            _ => bail!("the database has several workspaces; choose one with --workspace: {}", list()),
        },
    }
}

/// Issues a fresh root key (scope `*`) in a workspace and returns it; its plaintext is in the
/// result only. Older keys keep working: revoke them with the new key once it is stored.
pub async fn reset_root_key(service: &KeyService, workspace: Option<&str>) -> anyhow::Result<CreatedKey> {
    let ws = find_workspace(service, workspace).await?;
    let plan = service.get_plan(&ws.plan_id).await?;
    if !plan.api_access {
        bail!(
            "workspace {:?} is on plan {:?}, which has no API access, so no key would work; run \
             `keyward plans enable-api-access {}` first",
            ws.name,
            plan.id.0,
            plan.id.0
        );
    }
    let root = NewKey::new(ws.id, "root").with_scopes("*".parse::<ScopeSet>().expect("a valid scope"));
    service.create_key(root, &cli_actor()).await.context("creating the root key")
}

/// Gives a plan API access again.
pub async fn enable_api_access(service: &KeyService, plan: &str) -> anyhow::Result<Plan> {
    let mut plan = service.get_plan(&PlanId::from(plan)).await.with_context(|| format!("plan {plan:?}"))?;
    plan.api_access = true;
    Ok(service.save_plan(plan, &cli_actor()).await?)
}

/// Creates a key in a workspace (by id or name; default: the only one) and returns it; its
/// plaintext is in the result only.
pub async fn create_key(
    service: &KeyService,
    workspace: Option<&str>,
    name: &str,
    scopes: &[String],
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<CreatedKey> {
    let ws = find_workspace(service, workspace).await?;
    let scopes = scopes
        .iter()
        .map(|s| s.parse().with_context(|| format!("scope {s:?}")))
        .collect::<anyhow::Result<ScopeSet>>()?;
    let new = NewKey { expires_at, ..NewKey::new(ws.id, name).with_scopes(scopes) };
    Ok(service.create_key(new, &cli_actor()).await?)
}

/// A workspace's keys, newest first, every page.
pub async fn list_keys(
    service: &KeyService,
    workspace: Option<&str>,
) -> anyhow::Result<Vec<keyward_core::ApiKey>> {
    let ws = find_workspace(service, workspace).await?;
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let filter = keyward_core::KeyFilter {
            cursor,
            limit: Some(keyward_core::service::MAX_PAGE_SIZE),
            ..Default::default()
        };
        let page = service.list_keys(ws.id, filter).await?;
        all.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
}

/// Revokes a key by id, in whichever workspace holds it.
pub async fn revoke_key(service: &KeyService, id: &str) -> anyhow::Result<keyward_core::ApiKey> {
    let id: keyward_core::KeyId = id.parse().with_context(|| format!("{id:?} is not a key id"))?;
    let key = service.store().get_key(id).await?.filter(|k| k.deleted_at.is_none());
    let key = key.with_context(|| format!("no key {id}"))?;
    Ok(service.revoke_key(key.workspace_id, id, &cli_actor()).await?)
}
