//! The webhook delivery worker: one per node.
//!
//! Events are written by the store in the transaction of their change (see
//! [`keyward_core::webhook`]); the worker claims due deliveries with a lease, POSTs each signed
//! the Standard Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature`; see
//! `docs/webhooks.md`), and records the attempt: delivered on a 2xx answer, else retried with
//! exponential backoff and jitter until its retry window ends, then failed. An endpoint failing
//! [`WebhookConfig::disable_after`] attempts in a row is disabled, with an audit event and a
//! `webhook.disabled` event to the workspace's other endpoints.
//!
//! The worker wakes when this node hears of a key change (through the service, the change log
//! or the change feed), and every [`WebhookConfig::poll`] otherwise. It also sends `key.expiring`
//! notices (once per key and expiry) and, when configured, exports audit chain checkpoints.
//!
//! Delivery is at least once: a node killed after sending and before recording sends again once
//! the lease has run out. Receivers de-duplicate by `webhook-id`.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt as _;
use keyward_core::webhook::{
    self, AttemptResult, ClaimedDelivery, DeliveryAttempt, DisablePolicy, EndpointOutcome,
};
use keyward_core::webhook_signature::{self, WebhookSecret};
use keyward_core::{KeyStore, WebhookStore};
use secrecy::ExposeSecret as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::relay::ChangeRelay;

/// How the worker delivers.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Accept `http://` endpoints (development, tests); by default only `https://`.
    pub allow_http: bool,
    /// Longest one attempt may take, connecting included.
    pub timeout: Duration,
    /// How long a delivery is retried before it fails.
    pub retry_for: Duration,
    /// The first retry's wait; each further one doubles, up to `retry_cap`, with jitter.
    pub retry_base: Duration,
    /// The longest wait between two attempts.
    pub retry_cap: Duration,
    /// Failed attempts in a row after which an endpoint is disabled.
    pub disable_after: u32,
    /// How often the worker looks for due deliveries when it hears of no change.
    pub poll: Duration,
    /// Deliveries claimed at once (and sent concurrently).
    pub batch: u32,
    /// `key.expiring` is sent this long before a key expires.
    pub expiry_notice: Duration,
    /// How often expiring keys are looked for.
    pub expiry_scan: Duration,
    /// Export the audit chains' heads this often (to `checkpoint_file` and as `audit.checkpoint`
    /// events); `None`: never.
    pub checkpoint_every: Option<Duration>,
    /// The file checkpoints are appended to, one JSON line each.
    pub checkpoint_file: Option<PathBuf>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_http: false,
            timeout: Duration::from_secs(10),
            retry_for: webhook::DEFAULT_RETRY_FOR,
            retry_base: Duration::from_secs(5),
            retry_cap: Duration::from_secs(3600),
            disable_after: 100,
            poll: Duration::from_secs(1),
            batch: 32,
            expiry_notice: Duration::from_secs(7 * 24 * 3600),
            expiry_scan: Duration::from_secs(60),
            checkpoint_every: None,
            checkpoint_file: None,
        }
    }
}

impl WebhookConfig {
    /// The lease on a claimed delivery: longer than any attempt, so that no other worker takes
    /// it while it is being sent.
    pub fn lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(5)
    }
}

/// The running worker.
#[derive(Debug)]
pub struct WebhookWorker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WebhookWorker {
    /// Starts the worker over `store`, woken by `relay`; `None` when the store keeps no
    /// webhooks.
    pub fn spawn(
        store: Arc<dyn KeyStore>,
        relay: &ChangeRelay,
        config: WebhookConfig,
    ) -> anyhow::Result<Option<Self>> {
        if store.webhooks().is_none() {
            return Ok(None);
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("keyward-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let (stop, stopped) = watch::channel(false);
        let wake = relay.subscribe();
        let task = tokio::spawn(run(Worker { store, client, config }, wake, stopped));
        Ok(Some(Self { stop, task }))
    }

    /// Stops the worker once the attempts under way are recorded.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Worker {
    store: Arc<dyn KeyStore>,
    client: reqwest::Client,
    config: WebhookConfig,
}

impl Worker {
    fn hooks(&self) -> &dyn WebhookStore {
        self.store.webhooks().expect("checked when the worker started")
    }

    /// Sends every due delivery, a batch at a time.
    async fn deliver_due(&self) {
        loop {
            let claimed =
                match self.hooks().claim_deliveries(Utc::now(), self.config.lease(), self.config.batch).await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhooks: claiming deliveries failed");
                        return;
                    }
                };
            let full = claimed.len() as u64 >= u64::from(self.config.batch);
            if claimed.is_empty() {
                return;
            }
            futures_util::stream::iter(claimed)
                .for_each_concurrent(None, |d| async move { self.attempt(d).await })
                .await;
            if !full {
                return;
            }
        }
    }

    async fn attempt(&self, d: ClaimedDelivery) {
        let started = Instant::now();
        let at = Utc::now();
        let (status, error) = self.send(&d).await;
        let attempt = DeliveryAttempt {
            number: d.attempts + 1,
            at,
            status,
            error,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        let delivered = status.is_some_and(|s| (200..300).contains(&s)) && attempt.error.is_none();
        let result = if delivered {
            AttemptResult::Delivered
        } else {
            let deadline = d.retry_from
                + chrono::Duration::from_std(self.config.retry_for).unwrap_or(chrono::Duration::MAX);
            let wait = webhook::backoff(attempt.number, self.config.retry_base, self.config.retry_cap);
            let next = at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
            if at >= deadline { AttemptResult::Failed } else { AttemptResult::RetryAt(next.min(deadline)) }
        };
        let outcome = match &result {
            AttemptResult::Delivered => "delivered",
            AttemptResult::RetryAt(_) => "retry",
            AttemptResult::Failed => "failed",
        };
        metrics::counter!("keyward_webhook_attempts_total", "outcome" => outcome).increment(1);
        let policy = DisablePolicy { after_failures: self.config.disable_after };
        match self.hooks().record_attempt(&d, &attempt, &result, policy).await {
            Ok(EndpointOutcome::Disabled) => tracing::warn!(
                webhook = %d.endpoint_id,
                failures = self.config.disable_after,
                "webhooks: endpoint disabled after failing repeatedly"
            ),
            Ok(EndpointOutcome::LeaseLost) => tracing::warn!(
                delivery = %d.id,
                "webhooks: an attempt outlived its lease; another worker owns the delivery"
            ),
            Ok(EndpointOutcome::Unchanged) => {}
            Err(e) => tracing::warn!(delivery = %d.id, error = %e, "webhooks: recording an attempt failed"),
        }
    }

    /// POSTs the delivery: the receiver's status, and why the attempt failed when it did.
    async fn send(&self, d: &ClaimedDelivery) -> (Option<u16>, Option<String>) {
        let secret = match WebhookSecret::parse(d.secret.expose_secret()) {
            Ok(s) => s,
            Err(e) => return (None, Some(format!("the endpoint's signing secret is unusable: {e}"))),
        };
        let id = d.event_id.to_string();
        let timestamp = Utc::now().timestamp();
        let signature = webhook_signature::sign(&secret, &id, timestamp, d.payload.as_bytes());
        let sent = self
            .client
            .post(&d.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(webhook_signature::HEADER_ID, &id)
            .header(webhook_signature::HEADER_TIMESTAMP, timestamp.to_string())
            .header(webhook_signature::HEADER_SIGNATURE, signature)
            .body(d.payload.clone())
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status();
                let error = (!status.is_success()).then(|| format!("the endpoint answered {status}"));
                (Some(status.as_u16()), error)
            }
            // Without the URL: it may carry a token of the receiver's.
            Err(e) => (None, Some(describe(&e.without_url()))),
        }
    }

    /// `key.expiring` for keys expiring within the notice period, once each.
    async fn notify_expiring(&self) {
        let now = Utc::now();
        let until =
            now + chrono::Duration::from_std(self.config.expiry_notice).unwrap_or(chrono::Duration::MAX);
        let keys = match self.hooks().keys_expiring(now, until, 500).await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: looking for expiring keys failed");
                return;
            }
        };
        for key in keys {
            let Some(notice) = webhook::expiring_notice(&key) else { continue };
            if let Err(e) = self.hooks().enqueue(&webhook::expiring_event(&key, now), Some(&notice)).await {
                tracing::warn!(key = %key.id, error = %e, "webhooks: writing an expiry notice failed");
            }
        }
    }

    /// Verifies every audit chain and exports each head: appended to the checkpoint file and
    /// sent as `audit.checkpoint`.
    async fn checkpoint(&self) {
        let chains = match self.store.verify_audit(None, &[]).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "audit checkpoint: verifying the chains failed");
                return;
            }
        };
        let now = Utc::now();
        let mut lines = String::new();
        for c in &chains {
            if let Some(b) = &c.broken {
                tracing::error!(workspace = ?c.workspace_id, seq = b.seq, reason = %b.reason, "audit checkpoint: the chain is broken");
            }
            let line = serde_json::json!({
                "at": now,
                "workspaceId": c.workspace_id,
                "seq": c.head_seq,
                "hash": c.head_hash,
                "valid": c.broken.is_none(),
            });
            lines.push_str(&line.to_string());
            lines.push('\n');
            if let Some(ws) = c.workspace_id {
                let event = webhook::checkpoint_event(ws, c.head_seq, &c.head_hash, now);
                if let Err(e) = self.hooks().enqueue(&event, None).await {
                    tracing::warn!(error = %e, "audit checkpoint: writing the event failed");
                }
            }
        }
        if let Some(path) = &self.config.checkpoint_file {
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(lines.as_bytes()).and_then(|()| f.sync_data()));
            if let Err(e) = written {
                tracing::warn!(path = %path.display(), error = %e, "audit checkpoint: writing the file failed");
            }
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        e.to_string()
    }
}

async fn run(
    worker: Worker,
    mut wake: tokio::sync::broadcast::Receiver<keyward_core::Change>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next_scan = Instant::now();
    let mut next_checkpoint = worker.config.checkpoint_every.map(|every| Instant::now() + every);
    let mut listening = true;
    loop {
        worker.deliver_due().await;
        if Instant::now() >= next_scan {
            worker.notify_expiring().await;
            next_scan = Instant::now() + worker.config.expiry_scan;
        }
        if let (Some(at), Some(every)) = (next_checkpoint, worker.config.checkpoint_every)
            && Instant::now() >= at
        {
            worker.checkpoint().await;
            next_checkpoint = Some(Instant::now() + every);
        }
        tokio::select! {
            _ = stop.changed() => return,
            heard = wake.recv(), if listening => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = heard {
                    listening = false;
                }
            }
            () = tokio::time::sleep(worker.config.poll) => {}
        }
    }
}
