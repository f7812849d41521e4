//! [`OutputSink`]: where an application's output records go, whatever holds the topics;
//! [`LocalSink`] appends them to the local log.
//!
//! What the runtime relies on, whatever the backend:
//! - `append` keeps each partition's records in the order given, after those appended before;
//! - after `flush` returns, every record appended before it is durable as far as the backend's
//!   durability goes (fsynced locally when the application asks for it; acknowledged by the
//!   brokers on a cluster); a failure is an error and the runtime commits no input offset past
//!   it. A failed flush is never retried as if nothing happened.

use std::collections::HashMap;
use std::sync::Arc;

use crate::log::{Log, PartitionWriter, Record};
use crate::stream::StreamResult;

/// Where output records go (module docs for the contract).
pub trait OutputSink {
    /// Appends `records` to `partition` of `topic`.
    fn append(&mut self, topic: &str, partition: u32, records: &[Record]) -> StreamResult<()>;

    /// Makes every record appended so far durable.
    fn flush(&mut self) -> StreamResult<()>;

    /// Lets go of what appending held (the application stops or gave its tasks up).
    fn release(&mut self) {}
}

/// Appends to the local log through each partition's lent appender (other members of the
/// group, in other processes, write the same partitions between appends).
pub(crate) struct LocalSink {
    log: Log,
    fsync: bool,
    writers: HashMap<(String, u32), Arc<PartitionWriter>>,
    /// Appended to since the last flush (fsynced by it, with `fsync`).
    unflushed: Vec<Arc<PartitionWriter>>,
}

impl LocalSink {
    /// A sink into `log`, fsyncing at each flush when `fsync`.
    pub fn new(log: Log, fsync: bool) -> Self {
        LocalSink {
            log,
            fsync,
            writers: HashMap::new(),
            unflushed: Vec::new(),
        }
    }

    fn writer(&mut self, topic: &str, partition: u32) -> StreamResult<Arc<PartitionWriter>> {
        if let Some(w) = self.writers.get(&(topic.to_owned(), partition)) {
            return Ok(w.clone());
        }
        let w = self.log.topic(topic)?.lending_writer(partition)?;
        self.writers
            .insert((topic.to_owned(), partition), w.clone());
        Ok(w)
    }
}

impl OutputSink for LocalSink {
    fn append(&mut self, topic: &str, partition: u32, records: &[Record]) -> StreamResult<()> {
        let writer = self.writer(topic, partition)?;
        writer.append(records)?;
        if self.fsync && !self.unflushed.iter().any(|w| Arc::ptr_eq(w, &writer)) {
            self.unflushed.push(writer);
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        for writer in self.unflushed.drain(..) {
            writer.flush()?;
        }
        Ok(())
    }

    fn release(&mut self) {
        self.writers.clear();
    }
}
