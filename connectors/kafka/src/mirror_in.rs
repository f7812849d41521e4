//! Mirror in: a Kafka topic → a local topic, partition `p` to partition `p`.
//!
//! Invariants:
//! - Records of a partition are appended in Kafka's order, in batches that are atomic in the
//!   local log and fsynced before the batch's progress is committed.
//! - The progress group (local, named by the config) holds for each local partition a commit
//!   `(local end, kafka_next)` meaning: the local records before `local end` are the Kafka
//!   records before `kafka_next`, as far as this mirror wrote them. It is written before the
//!   first append and after every batch.
//! - On restart, local records past the committed end were appended by a run that stopped before
//!   committing: they are the first records Kafka returns from `kafka_next`, so that many are
//!   compared with them and not appended again. Nothing is lost or repeated, provided only this
//!   mirror appends to the local topic (its appender lock keeps other processes out while it runs).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::{Groups, Log, PartitionReader, PartitionWriter, Record, TopicConfig};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::cluster::{
    is_transient, partition_count, patiently, record_of, watermarks, FetchedEnds,
};
use crate::status::{MirrorStats, Status};
use crate::{kafka, KafkaSettings, MirrorError, MirrorResult};

/// librdkafka settings of the mirror's consumer, before the user's `-X` settings. Offsets are
/// the mirror's own (no automatic commits); an offset Kafka no longer has is an error unless
/// `auto.offset.reset` is set.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("auto.offset.reset", "error"),
    ("enable.partition.eof", "false"),
    ("fetch.wait.max.ms", "100"),
    ("reconnect.backoff.ms", "100"),
    ("reconnect.backoff.max.ms", "2000"),
    ("statistics.interval.ms", "500"),
];

/// Where a partition never mirrored before starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// Kafka's log-start offset.
    Earliest,
    /// Kafka's log-end offset: only records produced from now on.
    Latest,
}

/// Settings of [`mirror_in`].
#[derive(Clone, Debug)]
pub struct MirrorInConfig {
    /// How to reach Kafka.
    pub kafka: KafkaSettings,
    /// Kafka topic to read.
    pub topic: String,
    /// Local topic to write (created with the Kafka topic's partition count when missing).
    pub to: String,
    /// Local group keeping the progress; also the Kafka consumer group the mirror commits to, so
    /// that Kafka's tools show its lag.
    pub group: String,
    /// Start of partitions without progress.
    pub start_at: StartAt,
    /// Most records appended in one batch.
    pub batch_records: usize,
    /// About the most bytes appended in one batch.
    pub batch_bytes: usize,
    /// Longest a record waits for its batch to fill.
    pub linger: Duration,
    /// Return once every record Kafka had is appended (instead of running until `stop`).
    pub until_idle: bool,
    /// How often to log rate and lag (`None`: never).
    pub status_interval: Option<Duration>,
}

impl MirrorInConfig {
    /// Mirrors Kafka topic `topic` at `kafka` into the local topic of the same name, with group
    /// `mirror-in.<topic>`.
    pub fn new(kafka: KafkaSettings, topic: impl Into<String>) -> Self {
        let topic = topic.into();
        MirrorInConfig {
            kafka,
            to: topic.clone(),
            group: format!("mirror-in.{topic}"),
            topic,
            start_at: StartAt::Earliest,
            batch_records: 10_000,
            batch_bytes: 16 << 20,
            linger: Duration::from_millis(50),
            until_idle: false,
            status_interval: None,
        }
    }
}

/// Commit metadata: the Kafka topic and, per partition of the commit, the next Kafka offset.
#[derive(Serialize, Deserialize)]
struct InMetadata {
    from: String,
    kafka_next: BTreeMap<u32, i64>,
}

/// One partition in this run.
struct Lane {
    writer: Arc<PartitionWriter>,
    reader: PartitionReader,
    /// Local records already holding the next Kafka records (appended before the last stop).
    skip: u64,
    /// Local offset of the next of those.
    check: u64,
    /// Kafka offset after the last record taken.
    kafka_next: i64,
    pending: Vec<Record>,
    /// Whether `kafka_next` moved since the last commit.
    dirty: bool,
    /// Set until fetching is known to have started at or before the resume point (see
    /// [`Probe`]).
    probe: Option<Probe>,
}

/// Making sure fetching starts at or before the resume point. Some brokers (tansu 0.6) answer a
/// fetch from the first batch that *starts* at or after the requested offset, skipping the rest
/// of the batch holding it — or nothing, when that is the last batch. So when the first record
/// is past the resume point, or none comes within a second, the mirror fetches again from
/// further back (down to Kafka's log start) and drops what precedes the resume point. A first
/// record before the resume point shows fetching is under way from there.
#[derive(Clone, Copy)]
struct Probe {
    /// Where fetching started.
    from: i64,
    /// Kafka's log start.
    low: i64,
    since: Instant,
}

impl Probe {
    /// Fetching again from further back than `self.from`, toward `resume`'s batch.
    fn further_back(self, resume: i64) -> Probe {
        let back = (resume - self.from).max(500) * 4;
        Probe {
            from: (resume - back).max(self.low),
            low: self.low,
            since: Instant::now(),
        }
    }
}

/// The partitions and their batches being filled.
struct Lanes<'a> {
    config: &'a MirrorInConfig,
    lanes: BTreeMap<u32, Lane>,
    pending_bytes: usize,
    pending_records: usize,
    oldest_pending: Option<Instant>,
    stats: MirrorStats,
}

struct MirrorIn<'a> {
    groups: Groups,
    consumer: BaseConsumer<FetchedEnds>,
    lanes: Lanes<'a>,
}

/// Mirrors the Kafka topic into the local topic until `stop` is set (or, with `until_idle`,
/// until it has everything Kafka had). Returns what it did.
pub fn mirror_in(
    log: &Log,
    config: &MirrorInConfig,
    stop: &AtomicBool,
) -> MirrorResult<MirrorStats> {
    let consumer: BaseConsumer<FetchedEnds> = config
        .kafka
        .client_config(CONSUMER_DEFAULTS)
        .set("group.id", &config.group)
        .create_with_context(FetchedEnds::default())
        .map_err(kafka("consumer"))?;
    let timeout = config.kafka.probe_timeout();
    let topic = &config.topic;
    let partitions = patiently(stop, || partition_count(consumer.client(), topic, timeout))?
        .ok_or_else(|| MirrorError::Mismatch(format!("Kafka topic {topic} does not exist")))?;
    let local = log.topic_or_create(&config.to, TopicConfig::with_partitions(partitions))?;
    if local.partitions() != partitions {
        return Err(MirrorError::Mismatch(format!(
            "Kafka topic {topic} has {partitions} partitions and local topic {} has {}: the \
             mirror maps partition to partition, so both need the same count",
            config.to,
            local.partitions()
        )));
    }
    let groups = Groups::new(log);
    let committed = groups.committed(&config.group)?;
    let mut lanes = BTreeMap::new();
    let mut first_commits = Vec::new();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        let writer = local.writer(p)?;
        let end = writer.end_offset();
        let saved = committed.get(&(config.to.clone(), p));
        let resume = match saved.map(|(l, meta)| (l, serde_json::from_str::<InMetadata>(meta))) {
            Some((_, Ok(m))) if m.from != *topic => {
                return Err(MirrorError::Mismatch(format!(
                    "group {} mirrors Kafka topic {} into local topic {}, not {topic}: use \
                     another group for another source",
                    config.group, m.from, config.to
                )))
            }
            Some((&local_end, Ok(m))) => m.kafka_next.get(&p).map(|&k| (local_end, k)),
            _ => None,
        };
        let from = Offset::Beginning;
        let (low, high) = patiently(stop, || watermarks(&config.kafka, topic, p, from))?;
        let (local_end, kafka_next) = match resume {
            Some(r) => r,
            None => {
                let k = if config.start_at == StartAt::Earliest {
                    low
                } else {
                    high
                };
                first_commits.push((p, end, k));
                (end, k)
            }
        };
        if end < local_end {
            return Err(MirrorError::Mismatch(format!(
                "local topic {} partition {p} ends at offset {end}, before offset {local_end} \
                 that group {} committed: the local log lost records",
                config.to, config.group
            )));
        }
        assignment
            .add_partition_offset(topic, p as i32, Offset::Offset(kafka_next))
            .map_err(kafka("assignment"))?;
        lanes.insert(
            p,
            Lane {
                reader: local.reader(p)?,
                writer,
                skip: end - local_end,
                check: local_end,
                kafka_next,
                pending: Vec::new(),
                dirty: false,
                probe: (kafka_next > low).then_some(Probe {
                    from: kafka_next,
                    low,
                    since: Instant::now(),
                }),
            },
        );
    }
    let mut mirror = MirrorIn {
        groups,
        consumer,
        lanes: Lanes {
            config,
            lanes,
            pending_bytes: 0,
            pending_records: 0,
            oldest_pending: None,
            stats: MirrorStats::default(),
        },
    };
    mirror.commit_progress(&first_commits)?;
    mirror
        .consumer
        .assign(&assignment)
        .map_err(kafka(format!("assign topic {topic}")))?;
    let mut status = Status::new(
        format!("mirror in {topic} → {}", config.to),
        config.status_interval,
    );
    let outcome = mirror.run(stop, &mut status);
    let flushed = mirror.flush();
    let mut stats = mirror.lanes.stats.clone();
    stats.elapsed = status.elapsed();
    stats.lag = mirror.lag().unwrap_or(0);
    outcome.and(flushed).map(|()| stats)
}

impl MirrorIn<'_> {
    fn run(&mut self, stop: &AtomicBool, status: &mut Status) -> MirrorResult<()> {
        let mut last_idle_check = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let config = self.lanes.config;
            let refetch = match self.consumer.poll(Duration::from_millis(20)) {
                Some(Ok(m)) => self.lanes.take(&m)?,
                // The consumer reconnects by itself; only refusals end the mirror.
                Some(Err(e)) if is_transient(&e) => {
                    tracing::debug!(error = %e, "Kafka unreachable; the consumer retries");
                    None
                }
                Some(Err(e)) => return Err(kafka(format!("consume topic {}", config.topic))(e)),
                None => None,
            };
            for (p, from) in refetch.into_iter().chain(self.lanes.stalled_probes()) {
                tracing::debug!(partition = p, from, "fetching again from an earlier offset");
                self.consumer
                    .seek(
                        &config.topic,
                        p as i32,
                        Offset::Offset(from),
                        Duration::from_secs(10),
                    )
                    .map_err(kafka(format!("seek topic {} partition {p}", config.topic)))?;
            }
            if self.lanes.batch_due() {
                self.flush()?;
            }
            if status.due() {
                // While Kafka is away the lag is unknown; the status line says so.
                let lag = self.lag();
                status.print(self.lanes.stats.records, lag);
            }
            if config.until_idle && last_idle_check.elapsed() >= Duration::from_millis(200) {
                last_idle_check = Instant::now();
                if self.lanes.pending_records == 0
                    && self
                        .lanes
                        .lanes
                        .values()
                        .all(|l| l.probe.is_none() && l.skip == 0)
                    && self.lag() == Some(0)
                {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Appends every partition's batch (atomic, fsynced), then commits the progress.
    fn flush(&mut self) -> MirrorResult<()> {
        let moved = self.lanes.append()?;
        self.commit_progress(&moved)
    }

    /// Commits `(partition, local end, next Kafka offset)` to the local group, then (for Kafka's
    /// tools; failures only logged) to the Kafka group.
    fn commit_progress(&mut self, moved: &[(u32, u64, i64)]) -> MirrorResult<()> {
        if moved.is_empty() {
            return Ok(());
        }
        let config = self.lanes.config;
        let meta = InMetadata {
            from: config.topic.clone(),
            kafka_next: moved.iter().map(|&(p, _, k)| (p, k)).collect(),
        };
        let meta = serde_json::to_string(&meta)
            .map_err(|e| MirrorError::Mismatch(format!("commit metadata: {e}")))?;
        let offsets: Vec<(&str, u32, u64)> = moved
            .iter()
            .map(|&(p, end, _)| (config.to.as_str(), p, end))
            .collect();
        self.groups.alter_offsets(&config.group, &offsets, &meta)?;
        let mut tpl = TopicPartitionList::new();
        for &(p, _, k) in moved {
            if tpl
                .add_partition_offset(&config.topic, p as i32, Offset::Offset(k))
                .is_err()
            {
                return Ok(());
            }
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "commit to the Kafka group failed (progress is kept locally)");
        }
        Ok(())
    }

    /// Kafka records not yet appended locally, over all partitions, as the consumer's last
    /// fetches report Kafka's ends (`None` until every partition has been fetched).
    fn lag(&self) -> Option<u64> {
        let topic = &self.lanes.config.topic;
        let mut lag = 0;
        for (&p, lane) in &self.lanes.lanes {
            let (_, high) = self.consumer.context().get(topic, p)?;
            lag += (high - lane.kafka_next).max(0) as u64 + lane.pending.len() as u64;
        }
        Some(lag)
    }
}

impl Lanes<'_> {
    /// Takes one Kafka record: compares it with the local record it was appended as before the
    /// last stop, or adds it to its partition's batch. Returns `(partition, offset)` when the
    /// partition must be fetched again from that earlier offset (see [`Lane::probe`]).
    fn take(&mut self, m: &BorrowedMessage<'_>) -> MirrorResult<Option<(u32, i64)>> {
        let p = m.partition() as u32;
        let Some(lane) = self.lanes.get_mut(&p) else {
            return Ok(None);
        };
        if let Some(probe) = lane.probe.take() {
            if m.offset() > lane.kafka_next && probe.from > probe.low {
                let earlier = probe.further_back(lane.kafka_next);
                lane.probe = Some(earlier);
                return Ok(Some((p, earlier.from)));
            }
        }
        if m.offset() < lane.kafka_next {
            return Ok(None); // before the resume point, or fetched again after a reconnect
        }
        lane.kafka_next = m.offset() + 1;
        lane.dirty = true;
        let record = record_of(m);
        if lane.skip > 0 {
            let at = lane.check;
            let fetch = lane.reader.read(at, 1, 1 << 20)?;
            let local = fetch.iter().find(|r| r.offset == at).map(|r| r.to_record());
            if local.as_ref() != Some(&record) {
                return Err(MirrorError::Mismatch(format!(
                    "local topic {} partition {p} offset {at} is not Kafka topic {} offset {}, \
                     which the last run appended there: something else appends to the local \
                     topic",
                    self.config.to,
                    self.config.topic,
                    m.offset()
                )));
            }
            (lane.skip, lane.check) = (lane.skip - 1, at + 1);
            self.stats.skipped += 1;
            return Ok(None);
        }
        self.pending_bytes += record.key.as_ref().map_or(0, Vec::len)
            + record.value.as_ref().map_or(0, Vec::len)
            + 32;
        self.pending_records += 1;
        self.oldest_pending.get_or_insert_with(Instant::now);
        lane.pending.push(record);
        Ok(None)
    }

    /// Partitions whose fetch brought nothing for a second while probing: fetch again from
    /// further back.
    fn stalled_probes(&mut self) -> Vec<(u32, i64)> {
        let mut refetch = Vec::new();
        for (&p, lane) in &mut self.lanes {
            if let Some(probe) = lane.probe {
                if probe.since.elapsed() >= Duration::from_secs(1) && probe.from > probe.low {
                    let earlier = probe.further_back(lane.kafka_next);
                    lane.probe = Some(earlier);
                    refetch.push((p, earlier.from));
                }
            }
        }
        refetch
    }

    fn batch_due(&self) -> bool {
        self.pending_records >= self.config.batch_records
            || self.pending_bytes >= self.config.batch_bytes
            || self
                .oldest_pending
                .is_some_and(|t| t.elapsed() >= self.config.linger)
            || (self.pending_records == 0 && self.lanes.values().any(|l| l.dirty && l.skip == 0))
    }

    /// Appends every partition's batch as one atomic, fsynced append; returns the progress to
    /// commit: `(partition, local end, next Kafka offset)` of the partitions that moved.
    fn append(&mut self) -> MirrorResult<Vec<(u32, u64, i64)>> {
        let mut moved = Vec::new();
        for (&p, lane) in &mut self.lanes {
            if !lane.pending.is_empty() {
                lane.writer.append_atomic(&lane.pending)?;
                lane.writer.flush()?;
                self.stats.records += lane.pending.len() as u64;
                lane.pending.clear();
            }
            if lane.dirty && lane.skip == 0 {
                lane.dirty = false;
                moved.push((p, lane.writer.end_offset(), lane.kafka_next));
            }
        }
        self.pending_bytes = 0;
        self.pending_records = 0;
        self.oldest_pending = None;
        Ok(moved)
    }
}
