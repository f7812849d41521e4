//! End-to-end figures of joins, one line each (`name=... records_per_s=...`), from records in
//! the log to results in the log, with RocksDB state and changelogs on; `records` counts the
//! left side's events, the time includes applying the right side:
//!
//! - `stream_table_join_json_100k_rows`: JSON readings over 100,000 sensors joined with a
//!   100,000-row table of a compacted topic, decoded into structs and the enriched struct out
//!   as JSON (every event finds its row, checked); `stream_table_merged_json_100k_rows`: the same as `serde_json::Value`
//!   objects merged by `merge_json`;
//! - `stream_table_loaded_json_100k_rows`: the same events against the table already in the
//!   store (loaded by an earlier run), as a running enrichment job sees them;
//! - `map_without_join_json_100k_keys`: the stream–table figure's work without the join (each
//!   reading mapped to the same output struct with a fixed place), for comparison;
//! - `asof_join_json_1k_keys`: JSON readings joined as of a right side with a version every
//!   10 events per key (1,000 keys);
//! - `interval_join_json_1k_keys`: two JSON streams of `--records` events each over 1,000 keys,
//!   paired within ±5 ms, 100 ms grace: each click has one view 3 ms later (the pairs out,
//!   counted).
//!
//! `cargo run --release -p eddy-benches --bin join-bench [-- --records N --only PREFIX --dir DIR]`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use eddy::{
    AppConfig, Application, AsOf, CleanupPolicy, Interval, JoinHow, Json, Log, OnMerge, Record,
    Str, TopicConfig,
};
use eddy_benches::{peak_rss_kib, work_dir, Figure};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Clone, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    value: u64,
}

#[derive(Clone, Serialize, Deserialize)]
struct Place {
    location: String,
    unit: String,
}

#[derive(Clone, Serialize, Deserialize)]
struct Enriched {
    sensor: String,
    value: u64,
    location: String,
    unit: String,
}

/// Options of `join-bench`.
#[derive(clap::Parser)]
struct Options {
    /// Left-side events of each figure.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Where to write (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run only the figures whose name starts with this (so that peak RSS is theirs alone).
    #[arg(long, default_value = "")]
    only: String,
}

/// Appends `n` records `record(i)` = (key, JSON, timestamp) to `topic` (created with `config`)
/// in batches of 10,000; returns the key and value bytes written.
fn produce(
    dir: &Path,
    topic: &str,
    config: TopicConfig,
    n: u64,
    record: impl Fn(u64) -> (String, Value, i64),
) -> u64 {
    let log = Log::open(dir).expect("open log");
    let w = (log.topic_or_create(topic, config).expect("topic"))
        .writer(0)
        .expect("writer");
    let (mut bytes, mut batch) = (0, Vec::with_capacity(10_000));
    for i in 0..n {
        let (key, value, ts) = record(i);
        let value = serde_json::to_vec(&value).expect("json");
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

fn config(dir: &Path, group: &str) -> AppConfig {
    let mut c = AppConfig::new(dir, group);
    c.memory_budget = std::env::var("JOIN_BENCH_BUDGET_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
        << 20;
    c
}

const T0: i64 = 1_700_000_000_000;

fn readings(dir: &Path, topic: &str, n: u64, keys: u64) -> u64 {
    produce(dir, topic, TopicConfig::default(), n, |i| {
        let key = format!("sensor-{}", i % keys);
        let value = json!({ "sensor": key, "value": i % 1000 });
        (key, value, T0 + i as i64)
    })
}

fn run(app: &mut Application, name: &'static str, records: u64, bytes: u64) -> (Figure, u64) {
    let start = Instant::now();
    app.run_until_idle().expect("run");
    let elapsed = start.elapsed();
    let figure = Figure {
        name,
        records,
        bytes,
        elapsed,
        baseline_records_per_s: None,
    };
    (figure, peak_rss_kib())
}

/// The table and the readings of the stream–table figures.
fn stream_table_inputs(dir: &Path, n: u64) -> u64 {
    const ROWS: u64 = 100_000;
    let compacted = TopicConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..TopicConfig::default()
    };
    produce(dir, "sensor-metadata", compacted, ROWS, |i| {
        let value = json!({ "location": format!("room {}", i % 977), "unit": "°C" });
        (format!("sensor-{i}"), value, T0 - 1)
    });
    readings(dir, "readings", n, ROWS)
}

fn all_joined(app: &Application, n: u64) {
    let joined = app.metrics().records_out;
    if joined != n {
        eprintln!("stream_table_join: {joined} of {n} events joined");
        std::process::exit(1);
    }
}

fn enrich_app(dir: &Path) -> Application {
    let app = Application::new(config(dir, "enrich")).expect("app");
    let input = app.topic::<Str, Json<Reading>>("readings").expect("topic");
    let meta = app
        .topic::<Str, Json<Place>>("sensor-metadata")
        .expect("topic");
    let out = app.topic::<Str, Json<Enriched>>("enriched").expect("topic");
    let table = app.table(&meta);
    app.dataframe(&input)
        .join_table(&table, JoinHow::Inner, |r: Reading, p: Option<&Place>| {
            let p = p.cloned().unwrap_or(Place {
                location: String::new(),
                unit: String::new(),
            });
            Enriched {
                sensor: r.sensor,
                value: r.value,
                location: p.location,
                unit: p.unit,
            }
        })
        .to_topic(&out);
    app
}

fn stream_table(dir: &Path, n: u64) -> (Figure, u64) {
    let bytes = stream_table_inputs(dir, n);
    let mut app = enrich_app(dir);
    let result = run(&mut app, "stream_table_join_json_100k_rows", n, bytes);
    all_joined(&app, n);
    result
}

/// The same events against the table already in the store (a running enrichment job): the
/// table and one event first, then the events in a second run.
fn stream_table_loaded(dir: &Path, n: u64) -> (Figure, u64) {
    stream_table_inputs(dir, 0);
    let mut app = enrich_app(dir);
    app.run_until_idle().expect("run");
    drop(app);
    let bytes = readings(dir, "readings", n, 100_000);
    let mut app = enrich_app(dir);
    let result = run(&mut app, "stream_table_loaded_json_100k_rows", n, bytes);
    all_joined(&app, n);
    result
}

/// The stream–table figure's work without the join: every reading mapped to the enriched
/// struct with one fixed place, from a single input.
fn map_baseline(dir: &Path, n: u64) -> (Figure, u64) {
    let bytes = readings(dir, "readings", n, 100_000);
    let mut app = Application::new(config(dir, "map")).expect("app");
    let input = app.topic::<Str, Json<Reading>>("readings").expect("topic");
    let out = app.topic::<Str, Json<Enriched>>("enriched").expect("topic");
    let place = Place {
        location: "room 1".into(),
        unit: "°C".into(),
    };
    app.dataframe(&input)
        .map(move |r: Reading| {
            let p = place.clone();
            Enriched {
                sensor: r.sensor,
                value: r.value,
                location: p.location,
                unit: p.unit,
            }
        })
        .to_topic(&out);
    run(&mut app, "map_without_join_json_100k_keys", n, bytes)
}

fn stream_table_merged(dir: &Path, n: u64) -> (Figure, u64) {
    let bytes = stream_table_inputs(dir, n);
    let mut app = Application::new(config(dir, "enrich")).expect("app");
    let input = app.topic::<Str, Json<Value>>("readings").expect("topic");
    let meta = app
        .topic::<Str, Json<Value>>("sensor-metadata")
        .expect("topic");
    let out = app.topic::<Str, Json<Value>>("enriched").expect("topic");
    let table = app.table(&meta);
    app.dataframe(&input)
        .join_table_merged(&table, JoinHow::Inner, OnMerge::KeepLeft)
        .to_topic(&out);
    let result = run(&mut app, "stream_table_merged_json_100k_rows", n, bytes);
    all_joined(&app, n);
    result
}

fn asof(dir: &Path, n: u64) -> (Figure, u64) {
    const KEYS: u64 = 1_000;
    produce(dir, "prices", TopicConfig::default(), n / 10, |i| {
        let key = format!("sensor-{}", i % KEYS);
        (key, json!({ "price": i }), T0 + i as i64 * 10)
    });
    let bytes = readings(dir, "readings", n, KEYS);
    let mut app = Application::new(config(dir, "asof")).expect("app");
    let input = app.topic::<Str, Json<Value>>("readings").expect("topic");
    let prices = app.topic::<Str, Json<Value>>("prices").expect("topic");
    let out = app.topic::<Str, Json<Value>>("priced").expect("topic");
    let right = app.dataframe(&prices);
    let spec = AsOf::new(Duration::from_secs(60)).how(JoinHow::Left);
    app.dataframe(&input)
        .join_asof_merged(&right, spec, OnMerge::KeepLeft)
        .to_topic(&out);
    run(&mut app, "asof_join_json_1k_keys", n, bytes)
}

fn interval(dir: &Path, n: u64) -> (Figure, u64) {
    const KEYS: u64 = 1_000;
    let bytes = readings(dir, "clicks", n, KEYS);
    produce(dir, "views", TopicConfig::default(), n, |i| {
        // Each click's view 3 ms later: one pair per click.
        let key = format!("sensor-{}", i % KEYS);
        (key, json!({ "view": i }), T0 + i as i64 + 3)
    });
    let mut app = Application::new(config(dir, "interval")).expect("app");
    let clicks = app.topic::<Str, Json<Value>>("clicks").expect("topic");
    let views = app.topic::<Str, Json<Value>>("views").expect("topic");
    let out = app.topic::<Str, Json<Value>>("pairs").expect("topic");
    let right = app.dataframe(&views);
    let spec = Interval::new(Duration::from_millis(5), Duration::from_millis(5))
        .grace(Duration::from_millis(100));
    app.dataframe(&clicks)
        .join_interval_merged(&right, spec, OnMerge::KeepLeft)
        .to_topic(&out);
    let result = run(&mut app, "interval_join_json_1k_keys", n, bytes);
    let pairs = app.metrics().records_out;
    if pairs != n {
        eprintln!("interval_join: {pairs} pairs of {n} clicks");
        std::process::exit(1);
    }
    result
}

fn main() {
    let o = Options::parse();
    let (_guard, root) = work_dir(o.dir.clone());
    type Bench = fn(&Path, u64) -> (Figure, u64);
    for (name, bench) in [
        ("stream_table_join_json_100k_rows", stream_table as Bench),
        ("stream_table_loaded_json_100k_rows", stream_table_loaded),
        ("stream_table_merged_json_100k_rows", stream_table_merged),
        ("map_without_join_json_100k_keys", map_baseline),
        ("asof_join_json_1k_keys", asof),
        ("interval_join_json_1k_keys", interval),
    ] {
        if !name.starts_with(&o.only) {
            continue;
        }
        let dir = root.join(name);
        let (figure, rss) = bench(&dir, o.records);
        println!("{}", figure.line_with_rss(rss));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
