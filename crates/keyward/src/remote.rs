//! Remote mode: keys checked through a `keyward serve`, for services that must not hold database
//! credentials. See [`Connect`](crate::Connect) for the URL form.
//!
//! - A cache miss asks `POST /v1/verifier/resolve`: the presented key crosses the wire only
//!   then, and the verifier caches the answer under the key's SHA-256 digest, so a cache hit
//!   costs what it costs in the other modes.
//! - One long-lived `GET /v1/verifier/events` stream (Server-Sent Events) names the digest of
//!   every key that changed; the verifier drops it. The stream reconnects by itself with a
//!   capped backoff and, once it listens again, the verifier forgets everything (it may have
//!   missed changes). While it is down the cache TTL bounds staleness, and the store policy says
//!   what happens to cache misses the server cannot answer.
//! - Credits are spent on the server (`POST /v1/verifier/credits`), and usage goes back in
//!   batches (`POST /v1/verifier/usage`) behind the requests.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keyward_client::{KeywardClient, types};
use keyward_core::{
    ApiKey, ApiKeySecret, CreditOutcome, KeyDigest, KeyHash, KeyId, KeyRecord, KeyResolver, Plan, PlanId,
    RateLimitPolicy, RateLimitWindow, StoreError, Unwritten, UsageBatch, UsageSink, Verifier, Workspace,
    WorkspaceId,
};
use tokio::task::JoinHandle;

/// Entries of each kind in one usage report: within the server's bound (500) and, at about 80
/// bytes an entry, its 64 KiB body limit.
const USAGE_CHUNK: usize = 250;
/// The server comments on an idle stream every 15 s; three missed in a row mean it is gone.
const STREAM_IDLE: Duration = Duration::from_secs(45);
/// Longest line of the event stream this client reads; longer ones end the connection.
const MAX_LINE: usize = 16 * 1024;

/// The server as the verifier's source of keys and sink of usage.
#[derive(Clone)]
pub(crate) struct Remote {
    client: KeywardClient,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote").field("server", &self.client.base_url()).finish_non_exhaustive()
    }
}

impl Remote {
    pub(crate) fn new(client: KeywardClient) -> Self {
        Self { client }
    }
}

fn unavailable(e: keyward_client::Error<types::ErrorBody>) -> StoreError {
    if e.status().is_some_and(|s| s.as_u16() == 429) {
        tracing::warn!(
            "the keyward server rate-limits this service key: give it (and its workspace) limits that fit every cache miss, credit spend and usage report of the service"
        );
    }
    StoreError::Unavailable(format!("the keyward server: {e}"))
}

fn malformed(what: &str) -> StoreError {
    StoreError::Other(format!("the keyward server sent a malformed {what}"))
}

/// An IP allowlist as the server shows it; an entry that does not parse fails the resolve
/// rather than dropping a restriction.
fn allowlist(entries: &[String]) -> Result<Vec<keyward_core::IpNet>, StoreError> {
    keyward_core::parse_ip_allowlist(entries).map_err(|_| malformed("IP allowlist"))
}

#[async_trait::async_trait]
impl KeyResolver for Remote {
    async fn resolve(&self, key: &ApiKeySecret) -> Result<Option<KeyRecord>, StoreError> {
        let body = types::ResolveRequest { key: key.expose_secret().to_owned() };
        let resolved = self.client.resolve_key().body(body).send().await.map_err(unavailable)?.into_inner();
        if !resolved.found {
            return Ok(None);
        }
        record(resolved).map(Some)
    }

    async fn consume_credits(&self, id: KeyId, amount: i64) -> Result<CreditOutcome, StoreError> {
        let amount = u32::try_from(amount).ok().and_then(NonZeroU32::new).ok_or_else(|| malformed("cost"))?;
        let body = types::SpendCreditsRequest { key_id: id.0, amount };
        let spent = match self.client.spend_credits().body(body).send().await {
            Ok(r) => r.into_inner(),
            // Deleted since it was cached: nothing to spend.
            Err(e) if e.status().is_some_and(|s| s.as_u16() == 404) => {
                return Ok(CreditOutcome::Insufficient(0));
            }
            Err(e) => return Err(unavailable(e)),
        };
        let remaining = spent.remaining.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        Ok(match (spent.outcome, remaining) {
            (types::CreditOutcomeKind::Unlimited, _) => CreditOutcome::Unlimited,
            (types::CreditOutcomeKind::Spent, Some(n)) => CreditOutcome::Remaining(n),
            (types::CreditOutcomeKind::Insufficient, Some(n)) => CreditOutcome::Insufficient(n),
            _ => return Err(malformed("credit outcome")),
        })
    }
}

#[async_trait::async_trait]
impl UsageSink for Remote {
    async fn record_usage(&self, batch: UsageBatch) -> Result<(), Unwritten> {
        let mut counts: Vec<_> = batch.counts.into_iter().collect();
        let mut last_used: Vec<_> = batch.last_used.into_iter().collect();
        while !counts.is_empty() || !last_used.is_empty() {
            let take_counts = counts.len().saturating_sub(USAGE_CHUNK);
            let take_last = last_used.len().saturating_sub(USAGE_CHUNK);
            let part_counts = counts.split_off(take_counts);
            let part_last = last_used.split_off(take_last);
            let body = types::UsageBatchRequest {
                counts: part_counts
                    .iter()
                    .map(|((key, day), n)| types::UsageCount {
                        key_id: key.0,
                        day: *day,
                        count: NonZeroU32::new(u32::try_from(*n).unwrap_or(u32::MAX))
                            .unwrap_or(NonZeroU32::MIN),
                    })
                    .collect(),
                last_used: part_last
                    .iter()
                    .map(|(key, at)| types::LastUse { key_id: key.0, at: *at })
                    .collect(),
            };
            match self.client.report_usage().body(body).send().await {
                Ok(_) => {}
                // The server refused this part for good (a key it will not record for this
                // service key): sending it again would be refused again.
                Err(e) if e.status().is_some_and(|s| s.is_client_error() && s.as_u16() != 429) => {
                    tracing::warn!(error = %e, "the keyward server refused a usage report; dropping it");
                }
                Err(e) => {
                    counts.extend(part_counts);
                    last_used.extend(part_last);
                    let batch = UsageBatch {
                        counts: counts.into_iter().collect(),
                        last_used: last_used.into_iter().collect(),
                    };
                    return Err(Unwritten { error: unavailable(e), batch });
                }
            }
        }
        Ok(())
    }
}

/// The server's answer as the verifier's record.
fn record(r: types::ResolvedKey) -> Result<KeyRecord, StoreError> {
    let (Some(k), Some(ws), Some(plan), Some(digest)) = (r.key, r.workspace, r.plan, r.digest) else {
        return Err(malformed("resolved key"));
    };
    let digest = KeyDigest::from_hex(&digest).ok_or_else(|| malformed("digest"))?;
    let scopes = k.scopes.join(" ").parse().map_err(|_| malformed("scope"))?;
    let key = ApiKey {
        id: KeyId(k.id),
        workspace_id: WorkspaceId(k.workspace_id),
        name: k.name,
        environment: k.environment.to_string().parse().map_err(|_| malformed("environment"))?,
        prefix: k.prefix,
        last4: k.last4,
        hash: KeyHash { digest, pepper_id: None },
        scopes,
        resources: k.resources,
        status: k.status.to_string().parse().map_err(|_| malformed("status"))?,
        deleted_at: None,
        revoked_at: k.revoked_at,
        created_at: k.created_at,
        created_ip: k.created_ip,
        updated_at: k.updated_at,
        last_used_at: k.last_used_at,
        expires_at: k.expires_at,
        rotated_from: k.rotated_from.map(KeyId),
        rotated_to: k.rotated_to.map(KeyId),
        grace_ends_at: k.grace_ends_at,
        rate_limit: k.rate_limit.map(policy),
        concurrency_limit: k.concurrency_limit.map(NonZeroU32::get),
        credits: k.credits.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        // Refills happen where the credits are kept: the server refills when they are spent.
        refill: None,
        refilled_at: None,
        credits_low_threshold: None,
        ip_allowlist: allowlist(&k.ip_allowlist)?,
        metadata: k.metadata.into_iter().collect(),
        version: 0,
        leaked_at: k.leaked_at,
        leak_source: k.leak_source,
        imported_at: k.imported_at,
    };
    let workspace = Workspace {
        ip_allowlist: allowlist(&ws.ip_allowlist)?,
        id: WorkspaceId(ws.id),
        name: ws.name,
        plan_id: PlanId(ws.plan_id),
        environment: ws.environment.to_string().parse().map_err(|_| malformed("environment"))?,
        rate_limit: ws.rate_limit.map(policy),
        created_at: ws.created_at,
    };
    let plan = Plan {
        id: PlanId(plan.id),
        name: plan.name,
        api_access: plan.api_access,
        max_keys: plan.max_keys,
        key_rate_limit: policy(plan.key_rate_limit),
    };
    Ok(KeyRecord { key, workspace, plan })
}

fn policy(windows: Vec<types::RateLimitWindow>) -> RateLimitPolicy {
    RateLimitPolicy::new(
        windows
            .into_iter()
            .map(|w| RateLimitWindow { limit: w.limit.get(), period_secs: w.period_secs.get() })
            .collect::<Vec<_>>(),
    )
}

#[derive(Debug, Default)]
struct StreamState {
    connected: AtomicBool,
}

/// Follows the server's change stream into a verifier's cache. Stops when dropped.
#[derive(Debug)]
pub(crate) struct EventStream {
    state: Arc<StreamState>,
    task: JoinHandle<()>,
}

impl EventStream {
    /// Starts following `GET /v1/verifier/events`, returning at once; the first connection is
    /// made in the background like every later one.
    pub(crate) fn start(http: reqwest::Client, url: String, verifier: Verifier) -> Self {
        let state = Arc::new(StreamState::default());
        let task = tokio::spawn(follow(http, url, verifier, state.clone()));
        Self { state, task }
    }

    /// Whether the stream is connected and listening.
    pub(crate) fn is_connected(&self) -> bool {
        self.state.connected.load(Ordering::SeqCst)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn follow(http: reqwest::Client, url: String, verifier: Verifier, state: Arc<StreamState>) {
    let mut delay = Duration::ZERO;
    let mut warned: Option<Instant> = None;
    loop {
        tokio::time::sleep(delay).await;
        let lost = match http.get(&url).header("accept", "text/event-stream").send().await {
            Ok(response) if response.status().is_success() => {
                let lost = listen(response, &verifier, &state).await;
                state.connected.store(false, Ordering::SeqCst);
                delay = Duration::ZERO;
                lost
            }
            Ok(response) => format!("the server answered {}", response.status()),
            Err(e) => e.to_string(),
        };
        delay = (delay * 2).clamp(Duration::from_millis(100), Duration::from_secs(2));
        if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
            tracing::warn!(error = %lost, "keyward change stream down; cached keys are trusted until their TTL meanwhile");
            warned = Some(Instant::now());
        }
    }
}

/// Applies events until the stream ends; returns why it ended.
async fn listen(mut response: reqwest::Response, verifier: &Verifier, state: &StreamState) -> String {
    let mut parser = EventParser::default();
    loop {
        let chunk = match tokio::time::timeout(STREAM_IDLE, response.chunk()).await {
            Err(_) => return "the stream was silent for too long".into(),
            Ok(Err(e)) => return e.to_string(),
            Ok(Ok(None)) => return "the server closed the stream".into(),
            Ok(Ok(Some(chunk))) => chunk,
        };
        let events = match parser.feed(&chunk) {
            Ok(events) => events,
            Err(e) => return e.into(),
        };
        for (event, data) in events {
            match event.as_str() {
                "ready" => {
                    // Anything may have changed since the last connection.
                    verifier.invalidate_all();
                    state.connected.store(true, Ordering::SeqCst);
                    tracing::debug!("keyward change stream listening");
                }
                "key" => match digest_of(&data) {
                    Some(digest) => verifier.invalidate(&digest).await,
                    None => verifier.invalidate_all(),
                },
                // `reset`, and anything this client does not know.
                _ => verifier.invalidate_all(),
            }
        }
    }
}

fn digest_of(data: &str) -> Option<KeyDigest> {
    let value: serde_json::Value = serde_json::from_str(data).ok()?;
    KeyDigest::from_hex(value.get("digest")?.as_str()?)
}

/// The parts of the Server-Sent Events format the change stream uses: `event:` and `data:`
/// fields, comments, events ended by a blank line, `\n` or `\r\n` line ends.
#[derive(Debug, Default)]
struct EventParser {
    line: Vec<u8>,
    event: String,
    data: String,
}

impl EventParser {
    /// The events completed by `bytes`, as (event type, data).
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<(String, String)>, &'static str> {
        let mut done = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() >= MAX_LINE {
                    return Err("the stream sent an overlong line");
                }
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if !self.event.is_empty() || !self.data.is_empty() {
                    let event = std::mem::take(&mut self.event);
                    done.push((
                        if event.is_empty() { "message".into() } else { event },
                        std::mem::take(&mut self.data),
                    ));
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event = value.to_owned(),
                "data" => {
                    if self.data.len() + value.len() > MAX_LINE {
                        return Err("the stream sent an overlong event");
                    }
                    if !self.data.is_empty() {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                }
                _ => {}
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_across_chunks_with_comments_and_crlf() {
        let mut p = EventParser::default();
        assert!(p.feed(b": keep-alive\n\nevent: ready\ndata: {}\n\nevent: ke").unwrap().len() == 1);
        let events = p.feed(b"y\r\ndata: {\"digest\":\"ab\"}\r\n\r\n").unwrap();
        assert_eq!(events, vec![("key".to_owned(), r#"{"digest":"ab"}"#.to_owned())]);
        assert!(p.feed(b"data: x\n").unwrap().is_empty(), "an event ends only at a blank line");
        assert_eq!(p.feed(b"\n").unwrap(), vec![("message".to_owned(), "x".to_owned())]);
    }

    #[test]
    fn an_overlong_line_ends_the_stream() {
        let mut p = EventParser::default();
        assert!(p.feed(&vec![b'a'; MAX_LINE + 1]).is_err());
    }
}
