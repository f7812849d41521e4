//! The seam between the runtime and where its records live: [`GroupSource`], the group
//! membership and input side an [`Application`](super::Application) runs on.
//!
//! The local log's [`Consumer`] is the default implementation; another backend (a Kafka
//! cluster, in `eddy-kafka`) implements the same calls. What the runtime relies on, whatever
//! the backend:
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

use std::time::Duration;

use crate::groups::{Consumer, PolledBatch, TopicPartition};
use crate::stream::StreamResult;

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
