//! An application entirely on a real Kafka-protocol broker (tansu, started here) through
//! `eddy_kafka::backend::KafkaBackend`: input, group, outputs and changelogs in Kafka, state in
//! the local RocksDB. Its counts are exact, a lost store comes back from the changelog in
//! Kafka, and exactly-once is refused with an error naming the broker.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use eddy::{
    partition_for_key, AppConfig, Application, Json, ProcessingGuarantee, Record, State, Str,
    StreamError, TopicCatalog, TopicConfig,
};
use eddy_kafka::backend::{KafkaBackend, KafkaProducer, KafkaTopics};
use eddy_kafka::local_broker::LocalBroker;
use eddy_kafka::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

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

fn counter(broker: &LocalBroker, dir: &std::path::Path, eos: bool) -> Application {
    let mut config = AppConfig::new(dir, "counter");
    config.commit_interval = Duration::from_millis(100);
    if eos {
        config.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
    }
    let backend = KafkaBackend::new(KafkaSettings::new(broker.brokers()), -1).unwrap();
    let app = Application::with_backend(config, backend).unwrap();
    let words = app.topic::<Str, Str>("words").unwrap();
    let counts = app
        .topic_with_config::<Str, Json<u64>>("counts", TopicConfig::with_partitions(2))
        .unwrap();
    app.dataframe(&words)
        .stateful_map(|_, state: &mut State<'_>| {
            let n = state.get_or::<u64>("n", 0) + 1;
            state.set("n", &n);
            n
        })
        .to_topic(&counts);
    app
}

/// Every count in Kafka topic `counts` by key, once it holds `n` records.
fn counts(broker: &LocalBroker, n: usize) -> BTreeMap<String, Vec<u64>> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset("counts", p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let (mut seen, mut by_key) = (BTreeSet::new(), BTreeMap::<String, Vec<u64>>::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < n && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            if seen.insert((m.partition(), m.offset())) {
                let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
                let count = serde_json::from_slice(m.payload().unwrap()).unwrap();
                by_key.entry(key).or_default().push(count);
            }
        }
    }
    assert_eq!(seen.len(), n, "records in Kafka topic counts");
    by_key
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
    let mut app = counter(&broker, dir.path(), false);
    app.run_until_idle().unwrap();
    assert_eq!(app.metrics().records_in, 500);
    drop(app);
    assert_eq!(counts(&broker, 500), exact(500));

    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    produce(&broker, 500, 700);
    let mut app = counter(&broker, dir.path(), false);
    app.run_until_idle().unwrap();
    let metrics = app.metrics();
    assert!(
        metrics.restored_entries > 0,
        "restored from the changelog in Kafka"
    );
    assert_eq!(metrics.records_in, 200, "resumed at the committed offsets");
    drop(app);
    assert_eq!(counts(&broker, 700), exact(700));
}

#[test]
fn exactly_once_on_kafka_is_refused_naming_the_broker() {
    let broker = LocalBroker::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    produce(&broker, 0, 5);
    let mut app = counter(&broker, dir.path(), true);
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
