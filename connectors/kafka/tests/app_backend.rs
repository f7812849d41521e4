//! An application whose outputs and store changelogs are on a real Kafka-protocol broker
//! (tansu, started here), its input and group on the local log: `KafkaBackend`'s catalog, sink
//! and changelogs composed with the local backend behind `Application::with_backend`. Its counts equal those of the same
//! pipeline on the local log, and a lost store comes back from the changelog in Kafka.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use eddy::{
    AppConfig, Application, Backend, Changelog, GroupSettings, GroupSource, Isolation, Json,
    LocalBackend, Log, OutputSink, PartitionRead, ProducerIdentity, Record, State, Str,
    StreamResult, TopicCatalog, TopicConfig, TopicInfo,
};
use eddy_kafka::backend::KafkaBackend;
use eddy_kafka::local_broker::LocalBroker;
use eddy_kafka::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

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

fn counter(app: Application, out: &str) -> Application {
    let words = app.topic::<Str, Str>("words").unwrap();
    let config = TopicConfig::with_partitions(2);
    let counts = app
        .topic_with_config::<Str, Json<u64>>(out, config)
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

/// The last count of each key in Kafka topic `topic` (2 partitions), once it holds `n` records.
fn kafka_counts(broker: &LocalBroker, topic: &str, n: usize) -> BTreeMap<String, u64> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let (mut seen, mut last) = (BTreeSet::new(), BTreeMap::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < n && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            if seen.insert((m.partition(), m.offset())) {
                let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
                let count: u64 = serde_json::from_slice(m.payload().unwrap()).unwrap();
                let at = last.entry(key).or_insert(0);
                *at = (*at).max(count);
            }
        }
    }
    assert_eq!(seen.len(), n, "records of {topic} in Kafka");
    last
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
    assert_eq!(kafka_counts(&broker, "k-counts", 300), expected);

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
    let counts = kafka_counts(&broker, "k-counts", 400);
    assert_eq!(counts.values().sum::<u64>(), 400, "{counts:?}");
}
