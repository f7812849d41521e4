//! The stream runtime in one process with real RocksDB stores and real files: dataframe steps,
//! formats, state across restarts, stores rebuilt from changelogs, error policies, re-partitioning
//! and resets.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use eddy::{
    AppConfig, Application, Bincode, Bytes, ErrorPolicy, Groups, Json, Log, Record, ResetScope,
    ResetTarget, State, Str, StreamError, TopicConfig,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Reading {
    sensor: String,
    value: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Count {
    count: u64,
    sum: i64,
}

fn config(dir: &Path, group: &str) -> AppConfig {
    let mut c = AppConfig::new(dir, group);
    c.commit_interval = std::time::Duration::from_millis(50);
    c
}

fn produce_readings(dir: &Path, topic: &str, partitions: u32, from: i64, to: i64) {
    let log = Log::open(dir).unwrap();
    let t = log
        .topic_or_create(topic, TopicConfig::with_partitions(partitions))
        .unwrap();
    let records = (from..to).map(|i| {
        let r = Reading {
            sensor: format!("s{}", i % 7),
            value: i,
        };
        Record::keyed(r.sensor.clone(), serde_json::to_vec(&r).unwrap()).at(1_000 + i)
    });
    t.append(records).unwrap();
}

/// Every record of every partition of `topic` as (partition, key, value JSON, timestamp).
fn read_topic(dir: &Path, topic: &str) -> Vec<(u32, String, serde_json::Value, i64)> {
    let t = Log::open(dir).unwrap().topic(topic).unwrap();
    let mut out = Vec::new();
    for p in 0..t.partitions() {
        for (_, r) in read_all(&mut t.reader(p).unwrap(), 0) {
            let key = String::from_utf8(r.key.unwrap_or_default()).unwrap();
            let value =
                serde_json::from_slice(&r.value.unwrap()).unwrap_or(serde_json::Value::Null);
            out.push((p, key, value, r.timestamp.unwrap()));
        }
    }
    out
}

/// The running count/sum app: per sensor, outputs its state after each reading.
fn counting_app(dir: &Path, group: &str) -> Application {
    counting_app_with(config(dir, group))
}

fn counting_app_with(config: AppConfig) -> Application {
    let app = Application::new(config).unwrap();
    let input = app.topic::<Str, Json<Reading>>("readings").unwrap();
    let output = app.topic::<Str, Json<Count>>("counts").unwrap();
    app.dataframe(&input)
        .stateful_map(|r: Reading, state: &mut State<'_>| {
            let mut c: Count = state.get("c").unwrap_or(Count { count: 0, sum: 0 });
            c.count += 1;
            c.sum += r.value;
            state.set("c", &c);
            c
        })
        .to_topic(&output);
    app
}

/// Final count/sum per sensor expected from readings `0..n`.
fn expected_counts(n: i64) -> BTreeMap<String, Count> {
    let mut m: BTreeMap<String, Count> = BTreeMap::new();
    for i in 0..n {
        let c = m
            .entry(format!("s{}", i % 7))
            .or_insert(Count { count: 0, sum: 0 });
        c.count += 1;
        c.sum += i;
    }
    m
}

fn last_counts(dir: &Path) -> BTreeMap<String, Count> {
    read_topic(dir, "counts")
        .into_iter()
        .map(|(_, k, v, _)| (k, serde_json::from_value(v).unwrap()))
        .collect()
}

#[test]
fn stateless_map_filter_and_several_outputs_keep_keys_timestamps_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    produce_readings(dir.path(), "readings", 2, 0, 1000);
    let app = Application::new(config(dir.path(), "g")).unwrap();
    let input = app.topic::<Str, Json<Reading>>("readings").unwrap();
    let evens = app.topic::<Str, Json<i64>>("evens").unwrap();
    let all = app.topic::<Str, Bincode<Reading>>("copy").unwrap();
    let sdf = app.dataframe(&input);
    sdf.to_topic(&all);
    sdf.filter(|r| r.value % 2 == 0)
        .map_message(|m| m.set_header("seen", "yes"))
        .map(|r| r.value * 10)
        .to_topic(&evens);
    let mut app = app;
    app.run_until_idle().unwrap();
    let out = read_topic(dir.path(), "evens");
    assert_eq!(out.len(), 500);
    for (_, key, value, ts) in &out {
        let v = value.as_i64().unwrap();
        assert_eq!(v % 20, 0);
        assert_eq!(key, &format!("s{}", (v / 10) % 7), "key kept");
        assert_eq!(*ts, 1_000 + v / 10, "timestamp kept");
    }
    let t = app.log().topic("evens").unwrap();
    let first = read_all(&mut t.reader(0).unwrap(), 0);
    assert!(first[0].1.headers.iter().any(|h| h.key == "seen"));
    let copy = app.log().topic("copy").unwrap();
    let copied = read_all(&mut copy.reader(0).unwrap(), 0);
    assert!(!copied.is_empty());
    let decoded: Reading = bincode::serde::decode_from_slice(
        copied[0].1.value.as_deref().unwrap(),
        bincode::config::standard(),
    )
    .unwrap()
    .0;
    assert!(decoded.value >= 0);
    let m = app.metrics();
    assert_eq!(m.records_in, 1000);
    assert_eq!(m.records_out, 1500);
    let described = Groups::new(app.log()).describe("g").unwrap();
    assert!(
        described.partitions.iter().all(|p| p.lag == Some(0)),
        "all committed"
    );
}

#[test]
fn running_counts_continue_across_restarts_and_rebuild_from_the_changelog() {
    let dir = tempfile::tempdir().unwrap();
    produce_readings(dir.path(), "readings", 3, 0, 3000);
    counting_app(dir.path(), "g").run_until_idle().unwrap();
    assert_eq!(last_counts(dir.path()), expected_counts(3000));

    // Restart with more input: state comes back from RocksDB.
    produce_readings(dir.path(), "readings", 3, 3000, 4000);
    let mut app = counting_app(dir.path(), "g");
    app.run_until_idle().unwrap();
    assert_eq!(last_counts(dir.path()), expected_counts(4000));
    assert_eq!(app.metrics().stores_rebuilt, 0);
    assert_eq!(app.metrics().records_in, 1000, "only new input processed");

    // Delete the state directory: rebuilt from the changelog.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    produce_readings(dir.path(), "readings", 3, 4000, 5000);
    let mut app = counting_app(dir.path(), "g");
    app.run_until_idle().unwrap();
    assert_eq!(last_counts(dir.path()), expected_counts(5000));
    assert!(app.metrics().restored_entries > 0);

    // Corrupt every file of one store: rebuilt from the changelog.
    let store = dir.path().join("state/g/readings/0");
    for entry in std::fs::read_dir(&store).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::write(&path, b"garbage, not rocksdb").unwrap();
        }
    }
    produce_readings(dir.path(), "readings", 3, 5000, 6000);
    let mut app = counting_app(dir.path(), "g");
    app.run_until_idle().unwrap();
    assert_eq!(last_counts(dir.path()), expected_counts(6000));
    assert_eq!(app.metrics().stores_rebuilt, 1);
    // The damaged store was moved aside, not deleted.
    let aside: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path().join("state/g/readings"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("/0.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let kept = std::fs::read_dir(&aside[0]).unwrap().count();
    assert!(kept > 0, "the damaged files are kept");
}

#[test]
fn metrics_report_the_lag_of_each_owned_partition_at_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    produce_readings(dir.path(), "readings", 3, 0, 3000);
    let mut config = config(dir.path(), "g");
    config.max_poll_records = 100;
    let mut app = counting_app_with(config);
    app.run_records(500).unwrap();
    let metrics = app.metrics();
    let committed = Groups::new(&Log::open(dir.path()).unwrap())
        .committed("g")
        .unwrap();
    let positions: u64 = committed.values().map(|(offset, _)| offset).sum();
    let keys: Vec<_> = metrics.lag.keys().cloned().collect();
    let want: Vec<_> = (0..3).map(|p| ("readings".to_owned(), p)).collect();
    assert_eq!(keys, want);
    assert_eq!(
        metrics.lag.values().sum::<u64>(),
        3000 - positions,
        "{:?}",
        metrics.lag
    );
    assert!((500..3000).contains(&positions), "{positions}");
    app.run_until_idle().unwrap();
    assert!(
        app.metrics().lag.values().all(|l| *l == 0),
        "{:?}",
        app.metrics().lag
    );
}

#[test]
fn a_store_that_cannot_be_opened_is_an_error_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    produce_readings(dir.path(), "readings", 1, 0, 1000);
    counting_app(dir.path(), "g").run_until_idle().unwrap();
    let store = dir.path().join("state/g/readings/0");
    let files = |p: &Path| std::fs::read_dir(p).unwrap().count();
    let before = files(&store);
    // Another holder of the store (RocksDB's own lock), as a second process would be.
    let holder = rocksdb::DB::open_default(&store).unwrap();
    produce_readings(dir.path(), "readings", 1, 1000, 1100);
    let err = counting_app(dir.path(), "g")
        .run_until_idle()
        .unwrap_err()
        .to_string();
    assert!(err.contains(&*store.to_string_lossy()), "{err}");
    assert!(files(&store) >= before, "nothing of the store was removed");
    drop(holder);
    // Released, it opens as it was: no rebuild, only the new input processed.
    let mut app = counting_app(dir.path(), "g");
    app.run_until_idle().unwrap();
    assert_eq!(app.metrics().stores_rebuilt, 0);
    assert_eq!(app.metrics().records_in, 100);
    assert_eq!(last_counts(dir.path()), expected_counts(1100));
}

#[test]
fn compacted_changelog_keeps_restores_short() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    // A small-segment changelog, created before the app so that it keeps this config.
    let mut cl = small_segments(1, 16 << 10);
    cl.cleanup_policy = eddy::CleanupPolicy::Compact;
    cl.delete_retention_ms = 0;
    log.create_topic("g-readings-changelog", cl).unwrap();
    let mut app_config = config(dir.path(), "g");
    app_config.commit_every = 50; // many checkpoints: many changelog entries per key
    app_config.max_poll_records = 50;
    produce_readings(dir.path(), "readings", 1, 0, 20_000);
    {
        let app = Application::new(app_config.clone()).unwrap();
        let input = app.topic::<Str, Json<Reading>>("readings").unwrap();
        app.dataframe(&input)
            .stateful_map(|r: Reading, s: &mut State<'_>| {
                let n: i64 = s.get("n").unwrap_or(0) + r.value;
                s.set("n", &n);
                n
            });
        let mut app = app;
        app.run_until_idle().unwrap();
    }
    let changelog = log.topic("g-readings-changelog").unwrap();
    let writer = changelog.writer(0).unwrap();
    let written = writer.end_offset();
    assert!(written > 2_000, "{written} changelog entries");
    writer.roll_now().unwrap();
    writer.compact().unwrap();
    drop(writer);
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let app = Application::new(app_config).unwrap();
    let input = app.topic::<Str, Json<Reading>>("readings").unwrap();
    let output = app.topic::<Str, Json<i64>>("sums").unwrap();
    app.dataframe(&input)
        .stateful_map(|r: Reading, s: &mut State<'_>| {
            let n: i64 = s.get("n").unwrap_or(0) + r.value;
            s.set("n", &n);
            n
        })
        .to_topic(&output);
    produce_readings(dir.path(), "readings", 1, 20_000, 20_007);
    let mut app = app;
    app.run_until_idle().unwrap();
    let restored = app.metrics().restored_entries;
    assert!(
        restored <= 7 + 1 + 1,
        "restore read {restored} entries of {written}: one per key and one marker"
    );
    let sums: BTreeMap<String, i64> = read_topic(dir.path(), "sums")
        .into_iter()
        .map(|(_, k, v, _)| (k, v.as_i64().unwrap()))
        .collect();
    let expected: BTreeMap<String, i64> = expected_counts(20_007)
        .into_iter()
        .map(|(k, c)| (k, c.sum))
        .collect();
    assert_eq!(sums, expected, "state after restore is exact");
}

fn bad_input(dir: &Path) {
    let log = Log::open(dir).unwrap();
    let t = log.topic_or_create("in", TopicConfig::default()).unwrap();
    let ok = |v: i64| Record::keyed("k", serde_json::to_vec(&v).unwrap());
    t.append([ok(1), Record::keyed("k", "{not json"), ok(2), ok(13), ok(3)])
        .unwrap();
}

/// Doubles values; panics on 13.
fn policy_app(dir: &Path, policy: ErrorPolicy) -> Application {
    let mut c = config(dir, "g");
    c.on_error = policy;
    let app = Application::new(c).unwrap();
    let input = app.topic::<Str, Json<i64>>("in").unwrap();
    let out = app.topic::<Str, Json<i64>>("out").unwrap();
    app.dataframe(&input)
        .map(|v| {
            assert!(v != 13, "unlucky number");
            v * 2
        })
        .to_topic(&out);
    app
}

#[test]
fn fail_policy_stops_with_topic_partition_offset_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    bad_input(dir.path());
    let err = policy_app(dir.path(), ErrorPolicy::Fail)
        .run_until_idle()
        .unwrap_err();
    match &err {
        StreamError::Record {
            topic,
            partition,
            offset,
            kind,
            ..
        } => {
            assert_eq!(
                (topic.as_str(), *partition, *offset, *kind),
                ("in", 0, 1, "deserialize")
            );
        }
        other => panic!("unexpected {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("topic in partition 0 offset 1") && text.contains("JSON"),
        "{text}"
    );
    // Nothing past the failure was committed: a restart meets the record again.
    let d = Groups::new(&Log::open(dir.path()).unwrap()).describe("g");
    let committed = d
        .ok()
        .and_then(|d| d.partitions.first().and_then(|p| p.current_offset));
    assert!(committed.unwrap_or(0) <= 1);
    let err = policy_app(dir.path(), ErrorPolicy::Fail)
        .run_until_idle()
        .unwrap_err();
    assert!(err.to_string().contains("offset 1"));
}

#[test]
fn skip_policy_counts_and_goes_on_including_panics() {
    let dir = tempfile::tempdir().unwrap();
    bad_input(dir.path());
    let mut app = policy_app(dir.path(), ErrorPolicy::Skip);
    app.run_until_idle().unwrap();
    let values: Vec<i64> = read_topic(dir.path(), "out")
        .into_iter()
        .map(|(_, _, v, _)| v.as_i64().unwrap())
        .collect();
    assert_eq!(values, vec![2, 4, 6]);
    let m = app.metrics();
    assert_eq!((m.deserialize_errors, m.panics, m.skipped), (1, 1, 2));
    assert_eq!(m.records_in, 5);
}

#[test]
fn dead_letter_policy_keeps_the_record_and_the_error() {
    let dir = tempfile::tempdir().unwrap();
    bad_input(dir.path());
    let mut app = policy_app(dir.path(), ErrorPolicy::DeadLetter("dlq".into()));
    app.run_until_idle().unwrap();
    assert_eq!(app.metrics().dead_lettered, 2);
    let t = app.log().topic("dlq").unwrap();
    let dead = read_all(&mut t.reader(0).unwrap(), 0);
    assert_eq!(dead.len(), 2);
    let header = |r: &Record, k: &str| {
        let h = r.headers.iter().find(|h| h.key == k).unwrap();
        String::from_utf8(h.value.clone().unwrap()).unwrap()
    };
    assert_eq!(dead[0].1.value.as_deref(), Some(&b"{not json"[..]));
    assert_eq!(header(&dead[0].1, "eddy.error.kind"), "deserialize");
    assert_eq!(header(&dead[0].1, "eddy.source.offset"), "1");
    assert_eq!(dead[1].1.value.as_deref(), Some(&b"13"[..]));
    assert!(header(&dead[1].1, "eddy.error").contains("unlucky number"));
    assert_eq!(header(&dead[1].1, "eddy.error.kind"), "panic");
}

#[test]
fn a_topic_policy_overrides_the_application_policy_and_function_errors_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    bad_input(dir.path());
    let app = Application::new(config(dir.path(), "g")).unwrap(); // app policy: fail
    let input = app
        .topic::<Str, Json<i64>>("in")
        .unwrap()
        .on_error(ErrorPolicy::Skip);
    let out = app.topic::<Str, Json<i64>>("out").unwrap();
    app.dataframe(&input)
        .try_map(|v| if v == 2 { Err("two is refused") } else { Ok(v) })
        .to_topic(&out);
    let mut app = app;
    app.run_until_idle().unwrap();
    let m = app.metrics();
    assert_eq!(
        (m.function_errors, m.deserialize_errors, m.skipped),
        (1, 1, 2)
    );
    assert_eq!(read_topic(dir.path(), "out").len(), 3, "1, 13 and 3 pass");
}

#[test]
fn set_key_repartitions_and_state_follows_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let t = log
        .create_topic("orders", TopicConfig::with_partitions(4))
        .unwrap();
    // Keyed by order id; re-keyed by customer.
    let records = (0..2000u64).map(|i| {
        let v =
            serde_json::json!({"order": i, "customer": format!("c{}", i % 11), "amount": i % 5});
        Record::keyed(format!("o{i}"), serde_json::to_vec(&v).unwrap())
    });
    t.append(records).unwrap();
    let app = Application::new(config(dir.path(), "g")).unwrap();
    let input = app.topic::<Str, Json<serde_json::Value>>("orders").unwrap();
    let out = app.topic::<Json<String>, Json<u64>>("totals").unwrap();
    app.dataframe(&input)
        .set_key(|v| v["customer"].as_str().unwrap_or_default().to_owned())
        .stateful_map(|v, s: &mut State<'_>| {
            let total = s.get_or::<u64>("total", 0) + v["amount"].as_u64().unwrap_or(0);
            s.set("total", &total);
            total
        })
        .to_topic(&out);
    let mut app = app;
    app.run_until_idle().unwrap();
    let repart = log.topic("g-orders-repartition").unwrap();
    assert_eq!(repart.partitions(), 4);
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..2000u64 {
        *expected.entry(format!("\"c{}\"", i % 11)).or_default() += i % 5;
    }
    let mut last = BTreeMap::new();
    for (p, key, value, _) in read_topic(dir.path(), "totals") {
        let expected_p = eddy::partition_for_key(key.as_bytes(), 1);
        assert_eq!(p, expected_p);
        last.insert(key, value.as_u64().unwrap());
    }
    assert_eq!(last, expected);
    // Each customer's state lives in exactly one partition of the repartition topic.
    for p in 0..4 {
        for (_, r) in read_all(&mut repart.reader(p).unwrap(), 0) {
            assert_eq!(eddy::partition_for_key(r.key.as_deref().unwrap(), 4), p);
        }
    }
}

#[test]
fn a_group_reset_clears_the_state_so_reprocessing_starts_fresh() {
    let dir = tempfile::tempdir().unwrap();
    produce_readings(dir.path(), "readings", 2, 0, 500);
    counting_app(dir.path(), "g").run_until_idle().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let groups = Groups::new(&log);
    let plan = groups
        .plan_reset(
            "g",
            &ResetScope::Topics(vec![("readings".into(), None)]),
            ResetTarget::Earliest,
        )
        .unwrap();
    groups.execute_reset("g", &plan).unwrap();
    log.delete_topic("counts").unwrap();
    let mut app = counting_app(dir.path(), "g");
    app.run_until_idle().unwrap();
    assert_eq!(app.metrics().state_resets, 2);
    assert_eq!(last_counts(dir.path()), expected_counts(500), "not doubled");
    // A plain restart after that keeps the state.
    produce_readings(dir.path(), "readings", 2, 500, 600);
    let mut app = counting_app(dir.path(), "g");
    app.run_until_idle().unwrap();
    assert_eq!(app.metrics().state_resets, 0);
    assert_eq!(last_counts(dir.path()), expected_counts(600));
}

#[test]
fn timestamps_from_an_extractor_and_set_timestamp_reach_outputs_and_ttl_uses_event_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let t = log.create_topic("raw", TopicConfig::default()).unwrap();
    // Payload time: 1 s apart, then a 3 s gap; the log's own timestamps are all the same.
    t.append(
        [10_000, 11_000, 12_000, 13_000, 16_000]
            .iter()
            .enumerate()
            .map(|(i, t)| Record::keyed("k", format!("{{\"t\": {t}, \"v\": {i}}}")).at(7)),
    )
    .unwrap();
    let app = Application::new(config(dir.path(), "g")).unwrap();
    let input = app
        .topic::<Bytes, Json<serde_json::Value>>("raw")
        .unwrap()
        .with_timestamp(|v, _| v["t"].as_i64().unwrap_or(0));
    let out = app.topic::<Bytes, Json<Option<i64>>>("out").unwrap();
    app.dataframe(&input)
        .stateful_map(|v, s: &mut State<'_>| {
            // Remember the previous value for 1.5 s of event time.
            let previous = s.get::<i64>("prev");
            s.set_with_ttl(
                "prev",
                &v["v"].as_i64().unwrap_or(0),
                std::time::Duration::from_millis(1500),
            );
            if v["v"] == 2 {
                s.delete("prev");
            }
            previous
        })
        .set_timestamp(|_, ts| ts + 1)
        .to_topic(&out);
    let mut app = app;
    app.run_until_idle().unwrap();
    let got: Vec<(serde_json::Value, i64)> = read_topic(dir.path(), "out")
        .into_iter()
        .map(|(_, _, v, ts)| (v, ts))
        .collect();
    let expected: Vec<(serde_json::Value, i64)> = vec![
        (serde_json::Value::Null, 10_001),
        (0.into(), 11_001),
        (1.into(), 12_001),
        (serde_json::Value::Null, 13_001), // deleted
        (serde_json::Value::Null, 16_001), // expired at 14,500
    ];
    assert_eq!(got, expected);
}

#[test]
fn producer_flat_map_and_a_bounded_record_count() {
    let dir = tempfile::tempdir().unwrap();
    let app = Application::new(config(dir.path(), "g")).unwrap();
    let lines = app
        .topic_with_config::<Str, Str>("lines", TopicConfig::with_partitions(2))
        .unwrap();
    let words = app.topic::<Str, Str>("words").unwrap();
    let mut producer = app.producer().unwrap();
    for i in 0..100 {
        let key = format!("doc{}", i % 3);
        producer
            .produce(&lines, Some(&key), &format!("a b {i}"), Vec::new(), Some(i))
            .unwrap();
    }
    producer
        .produce(&lines, None, &"keyless".to_string(), Vec::new(), None)
        .unwrap();
    producer.flush().unwrap();
    assert_eq!(producer.sent(), 101);
    drop(producer);
    // Keyed records sit in their murmur2 partition.
    let t = app.log().topic("lines").unwrap();
    for p in 0..2 {
        for (_, r) in read_all(&mut t.reader(p).unwrap(), 0) {
            if let Some(k) = r.key {
                assert_eq!(eddy::partition_for_key(&k, 2), p);
            }
        }
    }
    app.dataframe(&lines)
        .flat_map(|line: String| line.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .to_topic(&words);
    let mut app = app;
    app.run_records(40).unwrap();
    let first = app.metrics().records_in;
    assert!((40..=101).contains(&first), "stopped after {first} records");
    app.run_until_idle().unwrap();
    assert_eq!(app.metrics().records_in, 101);
    let all = read_topic_strings(dir.path(), "words");
    assert_eq!(all.len(), 301);
    assert_eq!(all.iter().filter(|w| w.as_str() == "a").count(), 100);
}

fn read_topic_strings(dir: &Path, topic: &str) -> Vec<String> {
    let t = Log::open(dir).unwrap().topic(topic).unwrap();
    (0..t.partitions())
        .flat_map(|p| read_all(&mut t.reader(p).unwrap(), 0))
        .map(|(_, r)| String::from_utf8(r.value.unwrap()).unwrap())
        .collect()
}

/// Sums readings per sensor in 1 s tumbling windows (kept open: grace 1 h), with an accumulator
/// built by `init` and `add`, under the Skip policy.
fn window_app<A>(dir: &Path, init: fn(&Reading) -> A, add: fn(A, &Reading) -> A) -> Application
where
    A: Clone + Serialize + serde::de::DeserializeOwned + 'static,
{
    let mut c = config(dir, "w");
    c.on_error = ErrorPolicy::Skip;
    let app = Application::new(c).unwrap();
    let input = app.topic::<Str, Json<Reading>>("readings").unwrap();
    let output = app
        .topic::<Str, Json<eddy::WindowResult<A>>>("sums")
        .unwrap();
    app.dataframe(&input)
        .tumbling_window(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(3600),
        )
        .reduce(init, add)
        .emit_current()
        .to_topic(&output);
    app
}

#[test]
fn window_state_that_no_longer_decodes_stops_the_app_instead_of_skipping_every_record() {
    let dir = tempfile::tempdir().unwrap();
    produce_readings(dir.path(), "readings", 1, 0, 50);
    let mut app = window_app(dir.path(), |r| r.value, |a, r| a + r.value);
    app.run_until_idle().unwrap();
    drop(app);
    // The accumulator type changed: the saved windows are numbers, now read as objects.
    produce_readings(dir.path(), "readings", 1, 50, 60);
    let mut changed = window_app(
        dir.path(),
        |r| Count {
            count: 1,
            sum: r.value,
        },
        |c, r| Count {
            count: c.count + 1,
            sum: c.sum + r.value,
        },
    );
    let err = changed.run_until_idle().unwrap_err();
    match &err {
        StreamError::State(eddy::StateError::CorruptState { path, key, reason }) => {
            assert!(
                path.to_string_lossy().contains("readings"),
                "{}",
                path.display()
            );
            assert!(!key.is_empty());
            assert!(reason.contains("window"), "{reason}");
        }
        other => panic!("expected CorruptState, got {other}"),
    }
    assert!(err.to_string().contains("nothing was skipped"), "{err}");
    assert_eq!(changed.metrics().skipped, 0, "no record was skipped");
}

#[test]
fn keyed_state_that_no_longer_decodes_stops_the_app_under_the_skip_policy() {
    let dir = tempfile::tempdir().unwrap();
    produce_readings(dir.path(), "readings", 1, 0, 20);
    counting_app(dir.path(), "g").run_until_idle().unwrap();
    produce_readings(dir.path(), "readings", 1, 20, 30);
    let mut c = config(dir.path(), "g");
    c.on_error = ErrorPolicy::Skip;
    let app = Application::new(c).unwrap();
    let input = app.topic::<Str, Json<Reading>>("readings").unwrap();
    let output = app.topic::<Str, Json<u64>>("counts2").unwrap();
    app.dataframe(&input)
        .stateful_map(|_: Reading, state: &mut State<'_>| {
            // "c" holds a Count object; reading it as a number cannot work.
            let n: u64 = state.get("c").unwrap_or(0);
            state.set("c", &(n + 1));
            n
        })
        .to_topic(&output);
    let mut app = app;
    let err = app.run_until_idle().unwrap_err();
    assert!(
        matches!(
            &err,
            StreamError::State(eddy::StateError::CorruptState { reason, .. }) if reason.contains("\"c\"")
        ),
        "{err}"
    );
    assert_eq!(app.metrics().skipped, 0);
}

#[test]
fn restores_report_progress_to_the_callback_and_draw_nothing() {
    let dir = tempfile::tempdir().unwrap();
    produce_readings(dir.path(), "readings", 2, 0, 2000);
    counting_app(dir.path(), "g").run_until_idle().unwrap();
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    produce_readings(dir.path(), "readings", 2, 2000, 2100);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut c = config(dir.path(), "g");
    let sink = seen.clone();
    c.on_restore_progress = Some(eddy::RestoreCallback(std::sync::Arc::new(
        move |p: &eddy::RestoreProgress| sink.lock().unwrap().push(p.clone()),
    )));
    let mut app = counting_app_with(c);
    app.run_until_idle().unwrap();
    assert_eq!(last_counts(dir.path()), expected_counts(2100));
    let seen = seen.lock().unwrap();
    let done: Vec<_> = seen.iter().filter(|p| p.done).collect();
    assert_eq!(
        done.len(),
        2,
        "one final report per partition's store: {seen:?}"
    );
    for p in done {
        assert_eq!(p.restored, p.total);
        assert!(p.total > 0);
        assert!(p.changelog.contains("readings"), "{}", p.changelog);
        assert!(p.store.starts_with(dir.path().join("state")));
    }
}

/// Windows over `readings`: a 1 s tumbling count, with a 2 s hopping one inserted before it when
/// `insert`; `name` names the tumbling one.
fn windows_app(dir: &Path, insert: bool, name: Option<&str>) -> Application {
    let app = Application::new(config(dir, "ops")).unwrap();
    let input = app.topic::<Str, Json<Reading>>("readings").unwrap();
    let out = app
        .topic::<Str, Json<eddy::WindowResult<u64>>>("window-counts")
        .unwrap();
    let sdf = app.dataframe(&input);
    let second = std::time::Duration::from_secs(1);
    if insert {
        sdf.hopping_window(2 * second, second, second)
            .aggregate(eddy::aggregate::Count)
            .emit_current()
            .to_topic(&out);
    }
    let mut spec = sdf.tumbling_window(second, second);
    if let Some(name) = name {
        spec = spec.name(name);
    }
    spec.aggregate(eddy::aggregate::Count)
        .emit_current()
        .to_topic(&out);
    app
}

#[test]
fn a_window_inserted_before_another_is_refused_at_start_not_fed_its_state() {
    let dir = tempfile::tempdir().unwrap();
    produce_readings(dir.path(), "readings", 1, 0, 100);
    windows_app(dir.path(), false, None)
        .run_until_idle()
        .unwrap();
    produce_readings(dir.path(), "readings", 1, 100, 110);
    let err = windows_app(dir.path(), true, None)
        .run_until_idle()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StreamError::Setup(_)), "{text}");
    assert!(text.contains("the pipeline changed"), "{text}");
    assert!(
        text.contains("tumbling-1000ms-grace-1000ms:Count"),
        "{text}"
    );
    assert!(text.contains("hopping-2000ms-every-1000ms"), "{text}");
    // The unchanged pipeline still runs on the same state, and names may be given.
    windows_app(dir.path(), false, None)
        .run_until_idle()
        .unwrap();
    let err = windows_app(dir.path(), false, Some("per-second"))
        .run_until_idle()
        .unwrap_err();
    assert!(err.to_string().contains("\"per-second\""), "{err}");
}

#[test]
fn a_reset_that_keeps_state_skips_records_without_losing_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    produce_readings(dir.path(), "readings", 1, 0, 70);
    counting_app(dir.path(), "g").run_until_idle().unwrap();
    produce_readings(dir.path(), "readings", 1, 70, 84);
    // Move over the first 7 new readings (one per sensor), keeping the counts built so far.
    let out = run_ok(
        dir.path(),
        &[
            "groups",
            "reset-offsets",
            "g",
            "--topic",
            "readings",
            "--shift-by",
            "7",
            "--execute",
            "--keep-state",
        ],
        "",
    );
    assert!(out.contains("77"), "{out}");
    let mut app = counting_app(dir.path(), "g");
    app.run_until_idle().unwrap();
    assert_eq!(app.metrics().state_resets, 0);
    assert_eq!(app.metrics().records_in, 7);
    let counts = last_counts(dir.path());
    for (sensor, c) in &counts {
        assert_eq!(
            c.count, 11,
            "{sensor}: 10 before, the skipped one not, 1 after"
        );
    }
    let expected: i64 = (0..70).chain(77..84).sum();
    assert_eq!(counts.values().map(|c| c.sum).sum::<i64>(), expected);
}
