//! What the application tests share: a running count per key, and the counts a Kafka topic
//! holds.
#![allow(dead_code, clippy::unwrap_used)]

pub mod relay;
pub mod sensor;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use eddy::{Application, Json, State, Str, TopicConfig};
use eddy_kafka::local_broker::LocalBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// A running count per key of topic `words` into `out` (2 partitions), built into `app`.
pub fn counter(app: Application, out: &str) -> Application {
    let words = app.topic::<Str, Str>("words").unwrap();
    let counts =
        (app.topic_with_config::<Str, Json<u64>>(out, TopicConfig::with_partitions(2))).unwrap();
    app.dataframe(&words)
        .stateful_map(|_, state: &mut State<'_>| {
            let n = state.get_or::<u64>("n", 0) + 1;
            state.set("n", &n);
            n
        })
        .to_topic(&counts);
    app
}

/// Every count in Kafka topic `topic` (2 partitions) by key, in order, once it holds `n`
/// records (read from the start, each record once).
pub fn kafka_counts(broker: &LocalBroker, topic: &str, n: usize) -> BTreeMap<String, Vec<u64>> {
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
    assert_eq!(seen.len(), n, "records of {topic} in Kafka");
    by_key
}

/// The last count of each key.
pub fn last_counts(by_key: BTreeMap<String, Vec<u64>>) -> BTreeMap<String, u64> {
    (by_key.into_iter())
        .map(|(k, counts)| (k, counts.into_iter().max().unwrap_or(0)))
        .collect()
}
