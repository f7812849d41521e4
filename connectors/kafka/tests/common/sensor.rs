//! The sensor tutorial on Kafka: the same deterministic readings written to Kafka or to a local
//! log, the tutorial's processor on either backend, and the windows it wrote.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use eddy::{
    partition_for_key, Application, Closing, ErrorPolicy, Log, Record, TopicCatalog, TopicConfig,
};
use eddy_examples::sensor::{
    format_ts, processor, processor_config, processor_on, Aggregated, Aggregation, Reading, Stats,
    AGG_TOPIC, RAW_TOPIC,
};
use eddy_kafka::backend::{KafkaBackend, KafkaProducer, KafkaTopics};
use eddy_kafka::local_broker::LocalBroker;
use eddy_kafka::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// Every result the processor wrote, by (sensor, window end), in the order written: a window
/// written twice (at-least-once, after a crash) has two entries.
pub type Windows = BTreeMap<(String, i64), Vec<Stats>>;

/// `n` readings of `sensors` sensors, as the tutorial's producer makes them (a random sensor and
/// value each, 0–1 s apart), the same for the same `seed`: (sensor, reading, timestamp ms).
pub fn readings(n: usize, sensors: usize, seed: u64) -> Vec<(String, Reading, i64)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut micros = 1_700_000_000_000_000i64;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let sensor = format!("Sensor{}", rng.usize(..sensors) + 1);
        let reading = Reading {
            ts: format_ts(micros),
            value: rng.i64(0..=100),
        };
        out.push((sensor, reading, micros / 1_000));
        micros += rng.i64(0..=1_000) * 1_000;
    }
    out
}

/// The readings as records, by the partition of `partitions` their sensor hashes to.
fn by_partition(
    readings: &[(String, Reading, i64)],
    partitions: u32,
) -> BTreeMap<u32, Vec<Record>> {
    let mut out = BTreeMap::<u32, Vec<Record>>::new();
    for (sensor, reading, ms) in readings {
        let value = serde_json::to_vec(reading).unwrap();
        let record = Record::keyed(sensor.clone(), value).at(*ms);
        (out.entry(partition_for_key(sensor.as_bytes(), partitions)))
            .or_default()
            .push(record);
    }
    out
}

/// Appends `readings` to Kafka's `raw-temp-data` (created with `partitions` when missing).
pub fn produce_to_kafka(
    broker: &LocalBroker,
    partitions: u32,
    readings: &[(String, Reading, i64)],
) {
    let settings = KafkaSettings::new(broker.brokers());
    let topics = KafkaTopics::new(settings.clone(), -1).unwrap();
    topics
        .topic_or_create(RAW_TOPIC, TopicConfig::with_partitions(partitions))
        .unwrap();
    let producer = KafkaProducer::new(settings).unwrap();
    for (p, records) in by_partition(readings, partitions) {
        producer.send(RAW_TOPIC, p, &records).unwrap();
    }
    producer.flush().unwrap();
}

/// Appends `readings` to Kafka's `raw-temp-data` (which exists) `chunk` at a time, flushed,
/// with `pause` between chunks; `after` is called with each chunk's number once it is in.
pub fn produce_paced(
    broker: &LocalBroker,
    partitions: u32,
    readings: &[(String, Reading, i64)],
    (chunk, pause): (usize, Duration),
    mut after: impl FnMut(usize),
) {
    let producer = KafkaProducer::new(KafkaSettings::new(broker.brokers())).unwrap();
    for (n, part) in readings.chunks(chunk).enumerate() {
        for (p, records) in by_partition(part, partitions) {
            producer.send(RAW_TOPIC, p, &records).unwrap();
        }
        producer.flush().unwrap();
        after(n);
        std::thread::sleep(pause);
    }
}

/// The windows the processor writes on the local log of a new directory for `readings` in
/// `partitions` partitions, run once without interruption.
pub fn local_windows(partitions: u32, readings: &[(String, Reading, i64)]) -> Windows {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log
        .topic_or_create(RAW_TOPIC, TopicConfig::with_partitions(partitions))
        .unwrap();
    for (p, records) in by_partition(readings, partitions) {
        topic.writer(p).unwrap().append(&records).unwrap();
    }
    let mut app = processor(
        dir.path(),
        Aggregation::Reduce,
        Closing::Key,
        ErrorPolicy::Fail,
    )
    .unwrap();
    app.run_until_idle().unwrap();
    drop(app);
    let out = log.topic(AGG_TOPIC).unwrap();
    let mut windows = Windows::new();
    for p in 0..out.partitions() {
        let mut reader = out.reader(p).unwrap();
        let mut at = 0;
        while at < reader.end_offset() {
            let fetch = reader.read(at, 10_000, 8 << 20).unwrap();
            for r in fetch.iter() {
                add(&mut windows, r.key.unwrap(), r.value.unwrap());
            }
            at = fetch.next_offset();
        }
    }
    windows
}

fn add(windows: &mut Windows, key: &[u8], value: &[u8]) {
    let sensor = String::from_utf8(key.to_vec()).unwrap();
    let result: Aggregated = serde_json::from_slice(value).unwrap();
    (windows.entry((sensor, result.time)).or_default()).push(result.temperature);
}

/// The sensor processor on the Kafka cluster at `brokers`, its state under `dir`, with
/// librdkafka `settings` on top of the connector's.
pub fn processor_on_kafka(
    brokers: &str,
    dir: &Path,
    commit_interval: Duration,
    settings: &[(&str, &str)],
) -> Application {
    let mut config = processor_config(dir, ErrorPolicy::Fail);
    config.on_restore_progress = None;
    config.commit_interval = commit_interval;
    let mut kafka = KafkaSettings::new(brokers);
    kafka.settings = (settings.iter())
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let backend = KafkaBackend::new(kafka, -1).unwrap();
    let app = Application::with_backend(config, backend).unwrap();
    processor_on(app, Aggregation::Reduce, Closing::Key).unwrap()
}

/// The windows in Kafka's `agg-temperature`, read from the start until `done` says they are
/// all there or `limit` passed.
pub fn kafka_windows(
    broker: &LocalBroker,
    limit: Duration,
    done: impl Fn(&Windows) -> bool,
) -> Windows {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "check-windows")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(AGG_TOPIC), Duration::from_secs(10))
        .unwrap();
    let partitions = metadata.topics()[0].partitions().len() as i32;
    assert!(partitions > 0, "{AGG_TOPIC} exists in Kafka");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(AGG_TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut windows = Windows::new();
    let deadline = Instant::now() + limit;
    while !done(&windows) && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            if seen.insert((m.partition(), m.offset())) {
                add(&mut windows, m.key().unwrap(), m.payload().unwrap());
            }
        }
    }
    windows
}

/// Windows written more than once (at-least-once repeats), after checking that each repeat
/// carries the same values as the first.
pub fn repeats(windows: &Windows) -> usize {
    let mut repeats = 0;
    for (window, written) in windows {
        assert!(
            written.iter().all(|w| w == &written[0]),
            "window {window:?} written with different values: {written:?}"
        );
        repeats += written.len() - 1;
    }
    repeats
}
