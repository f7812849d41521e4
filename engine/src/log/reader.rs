//! Reading a partition, from any thread or process, while its appender writes.
//!
//! A reader takes the published tail first and never reads past it, so it never returns a batch
//! that is still being written. It keeps a cursor (segment, byte position, next offset) so that
//! sequential reads need no index lookup; seeks use the offset index as a hint that is checked
//! against the batch it points at. Segments deleted by retention or replaced by compaction are
//! found again by listing the directory.
//!
//! The published tail is trusted while an appender holds the partition (a reader checks its lock
//! with a momentary shared lock), while appenders lend it between appends during this boot, and
//! after the last appender closed cleanly. Otherwise — an
//! appender crashed, or the machine lost power, and none has reopened the partition yet — the
//! tail may be stale either way, and the reader finds the end of the intact batches itself,
//! changing nothing.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::batch::{crc_ok, decode_records, parse_header, put_bytes, HEADER_LEN, MAX_BATCH_BYTES};
use super::error::{IoContext, LogError, LogResult};
use super::index::{IndexBytes, OffsetEntries, TimeEntries, OFFSET_ENTRY, TIME_ENTRY};
use super::record::{Record, RecordSlot, RecordView, NULL};
use super::segment::{
    batch_at, corrupt, intact_end, last_batch_max_timestamp, list_segments, segment_path,
};
use super::tail::{Tail, TailFile, STUCK_PUBLISH};
use super::transactions::{self as txn, AbortedTxn};

/// Records returned by one read. Iterate with [`Fetch::iter`].
#[derive(Default)]
pub struct Fetch {
    buf: Vec<u8>,
    slots: Vec<RecordSlot>,
    next_offset: u64,
}

impl Fetch {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the read found nothing (the reader is at the end of the log).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The records, in offset order.
    pub fn iter(&self) -> impl Iterator<Item = RecordView<'_>> + '_ {
        self.slots
            .iter()
            .map(|s| RecordView::from_slot(&self.buf, s))
    }

    /// The `i`-th record, in offset order.
    pub fn get(&self, i: usize) -> Option<RecordView<'_>> {
        self.slots
            .get(i)
            .map(|s| RecordView::from_slot(&self.buf, s))
    }

    /// The offset to read from next.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Bytes of record batches read.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// A fetch of records read elsewhere (by another backend of an application): `(offset,
    /// record)` pairs in offset order; the next read starts at `next_offset`. A record without
    /// a timestamp gets -1, as Kafka reports none. Keys, values and headers take at most 4 GiB
    /// in all: records past that are left out and the next read starts at the first of them.
    pub fn from_records(
        records: impl IntoIterator<Item = (u64, Record)>,
        next_offset: u64,
    ) -> Fetch {
        let mut fetch = Fetch {
            next_offset,
            ..Fetch::default()
        };
        for (offset, r) in records {
            let buf = &mut fetch.buf;
            let size = r.key.as_ref().map_or(0, Vec::len)
                + r.value.as_ref().map_or(0, Vec::len)
                + (r.headers.iter())
                    .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len) + 20)
                    .sum::<usize>();
            if buf.len() + size >= NULL as usize {
                fetch.next_offset = offset;
                break;
            }
            let mut part = |bytes: Option<&[u8]>| match bytes {
                None => (NULL, NULL),
                Some(b) => {
                    let start = buf.len() as u32;
                    buf.extend_from_slice(b);
                    (start, buf.len() as u32)
                }
            };
            let key = part(r.key.as_deref());
            let value = part(r.value.as_deref());
            let headers_start = buf.len() as u32;
            for h in &r.headers {
                put_bytes(buf, Some(h.key.as_bytes()));
                put_bytes(buf, h.value.as_deref());
            }
            fetch.slots.push(RecordSlot {
                offset,
                timestamp: r.timestamp.unwrap_or(-1),
                key,
                value,
                headers: (headers_start, buf.len() as u32, r.headers.len() as u32),
            });
        }
        fetch
    }
}

/// A segment's readable extent: base offset, readable bytes, and the offset no batch may reach.
#[derive(Clone, Copy)]
struct SegmentSpan {
    base: u64,
    limit: u64,
    upper: u64,
}

/// Most bytes of one read system call: each chunk is decoded while it is still in the CPU cache.
const READ_CHUNK: u64 = 2 << 20;

/// Appends `file[at..at + len]` to `buf` without zero-filling the new space first.
fn append_from(file: &File, path: &Path, at: u64, len: usize, buf: &mut Vec<u8>) -> LogResult<()> {
    let mut f = file;
    f.seek(SeekFrom::Start(at)).ctx("seek", path)?;
    buf.reserve(len);
    let got = f.take(len as u64).read_to_end(buf).ctx("read", path)?;
    if got != len {
        return Err(LogError::Io {
            op: "read",
            path: path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("wanted {len} bytes at {at}, the file had {got}"),
            ),
        });
    }
    Ok(())
}

struct OpenSegment {
    base: u64,
    file: File,
    path: PathBuf,
}

/// A reader of one partition. Cheap to open; not shared between threads (open one per thread).
pub struct PartitionReader {
    topic: String,
    partition: u32,
    dir: PathBuf,
    tail: TailFile,
    /// The partition's lock file, to tell whether an appender is open (`None`: never written).
    lock: Option<File>,
    /// Inode of the `tail` file opened: another one (or none) means the topic was deleted (and
    /// perhaps created again) since.
    tail_inode: u64,
    /// Offsets have no gaps (delete policy): a segment whose records stop short of the next
    /// segment's base means a lost segment or a cut one, reported as corruption.
    contiguous: bool,
    /// The end of the log found by scanning while no appender is open and the tail is not exact.
    found_tail: std::cell::Cell<Option<Tail>>,
    /// The last stable offset worked out from the log for a tail that did not publish one, so
    /// that reads of the same tail do not read the log again.
    found_stable: std::cell::Cell<Option<(Tail, u64)>>,
    /// The aborted transactions listed by sealed segments' `.txnindex` files, which no appender
    /// changes once the segment is sealed, except recovery when an appender takes the partition:
    /// kept while the tail's generation stays the same.
    sealed_aborted: (u64, std::collections::BTreeMap<u64, Vec<AbortedTxn>>),
    segments: Vec<u64>,
    open: Option<OpenSegment>,
    /// (segment base, byte position, offset) where the last read stopped.
    cursor: Option<(u64, u64, u64)>,
    active_index: ActiveIndexCopy,
    /// Average bytes per record of the last fetch, to size the next first read.
    bytes_per_record: u64,
    /// Which records reads return.
    isolation: Isolation,
    /// Reading committed records: the aborted transactions that the current read skips, and
    /// the last stable offset it stops at.
    aborted: Vec<AbortedTxn>,
    stable_limit: u64,
}

/// Which records a reader returns. Control batches (transaction markers) are never returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Every record, also of transactions still open or aborted (Kafka's `read_uncommitted`).
    #[default]
    ReadUncommitted,
    /// Records up to the last stable offset, skipping aborted transactions (`read_committed`).
    ReadCommitted,
}

/// A reader's copy of the active segment's offset index, extended with `pread` as the appender adds
/// entries, so that a seek reads only the entries it has not seen yet.
#[derive(Default)]
struct ActiveIndexCopy {
    base: Option<u64>,
    bytes: Vec<u8>,
}

impl ActiveIndexCopy {
    fn entries(&self) -> OffsetEntries<'_> {
        OffsetEntries(&self.bytes)
    }

    fn refresh(&mut self, dir: &Path, base: u64, limit: u64) -> LogResult<()> {
        if self.base != Some(base) {
            self.base = Some(base);
            self.bytes.clear();
        }
        let path = segment_path(dir, base, "index");
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).ctx("open index", &path),
        };
        let mut chunk = vec![0u8; 4096];
        loop {
            let at = self.bytes.len() as u64;
            let n = read_up_to(&file, &mut chunk, at).ctx("read index", &path)?;
            let whole = n - n % OFFSET_ENTRY;
            let before = self.bytes.len();
            self.bytes
                .extend_from_slice(chunk.get(..whole).unwrap_or_default());
            let valid = OffsetEntries(&self.bytes).valid_prefix(limit);
            self.bytes.truncate(valid * OFFSET_ENTRY);
            if self.bytes.len() < before + whole || whole < chunk.len() {
                return Ok(());
            }
        }
    }
}

/// Reads into `buf` from `at` until it is full or the file ends; returns the bytes read.
fn read_up_to(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(
            buf.get_mut(filled..).unwrap_or_default(),
            at + filled as u64,
        )? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

impl PartitionReader {
    pub(crate) fn open(
        topic: &str,
        partition: u32,
        dir: &Path,
        contiguous: bool,
    ) -> LogResult<Self> {
        let tail_path = dir.join("tail");
        if !tail_path.exists() && !dir.exists() {
            // Deleted since the topic was opened.
            return Err(LogError::TopicNotFound {
                topic: topic.to_owned(),
                dir: dir
                    .parent()
                    .and_then(Path::parent)
                    .and_then(Path::parent)
                    .unwrap_or(dir)
                    .to_owned(),
            });
        }
        let tail = TailFile::open_read_only(&tail_path)?;
        let tail_inode = std::fs::metadata(&tail_path)
            .ctx("stat tail", &tail_path)?
            .ino();
        let lock_path = dir.join("lock");
        let lock = match File::open(&lock_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).ctx("open lock", &lock_path),
        };
        Ok(PartitionReader {
            topic: topic.to_owned(),
            partition,
            dir: dir.to_owned(),
            tail,
            lock,
            tail_inode,
            contiguous,
            found_tail: std::cell::Cell::new(None),
            found_stable: std::cell::Cell::new(None),
            sealed_aborted: (0, std::collections::BTreeMap::new()),
            segments: list_segments(dir)?,
            open: None,
            cursor: None,
            active_index: ActiveIndexCopy::default(),
            bytes_per_record: 512,
            isolation: Isolation::default(),
            aborted: Vec::new(),
            stable_limit: u64::MAX,
        })
    }

    /// Topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Partition number.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The next offset to be written (log-end offset), as last published by the appender (or,
    /// with none open after a crash, as found in the log; if that fails, the published one).
    pub fn end_offset(&self) -> u64 {
        self.current_tail()
            .map(|t| t.next_offset)
            .unwrap_or_else(|_| self.tail.read(STUCK_PUBLISH).map_or(0, |t| t.next_offset))
    }

    /// Whether an appender holds the partition now.
    fn appender_open(&self) -> LogResult<bool> {
        let Some(lock) = &self.lock else {
            // No appender ever opened the partition: the creator's tail is exact.
            return Ok(false);
        };
        match lock.try_lock_shared() {
            Ok(()) => {
                lock.unlock().ctx("unlock", self.dir.join("lock"))?;
                Ok(false)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(true),
            Err(std::fs::TryLockError::Error(e)) => Err(e).ctx("lock", self.dir.join("lock")),
        }
    }

    /// The tail to read up to: the published one when it is exact, else the end of the intact
    /// batches, found once and kept while no appender opens.
    fn current_tail(&self) -> LogResult<Tail> {
        // The lock is probed only when the tail alone does not say it is exact. A tail lent
        // during this boot is exact, and its appenders may publish at any moment.
        let exact_alone = self.tail.closed_cleanly() || self.lock.is_none();
        let appender_open = self.tail.lent_this_boot() || (!exact_alone && self.appender_open()?);
        let published = self.tail.read(if appender_open {
            STUCK_PUBLISH
        } else {
            Duration::ZERO
        });
        if let (true, Some(published)) = (exact_alone || appender_open, published) {
            self.found_tail.set(None);
            return Ok(published);
        }
        // Not exact, or left mid-publish (by a crash; or by a live appender preempted there for
        // longer than a reader waits, whose tail is then not kept).
        if let (false, Some(found)) = (appender_open, self.found_tail.get()) {
            return Ok(found);
        }
        let active_base = list_segments(&self.dir)?.last().copied().unwrap_or(0);
        let (position, next_offset) = intact_end(&self.dir, active_base)?;
        let found = Tail {
            active_base,
            position,
            next_offset,
            last_stable: None,
        };
        if !appender_open {
            self.found_tail.set(Some(found));
        }
        Ok(found)
    }

    /// The first offset still stored (log-start offset).
    pub fn log_start_offset(&mut self) -> LogResult<u64> {
        let tail = self.current_tail()?;
        self.segments = list_segments(&self.dir)?;
        Ok(self
            .segments
            .first()
            .copied()
            .unwrap_or(tail.next_offset)
            .min(tail.next_offset))
    }

    /// At the end of the log, whether the topic is still the one this reader opened.
    fn check_not_deleted(&self) -> LogResult<()> {
        let tail_path = self.dir.join("tail");
        let same = match std::fs::metadata(&tail_path) {
            Ok(m) => m.ino() == self.tail_inode,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e).ctx("stat tail", &tail_path),
        };
        if same {
            return Ok(());
        }
        let data_dir = self
            .dir
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .unwrap_or(&self.dir);
        Err(LogError::TopicNotFound {
            topic: self.topic.clone(),
            dir: data_dir.to_owned(),
        })
    }

    fn missing_range(&self, base: u64, from: u64, to: u64) -> LogError {
        LogError::Corrupt {
            path: segment_path(&self.dir, base, "log"),
            position: 0,
            reason: format!(
                "offsets {from}..{to} of topic {:?} partition {} are missing: the segment \
                 holding them was deleted or cut short (the next segment starts at {to})",
                self.topic, self.partition
            ),
        }
    }

    fn out_of_range(&mut self, offset: u64, tail: Tail) -> LogError {
        LogError::OffsetOutOfRange {
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
            log_start: self.segments.first().copied().unwrap_or(tail.next_offset),
            end: tail.next_offset,
        }
    }

    /// Reads records with offsets `>= from`: up to `max_records`, and up to about `max_bytes` of
    /// batches (at least one batch, whatever its size). An empty fetch means `from` is the end of
    /// the log. Offsets below the log start or past the end are an `OffsetOutOfRange` error.
    pub fn read(&mut self, from: u64, max_records: usize, max_bytes: usize) -> LogResult<Fetch> {
        let mut tail = self.current_tail()?;
        if self.isolation == Isolation::ReadCommitted {
            let stable = self.stable_end(tail)?;
            if from >= stable && from <= tail.next_offset {
                self.check_not_deleted()?;
                return Ok(Fetch {
                    next_offset: from,
                    ..Fetch::default()
                });
            }
            self.stable_limit = stable;
            self.aborted = self.aborted_after(from, tail)?;
        }
        let fetch = self.read_up_to(from, max_records, max_bytes, &mut tail);
        self.stable_limit = u64::MAX;
        self.aborted.clear();
        fetch
    }

    /// Sets which records reads return.
    pub fn set_isolation(&mut self, isolation: Isolation) {
        self.isolation = isolation;
    }

    /// Where reads with the reader's isolation end for now: the end offset, or reading
    /// committed records the last stable offset.
    pub fn readable_end(&mut self) -> LogResult<u64> {
        let tail = self.current_tail()?;
        match self.isolation {
            Isolation::ReadUncommitted => Ok(tail.next_offset),
            Isolation::ReadCommitted => self.stable_end(tail),
        }
    }

    /// The last stable offset: published by the appender, else worked out from the log.
    fn stable_end(&self, tail: Tail) -> LogResult<u64> {
        match tail.last_stable {
            Some(o) => Ok(o.min(tail.next_offset)),
            None => {
                if let Some((seen, stable)) = self.found_stable.get() {
                    if seen == tail {
                        return Ok(stable);
                    }
                }
                let bases = list_segments(&self.dir)?;
                let stable =
                    txn::last_stable_of(&self.dir, &bases, tail.position, tail.next_offset)?;
                self.found_stable.set(Some((tail, stable)));
                Ok(stable)
            }
        }
    }

    /// The aborted transactions that end at or after `from`, from the `.txnindex` of every
    /// segment that may list them (an abort is listed with its marker, at or after its data).
    fn aborted_after(&mut self, from: u64, tail: Tail) -> LogResult<Vec<AbortedTxn>> {
        let bases = list_segments(&self.dir)?;
        let generation = self.tail.generation();
        let (seen, cache) = &mut self.sealed_aborted;
        if *seen != generation {
            cache.clear();
            *seen = generation;
        }
        cache.retain(|base, _| bases.binary_search(base).is_ok());
        let first = bases.partition_point(|b| *b <= from).saturating_sub(1);
        let mut out = Vec::new();
        for &base in bases.get(first..).unwrap_or_default() {
            if base > tail.active_base {
                break;
            }
            let fresh;
            let listed = match cache.get(&base) {
                Some(listed) => listed,
                None if base < tail.active_base => cache
                    .entry(base)
                    .or_insert(txn::read_aborted(&self.dir, base)?),
                None => {
                    fresh = txn::read_aborted(&self.dir, base)?;
                    &fresh
                }
            };
            out.extend(listed.iter().filter(|a| a.last_offset >= from).copied());
        }
        Ok(out)
    }

    fn read_up_to(
        &mut self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        tail: &mut Tail,
    ) -> LogResult<Fetch> {
        let tail = *tail;
        if from >= tail.next_offset {
            self.check_not_deleted()?;
            if from > tail.next_offset {
                return Err(self.out_of_range(from, tail));
            }
            return Ok(Fetch {
                next_offset: from,
                ..Fetch::default()
            });
        }
        let needs_listing = self.segments.first().is_none_or(|first| from < *first)
            || self
                .segments
                .last()
                .is_none_or(|last| *last < tail.active_base);
        if needs_listing {
            self.segments = list_segments(&self.dir)?;
        }
        for attempt in 0..2 {
            match self.read_segments(from, max_records.max(1), max_bytes, tail) {
                Err(LogError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound && attempt == 0 =>
                {
                    // A segment went away under us (retention or compaction): list again.
                    self.open = None;
                    self.cursor = None;
                    self.segments = list_segments(&self.dir)?;
                }
                other => return other,
            }
        }
        Err(self.out_of_range(from, tail))
    }

    fn read_segments(
        &mut self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        tail: Tail,
    ) -> LogResult<Fetch> {
        let first = self.segments.partition_point(|b| *b <= from);
        let Some(start_idx) = first.checked_sub(1) else {
            return Err(self.out_of_range(from, tail));
        };
        let mut fetch = Fetch {
            next_offset: from,
            ..Fetch::default()
        };
        for idx in start_idx..self.segments.len() {
            let Some(&base) = self.segments.get(idx) else {
                break;
            };
            if base > tail.active_base {
                break;
            }
            let file_len = self.open_segment(base)?;
            let limit = if base == tail.active_base {
                tail.position
            } else {
                file_len
            };
            let position = if idx == start_idx {
                self.start_position(base, from, limit, base < tail.active_base)?
            } else {
                0
            };
            let upper = match self.segments.get(idx + 1) {
                Some(next) if base < tail.active_base => *next,
                _ => tail.next_offset,
            };
            let span = SegmentSpan { base, limit, upper };
            let read = self.read_from(span, position, from, max_records, max_bytes, &mut fetch);
            match read {
                Ok(()) => {}
                // Deliver the records before the damage; the next read, which starts at the
                // damaged batch, reports it.
                Err(LogError::Corrupt { .. }) if !fetch.is_empty() => break,
                Err(e) => return Err(e),
            }
            let full = fetch.len() >= max_records || fetch.bytes() >= max_bytes;
            let stable = fetch.next_offset.max(from) >= self.stable_limit;
            if full || stable || base == tail.active_base {
                break;
            }
            // The whole segment was read: in a gap-free topic its records reach the next base.
            let reached = fetch.next_offset.max(from);
            if self.contiguous && reached < upper {
                if !fetch.is_empty() {
                    break; // delivered; the next read, from `reached`, reports the gap
                }
                return Err(self.missing_range(base, reached, upper));
            }
        }
        if fetch.is_empty() {
            fetch.next_offset = fetch.next_offset.max(from);
        } else {
            self.bytes_per_record = (fetch.bytes() / fetch.len()).max(16) as u64;
        }
        Ok(fetch)
    }

    fn open_segment(&mut self, base: u64) -> LogResult<u64> {
        if self.open.as_ref().is_none_or(|s| s.base != base) {
            let path = segment_path(&self.dir, base, "log");
            let file = File::open(&path).ctx("open segment", &path)?;
            self.open = Some(OpenSegment { base, file, path });
        }
        let Some(seg) = &self.open else { return Ok(0) };
        Ok(seg.file.metadata().ctx("stat segment", &seg.path)?.len())
    }

    /// Where to start reading for `from` in segment `base`: the cursor if it is there, else the
    /// offset index entry at or before it, checked against the batch header it points at.
    fn start_position(&mut self, base: u64, from: u64, limit: u64, sealed: bool) -> LogResult<u64> {
        if let Some((b, pos, next)) = self.cursor {
            if b == base && next == from && pos <= limit {
                return Ok(pos);
            }
        }
        let Some(rel) = u32::try_from(from - base).ok() else {
            return Ok(0);
        };
        let found = if sealed {
            let index = IndexBytes::load(&segment_path(&self.dir, base, "index"), true)?;
            index.and_then(|i| {
                let valid = OffsetEntries(i.bytes()).valid_prefix(limit) * OFFSET_ENTRY;
                OffsetEntries(i.bytes().get(..valid).unwrap_or_default()).floor(rel)
            })
        } else {
            self.active_index.refresh(&self.dir, base, limit)?;
            self.active_index.entries().floor(rel)
        };
        let Some((entry_rel, pos)) = found else {
            return Ok(0);
        };
        let Some(seg) = &self.open else { return Ok(0) };
        let mut head = [0u8; HEADER_LEN];
        if u64::from(pos) + HEADER_LEN as u64 > limit
            || seg.file.read_exact_at(&mut head, u64::from(pos)).is_err()
        {
            return Ok(0);
        }
        match parse_header(&head) {
            Ok(h) if h.base_offset == base + u64::from(entry_rel) => Ok(u64::from(pos)),
            _ => Ok(0),
        }
    }

    fn read_from(
        &mut self,
        span: SegmentSpan,
        mut position: u64,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        fetch: &mut Fetch,
    ) -> LogResult<()> {
        let SegmentSpan { base, limit, upper } = span;
        let Some(seg) = &self.open else { return Ok(()) };
        let mut expected = base;
        // One allocation for the whole fetch: growing the buffer chunk by chunk would copy it.
        let expect = (self
            .bytes_per_record
            .saturating_mul((max_records - fetch.slots.len()) as u64)
            * 9
            / 8)
        .min(max_bytes.saturating_sub(fetch.buf.len()) as u64)
        .min(limit.saturating_sub(position));
        fetch.buf.reserve(expect as usize);
        let mut stable_reached = false;
        while position < limit && fetch.slots.len() < max_records {
            let room = max_bytes.saturating_sub(fetch.buf.len());
            if room == 0 && !fetch.slots.is_empty() {
                break;
            }
            // Size the first read from the record sizes seen so far (a seek for a few records
            // should not read a megabyte), then read in 2 MiB chunks while more are wanted.
            let step = if fetch.slots.is_empty() {
                let left = (max_records - fetch.slots.len()) as u64;
                (self.bytes_per_record.saturating_mul(left) * 9 / 8).clamp(4096, READ_CHUNK)
                    as usize
            } else {
                room.min(READ_CHUNK as usize)
            };
            let mut want = (room.min(step).max(HEADER_LEN) as u64).min(limit - position) as usize;
            let start = fetch.buf.len();
            append_from(&seg.file, &seg.path, position, want, &mut fetch.buf)?;
            // Make sure the first batch is complete, however large.
            let head = parse_header(fetch.buf.get(start..).unwrap_or_default())
                .map_err(|reason| corrupt(&seg.path, position, reason))?;
            if head.total_len > want {
                if head.total_len as u64 > limit - position || head.total_len > MAX_BATCH_BYTES {
                    return Err(corrupt(
                        &seg.path,
                        position,
                        format!(
                            "batch of {} bytes runs past the end of the segment",
                            head.total_len
                        ),
                    ));
                }
                append_from(
                    &seg.file,
                    &seg.path,
                    position + want as u64,
                    head.total_len - want,
                    &mut fetch.buf,
                )?;
                want = head.total_len;
            }
            let mut at = start;
            let end = start + want;
            while at < end && fetch.slots.len() < max_records {
                if end - at < HEADER_LEN {
                    break; // a partial header at the end of this chunk: read it next time
                }
                let h = parse_header(fetch.buf.get(at..end).unwrap_or_default())
                    .map_err(|reason| corrupt(&seg.path, position + (at - start) as u64, reason))?;
                if at + h.total_len > end {
                    break; // partial batch at the end of the chunk
                }
                let file_pos = position + (at - start) as u64;
                if h.base_offset >= self.stable_limit {
                    stable_reached = true; // reading committed records: none at or past it
                    break;
                }
                if h.base_offset < expected || h.last_offset() >= upper {
                    return Err(corrupt(&seg.path, file_pos, format!(
                        "batch offsets {}..={} outside {expected}..{upper} (topic {:?} partition {})",
                        h.base_offset, h.last_offset(), self.topic, self.partition
                    )));
                }
                expected = h.last_offset() + 1;
                let batch = fetch.buf.get(at..at + h.total_len).unwrap_or_default();
                if !crc_ok(batch, &h) {
                    return Err(corrupt(
                        &seg.path,
                        file_pos,
                        format!(
                            "CRC mismatch in batch at offset {} (topic {:?} partition {})",
                            h.base_offset, self.topic, self.partition
                        ),
                    ));
                }
                let skipped = h.is_control()
                    || h.producer().is_some_and(|p| {
                        self.aborted.iter().any(|a| a.covers(p.id, h.base_offset))
                    });
                if h.last_offset() >= from && !skipped {
                    let before = fetch.slots.len();
                    let decoded =
                        decode_records(&fetch.buf, at, &h, from, max_records, &mut fetch.slots);
                    if let Err(reason) = decoded {
                        // None of a batch that does not decode is delivered.
                        fetch.slots.truncate(before);
                        fetch.buf.truncate(at);
                        return Err(corrupt(&seg.path, file_pos, reason));
                    }
                }
                let done = fetch.slots.len() >= max_records;
                let next = if done {
                    fetch.slots.last().map_or(from, |s| s.offset + 1)
                } else {
                    h.last_offset() + 1
                };
                fetch.next_offset = fetch.next_offset.max(next);
                at += h.total_len;
                if !done || next > h.last_offset() {
                    self.cursor = Some((base, file_pos + h.total_len as u64, h.last_offset() + 1));
                } else {
                    self.cursor = Some((base, file_pos, next));
                }
            }
            fetch.buf.truncate(at);
            position += (at - start) as u64;
            if at == start || stable_reached {
                break;
            }
        }
        Ok(())
    }

    /// Whether a segment's time index agrees with its log where that is cheap to check: a sealed
    /// index is whole, every entry lies inside the segment, the first batch is no newer than the
    /// first entry and the last batch no newer than the last entry.
    fn time_index_checks_out(
        &self,
        base: u64,
        upper: u64,
        sealed: bool,
        file_len: usize,
        entries: TimeEntries<'_>,
    ) -> LogResult<bool> {
        if sealed && entries.len() * TIME_ENTRY != file_len {
            return Ok(false);
        }
        let (Some((first_ts, _)), Some((last_ts, last_rel))) = (entries.first(), entries.last())
        else {
            return Ok(true);
        };
        if base + u64::from(last_rel) >= upper {
            return Ok(false);
        }
        let path = segment_path(&self.dir, base, "log");
        let file = File::open(&path).ctx("open segment", &path)?;
        let len = file.metadata().ctx("stat segment", &path)?.len();
        let first_batch = batch_at(&file, &path, 0, len)?;
        if first_batch.is_some_and(|h| h.max_timestamp > first_ts) {
            return Ok(false);
        }
        if sealed {
            let index = IndexBytes::load(&segment_path(&self.dir, base, "index"), true)?;
            let offsets = OffsetEntries(index.as_ref().map(IndexBytes::bytes).unwrap_or_default());
            let from = offsets
                .len()
                .checked_sub(1)
                .map_or(0, |i| u64::from(offsets.get(i).1));
            if last_batch_max_timestamp(&file, &path, from, len)?.is_some_and(|ts| ts > last_ts) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The first offset whose record has a timestamp `>= timestamp_ms`, in offset order; `None`
    /// if every stored record is older.
    pub fn offset_for_timestamp(&mut self, timestamp_ms: i64) -> LogResult<Option<u64>> {
        let tail = self.current_tail()?;
        self.segments = list_segments(&self.dir)?;
        let mut start = None;
        for (i, &base) in self.segments.iter().enumerate() {
            let sealed = base < tail.active_base;
            let upper = match self.segments.get(i + 1) {
                Some(next) if sealed => *next,
                _ => tail.next_offset,
            };
            let times = IndexBytes::load(&segment_path(&self.dir, base, "timeindex"), sealed)?;
            let bytes = times.as_ref().map(IndexBytes::bytes).unwrap_or_default();
            let mut entries = TimeEntries(
                bytes
                    .get(..TimeEntries(bytes).valid_prefix(u32::MAX, sealed) * 12)
                    .unwrap_or_default(),
            );
            if !self.time_index_checks_out(base, upper, sealed, bytes.len(), entries)? {
                // A damaged time index is not trusted: the segment is scanned from its start.
                tracing::warn!(topic = %self.topic, partition = self.partition, segment = base,
                    "time index does not match the log; scanning the segment instead");
                entries = TimeEntries(&[]);
            }
            if sealed && entries.last().is_some_and(|(ts, _)| ts < timestamp_ms) {
                continue; // every record of this segment is older
            }
            start = Some(
                entries
                    .last_before(timestamp_ms)
                    .map_or(base, |(_, rel)| base + u64::from(rel) + 1),
            );
            break;
        }
        let Some(mut offset) = start else {
            return Ok(None);
        };
        let log_start = self.segments.first().copied().unwrap_or(0);
        offset = offset.max(log_start);
        loop {
            if offset >= tail.next_offset {
                return Ok(None);
            }
            let fetch = self.read(offset, 10_000, 4 << 20)?;
            if let Some(r) = fetch.iter().find(|r| r.timestamp >= timestamp_ms) {
                return Ok(Some(r.offset));
            }
            if fetch.is_empty() {
                return Ok(None);
            }
            offset = fetch.next_offset();
        }
    }
}
