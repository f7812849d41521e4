//! The seam between the runtime and where its records live: a [`Backend`] gives an
//! [`Application`](super::Application) its topics ([`TopicCatalog`]), its group membership and
//! input ([`GroupSource`]), where its outputs go ([`OutputSink`]) and its stores' changelogs
//! ([`Changelog`]). [`LocalBackend`], the local log, is the default; another backend (a Kafka
//! cluster, in `eddy-kafka`) implements the same traits and is passed to
//! [`Application::with_backend`](super::Application::with_backend). Exactly-once runs on the
//! local backend only for now: its transactions are the local log's.
//!
//! What the runtime relies on from a [`GroupSource`], whatever the backend:
//! - `poll` returns records of owned partitions only, each partition's in offset order, from
//!   the position `seek` set (or where the previous poll stopped);
//! - partitions being taken away stay owned and readable until `release` lets them go, so that
//!   their tasks checkpoint first (`revoking` names them);
//! - `commit_with_metadata` makes the offsets and their metadata durable before it returns;
//!   `committed_with_metadata` reads them back, also those another member committed;
//! - an instance that lost its partitions behind its back (past its poll interval, or fenced)
//!   returns [`GroupError::PollIntervalExceeded`](crate::GroupError::PollIntervalExceeded) or
//!   a fenced error ([`LogError::Fenced`](crate::LogError::Fenced)); the runtime then gives
//!   its tasks up and calls `leave_and_rejoin`.

use std::rc::Rc;
use std::time::Duration;

use crate::groups::{AutoOffsetReset, Consumer, ConsumerConfig, PolledBatch, TopicPartition};
use crate::log::{Isolation, Log, ProducerIdentity};
use crate::state::{Changelog, LocalChangelog};
use crate::stream::{
    LocalCatalog, LocalSink, OutputSink, StreamError, StreamResult, TopicCatalog, TopicInfo,
};

/// Where an application's topics, group and changelogs live (module docs).
pub trait Backend {
    /// A name for messages ("local log", "Kafka at host:port").
    fn describe(&self) -> String;

    /// The topics.
    fn catalog(&self) -> Rc<dyn TopicCatalog>;

    /// A member of `settings.group`, subscribed to nothing yet.
    fn group_source(&self, settings: &GroupSettings) -> StreamResult<Box<dyn GroupSource>>;

    /// Where outputs go; `fsync`: flushes make them durable on disk, not only written.
    fn output_sink(&self, fsync: bool) -> StreamResult<Box<dyn OutputSink>>;

    /// The changelog of a store: partition `partition` of `topic` (created by the runtime
    /// through the catalog, compacted, with as many partitions as the store's input). Under
    /// exactly-once on the local log, `transaction` is the task's producer, whose transactions
    /// the checkpoints' appends join; other backends refuse it.
    fn changelog(
        &self,
        topic: &TopicInfo,
        partition: u32,
        transaction: Option<ProducerIdentity>,
    ) -> StreamResult<Box<dyn Changelog>>;

    /// The local log, when the backend is one (exactly-once, which uses its transactions).
    fn local_log(&self) -> Option<&Log> {
        None
    }
}

/// How the runtime joins its group, whatever the backend.
#[derive(Clone, Debug)]
pub struct GroupSettings {
    /// The group (the application's).
    pub group: String,
    /// Where a partition without a committed offset starts (the runtime also seeks each
    /// task's inputs where it decides).
    pub auto_offset_reset: AutoOffsetReset,
    /// Records one poll returns at most.
    pub max_poll_records: usize,
    /// A member that does not poll for this long loses its partitions.
    pub max_poll_interval: Option<Duration>,
    /// Which records of transactional producers polls return.
    pub isolation: Isolation,
    /// Sets of topics whose partition `p` goes to one member together (joins).
    pub copartitioned: Vec<Vec<String>>,
    /// Commits are fsynced before they return.
    pub fsync_commits: bool,
}

impl GroupSettings {
    /// Settings for a plain member of `group`: earliest offsets when none is committed, up to
    /// 10,000 records a poll, a 300 s poll interval, committed records only, no co-partitioned
    /// topics, commits not fsynced (an application's come from its `AppConfig`).
    pub fn new(group: impl Into<String>) -> GroupSettings {
        GroupSettings {
            group: group.into(),
            auto_offset_reset: AutoOffsetReset::Earliest,
            max_poll_records: 10_000,
            max_poll_interval: Some(Duration::from_secs(300)),
            isolation: Isolation::ReadCommitted,
            copartitioned: Vec::new(),
            fsync_commits: false,
        }
    }
}

/// The local log: the default backend.
pub struct LocalBackend {
    log: Log,
}

impl LocalBackend {
    /// The backend of the data directory `log` is open on.
    pub fn new(log: Log) -> Self {
        LocalBackend { log }
    }
}

impl Backend for LocalBackend {
    fn describe(&self) -> String {
        format!("local log at {}", self.log.dir().display())
    }

    fn catalog(&self) -> Rc<dyn TopicCatalog> {
        Rc::new(LocalCatalog::new(self.log.clone()))
    }

    fn group_source(&self, settings: &GroupSettings) -> StreamResult<Box<dyn GroupSource>> {
        let config = ConsumerConfig {
            auto_offset_reset: settings.auto_offset_reset,
            max_poll_records: settings.max_poll_records,
            commit_on_revoke: false,
            release_manually: true,
            fsync_commits: settings.fsync_commits,
            max_poll_interval: settings.max_poll_interval,
            isolation: settings.isolation,
            copartitioned: settings.copartitioned.clone(),
            ..ConsumerConfig::new(settings.group.clone())
        };
        Ok(Box::new(Consumer::new(&self.log, config)?))
    }

    fn output_sink(&self, fsync: bool) -> StreamResult<Box<dyn OutputSink>> {
        Ok(Box::new(LocalSink::new(self.log.clone(), fsync)))
    }

    fn changelog(
        &self,
        topic: &TopicInfo,
        partition: u32,
        transaction: Option<ProducerIdentity>,
    ) -> StreamResult<Box<dyn Changelog>> {
        let topic = self.log.topic(&topic.name)?;
        // Lent between appends, so that the task's next owner can take the changelog over
        // while this instance is stopped (and fence it).
        let writer = topic.lending_writer(partition)?;
        Ok(Box::new(LocalChangelog::new(topic, writer, transaction)))
    }

    fn local_log(&self) -> Option<&Log> {
        Some(&self.log)
    }
}

/// The error for exactly-once asked of a backend without the local log's transactions.
pub(crate) fn no_exactly_once(backend: &dyn Backend) -> StreamError {
    StreamError::Setup(format!(
        "exactly-once processing is not available on the {}; use at-least-once",
        backend.describe()
    ))
}

/// The input side of an application: a member of its group that owns partitions of the
/// subscribed topics and reads them (module docs for the contract).
pub trait GroupSource {
    /// Joins the group for `topics`; partitions come with the following polls.
    fn subscribe(&mut self, topics: &[&str]) -> StreamResult<()>;

    /// Records of owned, unpaused partitions, waiting up to `wait` for some; rebalances first
    /// when the group changed.
    fn poll(&mut self, wait: Duration) -> StreamResult<Vec<PolledBatch>>;

    /// The partitions owned now (including those being revoked).
    fn assignment(&self) -> Vec<TopicPartition>;

    /// Owned partitions the group is taking away: still owned until [`release`](Self::release).
    fn revoking(&self) -> Vec<TopicPartition>;

    /// Lets revoked partitions go (after their tasks checkpointed).
    fn release(&mut self, partitions: &[TopicPartition]) -> StreamResult<()>;

    /// The group's committed offset of a partition and the metadata of the commit that set it.
    fn committed_with_metadata(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> StreamResult<Option<(u64, String)>>;

    /// Commits `(topic, partition, offset)` entries with `metadata`, durably.
    fn commit_with_metadata(
        &mut self,
        offsets: &[(String, u32, u64)],
        metadata: &str,
    ) -> StreamResult<()>;

    /// The first offset still stored and the end offset of a partition (where
    /// `auto_offset_reset` starts a partition without a committed offset).
    fn offset_bounds(&mut self, topic: &str, partition: u32) -> StreamResult<(u64, u64)>;

    /// Moves the position in an owned partition: the next poll reads from `offset`.
    fn seek(&mut self, topic: &str, partition: u32, offset: u64) -> StreamResult<()>;

    /// Stops polls from reading a partition until [`resume`](Self::resume).
    fn pause(&mut self, topic: &str, partition: u32);

    /// Lets polls read a paused partition again.
    fn resume(&mut self, topic: &str, partition: u32);

    /// Whether an owned partition has records past its position that a poll could return now.
    fn has_readable(&mut self, topic: &str, partition: u32) -> StreamResult<bool>;

    /// The end of an owned partition as this member last learnt it (its log end; its last
    /// stable offset when reading committed records only).
    fn readable_end(&mut self, topic: &str, partition: u32) -> StreamResult<u64>;

    /// Whether every owned partition was read to its end and no assignment is pending (the end
    /// of a bounded run).
    fn caught_up(&mut self) -> StreamResult<bool>;

    /// Forgets every partition, pause and position, and joins again at the next poll.
    fn leave_and_rejoin(&mut self);

    /// Leaves the group.
    fn close(self: Box<Self>) -> StreamResult<()>;
}

/// The local log's group member.
impl GroupSource for Consumer {
    fn subscribe(&mut self, topics: &[&str]) -> StreamResult<()> {
        Ok(Consumer::subscribe(self, topics)?)
    }

    fn poll(&mut self, wait: Duration) -> StreamResult<Vec<PolledBatch>> {
        Ok(Consumer::poll(self, wait)?)
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        Consumer::assignment(self)
    }

    fn revoking(&self) -> Vec<TopicPartition> {
        Consumer::revoking(self)
    }

    fn release(&mut self, partitions: &[TopicPartition]) -> StreamResult<()> {
        Ok(Consumer::release(self, partitions)?)
    }

    fn committed_with_metadata(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> StreamResult<Option<(u64, String)>> {
        Ok(Consumer::committed_with_metadata(self, topic, partition)?)
    }

    fn commit_with_metadata(
        &mut self,
        offsets: &[(String, u32, u64)],
        metadata: &str,
    ) -> StreamResult<()> {
        Ok(Consumer::commit_offsets_with_metadata(
            self, offsets, metadata,
        )?)
    }

    fn offset_bounds(&mut self, topic: &str, partition: u32) -> StreamResult<(u64, u64)> {
        let mut reader = self.log().topic(topic)?.reader(partition)?;
        Ok((reader.log_start_offset()?, reader.end_offset()))
    }

    fn seek(&mut self, topic: &str, partition: u32, offset: u64) -> StreamResult<()> {
        Ok(Consumer::seek(self, topic, partition, offset)?)
    }

    fn pause(&mut self, topic: &str, partition: u32) {
        Consumer::pause(self, topic, partition)
    }

    fn resume(&mut self, topic: &str, partition: u32) {
        Consumer::resume(self, topic, partition)
    }

    fn has_readable(&mut self, topic: &str, partition: u32) -> StreamResult<bool> {
        Ok(Consumer::has_readable(self, topic, partition)?)
    }

    fn readable_end(&mut self, topic: &str, partition: u32) -> StreamResult<u64> {
        Ok(Consumer::readable_end(self, topic, partition)?)
    }

    fn caught_up(&mut self) -> StreamResult<bool> {
        Ok(Consumer::caught_up(self)?)
    }

    fn leave_and_rejoin(&mut self) {
        Consumer::leave_and_rejoin(self)
    }

    fn close(self: Box<Self>) -> StreamResult<()> {
        Ok(Consumer::close(*self)?)
    }
}
