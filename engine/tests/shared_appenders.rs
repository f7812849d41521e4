//! Appenders that lend their partition between calls (`PartitionWriter::share`): two of them,
//! each with its own lock file description as two processes have, take turns on one partition
//! across rolls; readers follow them with no appender holding the lock; what one did is reloaded
//! by the other before it writes (its transactions included, so a fenced producer stays fenced);
//! a partition deleted while lent is refused; a writer that does not share still blocks the rest,
//! and a lending one waits for it (10 s) before it gives up.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::small_segments;
use std::sync::Arc;

use eddy::{Isolation, Log, LogError, PartitionWriter, ProducerIdentity, Record};

fn values(log: &Log, topic: &str, isolation: Isolation) -> Vec<String> {
    let mut reader = log.topic(topic).unwrap().reader(0).unwrap();
    reader.set_isolation(isolation);
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        let fetch = reader.read(next, 1000, 1 << 20).unwrap();
        if fetch.is_empty() {
            return out;
        }
        for r in fetch.iter() {
            out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
        next = fetch.next_offset();
    }
}

/// Two handles on the data directory at `dir` (as two processes have: each its own lock file
/// description), topic `t` created, and the first handle's appender of partition 0 sharing.
fn two_handles(dir: &std::path::Path) -> (Log, Log, Arc<PartitionWriter>) {
    let (a, b) = (Log::open(dir).unwrap(), Log::open(dir).unwrap());
    a.create_topic("t", small_segments(1, 1 << 20)).unwrap();
    let wa = a.topic("t").unwrap().writer(0).unwrap();
    wa.share();
    (a, b, wa)
}

#[test]
fn two_sharing_appenders_take_turns_across_rolls_and_readers_follow_them() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, reading) = (
        Log::open(dir.path()).unwrap(),
        Log::open(dir.path()).unwrap(),
        Log::open(dir.path()).unwrap(),
    );
    a.create_topic("t", small_segments(1, 2048)).unwrap();
    let wa = a.topic("t").unwrap().writer(0).unwrap();
    wa.share();
    let wb = b.topic("t").unwrap().writer(0).unwrap();
    wb.share();
    let reader = reading.topic("t").unwrap().reader(0).unwrap();
    let mut want = Vec::new();
    for i in 0..300u64 {
        let (w, who) = if i % 3 == 0 { (&wb, "b") } else { (&wa, "a") };
        let value = format!("{who}-{i:04}-{}", "x".repeat(40));
        let appended = w.append(&[Record::value(value.clone())]).unwrap();
        assert_eq!(
            appended.base_offset, i,
            "offsets run on across both appenders"
        );
        want.push(value);
        // No appender holds the lock now, yet the reader sees every append at once.
        assert_eq!(reader.end_offset(), i + 1);
    }
    assert!(
        std::fs::read_dir(dir.path().join("topics/t/0"))
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log"))
            .count()
            > 3,
        "the appenders rolled segments while taking turns"
    );
    assert_eq!(values(&reading, "t", Isolation::ReadUncommitted), want);
    drop((wa, wb));
    // An exclusive appender opened afterwards finds the same log, recovered from nothing torn.
    let reopened = Log::open(dir.path()).unwrap();
    let w = reopened.topic("t").unwrap().writer(0).unwrap();
    assert_eq!(w.end_offset(), 300);
    assert_eq!(w.recovery_report().truncated_bytes, 0);
}

#[test]
fn an_appender_that_does_not_share_keeps_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        Log::open(dir.path()).unwrap(),
        Log::open(dir.path()).unwrap(),
    );
    a.create_topic("t", small_segments(1, 1 << 20)).unwrap();
    let wa = a.topic("t").unwrap().writer(0).unwrap();
    wa.append(&[Record::value("a")]).unwrap();
    match b.topic("t").unwrap().writer(0) {
        Err(LogError::Locked { .. }) => {}
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a second appender opened a partition held for life"),
    }
    // Once it shares, the other appender opens and takes a turn.
    wa.share();
    let wb = b.topic("t").unwrap().writer(0).unwrap();
    wb.share();
    assert_eq!(wb.append(&[Record::value("b")]).unwrap().base_offset, 1);
    assert_eq!(wa.append(&[Record::value("a2")]).unwrap().base_offset, 2);
    assert_eq!(
        values(&a, "t", Isolation::ReadUncommitted),
        ["a", "b", "a2"]
    );
}

#[test]
fn a_producer_fenced_through_one_appender_is_fenced_through_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, wa) = two_handles(dir.path());
    let old = ProducerIdentity { id: 7, epoch: 0 };
    let new = ProducerIdentity { id: 7, epoch: 1 };
    wa.append_transactional(old, &[Record::keyed("k", "zombie")])
        .unwrap();
    // The newer instance aborts the old one's transaction through its own appender...
    let wb = b.topic("t").unwrap().writer(0).unwrap();
    wb.share();
    wb.end_transaction(new, false).unwrap();
    wb.append_transactional(new, &[Record::keyed("k", "live")])
        .unwrap();
    wb.end_transaction(new, true).unwrap();
    // ...and the old appender, taking the partition back, learns of it before it writes.
    match wa.append_transactional(old, &[Record::keyed("k", "late")]) {
        Err(LogError::Fenced { .. }) => {}
        other => panic!("the old epoch was not fenced: {other:?}"),
    }
    assert_eq!(values(&a, "t", Isolation::ReadCommitted), ["live"]);
    assert_eq!(wa.last_stable_offset(), wa.end_offset());
}

#[test]
fn a_partition_deleted_while_lent_is_refused_and_the_new_topic_stays_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, b, wa) = two_handles(dir.path());
    wa.append(&[Record::value("old")]).unwrap();
    b.delete_topic("t").unwrap();
    b.create_topic("t", small_segments(1, 1 << 20)).unwrap();
    match wa.append(&[Record::value("stray")]) {
        Err(LogError::TopicNotFound { topic, .. }) => assert_eq!(topic, "t"),
        other => panic!("an append to a deleted partition was not refused: {other:?}"),
    }
    assert!(values(&b, "t", Isolation::ReadUncommitted).is_empty());
}

#[test]
fn a_lent_partition_taken_for_good_by_another_appender_is_refused_after_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, wa) = two_handles(dir.path());
    wa.append(&[Record::value("a")]).unwrap();
    // While lent, an appender that does not share takes the partition and keeps it.
    let wb = b.topic("t").unwrap().writer(0).unwrap();
    wb.append(&[Record::value("b")]).unwrap();
    let started = std::time::Instant::now();
    match wa.append(&[Record::value("refused")]) {
        Err(LogError::Locked { topic, .. }) => assert_eq!(topic, "t"),
        other => panic!("an append to a partition held elsewhere was not refused: {other:?}"),
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(9),
        "the lending appender waited for the holder before giving up"
    );
    // Once the holder closes, the lending appender resumes after what it wrote.
    drop(wb);
    assert_eq!(wa.append(&[Record::value("a2")]).unwrap().base_offset, 2);
    assert_eq!(
        values(&a, "t", Isolation::ReadUncommitted),
        ["a", "b", "a2"]
    );
}

#[test]
fn opening_a_lent_partition_waits_out_the_call_that_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, b, wa) = two_handles(dir.path());
    wa.append(&[Record::value("a")]).unwrap();
    let lock_path = dir.path().join("topics/t/0/lock");
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(&lock_path)
        .unwrap();
    // As a lending appender of another process in the middle of a long call.
    held.lock().unwrap();
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(600));
            held.unlock().unwrap();
        });
        let wb = b.topic("t").unwrap().writer(0).unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_millis(500));
        wb.share();
        assert_eq!(wb.append(&[Record::value("b")]).unwrap().base_offset, 1);
    });
}
