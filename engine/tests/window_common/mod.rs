//! Helpers shared by the window tests: readings with event time in the payload, fed to a topic,
//! and window results read back.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use super::common::read_all;
use eddy::{AppConfig, Application, Log, Record, TopicConfig, WindowResult};
use serde::{Deserialize, Serialize};
use std::path::Path;
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
