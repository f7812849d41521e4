//! One record key's part of a partition's time-window state: its open windows, the records it
//! buffers (sliding and session windows) and, when windows close by key, its own stream time.
//!
//! Invariant: every change marks what the next flush writes (`dirty` windows, `records_dirty`,
//! `time_dirty`), and the `saved` flags say which entries the store holds, so that removing one
//! writes a tombstone only when there is something to delete.

use std::time::Instant;

/// An open window.
pub(crate) struct Open<K, A> {
    pub start: i64,
    pub end: i64,
    pub key: Option<K>,
    pub acc: A,
    pub(super) dirty: bool,
    pub(super) saved: bool,
}

/// A record kept for windows that are not open yet (sliding) or may merge (sessions).
pub(crate) struct Buffered<V> {
    pub ts: i64,
    pub order: u64,
    pub value: V,
}

/// The open windows and buffered records of one record key.
pub(crate) struct KeyWindows<K, A, V> {
    pub windows: Vec<Open<K, A>>,
    pub(super) records: Vec<Buffered<V>>,
    pub(super) records_dirty: bool,
    pub(super) records_saved: bool,
    /// When the newest buffered record expires (sliding windows).
    pub(super) expires_at: Option<i64>,
    /// Whether the key is in its partition's list of keys to flush.
    pub(super) listed: bool,
    /// The key's stream time when windows close by key: its largest record time, or what it
    /// started from (`i64::MIN`, or the partition's floor for keys of earlier state).
    pub(super) time: i64,
    pub(super) time_dirty: bool,
    /// When the key last received a record (idle closing by key).
    pub(super) last_record: Instant,
}

impl<K, A, V> KeyWindows<K, A, V> {
    pub(super) fn new(time: i64) -> Self {
        KeyWindows {
            windows: Vec::new(),
            records: Vec::new(),
            records_dirty: false,
            records_saved: false,
            expires_at: None,
            listed: false,
            time,
            time_dirty: false,
            last_record: Instant::now(),
        }
    }

    /// The open window starting at `start`, marked changed.
    pub fn window_mut(&mut self, start: i64) -> Option<&mut Open<K, A>> {
        let w = self.windows.iter_mut().find(|w| w.start == start)?;
        w.dirty = true;
        Some(w)
    }

    /// Applies `f` to every open window containing `ts`, marking each changed.
    pub fn update_containing(&mut self, ts: i64, mut f: impl FnMut(&mut Open<K, A>)) {
        for w in self.windows.iter_mut() {
            if w.start <= ts && ts < w.end {
                w.dirty = true;
                f(w);
            }
        }
    }

    /// Buffered records, in arrival order.
    pub fn records(&self) -> &[Buffered<V>] {
        &self.records
    }

    /// Buffers a record.
    pub fn buffer(&mut self, record: Buffered<V>) {
        self.records.push(record);
        self.records_dirty = true;
    }

    /// Drops the buffered records `drop` selects.
    pub fn drop_records(&mut self, drop: impl Fn(&Buffered<V>) -> bool) {
        let before = self.records.len();
        self.records.retain(|r| !drop(r));
        self.records_dirty |= self.records.len() != before;
    }

    pub(super) fn is_empty(&self) -> bool {
        self.windows.is_empty() && self.records.is_empty()
    }
}
