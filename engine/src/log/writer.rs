//! The appender of one partition: assigns offsets, writes batches to the active segment, rolls
//! segments, publishes the tail for readers, enforces retention and makes appends durable.
//!
//! Invariants: at most one `PartitionWriter` per partition exists across all processes (an
//! exclusive lock on the partition's `lock` file, held for the writer's life); the writer's
//! background threads (interval flusher, compactor) share only its [`WriterCore`] and are stopped
//! and joined before the drop of the `PartitionWriter` releases the lock, so that a writer opened
//! right after the drop returns never finds the partition locked; the tail is published
//! only after the bytes it covers are written; every segment before the active one is fsynced
//! before the roll that sealed it returns, so syncing the active segment makes everything before it
//! durable.
//!
//! A failed fsync poisons the writer: on Linux the kernel may drop the dirty pages of a failed
//! writeback and a later fsync then succeeds, so nothing after the failure is ever reported
//! durable; every later append and flush returns [`LogError::Poisoned`] naming the first failure
//! until the partition is reopened. So does a failed write, except running out of space, which
//! leaves the segment as it was (the partial batch is cut off) and can be retried once space is
//! freed.

use std::fs::{File, OpenOptions};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::batch::{
    encode_batch_with, marker_record, Marker, ProducerIdentity, TxnFields, CONTROL,
    MAX_BATCH_BYTES, TRANSACTIONAL,
};
use super::config::{CleanupPolicy, Durability, TopicConfig};
use super::error::{IoContext, LogError, LogResult};
use super::record::Record;
use super::segment::{
    index_capacity, list_segments, open_sealed, remove_temporaries, segment_path, sync_dir,
    ActiveSegment, RecoveryReport, SealedSegment,
};
use super::tail::{Tail, TailFile};
use super::transactions::{self as txn, PartitionTxns, SnapshotAt};

/// Records of one append are cut into batches of about this many bytes.
const TARGET_BATCH_BYTES: usize = 1 << 20;

/// The offsets an append was given: `base_offset..base_offset + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record.
    pub base_offset: u64,
    /// How many records were appended.
    pub count: u64,
}

impl Appended {
    /// Offset of the last record (`None` for an empty append).
    pub fn last_offset(&self) -> Option<u64> {
        self.count.checked_sub(1).map(|c| self.base_offset + c)
    }
}

pub(crate) struct WriterState {
    pub active: ActiveSegment,
    pub sealed: Vec<SealedSegment>,
    /// Transactions open in the partition.
    pub txns: PartitionTxns,
    pub(crate) buf: Vec<u8>,
    /// Holds on the partition's lock: one for the writer's life, unless it lends the partition
    /// (`share`); then one per call that changes the log (see `lease.rs`).
    pub(crate) holds: u32,
    /// The tail's generation when this writer last took the partition.
    pub(crate) generation: u64,
    /// Where the last transaction snapshot this writer wrote resumes: (segment base, position).
    pub(crate) snapshot_at: Option<(u64, u64)>,
}

impl WriterState {
    /// The tail to publish: the active segment's end and the last stable offset.
    pub(crate) fn tail(&self) -> Tail {
        Tail {
            active_base: self.active.base,
            position: self.active.size,
            next_offset: self.active.next_offset,
            last_stable: Some(self.last_stable()),
        }
    }

    /// The last stable offset, never below the log start: retention may delete the first batches
    /// of a transaction still open (as in Kafka, the LSO then stays at the log start until it
    /// ends).
    fn last_stable(&self) -> u64 {
        let log_start = self.sealed.first().map_or(self.active.base, |s| s.base);
        (self.txns.last_stable(self.active.next_offset)).max(log_start)
    }

    /// Where a snapshot of the open transactions taken now resumes.
    fn snapshot_at(&self) -> SnapshotAt {
        SnapshotAt {
            segment_base: self.active.base,
            position: self.active.size,
            offset: self.active.next_offset,
        }
    }
}

pub(crate) struct SyncState {
    pub(crate) synced_offset: u64,
    syncing: bool,
    fsyncs: u64,
}

/// The exclusive appender of one partition. Share it between threads with `Arc`; its methods
/// are those of [`WriterCore`]. Dropping the last handle stops and joins its background threads
/// and then releases the partition's lock, before the drop returns.
pub struct PartitionWriter {
    core: Arc<WriterCore>,
    flusher: Option<JoinHandle<()>>,
}

/// The state of a [`PartitionWriter`] that its background threads share with it.
pub struct WriterCore {
    pub(crate) topic: String,
    pub(crate) partition: u32,
    pub(crate) dir: PathBuf,
    pub(crate) config: TopicConfig,
    pub(crate) state: Mutex<WriterState>,
    /// The partition's `lock` file, flock-ed while `state.holds > 0`; closed (releasing the
    /// lock) when the last `Arc` of the core drops, after the background threads are joined.
    pub(crate) lock: File,
    /// Set by `share`: the partition is lent to other processes between calls.
    pub(crate) shared: AtomicBool,
    /// Set once `topic.json` is known to say that the topic holds transactional batches.
    transactional_format: AtomicBool,
    pub(crate) tail: TailFile,
    pub(crate) sync: Mutex<SyncState>,
    synced: Condvar,
    last_sync: Mutex<Instant>,
    pub(crate) maintenance: Mutex<()>,
    recovery: RecoveryReport,
    this: Weak<WriterCore>,
    /// Set when the owning `PartitionWriter` drops: background work stops at its next check.
    pub(crate) stopping: AtomicBool,
    /// Wakes the flusher early (to stop).
    stop_signal: (Mutex<()>, Condvar),
    /// The running or finished background compaction, joined on drop.
    compactor: Mutex<Option<JoinHandle<()>>>,
    /// The failure that poisoned this writer, if any: set once, never cleared.
    poisoned: std::sync::OnceLock<String>,
    /// The last background compaction's failure, until taken by `take_background_error`.
    background_error: Mutex<Option<String>>,
}

impl Deref for PartitionWriter {
    type Target = WriterCore;

    fn deref(&self) -> &WriterCore {
        &self.core
    }
}

/// Takes the partition's exclusive lock. A reader checking whether an appender is alive holds a
/// shared lock for a moment, so a refusal is retried for up to 200 ms before it is believed.
pub(crate) fn take_lock(lock: &File, topic: &str, partition: u32, path: &Path) -> LogResult<()> {
    take_lock_within(lock, topic, partition, path, Duration::from_millis(200))
}

/// Takes the partition's exclusive lock, retrying for up to `wait`.
pub(crate) fn take_lock_within(
    lock: &File,
    topic: &str,
    partition: u32,
    path: &Path,
    wait: Duration,
) -> LogResult<()> {
    let deadline = Instant::now() + wait;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LogError::Locked {
                    topic: topic.to_owned(),
                    partition,
                    path: path.to_owned(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e).ctx("lock", path),
        }
    }
}

/// Recovers the partition in `dir` (its lock held): the active segment, the sealed ones and the
/// open transactions; cuts a torn tail once every check passed and makes what is left durable.
pub(crate) fn load_state(
    dir: &Path,
    config: &TopicConfig,
) -> LogResult<(WriterState, RecoveryReport)> {
    remove_temporaries(dir)?;
    let interval = config.index_interval_bytes;
    let capacity = index_capacity(config.segment_bytes, interval);
    let mut bases = list_segments(dir)?;
    let mut recovery = RecoveryReport::default();
    let active = match bases.pop() {
        None => ActiveSegment::create(dir, 0, capacity, interval)?,
        Some(last) => ActiveSegment::recover(dir, last, capacity, interval)?,
    };
    let mut sealed = Vec::with_capacity(bases.len());
    for (i, base) in bases.iter().enumerate() {
        let next = bases.get(i + 1).copied().unwrap_or(active.base);
        let (seg, rebuilt) = open_sealed(dir, *base, next, interval)?;
        if rebuilt {
            recovery.rebuilt_indexes.push(*base);
        }
        sealed.push(seg);
    }
    let txns = txn::recover(dir, &sealed, &active)?;
    // Every check passed: only now is a torn tail cut. What recovery left is made durable once,
    // so that `durable_offset` starts out true.
    active.cut_torn_tail(&mut recovery)?;
    active
        .log
        .sync_data()
        .ctx("fsync segment", &active.log_path)?;
    let state = WriterState {
        active,
        sealed,
        txns,
        buf: Vec::with_capacity(TARGET_BATCH_BYTES + (64 << 10)),
        holds: 1,
        generation: 0,
        snapshot_at: None,
    };
    Ok((state, recovery))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl PartitionWriter {
    /// Takes the partition's lock, recovers its segments and starts the interval flusher.
    pub(crate) fn open(
        topic: &str,
        partition: u32,
        dir: &Path,
        config: TopicConfig,
        lend: bool,
    ) -> LogResult<Self> {
        std::fs::create_dir_all(dir).ctx("create partition directory", dir)?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .ctx("open lock", &lock_path)?;
        // A partition lent between appends is held for a call at a time: wait as a lending
        // appender taking it back waits. Otherwise only a reader's probe can be in the way.
        let lent = TailFile::open_read_only(&dir.join("tail")).is_ok_and(|t| t.lent_this_boot());
        let wait = match lent {
            true => super::lease::LEND_WAIT,
            false => Duration::from_millis(200),
        };
        super::lease::take_lock_at_open(&lock, topic, partition, &lock_path, wait)?;
        // Says, while this open holds the lock, whether the opener will lend the partition: one
        // more opener meanwhile waits for it as for any lending appender.
        super::lease::write_lend_intent(&lock, &lock_path, lend)?;
        let (mut state, recovery) = load_state(dir, &config)?;
        let tail_value = state.tail();
        let tail_path = dir.join("tail");
        let tail = TailFile::open(&tail_path, tail_value)?;
        tail.publish(tail_value);
        tail.set_closed(false).ctx("fsync tail", &tail_path)?;
        state.generation = tail.bump_generation();
        let core = Arc::new_cyclic(|this| WriterCore {
            this: this.clone(),
            topic: topic.to_owned(),
            partition,
            dir: dir.to_owned(),
            sync: Mutex::new(SyncState {
                synced_offset: tail_value.next_offset,
                syncing: false,
                fsyncs: 0,
            }),
            state: Mutex::new(state),
            lock,
            shared: AtomicBool::new(false),
            transactional_format: AtomicBool::new(false),
            config,
            tail,
            synced: Condvar::new(),
            last_sync: Mutex::new(Instant::now()),
            maintenance: Mutex::new(()),
            recovery,
            stopping: AtomicBool::new(false),
            stop_signal: (Mutex::new(()), Condvar::new()),
            compactor: Mutex::new(None),
            poisoned: std::sync::OnceLock::new(),
            background_error: Mutex::new(None),
        });
        let flusher = match core.config.flush_interval() {
            Some(every) => Some(spawn_flusher(Arc::clone(&core), every)?),
            None => None,
        };
        let writer = PartitionWriter { core, flusher };
        writer.enforce_retention()?;
        Ok(writer)
    }
}

impl WriterCore {
    /// Topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Partition number.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// What recovery did when this writer opened the partition.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The next offset to be assigned.
    pub fn end_offset(&self) -> u64 {
        self.state.lock().active.next_offset
    }

    /// Offsets below this are on stable storage (fsynced) as far as this writer knows.
    pub fn durable_offset(&self) -> u64 {
        self.sync.lock().synced_offset
    }

    /// How many fsyncs of segment data this writer has issued (for group-commit metrics).
    pub fn fsync_count(&self) -> u64 {
        self.sync.lock().fsyncs
    }

    /// The first offset still stored.
    pub fn log_start_offset(&self) -> u64 {
        let st = self.state.lock();
        st.sealed.first().map_or(st.active.base, |s| s.base)
    }

    /// The failure that stopped this writer accepting appends, if one did.
    pub fn poisoned_by(&self) -> Option<&str> {
        self.poisoned.get().map(String::as_str)
    }

    /// The last failure of a background compaction since the previous call (the log was left
    /// as it was; the next roll tries again).
    pub fn take_background_error(&self) -> Option<String> {
        self.background_error.lock().take()
    }

    fn check_poisoned(&self) -> LogResult<()> {
        match self.poisoned.get() {
            None => Ok(()),
            Some(cause) => Err(LogError::Poisoned {
                topic: self.topic.clone(),
                partition: self.partition,
                durable_offset: self.sync.lock().synced_offset,
                cause: cause.clone(),
            }),
        }
    }

    /// Records `e` as the failure that poisons this writer (the first one wins) and returns it.
    fn poison(&self, e: LogError) -> LogError {
        if self.poisoned.set(e.to_string()).is_ok() {
            tracing::error!(topic = %self.topic, partition = self.partition, error = %e,
                "partition writer poisoned: no more appends until it is reopened");
        }
        e
    }

    /// Handles a failure inside an append: out of space on a write cuts the partial batch and
    /// leaves the writer usable; anything else that touched the disk poisons it.
    fn on_write_failure(&self, st: &mut WriterState, e: LogError) -> LogError {
        match &e {
            LogError::AppendRefused { .. } => e,
            _ if e.is_out_of_space() => match st.active.cut_partial_write() {
                Ok(()) => e,
                Err(cut) => self.poison(cut),
            },
            _ => self.poison(e),
        }
    }

    /// Writes the snapshot of open transactions as of the end of the log (derived data: a
    /// failure is logged, and the next recovery reads more of the log instead).
    pub(crate) fn snapshot_txns(&self, st: &mut WriterState) {
        let at = st.snapshot_at();
        st.snapshot_at = Some((at.segment_base, at.position));
        if let Err(e) = txn::write_snapshot(&self.dir, at, &st.txns) {
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e,
                "cannot write the transaction snapshot; the next open reads the log instead");
        }
    }

    fn fenced(&self, reason: String) -> LogError {
        LogError::Fenced {
            topic: self.topic.clone(),
            partition: self.partition,
            reason,
        }
    }

    fn refuse(&self, reason: String) -> LogError {
        LogError::AppendRefused {
            topic: self.topic.clone(),
            partition: self.partition,
            reason,
        }
    }

    /// Appends `records` in order and returns the offsets they were given. When it returns under
    /// `Durability::Always`, the records are on stable storage. An error leaves every record
    /// appended before the call intact; records of the failed call may be partly present.
    pub fn append(&self, records: &[Record]) -> LogResult<Appended> {
        self.append_in_batches(records, TARGET_BATCH_BYTES, false)
    }

    /// Appends `records` as one batch, so that after a crash either all of them are in the log or
    /// none is (a torn batch is cut on recovery). Refused when they encode to more than 64 MiB.
    /// Durability as for [`append`](Self::append).
    pub fn append_atomic(&self, records: &[Record]) -> LogResult<Appended> {
        self.append_in_batches(records, MAX_BATCH_BYTES, true)
    }

    /// Appends `records` as one batch of `producer`'s transaction in this partition (opened by
    /// its first batch here, ended by [`end_transaction`](Self::end_transaction)). Refused when
    /// `producer` is fenced: a newer epoch of it has a transaction open here. Durability as for
    /// [`append`](Self::append).
    pub fn append_transactional(
        &self,
        producer: ProducerIdentity,
        records: &[Record],
    ) -> LogResult<Appended> {
        self.append_with(records, MAX_BATCH_BYTES, true, Some((producer, None)))
    }

    /// Ends `producer`'s transaction in this partition with a COMMIT or ABORT marker (written
    /// even when none is open here, so that ending a transaction twice is harmless) and returns
    /// the marker's offset. An abort is listed in the segment's `.txnindex` before the last
    /// stable offset moves past it. Refused when `producer` is fenced.
    pub fn end_transaction(&self, producer: ProducerIdentity, commit: bool) -> LogResult<u64> {
        let marker = if commit {
            Marker::Commit
        } else {
            Marker::Abort
        };
        let record = marker_record(marker, now_ms());
        let appended = self.append_with(
            std::slice::from_ref(&record),
            MAX_BATCH_BYTES,
            true,
            Some((producer, Some(marker))),
        )?;
        Ok(appended.base_offset)
    }

    /// The last stable offset: the first offset of the earliest transaction open here, or the
    /// end offset when none is.
    pub fn last_stable_offset(&self) -> u64 {
        self.state.lock().last_stable()
    }

    fn append_in_batches(
        &self,
        records: &[Record],
        batch_bytes: usize,
        atomic: bool,
    ) -> LogResult<Appended> {
        self.append_with(records, batch_bytes, atomic, None)
    }

    fn append_with(
        &self,
        records: &[Record],
        batch_bytes: usize,
        atomic: bool,
        txn: Option<(ProducerIdentity, Option<Marker>)>,
    ) -> LogResult<Appended> {
        if self.config.cleanup_policy == CleanupPolicy::Compact {
            if let Some(i) = records.iter().position(|r| r.key.is_none()) {
                return Err(self.refuse(format!(
                    "record {i} has no key; a compacted topic needs keys"
                )));
            }
        }
        self.check_poisoned()?;
        let now = now_ms();
        let (appended, rolled) = {
            let mut st = self.state.lock();
            self.check_poisoned()?;
            self.hold(&mut st)?;
            let result = self.append_locked(&mut st, records, now, batch_bytes, atomic, txn);
            self.unhold(&mut st);
            result?
        };
        if rolled && self.config.cleanup_policy == CleanupPolicy::Compact {
            self.compact_in_background();
        }
        match self.config.durability {
            Durability::Always => self.sync_to(appended.base_offset + appended.count)?,
            Durability::IntervalMs(ms) => {
                if self.last_sync.lock().elapsed() >= Duration::from_millis(ms) {
                    self.flush()?;
                }
            }
            Durability::None => {}
        }
        Ok(appended)
    }

    /// The body of an append, under the state lock with the partition held.
    fn append_locked(
        &self,
        st: &mut WriterState,
        records: &[Record],
        now: i64,
        batch_bytes: usize,
        atomic: bool,
        txn: Option<(ProducerIdentity, Option<Marker>)>,
    ) -> LogResult<(Appended, bool)> {
        if txn.is_some() && !self.transactional_format.load(Ordering::Acquire) {
            // Before the first transactional batch: a build that reads only plain topics must
            // refuse this one rather than return its markers as records.
            let topic_dir = self.dir.parent().unwrap_or(&self.dir);
            super::topic::mark_transactional(topic_dir)?;
            self.transactional_format.store(true, Ordering::Release);
        }
        let base_offset = st.active.next_offset;
        let fields = match txn {
            Some((producer, marker)) => {
                st.txns
                    .check(producer, marker.is_some())
                    .map_err(|reason| self.fenced(reason))?;
                Some(TxnFields {
                    attributes: match marker {
                        Some(_) => TRANSACTIONAL | CONTROL,
                        None => TRANSACTIONAL,
                    },
                    producer,
                    base_sequence: match marker {
                        Some(_) => -1,
                        None => st.txns.next_sequence(producer),
                    },
                })
            }
            None => None,
        };
        let mut rolled = false;
        let mut start = 0;
        let mut failure = None;
        while start < records.len() {
            let rest = records.get(start..).unwrap_or_default();
            match self.write_batch(st, rest, now, batch_bytes, atomic, fields) {
                Ok((taken, roll)) => {
                    rolled |= roll;
                    start += taken;
                }
                Err(e) => {
                    failure = Some(self.on_write_failure(st, e));
                    break;
                }
            }
        }
        if let (Some((producer, marker)), None) = (txn, &failure) {
            let written = st.active.next_offset - base_offset;
            match marker {
                None => st.txns.on_data(producer, base_offset, written as u32),
                Some(marker) => {
                    let segment = st.active.base;
                    if let Some(aborted) = st.txns.on_marker(producer, marker, base_offset) {
                        // Listed before the published last stable offset moves past it.
                        txn::append_aborted(&self.dir, segment, &aborted)
                            .map_err(|e| self.poison(e))?;
                        st.txns.on_listed(segment);
                    }
                }
            }
        }
        // Batches written before a failure are in the log: readers may see them.
        self.tail.publish(st.tail());
        if let Some(e) = failure {
            return Err(e);
        }
        let appended = Appended {
            base_offset,
            count: st.active.next_offset - base_offset,
        };
        if rolled {
            self.retention_locked(st, now)?;
        }
        Ok((appended, rolled))
    }

    /// Encodes the next batch from the front of `records` and writes it, rolling first if needed.
    /// Returns how many records it took and whether it rolled.
    fn write_batch(
        &self,
        st: &mut WriterState,
        records: &[Record],
        now: i64,
        batch_bytes: usize,
        atomic: bool,
        txn: Option<TxnFields>,
    ) -> LogResult<(usize, bool)> {
        let WriterState { active, buf, .. } = st;
        buf.clear();
        let (header, taken) =
            encode_batch_with(buf, active.next_offset, records, now, batch_bytes, txn);
        if atomic && taken < records.len() {
            return Err(self.refuse(format!(
                "{} records do not fit one {MAX_BATCH_BYTES}-byte batch",
                records.len()
            )));
        }
        if header.total_len > MAX_BATCH_BYTES {
            return Err(self.refuse(format!(
                "a record encodes to {} bytes, over the {MAX_BATCH_BYTES}-byte limit",
                header.total_len
            )));
        }
        let too_old = match (self.config.segment_ms, active.first_timestamp) {
            (Some(ms), Some(first)) => header.max_timestamp.saturating_sub(first) > ms as i64,
            _ => false,
        };
        let roll = active.is_full(header.total_len as u64, self.config.segment_bytes)
            || (too_old && active.size > 0);
        if roll {
            self.roll(st)?;
        }
        let WriterState { active, buf, .. } = st;
        if roll {
            // Offsets were assigned before the roll and do not change: the new segment starts at
            // the same next offset.
            debug_assert_eq!(active.next_offset, header.base_offset);
        }
        active.append(buf, &header)?;
        Ok((taken, roll))
    }

    /// Seals the active segment and starts a new one at the next offset.
    fn roll(&self, st: &mut WriterState) -> LogResult<()> {
        let interval = self.config.index_interval_bytes;
        let capacity = index_capacity(self.config.segment_bytes, interval);
        let fresh = ActiveSegment::create(&self.dir, st.active.next_offset, capacity, interval)
            .inspect_err(|e| {
                if e.is_out_of_space() {
                    // The new segment's files hold nothing yet: remove them so that the active
                    // segment stays the last one and the space they took is free again.
                    let _ = delete_segment_files(&self.dir, st.active.next_offset);
                }
            })?;
        let old = std::mem::replace(&mut st.active, fresh);
        // Every durability setting fsyncs a segment when it is sealed (once per segment, mostly
        // written back by then): after a power loss only the active segment can have lost bytes,
        // so recovery always finds a prefix of the log.
        let sealed_base = old.base;
        st.sealed.push(old.seal(true)?);
        // A sealed segment's aborted-transaction index is as durable as its batches.
        txn::sync_aborted(&self.dir, sealed_base)?;
        sync_dir(&self.dir)?;
        self.tail.publish(st.tail());
        self.snapshot_txns(st);
        Ok(())
    }

    /// Starts a compaction on its own thread unless one is running; appends go on meanwhile.
    /// The thread is joined by the next background compaction or by the owner's drop.
    fn compact_in_background(&self) {
        let mut slot = self.compactor.lock();
        if self.maintenance.is_locked() || slot.as_ref().is_some_and(|t| !t.is_finished()) {
            return; // a pass is running; the next roll starts another
        }
        if let Some(finished) = slot.take() {
            let _ = finished.join();
        }
        let Some(me) = self.this.upgrade() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("eddy-compactor".into())
            .spawn(move || {
                // A failed background compaction leaves the log as it was; the next roll retries
                // and an explicit `compact` call reports the error.
                if let Err(e) = me.compact() {
                    tracing::warn!(topic = %me.topic, partition = me.partition, error = %e,
                        "background compaction failed; the log is unchanged");
                    *me.background_error.lock() = Some(e.to_string());
                }
            });
        match spawned {
            Ok(handle) => *slot = Some(handle),
            Err(e) => tracing::warn!(topic = %self.topic, partition = self.partition,
                error = %e, "cannot start a compaction thread; the next roll tries again"),
        }
    }

    /// Forces a roll of a non-empty active segment (used by compaction tests and tooling).
    pub fn roll_now(&self) -> LogResult<()> {
        self.check_poisoned()?;
        let mut st = self.state.lock();
        self.hold(&mut st)?;
        let rolled = match st.active.size > 0 {
            true => (self.roll(&mut st)).map_err(|e| self.on_write_failure(&mut st, e)),
            false => Ok(()),
        };
        self.unhold(&mut st);
        rolled
    }

    /// Makes every appended record durable now.
    pub fn flush(&self) -> LogResult<()> {
        self.check_poisoned()?;
        let end = self.state.lock().active.next_offset;
        self.sync_to(end)
    }

    /// Group commit: returns once offsets below `end` are on stable storage. One caller fsyncs
    /// while the others wait for its result.
    fn sync_to(&self, end: u64) -> LogResult<()> {
        let mut s = self.sync.lock();
        loop {
            if s.synced_offset >= end {
                return Ok(());
            }
            if self.poisoned.get().is_some() {
                drop(s);
                return self.check_poisoned();
            }
            if s.syncing {
                self.synced.wait(&mut s);
                continue;
            }
            s.syncing = true;
            drop(s);
            let (file, path, target) = {
                let st = self.state.lock();
                let active = &st.active;
                (
                    active.log.clone(),
                    active.log_path.clone(),
                    active.next_offset,
                )
            };
            // A failed fsync is never retried: the pages it covered may be gone, so the writer
            // is poisoned. (Sealed segments were fsynced by the roll that sealed them.)
            let result = file
                .sync_data()
                .ctx("fsync segment", &path)
                .map_err(|e| self.poison(e));
            *self.last_sync.lock() = Instant::now();
            s = self.sync.lock();
            s.syncing = false;
            s.fsyncs += 1;
            if result.is_ok() {
                s.synced_offset = s.synced_offset.max(target);
            }
            self.synced.notify_all();
            result?;
        }
    }

    /// Deletes sealed segments past the retention limits. Runs after every roll and on open.
    pub fn enforce_retention(&self) -> LogResult<usize> {
        let mut st = self.state.lock();
        self.hold(&mut st)?;
        let deleted = self.retention_locked(&mut st, now_ms());
        self.unhold(&mut st);
        deleted
    }

    fn retention_locked(&self, st: &mut WriterState, now: i64) -> LogResult<usize> {
        if self.config.cleanup_policy != CleanupPolicy::Delete {
            return Ok(0);
        }
        let mut total: u64 = st.sealed.iter().map(|s| s.size).sum::<u64>() + st.active.size;
        let mut doomed = 0;
        for seg in &st.sealed {
            let expired = self
                .config
                .retention_ms
                .is_some_and(|ms| seg.max_timestamp < now.saturating_sub(ms as i64));
            let oversize = self
                .config
                .retention_bytes
                .is_some_and(|limit| total.saturating_sub(seg.size) >= limit);
            if !(expired || oversize) {
                break;
            }
            total -= seg.size;
            doomed += 1;
        }
        for seg in st.sealed.drain(..doomed) {
            delete_segment_files(&self.dir, seg.base)?;
        }
        let first = st.sealed.first().map_or(st.active.base, |s| s.base);
        st.txns.forget_listed_before(first);
        if doomed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(doomed)
    }
}

/// Removes a segment's files, `.log` first so that readers stop listing it at once.
pub(crate) fn delete_segment_files(dir: &Path, base: u64) -> LogResult<()> {
    for ext in ["log", "index", "timeindex", "txnindex"] {
        let path = segment_path(dir, base, ext);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx("delete segment", &path),
        }
    }
    Ok(())
}

/// Flushes `core` every `every` until its owner stops it.
fn spawn_flusher(core: Arc<WriterCore>, every: Duration) -> LogResult<JoinHandle<()>> {
    let dir = core.dir.clone();
    std::thread::Builder::new()
        .name("eddy-flusher".into())
        .spawn(move || loop {
            {
                let (lock, signal) = &core.stop_signal;
                let mut guard = lock.lock();
                if core.stopping.load(Ordering::Acquire) {
                    return;
                }
                signal.wait_for(&mut guard, every);
                if core.stopping.load(Ordering::Acquire) {
                    return;
                }
            }
            if let Err(e) = core.flush() {
                // A failed fsync poisoned the writer (logged there); the owner's next append or
                // flush returns `Poisoned` naming it. Nothing more to do here.
                if core.poisoned.get().is_some() {
                    return;
                }
                tracing::warn!(topic = %core.topic, partition = core.partition, error = %e,
                    "interval flush failed");
            }
        })
        .ctx("start flusher thread", &dir)
}

impl Drop for PartitionWriter {
    fn drop(&mut self) {
        self.core.stopping.store(true, Ordering::Release);
        {
            let (lock, signal) = &self.core.stop_signal;
            let _guard = lock.lock();
            signal.notify_all();
        }
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        let compactor = self.core.compactor.lock().take();
        if let Some(compactor) = compactor {
            let _ = compactor.join();
        }
        // A clean close makes everything durable and marks the tail exact, so that readers trust
        // it with no appender open. Errors cannot be returned from drop (callers who need them
        // call `flush` first); after one the tail stays unmarked and readers check the log.
        if self.core.poisoned.get().is_none() && self.core.hold_to_close() {
            let core = &self.core;
            core.snapshot_txns(&mut core.state.lock());
            let closed = core
                .flush()
                .and_then(|()| core.tail.set_closed(true).ctx("fsync tail", &core.dir));
            if let Err(e) = closed {
                tracing::warn!(topic = %core.topic, partition = core.partition, error = %e,
                    "closing the partition writer failed; the next open recovers the log");
            }
        }
    }
}
