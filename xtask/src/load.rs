//! The loopback load benchmark: one axum handler served bare, behind tower-http's bearer check
//! and behind `KeywardLayer` (benches/load-server), each driven by `wrk` in the same run.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// One `wrk` run's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Installs wrk from Debian's packages when it is missing (the machines run as root).
fn ensure_wrk() -> Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    eprintln!("wrk is missing; installing Debian's package");
    let install = || Command::new("apt-get").args(["install", "-y", "-qq", "wrk"]).status();
    if !install().is_ok_and(|s| s.success()) {
        Command::new("apt-get").args(["update", "-qq"]).status().context("apt-get update")?;
        if !install().context("apt-get install wrk")?.success() {
            bail!("could not install wrk; install it and run again");
        }
    }
    Ok(())
}

fn parse_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Some(v) = s.strip_suffix("us") {
        v.parse::<f64>().ok().map(|v| v / 1000.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        v.parse().ok()
    } else if let Some(v) = s.strip_suffix('s') {
        v.parse::<f64>().ok().map(|v| v * 1000.0)
    } else {
        None
    }
}

fn wrk(port: u16, key: &str, seconds: u32, connections: u32) -> Result<Figures> {
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency"])
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = Figures { rps: f64::NAN, p50_ms: f64::NAN, p99_ms: f64::NAN };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => f.rps = v.parse().unwrap_or(f64::NAN),
            (Some("50%"), Some(v)) => f.p50_ms = parse_ms(v).unwrap_or(f64::NAN),
            (Some("99%"), Some(v)) => f.p99_ms = parse_ms(v).unwrap_or(f64::NAN),
            _ => {}
        }
    }
    if text.contains("Non-2xx") || f.rps.is_nan() {
        bail!("wrk against port {port} failed or saw errors:\n{text}");
    }
    Ok(f)
}

/// Runs the load benchmark and prints requests/s and latency for each variant, and keyward's
/// ratio to bare axum.
pub(crate) fn run(root: &Path, seconds: u32) -> Result<()> {
    ensure_wrk()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(root)
        .args(["build", "--release", "--quiet", "--package", "keyward-load-server"])
        .status()?;
    if !status.success() {
        bail!("building keyward-load-server failed");
    }
    let target = std::env::var("CARGO_TARGET_DIR").map(Into::into).unwrap_or_else(|_| root.join("target"));
    let mut server = Command::new(Path::new(&target).join("release/keyward-load-server"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting keyward-load-server")?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("piped")).read_line(&mut line)?;
    let info: serde_json::Value = serde_json::from_str(&line).context("reading the load server's ports")?;
    let key = info["key"].as_str().context("no key")?.to_owned();
    let port = |name: &str| info[name].as_u64().map(|p| p as u16).context("no port");
    let variants = [
        ("axum (bare)", port("bare")?),
        ("tower-http bearer", port("bearer")?),
        ("KeywardLayer", port("keyward")?),
    ];

    // Warm up every variant (caches, connections), then measure them round-robin twice so drift
    // on a shared machine hits all three alike; keep each variant's best run.
    for (_, p) in &variants {
        wrk(*p, &key, 2, 32)?;
    }
    let mut best: Vec<Option<Figures>> = vec![None; variants.len()];
    for _ in 0..2 {
        for (i, (_, p)) in variants.iter().enumerate() {
            let f = wrk(*p, &key, seconds, 32)?;
            if best[i].is_none_or(|b| f.rps > b.rps) {
                best[i] = Some(f);
            }
        }
    }
    drop(server.stdin.take());
    let _ = server.wait();

    let best: Vec<Figures> = best.into_iter().map(|f| f.expect("measured")).collect();
    println!("\nload on loopback: wrk -t1 -c32 -d{seconds}s, best of 2 runs each");
    println!("{:<20} {:>12} {:>10} {:>10}", "variant", "requests/s", "p50 ms", "p99 ms");
    for ((name, _), f) in variants.iter().zip(&best) {
        println!("{name:<20} {:>12.0} {:>10.3} {:>10.3}", f.rps, f.p50_ms, f.p99_ms);
    }
    let (bare, keyward) = (best[0], best[2]);
    println!("KeywardLayer / bare axum requests/s: {:.3}", keyward.rps / bare.rps);
    println!("KeywardLayer p99 added latency: {:.3} ms", keyward.p99_ms - bare.p99_ms);
    Ok(())
}
