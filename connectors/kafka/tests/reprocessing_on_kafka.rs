//! The reprocessing tutorial on a real Kafka-protocol broker (tansu, started here), built by
//! the same functions as on the local log (`eddy_examples::gps`): track points into Kafka, the
//! distance calculator in miles, the database writer, then a reset of the calculator's group
//! to the earliest offsets (`reset_offsets`, refused while the calculator runs), the
//! calculator again in kilometres, the writer again: every row of the database is then the
//! track's geodesic total in kilometres.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use eddy::{
    partition_for_key, Application, Backend, ErrorPolicy, GroupSettings, Record, ResetTarget,
    TopicCatalog, TopicConfig,
};
use eddy_examples::gps::{
    distance_calculator_on, distance_config, geodesic_meters, query, read_csv, write_db_from, Unit,
    DISTANCE_GROUP, POINTS_TOPIC, WRITER_GROUP,
};
use eddy_kafka::backend::{reset_offsets, KafkaBackend, KafkaProducer, KafkaTopics};
use eddy_kafka::local_broker::LocalBroker;
use eddy_kafka::KafkaSettings;

const PARTITIONS: u32 = 3;

fn csv() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/data/go_track_trackspoints_sm.csv")
}

/// Each track's geodesic length in metres, point after point in file order.
fn geodesic_totals() -> BTreeMap<i64, f64> {
    let mut last = BTreeMap::new();
    let mut totals = BTreeMap::new();
    for p in read_csv(&csv()).unwrap() {
        let here = (p.latitude, p.longitude);
        let total = totals.entry(p.track_id as i64).or_insert(0.0);
        if let Some(previous) = last.insert(p.track_id, here) {
            *total += geodesic_meters(previous, here);
        }
    }
    totals
}

fn calculator(broker: &LocalBroker, dir: &Path, unit: Unit) -> Application {
    let mut config = distance_config(dir, ErrorPolicy::Fail);
    config.on_restore_progress = None;
    let backend = KafkaBackend::new(KafkaSettings::new(broker.brokers()), -1).unwrap();
    distance_calculator_on(Application::with_backend(config, backend).unwrap(), unit).unwrap()
}

fn write_db(broker: &LocalBroker, db: &Path) -> u64 {
    let backend = KafkaBackend::new(KafkaSettings::new(broker.brokers()), -1).unwrap();
    let member = backend
        .group_source(&GroupSettings::new(WRITER_GROUP))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    write_db_from(member, db, true, stop).unwrap()
}

fn assert_rows(db: &Path, totals: &BTreeMap<i64, f64>, metres_per_unit: f64) {
    let rows: BTreeMap<i64, f64> = query(db).unwrap().into_iter().collect();
    assert_eq!(rows.len(), totals.len(), "a row per track");
    for (track, metres) in totals {
        let want = metres / metres_per_unit;
        let got = rows[track];
        assert!(
            (got - want).abs() <= 1e-9 * want.max(1.0),
            "track {track}: {got} ≠ {want}"
        );
    }
}

#[test]
fn the_rewind_on_kafka_turns_every_row_into_kilometres() {
    let broker = LocalBroker::start().unwrap();
    let settings = KafkaSettings::new(broker.brokers());
    let topics = KafkaTopics::new(settings.clone(), -1).unwrap();
    topics
        .topic_or_create(POINTS_TOPIC, TopicConfig::with_partitions(PARTITIONS))
        .unwrap();
    let producer = KafkaProducer::new(settings.clone()).unwrap();
    for p in read_csv(&csv()).unwrap() {
        let key = p.track_id.to_string();
        let record = Record::keyed(key.clone(), serde_json::to_vec(&p).unwrap());
        let partition = partition_for_key(key.as_bytes(), PARTITIONS);
        producer.send(POINTS_TOPIC, partition, &[record]).unwrap();
    }
    producer.flush().unwrap();
    let totals = geodesic_totals();
    let (dir, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = db.path().join("distance-stats.db");

    calculator(&broker, dir.path(), Unit::Miles)
        .run_until_idle()
        .unwrap();
    assert!(write_db(&broker, &db) > 0);
    assert_rows(&db, &totals, 1_609.344);

    // Refused while the calculator is a member of its group.
    let (path, brokers) = (dir.path().to_owned(), broker.brokers());
    let (tx, rx) = mpsc::channel();
    let running = std::thread::spawn(move || {
        let mut config = distance_config(&path, ErrorPolicy::Fail);
        config.on_restore_progress = None;
        let backend = KafkaBackend::new(KafkaSettings::new(brokers), -1).unwrap();
        let app = Application::with_backend(config, backend).unwrap();
        let mut app = distance_calculator_on(app, Unit::Km).unwrap();
        tx.send(app.stop_handle()).unwrap();
        app.run().unwrap();
        app.metrics().records_in
    });
    let stop = rx.recv().unwrap();
    // Dry runs until it has joined (a dry run is refused as well, and changes nothing).
    let target = ResetTarget::Earliest;
    let mut refused = None;
    for _ in 0..200 {
        if let Err(e) = reset_offsets(&settings, DISTANCE_GROUP, POINTS_TOPIC, &target, false) {
            refused = Some(e.to_string());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    assert_eq!(
        running.join().unwrap(),
        0,
        "stopped before anything new came"
    );
    let refused = refused.expect("a reset while the calculator runs is refused");
    assert!(refused.contains("active member"), "{refused}");

    reset_offsets(&settings, DISTANCE_GROUP, POINTS_TOPIC, &target, true).unwrap();
    let mut again = calculator(&broker, dir.path(), Unit::Km);
    again.run_until_idle().unwrap();
    assert_eq!(again.metrics().state_resets, u64::from(PARTITIONS));
    drop(again);
    assert!(write_db(&broker, &db) > 0);
    assert_rows(&db, &totals, 1_000.0);
}
