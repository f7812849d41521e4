//! Sparse indexes of a segment.
//!
//! Offset index (`.index`): 8-byte entries `relative_offset u32 BE, position u32 BE`, one per
//! `index_interval_bytes` of log, pointing at the start of a batch. Time index (`.timeindex`):
//! 12-byte entries `max_timestamp i64 BE, relative_offset u32 BE`, meaning "every record up to and
//! including this offset has a timestamp <= max_timestamp"; timestamps strictly increase.
//!
//! The appender keeps the active segment's indexes in preallocated, zero-filled files mapped
//! read-write (the zeros are written, not left sparse, so that a full disk is an error at creation
//! rather than a SIGBUS on a later store); an entry is never at position 0 and never at relative offset 0, so the first all-zero
//! entry ends the list. Sealing truncates the files to their entries. Sealed indexes are immutable
//! (compaction replaces them by rename) and readers map them read-only; readers copy the active
//! segment's indexes with `pread`, because the appender truncates those in place when it seals.
//! Indexes are hints: every position taken from one is checked against the log before it is trusted.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

use super::error::{IoContext, LogResult};

/// Bytes per offset-index entry.
pub(crate) const OFFSET_ENTRY: usize = 8;
/// Bytes per time-index entry.
pub(crate) const TIME_ENTRY: usize = 12;

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    i64::from_be_bytes(a)
}

/// Binary search: how many of the first `len` entries satisfy `pred`, which must hold for a prefix.
fn count_leading(len: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, len);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Offset-index entries over a byte slice.
#[derive(Clone, Copy)]
pub(crate) struct OffsetEntries<'a>(pub &'a [u8]);

impl OffsetEntries<'_> {
    pub fn len(&self) -> usize {
        self.0.len() / OFFSET_ENTRY
    }
    /// `(relative_offset, position)` of entry `i`.
    pub fn get(&self, i: usize) -> (u32, u32) {
        (
            u32_at(self.0, i * OFFSET_ENTRY),
            u32_at(self.0, i * OFFSET_ENTRY + 4),
        )
    }
    /// The last entry whose relative offset is `<= rel`, if any.
    pub fn floor(&self, rel: u32) -> Option<(u32, u32)> {
        let n = count_leading(self.len(), |i| self.get(i).0 <= rel);
        n.checked_sub(1).map(|i| self.get(i))
    }
    /// Number of leading entries that form a valid list (strictly increasing, never zero).
    pub fn valid_prefix(&self, log_len: u64) -> usize {
        let mut prev = (0u32, 0u32);
        for i in 0..self.len() {
            let e = self.get(i);
            if e.1 == 0 || (i > 0 && (e.0 <= prev.0 || e.1 <= prev.1)) || u64::from(e.1) >= log_len
            {
                return i;
            }
            prev = e;
        }
        self.len()
    }
}

/// Time-index entries over a byte slice.
#[derive(Clone, Copy)]
pub(crate) struct TimeEntries<'a>(pub &'a [u8]);

impl TimeEntries<'_> {
    pub fn len(&self) -> usize {
        self.0.len() / TIME_ENTRY
    }
    /// `(max_timestamp, relative_offset)` of entry `i`.
    pub fn get(&self, i: usize) -> (i64, u32) {
        (
            i64_at(self.0, i * TIME_ENTRY),
            u32_at(self.0, i * TIME_ENTRY + 8),
        )
    }
    pub fn last(&self) -> Option<(i64, u32)> {
        self.len().checked_sub(1).map(|i| self.get(i))
    }
    pub fn first(&self) -> Option<(i64, u32)> {
        (self.len() > 0).then(|| self.get(0))
    }
    /// The last entry whose timestamp is `< ts`: every record up to its offset is older than `ts`.
    pub fn last_before(&self, ts: i64) -> Option<(i64, u32)> {
        let n = count_leading(self.len(), |i| self.get(i).0 < ts);
        n.checked_sub(1).map(|i| self.get(i))
    }
    /// Number of leading entries that form a valid list. `allow_zero_offset` admits relative offset
    /// 0 in the first entry (sealed files); active files end at the first all-zero entry.
    pub fn valid_prefix(&self, max_rel: u32, allow_zero_offset: bool) -> usize {
        let mut prev: Option<(i64, u32)> = None;
        for i in 0..self.len() {
            let e = self.get(i);
            let ordered = match prev {
                None => allow_zero_offset || e.1 > 0,
                Some(p) => e.0 > p.0 && e.1 >= p.1 && (allow_zero_offset || e.1 > p.1),
            };
            if !ordered || e.1 > max_rel {
                return i;
            }
            prev = Some(e);
        }
        self.len()
    }
}

/// The appender's side of one index file: preallocated, mapped read-write, filled in order.
pub(crate) struct IndexWriter {
    path: PathBuf,
    file: File,
    map: MmapMut,
    entry: usize,
    used: usize,
}

impl IndexWriter {
    /// Opens (creating if needed) `path`, sized to `capacity` entries, keeping the first `keep`
    /// entries already there and zeroing the rest.
    pub fn open(path: &Path, entry: usize, capacity: usize, keep: usize) -> LogResult<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .ctx("open index", path)?;
        let bytes = capacity.max(keep) * entry;
        // The space is written (not just sized) before it is mapped: a store to a mapped page the
        // filesystem cannot allocate is a SIGBUS, while a write returns ENOSPC.
        file.set_len((keep * entry) as u64)
            .ctx("size index", path)?;
        let zeros = vec![0u8; bytes - keep * entry];
        file.write_all_at(&zeros, (keep * entry) as u64)
            .ctx("preallocate index", path)?;
        let map = map_mut(&file, path)?;
        let mut w = IndexWriter {
            path: path.to_owned(),
            file,
            map,
            entry,
            used: keep,
        };
        w.truncate(keep);
        Ok(w)
    }

    /// Entries written so far, as bytes.
    #[cfg(test)]
    pub fn bytes(&self) -> &[u8] {
        self.map.get(..self.used * self.entry).unwrap_or_default()
    }

    /// Whether another entry fits.
    pub fn is_full(&self) -> bool {
        (self.used + 1) * self.entry > self.map.len()
    }

    /// Appends one entry; `false` if the file is full.
    pub fn push(&mut self, entry: &[u8]) -> bool {
        let at = self.used * self.entry;
        match self.map.get_mut(at..at + self.entry) {
            Some(slot) if entry.len() == self.entry => {
                slot.copy_from_slice(entry);
                self.used += 1;
                true
            }
            _ => false,
        }
    }

    /// Drops entries from `n` on, zeroing them so readers see the list end.
    pub fn truncate(&mut self, n: usize) {
        let from = n * self.entry;
        if let Some(rest) = self.map.get_mut(from..) {
            rest.fill(0);
        }
        self.used = n;
    }

    /// Shrinks the file to its entries and syncs it: the index of a sealed segment.
    pub fn seal(self) -> LogResult<()> {
        let IndexWriter {
            path,
            file,
            map,
            entry,
            used,
        } = self;
        map.flush().ctx("flush index", &path)?;
        drop(map);
        file.set_len((used * entry) as u64)
            .ctx("truncate index", &path)?;
        file.sync_all().ctx("fsync index", &path)
    }
}

fn map_mut(file: &File, path: &Path) -> LogResult<MmapMut> {
    // SAFETY: the file belongs to the partition whose append lock this process holds; no other
    // process writes or truncates it while mapped (readers only pread active indexes), and this
    // mapping is dropped before the file is truncated in `seal`.
    #[allow(unsafe_code)]
    unsafe { MmapMut::map_mut(file) }.ctx("map index", path)
}

/// A reader's copy of an index: mapped when the segment is sealed, read into memory when active.
pub(crate) enum IndexBytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl IndexBytes {
    /// Loads the index at `path`; `None` if it is missing.
    pub fn load(path: &Path, sealed: bool) -> LogResult<Option<Self>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).ctx("open index", path),
        };
        let len = file.metadata().ctx("stat index", path)?.len();
        if len == 0 {
            return Ok(Some(IndexBytes::Owned(Vec::new())));
        }
        if sealed {
            // SAFETY: sealed index files are never written or truncated in place: compaction and
            // rebuilds replace them by rename and retention unlinks them, neither of which changes
            // the inode this mapping holds.
            #[allow(unsafe_code)]
            let map = unsafe { Mmap::map(&file) }.ctx("map index", path)?;
            Ok(Some(IndexBytes::Mapped(map)))
        } else {
            let bytes = std::fs::read(path).ctx("read index", path)?;
            Ok(Some(IndexBytes::Owned(bytes)))
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            IndexBytes::Mapped(m) => m,
            IndexBytes::Owned(v) => v,
        }
    }
}

/// Encodes an offset-index entry.
pub(crate) fn offset_entry(rel: u32, position: u32) -> [u8; OFFSET_ENTRY] {
    let mut e = [0u8; OFFSET_ENTRY];
    e[..4].copy_from_slice(&rel.to_be_bytes());
    e[4..].copy_from_slice(&position.to_be_bytes());
    e
}

/// Encodes a time-index entry.
pub(crate) fn time_entry(max_ts: i64, rel: u32) -> [u8; TIME_ENTRY] {
    let mut e = [0u8; TIME_ENTRY];
    e[..8].copy_from_slice(&max_ts.to_be_bytes());
    e[8..].copy_from_slice(&rel.to_be_bytes());
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_and_last_before_match_a_linear_scan() {
        let mut off = Vec::new();
        let mut time = Vec::new();
        for i in 1..200u32 {
            off.extend_from_slice(&offset_entry(i * 10, i * 4096));
            time.extend_from_slice(&time_entry(i64::from(i) * 100, i * 10));
        }
        let o = OffsetEntries(&off);
        let t = TimeEntries(&time);
        for target in 0..2100u32 {
            let naive = (0..o.len()).map(|i| o.get(i)).rfind(|e| e.0 <= target);
            assert_eq!(o.floor(target), naive, "floor({target})");
            let ts = i64::from(target) * 10;
            let naive_t = (0..t.len()).map(|i| t.get(i)).rfind(|e| e.0 < ts);
            assert_eq!(t.last_before(ts), naive_t, "last_before({ts})");
        }
        assert_eq!(o.valid_prefix(u64::MAX), 199);
        assert_eq!(o.valid_prefix(4096 * 50), 49);
        assert_eq!(t.valid_prefix(u32::MAX, false), 199);
    }

    #[test]
    fn zero_entry_ends_an_active_list() {
        let mut off = Vec::new();
        off.extend_from_slice(&offset_entry(3, 5000));
        off.extend_from_slice(&offset_entry(0, 0));
        off.extend_from_slice(&offset_entry(9, 9000));
        assert_eq!(OffsetEntries(&off).valid_prefix(u64::MAX), 1);
    }

    #[test]
    fn writer_fills_truncates_and_seals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let mut w = IndexWriter::open(&path, OFFSET_ENTRY, 4, 0).unwrap();
        for i in 1..=4 {
            assert!(w.push(&offset_entry(i, i * 100)));
        }
        assert!(w.is_full());
        assert!(!w.push(&offset_entry(5, 500)));
        w.truncate(2);
        assert_eq!(OffsetEntries(w.bytes()).len(), 2);
        w.seal().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        let loaded = IndexBytes::load(&path, true).unwrap().unwrap();
        assert_eq!(OffsetEntries(loaded.bytes()).get(1), (2, 200));
    }
}
