//! Segments: a `.log` file of record batches plus its `.index` and `.timeindex`, named by the
//! 20-digit base offset. This module owns scanning a log file batch by batch, recovering the active
//! segment after a crash, checking and rebuilding indexes, and appending to the active segment.
//!
//! Invariants: batches in a segment have increasing offsets, all `>= base` and below the next
//! segment's base; only the last segment of a partition is ever written; a sealed segment ends on a
//! batch boundary.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::{crc_ok, parse_header, BatchHeader, HEADER_LEN, MAX_BATCH_BYTES};
use super::error::{IoContext, LogError, LogResult};
use super::index::{
    offset_entry, time_entry, IndexBytes, IndexWriter, OffsetEntries, TimeEntries, OFFSET_ENTRY,
    TIME_ENTRY,
};

/// `DIR/{base:020}.{ext}`.
pub(crate) fn segment_path(dir: &Path, base: u64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

/// Base offsets of the segments in `dir` (those with a `.log` file), ascending.
pub(crate) fn list_segments(dir: &Path) -> LogResult<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).ctx("list", dir)? {
        let entry = entry.ctx("list", dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".log") {
            if stem.len() == 20 {
                if let Ok(base) = stem.parse::<u64>() {
                    bases.push(base);
                }
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Fsyncs a directory so that file creations, renames and deletions in it survive power loss.
pub(crate) fn sync_dir(dir: &Path) -> LogResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("fsync directory", dir)
}

/// Creates `dir` and any missing parents, and fsyncs the parent of each one created, so that the
/// new directories survive a power loss.
pub(crate) fn create_dirs_durably(dir: &Path) -> LogResult<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    std::fs::create_dir_all(dir).ctx("create directory", dir)?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Why a scan stopped before the end of its range.
pub(crate) struct ScanStop {
    pub position: u64,
    pub reason: String,
    /// The bytes there form a whole batch whose CRC fails: damage after the write, not a write
    /// cut short.
    pub whole_batch: bool,
}

/// Reads the batches of a log file in order, in large chunks, checking each CRC.
pub(crate) struct BatchCursor<'a> {
    file: &'a File,
    pub path: &'a Path,
    /// File position of the next batch.
    pub position: u64,
    end: u64,
    buf: Vec<u8>,
    buf_at: u64,
}

const CHUNK: usize = 1 << 20;

impl<'a> BatchCursor<'a> {
    /// A cursor over `file[position..end]`.
    pub fn new(file: &'a File, path: &'a Path, position: u64, end: u64) -> Self {
        BatchCursor {
            file,
            path,
            position,
            end,
            buf: Vec::new(),
            buf_at: position,
        }
    }

    fn io(&self, e: std::io::Error) -> LogError {
        LogError::Io {
            op: "read",
            path: self.path.to_owned(),
            source: e,
        }
    }

    /// Makes `buf` hold `file[position..position + want]`; false if the file range is shorter.
    fn fill(&mut self, want: usize) -> LogResult<bool> {
        let have_from = self.position - self.buf_at;
        if self.position >= self.buf_at && (have_from as usize) + want <= self.buf.len() {
            return Ok(true);
        }
        let avail = self.end.saturating_sub(self.position);
        if (want as u64) > avail {
            return Ok(false);
        }
        let len = (want.max(CHUNK) as u64).min(avail) as usize;
        self.buf.resize(len, 0);
        self.buf_at = self.position;
        self.file
            .read_exact_at(&mut self.buf, self.position)
            .map_err(|e| self.io(e))?;
        Ok(true)
    }

    /// The next batch: `Ok(Some)` with its header and bytes, `Ok(None)` at a clean end of range,
    /// `Err(Ok(stop))` where the bytes stop forming valid batches, `Err(Err(io))` on I/O failure.
    #[allow(clippy::type_complexity)]
    pub fn next_batch(
        &mut self,
    ) -> Result<Option<(BatchHeader, &[u8])>, Result<ScanStop, LogError>> {
        if self.position >= self.end {
            return Ok(None);
        }
        let stop = |position, reason: String| {
            Err(Ok(ScanStop {
                position,
                reason,
                whole_batch: false,
            }))
        };
        if !self.fill(HEADER_LEN).map_err(Err)? {
            return stop(
                self.position,
                "incomplete batch header at end of file".into(),
            );
        }
        let at = (self.position - self.buf_at) as usize;
        let header = match parse_header(self.buf.get(at..).unwrap_or_default()) {
            Ok(h) => h,
            Err(reason) => return stop(self.position, reason),
        };
        if !self.fill(header.total_len).map_err(Err)? {
            return stop(
                self.position,
                format!(
                    "batch of {} bytes runs past the end of the file",
                    header.total_len
                ),
            );
        }
        let at = (self.position - self.buf_at) as usize;
        let Some(bytes) = self.buf.get(at..at + header.total_len) else {
            return stop(self.position, "batch outside buffer".into());
        };
        if !crc_ok(bytes, &header) {
            return Err(Ok(ScanStop {
                position: self.position,
                reason: format!("CRC mismatch in batch at offset {}", header.base_offset),
                whole_batch: true,
            }));
        }
        self.position += header.total_len as u64;
        Ok(Some((header, bytes)))
    }
}

/// What the appender knows of a sealed segment.
#[derive(Clone, Debug)]
pub(crate) struct SealedSegment {
    pub base: u64,
    pub size: u64,
    /// Largest record timestamp, `i64::MIN` if the segment holds no records.
    pub max_timestamp: i64,
}

/// Index-building state shared by appends, recovery and rebuilds.
pub(crate) struct IndexBuilder {
    interval: u64,
    bytes_since_entry: u64,
    pub max_timestamp: i64,
    last_time_entry: i64,
}

impl IndexBuilder {
    pub fn new(interval: u64, max_timestamp: i64) -> Self {
        IndexBuilder {
            interval,
            bytes_since_entry: 0,
            max_timestamp,
            last_time_entry: max_timestamp,
        }
    }

    /// Accounts for a batch written at `position`; returns the index entries due, if any.
    pub fn on_batch(
        &mut self,
        seg_base: u64,
        position: u64,
        h: &BatchHeader,
    ) -> (Option<[u8; OFFSET_ENTRY]>, Option<[u8; TIME_ENTRY]>) {
        let mut out = (None, None);
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        if position > 0 && self.bytes_since_entry >= self.interval {
            out.0 = Some(offset_entry(
                (h.base_offset - seg_base) as u32,
                position as u32,
            ));
            if self.max_timestamp > self.last_time_entry {
                out.1 = Some(time_entry(
                    self.max_timestamp,
                    (h.last_offset() - seg_base) as u32,
                ));
                self.last_time_entry = self.max_timestamp;
            }
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += h.total_len as u64;
        out
    }

    /// The closing time-index entry of a sealed segment, if the last one is out of date.
    pub fn final_time_entry(
        &mut self,
        seg_base: u64,
        last_offset: u64,
    ) -> Option<[u8; TIME_ENTRY]> {
        (self.max_timestamp > self.last_time_entry).then(|| {
            self.last_time_entry = self.max_timestamp;
            time_entry(self.max_timestamp, (last_offset - seg_base) as u32)
        })
    }
}

/// Sizes of the active segment's preallocated indexes, in entries.
pub(crate) fn index_capacity(segment_bytes: u64, interval: u64) -> usize {
    (segment_bytes / interval.max(1) + 16).min(1 << 20) as usize
}

/// The segment being appended to.
pub(crate) struct ActiveSegment {
    pub base: u64,
    pub log: Arc<File>,
    pub log_path: PathBuf,
    pub size: u64,
    pub next_offset: u64,
    /// Timestamp of the first batch, for rolling by age.
    pub first_timestamp: Option<i64>,
    index: IndexWriter,
    time_index: IndexWriter,
    builder: IndexBuilder,
}

/// What recovery found in the active segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes of torn tail removed.
    pub truncated_bytes: u64,
    /// Sealed segments whose indexes were rebuilt.
    pub rebuilt_indexes: Vec<u64>,
}

fn open_log(path: &Path, create: bool) -> LogResult<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .ctx("open segment", path)
}

impl ActiveSegment {
    /// Creates an empty segment at `base` and syncs the directory.
    pub fn create(dir: &Path, base: u64, capacity: usize, interval: u64) -> LogResult<Self> {
        let log_path = segment_path(dir, base, "log");
        let log = open_log(&log_path, true)?;
        let index =
            IndexWriter::open(&segment_path(dir, base, "index"), OFFSET_ENTRY, capacity, 0)?;
        let time_index = IndexWriter::open(
            &segment_path(dir, base, "timeindex"),
            TIME_ENTRY,
            capacity,
            0,
        )?;
        sync_dir(dir)?;
        Ok(ActiveSegment {
            base,
            log: Arc::new(log),
            log_path,
            size: 0,
            next_offset: base,
            first_timestamp: None,
            index,
            time_index,
            builder: IndexBuilder::new(interval, i64::MIN),
        })
    }

    /// Opens the last segment after a restart or crash: keeps the index entries that check out,
    /// scans the log past the last one and refuses to drop valid data that follows a damaged
    /// batch. A torn tail is left in the file, past `size`, until [`Self::cut_torn_tail`]: the
    /// caller cuts it only once every other check of the partition has passed, so that a refused
    /// recovery leaves the segment's bytes as they were.
    pub fn recover(dir: &Path, base: u64, capacity: usize, interval: u64) -> LogResult<Self> {
        let log_path = segment_path(dir, base, "log");
        let log = open_log(&log_path, false)?;
        let len = log.metadata().ctx("stat segment", &log_path)?.len();
        let index_path = segment_path(dir, base, "index");
        let time_path = segment_path(dir, base, "timeindex");
        let old_index = IndexBytes::load(&index_path, false)?;
        let old_time = IndexBytes::load(&time_path, false)?;
        let entries = OffsetEntries(
            old_index
                .as_ref()
                .map(IndexBytes::bytes)
                .unwrap_or_default(),
        );
        let (keep, start_pos, start_rel) = last_trusted_entry(&log, &log_path, base, len, entries)?;
        let times = TimeEntries(old_time.as_ref().map(IndexBytes::bytes).unwrap_or_default());
        let mut keep_time = times.valid_prefix(u32::MAX, false);
        if start_pos == 0 {
            keep_time = 0;
        }
        while keep_time > 0 && times.get(keep_time - 1).1 >= start_rel {
            keep_time -= 1;
        }
        let kept_max = keep_time
            .checked_sub(1)
            .map_or(i64::MIN, |i| times.get(i).0);
        drop(old_index);
        drop(old_time);
        let mut index = IndexWriter::open(&index_path, OFFSET_ENTRY, capacity, keep)?;
        let mut time_index = IndexWriter::open(&time_path, TIME_ENTRY, capacity, keep_time)?;
        let mut builder = IndexBuilder::new(interval, kept_max);
        let mut next_offset = base + u64::from(start_rel);
        let mut first_timestamp = None;
        let mut cursor = BatchCursor::new(&log, &log_path, start_pos, len);
        let end = loop {
            let position = cursor.position;
            match cursor.next_batch() {
                Ok(Some((h, _))) if h.base_offset != next_offset => {
                    return Err(out_of_sequence(&log_path, position, &h, next_offset));
                }
                Ok(Some((h, _))) => {
                    next_offset = h.last_offset() + 1;
                    if position == 0 {
                        first_timestamp = Some(h.base_timestamp);
                    }
                    let (o, t) = builder.on_batch(base, position, &h);
                    if let Some(e) = o {
                        index.push(&e);
                    }
                    if let Some(e) = t {
                        time_index.push(&e);
                    }
                }
                Ok(None) => break len,
                Err(Err(io)) => return Err(io),
                Err(Ok(stop)) => {
                    refuse_unless_torn(&log, &log_path, &stop, len)?;
                    break stop.position;
                }
            }
        };
        if first_timestamp.is_none() && end > 0 {
            first_timestamp = batch_at(&log, &log_path, 0, end)?.map(|h| h.base_timestamp);
        }
        Ok(ActiveSegment {
            base,
            log: Arc::new(log),
            log_path,
            size: end,
            next_offset,
            first_timestamp,
            index,
            time_index,
            builder,
        })
    }

    /// Cuts the file back to `size` (the torn tail [`Self::recover`] left) and makes the cut
    /// durable; reports the bytes removed.
    pub fn cut_torn_tail(&self, report: &mut RecoveryReport) -> LogResult<()> {
        let len = (self.log.metadata())
            .ctx("stat segment", &self.log_path)?
            .len();
        if len > self.size {
            (self.log.set_len(self.size)).ctx("truncate torn tail", &self.log_path)?;
            (self.log.sync_all()).ctx("fsync segment", &self.log_path)?;
            report.truncated_bytes += len - self.size;
        }
        Ok(())
    }

    /// Whether appending `bytes` more should first roll to a new segment.
    pub fn is_full(&self, bytes: u64, max_bytes: u64) -> bool {
        self.size > 0
            && (self.size + bytes > max_bytes
                || self.index.is_full()
                || self.time_index.is_full()
                || self.size + bytes > u64::from(u32::MAX))
    }

    /// Writes one encoded batch (offsets already assigned) at the end of the segment.
    pub fn append(&mut self, bytes: &[u8], h: &BatchHeader) -> LogResult<()> {
        self.log
            .write_all_at(bytes, self.size)
            .ctx("write segment", &self.log_path)?;
        let (o, t) = self.builder.on_batch(self.base, self.size, h);
        if let Some(e) = o {
            self.index.push(&e);
        }
        if let Some(e) = t {
            self.time_index.push(&e);
        }
        if self.size == 0 {
            self.first_timestamp = Some(h.base_timestamp);
        }
        self.size += bytes.len() as u64;
        self.next_offset = h.last_offset() + 1;
        Ok(())
    }

    /// Cuts off what a failed write left past the last whole batch, so that the file ends where
    /// the log does and the space is free again.
    pub fn cut_partial_write(&mut self) -> LogResult<()> {
        self.log
            .set_len(self.size)
            .ctx("cut partial write", &self.log_path)
    }

    /// Closes the segment for writing: final time-index entry, indexes trimmed and synced, and the
    /// log synced when `sync_log`.
    pub fn seal(mut self, sync_log: bool) -> LogResult<SealedSegment> {
        if self.next_offset > self.base {
            if let Some(e) = self
                .builder
                .final_time_entry(self.base, self.next_offset - 1)
            {
                self.time_index.push(&e);
            }
        }
        if sync_log {
            self.log.sync_data().ctx("fsync segment", &self.log_path)?;
        }
        self.index.seal()?;
        self.time_index.seal()?;
        Ok(SealedSegment {
            base: self.base,
            size: self.size,
            max_timestamp: self.builder.max_timestamp,
        })
    }
}

/// Walks back from the last well-formed index entry to one that points at an intact batch with
/// the offset it claims: `(entries kept, position, relative offset)`, `(0, 0, 0)` if none does.
fn last_trusted_entry(
    log: &File,
    log_path: &Path,
    base: u64,
    len: u64,
    entries: OffsetEntries<'_>,
) -> LogResult<(usize, u64, u32)> {
    let mut keep = entries.valid_prefix(len);
    loop {
        let Some(i) = keep.checked_sub(1) else {
            return Ok((0, 0, 0));
        };
        let (rel, pos) = entries.get(i);
        if batch_at(log, log_path, u64::from(pos), len)?
            .is_some_and(|h| h.base_offset == base + u64::from(rel))
        {
            return Ok((keep, u64::from(pos), rel));
        }
        keep = i;
    }
}

/// Where the intact batches of the active segment at `base` end, found without changing anything:
/// `(position, next_offset)`. What a reader uses when no appender is open to publish the tail and
/// the last one did not close cleanly. A torn tail is left out; damage followed by intact batches
/// is an error, as in recovery.
pub(crate) fn intact_end(dir: &Path, base: u64) -> LogResult<(u64, u64)> {
    let log_path = segment_path(dir, base, "log");
    let log = match File::open(&log_path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, base)),
        Err(e) => return Err(e).ctx("open segment", &log_path),
    };
    let len = log.metadata().ctx("stat segment", &log_path)?.len();
    let index = IndexBytes::load(&segment_path(dir, base, "index"), false)?;
    let entries = OffsetEntries(index.as_ref().map(IndexBytes::bytes).unwrap_or_default());
    let (_, start_pos, start_rel) = last_trusted_entry(&log, &log_path, base, len, entries)?;
    let mut next_offset = base + u64::from(start_rel);
    let mut cursor = BatchCursor::new(&log, &log_path, start_pos, len);
    loop {
        let position = cursor.position;
        match cursor.next_batch() {
            Ok(Some((h, _))) if h.base_offset == next_offset => {
                next_offset = h.last_offset() + 1;
            }
            Ok(Some((h, _))) => return Err(out_of_sequence(&log_path, position, &h, next_offset)),
            Ok(None) => return Ok((len, next_offset)),
            Err(Err(io)) => return Err(io),
            Err(Ok(stop)) => {
                refuse_unless_torn(&log, &log_path, &stop, len)?;
                return Ok((position, next_offset));
            }
        }
    }
}

/// The largest timestamp of the last intact batch at or after `position` (a batch boundary),
/// `None` if there is none.
pub(crate) fn last_batch_max_timestamp(
    file: &File,
    path: &Path,
    position: u64,
    len: u64,
) -> LogResult<Option<i64>> {
    let mut cursor = BatchCursor::new(file, path, position, len);
    let mut last = None;
    loop {
        match cursor.next_batch() {
            Ok(Some((h, _))) => last = Some(h.max_timestamp),
            Ok(None) | Err(Ok(_)) => return Ok(last),
            Err(Err(e)) => return Err(e),
        }
    }
}

/// The header of the intact batch at `position`, or `None` if there is none.
pub(crate) fn batch_at(
    file: &File,
    path: &Path,
    position: u64,
    len: u64,
) -> LogResult<Option<BatchHeader>> {
    let mut cursor = BatchCursor::new(file, path, position, len);
    match cursor.next_batch() {
        Ok(Some((h, _))) => Ok(Some(h)),
        Ok(None) | Err(Ok(_)) => Ok(None),
        Err(Err(e)) => Err(e),
    }
}

const NOT_TORN: &str = "a whole batch is damaged, so this is not a torn write; nothing was cut";

/// A whole batch with a good CRC where another offset was due. The active segment is never
/// compacted, so its batches are contiguous: this is damage, never a torn write.
fn out_of_sequence(path: &Path, position: u64, h: &BatchHeader, expected: u64) -> LogError {
    corrupt(
        path,
        position,
        format!(
            "batch offset {} where {expected} was expected; {NOT_TORN}",
            h.base_offset
        ),
    )
}

/// Accepts the end of the intact batches at `stop` as a torn tail (a write cut short, which
/// recovery may drop) or returns the corruption it is: a whole batch whose CRC fails, or a bad
/// batch with an intact one after it.
fn refuse_unless_torn(log: &File, log_path: &Path, stop: &ScanStop, len: u64) -> LogResult<()> {
    if stop.whole_batch {
        return Err(corrupt(
            log_path,
            stop.position,
            format!("{}; {NOT_TORN}", stop.reason),
        ));
    }
    if let Some(next) = valid_batch_after(log, log_path, stop.position, len)? {
        return Err(corrupt(
            log_path,
            stop.position,
            format!(
                "{}; an intact batch follows at byte {next}, so this is not a torn tail; nothing was cut",
                stop.reason
            ),
        ));
    }
    Ok(())
}

/// After a bad batch at `bad`, the position of an intact batch right behind it (by its declared
/// length), which tells mid-file corruption from a torn tail.
fn valid_batch_after(file: &File, path: &Path, bad: u64, len: u64) -> LogResult<Option<u64>> {
    let mut head = [0u8; HEADER_LEN];
    if bad + HEADER_LEN as u64 > len {
        return Ok(None);
    }
    file.read_exact_at(&mut head, bad).ctx("read", path)?;
    let declared = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as u64 + 12;
    if declared < HEADER_LEN as u64 || declared > MAX_BATCH_BYTES as u64 {
        return Ok(None);
    }
    let next = bad + declared;
    Ok(batch_at(file, path, next, len)?.map(|_| next))
}

pub(crate) fn corrupt(path: &Path, position: u64, reason: String) -> LogError {
    LogError::Corrupt {
        path: path.to_owned(),
        position,
        reason,
    }
}

/// Checks a sealed segment's indexes and rebuilds them when missing or damaged. Returns the
/// segment's metadata and whether it rebuilt. A damaged batch found while rebuilding is an error
/// naming file and position.
pub(crate) fn open_sealed(
    dir: &Path,
    base: u64,
    next_base: u64,
    interval: u64,
) -> LogResult<(SealedSegment, bool)> {
    let log_path = segment_path(dir, base, "log");
    let log = File::open(&log_path).ctx("open segment", &log_path)?;
    let size = log.metadata().ctx("stat segment", &log_path)?.len();
    let index = IndexBytes::load(&segment_path(dir, base, "index"), true)?;
    let time = IndexBytes::load(&segment_path(dir, base, "timeindex"), true)?;
    let index_ok = match &index {
        None => false,
        Some(b) => {
            let e = OffsetEntries(b.bytes());
            b.bytes().len() % OFFSET_ENTRY == 0
                && e.valid_prefix(size) == e.len()
                && match e.len().checked_sub(1).map(|i| e.get(i)) {
                    None => true,
                    Some((rel, pos)) => batch_at(&log, &log_path, u64::from(pos), size)?
                        .is_some_and(|h| h.base_offset == base + u64::from(rel)),
                }
        }
    };
    let max_rel = u32::try_from(next_base.saturating_sub(base + 1)).unwrap_or(u32::MAX);
    let time_ok = match &time {
        None => false,
        Some(b) => {
            let t = TimeEntries(b.bytes());
            b.bytes().len() % TIME_ENTRY == 0
                && (t.len() > 0 || size == 0)
                && t.valid_prefix(max_rel, true) == t.len()
        }
    };
    if index_ok && time_ok {
        let max_timestamp = time
            .as_ref()
            .and_then(|b| TimeEntries(b.bytes()).last())
            .map_or(i64::MIN, |e| e.0);
        return Ok((
            SealedSegment {
                base,
                size,
                max_timestamp,
            },
            false,
        ));
    }
    drop((index, time));
    let max_timestamp = rebuild_indexes(dir, base, next_base, &log, &log_path, size, interval)?;
    Ok((
        SealedSegment {
            base,
            size,
            max_timestamp,
        },
        true,
    ))
}

/// Scans a sealed segment, writes fresh `.index` and `.timeindex` files and renames them into
/// place. Returns the largest timestamp.
pub(crate) fn rebuild_indexes(
    dir: &Path,
    base: u64,
    next_base: u64,
    log: &File,
    log_path: &Path,
    size: u64,
    interval: u64,
) -> LogResult<i64> {
    let mut builder = IndexBuilder::new(interval, i64::MIN);
    let mut offsets = Vec::new();
    let mut times = Vec::new();
    let mut cursor = BatchCursor::new(log, log_path, 0, size);
    let mut expected = base;
    let mut last = None;
    loop {
        let position = cursor.position;
        match cursor.next_batch() {
            Ok(Some((h, _))) => {
                if h.base_offset < expected || h.last_offset() >= next_base {
                    return Err(corrupt(
                        log_path,
                        position,
                        format!(
                        "batch offsets {}..={} outside the segment's range {expected}..{next_base}",
                        h.base_offset, h.last_offset()
                    ),
                    ));
                }
                expected = h.last_offset() + 1;
                last = Some(h.last_offset());
                let (o, t) = builder.on_batch(base, position, &h);
                offsets.extend(o.iter().flatten());
                times.extend(t.iter().flatten());
            }
            Ok(None) => break,
            Err(Ok(stop)) => return Err(corrupt(log_path, stop.position, stop.reason)),
            Err(Err(e)) => return Err(e),
        }
    }
    if let Some(last) = last {
        if let Some(e) = builder.final_time_entry(base, last) {
            times.extend_from_slice(&e);
        }
    }
    replace_file(dir, &segment_path(dir, base, "index"), &offsets)?;
    replace_file(dir, &segment_path(dir, base, "timeindex"), &times)?;
    Ok(builder.max_timestamp)
}

/// Writes `bytes` to `path` crash-atomically: temporary file, fsync, rename, fsync directory.
pub(crate) fn replace_file(dir: &Path, path: &Path, bytes: &[u8]) -> LogResult<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let f = File::create(&tmp).ctx("create", &tmp)?;
        f.write_all_at(bytes, 0).ctx("write", &tmp)?;
        f.sync_all().ctx("fsync", &tmp)?;
    }
    std::fs::rename(&tmp, path).ctx("rename", path)?;
    sync_dir(dir)
}

/// Removes leftovers of interrupted index rebuilds and compactions.
pub(crate) fn remove_temporaries(dir: &Path) -> LogResult<()> {
    for entry in std::fs::read_dir(dir).ctx("list", dir)? {
        let path = entry.ctx("list", dir)?.path();
        if path
            .extension()
            .is_some_and(|e| e == "tmp" || e == "cleaned")
        {
            std::fs::remove_file(&path).ctx("remove", &path)?;
        }
    }
    Ok(())
}
