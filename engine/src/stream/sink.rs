//! [`Outputs`]: records produced by a running application, buffered per topic-partition and
//! appended in batches — when the buffers grow past 1 MiB, and always before a checkpoint commits
//! input offsets (outputs first, so that no committed input lacks its outputs). Under
//! exactly-once they are buffered per task instead (the input topic-partition whose record
//! produced them), for the runtime to append inside that task's transaction.

use std::collections::BTreeMap;

use super::catalog::TopicInfo;
use super::output_sink::OutputSink;
use super::StreamResult;
use crate::groups::TopicPartition;
use crate::log::{partition_for_key, Record};

/// Records a task produced: `(output topic id, partition, record)`, in order.
type TaskRecords = Vec<(usize, u32, Record)>;

/// Buffered bytes above which the runtime appends outputs without waiting for a checkpoint.
const FLUSH_BYTES: usize = 1 << 20;
/// Key and value buffers of appended records kept for the next records, at most.
const SPARE_BUFFERS: usize = 1 << 14;
/// Capacity of a new value buffer: room for a typical JSON result (a window result is ~80
/// bytes), so that it rarely grows.
const VALUE_CAPACITY: usize = 128;

struct OutTopic {
    topic: TopicInfo,
    pending: Vec<Vec<Record>>,
}

/// Output buffers of one application.
pub(crate) struct Outputs {
    topics: Vec<OutTopic>,
    pending_bytes: usize,
    sink: Box<dyn OutputSink>,
    /// Exactly-once: records buffered per task, and the task whose record is being processed.
    by_task: Option<BTreeMap<TopicPartition, TaskRecords>>,
    current: Option<TopicPartition>,
    /// Records appended so far.
    pub sent: u64,
    /// Cleared buffers of appended records, reused for the keys and values of new ones.
    spare: Vec<Vec<u8>>,
}

impl Outputs {
    /// Outputs appended to `sink`.
    pub fn new(sink: Box<dyn OutputSink>) -> Self {
        Outputs {
            topics: Vec::new(),
            pending_bytes: 0,
            sink,
            by_task: None,
            current: None,
            sent: 0,
            spare: Vec::new(),
        }
    }

    /// An empty buffer for a new record's key or value (one of an appended record's, when any).
    pub fn buffer(&mut self) -> Vec<u8> {
        self.spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(VALUE_CAPACITY))
    }

    /// Buffers what each task produces apart, for its transaction (exactly-once).
    pub fn buffer_per_task(&mut self) {
        self.by_task.get_or_insert_with(BTreeMap::new);
    }

    /// The task whose record is being processed (exactly-once), or none.
    pub fn set_task(&mut self, task: Option<&TopicPartition>) {
        self.current = task.cloned();
    }

    /// Takes what `task` produced, grouped by output topic-partition in order of first use:
    /// `(topic, partition, records)`.
    pub fn take_task(&mut self, task: &TopicPartition) -> Vec<(String, u32, Vec<Record>)> {
        let Some(records) = self.by_task.as_mut().and_then(|m| m.remove(task)) else {
            return Vec::new();
        };
        let mut out: Vec<(usize, u32, Vec<Record>)> = Vec::new();
        for (id, p, r) in records {
            self.pending_bytes = self.pending_bytes.saturating_sub(size_of_record(&r));
            match out.iter_mut().find(|(i, q, _)| *i == id && *q == p) {
                Some((_, _, list)) => list.push(r),
                None => out.push((id, p, vec![r])),
            }
        }
        let topics = &self.topics;
        out.into_iter()
            .filter_map(|(id, p, list)| Some((topics.get(id)?.topic.name.clone(), p, list)))
            .collect()
    }

    /// The id under which records for `topic` are sent (registering it once).
    pub fn register(&mut self, topic: &TopicInfo) -> usize {
        if let Some(i) = self.topics.iter().position(|t| t.topic.name == topic.name) {
            return i;
        }
        let n = topic.partitions as usize;
        self.topics.push(OutTopic {
            topic: topic.clone(),
            pending: (0..n).map(|_| Vec::new()).collect(),
        });
        self.topics.len() - 1
    }

    /// Buffers `record` for topic `id`: keyed records go to their murmur2 partition, keyless ones to
    /// `keyless_partition` modulo the partition count.
    pub fn send(&mut self, id: usize, keyless_partition: u32, record: Record) {
        let Some(out) = self.topics.get_mut(id) else {
            return;
        };
        let n = out.pending.len() as u32;
        let p = match &record.key {
            Some(k) => partition_for_key(k, n),
            None => keyless_partition % n.max(1),
        };
        self.pending_bytes += size_of_record(&record);
        if let (Some(by_task), Some(task)) = (&mut self.by_task, &self.current) {
            by_task
                .entry(task.clone())
                .or_default()
                .push((id, p, record));
            return;
        }
        if let Some(bucket) = out.pending.get_mut(p as usize) {
            bucket.push(record);
        }
    }

    /// Whether anything is buffered per task (exactly-once).
    pub fn has_task_records(&self) -> bool {
        self.by_task.as_ref().is_some_and(|m| !m.is_empty())
    }

    /// Whether enough is buffered to append now.
    pub fn wants_flush(&self) -> bool {
        self.pending_bytes >= FLUSH_BYTES
    }

    /// Appends every buffered record and flushes the sink (which fsyncs them when the
    /// application asks for it).
    pub fn flush(&mut self) -> StreamResult<()> {
        if self.pending_bytes == 0 {
            return Ok(());
        }
        for out in &mut self.topics {
            for (p, bucket) in out.pending.iter_mut().enumerate() {
                if bucket.is_empty() {
                    continue;
                }
                self.sink.append(&out.topic.name, p as u32, bucket)?;
                self.sent += bucket.len() as u64;
                let flushed: usize = bucket.iter().map(size_of_record).sum();
                self.pending_bytes = self.pending_bytes.saturating_sub(flushed);
                for r in bucket.drain(..) {
                    for mut b in [r.key, r.value].into_iter().flatten() {
                        if self.spare.len() < SPARE_BUFFERS && b.capacity() <= 4 * VALUE_CAPACITY {
                            b.clear();
                            self.spare.push(b);
                        }
                    }
                }
            }
        }
        self.sink.flush()
    }

    /// Drops every buffered record (the tasks that produced them were given up).
    pub fn discard(&mut self) {
        for out in &mut self.topics {
            out.pending.iter_mut().for_each(Vec::clear);
        }
        if let Some(by_task) = &mut self.by_task {
            by_task.clear();
        }
        self.pending_bytes = 0;
    }

    /// Lets go of what the sink holds for appending (partition appenders, shared per process
    /// through the log).
    pub fn release_writers(&mut self) {
        self.sink.release();
    }
}

/// What a buffered record counts against the flush threshold.
fn size_of_record(r: &Record) -> usize {
    r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len) + 32
}
