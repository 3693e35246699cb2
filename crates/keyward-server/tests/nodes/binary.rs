//! `keyward serve --database postgres://... --redis redis://...` as real processes: two of them
//! on one schema, configured through the `KEYWARD_*` environment.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use keyward_store::testing::PgTestSchema;

use crate::support::{redis_url, within};

struct Process {
    child: Child,
    base: String,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

fn lines(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn start(schema: &PgTestSchema, redis: Option<&str>) -> Process {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyward"));
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--log-format", "json"])
        .env("KEYWARD_DATABASE", schema.url())
        .env("KEYWARD_DATABASE_SCHEMA", schema.name())
        .env("KEYWARD_REDIS_PREFIX", format!("keyward:{}", schema.name()))
        .env("KEYWARD_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match redis {
        Some(url) => cmd.env("KEYWARD_REDIS", url),
        None => cmd.env_remove("KEYWARD_REDIS"),
    };
    let mut child = cmd.spawn().expect("spawn keyward");
    let stdout = lines(child.stdout.take().expect("stdout"));
    let stderr = lines(child.stderr.take().expect("stderr"));
    let mut seen = Vec::new();
    let base = loop {
        let line =
            stderr.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("not started: {seen:#?}"));
        if line.contains("keyward listening") {
            let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log");
            assert_eq!(v["fields"]["schema"], schema.name(), "{line}");
            break format!("http://{}", v["fields"]["addr"].as_str().expect("addr"));
        }
        seen.push(line);
    };
    Process { child, base, stdout, stderr }
}

fn stop(mut p: Process) {
    let status = Command::new("kill").args(["-TERM", &p.child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let exit = p.child.wait().expect("wait");
    let logs: Vec<String> = p.stderr.try_iter().collect();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}: {logs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_database() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let redis = redis_url();
    let first = start(&schema, redis.as_deref());
    let printed: Vec<String> =
        std::iter::from_fn(|| first.stdout.recv_timeout(Duration::from_millis(300)).ok()).collect();
    assert_eq!(printed.len(), 3, "the first node prints the root key: {printed:?}");
    let root = printed[2].clone();
    let second = start(&schema, redis.as_deref());
    assert!(second.stdout.recv_timeout(Duration::from_millis(300)).is_err(), "the second prints no key");

    let client = reqwest::Client::new();
    let status = |base: &str, key: &str| client.get(format!("{base}/v1/status")).bearer_auth(key).send();
    assert_eq!(
        status(&second.base, &root).await.expect("request").status(),
        200,
        "the root key works on both"
    );
    let created: serde_json::Value = client
        .post(format!("{}/v1/keys", first.base))
        .bearer_auth(&root)
        .json(&serde_json::json!({ "name": "ci", "scopes": ["keys:read"] }))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("JSON");
    let (id, key) = (created["key"]["id"].as_str().expect("id"), created["secret"].as_str().expect("secret"));
    assert_eq!(status(&second.base, key).await.expect("request").status(), 200, "cached on the second");
    let r = client
        .post(format!("{}/v1/keys/{id}/revoke", first.base))
        .bearer_auth(&root)
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    within("the second process refuses the revoked key", Duration::from_secs(5), async || {
        status(&second.base, key).await.expect("request").status() == 401
    })
    .await;
    stop(second);
    stop(first);
}
