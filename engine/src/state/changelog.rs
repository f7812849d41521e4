//! [`Changelog`]: the one partition of a changelog topic a store writes at checkpoints and
//! reads back to restore, whatever holds it; [`LocalChangelog`] is the local log's.
//!
//! What a store relies on, whatever the backend:
//! - `append_checkpoint` appends its records as one unit: a reader (a restore) sees all of them
//!   or none, in order; under exactly-once they join the task's open transaction and are seen
//!   once it commits. It returns the offset after the last;
//! - `append_now` appends outside any transaction, readable at once: as one unit when `whole`,
//!   else possibly split (a wipe's tombstones, followed by a whole marker);
//! - after `flush` returns, what was appended survives a crash of this process and machine as
//!   far as the backend's durability goes; a failed flush is an error, never retried here;
//! - `read` returns committed records only (records of aborted transactions are not state), in
//!   offset order, from the offset asked for or the next one still stored.

use std::sync::Arc;

use crate::log::{
    Fetch, Isolation, PartitionReader, PartitionWriter, ProducerIdentity, Record, Topic,
};

use super::StateResult;

/// Reads one partition of a topic in offset order.
pub trait PartitionRead {
    /// The first offset still stored and the end offset (of the records the reader returns).
    fn bounds(&mut self) -> StateResult<(u64, u64)>;

    /// Records from `offset` (or the next one still stored), at most `max_records` and about
    /// `max_bytes`.
    fn read(&mut self, offset: u64, max_records: usize, max_bytes: usize) -> StateResult<Fetch>;
}

impl PartitionRead for PartitionReader {
    fn bounds(&mut self) -> StateResult<(u64, u64)> {
        let end = self.end_offset();
        Ok((self.log_start_offset()?, end))
    }

    fn read(&mut self, offset: u64, max_records: usize, max_bytes: usize) -> StateResult<Fetch> {
        Ok(PartitionReader::read(self, offset, max_records, max_bytes)?)
    }
}

/// One changelog partition of a store (module docs for the contract); reading it returns
/// committed records only.
pub trait Changelog: PartitionRead {
    /// The changelog topic's name.
    fn topic(&self) -> &str;

    /// The partition.
    fn partition(&self) -> u32;

    /// Appends a checkpoint's `records` as one unit (in the task's transaction, if any);
    /// returns the offset after the last.
    fn append_checkpoint(&self, records: &[Record]) -> StateResult<u64>;

    /// Appends `records` outside any transaction, as one unit when `whole`; returns the offset
    /// after the last.
    fn append_now(&self, records: &[Record], whole: bool) -> StateResult<u64>;

    /// Makes what was appended durable.
    fn flush(&self) -> StateResult<()>;

    /// Called when the restore is over: what reading needed can go.
    fn restored(&mut self) {}
}

/// A changelog partition of the local log: appended through the partition's (lent) appender,
/// inside the task's transaction under exactly-once.
pub(crate) struct LocalChangelog {
    topic: Topic,
    writer: Arc<PartitionWriter>,
    /// Open while the store restores.
    reader: Option<PartitionReader>,
    /// Exactly-once: the producer whose open transaction the appends join.
    producer: Option<ProducerIdentity>,
}

impl LocalChangelog {
    /// The changelog of `writer`'s partition of `topic`.
    pub fn new(
        topic: Topic,
        writer: Arc<PartitionWriter>,
        producer: Option<ProducerIdentity>,
    ) -> Self {
        LocalChangelog {
            topic,
            writer,
            reader: None,
            producer,
        }
    }

    fn reader(&mut self) -> StateResult<&mut PartitionReader> {
        let reader = match self.reader.take() {
            Some(r) => r,
            None => {
                let mut r = self.topic.reader(self.writer.partition())?;
                r.set_isolation(Isolation::ReadCommitted);
                r
            }
        };
        Ok(self.reader.insert(reader))
    }
}

impl PartitionRead for LocalChangelog {
    fn bounds(&mut self) -> StateResult<(u64, u64)> {
        let reader = self.reader()?;
        let end = reader.end_offset();
        Ok((reader.log_start_offset()?, end))
    }

    fn read(&mut self, offset: u64, max_records: usize, max_bytes: usize) -> StateResult<Fetch> {
        Ok(self.reader()?.read(offset, max_records, max_bytes)?)
    }
}

impl Changelog for LocalChangelog {
    fn topic(&self) -> &str {
        self.writer.topic()
    }

    fn partition(&self) -> u32 {
        self.writer.partition()
    }

    fn append_checkpoint(&self, records: &[Record]) -> StateResult<u64> {
        let appended = match self.producer {
            Some(p) => self.writer.append_transactional(p, records)?,
            None => self.writer.append_atomic(records)?,
        };
        Ok(appended.base_offset + appended.count)
    }

    fn append_now(&self, records: &[Record], whole: bool) -> StateResult<u64> {
        let appended = match whole {
            true => self.writer.append_atomic(records)?,
            false => self.writer.append(records)?,
        };
        Ok(appended.base_offset + appended.count)
    }

    fn flush(&self) -> StateResult<()> {
        Ok(self.writer.flush()?)
    }

    fn restored(&mut self) {
        self.reader = None;
    }
}
