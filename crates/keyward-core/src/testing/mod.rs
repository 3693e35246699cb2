//! Test support (feature `testing`): [`InstrumentedStore`] wraps a real store, counts the calls
//! that matter for the hot path, and can simulate an outage; [`TcpProxy`] stands between a client
//! and a real service and can cut or freeze the network; [`RawHttp`] writes HTTP/1.1 by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub mod fixture;
mod memory;
pub use memory::MemoryStore;

use crate::hash::KeyDigest;
use crate::model::{ApiKey, AuditEvent, KeyId, Plan, PlanId, UsageDay, Workspace, WorkspaceId};
use crate::store::{AuditQuery, CreditOutcome, KeyGuard, KeyListQuery, KeyStore, StoreError, UsageBatch};

/// The one test store: delegates to a real store; counts digest lookups, usage writes and credit
/// writes; fails every call with [`StoreError::Unavailable`] while
/// [`InstrumentedStore::set_down`] is on; and can hold what the store lives in (a temporary
/// directory, a test schema), dropped after the store.
#[derive(Debug)]
pub struct InstrumentedStore {
    inner: Arc<dyn KeyStore>,
    down: AtomicBool,
    digest_lookups: AtomicU64,
    usage_writes: AtomicU64,
    credit_writes: AtomicU64,
    // Declared last: dropped after `inner`.
    _guard: Option<Box<dyn std::fmt::Debug + Send + Sync>>,
}

impl InstrumentedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn KeyStore>) -> Arc<Self> {
        Arc::new(Self::unshared(inner, None))
    }

    /// Wraps `inner`, keeping `guard` (e.g. a `TempDir` or a test schema) alive until the store
    /// is dropped.
    pub fn with_guard(
        inner: Arc<dyn KeyStore>,
        guard: impl std::fmt::Debug + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self::unshared(inner, Some(Box::new(guard))))
    }

    fn unshared(inner: Arc<dyn KeyStore>, guard: Option<Box<dyn std::fmt::Debug + Send + Sync>>) -> Self {
        Self {
            inner,
            down: AtomicBool::new(false),
            digest_lookups: AtomicU64::new(0),
            usage_writes: AtomicU64::new(0),
            credit_writes: AtomicU64::new(0),
            _guard: guard,
        }
    }
    /// Simulates the store going down (`true`) or coming back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
    /// Calls of [`KeyStore::find_key_by_digest`] and [`KeyStore::find_key_record_by_digest`] so
    /// far.
    pub fn digest_lookups(&self) -> u64 {
        self.digest_lookups.load(Ordering::SeqCst)
    }
    /// Calls of [`KeyStore::record_usage`] so far.
    pub fn usage_writes(&self) -> u64 {
        self.usage_writes.load(Ordering::SeqCst)
    }
    /// Calls of [`KeyStore::consume_credits`] so far.
    pub fn credit_writes(&self) -> u64 {
        self.credit_writes.load(Ordering::SeqCst)
    }
    fn up(&self) -> Result<&dyn KeyStore, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("simulated outage".into()))
        } else {
            Ok(&*self.inner)
        }
    }
}

#[async_trait]
impl KeyStore for InstrumentedStore {
    async fn save_plan(&self, plan: &Plan, event: &AuditEvent) -> Result<(), StoreError> {
        self.up()?.save_plan(plan, event).await
    }
    async fn get_plan(&self, id: &PlanId) -> Result<Option<Plan>, StoreError> {
        self.up()?.get_plan(id).await
    }
    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError> {
        self.up()?.list_plans().await
    }
    async fn insert_workspace(&self, ws: &Workspace, event: &AuditEvent) -> Result<(), StoreError> {
        self.up()?.insert_workspace(ws, event).await
    }
    async fn update_workspace(&self, ws: &Workspace, event: &AuditEvent) -> Result<(), StoreError> {
        self.up()?.update_workspace(ws, event).await
    }
    async fn get_workspace(&self, id: WorkspaceId) -> Result<Option<Workspace>, StoreError> {
        self.up()?.get_workspace(id).await
    }
    async fn list_workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
        self.up()?.list_workspaces().await
    }
    async fn insert_key(&self, key: &ApiKey, max: Option<u32>, event: &AuditEvent) -> Result<(), StoreError> {
        self.up()?.insert_key(key, max, event).await
    }
    async fn insert_keys(&self, keys: &[(ApiKey, AuditEvent)], max: Option<u32>) -> Result<(), StoreError> {
        self.up()?.insert_keys(keys, max).await
    }
    async fn get_key(&self, id: KeyId) -> Result<Option<ApiKey>, StoreError> {
        self.up()?.get_key(id).await
    }
    async fn find_key_by_digest(&self, digest: &KeyDigest) -> Result<Option<ApiKey>, StoreError> {
        self.digest_lookups.fetch_add(1, Ordering::SeqCst);
        self.up()?.find_key_by_digest(digest).await
    }
    async fn find_key_record_by_digest(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<crate::verifier::KeyRecord>, StoreError> {
        self.digest_lookups.fetch_add(1, Ordering::SeqCst);
        self.up()?.find_key_record_by_digest(digest).await
    }
    async fn list_keys(&self, query: &KeyListQuery) -> Result<Vec<ApiKey>, StoreError> {
        self.up()?.list_keys(query).await
    }
    async fn count_live_keys(&self, workspace: WorkspaceId) -> Result<u64, StoreError> {
        self.up()?.count_live_keys(workspace).await
    }
    async fn update_key_guarded(
        &self,
        key: &ApiKey,
        expected: u64,
        event: &AuditEvent,
        guard: KeyGuard,
    ) -> Result<(), StoreError> {
        self.up()?.update_key_guarded(key, expected, event, guard).await
    }
    async fn rotate_key(
        &self,
        old: &ApiKey,
        expected: u64,
        new: &ApiKey,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.up()?.rotate_key(old, expected, new, event).await
    }
    async fn consume_credits(&self, id: KeyId, amount: i64) -> Result<CreditOutcome, StoreError> {
        self.credit_writes.fetch_add(1, Ordering::SeqCst);
        self.up()?.consume_credits(id, amount).await
    }
    async fn refill_credits(
        &self,
        id: KeyId,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Option<i64>, StoreError> {
        self.up()?.refill_credits(id, now, event).await
    }
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        self.up()?.list_audit(query).await
    }
    async fn purge_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.up()?.purge_audit(before).await
    }
    async fn verify_audit(
        &self,
        workspace: Option<WorkspaceId>,
        known: &[crate::audit_chain::KnownHead],
    ) -> Result<Vec<crate::audit_chain::ChainReport>, StoreError> {
        self.up()?.verify_audit(workspace, known).await
    }
    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        self.usage_writes.fetch_add(1, Ordering::SeqCst);
        self.up()?.record_usage(batch).await
    }
    async fn usage(&self, key: KeyId, from: NaiveDate, to: NaiveDate) -> Result<Vec<UsageDay>, StoreError> {
        self.up()?.usage(key, from, to).await
    }
    fn webhooks(&self) -> Option<&dyn crate::webhook::WebhookStore> {
        self.inner.webhooks()
    }
}

/// A TCP proxy on `127.0.0.1:0` in front of a real service, which a test can cut (every open
/// connection is dropped and new ones are refused) and restore, to simulate a network outage, or
/// freeze (connections stay open but no byte passes, as when a host stops answering without
/// closing anything) and thaw.
#[derive(Debug)]
pub struct TcpProxy {
    addr: std::net::SocketAddr,
    state: Arc<ProxyState>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct ProxyState {
    cut: AtomicBool,
    frozen: tokio::sync::watch::Sender<bool>,
    connections: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl TcpProxy {
    /// Starts forwarding to `target` (`host:port`).
    pub async fn start(target: &str) -> std::io::Result<TcpProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ProxyState {
            cut: AtomicBool::new(false),
            frozen: tokio::sync::watch::channel(false).0,
            connections: std::sync::Mutex::default(),
        });
        let target = target.to_owned();
        let bg = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if bg.cut.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let frozen = bg.frozen.subscribe();
                let task = tokio::spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(&target).await {
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        tokio::join!(
                            pump(in_read, out_write, frozen.clone()),
                            pump(out_read, in_write, frozen)
                        );
                    }
                });
                let mut conns = bg.connections.lock().unwrap_or_else(|e| e.into_inner());
                conns.retain(|c| !c.is_finished());
                conns.push(task.abort_handle());
            }
        });
        Ok(TcpProxy { addr, state, accept })
    }

    /// The proxy's address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Drops every connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for c in self.state.connections.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            c.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Stops forwarding bytes, in both directions and on every connection (new ones are
    /// accepted, and get nothing either), without closing anything, until [`TcpProxy::thaw`].
    pub fn freeze(&self) {
        self.state.frozen.send_replace(true);
    }

    /// Forwards again, starting with what was held back.
    pub fn thaw(&self) {
        self.state.frozen.send_replace(false);
    }
}

/// Copies `from` to `to`, holding each chunk back while the proxy is frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if frozen.wait_for(|frozen| !frozen).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// An HTTP/1.1 client connection whose bytes a test writes by hand: half-sent requests, stalled
/// bodies, several requests on one keep-alive connection. Responses are read with a bounded
/// buffer; every read is the caller's to put a timeout on.
#[derive(Debug)]
pub struct RawHttp {
    stream: tokio::net::TcpStream,
    buffered: Vec<u8>,
}

/// A response read by [`RawHttp::response`].
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The headers, names in lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether the response announces that the server closes the connection after it.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The response as text to pin byte for byte: the status, every header in order (names as
    /// read, in lowercase), a blank line and the body. What changes from run to run is masked:
    /// `date` as `<date>`, and the epoch seconds of `x-ratelimit-reset` and of a JSON body's
    /// `"reset"` fields as `<epoch>` once checked to lie within a day of now.
    pub fn pinned(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let epoch = |v: &str| {
            let secs: u64 = v.parse().unwrap_or_else(|_| panic!("not epoch seconds: {v:?}"));
            assert!(secs + 1 >= now && secs <= now + 86_400, "{secs} is not within a day of {now}");
            "<epoch>"
        };
        let mut out = format!("{}\n", self.status);
        for (name, value) in &self.headers {
            let value = match name.as_str() {
                "date" => "<date>",
                "x-ratelimit-reset" => epoch(value),
                _ => value,
            };
            out.push_str(&format!("{name}: {value}\n"));
        }
        out.push('\n');
        let mut body = String::from_utf8_lossy(&self.body).into_owned();
        const RESET: &str = "\"reset\":";
        let mut from = 0;
        while let Some(at) = body[from..].find(RESET).map(|i| from + i + RESET.len()) {
            let end = body[at..].find(|c: char| !c.is_ascii_digit()).map_or(body.len(), |i| at + i);
            epoch(&body[at..end]);
            body.replace_range(at..end, "<epoch>");
            from = at;
        }
        out.push_str(&body);
        out
    }
}

/// Asserts that `got` is the text of the pin file at `path`; with `KEYWARD_PIN_BLESS=1` set,
/// writes `got` there instead (to record the pin of new behaviour, on purpose).
pub fn assert_pinned(got: &str, path: &str) {
    if std::env::var_os("KEYWARD_PIN_BLESS").is_some() {
        std::fs::write(path, got).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    assert!(got == expected, "the responses differ from {path}; now:\n{got}");
}

/// Longest response head [`RawHttp`] reads.
const RAW_MAX_HEAD: usize = 64 * 1024;
/// Largest response body [`RawHttp`] reads.
const RAW_MAX_BODY: usize = 1024 * 1024;

fn invalid(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

impl RawHttp {
    /// Connects to `addr`.
    pub async fn connect(addr: std::net::SocketAddr) -> std::io::Result<RawHttp> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawHttp { stream, buffered: Vec::new() })
    }

    /// One request on a new connection, and its response.
    pub async fn exchange(
        addr: std::net::SocketAddr,
        request: impl AsRef<[u8]>,
    ) -> std::io::Result<RawResponse> {
        let mut conn = Self::connect(addr).await?;
        conn.send(request).await?;
        conn.response().await
    }

    /// Writes `bytes` as they are.
    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
        self.stream.write_all(bytes.as_ref()).await
    }

    /// Reads one response: its head, then a body framed by `Content-Length` or chunked.
    pub async fn response(&mut self) -> std::io::Result<RawResponse> {
        let head_end = loop {
            if let Some(i) = self.buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if self.buffered.len() > RAW_MAX_HEAD {
                return Err(invalid("response head too long"));
            }
            self.fill().await?;
        };
        let head =
            String::from_utf8(self.buffered[..head_end].to_vec()).map_err(|_| invalid("head not UTF-8"))?;
        self.buffered.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut response = RawResponse { status, headers, body: Vec::new() };
        if response.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let line = self.line().await?;
                let size = line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16)
                    .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    while !self.line().await?.is_empty() {}
                    break;
                }
                if response.body.len() + size > RAW_MAX_BODY {
                    return Err(invalid("response body too long"));
                }
                let chunk = self.exactly(size + 2).await?;
                response.body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(len) = response.header("content-length") {
            let len: usize = len.parse().map_err(|_| invalid(format!("bad content-length {len:?}")))?;
            if len > RAW_MAX_BODY {
                return Err(invalid("response body too long"));
            }
            response.body = self.exactly(len).await?;
        }
        Ok(response)
    }

    /// Waits until the server closes the connection: `true` when it does (end of stream or
    /// reset), `false` when it sends anything instead.
    pub async fn closed(&mut self) -> bool {
        if !self.buffered.is_empty() {
            return false;
        }
        let mut byte = [0u8; 1];
        !matches!(self.stream.read(&mut byte).await, Ok(n) if n > 0)
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buffered.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(i) = self.buffered.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffered[..i]).into_owned();
                self.buffered.drain(..i + 2);
                return Ok(line);
            }
            if self.buffered.len() > RAW_MAX_HEAD {
                return Err(invalid("line too long"));
            }
            self.fill().await?;
        }
    }

    async fn exactly(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        while self.buffered.len() < n {
            self.fill().await?;
        }
        Ok(self.buffered.drain(..n).collect())
    }
}

/// The environment variable naming a file where skipped tests are recorded, one line each
/// (`<variable>\t<test>`); `cargo xtask test` sets it and sums the file up at the end, since the
/// test harness hides what passing tests print.
pub const SKIP_LOG_VAR: &str = "KEYWARD_TEST_SKIP_LOG";

/// Reads a test service URL from the environment: `None` (with a note on stderr, and a line in
/// the [skip log](SKIP_LOG_VAR)) when unset, so the test is skipped; when set, the test must
/// reach the service or fail.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped: {var} is not set");
            record_skip(var);
            None
        }
    }
}

fn record_skip(var: &str) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os(SKIP_LOG_VAR) else { return };
    let test = std::thread::current().name().unwrap_or("unnamed").to_owned();
    // One short write to a file opened for appending: lines from parallel tests stay whole.
    let line = format!("{var}\t{test}\n");
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = file.write_all(line.as_bytes());
    }
}
