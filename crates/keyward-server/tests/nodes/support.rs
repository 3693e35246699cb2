//! Nodes, a cluster of them on one schema, and a small HTTP client.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use keyward_core::testing::service_url;
use keyward_core::{
    Actor, NewKey, NewWorkspace, Plan, RateLimitPolicy, RateLimitWindow, ScopeSet, Workspace,
};
use keyward_server::serve::{Node, ServeConfig, node, serve_http};
use keyward_store::ChangeFeedConfig;
use keyward_store::testing::PgTestSchema;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The test Redis, or `None` (printing that the test is skipped).
pub(crate) fn redis_url() -> Option<String> {
    service_url("KEYWARD_TEST_REDIS_URL")
}

/// `host:port` of a service URL.
pub(crate) fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split(['/', '?']).next().unwrap_or(rest).to_owned()
}

/// `url` pointing at `addr` instead (e.g. a `TcpProxy`).
pub(crate) fn via(url: &str, addr: SocketAddr) -> String {
    url.replacen(&host_port(url), &addr.to_string(), 1)
}

/// The test nodes' `--database-timeout-secs`.
pub(crate) const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of a test node on `schema`, reaching PostgreSQL at `database` (the schema's own URL,
/// or a proxy's) and Redis at `redis`; the Redis prefix is the schema's name, unique per test.
pub(crate) fn config(schema: &PgTestSchema, database: &str, redis: Option<&str>) -> ServeConfig {
    ServeConfig {
        database: database.to_owned(),
        database_schema: Some(schema.name().to_owned()),
        database_timeout: DATABASE_TIMEOUT,
        change_feed: ChangeFeedConfig {
            reconnect_min: Duration::from_millis(20),
            reconnect_max: Duration::from_millis(250),
            ..ChangeFeedConfig::default()
        },
        redis: redis.map(str::to_owned),
        redis_prefix: format!("keyward:{}", schema.name()),
        ..ServeConfig::default()
    }
}

/// A node served over HTTP on `127.0.0.1:0`.
pub(crate) struct TestNode {
    pub(crate) node: Node,
    pub(crate) base: String,
    client: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

impl Reply {
    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error body: {}", self.body))
    }

    /// For `POST /v1/verify`: whether the presented key passed.
    pub(crate) fn valid(&self) -> bool {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        self.body["valid"].as_bool().unwrap_or_else(|| panic!("not a verdict: {}", self.body))
    }

    /// For `POST /v1/verify`: the refusal's code.
    pub(crate) fn verdict_code(&self) -> &str {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestNode {
    pub(crate) async fn start(config: ServeConfig) -> TestNode {
        let node = node(&config).await.unwrap_or_else(|e| panic!("node on {}: {e:#}", config.database));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (app, limits) = (node.app(), config.connections);
        let server = tokio::spawn(async move {
            serve_http(listener, app, limits, std::future::pending()).await.expect("serve");
        });
        TestNode { node, base: format!("http://{addr}"), client: reqwest::Client::new(), server }
    }

    /// Stops serving, the feed and the usage recorder, and closes the pool.
    pub(crate) async fn stop(self) {
        self.server.abort();
        let _ = self.node.shutdown().await;
    }

    /// Calls the API. Never a 500, and any 5xx is a catalog `STORE_UNAVAILABLE`.
    pub(crate) async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") };
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "no 500s: {body}");
        if status.is_server_error() {
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (StatusCode::SERVICE_UNAVAILABLE, Some("STORE_UNAVAILABLE")),
                "{body}"
            );
        }
        Reply { status, body }
    }

    /// `POST /v1/verify` of `key`, as `caller`.
    pub(crate) async fn verify(&self, caller: &str, key: &str) -> Reply {
        self.call(Method::POST, "/v1/verify", caller, Some(json!({ "key": key }))).await
    }
}

/// Two nodes on one fresh schema, and a workspace whose limits stay out of the way, with an
/// administrator key for the API calls.
pub(crate) struct Cluster {
    pub(crate) a: TestNode,
    pub(crate) b: TestNode,
    pub(crate) ws: Workspace,
    pub(crate) admin: String,
    // Dropped last: the schema outlives the nodes.
    pub(crate) schema: PgTestSchema,
}

/// Limits no test reaches unless it means to.
pub(crate) fn roomy() -> RateLimitPolicy {
    RateLimitPolicy::new([RateLimitWindow::per_second(1_000_000)])
}

impl Cluster {
    /// Node A on the schema directly, node B with `b` applied to its settings (e.g. reaching
    /// PostgreSQL through a proxy, or another store policy).
    pub(crate) async fn start(
        schema: PgTestSchema,
        redis: Option<&str>,
        a: impl FnOnce(ServeConfig) -> ServeConfig,
        b: impl FnOnce(ServeConfig) -> ServeConfig,
    ) -> Cluster {
        let base = config(&schema, schema.url(), redis);
        let a = TestNode::start(a(base.clone())).await;
        assert!(a.node.root.is_some(), "the first node bootstraps the empty schema");
        let b = TestNode::start(b(base)).await;
        assert!(b.node.root.is_none(), "and only the first");
        let service = &a.node.state.service;
        let sys = Actor::system();
        let plan = Plan {
            id: "nodes".into(),
            name: "Nodes".into(),
            api_access: true,
            max_keys: None,
            key_rate_limit: roomy(),
        };
        service.save_plan(plan, &sys).await.expect("plan");
        let new = NewWorkspace {
            rate_limit: Some(roomy()),
            ..NewWorkspace::live("nodes").with_plan("nodes".into())
        };
        let ws = service.create_workspace(new, &sys).await.expect("workspace");
        let admin = NewKey { rate_limit: Some(roomy()), ..NewKey::new(ws.id, "admin") }
            .with_scopes("*".parse::<ScopeSet>().expect("scope"));
        let admin =
            service.create_key(admin, &sys).await.expect("admin key").secret.expose_secret().to_owned();
        Cluster { a, b, ws, admin, schema }
    }

    /// A new key in the workspace, made through node A's service; returns (id, plaintext).
    pub(crate) async fn key(&self, new: impl FnOnce(NewKey) -> NewKey) -> (String, String) {
        let base = NewKey { rate_limit: Some(roomy()), ..NewKey::new(self.ws.id, "k") };
        let created = self.a.node.state.service.create_key(new(base), &Actor::system()).await.expect("key");
        (created.key.id.to_string(), created.secret.expose_secret().to_owned())
    }

    pub(crate) async fn stop(self) {
        let Cluster { a, b, schema, .. } = self;
        tokio::join!(a.stop(), b.stop());
        drop(schema);
    }
}

/// Polls `ok` every millisecond until it holds; panics after `limit`. Returns how long it took.
pub(crate) async fn within(what: &str, limit: Duration, mut ok: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if ok().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Nearest-rank percentile of sorted samples.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    assert!(!sorted.is_empty());
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
