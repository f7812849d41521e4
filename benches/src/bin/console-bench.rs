//! The console under load: how fast it answers near the end of a large topic, and whether a
//! producer appending at full speed beside it slows down.
//!
//! `cargo build --release --workspace && cargo run --release -p eddy-benches --bin console-bench --
//! [--records 10000000] [--runs 9] [--produce 2000000] [--dir /dev/shm]`
//!
//! The console runs as users run it, as the `eddy-console` program (built beside this one).
//!
//! 1. Writes `--records` JSON records (about 100 bytes each) to one partition, then times the
//!    console's pages and APIs near the end: the newest page, a page from an offset 100 before
//!    the end, the newest page of one key, a key that is nowhere (the filter's whole budget of
//!    200,000 records), the topic page and `/metrics`. Prints the median and the slowest of 20
//!    requests each; the goal is 100 ms.
//! 2. Appends `--produce` records in batches of 1,000, alternately with the console idle and with
//!    a live tail open on the topic and the newest page asked for every 100 ms; prints
//!    records/s of each run, the ratio of the medians and of each pair of runs.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use eddy::{Log, Record, TopicConfig};

/// The console as users run it: the `eddy-console` program, a process of its own.
struct ConsoleProcess {
    child: std::process::Child,
    url: String,
    /// Drains the console's standard error until it exits.
    stderr: std::thread::JoinHandle<()>,
}

impl ConsoleProcess {
    fn start(dir: &std::path::Path) -> Result<Self, String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let program = me.with_file_name("eddy-console");
        if !program.is_file() {
            return Err(format!(
                "{} is missing: build the workspace first",
                program.display()
            ));
        }
        let mut child = std::process::Command::new(&program)
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let mut stderr = std::io::BufReader::new(stderr);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stderr, &mut line).map_err(|e| e.to_string())?;
        let url = (line.split_whitespace())
            .find(|w| w.starts_with("http://"))
            .ok_or_else(|| format!("the console did not say where it listens: {line:?}"))?
            .to_owned();
        let stderr = std::thread::spawn(move || {
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        });
        Ok(ConsoleProcess { child, url, stderr })
    }

    /// The console's peak resident memory (`VmHWM`) in KiB, 0 where unknown.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()));
        let line = status.unwrap_or_default();
        let hwm = line.lines().find_map(|l| l.strip_prefix("VmHWM:"));
        hwm.and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Interrupts it (as Ctrl-C) and waits for it to exit.
    fn stop(mut self) -> Result<(), String> {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .map_err(|e| e.to_string())?;
        let status = self.child.wait().map_err(|e| e.to_string())?;
        self.stderr
            .join()
            .map_err(|_| "stderr drain panicked".to_owned())?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("the console exited with {status}"))
    }
}

/// The console's latency near the end of a large topic, and its effect on a producer.
#[derive(Parser)]
struct Options {
    /// Records in the browsed topic.
    #[arg(long, default_value_t = 10_000_000)]
    records: u64,
    /// Records each producer run appends.
    #[arg(long, default_value_t = 2_000_000)]
    produce: u64,
    /// Producer runs with and without the console (alternating).
    #[arg(long, default_value_t = 9)]
    runs: usize,
    /// Where the data directory is made (e.g. /dev/shm, to take the disk's write-back out of
    /// the producer's figures). Default: the system's temporary directory.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

const GOAL_MS: f64 = 100.0;

fn record(i: u64) -> Record {
    let key = format!("sensor-{}", i % 50);
    let value = format!(
        r#"{{"time":{},"temperature":{{"mean":{:.2},"count":{}}}}}"#,
        1_700_000_000_000 + i,
        (i % 1000) as f64 / 10.0,
        i % 97
    );
    Record::keyed(key, value.into_bytes()).at(1_700_000_000_000 + i as i64)
}

fn append(log: &Log, topic: &str, count: u64) -> Result<Duration, String> {
    let t = log.topic(topic).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut i = 0;
    while i < count {
        let n = 1000.min(count - i);
        t.append((i..i + n).map(record))
            .map_err(|e| e.to_string())?;
        i += n;
    }
    Ok(started.elapsed())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn time_get(agent: &ureq::Agent, url: &str) -> Result<f64, String> {
    let started = Instant::now();
    let mut response = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), String> {
    let options = Options::parse();
    let dir = match &options.dir {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    }
    .map_err(|e| e.to_string())?;
    let log = Log::open(dir.path()).map_err(|e| e.to_string())?;
    log.create_topic("big", TopicConfig::with_partitions(1))
        .map_err(|e| e.to_string())?;
    let took = append(&log, "big", options.records)?;
    println!(
        "wrote {} records in {:.1} s",
        options.records,
        took.as_secs_f64()
    );
    let console = ConsoleProcess::start(dir.path())?;
    let base = console.url.clone();
    let near = options.records.saturating_sub(100);
    let pages = [
        ("newest page", "/topics/big/messages".to_owned()),
        ("newest page, API", "/api/topics/big/messages".to_owned()),
        (
            "page from end-100",
            format!("/topics/big/messages?partition=0&from=offset&offset={near}"),
        ),
        (
            "newest page of one key",
            "/topics/big/messages?key=sensor-7".to_owned(),
        ),
        (
            "a key that is nowhere (looks at 200,000 records)",
            "/topics/big/messages?key=nobody".to_owned(),
        ),
        ("topic page", "/topics/big".to_owned()),
        ("metrics", "/metrics".to_owned()),
    ];
    let client = agent();
    let mut met = true;
    for (name, path) in &pages {
        let url = format!("{base}{path}");
        time_get(&client, &url)?; // warm: first open of the segment's index
        let times = (0..20)
            .map(|_| time_get(&client, &url))
            .collect::<Result<Vec<_>, _>>()?;
        let slowest = times.iter().copied().fold(0.0, f64::max);
        let m = median(times);
        met &= slowest <= GOAL_MS;
        println!("console {name}: median_ms={m:.2} max_ms={slowest:.2} (goal {GOAL_MS} ms)");
    }
    // The producer beside the console, each run on a topic of its own, deleted after it.
    let (mut alone, mut beside) = (Vec::new(), Vec::new());
    for run in 0..options.runs * 2 {
        let with_console = run % 2 == 1;
        let fresh = format!("fresh-{run}");
        log.create_topic(&fresh, TopicConfig::with_partitions(1))
            .map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let browsing = with_console.then(|| {
            let (stop, base, fresh) = (stop.clone(), base.clone(), fresh.clone());
            std::thread::spawn(
                move || -> Result<(u64, std::thread::JoinHandle<u64>), String> {
                    let client = agent();
                    let tail = client
                        .get(&format!("{base}/api/topics/{fresh}/tail"))
                        .call()
                        .map_err(|e| e.to_string())?;
                    let mut tail = tail.into_body().into_reader();
                    let tail_stop = stop.clone();
                    let tailer = std::thread::spawn(move || {
                        let mut buf = vec![0u8; 1 << 16];
                        let mut bytes = 0u64;
                        while !tail_stop.load(Ordering::Relaxed) {
                            match tail.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => bytes += n as u64,
                            }
                        }
                        bytes
                    });
                    let mut requests = 0;
                    while !stop.load(Ordering::Relaxed) {
                        time_get(&client, &format!("{base}/topics/{fresh}/messages"))?;
                        requests += 1;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    // The tail ends when its topic is deleted after the run; joined then.
                    Ok((requests, tailer))
                },
            )
        });
        let took = append(&log, &fresh, options.produce)?;
        stop.store(true, Ordering::Relaxed);
        let (requests, tailer) = match browsing {
            Some(b) => {
                let (requests, tailer) = b
                    .join()
                    .map_err(|_| "browsing thread panicked".to_owned())??;
                (requests, Some(tailer))
            }
            None => (0, None),
        };
        let rate = options.produce as f64 / took.as_secs_f64();
        let label = if with_console {
            "with console"
        } else {
            "alone"
        };
        println!("producer {label}: records_per_s={rate:.0} console_requests={requests}");
        if with_console {
            beside.push(rate)
        } else {
            alone.push(rate)
        }
        log.delete_topic(&fresh).map_err(|e| e.to_string())?;
        if let Some(tailer) = tailer {
            tailer
                .join()
                .map_err(|_| "tail reader panicked".to_owned())?;
        }
    }
    // Each run with the console against the run alone just before it: the machine's drift
    // over the runs cancels out.
    let pairs: Vec<f64> = alone.iter().zip(&beside).map(|(a, b)| b / a).collect();
    let (a, b) = (median(alone), median(beside));
    println!(
        "producer median alone={a:.0} with_console={b:.0} ratio={:.3} pairwise_ratios={:?} \
         median_pairwise_ratio={:.3}",
        b / a,
        pairs.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>(),
        median(pairs.clone())
    );
    println!("peak_rss_kib={}", eddy_benches::peak_rss_kib());
    println!("console_peak_rss_kib={}", console.peak_rss_kib());
    console.stop()?;
    if !met {
        println!("a request was slower than {GOAL_MS} ms");
    }
    Ok(())
}
