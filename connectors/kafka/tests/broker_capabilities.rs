//! What the local test broker (tansu) supports of what an application on a Kafka cluster needs,
//! found by using it: consumer groups with the classic and cooperative protocols, committed
//! offsets, idempotent producers, compacted topics — but not the metadata of a commit (it
//! comes back empty; Kafka keeps it) and not transactions (ending one is refused), so on this
//! broker a reset cannot be told by its commit metadata and exactly-once must be refused
//! (`docs/kafka.md`). A broker upgrade that changes any of these fails here first.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use eddy_kafka::local_broker::LocalBroker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

fn config(broker: &LocalBroker) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", broker.brokers());
    c
}

fn create(broker: &LocalBroker, topic: NewTopic<'_>) {
    let admin: AdminClient<DefaultClientContext> = config(broker).create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = futures_executor::block_on(admin.create_topics([&topic], &options)).unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[test]
fn the_test_broker_has_groups_commits_and_idempotence_but_no_commit_metadata_nor_transactions() {
    let broker = LocalBroker::start().unwrap();
    create(
        &broker,
        NewTopic::new("events", 2, TopicReplication::Fixed(-1)),
    );
    let compacted = NewTopic::new("changelog", 2, TopicReplication::Fixed(-1));
    create(&broker, compacted.set("cleanup.policy", "compact"));

    let producer: BaseProducer = config(&broker)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in 0..10 {
        let key = format!("k{i}");
        let record = BaseRecord::to("events")
            .key(&key)
            .payload("v")
            .partition(i % 2);
        producer.send(record).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    for strategy in ["range", "cooperative-sticky"] {
        let group = format!("g-{strategy}");
        let consumer: BaseConsumer = config(&broker)
            .set("group.id", &group)
            .set("partition.assignment.strategy", strategy)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&["events"]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut read = 0;
        while read < 10 && Instant::now() < deadline {
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                m.unwrap();
                read += 1;
            }
        }
        assert_eq!(read, 10, "{strategy}: every record read in the group");
        assert_eq!(consumer.assignment().unwrap().count(), 2, "{strategy}");
        let mut offsets = TopicPartitionList::new();
        for p in 0..2 {
            let mut e = offsets.add_partition("events", p);
            e.set_offset(Offset::Offset(5)).unwrap();
            e.set_metadata(format!("eddy:checkpoint {p}"));
        }
        consumer.commit(&offsets, CommitMode::Sync).unwrap();
        let committed = consumer.committed(Duration::from_secs(10)).unwrap();
        let found: Vec<(i32, Offset, String)> = (committed.elements().iter())
            .map(|e| (e.partition(), e.offset(), e.metadata().to_owned()))
            .collect();
        assert_eq!(
            found,
            [
                (0, Offset::Offset(5), String::new()),
                (1, Offset::Offset(5), String::new())
            ],
            "{strategy}: the offsets come back, their metadata does not"
        );
    }

    let transactional: BaseProducer = config(&broker)
        .set("transactional.id", "probe")
        .create()
        .unwrap();
    transactional
        .init_transactions(Duration::from_secs(10))
        .unwrap();
    transactional.begin_transaction().unwrap();
    let record = BaseRecord::to("events").key("t").payload("x").partition(0);
    transactional.send(record).unwrap();
    let committed = transactional.commit_transaction(Duration::from_secs(10));
    let refusal = (committed.expect_err("tansu 0.6 ends no transaction")).to_string();
    assert!(refusal.contains("EndTxn"), "{refusal}");
}
