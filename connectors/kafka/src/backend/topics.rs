//! [`KafkaTopics`]: an application's topics on a Kafka cluster (an `eddy::TopicCatalog`), and
//! [`KafkaPartitionReader`], which reads one partition by offset (a changelog's restore, a
//! table's catch-up).
//!
//! A partition's ends come from fetch responses, not ListOffsets (tansu 0.6 answers "latest"
//! with the newest batch's base offset plus one). A read from the middle of a batch may skip
//! the rest of that batch on tansu 0.6 (and from the middle of the last batch it returns
//! nothing at all): the reader then starts further back and skips what it does not need, as
//! `read_one` does; it accepts the first record at or after the offset once
//! it has seen one before it (or starts at the log's start), so gaps that compaction leaves
//! are not taken for the broker's skips.

use std::rc::Rc;
use std::time::{Duration, Instant};

use eddy::{
    CleanupPolicy, Fetch, Isolation, PartitionRead, StateError, StateResult, StreamResult,
    TopicCatalog, TopicConfig, TopicInfo,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{backend_error, EndsProbe};
use crate::cluster::{partition_count, record_of};
use crate::KafkaSettings;

/// Bytes one fetch asks of a partition, and of a broker, and records librdkafka keeps fetched
/// ahead per partition, when reading for throughput (tansu serves a plain consumer about 140 K
/// records/s with librdkafka's defaults, 330 K with these).
pub(crate) const FETCH_PARTITION_BYTES: &str = "16777216";
pub(crate) const FETCH_BYTES: &str = "104857600";
pub(crate) const QUEUED_RECORDS: &str = "1000000";

/// The topics of an application on Kafka.
pub struct KafkaTopics {
    settings: KafkaSettings,
    /// Replicas of the topics it creates (-1: the broker's default).
    replication: i32,
    admin: AdminClient<DefaultClientContext>,
    ends: Rc<EndsProbe>,
}

impl KafkaTopics {
    /// The topics of the cluster of `settings`, created with `replication` replicas.
    pub fn new(settings: KafkaSettings, replication: i32) -> StreamResult<KafkaTopics> {
        let admin = settings
            .client_config(&[])
            .create()
            .map_err(|e| backend_error(&settings, "create the admin client".into(), e))?;
        let ends = EndsProbe::new(&settings)
            .map_err(|e| backend_error(&settings, "create the ends probe".into(), e))?;
        Ok(KafkaTopics {
            settings,
            replication,
            admin,
            ends: Rc::new(ends),
        })
    }

    /// The probe that answers partition ends for this application.
    pub fn ends_probe(&self) -> Rc<EndsProbe> {
        self.ends.clone()
    }

    fn count(&self, name: &str) -> StreamResult<Option<u32>> {
        partition_count(self.admin.inner(), name, self.settings.request_timeout)
            .map_err(|e| backend_error(&self.settings, format!("describe topic {name}"), e))
    }
}

impl TopicCatalog for KafkaTopics {
    fn topic_or_create(&self, name: &str, config: TopicConfig) -> StreamResult<TopicInfo> {
        let info = |partitions| TopicInfo {
            name: name.to_owned(),
            partitions,
            cleanup_policy: config.cleanup_policy,
        };
        if let Some(n) = self.count(name)? {
            // An existing topic keeps its own settings. Its cleanup policy is reported as asked:
            // reading it from the cluster (DescribeConfigs) is not built yet.
            return Ok(info(n));
        }
        let policy = match config.cleanup_policy {
            CleanupPolicy::Compact => "compact",
            _ => "delete",
        };
        let partitions = i32::try_from(config.partitions).unwrap_or(i32::MAX);
        let new = NewTopic::new(name, partitions, TopicReplication::Fixed(self.replication))
            .set("cleanup.policy", policy);
        let options = AdminOptions::new().operation_timeout(Some(self.settings.request_timeout));
        let created = futures_executor::block_on(self.admin.create_topics([&new], &options))
            .map_err(|e| backend_error(&self.settings, format!("create topic {name}"), e))?;
        for r in created {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(backend_error(
                        &self.settings,
                        format!("create topic {name}"),
                        code,
                    ))
                }
            }
        }
        // Metadata may lag the creation for a moment.
        let deadline = Instant::now() + self.settings.request_timeout;
        loop {
            if let Some(n) = self.count(name)? {
                return Ok(info(n));
            }
            if Instant::now() >= deadline {
                let what = format!("create topic {name}");
                return Err(backend_error(
                    &self.settings,
                    what,
                    "not in the metadata after creation",
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn reader(
        &self,
        topic: &str,
        partition: u32,
        isolation: Isolation,
    ) -> StreamResult<Box<dyn eddy::PartitionRead>> {
        Ok(Box::new(KafkaPartitionReader::new(
            self.settings.clone(),
            topic,
            partition,
            isolation,
            self.ends.clone(),
        )?))
    }
}

/// Reads one partition of a Kafka topic by offset (module docs).
pub struct KafkaPartitionReader {
    settings: KafkaSettings,
    topic: String,
    partition: u32,
    consumer: BaseConsumer,
    ends_probe: Rc<EndsProbe>,
    /// Ends found by the last `bounds`.
    ends: Option<(u64, u64)>,
    /// The offset the consumer is positioned to return next, when known.
    next: Option<u64>,
}

impl KafkaPartitionReader {
    /// A reader of `partition` of `topic`, asking `ends_probe` where it ends.
    pub fn new(
        settings: KafkaSettings,
        topic: &str,
        partition: u32,
        isolation: Isolation,
        ends_probe: Rc<EndsProbe>,
    ) -> StreamResult<Self> {
        let level = match isolation {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        };
        let consumer = settings
            .client_config(&[
                ("group.id", "eddy-reader"),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
                ("fetch.wait.max.ms", "10"),
                // A restore reads a partition from its start: large fetches.
                ("fetch.message.max.bytes", FETCH_PARTITION_BYTES),
                ("fetch.max.bytes", FETCH_BYTES),
                ("queued.min.messages", QUEUED_RECORDS),
                ("isolation.level", level),
            ])
            .create()
            .map_err(|e| backend_error(&settings, format!("reader of {topic}"), e))?;
        Ok(KafkaPartitionReader {
            settings,
            topic: topic.to_owned(),
            partition,
            consumer,
            ends_probe,
            ends: None,
            next: None,
        })
    }

    fn failed(&self, what: &str, cause: impl ToString) -> StateError {
        StateError::Backend {
            topic: self.topic.clone(),
            partition: self.partition,
            what: format!("{what} (Kafka at {})", self.settings.brokers),
            cause: cause.to_string(),
        }
    }

    fn assign(&mut self, from: u64) -> StateResult<()> {
        let mut tpl = TopicPartitionList::new();
        let at = Offset::Offset(i64::try_from(from).unwrap_or(i64::MAX));
        (tpl.add_partition_offset(&self.topic, self.partition as i32, at))
            .map_err(|e| self.failed("assign", e))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| self.failed("assign", e))?;
        self.next = Some(from);
        Ok(())
    }
}

impl PartitionRead for KafkaPartitionReader {
    fn bounds(&mut self) -> StateResult<(u64, u64)> {
        let ends = (self.ends_probe.ends(&self.topic, self.partition))
            .map_err(|e| self.failed("partition ends", e))?;
        self.ends = Some(ends);
        Ok(ends)
    }

    fn read(&mut self, offset: u64, max_records: usize, max_bytes: usize) -> StateResult<Fetch> {
        let (low, end) = match self.ends {
            Some(ends) => ends,
            None => self.bounds()?,
        };
        let offset = offset.max(low);
        if offset >= end {
            return Ok(Fetch::from_records(Vec::new(), offset));
        }
        let mut from = offset;
        if self.next != Some(offset) {
            self.assign(from)?;
        }
        let deadline = Instant::now() + self.settings.request_timeout;
        let mut records = Vec::new();
        let (mut bytes, mut under_way) = (0usize, from <= low);
        let mut last_record = Instant::now();
        let mut assigned_at = Instant::now();
        loop {
            match self.consumer.poll(Duration::from_millis(20)) {
                Some(Ok(m)) => {
                    let at = m.offset().max(0) as u64;
                    if at < offset {
                        under_way = true;
                        continue;
                    }
                    if records.is_empty() && at > offset && !under_way {
                        // The broker may have skipped the rest of a batch: start further back.
                        from = from.saturating_sub(500.max(offset - from) * 4).max(low);
                        under_way = from <= low;
                        self.assign(from)?;
                        assigned_at = Instant::now();
                        continue;
                    }
                    let r = record_of(&m);
                    bytes +=
                        r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len);
                    records.push((at, r));
                    self.next = Some(at + 1);
                    last_record = Instant::now();
                    if records.len() >= max_records || bytes >= max_bytes || at + 1 >= end {
                        break;
                    }
                }
                Some(Err(e)) => return Err(self.failed("read", e)),
                // librdkafka fetches ahead: a pause in what it has is worth a short wait.
                None if !records.is_empty()
                    && last_record.elapsed() > Duration::from_millis(50) =>
                {
                    break
                }
                None if !records.is_empty() => {}
                // Nothing at all from the middle of the partition's last batch: the broker
                // skipped the rest of it, and no later record shows that it did.
                None if !under_way && assigned_at.elapsed() > Duration::from_millis(300) => {
                    from = from.saturating_sub(500.max(offset - from) * 4).max(low);
                    under_way = from <= low;
                    self.assign(from)?;
                    assigned_at = Instant::now();
                }
                None if Instant::now() >= deadline => {
                    return Err(self.failed(
                        &format!("read from offset {offset}"),
                        format!(
                            "nothing within {:?} although the partition ends at {end}",
                            self.settings.request_timeout
                        ),
                    ))
                }
                None => {}
            }
        }
        let next = records.last().map_or(offset, |(at, _)| at + 1);
        Ok(Fetch::from_records(records, next))
    }
}
