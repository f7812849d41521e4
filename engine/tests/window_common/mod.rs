//! Helpers shared by the window tests: readings with event time in the payload, fed to a topic,
//! and window results read back.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use super::common::read_all;
use eddy::aggregate::{Count, Sum};
use eddy::{
    AppConfig, Application, Closing, Json, Log, Record, Stream, TopicConfig, WindowResult,
    WindowSpec,
};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Reading {
    pub ts: i64,
    pub value: f64,
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Appends readings `(key, ts_ms, value)` to `readings` (one partition unless it exists).
pub fn feed(dir: &Path, partitions: u32, readings: &[(&str, i64, f64)]) {
    let log = Log::open(dir).unwrap();
    let t = log
        .topic_or_create("readings", TopicConfig::with_partitions(partitions))
        .unwrap();
    t.append(readings.iter().map(|(k, ts, v)| {
        let r = Reading { ts: *ts, value: *v };
        Record::keyed(*k, serde_json::to_vec(&r).unwrap())
    }))
    .unwrap();
}

pub fn app(dir: &Path) -> Application {
    let mut c = AppConfig::new(dir, "w");
    c.commit_interval = Duration::from_millis(20);
    Application::new(c).unwrap()
}

pub type Stats = (u64, f64, f64, f64);

pub fn results<T: for<'de> Deserialize<'de>>(
    dir: &Path,
    topic: &str,
) -> Vec<(String, WindowResult<T>, i64)> {
    let t = Log::open(dir).unwrap().topic(topic).unwrap();
    let mut out = Vec::new();
    for p in 0..t.partitions() {
        for (_, r) in read_all(&mut t.reader(p).unwrap(), 0) {
            let key: String = serde_json::from_slice(&r.key.unwrap()).unwrap();
            out.push((
                key,
                serde_json::from_slice(&r.value.unwrap()).unwrap(),
                r.timestamp.unwrap(),
            ));
        }
    }
    out
}

pub type Late = Rc<RefCell<Vec<(i64, i64, i64)>>>;
/// (key, start, end, count, sum, result timestamp)
pub type Row = (String, i64, i64, u64, f64, i64);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Readings of `dir` → windows chosen by `windows` → (count, sum of values) → topic `agg`.
pub fn pipeline(
    dir: &Path,
    late: Late,
    current: bool,
    windows: impl FnOnce(&Stream<String, Reading>) -> WindowSpec<String, Reading>,
) -> Application {
    let app = app(dir);
    let input = app
        .topic::<Json<String>, Json<Reading>>("readings")
        .unwrap()
        .with_timestamp(|r, _| r.ts);
    let out = app
        .topic::<Json<String>, Json<WindowResult<(u64, f64)>>>("agg")
        .unwrap();
    let aggregated = windows(&app.dataframe(&input))
        .on_late(move |m, start, end| late.borrow_mut().push((m.value.ts, start, end)))
        .aggregate((Count, Sum(|r: &Reading| r.value)));
    match current {
        true => aggregated.emit_current().to_topic(&out),
        false => aggregated.emit_final().to_topic(&out),
    };
    app
}

pub fn rows(dir: &Path) -> Vec<Row> {
    results::<(u64, f64)>(dir, "agg")
        .into_iter()
        .map(|(k, w, ts)| (k, w.start, w.end, w.value.0, w.value.1, ts))
        .collect()
}

/// A time window's result row: `[start, end)`, timestamp `end − 1`.
pub fn row(key: &str, start: i64, end: i64, count: u64, sum: f64) -> Row {
    (key.to_string(), start, end, count, sum, end - 1)
}

/// A sliding window's result row: `[start, end]` both included, timestamp `end`.
pub fn slide(key: &str, start: i64, end: i64, count: u64, sum: f64) -> Row {
    (key.to_string(), start, end, count, sum, end)
}

/// Runs `readings` through a fresh pipeline in two halves, restarting the application between
/// them, and returns the results and the late records.
pub fn run_in_two_halves(
    readings: &[(&str, i64, f64)],
    split: usize,
    windows: impl Fn(&Stream<String, Reading>) -> WindowSpec<String, Reading>,
) -> (Vec<Row>, Vec<(i64, i64, i64)>) {
    run_restarting(readings, split, Restart::Reopen, |_| &windows)
}

/// How the application restarts between two halves of its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Reopens its state stores.
    Reopen,
    /// Finds them deleted and restores them from their changelogs.
    Restore,
}

/// Runs `readings` in two halves, the first `split` through the windows `windows(0)` and the
/// rest through `windows(1)`, restarting between them as `restart` says: the results and the
/// late records.
pub fn run_restarting<W>(
    readings: &[(&str, i64, f64)],
    split: usize,
    restart: Restart,
    windows: impl Fn(usize) -> W,
) -> (Vec<Row>, Vec<(i64, i64, i64)>)
where
    W: Fn(&Stream<String, Reading>) -> WindowSpec<String, Reading>,
{
    let dir = tempfile::tempdir().unwrap();
    let late: Late = Rc::default();
    for (i, half) in [&readings[..split], &readings[split..]]
        .into_iter()
        .enumerate()
    {
        if i == 1 && restart == Restart::Restore {
            std::fs::remove_dir_all(dir.path().join("state")).unwrap();
        }
        feed(dir.path(), 1, half);
        pipeline(dir.path(), late.clone(), false, windows(i))
            .run_until_idle()
            .unwrap();
    }
    let late = late.borrow().clone();
    (rows(dir.path()), late)
}

/// [`run_in_two_halves`] closing by key and by partition, restarting with the stores reopened and
/// restored from the changelog, which must all agree (inputs of one key, or whose keys' stream
/// times never tell the two apart): the results and late records.
pub fn run_both_ways(
    readings: &[(&str, i64, f64)],
    split: usize,
    windows: impl Fn(&Stream<String, Reading>) -> WindowSpec<String, Reading>,
) -> (Vec<Row>, Vec<(i64, i64, i64)>) {
    let by_key = run_in_two_halves(readings, split, |st| windows(st).closing(Closing::Key));
    for closing in [Closing::Key, Closing::Partition] {
        for restart in [Restart::Reopen, Restart::Restore] {
            let closed = |st: &Stream<String, Reading>| windows(st).closing(closing);
            let got = run_restarting(readings, split, restart, |_| closed);
            assert_eq!(
                got, by_key,
                "closing by {closing}, {restart:?}: not as by key"
            );
        }
    }
    by_key
}
