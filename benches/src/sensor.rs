//! The sensor workload of the windowed figures and of the peer comparison (`benches/peers/`,
//! whose `workload.py` defines the same input and check): reading `i` has key `Sensor{i % keys}`,
//! JSON value `{"ts":T0+i,"value":i % 101}` and event time `T0 + i` ms; a 10 s tumbling window
//! per key with 1 s grace yields count, min, max and mean of `value`.
//!
//! A run passes [`check`] when every window it emitted equals the window computed over all
//! readings, none came out twice, and every window closed by the end of the input came out:
//! end + grace < the last event time, closing by partition, or the key's own last event time,
//! closing by key. Windows still open at the end may come out or not.

use std::collections::HashSet;

use eddy::{Closing, Log, WindowResult};
use serde::{Deserialize, Serialize};

/// Event time of the first reading (a multiple of the window size).
pub const T0: i64 = 1_700_000_000_000;
/// Window size in ms.
pub const WINDOW_MS: i64 = 10_000;
/// Grace period in ms.
pub const GRACE_MS: i64 = 1_000;

/// A reading's JSON value.
#[derive(Clone, Serialize, Deserialize)]
pub struct TimedReading {
    /// Event time in ms.
    pub ts: i64,
    /// The measured value.
    pub value: i64,
}

/// A window's aggregate: count, min, max, mean.
pub type Aggregate = (u64, f64, f64, f64);

/// Key, JSON value and event time of reading `i`.
pub fn reading(i: u64, keys: u64) -> (String, Vec<u8>, i64) {
    let ts = T0 + i as i64;
    let value = serde_json::to_vec(&TimedReading {
        ts,
        value: (i % 101) as i64,
    })
    .expect("a reading serializes");
    (format!("Sensor{}", i % keys), value, ts)
}

/// The aggregate of `key`'s readings in the window starting at `start`, or `None` when the
/// window holds none of them (or `key` is not a sensor of the workload).
pub fn expected_window(key: &str, start: i64, events: u64, keys: u64) -> Option<Aggregate> {
    let sensor: u64 = key.strip_prefix("Sensor")?.parse().ok()?;
    if sensor >= keys || start < T0 {
        return None;
    }
    let from = (start - T0) as u64;
    let first = from + (sensor + keys - from % keys) % keys;
    let to = ((start + WINDOW_MS - T0) as u64).min(events);
    let mut agg: Option<(u64, u64, u64, u64)> = None;
    for i in (first..to).step_by(keys as usize) {
        let v = i % 101;
        agg = Some(match agg {
            None => (1, v, v, v),
            Some((n, lo, hi, sum)) => (n + 1, lo.min(v), hi.max(v), sum + v),
        });
    }
    agg.map(|(n, lo, hi, sum)| (n, lo as f64, hi as f64, sum as f64 / n as f64))
}

/// The stream time that has closed the windows of sensor `sensor` by the end of the input: the
/// last reading's closing by partition, the sensor's own last reading's closing by key.
pub fn final_time(sensor: u64, events: u64, keys: u64, closing: Closing) -> i64 {
    let last = events.saturating_sub(1);
    match closing {
        Closing::Partition => T0 + last as i64,
        // The largest i ≤ last with i % keys == sensor.
        Closing::Key => T0 + last as i64 - ((last + keys - sensor % keys) % keys) as i64,
    }
}

/// How many (key, window) pairs had closed by the end of the input.
pub fn closed_windows(events: u64, keys: u64, closing: Closing) -> u64 {
    if closing == Closing::Key {
        let mut closed = 0;
        for sensor in 0..keys.min(events) {
            let time = final_time(sensor, events, keys, closing);
            let mut last_start = None;
            for i in (sensor..events).step_by(keys as usize) {
                let start = T0 + (i as i64 / WINDOW_MS) * WINDOW_MS;
                if last_start != Some(start) && start + WINDOW_MS + GRACE_MS < time {
                    closed += 1;
                }
                last_start = Some(start);
            }
        }
        return closed;
    }
    let last = T0 + events as i64 - 1;
    let mut closed = 0;
    let mut start = T0;
    while start + WINDOW_MS + GRACE_MS < last {
        let readings = ((start + WINDOW_MS - T0) as u64).min(events) - (start - T0) as u64;
        closed += readings.min(keys);
        start += WINDOW_MS;
    }
    closed
}

/// Reads every window in `topic` under `dir` and checks them; returns (windows emitted,
/// windows closed), or what was wrong, naming the window or the record.
pub fn check(
    dir: &std::path::Path,
    topic: &str,
    events: u64,
    keys: u64,
    closing: Closing,
) -> Result<(u64, u64), String> {
    let log = Log::open(dir).map_err(|e| e.to_string())?;
    let topic = log.topic(topic).map_err(|e| e.to_string())?;
    let (mut seen, mut emitted, mut closed_seen) = (HashSet::new(), 0, 0);
    crate::for_each_window(&topic, |key, w: WindowResult<Aggregate>| {
        let at = || format!("window {key} [{}, {})", w.start, w.end);
        if !seen.insert((key.to_owned(), w.start)) {
            return Err(format!("{} came out twice", at()));
        }
        let want = expected_window(key, w.start, events, keys)
            .filter(|_| w.end - w.start == WINDOW_MS && (w.start - T0) % WINDOW_MS == 0)
            .ok_or_else(|| format!("{} is not a window of the input", at()))?;
        let (n, lo, hi, mean) = w.value;
        if (n, lo, hi) != (want.0, want.1, want.2)
            || (mean - want.3).abs() > 1e-9 * want.3.abs().max(1.0)
        {
            return Err(format!("{} is {:?}, expected {want:?}", at(), w.value));
        }
        emitted += 1;
        let sensor = key.strip_prefix("Sensor").and_then(|n| n.parse().ok());
        if w.end + GRACE_MS < final_time(sensor.unwrap_or(0), events, keys, closing) {
            closed_seen += 1;
        }
        Ok(())
    })?;
    let closed = closed_windows(events, keys, closing);
    if closed_seen != closed {
        return Err(format!(
            "{} of {closed} closed windows missing",
            closed - closed_seen
        ));
    }
    Ok((emitted, closed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The arithmetic of `expected_window` and `closed_windows` against a plain fold over every
    /// reading.
    #[test]
    fn expected_windows_match_a_fold_over_all_readings() {
        let (events, keys) = (50_000, 7);
        let mut folded: HashMap<(String, i64), Vec<u64>> = HashMap::new();
        for i in 0..events {
            let (key, _, ts) = reading(i, keys);
            folded
                .entry((key, ts - ts % WINDOW_MS))
                .or_default()
                .push(i % 101);
        }
        for ((key, start), values) in &folded {
            let n = values.len() as u64;
            let sum: u64 = values.iter().sum();
            let want = (
                n,
                *values.iter().min().unwrap() as f64,
                *values.iter().max().unwrap() as f64,
                sum as f64 / n as f64,
            );
            assert_eq!(expected_window(key, *start, events, keys), Some(want));
        }
        let last = T0 + events as i64 - 1;
        let closed = folded
            .keys()
            .filter(|(_, s)| s + WINDOW_MS + GRACE_MS < last)
            .count();
        assert_eq!(
            closed_windows(events, keys, Closing::Partition),
            closed as u64
        );
        assert_eq!(expected_window("Sensor7", T0, events, keys), None);
        assert_eq!(expected_window("sensor1", T0, events, keys), None);
    }

    /// Closing by key counts the windows each key's own last reading closed.
    #[test]
    fn windows_closed_by_key_are_those_each_keys_last_reading_closed() {
        for (events, keys) in [(50_000, 7), (50_000, 20_000)] {
            let mut key_last: HashMap<String, i64> = HashMap::new();
            let mut windows = HashSet::new();
            for i in 0..events {
                let (key, _, ts) = reading(i, keys);
                key_last.insert(key.clone(), ts);
                windows.insert((key, ts - ts % WINDOW_MS));
            }
            let closed_by = |last: &dyn Fn(&str) -> i64| {
                let closed = windows
                    .iter()
                    .filter(|(k, s)| s + WINDOW_MS + GRACE_MS < last(k));
                closed.count() as u64
            };
            let by_key = closed_by(&|k| key_last[k]);
            let by_partition = closed_by(&|_| T0 + events as i64 - 1);
            assert_eq!(closed_windows(events, keys, Closing::Key), by_key);
            assert_eq!(
                closed_windows(events, keys, Closing::Partition),
                by_partition
            );
            if keys > 1_000 {
                assert!(by_key < by_partition, "keys' own times close fewer");
            }
        }
    }

    /// Writes `windows` as results to topic `agg` under a new directory.
    fn written(windows: &[(String, i64)], events: u64, keys: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Log::open(dir.path()).expect("log");
        let topic = log
            .topic_or_create("agg", eddy::TopicConfig::default())
            .expect("topic");
        let records = windows.iter().map(|(key, start)| {
            let value = expected_window(key, *start, events, keys).unwrap_or((1, 0.0, 0.0, 0.0));
            let w = WindowResult {
                start: *start,
                end: start + WINDOW_MS,
                value,
            };
            let json = serde_json::to_vec(&w).expect("json");
            eddy::Record::keyed(key.clone(), json)
        });
        topic.append(records).expect("append");
        dir
    }

    /// The check passes the windows of the input and names what is wrong otherwise.
    #[test]
    fn check_accepts_the_closed_windows_and_refuses_repeats_gaps_and_strangers() {
        let (events, keys) = (45_000, 3);
        let closed: Vec<(String, i64)> = (0..4)
            .flat_map(|n| (0..keys).map(move |k| (format!("Sensor{k}"), T0 + n * WINDOW_MS)))
            .collect();
        assert_eq!(
            closed_windows(events, keys, Closing::Partition),
            closed.len() as u64
        );
        let ok = written(&closed, events, keys);
        assert_eq!(
            check(ok.path(), "agg", events, keys, Closing::Partition),
            Ok((12, 12))
        );

        let mut repeated = closed.clone();
        repeated.push(closed[5].clone());
        let err = check(
            written(&repeated, events, keys).path(),
            "agg",
            events,
            keys,
            Closing::Partition,
        );
        assert!(
            err.as_ref().is_err_and(|e| e.contains("came out twice")),
            "{err:?}"
        );

        let missing = &closed[1..];
        let err = check(
            written(missing, events, keys).path(),
            "agg",
            events,
            keys,
            Closing::Partition,
        );
        assert!(
            err.as_ref().is_err_and(|e| e.contains("1 of 12 closed")),
            "{err:?}"
        );

        let mut stranger = closed.clone();
        stranger.push(("Sensor9".into(), T0));
        let err = check(
            written(&stranger, events, keys).path(),
            "agg",
            events,
            keys,
            Closing::Partition,
        );
        assert!(
            err.as_ref()
                .is_err_and(|e| e.contains("agg partition 0 offset 12: window Sensor9")),
            "{err:?}"
        );
    }
}
