//! Start-up footprint of the edge use: the sensor tutorial's `temperature-processor` started as a
//! process on a data directory holding readings, timed from the spawn to its first processed
//! record (its first "Input value received" log line), and its peak resident memory (`VmHWM`)
//! once every reading has been processed. Each run starts with no state (a fresh store, restored
//! from an empty changelog), as a device's first boot; `--warm` keeps the state of the previous
//! run and appends new readings, as a restart.
//!
//! `cargo run --release -p eddy-benches --bin startup-bench -- [--runs 10] [--readings 1000] [--warm]`
//! Prints the median, minimum and maximum of both, and whether the goals (50 ms, 32 MiB) are met;
//! exits 1 when a run fails, or with `--check` when a goal is missed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

/// Start-up time and peak memory of the sensor processor, as a process.
#[derive(Parser)]
struct Options {
    /// Processor starts to measure.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Readings produced before each start.
    #[arg(long, default_value_t = 1000)]
    readings: u64,
    /// Keep the state of the previous run (a restart) instead of starting each run afresh.
    #[arg(long)]
    warm: bool,
    /// Exit 1 when the median misses a goal.
    #[arg(long)]
    check: bool,
}

const GOAL_MS: f64 = 50.0;
const GOAL_MIB: f64 = 32.0;

/// A program of the workspace, built beside this one.
fn program(name: &str) -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = me.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build the workspace first (cargo build --release --workspace)",
            path.display()
        ))
    }
}

fn produce(producer: &Path, dir: &Path, readings: u64) -> Result<(), String> {
    let out = Command::new(producer)
        .args(["--count", &readings.to_string(), "--fast", "--quiet"])
        .arg("--data-dir")
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    out.status.success().then_some(()).ok_or_else(|| {
        format!(
            "temperature-producer failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// One start: (time to the first processed record, peak RSS in KiB after `readings` records).
fn one_run(processor: &Path, dir: &Path, readings: u64) -> Result<(Duration, u64), String> {
    let started = Instant::now();
    let mut child = Command::new(processor)
        .args(["--log-level", "info"])
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Stderr is read to its end on a thread (the processor's last lines come after SIGTERM);
    // the channel says when the first and the last reading were processed.
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = 0;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Input value received") {
                seen += 1;
                if seen == 1 || seen == readings {
                    let _ = tx.send((seen, started.elapsed()));
                }
            }
        }
    });
    let mut first = None;
    let mut seen = 0;
    while let Ok((n, at)) = rx.recv_timeout(Duration::from_secs(60)) {
        first.get_or_insert(at);
        seen = n;
        if n == readings {
            break;
        }
    }
    let rss = peak_rss_kib(child.id());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().map_err(|e| e.to_string())?;
    let _ = reader.join();
    if !status.success() {
        return Err(format!("temperature-processor exited with {status}"));
    }
    match (first, rss) {
        (Some(first), Some(rss)) if seen == readings => Ok((first, rss)),
        _ => Err(format!("the processor saw {seen} of {readings} readings")),
    }
}

fn summary(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let median = values.get(values.len() / 2).copied().unwrap_or(f64::NAN);
    let min = values.first().copied().unwrap_or(f64::NAN);
    let max = values.last().copied().unwrap_or(f64::NAN);
    (median, min, max)
}

fn bench(o: &Options) -> Result<bool, String> {
    let processor = program("temperature-processor")?;
    let producer = program("temperature-producer")?;
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut times = Vec::new();
    let mut peaks = Vec::new();
    for run in 0..o.runs {
        let dir = match o.warm {
            true => root.path().join("data"),
            false => root.path().join(format!("run-{run}")),
        };
        produce(&producer, &dir, o.readings)?;
        let (first, rss) = one_run(&processor, &dir, o.readings)?;
        times.push(first.as_secs_f64() * 1e3);
        peaks.push(rss as f64 / 1024.0);
    }
    let (t, t_min, t_max) = summary(times);
    let (m, m_min, m_max) = summary(peaks);
    let kind = if o.warm { "restart" } else { "first start" };
    println!(
        "temperature-processor, {kind}, {} readings, {} runs:",
        o.readings, o.runs
    );
    println!("  first record processed after {t:.1} ms (median; {t_min:.1}-{t_max:.1})");
    println!("  peak RSS {m:.1} MiB (median; {m_min:.1}-{m_max:.1})");
    let met = t <= GOAL_MS && m <= GOAL_MIB;
    println!(
        "  goals {GOAL_MS} ms and {GOAL_MIB} MiB: {}",
        if met { "met" } else { "missed" }
    );
    Ok(met)
}

fn main() -> ExitCode {
    let o = Options::parse();
    match bench(&o) {
        Ok(met) if met || !o.check => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("startup-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
