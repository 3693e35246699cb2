//! The `keyward` binary itself: first start, later starts, graceful shutdown, `openapi`,
//! `--version`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) struct Running {
    child: Child,
    pub(crate) addr: String,
    pub(crate) stdout: Vec<String>,
    /// The log lines up to and with the one saying it listens.
    pub(crate) started: Vec<String>,
    stderr: std::sync::mpsc::Receiver<String>,
}

/// The `keyward` binary, with none of the `KEYWARD_*` variables of the environment.
pub(crate) fn keyward() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEYWARD_") {
            command.env_remove(name);
        }
    }
    command
}

/// Starts `keyward serve` in `dir` on a free port, logging JSON; returns once it listens.
pub(crate) fn start(dir: &std::path::Path) -> Running {
    start_with(dir, &["--log-format", "json"])
}

/// The `addr` field of a log line, JSON or text.
pub(crate) fn logged_addr(line: &str) -> String {
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        return v["fields"]["addr"].as_str().unwrap().to_owned();
    }
    let at = line.find("addr=").unwrap_or_else(|| panic!("no addr in {line}")) + "addr=".len();
    line[at..].split_whitespace().next().unwrap().to_owned()
}

/// Starts `keyward serve --bind 127.0.0.1:0 <args>` in `dir`; returns once it listens.
pub(crate) fn start_with(dir: &std::path::Path, args: &[&str]) -> Running {
    start_on(dir, "127.0.0.1:0", args)
}

/// Starts `keyward serve --bind <bind> <args>` in `dir`; returns once it listens.
pub(crate) fn start_on(dir: &std::path::Path, bind: &str, args: &[&str]) -> Running {
    let mut child = keyward()
        .args(["serve", "--bind", bind])
        .args(args)
        .current_dir(dir)
        .env("KEYWARD_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep draining stderr so the server never writes into a closed pipe.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (log_tx, log_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if log_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut addr = None;
    let mut logs = Vec::new();
    while let Ok(line) = log_rx.recv_timeout(Duration::from_secs(30)) {
        logs.push(line);
        let line = logs.last().unwrap();
        if line.contains("keyward listening") {
            addr = Some(logged_addr(line));
            break;
        }
    }
    let addr = addr.unwrap_or_else(|| panic!("server did not start: {logs:?}"));
    // stdout is complete once the server listens: the root key is printed before.
    let mut stdout = Vec::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // Non-blocking read is not needed: either 3 lines were printed or none, and the process
    // keeps stdout open; read with a helper thread and a timeout.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        while out.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            let _ = tx.send(std::mem::take(&mut line));
        }
    });
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(300)) {
        stdout.push(l.trim_end().to_owned());
    }
    Running { child, addr, stdout, started: logs, stderr: log_rx }
}

/// Kills the server with SIGKILL (`kill -9`): no shutdown of any kind.
pub(crate) fn kill(mut r: Running) {
    r.child.kill().unwrap();
    r.child.wait().unwrap();
}

/// Stops the server with SIGTERM; returns its log lines after those it started with.
pub(crate) fn terminate(mut r: Running) -> Vec<String> {
    let status = Command::new("kill").args(["-TERM", &r.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = r.child.wait().unwrap();
    // The reader thread ends at EOF, which the exit guarantees: every line is in.
    let logs: Vec<String> = r.stderr.iter().collect();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}: {logs:#?}");
    assert!(logs.iter().any(|l| l.contains("usage flushed")), "{logs:#?}");
    logs
}

#[tokio::test]
async fn first_start_prints_one_root_key_and_later_starts_none() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path());
    assert_eq!(first.stdout.len(), 3, "{:?}", first.stdout);
    assert!(first.stdout[1].contains("will not be shown again"));
    let root = first.stdout[2].clone();
    assert!(root.starts_with("kw_live_"));
    let client = reqwest::Client::new();
    let r = client.get(format!("http://{}/v1/status", first.addr)).bearer_auth(&root).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client.get(format!("http://{}/openapi.json", first.addr)).send().await.unwrap();
    let served: serde_json::Value = r.json().await.unwrap();
    assert_eq!(served, serde_json::to_value(keyward_server::openapi()).unwrap());
    assert_eq!(client.get(format!("http://{}/docs/", first.addr)).send().await.unwrap().status(), 200);
    let logs = terminate(first);
    assert!(!logs.iter().any(|l| l.contains(&root)), "no log line holds the key");

    // SIGTERM flushed the usage of that one request.
    let store =
        keyward_store::SqliteStore::open(&format!("sqlite://{}", dir.path().join("keyward.db").display()))
            .await
            .unwrap();
    let service = keyward_core::KeyService::new(std::sync::Arc::new(store));
    let ws = service.list_workspaces().await.unwrap().remove(0);
    let keys = service.list_keys(ws.id, Default::default()).await.unwrap();
    let usage = service.usage(ws.id, keys.items[0].id, 1).await.unwrap();
    assert_eq!(usage.iter().map(|u| u.count).sum::<u64>(), 1, "usage flushed on shutdown");
    drop(service);

    let second = start(dir.path());
    assert!(second.stdout.is_empty(), "no key on later starts: {:?}", second.stdout);
    let r = client.get(format!("http://{}/v1/status", second.addr)).bearer_auth(&root).send().await.unwrap();
    assert_eq!(r.status(), 200, "the root key survives restarts");
    let logs = terminate(second);
    assert!(!logs.iter().any(|l| l.contains(&root)), "no log line holds the key");
}

#[test]
fn version_prints_the_crate_version() {
    let out = keyward().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), concat!("keyward ", env!("CARGO_PKG_VERSION")));
}

#[test]
fn openapi_command_prints_the_spec() {
    let out = Command::new(env!("CARGO_BIN_EXE_keyward")).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, serde_json::to_value(keyward_server::openapi()).unwrap());
    assert_eq!(printed["openapi"], "3.1.0");
}

/// The way back from a lockout needs no key: with the plan's API access withdrawn and the root
/// key revoked (as only the database or another workspace could do), the CLI restores access
/// and issues a new root key that works against the running server.
#[tokio::test]
async fn the_cli_recovers_a_locked_out_workspace_without_any_key() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path());
    let root = running.stdout[2].clone();
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    {
        let store = keyward_store::SqliteStore::open(&url).await.unwrap();
        let service = keyward_core::KeyService::new(std::sync::Arc::new(store));
        let mut plan = service.get_plan(&"default".into()).await.unwrap();
        plan.api_access = false;
        service.save_plan(plan, &keyward_core::Actor::system()).await.unwrap();
    }
    let client = reqwest::Client::new();
    let status = async |addr: &str, key: &str| {
        client.get(format!("http://{addr}/v1/status")).bearer_auth(key).send().await.unwrap().status()
    };
    // The server's cached plan may live up to the cache TTL; a restart is what an operator does.
    let logs = terminate(running);
    assert!(!logs.iter().any(|l| l.contains(&root)));
    let running = start(dir.path());
    assert_eq!(status(&running.addr, &root).await, 403, "locked out");

    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keyward")).args(args).args(["--database", &url]).output().unwrap()
    };
    let out = cli(&["root-key", "--reset"]);
    assert!(!out.status.success(), "no key works while the plan has no API access");
    assert!(String::from_utf8_lossy(&out.stderr).contains("enable-api-access"));
    let out = cli(&["plans", "enable-api-access", "default"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&["root-key", "--reset"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let new_root = printed.lines().last().unwrap().to_owned();
    assert!(new_root.starts_with("kw_live_") && new_root != root);

    // The running server sees the CLI's plan change once its cache expires; restart to see it now.
    terminate(running);
    let running = start(dir.path());
    assert_eq!(status(&running.addr, &new_root).await, 200);
    let audit: serde_json::Value = client
        .get(format!("http://{}/v1/audit-events", running.addr))
        .bearer_auth(&new_root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let by_cli = audit["data"].as_array().unwrap().iter().filter(|e| e["userAgent"] == "keyward-cli").count();
    assert!(by_cli >= 1, "the CLI's changes are audited: {audit}");
    terminate(running);
}
