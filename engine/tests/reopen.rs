//! Dropping a writer, a `Log`, a `Consumer` or an `Application` releases every lock it holds
//! before the drop returns: a second handle opened right after the drop (another `Log` of the
//! same directory in the same process, as another process would) never finds a partition locked.
//! Each case runs many times, with background compactions and interval flushes under way at the
//! moment of the drop.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use eddy::{
    AppConfig, Application, CleanupPolicy, Consumer, ConsumerConfig, Durability, Json, Log, Record,
    State, Str, TopicConfig,
};
use std::time::Duration;

/// A compacted topic with tiny segments, flushed every millisecond: every append of a few
/// records rolls a segment and starts a background compaction.
fn busy_config() -> TopicConfig {
    let mut c = small_segments(1, 2 << 10);
    c.cleanup_policy = CleanupPolicy::Compact;
    c.delete_retention_ms = 0;
    c.durability = Durability::IntervalMs(1);
    c
}

fn keyed(i: u64) -> Record {
    Record::keyed(
        format!("k{}", i % 5),
        format!("value-{i:06}-{}", "x".repeat(200)),
    )
}

#[test]
fn a_dropped_writer_and_log_release_the_partition_lock_before_the_drop_returns() {
    let dir = tempfile::tempdir().unwrap();
    Log::open(dir.path())
        .unwrap()
        .create_topic("t", busy_config())
        .unwrap();
    let mut expected_end = 0;
    for round in 0..150u64 {
        let log = Log::open(dir.path()).unwrap();
        let topic = log.topic("t").unwrap();
        let writer = topic.writer(0).unwrap();
        assert_eq!(writer.end_offset(), expected_end, "round {round}");
        for i in 0..6 {
            writer.append(&[keyed(round * 6 + i)]).unwrap();
        }
        expected_end += 6;
        drop(writer);
        drop(topic);
        drop(log);
        // Another Log of the same directory takes the lock as another process would.
        let other = Log::open(dir.path()).unwrap();
        let reopened = other.topic("t").unwrap().writer(0);
        assert!(
            reopened.is_ok(),
            "round {round}: {:?}",
            reopened.err().map(|e| e.to_string())
        );
    }
}

#[test]
fn a_dropped_application_releases_its_changelog_and_input_locks_before_the_drop_returns() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("g-readings-changelog", busy_config())
        .unwrap();
    let input = log
        .create_topic("readings", TopicConfig::with_partitions(1))
        .unwrap();
    let mut produced = 0u64;
    for round in 0..25 {
        input
            .append((produced..produced + 200).map(|i| Record::keyed(format!("s{}", i % 3), "1")))
            .unwrap();
        produced += 200;
        {
            let mut config = AppConfig::new(dir.path(), "g");
            config.commit_every = 20;
            let mut app = Application::new(config).unwrap();
            let readings = app.topic::<Str, Json<i64>>("readings").unwrap();
            let sums = app.topic::<Str, Json<i64>>("sums").unwrap();
            app.dataframe(&readings)
                .stateful_map(|v: i64, s: &mut State<'_>| {
                    let n: i64 = s.get("n").unwrap_or(0) + v;
                    s.set("n", &n);
                    n
                })
                .to_topic(&sums);
            app.run_until_idle().unwrap();
        }
        for name in ["g-readings-changelog", "sums"] {
            let writer = log.topic(name).unwrap().writer(0);
            assert!(
                writer.is_ok(),
                "round {round}, {name}: {:?}",
                writer.err().map(|e| e.to_string())
            );
        }
    }
    // Nothing was lost across the restarts: the last sums add up to every reading.
    let sums = log.topic("sums").unwrap();
    let mut last = std::collections::BTreeMap::new();
    for p in 0..sums.partitions() {
        for (_, r) in read_all(&mut sums.reader(p).unwrap(), 0) {
            last.insert(r.key.unwrap(), r.value.unwrap());
        }
    }
    let total: i64 = last
        .values()
        .map(|v| std::str::from_utf8(v).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, produced as i64);
}

#[test]
fn a_dropped_consumer_releases_its_partitions_before_the_drop_returns() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log
        .create_topic("t", TopicConfig::with_partitions(3))
        .unwrap();
    topic
        .append((0..30u64).map(|i| Record::keyed(format!("k{i}"), "v")))
        .unwrap();
    for round in 0..40 {
        let mut first = Consumer::new(&log, ConsumerConfig::new("g")).unwrap();
        first.subscribe(&["t"]).unwrap();
        first.poll(Duration::from_millis(50)).unwrap();
        assert_eq!(first.assignment().len(), 3, "round {round}");
        drop(first);
        // A member of another Log (as another process) owns every partition at once.
        let other = Log::open(dir.path()).unwrap();
        let mut second = Consumer::new(&other, ConsumerConfig::new("g")).unwrap();
        second.subscribe(&["t"]).unwrap();
        second.poll(Duration::from_millis(50)).unwrap();
        assert_eq!(second.assignment().len(), 3, "round {round}");
    }
}

#[test]
fn processes_opening_a_new_data_directory_at_once_all_succeed() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| {
                common::eddy(dir.path())
                    .args(["topics", "create", "t", "--if-not-exists"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
