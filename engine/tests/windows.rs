//! Time windows against hand-computed expectations: boundaries, grace, late records, emission
//! modes, several keys and partitions, idle closing, and state across restarts.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod window_common;
use common::*;
use eddy::aggregate::{By, Count, Max, Mean, Min};
use eddy::{Application, Closing, Json, Log, WindowResult};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;
use window_common::*;

/// The sensor pipeline: 10 s tumbling windows, 1 s grace, count/min/max/mean, final.
fn sensor_app(dir: &Path, late: Rc<RefCell<Vec<(i64, i64, i64)>>>) -> Application {
    sensor_app_closing(dir, late, Closing::default())
}

/// [`sensor_app`] with windows closing by `closing`.
fn sensor_app_closing(
    dir: &Path,
    late: Rc<RefCell<Vec<(i64, i64, i64)>>>,
    closing: Closing,
) -> Application {
    let app = app(dir);
    let input = app
        .topic::<Json<String>, Json<Reading>>("readings")
        .unwrap()
        .with_timestamp(|r, _| r.ts);
    let out = app
        .topic::<Json<String>, Json<WindowResult<Stats>>>("agg")
        .unwrap();
    let late_out = app.topic::<Json<String>, Json<Reading>>("late").unwrap();
    let v = |r: &Reading| r.value;
    app.dataframe(&input)
        .tumbling_window(secs(10), secs(1))
        .closing(closing)
        .on_late(move |m, start, end| late.borrow_mut().push((m.value.ts, start, end)))
        .late_topic(&late_out)
        .aggregate((Count, Min(v), Max(v), Mean(v)))
        .emit_final()
        .to_topic(&out);
    app
}

/// With one key, closing by key and by partition are the same.
const BOTH: [Closing; 2] = [Closing::Key, Closing::Partition];

#[test]
fn tumbling_final_windows_at_their_boundaries_with_grace_and_late_records() {
    for closing in BOTH {
        tumbling_boundaries(closing);
    }
}

fn tumbling_boundaries(closing: Closing) {
    let dir = tempfile::tempdir().unwrap();
    // Keys are JSON strings here ("\"s1\"").
    feed(
        dir.path(),
        1,
        &[
            ("\"s1\"", 0, 1.0),
            ("\"s1\"", 9_999, 3.0),   // last ms of [0, 10 s)
            ("\"s1\"", 10_000, 5.0),  // exactly at end: next window
            ("\"s1\"", 9_000, 2.0),   // out of order, within grace: counts for [0, 10 s)
            ("\"s1\"", 10_999, 7.0),  // stream time 10,999 < 11,000: [0, 10 s) still open
            ("\"s1\"", 9_500, 4.0),   // still within grace
            ("\"s1\"", 11_000, 6.0),  // exactly end + grace: closes [0, 10 s)
            ("\"s1\"", 9_800, 100.0), // late: dropped
            ("\"s1\"", 25_000, 1.0),  // closes [10 s, 20 s)
        ],
    );
    let late = Rc::new(RefCell::new(Vec::new()));
    let mut a = sensor_app_closing(dir.path(), late.clone(), closing);
    a.run_until_idle().unwrap();
    let got = results::<Stats>(dir.path(), "agg");
    assert_eq!(
        got,
        vec![
            (
                "s1".to_string(),
                WindowResult {
                    start: 0,
                    end: 10_000,
                    value: (4, 1.0, 4.0, 2.5)
                },
                9_999
            ),
            (
                "s1".to_string(),
                WindowResult {
                    start: 10_000,
                    end: 20_000,
                    value: (3, 5.0, 7.0, 6.0)
                },
                19_999
            ),
        ],
        "closing by {closing}"
    );
    assert_eq!(a.metrics().late_records, 1);
    assert_eq!(*late.borrow(), vec![(9_800, 0, 10_000)]);
    let late_topic = Log::open(dir.path()).unwrap().topic("late").unwrap();
    assert_eq!(read_all(&mut late_topic.reader(0).unwrap(), 0).len(), 1);
}

#[test]
fn open_windows_and_stream_time_survive_a_restart() {
    for closing in BOTH {
        restart_keeps_windows_and_stream_time(closing);
    }
}

fn restart_keeps_windows_and_stream_time(closing: Closing) {
    let dir = tempfile::tempdir().unwrap();
    feed(
        dir.path(),
        1,
        &[("\"s1\"", 1_000, 1.0), ("\"s1\"", 12_500, 2.0)],
    );
    let late = Rc::new(RefCell::new(Vec::new()));
    sensor_app_closing(dir.path(), late.clone(), closing)
        .run_until_idle()
        .unwrap();
    assert_eq!(
        results::<Stats>(dir.path(), "agg").len(),
        1,
        "[0, 10 s) closed"
    );
    // After the restart [10 s, 20 s) continues, and 5 s is still late (stream time persisted).
    feed(
        dir.path(),
        1,
        &[
            ("\"s1\"", 5_000, 9.0),
            ("\"s1\"", 15_000, 4.0),
            ("\"s1\"", 40_000, 0.0),
        ],
    );
    let mut a = sensor_app_closing(dir.path(), late.clone(), closing);
    a.run_until_idle().unwrap();
    let got = results::<Stats>(dir.path(), "agg");
    assert_eq!(got.len(), 2, "[40 s, 50 s) is still open");
    assert_eq!(
        got[1].1,
        WindowResult {
            start: 10_000,
            end: 20_000,
            value: (2, 2.0, 4.0, 3.0)
        }
    );
    assert_eq!(a.metrics().late_records, 1);
}

#[test]
fn hopping_windows_current_emission_and_several_keys_and_partitions() {
    for closing in BOTH {
        hopping_several_keys(closing);
    }
}

fn hopping_several_keys(closing: Closing) {
    let dir = tempfile::tempdir().unwrap();
    let mut readings = Vec::new();
    let keys = ["\"a\"", "\"b\"", "\"c\"", "\"d\""];
    for i in 0..40i64 {
        readings.push((keys[(i % 4) as usize], i * 1_000, i as f64));
    }
    // Key b stops early: closing by key its last windows stay open, closing by partition the
    // records of a key in its partition close them.
    readings.retain(|(k, ts, _)| *k != "\"b\"" || *ts < 20_000);
    feed(dir.path(), 3, &readings);
    let a = app(dir.path());
    let input = a
        .topic::<Json<String>, Json<Reading>>("readings")
        .unwrap()
        .with_timestamp(|r, _| r.ts);
    let hop = a
        .topic::<Json<String>, Json<WindowResult<u64>>>("hop")
        .unwrap();
    let cur = a
        .topic::<Json<String>, Json<WindowResult<Reading>>>("cur")
        .unwrap();
    let sdf = a.dataframe(&input);
    sdf.hopping_window(secs(10), secs(5), secs(0))
        .closing(closing)
        .count()
        .emit_final()
        .to_topic(&hop);
    sdf.tumbling_window(secs(10), secs(0))
        .closing(closing)
        .last(By::EventTime)
        .emit_current()
        .to_topic(&cur);
    let mut a = a;
    a.run_until_idle().unwrap();
    // Expected by brute force: per key, every hopping window [5k, 5k+10 s), k ≥ 0 (none starts
    // before the epoch), closed by its key's or its partition's stream time.
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic("readings").unwrap();
    let expected_by = |closing: Closing| {
        let mut expected = Vec::new();
        for key in keys {
            let p = topic.partition_for(Some(key.as_bytes()));
            let stream_time = readings
                .iter()
                .filter(|(k, _, _)| match closing {
                    Closing::Key => k == &key,
                    Closing::Partition => topic.partition_for(Some(k.as_bytes())) == p,
                })
                .map(|r| r.1)
                .max()
                .unwrap();
            for start in (0..40_000).step_by(5_000) {
                let n = readings
                    .iter()
                    .filter(|(k, ts, _)| k == &key && *ts >= start && *ts < start + 10_000)
                    .count() as u64;
                if n > 0 && start + 10_000 <= stream_time {
                    let name: String = serde_json::from_str(key).unwrap();
                    expected.push((name, start, n));
                }
            }
        }
        expected.sort();
        expected
    };
    assert_ne!(
        expected_by(Closing::Key),
        expected_by(Closing::Partition),
        "the input tells the strategies apart"
    );
    let expected = expected_by(closing);
    let mut got: Vec<(String, i64, u64)> = results::<u64>(dir.path(), "hop")
        .into_iter()
        .map(|(k, r, _)| (k, r.start, r.value))
        .collect();
    got.sort();
    assert_eq!(got, expected, "closing by {closing}");
    // Current emission: one result per record, the window's last value so far.
    let cur = results::<Reading>(dir.path(), "cur");
    assert_eq!(cur.len(), readings.len());
    for (_, r, _) in &cur {
        assert!(r.value.ts >= r.start && r.value.ts < r.end);
    }
}

#[test]
fn idle_close_emits_the_last_window_of_a_quiet_stream() {
    for closing in BOTH {
        idle_close_emits_the_last_window(closing);
    }
}

fn idle_close_emits_the_last_window(closing: Closing) {
    let dir = tempfile::tempdir().unwrap();
    feed(
        dir.path(),
        1,
        &[("\"s1\"", 1_000, 1.0), ("\"s1\"", 2_000, 3.0)],
    );
    let a = app(dir.path());
    let input = a
        .topic::<Json<String>, Json<Reading>>("readings")
        .unwrap()
        .with_timestamp(|r, _| r.ts);
    let out = a
        .topic::<Json<String>, Json<WindowResult<f64>>>("agg")
        .unwrap();
    a.dataframe(&input)
        .tumbling_window(secs(10), secs(1))
        .closing(closing)
        .close_after_idle(Duration::from_millis(200))
        .sum(|r: &Reading| r.value)
        .emit_final()
        .to_topic(&out);
    let stop = a.stop_handle();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let mut a = a;
    a.run().unwrap();
    let got = results::<f64>(dir.path(), "agg");
    assert_eq!(got.len(), 1, "closing by {closing}");
    assert_eq!(
        got[0].1,
        WindowResult {
            start: 0,
            end: 10_000,
            value: 4.0
        }
    );
    // Without idle closing the same input emits nothing.
    let other = tempfile::tempdir().unwrap();
    feed(
        other.path(),
        1,
        &[("\"s1\"", 1_000, 1.0), ("\"s1\"", 2_000, 3.0)],
    );
    let mut b = sensor_app_closing(other.path(), Rc::default(), closing);
    b.run_until_idle().unwrap();
    assert!(results::<Stats>(other.path(), "agg").is_empty());
}

#[test]
fn reduce_with_an_initializer_matches_the_built_in_aggregations() {
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
    struct Agg {
        count: u64,
        min: f64,
        max: f64,
        mean: f64,
    }
    let dir = tempfile::tempdir().unwrap();
    let readings: Vec<(&str, i64, f64)> = (0..100)
        .map(|i| ("\"s\"", i * 700, ((i * 37) % 100) as f64))
        .collect();
    feed(dir.path(), 1, &readings);
    let a = app(dir.path());
    let input = a
        .topic::<Json<String>, Json<Reading>>("readings")
        .unwrap()
        .with_timestamp(|r, _| r.ts);
    let reduced = a
        .topic::<Json<String>, Json<WindowResult<Agg>>>("reduced")
        .unwrap();
    let built_in = a
        .topic::<Json<String>, Json<WindowResult<Stats>>>("built_in")
        .unwrap();
    let sdf = a.dataframe(&input);
    sdf.tumbling_window(secs(10), secs(1))
        .reduce(
            |r: &Reading| Agg {
                count: 1,
                min: r.value,
                max: r.value,
                mean: r.value,
            },
            |a: Agg, r: &Reading| Agg {
                count: a.count + 1,
                min: a.min.min(r.value),
                max: a.max.max(r.value),
                mean: (a.mean * a.count as f64 + r.value) / (a.count + 1) as f64,
            },
        )
        .emit_final()
        .to_topic(&reduced);
    let v = |r: &Reading| r.value;
    sdf.tumbling_window(secs(10), secs(1))
        .aggregate((Count, Min(v), Max(v), Mean(v)))
        .emit_final()
        .to_topic(&built_in);
    let mut a = a;
    a.run_until_idle().unwrap();
    let r = results::<Agg>(dir.path(), "reduced");
    let b = results::<Stats>(dir.path(), "built_in");
    assert_eq!(r.len(), b.len());
    assert!(r.len() >= 6);
    for ((_, x, _), (_, y, _)) in r.iter().zip(&b) {
        assert_eq!(
            (x.start, x.value.count, x.value.min, x.value.max),
            (y.start, y.value.0, y.value.1, y.value.2)
        );
        assert!((x.value.mean - y.value.3).abs() < 1e-9);
    }
}

/// Count windows of `size` records starting every `step` records, per key, by brute force:
/// (key, smallest ts, largest ts, sum) for complete windows.
fn count_windows_by_hand(
    readings: &[(&str, i64, f64)],
    size: usize,
    step: usize,
) -> Vec<(String, i64, i64, f64)> {
    let mut by_key: std::collections::BTreeMap<&str, Vec<(i64, f64)>> = Default::default();
    for (k, ts, v) in readings {
        by_key.entry(k).or_default().push((*ts, *v));
    }
    let mut out = Vec::new();
    for (k, rs) in by_key {
        let mut first = 0;
        while first + size <= rs.len() {
            let w = &rs[first..first + size];
            let start = w.iter().map(|r| r.0).min().unwrap();
            let end = w.iter().map(|r| r.0).max().unwrap();
            let name: String = serde_json::from_str(k).unwrap();
            out.push((name, start, end, w.iter().map(|r| r.1).sum()));
            first += step;
        }
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

#[test]
fn count_windows_tumbling_hopping_and_sliding_match_a_brute_force_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ["\"a\"", "\"b\"", "\"c\""];
    let readings: Vec<(&str, i64, f64)> = (0..90i64)
        .map(|i| (keys[(i % 3) as usize], 1_000 + ((i * 7919) % 500), i as f64))
        .collect();
    let build = |dir: &Path| {
        let a = app(dir);
        let input = a
            .topic::<Json<String>, Json<Reading>>("readings")
            .unwrap()
            .with_timestamp(|r, _| r.ts);
        let tumbling = a
            .topic::<Json<String>, Json<WindowResult<f64>>>("tumbling")
            .unwrap();
        let hopping = a
            .topic::<Json<String>, Json<WindowResult<f64>>>("hopping")
            .unwrap();
        let sliding = a
            .topic::<Json<String>, Json<WindowResult<f64>>>("sliding")
            .unwrap();
        let sdf = a.dataframe(&input);
        sdf.sliding_count_window(3)
            .sum(|r: &Reading| r.value)
            .emit_final()
            .to_topic(&sliding);
        sdf.tumbling_count_window(4)
            .sum(|r: &Reading| r.value)
            .emit_final()
            .to_topic(&tumbling);
        sdf.hopping_count_window(5, 2)
            .sum(|r: &Reading| r.value)
            .emit_final()
            .to_topic(&hopping);
        a
    };
    // Half the input, a restart, the other half.
    feed(dir.path(), 2, &readings[..45]);
    build(dir.path()).run_until_idle().unwrap();
    feed(dir.path(), 2, &readings[45..]);
    build(dir.path()).run_until_idle().unwrap();
    for (topic, size, step) in [("tumbling", 4, 4), ("hopping", 5, 2), ("sliding", 3, 1)] {
        let results = results::<f64>(dir.path(), topic);
        assert!(
            results.iter().all(|(_, r, ts)| *ts == r.end),
            "a result's timestamp is its last record's"
        );
        let mut got: Vec<(String, i64, i64, f64)> = results
            .into_iter()
            .map(|(k, r, _)| (k, r.start, r.end, r.value))
            .collect();
        got.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(got, count_windows_by_hand(&readings, size, step), "{topic}");
    }
}

/// The output values of topic `agg`, as stored.
fn raw_results(dir: &Path) -> Vec<Vec<u8>> {
    let t = Log::open(dir).unwrap().topic("agg").unwrap();
    read_all(&mut t.reader(0).unwrap(), 0)
        .into_iter()
        .map(|(_, r)| r.value.unwrap())
        .collect()
}

#[test]
fn float_accumulators_are_the_same_bit_for_bit_across_a_restart_and_a_restore() {
    // Sums that need all 17 significant digits: 88.84 + 124.11 + 5.7 = 218.64999999999998, which
    // a float parser that is off by one ulp reads back as 218.65.
    let first = [
        ("\"s1\"", 1_000, 88.84),
        ("\"s1\"", 2_000, 124.11),
        ("\"s1\"", 3_000, 5.7),
        ("\"s2\"", 3_500, 32.61),
        ("\"s2\"", 3_600, 154.56),
        ("\"s2\"", 3_700, 44.18),
    ];
    let second = [
        ("\"s1\"", 4_000, 0.7),
        ("\"s2\"", 5_000, 0.3),
        ("\"s1\"", 30_000, 0.0),
        ("\"s2\"", 30_000, 0.0),
    ];
    let run = |dir: &Path| {
        sensor_app(dir, Rc::new(RefCell::new(Vec::new())))
            .run_until_idle()
            .unwrap()
    };
    let uninterrupted = tempfile::tempdir().unwrap();
    feed(uninterrupted.path(), 1, &first);
    feed(uninterrupted.path(), 1, &second);
    run(uninterrupted.path());
    let want = raw_results(uninterrupted.path());
    assert_eq!(want.len(), 2, "one [0, 10 s) window per sensor");

    for restore_from_changelog in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        feed(dir.path(), 1, &first);
        run(dir.path());
        assert!(
            raw_results(dir.path()).is_empty(),
            "the windows are still open"
        );
        if restore_from_changelog {
            std::fs::remove_dir_all(dir.path().join("state")).unwrap();
        }
        feed(dir.path(), 1, &second);
        run(dir.path());
        let got = raw_results(dir.path());
        let text = |v: &[Vec<u8>]| -> Vec<String> {
            v.iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect()
        };
        assert_eq!(
            text(&got),
            text(&want),
            "restored from the changelog: {restore_from_changelog}"
        );
    }
}
