//! One state store: a RocksDB database for one (group, store, partition), a write-back cache in
//! front of it, and the partition of the changelog topic that makes it recoverable.
//!
//! Invariants:
//! - Data keys start with a byte from 1 to 254; keys starting with 0 are the store's metadata (in RocksDB)
//!   or the checkpoint marker (in the changelog). Keys starting with [`LOCAL_ONLY`] are kept in
//!   RocksDB only, never in the changelog: state rebuilt from elsewhere (a table read from its
//!   own compacted topic), absent after a restore from the changelog.
//! - Changes reach the changelog and RocksDB only in [`Store::checkpoint`]: first one atomic
//!   changelog batch holding every change followed by the marker (the input offset the state
//!   reflects), then one RocksDB write batch holding the same changes plus the changelog offset
//!   after the marker. RocksDB's own WAL is off: the changelog is the log of record, and a store
//!   that lost unflushed memtables restores from the changelog offset it recorded.
//! - After [`Store::open`] returns, the store reflects its changelog up to the end, and
//!   [`Store::input_offset`] is the input offset recorded by the last marker (`None` before the
//!   first checkpoint ever).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;
use rocksdb::{WriteBatch, WriteOptions, DB};

use super::env::StateEnv;
use super::error::{rocks, StateError, StateResult};
use super::{unfinished, Changelog};
use crate::log::Record;

const META_CHANGELOG_OFFSET: &[u8] = b"\0changelog-offset";
const META_INPUT_OFFSET: &[u8] = b"\0input-offset";
const META_FORMAT: &[u8] = b"\0format";

/// Format of a state store's entries, metadata and changelog records (`docs/log-format.md`,
/// "State stores"): recorded in the store; a store of a newer format is refused, never rebuilt.
/// Stores written before the format was recorded are format 1.
pub const STATE_FORMAT: u64 = 1;
/// First byte of entries that are saved in RocksDB but never appended to the changelog.
pub(crate) const LOCAL_ONLY: u8 = 0xFE;
/// Key of the checkpoint marker in a changelog; its value is the input offset, u64 big-endian.
pub(crate) const MARKER_KEY: &[u8] = b"\0checkpoint";
/// Key of a reset record in a changelog: the group's offsets were reset to its value (the input
/// offset, u64 big-endian) and the state goes. See [`reset_record`].
pub(crate) const RESET_KEY: &[u8] = b"\0reset";

/// The record a reset of a group's offsets appends to each changelog partition of the group's
/// stores, where the broker cannot keep the reset in commit metadata (tansu drops it): the
/// partition's task wipes its state at its next start and processes from `input_offset`, as
/// after a local reset.
pub fn reset_record(input_offset: u64) -> Record {
    Record::keyed(RESET_KEY, input_offset.to_be_bytes())
}

/// Records read per restore step, and at most this many bytes.
const RESTORE_RECORDS: usize = 100_000;
const RESTORE_BYTES: usize = 8 << 20;

/// What [`Store::open`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// The store could not be opened (missing or corrupt) and was rebuilt from scratch.
    pub rebuilt: bool,
    /// Changelog records applied.
    pub entries: u64,
    /// Changes of a checkpoint its writer left unfinished (after the changelog's last marker),
    /// undone rather than applied.
    pub undone: u64,
    /// The changelog ends in a reset of the group's offsets to this input offset, written
    /// where the broker cannot keep a reset in commit metadata: the state must be wiped
    /// ([`Store::wipe`]) before the task starts there.
    pub reset_to: Option<u64>,
    /// Time spent restoring.
    pub elapsed: Duration,
}

/// How far the restore of one store from its changelog has come, reported to
/// [`AppConfig::on_restore_progress`](crate::AppConfig::on_restore_progress): a few times a
/// second once a restore has taken half a second, and once when any restore that applied
/// records is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreProgress {
    /// The store's directory.
    pub store: PathBuf,
    /// Changelog topic.
    pub changelog: String,
    /// Changelog partition.
    pub partition: u32,
    /// Changelog records applied so far.
    pub restored: u64,
    /// Changelog records to apply in all.
    pub total: u64,
    /// The restore is complete.
    pub done: bool,
}

/// Receives [`RestoreProgress`] reports; called on the application's thread.
#[derive(Clone)]
pub struct RestoreCallback(pub Arc<dyn Fn(&RestoreProgress) + Send + Sync>);

impl std::fmt::Debug for RestoreCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RestoreCallback")
    }
}

/// Changes appended to the changelog and not yet written to RocksDB.
pub(crate) struct LoggedChanges {
    records: Vec<Record>,
    /// Changes of [`LOCAL_ONLY`] entries, for RocksDB only.
    local: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    next_changelog_offset: u64,
}

/// A cached value; `dirty` until a checkpoint saves it.
struct Cached {
    value: Option<Vec<u8>>,
    dirty: bool,
}

/// Bytes an entry is charged for in the memory budget.
fn charge(key: &[u8], value: Option<&[u8]>) -> usize {
    key.len() + value.map_or(0, <[u8]>::len) + 48
}

/// One store; see the module docs.
pub(crate) struct Store {
    env: StateEnv,
    path: PathBuf,
    db: DB,
    changelog: Box<dyn Changelog>,
    /// Read and written entries: clean ones mirror RocksDB, dirty ones wait for a checkpoint.
    cache: HashMap<Vec<u8>, Cached>,
    /// Keys of the dirty entries, in the order they became dirty.
    dirty: Vec<Vec<u8>>,
    dirty_bytes: usize,
    clean_bytes: usize,
    changelog_offset: u64,
    input_offset: Option<u64>,
    fsync: bool,
    epoch: u64,
}

/// Source of store epochs: every opened store gets a new one.
static EPOCHS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

impl Store {
    /// Opens the store at `path` and brings it up to the end of its changelog partition. A
    /// missing store is created and restored from the start of the changelog; a store proven
    /// corrupt (RocksDB reports corruption, or its metadata does not decode) is moved aside to
    /// `<path>.corrupt-<ms since epoch>`, never deleted, and rebuilt the same way. Any other
    /// failure to open (a store held by another process, no file handles left) is an error.
    pub fn open(
        env: &StateEnv,
        path: PathBuf,
        mut changelog: Box<dyn Changelog>,
        fsync: bool,
    ) -> StateResult<(Store, RestoreReport)> {
        let started = Instant::now();
        let mut report = RestoreReport::default();
        let (db, meta) = match open_db(&path, env.options()) {
            Ok(opened) => opened,
            Err(e) if proven_corrupt(&e) => {
                // The changelog has everything; the damaged files are kept for inspection.
                let aside = move_aside(&path)?;
                tracing::warn!(store = %path.display(), moved_to = %aside.display(), error = %e,
                    "state store is corrupt: moved aside, rebuilding it from its changelog");
                report.rebuilt = true;
                open_db(&path, env.options())?
            }
            Err(e) => return Err(e),
        };
        let mut replay = Replay {
            path: &path,
            changelog: changelog.as_mut(),
            position: meta.0,
            input_offset: meta.1,
            applied: 0,
            undone: 0,
            reset_to: None,
            progress: env.restore_callback(),
        };
        replay.run(&db, started)?;
        report.entries = replay.applied;
        report.undone = replay.undone;
        report.reset_to = replay.reset_to;
        report.elapsed = started.elapsed();
        let (changelog_offset, input_offset) = (replay.position, replay.input_offset);
        changelog.restored();
        let store = Store {
            env: env.clone(),
            path,
            db,
            changelog,
            cache: HashMap::new(),
            dirty: Vec::new(),
            dirty_bytes: 0,
            clean_bytes: 0,
            changelog_offset,
            input_offset,
            fsync,
            epoch: EPOCHS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        Ok((store, report))
    }

    /// Whether a checkpoint at `input_offset` would append anything to the changelog.
    pub fn has_changes(&self, input_offset: u64) -> bool {
        !self.dirty.is_empty() || self.input_offset != Some(input_offset)
    }

    /// The changelog topic and partition.
    pub fn changelog_partition(&self) -> (String, u32) {
        (
            self.changelog.topic().to_owned(),
            self.changelog.partition(),
        )
    }

    /// The error for an entry under `key` that does not decode.
    pub fn corrupt_entry(&self, key: &[u8], reason: impl std::fmt::Display) -> StateError {
        StateError::CorruptState {
            path: self.path.clone(),
            key: key.escape_ascii().to_string(),
            reason: reason.to_string(),
        }
    }

    /// The input offset the state reflects (recorded by the last checkpoint).
    pub fn input_offset(&self) -> Option<u64> {
        self.input_offset
    }

    /// Bytes the store takes: its SST files and memtables, as RocksDB reports them (0 where it
    /// reports nothing).
    pub fn disk_bytes(&self) -> u64 {
        let property = |name: &str| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        property("rocksdb.total-sst-files-size") + property("rocksdb.size-all-mem-tables")
    }

    /// A number no other store opened by this process has: operators that keep state in memory
    /// compare it to know whether what they hold came from this store.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Every live entry whose key starts with `prefix`, in key order: saved entries overlaid with
    /// cached changes.
    pub fn scan_prefix(&self, prefix: &[u8]) -> StateResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_prefix_up_to(prefix, usize::MAX)
    }

    /// Live entries whose key starts with `prefix`, at most `limit` of them, in key order: the
    /// first `limit` saved entries overlaid with cached changes (a change deletes or adds
    /// entries, so there can be fewer than `limit` when more exist; each is current).
    pub fn scan_prefix_up_to(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> StateResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut entries = std::collections::BTreeMap::new();
        let mut full = false;
        for item in self.db.prefix_iterator(prefix) {
            let (key, value) = item.map_err(rocks("scan", &self.path))?;
            if !key.starts_with(prefix) {
                break;
            }
            entries.insert(key.into_vec(), Some(value.into_vec()));
            if entries.len() == limit {
                full = true;
                break;
            }
        }
        let last = entries.keys().next_back().cloned();
        for (key, cached) in &self.cache {
            let within = !full || last.as_ref().is_some_and(|l| key <= l);
            if within && key.starts_with(prefix) {
                entries.insert(key.clone(), cached.value.clone());
            }
        }
        Ok(entries
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .take(limit)
            .collect())
    }

    /// Whether the store holds more unsaved changes than its share of the memory budget.
    pub fn wants_checkpoint(&self) -> bool {
        self.dirty_bytes > self.env.dirty_limit()
    }

    fn put_meta(&self, batch: &mut WriteBatch, changelog_offset: u64) {
        put_meta(batch, changelog_offset, self.input_offset);
    }

    /// The value of `key`: from the cache, else from RocksDB (then cached).
    pub fn get(&mut self, key: &[u8]) -> StateResult<Option<&[u8]>> {
        if self.clean_bytes > self.env.clean_limit() {
            self.drop_clean();
        }
        let cached = match self.cache.entry_ref(key) {
            EntryRef::Occupied(o) => o.into_mut(),
            EntryRef::Vacant(v) => {
                let value = self.db.get(key).map_err(rocks("read", &self.path))?;
                self.clean_bytes += charge(key, value.as_deref());
                v.insert(Cached {
                    value,
                    dirty: false,
                })
            }
        };
        Ok(cached.value.as_deref())
    }

    /// The value of `key`, from the cache or else from RocksDB, without caching it (for values
    /// read once).
    pub fn peek(&self, key: &[u8]) -> StateResult<Option<Vec<u8>>> {
        match self.cache.get(key) {
            Some(cached) => Ok(cached.value.clone()),
            None => self.db.get(key).map_err(rocks("read", &self.path)),
        }
    }

    /// Drops the clean entries (dirty ones stay until saved).
    fn drop_clean(&mut self) {
        self.cache.retain(|_, c| c.dirty);
        self.clean_bytes = 0;
    }

    /// Sets `key` (starting with a byte from 1 to 254) to `value`, or deletes it with `None`, until
    /// the next checkpoint saves it.
    pub fn put(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        debug_assert!(key.first().is_some_and(|b| (1..u8::MAX).contains(b)));
        let size = charge(key, value.as_deref());
        match self.cache.entry_ref(key) {
            EntryRef::Occupied(mut o) => {
                let cached = o.get_mut();
                let old = charge(key, cached.value.as_deref());
                if cached.dirty {
                    self.dirty_bytes = self.dirty_bytes.saturating_sub(old);
                } else {
                    self.clean_bytes = self.clean_bytes.saturating_sub(old);
                    self.dirty.push(key.to_vec());
                }
                cached.value = value;
                cached.dirty = true;
            }
            EntryRef::Vacant(v) => {
                v.insert(Cached { value, dirty: true });
                self.dirty.push(key.to_vec());
            }
        }
        self.dirty_bytes += size;
    }

    /// Checkpoint, first half (then [`save_changes`](Self::save_changes)): appends the changes and a marker with `input_offset` to the
    /// changelog as one atomic batch (fsynced with `fsync`). `None` when there is nothing to save.
    pub fn log_changes(&mut self, input_offset: u64) -> StateResult<Option<LoggedChanges>> {
        if self.dirty.is_empty() && self.input_offset == Some(input_offset) {
            return Ok(None);
        }
        let mut records: Vec<Record> = Vec::with_capacity(self.dirty.len() + 1);
        let mut local = Vec::new();
        for key in self.dirty.drain(..) {
            if let Some(cached) = self.cache.get_mut(&key) {
                cached.dirty = false;
                if key.first() == Some(&LOCAL_ONLY) {
                    local.push((key, cached.value.clone()));
                    continue;
                }
                records.push(Record {
                    value: cached.value.clone(),
                    key: Some(key),
                    timestamp: None,
                    headers: Vec::new(),
                });
            }
        }
        self.clean_bytes += self.dirty_bytes;
        self.dirty_bytes = 0;
        records.push(Record::keyed(MARKER_KEY, input_offset.to_be_bytes()));
        let next_changelog_offset = self.changelog.append_checkpoint(&records)?;
        if self.fsync {
            self.changelog.flush()?;
        }
        self.input_offset = Some(input_offset);
        records.pop();
        Ok(Some(LoggedChanges {
            records,
            local,
            next_changelog_offset,
        }))
    }

    /// Checkpoint, second half: writes logged changes and the changelog offset after them to
    /// RocksDB in one batch (flushed with `fsync`).
    pub fn save_changes(&mut self, logged: Option<LoggedChanges>) -> StateResult<()> {
        let Some(LoggedChanges {
            records,
            local,
            next_changelog_offset: next,
        }) = logged
        else {
            return Ok(());
        };
        let mut batch = WriteBatch::default();
        for r in &records {
            if let Some(key) = &r.key {
                match &r.value {
                    Some(v) => batch.put(key, v),
                    None => batch.delete(key),
                }
            }
        }
        for (key, value) in &local {
            match value {
                Some(v) => batch.put(key, v),
                None => batch.delete(key),
            }
        }
        self.put_meta(&mut batch, next);
        self.db
            .write_opt(batch, &no_wal())
            .map_err(rocks("write checkpoint", &self.path))?;
        if self.fsync {
            self.db.flush().map_err(rocks("flush", &self.path))?;
        }
        self.changelog_offset = next;
        // What was just saved is clean now; cached beyond its share, it goes (steps that only
        // write, such as windows, never read it back through `get`).
        if self.clean_bytes > self.env.clean_limit() {
            self.drop_clean();
        }
        Ok(())
    }

    /// Forgets all state (after the group's offsets were reset): a tombstone for every key goes to
    /// the changelog, then a marker with `input_offset`; the database drops its data range. Safe to
    /// repeat after a crash: until the marker is written the store still disagrees with the
    /// group's offsets and the next start wipes again.
    pub fn wipe(&mut self, input_offset: u64) -> StateResult<()> {
        self.cache.clear();
        self.dirty.clear();
        self.dirty_bytes = 0;
        self.clean_bytes = 0;
        let mut tombstones = Vec::new();
        let mut bytes = 0usize;
        for item in self.db.iterator(rocksdb::IteratorMode::Start) {
            let (key, _) = item.map_err(rocks("scan", &self.path))?;
            if matches!(key.first(), Some(&0) | Some(&LOCAL_ONLY)) {
                continue; // local entries go with the range deleted below
            }
            bytes += key.len() + 16;
            tombstones.push(Record {
                key: Some(key.into_vec()),
                ..Record::default()
            });
            if bytes > 8 << 20 {
                self.changelog.append_now(&tombstones, false)?;
                tombstones.clear();
                bytes = 0;
            }
        }
        tombstones.push(Record::keyed(MARKER_KEY, input_offset.to_be_bytes()));
        let next = self.changelog.append_now(&tombstones, true)?;
        self.changelog.flush()?;
        self.input_offset = Some(input_offset);
        let mut batch = WriteBatch::default();
        batch.delete_range([1u8], [u8::MAX]);
        self.put_meta(&mut batch, next);
        self.db
            .write_opt(batch, &no_wal())
            .map_err(rocks("write checkpoint", &self.path))?;
        self.db.flush().map_err(rocks("flush", &self.path))?;
        self.changelog_offset = next;
        Ok(())
    }
}

fn put_meta(batch: &mut WriteBatch, changelog_offset: u64, input_offset: Option<u64>) {
    batch.put(META_FORMAT, STATE_FORMAT.to_be_bytes());
    batch.put(META_CHANGELOG_OFFSET, changelog_offset.to_be_bytes());
    if let Some(input) = input_offset {
        batch.put(META_INPUT_OFFSET, input.to_be_bytes());
    }
}

/// Replays a changelog partition into a database from `position` to the end.
struct Replay<'a> {
    path: &'a std::path::Path,
    changelog: &'a mut dyn Changelog,
    /// Next changelog offset to apply.
    position: u64,
    /// Input offset of the last marker applied (or recorded before).
    input_offset: Option<u64>,
    applied: u64,
    /// Changes of an unfinished checkpoint undone (`unfinished.rs`).
    undone: u64,
    /// The changelog ends in a reset to this input offset (not applied: the runtime wipes).
    reset_to: Option<u64>,
    progress: Option<&'a RestoreCallback>,
}

impl Replay<'_> {
    fn bad(&self, offset: u64, reason: String) -> StateError {
        StateError::BadChangelog {
            topic: self.changelog.topic().to_owned(),
            partition: self.changelog.partition(),
            offset,
            reason,
        }
    }

    fn run(&mut self, db: &DB, started: Instant) -> StateResult<()> {
        // Records of aborted transactions (exactly-once) are not state: the changelog reads
        // committed records only.
        let (log_start, end) = self.changelog.bounds()?;
        if self.position > end {
            return Err(self.bad(
                end,
                format!(
                    "the store at {} recorded changelog offset {} but the changelog ends at {end} \
                     (was the changelog topic deleted?); delete the store directory to rebuild it",
                    self.path.display(),
                    self.position
                ),
            ));
        }
        self.position = self.position.max(log_start);
        let first = self.position;
        let mut reporting = false;
        let mut last_report = started;
        let write_opts = no_wal();
        // Changes after the last boundary are a checkpoint left unfinished: undone below. A
        // reset as the last boundary is not applied here: the runtime wipes the state it
        // clears (`reset_to`), which puts tombstones for its keys in the changelog.
        let boundary = unfinished::last_boundary(self.changelog, self.position, end)?;
        let complete = match boundary {
            Some(b) if b.reset_to.is_some() => b.offset,
            Some(b) => b.offset + 1,
            None => self.position,
        };
        while self.position < complete {
            let fetch = (self.changelog).read(self.position, RESTORE_RECORDS, RESTORE_BYTES)?;
            if fetch.is_empty() {
                break;
            }
            let mut batch = WriteBatch::default();
            for r in fetch.iter().take_while(|r| r.offset < complete) {
                let Some(key) = r.key else {
                    return Err(self.bad(r.offset, "a record without a key".into()));
                };
                if key == MARKER_KEY {
                    let offset = r.value.and_then(decode_u64).ok_or_else(|| {
                        self.bad(r.offset, "a checkpoint marker without an offset".into())
                    })?;
                    self.input_offset = Some(offset);
                } else if key == RESET_KEY {
                    // A reset the runtime has wiped the state for since (tombstones follow).
                    let offset = r
                        .value
                        .and_then(decode_u64)
                        .ok_or_else(|| self.bad(r.offset, "a reset without an offset".into()))?;
                    batch.delete_range([1u8], [u8::MAX]);
                    self.input_offset = Some(offset);
                } else if key.first() == Some(&0) {
                    return Err(self.bad(r.offset, "a key in the reserved range".into()));
                } else {
                    match r.value {
                        Some(v) => batch.put(key, v),
                        None => batch.delete(key),
                    }
                }
                self.applied += 1;
            }
            self.position = fetch.next_offset().min(complete);
            put_meta(&mut batch, self.position, self.input_offset);
            db.write_opt(batch, &write_opts)
                .map_err(rocks("write restored entries", self.path))?;
            if !reporting && started.elapsed() > Duration::from_millis(500) {
                reporting = true;
                tracing::info!(store = %self.path.display(), changelog = %self.changelog.topic(),
                    partition = self.changelog.partition(), entries = end - first, "restoring state store");
            }
            if reporting && last_report.elapsed() > Duration::from_millis(200) {
                last_report = Instant::now();
                self.report(first, end, false);
            }
        }
        // What the database records: past a trailing reset only once the runtime wiped.
        let mut recorded = self.position.max(complete);
        if let Some(b) = boundary.filter(|b| b.reset_to.is_some()) {
            self.reset_to = b.reset_to;
            self.position = b.offset + 1;
        } else {
            self.position = recorded;
        }
        if self.position < end {
            let range = (self.position, end);
            let undone = unfinished::undo(
                self.changelog,
                db,
                self.path,
                range,
                boundary,
                self.input_offset,
            )?;
            self.undone = undone.changes;
            self.position = undone.end;
            if self.reset_to.is_none() {
                recorded = self.position;
            }
            let mut batch = WriteBatch::default();
            put_meta(&mut batch, recorded, self.input_offset);
            db.write_opt(batch, &write_opts)
                .map_err(rocks("write restored entries", self.path))?;
        }
        if self.position > first {
            self.report(first, end, true);
        }
        if reporting {
            tracing::info!(store = %self.path.display(), entries = self.applied,
                elapsed_ms = started.elapsed().as_millis() as u64, "state store restored");
        }
        Ok(())
    }

    fn report(&self, first: u64, end: u64, done: bool) {
        if let Some(callback) = self.progress {
            (callback.0)(&RestoreProgress {
                store: self.path.to_owned(),
                changelog: self.changelog.topic().to_owned(),
                partition: self.changelog.partition(),
                restored: self.position.min(end) - first,
                total: end - first,
                done,
            });
        }
    }
}

fn no_wal() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.disable_wal(true);
    w
}

type Meta = (u64, Option<u64>);

/// Opens (creating if needed) the database and reads its metadata; an error when RocksDB refuses
/// or the metadata is damaged.
fn open_db(path: &std::path::Path, options: rocksdb::Options) -> StateResult<(DB, Meta)> {
    std::fs::create_dir_all(path).map_err(|source| StateError::Io {
        op: "create",
        path: path.to_owned(),
        source,
    })?;
    let db = DB::open(&options, path).map_err(rocks("open", path))?;
    let read = |key: &[u8]| -> StateResult<Option<u64>> {
        match db.get(key).map_err(rocks("read metadata", path))? {
            None => Ok(None),
            Some(v) => decode_u64(&v).map(Some).ok_or_else(|| StateError::Io {
                op: "read metadata",
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "bad offset"),
            }),
        }
    };
    if let Some(found) = read(META_FORMAT)? {
        if found > STATE_FORMAT {
            return Err(StateError::Log(crate::log::LogError::UnsupportedFormat {
                path: path.to_owned(),
                what: "state store",
                found,
                supported: STATE_FORMAT,
            }));
        }
    }
    let changelog = read(META_CHANGELOG_OFFSET)?.unwrap_or(0);
    let input = read(META_INPUT_OFFSET)?;
    Ok((db, (changelog, input)))
}

/// Whether `e` proves the store's files damaged (as opposed to the store being unavailable).
fn proven_corrupt(e: &StateError) -> bool {
    match e {
        StateError::Rocks { source, .. } => source.kind() == rocksdb::ErrorKind::Corruption,
        StateError::Io { op, source, .. } => {
            *op == "read metadata" && source.kind() == std::io::ErrorKind::InvalidData
        }
        _ => false,
    }
}

/// Renames the store directory to `<path>.corrupt-<ms>` beside it and returns the new path.
fn move_aside(path: &std::path::Path) -> StateResult<PathBuf> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{}", crate::log::now_ms()));
    let aside = PathBuf::from(name);
    std::fs::rename(path, &aside).map_err(|source| StateError::Io {
        op: "move corrupt store aside",
        path: path.to_owned(),
        source,
    })?;
    Ok(aside)
}

/// A store under `dir` with the smallest memory budget and its changelog in `dir`'s log, for unit
/// tests of what uses a store.
#[cfg(test)]
pub(crate) fn test_store(dir: &std::path::Path) -> (Store, StateEnv) {
    let log = crate::Log::open(dir).expect("log");
    let changelog = log.topic_or_create("changelog", crate::TopicConfig::default());
    let changelog = changelog.expect("topic");
    let writer = changelog.writer(0).expect("writer");
    let changelog = Box::new(super::LocalChangelog::new(changelog, writer, None));
    let env = StateEnv::new(&dir.join("state"), 4 << 20, None);
    let path = dir.join("state").join("s");
    let (store, _) = Store::open(&env, path, changelog, false).expect("store");
    (store, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_only_written_leave_the_cache_after_the_checkpoint_that_saves_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut store, env) = test_store(dir.path());
        // Twice the share of clean entries, put and never read.
        let entries = env.clean_limit() * 2 / 100;
        for i in 0..entries {
            store.put(format!("k{i:08}").as_bytes(), Some(vec![7; 80]));
        }
        let logged = store.log_changes(1).expect("log changes");
        store.save_changes(logged).expect("save changes");
        assert!(
            store.clean_bytes <= env.clean_limit(),
            "{} cached bytes, share {}",
            store.clean_bytes,
            env.clean_limit()
        );
        assert!(store.cache.len() < entries);
        // Dropped from the cache, saved in RocksDB.
        let first = store.get(b"k00000000").expect("get").map(<[u8]>::to_vec);
        assert_eq!(first, Some(vec![7; 80]));
    }

    #[test]
    fn a_bounded_scan_returns_current_entries_with_cached_changes_over_saved_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut store, _env) = test_store(dir.path());
        for i in 0..10 {
            store.put(format!("k{i}").as_bytes(), Some(vec![i]));
        }
        let logged = store.log_changes(1).expect("log changes");
        store.save_changes(logged).expect("save changes");
        store.put(b"k3", None);
        store.put(b"k35", Some(vec![35]));
        store.put(b"k99", Some(vec![99]));
        let keys = |entries: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<String> {
            (entries.into_iter())
                .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
                .collect()
        };
        let first = store.scan_prefix_up_to(b"k", 5).expect("scan");
        assert_eq!(keys(first), ["k0", "k1", "k2", "k35", "k4"]);
        let all = store.scan_prefix(b"k").expect("scan");
        assert_eq!(all.len(), 11);
        assert_eq!(all.last(), Some(&(b"k99".to_vec(), vec![99])));
    }

    /// A store restored at `dir/state/<name>` from the changelog `test_store` writes.
    fn restored(dir: &std::path::Path, name: &str) -> (Store, RestoreReport) {
        let log = crate::Log::open(dir).expect("log");
        let topic = log.topic("changelog").expect("topic");
        let writer = topic.writer(0).expect("writer");
        let changelog = Box::new(super::super::LocalChangelog::new(topic, writer, None));
        let env = StateEnv::new(&dir.join("state"), 4 << 20, None);
        Store::open(&env, dir.join("state").join(name), changelog, false).expect("store")
    }

    #[test]
    fn changes_after_the_last_marker_are_undone_not_applied() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut store, _env) = test_store(dir.path());
        store.put(b"k1", Some(vec![1]));
        store.put(b"k2", Some(vec![2]));
        let logged = store.log_changes(5).expect("log changes");
        store.save_changes(logged).expect("save changes");
        drop(store);
        // A writer that stopped in the middle of its next checkpoint.
        let log = crate::Log::open(dir.path()).expect("log");
        let topic = log.topic("changelog").expect("topic");
        let orphans = [Record::keyed("k1", [9]), Record::keyed("k3", [3])];
        topic
            .writer(0)
            .expect("writer")
            .append(&orphans)
            .expect("append");
        drop(topic);

        for (name, undone) in [("s", 2), ("fresh", 0), ("s", 0)] {
            let (mut store, report) = restored(dir.path(), name);
            assert_eq!(report.undone, undone, "store {name}");
            assert_eq!(store.input_offset(), Some(5));
            let get = |store: &mut Store, k: &[u8]| store.get(k).expect("get").map(<[u8]>::to_vec);
            assert_eq!(get(&mut store, b"k1"), Some(vec![1]), "store {name}");
            assert_eq!(get(&mut store, b"k2"), Some(vec![2]));
            assert_eq!(get(&mut store, b"k3"), None);
        }
        let mut reader = log
            .topic("changelog")
            .expect("topic")
            .reader(0)
            .expect("reader");
        let end = reader.end_offset();
        let last = reader.read(end - 1, 1, 1 << 20).expect("read");
        let last = last.iter().next().expect("a last record");
        assert_eq!(
            last.key,
            Some(MARKER_KEY),
            "the changelog ends in a marker again"
        );
    }

    #[test]
    fn a_reset_at_the_end_of_the_changelog_is_reported_and_survives_until_wiped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut store, _env) = test_store(dir.path());
        store.put(b"k1", Some(vec![1]));
        let logged = store.log_changes(5).expect("log changes");
        store.save_changes(logged).expect("save changes");
        drop(store);
        // A reset, then a wipe that stopped after one tombstone.
        let log = crate::Log::open(dir.path()).expect("log");
        let writer = log
            .topic("changelog")
            .expect("topic")
            .writer(0)
            .expect("writer");
        let tombstone = Record {
            key: Some(b"k1".to_vec()),
            ..Record::default()
        };
        let partial = [reset_record(0), tombstone];
        writer.append(&partial).expect("append");
        drop(writer);

        let (mut store, report) = restored(dir.path(), "s");
        assert_eq!((report.reset_to, report.undone), (Some(0), 1));
        assert_eq!(
            store.get(b"k1").expect("get"),
            Some(&[1u8][..]),
            "not applied: wiped next"
        );
        drop(store);
        // Not wiped yet (a crash): the next start sees the reset again.
        let (mut store, report) = restored(dir.path(), "s");
        assert_eq!((report.reset_to, report.undone), (Some(0), 0));
        store.wipe(0).expect("wipe");
        drop(store);
        for name in ["s", "fresh"] {
            let (mut store, report) = restored(dir.path(), name);
            assert_eq!(report.reset_to, None, "store {name}");
            assert_eq!(store.input_offset(), Some(0));
            assert_eq!(store.get(b"k1").expect("get"), None, "store {name}");
        }
    }
}
