//! The loopback load benchmark: one axum handler served bare, with the headers a `KeywardLayer`
//! response carries as static values (what the larger response alone costs), behind tower-http's
//! bearer check, and behind `KeywardLayer` with all, two or none of its rate-limit headers
//! (benches/load-server), each driven by `wrk` in the same run; then bare axum and
//! `KeywardLayer` again with a Lua script that spreads requests over 10,000 distinct valid keys,
//! and over the same with every tenth key unknown (well-formed, never issued: refused with 401
//! after one store read, then from the negative cache). Besides requests/s, each run reports the
//! server's CPU time per request, which still shows the server's cost when the client (on the
//! other core) is the bottleneck.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Rounds of every run; figures are medians over them.
const ROUNDS: usize = 3;

/// The middle of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

/// One `wrk` run's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The server's CPU time (user and system, all threads) per request, in microseconds: the
    /// client shares the machine, and when it is the bottleneck requests/s hides what the
    /// server spends.
    server_us: f64,
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

/// What a `wrk` run sends.
#[derive(Debug, Clone, Copy)]
enum Load<'a> {
    /// One key on every request; every answer must be a 2xx.
    One(&'a str),
    /// The keys of a file (one a line) in turn, through `script`; `unknown` when some keys are
    /// meant to be refused.
    Many { script: &'a Path, keys: &'a str, unknown: bool },
}

/// The Lua script of the many-keys runs: each thread reads the key file named by its first
/// argument and sends its keys in turn, one a request.
const MANY_KEYS_LUA: &str = r#"
local keys = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do
    keys[#keys + 1] = "Bearer " .. line
  end
end
function request()
  i = i % #keys + 1
  return wrk.format(nil, nil, { ["Authorization"] = keys[i] })
end
"#;

/// CPU seconds process `pid` has used, user and system over all its threads (Linux's
/// `/proc/<pid>/stat`, in its fixed 100 ticks a second); NaN where that cannot be read.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return f64::NAN };
    // The command name, in parentheses, may hold spaces: count fields after it.
    let Some((_, rest)) = stat.rsplit_once(')') else { return f64::NAN };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / 100.0
}

fn wrk(server: u32, port: u16, load: Load<'_>, seconds: u32, connections: u32) -> Result<Figures> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency"]);
    match load {
        Load::One(key) => cmd.args(["-H", &format!("Authorization: Bearer {key}")]),
        Load::Many { script, .. } => cmd.arg("-s").arg(script),
    };
    cmd.arg(format!("http://127.0.0.1:{port}/"));
    if let Load::Many { keys, .. } = load {
        cmd.args(["--", keys]);
    }
    let cpu = cpu_seconds(server);
    let out = cmd.output().context("running wrk")?;
    let cpu = cpu_seconds(server) - cpu;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = Figures { rps: f64::NAN, p50_ms: f64::NAN, p99_ms: f64::NAN, server_us: f64::NAN };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            // "1234567 requests in 5.00s, 123.45MB read"
            (Some(n), Some("requests")) => f.server_us = cpu * 1e6 / n.parse().unwrap_or(f64::NAN),
            (Some("Requests/sec:"), Some(v)) => f.rps = v.parse().unwrap_or(f64::NAN),
            (Some("50%"), Some(v)) => f.p50_ms = parse_ms(v).unwrap_or(f64::NAN),
            (Some("99%"), Some(v)) => f.p99_ms = parse_ms(v).unwrap_or(f64::NAN),
            _ => {}
        }
    }
    let refusals_expected = matches!(load, Load::Many { unknown: true, .. });
    if (text.contains("Non-2xx") && !refusals_expected) || f.rps.is_nan() {
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
    let file = |name: &str| info[name].as_str().map(str::to_owned).context("no key file");
    let (keys, mixed) = (file("keys")?, file("mixed")?);
    let port = |name: &str| info[name].as_u64().map(|p| p as u16).context("no port");
    let (bare, keyward) = (port("bare")?, port("keyward")?);
    let script = std::env::temp_dir().join(format!("keyward-many-keys-{}.lua", std::process::id()));
    std::fs::write(&script, MANY_KEYS_LUA).context("writing the wrk script")?;
    let many = |keys| Load::Many { script: &script, keys, unknown: false };
    let runs = [
        ("single key", "axum (bare)", bare, Load::One(&key)),
        ("single key", "axum + headers", port("headers")?, Load::One(&key)),
        ("single key", "tower-http bearer", port("bearer")?, Load::One(&key)),
        ("single key", "KeywardLayer", keyward, Load::One(&key)),
        ("single key", "Keyward, IETF headers", port("ietf")?, Load::One(&key)),
        ("single key", "Keyward, no RL headers", port("hidden")?, Load::One(&key)),
        ("10,000 keys", "axum (bare)", bare, many(&keys)),
        ("10,000 keys", "KeywardLayer", keyward, many(&keys)),
        ("10% unknown", "axum (bare)", bare, Load::Many { script: &script, keys: &mixed, unknown: true }),
        ("10% unknown", "KeywardLayer", keyward, Load::Many { script: &script, keys: &mixed, unknown: true }),
    ];

    // Warm up every run (caches, connections), then measure them round-robin, so that drift on
    // a shared machine hits all alike; a ratio compares runs of the same round, and the figures
    // shown are medians over the rounds.
    let pid = server.id();
    for (_, _, p, load) in &runs {
        wrk(pid, *p, *load, 2, 32)?;
    }
    let mut rounds: Vec<Vec<Figures>> = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let round =
            runs.iter().map(|(_, _, p, load)| wrk(pid, *p, *load, seconds, 32)).collect::<Result<_>>()?;
        rounds.push(round);
    }
    drop(server.stdin.take());
    let _ = server.wait();
    let _ = std::fs::remove_file(&script);

    let median_of = |f: &dyn Fn(&[Figures]) -> f64| median(rounds.iter().map(|r| f(r)).collect());
    println!("\nload on loopback: wrk -t1 -c32 -d{seconds}s, medians of {ROUNDS} rounds");
    println!(
        "{:<12} {:<23} {:>11} {:>8} {:>8} {:>14}",
        "keys", "variant", "requests/s", "p50 ms", "p99 ms", "server us/req"
    );
    for (i, (keys, name, _, _)) in runs.iter().enumerate() {
        println!(
            "{keys:<12} {name:<23} {:>11.0} {:>8.3} {:>8.3} {:>14.2}",
            median_of(&|r| r[i].rps),
            median_of(&|r| r[i].p50_ms),
            median_of(&|r| r[i].p99_ms),
            median_of(&|r| r[i].server_us),
        );
    }
    let at = |keys: &str, name: &str| {
        runs.iter().position(|r| r.0 == keys && r.1 == name).expect("a run of the table")
    };
    // What the wire alone costs: a handler that sends the layer's headers as static values.
    let (bare, headers, keyward) = (
        at("single key", "axum (bare)"),
        at("single key", "axum + headers"),
        at("single key", "KeywardLayer"),
    );
    println!(
        "single key: axum + the layer's headers (static) / bare axum requests/s: {:.3}; \
         KeywardLayer / that: {:.3}",
        median_of(&|r| r[headers].rps / r[bare].rps),
        median_of(&|r| r[keyward].rps / r[headers].rps),
    );
    for (keys, name) in [
        ("single key", "KeywardLayer"),
        ("single key", "Keyward, IETF headers"),
        ("single key", "Keyward, no RL headers"),
        ("10,000 keys", "KeywardLayer"),
        ("10% unknown", "KeywardLayer"),
    ] {
        let (bare, keyward) = (at(keys, "axum (bare)"), at(keys, name));
        println!(
            "{keys}: {name} / bare axum requests/s: {:.3}; server CPU per request: +{:.2} us; \
             p99 added latency: {:.3} ms",
            median_of(&|r| r[keyward].rps / r[bare].rps),
            median_of(&|r| r[keyward].server_us - r[bare].server_us),
            median_of(&|r| r[keyward].p99_ms - r[bare].p99_ms),
        );
    }
    Ok(())
}
