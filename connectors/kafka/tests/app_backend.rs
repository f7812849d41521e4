//! An application whose outputs and store changelogs are on a real Kafka-protocol broker
//! (tansu, started here), its input and group on the local log: `KafkaBackend`'s catalog, sink
//! and changelogs composed with the local backend behind `Application::with_backend`. Its counts equal those of the same
//! pipeline on the local log, and a lost store comes back from the changelog in Kafka.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::{counter, kafka_counts, last_counts};

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use eddy::{
    AppConfig, Application, Backend, Changelog, GroupSettings, GroupSource, Isolation,
    LocalBackend, Log, OutputSink, PartitionRead, ProducerIdentity, Record, StreamResult,
    TopicCatalog, TopicConfig, TopicInfo,
};
use eddy_kafka::backend::KafkaBackend;
use eddy_kafka::local_broker::LocalBroker;
use eddy_kafka::KafkaSettings;

/// The local log for the input topic and the group; Kafka for everything else.
struct Hybrid {
    local: LocalBackend,
    kafka: KafkaBackend,
}

struct HybridTopics {
    local: Rc<dyn TopicCatalog>,
    kafka: Rc<dyn TopicCatalog>,
}

impl TopicCatalog for HybridTopics {
    fn topic_or_create(&self, name: &str, config: TopicConfig) -> StreamResult<TopicInfo> {
        match name {
            "words" => self.local.topic_or_create(name, config),
            _ => self.kafka.topic_or_create(name, config),
        }
    }
    fn reader(
        &self,
        topic: &str,
        partition: u32,
        isolation: Isolation,
    ) -> StreamResult<Box<dyn PartitionRead>> {
        self.kafka.reader(topic, partition, isolation)
    }
}

impl Backend for Hybrid {
    fn describe(&self) -> String {
        "local input, Kafka outputs and changelogs".into()
    }
    fn catalog(&self) -> Rc<dyn TopicCatalog> {
        Rc::new(HybridTopics {
            local: self.local.catalog(),
            kafka: self.kafka.catalog(),
        })
    }
    fn group_source(&self, settings: &GroupSettings) -> StreamResult<Box<dyn GroupSource>> {
        self.local.group_source(settings)
    }
    fn output_sink(&self, fsync: bool) -> StreamResult<Box<dyn OutputSink>> {
        self.kafka.output_sink(fsync)
    }
    fn changelog(
        &self,
        topic: &TopicInfo,
        partition: u32,
        transaction: Option<ProducerIdentity>,
    ) -> StreamResult<Box<dyn Changelog>> {
        self.kafka.changelog(topic, partition, transaction)
    }
}

fn produce(dir: &Path, from: u64, to: u64) {
    let log = Log::open(dir).unwrap();
    let topic = log
        .topic_or_create("words", TopicConfig::with_partitions(2))
        .unwrap();
    topic
        .append((from..to).map(|i| Record::keyed(format!("w{}", i % 5), i.to_string())))
        .unwrap();
}

fn config(dir: &Path, group: &str) -> AppConfig {
    let mut c = AppConfig::new(dir, group);
    c.commit_interval = Duration::from_millis(50);
    c
}

fn hybrid(broker: &LocalBroker, dir: &Path) -> Hybrid {
    Hybrid {
        local: LocalBackend::new(Log::open(dir).unwrap()),
        kafka: KafkaBackend::new(KafkaSettings::new(broker.brokers()), -1).unwrap(),
    }
}

#[test]
fn outputs_and_changelogs_in_kafka_give_the_local_counts_and_a_lost_store_comes_back_from_kafka() {
    let broker = LocalBroker::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    produce(dir.path(), 0, 300);
    let local = Application::new(config(dir.path(), "local")).unwrap();
    counter(local, "local-counts").run_until_idle().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let mut expected = BTreeMap::new();
    let t = log.topic("local-counts").unwrap();
    for p in 0..2 {
        let mut reader = t.reader(p).unwrap();
        let fetch = reader.read(0, 10_000, 1 << 20).unwrap();
        for r in fetch.iter() {
            let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            let count: u64 = serde_json::from_slice(r.value.unwrap()).unwrap();
            expected.insert(key, count);
        }
    }

    let app = Application::with_backend(config(dir.path(), "k"), hybrid(&broker, dir.path()));
    let mut app = counter(app.unwrap(), "k-counts");
    app.run_until_idle().unwrap();
    drop(app);
    assert_eq!(
        last_counts(kafka_counts(&broker, "k-counts", 300)),
        expected
    );

    // The store is lost; the changelog in Kafka has it.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    produce(dir.path(), 300, 400);
    let app = Application::with_backend(config(dir.path(), "k"), hybrid(&broker, dir.path()));
    let mut app = counter(app.unwrap(), "k-counts");
    app.run_until_idle().unwrap();
    assert!(app.metrics().restored_entries > 0, "restored from Kafka");
    drop(app);
    let local_topics = Log::open(dir.path()).unwrap().list_topics().unwrap();
    assert!(
        !local_topics.iter().any(|t| t.starts_with("k-")),
        "outputs and changelogs are in Kafka only: {local_topics:?}"
    );
    let counts = last_counts(kafka_counts(&broker, "k-counts", 400));
    assert_eq!(counts.values().sum::<u64>(), 400, "{counts:?}");
}
