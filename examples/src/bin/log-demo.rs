//! The log demo: durable topics with no broker. It creates a topic of three partitions, appends
//! sensor readings keyed by sensor (Kafka's partitioner keeps each sensor in one partition),
//! replays them, finds the first reading at a time, reopens the data directory as a restarted
//! process would, and shows that a second reader resumes where it stopped.
//!
//! `cargo run --release -p eddy-examples --bin log-demo [-- --data-dir DIR] [--readings N]`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use eddy::{Durability, Log, Record, TopicConfig};
use eddy_examples::common::AnyResult;

/// Durable topics with no broker: appends sensor readings to a topic of three partitions,
/// replays them, finds a reading by time, and appends again after reopening the directory.
#[derive(Parser)]
#[command(version)]
struct Options {
    /// Data directory (default: a temporary one, removed at the end).
    #[arg(long, env = "EDDY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Readings to append.
    #[arg(long, default_value_t = 300_000)]
    readings: u64,
}

fn main() -> std::process::ExitCode {
    eddy_examples::common::report(try_main())
}

fn try_main() -> AnyResult<()> {
    let Options { data_dir, readings } = Options::parse();
    let tmp = tempfile::tempdir()?;
    let dir = data_dir.unwrap_or_else(|| tmp.path().to_owned());
    println!("data directory: {}", dir.display());

    let log = Log::open(&dir)?;
    let mut config = TopicConfig::with_partitions(3);
    config.durability = Durability::IntervalMs(200);
    let topic = log.topic_or_create("readings", config)?;
    let sensors = ["Sensor1", "Sensor2", "Sensor3", "Sensor4", "Sensor5"];
    let start_ts = 1_700_000_000_000i64;

    let started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..readings {
        let sensor = sensors[(i * 7 % 5) as usize];
        let value = format!(
            r#"{{"ts":{},"value":{}}}"#,
            start_ts + i as i64 * 100,
            (i * 37) % 101
        );
        batch.push(
            Record::keyed(sensor, value)
                .at(start_ts + i as i64 * 100)
                .with_header("seq", i.to_string()),
        );
        if batch.len() == batch.capacity() {
            topic.append(batch.drain(..))?;
        }
    }
    topic.append(batch.drain(..))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "appended {readings} readings in {secs:.3} s ({:.0} records/s)",
        readings as f64 / secs
    );

    for p in topic.describe()? {
        println!(
            "  partition {}: offsets {}..{} in {} segment(s), {} bytes",
            p.partition, p.log_start_offset, p.end_offset, p.segments, p.bytes
        );
    }

    // Replay every partition from its start and count readings per sensor.
    let started = Instant::now();
    let mut per_sensor: BTreeMap<String, (u32, u64)> = BTreeMap::new();
    for p in 0..topic.partitions() {
        let mut reader = topic.reader(p)?;
        let mut next = reader.log_start_offset()?;
        loop {
            let fetch = reader.read(next, 50_000, 4 << 20)?;
            if fetch.is_empty() {
                break;
            }
            for r in fetch.iter() {
                let key = String::from_utf8_lossy(r.key.unwrap_or_default()).into_owned();
                per_sensor.entry(key).or_insert((p, 0)).1 += 1;
            }
            next = fetch.next_offset();
        }
    }
    let total: u64 = per_sensor.values().map(|v| v.1).sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replayed {total} records in {secs:.3} s ({:.0} records/s)",
        total as f64 / secs
    );
    for (sensor, (p, n)) in &per_sensor {
        println!("  {sensor}: {n} readings, all in partition {p}");
    }

    // Where does the minute starting 10 000 s after the first reading begin?
    let at = start_ts + 10_000_000;
    let p = topic.partition_for(Some(b"Sensor1"));
    let mut reader = topic.reader(p)?;
    if let Some(offset) = reader.offset_for_timestamp(at)? {
        let f = reader.read(offset, 1, 1 << 16)?;
        let value = f.iter().next().and_then(|r| r.value).unwrap_or_default();
        println!(
            "first Sensor1 reading at or after ts {at}: partition {p} offset {offset}: {}",
            String::from_utf8_lossy(value)
        );
    }

    // A restart: drop every handle, open the directory again, and append after the old end.
    drop((reader, topic, log));
    let log = Log::open(&dir)?;
    let topic = log.topic("readings")?;
    let placed = topic.append([Record::keyed("Sensor1", r#"{"value":42}"#)])?;
    let (p, offset) = placed[0];
    println!(
        "after reopening: appended to partition {p} at offset {offset} (recovery truncated {} bytes)",
        topic.writer(p)?.recovery_report().truncated_bytes
    );
    Ok(())
}
