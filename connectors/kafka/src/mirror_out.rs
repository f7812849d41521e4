//! Mirror out: a local topic → a Kafka topic, partition `p` to partition `p`.
//!
//! Invariants:
//! - The local consumer group's commit for a partition never passes a record Kafka has not
//!   acknowledged, and its metadata holds the Kafka offset after that record (`kafka_next`).
//! - Before the first record of a partition is sent in a run, the partition has such a commit: a
//!   partition never mirrored gets one naming Kafka's current end; one mirrored before resumes
//!   after skipping the records Kafka holds past `kafka_next` (sent by a run that stopped before
//!   committing them), which is exact as long as only this mirror writes the Kafka partition —
//!   checked by comparing the last skipped record with Kafka's last record.
//! - Only committed records are forwarded (the local consumer reads committed, up to each
//!   partition's last stable offset): an aborted transaction's records never reach Kafka.
//! - The producer is idempotent and retries without a time limit: a broker outage stalls the
//!   mirror (the producer's queue fills, then the local consumer stops polling) while the local
//!   log goes on taking records; nothing is dropped or reordered.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eddy::{Consumer, ConsumerConfig, Isolation, Log, PolledBatch, Record, RecordView};
use parking_lot::Mutex;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset};
use serde::{Deserialize, Serialize};

use crate::cluster::{ensure_topic, patiently, read_one, watermarks_of};
use crate::status::{MirrorStats, Status};
use crate::{kafka, KafkaSettings, MirrorError, MirrorResult};

/// librdkafka settings of the mirror's producer, before the user's `-X` settings: idempotent
/// (acks=all, no duplicates from retries, order kept), retrying for as long as it takes, and
/// batching.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("message.timeout.ms", "0"),
    ("linger.ms", "5"),
    ("batch.num.messages", "10000"),
    ("queue.buffering.max.messages", "100000"),
    ("reconnect.backoff.ms", "100"),
    ("reconnect.backoff.max.ms", "2000"),
];

/// Settings of [`mirror_out`].
#[derive(Clone, Debug)]
pub struct MirrorOutConfig {
    /// How to reach Kafka.
    pub kafka: KafkaSettings,
    /// Local topic to read.
    pub topic: String,
    /// Kafka topic to write (created with the local topic's partition count when missing).
    pub to: String,
    /// Local consumer group keeping the progress.
    pub group: String,
    /// Replicas of a Kafka topic the mirror creates (-1: the broker's default).
    pub replication_factor: i32,
    /// How often acknowledged progress is committed.
    pub commit_interval: Duration,
    /// Most records read from the local log at once.
    pub max_poll_records: usize,
    /// Return once every local record has been acknowledged and committed (instead of running
    /// until `stop`).
    pub until_idle: bool,
    /// How often to log rate and lag (`None`: never).
    pub status_interval: Option<Duration>,
}

impl MirrorOutConfig {
    /// Mirrors local `topic` to the Kafka topic of the same name at `kafka`, with group
    /// `mirror-out.<topic>`.
    pub fn new(kafka: KafkaSettings, topic: impl Into<String>) -> Self {
        let topic = topic.into();
        MirrorOutConfig {
            kafka,
            to: topic.clone(),
            group: format!("mirror-out.{topic}"),
            topic,
            replication_factor: -1,
            commit_interval: Duration::from_millis(200),
            max_poll_records: 10_000,
            until_idle: false,
            status_interval: None,
        }
    }
}

/// The commit metadata: the Kafka topic and, per partition of the commit, the Kafka offset after
/// the last acknowledged record.
#[derive(Serialize, Deserialize)]
struct OutMetadata {
    to: String,
    kafka_next: BTreeMap<u32, i64>,
}

/// A delivery report: partition, local offset, and the Kafka offset or the error.
type Delivery = (u32, u64, Result<i64, KafkaError>);

/// Collects delivery reports (librdkafka calls it from `poll` on the mirror's thread) and
/// notes when the brokers became unreachable, for the status line.
#[derive(Default)]
struct Deliveries {
    reports: Mutex<Vec<Delivery>>,
    unreachable_since: Mutex<Option<Instant>>,
}

impl ClientContext for Deliveries {
    fn error(&self, error: KafkaError, reason: &str) {
        if crate::cluster::is_transient(&error) {
            self.unreachable_since
                .lock()
                .get_or_insert_with(Instant::now);
            tracing::debug!(error = %error, reason, "Kafka unreachable; the producer retries");
        } else {
            tracing::warn!(error = %error, reason, "librdkafka error");
        }
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, local_offset: usize) {
        let report = match result {
            Ok(m) => {
                *self.unreachable_since.lock() = None;
                (m.partition() as u32, local_offset as u64, Ok(m.offset()))
            }
            Err((e, m)) => (m.partition() as u32, local_offset as u64, Err(e.clone())),
        };
        self.reports.lock().push(report);
    }
}

/// Where one partition stands in this run.
struct Progress {
    /// Next local offset to send.
    sent: u64,
    /// Local offset after the last acknowledged record.
    acked: u64,
    /// Kafka offset after the last acknowledged record.
    kafka_next: i64,
    /// Whether `acked` moved since the last commit.
    dirty: bool,
}

struct MirrorOut<'a> {
    config: &'a MirrorOutConfig,
    log: Log,
    producer: BaseProducer<Deliveries>,
    consumer: Consumer,
    partitions: BTreeMap<u32, Progress>,
    stats: MirrorStats,
    last_commit: Instant,
}

/// Mirrors the local topic to Kafka until `stop` is set (or, with `until_idle`, until all of it
/// is mirrored). Returns what it did; on an error, progress acknowledged so far is committed when
/// possible and the error names what failed.
pub fn mirror_out(
    log: &Log,
    config: &MirrorOutConfig,
    stop: &AtomicBool,
) -> MirrorResult<MirrorStats> {
    let local = log.topic(&config.topic)?;
    let producer: BaseProducer<Deliveries> = config
        .kafka
        .client_config(PRODUCER_DEFAULTS)
        .create_with_context(Deliveries::default())
        .map_err(kafka("producer"))?;
    patiently(stop, || {
        ensure_topic(
            producer.client(),
            &config.kafka,
            &config.to,
            local.partitions(),
            config.replication_factor,
        )
    })?;
    let mut consumer_config = ConsumerConfig::new(config.group.clone());
    consumer_config.max_poll_records = config.max_poll_records;
    consumer_config.commit_on_revoke = false;
    consumer_config.release_manually = true;
    consumer_config.fsync_commits = true;
    // Only committed records leave: an aborted transaction's never reach Kafka.
    consumer_config.isolation = Isolation::ReadCommitted;
    let mut consumer = Consumer::new(log, consumer_config)?;
    consumer.subscribe(&[config.topic.as_str()])?;
    let mut mirror = MirrorOut {
        config,
        log: log.clone(),
        producer,
        consumer,
        partitions: BTreeMap::new(),
        stats: MirrorStats::default(),
        last_commit: Instant::now(),
    };
    let mut status = Status::new(
        format!("mirror out {} → {}", config.topic, config.to),
        config.status_interval,
    );
    let outcome = mirror.run(stop, &mut status);
    let ended = mirror.finish();
    mirror.stats.elapsed = status.elapsed();
    mirror.stats.lag = mirror.lag().unwrap_or(0);
    outcome.and(ended).map(|()| mirror.stats)
}

impl MirrorOut<'_> {
    fn run(&mut self, stop: &AtomicBool, status: &mut Status) -> MirrorResult<()> {
        while !stop.load(Ordering::Relaxed) {
            let revoking = self.consumer.revoking();
            if !revoking.is_empty() {
                self.drain(Duration::MAX, stop)?;
                for (_, p) in &revoking {
                    self.partitions.remove(p);
                }
                self.consumer.release(&revoking)?;
            }
            let in_flight = self.producer.in_flight_count() > 0;
            let wait = Duration::from_millis(if in_flight { 2 } else { 100 });
            let batches = self.consumer.poll(wait)?;
            self.resume_new(&batches, stop)?;
            for batch in &batches {
                self.send_batch(batch, stop)?;
            }
            self.service()?;
            if status.due() {
                let lag = self.lag()?;
                let waiting = self.producer.in_flight_count();
                let away = *self.producer.context().unreachable_since.lock();
                match away {
                    // Records wait for a broker that went away: say so, not only the lag.
                    Some(since) if waiting > 0 => status.print_unreachable(
                        self.stats.records,
                        since.elapsed(),
                        &format!("{waiting} records waiting to be sent, lag {lag}"),
                    ),
                    _ => status.print(self.stats.records, Some(lag)),
                }
            }
            if self.config.until_idle && self.idle()? {
                break;
            }
        }
        Ok(())
    }

    /// Sends the records of `batch` not sent yet, waiting while the producer's queue is full.
    fn send_batch(&mut self, batch: &PolledBatch, stop: &AtomicBool) -> MirrorResult<()> {
        let p = batch.partition;
        if !self.partitions.contains_key(&p) {
            return Ok(()); // no records
        }
        for r in batch.records.iter() {
            if self.partitions.get(&p).is_some_and(|s| r.offset < s.sent) {
                continue;
            }
            if !self.send(p, &r, stop)? {
                return Ok(()); // stopped: nothing after an unsent record may be sent
            }
            if let Some(s) = self.partitions.get_mut(&p) {
                s.sent = r.offset + 1;
            }
        }
        Ok(())
    }

    /// Hands one record to the producer; false when `stop` came first.
    fn send(&mut self, p: u32, r: &RecordView<'_>, stop: &AtomicBool) -> MirrorResult<bool> {
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&self.config.to, r.offset as usize)
                .partition(p as i32)
                .timestamp(r.timestamp);
        let mut headers = r.headers().peekable();
        if headers.peek().is_some() {
            let owned = headers.fold(OwnedHeaders::new(), |h, (key, value)| {
                h.insert(Header { key, value })
            });
            record = record.headers(owned);
        }
        if let Some(k) = r.key {
            record = record.key(k);
        }
        if let Some(v) = r.value {
            record = record.payload(v);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(true),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Backpressure: the broker is slow or away; serve deliveries and wait.
                    record = back;
                    self.producer.poll(Duration::from_millis(10));
                    self.service()?;
                    if stop.load(Ordering::Relaxed) {
                        return Ok(false);
                    }
                }
                Err((e, _)) => {
                    return Err(MirrorError::Delivery {
                        topic: self.config.to.clone(),
                        partition: p,
                        offset: r.offset,
                        reason: e.to_string(),
                    })
                }
            }
        }
    }

    /// Resumes the partitions of `batches` met for the first time in this run.
    fn resume_new(&mut self, batches: &[PolledBatch], stop: &AtomicBool) -> MirrorResult<()> {
        let mut fresh = Vec::new();
        for b in batches {
            if !self.partitions.contains_key(&b.partition) {
                if let Some(first) = b.records.iter().next().map(|r| r.offset) {
                    fresh.push((b.partition, first, self.previous(b.partition)?));
                }
            }
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let from: Vec<(u32, Offset)> = fresh
            .iter()
            .map(|&(p, _, prev)| {
                (
                    p,
                    prev.map_or(Offset::Beginning, |(_, k)| Offset::Offset(k)),
                )
            })
            .collect();
        let (kafka, to) = (&self.config.kafka, &self.config.to);
        let ends = patiently(stop, || watermarks_of(kafka, to, &from))?;
        for (p, first, previous) in fresh {
            let kafka_end = ends.get(&p).map_or(0, |e| e.1);
            let start = self.resume(p, first, previous, kafka_end, stop)?;
            let progress = Progress {
                sent: start,
                acked: start,
                kafka_next: 0,
                dirty: false,
            };
            self.partitions.insert(p, progress);
        }
        Ok(())
    }

    /// The group's last commit for partition `p` as (local offset, Kafka offset), if it was
    /// this mirror's (a reset or a plain commit is not).
    fn previous(&mut self, p: u32) -> MirrorResult<Option<(u64, i64)>> {
        let (topic, to) = (&self.config.topic, &self.config.to);
        let committed = self.consumer.committed_with_metadata(topic, p)?;
        Ok(match &committed {
            Some((offset, meta)) => match serde_json::from_str::<OutMetadata>(meta) {
                Ok(m) if m.to != *to => {
                    return Err(MirrorError::Mismatch(format!(
                        "group {} mirrors local topic {topic} to Kafka topic {}, not {to}: use \
                         another group for another destination",
                        self.config.group, m.to
                    )))
                }
                Ok(m) => m.kafka_next.get(&p).map(|&k| (*offset, k)),
                Err(_) => None,
            },
            None => None,
        })
    }

    /// Where partition `p` starts in this run, after making sure its commit names a Kafka offset:
    /// `first` is the offset of the first record polled from it, `kafka_end` Kafka's end.
    fn resume(
        &mut self,
        p: u32,
        first: u64,
        previous: Option<(u64, i64)>,
        kafka_end: i64,
        stop: &AtomicBool,
    ) -> MirrorResult<u64> {
        let (topic, to) = (&self.config.topic, &self.config.to);
        let Some((local_next, kafka_next)) = previous else {
            self.commit_partitions(&[(p, first, kafka_end)])?;
            return Ok(first);
        };
        if kafka_end < kafka_next {
            return Err(MirrorError::Mismatch(format!(
                "Kafka topic {to} partition {p} ends at offset {kafka_end}, before offset \
                 {kafka_next} that group {} committed: the Kafka topic was truncated or \
                 recreated; reset the group to mirror again",
                self.config.group
            )));
        }
        let skip = (kafka_end - kafka_next) as u64;
        if skip == 0 {
            return Ok(local_next);
        }
        // Offsets of committed records can have gaps (markers, aborted transactions): count
        // the records the mirror forwards.
        let (last, local) = self.nth_forwarded(p, local_next, skip)?;
        let start = last + 1;
        let remote = patiently(stop, || read_one(&self.config.kafka, to, p, kafka_end - 1))?;
        if local != remote {
            return Err(MirrorError::Mismatch(format!(
                "Kafka topic {to} partition {p} holds {skip} records past group {}'s commit, \
                 but its last (offset {}) differs from local topic {topic} offset {last}: \
                 something else writes to the Kafka partition",
                self.config.group,
                kafka_end - 1,
            )));
        }
        tracing::info!(
            partition = p,
            skip,
            "Kafka already holds records sent before the last stop; resuming after them"
        );
        self.stats.skipped += skip;
        self.commit_partitions(&[(p, start, kafka_end)])?;
        Ok(start)
    }

    /// The `n`-th record (from 1) that the mirror forwards from partition `p` at or after local
    /// offset `from` — committed records only — with its offset.
    fn nth_forwarded(&self, p: u32, from: u64, n: u64) -> MirrorResult<(u64, Record)> {
        let mut reader = self.log.topic(&self.config.topic)?.reader(p)?;
        reader.set_isolation(Isolation::ReadCommitted);
        let (mut next, mut seen) = (from, 0u64);
        loop {
            let want = usize::try_from(n - seen).unwrap_or(usize::MAX);
            let fetch = reader.read(next, want, 1 << 20)?;
            for r in fetch.iter() {
                seen += 1;
                if seen == n {
                    return Ok((r.offset, r.to_record()));
                }
            }
            if fetch.next_offset() == next {
                return Err(MirrorError::Mismatch(format!(
                    "Kafka topic {} partition {p} holds {n} records past group {}'s commit, \
                     more than local topic {} has from offset {from} ({seen}): something else \
                     writes to the Kafka partition",
                    self.config.to, self.config.group, self.config.topic
                )));
            }
            next = fetch.next_offset();
        }
    }

    /// Applies delivery reports, and commits when due.
    fn service(&mut self) -> MirrorResult<()> {
        self.producer.poll(Duration::ZERO);
        let reports = std::mem::take(&mut *self.producer.context().reports.lock());
        for (p, offset, result) in reports {
            let kafka_offset = result.map_err(|e| MirrorError::Delivery {
                topic: self.config.to.clone(),
                partition: p,
                offset,
                reason: e.to_string(),
            })?;
            if let Some(s) = self.partitions.get_mut(&p) {
                if offset >= s.acked {
                    s.acked = offset + 1;
                    s.kafka_next = kafka_offset + 1;
                    s.dirty = true;
                    self.stats.records += 1;
                }
            }
        }
        if self.last_commit.elapsed() >= self.config.commit_interval {
            self.commit()?;
        }
        Ok(())
    }

    /// Commits acknowledged progress of every partition that moved.
    fn commit(&mut self) -> MirrorResult<()> {
        self.last_commit = Instant::now();
        let moved: Vec<(u32, u64, i64)> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.dirty)
            .map(|(&p, s)| (p, s.acked, s.kafka_next))
            .collect();
        self.commit_partitions(&moved)?;
        for (p, _, _) in &moved {
            if let Some(s) = self.partitions.get_mut(p) {
                s.dirty = false;
            }
        }
        Ok(())
    }

    fn commit_partitions(&mut self, moved: &[(u32, u64, i64)]) -> MirrorResult<()> {
        if moved.is_empty() {
            return Ok(());
        }
        let meta = OutMetadata {
            to: self.config.to.clone(),
            kafka_next: moved.iter().map(|&(p, _, k)| (p, k)).collect(),
        };
        let meta = serde_json::to_string(&meta)
            .map_err(|e| MirrorError::Mismatch(format!("commit metadata: {e}")))?;
        let offsets: Vec<(String, u32, u64)> = moved
            .iter()
            .map(|&(p, local, _)| (self.config.topic.clone(), p, local))
            .collect();
        self.consumer
            .commit_offsets_with_metadata(&offsets, &meta)?;
        Ok(())
    }

    /// Waits (up to `limit`, or until `stop`) for every sent record to be acknowledged, then
    /// commits.
    fn drain(&mut self, limit: Duration, stop: &AtomicBool) -> MirrorResult<()> {
        let started = Instant::now();
        while self.producer.in_flight_count() > 0
            && started.elapsed() < limit
            && !stop.load(Ordering::Relaxed)
        {
            self.producer.poll(Duration::from_millis(20));
            self.service()?;
        }
        self.service()?;
        self.commit()
    }

    /// Whether everything in the local topic has been sent, acknowledged and committed.
    fn idle(&mut self) -> MirrorResult<bool> {
        if self.producer.in_flight_count() > 0 || self.partitions.values().any(|s| s.dirty) {
            return Ok(false);
        }
        if !self.consumer.caught_up()? {
            return Ok(false);
        }
        // Markers and aborted records after the last acknowledged one are nothing to send.
        let topic = self.log.topic(&self.config.topic)?;
        for (&p, s) in &self.partitions {
            let mut reader = topic.reader(p)?;
            reader.set_isolation(Isolation::ReadCommitted);
            if !reader.read(s.acked, 1, 1 << 16)?.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Local records not yet acknowledged, over the partitions this mirror owns.
    fn lag(&self) -> MirrorResult<u64> {
        let topic = self.log.topic(&self.config.topic)?;
        let mut lag = 0;
        for info in topic.describe()? {
            if let Some(s) = self.partitions.get(&info.partition) {
                lag += info.end_offset.saturating_sub(s.acked);
            }
        }
        Ok(lag)
    }

    /// On the way out: waits a while for outstanding acknowledgements, commits them, leaves.
    fn finish(&mut self) -> MirrorResult<()> {
        let never = AtomicBool::new(false);
        let drained = self.drain(Duration::from_secs(30), &never);
        let in_flight = self.producer.in_flight_count();
        if in_flight > 0 {
            tracing::warn!(
                in_flight,
                "stopping with records Kafka has not acknowledged; the next run sends or skips them"
            );
        }
        drained
    }
}
