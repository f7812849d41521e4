//! An application on a Kafka cluster (`eddy_kafka::backend::KafkaBackend`), end to end: prints
//! `name=<figure> records_per_s=<n> ...` lines, against a local tansu broker (started here
//! unless `--brokers` is given).
//!
//! - `kafka_consumer`: librdkafka's consumer alone reading the input topic from its start (no
//!   group), the baseline of what the broker serves;
//! - `kafka_app_stateful_count`: `--records` JSON-free records over `--keys` keys in a Kafka
//!   topic (2 partitions), counted per key by an application whose input, group, outputs and
//!   changelogs are in Kafka (state in local RocksDB), start to idle;
//! - `kafka_changelog_restore`: the same application after its state directory was deleted:
//!   entries restored from the changelog in Kafka per second (`records` = entries restored);
//! - `kafka_tumbling_10s_json_5_keys`: the sensor workload of `benches/peers/` (`--sensor-events`
//!   readings over 5 keys, one partition, 10 s tumbling windows with 1 s grace,
//!   count/min/max/mean, final results) on Kafka, as `benches/peers/quix_sensor.py` runs Quix
//!   Streams on the same broker; the windows written are counted against the windows closed.
//!
//! `cargo run --release -p eddy-benches --bin kafka-app-bench [-- --records N --keys K]`

use std::time::{Duration, Instant};

use clap::Parser;
use eddy::{
    partition_for_key, AppConfig, Application, Json, Record, State, Str, TopicCatalog, TopicConfig,
};
use eddy_benches::{work_dir, Figure};
use eddy_kafka::backend::{KafkaBackend, KafkaProducer, KafkaTopics};
use eddy_kafka::local_broker::LocalBroker;
use eddy_kafka::KafkaSettings;

/// Options of `kafka-app-bench`.
#[derive(clap::Parser)]
struct Options {
    /// Input records.
    #[arg(long, default_value_t = 500_000)]
    records: u64,
    /// Distinct keys (state entries, changelog entries per checkpoint at most).
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Readings of the sensor workload.
    #[arg(long, default_value_t = 200_000)]
    sensor_events: u64,
    /// Use this broker instead of starting tansu.
    #[arg(long)]
    brokers: Option<String>,
}

fn produce(settings: &KafkaSettings, records: u64, keys: u64) -> u64 {
    let topics = KafkaTopics::new(settings.clone(), -1).expect("topics");
    (topics.topic_or_create("words", TopicConfig::with_partitions(2))).expect("topic");
    let producer = KafkaProducer::new(settings.clone()).expect("producer");
    let mut bytes = 0;
    let mut batch: [Vec<Record>; 2] = [Vec::new(), Vec::new()];
    for i in 0..records {
        let key = format!("key-{}", i % keys);
        let p = partition_for_key(key.as_bytes(), 2) as usize;
        bytes += key.len() as u64 + 8;
        batch[p].push(Record::keyed(key, format!("{i:08}")));
        if batch[p].len() == 10_000 {
            producer.send("words", p as u32, &batch[p]).expect("send");
            batch[p].clear();
        }
    }
    for (p, rest) in batch.iter().enumerate() {
        producer.send("words", p as u32, rest).expect("send");
    }
    producer.flush().expect("flush");
    bytes
}

/// librdkafka's consumer reading all `records` of `words` from the start.
fn consume_all(settings: &KafkaSettings, records: u64, bytes: u64) -> Figure {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("group.id", "bench-baseline")
        // The fetch settings the backend's readers use (librdkafka's defaults: about 140 K/s).
        .set("fetch.message.max.bytes", "16777216")
        .set("fetch.max.bytes", "104857600")
        .set("queued.min.messages", "1000000")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..2 {
        (tpl.add_partition_offset("words", p, rdkafka::Offset::Beginning)).expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let start = Instant::now();
    let mut read = 0;
    while read < records && start.elapsed() < Duration::from_secs(300) {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            m.expect("message");
            read += 1;
        }
    }
    Figure {
        name: "kafka_consumer",
        records: read,
        bytes,
        elapsed: start.elapsed(),
        baseline_records_per_s: None,
    }
}

fn counter(settings: &KafkaSettings, dir: &std::path::Path) -> Application {
    let mut config = AppConfig::new(dir, "bench");
    config.commit_interval = Duration::from_secs(1);
    let backend = KafkaBackend::new(settings.clone(), -1).expect("backend");
    let app = Application::with_backend(config, backend).expect("app");
    let words = app.topic::<Str, Str>("words").expect("topic");
    let counts = (app
        .topic_with_config::<Str, Json<u64>>("counts", TopicConfig::with_partitions(2)))
    .expect("topic");
    app.dataframe(&words)
        .stateful_map(|_, state: &mut State<'_>| {
            let n = state.get_or::<u64>("n", 0) + 1;
            state.set("n", &n);
            n
        })
        .to_topic(&counts);
    app
}

/// The sensor workload on Kafka (module docs).
fn sensor_windows(settings: &KafkaSettings, dir: &std::path::Path, events: u64) -> Figure {
    use eddy::aggregate::{Count, Max, Mean, Min};
    use eddy::{Closing, WindowResult};
    use eddy_benches::sensor;
    let topics = KafkaTopics::new(settings.clone(), -1).expect("topics");
    (topics.topic_or_create("sensors", TopicConfig::with_partitions(1))).expect("topic");
    let producer = KafkaProducer::new(settings.clone()).expect("producer");
    let mut bytes = 0;
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..events {
        let (key, value, ts) = sensor::reading(i, 5);
        bytes += (key.len() + value.len()) as u64;
        batch.push(Record::keyed(key, value).at(ts));
        if batch.len() == 10_000 || i + 1 == events {
            producer.send("sensors", 0, &batch).expect("send");
            batch.clear();
        }
    }
    producer.flush().expect("flush");

    let backend = KafkaBackend::new(settings.clone(), -1).expect("backend");
    let app = Application::with_backend(AppConfig::new(dir, "windows"), backend).expect("app");
    let input = (app.topic::<Str, Json<sensor::TimedReading>>("sensors"))
        .expect("topic")
        .with_timestamp(|r, _| r.ts);
    let output =
        (app.topic::<Str, Json<WindowResult<(u64, f64, f64, f64)>>>("agg")).expect("topic");
    let v = |r: &sensor::TimedReading| r.value as f64;
    app.dataframe(&input)
        .tumbling_window(
            Duration::from_millis(sensor::WINDOW_MS as u64),
            Duration::from_millis(sensor::GRACE_MS as u64),
        )
        .closing(Closing::Key)
        .aggregate((Count, Min(v), Max(v), Mean(v)))
        .emit_final()
        .to_topic(&output);
    let mut app = app;
    let start = Instant::now();
    app.run_until_idle().expect("run");
    let elapsed = start.elapsed();
    let metrics = app.metrics();
    assert_eq!(metrics.records_in, events, "every reading processed");
    let closed = sensor::closed_windows(events, 5, Closing::Key);
    assert_eq!(
        metrics.records_out, closed,
        "each closed window written once"
    );
    Figure {
        name: "kafka_tumbling_10s_json_5_keys",
        records: events,
        bytes,
        elapsed,
        baseline_records_per_s: None,
    }
}

fn main() {
    let o = Options::parse();
    let (_broker, brokers) = match &o.brokers {
        Some(b) => (None, b.clone()),
        None => {
            let broker = LocalBroker::start().expect("start tansu");
            let b = broker.brokers();
            (Some(broker), b)
        }
    };
    let settings = KafkaSettings::new(brokers);
    let (_guard, root) = work_dir(None);
    let bytes = produce(&settings, o.records, o.keys);
    println!("{}", consume_all(&settings, o.records, bytes).line());

    let mut app = counter(&settings, &root);
    let start = Instant::now();
    app.run_until_idle().expect("run");
    let elapsed = start.elapsed();
    let processed = app.metrics().records_in;
    assert_eq!(processed, o.records, "every record processed");
    drop(app);
    let figure = Figure {
        name: "kafka_app_stateful_count",
        records: processed,
        bytes,
        elapsed,
        baseline_records_per_s: None,
    };
    println!("{}", figure.line());

    std::fs::remove_dir_all(root.join("state")).expect("delete the state");
    let mut app = counter(&settings, &root);
    let start = Instant::now();
    app.run_until_idle().expect("restore");
    let elapsed = start.elapsed();
    let restored = app.metrics().restored_entries;
    assert!(
        restored >= o.keys.min(o.records),
        "{restored} entries restored"
    );
    let figure = Figure {
        name: "kafka_changelog_restore",
        records: restored,
        bytes: 0,
        elapsed,
        baseline_records_per_s: None,
    };
    println!("{}", figure.line());
    drop(app);

    println!(
        "{}",
        sensor_windows(&settings, &root.join("sensor"), o.sensor_events).line()
    );
}
