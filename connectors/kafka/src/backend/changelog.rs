//! [`KafkaChangelog`]: a store's changelog partition in a Kafka topic (an `eddy::Changelog`),
//! appended through the application's idempotent producer and read back for a restore.
//!
//! A checkpoint's records are sent and then flushed: the offset after them is the last one
//! Kafka acknowledged. Without transactions Kafka does not make them one unit: a crash in the
//! middle of a checkpoint can leave some of its changes without their marker. The restore does
//! not apply those: it undoes them (`eddy`'s `state/unfinished.rs`), so that the state is the
//! last marker's and the input records after it, processed again, count once.

use std::rc::Rc;

use eddy::{
    Changelog, Fetch, Isolation, PartitionRead, Record, StateError, StateResult, StreamError,
};

use super::producer::KafkaProducer;
use super::topics::KafkaPartitionReader;
use super::EndsProbe;

/// One changelog partition in Kafka (module docs).
pub struct KafkaChangelog {
    producer: Rc<KafkaProducer>,
    topic: String,
    partition: u32,
    ends: Rc<EndsProbe>,
    /// Open while the store restores.
    reader: Option<KafkaPartitionReader>,
}

impl KafkaChangelog {
    /// Partition `partition` of Kafka topic `topic`, written through `producer`, its ends
    /// asked of `ends`.
    pub fn new(
        producer: Rc<KafkaProducer>,
        topic: &str,
        partition: u32,
        ends: Rc<EndsProbe>,
    ) -> Self {
        KafkaChangelog {
            producer,
            topic: topic.to_owned(),
            partition,
            ends,
            reader: None,
        }
    }

    fn reader(&mut self) -> StateResult<&mut KafkaPartitionReader> {
        let reader = match self.reader.take() {
            Some(r) => r,
            None => KafkaPartitionReader::new(
                self.producer.settings().clone(),
                &self.topic,
                self.partition,
                Isolation::ReadCommitted,
                self.ends.clone(),
            )
            .map_err(|e| self.failed("reader", e))?,
        };
        Ok(self.reader.insert(reader))
    }

    fn failed(&self, what: &str, cause: impl ToString) -> StateError {
        StateError::Backend {
            topic: self.topic.clone(),
            partition: self.partition,
            what: what.to_owned(),
            cause: cause.to_string(),
        }
    }

    fn append_flushed(&self, records: &[Record]) -> StateResult<u64> {
        let sent = self
            .producer
            .send(&self.topic, self.partition, records)
            .and_then(|()| self.producer.flush());
        sent.map_err(|e: StreamError| self.failed("append", e))?;
        (self.producer.next_offset(&self.topic, self.partition))
            .ok_or_else(|| self.failed("append", "Kafka acknowledged no record"))
    }
}

impl PartitionRead for KafkaChangelog {
    fn bounds(&mut self) -> StateResult<(u64, u64)> {
        self.reader()?.bounds()
    }

    fn read(&mut self, offset: u64, max_records: usize, max_bytes: usize) -> StateResult<Fetch> {
        self.reader()?.read(offset, max_records, max_bytes)
    }
}

impl Changelog for KafkaChangelog {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn partition(&self) -> u32 {
        self.partition
    }

    fn append_checkpoint(&self, records: &[Record]) -> StateResult<u64> {
        self.append_flushed(records)
    }

    fn append_now(&self, records: &[Record], _whole: bool) -> StateResult<u64> {
        self.append_flushed(records)
    }

    fn flush(&self) -> StateResult<()> {
        self.producer.flush().map_err(|e| self.failed("flush", e))
    }

    fn restored(&mut self) {
        self.reader = None;
    }
}
