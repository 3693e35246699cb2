//! `--config FILE` and `keyward config check`: precedence, refusals naming the key, the example
//! file, and the commands that read the file.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::binary::{keyward, start_with, terminate};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../keyward.example.toml");

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("keyward.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `keyward config check` with these arguments and variables.
fn check(args: &[&str], vars: &[(&str, &str)]) -> Output {
    keyward().args(["config", "check"]).args(args).envs(vars.iter().copied()).output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The error of a failed run.
fn refusal(out: &Output) -> String {
    assert!(!out.status.success(), "refused: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// `(value, where it came from)` of `key` in the settings `config check` printed.
fn setting(printed: &str, key: &str) -> (String, String) {
    let line = printed
        .lines()
        .find(|l| l.trim_start_matches("# ").starts_with(&format!("{key} =")))
        .unwrap_or_else(|| panic!("no {key} in {printed}"));
    let (assignment, source) = line.rsplit_once("  # ").unwrap();
    let value = assignment.split_once('=').unwrap().1.trim().to_owned();
    (value, source.trim().to_owned())
}

#[test]
fn a_flag_beats_its_variable_which_beats_the_file_which_beats_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "database-timeout-secs = 7\n");
    let file = file.to_str().unwrap();
    let var = [("KEYWARD_DATABASE_TIMEOUT_SECS", "8")];

    let printed = stdout(&check(&[], &[]));
    assert_eq!(setting(&printed, "database-timeout-secs"), ("5".into(), "default".into()));
    let printed = stdout(&check(&["--config", file], &[]));
    assert!(printed.starts_with(&format!("# {file} is valid")), "{printed}");
    assert_eq!(setting(&printed, "database-timeout-secs"), ("7".into(), file.into()));
    let printed = stdout(&check(&["--config", file], &var));
    assert_eq!(
        setting(&printed, "database-timeout-secs"),
        ("8".into(), "KEYWARD_DATABASE_TIMEOUT_SECS".into())
    );
    let printed = stdout(&check(&["--config", file, "--database-timeout-secs", "9"], &var));
    assert_eq!(setting(&printed, "database-timeout-secs"), ("9".into(), "--database-timeout-secs".into()));
    // The file may be named by its variable too.
    let printed = stdout(&check(&[], &[("KEYWARD_CONFIG", file)]));
    assert_eq!(setting(&printed, "database-timeout-secs"), ("7".into(), file.into()));
}

#[test]
fn an_unknown_key_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "bind = \"127.0.0.1:8080\"\nlisten-address = \"0.0.0.0:80\"\n");
    let err = refusal(&check(&["--config", file.to_str().unwrap()], &[]));
    assert!(err.contains("unknown key `listen-address`"), "{err}");

    let file = write(dir.path(), "cache_ttl_secs = 5\n");
    let err = refusal(&check(&["--config", file.to_str().unwrap()], &[]));
    assert!(err.contains("unknown key `cache_ttl_secs` (did you mean `cache-ttl-secs`?)"), "{err}");

    let file = write(dir.path(), "[database]\nurl = \"sqlite://x.db\"\n");
    let err = refusal(&check(&["--config", file.to_str().unwrap()], &[]));
    assert!(err.contains("`database` must be a string, not a table"), "{err}");
}

#[test]
fn a_value_clap_would_refuse_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        ("database-timeout-secs = 0", "`database-timeout-secs` has an invalid value 0: 0 is not in 1.."),
        ("database-timeout-secs = \"5\"", "`database-timeout-secs` must be an integer, not a string"),
        ("max-connections = -1", "`max-connections` has an invalid value -1"),
        ("bind = \"localhost\"", "`bind` has an invalid value \"localhost\": invalid socket address syntax"),
        ("log-format = \"xml\"", "`log-format` has an invalid value \"xml\": expected one of text, json"),
        ("key-encoding = 62", "`key-encoding` must be a string, not an integer"),
        ("bind = ", "keyward.toml:1:8: not valid TOML"),
    ] {
        let file = write(dir.path(), text);
        let err = refusal(&check(&["--config", file.to_str().unwrap()], &[]));
        assert!(err.contains(expected), "{text}: {err}");
    }
    // A refused setting stops the server as it stops the check.
    let file = write(dir.path(), "database-timeout-secs = 0");
    let out = keyward()
        .args(["serve", "--config", file.to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(refusal(&out).contains("`database-timeout-secs` has an invalid value 0"));
    // So does a key prefix the key format refuses, which clap alone cannot see.
    let file = write(dir.path(), "key-prefix = \"Kw\"");
    let err = refusal(&check(&["--config", file.to_str().unwrap()], &[]));
    assert!(err.contains("`key-prefix` \"Kw\" is refused"), "{err}");
}

#[test]
fn secrets_are_redacted_from_the_settings_and_the_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "database = \"postgres://keyward:hunter2@db:5432/keyward\"\npepper = \"pepper-s3cret\"\nredis = \"redis://:r3dis@cache:6379\"\n",
    );
    let printed = stdout(&check(&["--config", file.to_str().unwrap()], &[]));
    for secret in ["hunter2", "pepper-s3cret", "r3dis"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert_eq!(setting(&printed, "database").0, "\"postgres://keyward:***@db:5432/keyward\"");
    assert_eq!(setting(&printed, "pepper").0, "\"<redacted>\"");

    let file = write(dir.path(), "pepper = \"unterminated-s3cret\n");
    let err = refusal(&check(&["--config", file.to_str().unwrap()], &[]));
    assert!(err.contains("not valid TOML") && !err.contains("s3cret"), "{err}");
}

#[test]
fn the_example_file_passes_and_holds_every_setting_at_its_default() {
    let printed = stdout(&check(&["--config", EXAMPLE], &[]));
    let defaults = stdout(&check(&[], &[]));
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    for line in defaults.lines().skip(1) {
        let key = line.trim_start_matches("# ").split(" =").next().unwrap();
        assert_eq!(setting(&printed, key).0, setting(&defaults, key).0, "{key} is at its default");
        assert!(
            example.lines().any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} = "))),
            "keyward.example.toml documents `{key}`"
        );
    }
}

/// `keyward serve` takes its settings from the file, and the operator commands take the database
/// and key settings from the same file, passing over those only `serve` has.
#[tokio::test]
async fn serve_and_the_operator_commands_read_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("from-file.db").display());
    let file = write(
        dir.path(),
        &format!("database = \"{url}\"\nkey-prefix = \"vsk\"\nbind = \"127.0.0.1:1\"\ncache-ttl-secs = 5\n"),
    );
    let file = file.to_str().unwrap();
    // `--bind 127.0.0.1:0` (from `start_with`) beats the file's port 1.
    let running = start_with(dir.path(), &["--config", file]);
    let root = running.stdout[2].clone();
    assert!(root.starts_with("vsk_live_"), "{:?}", running.stdout);
    assert!(dir.path().join("from-file.db").exists());
    let status = reqwest::Client::new()
        .get(format!("http://{}/v1/status", running.addr))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);

    let out = keyward().args(["root-key", "--reset", "--config", file]).output().unwrap();
    let printed = stdout(&out);
    let new_root = printed.lines().last().unwrap();
    assert!(new_root.starts_with("vsk_live_") && new_root != root, "{printed}");
    let status = reqwest::Client::new()
        .get(format!("http://{}/v1/status", running.addr))
        .bearer_auth(new_root)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "the key was issued in the file's database, with the file's prefix");
    let out = keyward().args(["plans", "enable-api-access", "default", "--config", file]).output().unwrap();
    stdout(&out);
    terminate(running);
}
