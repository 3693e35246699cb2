//! Project automation, run as `cargo xtask <command>`:
//!
//! * `test`: formatting, clippy, the docs build and every test (doc tests included).
//! * `bench`: the criterion benchmarks.
//! * `codegen [--check]`: regenerates checked-in generated files (or fails when they are stale).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = repo_root();
    match args.first().map(String::as_str) {
        Some("test") => test(&root),
        Some("bench") => bench(&root, &args[1..]),
        Some("codegen") => codegen(&root, args.iter().any(|a| a == "--check")),
        _ => {
            eprintln!("usage: cargo xtask <test | bench [criterion filter] | codegen [--check]>");
            bail!("unknown command")
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the repo root").to_path_buf()
}

fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root).args(args);
    cmd
}

fn run(mut cmd: Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd.status().with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn test(root: &Path) -> Result<()> {
    run(cargo(root, &["fmt", "--all", "--", "--check"]))?;
    run(cargo(root, &["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"]))?;
    codegen(root, true)?;
    let mut doc = cargo(root, &["doc", "--workspace", "--no-deps", "--all-features"]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    run(doc)?;
    run(cargo(root, &["test", "--workspace", "--all-features"]))?;
    Ok(())
}

fn bench(root: &Path, filter: &[String]) -> Result<()> {
    let mut cmd = cargo(root, &["bench", "--workspace"]);
    if !filter.is_empty() {
        cmd.arg("--").args(filter);
    }
    run(cmd)
}

fn codegen(_root: &Path, check: bool) -> Result<()> {
    // The OpenAPI documents and the SDK are generated once the management server exists.
    eprintln!("codegen: no generated files yet{}", if check { " (check passes)" } else { "" });
    Ok(())
}
