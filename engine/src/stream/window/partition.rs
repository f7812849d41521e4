//! One partition's open time windows and buffered records, and how they are saved in its store.
//!
//! Invariants:
//! - Every open window is in `keys` (under its record key) and, closing by partition, its record
//!   key is in `closing` under `(end, start)`, so the windows to close are the first buckets of `closing`; each
//!   bucket closes in record-key order. `closing` may also hold keys of windows removed early
//!   (a session that grew or merged) in buckets too large to search: closing skips them, and
//!   `open_windows` counts only the windows really open.
//! - Changes reach the store only through [`PartitionWindows::flush`]: changed windows and record
//!   buffers as entries, removed ones as tombstones — and only for entries the store holds, so a
//!   window opened and closed between two checkpoints costs the store nothing.
//! - Closing by partition, windows close on the partition's stream time through `closing` and
//!   buffered records expire through `expiring`; closing by key, each key keeps its own stream
//!   time, and its windows close (and its records expire) only when that key's record or idle
//!   period says so — `closing` and `expiring` stay empty. A key's time is written to the store
//!   whenever it moved; a key whose windows all closed stays in memory until that is written.
//! - Store layout: `W`, `B`, `T` and `M` entries of [`crate::window_codec`]; window keys sort by
//!   end, so the windows to close are also a range in the store.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::key_state::{Buffered, KeyWindows, Open};
use super::state::{state_prefix, PartitionState};
use crate::state::Store;
use crate::stream::StepError;
use crate::window_codec::{
    self, key_time_key, keyed_entry, parse_window_key, window_key, Meta, SavedRecords,
};

/// How buffered values are saved: JSON through serde (captured where `V: Serialize`).
pub(crate) struct ValueCodec<V> {
    pub to_json: fn(&V) -> serde_json::Result<Value>,
    pub from_json: fn(Value) -> serde_json::Result<V>,
}

impl<V: Serialize + DeserializeOwned> ValueCodec<V> {
    pub fn new() -> Self {
        fn to_json<V: Serialize>(v: &V) -> serde_json::Result<Value> {
            serde_json::to_value(v)
        }
        ValueCodec {
            to_json: to_json::<V>,
            from_json: serde_json::from_value::<V>,
        }
    }
}

impl<V> Clone for ValueCodec<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for ValueCodec<V> {}

/// A record key, shared by the map of keys and the closing and flush lists.
type RawKey = Rc<[u8]>;

/// Buckets of `closing` up to this size are searched when a window is removed early; larger
/// ones keep the entry until they close (so a removal never costs a long scan).
const SEARCHED_BUCKET: usize = 16;

/// The window state of one partition.
pub(crate) struct PartitionWindows<K, A, V> {
    op: u16,
    epoch: u64,
    /// Whether windows close by their key's stream time (else by the partition's).
    by_key: bool,
    /// Largest event time seen (`i64::MIN` before the first record).
    pub stream_time: i64,
    /// The stream time of a key without a stored time of its own ([`window_codec::Meta`]).
    key_time_floor: i64,
    /// Arrival counter: the next record's order.
    pub order: u64,
    keys: HashMap<RawKey, KeyWindows<K, A, V>>,
    /// Closing by partition: the record keys of the open windows by `(end, start)`.
    closing: BTreeMap<(i64, i64), Vec<RawKey>>,
    /// How many windows are open.
    open_windows: usize,
    /// Closing by partition: `(expiry, record key)` of keys whose buffered records expire by
    /// time (sliding).
    expiring: BTreeSet<(i64, RawKey)>,
    /// Keys changed since the last flush.
    listed: Vec<RawKey>,
    /// Store keys to delete at the next flush.
    deleted: Vec<Vec<u8>>,
    /// When the partition last received a record (for idle closing).
    pub last_record: Instant,
    /// Closing by key: when to look for idle keys next.
    pub next_idle_scan: Instant,
}

impl<K, A, V> PartitionState for PartitionWindows<K, A, V> {
    fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl<K, A, V> PartitionWindows<K, A, V> {
    fn new(op: u16, epoch: u64, by_key: bool) -> Self {
        PartitionWindows {
            op,
            epoch,
            by_key,
            stream_time: i64::MIN,
            key_time_floor: i64::MIN,
            order: 0,
            keys: HashMap::new(),
            closing: BTreeMap::new(),
            open_windows: 0,
            expiring: BTreeSet::new(),
            listed: Vec::new(),
            deleted: Vec::new(),
            last_record: Instant::now(),
            next_idle_scan: Instant::now(),
        }
    }

    /// The windows and records of `raw`, if any.
    pub fn key(&self, raw: &[u8]) -> Option<&KeyWindows<K, A, V>> {
        self.keys.get(raw)
    }

    /// The windows and records of `raw` (created when missing), listed for the next flush.
    pub fn key_mut(&mut self, raw: &[u8]) -> &mut KeyWindows<K, A, V> {
        self.entry(raw).1
    }

    /// Like [`Self::key_mut`], with the shared record key.
    fn entry(&mut self, raw: &[u8]) -> (RawKey, &mut KeyWindows<K, A, V>) {
        let floor = self.key_time_floor;
        let entry = match self.keys.entry_ref(raw) {
            EntryRef::Occupied(o) => o,
            EntryRef::Vacant(v) => v.insert_entry(KeyWindows::new(floor)),
        };
        let key = entry.key().clone();
        let kw = entry.into_mut();
        if !kw.listed {
            kw.listed = true;
            self.listed.push(key.clone());
        }
        (key, kw)
    }

    /// Moves stream time (and, closing by key, that of `raw`) to a record of `raw` at `ts`,
    /// received at `at`; returns the stream time that now closes the windows of `raw`.
    pub fn observe(&mut self, raw: &[u8], ts: i64, at: Instant) -> i64 {
        self.stream_time = self.stream_time.max(ts);
        self.last_record = at;
        if !self.by_key {
            return self.stream_time;
        }
        let (_, kw) = self.entry(raw);
        kw.last_record = at;
        if ts > kw.time {
            kw.time = ts;
            kw.time_dirty = true;
        }
        kw.time
    }

    /// Opens window `[start, end)` of `raw`.
    pub fn open(&mut self, raw: &[u8], start: i64, end: i64, key: Option<K>, acc: A) {
        let by_key = self.by_key;
        let (shared, kw) = self.entry(raw);
        if kw.windows.capacity() == 0 {
            kw.windows.reserve_exact(1); // most keys have one window open (tumbling)
        }
        kw.windows.push(Open {
            start,
            end,
            key,
            acc,
            dirty: true,
            saved: false,
        });
        if !by_key {
            self.closing.entry((end, start)).or_default().push(shared);
        }
        self.open_windows += 1;
    }

    /// Removes the open window of `raw` starting at `start`.
    pub fn remove(&mut self, raw: &[u8], start: i64) -> Option<Open<K, A>> {
        let kw = self.key_mut(raw);
        let i = kw.windows.iter().position(|w| w.start == start)?;
        let w = kw.windows.swap_remove(i);
        if w.saved {
            self.deleted.push(window_key(self.op, w.end, w.start, raw));
        }
        self.open_windows -= 1;
        let bounds = (w.end, w.start);
        if let Some(bucket) = self.closing.get_mut(&bounds) {
            // A large bucket keeps the entry; closing skips it.
            if bucket.len() <= SEARCHED_BUCKET {
                if let Some(i) = bucket.iter().position(|k| **k == *raw) {
                    bucket.swap_remove(i);
                }
                if bucket.is_empty() {
                    self.closing.remove(&bounds);
                }
            }
        }
        Some(w)
    }

    /// Closing by partition: removes the windows whose end satisfies `due` and appends them to
    /// `closed`, smallest end first; with `drop_records`, also drops the buffered records inside
    /// each closed window.
    pub fn close_due(
        &mut self,
        due: impl Fn(i64) -> bool,
        drop_records: bool,
        closed: &mut Vec<Open<K, A>>,
    ) {
        while let Some(first) = self.closing.first_entry() {
            let (end, start) = *first.key();
            if !due(end) {
                break;
            }
            let mut bucket = first.remove();
            bucket.sort_unstable();
            for raw in bucket {
                let Some(kw) = self.keys.get_mut(&raw) else {
                    continue;
                };
                let at = kw
                    .windows
                    .iter()
                    .position(|w| w.start == start && w.end == end);
                let Some(i) = at else {
                    continue; // removed early, or a duplicate entry of one reopened
                };
                let w = kw.windows.swap_remove(i);
                self.open_windows -= 1;
                if w.saved {
                    self.deleted.push(window_key(self.op, w.end, w.start, &raw));
                }
                if drop_records {
                    kw.drop_records(|r| start <= r.ts && r.ts < end);
                    if kw.records_dirty && !kw.listed {
                        kw.listed = true;
                        self.listed.push(raw.clone());
                    }
                }
                closed.push(w);
                self.forget_if_empty(&raw);
            }
        }
    }

    /// Closing by key: removes the windows of `raw` whose end satisfies `due` and appends them to
    /// `closed`, smallest end first; buffered records go as with [`Self::close_due`], and all of
    /// them once their expiry is due.
    pub fn close_key_due(
        &mut self,
        raw: &[u8],
        due: impl Fn(i64) -> bool,
        drop_records: bool,
        closed: &mut Vec<Open<K, A>>,
    ) {
        let Some((shared, kw)) = self.keys.get_key_value_mut(raw) else {
            return;
        };
        let first = closed.len();
        let mut i = 0;
        while i < kw.windows.len() {
            if !due(kw.windows[i].end) {
                i += 1;
                continue;
            }
            let w = kw.windows.swap_remove(i);
            self.open_windows -= 1;
            if w.saved {
                self.deleted.push(window_key(self.op, w.end, w.start, raw));
            }
            if drop_records {
                kw.drop_records(|r| w.start <= r.ts && r.ts < w.end);
            }
            closed.push(w);
        }
        if kw.expires_at.is_some_and(&due) {
            kw.expires_at = None;
            kw.drop_records(|_| true);
        }
        if closed.len() == first && !kw.records_dirty {
            return; // nothing changed
        }
        closed[first..].sort_unstable_by_key(|w| (w.end, w.start));
        if !kw.listed {
            kw.listed = true;
            self.listed.push(shared.clone());
        }
        if kw.is_empty() {
            self.forget_if_empty(raw);
        }
    }

    /// Closing by key: the keys with open windows that received no record for `idle` before
    /// `now`, in key order.
    pub fn idle_keys(&self, idle: Duration, now: Instant) -> Vec<RawKey> {
        let mut idle_keys: Vec<RawKey> = (self.keys.iter())
            .filter(|(_, kw)| {
                !kw.windows.is_empty() && now.saturating_duration_since(kw.last_record) >= idle
            })
            .map(|(raw, _)| raw.clone())
            .collect();
        idle_keys.sort_unstable();
        idle_keys
    }

    /// Closing by key: closes every open window of `raw`, moving its stream time to the last
    /// one's end + `linger`, so that its later records for them are late.
    pub fn close_idle_key(
        &mut self,
        raw: &[u8],
        linger: i64,
        drop_records: bool,
        closed: &mut Vec<Open<K, A>>,
    ) {
        let Some(kw) = self.keys.get_mut(raw) else {
            return;
        };
        if let Some(last) = kw.windows.iter().map(|w| w.end).max() {
            let time = last.saturating_add(linger);
            if time > kw.time {
                (kw.time, kw.time_dirty) = (time, true);
            }
        }
        let time = kw.time;
        let due = |end: i64| end.saturating_add(linger) <= time;
        self.close_key_due(raw, due, drop_records, closed);
    }

    /// Closing by partition: the largest end of an open window.
    pub fn last_end(&self) -> Option<i64> {
        let is_open = |raw: &RawKey, start: i64, end: i64| {
            let kw = self.keys.get(raw);
            kw.is_some_and(|kw| kw.windows.iter().any(|w| (w.start, w.end) == (start, end)))
        };
        self.closing
            .iter()
            .rev()
            .find(|(&(end, start), keys)| keys.iter().any(|raw| is_open(raw, start, end)))
            .map(|(&(end, _), _)| end)
    }

    /// Whether any window is open.
    pub fn has_open(&self) -> bool {
        self.open_windows > 0
    }

    /// Records of `raw` expire (all of them) once `expiry` is due; a later expiry replaces it.
    pub fn expire_records_at(&mut self, raw: &[u8], expiry: i64) {
        let by_key = self.by_key;
        let (shared, kw) = self.entry(raw);
        let old = kw.expires_at;
        if old.is_some_and(|old| old >= expiry) {
            return;
        }
        kw.expires_at = Some(expiry);
        if by_key {
            return; // checked when the key's windows close
        }
        if let Some(old) = old {
            self.expiring.remove(&(old, shared.clone()));
        }
        self.expiring.insert((expiry, shared));
    }

    /// Closing by partition: drops the buffered records of every key whose expiry is due.
    pub fn expire_records(&mut self, due: impl Fn(i64) -> bool) {
        while self.expiring.first().is_some_and(|first| due(first.0)) {
            let Some((_, raw)) = self.expiring.pop_first() else {
                break;
            };
            let kw = self.key_mut(&raw);
            kw.expires_at = None;
            kw.drop_records(|_| true);
            self.forget_if_empty(&raw);
        }
    }

    /// Drops the entry of `raw` when it holds nothing left to write (its buffer's tombstone is
    /// written; a changed key time stays until the next flush writes it).
    fn forget_if_empty(&mut self, raw: &[u8]) {
        if (self.keys.get(raw)).is_some_and(|kw| kw.is_empty() && !kw.time_dirty) {
            if let Some(kw) = self.keys.remove(raw) {
                if kw.records_saved {
                    self.deleted.push(records_key(self.op, raw));
                }
            }
        }
    }
}

impl<K, A, V> PartitionWindows<K, A, V>
where
    K: Serialize + DeserializeOwned,
    A: Serialize + DeserializeOwned,
{
    /// The partition's window state as saved in `store` by operator `op`.
    pub fn load(
        op: u16,
        store: &Store,
        codec: Option<ValueCodec<V>>,
        record_span: Option<i64>,
        by_key: bool,
    ) -> Result<Self, StepError> {
        let mut p = PartitionWindows::new(op, store.epoch(), by_key);
        let meta = store.scan_prefix(&state_prefix(op, b'M')).map_err(fatal)?;
        if let Some((k, v)) = meta.into_iter().find(|(k, _)| k.len() == 4) {
            let meta = Meta::decode(&v).map_err(|e| corrupt(store, &k, "meta", e))?;
            (p.stream_time, p.order) = (meta.stream_time, meta.order);
            p.key_time_floor = meta.key_time_floor;
        }
        for (k, v) in store.scan_prefix(&state_prefix(op, b'W')).map_err(fatal)? {
            let window = parse_window_key(&k).map_err(|e| corrupt(store, &k, "key", e))?;
            if let Some(span) = record_span {
                // A sliding window spans `size + 1` ms (`record_span`); one `size` long was
                // written by an eddy whose windows left out the record `size` earlier.
                let saturated = window.start == i64::MIN || window.end == i64::MAX;
                if !saturated && window.end.saturating_sub(window.start) != span {
                    return Err(corrupt(store, &k, "bounds", format!(
                        "sliding window [{}, {}) is not {span} ms long: written by an eddy whose                          sliding windows were [t − size + 1, t]; close its windows with that                          version first",
                        window.start, window.end
                    )));
                }
            }
            let (key, acc) =
                window_codec::decode(&v).map_err(|e| corrupt(store, &k, "window", e))?;
            let raw = window.raw;
            p.open(raw, window.start, window.end, key, acc);
            if let Some(w) = p.keys.get_mut(raw).and_then(|kw| kw.windows.last_mut()) {
                (w.dirty, w.saved) = (false, true);
            }
        }
        let buffers = match codec {
            Some(_) => store.scan_prefix(&state_prefix(op, b'B')).map_err(fatal)?,
            None => Vec::new(),
        };
        for (k, v) in buffers {
            let Some(codec) = codec else { break };
            let raw =
                window_codec::entry_record_key(&k).map_err(|e| corrupt(store, &k, "key", e))?;
            let saved: SavedRecords =
                window_codec::decode(&v).map_err(|e| corrupt(store, &k, "records", e))?;
            let kw = p.key_mut(raw);
            for (ts, order, value) in saved {
                let value =
                    (codec.from_json)(value).map_err(|e| corrupt(store, &k, "record value", e))?;
                kw.records.push(Buffered { ts, order, value });
            }
            kw.records_saved = true;
            let newest = kw.records.iter().map(|r| r.ts).max();
            if let (Some(span), Some(newest)) = (record_span, newest) {
                p.expire_records_at(raw, newest.saturating_add(span));
            }
        }
        for raw in std::mem::take(&mut p.listed) {
            if let Some(kw) = p.keys.get_mut(&raw) {
                kw.listed = false;
                if by_key {
                    kw.time = stored_key_time(store, op, &raw)?.map_or(kw.time, |t| t.max(kw.time));
                }
            }
        }
        Ok(p)
    }

    /// The stream time that closes the windows of `raw` and makes its records late: the key's
    /// own when closing by key, else the partition's. Closing by key, first brings `raw` into memory with the stream time
    /// `store` holds for it when it is not there.
    pub fn admit(&mut self, store: &Store, raw: &[u8]) -> Result<i64, StepError> {
        if !self.by_key {
            return Ok(self.stream_time);
        }
        if let Some(kw) = self.keys.get(raw) {
            return Ok(kw.time);
        }
        let floor = self.key_time_floor;
        let time = stored_key_time(store, self.op, raw)?.map_or(floor, |t| t.max(floor));
        self.keys.insert(raw.into(), KeyWindows::new(time));
        Ok(time)
    }

    /// Writes what changed since the last flush into `store`'s cache.
    pub fn flush(
        &mut self,
        store: &mut Store,
        codec: Option<ValueCodec<V>>,
    ) -> Result<(), StepError> {
        for key in self.deleted.drain(..) {
            store.put(&key, None);
        }
        let mut emptied = Vec::new();
        for raw in std::mem::take(&mut self.listed) {
            let Some(kw) = self.keys.get_mut(&raw) else {
                continue; // gone since: its tombstones are written
            };
            kw.listed = false;
            if kw.time_dirty {
                let time = serde_json::to_vec(&kw.time).map_err(|e| bad("key time", e))?;
                store.put(&key_time_key(self.op, &raw), Some(time));
                kw.time_dirty = false;
            }
            if kw.is_empty() {
                // Closing by key: windows gone since, or a late record of a key brought in.
                emptied.push(raw.clone());
            }
            for w in kw.windows.iter_mut().filter(|w| w.dirty) {
                let value = serde_json::to_vec(&(&w.key, &w.acc)).map_err(|e| bad("window", e))?;
                store.put(&window_key(self.op, w.end, w.start, &raw), Some(value));
                (w.dirty, w.saved) = (false, true);
            }
            if let (true, Some(codec)) = (kw.records_dirty, codec) {
                let mut saved = Vec::with_capacity(kw.records.len());
                for r in &kw.records {
                    let value = (codec.to_json)(&r.value).map_err(|e| bad("record value", e))?;
                    saved.push((r.ts, r.order, value));
                }
                let value = serde_json::to_vec(&saved).map_err(|e| bad("records", e))?;
                store.put(&records_key(self.op, &raw), Some(value));
                (kw.records_dirty, kw.records_saved) = (false, true);
            }
        }
        for raw in emptied {
            self.forget_if_empty(&raw);
        }
        for key in self.deleted.drain(..) {
            store.put(&key, None);
        }
        let meta = Meta {
            stream_time: self.stream_time,
            order: self.order,
            // Keys closing by partition have no times of their own: the partition's is theirs.
            key_time_floor: match self.by_key {
                true => self.key_time_floor,
                false => self.stream_time,
            },
        };
        store.put(&state_prefix(self.op, b'M'), Some(meta.encode()));
        Ok(())
    }
}

/// The stream time `store` holds for record key `raw` of operator `op` (closing by key).
fn stored_key_time(store: &Store, op: u16, raw: &[u8]) -> Result<Option<i64>, StepError> {
    let key = key_time_key(op, raw);
    match store.peek(&key).map_err(fatal)? {
        None => Ok(None),
        Some(v) => window_codec::decode(&v)
            .map(Some)
            .map_err(|e| corrupt(store, &key, "key time", e)),
    }
}

/// The store key of the buffered records of `raw`.
fn records_key(op: u16, raw: &[u8]) -> Vec<u8> {
    keyed_entry(op, b'B', raw)
}

fn bad(what: &str, cause: impl std::fmt::Display) -> StepError {
    StepError::Function(format!("window state: {what}: {cause}"))
}

/// Stored window state that does not decode: a storage error naming store and key, never a
/// record's failure (skipping records would not get past it).
fn corrupt(store: &Store, key: &[u8], what: &str, cause: impl std::fmt::Display) -> StepError {
    fatal(store.corrupt_entry(key, format!("window {what}: {cause}")))
}

fn fatal(e: crate::state::StateError) -> StepError {
    StepError::Fatal(e.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_keys_are_the_quiet_ones_with_open_windows_and_closing_moves_their_time() {
        let mut p: PartitionWindows<String, u64, ()> = PartitionWindows::new(0, 1, true);
        let now = Instant::now();
        let ago = |ms| now.checked_sub(Duration::from_millis(ms)).unwrap();
        for (raw, quiet_for) in [(&b"c"[..], 300), (b"a", 500), (b"b", 50)] {
            p.open(raw, 0, 10, None, 0);
            p.observe(raw, 5, ago(quiet_for));
        }
        p.observe(b"z", 7, ago(900)); // quiet, but nothing open
        let idle = p.idle_keys(Duration::from_millis(200), now);
        assert_eq!(idle, [Rc::from(&b"a"[..]), Rc::from(&b"c"[..])]);

        let mut closed = Vec::new();
        p.close_idle_key(b"a", 3, false, &mut closed);
        assert_eq!(
            closed.iter().map(|w| (w.start, w.end)).collect::<Vec<_>>(),
            [(0, 10)]
        );
        assert_eq!(
            p.key(b"a").map(|kw| kw.time),
            Some(13),
            "a's time moved to the window's end + linger"
        );
        assert_eq!(
            p.key(b"b").map(|kw| kw.time),
            Some(5),
            "other keys keep theirs"
        );
        assert!(p.key(b"a").is_some(), "kept until its time is written");
    }

    #[test]
    fn a_key_without_windows_leaves_memory_at_the_flush_that_writes_its_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut store, _env) = crate::state::test_store(dir.path());
        let mut p: PartitionWindows<String, u64, ()> =
            PartitionWindows::load(0, &store, None, None, true).expect("load");

        // A record that opened nothing (late, say) moved the key's time.
        assert_eq!(p.admit(&store, b"x").expect("admit"), i64::MIN);
        assert_eq!(p.observe(b"x", 100, Instant::now()), 100);
        p.flush(&mut store, None).expect("flush");
        assert!(p.key(b"x").is_none(), "nothing left in memory");
        // Brought back, it has the time it had; a late record leaves it as it came.
        assert_eq!(p.admit(&store, b"x").expect("admit"), 100);
        assert_eq!(p.observe(b"x", 40, Instant::now()), 100);
        p.flush(&mut store, None).expect("flush");
        assert!(p.key(b"x").is_none(), "nothing left in memory");
    }
}
