//! Both tutorials end to end, with no broker, in a temporary (or given) data directory:
//!
//! 1. sensor aggregation: synthetic readings → 10 s tumbling windows with 1 s grace per sensor →
//!    the closed windows' count/min/max/mean, printed as a table;
//! 2. reprocessing: GPS track points → per-track distances in miles → SQLite; the distance
//!    group is rewound to the earliest offset and reprocesses in kilometres, and the writer fixes
//!    the table. Both tables and the group's offsets before and after the rewind are printed.
//!
//! `cargo run --release -p eddy-examples --bin demo [-- --data-dir DIR] [--readings N] [--csv FILE]`

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use eddy::{Groups, Log, ResetScope, ResetTarget};
use eddy_examples::common::{init_logging, AnyResult};
use eddy_examples::gps::{self, Unit};
use eddy_examples::sensor::{self, Aggregated, Aggregation, ProducerOptions};

/// Runs both tutorials end to end with no broker: temperature readings aggregated in 10 s
/// tumbling windows, then GPS tracks to per-track distances in SQLite, rewound and
/// reprocessed in kilometres.
#[derive(Parser)]
#[command(version)]
struct Options {
    /// Data directory (default: a temporary one, removed at the end).
    #[arg(long, env = "EDDY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Temperature readings to produce (a random 0–1 s apart in event time).
    #[arg(long, default_value_t = 150)]
    readings: u64,
    /// The GPS track-point CSV.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/go_track_trackspoints_sm.csv"))]
    csv: PathBuf,
}

fn main() -> std::process::ExitCode {
    eddy_examples::common::report(try_main())
}

fn try_main() -> AnyResult<()> {
    let o = Options::parse();
    init_logging(tracing::Level::WARN);
    let tmp = tempfile::tempdir()?;
    let dir = o.data_dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    // The tutorials append to their topics: a second demo in one directory would mix two runs.
    let existing = Log::open_read_only(&dir).list_topics()?;
    if !existing.is_empty() {
        return Err(format!(
            "data directory {} already holds topics ({}); the demo needs a new or empty one \
             (--data-dir DIR, or unset EDDY_DATA_DIR for a temporary one)",
            dir.display(),
            existing.join(", ")
        )
        .into());
    }
    println!("data directory: {}\n", dir.display());
    sensor_tutorial(&dir, o.readings)?;
    reprocessing_tutorial(&dir, &o.csv)?;
    Ok(())
}

fn sensor_tutorial(dir: &Path, readings: u64) -> AnyResult<()> {
    println!("== Sensor aggregation: {readings} readings, 10 s tumbling windows, 1 s grace ==");
    let options = ProducerOptions {
        count: readings,
        fast: true,
        print: false,
    };
    sensor::produce(dir, options, &mut std::io::sink())?;
    let mut app = sensor::processor(
        dir,
        Aggregation::Reduce,
        sensor::CLOSING,
        eddy::ErrorPolicy::Fail,
    )?;
    app.run_until_idle()?;
    let log = Log::open(dir)?;
    let topic = log.topic(sensor::AGG_TOPIC)?;
    println!(
        "{:<26} {:<8} {:>5} {:>5} {:>5} {:>8}",
        "window end", "sensor", "count", "min", "max", "mean"
    );
    for p in 0..topic.partitions() {
        let mut reader = topic.reader(p)?;
        let fetch = reader.read(0, usize::MAX, usize::MAX)?;
        for r in fetch.iter() {
            let key = String::from_utf8_lossy(r.key.unwrap_or_default()).into_owned();
            let a: Aggregated = serde_json::from_slice(r.value.unwrap_or_default())?;
            let t = a.temperature;
            println!(
                "{:<26} {key:<8} {:>5} {:>5} {:>5} {:>8.2}",
                sensor::format_ts(a.time * 1_000),
                t.count,
                t.min,
                t.max,
                t.mean
            );
        }
    }
    println!(
        "{} readings in, {} closed windows out (the last window of each sensor stays open)\n",
        app.metrics().records_in,
        app.metrics().records_out
    );
    Ok(())
}

fn reprocessing_tutorial(dir: &Path, csv: &Path) -> AnyResult<()> {
    println!("== Reprocessing: {} ==", csv.display());
    let points = gps::read_csv(csv)?;
    gps::produce(dir, &points, |_| {})?;
    let db = gps::db_path(dir, None);
    let rewrite = |unit: Unit| -> AnyResult<()> {
        gps::distance_calculator(dir, unit, eddy::ErrorPolicy::Fail)?.run_until_idle()?;
        gps::write_db(dir, &db, true, Arc::new(AtomicBool::new(false)))?;
        println!("dist_calc after the {unit:?} run:");
        print!("{}", gps::table(&gps::query(&db)?));
        Ok(())
    };
    rewrite(Unit::Miles)?;
    let log = Log::open(dir)?;
    let groups = Groups::new(&log);
    describe(&groups)?;
    let scope = ResetScope::Topics(vec![(gps::POINTS_TOPIC.to_string(), None)]);
    let plan = groups.plan_reset(gps::DISTANCE_GROUP, &scope, ResetTarget::Earliest)?;
    groups.execute_reset(gps::DISTANCE_GROUP, &plan)?;
    println!("reset {} to the earliest offset:", gps::DISTANCE_GROUP);
    describe(&groups)?;
    rewrite(Unit::Km)
}

fn describe(groups: &Groups) -> AnyResult<()> {
    let d = groups.describe(gps::DISTANCE_GROUP)?;
    println!(
        "GROUP                TOPIC            PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG"
    );
    for p in d.partitions {
        let show = |o: Option<u64>| o.map_or("-".to_string(), |o| o.to_string());
        println!(
            "{:<20} {:<16} {:>9}  {:>14}  {:>14}  {:>3}",
            d.group,
            p.topic,
            p.partition,
            show(p.current_offset),
            p.log_end_offset,
            p.lag.map_or("-".to_string(), |l| l.to_string())
        );
    }
    println!();
    Ok(())
}
