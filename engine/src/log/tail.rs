//! The partition's published tail: which segment is active, how many of its bytes hold complete
//! batches, and the next offset. The appender publishes it after each write; readers in any process
//! read only up to it, so they never see a batch that is still being written.
//!
//! File `tail` (64 bytes, native-endian `u64` words, mapped shared by every process):
//! `magic, sequence, active_base, position, next_offset, closed, last_stable + 1, generation`.
//! It is a sequence lock: the appender makes `sequence` odd, writes the fields, then makes it
//! even; a reader retries until it reads the same even sequence before and after the fields.
//! Word 6 is 0 in a tail written before transactions existed: the last stable offset is then
//! unknown. Word 7 counts the appenders that took the partition (each open, and each time a lent
//! partition is taken again): an appender that lent the partition (see `PartitionWriter::share`)
//! and finds it changed reloads what it knows of the log.
//!
//! The file is shared memory, not a record of what is on disk: after a crash or a power loss it may
//! say less or more than the segments hold. It is exact while an appender holds the partition, and
//! after an appender closed cleanly: `closed` is then [`CLOSED`], written and fsynced only once
//! every byte the tail covers is fsynced, and durably cleared when the next appender opens. It is
//! exact too when `closed` holds the lent mark of the running boot (appenders that lend the
//! partition between appends publish every append after writing it, and only a power loss, which
//! changes the boot, loses page-cache bytes). In any other state a reader finds the end of the
//! log itself (see `PartitionReader`).

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memmap2::{Mmap, MmapMut};

use super::error::{IoContext, LogError, LogResult};

const MAGIC: u64 = u64::from_le_bytes(*b"EDDYTAIL");
const WORDS: usize = 8;
/// Word 5 after a clean close: the tail matches the fsynced segments exactly.
const CLOSED: u64 = u64::from_le_bytes(*b"CLOSED\0\0");
const FILE_LEN: u64 = (WORDS * 8) as u64;
/// How long a reader waits for an open appender's odd sequence to turn even before it takes the
/// publisher for stuck mid-publish.
pub(crate) const STUCK_PUBLISH: Duration = Duration::from_millis(20);

/// A consistent snapshot of the published tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tail {
    /// Base offset of the active segment.
    pub active_base: u64,
    /// Bytes of complete batches in the active segment.
    pub position: u64,
    /// The next offset to be assigned (the log-end offset).
    pub next_offset: u64,
    /// The last stable offset: below it every transaction is decided (`None`: not published).
    pub last_stable: Option<u64>,
}

/// A mapping of one partition's `tail` file: read-write for the appender, read-only for readers.
pub(crate) struct TailFile {
    map: Map,
}

enum Map {
    ReadWrite(MmapMut),
    ReadOnly(Mmap),
}

impl TailFile {
    /// Maps `path` for writing; a missing file is created holding `initial`. Only the topic's
    /// creator and the partition's appender (both exclusive) call this.
    pub fn open(path: &Path, initial: Tail) -> LogResult<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .ctx("open tail", path)?;
        let len = file.metadata().ctx("stat tail", path)?.len();
        let fresh = len == 0;
        if fresh {
            file.set_len(FILE_LEN).ctx("size tail", path)?;
        } else if len != FILE_LEN {
            return Err(corrupt(
                path,
                format!("tail file is {len} bytes, expected {FILE_LEN}"),
            ));
        }
        // SAFETY: the tail file has a fixed length that nothing ever changes after creation (it is
        // only unlinked with its topic), so the mapping never covers bytes past the end of file.
        #[allow(unsafe_code)]
        let map = unsafe { MmapMut::map_mut(&file) }.ctx("map tail", path)?;
        let tail = TailFile {
            map: Map::ReadWrite(map),
        };
        if fresh {
            tail.word(0).store(MAGIC, Ordering::Relaxed);
            tail.publish(initial);
            file.sync_all().ctx("fsync tail", path)?;
        } else if tail.word(0).load(Ordering::Relaxed) != MAGIC {
            return Err(corrupt(path, "tail file has a bad magic number".into()));
        }
        Ok(tail)
    }

    /// Maps `path` read-only, for a reader: works on a data directory the process cannot write.
    pub fn open_read_only(path: &Path) -> LogResult<Self> {
        let file = std::fs::File::open(path).ctx("open tail", path)?;
        let len = file.metadata().ctx("stat tail", path)?.len();
        if len != FILE_LEN {
            return Err(corrupt(
                path,
                format!("tail file is {len} bytes, expected {FILE_LEN}"),
            ));
        }
        // SAFETY: as in `open`: the file's length never changes after creation.
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.ctx("map tail", path)?;
        let tail = TailFile {
            map: Map::ReadOnly(map),
        };
        if tail.word(0).load(Ordering::Relaxed) != MAGIC {
            return Err(corrupt(path, "tail file has a bad magic number".into()));
        }
        Ok(tail)
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < WORDS);
        let base = match &self.map {
            Map::ReadWrite(m) => m.as_ptr(),
            Map::ReadOnly(m) => m.as_ptr(),
        } as *mut u64;
        // SAFETY: the map is FILE_LEN = 8 * WORDS bytes long and page-aligned, so word `i` is in
        // bounds and 8-byte aligned; every access to these words, in every process, is atomic, and
        // through a read-only mapping only loads are made (stores happen through `ReadWrite`).
        #[allow(unsafe_code)]
        unsafe {
            AtomicU64::from_ptr(base.add(i))
        }
    }

    /// Publishes a new tail. Only the partition's appender (one per partition, by file lock) calls
    /// this, always under its append mutex.
    pub fn publish(&self, tail: Tail) {
        let seq = self.word(1);
        let s = seq.load(Ordering::Relaxed);
        seq.store(s.wrapping_add(1) | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.word(2).store(tail.active_base, Ordering::Relaxed);
        self.word(3).store(tail.position, Ordering::Relaxed);
        self.word(4).store(tail.next_offset, Ordering::Relaxed);
        let stable = tail.last_stable.map_or(0, |o| o.saturating_add(1));
        self.word(6).store(stable, Ordering::Relaxed);
        seq.store((s | 1).wrapping_add(1), Ordering::Release);
    }

    /// Whether the last appender closed cleanly, so that the tail is exact with none open.
    pub fn closed_cleanly(&self) -> bool {
        self.word(5).load(Ordering::Acquire) == CLOSED
    }

    /// Records whether the tail is exact on disk (`closed`) or owned by an open appender, and
    /// fsyncs that: an appender clears it before its first append, so that a power loss never
    /// leaves a stale tail marked exact.
    pub fn set_closed(&self, closed: bool) -> std::io::Result<()> {
        self.word(5)
            .store(if closed { CLOSED } else { 0 }, Ordering::Release);
        match &self.map {
            Map::ReadWrite(m) => m.flush(),
            Map::ReadOnly(_) => Ok(()),
        }
    }

    /// Whether the tail carries the lent mark of this boot: appenders lend the partition between
    /// appends and every publish is exact.
    pub fn lent_this_boot(&self) -> bool {
        lent_mark().is_some_and(|m| self.word(5).load(Ordering::Acquire) == m)
    }

    /// Marks the tail as kept by appenders that lend the partition (exact while this boot
    /// lasts). A clean-close mark is replaced durably, before anything is appended after it.
    /// Without a boot id the tail is marked as owned by an open appender instead.
    pub fn mark_lent(&self) -> std::io::Result<()> {
        let was_closed = self.closed_cleanly();
        self.word(5)
            .store(lent_mark().unwrap_or(0), Ordering::Release);
        match (&self.map, was_closed) {
            (Map::ReadWrite(m), true) => m.flush(),
            _ => Ok(()),
        }
    }

    /// How many times an appender took the partition (word 7).
    pub fn generation(&self) -> u64 {
        self.word(7).load(Ordering::Acquire)
    }

    /// Records that an appender took the partition; returns the new generation.
    pub fn bump_generation(&self) -> u64 {
        let next = self.generation().wrapping_add(1);
        self.word(7).store(next, Ordering::Release);
        next
    }

    /// Reads a consistent snapshot; `None` when the sequence stays odd for `wait`: the publisher
    /// stopped in the middle of a publish (it crashed there), so the fields are not a tail at all.
    /// With no appender open nobody publishes, and `wait` can be zero.
    pub fn read(&self, wait: Duration) -> Option<Tail> {
        let mut waited: Option<Instant> = None;
        loop {
            let s1 = self.word(1).load(Ordering::Acquire);
            if s1 & 1 == 1 {
                // A live publisher is a few stores away from even, unless it was preempted.
                let since = *waited.get_or_insert_with(Instant::now);
                if since.elapsed() >= wait {
                    return None;
                }
                std::thread::yield_now();
                continue;
            }
            let tail = Tail {
                active_base: self.word(2).load(Ordering::Relaxed),
                position: self.word(3).load(Ordering::Relaxed),
                next_offset: self.word(4).load(Ordering::Relaxed),
                last_stable: self.word(6).load(Ordering::Relaxed).checked_sub(1),
            };
            fence(Ordering::Acquire);
            if self.word(1).load(Ordering::Relaxed) == s1 {
                return Some(tail);
            }
        }
    }
}

/// Word 5 of a tail kept by lending appenders during this boot: derived from the kernel's boot
/// id, so that after a reboot (a power loss among them) the mark is not trusted. `None` when the
/// boot id cannot be read.
pub(crate) fn lent_mark() -> Option<u64> {
    static MARK: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *MARK.get_or_init(|| {
        let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let hex: String = id.chars().filter(char::is_ascii_hexdigit).collect();
        let raw = u128::from_str_radix(hex.get(..32)?, 16).ok()?;
        let folded = (raw as u64) ^ ((raw >> 64) as u64);
        // Never 0 (owned by an open appender) and never the clean-close mark.
        Some(match folded | 1 {
            CLOSED => CLOSED ^ 2,
            mark => mark,
        })
    })
}

fn corrupt(path: &Path, reason: String) -> LogError {
    LogError::Corrupt {
        path: path.to_owned(),
        position: 0,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_across_two_mappings_without_tearing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tail");
        let zero = Tail {
            active_base: 0,
            position: 0,
            next_offset: 0,
            last_stable: None,
        };
        let writer = TailFile::open(&path, zero).unwrap();
        let reader = TailFile::open(&path, zero).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 1..=200_000u64 {
                    writer.publish(Tail {
                        active_base: i,
                        position: i * 2,
                        next_offset: i * 3,
                        last_stable: Some(i),
                    });
                }
            });
            let mut last = 0;
            while last < 200_000 {
                // A publisher preempted mid-publish past the wait reads as `None`: look again.
                let Some(t) = reader.read(STUCK_PUBLISH) else {
                    continue;
                };
                assert_eq!(t.position, t.active_base * 2);
                assert_eq!(t.next_offset, t.active_base * 3);
                assert!(t.active_base >= last, "tail went backwards");
                last = t.active_base;
            }
        });
    }

    #[test]
    fn a_publish_cut_short_by_a_crash_reads_as_no_tail_instead_of_hanging() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tail");
        let tail = Tail {
            active_base: 0,
            position: 61,
            next_offset: 1,
            last_stable: Some(1),
        };
        let file = TailFile::open(&path, tail).unwrap();
        assert_eq!(file.read(Duration::ZERO), Some(tail));
        // The sequence word made odd, as a publisher killed between its first and last store
        // leaves it.
        let raw = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        raw.write_all_at(&7u64.to_ne_bytes(), 8).unwrap();
        let reader = TailFile::open_read_only(&path).unwrap();
        assert_eq!(reader.read(STUCK_PUBLISH), None);
    }

    #[test]
    fn rejects_a_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tail");
        std::fs::write(&path, [7u8; 64]).unwrap();
        let zero = Tail {
            active_base: 0,
            position: 0,
            next_offset: 0,
            last_stable: None,
        };
        assert!(TailFile::open(&path, zero).is_err());
        std::fs::write(&path, [7u8; 10]).unwrap();
        assert!(TailFile::open(&path, zero).is_err());
    }
}
