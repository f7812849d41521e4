//! End-to-end log benchmark: prints one line per figure,
//! `name=<figure> records_per_s=<n> mb_per_s=<n> baseline_ratio=<r> peak_rss_kib=<n>`.
//!
//! Figures: `append_100b` and `append_1kib` (durability none, one thread, 1,000 records per
//! append, into the page cache), the same with a final fsync included (`_synced`: until the data is
//! on disk), `consume_commit` (a consumer-group member polling 10,000 records at a time and
//! committing after each poll; its baseline is the `replay` figure), `replay` (reading the 100 B topic from offset 0), and `append_always_4` (durability
//! always, 4 threads appending 100 records of 100 B at a time). Each baseline runs in the same
//! process over the same bytes: a plain `write()` loop writing eddy's segment bytes in chunks of
//! one append's size, a plain `read()` loop over the segment files, and for `always` four threads
//! each doing `write()` + `fdatasync()` per chunk.
//!
//! Usage: `log-bench [--records-100b N] [--records-1kib N] [--dir PATH]`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use eddy::{Consumer, ConsumerConfig, Durability, Log, TopicConfig};
use eddy_benches::{records, timed, work_dir, Figure};

/// Options of `log-bench`.
#[derive(clap::Parser)]
struct Options {
    /// Records of the 100-byte figures.
    #[arg(long, default_value_t = 5_000_000)]
    records_100b: usize,
    /// Records of the 1-KiB figures.
    #[arg(long, default_value_t = 1_000_000)]
    records_1kib: usize,
    /// Where to write (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

const PER_APPEND: usize = 1000;

fn config(durability: Durability) -> TopicConfig {
    let mut c = TopicConfig::with_partitions(1);
    c.durability = durability;
    c.segment_bytes = 512 << 20;
    c
}

fn segment_bytes(dir: &Path) -> u64 {
    walk(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| p.metadata().map_or(0, |m| m.len()))
        .sum()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Plain write loop: `total` bytes in chunks of `chunk`, one `write()` each. Returns seconds for
/// the writes, and for the writes plus a final `fsync`.
fn baseline_write(path: &Path, total: u64, chunk: usize) -> (f64, f64) {
    let buf = vec![7u8; chunk];
    let mut f = File::create(path).expect("baseline file");
    let ((), t) = timed(|| {
        let mut left = total;
        while left > 0 {
            let n = (left as usize).min(chunk);
            f.write_all(&buf[..n]).expect("baseline write");
            left -= n as u64;
        }
    });
    let ((), sync) = timed(|| settle(&f));
    drop(f);
    let _ = std::fs::remove_file(path);
    (t.as_secs_f64(), (t + sync).as_secs_f64())
}

/// Untimed: pushes written data to disk so that the next timed phase does not pay for it.
fn settle(f: &File) {
    let _ = f.sync_all();
}

const ROUNDS: usize = 3;

/// (user, system) CPU time of this process in clock ticks, from `/proc/self/stat`.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    (
        f.get(11).copied().unwrap_or(0),
        f.get(12).copied().unwrap_or(0),
    )
}

/// Best of [`ROUNDS`] alternating runs of eddy's appends and the plain write loop over the same
/// bytes. Returns the figure (page cache), the figure including a final fsync (`_synced`), and the
/// log of the last eddy round (for the replay figure).
fn append_figure(
    name: &'static str,
    synced_name: &'static str,
    root: &Path,
    n: usize,
    size: usize,
) -> (Figure, Figure, PathBuf) {
    let batch = records(PER_APPEND, size);
    let appends = n / PER_APPEND;
    let records = (appends * PER_APPEND) as u64;
    let mut best_eddy = f64::MAX;
    let mut best_base = f64::MAX;
    let mut best_eddy_synced = f64::MAX;
    let mut best_base_synced = f64::MAX;
    let mut written = 0;
    let mut last_dir = root.join(name);
    for round in 0..ROUNDS {
        let dir = root.join(format!("{name}-{round}"));
        let log = Log::open(&dir).expect("open log");
        let topic = log
            .create_topic("bench", config(Durability::None))
            .expect("create");
        let w = topic.writer(0).expect("writer");
        let cpu_before = cpu_ticks();
        let ((), elapsed) = timed(|| {
            for _ in 0..appends {
                w.append(&batch).expect("append");
            }
        });
        let cpu_after = cpu_ticks();
        if std::env::var_os("LOG_BENCH_VERBOSE").is_some() {
            eprintln!(
                "{name} round {round}: eddy user {} sys {} ticks",
                cpu_after.0 - cpu_before.0,
                cpu_after.1 - cpu_before.1
            );
        }
        best_eddy = best_eddy.min(elapsed.as_secs_f64());
        let ((), flush) = timed(|| w.flush().expect("flush"));
        best_eddy_synced = best_eddy_synced.min((elapsed + flush).as_secs_f64());
        drop((w, topic, log));
        written = segment_bytes(&dir);
        for seg in walk(&dir) {
            if let Ok(f) = File::open(&seg) {
                settle(&f);
            }
        }
        let chunk = (written / appends as u64) as usize;
        let (base, base_synced) =
            baseline_write(&root.join(format!("{name}.baseline")), written, chunk);
        best_base_synced = best_base_synced.min(base_synced);
        if std::env::var_os("LOG_BENCH_VERBOSE").is_some() {
            eprintln!(
                "{name} round {round}: eddy {:.3}s baseline {base:.3}s ({written} bytes)",
                elapsed.as_secs_f64()
            );
        }
        best_base = best_base.min(base);
        if round + 1 < ROUNDS {
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            last_dir = dir;
        }
    }
    let fig = Figure {
        name,
        records,
        bytes: written,
        elapsed: std::time::Duration::from_secs_f64(best_eddy),
        baseline_records_per_s: Some(records as f64 / best_base),
    };
    let synced = Figure {
        name: synced_name,
        records,
        bytes: written,
        elapsed: std::time::Duration::from_secs_f64(best_eddy_synced),
        baseline_records_per_s: Some(records as f64 / best_base_synced),
    };
    (fig, synced, last_dir)
}

fn replay_figure(root: &Path) -> Figure {
    let log = Log::open(root).expect("open log");
    let topic = log.topic("bench").expect("topic");
    let mut reader = topic.reader(0).expect("reader");
    let (count, elapsed) = timed(|| {
        let mut next = 0;
        let mut count = 0u64;
        loop {
            let f = reader.read(next, 100_000, 4 << 20).expect("read");
            if f.is_empty() {
                return count;
            }
            count += f.iter().map(|r| u64::from(r.value.is_some())).sum::<u64>();
            next = f.next_offset();
        }
    });
    let files: Vec<PathBuf> = walk(root)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    let bytes: u64 = files
        .iter()
        .map(|p| p.metadata().map_or(0, |m| m.len()))
        .sum();
    let ((), base) = timed(|| {
        let mut buf = vec![0u8; 4 << 20];
        for p in &files {
            let mut f = File::open(p).expect("open");
            while f.read(&mut buf).expect("read") > 0 {}
        }
    });
    Figure {
        name: "replay",
        records: count,
        bytes,
        elapsed,
        baseline_records_per_s: Some(count as f64 / base.as_secs_f64()),
    }
}

/// A group member polling 10,000 records at a time and committing after each poll, over the topic
/// `replay` read; its baseline is the replay figure itself.
fn consume_commit_figure(root: &Path, replay: &Figure) -> Figure {
    let log = Log::open(root).expect("open log");
    let mut config = ConsumerConfig::new("bench");
    config.max_poll_records = 10_000;
    let mut consumer = Consumer::new(&log, config).expect("consumer");
    consumer.subscribe(&["bench"]).expect("subscribe");
    let end = log
        .topic("bench")
        .expect("topic")
        .reader(0)
        .expect("reader")
        .end_offset();
    let (count, elapsed) = timed(|| {
        let mut count = 0u64;
        loop {
            let batches = consumer
                .poll(std::time::Duration::from_millis(100))
                .expect("poll");
            for b in &batches {
                count += b
                    .records
                    .iter()
                    .map(|r| u64::from(r.value.is_some()))
                    .sum::<u64>();
            }
            consumer.commit().expect("commit");
            if consumer.position("bench", 0).unwrap_or(0) >= end {
                return count;
            }
        }
    });
    Figure {
        name: "consume_commit",
        records: count,
        bytes: replay.bytes,
        elapsed,
        baseline_records_per_s: Some(replay.records_per_s()),
    }
}

fn always_figure(root: &Path) -> Figure {
    const THREADS: usize = 4;
    const PER: usize = 100;
    const APPENDS: usize = 1000;
    let log = Log::open(root.join("always")).expect("open log");
    let topic = log
        .create_topic("bench", config(Durability::Always))
        .expect("create");
    let w = topic.writer(0).expect("writer");
    let batch = Arc::new(records(PER, 100));
    let ((), elapsed) = timed(|| {
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                let (w, batch) = (w.clone(), batch.clone());
                s.spawn(move || {
                    for _ in 0..APPENDS {
                        w.append(&batch).expect("append");
                    }
                });
            }
        });
    });
    let records = (THREADS * PER * APPENDS) as u64;
    let bytes = segment_bytes(&root.join("always"));
    let chunk = (bytes / (THREADS * APPENDS) as u64) as usize;
    let path = root.join("always.baseline");
    let f = Arc::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("baseline"),
    );
    let ((), base) = timed(|| {
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                let f = f.clone();
                s.spawn(move || {
                    let buf = vec![7u8; chunk];
                    for _ in 0..APPENDS {
                        (&*f).write_all(&buf).expect("write");
                        f.sync_data().expect("fdatasync");
                    }
                });
            }
        });
    });
    let _ = std::fs::remove_file(&path);
    Figure {
        name: "append_always_4",
        records,
        bytes,
        elapsed,
        baseline_records_per_s: Some(records as f64 / base.as_secs_f64()),
    }
}

fn main() {
    let o = Options::parse();
    let (_guard, root) = work_dir(o.dir.clone());
    let (f100, f100s, dir100) = append_figure(
        "append_100b",
        "append_100b_synced",
        &root,
        o.records_100b,
        100,
    );
    println!("{}", f100.line());
    println!("{}", f100s.line());
    let replay = replay_figure(&dir100);
    println!("{}", replay.line());
    println!("{}", consume_commit_figure(&dir100, &replay).line());
    let _ = std::fs::remove_dir_all(&dir100);
    let (f1k, f1ks, dir1k) = append_figure(
        "append_1kib",
        "append_1kib_synced",
        &root,
        o.records_1kib,
        1024,
    );
    println!("{}", f1k.line());
    println!("{}", f1ks.line());
    let _ = std::fs::remove_dir_all(&dir1k);
    println!("{}", always_figure(&root).line());
}
