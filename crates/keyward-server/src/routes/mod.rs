//! The `/v1` handlers, and the one list that routes them and puts them in the document.

pub(crate) mod audit;
pub(crate) mod keys;
pub(crate) mod leaks;
pub(crate) mod status;
pub(crate) mod verifier;
pub(crate) mod webhooks;
pub(crate) mod workspaces;

use keyward_core::Error;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;

/// Every operation: each `routes!` registers the handlers of one path with axum and their
/// `#[utoipa::path]` with `doc`.
pub(crate) fn router(doc: utoipa::openapi::OpenApi) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(doc)
        .routes(routes!(status::status))
        .routes(routes!(status::verify))
        .routes(routes!(verifier::resolve_key))
        .routes(routes!(verifier::verifier_events))
        .routes(routes!(verifier::spend_credits))
        .routes(routes!(verifier::report_usage))
        .routes(routes!(keys::create_key, keys::list_keys))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(keys::import_keys))
                .layer(axum::extract::DefaultBodyLimit::max(keys::MAX_IMPORT_BODY_BYTES)),
        )
        .routes(routes!(keys::get_key, keys::update_key, keys::delete_key))
        .routes(routes!(keys::activate_key))
        .routes(routes!(keys::deactivate_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(keys::rotate_key))
        .routes(routes!(leaks::report_leaked_keys))
        .routes(routes!(keys::key_usage))
        .routes(routes!(workspaces::list_workspaces, workspaces::create_workspace))
        .routes(routes!(workspaces::get_workspace, workspaces::update_workspace))
        .routes(routes!(workspaces::list_plans))
        .routes(routes!(workspaces::save_plan))
        .routes(routes!(audit::list_audit_events))
        .routes(routes!(audit::verify_audit_chain))
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(webhooks::get_webhook, webhooks::update_webhook, webhooks::delete_webhook))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::resend_delivery))
}

/// The operations outside keyward's layer, authenticated by a signature instead of a key: GitHub
/// secret scanning's leak reports.
pub(crate) fn signed_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(leaks::report_github_leaks))
}

/// Parses scopes, naming the offending entry.
/// An IP allowlist, each entry checked: `ipAllowlist[i]` names a bad one.
pub(crate) fn parse_ip_allowlist(raw: &[String]) -> Result<Vec<keyward_core::IpNet>, ApiError> {
    keyward_core::parse_ip_allowlist(raw).map_err(|(i, reason)| {
        let field = i.map_or_else(|| "ipAllowlist".to_owned(), |i| format!("ipAllowlist[{i}]"));
        ApiError(Error::validation(&field, reason))
    })
}

pub(crate) fn parse_scopes(field: &str, raw: &[String]) -> Result<keyward_core::ScopeSet, ApiError> {
    raw.iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse().map_err(|e: keyward_core::ScopeParseError| {
                ApiError(Error::validation(&format!("{field}[{i}]"), e.to_string()))
            })
        })
        .collect()
}

/// Refuses an allowlist change that would refuse the calling key's own next request from the
/// address it calls from now (`key_list`/`ws_list`: the key's and its workspace's lists as they
/// would be): a workspace must not lock itself out of its own API.
pub(crate) fn keeps_own_address(
    key_list: &[keyward_core::IpNet],
    ws_list: &[keyward_core::IpNet],
    client_ip: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    keyward_core::ip_allowed(key_list, ws_list, client_ip).map_err(|_| {
        let seen = client_ip.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string());
        let mut e = Error::new(
            keyward_core::ErrorCode::SelfLockout,
            format!(
                "the change would refuse the calling key's own requests from {seen}; include that address, \
                 or make the change with another key or the CLI"
            ),
        );
        if let Some(ip) = client_ip {
            e = e.with_detail("address", ip.to_string());
        }
        ApiError(e)
    })
}
