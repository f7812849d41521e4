//! On-disk formats: data directories written by topic formats 1 and 2 (committed under
//! `tests/fixtures`) are read by this build, and data of a newer format is refused with a clear
//! error, never rebuilt or overwritten.
//!
//! The fixtures are written by the ignored tests `write_format_1_fixture` and
//! `write_format_2_fixture` (generators run by hand, not checks):
//! `EDDY_FIXTURE_OUT=engine/tests/fixtures/format-N cargo test --release -p eddy --test formats
//! -- --ignored write_format_N_fixture`. Each is written once per format and never regenerated
//! for the same format: the point is that old bytes keep reading.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use eddy::{
    AppConfig, Application, Groups, Isolation, Json, Log, LogError, ProcessingGuarantee, Record,
    State, Str, TopicConfig, TransactionalProducer,
};
use std::path::Path;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-1");
const FIXTURE_2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-2");

fn event(i: u64) -> Record {
    Record::keyed(format!("k{}", i % 5), format!("{i}"))
        .at(1_000_000 + i as i64 * 10)
        .with_header("i", i.to_string())
}

/// Counts records per key into `counts`, in keyed state.
fn counter(dir: &Path) -> Application {
    counter_with(dir, ProcessingGuarantee::AtLeastOnce)
}

fn counter_with(dir: &Path, guarantee: ProcessingGuarantee) -> Application {
    let mut c = AppConfig::new(dir, "counter");
    c.commit_interval = std::time::Duration::from_millis(20);
    c.processing_guarantee = guarantee;
    let app = Application::new(c).unwrap();
    let input = app.topic::<Str, Str>("events").unwrap();
    let output = app.topic::<Str, Json<u64>>("counts").unwrap();
    app.dataframe(&input)
        .stateful_map(|_: String, state: &mut State<'_>| {
            let n: u64 = state.get("n").unwrap_or(0) + 1;
            state.set("n", &n);
            n
        })
        .to_topic(&output);
    app
}

fn append_events(log: &Log, range: std::ops::Range<u64>) {
    let events = log.topic("events").unwrap();
    for i in range {
        let p = (i % 2) as u32;
        events.writer(p).unwrap().append(&[event(i)]).unwrap();
    }
}

#[test]
#[ignore = "writes the format-1 fixture; run by hand once per format"]
fn write_format_1_fixture() {
    let out = std::env::var("EDDY_FIXTURE_OUT").expect("EDDY_FIXTURE_OUT");
    let dir = Path::new(&out);
    assert!(
        !dir.exists(),
        "{} exists: fixtures are written once",
        dir.display()
    );
    let log = Log::open(dir).unwrap();
    let mut config = small_segments(2, 4096);
    config.durability = eddy::Durability::None;
    log.create_topic("events", config).unwrap();
    append_events(&log, 0..300);
    let mut compacted = small_segments(1, 1024);
    compacted.cleanup_policy = eddy::CleanupPolicy::Compact;
    compacted.delete_retention_ms = 0;
    let latest = log.create_topic("latest", compacted).unwrap();
    let w = latest.writer(0).unwrap();
    for i in 0..60u64 {
        w.append(&[Record::keyed(format!("k{}", i % 4), format!("{i}"))])
            .unwrap();
    }
    w.roll_now().unwrap();
    w.compact().unwrap();
    drop(w);
    Groups::new(&log)
        .alter_offsets("g", &[("events", 0, 100), ("events", 1, 50)], "meta")
        .unwrap();
    counter(dir).run_until_idle().unwrap();
    // The changelog is the state's durable form; the RocksDB files are RocksDB's format.
    std::fs::remove_dir_all(dir.join("state")).unwrap();
    trim_preallocated_indexes(dir);
}

#[test]
#[ignore = "writes the format-2 fixture; run by hand once per format"]
fn write_format_2_fixture() {
    let out = std::env::var("EDDY_FIXTURE_OUT").expect("EDDY_FIXTURE_OUT");
    let dir = Path::new(&out);
    assert!(
        !dir.exists(),
        "{} exists: fixtures are written once",
        dir.display()
    );
    let log = Log::open(dir).unwrap();
    log.create_topic("events", small_segments(2, 4096)).unwrap();
    append_events(&log, 0..300);
    // Transactions: committed, aborted, and one left open by its producer.
    log.create_topic("txn", small_segments(1, 1024)).unwrap();
    let (mut p, _) = TransactionalProducer::start(&log, "fixture").unwrap();
    for (i, commit) in [(0u64, true), (1, false), (2, true)] {
        p.append("txn", 0, &[Record::keyed("k", format!("t{i}"))])
            .unwrap();
        if commit {
            p.commit(None).unwrap();
        } else {
            p.abort().unwrap();
        }
    }
    p.append("txn", 0, &[Record::keyed("k", "open")]).unwrap();
    drop(p);
    // An exactly-once application: its outputs and changelog are transactional.
    counter_with(dir, ProcessingGuarantee::ExactlyOnce)
        .run_until_idle()
        .unwrap();
    std::fs::remove_dir_all(dir.join("state")).unwrap();
    trim_preallocated_indexes(dir);
}

/// Cuts the zero entries that active segments' indexes are preallocated with (format 1 reads
/// either), so that the fixture stays small.
fn trim_preallocated_indexes(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            trim_preallocated_indexes(&path);
            continue;
        }
        let width = match path.extension().and_then(|e| e.to_str()) {
            Some("index") => 8,
            Some("timeindex") => 12,
            _ => continue,
        };
        let bytes = std::fs::read(&path).unwrap();
        let used = bytes
            .chunks(width)
            .position(|e| e.iter().all(|b| *b == 0))
            .unwrap_or(bytes.len() / width);
        std::fs::write(&path, &bytes[..used * width]).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new(FIXTURE), dir.path());
    dir
}

#[test]
fn a_format_1_data_directory_reads_and_continues() {
    let dir = fixture_copy();
    let log = Log::open(dir.path()).unwrap();
    let events = log.topic("events").unwrap();
    assert_eq!(events.partitions(), 2);
    assert_eq!(events.config().segment_bytes, 4096);
    for p in 0..2u32 {
        let got = read_all(&mut events.reader(p).unwrap(), 0);
        let want: Vec<Record> = (0..300)
            .filter(|i| i % 2 == u64::from(p))
            .map(event)
            .collect();
        assert_eq!(got.len(), want.len(), "partition {p}");
        for ((offset, g), w) in got.iter().zip(&want) {
            assert_eq!(
                (&g.key, &g.value, &g.headers),
                (&w.key, &w.value, &w.headers)
            );
            assert_eq!(g.timestamp, w.timestamp, "offset {offset}");
        }
        assert!(segment_files(dir.path(), "events", p, "log").len() > 1);
    }
    // Seeks by index and by time agree with the records.
    let mut reader = events.reader(0).unwrap();
    assert_eq!(
        reader
            .read(77, 1, 4096)
            .unwrap()
            .iter()
            .next()
            .unwrap()
            .offset,
        77
    );
    assert_eq!(
        reader.offset_for_timestamp(1_000_000 + 200 * 10).unwrap(),
        Some(100)
    );
    // The compacted topic keeps the newest value of each key.
    let latest = log.topic("latest").unwrap();
    let mut newest = std::collections::BTreeMap::new();
    for (_, r) in read_all(&mut latest.reader(0).unwrap(), 0) {
        newest.insert(r.key.unwrap(), r.value.unwrap());
    }
    assert_eq!(newest.len(), 4);
    assert_eq!(newest[&b"k3".to_vec()], b"59".to_vec());
    // Committed offsets, with their metadata.
    let committed = Groups::new(&log).committed("g").unwrap();
    assert_eq!(committed[&("events".into(), 0)], (100, "meta".into()));
    assert_eq!(committed[&("events".into(), 1)], (50, "meta".into()));
    // Appends continue at the end, and the application's state comes back from its changelog.
    append_events(&log, 300..310);
    let mut app = counter(dir.path());
    app.run_until_idle().unwrap();
    assert!(app.metrics().restored_entries > 0);
    assert_eq!(app.metrics().records_in, 10, "only the new events");
    let counts = log.topic("counts").unwrap();
    let mut last = std::collections::BTreeMap::new();
    for p in 0..counts.partitions() {
        for (_, r) in read_all(&mut counts.reader(p).unwrap(), 0) {
            last.insert(r.key.unwrap(), r.value.unwrap());
        }
    }
    // Each key's count is kept per input partition: 31 of its 62 records in each.
    for k in 0..5 {
        assert_eq!(last[format!("k{k}").as_bytes()], b"31".to_vec(), "key k{k}");
    }
}

/// `topics/<topic>/topic.json`'s `"format"`.
fn topic_format(dir: &Path, topic: &str) -> u64 {
    let path = dir.join("topics").join(topic).join("topic.json");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    meta["format"].as_u64().unwrap_or(1)
}

/// The last count of each key in `counts`, read committed.
fn last_counts(log: &Log) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let counts = log.topic("counts").unwrap();
    let mut last = std::collections::BTreeMap::new();
    for p in 0..counts.partitions() {
        let mut reader = counts.reader(p).unwrap();
        reader.set_isolation(Isolation::ReadCommitted);
        for (_, r) in read_all(&mut reader, 0) {
            last.insert(r.key.unwrap(), r.value.unwrap());
        }
    }
    last
}

#[test]
fn a_format_2_data_directory_reads_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new(FIXTURE_2), dir.path());
    // Only the topics that hold transactional batches are of format 2.
    assert_eq!(topic_format(dir.path(), "events"), 1);
    for t in ["txn", "counts", "counter-events-changelog"] {
        assert_eq!(topic_format(dir.path(), t), 2, "{t}");
    }
    let log = Log::open(dir.path()).unwrap();
    let mut txn = log.topic("txn").unwrap().reader(0).unwrap();
    let values = |r: &mut eddy::PartitionReader| -> Vec<Vec<u8>> {
        read_all(r, 0)
            .into_iter()
            .map(|(_, r)| r.value.unwrap())
            .collect()
    };
    assert_eq!(
        values(&mut txn),
        [
            b"t0".to_vec(),
            b"t1".to_vec(),
            b"t2".to_vec(),
            b"open".to_vec()
        ]
    );
    txn.set_isolation(Isolation::ReadCommitted);
    assert_eq!(values(&mut txn), [b"t0".to_vec(), b"t2".to_vec()]);
    // The open transaction's producer starts again: its transaction is aborted.
    let (_, completed) = TransactionalProducer::start(&log, "fixture").unwrap();
    assert_eq!(completed, eddy::Completed::Aborted);
    assert_eq!(values(&mut txn), [b"t0".to_vec(), b"t2".to_vec()]);
    // The exactly-once application continues from its committed offsets and restored state.
    for k in 0..5 {
        assert_eq!(
            last_counts(&log)[format!("k{k}").as_bytes()],
            b"30".to_vec()
        );
    }
    append_events(&log, 300..310);
    let mut app = counter_with(dir.path(), ProcessingGuarantee::ExactlyOnce);
    app.run_until_idle().unwrap();
    assert!(app.metrics().restored_entries > 0);
    assert_eq!(app.metrics().records_in, 10, "only the new events");
    for k in 0..5 {
        assert_eq!(
            last_counts(&log)[format!("k{k}").as_bytes()],
            b"31".to_vec(),
            "key k{k}"
        );
    }
}

#[test]
fn a_topic_becomes_format_2_at_its_first_transactional_batch_and_alter_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic_or_create("t", TopicConfig::default()).unwrap();
    topic
        .writer(0)
        .unwrap()
        .append(&[Record::value("plain")])
        .unwrap();
    assert_eq!(
        topic_format(dir.path(), "t"),
        1,
        "plain appends keep format 1"
    );
    let (mut p, _) = TransactionalProducer::start(&log, "id").unwrap();
    p.append("t", 0, &[Record::value("in a transaction")])
        .unwrap();
    assert_eq!(topic_format(dir.path(), "t"), 2);
    p.commit(None).unwrap();
    log.alter_topic_config("t", &["retention.ms=1000"]).unwrap();
    assert_eq!(
        topic_format(dir.path(), "t"),
        2,
        "altering settings keeps the format"
    );
}

fn unsupported(e: &LogError) -> Option<(&'static str, u64)> {
    match e {
        LogError::UnsupportedFormat { what, found, .. } => Some((what, *found)),
        _ => None,
    }
}

#[test]
fn newer_formats_are_refused_and_left_as_they_are() {
    // A data directory of a newer format.
    let dir = fixture_copy();
    std::fs::write(
        dir.path().join("eddy-format"),
        "eddy data directory format 2\n",
    )
    .unwrap();
    let err = Log::open(dir.path()).err().unwrap();
    assert_eq!(unsupported(&err), Some(("data directory", 2)), "{err}");
    assert!(
        err.to_string().contains("use a newer eddy")
            || err.to_string().contains("Use a newer eddy")
    );

    // A topic of a newer format, even one whose topic.json no longer parses as format 1.
    let dir = fixture_copy();
    let meta = dir.path().join("topics/events/topic.json");
    std::fs::write(
        &meta,
        r#"{"format": 3, "name": "events", "layout": "something new"}"#,
    )
    .unwrap();
    let before = std::fs::read(&meta).unwrap();
    let err = Log::open(dir.path())
        .unwrap()
        .topic("events")
        .err()
        .unwrap();
    assert_eq!(unsupported(&err), Some(("topic", 3)), "{err}");
    let out = run(dir.path(), &["topics", "describe", "events"], b"");
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("format 3"));
    assert_eq!(std::fs::read(&meta).unwrap(), before);

    // A commit record of a newer format.
    let dir = fixture_copy();
    let offsets = dir.path().join("groups/g/offsets");
    let mut bytes = std::fs::read(&offsets).unwrap();
    let payload = b"a future commit record".to_vec();
    bytes.push(3);
    bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    bytes.extend_from_slice(&payload);
    std::fs::write(&offsets, &bytes).unwrap();
    let log = Log::open(dir.path()).unwrap();
    let err = Groups::new(&log).committed("g").unwrap_err();
    assert!(err.to_string().contains("commit record format 3"), "{err}");
    assert_eq!(std::fs::read(&offsets).unwrap(), bytes);
}

#[test]
fn a_state_store_of_a_newer_format_is_refused_not_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("events", TopicConfig::with_partitions(2))
        .unwrap();
    append_events(&log, 0..10);
    counter(dir.path()).run_until_idle().unwrap();
    let store = dir.path().join("state/counter/events/0");
    {
        let db = rocksdb::DB::open_default(&store).unwrap();
        db.put(b"\0format", 2u64.to_be_bytes()).unwrap();
    }
    let err = counter(dir.path()).run_until_idle().unwrap_err();
    assert!(err.to_string().contains("state store format 2"), "{err}");
    assert!(store.exists(), "the store was kept");
    let aside = std::fs::read_dir(store.parent().unwrap())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("corrupt")
        })
        .count();
    assert_eq!(aside, 0, "not moved aside as corrupt");
}
