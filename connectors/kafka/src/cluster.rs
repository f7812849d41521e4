//! Requests to the Kafka cluster outside the record flow: a topic's partition count, creating a
//! missing topic, partition watermarks, and reading the one record at an offset.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use std::collections::HashMap;

use eddy::{Header, Record};
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::{kafka, KafkaSettings, MirrorError, MirrorResult};

/// The number of partitions of Kafka topic `topic`, `None` when it does not exist.
pub fn partition_count<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> MirrorResult<Option<u32>> {
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(kafka(format!("metadata of topic {topic}")))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        None => Ok(Some(t.partitions().len() as u32)),
        Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
            Ok(None)
        }
        Some(e) => Err(MirrorError::Mismatch(format!(
            "Kafka topic {topic}: metadata error {}",
            RDKafkaErrorCode::from(e)
        ))),
    }
}

/// Makes sure Kafka topic `topic` exists with `partitions` partitions: creates it (with
/// `replication` replicas, -1 for the broker's default) when missing, refuses a different count.
pub fn ensure_topic<C: ClientContext>(
    client: &Client<C>,
    settings: &KafkaSettings,
    topic: &str,
    partitions: u32,
    replication: i32,
) -> MirrorResult<()> {
    let timeout = settings.request_timeout;
    match partition_count(client, topic, settings.probe_timeout())? {
        Some(n) if n == partitions => return Ok(()),
        Some(n) => return Err(partition_mismatch(topic, n, partitions)),
        None => {}
    }
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config(&[])
        .create()
        .map_err(kafka("admin client"))?;
    let new = NewTopic::new(
        topic,
        partitions as i32,
        TopicReplication::Fixed(replication),
    );
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = futures_executor::block_on(admin.create_topics([&new], &options))
        .map_err(kafka(format!("create topic {topic}")))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(MirrorError::Mismatch(format!(
                    "Kafka refused to create topic {name} with {partitions} partitions: {code}"
                )))
            }
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        match partition_count(client, topic, timeout)? {
            Some(n) if n == partitions => return Ok(()),
            Some(n) => return Err(partition_mismatch(topic, n, partitions)),
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            None => {
                return Err(MirrorError::Mismatch(format!(
                "Kafka topic {topic} was created but does not show in metadata after {timeout:?}"
            )))
            }
        }
    }
}

fn partition_mismatch(topic: &str, kafka: u32, local: u32) -> MirrorError {
    MirrorError::Mismatch(format!(
        "Kafka topic {topic} has {kafka} partitions and the local topic {local}: the mirror maps \
         partition to partition, so both need the same count"
    ))
}

/// Kafka's partition ends as a consumer's fetch responses report them, taken from librdkafka's
/// statistics (`statistics.interval.ms` must be set). Fetch responses, not ListOffsets answers:
/// tansu 0.6 answers ListOffsets "latest" with the base offset of the newest batch plus one.
#[derive(Default)]
pub struct FetchedEnds(Mutex<HashMap<(String, i32), (i64, i64)>>);

impl ClientContext for FetchedEnds {
    fn stats(&self, statistics: Statistics) {
        let mut ends = self.0.lock();
        for (topic, t) in statistics.topics {
            for (p, part) in t.partitions {
                if p >= 0 && part.hi_offset >= 0 && part.lo_offset >= 0 {
                    ends.insert((topic.clone(), p), (part.lo_offset, part.hi_offset));
                }
            }
        }
    }
}

impl ConsumerContext for FetchedEnds {}

impl FetchedEnds {
    /// Log start and end of a partition, once a fetch reported them.
    pub fn get(&self, topic: &str, partition: u32) -> Option<(i64, i64)> {
        self.0
            .lock()
            .get(&(topic.to_owned(), partition as i32))
            .copied()
    }
}

/// Low and high watermarks (log-start and log-end offsets) of a Kafka partition, as a fetch
/// from `from` reports them (see [`FetchedEnds`]).
pub fn watermarks(
    settings: &KafkaSettings,
    topic: &str,
    partition: u32,
    from: Offset,
) -> MirrorResult<(i64, i64)> {
    let ends = watermarks_of(settings, topic, &[(partition, from)])?;
    Ok(ends.get(&partition).copied().unwrap_or((0, 0)))
}

/// [`watermarks`] of several partitions, fetched together.
pub fn watermarks_of(
    settings: &KafkaSettings,
    topic: &str,
    partitions: &[(u32, Offset)],
) -> MirrorResult<HashMap<u32, (i64, i64)>> {
    let consumer: BaseConsumer<FetchedEnds> = settings
        .client_config(&[
            ("group.id", "eddy-mirror-check"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "10"),
            ("statistics.interval.ms", "20"),
        ])
        .create_with_context(FetchedEnds::default())
        .map_err(kafka("consumer"))?;
    let mut tpl = TopicPartitionList::new();
    for &(p, from) in partitions {
        tpl.add_partition_offset(topic, p as i32, from)
            .map_err(kafka("assignment"))?;
    }
    consumer.assign(&tpl).map_err(kafka("assign"))?;
    let context = format!("watermarks of topic {topic}");
    let deadline = Instant::now() + settings.request_timeout;
    while Instant::now() < deadline {
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(10)) {
            if !is_transient(&e) {
                return Err(kafka(context)(e));
            }
        }
        let ends: HashMap<u32, (i64, i64)> = partitions
            .iter()
            .filter_map(|&(p, _)| Some((p, consumer.context().get(topic, p)?)))
            .collect();
        if ends.len() == partitions.len() {
            return Ok(ends);
        }
    }
    Err(kafka(context)(KafkaError::MetadataFetch(
        RDKafkaErrorCode::OperationTimedOut,
    )))
}

/// The parts of a Kafka record as an eddy record (timestamp kept, offset dropped), to append
/// or to compare with `RecordView::to_record` of a local one.
pub fn record_of<M: Message>(m: &M) -> Record {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        timestamp: m.timestamp().to_millis(),
        headers,
    }
}

/// The record at `offset` of a Kafka partition. Fetching starts at `offset`, then earlier when
/// the broker answers from a later batch (tansu 0.6 skips the rest of a batch fetched from its
/// middle).
pub fn read_one(
    settings: &KafkaSettings,
    topic: &str,
    partition: u32,
    offset: i64,
) -> MirrorResult<Record> {
    let consumer: BaseConsumer = settings
        .client_config(&[
            ("group.id", "eddy-mirror-check"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "false"),
        ])
        .create()
        .map_err(kafka("consumer"))?;
    let context = format!("read topic {topic} partition {partition} offset {offset}");
    let (low, _) = watermarks(settings, topic, partition, Offset::Offset(offset))?;
    let mut from = offset;
    let deadline = Instant::now() + settings.request_timeout;
    while Instant::now() < deadline {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition as i32, Offset::Offset(from))
            .map_err(kafka("assignment"))?;
        consumer.assign(&tpl).map_err(kafka("assign"))?;
        // Each attempt waits a second for the broker, then starts further back.
        let attempt = (Instant::now() + Duration::from_secs(1)).min(deadline);
        let mut under_way = false;
        while Instant::now() < attempt || under_way && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) if m.offset() == offset => return Ok(record_of(&m)),
                Some(Ok(m)) if m.offset() < offset => under_way = true,
                Some(Ok(m)) if from <= low => {
                    return Err(MirrorError::Mismatch(format!(
                        "{context}: Kafka has no record there (the next is at {})",
                        m.offset()
                    )))
                }
                Some(Ok(_)) => break,
                None => {}
                Some(Err(e)) => return Err(kafka(context)(e)),
            }
        }
        if from <= low {
            break;
        }
        from = (offset - (offset - from).max(500) * 4).max(low);
    }
    Err(MirrorError::Mismatch(format!(
        "Kafka returned nothing for {context} within {:?}",
        settings.request_timeout
    )))
}

/// Runs `request` again, backing off up to 2 s, while Kafka is unreachable or not ready (the
/// mirror waits out an outage at start as it does while running); returns its first other
/// outcome, or the last error once `stop` is set.
pub fn patiently<T>(
    stop: &AtomicBool,
    mut request: impl FnMut() -> MirrorResult<T>,
) -> MirrorResult<T> {
    let mut pause = Duration::from_millis(100);
    loop {
        match request() {
            Err(MirrorError::Kafka { context, source })
                if is_transient(&source) && !stop.load(Ordering::Relaxed) =>
            {
                tracing::warn!("{context}: {source}; Kafka unreachable, retrying in {pause:?}");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            outcome => return outcome,
        }
    }
}

/// Whether `e` is Kafka being away or not ready yet, as opposed to a refusal.
pub fn is_transient(e: &rdkafka::error::KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        e.rdkafka_error_code(),
        Some(
            BrokerTransportFailure
                | Resolve
                | AllBrokersDown
                | OperationTimedOut
                | RequestTimedOut
                | NetworkException
                | LeaderNotAvailable
                | NotLeaderForPartition
        )
    )
}
