//! `stress`: the fault-tolerance stress harness. Generates a windowed workload, runs its
//! aggregation uninterrupted (the golden run), then runs it again in a child process that is
//! SIGKILLed at a random moment in each of `--cycles` cycles (optionally deleting or corrupting
//! its state between cycles) and restarted each time — each cycle appends its share of the input
//! first, so that every child has work when it is killed — and finally to the end. Every window the crashed run
//! emitted is compared with the golden run's. Prints one line:
//!
//! `name=stress closing=<key|partition> guarantee=<AtLeastOnce|ExactlyOnce> cycles=<n> killed=<n> events=<n> events_per_s=<golden rate> restore_ms_p50=<n>
//! restore_ms_p99=<n> restore_ms_max=<n> windows_expected=<n> missing=<n> differing=<n>
//! duplicated=<n> live_windows=<n> live_duplicated=<n> peak_rss_kib=<n>` — the `live_` counts are
//! those of a committed reader in this process tailing the output while the children run.
//!
//! and exits 1 when a window is missing or differs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use eddy_benches::stress::{compare, read_windows, tail_output, LiveTail, Workload};
use eddy_benches::{peak_rss_kib, work_dir};

/// Options of `stress`.
#[derive(Parser)]
struct Options {
    #[command(flatten)]
    workload: Workload,
    /// Kill-and-restart cycles.
    #[arg(long, default_value_t = 20)]
    cycles: u32,
    /// What happens to the state directory between cycles.
    #[arg(long, value_enum, default_value = "none")]
    damage: Damage,
    /// Where to work (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run the pipeline on this data directory (the child process).
    #[arg(long, hide = true)]
    child: Option<PathBuf>,
}

/// Damage done to the crashed run's state between cycles.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Damage {
    /// None.
    None,
    /// Delete the state directory (restored from the changelogs).
    Delete,
    /// Overwrite every RocksDB `CURRENT` file with garbage (detected, rebuilt from changelogs).
    Corrupt,
}

fn main() -> ExitCode {
    let options = Options::parse();
    if let Some(dir) = &options.child {
        return child(&options.workload, dir);
    }
    match harness(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("stress: {e}");
            ExitCode::from(2)
        }
    }
}

/// The child: runs the pipeline until its input is processed, logging restores to stderr.
fn child(workload: &Workload, dir: &Path) -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    match workload
        .application(dir)
        .and_then(|mut app| app.run_until_idle())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stress child: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What one child run did.
struct ChildRun {
    killed: bool,
    /// Restore time it logged (sum over its partitions), if it restored anything.
    restored_ms: Option<u64>,
    lifetime: Duration,
}

/// One run of the child: started, killed after `kill_after` unless it ended first.
fn run_child(
    workload: &Workload,
    dir: &Path,
    kill_after: Option<Duration>,
) -> Result<ChildRun, String> {
    let started = Instant::now();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut process = Command::new(exe)
        .arg("--child")
        .arg(dir)
        .args(workload.args())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start child: {e}"))?;
    let stderr = process.stderr.take().ok_or("no child stderr")?;
    let reader = std::thread::spawn(move || {
        let mut restored: Option<u64> = None;
        let mut errors = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(ms) = line
                .split_once("elapsed_ms=")
                .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<u64>().ok())
            {
                *restored.get_or_insert(0) += ms;
            } else if line.contains("stress child:") {
                errors.push(line);
            }
        }
        (restored, errors)
    });
    let mut killed = false;
    if let Some(after) = kill_after {
        let deadline = Instant::now() + after;
        while Instant::now() < deadline {
            if process.try_wait().map_err(|e| e.to_string())?.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if process.try_wait().map_err(|e| e.to_string())?.is_none() {
            process.kill().map_err(|e| e.to_string())?; // SIGKILL
            killed = true;
        }
    }
    let status = process.wait().map_err(|e| e.to_string())?;
    let (restored, errors) = reader.join().map_err(|_| "stderr reader panicked")?;
    if !killed && !status.success() {
        return Err(format!("child failed ({status}): {}", errors.join("; ")));
    }
    Ok(ChildRun {
        killed,
        restored_ms: restored,
        lifetime: started.elapsed(),
    })
}

fn damage(dir: &Path, how: Damage) -> std::io::Result<()> {
    let state = dir.join("state");
    match how {
        Damage::None => Ok(()),
        Damage::Delete => match std::fs::remove_dir_all(&state) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        Damage::Corrupt => {
            for f in files(&state).into_iter().filter(|f| f.ends_with("CURRENT")) {
                std::fs::write(f, b"\0garbage")?;
            }
            Ok(())
        }
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The thread tailing the crashed run's output as a committed reader; stopped and joined by
/// `finish`, or on drop when the harness fails before.
struct LiveReader {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<LiveTail, String>>>,
}

impl LiveReader {
    fn start(dir: &Path) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (dir, flag) = (dir.to_owned(), stop.clone());
        let thread = std::thread::spawn(move || tail_output(&dir, &flag));
        LiveReader {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it after one last pass to the end; what it saw, or its error.
    fn finish(&mut self) -> Result<LiveTail, String> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| "the live reader panicked".to_string())?,
            None => Err("the live reader was already stopped".into()),
        }
    }
}

impl Drop for LiveReader {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.finish();
        }
    }
}

fn percentile(sorted: &[u64], pct: usize) -> u64 {
    match sorted.len() {
        0 => 0,
        n => sorted[(n * pct / 100).min(n - 1)],
    }
}

fn harness(options: &Options) -> Result<bool, String> {
    let w = &options.workload;
    let (_tmp, root) = work_dir(options.dir.clone());
    let (golden, crashed) = (root.join("golden"), root.join("crashed"));
    w.write(&golden, 0, w.events).map_err(|e| e.to_string())?;
    let started = Instant::now();
    w.application(&golden)
        .and_then(|mut app| app.run_until_idle())
        .map_err(|e| format!("golden run: {e}"))?;
    let golden_time = started.elapsed();
    let expected = read_windows(&golden)?.0;

    let bar = indicatif::ProgressBar::new(u64::from(options.cycles));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} cycles {msg}")
            .map_err(|e| e.to_string())?,
    );
    // A committed reader in this process tails the output while the children write it.
    let mut live = LiveReader::start(&crashed);
    let mut rng = fastrand::Rng::with_seed(w.seed ^ 0x5eed);
    let (mut killed, mut restores) = (0u32, Vec::new());
    // Kills land anywhere in a child's life, as long as the last child that ended by itself
    // lived (start-up, restore, its share of the input, the final checkpoint).
    let cycles = u64::from(options.cycles.max(1));
    let mut lifetime_ms = 100 + 2 * golden_time.as_millis() as u64 / cycles;
    for cycle in 0..cycles {
        let (from, to) = (w.events * cycle / cycles, w.events * (cycle + 1) / cycles);
        w.write(&crashed, from, to).map_err(|e| e.to_string())?;
        let after = Duration::from_millis(5 + rng.u64(..lifetime_ms.max(1)));
        let run = run_child(w, &crashed, Some(after))?;
        if !run.killed {
            lifetime_ms = run.lifetime.as_millis() as u64;
        }
        killed += u32::from(run.killed);
        restores.extend(run.restored_ms);
        damage(&crashed, options.damage).map_err(|e| format!("damaging state: {e}"))?;
        bar.set_message(format!("{killed} killed"));
        bar.inc(1);
    }
    bar.finish_and_clear();
    w.write(&crashed, w.events * cycles / cycles, w.events)
        .map_err(|e| e.to_string())?;
    restores.extend(run_child(w, &crashed, None)?.restored_ms);
    restores.sort_unstable();

    let live = live.finish()?;
    let c = compare(&expected, &read_windows(&crashed)?);
    println!(
        "name=stress closing={} guarantee={:?} cycles={} killed={killed} events={} \
         events_per_s={:.0} \
         restore_ms_p50={} \
         restore_ms_p99={} restore_ms_max={} windows_expected={} missing={} differing={} \
         duplicated={} live_windows={} live_duplicated={} peak_rss_kib={}",
        w.closing,
        w.guarantee,
        options.cycles,
        w.events,
        w.events as f64 / golden_time.as_secs_f64(),
        percentile(&restores, 50),
        percentile(&restores, 99),
        restores.last().copied().unwrap_or(0),
        c.expected,
        c.missing,
        c.differing,
        c.duplicated,
        live.windows,
        live.repeated,
        peak_rss_kib()
    );
    Ok(c.missing == 0 && c.differing == 0)
}
