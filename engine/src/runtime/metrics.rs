//! Counters of a running application, readable from any thread while it runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Live counters (relaxed atomics; each is exact, a snapshot is not one instant).
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub records_in: AtomicU64,
    pub deserialize_errors: AtomicU64,
    pub function_errors: AtomicU64,
    pub panics: AtomicU64,
    pub skipped: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub checkpoints: AtomicU64,
    pub restored_entries: AtomicU64,
    pub stores_rebuilt: AtomicU64,
    pub changes_undone: AtomicU64,
    pub state_resets: AtomicU64,
    pub late_records: AtomicU64,
    pub tasks_given_up: AtomicU64,
    /// Output records appended, as of the last checkpoint (the live count is the outputs').
    pub records_out: AtomicU64,
    /// Time spent in checkpoints, in microseconds, and the last one's.
    pub checkpoint_micros: AtomicU64,
    pub last_checkpoint_micros: AtomicU64,
    /// Time spent restoring stores, in microseconds.
    pub restore_micros: AtomicU64,
    /// Bytes of the owned tasks' state stores (SST files and memtables), as of the last
    /// checkpoint.
    pub state_bytes: AtomicU64,
    /// Records behind the end per owned input partition, as of the last checkpoint.
    pub lag: Mutex<BTreeMap<(String, u32), u64>>,
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// A copy of an application's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Input records processed (whatever their outcome).
    pub records_in: u64,
    /// Output records appended (to topics, repartition and dead-letter topics).
    pub records_out: u64,
    /// Records whose key or value did not decode.
    pub deserialize_errors: u64,
    /// Records for which a user function returned an error or a state access failed.
    pub function_errors: u64,
    /// Records for which a user function panicked.
    pub panics: u64,
    /// Failed records skipped under `ErrorPolicy::Skip`.
    pub skipped: u64,
    /// Failed records sent to a dead-letter topic.
    pub dead_lettered: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// Changelog entries applied while restoring stores.
    pub restored_entries: u64,
    /// Stores rebuilt from scratch (missing or corrupt).
    pub stores_rebuilt: u64,
    /// Changes of checkpoints left unfinished in a changelog (a writer stopped before the
    /// marker, on a backend without atomic appends) undone by restores.
    pub changes_undone: u64,
    /// Partitions whose state was cleared because the group's offsets had been reset.
    pub state_resets: u64,
    /// Records dropped because a window they belonged to had closed.
    pub late_records: u64,
    /// Tasks given up without a checkpoint: their partitions moved while this instance did not
    /// poll (past `max_poll_interval`), or a newer instance fenced it.
    pub tasks_given_up: u64,
    /// Records each owned input partition (topic, partition) was behind its end at the last
    /// checkpoint: its end offset minus the next offset to process.
    pub lag: BTreeMap<(String, u32), u64>,
    /// Time spent in checkpoints so far.
    pub checkpoint_time: Duration,
    /// How long the last checkpoint took.
    pub last_checkpoint_time: Duration,
    /// Time spent restoring state stores so far.
    pub restore_time: Duration,
    /// Bytes the owned tasks' state stores take (RocksDB's SST files and memtables), as of the
    /// last checkpoint.
    pub state_bytes: u64,
}

impl Metrics {
    /// The counters, with `records_out` from the caller (the live count) or, where it has none,
    /// as of the last checkpoint.
    pub fn snapshot(&self, records_out: Option<u64>) -> MetricsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            records_in: g(&self.records_in),
            records_out: records_out.unwrap_or_else(|| g(&self.records_out)),
            deserialize_errors: g(&self.deserialize_errors),
            function_errors: g(&self.function_errors),
            panics: g(&self.panics),
            skipped: g(&self.skipped),
            dead_lettered: g(&self.dead_lettered),
            checkpoints: g(&self.checkpoints),
            restored_entries: g(&self.restored_entries),
            stores_rebuilt: g(&self.stores_rebuilt),
            changes_undone: g(&self.changes_undone),
            state_resets: g(&self.state_resets),
            late_records: g(&self.late_records),
            tasks_given_up: g(&self.tasks_given_up),
            lag: self.lag.lock().clone(),
            checkpoint_time: Duration::from_micros(g(&self.checkpoint_micros)),
            last_checkpoint_time: Duration::from_micros(g(&self.last_checkpoint_micros)),
            restore_time: Duration::from_micros(g(&self.restore_micros)),
            state_bytes: g(&self.state_bytes),
        }
    }
}
