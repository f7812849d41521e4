//! Sliding and session windows against hand-computed expectations (boundaries, grace, late
//! records, merging sessions, restarts in the middle), closing by key and by partition, and
//! against a brute force over random out-of-order input on several keys and partitions.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod window_common;
use eddy::{Closing, Stream, WindowSpec};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;
use window_common::*;

#[test]
fn sliding_windows_one_per_record_time_with_grace_and_late_records() {
    let s = "\"s\"";
    let readings = [
        (s, 0, 1.0),
        (s, 4_000, 2.0),
        (s, 9_999, 4.0),
        (s, 10_000, 8.0), // its window [0, 10 000] holds the record exactly 10 s earlier
        (s, 9_000, 16.0), // out of order within grace: own window, and joins the two above
        (s, 20_000, 32.0), // closes every window ending by 17 999
        (s, 3_000, 64.0), // its last window [3 000, 13 000] closed at 15 001: late
        (s, 22_000, 128.0), // [10 000, 20 000] stays open until stream time 22 001
        (s, 30_000, 256.0), // closes [10 000, 20 000] and [12 000, 22 000]
    ];
    let (got, late) = run_both_ways(&readings, 4, |st| {
        st.sliding_window(Duration::from_secs(10), Duration::from_secs(2))
    });
    assert_eq!(
        got,
        vec![
            slide("s", -10_000, 0, 1, 1.0),
            slide("s", -6_000, 4_000, 2, 3.0),
            slide("s", -1_000, 9_000, 3, 19.0),
            slide("s", -1, 9_999, 4, 23.0),
            slide("s", 0, 10_000, 5, 31.0),
            slide("s", 10_000, 20_000, 2, 40.0),
            slide("s", 12_000, 22_000, 2, 160.0),
        ]
    );
    assert_eq!(late, vec![(3_000, -7_000, 3_000)]);
}

#[test]
fn sliding_record_late_for_its_own_window_still_joins_open_ones() {
    let s = "\"s\"";
    let readings = [
        (s, 10_000, 1.0),
        (s, 12_000, 2.0),
        (s, 11_000, 4.0),
        (s, 20_000, 0.0),
    ];
    // No grace: [1 000, 11 000] closed at stream time 12 000, yet [2 000, 12 000] is open.
    let (got, late) = run_both_ways(&readings, 2, |st| {
        st.sliding_window(Duration::from_secs(10), Duration::ZERO)
    });
    assert_eq!(
        got,
        vec![
            slide("s", 0, 10_000, 1, 1.0),
            slide("s", 2_000, 12_000, 3, 7.0)
        ]
    );
    assert_eq!(late, vec![(11_000, 1_000, 11_000)]);
}

#[test]
fn sliding_keeps_a_record_until_the_last_window_that_can_hold_it_closes() {
    let s = "\"s\"";
    let readings = [
        (s, 0, 1.0),
        (s, 12_000, 2.0), // stream time 0 + 10 s + 2 s grace
        (s, 10_000, 4.0), // [0, 10 000] is still open and holds the record at 0
        (s, 30_000, 0.0),
    ];
    let (got, late) = run_both_ways(&readings, 2, |st| {
        st.sliding_window(Duration::from_secs(10), Duration::from_secs(2))
    });
    assert_eq!(
        got,
        vec![
            slide("s", -10_000, 0, 1, 1.0),
            slide("s", 0, 10_000, 2, 5.0),
            slide("s", 2_000, 12_000, 2, 6.0),
        ]
    );
    assert!(late.is_empty());
}

#[test]
fn sessions_extend_merge_close_at_gap_plus_grace_and_survive_a_restart() {
    let (s, t) = ("\"s\"", "\"t\"");
    let readings = [
        (s, 0, 1.0),
        (s, 4_000, 2.0),  // within the gap: [0, 4 001)
        (s, 10_000, 4.0), // 6 s after: a new session; the first closes once stream time passes 10 s
        (t, 5_000, 1_000.0),
        (t, 10_000, 2_000.0), // exactly a gap after 5 000: the same session [5 000, 10 001)
        (s, 14_500, 8.0),     // extends [10 000, 14 501); closes s's first session
        (s, 24_000, 16.0),    // new session; closes t's session and [10 000, 14 501)
        (s, 19_500, 32.0),    // joins 24 000's session (the one it is a gap after has closed)
        (s, 30_000, 64.0),    // a new session: [19 500, 24 001) is still open at 30 s
        (s, 35_500, 128.0),   // closes [19 500, 24 001)
        (s, 33_000, 256.0),   // bridges [30 000, 30 001) and [35 500, 35 501): one session
        (s, 2_000, 512.0),    // late
        (s, 50_000, 1_024.0),
    ];
    let mut expected = vec![
        row("s", 0, 4_001, 2, 3.0),
        row("t", 5_000, 10_001, 2, 3_000.0),
        row("s", 10_000, 14_501, 2, 12.0),
        row("s", 19_500, 24_001, 2, 48.0),
        row("s", 30_000, 35_501, 3, 448.0),
    ];
    for closing in [Closing::Partition, Closing::Key] {
        if closing == Closing::Key {
            // t has no record after its session: only s's records move s's time.
            expected.retain(|r| r.0 != "t");
        }
        let sessions =
            |st: &Stream<String, Reading>| st.session_window(ms(5_000), ms(1_000)).closing(closing);
        let restarts = [Restart::Reopen, Restart::Restore];
        for (split, restart) in [5, 6, 10, 11].into_iter().zip(restarts.into_iter().cycle()) {
            let (got, late) = run_restarting(&readings, split, restart, |_| sessions);
            assert_eq!(
                got, expected,
                "by {closing}, {restart:?} after {split} readings"
            );
            assert_eq!(late, vec![(2_000, 2_000, 2_001)]);
        }
    }
}

#[test]
fn current_emission_shows_sessions_growing_and_merging() {
    for closing in [Closing::Key, Closing::Partition] {
        let dir = tempfile::tempdir().unwrap();
        let s = "\"s\"";
        feed(
            dir.path(),
            1,
            &[(s, 0, 1.0), (s, 6_000, 2.0), (s, 3_000, 4.0)],
        );
        pipeline(dir.path(), Rc::default(), true, |st| {
            st.session_window(ms(5_000), ms(10_000)).closing(closing)
        })
        .run_until_idle()
        .unwrap();
        assert_eq!(
            rows(dir.path()),
            vec![
                row("s", 0, 1, 1, 1.0),
                row("s", 6_000, 6_001, 1, 2.0),
                row("s", 0, 6_001, 3, 7.0),
            ],
            "closing by {closing}"
        );
    }
}

/// Random readings: `n` over `keys` keys, event time mostly rising with jitter (some of it beyond
/// the grace), and pauses that split sessions.
fn random_readings(n: usize, keys: usize, seed: u64) -> Vec<(String, i64, f64)> {
    let mut x = seed | 1;
    let mut random = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let mut clock = 0i64;
    (0..n)
        .map(|i| {
            // Whole tenths of a second, so that records often sit exactly on a boundary.
            clock += 100 * random(5) as i64 + if random(50) == 0 { 6_000 } else { 0 };
            let spread = if random(20) == 0 { 80 } else { 15 };
            let jitter = 100 * random(spread) as i64;
            let key = format!("\"k{}\"", random(keys as u64));
            (key, clock - jitter, i as f64)
        })
        .collect()
}

/// Window results computed the obvious way, per group of keys sharing a stream time (a
/// partition when closing by partition, a key when closing by key): per record, stream time
/// before it, the windows it would join, and which of those closed.
fn brute_force(
    readings: &[(String, i64, f64)],
    clock_of: impl Fn(&str) -> String,
    sliding: Option<i64>,
    gap: i64,
    grace: i64,
) -> BTreeMap<(String, i64), (i64, u64, f64)> {
    let mut by_clock: BTreeMap<String, Vec<&(String, i64, f64)>> = BTreeMap::new();
    for r in readings {
        by_clock.entry(clock_of(&r.0)).or_default().push(r);
    }
    let mut out = BTreeMap::new();
    for records in by_clock.values() {
        let mut stream_time = i64::MIN;
        // Per key: accepted records (ts, value), and for sliding the record times with a window.
        let mut accepted: BTreeMap<&str, Vec<(i64, f64, i64)>> = BTreeMap::new();
        let mut sessions: BTreeMap<&str, Vec<Vec<(i64, f64)>>> = BTreeMap::new();
        let mut own: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for (key, ts, value) in records.iter().map(|r| (r.0.as_str(), r.1, r.2)) {
            if let Some(size) = sliding {
                // Windows [t − size, t], both ends included: a record's last window is the one of
                // a record `size` later, which closes once stream time reaches its end + grace.
                if ts + size + 1 + grace > stream_time {
                    accepted
                        .entry(key)
                        .or_default()
                        .push((ts, value, stream_time));
                    if ts + 1 + grace > stream_time {
                        own.entry(key).or_default().push(ts);
                    }
                }
            } else {
                let list = sessions.entry(key).or_default();
                // Closed once stream time passes last + gap + grace; records at most a gap apart
                // are one session.
                let closed = |s: &Vec<(i64, f64)>| {
                    s.iter().map(|r| r.0).max().unwrap() + gap + grace < stream_time
                };
                let (near, far): (Vec<_>, Vec<_>) = list
                    .drain(..)
                    .partition(|s| !closed(s) && s.iter().any(|r| (r.0 - ts).abs() <= gap));
                let mut merged: Vec<(i64, f64)> = near.into_iter().flatten().collect();
                merged.push((ts, value));
                *list = far;
                let last = merged.iter().map(|r| r.0).max().unwrap();
                // A late record (its session alone would be closed) is dropped; it never has open
                // sessions near it, since merging with one would keep it open.
                if last + gap + grace >= stream_time {
                    list.push(merged);
                }
            }
            stream_time = stream_time.max(ts);
        }
        if let Some(size) = sliding {
            for (key, times) in own {
                for t in times {
                    if t + 1 + grace > stream_time {
                        continue; // still open at the end: not emitted
                    }
                    let inside = accepted[key].iter().filter(|(ts, _, before)| {
                        t - size <= *ts && *ts <= t && *before < t + 1 + grace
                    });
                    let (count, sum) = inside.fold((0, 0.0), |(c, s), r| (c + 1, s + r.1));
                    out.insert((key.to_string(), t - size), (t, count, sum));
                }
            }
        } else {
            for (key, list) in sessions {
                for s in list {
                    let first = s.iter().map(|r| r.0).min().unwrap();
                    let last = s.iter().map(|r| r.0).max().unwrap();
                    if last + gap + grace < stream_time {
                        let sum = s.iter().map(|r| r.1).sum();
                        out.insert((key.to_string(), first), (last + 1, s.len() as u64, sum));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn sliding_and_session_windows_match_a_brute_force_on_random_input() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let readings = random_readings(3_000, 7, seed);
    let borrowed: Vec<(&str, i64, f64)> = readings
        .iter()
        .map(|(k, t, v)| (k.as_str(), *t, *v))
        .collect();
    let (grace, gap, size) = (1_000, 2_500, 3_000);
    let cases =
        [true, false].map(|sliding| [Closing::Key, Closing::Partition].map(|c| (sliding, c)));
    for (sliding, closing) in cases.into_iter().flatten() {
        let dir = tempfile::tempdir().unwrap();
        feed(dir.path(), 3, &borrowed);
        let late: Late = Rc::default();
        pipeline(dir.path(), late.clone(), false, |st| {
            let windows = match sliding {
                true => st.sliding_window(ms(size as u64), ms(grace as u64)),
                false => st.session_window(ms(gap as u64), ms(grace as u64)),
            };
            windows.closing(closing)
        })
        .run_until_idle()
        .unwrap();
        let mut partition_of = BTreeMap::new();
        let mut got = BTreeMap::new();
        let log = eddy::Log::open(dir.path()).unwrap();
        let topic = log.topic("readings").unwrap();
        for p in 0..topic.partitions() {
            for (_, r) in common::read_all(&mut topic.reader(p).unwrap(), 0) {
                partition_of.insert(String::from_utf8(r.key.unwrap()).unwrap(), p);
            }
        }
        for (key, start, end, count, sum, _) in rows(dir.path()) {
            let previous = got.insert((format!("\"{key}\""), start), (end, count, sum));
            assert!(previous.is_none(), "{key} {start} emitted twice");
        }
        let clock_of = |k: &str| match closing {
            Closing::Key => k.to_string(),
            Closing::Partition => partition_of[k].to_string(),
        };
        let want = brute_force(&readings, clock_of, sliding.then_some(size), gap, grace);
        assert!(want.len() > 100, "{} windows", want.len());
        assert!(!late.borrow().is_empty(), "the input has late records");
        assert_eq!(got, want, "sliding: {sliding}, by {closing}, seed {seed}");
    }
}

/// Many keys whose records share their times, so that their sessions share their bounds: the
/// sessions that grow or merge leave entries behind in the operator's large closing buckets,
/// which closing must skip. Results must still match the brute force, with a restart midway.
#[test]
fn sessions_of_many_keys_with_the_same_bounds_match_a_brute_force() {
    let (keys, gap, grace) = (40, 2_500, 1_000);
    let mut readings = Vec::new();
    let mut clock = 0i64;
    for tick in 0..120i64 {
        clock += if tick % 30 == 29 {
            6_000
        } else {
            100 * (1 + tick % 4)
        };
        for k in 0..keys {
            // Every fifth key also gets a record from the past that can bridge two sessions.
            let ts = if k % 5 == 0 && tick % 9 == 4 {
                clock - 3_000
            } else {
                clock
            };
            readings.push((format!("\"k{k}\""), ts, (tick * keys + k) as f64));
        }
    }
    let borrowed: Vec<(&str, i64, f64)> = readings
        .iter()
        .map(|(k, t, v)| (k.as_str(), *t, *v))
        .collect();
    for closing in [Closing::Key, Closing::Partition] {
        let (rows, _late) = run_in_two_halves(&borrowed, borrowed.len() / 2, |st| {
            st.session_window(ms(gap as u64), ms(grace as u64))
                .closing(closing)
        });
        let mut got = BTreeMap::new();
        for (key, start, end, count, sum, _) in rows {
            let previous = got.insert((format!("\"{key}\""), start), (end, count, sum));
            assert!(previous.is_none(), "{key} {start} emitted twice");
        }
        let clock_of = |k: &str| match closing {
            Closing::Key => k.to_string(),
            Closing::Partition => String::new(),
        };
        let want = brute_force(&readings, clock_of, None, gap, grace);
        assert!(want.len() >= 3 * keys as usize, "{} sessions", want.len());
        assert_eq!(got, want, "by {closing}");
    }
}

/// Live entries of the window store's changelog after compaction, counted by kind (`W` window,
/// `B` buffered records), and the number of tombstones written.
fn live_changelog_entries(dir: &Path) -> (BTreeMap<u8, usize>, usize) {
    let log = eddy::Log::open(dir).unwrap();
    let changelog = log.topic("w-readings-changelog").unwrap();
    let mut latest = BTreeMap::new();
    let mut tombstones = 0;
    for (_, r) in common::read_all(&mut changelog.reader(0).unwrap(), 0) {
        tombstones += usize::from(r.value.is_none());
        latest.insert(r.key.unwrap(), r.value.is_some());
    }
    let mut kinds = BTreeMap::new();
    for (key, live) in latest {
        if live && key.first() == Some(&b'w') {
            *kinds.entry(key[3]).or_default() += 1;
        }
    }
    (kinds, tombstones)
}

#[test]
fn closed_windows_and_expired_records_leave_state_and_changelog() {
    let readings: Vec<(&str, i64, f64)> = (0..60)
        .map(|i| (["\"a\"", "\"b\"", "\"c\""][i % 3], i as i64 * 700, 1.0))
        .collect();
    type Kind = fn(&Stream<String, Reading>) -> WindowSpec<String, Reading>;
    let kinds: [(Kind, usize); 3] = [
        (|st| st.tumbling_window(secs(10), secs(1)), 0),
        (|st| st.sliding_window(secs(10), secs(1)), 1),
        (|st| st.session_window(secs(3), secs(1)), 1),
    ];
    for closing in [Closing::Partition, Closing::Key] {
        // Closing by partition one record of a new key closes every earlier window; closing by
        // key each key needs its own, and every key keeps its time (`T`).
        let last: Vec<(&str, i64, f64)> = match closing {
            Closing::Partition => vec![("\"z\"", 1_000_000, 1.0)],
            Closing::Key => ["\"a\"", "\"b\"", "\"c\"", "\"z\""]
                .map(|k| (k, 1_000_000, 1.0))
                .to_vec(),
        };
        for (windows, buffers) in kinds {
            let dir = tempfile::tempdir().unwrap();
            for part in [&readings[..], &last[..]] {
                feed(dir.path(), 1, part);
                pipeline(dir.path(), Rc::default(), false, |st| {
                    windows(st).closing(closing)
                })
                .run_until_idle()
                .unwrap();
            }
            let (live, tombstones) = live_changelog_entries(dir.path());
            let count = |kind: u8| live.get(&kind).copied().unwrap_or(0);
            assert_eq!(
                count(b'W'),
                last.len(),
                "only the last records' windows are open"
            );
            assert_eq!(count(b'B'), buffers * last.len(), "the last records");
            let times = match closing {
                Closing::Partition => 0,
                Closing::Key => 4,
            };
            assert_eq!(count(b'T'), times, "keys' stream times, by {closing}");
            assert!(tombstones > 0, "windows saved by the first run are deleted");
        }
    }
}

#[test]
fn sliding_state_written_with_the_earlier_bounds_is_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let sliding = |st: &Stream<String, Reading>| st.sliding_window(secs(10), secs(1));
    feed(dir.path(), 1, &[("\"s\"", 1_000, 1.0)]);
    pipeline(dir.path(), Rc::default(), false, sliding)
        .run_until_idle()
        .unwrap();
    // A window of the record at 5 s as an earlier eddy kept it, [−4 999, 5 001): 10 s long
    // where windows are now 10 s + 1 ms. It reaches the store through the changelog, followed
    // by its checkpoint's marker (input offset 1) as every checkpoint writes it.
    let time = |t: i64| ((t as u64) ^ (1 << 63)).to_be_bytes();
    let mut key = vec![b'w', 0, 0, b'W'];
    key.extend_from_slice(&time(5_001));
    key.extend_from_slice(&time(-4_999));
    key.extend_from_slice(b"\"s\"");
    let log = eddy::Log::open(dir.path()).unwrap();
    log.topic("w-readings-changelog")
        .unwrap()
        .writer(0)
        .unwrap()
        .append(&[
            eddy::Record::keyed(key, r#"["s",[1,5.0]]"#),
            eddy::Record::keyed(&b"\0checkpoint"[..], 1u64.to_be_bytes()),
        ])
        .unwrap();
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    feed(dir.path(), 1, &[("\"s\"", 6_000, 2.0)]);
    let error = pipeline(dir.path(), Rc::default(), false, sliding)
        .run_until_idle()
        .expect_err("the earlier window is refused")
        .to_string();
    assert!(
        error.contains("sliding window [-4999, 5001)") && error.contains("t − size + 1"),
        "{error}"
    );
}
