//! Consumer groups across processes, with the real `eddy` binary: members SIGKILLed mid-run and
//! mid-commit, takeover of their partitions, and resets refused while a member process lives.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use eddy::{Groups, Log, Record};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Spawns `eddy consume` as a group member printing JSON; its records arrive on the channel as
/// (partition, offset).
fn member(dir: &std::path::Path, extra: &[&str], tx: mpsc::Sender<(u32, u64)>) -> Child {
    let mut child = eddy(dir)
        .args(["consume", "t", "--group", "g", "--format", "json"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let rec = (
                v["partition"].as_u64().unwrap() as u32,
                v["offset"].as_u64().unwrap(),
            );
            if tx.send(rec).is_err() {
                return;
            }
        }
    });
    child
}

#[test]
fn three_processes_share_six_partitions_and_survive_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (log, topic) = topic_with(dir.path(), "t", small_segments(6, 1 << 20));
    let (tx, rx) = mpsc::channel();
    let mut members: Vec<Child> = (0..3)
        .map(|_| {
            member(
                dir.path(),
                &["--follow", "--poll-records", "50"],
                tx.clone(),
            )
        })
        .collect();
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(30);
    while owners(&log, "g").len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(owners(&log, "g").len(), 3, "each process owns partitions");
    let desc = Groups::new(&log).describe("g").unwrap();
    assert_eq!(desc.members.len(), 3);
    let per_partition = 3000u64;
    let produce = |from: u64, to: u64| {
        for p in 0..6 {
            let recs: Vec<Record> = (from..to)
                .map(|i| Record::value(format!("{p}-{i}")))
                .collect();
            topic.writer(p).unwrap().append(&recs).unwrap();
        }
    };
    let mut seen: BTreeSet<(u32, u64)> = BTreeSet::new();
    let mut total = 0u64;
    produce(0, per_partition / 2);
    // Let them work, then kill one mid-run.
    while seen.len() < 3000 {
        let r = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("members stalled");
        seen.insert(r);
        total += 1;
    }
    let mut victim = members.remove(1);
    victim.kill().unwrap();
    victim.wait().unwrap();
    produce(per_partition / 2, per_partition);
    let want = 6 * per_partition as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < want && Instant::now() < deadline {
        if let Ok(r) = rx.recv_timeout(Duration::from_millis(500)) {
            seen.insert(r);
            total += 1;
        }
    }
    assert_eq!(
        seen.len(),
        want,
        "every record processed at least once, none skipped"
    );
    assert!(total >= want as u64);
    let after = owners(&log, "g");
    assert_eq!(
        after.len(),
        2,
        "the survivors own every partition: {after:?}"
    );
    // A partition may be between owners for a moment while the survivors settle.
    let all_owned = || {
        let desc = Groups::new(&log).describe("g").unwrap();
        desc.partitions.iter().all(|p| p.consumer_id.is_some())
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !all_owned() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(all_owned(), "every partition has an owner");
    for mut m in members {
        m.kill().unwrap();
        m.wait().unwrap();
    }
}

#[test]
fn sigkill_during_commits_leaves_a_consistent_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (log, topic) = topic_with(dir.path(), "t", small_segments(1, 8 << 20));
    let n = 40_000u64;
    let recs: Vec<Record> = (0..n).map(|i| Record::value(i.to_string())).collect();
    topic.writer(0).unwrap().append(&recs).unwrap();
    let mut printed: BTreeSet<u64> = BTreeSet::new();
    let mut last_committed = 0u64;
    for cycle in 0..6u64 {
        let (tx, rx) = mpsc::channel();
        // Ten records per poll: a commit every ten records, thousands of commits a second.
        let mut child = member(dir.path(), &["--poll-records", "10"], tx);
        let start = Instant::now();
        let mut this_run = Vec::new();
        while start.elapsed() < Duration::from_millis(40 + cycle * 17) {
            if let Ok(r) = rx.recv_timeout(Duration::from_millis(5)) {
                this_run.push(r.1);
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        while let Ok(r) = rx.recv_timeout(Duration::from_millis(200)) {
            this_run.push(r.1);
        }
        // A run starts exactly at the previous committed offset.
        if let Some(first) = this_run.first() {
            assert_eq!(
                *first, last_committed,
                "cycle {cycle} resumed at the committed offset"
            );
        }
        printed.extend(this_run.iter().copied());
        // A child killed before its first commit (a slow start) leaves the group without
        // offsets, and without a row for the partition.
        let desc = Groups::new(&log).describe("g").unwrap();
        let committed = (desc.partitions.first())
            .and_then(|p| p.current_offset)
            .unwrap_or(0);
        assert!(committed >= last_committed, "commits never go back");
        let max_printed = printed.iter().next_back().map_or(0, |m| m + 1);
        assert!(
            committed <= max_printed,
            "nothing is committed before it was printed"
        );
        last_committed = committed;
    }
    // Finish the run and check nothing was skipped.
    let out = eddy(dir.path())
        .args(["consume", "t", "--group", "g"])
        .output()
        .unwrap();
    assert!(out.status.success());
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        printed.insert(line.parse().unwrap());
    }
    assert_eq!(printed.len() as u64, n, "no record skipped across kills");
}

#[test]
fn reset_is_refused_while_a_member_process_lives() {
    let dir = tempfile::tempdir().unwrap();
    let (log, topic) = topic_with(dir.path(), "t", small_segments(1, 1 << 20));
    topic
        .writer(0)
        .unwrap()
        .append(&(0..10).map(record).collect::<Vec<_>>())
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let mut child = member(dir.path(), &["--follow"], tx);
    for _ in 0..10 {
        rx.recv_timeout(Duration::from_secs(20)).unwrap();
    }
    // It has read everything; wait for its commit.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Groups::new(&log).describe("g").unwrap().partitions[0].current_offset != Some(10)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let reset = |dir: &std::path::Path| {
        eddy(dir)
            .args([
                "groups",
                "reset-offsets",
                "--group",
                "g",
                "--topic",
                "t",
                "--to-earliest",
                "--execute",
            ])
            .output()
            .unwrap()
    };
    let refused = reset(dir.path());
    assert_eq!(refused.status.code(), Some(8));
    let msg = String::from_utf8_lossy(&refused.stderr);
    assert!(
        msg.contains("live member") && msg.contains("stop them first"),
        "{msg}"
    );
    let describe = eddy(dir.path())
        .args(["groups", "describe", "--group", "g"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&describe.stdout);
    assert!(
        table.contains("CURRENT-OFFSET") && table.contains("member-"),
        "{table}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let accepted = reset(dir.path());
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    let d = Groups::new(&log).describe("g").unwrap();
    assert_eq!(
        (d.partitions[0].current_offset, d.partitions[0].lag),
        (Some(0), Some(10))
    );
    assert!(d.members.is_empty(), "the killed member is gone");
}

fn committed_everywhere(log: &Log, offset: u64) -> bool {
    Groups::new(log)
        .committed("g")
        .map(|c| (0..2).all(|p| c.get(&("t".to_owned(), p)).is_some_and(|o| o.0 == offset)))
        .unwrap_or(false)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_stopped_member_process_loses_its_partitions_and_rejoins_when_continued() {
    let dir = tempfile::tempdir().unwrap();
    let (log, topic) = topic_with(dir.path(), "t", small_segments(2, 1 << 20));
    let produce = |from: u64, to: u64| {
        for p in 0..2 {
            let recs: Vec<Record> = (from..to).map(|i| Record::value(format!("{i}"))).collect();
            topic.writer(p).unwrap().append(&recs).unwrap();
        }
    };
    produce(0, 10);
    let args = ["--follow", "--max-poll-interval-ms", "1000"];
    let (tx_a, rx_a) = mpsc::channel();
    let mut a = member(dir.path(), &args, tx_a);
    wait_for("the first member's commits", || {
        committed_everywhere(&log, 10)
    });
    // Printed before committed, but read from its stdout by another thread: wait for all 20.
    for _ in 0..20 {
        rx_a.recv_timeout(Duration::from_secs(20))
            .expect("the first member's records");
    }

    // Stopped (as by a debugger or SIGSTOP), it keeps its locks but polls no more.
    signal(&a, "-STOP");
    produce(10, 15);
    let (tx_b, rx_b) = mpsc::channel();
    let mut b = member(dir.path(), &args, tx_b);
    let mut got_b = BTreeSet::new();
    while got_b.len() < 10 {
        let r = rx_b
            .recv_timeout(Duration::from_secs(20))
            .expect("the stopped member's partitions never moved");
        got_b.insert(r);
    }
    let want: BTreeSet<(u32, u64)> = (0..2).flat_map(|p| (10..15).map(move |o| (p, o))).collect();
    assert_eq!(
        got_b, want,
        "the new owner resumed at the stopped member's commits"
    );
    wait_for("the second member's commits", || {
        committed_everywhere(&log, 15)
    });

    // Continued, it learns it lost its partitions, rejoins, and the two share the work.
    signal(&a, "-CONT");
    wait_for("both members to own a partition", || {
        owners(&log, "g").len() == 2
    });
    produce(15, 20);
    let mut after: Vec<(u32, u64)> = Vec::new();
    wait_for("the last records", || {
        after.extend(rx_a.try_iter());
        after.extend(rx_b.try_iter());
        after.len() >= 10
    });
    std::thread::sleep(Duration::from_millis(300));
    after.extend(rx_a.try_iter());
    after.extend(rx_b.try_iter());
    after.sort();
    let want: Vec<(u32, u64)> = (0..2).flat_map(|p| (15..20).map(move |o| (p, o))).collect();
    assert_eq!(
        after, want,
        "each record once, nothing before the commits again"
    );
    for m in [&mut a, &mut b] {
        m.kill().unwrap();
        m.wait().unwrap();
    }
}
