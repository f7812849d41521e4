//! [`KafkaGroup`]: an application's membership of its group on Kafka (an `eddy::GroupSource`):
//! the Kafka group protocol with cooperative rebalancing (`cooperative-sticky`).
//!
//! Revocation is handed over as the runtime expects: when a rebalance takes partitions away,
//! the rebalance callback only notes them (`revoking`); they stay assigned and readable until
//! the runtime has checkpointed their tasks and calls `release`, which unassigns them — the
//! group's rebalance waits for that, as librdkafka lets an application unassign after the
//! callback returned. Newly assigned partitions are assigned in the callback and start at the
//! group's committed offset until the runtime seeks them.
//!
//! Positions: the member tracks the next offset of each owned partition; records polled
//! before a seek took effect (older than the position) are dropped. Partition ends come from
//! fetch responses (librdkafka's statistics, every 50 ms; the application's `EndsProbe`
//! before the first), not ListOffsets (a tansu 0.6 quirk). A bounded run ends when every position reached
//! the end the last fetch reported.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use eddy::{
    Fetch, GroupSettings, GroupSource, Isolation, PolledBatch, Record, StreamError, StreamResult,
    TopicPartition,
};
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{backend_error, EndsProbe};
use crate::cluster::record_of;
use crate::KafkaSettings;

/// Rebalance events, noted by the callback during `poll`, taken by the member after it.
#[derive(Default)]
struct Events {
    assigned: Mutex<Vec<TopicPartition>>,
    revoked: Mutex<Vec<TopicPartition>>,
    /// A rebalance callback ran at least once (the member is in the group).
    joined: Mutex<bool>,
    /// The member is leaving: revoked partitions go at once (nothing will release them).
    leaving: Mutex<bool>,
    /// Partition ends as fetch responses report them (librdkafka's statistics).
    ends: Mutex<BTreeMap<TopicPartition, u64>>,
}

impl ClientContext for Events {
    fn stats(&self, statistics: Statistics) {
        let mut ends = self.ends.lock();
        for (topic, t) in statistics.topics {
            for (p, part) in t.partitions {
                if p >= 0 && part.hi_offset >= 0 {
                    ends.insert((topic.clone(), p as u32), part.hi_offset as u64);
                }
            }
        }
    }
}

/// `topic-p, topic-q, ...` for logs.
fn names(partitions: &[TopicPartition]) -> String {
    let names: Vec<String> = partitions.iter().map(|(t, p)| format!("{t}-{p}")).collect();
    names.join(", ")
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    (tpl.elements().iter())
        .map(|e| (e.topic().to_owned(), e.partition().max(0) as u32))
        .collect()
}

impl ConsumerContext for Events {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        *self.joined.lock() = true;
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = consumer.incremental_assign(tpl) {
                    tracing::warn!(error = %e, "Kafka group: assigning partitions failed");
                }
                self.assigned.lock().extend(partitions_of(tpl));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS if *self.leaving.lock() => {
                if let Err(e) = consumer.incremental_unassign(tpl) {
                    tracing::warn!(error = %e, "Kafka group: unassigning partitions failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Unassigned by `release`, once their tasks checkpointed.
                self.revoked.lock().extend(partitions_of(tpl));
            }
            other => tracing::warn!(error = ?other, "Kafka group: rebalance error"),
        }
    }
}

/// A member of an application's group on Kafka (module docs).
pub struct KafkaGroup {
    settings: KafkaSettings,
    group: String,
    max_poll_records: usize,
    consumer: BaseConsumer<Events>,
    ends_probe: Rc<EndsProbe>,
    topics: Vec<String>,
    owned: BTreeSet<TopicPartition>,
    revoking: BTreeSet<TopicPartition>,
    /// Next offset of each owned partition, once known (polled or sought).
    positions: BTreeMap<TopicPartition, u64>,
    paused: BTreeSet<TopicPartition>,
}

impl KafkaGroup {
    /// A member of `settings.group` on the cluster of `kafka`, asking `ends_probe` where
    /// partitions end before its own fetches say.
    pub fn new(
        kafka: KafkaSettings,
        settings: &GroupSettings,
        ends_probe: Rc<EndsProbe>,
    ) -> StreamResult<KafkaGroup> {
        let isolation = match settings.isolation {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        };
        let poll_interval = (settings.max_poll_interval)
            .map_or(300_000, |d| d.as_millis().max(1))
            .to_string();
        let consumer = kafka
            .client_config(&[
                ("group.id", settings.group.as_str()),
                ("partition.assignment.strategy", "cooperative-sticky"),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "false"),
                ("auto.offset.reset", "earliest"),
                ("isolation.level", isolation),
                ("max.poll.interval.ms", poll_interval.as_str()),
                ("fetch.wait.max.ms", "10"),
                ("statistics.interval.ms", "50"),
            ])
            .create_with_context(Events::default())
            .map_err(|e| backend_error(&kafka, "create the group consumer".into(), e))?;
        Ok(KafkaGroup {
            settings: kafka,
            group: settings.group.clone(),
            max_poll_records: settings.max_poll_records.max(1),
            consumer,
            ends_probe,
            topics: Vec::new(),
            owned: BTreeSet::new(),
            revoking: BTreeSet::new(),
            positions: BTreeMap::new(),
            paused: BTreeSet::new(),
        })
    }

    fn failed(&self, what: String, cause: impl ToString) -> StreamError {
        backend_error(
            &self.settings,
            format!("group {}: {what}", self.group),
            cause,
        )
    }

    /// Takes what the rebalance callback noted.
    fn take_events(&mut self) {
        let context = self.consumer.context();
        let assigned = std::mem::take(&mut *context.assigned.lock());
        if !assigned.is_empty() {
            tracing::info!(group = %self.group, partitions = %names(&assigned),
                "Kafka group: partitions assigned");
        }
        for tp in assigned {
            self.revoking.remove(&tp);
            self.owned.insert(tp);
        }
        let mut not_owned = TopicPartitionList::new();
        let revoked = std::mem::take(&mut *context.revoked.lock());
        if !revoked.is_empty() {
            tracing::info!(group = %self.group, partitions = %names(&revoked),
                "Kafka group: partitions revoked; handed over after their checkpoint");
        }
        for tp in revoked {
            match self.owned.contains(&tp) {
                true => {
                    self.revoking.insert(tp);
                }
                false => {
                    let _ = not_owned.add_partition_offset(&tp.0, tp.1 as i32, Offset::Invalid);
                }
            }
        }
        if not_owned.count() > 0 {
            if let Err(e) = self.consumer.incremental_unassign(&not_owned) {
                tracing::warn!(error = %e, "Kafka group: unassigning partitions failed");
            }
        }
    }

    fn one(topic: &str, partition: u32, offset: Option<u64>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        let at = offset.map_or(Offset::Invalid, |o| {
            Offset::Offset(i64::try_from(o).unwrap_or(i64::MAX))
        });
        // A fresh list with one entry cannot refuse it.
        let _ = tpl.add_partition_offset(topic, partition as i32, at);
        tpl
    }

    /// The end of a partition: from the last fetch responses when there were some, else asked.
    fn end_of(&self, topic: &str, partition: u32) -> StreamResult<u64> {
        let fetched = (self.consumer.context().ends.lock())
            .get(&(topic.to_owned(), partition))
            .copied();
        if let Some(end) = fetched {
            return Ok(end);
        }
        let (_, high) = (self.ends_probe.ends(topic, partition))
            .map_err(|e| self.failed(format!("end of {topic} partition {partition}"), e))?;
        Ok(high)
    }
}

impl GroupSource for KafkaGroup {
    fn subscribe(&mut self, topics: &[&str]) -> StreamResult<()> {
        self.topics = topics.iter().map(|t| (*t).to_owned()).collect();
        (self.consumer.subscribe(topics)).map_err(|e| self.failed("subscribe".into(), e))
    }

    fn poll(&mut self, wait: Duration) -> StreamResult<Vec<PolledBatch>> {
        let deadline = Instant::now() + wait;
        let mut polled: BTreeMap<TopicPartition, Vec<(u64, Record)>> = BTreeMap::new();
        let mut count = 0usize;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = if count > 0 {
                Duration::ZERO
            } else {
                left.min(Duration::from_millis(50))
            };
            let message = (self.consumer.poll(timeout)).map(|r| {
                r.map(|m| {
                    let tp = (m.topic().to_owned(), m.partition().max(0) as u32);
                    (tp, m.offset().max(0) as u64, record_of(&m))
                })
            });
            self.take_events();
            match message {
                Some(Ok((tp, offset, record))) => {
                    // Records of a partition paused after librdkafka fetched them still come
                    // back: its position has moved past them, so they are returned, not lost.
                    let stale = self.positions.get(&tp).is_some_and(|p| offset < *p);
                    if !self.owned.contains(&tp) || stale {
                        continue;
                    }
                    self.positions.insert(tp.clone(), offset + 1);
                    polled.entry(tp).or_default().push((offset, record));
                    count += 1;
                    if count >= self.max_poll_records {
                        break;
                    }
                }
                Some(Err(KafkaError::MessageConsumption(code))) => {
                    tracing::debug!(error = %code, "Kafka group: consume error");
                }
                Some(Err(e)) => return Err(self.failed("poll".into(), e)),
                None if count > 0 || Instant::now() >= deadline => break,
                None => {}
            }
        }
        Ok(polled
            .into_iter()
            .map(|((topic, partition), records)| {
                let next = records.last().map_or(0, |(o, _)| o + 1);
                PolledBatch {
                    topic,
                    partition,
                    records: Fetch::from_records(records, next),
                }
            })
            .collect())
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.owned.iter().cloned().collect()
    }

    fn revoking(&self) -> Vec<TopicPartition> {
        self.revoking.iter().cloned().collect()
    }

    fn release(&mut self, partitions: &[TopicPartition]) -> StreamResult<()> {
        let mut tpl = TopicPartitionList::new();
        for tp in partitions {
            if self.revoking.remove(tp) {
                self.owned.remove(tp);
                self.positions.remove(tp);
                self.paused.remove(tp);
                let _ = tpl.add_partition_offset(&tp.0, tp.1 as i32, Offset::Invalid);
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        tracing::info!(group = %self.group, partitions = %names(&partitions_of(&tpl)),
            "Kafka group: partitions handed over");
        (self.consumer.incremental_unassign(&tpl)).map_err(|e| self.failed("unassign".into(), e))
    }

    fn committed_with_metadata(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> StreamResult<Option<(u64, String)>> {
        let tpl = Self::one(topic, partition, None);
        let committed = (self
            .consumer
            .committed_offsets(tpl, self.settings.request_timeout))
        .map_err(|e| {
            self.failed(
                format!("committed offset of {topic} partition {partition}"),
                e,
            )
        })?;
        let found = committed.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => Some((o as u64, e.metadata().to_owned())),
            _ => None,
        });
        Ok(found)
    }

    fn commit_with_metadata(
        &mut self,
        offsets: &[(String, u32, u64)],
        metadata: &str,
    ) -> StreamResult<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in offsets {
            let mut e = tpl.add_partition(topic, *partition as i32);
            let at = Offset::Offset(i64::try_from(*offset).unwrap_or(i64::MAX));
            e.set_offset(at)
                .map_err(|e| self.failed("commit".into(), e))?;
            e.set_metadata(metadata);
        }
        (self.consumer.commit(&tpl, CommitMode::Sync)).map_err(|e| self.failed("commit".into(), e))
    }

    fn offset_bounds(&mut self, topic: &str, partition: u32) -> StreamResult<(u64, u64)> {
        (self.ends_probe.ends(topic, partition))
            .map_err(|e| self.failed(format!("ends of {topic} partition {partition}"), e))
    }

    fn seek(&mut self, topic: &str, partition: u32, offset: u64) -> StreamResult<()> {
        let tp = (topic.to_owned(), partition);
        let at = Offset::Offset(i64::try_from(offset).unwrap_or(i64::MAX));
        // Right after an assignment the partition may not be fetching yet: try again shortly.
        let deadline = Instant::now() + self.settings.request_timeout;
        loop {
            match self
                .consumer
                .seek(topic, partition as i32, at, Duration::from_secs(1))
            {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(topic, partition, offset, error = %e, "Kafka group: seek again");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(
                        self.failed(format!("seek {topic} partition {partition} to {offset}"), e)
                    )
                }
            }
        }
        self.positions.insert(tp, offset);
        Ok(())
    }

    fn pause(&mut self, topic: &str, partition: u32) {
        let tp = (topic.to_owned(), partition);
        if self.paused.insert(tp) {
            let _ = self.consumer.pause(&Self::one(topic, partition, None));
        }
    }

    fn resume(&mut self, topic: &str, partition: u32) {
        if self.paused.remove(&(topic.to_owned(), partition)) {
            let _ = self.consumer.resume(&Self::one(topic, partition, None));
        }
    }

    fn has_readable(&mut self, topic: &str, partition: u32) -> StreamResult<bool> {
        let position = self.positions.get(&(topic.to_owned(), partition)).copied();
        Ok(position.unwrap_or(0) < self.end_of(topic, partition)?)
    }

    fn readable_end(&mut self, topic: &str, partition: u32) -> StreamResult<u64> {
        self.end_of(topic, partition)
    }

    fn caught_up(&mut self) -> StreamResult<bool> {
        self.take_events();
        if !*self.consumer.context().joined.lock() || !self.revoking.is_empty() {
            return Ok(false);
        }
        let owned: Vec<TopicPartition> = self.owned.iter().cloned().collect();
        for (topic, partition) in owned {
            let position = self.positions.get(&(topic.clone(), partition)).copied();
            if position.unwrap_or(0) < self.end_of(&topic, partition)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn leave_and_rejoin(&mut self) {
        // What was revoked and not released yet goes now: its tasks were given up. What the
        // unsubscription revokes comes to partitions no longer owned, unassigned at once.
        let pending = self.revoking();
        if let Err(e) = self.release(&pending) {
            tracing::warn!(error = %e, "Kafka group: letting revoked partitions go failed");
        }
        self.consumer.unsubscribe();
        self.owned.clear();
        self.revoking.clear();
        self.positions.clear();
        self.paused.clear();
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        if let Err(e) = self.consumer.subscribe(&topics) {
            tracing::warn!(error = %e, "Kafka group: subscribing again failed; the next poll says");
        }
    }

    fn close(self: Box<Self>) -> StreamResult<()> {
        // Dropping leaves the group (`Drop`).
        Ok(())
    }
}

impl Drop for KafkaGroup {
    fn drop(&mut self) {
        // The consumer's close (when it drops after this) revokes everything: at once, since
        // nothing will release it.
        let pending = self.revoking();
        let _ = self.release(&pending);
        *self.consumer.context().leaving.lock() = true;
    }
}
