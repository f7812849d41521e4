//! Kafka connector benchmark: prints
//! `name=<figure> records_per_s=<n> mb_per_s=<n> baseline_ratio=<r> peak_rss_kib=<n>`.
//!
//! Figures, against a local tansu broker (started here unless `--brokers` is given):
//! - `kafka_producer`: librdkafka's own producer sending the records from memory, with the
//!   mirror's producer settings (idempotent, linger 5 ms, batches of 10,000), until Kafka
//!   acknowledged them all.
//! - `mirror_out`: `eddy_kafka::mirror_out` sending the same records from a local topic to
//!   another Kafka topic until every one is acknowledged and committed; its baseline is
//!   `kafka_producer`.
//!
//! Usage: `mirror-bench [--records N] [--size BYTES] [--partitions P] [--brokers HOST:PORT]`.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::Parser;
use eddy::{Log, TopicConfig};
use eddy_benches::{records, work_dir, Figure};
use eddy_kafka::local_broker::LocalBroker;
use eddy_kafka::{mirror_out, KafkaSettings, MirrorOutConfig};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// Options of `mirror-bench`.
#[derive(clap::Parser)]
struct Options {
    /// Records per figure.
    #[arg(long, default_value_t = 500_000)]
    records: usize,
    /// Bytes of key plus value per record.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Partitions of the topics.
    #[arg(long, default_value_t = 3)]
    partitions: u32,
    /// Use this broker instead of starting tansu.
    #[arg(long)]
    brokers: Option<String>,
}

fn main() {
    let options = Options::parse();
    let (_broker, brokers) = match &options.brokers {
        Some(b) => (None, b.clone()),
        None => {
            let broker = LocalBroker::start().expect("start tansu");
            let b = broker.brokers();
            (Some(broker), b)
        }
    };
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let batch = records(options.records, options.size);
    let bytes = (options.records * options.size) as u64;

    let baseline_topic = format!("bench-producer-{run}");
    create_topic(&brokers, &baseline_topic, options.partitions);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .create()
        .expect("producer");
    let started = Instant::now();
    for (i, r) in batch.iter().enumerate() {
        let mut record = BaseRecord::<[u8], [u8]>::to(&baseline_topic)
            .partition((i % options.partitions as usize) as i32)
            .timestamp(r.timestamp.unwrap_or(0));
        if let Some(k) = &r.key {
            record = record.key(k);
        }
        if let Some(v) = &r.value {
            record = record.payload(v);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(300)).expect("flush");
    let baseline = Figure {
        name: "kafka_producer",
        records: options.records as u64,
        bytes,
        elapsed: started.elapsed(),
        baseline_records_per_s: None,
    };
    println!("{}", baseline.line());

    let (_tmp, dir) = work_dir(None);
    let log = Log::open(&dir).expect("log");
    let source = format!("bench-mirror-{run}");
    let topic = log
        .create_topic(&source, TopicConfig::with_partitions(options.partitions))
        .expect("topic");
    for chunk in batch.chunks(10_000) {
        topic.append(chunk.iter().cloned()).expect("append");
    }
    drop(batch);
    let mut config = MirrorOutConfig::new(KafkaSettings::new(&brokers), &source);
    config.until_idle = true;
    config.replication_factor = 1;
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let stats = mirror_out(&log, &config, &stop).expect("mirror out");
    assert_eq!(
        stats.records, options.records as u64,
        "every record mirrored"
    );
    let mirror = Figure {
        name: "mirror_out",
        records: stats.records,
        bytes,
        elapsed: started.elapsed(),
        baseline_records_per_s: Some(baseline.records_per_s()),
    };
    println!("{}", mirror.line());
}

/// Creates the baseline's topic through the connector's own path (a mirror of an empty topic).
fn create_topic(brokers: &str, name: &str, partitions: u32) {
    let (_tmp, dir) = work_dir(None);
    let log = Log::open(&dir).expect("log");
    log.create_topic(name, TopicConfig::with_partitions(partitions))
        .expect("topic");
    let mut config = MirrorOutConfig::new(KafkaSettings::new(brokers), name);
    config.until_idle = true;
    config.replication_factor = 1;
    mirror_out(&log, &config, &AtomicBool::new(false)).expect("create topic");
}
