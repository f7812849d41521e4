//! Closing strategies against hand-computed expectations: windows closing by their key's stream
//! time or by their partition's, with final and current emission, across restarts (stores
//! reopened and restored from the changelog), idle closing by key, and state written under one
//! strategy read under the other.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod window_common;
use eddy::{Closing, Stream, WindowSpec};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use window_common::*;

fn tumbling(closing: Closing) -> impl Fn(&Stream<String, Reading>) -> WindowSpec<String, Reading> {
    move |st| st.tumbling_window(secs(10), secs(1)).closing(closing)
}

/// Two keys in one partition: a's records pass the end + grace of b's first window long before
/// b's own do.
const TWO_KEYS: [(&str, i64, f64); 6] = [
    ("\"a\"", 1_000, 1.0),
    ("\"b\"", 2_000, 2.0),
    ("\"a\"", 12_000, 4.0),  // a's time reaches [0, 10 s)'s end + grace
    ("\"b\"", 9_000, 8.0),   // late by the partition's time, not by b's (2 000)
    ("\"b\"", 11_500, 16.0), // b's time reaches [0, 10 s)'s end + grace
    ("\"a\"", 21_000, 32.0), // closes [10 s, 20 s): a's only, or both keys'
];

#[test]
fn closing_by_key_waits_for_each_keys_own_records_and_by_partition_for_any() {
    let by_key = vec![
        row("a", 0, 10_000, 1, 1.0),
        row("b", 0, 10_000, 2, 10.0),
        row("a", 10_000, 20_000, 1, 4.0),
    ];
    let by_partition = vec![
        row("a", 0, 10_000, 1, 1.0),
        row("b", 0, 10_000, 1, 2.0),
        row("a", 10_000, 20_000, 1, 4.0),
        row("b", 10_000, 20_000, 1, 16.0),
    ];
    for (closing, want, want_late) in [
        (Closing::Key, by_key, vec![]),
        (Closing::Partition, by_partition, vec![(9_000, 0, 10_000)]),
    ] {
        for restart in [Restart::Reopen, Restart::Restore] {
            for split in 1..TWO_KEYS.len() {
                let got = run_restarting(&TWO_KEYS, split, restart, |_| tumbling(closing));
                let context = format!("by {closing}, {restart:?} after {split} records");
                assert_eq!(got.0, want, "{context}");
                assert_eq!(got.1, want_late, "{context}");
            }
        }
    }
}

#[test]
fn current_emission_closing_by_key_updates_windows_that_the_partition_would_have_closed() {
    let both = [
        row("a", 0, 10_000, 1, 1.0),
        row("b", 0, 10_000, 1, 2.0),
        row("a", 10_000, 20_000, 1, 4.0),
    ];
    let mut by_key = both.to_vec();
    by_key.push(row("b", 0, 10_000, 2, 10.0)); // b's 9 000 still counts
    let mut by_partition = both.to_vec();
    for tail in [&mut by_key, &mut by_partition] {
        tail.push(row("b", 10_000, 20_000, 1, 16.0));
        tail.push(row("a", 20_000, 30_000, 1, 32.0));
    }
    for (closing, want, late) in [
        (Closing::Key, by_key, 0),
        (Closing::Partition, by_partition, 1),
    ] {
        let dir = tempfile::tempdir().unwrap();
        feed(dir.path(), 1, &TWO_KEYS);
        let seen: Late = Rc::default();
        pipeline(dir.path(), seen.clone(), true, tumbling(closing))
            .run_until_idle()
            .unwrap();
        assert_eq!(rows(dir.path()), want, "by {closing}");
        assert_eq!(seen.borrow().len(), late, "by {closing}");
    }
}

#[test]
fn a_keys_stream_time_survives_a_restart_and_a_restore_from_the_changelog() {
    let readings = [
        ("\"b\"", 15_000, 1.0),
        ("\"a\"", 1_000, 2.0),
        // Restart here. b's [0, 10 s) closed at b's 15 000: late. Lost, b's time would start
        // over and reopen it.
        ("\"b\"", 3_000, 4.0),
        ("\"a\"", 9_500, 8.0), // a's time is 1 000: [0, 10 s) is open
        ("\"a\"", 30_000, 16.0),
        ("\"b\"", 40_000, 32.0),
    ];
    for restart in [Restart::Reopen, Restart::Restore] {
        let (got, late) = run_restarting(&readings, 2, restart, |_| tumbling(Closing::Key));
        assert_eq!(
            got,
            vec![
                row("a", 0, 10_000, 2, 10.0),
                row("b", 10_000, 20_000, 1, 1.0)
            ],
            "{restart:?}"
        );
        assert_eq!(late, vec![(3_000, 0, 10_000)], "{restart:?}");
    }
}

#[test]
fn state_written_closing_by_one_strategy_reads_under_the_other_without_reopening_windows() {
    // By partition, then by key: b's 11 000 closed a's [0, 10 s); a has no time of its own, and
    // starts from the partition's, so its 9 000 is late instead of opening [0, 10 s) again.
    let partition_then_key = [
        ("\"a\"", 5_000, 1.0),
        ("\"b\"", 11_000, 2.0),
        ("\"a\"", 9_000, 4.0),
        ("\"a\"", 10_500, 8.0),
        ("\"b\"", 12_500, 16.0),
        ("\"a\"", 40_000, 32.0),
        ("\"b\"", 40_000, 64.0),
    ];
    // By key, then by partition: a's [0, 10 s) is open at a's time 1 000, and closes at the next
    // record by the partition's 15 000, which makes a's 2 000 late.
    let key_then_partition = [
        ("\"a\"", 1_000, 1.0),
        ("\"b\"", 15_000, 2.0),
        ("\"a\"", 2_000, 4.0),
        ("\"b\"", 40_000, 8.0),
    ];
    let cases = [
        (
            &partition_then_key[..],
            [Closing::Partition, Closing::Key],
            vec![
                row("a", 0, 10_000, 1, 1.0),
                row("a", 10_000, 20_000, 1, 8.0),
                row("b", 10_000, 20_000, 2, 18.0),
            ],
            vec![(9_000, 0, 10_000)],
        ),
        (
            &key_then_partition[..],
            [Closing::Key, Closing::Partition],
            vec![
                row("a", 0, 10_000, 1, 1.0),
                row("b", 10_000, 20_000, 1, 2.0),
            ],
            vec![(2_000, 0, 10_000)],
        ),
    ];
    for (readings, order, want, want_late) in cases {
        for restart in [Restart::Reopen, Restart::Restore] {
            let split = 2;
            let got = run_restarting(readings, split, restart, |i| tumbling(order[i]));
            let context = format!("{order:?}, {restart:?}");
            assert_eq!(got.0, want, "{context}");
            assert_eq!(got.1, want_late, "{context}");
        }
    }
}

#[test]
fn idle_closing_by_key_closes_a_quiet_keys_windows_while_another_keeps_the_partition_busy() {
    let dir = tempfile::tempdir().unwrap();
    feed(dir.path(), 1, &[("\"b\"", 1_000, 1.0)]);
    let windows = |st: &Stream<String, Reading>| {
        tumbling(Closing::Key)(st).close_after_idle(Duration::from_millis(200))
    };
    let app = pipeline(dir.path(), Rc::default(), false, windows);
    let stop = app.stop_handle();
    // a's records keep coming, all inside [0, 10 s): nothing but b's idleness closes a window.
    let fed_until_b_closed = AtomicBool::new(false);
    let mut app = app;
    // Scoped: the feeder is joined on every path, also when the application fails.
    std::thread::scope(|scope| {
        let done = &fed_until_b_closed;
        let dir = dir.path();
        scope.spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut ts = 3_000;
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                feed(dir, 1, &[("\"a\"", ts, 0.0)]);
                ts += 1;
                if rows(dir).iter().any(|r| r.0 == "b") {
                    done.store(true, Ordering::Relaxed);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            stop.store(true, Ordering::Relaxed);
        });
        let ran = app.run();
        // A failed run stops the feeder too.
        app.stop_handle().store(true, Ordering::Relaxed);
        ran.unwrap();
    });
    assert!(
        fed_until_b_closed.load(Ordering::Relaxed),
        "b's window closed while a's records kept coming"
    );
    let b_rows: Vec<Row> = rows(dir.path())
        .into_iter()
        .filter(|r| r.0 == "b")
        .collect();
    assert_eq!(b_rows, vec![row("b", 0, 10_000, 1, 1.0)]);

    // Idle closing moved b's time past the window, and the time was kept: b's next record for
    // it is late after a restart, though b has no window left in state.
    feed(dir.path(), 1, &[("\"b\"", 5_000, 2.0)]);
    let late: Late = Rc::default();
    pipeline(dir.path(), late.clone(), false, windows)
        .run_until_idle()
        .unwrap();
    assert_eq!(*late.borrow(), vec![(5_000, 0, 10_000)]);
    let b_rows = rows(dir.path()).into_iter().filter(|r| r.0 == "b").count();
    assert_eq!(b_rows, 1, "[0, 10 s) of b is not emitted again");
}
