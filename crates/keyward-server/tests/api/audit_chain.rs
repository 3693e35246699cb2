//! The tamper-evident audit log over a real `keyward serve` and its SQLite file: the API and the
//! CLI report an intact chain, and after an event is edited in the database both name it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::binary::{keyward, start, terminate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_edited_in_the_database_is_reported_by_the_api_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (base, root) = (format!("http://{}", server.addr), server.stdout[2].clone());
    let http = reqwest::Client::new();
    for name in ["a", "b"] {
        let r =
            http.post(format!("{base}/v1/keys")).bearer_auth(&root).json(&json!({"name": name})).send().await;
        assert_eq!(r.unwrap().status(), StatusCode::CREATED);
    }
    let verify = || async {
        let r = http.get(format!("{base}/v1/audit-events/verify")).bearer_auth(&root).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()
    };
    let intact = verify().await;
    assert_eq!((intact["valid"].clone(), intact["broken"].clone()), (json!(true), Value::Null), "{intact}");
    // workspace.created, the root key's key.created, then two more.
    assert_eq!(intact["headSeq"], 4, "{intact}");
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let cli = |extra: &[&str]| {
        keyward().args(["audit", "verify", "--database", &url]).args(extra).output().unwrap()
    };
    let out = cli(&[]);
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{printed}");
    let ws = intact["workspaceId"].as_str().unwrap();
    let head = format!("{ws}=4:{}", intact["headHash"].as_str().unwrap());
    assert!(printed.contains(&head), "the CLI prints the same head: {printed}");
    // A checkpoint file as `--audit-checkpoint-file` writes it holds the same head.
    let file = dir.path().join("checkpoints.jsonl");
    let line = json!({"at": "2026-01-01T00:00:00Z", "workspaceId": ws, "seq": 4, "hash": intact["headHash"], "valid": true});
    std::fs::write(&file, format!("{line}\n")).unwrap();
    let checked = cli(&["--expect-file", file.to_str().unwrap()]);
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));

    // An administrator edits the third event's address.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let edited: String = sqlx::query_scalar(
        "UPDATE audit_events SET ip = '192.0.2.66' WHERE chain = ? AND seq = 3 RETURNING id",
    )
    .bind(ws)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;

    let tampered = verify().await;
    assert_eq!(tampered["valid"], false, "{tampered}");
    assert_eq!(
        (tampered["broken"]["seq"].clone(), tampered["broken"]["eventId"].clone()),
        (json!(3), json!(edited))
    );
    let out = cli(&["--expect", &head]);
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(!out.status.success(), "the CLI exits non-zero: {printed}");
    assert!(printed.contains(&format!("BROKEN  {ws} at position 3 (event {edited})")), "{printed}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("the audit log was altered"));
    assert!(
        !cli(&["--expect-file", file.to_str().unwrap()]).status.success(),
        "the checkpoint no longer holds"
    );
    terminate(server);
}
