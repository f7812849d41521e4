//! Joins and merges in one process with real RocksDB stores and real files: stream–table joins
//! at their boundaries (equal timestamps, tombstones, updates), tables read from their own
//! compacted topic across restarts and lost stores, co-partitioning, and `concat`.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use eddy::{
    AppConfig, Application, CleanupPolicy, JoinHow, Json, Log, OnMerge, Record, State, Str,
    StreamError, TopicConfig,
};
use serde_json::{json, Value};
use std::path::Path;

fn config(dir: &Path, group: &str) -> AppConfig {
    let mut c = AppConfig::new(dir, group);
    c.commit_interval = std::time::Duration::from_millis(50);
    c
}

fn topic(dir: &Path, name: &str, partitions: u32, compact: bool) {
    let mut c = TopicConfig::with_partitions(partitions);
    if compact {
        c.cleanup_policy = CleanupPolicy::Compact;
    }
    Log::open(dir).unwrap().topic_or_create(name, c).unwrap();
}

/// Appends `(key, value or tombstone, timestamp)` records, each to its key's partition.
fn append(dir: &Path, name: &str, records: &[(&str, Option<Value>, i64)]) {
    let t = Log::open(dir).unwrap().topic(name).unwrap();
    for (k, v, ts) in records {
        let r = match v {
            Some(v) => Record::keyed(*k, serde_json::to_vec(v).unwrap()),
            None => Record {
                key: Some(k.as_bytes().to_vec()),
                ..Record::default()
            },
        };
        t.append(vec![r.at(*ts)]).unwrap();
    }
}

/// Every record of `name` as (key, value, timestamp), partition by partition.
fn read(dir: &Path, name: &str) -> Vec<(String, Value, i64)> {
    let t = Log::open(dir).unwrap().topic(name).unwrap();
    let mut out = Vec::new();
    for p in 0..t.partitions() {
        for (_, r) in read_all(&mut t.reader(p).unwrap(), 0) {
            let key = String::from_utf8(r.key.unwrap_or_default()).unwrap();
            let value = serde_json::from_slice(&r.value.unwrap()).unwrap();
            out.push((key, value, r.timestamp.unwrap()));
        }
    }
    out
}

/// readings ⋈ sensors → enriched, with `how`.
fn enrich_app(dir: &Path, how: JoinHow) -> Application {
    let app = Application::new(config(dir, "enrich")).unwrap();
    let readings = app.topic::<Str, Json<Value>>("readings").unwrap();
    let sensors = app.topic::<Str, Json<Value>>("sensors").unwrap();
    let out = app.topic::<Str, Json<Value>>("enriched").unwrap();
    let table = app.table(&sensors);
    app.dataframe(&readings)
        .join_table_merged(&table, how, OnMerge::KeepLeft)
        .to_topic(&out);
    app
}

fn reading(v: i64) -> Option<Value> {
    Some(json!({ "v": v }))
}

fn sensor(place: &str) -> Option<Value> {
    Some(json!({ "place": place }))
}

/// Rows at 100 (s1 hall), 200 (s1 roof, same time as a reading), 300 (s1 deleted); s2 has no
/// row; readings around them.
fn table_fixture(dir: &Path, compact: bool) {
    topic(dir, "readings", 1, false);
    topic(dir, "sensors", 1, compact);
    append(
        dir,
        "sensors",
        &[
            ("s1", sensor("hall"), 100),
            ("s1", sensor("roof"), 200),
            ("s1", None, 300),
        ],
    );
    append(
        dir,
        "readings",
        &[
            ("s1", reading(1), 50),
            ("s1", reading(2), 100),
            ("s1", reading(3), 150),
            ("s2", reading(4), 160),
            ("s1", reading(5), 200),
            ("s1", reading(6), 299),
            ("s1", reading(7), 300),
            ("s1", reading(8), 400),
        ],
    );
}

#[test]
fn a_stream_table_join_sees_the_row_in_force_at_each_records_time() {
    for how in [JoinHow::Inner, JoinHow::Left] {
        let dir = tempfile::tempdir().unwrap();
        table_fixture(dir.path(), false);
        let mut app = enrich_app(dir.path(), how);
        app.run_until_idle().unwrap();
        let got: Vec<(i64, Value)> = read(dir.path(), "enriched")
            .into_iter()
            .map(|(_, v, ts)| (ts, v))
            .collect();
        let place = |v: i64, p: &str| json!({ "v": v, "place": p });
        let mut want = vec![
            (100, place(2, "hall")), // a row with the record's timestamp is there
            (150, place(3, "hall")),
            (200, place(5, "roof")),
            (299, place(6, "roof")),
        ];
        if how == JoinHow::Left {
            want = vec![
                (50, json!({ "v": 1 })), // before any row
                want[0].clone(),
                want[1].clone(),
                (160, json!({ "v": 4 })), // a key without a row
                want[2].clone(),
                want[3].clone(),
                (300, json!({ "v": 7 })), // the tombstone at the same time deleted it
                (400, json!({ "v": 8 })),
            ];
        }
        assert_eq!(got, want, "{how:?}");
    }
}

#[test]
fn a_table_from_a_compacted_topic_is_not_copied_to_the_changelog_and_survives_a_lost_store() {
    let dir = tempfile::tempdir().unwrap();
    table_fixture(dir.path(), true);
    let mut app = enrich_app(dir.path(), JoinHow::Left);
    app.run_until_idle().unwrap();
    drop(app);
    let changelog = read_keys(dir.path(), "enrich-readings-changelog");
    assert!(
        !changelog.is_empty(),
        "the task's changelog holds its positions"
    );
    assert!(
        changelog
            .iter()
            .all(|k| !k.contains("sensors") || k.starts_with('i')),
        "table rows stay out of the changelog: {changelog:?}"
    );
    // A new row and readings, processed with the store in place.
    append(dir.path(), "sensors", &[("s2", sensor("cellar"), 500)]);
    append(
        dir.path(),
        "readings",
        &[("s2", reading(9), 600), ("s1", reading(10), 600)],
    );
    let mut app = enrich_app(dir.path(), JoinHow::Left);
    app.run_until_idle().unwrap();
    drop(app);
    let got = read(dir.path(), "enriched");
    assert_eq!(got.len(), 10, "{got:?}");
    assert_eq!(got[8].1, json!({ "v": 9, "place": "cellar" }));
    assert_eq!(got[9].1, json!({ "v": 10 }), "s1 stays deleted");
    // The store is lost: restored from the changelog, which holds no rows, the table reads
    // them again from its topic.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    append(dir.path(), "readings", &[("s2", reading(11), 700)]);
    let mut app = enrich_app(dir.path(), JoinHow::Left);
    app.run_until_idle().unwrap();
    drop(app);
    let got = read(dir.path(), "enriched");
    assert_eq!(got.len(), 11, "nothing processed twice: {got:?}");
    assert_eq!(got[10].1, json!({ "v": 11, "place": "cellar" }));
    // A restart with the store in place keeps joining.
    append(dir.path(), "readings", &[("s2", reading(12), 800)]);
    let mut app = enrich_app(dir.path(), JoinHow::Left);
    app.run_until_idle().unwrap();
    let got = read(dir.path(), "enriched");
    assert_eq!(got.len(), 12);
    assert_eq!(got[11].1, json!({ "v": 12, "place": "cellar" }));
}

/// The keys of every record of `name`, escaped.
fn read_keys(dir: &Path, name: &str) -> Vec<String> {
    let t = Log::open(dir).unwrap().topic(name).unwrap();
    let mut out = Vec::new();
    for p in 0..t.partitions() {
        for (_, r) in read_all(&mut t.reader(p).unwrap(), 0) {
            out.push(r.key.unwrap_or_default().escape_ascii().to_string());
        }
    }
    out
}

#[test]
fn joined_topics_must_be_co_partitioned_and_the_error_names_both() {
    let dir = tempfile::tempdir().unwrap();
    topic(dir.path(), "readings", 2, false);
    topic(dir.path(), "sensors", 3, false);
    let mut app = enrich_app(dir.path(), JoinHow::Inner);
    let err = app.run_until_idle().unwrap_err();
    let StreamError::Setup(message) = &err else {
        panic!("{err}");
    };
    for needle in [
        "readings",
        "sensors",
        "2 partitions",
        "3 partitions",
        "set_key",
    ] {
        assert!(message.contains(needle), "{message}");
    }
}

#[test]
fn concat_merges_two_topics_in_timestamp_order_with_state_per_key_across_both() {
    let dir = tempfile::tempdir().unwrap();
    topic(dir.path(), "a", 2, false);
    topic(dir.path(), "b", 2, false);
    // Interleaved timestamps; each topic in order of its own.
    let a: Vec<(&str, Option<Value>, i64)> = (0..40)
        .map(|i| (["k1", "k2", "k3"][i % 3], reading(i as i64), i as i64 * 10))
        .collect();
    let b: Vec<(&str, Option<Value>, i64)> = (0..40)
        .map(|i| {
            (
                ["k1", "k2", "k3"][i % 3],
                reading(1000 + i as i64),
                i as i64 * 10 + 5,
            )
        })
        .collect();
    append(dir.path(), "a", &a);
    append(dir.path(), "b", &b);
    let run = |dir: &Path, stop_after: Option<u64>| {
        let app = Application::new(config(dir, "merge")).unwrap();
        let ta = app.topic::<Str, Json<Value>>("a").unwrap();
        let tb = app.topic::<Str, Json<Value>>("b").unwrap();
        let out = app.topic::<Str, Json<Value>>("merged").unwrap();
        app.dataframe(&ta)
            .concat(&app.dataframe(&tb))
            .stateful_map(|v: Value, s: &mut State<'_>| {
                let mut seen: Vec<i64> = s.get("seen").unwrap_or_default();
                seen.push(v["v"].as_i64().unwrap());
                s.set("seen", &seen);
                json!(seen)
            })
            .to_topic(&out);
        let mut app = app;
        match stop_after {
            Some(n) => app.run_records(n).unwrap(),
            None => app.run_until_idle().unwrap(),
        }
    };
    run(dir.path(), Some(30));
    run(dir.path(), None);
    let mut last: std::collections::BTreeMap<String, Value> = Default::default();
    let mut times: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for (k, v, ts) in read(dir.path(), "merged") {
        times.entry(k.clone()).or_default().push(ts);
        last.insert(k, v);
    }
    for (i, k) in ["k1", "k2", "k3"].iter().enumerate() {
        // Both topics' records of the key, in timestamp order, once each.
        let mut want: Vec<(i64, i64)> = Vec::new();
        for j in (i..40).step_by(3) {
            want.push((j as i64 * 10, j as i64));
            want.push((j as i64 * 10 + 5, 1000 + j as i64));
        }
        want.sort();
        let values: Vec<i64> = want.iter().map(|w| w.1).collect();
        assert_eq!(last[*k], json!(values), "{k}");
        let ts = &times[*k];
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{k}: {ts:?}");
    }
}

/// clicks ⋈ as of prices (left join), with `max_task_idle`; outputs `{"v", "price"}`.
fn asof_app(dir: &Path, max_task_idle: std::time::Duration) -> Application {
    let mut c = config(dir, "idle");
    c.max_task_idle = max_task_idle;
    let app = Application::new(c).unwrap();
    let clicks = app.topic::<Str, Json<Value>>("clicks").unwrap();
    let prices = app.topic::<Str, Json<Value>>("prices").unwrap();
    let out = app.topic::<Str, Json<Value>>("priced").unwrap();
    let right = app.dataframe(&prices);
    app.dataframe(&clicks)
        .join_asof_merged(
            &right,
            eddy::AsOf::default().how(JoinHow::Left),
            OnMerge::KeepLeft,
        )
        .to_topic(&out);
    app
}

/// Runs the as-of app over clicks at 100 and 200 while the prices topic is silent; a price at
/// 150 is appended once both results are out, or `after` the application was built. Returns
/// the two results.
fn silent_right(
    max_task_idle: std::time::Duration,
    after: Option<std::time::Duration>,
) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    topic(&d, "clicks", 1, false);
    topic(&d, "prices", 1, false);
    append(
        &d,
        "clicks",
        &[("k", reading(1), 100), ("k", reading(2), 200)],
    );
    let feeder = {
        let d = d.clone();
        std::thread::spawn(move || {
            let ready = |d: &Path| match after {
                None => outputs_at_least(d, 2),
                Some(_) => Log::open(d).unwrap().topic("priced").is_ok(),
            };
            // Bounded, so that the thread ends also when the application failed.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !ready(&d) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            std::thread::sleep(after.unwrap_or_default());
            append(&d, "prices", &[("k", Some(json!({ "price": 7 })), 150)]);
        })
    };
    let mut app = asof_app(&d, max_task_idle);
    app.run_records(3).unwrap();
    feeder.join().unwrap();
    read(&d, "priced").into_iter().map(|(_, v, _)| v).collect()
}

fn outputs_at_least(dir: &Path, n: usize) -> bool {
    Log::open(dir)
        .unwrap()
        .topic("priced")
        .map(|t| t.reader(0).unwrap().end_offset() as usize >= n)
        .unwrap_or(false)
}

#[test]
fn a_silent_input_holds_nothing_back_unless_max_task_idle_says_to_wait_for_it() {
    // Without waiting, both clicks go before the price exists (it is appended only once both
    // results are out).
    let got = silent_right(std::time::Duration::ZERO, None);
    assert_eq!(got, vec![json!({ "v": 1 }), json!({ "v": 2 })]);
    // Waiting up to 2 s for the silent side: the price, appended 300 ms after the application
    // started, is merged in timestamp order, between the clicks (the last click then waits 2 s
    // more for prices, silent again, as Kafka Streams' tasks do).
    let after = Some(std::time::Duration::from_millis(300));
    let got = silent_right(std::time::Duration::from_secs(2), after);
    assert_eq!(got, vec![json!({ "v": 1 }), json!({ "v": 2, "price": 7 })]);
}

#[test]
fn two_instances_own_each_partition_of_both_joined_topics_together() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    topic(&d, "readings", 4, false);
    topic(&d, "sensors", 4, true);
    let sensors: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
    let rows: Vec<(&str, Option<Value>, i64)> = sensors
        .iter()
        .map(|s| (s.as_str(), sensor(&format!("at-{s}")), 1))
        .collect();
    append(&d, "sensors", &rows);
    let stop = Arc::new(AtomicBool::new(false));
    /// Stops both instances when the test ends, a failed assertion included.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let _stop_on_drop = StopOnDrop(stop.clone());
    let instance = |n: usize| {
        let (d, stop) = (d.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut c = config(&d, "enrich");
            c.state_dir = Some(d.join(format!("state-{n}")));
            let app = Application::new(c).unwrap();
            let readings = app.topic::<Str, Json<Value>>("readings").unwrap();
            let sensors = app.topic::<Str, Json<Value>>("sensors").unwrap();
            // One output for both: they take turns on its partitions, opening them at once too.
            let out = app.topic::<Str, Json<Value>>("enriched").unwrap();
            let table = app.table(&sensors);
            app.dataframe(&readings)
                .join_table_merged(&table, JoinHow::Inner, OnMerge::KeepLeft)
                .to_topic(&out);
            let mut app = app;
            let handle = app.stop_handle();
            let watcher = std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                handle.store(true, Ordering::SeqCst);
            });
            app.run().unwrap();
            watcher.join().unwrap();
        })
    };
    let (a, b) = (instance(1), instance(2));
    let log = Log::open(&d).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let enriched = |d: &Path| match Log::open(d).unwrap().topic("enriched") {
        Ok(_) => read(d, "enriched"),
        Err(_) => Vec::new(),
    };
    // Both members in the group, every partition of both topics owned, partition p of both by
    // one member (a snapshot taken while a partition moves may mix, so look until one agrees).
    loop {
        let owned = eddy::Groups::new(&log)
            .describe("enrich")
            .map(|g| g.partitions);
        let owned: Vec<_> = (owned.unwrap_or_default().into_iter())
            .filter(|p| p.consumer_id.is_some())
            .collect();
        let paired = owned.iter().all(|p| {
            let twin = (owned.iter()).find(|q| q.topic != p.topic && q.partition == p.partition);
            twin.is_some_and(|q| q.consumer_id == p.consumer_id)
        });
        if owned.len() == 8 && owners(&log, "enrich").len() == 2 && paired {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never co-partitioned: {owned:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let records: Vec<(&str, Option<Value>, i64)> = (0..400)
        .map(|i| (sensors[i % 40].as_str(), reading(i as i64), 10 + i as i64))
        .collect();
    append(&d, "readings", &records);
    while enriched(&d).len() < 400 {
        assert!(
            std::time::Instant::now() < deadline,
            "not every reading was joined"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    a.join().unwrap();
    b.join().unwrap();
    let got = enriched(&d);
    assert_eq!(got.len(), 400, "each reading once");
    for (key, v, _) in &got {
        assert_eq!(v["place"], json!(format!("at-{key}")), "{key}: {v}");
    }
    // Both worked: each instance's store holds the tasks it ran.
    for n in 1..=2 {
        let state = d.join(format!("state-{n}")).join("enrich").join("readings");
        let tasks = std::fs::read_dir(&state).map(|e| e.count()).unwrap_or(0);
        assert!(tasks > 0, "instance {n} ran no task");
    }
}
