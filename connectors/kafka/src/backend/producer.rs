//! [`KafkaProducer`]: the idempotent producer an application's outputs and changelogs go
//! through, which knows the offset of the last record Kafka acknowledged in each partition;
//! [`KafkaSink`], the outputs' `eddy::OutputSink` over it.
//!
//! Invariant: after [`KafkaProducer::flush`] returns `Ok`, every record sent before it was
//! acknowledged by the brokers (acks=all); a record Kafka refused for good makes that flush,
//! and every later one, an error naming it.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use eddy::{OutputSink, Record, StreamResult};
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::Message;

use super::backend_error;
use crate::KafkaSettings;

/// librdkafka settings of the producer, before the user's: idempotent (acks=all, no duplicates
/// from retries, order kept), retrying for as long as it takes, batching.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("message.timeout.ms", "0"),
    ("linger.ms", "5"),
    ("batch.num.messages", "10000"),
    ("queue.buffering.max.messages", "100000"),
];

/// What the brokers acknowledged: the last offset per partition, the first refusal.
#[derive(Default)]
pub(crate) struct Acks {
    last: Mutex<HashMap<(String, i32), i64>>,
    refused: Mutex<Option<String>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let mut last = self.last.lock();
                let at = last
                    .entry((m.topic().to_owned(), m.partition()))
                    .or_insert(-1);
                *at = (*at).max(m.offset());
            }
            Err((e, m)) => {
                let mut refused = self.refused.lock();
                refused.get_or_insert_with(|| {
                    format!(
                        "topic {} partition {} refused a record: {e}",
                        m.topic(),
                        m.partition()
                    )
                });
            }
        }
    }
}

/// The idempotent producer of one application (module docs).
pub struct KafkaProducer {
    settings: KafkaSettings,
    producer: BaseProducer<Acks>,
}

impl KafkaProducer {
    /// A producer to the cluster of `settings`.
    pub fn new(settings: KafkaSettings) -> StreamResult<Rc<KafkaProducer>> {
        let producer = settings
            .client_config(PRODUCER_DEFAULTS)
            .create_with_context(Acks::default())
            .map_err(|e| backend_error(&settings, "create the producer".into(), e))?;
        Ok(Rc::new(KafkaProducer { settings, producer }))
    }

    /// How the producer reaches Kafka.
    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }

    /// Sends `records` to `partition` of `topic` (waiting while librdkafka's queue is full).
    pub fn send(&self, topic: &str, partition: u32, records: &[Record]) -> StreamResult<()> {
        for r in records {
            let mut headers = OwnedHeaders::new();
            for h in &r.headers {
                headers = headers.insert(Header {
                    key: &h.key,
                    value: h.value.as_deref(),
                });
            }
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
                .partition(partition as i32)
                .headers(headers);
            if let Some(k) = r.key.as_deref() {
                record = record.key(k);
            }
            if let Some(v) = r.value.as_deref() {
                record = record.payload(v);
            }
            if let Some(ts) = r.timestamp {
                record = record.timestamp(ts);
            }
            let mut pending = record;
            loop {
                match self.producer.send(pending) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        self.producer.poll(Duration::from_millis(20));
                        pending = back;
                    }
                    Err((e, _)) => {
                        let what = format!("send to topic {topic} partition {partition}");
                        return Err(backend_error(&self.settings, what, e));
                    }
                }
            }
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    /// Waits until everything sent was acknowledged (module docs).
    pub fn flush(&self) -> StreamResult<()> {
        // Served here in short polls: librdkafka's own flush looks every 100 ms. With
        // `message.timeout.ms` 0 librdkafka retries while the cluster is away; this waits.
        let mut warned = Instant::now();
        while self.producer.in_flight_count() > 0 {
            self.producer.poll(Duration::from_millis(1));
            if warned.elapsed() >= self.settings.request_timeout {
                tracing::warn!(brokers = %self.settings.brokers, waiting = self.producer.in_flight_count(),
                    "Kafka has not acknowledged every record yet; waiting");
                warned = Instant::now();
            }
        }
        match self.producer.context().refused.lock().clone() {
            Some(refusal) => Err(backend_error(&self.settings, "flush".into(), refusal)),
            None => Ok(()),
        }
    }

    /// The offset after the last record of `partition` of `topic` Kafka acknowledged.
    pub fn next_offset(&self, topic: &str, partition: u32) -> Option<u64> {
        let last = self.producer.context().last.lock();
        let at = last.get(&(topic.to_owned(), partition as i32))?;
        u64::try_from(*at + 1).ok()
    }
}

/// An application's outputs to Kafka, through its producer.
pub struct KafkaSink(pub Rc<KafkaProducer>);

impl OutputSink for KafkaSink {
    fn append(&mut self, topic: &str, partition: u32, records: &[Record]) -> StreamResult<()> {
        self.0.send(topic, partition, records)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.0.flush()
    }
}
