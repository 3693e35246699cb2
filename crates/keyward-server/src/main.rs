//! The `keyward` binary: `keyward serve` runs the management API; `keyward openapi` prints the
//! spec; `keyward config check` checks a `--config` file.

mod config_file;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use keyward_core::{KeyFormat, LeakPolicy, LegacyFormat, SecretEncoding};
use keyward_server::leaks::{GitHubScanningKey, LeakSettings};
use keyward_server::serve::{ConnectionLimits, ServeConfig, run, shutdown_signal};
use keyward_server::webhooks::WebhookConfig;

#[derive(Debug, Parser)]
#[command(name = "keyward", version, about = "API keys for Rust services: issue, verify, rotate, revoke")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the management API.
    Serve(Box<ServeArgs>),
    /// Issues a fresh root key (scope `*`) for a workspace, working on the database directly: the
    /// way back when its keys are lost or revoked. Prints the key once.
    RootKey(RootKeyArgs),
    /// Keys, on the database directly (no running server or API key needed).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Workspaces, on the database directly.
    #[command(subcommand)]
    Workspaces(WorkspacesCommand),
    /// Plans, on the database directly.
    #[command(subcommand)]
    Plans(PlansCommand),
    /// The audit log, on the database directly.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Config files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Prints the OpenAPI document.
    Openapi {
        /// `3.1` (what utoipa emits) or `3.0` (converted, for older generators).
        #[arg(long, default_value = "3.1", value_parser = ["3.1", "3.0"])]
        spec: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Checks a `--config` file (unknown keys, wrong types, refused values) and prints the
    /// settings `keyward serve` would run with, given the same variables and flags, secrets
    /// redacted. Exits non-zero, naming the key, on any fault.
    Check(Box<ServeArgs>),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Creates a key and prints its value once.
    Create {
        /// Descriptive name.
        #[arg(long)]
        name: String,
        /// A scope, e.g. `orders:read` or `keys:*`; repeat for more.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// The workspace, by id or name (default: the only one).
        #[arg(long)]
        workspace: Option<String>,
        /// When the key stops working, RFC 3339 (e.g. 2027-01-31T00:00:00Z).
        #[arg(long, value_parser = parse_time)]
        expires: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Lists a workspace's keys, newest first, masked.
    List {
        /// The workspace, by id or name (default: the only one).
        #[arg(long)]
        workspace: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revokes a key for good; running servers and services refuse it within a second.
    Revoke {
        /// The key's id.
        id: String,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
enum WorkspacesCommand {
    /// Lists every workspace.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn parse_time(raw: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("not an RFC 3339 time ({e}), e.g. 2027-01-31T00:00:00Z"))
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verifies the audit log's hash chains, one per workspace: prints each chain's head
    /// (`WORKSPACE=SEQ:HASH`; keep them where the database's administrators cannot write) or
    /// the first broken link, and exits 1 when any chain is broken.
    Verify {
        /// Only this workspace's chain, by id or name.
        #[arg(long)]
        workspace: Option<String>,
        /// A head printed by an earlier run; the chain must still hold it (repeat for more).
        #[arg(long = "expect", value_name = "HEAD")]
        expect: Vec<keyward_core::audit_chain::KnownHead>,
        /// A checkpoint file written by `keyward serve --audit-checkpoint-file`: the chains must
        /// still hold every head in it.
        #[arg(long, value_name = "FILE")]
        expect_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
enum PlansCommand {
    /// Gives a plan API access again (when a change withdrew it from the workspaces on it).
    EnableApiAccess {
        /// The plan's id, e.g. `default`.
        plan: String,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, clap::Args)]
struct RootKeyArgs {
    /// Confirms that a new root key is wanted (older keys keep working until revoked).
    #[arg(long, required = true)]
    reset: bool,
    /// The workspace, by id or name (default: the only one).
    #[arg(long)]
    workspace: Option<String>,
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    store: StoreArgs,
}

/// `--config FILE`, read by `config_file` before the other arguments are taken.
#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// TOML file of `keyward serve`'s settings, each keyed by its long flag without the dashes
    /// (`database-timeout-secs = 5`); a flag or a KEYWARD_* variable overrides the file. See
    /// `keyward.example.toml`; `keyward config check` checks one.
    #[arg(long, env = "KEYWARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// What operator commands need to reach the keys: the database, and the key format and pepper
/// of the deployment (a key issued with other settings would not verify).
#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// Database URL: `sqlite://path` (one node), or `postgres://user:password@host:port/db` for
    /// several nodes sharing one database.
    #[arg(long, env = "KEYWARD_DATABASE", default_value = "sqlite://keyward.db", hide_env_values = true)]
    database: String,
    /// PostgreSQL: schema for keyward's tables, created when missing (default: the connection's
    /// own, usually `public`).
    #[arg(long, env = "KEYWARD_DATABASE_SCHEMA")]
    database_schema: Option<String>,
    /// Key prefix (a lowercase letter, then up to 15 lowercase letters or digits).
    #[arg(long, env = "KEYWARD_KEY_PREFIX", default_value = "kw")]
    key_prefix: String,
    /// How the random part of keys is written.
    #[arg(long, env = "KEYWARD_KEY_ENCODING", value_enum, default_value = "base62")]
    key_encoding: Encoding,
    /// Server pepper for HMAC-SHA-256 key hashes (keep it out of the database).
    #[arg(long, env = "KEYWARD_PEPPER", hide_env_values = true)]
    pepper: Option<String>,
    /// Id stored with peppered hashes, so the pepper can be rotated.
    #[arg(long, env = "KEYWARD_PEPPER_ID", default_value = "p1")]
    pepper_id: String,
}

impl StoreArgs {
    /// The default configuration with these settings.
    fn config(self) -> ServeConfig {
        ServeConfig {
            database: self.database,
            database_schema: self.database_schema,
            key_prefix: self.key_prefix,
            key_encoding: self.key_encoding.into(),
            pepper: self.pepper,
            pepper_id: self.pepper_id,
            ..ServeConfig::default()
        }
    }

    async fn service(self) -> anyhow::Result<keyward_core::KeyService> {
        let config = self.config();
        let database = keyward_server::serve::Database::open(&config).await?;
        keyward_server::serve::service(&config, database.store())
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Encoding {
    Base62,
    Hex,
}

impl From<Encoding> for SecretEncoding {
    fn from(e: Encoding) -> Self {
        match e {
            Encoding::Base62 => SecretEncoding::Base62,
            Encoding::Hex => SecretEncoding::Hex,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LeakedKeys {
    Revoke,
    Flag,
}

fn github_key(spec: &str) -> anyhow::Result<GitHubScanningKey> {
    let (id, path) =
        spec.split_once('=').with_context(|| format!("`github-scanning-key` {spec:?} is not ID=FILE"))?;
    let pem = std::fs::read_to_string(path).with_context(|| format!("`github-scanning-key` {id}: {path}"))?;
    GitHubScanningKey::from_pem(id, &pem).map_err(|e| anyhow::anyhow!("`github-scanning-key` {id}: {e}"))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Address to listen on.
    #[arg(long, env = "KEYWARD_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    /// PostgreSQL: most pooled connections per node.
    #[arg(long, env = "KEYWARD_DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    database_max_connections: u32,
    /// PostgreSQL: seconds a database call may take (waiting for a connection, then the
    /// database's answers) before answering 503 STORE_UNAVAILABLE; also the statement timeout.
    #[arg(long, env = "KEYWARD_DATABASE_TIMEOUT_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    database_timeout_secs: u64,
    /// Redis URL (`redis://host:6379`) to share rate limits between nodes; limits stay local to
    /// each node without it, and fall back to local limits while Redis is unreachable.
    #[arg(long, env = "KEYWARD_REDIS", hide_env_values = true)]
    redis: Option<String>,
    /// Prefix of keyward's rate-limit keys in Redis.
    #[arg(long, env = "KEYWARD_REDIS_PREFIX", default_value = "keyward:rl")]
    redis_prefix: String,
    /// Days audit events are kept.
    #[arg(long, env = "KEYWARD_AUDIT_RETENTION_DAYS", default_value_t = 90)]
    audit_retention_days: u32,
    /// Seconds a verified key stays cached.
    #[arg(long, env = "KEYWARD_CACHE_TTL_SECS", default_value_t = 60)]
    cache_ttl_secs: u64,
    /// When the database is unreachable, keep serving keys cached up to this many seconds ago
    /// (default: refuse with 503).
    #[arg(long, env = "KEYWARD_SERVE_STALE_SECS")]
    serve_stale_secs: Option<u64>,
    /// Seconds a client may take to send a request's headers (from connecting, or from the
    /// first byte after an idle spell); then the connection is closed.
    #[arg(long, env = "KEYWARD_HEADER_READ_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_secs: u64,
    /// Seconds a request body may take to arrive; then the request is answered 408
    /// REQUEST_TIMEOUT and the connection closed.
    #[arg(long, env = "KEYWARD_BODY_READ_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    body_read_timeout_secs: u64,
    /// Seconds a kept-alive connection may wait for its next request (and a client may take to
    /// read a response); then the connection is closed.
    #[arg(long, env = "KEYWARD_KEEP_ALIVE_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    keep_alive_timeout_secs: u64,
    /// Most client connections served at once; more wait, unaccepted, until one closes.
    #[arg(long, env = "KEYWARD_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Also accept keys imported from another system (`POST /v1/keys/import`) whose value
    /// starts with this prefix (e.g. `sk_`): they carry no keyward checksum, so only their
    /// shape is checked before their hash is looked up. Default: only keyward's format.
    #[arg(long, env = "KEYWARD_LEGACY_KEY_PREFIX")]
    legacy_key_prefix: Option<String>,
    /// Shortest imported key accepted with `--legacy-key-prefix`, in characters.
    #[arg(long, env = "KEYWARD_LEGACY_KEY_MIN_LEN", default_value_t = 20)]
    legacy_key_min_len: usize,
    /// Longest imported key accepted with `--legacy-key-prefix`, in characters (at most 512).
    #[arg(long, env = "KEYWARD_LEGACY_KEY_MAX_LEN", default_value_t = 128)]
    legacy_key_max_len: usize,
    /// A public key GitHub's secret scanning signs leak reports with, as `ID=FILE` (GitHub's key
    /// identifier, and a PEM file holding the key); repeat for more. `POST /v1/leaks/github`
    /// refuses every report without one. Nothing is fetched from GitHub at run time.
    #[arg(long = "github-scanning-key", env = "KEYWARD_GITHUB_SCANNING_KEY", value_name = "ID=FILE", action = clap::ArgAction::Append, value_delimiter = ',')]
    github_scanning_keys: Vec<String>,
    /// What a leak report does to a key it names: `revoke` it at once (even the workspace's last
    /// key able to manage keys), or `flag` it (leakedAt, leakSource) and leave it working.
    #[arg(long, env = "KEYWARD_LEAKED_KEYS", value_enum, default_value = "revoke")]
    leaked_keys: LeakedKeys,
    /// Log format.
    #[arg(long, env = "KEYWARD_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Also serve `GET /metrics` (Prometheus) on this address, without a key: bind it to an
    /// address only the scraper reaches. On the API's address, `/metrics` needs a key with scope
    /// `metrics:read`.
    #[arg(long, env = "KEYWARD_METRICS_BIND")]
    metrics_bind: Option<SocketAddr>,
    /// A proxy (address or CIDR range) whose `Forwarded` / `X-Forwarded-For` headers name the
    /// client, for IP allowlists; repeat for several. None by default: the headers are ignored
    /// and the connection's peer is the client.
    #[arg(long = "trusted-proxy", env = "KEYWARD_TRUSTED_PROXY", value_delimiter = ',', value_parser = parse_proxy)]
    trusted_proxy: Vec<keyward_core::IpNet>,
    /// Accept `http://` webhook endpoints (for development); by default only `https://`.
    #[arg(long, env = "KEYWARD_WEBHOOK_ALLOW_HTTP")]
    webhook_allow_http: bool,
    /// Seconds one webhook delivery attempt may take, connecting included.
    #[arg(long, env = "KEYWARD_WEBHOOK_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60))]
    webhook_timeout_secs: u64,
    /// Seconds a webhook delivery is retried before it is marked failed.
    #[arg(long, env = "KEYWARD_WEBHOOK_RETRY_FOR_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=2_592_000))]
    webhook_retry_for_secs: u64,
    /// Milliseconds before a failed delivery's first retry; each further retry waits twice as
    /// long (up to an hour), less a random part of up to half.
    #[arg(long, env = "KEYWARD_WEBHOOK_RETRY_BASE_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    webhook_retry_base_ms: u64,
    /// Failed attempts in a row after which a webhook endpoint is disabled.
    #[arg(long, env = "KEYWARD_WEBHOOK_DISABLE_AFTER", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    webhook_disable_after: u32,
    /// Milliseconds between looks for due webhook deliveries when this node hears of no change.
    #[arg(long, env = "KEYWARD_WEBHOOK_POLL_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    webhook_poll_ms: u64,
    /// Days before a key's expiry its `key.expiring` webhook event is sent.
    #[arg(long, env = "KEYWARD_WEBHOOK_EXPIRY_NOTICE_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=365))]
    webhook_expiry_notice_days: u32,
    /// Seconds between audit chain checkpoints: every chain is verified and its head appended to
    /// `--audit-checkpoint-file` and sent as an `audit.checkpoint` webhook event. Default: never.
    #[arg(long, env = "KEYWARD_AUDIT_CHECKPOINT_EVERY_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    audit_checkpoint_every_secs: Option<u64>,
    /// The file audit checkpoints are appended to, one JSON line per chain (keep it where the
    /// database's administrators cannot write).
    #[arg(long, env = "KEYWARD_AUDIT_CHECKPOINT_FILE")]
    audit_checkpoint_file: Option<std::path::PathBuf>,
}

/// An address (`10.0.0.2`) or a CIDR range (`10.0.0.0/8`).
fn parse_proxy(s: &str) -> Result<keyward_core::IpNet, String> {
    keyward_core::parse_ip_allowlist(&[s]).map(|mut v| v.remove(0)).map_err(|(_, reason)| reason)
}

impl ServeArgs {
    fn serve_config(self) -> anyhow::Result<ServeConfig> {
        let legacy_keys = self
            .legacy_key_prefix
            .as_deref()
            .map(|p| LegacyFormat::new(p, self.legacy_key_min_len, self.legacy_key_max_len))
            .transpose()
            .map_err(|e| anyhow::anyhow!("`legacy-key-prefix`: {e}"))?;
        let leaks = LeakSettings {
            policy: match self.leaked_keys {
                LeakedKeys::Revoke => LeakPolicy::Revoke,
                LeakedKeys::Flag => LeakPolicy::Flag,
            },
            github_keys: self.github_scanning_keys.iter().map(|k| github_key(k)).collect::<Result<_, _>>()?,
        };
        Ok(ServeConfig {
            legacy_keys,
            leaks,
            bind: self.bind,
            database_max_connections: self.database_max_connections,
            database_timeout: Duration::from_secs(self.database_timeout_secs),
            redis: self.redis,
            redis_prefix: self.redis_prefix,
            audit_retention_days: self.audit_retention_days,
            cache_ttl: Duration::from_secs(self.cache_ttl_secs),
            serve_stale: self.serve_stale_secs.map(Duration::from_secs),
            connections: ConnectionLimits {
                header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
                body_read_timeout: Duration::from_secs(self.body_read_timeout_secs),
                keep_alive_timeout: Duration::from_secs(self.keep_alive_timeout_secs),
                max_connections: self.max_connections as usize,
            },
            metrics_bind: self.metrics_bind,
            trusted_proxies: self.trusted_proxy,
            webhooks: WebhookConfig {
                allow_http: self.webhook_allow_http,
                timeout: Duration::from_secs(self.webhook_timeout_secs),
                retry_for: Duration::from_secs(self.webhook_retry_for_secs),
                retry_base: Duration::from_millis(self.webhook_retry_base_ms),
                disable_after: self.webhook_disable_after,
                poll: Duration::from_millis(self.webhook_poll_ms),
                expiry_notice: Duration::from_secs(u64::from(self.webhook_expiry_notice_days) * 86_400),
                checkpoint_every: self.audit_checkpoint_every_secs.map(Duration::from_secs),
                checkpoint_file: self.audit_checkpoint_file,
                ..WebhookConfig::default()
            },
            ..self.store.config()
        })
    }
}

/// The heads in a checkpoint file (`--audit-checkpoint-file`): one JSON line per chain and
/// checkpoint, `{"workspaceId", "seq", "hash", ...}`.
fn checkpoint_heads(path: &std::path::Path) -> anyhow::Result<Vec<keyward_core::audit_chain::KnownHead>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut heads = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{}, line {}", path.display(), n + 1);
        let v: serde_json::Value = serde_json::from_str(line).with_context(at)?;
        let ws = v["workspaceId"].as_str().unwrap_or("-");
        let head = format!("{ws}={}:{}", v["seq"], v["hash"].as_str().unwrap_or_default());
        heads.push(head.parse().map_err(anyhow::Error::msg).with_context(at)?);
    }
    Ok(heads)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let parsed = config_file::parse_args(Cli::command, "serve", std::env::args_os().collect())?;
    let cli = Cli::from_arg_matches(&parsed.matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Openapi { spec } => {
            print!("{}", keyward_server::openapi_json(&spec == "3.0"));
            Ok(())
        }
        Command::Config(ConfigCommand::Check(args)) => {
            let config = args.serve_config()?;
            // What clap cannot see: the key format is checked when the server starts.
            if let Err(e) = KeyFormat::new(&config.key_prefix) {
                anyhow::bail!("`key-prefix` {:?} is refused: {e}", config.key_prefix);
            }
            match &parsed.file {
                Some(file) => println!("# {} is valid. keyward serve would run with:", file.path().display()),
                None => println!("# No config file (--config). keyward serve would run with:"),
            }
            let (check, matches) = Cli::command()
                .find_subcommand("config")
                .and_then(|c| c.find_subcommand("check"))
                .cloned()
                .zip(parsed.matches.subcommand_matches("config").and_then(|m| m.subcommand_matches("check")))
                .context("no `config check` command")?;
            print!("{}", config_file::effective_settings(&check, matches, parsed.file.as_ref()));
            Ok(())
        }
        Command::RootKey(args) => {
            let service = args.store.service().await?;
            let root = keyward_server::admin::reset_root_key(&service, args.workspace.as_deref()).await?;
            // Printed to stdout once, never logged.
            println!("keyward: issued a new root key in workspace {}.", root.key.workspace_id);
            println!("Root API key (shown once; it will not be shown again, store it now):");
            println!("{}", root.secret.expose_secret());
            Ok(())
        }
        Command::Keys(KeysCommand::Create { name, scopes, workspace, expires, store, .. }) => {
            let service = store.service().await?;
            let created =
                keyward_server::admin::create_key(&service, workspace.as_deref(), &name, &scopes, expires)
                    .await?;
            // Printed to stdout once, never logged.
            println!(
                "keyward: created key {} ({}) in workspace {}.",
                created.key.id, name, created.key.workspace_id
            );
            println!("API key (shown once; it will not be shown again, store it now):");
            println!("{}", created.secret.expose_secret());
            Ok(())
        }
        Command::Keys(KeysCommand::List { workspace, store, .. }) => {
            let service = store.service().await?;
            let now = chrono::Utc::now();
            println!(
                "{:<36}  {:<18}  {:<8}  {:<20}  {:<20}  NAME",
                "ID", "KEY", "STATUS", "LAST USED", "CREATED"
            );
            for k in keyward_server::admin::list_keys(&service, workspace.as_deref()).await? {
                let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                    t.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                };
                println!(
                    "{:<36}  {:<18}  {:<8}  {:<20}  {:<20}  {}",
                    k.id,
                    format!("{}…{}", k.prefix, k.last4),
                    k.status_at(now).as_str(),
                    time(k.last_used_at),
                    time(Some(k.created_at)),
                    k.name
                );
            }
            Ok(())
        }
        Command::Keys(KeysCommand::Revoke { id, store, .. }) => {
            let service = store.service().await?;
            let key = keyward_server::admin::revoke_key(&service, &id).await?;
            println!("keyward: key {} ({}) is revoked.", key.id, key.name);
            Ok(())
        }
        Command::Workspaces(WorkspacesCommand::List { store, .. }) => {
            let service = store.service().await?;
            println!("{:<36}  {:<8}  {:<16}  NAME", "ID", "ENV", "PLAN");
            for w in service.list_workspaces().await? {
                println!("{:<36}  {:<8}  {:<16}  {}", w.id, w.environment.as_str(), w.plan_id.0, w.name);
            }
            Ok(())
        }
        Command::Audit(AuditCommand::Verify { workspace, mut expect, expect_file, store, .. }) => {
            if let Some(path) = expect_file {
                expect.extend(checkpoint_heads(&path)?);
            }
            let service = store.service().await?;
            let ws = match workspace {
                Some(named) => Some(keyward_server::admin::find_workspace(&service, Some(&named)).await?.id),
                None => None,
            };
            let chains = service.store().verify_audit(ws, &expect).await?;
            let mut broken = 0;
            for c in &chains {
                let name = c.workspace_id.map_or_else(|| "-".to_owned(), |w| w.to_string());
                match &c.broken {
                    None => println!(
                        "ok      {name}={}:{}  ({} events after position {})",
                        c.head_seq, c.head_hash, c.events, c.anchor_seq
                    ),
                    Some(b) => {
                        broken += 1;
                        let event = b.event_id.map_or_else(|| "missing".to_owned(), |e| e.to_string());
                        println!("BROKEN  {name} at position {} (event {event}): {}", b.seq, b.reason);
                    }
                }
            }
            if broken > 0 {
                anyhow::bail!(
                    "{broken} of {} audit chains are broken: the audit log was altered",
                    chains.len()
                );
            }
            Ok(())
        }
        Command::Plans(PlansCommand::EnableApiAccess { plan, store, .. }) => {
            let service = store.service().await?;
            let plan = keyward_server::admin::enable_api_access(&service, &plan).await?;
            println!("keyward: plan {:?} has API access again.", plan.id.0);
            Ok(())
        }
        Command::Serve(args) => {
            init_tracing(args.log_format);
            if let Some(file) = &parsed.file {
                tracing::info!(config = %file.path().display(), "settings read from the config file");
            }
            run(args.serve_config()?, shutdown_signal()).await
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
