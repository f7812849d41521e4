//! The transaction coordinator of a data directory: transactional ids, their producer ids and
//! epochs, and the one durable decision that commits a transaction — its outputs in any number of
//! partitions together with consumer-group offsets.
//!
//! Files, under `DATA_DIR/transactions/`: `producer-ids` (the next producer id, 8 bytes BE) and
//! `lock` (flock-ed while an id is handed out); per transactional id `<id>/state` (JSON, replaced
//! whole: temporary file, fsync, rename, directory fsync) and `<id>/lock` (flock-ed around every
//! read-modify-write of the state, never held between calls, so a paused instance never blocks
//! the one that fences it).
//!
//! Invariants:
//! - A partition is listed in the state before the transaction's first batch is appended to it,
//!   so whoever completes the transaction knows every partition that needs a marker.
//! - The decision is the state written with status `committing` (and the group offsets it
//!   covers): before it the transaction aborts, after it it commits, whatever crashes when.
//!   Completing (markers, then the offsets, then status `empty`) is repeatable: a second COMMIT
//!   marker or the same offsets written twice change nothing.
//! - Every state change, the decision included, is made under the id's lock after checking that
//!   the stored epoch is still the caller's: an instance whose epoch was bumped (by a newer
//!   instance, or by the abort of a timed-out transaction) is refused as fenced, and the log's
//!   appenders refuse its batches for the same reason.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::groups::offsets::OffsetsFile;
use crate::groups::{GroupError, GroupResult};
use crate::log::{
    create_dirs_durably, now_ms, sync_dir, validate_name, Appended, Log, LogError, PartitionWriter,
    ProducerIdentity, Record,
};

/// The state format this build writes and reads.
const STATE_FORMAT: u64 = 1;
/// How long a transaction may stay open before any producer's start aborts it.
pub const DEFAULT_TRANSACTION_TIMEOUT_MS: i64 = 60_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    /// No transaction open.
    Empty,
    /// Partitions listed; not decided.
    Ongoing,
    /// Decided: commits.
    Committing,
}

/// Group offsets a transaction commits: `(topic, partition, next offset)` with metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionOffsets {
    /// Consumer group.
    pub group: String,
    /// `(topic, partition, offset)`: the next offset to read, as in Kafka.
    pub offsets: Vec<(String, u32, u64)>,
    /// Commit metadata.
    pub metadata: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    format: u64,
    producer_id: i64,
    epoch: i16,
    /// Number of the current (or next) transaction.
    transaction: u64,
    status: Status,
    partitions: BTreeSet<(String, u32)>,
    offsets: Option<TransactionOffsets>,
    /// When an open transaction may be aborted by anyone (ms since the epoch).
    deadline_ms: i64,
}

/// What starting a producer found of its previous instance's transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completed {
    /// Nothing was open.
    Nothing,
    /// A transaction was decided: its markers and offsets were completed.
    Committed,
    /// A transaction was open undecided: it was aborted.
    Aborted,
}

/// A transactional producer: appends to any partitions of a data directory in transactions that
/// commit atomically with consumer-group offsets. One per transactional id at a time: starting
/// one fences every older instance of the same id.
pub struct TransactionalProducer {
    log: Log,
    id: String,
    dir: PathBuf,
    identity: ProducerIdentity,
    timeout_ms: i64,
    /// Partitions of the open transaction, and their appenders.
    open: Vec<((String, u32), Arc<PartitionWriter>)>,
    /// Appenders of every partition this producer wrote to, kept across transactions: they lend
    /// their partitions between calls, so keeping them blocks nobody.
    writers: Writers,
}

/// Appenders by partition, each lending its partition between calls (`PartitionWriter::share`):
/// a transactional producer stopped between two calls holds no partition, so the instance that
/// fences it can write the markers that abort its transaction.
#[derive(Default)]
struct Writers(std::collections::BTreeMap<(String, u32), Arc<PartitionWriter>>);

impl Writers {
    fn get(&mut self, log: &Log, topic: &str, partition: u32) -> GroupResult<Arc<PartitionWriter>> {
        let key = (topic.to_owned(), partition);
        if let Some(w) = self.0.get(&key) {
            return Ok(Arc::clone(w));
        }
        let w = log.topic(topic)?.lending_writer(partition)?;
        self.0.insert(key, Arc::clone(&w));
        Ok(w)
    }
}

fn corrupt(path: &Path, reason: String) -> GroupError {
    GroupError::Corrupt {
        path: path.to_owned(),
        position: 0,
        reason,
    }
}

fn io(op: &'static str, path: &Path, e: std::io::Error) -> GroupError {
    GroupError::Log(LogError::Io {
        op,
        path: path.to_owned(),
        source: e,
    })
}

fn fenced(id: &str, mine: i16, current: i16) -> GroupError {
    GroupError::Log(LogError::Fenced {
        topic: String::new(),
        partition: 0,
        reason: format!(
            "transactional id {id:?}: epoch {mine} was superseded by epoch {current}; this \
             instance must stop"
        ),
    })
}

/// Holds an flock on a file for its life.
struct Locked(#[allow(dead_code)] File);

fn lock(path: &Path) -> GroupResult<Locked> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| io("open lock", path, e))?;
    f.lock().map_err(|e| io("lock", path, e))?;
    Ok(Locked(f))
}

fn read_state(path: &Path) -> GroupResult<Option<State>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", path, e)),
    };
    let state: State =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(path, format!("state: {e}")))?;
    if state.format > STATE_FORMAT {
        return Err(GroupError::Log(LogError::UnsupportedFormat {
            path: path.to_owned(),
            what: "transaction state",
            found: state.format,
            supported: STATE_FORMAT,
        }));
    }
    Ok(Some(state))
}

fn write_state(dir: &Path, state: &State) -> GroupResult<()> {
    let path = dir.join("state");
    let tmp = dir.join("state.tmp");
    let bytes = serde_json::to_vec(state).map_err(|e| corrupt(&path, e.to_string()))?;
    {
        let mut f = File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
        f.write_all(&bytes).map_err(|e| io("write", &tmp, e))?;
        f.sync_all().map_err(|e| io("fsync", &tmp, e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| io("rename", &path, e))?;
    Ok(sync_dir(dir)?)
}

/// Hands out the next producer id of the data directory.
fn next_producer_id(root: &Path) -> GroupResult<i64> {
    let _g = lock(&root.join("lock"))?;
    let path = root.join("producer-ids");
    let next = match std::fs::read(&path) {
        Ok(b) => {
            let raw: [u8; 8] = b
                .as_slice()
                .try_into()
                .map_err(|_| corrupt(&path, format!("{} bytes, expected 8", b.len())))?;
            i64::from_be_bytes(raw)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io("read", &path, e)),
    };
    let tmp = root.join("producer-ids.tmp");
    {
        let mut f = File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
        f.write_all(&(next + 1).to_be_bytes())
            .map_err(|e| io("write", &tmp, e))?;
        f.sync_all().map_err(|e| io("fsync", &tmp, e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| io("rename", &path, e))?;
    sync_dir(root)?;
    Ok(next)
}

impl TransactionalProducer {
    /// Starts the producer of `transactional_id` on `log`'s data directory: gives the id a
    /// producer id on its first start, bumps its epoch (every older instance is fenced from
    /// now on), completes what the previous instance left — a decided transaction is committed,
    /// an undecided one aborted — and aborts the expired transactions of other ids.
    pub fn start(log: &Log, transactional_id: &str) -> GroupResult<(Self, Completed)> {
        validate_name(transactional_id)?;
        let root = log.dir().join("transactions");
        let dir = root.join(transactional_id);
        create_dirs_durably(&dir)?;
        let completed = {
            let _g = lock(&dir.join("lock"))?;
            let mut state = match read_state(&dir.join("state"))? {
                Some(s) => s,
                None => State {
                    format: STATE_FORMAT,
                    producer_id: next_producer_id(&root)?,
                    epoch: -1,
                    transaction: 0,
                    status: Status::Empty,
                    partitions: BTreeSet::new(),
                    offsets: None,
                    deadline_ms: 0,
                },
            };
            if state.epoch == i16::MAX {
                return Err(GroupError::InvalidRequest(format!(
                    "transactional id {transactional_id:?} has used every epoch"
                )));
            }
            state.epoch += 1;
            write_state(&dir, &state)?;
            complete(log, &mut Writers::default(), &dir, &mut state)?
        };
        let state = read_state(&dir.join("state"))?
            .ok_or_else(|| corrupt(&dir.join("state"), "vanished".into()))?;
        let producer = TransactionalProducer {
            log: log.clone(),
            id: transactional_id.to_owned(),
            identity: ProducerIdentity {
                id: state.producer_id,
                epoch: state.epoch,
            },
            dir,
            timeout_ms: DEFAULT_TRANSACTION_TIMEOUT_MS,
            open: Vec::new(),
            writers: Writers::default(),
        };
        abort_expired(log, transactional_id)?;
        Ok((producer, completed))
    }

    /// How long a transaction may stay open before the start of any producer of this data
    /// directory aborts it (default [`DEFAULT_TRANSACTION_TIMEOUT_MS`]); counted from its first
    /// append.
    pub fn set_transaction_timeout(&mut self, timeout: std::time::Duration) {
        self.timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    }

    /// Its producer id and epoch.
    pub fn identity(&self) -> ProducerIdentity {
        self.identity
    }

    /// Appends `records` to `topic`/`partition` inside the open transaction (opening one with the
    /// first append). Fenced once a newer instance started.
    pub fn append(
        &mut self,
        topic: &str,
        partition: u32,
        records: &[Record],
    ) -> GroupResult<Appended> {
        let writer = self.include(topic, partition)?;
        Ok(writer.append_transactional(self.identity, records)?)
    }

    /// Makes `topic`/`partition` part of the open transaction (opening one), for appends made
    /// through its appender with [`PartitionWriter::append_transactional`] and this producer's
    /// identity; returns the appender.
    pub fn include(&mut self, topic: &str, partition: u32) -> GroupResult<Arc<PartitionWriter>> {
        let key = (topic.to_owned(), partition);
        if let Some((_, w)) = self.open.iter().find(|(k, _)| *k == key) {
            return Ok(Arc::clone(w));
        }
        let writer = self.writers.get(&self.log, topic, partition)?;
        let deadline = now_ms().saturating_add(self.timeout_ms);
        self.update(|s| {
            s.status = Status::Ongoing;
            s.partitions.insert(key.clone());
            s.deadline_ms = deadline;
        })?;
        self.open.push((key, Arc::clone(&writer)));
        Ok(writer)
    }

    /// Whether a transaction is open (a partition was included since the last commit or abort).
    pub fn has_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// Commits the open transaction, with `offsets` committed to their group in the same
    /// decision: after a crash at any point either all of it is visible to committed readers and
    /// the group, or none of it is. With no transaction open only the offsets are committed.
    pub fn commit(&mut self, offsets: Option<TransactionOffsets>) -> GroupResult<()> {
        for (_, w) in &self.open {
            w.flush()?; // the batches are durable before the decision says they commit
        }
        self.update(|s| {
            s.status = Status::Committing;
            s.offsets = offsets.clone();
        })?;
        self.open.clear();
        let _g = lock(&self.dir.join("lock"))?;
        let mut state = self.current_state()?;
        complete(&self.log, &mut self.writers, &self.dir, &mut state)?;
        Ok(())
    }

    /// Aborts the open transaction: its records are never visible to committed readers.
    pub fn abort(&mut self) -> GroupResult<()> {
        self.open.clear();
        let _g = lock(&self.dir.join("lock"))?;
        let mut state = self.current_state()?;
        if state.status == Status::Committing {
            return Err(GroupError::InvalidRequest(format!(
                "transactional id {:?}: the transaction was decided; it cannot abort",
                self.id
            )));
        }
        complete(&self.log, &mut self.writers, &self.dir, &mut state)?;
        Ok(())
    }

    fn current_state(&self) -> GroupResult<State> {
        let path = self.dir.join("state");
        let state = read_state(&path)?.ok_or_else(|| corrupt(&path, "vanished".into()))?;
        if state.epoch != self.identity.epoch {
            return Err(fenced(&self.id, self.identity.epoch, state.epoch));
        }
        Ok(state)
    }

    /// Changes the state under the id's lock, refused when this instance was fenced.
    fn update(&self, change: impl FnOnce(&mut State)) -> GroupResult<()> {
        let _g = lock(&self.dir.join("lock"))?;
        let mut state = self.current_state()?;
        change(&mut state);
        write_state(&self.dir, &state)
    }
}

/// Completes the transaction `state` describes (the caller holds the id's lock): a decided one
/// gets COMMIT markers and its offsets, an undecided one ABORT markers; then the state is empty
/// for the next transaction.
fn complete(
    log: &Log,
    writers: &mut Writers,
    dir: &Path,
    state: &mut State,
) -> GroupResult<Completed> {
    let producer = ProducerIdentity {
        id: state.producer_id,
        epoch: state.epoch,
    };
    let commit = match state.status {
        Status::Empty => return Ok(Completed::Nothing),
        Status::Committing => true,
        Status::Ongoing => false,
    };
    for (topic, partition) in &state.partitions {
        let writer = writers.get(log, topic, *partition)?;
        writer.end_transaction(producer, commit)?;
        writer.flush()?;
    }
    if let (true, Some(o)) = (commit, &state.offsets) {
        commit_offsets(log, o)?;
    }
    state.status = Status::Empty;
    state.partitions.clear();
    state.offsets = None;
    state.transaction += 1;
    write_state(dir, state)?;
    Ok(if commit {
        Completed::Committed
    } else {
        Completed::Aborted
    })
}

/// Writes a transaction's group offsets (under the group lock, fsynced).
fn commit_offsets(log: &Log, o: &TransactionOffsets) -> GroupResult<()> {
    if o.offsets.is_empty() {
        return Ok(());
    }
    let group = crate::groups::group_dir(log.dir(), &o.group)?;
    let path = group.offsets_path();
    let _g = group.lock()?;
    let mut file = OffsetsFile::default();
    file.refresh(&path)?;
    let refs: Vec<(&str, u32, u64)> = (o.offsets.iter())
        .map(|(t, p, off)| (t.as_str(), *p, *off))
        .collect();
    file.commit(&path, &refs, &o.metadata, true, now_ms())
}

/// Aborts every transaction of `log`'s data directory that stayed open past its timeout (its
/// producer is gone or stuck), bumping its epoch so that a stuck producer is fenced when it
/// resumes; returns how many. Starting a producer does this, and so does every checkpoint of an
/// application under exactly-once (at most every few seconds): with neither, a dead producer's
/// transaction holds committed readers back until one of them runs.
pub fn abort_expired_transactions(log: &Log) -> GroupResult<usize> {
    abort_expired(log, "")
}

/// Aborts the transactions of ids other than `except` that stayed open past their deadline.
fn abort_expired(log: &Log, except: &str) -> GroupResult<usize> {
    let root = log.dir().join("transactions");
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io("list", &root, e)),
    };
    let now = now_ms();
    let mut aborted = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path();
        if name == except || !dir.is_dir() {
            continue;
        }
        let _g = lock(&dir.join("lock"))?;
        let Some(mut state) = read_state(&dir.join("state"))? else {
            continue;
        };
        if state.status != Status::Ongoing || state.deadline_ms > now || state.epoch == i16::MAX {
            continue;
        }
        tracing::warn!(transactional_id = %name, epoch = state.epoch,
            "aborting a transaction open past its timeout");
        state.epoch += 1;
        write_state(&dir, &state)?;
        complete(log, &mut Writers::default(), &dir, &mut state)?;
        aborted += 1;
    }
    Ok(aborted)
}
