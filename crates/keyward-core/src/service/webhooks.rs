//! Webhook endpoints and their deliveries (see [`crate::webhook`]).

use secrecy::SecretString;

use super::cursor::{decode_cursor, next_cursor};
use super::validate::page_size;
use super::{Actor, KeyService, Page};
use crate::error::{Error, ErrorCode};
use crate::model::{AuditAction, DeliveryId, WebhookId, WorkspaceId};
use crate::webhook::{
    DeliveryQuery, DeliveryState, WebhookDelivery, WebhookEndpoint, WebhookEventType, WebhookStore,
};

/// Most endpoints one workspace may register.
pub const MAX_WEBHOOKS: usize = 20;
/// Longest endpoint URL, in characters.
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;
/// Longest endpoint description, in characters.
pub const MAX_WEBHOOK_DESCRIPTION_LEN: usize = 500;

/// A webhook endpoint to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    /// The workspace whose events it receives.
    pub workspace_id: WorkspaceId,
    /// Where events are POSTed: `https://` (or `http://` where the service allows it).
    pub url: String,
    /// A note for people.
    pub description: String,
    /// The types it receives; empty: all.
    pub events: Vec<WebhookEventType>,
    /// Whether deliveries go out at once.
    pub enabled: bool,
}

/// Changes to an endpoint; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookPatch {
    /// New URL.
    pub url: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New event types (empty: all).
    pub events: Option<Vec<WebhookEventType>>,
    /// Switch deliveries on or off; switching on resets the failure count.
    pub enabled: Option<bool>,
}

/// An endpoint just registered, with its signing secret: shown once.
#[derive(Debug)]
pub struct CreatedWebhook {
    /// The endpoint.
    pub endpoint: WebhookEndpoint,
    /// The signing secret, `whsec_...`.
    pub secret: SecretString,
}

impl KeyService {
    /// Accepts `http://` endpoint URLs (for development and tests); by default only `https://`.
    pub fn with_insecure_webhooks(mut self, allow: bool) -> Self {
        self.webhooks_allow_http = allow;
        self
    }

    fn webhook_store(&self) -> Result<&dyn WebhookStore, Error> {
        self.store.webhooks().ok_or_else(|| Error::internal("this key store keeps no webhooks"))
    }

    fn validate_url(&self, url: &str) -> Result<(), Error> {
        let rest = if let Some(rest) = url.strip_prefix("https://") {
            rest
        } else if let Some(rest) = url.strip_prefix("http://")
            && self.webhooks_allow_http
        {
            rest
        } else {
            let allowed = if self.webhooks_allow_http { "`https://` or `http://`" } else { "`https://`" };
            return Err(Error::validation("url", format!("must start with {allowed}")));
        };
        if url.chars().count() > MAX_WEBHOOK_URL_LEN {
            return Err(Error::validation(
                "url",
                format!("must be at most {MAX_WEBHOOK_URL_LEN} characters"),
            ));
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if !valid_authority(authority) {
            return Err(Error::validation(
                "url",
                "must name a host (ASCII letters, digits, `-` and `.`) and optionally a port, without \
                 user information",
            ));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::validation("url", "must not contain spaces or control characters"));
        }
        Ok(())
    }

    fn validate_description(description: &str) -> Result<(), Error> {
        if description.chars().count() > MAX_WEBHOOK_DESCRIPTION_LEN {
            return Err(Error::validation(
                "description",
                format!("must be at most {MAX_WEBHOOK_DESCRIPTION_LEN} characters"),
            ));
        }
        Ok(())
    }

    /// Registers an endpoint; its signing secret is returned once.
    pub async fn create_webhook(&self, new: NewWebhook, actor: &Actor) -> Result<CreatedWebhook, Error> {
        let store = self.webhook_store()?;
        self.validate_url(&new.url)?;
        Self::validate_description(&new.description)?;
        self.get_workspace(new.workspace_id).await?;
        if store.list_endpoints(new.workspace_id).await?.len() >= MAX_WEBHOOKS {
            return Err(Error::new(
                ErrorCode::WebhookLimitReached,
                format!("a workspace may register at most {MAX_WEBHOOKS} webhook endpoints"),
            ));
        }
        let now = self.clock.now();
        let endpoint = WebhookEndpoint {
            id: WebhookId::new(),
            workspace_id: new.workspace_id,
            url: new.url,
            description: new.description,
            events: new.events,
            enabled: new.enabled,
            disabled_reason: None,
            consecutive_failures: 0,
            created_at: now,
            updated_at: now,
        };
        let secret = crate::webhook_signature::WebhookSecret::generate().encoded();
        let event = self.event(AuditAction::WebhookCreated, Some(endpoint.workspace_id), None, actor);
        store.insert_endpoint(&endpoint, &secret, &event).await?;
        Ok(CreatedWebhook { endpoint, secret: secret.into() })
    }

    /// A workspace's endpoints, oldest first.
    pub async fn webhooks(&self, workspace: WorkspaceId) -> Result<Vec<WebhookEndpoint>, Error> {
        Ok(self.webhook_store()?.list_endpoints(workspace).await?)
    }

    /// An endpoint of `workspace`; other workspaces' are `NOT_FOUND`.
    pub async fn webhook(&self, workspace: WorkspaceId, id: WebhookId) -> Result<WebhookEndpoint, Error> {
        match self.webhook_store()?.get_endpoint(id).await? {
            Some(e) if e.workspace_id == workspace => Ok(e),
            _ => Err(Error::not_found("webhook")),
        }
    }

    /// Changes an endpoint.
    pub async fn update_webhook(
        &self,
        workspace: WorkspaceId,
        id: WebhookId,
        patch: WebhookPatch,
        actor: &Actor,
    ) -> Result<WebhookEndpoint, Error> {
        if let Some(url) = &patch.url {
            self.validate_url(url)?;
        }
        if let Some(d) = &patch.description {
            Self::validate_description(d)?;
        }
        let mut endpoint = self.webhook(workspace, id).await?;
        if let Some(url) = patch.url {
            endpoint.url = url;
        }
        if let Some(d) = patch.description {
            endpoint.description = d;
        }
        if let Some(events) = patch.events {
            endpoint.events = events;
        }
        if let Some(enabled) = patch.enabled {
            if enabled && !endpoint.enabled {
                endpoint.consecutive_failures = 0;
                endpoint.disabled_reason = None;
            }
            endpoint.enabled = enabled;
        }
        endpoint.updated_at = self.clock.now();
        let event = self.event(AuditAction::WebhookUpdated, Some(workspace), None, actor);
        self.webhook_store()?.update_endpoint(&endpoint, &event).await?;
        Ok(endpoint)
    }

    /// Deletes an endpoint with its deliveries.
    pub async fn delete_webhook(
        &self,
        workspace: WorkspaceId,
        id: WebhookId,
        actor: &Actor,
    ) -> Result<(), Error> {
        let endpoint = self.webhook(workspace, id).await?;
        let event = self.event(AuditAction::WebhookDeleted, Some(workspace), None, actor);
        Ok(self.webhook_store()?.delete_endpoint(&endpoint, &event).await?)
    }

    /// A page of an endpoint's deliveries with their attempts, newest first.
    pub async fn webhook_deliveries(
        &self,
        workspace: WorkspaceId,
        id: WebhookId,
        state: Option<DeliveryState>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<WebhookDelivery>, Error> {
        let limit = page_size(limit)?;
        let before = cursor.map(decode_cursor).transpose()?.map(DeliveryId);
        self.webhook(workspace, id).await?;
        let query = DeliveryQuery { endpoint_id: id, state, before, limit: limit + 1 };
        let mut items = self.webhook_store()?.list_deliveries(&query).await?;
        let next_cursor = next_cursor(&mut items, limit, |d| d.id.0);
        Ok(Page { items, next_cursor })
    }

    /// Sends a delivery again: it becomes pending, due now, with a new retry window. The
    /// receiver sees the same `webhook-id`. Deliveries to other workspaces' endpoints are
    /// `NOT_FOUND`.
    pub async fn resend_delivery(
        &self,
        workspace: WorkspaceId,
        delivery: DeliveryId,
    ) -> Result<WebhookDelivery, Error> {
        let store = self.webhook_store()?;
        let Some(d) = store.get_delivery(delivery).await? else { return Err(Error::not_found("delivery")) };
        // Another workspace's endpoint is as unknown as no endpoint; a store failure stays one.
        match self.webhook(workspace, d.endpoint_id).await {
            Err(e) if e.code() == ErrorCode::NotFound => return Err(Error::not_found("delivery")),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        store.resend_delivery(delivery, self.clock.now()).await?;
        store.get_delivery(delivery).await?.ok_or_else(|| Error::not_found("delivery"))
    }
}

/// `host[:port]`: a host name or IPv4 address of ASCII letters, digits, `-` and `.` (IDNs in
/// their `xn--` form; IPv6 endpoints by name), and a port of 1 to 5 digits.
fn valid_authority(authority: &str) -> bool {
    let (host, port) = authority.find(':').map_or((authority, ""), |i| authority.split_at(i));
    let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    let port_ok = match port.strip_prefix(':') {
        Some(p) => (1..=5).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit()),
        None => port.is_empty(),
    };
    host_ok && port_ok
}
