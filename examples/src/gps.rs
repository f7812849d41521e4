//! The reprocessing tutorial: GPS track points from a CSV into `raw-trackpoints`; group
//! `distance_calculator` computes each track's cumulative geodesic distance (WGS-84, Karney's
//! algorithm) into `distance-calcs`; group `database-writer` upserts each track's latest distance
//! into SQLite table `dist_calc`; then the first group is rewound and reprocesses in kilometres.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eddy::{
    AppConfig, Application, Consumer, ConsumerConfig, GroupSource, Json, Log, Str, StreamResult,
    RESET_KEEP_STATE_METADATA, RESET_METADATA,
};
use geographiclib_rs::{Geodesic, InverseGeodesic};
use serde::{Deserialize, Serialize};

use crate::common::AnyResult;

/// The track-points topic.
pub const POINTS_TOPIC: &str = "raw-trackpoints";
/// The distances topic.
pub const DISTANCES_TOPIC: &str = "distance-calcs";
/// The distance calculator's group.
pub const DISTANCE_GROUP: &str = "distance_calculator";
/// The database writer's group.
pub const WRITER_GROUP: &str = "database-writer";
/// The database file name, in the data directory unless given.
pub const DB_FILE: &str = "distance-stats.db";

/// One row of the CSV.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrackPoint {
    /// Point id (file order).
    pub id: u64,
    /// Latitude, degrees.
    pub latitude: f64,
    /// Longitude, degrees.
    pub longitude: f64,
    /// The track it belongs to.
    pub track_id: u64,
    /// When it was recorded, as written in the file.
    pub time: String,
}

/// One distance update.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DistanceCalc {
    /// The point that moved the track.
    pub id: u64,
    /// The track.
    pub track_id: u64,
    /// The track's distance so far, in the chosen unit.
    pub distance: f64,
}

/// Distance unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Unit {
    /// Statute miles (1,609.344 m).
    Miles,
    /// Kilometres.
    Km,
}

impl Unit {
    /// `meters` in this unit.
    pub fn from_meters(self, meters: f64) -> f64 {
        match self {
            Unit::Miles => meters / 1_609.344,
            Unit::Km => meters / 1_000.0,
        }
    }
}

/// Reads the track points of a CSV file (`id,latitude,longitude,track_id,time`), in file order.
pub fn read_csv(path: &Path) -> AnyResult<Vec<TrackPoint>> {
    let mut reader =
        csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut points = Vec::new();
    for (i, row) in reader.deserialize().enumerate() {
        let point: TrackPoint =
            row.map_err(|e| format!("{}: data row {}: {e}", path.display(), i + 1))?;
        points.push(point);
    }
    Ok(points)
}

/// The geodesic distance in metres between two points on the WGS-84 ellipsoid.
pub fn geodesic_meters(a: (f64, f64), b: (f64, f64)) -> f64 {
    InverseGeodesic::<f64>::inverse(&Geodesic::wgs84(), a.0, a.1, b.0, b.1)
}

/// Produces `points` to `raw-trackpoints` keyed by track, in order, calling `progress` after each
/// batch with the number produced so far.
pub fn produce(dir: &Path, points: &[TrackPoint], mut progress: impl FnMut(u64)) -> AnyResult<u64> {
    let app = Application::new(AppConfig::new(dir, "gps-producer"))?;
    let topic = app.topic::<Str, Json<TrackPoint>>(POINTS_TOPIC)?;
    let mut producer = app.producer()?;
    for (i, point) in points.iter().enumerate() {
        producer.produce(
            &topic,
            Some(&point.track_id.to_string()),
            point,
            Vec::new(),
            None,
        )?;
        if i % 100 == 99 {
            producer.flush()?;
            progress(i as u64 + 1);
        }
    }
    producer.flush()?;
    progress(producer.sent());
    Ok(producer.sent())
}

/// The distance calculator over `dir`: per track, the cumulative distance between consecutive
/// points in arrival order, kept in fault-tolerant state, to `distance-calcs` in `unit`.
pub fn distance_calculator(
    dir: &Path,
    unit: Unit,
    on_error: eddy::ErrorPolicy,
) -> StreamResult<Application> {
    let app = Application::new(distance_config(dir, on_error))?;
    distance_calculator_on(app, unit)
}

/// The distance calculator's configuration over `dir`: its group, restore progress bars,
/// `on_error`.
pub fn distance_config(dir: &Path, on_error: eddy::ErrorPolicy) -> AppConfig {
    crate::common::app_config(dir, DISTANCE_GROUP, on_error)
}

/// The distance calculator's pipeline (as [`distance_calculator`]) built into `app`, whatever
/// its backend.
pub fn distance_calculator_on(app: Application, unit: Unit) -> StreamResult<Application> {
    let points = app.topic::<Str, Json<TrackPoint>>(POINTS_TOPIC)?;
    let output = app.topic::<Str, Json<DistanceCalc>>(DISTANCES_TOPIC)?;
    app.dataframe(&points)
        .stateful_map(move |p: TrackPoint, state| {
            let here = (p.latitude, p.longitude);
            let mut meters: f64 = state.get_or("meters", 0.0);
            if let Some(previous) = state.get::<(f64, f64)>("last") {
                meters += geodesic_meters(previous, here);
            }
            state.set("last", &here);
            state.set("meters", &meters);
            DistanceCalc {
                id: p.id,
                track_id: p.track_id,
                distance: unit.from_meters(meters),
            }
        })
        .update(|d| tracing::info!(track_id = d.track_id, distance = d.distance, "publishing"))
        .to_topic(&output);
    Ok(app)
}

/// Where the database is: `db`, or `distance-stats.db` in the data directory.
pub fn db_path(dir: &Path, db: Option<&Path>) -> PathBuf {
    db.map_or_else(|| dir.join(DB_FILE), Path::to_path_buf)
}

/// Opens the database, creating table `dist_calc` (the distances) and table `eddy_offsets`
/// (the next input offset per partition that the rows include) when missing.
pub fn open_db(path: &Path) -> AnyResult<rusqlite::Connection> {
    let db = rusqlite::Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS dist_calc (track_id INTEGER PRIMARY KEY, distance REAL);
         CREATE TABLE IF NOT EXISTS eddy_offsets (topic TEXT NOT NULL, partition INTEGER NOT \
         NULL, next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition));",
    )?;
    Ok(db)
}

/// The input offsets the database's rows include: `(topic, partition)` → next offset.
fn db_offsets(db: &rusqlite::Connection) -> AnyResult<HashMap<(String, u32), u64>> {
    let mut select = db.prepare("SELECT topic, partition, next_offset FROM eddy_offsets")?;
    let rows = select.query_map([], |row| {
        let (topic, partition, next): (String, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        Ok(((topic, partition as u32), next as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The database writer: consumes `distance-calcs` as group `database-writer` and upserts each
/// track's latest distance, one transaction per polled batch. Effectively once: the transaction
/// also stores each partition's next input offset (table `eddy_offsets`), so that records the
/// database already includes are skipped after a crash between its commit and the group's
/// (the group's offsets, committed after, are for tools and lag); a reset of the group (commit
/// metadata `eddy:reset`) is followed, so that rewinding it rewrites the rows. Stops when `stop`
/// is set, or (with `until_idle`) once caught up. Returns how many records it applied.
pub fn write_db(dir: &Path, db: &Path, until_idle: bool, stop: Arc<AtomicBool>) -> AnyResult<u64> {
    let log = Log::open(dir)?;
    let consumer = Consumer::new(&log, ConsumerConfig::new(WRITER_GROUP))?;
    write_db_from(Box::new(consumer), db, until_idle, stop)
}

/// The database writer (as [`write_db`]) reading through `consumer`, a member of group
/// `database-writer` on any backend (the local log's `Consumer`, a Kafka group).
pub fn write_db_from(
    mut consumer: Box<dyn GroupSource>,
    db: &Path,
    until_idle: bool,
    stop: Arc<AtomicBool>,
) -> AnyResult<u64> {
    let mut db = open_db(db)?;
    let mut applied = db_offsets(&db)?;
    consumer.subscribe(&[DISTANCES_TOPIC])?;
    let mut checked: HashSet<(String, u32)> = HashSet::new();
    let mut written = 0;
    while !stop.load(Ordering::SeqCst) {
        let batches = consumer.poll(Duration::from_millis(100))?;
        if batches.is_empty() {
            if until_idle && consumer.caught_up()? {
                break;
            }
            continue;
        }
        for batch in &batches {
            let tp = (batch.topic.clone(), batch.partition);
            if checked.insert(tp.clone()) {
                // A partition met for the first time since the start: a reset of the group
                // since the database last wrote moves the database's position too.
                let committed = consumer.committed_with_metadata(&tp.0, tp.1)?;
                if let Some((offset, meta)) = committed {
                    if meta == RESET_METADATA || meta == RESET_KEEP_STATE_METADATA {
                        applied.insert(tp, offset);
                    }
                }
            }
        }
        let tx = db.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO dist_calc (track_id, distance) VALUES (?1, ?2) \
                 ON CONFLICT(track_id) DO UPDATE SET distance = excluded.distance",
            )?;
            let mut position = tx.prepare_cached(
                "INSERT INTO eddy_offsets (topic, partition, next_offset) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
            )?;
            for batch in &batches {
                let tp = (batch.topic.clone(), batch.partition);
                let skip_below = applied.get(&tp).copied().unwrap_or(0);
                for r in batch.records.iter().filter(|r| r.offset >= skip_below) {
                    let at = || {
                        format!(
                            "{} partition {} offset {}",
                            batch.topic, batch.partition, r.offset
                        )
                    };
                    let value = r.value.ok_or_else(|| format!("{}: no value", at()))?;
                    let d: DistanceCalc = serde_json::from_slice(value)
                        .map_err(|e| format!("{}: not a distance: {e}", at()))?;
                    tracing::info!(
                        "Updating DB... UPDATE dist_calc SET distance = {} WHERE track_id = {}",
                        d.distance,
                        d.track_id
                    );
                    upsert.execute(rusqlite::params![d.track_id as i64, d.distance])?;
                    written += 1;
                }
                let next = batch.records.next_offset().max(skip_below);
                position.execute(rusqlite::params![tp.0, tp.1 as i64, next as i64])?;
                applied.insert(tp, next);
            }
        }
        tx.commit()?;
        let positions: Vec<(String, u32, u64)> = (batches.iter())
            .map(|b| (b.topic.clone(), b.partition, b.records.next_offset()))
            .collect();
        consumer.commit_with_metadata(&positions, "")?;
    }
    consumer.close()?;
    Ok(written)
}

/// Every row of `dist_calc`, by track.
pub fn query(db: &Path) -> AnyResult<Vec<(i64, f64)>> {
    let db = open_db(db)?;
    let mut select = db.prepare("SELECT track_id, distance FROM dist_calc ORDER BY track_id")?;
    let rows = select.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `rows` as a box-drawn table with column types, as the tutorial's database prints it.
pub fn table(rows: &[(i64, f64)]) -> String {
    let cells: Vec<(String, String)> = rows
        .iter()
        .map(|(t, d)| (t.to_string(), d.to_string()))
        .collect();
    let w0 = cells
        .iter()
        .map(|c| c.0.len())
        .chain([8])
        .max()
        .unwrap_or(8);
    let w1 = cells
        .iter()
        .map(|c| c.1.len())
        .chain([8])
        .max()
        .unwrap_or(8);
    let line = |l: &str, m: &str, r: &str| {
        format!("{l}{}{m}{}{r}\n", "─".repeat(w0 + 2), "─".repeat(w1 + 2))
    };
    let mut out = line("┌", "┬", "┐");
    out += &format!("│ {:^w0$} │ {:^w1$} │\n", "track_id", "distance");
    out += &format!("│ {:^w0$} │ {:^w1$} │\n", "int64", "double");
    out += &line("├", "┼", "┤");
    for (t, d) in &cells {
        out += &format!("│ {t:>w0$} │ {d:>w1$} │\n");
    }
    out += &line("└", "┴", "┘");
    out
}
