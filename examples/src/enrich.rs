//! Sensor readings enriched with each sensor's metadata before the tutorial's windows: the
//! `sensor-metadata` topic (compacted, keyed by sensor, `{"location", "unit"}`) is a table, each
//! reading of `raw-temp-data` is joined with its sensor's row as of the reading (a left join: a
//! sensor without a row keeps `null` location and unit), and each sensor's 10 s tumbling
//! windows (1 s grace, closing by sensor) give count/min/max/mean with the location and unit of
//! the window's last reading, in `agg-temperature-enriched`.

use std::path::Path;

use eddy::{
    Application, CleanupPolicy, JoinHow, Json, Log, Record, Str, StreamResult, TopicConfig,
};
use serde::{Deserialize, Serialize};

use crate::common::AnyResult;
use crate::sensor::{parse_ts, Reading, Stats, CLOSING, GRACE, RAW_TOPIC, SENSORS, WINDOW};

/// The metadata topic (the table).
pub const META_TOPIC: &str = "sensor-metadata";
/// The results topic.
pub const ENRICHED_TOPIC: &str = "agg-temperature-enriched";
/// The enricher's consumer group.
pub const GROUP: &str = "temperature_enricher";

/// What the table holds per sensor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Metadata {
    /// Where the sensor is.
    pub location: String,
    /// The unit of its values.
    pub unit: String,
}

/// One result: a closed window of a sensor, with its metadata.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Enriched {
    /// The window's end, ms since the epoch.
    pub time: i64,
    /// The sensor's location, if it has a row.
    pub location: Option<String>,
    /// The unit of its values, if it has a row.
    pub unit: Option<String>,
    /// The window's aggregates.
    pub temperature: Stats,
}

/// The metadata of the tutorial's five sensors.
pub fn default_metadata() -> Vec<(String, Metadata)> {
    let places = ["boiler room", "kitchen", "roof", "server room", "cellar"];
    (SENSORS.iter().zip(places))
        .map(|(s, place)| {
            let unit = if *s == "Sensor3" { "°F" } else { "°C" };
            let m = Metadata {
                location: place.to_owned(),
                unit: unit.to_owned(),
            };
            ((*s).to_owned(), m)
        })
        .collect()
}

/// Appends metadata rows, timestamped now: they apply to readings from now on (a reading is
/// joined with the rows whose timestamps are at or before its own record's).
pub fn write_metadata(dir: &Path, rows: &[(String, Metadata)]) -> AnyResult<()> {
    let log = Log::open(dir)?;
    let partitions = log
        .topic_or_create(RAW_TOPIC, TopicConfig::default())?
        .partitions();
    let config = TopicConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..TopicConfig::with_partitions(partitions)
    };
    let topic = log.topic_or_create(META_TOPIC, config)?;
    let mut records = Vec::with_capacity(rows.len());
    for (sensor, m) in rows {
        records.push(Record::keyed(sensor.as_str(), serde_json::to_vec(m)?));
    }
    topic.append(records)?;
    Ok(())
}

/// The enriching pipeline (module docs).
pub fn enricher(dir: &Path, on_error: eddy::ErrorPolicy) -> StreamResult<Application> {
    let app = Application::new(crate::common::app_config(dir, GROUP, on_error))?;
    let readings = app
        .topic::<Str, Json<Reading>>(RAW_TOPIC)?
        .with_timestamp(|r, record| parse_ts(&r.ts).unwrap_or(record.timestamp));
    let metadata = app.topic_with_config::<Str, Json<Metadata>>(
        META_TOPIC,
        TopicConfig {
            cleanup_policy: CleanupPolicy::Compact,
            ..TopicConfig::default()
        },
    )?;
    let output = app.topic::<Str, Json<Enriched>>(ENRICHED_TOPIC)?;
    let table = app.table(&metadata);
    let first = |(r, m): &(Reading, Option<Metadata>)| {
        let v = r.value as f64;
        let stats = Stats {
            count: 1,
            min: v,
            max: v,
            mean: v,
        };
        (stats, m.clone())
    };
    let add = |(a, _): (Stats, Option<Metadata>), (r, m): &(Reading, Option<Metadata>)| {
        let v = r.value as f64;
        let stats = Stats {
            count: a.count + 1,
            min: a.min.min(v),
            max: a.max.max(v),
            mean: (a.mean * a.count as f64 + v) / (a.count + 1) as f64,
        };
        (stats, m.clone())
    };
    app.dataframe(&readings)
        .join_table(&table, JoinHow::Left, |r, m: Option<&Metadata>| {
            (r, m.cloned())
        })
        .tumbling_window(WINDOW, GRACE)
        .closing(CLOSING)
        .reduce(first, add)
        .emit_final()
        .map(|w| {
            let (temperature, meta) = w.value;
            Enriched {
                time: w.end,
                location: meta.as_ref().map(|m| m.location.clone()),
                unit: meta.map(|m| m.unit),
                temperature,
            }
        })
        .to_topic(&output);
    Ok(app)
}
