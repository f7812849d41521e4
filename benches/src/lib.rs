//! Shared helpers for eddy's benchmark programs: fixed-size record generation, timing, peak
//! memory, and the one-line output format `name=<figure> key=value ...`.

pub mod sensor;
pub mod stress;

use std::time::{Duration, Instant};

use eddy::{Record, Topic, WindowResult};
use serde::de::DeserializeOwned;

/// `n` keyed records whose key plus value take exactly `size` bytes (key 16 bytes).
pub fn records(n: usize, size: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let key = format!("key-{:012}", i % 1_000_000);
            let value_len = size.saturating_sub(key.len());
            let mut value = vec![b'v'; value_len];
            let tag = i.to_le_bytes();
            let n = tag.len().min(value.len());
            value[..n].copy_from_slice(&tag[..n]);
            Record::keyed(key, value).at(1_700_000_000_000 + i as i64)
        })
        .collect()
}

/// Calls `f(key, window)` for every window result in `topic` (UTF-8 key, JSON
/// [`WindowResult`]), partition by partition in offset order. A record that does not decode, or
/// an error from `f`, stops the walk with a message naming topic, partition and offset.
pub fn for_each_window<T: DeserializeOwned>(
    topic: &Topic,
    mut f: impl FnMut(&str, WindowResult<T>) -> Result<(), String>,
) -> Result<(), String> {
    for p in 0..topic.partitions() {
        let mut reader = topic.reader(p).map_err(|e| e.to_string())?;
        // What committed readers see: under exactly-once, no aborted or unfinished window.
        reader.set_isolation(eddy::Isolation::ReadCommitted);
        let mut next = 0;
        loop {
            let fetch = reader
                .read(next, 10_000, 8 << 20)
                .map_err(|e| e.to_string())?;
            if fetch.is_empty() && fetch.next_offset() == next {
                break;
            }
            for r in fetch.iter() {
                let window = std::str::from_utf8(r.key.unwrap_or_default())
                    .map_err(|e| format!("key: {e}"))
                    .and_then(|key| {
                        let w = serde_json::from_slice(r.value.unwrap_or_default())
                            .map_err(|e| format!("value: {e}"))?;
                        f(key, w)
                    });
                window.map_err(|e| {
                    format!("{} partition {p} offset {}: {e}", topic.name(), r.offset)
                })?;
            }
            next = fetch.next_offset();
        }
    }
    Ok(())
}

/// Peak resident set size of this process in KiB (`VmHWM`), 0 where unknown.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The directory a benchmark program works in: `dir` when given, else a temporary directory that
/// lives as long as the returned guard.
pub fn work_dir(
    dir: Option<std::path::PathBuf>,
) -> (Option<tempfile::TempDir>, std::path::PathBuf) {
    match dir {
        Some(d) => (None, d),
        None => {
            let tmp = tempfile::tempdir().expect("temp dir");
            let path = tmp.path().to_owned();
            (Some(tmp), path)
        }
    }
}

/// Runs `f` and returns its result and how long it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// One benchmark figure.
pub struct Figure {
    /// Figure name.
    pub name: &'static str,
    /// Records processed.
    pub records: u64,
    /// Bytes processed.
    pub bytes: u64,
    /// Time taken.
    pub elapsed: Duration,
    /// Records/s of the plain-I/O baseline over the same bytes, if any.
    pub baseline_records_per_s: Option<f64>,
}

impl Figure {
    /// Records per second.
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    /// The line printed for this figure, with the peak RSS so far.
    pub fn line(&self) -> String {
        self.line_with_rss(peak_rss_kib())
    }

    /// The line printed for this figure, with a peak RSS read earlier (before a check that
    /// allocates, say).
    pub fn line_with_rss(&self, peak_rss_kib: u64) -> String {
        let rps = self.records_per_s();
        let mbps = self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6;
        let ratio = self
            .baseline_records_per_s
            .map_or("n/a".to_string(), |b| format!("{:.2}", rps / b));
        format!(
            "name={} records_per_s={:.0} mb_per_s={:.1} baseline_ratio={} peak_rss_kib={}",
            self.name, rps, mbps, ratio, peak_rss_kib
        )
    }
}
