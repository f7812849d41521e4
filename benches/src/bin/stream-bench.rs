//! End-to-end figures of the stream runtime, one line each (`name=... records_per_s=...`), from
//! records in the log to results in the log, with RocksDB state and changelogs on:
//!
//! - `stateless_json_map_filter`: JSON readings, map + filter, JSON out;
//! - `stateful_count_100k_keys`: a running count per key over 100,000 keys, counts out;
//! - `restore_1m_entries`: a store rebuilt from a changelog of 1,000,000 entries;
//! - `tumbling_10s_json_{5,100k}_keys`: the sensor workload — JSON readings 1 ms apart, 10 s
//!   tumbling windows with 1 s grace, count/min/max/mean per key, final results, every window
//!   checked afterwards (`eddy_benches::sensor::check`; the program exits 1 on a wrong window),
//!   closing by partition as the peers' programs do; `..._by_key` the same closing by key.
//!
//! `cargo run --release -p eddy-benches --bin stream-bench [-- --records N --only PREFIX --dir DIR
//! --guarantee at-least-once|exactly-once]`

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use eddy::{
    AppConfig, Application, Closing, Json, Log, ProcessingGuarantee, Record, State, Str,
    TopicConfig,
};
use eddy_benches::{peak_rss_kib, sensor, work_dir, Figure};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    value: i64,
}

/// Options of `stream-bench`.
#[derive(clap::Parser)]
struct Options {
    /// Input records of the stateless and stateful figures.
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// Changelog entries of the restore figure.
    #[arg(long, default_value_t = 1_000_000)]
    restore_entries: u64,
    /// Where to write (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run only the figures whose name starts with this (so that peak RSS is theirs alone).
    #[arg(long, default_value = "")]
    only: String,
    /// Delivery guarantee of every figure's application.
    #[arg(long, value_enum, default_value = "at-least-once")]
    guarantee: eddy_benches::stress::Guarantee,
}

/// The guarantee `--guarantee` chose (set once in `main`).
static GUARANTEE: std::sync::OnceLock<ProcessingGuarantee> = std::sync::OnceLock::new();

/// Appends `n` JSON readings over `keys` keys to `topic`.
/// Appends `n` keyed records `record(i)` = (key, JSON value, timestamp) to `topic`, in batches
/// of 10,000; returns the key and value bytes written.
fn produce(dir: &Path, topic: &str, n: u64, record: impl Fn(u64) -> (String, Vec<u8>, i64)) -> u64 {
    let log = Log::open(dir).expect("open log");
    let t = log
        .topic_or_create(topic, TopicConfig::default())
        .expect("topic");
    let w = t.writer(0).expect("writer");
    let mut bytes = 0;
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let (key, value, ts) = record(i);
        bytes += (key.len() + value.len()) as u64;
        batch.push(Record::keyed(key, value).at(ts));
        if batch.len() == 10_000 {
            w.append(&batch).expect("append");
            batch.clear();
        }
    }
    w.append(&batch).expect("append");
    bytes
}

/// `n` readings over `keys` sensors to `topic`, 1 ms apart in record time.
fn produce_readings(dir: &Path, topic: &str, n: u64, keys: u64) -> u64 {
    produce(dir, topic, n, |i| {
        let name = format!("sensor-{}", i % keys);
        let value = serde_json::to_vec(&Reading {
            sensor: name.clone(),
            value: (i % 1000) as i64,
        })
        .expect("json");
        (name, value, 1_700_000_000_000 + i as i64)
    })
}

fn config(dir: &Path, group: &str) -> AppConfig {
    let mut c = AppConfig::new(dir, group);
    c.memory_budget = 256 << 20;
    c.processing_guarantee = GUARANTEE.get().copied().unwrap_or_default();
    c
}

fn stateless(dir: &Path, n: u64) -> Figure {
    let bytes = produce_readings(dir, "readings", n, 5);
    let mut app = Application::new(config(dir, "stateless")).expect("app");
    let input = app.topic::<Str, Json<Reading>>("readings").expect("topic");
    let output = app.topic::<Str, Json<Reading>>("hot").expect("topic");
    app.dataframe(&input)
        .map(|mut r: Reading| {
            r.value *= 2;
            r
        })
        .filter(|r| r.value >= 1000)
        .to_topic(&output);
    let start = Instant::now();
    app.run_until_idle().expect("run");
    let elapsed = start.elapsed();
    assert_eq!(app.metrics().records_in, n);
    Figure {
        name: "stateless_json_map_filter",
        records: n,
        bytes,
        elapsed,
        baseline_records_per_s: None,
    }
}

fn counting_app(dir: &Path, group: &str, topic: &str) -> Application {
    let app = Application::new(config(dir, group)).expect("app");
    let input = app.topic::<Str, Json<Reading>>(topic).expect("topic");
    let output = app.topic::<Str, Json<u64>>("counts").expect("topic");
    app.dataframe(&input)
        .stateful_map(|_r: Reading, s: &mut State<'_>| {
            let n = s.get_or::<u64>("n", 0) + 1;
            s.set("n", &n);
            n
        })
        .to_topic(&output);
    app
}

fn stateful(dir: &Path, n: u64) -> Figure {
    let bytes = produce_readings(dir, "readings", n, 100_000);
    let mut app = counting_app(dir, "stateful", "readings");
    let start = Instant::now();
    app.run_until_idle().expect("run");
    let elapsed = start.elapsed();
    assert_eq!(app.metrics().records_in, n);
    Figure {
        name: "stateful_count_100k_keys",
        records: n,
        bytes,
        elapsed,
        baseline_records_per_s: None,
    }
}

fn restore(dir: &Path, entries: u64) -> Figure {
    // One key per record: the changelog gets one entry per record.
    produce_readings(dir, "distinct", entries, entries);
    counting_app(dir, "restore", "distinct")
        .run_until_idle()
        .expect("run");
    std::fs::remove_dir_all(dir.join("state").join("restore")).expect("remove state");
    let mut app = counting_app(dir, "restore", "distinct");
    let start = Instant::now();
    app.run_until_idle().expect("restore");
    let elapsed = start.elapsed();
    let m = app.metrics();
    assert_eq!(
        m.stores_rebuilt, 0,
        "a deleted store is created empty, not rebuilt"
    );
    assert!(
        m.restored_entries >= entries,
        "restored {}",
        m.restored_entries
    );
    Figure {
        name: "restore_1m_entries",
        records: m.restored_entries,
        bytes: 0,
        elapsed,
        baseline_records_per_s: None,
    }
}

/// `n` sensor readings over `keys` keys to `sensors` (see `eddy_benches::sensor`).
fn produce_timed(dir: &Path, n: u64, keys: u64) -> u64 {
    produce(dir, "sensors", n, |i| sensor::reading(i, keys))
}

/// The sensor workload's figure over `keys` keys, and the peak RSS when the run ended (before
/// the check).
fn windowed(dir: &Path, n: u64, keys: u64, closing: Closing, name: &'static str) -> (Figure, u64) {
    use eddy::aggregate::{Count, Max, Mean, Min};
    use eddy::WindowResult;
    let bytes = produce_timed(dir, n, keys);
    let mut app = Application::new(config(dir, "windows")).expect("app");
    let input = app
        .topic::<Str, Json<sensor::TimedReading>>("sensors")
        .expect("topic")
        .with_timestamp(|r, _| r.ts);
    let output = app
        .topic::<Str, Json<WindowResult<(u64, f64, f64, f64)>>>("agg")
        .expect("topic");
    let v = |r: &sensor::TimedReading| r.value as f64;
    app.dataframe(&input)
        .tumbling_window(
            std::time::Duration::from_millis(sensor::WINDOW_MS as u64),
            std::time::Duration::from_millis(sensor::GRACE_MS as u64),
        )
        .closing(closing)
        .aggregate((Count, Min(v), Max(v), Mean(v)))
        .emit_final()
        .to_topic(&output);
    let start = Instant::now();
    app.run_until_idle().expect("run");
    let elapsed = start.elapsed();
    assert_eq!(app.metrics().records_in, n);
    drop(app);
    let rss = peak_rss_kib();
    let (emitted, closed) = sensor::check(dir, "agg", n, keys, closing).unwrap_or_else(|e| {
        eprintln!("{name}: {e}");
        std::process::exit(1);
    });
    eprintln!("{name}: windows_emitted={emitted} windows_closed={closed} checked=ok");
    let figure = Figure {
        name,
        records: n,
        bytes,
        elapsed,
        baseline_records_per_s: None,
    };
    (figure, rss)
}

fn main() {
    let o = Options::parse();
    let _ = GUARANTEE.set(match o.guarantee {
        eddy_benches::stress::Guarantee::AtLeastOnce => ProcessingGuarantee::AtLeastOnce,
        eddy_benches::stress::Guarantee::ExactlyOnce => ProcessingGuarantee::ExactlyOnce,
    });
    let (_guard, root) = work_dir(o.dir.clone());
    let wanted = |name: &str| name.starts_with(&o.only);
    for (name, run) in [
        (
            "stateless_json_map_filter",
            stateless as fn(&Path, u64) -> Figure,
        ),
        ("stateful_count_100k_keys", stateful),
    ] {
        if !wanted(name) {
            continue;
        }
        let dir = root.join(name);
        println!("{}", run(&dir, o.records).line());
        let _ = std::fs::remove_dir_all(&dir);
    }
    if wanted("restore_1m_entries") {
        let dir = root.join("restore");
        println!("{}", restore(&dir, o.restore_entries).line());
        let _ = std::fs::remove_dir_all(&dir);
    }
    // Closing by partition, as the peers' programs close (`benches/peers/`); and by key.
    for (keys, closing, name) in [
        (5, Closing::Partition, "tumbling_10s_json_5_keys"),
        (100_000, Closing::Partition, "tumbling_10s_json_100k_keys"),
        (5, Closing::Key, "tumbling_10s_json_5_keys_by_key"),
        (100_000, Closing::Key, "tumbling_10s_json_100k_keys_by_key"),
    ] {
        if !wanted(name) {
            continue;
        }
        let dir = root.join(name);
        let (figure, rss) = windowed(&dir, o.records, keys, closing, name);
        println!("{}", figure.line_with_rss(rss));
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!("peak_rss_kib={}", peak_rss_kib());
}
