//! An application entirely on a real Kafka-protocol broker (tansu, started here) through
//! `eddy_kafka::backend::KafkaBackend`: input, group, outputs and changelogs in Kafka, state in
//! the local RocksDB. Its counts are exact, a lost store comes back from the changelog in
//! Kafka, and exactly-once is refused with an error naming the broker.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::kafka_counts;

use std::collections::BTreeMap;
use std::time::Duration;

use eddy::{
    partition_for_key, AppConfig, Application, ProcessingGuarantee, Record, StreamError,
    TopicCatalog, TopicConfig,
};
use eddy_kafka::backend::{reset_offsets, KafkaBackend, KafkaProducer, KafkaTopics};
use eddy_kafka::local_broker::LocalBroker;
use eddy_kafka::KafkaSettings;

const KEYS: u64 = 7;

fn produce(broker: &LocalBroker, from: u64, to: u64) {
    let settings = KafkaSettings::new(broker.brokers());
    let topics = KafkaTopics::new(settings.clone(), -1).unwrap();
    topics
        .topic_or_create("words", TopicConfig::with_partitions(2))
        .unwrap();
    let producer = KafkaProducer::new(settings).unwrap();
    for i in from..to {
        let key = format!("w{}", i % KEYS);
        let partition = partition_for_key(key.as_bytes(), 2);
        let record = Record::keyed(key, i.to_string()).at(1_700_000_000_000 + i as i64);
        producer.send("words", partition, &[record]).unwrap();
    }
    producer.flush().unwrap();
}

fn counter_on_kafka(broker: &LocalBroker, dir: &std::path::Path, eos: bool) -> Application {
    let mut config = AppConfig::new(dir, "counter");
    config.commit_interval = Duration::from_millis(100);
    if eos {
        config.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
    }
    let backend = KafkaBackend::new(KafkaSettings::new(broker.brokers()), -1).unwrap();
    common::counter(
        Application::with_backend(config, backend).unwrap(),
        "counts",
    )
}

fn exact(total: u64) -> BTreeMap<String, Vec<u64>> {
    let mut by_key = BTreeMap::<String, Vec<u64>>::new();
    for i in 0..total {
        let list = by_key.entry(format!("w{}", i % KEYS)).or_default();
        list.push(list.len() as u64 + 1);
    }
    by_key
}

#[test]
fn a_stateful_application_on_kafka_counts_exactly_and_restores_a_lost_store_from_kafka() {
    let broker = LocalBroker::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    produce(&broker, 0, 500);
    let mut app = counter_on_kafka(&broker, dir.path(), false);
    app.run_until_idle().unwrap();
    let metrics = app.metrics();
    assert_eq!(metrics.records_in, 500);
    let lag: Vec<_> = metrics.lag.into_iter().collect();
    let caught_up = vec![(("words".to_owned(), 0), 0), (("words".to_owned(), 1), 0)];
    assert_eq!(lag, caught_up, "lag per partition");
    drop(app);
    assert_eq!(kafka_counts(&broker, "counts", 500), exact(500));

    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    produce(&broker, 500, 700);
    let mut app = counter_on_kafka(&broker, dir.path(), false);
    app.run_until_idle().unwrap();
    let metrics = app.metrics();
    assert!(
        metrics.restored_entries > 0,
        "restored from the changelog in Kafka"
    );
    assert_eq!(metrics.records_in, 200, "resumed at the committed offsets");
    drop(app);
    assert_eq!(kafka_counts(&broker, "counts", 700), exact(700));
}

#[test]
fn exactly_once_on_kafka_is_refused_naming_the_broker() {
    let broker = LocalBroker::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    produce(&broker, 0, 5);
    let mut app = counter_on_kafka(&broker, dir.path(), true);
    match app.run_until_idle() {
        Err(StreamError::Setup(m)) => {
            assert!(
                m.contains("exactly-once") && m.contains(&broker.brokers()),
                "{m}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_reset_of_the_group_on_kafka_clears_the_state_as_a_local_reset_does() {
    let broker = LocalBroker::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    produce(&broker, 0, 300);
    let mut app = counter_on_kafka(&broker, dir.path(), false);
    app.run_until_idle().unwrap();
    drop(app);
    assert_eq!(kafka_counts(&broker, "counts", 300), exact(300));

    let settings = KafkaSettings::new(broker.brokers());
    let target = eddy::ResetTarget::Earliest;
    let preview = reset_offsets(&settings, "counter", "words", &target, false).unwrap();
    assert_eq!(preview.len(), 2);
    assert!(preview
        .iter()
        .all(|r| r.new_offset == 0 && r.current_offset > Some(0)));
    let rows = reset_offsets(&settings, "counter", "words", &target, true).unwrap();
    assert_eq!(rows, preview);

    // The rerun counts from 1 again, each record once: the state went with the offsets, on
    // the store kept in the data directory as on one restored from Kafka.
    for fresh in [false, true] {
        if fresh {
            reset_offsets(&settings, "counter", "words", &target, true).unwrap();
            std::fs::remove_dir_all(dir.path().join("state")).unwrap();
        }
        let mut app = counter_on_kafka(&broker, dir.path(), false);
        app.run_until_idle().unwrap();
        let metrics = app.metrics();
        assert_eq!(metrics.records_in, 300, "fresh store: {fresh}");
        assert_eq!(metrics.state_resets, 2, "fresh store: {fresh}");
        drop(app);
    }
    let all = kafka_counts(&broker, "counts", 900);
    for (key, counts) in exact(300) {
        let written = &all[&key];
        assert_eq!(written.len(), 3 * counts.len(), "{key}");
        for run in written.chunks(counts.len()) {
            let mut run = run.to_vec();
            run.sort_unstable();
            assert_eq!(run, counts, "{key}: each run counts from 1");
        }
    }
}

#[test]
fn a_read_from_the_middle_of_the_last_batch_returns_the_rest_of_it() {
    // tansu 0.6 answers a fetch from the middle of a topic's last batch with nothing at all.
    let broker = LocalBroker::start().unwrap();
    let settings = KafkaSettings::new(broker.brokers());
    let topics = KafkaTopics::new(settings.clone(), -1).unwrap();
    topics
        .topic_or_create("one-batch", TopicConfig::with_partitions(1))
        .unwrap();
    let producer = KafkaProducer::new(settings).unwrap();
    let records: Vec<Record> = (0..2_000)
        .map(|i| Record::keyed("k", format!("{i}")))
        .collect();
    producer.send("one-batch", 0, &records).unwrap();
    producer.flush().unwrap();
    let mut reader = topics
        .reader("one-batch", 0, eddy::Isolation::ReadCommitted)
        .unwrap();
    assert_eq!(reader.bounds().unwrap(), (0, 2_000));
    let fetch = reader.read(1_990, 100, 1 << 20).unwrap();
    let offsets: Vec<u64> = fetch.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (1_990..2_000).collect::<Vec<u64>>());
}
