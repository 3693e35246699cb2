//! Project automation, run as `cargo xtask <command>`:
//!
//! * `test`: formatting, clippy, the docs build and every test (doc tests included).
//! * `bench [--load-only | --no-load | --propagation-only]`: the criterion benchmarks, the loopback
//!   load benchmark, then the change propagation benchmark (benches/propagation).
//! * `codegen [--check]`: regenerates the checked-in generated files (the OpenAPI documents, then
//!   the Rust client from the 3.0 one, then the dashboard's types and bundle, which needs node and
//!   npm), or fails when they are stale.

use std::path::Path;
use std::process::Command;

mod dashboard;
mod load;

use anyhow::{Context, Result, bail};
use clap::Parser;

/// Project automation for keyward.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
enum Task {
    /// Formatting, clippy, generated files, the docs build and every test.
    Test,
    /// The criterion benchmarks, then the loopback load benchmark.
    Bench {
        /// Only the load benchmark.
        #[arg(long, conflicts_with_all = ["no_load", "propagation_only"])]
        load_only: bool,
        /// Only the change propagation benchmark (benches/propagation).
        #[arg(long, conflicts_with = "no_load")]
        propagation_only: bool,
        /// Only the criterion benchmarks.
        #[arg(long)]
        no_load: bool,
        /// Criterion filters.
        filter: Vec<String>,
    },
    /// Regenerates the generated files (the OpenAPI documents, then the Rust client).
    Codegen {
        /// Write nothing; fail when a checked-in file is stale.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> Result<()> {
    let root = xtask::repo_root();
    match Task::parse() {
        Task::Test => test(&root),
        Task::Bench { load_only, no_load, propagation_only, filter } => {
            bench(&root, load_only, no_load, propagation_only, &filter)
        }
        Task::Codegen { check } => codegen(&root, check),
    }
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
    // Tests skipped for want of a service record themselves here (keyward_core::testing).
    let skips = std::env::temp_dir().join(format!("keyward-test-skips-{}", std::process::id()));
    let _ = std::fs::remove_file(&skips);
    let mut tests = cargo(root, &["test", "--workspace", "--all-features"]);
    tests.env("KEYWARD_TEST_SKIP_LOG", &skips);
    let outcome = run(tests);
    eprintln!("{}", skip_summary(&std::fs::read_to_string(&skips).unwrap_or_default()));
    let _ = std::fs::remove_file(&skips);
    outcome
}

/// One line saying how many tests were skipped and why, from the skip log's `<var>\t<test>`
/// lines.
fn skip_summary(log: &str) -> String {
    let mut by_var: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> = Default::default();
    for line in log.lines() {
        if let Some((var, test)) = line.split_once('\t') {
            by_var.entry(var).or_default().insert(test);
        }
    }
    let total: usize = by_var.values().map(|t| t.len()).sum();
    if total == 0 {
        return "skipped tests: none (every service the tests need was set)".to_owned();
    }
    let reasons: Vec<String> =
        by_var.iter().map(|(var, t)| format!("{} because {var} is unset", t.len())).collect();
    format!("skipped tests: {total} ({})", reasons.join(", "))
}

/// The criterion benchmarks (those matching `filter`), the loopback load benchmark (bare axum vs
/// tower-http bearer check vs KeywardLayer), then the change propagation benchmark.
fn bench(
    root: &Path,
    load_only: bool,
    no_load: bool,
    propagation_only: bool,
    filter: &[String],
) -> Result<()> {
    if !load_only && !propagation_only {
        let mut cmd = cargo(root, &["bench", "--workspace"]);
        if !filter.is_empty() {
            cmd.arg("--").args(filter);
        }
        run(cmd)?;
    }
    if !no_load && !propagation_only {
        load::run(root, 10)?;
    }
    if !load_only {
        // Cross-connection revocation propagation per keyward::connect mode, and cache-hit cost.
        run(cargo(root, &["run", "--profile", "bench", "--quiet", "-p", "keyward-propagation-bench"]))?;
    }
    Ok(())
}

/// An OpenAPI document: where it lives and the spec version `keyward openapi --spec` prints.
struct Spec {
    path: &'static str,
    version: &'static str,
}

const SPECS: &[Spec] = &[
    Spec { path: "openapi/keyward.openapi.json", version: "3.1" },
    Spec { path: xtask::SPEC_30_PATH, version: "3.0" },
];

/// Regenerates the OpenAPI documents, then the Rust client from the fresh 3.0 document; with
/// `check`, writes nothing and fails when a checked-in file differs.
fn codegen(root: &Path, check: bool) -> Result<()> {
    let mut generated: Vec<(&str, Vec<u8>)> = Vec::new();
    for spec in SPECS {
        let args = [
            "run",
            "--quiet",
            "--package",
            "keyward-server",
            "--bin",
            "keyward",
            "--",
            "openapi",
            "--spec",
            spec.version,
        ];
        eprintln!("$ cargo {}", args.join(" "));
        let out = cargo(root, &args).output().context("running cargo")?;
        if !out.status.success() {
            bail!("generating {} failed:\n{}", spec.path, String::from_utf8_lossy(&out.stderr));
        }
        generated.push((spec.path, out.stdout));
    }
    let spec_30 = generated.iter().find(|(path, _)| *path == xtask::SPEC_30_PATH).expect("the 3.0 document");
    let spec_30 = std::str::from_utf8(&spec_30.1).context("the 3.0 document is not UTF-8")?;
    eprintln!("generating {} from {}", xtask::CLIENT_PATH, xtask::SPEC_30_PATH);
    let client = xtask::generate_client(spec_30, root)?;
    generated.push((xtask::CLIENT_PATH, client.into_bytes()));

    let mut stale = settle(root, generated.iter().map(|(f, c)| (f.to_string(), c)), check)?;
    // After the documents are written: the dashboard is typed against the 3.1 one.
    let dashboard = dashboard::generate(root, !check)?;
    stale.extend(settle(root, dashboard.iter().map(|(f, c)| (f.clone(), c)), check)?);
    if !stale.is_empty() {
        bail!("stale generated files: {}; run `cargo xtask codegen`", stale.join(", "));
    }
    Ok(())
}

/// Writes each generated file that differs from the checked-in one; with `check`, writes nothing
/// and returns the stale ones.
fn settle<'a>(
    root: &Path,
    files: impl Iterator<Item = (String, &'a Vec<u8>)>,
    check: bool,
) -> Result<Vec<String>> {
    let mut stale = Vec::new();
    for (file, content) in files {
        let path = root.join(&file);
        if std::fs::read(&path).unwrap_or_default() == *content {
            continue;
        }
        if check {
            stale.push(file);
        } else {
            std::fs::create_dir_all(path.parent().expect("a parent"))?;
            std::fs::write(&path, content)?;
            eprintln!("wrote {file}");
        }
    }
    Ok(stale)
}

#[cfg(test)]
mod tests {
    #[test]
    fn skips_are_summed_up_per_reason() {
        assert!(super::skip_summary("").contains("none"));
        let log = "A_URL\tx::one\nA_URL\tx::two\nB_URL\ty::one\nA_URL\tx::one\n";
        assert_eq!(
            super::skip_summary(log),
            "skipped tests: 3 (2 because A_URL is unset, 1 because B_URL is unset)"
        );
    }
}
