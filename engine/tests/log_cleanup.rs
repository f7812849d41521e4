//! Retention and compaction outcomes on real segments.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use eddy::{CleanupPolicy, LogError, Record};
use std::collections::HashMap;

#[test]
fn retention_by_size_deletes_oldest_sealed_segments_and_moves_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_segments(1, 4096);
    config.retention_bytes = Some(12_000);
    let (_log, topic) = topic_with(dir.path(), "t", config);
    let w = topic.writer(0).unwrap();
    for i in 0..200u64 {
        w.append(&(i * 5..i * 5 + 5).map(record).collect::<Vec<_>>())
            .unwrap();
    }
    let segs = segment_files(dir.path(), "t", 0, "log");
    let total: u64 = segs
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let oldest = std::fs::metadata(&segs[0]).unwrap().len();
    assert!(total >= 12_000, "never below the limit: {total}");
    assert!(
        total - oldest < 12_000,
        "deleting one more would go below: {total} - {oldest}"
    );
    let mut r = topic.reader(0).unwrap();
    let start = r.log_start_offset().unwrap();
    assert!(start > 0);
    let first_name = segs[0]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert_eq!(start, first_name);
    assert!(
        matches!(r.read(0, 10, 1000), Err(LogError::OffsetOutOfRange { log_start, .. }) if log_start == start)
    );
    let kept = read_all(&mut r, start);
    assert_eq!(kept.len() as u64, 1000 - start);
    assert_eq!(kept[0], (start, record(start)));
}

#[test]
fn retention_by_age_uses_the_newest_timestamp_of_each_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_segments(1, 2048);
    config.retention_ms = Some(60_000);
    let (_log, topic) = topic_with(dir.path(), "t", config);
    let w = topic.writer(0).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // 100 old records (two hours ago), then 100 fresh ones.
    for i in 0..100u64 {
        w.append(&[record(i).at(now - 7_200_000)]).unwrap();
    }
    for i in 100..200u64 {
        w.append(&[record(i).at(now)]).unwrap();
    }
    let mut r = topic.reader(0).unwrap();
    let start = r.log_start_offset().unwrap();
    let kept = read_all(&mut r, start);
    assert!(kept.iter().all(|(o, _)| *o >= start));
    assert!(start > 50, "old segments deleted (start {start})");
    assert!(start <= 100, "no fresh record deleted (start {start})");
    assert_eq!(kept.last().unwrap().0, 199);
}

fn compacted(segment_bytes: u64, delete_retention_ms: u64) -> eddy::TopicConfig {
    let mut c = small_segments(1, segment_bytes);
    c.cleanup_policy = CleanupPolicy::Compact;
    c.delete_retention_ms = delete_retention_ms;
    c
}

/// The newest record of each key, by a plain scan.
fn newest_by_key(records: &[(u64, Record)]) -> HashMap<Vec<u8>, (u64, Record)> {
    let mut m = HashMap::new();
    for (o, r) in records {
        m.insert(r.key.clone().unwrap(), (*o, r.clone()));
    }
    m
}

#[test]
fn compaction_keeps_the_newest_record_per_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, topic) = topic_with(dir.path(), "t", compacted(4096, 3_600_000));
    let w = topic.writer(0).unwrap();
    let mut written = Vec::new();
    for i in 0..1500u64 {
        let r = Record::keyed(format!("k{}", i % 40), format!("v{i}")).at(i as i64);
        written.push((w.append(std::slice::from_ref(&r)).unwrap().base_offset, r));
    }
    w.roll_now().unwrap();
    let before = read_all(&mut topic.reader(0).unwrap(), 0);
    // A roll also starts a background pass; whichever runs first does the work.
    w.compact().unwrap();
    let size = |topic: &str| -> u64 {
        segment_files(dir.path(), topic, 0, "log")
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum()
    };
    let (_plain_log, plain) = topic_with(dir.path(), "plain", small_segments(1, 4096));
    plain
        .writer(0)
        .unwrap()
        .append(&written.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>())
        .unwrap();
    assert!(
        size("t") * 5 < size("plain"),
        "compacted {} vs plain {}",
        size("t"),
        size("plain")
    );
    let after = read_all(&mut topic.reader(0).unwrap(), 0);
    let want = newest_by_key(&before);
    assert_eq!(after.len(), 40);
    for (o, r) in &after {
        assert_eq!(
            want[r.key.as_ref().unwrap()],
            (*o, r.clone()),
            "offset and record kept"
        );
    }
    // Offsets and log start unchanged, new appends continue after the old end.
    let mut r = topic.reader(0).unwrap();
    assert_eq!(r.log_start_offset().unwrap(), 0);
    assert_eq!(
        w.append(&[Record::keyed("k0", "again")])
            .unwrap()
            .base_offset,
        1500
    );
    // Seeking into a compacted gap lands on the next surviving record.
    let f = r.read(3, 1, 1 << 20).unwrap();
    assert_eq!(f.iter().next().unwrap().offset, after[0].0);
    // Reopening validates the rewritten segments and their indexes.
    drop((w, topic, _log));
    let topic = eddy::Log::open(dir.path()).unwrap().topic("t").unwrap();
    assert!(topic
        .writer(0)
        .unwrap()
        .recovery_report()
        .rebuilt_indexes
        .is_empty());
    assert_eq!(read_all(&mut topic.reader(0).unwrap(), 0)[..40], after[..]);
}

#[test]
fn tombstones_delete_keys_and_expire_after_the_delete_retention() {
    for (retention, tombstones_left) in [(3_600_000u64, 10usize), (0, 0)] {
        let dir = tempfile::tempdir().unwrap();
        let (_log, topic) = topic_with(dir.path(), "t", compacted(2048, retention));
        let w = topic.writer(0).unwrap();
        for i in 0..300u64 {
            w.append(&[Record::keyed(format!("k{}", i % 30), format!("v{i}"))])
                .unwrap();
        }
        for k in 0..10 {
            w.append(&[Record {
                key: Some(format!("k{k}").into_bytes()),
                ..Record::default()
            }])
            .unwrap();
        }
        w.roll_now().unwrap();
        w.compact().unwrap();
        let after = read_all(&mut topic.reader(0).unwrap(), 0);
        let tombstones = after.iter().filter(|(_, r)| r.value.is_none()).count();
        assert_eq!(tombstones, tombstones_left, "retention {retention}");
        let live: Vec<_> = after.iter().filter(|(_, r)| r.value.is_some()).collect();
        assert_eq!(live.len(), 20, "keys k10..k29 keep their last value");
        assert!(live
            .iter()
            .all(|(_, r)| !r.key.as_ref().unwrap().starts_with(b"k0")));
    }
}

#[test]
fn compaction_runs_while_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, topic) = topic_with(dir.path(), "t", compacted(4096, 3_600_000));
    let w = topic.writer(0).unwrap();
    std::thread::scope(|s| {
        let appender = s.spawn(|| {
            for i in 0..3000u64 {
                w.append(&[Record::keyed(format!("k{}", i % 25), format!("v{i}"))])
                    .unwrap();
            }
        });
        while !appender.is_finished() {
            w.compact().unwrap();
        }
    });
    w.roll_now().unwrap();
    w.compact().unwrap();
    let after = read_all(&mut topic.reader(0).unwrap(), 0);
    let mut values: Vec<_> = after
        .iter()
        .map(|(_, r)| r.value.clone().unwrap())
        .collect();
    values.sort();
    let mut want: Vec<_> = (2975..3000u64)
        .map(|i| format!("v{i}").into_bytes())
        .collect();
    want.sort();
    assert_eq!(values, want);
}

#[test]
fn compacted_topics_refuse_keyless_records() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, topic) = topic_with(dir.path(), "t", compacted(4096, 0));
    let err = topic
        .writer(0)
        .unwrap()
        .append(&[Record::keyed("k", "v"), Record::value("x")]);
    match err {
        Err(LogError::AppendRefused { reason, .. }) => assert!(reason.contains("record 1")),
        other => panic!("expected refusal, got {other:?}"),
    }
    assert_eq!(
        topic.reader(0).unwrap().end_offset(),
        0,
        "nothing of the refused call was written"
    );
}
