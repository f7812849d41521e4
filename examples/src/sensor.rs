//! The sensor tutorial: a producer of synthetic temperature readings keyed by sensor, and a
//! processor aggregating each sensor's readings in 10 s tumbling windows with 1 s grace
//! (count/min/max/mean), emitting only closed windows.
//!
//! Readings are `{"ts": "<ISO-8601, µs, UTC, no zone>", "value": 0..=100}` in `raw-temp-data`
//! with a `uuid` header; results are `{"time": <window end ms>, "temperature": {count, min, max,
//! mean}}` in `agg-temperature`, keyed by sensor.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime};
use eddy::aggregate::{Count, Max, Mean, Min};
use eddy::{AppConfig, Application, Closing, Header, Json, Log, Str, StreamResult, WindowResult};
use serde::{Deserialize, Serialize};

use crate::common::AnyResult;

/// The readings topic.
pub const RAW_TOPIC: &str = "raw-temp-data";
/// The results topic.
pub const AGG_TOPIC: &str = "agg-temperature";
/// The processor's consumer group.
pub const GROUP: &str = "temperature_processor";
/// The sensors readings come from.
pub const SENSORS: [&str; 5] = ["Sensor1", "Sensor2", "Sensor3", "Sensor4", "Sensor5"];
/// Window size.
pub const WINDOW: Duration = Duration::from_secs(10);
/// How late (in stream time) a reading may still join its window.
pub const GRACE: Duration = Duration::from_secs(1);
/// Whose stream time closes windows in the tutorial: the sensor's own (its processor calls
/// Quix Streams' `final()`, whose `closing_strategy` is `"key"` unless told otherwise).
pub const CLOSING: Closing = Closing::Key;

/// One temperature reading.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Reading {
    /// When it was taken: ISO-8601 with microseconds, UTC, no zone (as Python's `isoformat()`).
    pub ts: String,
    /// Degrees.
    pub value: i64,
}

/// Aggregates of one window.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Readings.
    pub count: u64,
    /// Lowest value.
    pub min: f64,
    /// Highest value.
    pub max: f64,
    /// Mean value.
    pub mean: f64,
}

/// One result message.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Aggregated {
    /// The window's end, ms since the epoch.
    pub time: i64,
    /// Its aggregates.
    pub temperature: Stats,
}

/// Formats ms since the epoch as the readings do.
pub fn format_ts(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
        .unwrap_or_default()
}

/// Parses a reading's `ts` (with or without fractional seconds) to ms since the epoch.
pub fn parse_ts(ts: &str) -> Option<i64> {
    let t = NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Some(t.and_utc().timestamp_millis())
}

/// How the producer paces itself.
#[derive(Clone, Copy, Debug)]
pub struct ProducerOptions {
    /// Readings to produce.
    pub count: u64,
    /// Do not sleep: time stamps still advance by the random pause, from where the topic ends.
    pub fast: bool,
    /// Print every reading.
    pub print: bool,
}

/// Produces readings to `raw-temp-data` in `dir`: a random sensor and value each, a random
/// 0–1 s pause between them (slept, or only added to the time stamps when `fast`). Returns how
/// many were produced.
pub fn produce(dir: &Path, options: ProducerOptions, out: &mut impl Write) -> AnyResult<u64> {
    let app = Application::new(AppConfig::new(dir, "temperature-producer"))?;
    let topic = app.topic::<Str, Json<Reading>>(RAW_TOPIC)?;
    let mut producer = app.producer()?;
    let now_micros = chrono::Utc::now().timestamp_micros();
    // Fast mode continues after the newest reading, so that restarts never produce late ones.
    let mut clock_micros = match options.fast {
        true => now_micros.max(newest_timestamp(app.log(), RAW_TOPIC)? * 1_000 + 1_000),
        false => now_micros,
    };
    for _ in 0..options.count {
        let sensor = SENSORS[fastrand::usize(..SENSORS.len())].to_string();
        let reading = Reading {
            ts: format_ts(clock_micros),
            value: fastrand::i64(0..=100),
        };
        let headers = vec![Header {
            key: "uuid".into(),
            value: Some(uuid::Uuid::new_v4().to_string().into_bytes()),
        }];
        producer.produce(
            &topic,
            Some(&sensor),
            &reading,
            headers,
            Some(clock_micros / 1_000),
        )?;
        if options.print {
            writeln!(out, "Producing value {}", serde_json::to_string(&reading)?)?;
        }
        let pause_ms = fastrand::u64(0..=1_000);
        if options.fast {
            clock_micros += pause_ms as i64 * 1_000;
        } else {
            producer.flush()?;
            std::thread::sleep(Duration::from_millis(pause_ms));
            clock_micros = chrono::Utc::now().timestamp_micros();
        }
    }
    producer.flush()?;
    Ok(producer.sent())
}

/// The newest record timestamp of `topic` (0 when it is empty or missing).
fn newest_timestamp(log: &Log, topic: &str) -> AnyResult<i64> {
    let Ok(topic) = log.topic(topic) else {
        return Ok(0);
    };
    let mut newest = 0;
    for p in 0..topic.partitions() {
        let mut reader = topic.reader(p)?;
        let end = reader.end_offset();
        if end > 0 {
            let fetch = reader.read(end - 1, 1, 1 << 20)?;
            newest = fetch.iter().map(|r| r.timestamp).fold(newest, i64::max);
        }
    }
    Ok(newest)
}

/// How the processor aggregates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Aggregation {
    /// `reduce` with an initializer and a reducer, as the tutorial writes it.
    Reduce,
    /// The built-in count, min, max and mean, computed together.
    Builtin,
}

/// The processor application over `dir`: readings → 10 s tumbling windows (1 s grace) per
/// sensor, closing by `closing` → count/min/max/mean of closed windows → `agg-temperature`.
pub fn processor(
    dir: &Path,
    aggregation: Aggregation,
    closing: Closing,
    on_error: eddy::ErrorPolicy,
) -> StreamResult<Application> {
    let app = Application::new(processor_config(dir, on_error))?;
    processor_on(app, aggregation, closing)
}

/// The processor's configuration over `dir`: its group, restore progress bars, `on_error`.
pub fn processor_config(dir: &Path, on_error: eddy::ErrorPolicy) -> AppConfig {
    crate::common::app_config(dir, GROUP, on_error)
}

/// The processor's pipeline (as [`processor`]) built into `app`, whatever its backend: the
/// local log, or a Kafka cluster through `Application::with_backend`.
pub fn processor_on(
    app: Application,
    aggregation: Aggregation,
    closing: Closing,
) -> StreamResult<Application> {
    let input = app
        .topic::<Str, Json<Reading>>(RAW_TOPIC)?
        .with_timestamp(|r, record| match parse_ts(&r.ts) {
            Some(ms) => ms,
            None => {
                tracing::warn!(
                    ts = r.ts,
                    offset = record.offset,
                    "unreadable ts: using the record's"
                );
                record.timestamp
            }
        });
    let output = app.topic::<Str, Json<Aggregated>>(AGG_TOPIC)?;
    let windows = app
        .dataframe(&input)
        .update(|r| tracing::info!("Input value received: {}", json(r)))
        .tumbling_window(WINDOW, GRACE)
        .closing(closing);
    let closed = match aggregation {
        Aggregation::Reduce => windows
            .reduce(
                |r: &Reading| Stats {
                    count: 1,
                    min: r.value as f64,
                    max: r.value as f64,
                    mean: r.value as f64,
                },
                |a: Stats, r: &Reading| {
                    let v = r.value as f64;
                    Stats {
                        count: a.count + 1,
                        min: a.min.min(v),
                        max: a.max.max(v),
                        mean: (a.mean * a.count as f64 + v) / (a.count + 1) as f64,
                    }
                },
            )
            .emit_final(),
        Aggregation::Builtin => {
            let v = |r: &Reading| r.value as f64;
            windows
                .aggregate((Count, Min(v), Max(v), Mean(v)))
                .emit_final()
                .map(|w| WindowResult {
                    start: w.start,
                    end: w.end,
                    value: Stats {
                        count: w.value.0,
                        min: w.value.1,
                        max: w.value.2,
                        mean: w.value.3,
                    },
                })
        }
    };
    closed
        .map(|w| Aggregated {
            time: w.end,
            temperature: w.value,
        })
        .update(|a| tracing::info!("Produced value: {}", json(a)))
        .to_topic(&output);
    Ok(app)
}

fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
