//! Appending, reading, seeking and rolling, against real files.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use eddy::{Log, LogError, Record, TopicConfig};

#[test]
fn appends_return_offsets_and_reads_return_them_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, topic) = topic_with(dir.path(), "t", small_segments(1, 4096));
    let w = topic.writer(0).unwrap();
    let mut expected = Vec::new();
    for chunk in 0..50u64 {
        let recs: Vec<Record> = (chunk * 20..chunk * 20 + 20).map(record).collect();
        let a = w.append(&recs).unwrap();
        assert_eq!(a.base_offset, chunk * 20);
        assert_eq!(a.count, 20);
        expected.extend(
            recs.into_iter()
                .enumerate()
                .map(|(i, r)| (chunk * 20 + i as u64, r)),
        );
    }
    assert!(
        segment_files(dir.path(), "t", 0, "log").len() > 5,
        "segments rolled by size"
    );
    let mut reader = topic.reader(0).unwrap();
    assert_eq!(reader.end_offset(), 1000);
    assert_eq!(reader.log_start_offset().unwrap(), 0);
    assert_eq!(read_all(&mut reader, 0), expected);
}

#[test]
fn seeks_by_index_match_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, topic) = topic_with(dir.path(), "t", small_segments(1, 8192));
    let w = topic.writer(0).unwrap();
    for chunk in 0..100u64 {
        let n = 1 + chunk % 7;
        let recs: Vec<Record> = (0..n).map(|i| record(chunk * 10 + i)).collect();
        w.append(&recs).unwrap();
    }
    let end = w.end_offset();
    let mut scan_reader = topic.reader(0).unwrap();
    let all = read_all(&mut scan_reader, 0);
    for from in (0..end).step_by(3) {
        let mut fresh = topic.reader(0).unwrap();
        let got = fresh.read(from, 5, 1 << 20).unwrap();
        let want: Vec<_> = all.iter().filter(|(o, _)| *o >= from).take(5).collect();
        let got: Vec<_> = got.iter().map(|r| (r.offset, r.to_record())).collect();
        assert_eq!(got.len(), want.len(), "from {from}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g, w, "from {from}");
        }
    }
}

#[test]
fn limits_on_records_and_bytes_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, topic) = topic_with(dir.path(), "t", small_segments(1, 1 << 20));
    let w = topic.writer(0).unwrap();
    for _ in 0..10 {
        w.append(&(0..100).map(record).collect::<Vec<_>>()).unwrap();
    }
    let mut r = topic.reader(0).unwrap();
    let f = r.read(0, 7, 1 << 20).unwrap();
    assert_eq!(f.len(), 7);
    assert_eq!(f.next_offset(), 7);
    let f = r.read(7, 1000, 1).unwrap();
    assert!(
        !f.is_empty(),
        "at least one batch even when max_bytes is tiny"
    );
    assert_eq!(f.iter().next().unwrap().offset, 7);
    assert!(f.len() <= 93, "stays within the first batch");
}

#[test]
fn out_of_range_offsets_are_errors_naming_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, topic) = topic_with(dir.path(), "t", small_segments(1, 4096));
    topic
        .writer(0)
        .unwrap()
        .append(&[record(0), record(1)])
        .unwrap();
    let mut r = topic.reader(0).unwrap();
    assert!(r.read(2, 10, 1000).unwrap().is_empty());
    match r.read(3, 10, 1000) {
        Err(LogError::OffsetOutOfRange {
            offset: 3,
            log_start: 0,
            end: 2,
            topic,
            partition: 0,
        }) => {
            assert_eq!(topic, "t")
        }
        other => panic!(
            "expected OffsetOutOfRange, got {:?}",
            other.map(|f| f.len())
        ),
    }
}

#[test]
fn timestamp_lookup_matches_a_linear_scan() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, topic) = topic_with(dir.path(), "t", small_segments(1, 4096));
    let w = topic.writer(0).unwrap();
    // Timestamps mostly rising, with some going back.
    for i in 0..600u64 {
        let ts = 10_000 + (i as i64) * 5 - if i % 11 == 0 { 300 } else { 0 };
        w.append(&[Record::keyed("k", format!("v{i}")).at(ts)])
            .unwrap();
    }
    let mut r = topic.reader(0).unwrap();
    let all = read_all(&mut r, 0);
    for target in (9_000..13_500).step_by(7) {
        let want = all
            .iter()
            .find(|(_, rec)| rec.timestamp.unwrap() >= target)
            .map(|(o, _)| *o);
        assert_eq!(r.offset_for_timestamp(target).unwrap(), want, "ts {target}");
    }
}

#[test]
fn segments_roll_by_age_of_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_segments(1, 1 << 20);
    config.segment_ms = Some(1000);
    let (_log, topic) = topic_with(dir.path(), "t", config);
    let w = topic.writer(0).unwrap();
    for i in 0..10 {
        w.append(&[Record::value("x").at(i * 600)]).unwrap();
    }
    // 0,600 | 1200,1800 | 2400,3000 | ... : a new segment when a batch is > 1 s newer than the first.
    assert_eq!(segment_files(dir.path(), "t", 0, "log").len(), 5);
}

#[test]
fn keys_go_to_kafkas_partition_and_keyless_records_spread() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, topic) = topic_with(dir.path(), "t", small_segments(6, 1 << 20));
    let placed = topic
        .append((0..60).map(|i| Record::keyed(format!("k{i}"), "v")))
        .unwrap();
    for (i, (p, _)) in placed.iter().enumerate() {
        assert_eq!(*p, eddy::partition_for_key(format!("k{i}").as_bytes(), 6));
    }
    let mut used = std::collections::HashSet::new();
    for _ in 0..6 {
        used.insert(topic.append([Record::value("x")]).unwrap()[0].0);
    }
    assert_eq!(used.len(), 6, "keyless appends rotate over partitions");
}

#[test]
fn topic_names_are_checked_and_cannot_escape_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    for bad in [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "a b",
        "naïve",
        "x\0",
        &"a".repeat(250),
    ] {
        assert!(
            matches!(
                log.create_topic(bad, TopicConfig::default()),
                Err(LogError::InvalidName { .. })
            ),
            "{bad:?} accepted"
        );
        assert!(matches!(log.topic(bad), Err(LogError::InvalidName { .. })));
    }
    for good in ["a", "A.b_c-1", ".hidden", &"a".repeat(249)] {
        log.create_topic(good, TopicConfig::default()).unwrap();
    }
    assert_eq!(log.list_topics().unwrap().len(), 4);
    let mut entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        ["eddy-format", "topics"],
        "nothing escaped the data dir"
    );
}

#[test]
fn create_describe_delete_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let t = log.create_topic("t", small_segments(3, 4096)).unwrap();
    assert!(matches!(
        log.create_topic("t", TopicConfig::default()),
        Err(LogError::TopicExists(_))
    ));
    assert!(matches!(
        t.writer(3),
        Err(LogError::PartitionNotFound { partitions: 3, .. })
    ));
    t.writer(1)
        .unwrap()
        .append(&[record(1), record(2)])
        .unwrap();
    let info = t.describe().unwrap();
    assert_eq!(info[1].end_offset, 2);
    assert_eq!(info[0].end_offset, 0);
    // Reopened from disk, the config is the same.
    assert_eq!(
        Log::open(dir.path()).unwrap().topic("t").unwrap().config(),
        t.config()
    );
    // An appender holds the lock: delete refused, then allowed once it is gone.
    let held = t.writer(1).unwrap();
    assert!(matches!(
        log.delete_topic("t"),
        Err(LogError::Locked { partition: 1, .. })
    ));
    drop(held);
    log.delete_topic("t").unwrap();
    assert!(matches!(
        log.topic("t"),
        Err(LogError::TopicNotFound { .. })
    ));
    assert!(log.list_topics().unwrap().is_empty());
}

#[test]
fn a_second_appender_is_refused_while_the_first_lives() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, topic) = topic_with(dir.path(), "t", small_segments(1, 4096));
    let first = topic.writer(0).unwrap();
    let other_log = Log::open(dir.path()).unwrap();
    let other = other_log.topic("t").unwrap();
    assert!(matches!(other.writer(0), Err(LogError::Locked { .. })));
    assert!(
        std::sync::Arc::ptr_eq(&first, &topic.writer(0).unwrap()),
        "same process shares"
    );
    drop(first);
    other.writer(0).unwrap().append(&[record(0)]).unwrap();
}

#[test]
fn concurrent_always_appenders_share_fsyncs_and_get_distinct_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_segments(1, 1 << 16);
    config.durability = eddy::Durability::Always;
    let (_log, topic) = topic_with(dir.path(), "t", config);
    let w = topic.writer(0).unwrap();
    let offsets: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                s.spawn(move || {
                    (0..200u64)
                        .map(|i| w.append(&[record(t * 1000 + i)]).unwrap().base_offset)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut sorted = offsets.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..800).collect::<Vec<_>>());
    assert_eq!(
        w.durable_offset(),
        800,
        "every acknowledged append is durable"
    );
    assert!(
        w.fsync_count() < 800,
        "appenders shared fsyncs: {} for 800 appends",
        w.fsync_count()
    );
    assert_eq!(read_all(&mut topic.reader(0).unwrap(), 0).len(), 800);
}

#[test]
fn readers_never_see_partial_batches_while_appending() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, topic) = topic_with(dir.path(), "t", small_segments(1, 64 << 10));
    let w = topic.writer(0).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            for chunk in 0..400u64 {
                let recs: Vec<Record> = (chunk * 10..chunk * 10 + 10).map(record).collect();
                w.append(&recs).unwrap();
            }
        });
        let mut reader = topic.reader(0).unwrap();
        let mut next = 0u64;
        while next < 4000 {
            let fetch = reader.read(next, 500, 8192).unwrap();
            for r in fetch.iter() {
                assert_eq!(r.offset, next, "offsets in order, none skipped");
                assert_eq!(r.to_record(), record(next));
                next += 1;
            }
        }
    });
}

#[test]
fn interval_durability_syncs_in_the_background_and_none_never_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let mut interval = small_segments(1, 1 << 20);
    interval.durability = eddy::Durability::IntervalMs(20);
    let (log, topic) = topic_with(dir.path(), "interval", interval);
    let w = topic.writer(0).unwrap();
    w.append(&[record(0), record(1)]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while w.durable_offset() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        w.durable_offset(),
        2,
        "the flusher synced an idle partition"
    );
    let none = log
        .create_topic("none", small_segments(1, 1 << 20))
        .unwrap();
    let wn = none.writer(0).unwrap();
    wn.append(&[record(0)]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!((wn.durable_offset(), wn.fsync_count()), (0, 0));
    wn.flush().unwrap();
    assert_eq!(wn.durable_offset(), 1, "an explicit flush syncs");
}

#[test]
fn a_read_only_log_creates_nothing_and_refuses_changes() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("absent");
    let log = Log::open_read_only(&dir);
    assert!(log.list_topics().unwrap().is_empty());
    match log.topic("t") {
        Err(LogError::TopicNotFound {
            topic,
            dir: searched,
        }) => {
            assert_eq!((topic.as_str(), searched.as_path()), ("t", dir.as_path()))
        }
        other => panic!("{:?}", other.err()),
    }
    let refused = log.create_topic("t", TopicConfig::with_partitions(1));
    assert!(matches!(refused, Err(LogError::ReadOnly { .. })));
    assert!(!dir.exists());
    // On an existing directory it reads, and still refuses appends and deletes.
    let writable = Log::open(&dir).unwrap();
    writable
        .create_topic("t", TopicConfig::with_partitions(1))
        .unwrap()
        .append([Record::keyed("k", "v")])
        .unwrap();
    let topic = log.topic("t").unwrap();
    assert_eq!(topic.reader(0).unwrap().end_offset(), 1);
    assert!(matches!(topic.writer(0), Err(LogError::ReadOnly { .. })));
    assert!(matches!(
        log.delete_topic("t"),
        Err(LogError::ReadOnly { .. })
    ));
    assert_eq!(writable.list_topics().unwrap(), ["t"]);
}

#[test]
fn a_fetch_made_from_records_reads_as_the_same_records_read_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, topic) = topic_with(dir.path(), "t", TopicConfig::default());
    let mut records: Vec<Record> = (0..40).map(record).collect();
    records[3] = Record::keyed("gone", Vec::<u8>::new());
    records[3].value = None; // a tombstone
    records[5].key = None;
    records[7] = records[7].clone().with_header("empty", Vec::<u8>::new());
    topic.writer(0).unwrap().append(&records).unwrap();
    let from_log = read_all(&mut topic.reader(0).unwrap(), 0);

    let fetch = eddy::Fetch::from_records(from_log.clone(), 40);
    assert_eq!(fetch.len(), 40);
    assert_eq!(fetch.next_offset(), 40);
    let rebuilt: Vec<(u64, Record)> = fetch.iter().map(|r| (r.offset, r.to_record())).collect();
    assert_eq!(rebuilt, from_log);
    assert_eq!(fetch.get(7).unwrap().header("empty"), Some(&b""[..]));
    assert_eq!(fetch.get(3).unwrap().value, None);
    assert_eq!(fetch.get(5).unwrap().key, None);

    let untimed = eddy::Fetch::from_records([(9, Record::keyed("k", "v"))], 10);
    assert_eq!(untimed.get(0).unwrap().timestamp, -1);
}
