//! How the mirrors resume, against a real broker (tansu on 127.0.0.1, started here), driven
//! through the library with bounded runs: a run that stopped between Kafka's acknowledgement (or
//! the local append) and its commit is resumed without repeats; a foreign writer, a wrong
//! partition count and a truncated destination are refused with errors that name them.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use eddy::{Groups, Log, Record, TopicConfig};
use eddy_kafka::local_broker::LocalBroker;
use eddy_kafka::{
    mirror_in, mirror_out, KafkaSettings, MirrorError, MirrorInConfig, MirrorOutConfig,
};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

fn fill(log: &Log, topic: &str, partitions: u32, from: u64, to: u64) {
    let t = log
        .topic_or_create(topic, TopicConfig::with_partitions(partitions))
        .unwrap();
    t.append((from..to).map(|i| {
        Record::keyed(format!("k{}", i % 13), format!("v{i}")).at(1_700_000_000_000 + i as i64)
    }))
    .unwrap();
}

fn out_config(brokers: &str, topic: &str, to: &str) -> MirrorOutConfig {
    let mut c = MirrorOutConfig::new(KafkaSettings::new(brokers), topic);
    c.to = to.into();
    c.until_idle = true;
    c
}

fn in_config(brokers: &str, topic: &str, to: &str) -> MirrorInConfig {
    let mut c = MirrorInConfig::new(KafkaSettings::new(brokers), topic);
    c.to = to.into();
    c.until_idle = true;
    c
}

fn records_in(log: &Log, topic: &str) -> u64 {
    let t = log.topic(topic).unwrap();
    t.describe().unwrap().iter().map(|p| p.end_offset).sum()
}

/// Moves every partition's commit of `group` back by `back` records, on both sides of the
/// metadata's offset map: the state a run leaves when it stops right before committing them.
fn roll_back(log: &Log, group: &str, back: u64) {
    let groups = Groups::new(log);
    for ((topic, p), (offset, meta)) in groups.committed(group).unwrap() {
        let mut meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
        let next = &mut meta["kafka_next"][p.to_string()];
        *next = (next.as_i64().unwrap() - back as i64).into();
        groups
            .alter_offsets(group, &[(&topic, p, offset - back)], &meta.to_string())
            .unwrap();
    }
}

#[test]
fn a_stop_between_delivery_and_commit_repeats_nothing_either_way() {
    let broker = LocalBroker::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let stop = AtomicBool::new(false);
    fill(&log, "src", 2, 0, 1_000);
    let out = out_config(&broker.brokers(), "src", "k-topic");
    assert_eq!(mirror_out(&log, &out, &stop).unwrap().records, 1_000);
    let inward = in_config(&broker.brokers(), "k-topic", "copy");
    assert_eq!(mirror_in(&log, &inward, &stop).unwrap().records, 1_000);

    // Both commits lag 40 records per partition behind what the other side holds.
    roll_back(&log, &out.group, 40);
    roll_back(&log, &inward.group, 40);
    fill(&log, "src", 2, 1_000, 1_500);
    let again = mirror_out(&log, &out, &stop).unwrap();
    assert_eq!((again.skipped, again.records), (80, 500));
    let again = mirror_in(&log, &inward, &stop).unwrap();
    assert_eq!((again.skipped, again.records), (80, 500));
    assert_eq!(records_in(&log, "copy"), 1_500);
    for p in 0..2 {
        let read = |topic: &str| {
            let mut r = log.topic(topic).unwrap().reader(p).unwrap();
            let fetch = r.read(0, 10_000, 1 << 24).unwrap();
            fetch
                .iter()
                .map(|r| {
                    (
                        r.key.map(<[u8]>::to_vec),
                        r.value.map(<[u8]>::to_vec),
                        r.timestamp,
                    )
                })
                .collect::<Vec<_>>()
        };
        let (src, copy) = (read("src"), read("copy"));
        assert_eq!(src.len(), copy.len(), "partition {p} sizes");
        if let Some(i) = (0..src.len()).find(|&i| src[i] != copy[i]) {
            panic!(
                "partition {p} differs first at {i}: {:?} vs {:?}",
                src[i], copy[i]
            );
        }
    }
}

#[test]
fn foreign_records_wrong_partition_counts_and_truncation_are_refused() {
    let broker = LocalBroker::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let stop = AtomicBool::new(false);
    fill(&log, "src", 2, 0, 100);
    let out = out_config(&broker.brokers(), "src", "shared");
    mirror_out(&log, &out, &stop).unwrap();

    // Another producer writes to the mirror's Kafka partition, and the mirror's last commit
    // is older than Kafka's end: the records past it are not all the mirror's.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    producer
        .send(
            BaseRecord::to("shared")
                .partition(0)
                .key("intruder")
                .payload("x"),
        )
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    roll_back(&log, &out.group, 1);
    fill(&log, "src", 2, 100, 200);
    match mirror_out(&log, &out, &stop) {
        Err(MirrorError::Mismatch(m)) => {
            assert!(
                m.contains("something else writes") && m.contains("partition 0"),
                "{m}"
            )
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }

    // A local topic of 3 partitions cannot mirror into a Kafka topic of 2, nor back.
    fill(&log, "three", 3, 0, 10);
    match mirror_out(
        &log,
        &out_config(&broker.brokers(), "three", "shared"),
        &stop,
    ) {
        Err(MirrorError::Mismatch(m)) => assert!(m.contains("2 partitions"), "{m}"),
        other => panic!("expected a partition-count refusal, got {other:?}"),
    }
    match mirror_in(
        &log,
        &in_config(&broker.brokers(), "shared", "three"),
        &stop,
    ) {
        Err(MirrorError::Mismatch(m)) => assert!(m.contains("local topic three has 3"), "{m}"),
        other => panic!("expected a partition-count refusal, got {other:?}"),
    }

    // A commit past Kafka's end: the Kafka topic lost records the mirror had delivered.
    fill(&log, "lost", 1, 0, 10);
    let lost = out_config(&broker.brokers(), "lost", "lost");
    mirror_out(&log, &lost, &stop).unwrap();
    fill(&log, "lost", 1, 10, 20);
    let groups = Groups::new(&log);
    let (offset, _) = groups.committed(&lost.group).unwrap()[&("lost".to_owned(), 0)].clone();
    let meta = r#"{"to":"lost","kafka_next":{"0":50}}"#;
    groups
        .alter_offsets(&lost.group, &[("lost", 0, offset)], meta)
        .unwrap();
    match mirror_out(&log, &lost, &stop) {
        Err(MirrorError::Mismatch(m)) => assert!(m.contains("truncated or recreated"), "{m}"),
        other => panic!("expected a truncation error, got {other:?}"),
    }
}

#[test]
fn mirror_out_forwards_committed_records_only() {
    let broker = LocalBroker::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let stop = AtomicBool::new(false);
    let t = log.topic_or_create("txn", TopicConfig::default()).unwrap();
    let w = t.writer(0).unwrap();
    let (kept, gone) = (
        eddy::ProducerIdentity { id: 1, epoch: 0 },
        eddy::ProducerIdentity { id: 2, epoch: 0 },
    );
    let rec = |v: &str| Record::keyed("k", v.to_owned()).at(1_700_000_000_000);
    w.append(&[rec("plain")]).unwrap();
    w.append_transactional(kept, &[rec("committed")]).unwrap();
    w.append_transactional(gone, &[rec("aborted")]).unwrap();
    w.end_transaction(gone, false).unwrap();
    w.end_transaction(kept, true).unwrap();
    w.append_transactional(kept, &[rec("still open")]).unwrap();
    let out = out_config(&broker.brokers(), "txn", "k-txn");
    assert_eq!(mirror_out(&log, &out, &stop).unwrap().records, 2);
    let inward = in_config(&broker.brokers(), "k-txn", "copy");
    assert_eq!(mirror_in(&log, &inward, &stop).unwrap().records, 2);
    let mut r = log.topic("copy").unwrap().reader(0).unwrap();
    let fetch = r.read(0, 100, 1 << 20).unwrap();
    let got: Vec<Vec<u8>> = fetch.iter().map(|r| r.value.unwrap().to_vec()).collect();
    assert_eq!(got, [b"plain".to_vec(), b"committed".to_vec()]);
    // Once it commits, the open transaction's record follows.
    w.end_transaction(kept, true).unwrap();
    assert_eq!(mirror_out(&log, &out, &stop).unwrap().records, 1);
}
