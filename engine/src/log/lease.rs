//! Lending a partition between appends. A [`PartitionWriter`](super::PartitionWriter) holds its
//! partition's lock for its life, unless it was asked to [`share`](WriterCore::share): then it
//! holds the lock only while a call changes the log (an append, a marker, a roll, retention, a
//! compaction pass), so that appenders in several processes take turns on one partition and a
//! process that is stopped between calls (SIGSTOP, a debugger) blocks nobody.
//!
//! Invariants:
//! - `state.holds > 0` exactly while the lock is held; a writer that does not share keeps one hold
//!   for its life.
//! - Every appender that takes the partition bumps the tail's generation. Taking it back, a
//!   lending writer compares the generation with the one it left: when another appender took the
//!   partition since, all it knew of the log is thrown away and recovered from the files before
//!   anything is written.
//! - Letting go, a lending writer leaves a transaction snapshot at most 4 MiB before the end of
//!   the active segment, so that the next taker's recovery reads at most that much of the log;
//!   the tail keeps the lent mark of the running boot, so that readers trust it with no appender
//!   holding the lock.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use std::fs::File;
use std::time::Instant;

use super::error::{IoContext, LogError, LogResult};
use super::writer::{load_state, take_lock_within, WriterCore, WriterState};

/// How long taking a lent partition back waits for the appender that has it now (another
/// process in the middle of a call) before it returns `Locked`.
pub(crate) const LEND_WAIT: Duration = Duration::from_secs(10);

/// A lending writer leaves a fresh transaction snapshot when it lets go after the active segment
/// grew by this much since its last one: the next taker's recovery reads at most this much.
const SNAPSHOT_EVERY_BYTES: u64 = 4 << 20;

impl WriterCore {
    /// From now on holds the partition's lock only during calls that change the log, so that
    /// appenders in other processes can take turns on it (module docs of `lease.rs`). Queries
    /// such as [`end_offset`](Self::end_offset) then say what this writer last saw. Idempotent.
    pub fn share(&self) {
        let mut st = self.state.lock();
        if self.shared.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = self.tail.mark_lent() {
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e,
                "cannot mark the tail as lent; readers check the log's end themselves");
        }
        self.unhold(&mut st);
    }

    /// Whether the partition is lent between calls.
    pub fn is_shared(&self) -> bool {
        self.shared.load(Ordering::Acquire)
    }

    /// Takes a hold on the partition for one call, taking the lock back when it was lent.
    pub(crate) fn hold(&self, st: &mut WriterState) -> LogResult<()> {
        if st.holds > 0 {
            st.holds += 1;
            return Ok(());
        }
        let path = self.dir.join("lock");
        take_lock_within(&self.lock, &self.topic, self.partition, &path, LEND_WAIT)?;
        if let Err(e) = self.take_back(st) {
            let _ = self.lock.unlock();
            return Err(e);
        }
        st.holds = 1;
        Ok(())
    }

    /// With the lock just taken: refuses a partition deleted meanwhile, reloads what another
    /// appender changed, and records this writer as the one that took the partition last.
    fn take_back(&self, st: &mut WriterState) -> LogResult<()> {
        self.check_same_partition()?;
        if self.tail.generation() != st.generation {
            let (fresh, _) = load_state(&self.dir, &self.config)?;
            let buf = std::mem::take(&mut st.buf);
            *st = fresh;
            st.buf = buf;
            // `load_state` fsynced what it found.
            let mut sync = self.sync.lock();
            sync.synced_offset = sync.synced_offset.max(st.active.next_offset);
            drop(sync);
            self.tail.publish(st.tail());
            tracing::debug!(topic = %self.topic, partition = self.partition,
                end_offset = st.active.next_offset,
                "another appender wrote to the lent partition: reloaded it");
        }
        (self.tail.mark_lent()).ctx("fsync tail", &self.dir)?;
        st.generation = self.tail.bump_generation();
        Ok(())
    }

    /// Whether the `lock` file at the partition's path is still the one this writer holds (the
    /// topic may have been deleted, and perhaps created again, while the partition was lent).
    fn check_same_partition(&self) -> LogResult<()> {
        let path = self.dir.join("lock");
        let mine = (self.lock.metadata()).ctx("stat lock", &path)?;
        let same =
            std::fs::metadata(&path).is_ok_and(|m| m.ino() == mine.ino() && m.dev() == mine.dev());
        if same {
            return Ok(());
        }
        let data_dir = (self
            .dir
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent))
        .unwrap_or(&self.dir);
        Err(LogError::TopicNotFound {
            topic: self.topic.clone(),
            dir: data_dir.to_owned(),
        })
    }

    /// Gives back a hold; the last one of a sharing writer leaves the transaction snapshot at the
    /// end of the log and lends the partition.
    pub(crate) fn unhold(&self, st: &mut WriterState) {
        st.holds = st.holds.saturating_sub(1);
        if st.holds > 0 {
            return;
        }
        // Recovery follows the log from a snapshot in the active segment, so a fresh one is
        // written only when the active segment is new or has grown past the last by a bound.
        let stale = st.snapshot_at.is_none_or(|(base, position)| {
            base != st.active.base
                || st.active.size.saturating_sub(position) >= SNAPSHOT_EVERY_BYTES
        });
        if stale {
            self.snapshot_txns(st);
        }
        if let Err(e) = self.lock.unlock() {
            // Closing the file on drop releases it in any case.
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e,
                "cannot unlock the lent partition");
        }
    }

    /// On drop: whether this writer holds the partition to close it cleanly — always unless it
    /// lends it; then only if it takes the lock at once and nobody appended since its last call.
    pub(crate) fn hold_to_close(&self) -> bool {
        let mut st = self.state.lock();
        if st.holds > 0 {
            return true;
        }
        if self.lock.try_lock().is_err() {
            return false;
        }
        if self.tail.generation() != st.generation || self.check_same_partition().is_err() {
            let _ = self.lock.unlock();
            return false;
        }
        st.holds = 1;
        true
    }
}

/// What a lending opener writes into the lock file while it opens (`lend` and the boot's lent
/// mark): nothing else is ever in that file but this or nothing.
fn lend_intent() -> Option<String> {
    super::tail::lent_mark().map(|mark| format!("lend {mark:016x}\n"))
}

/// Writes (lending) or clears the lend intent in the lock file, its lock held.
pub(crate) fn write_lend_intent(lock: &File, path: &Path, lend: bool) -> LogResult<()> {
    use std::os::unix::fs::FileExt;
    lock.set_len(0).ctx("clear lock file", path)?;
    if let (true, Some(intent)) = (lend, lend_intent()) {
        lock.write_all_at(intent.as_bytes(), 0)
            .ctx("write lock file", path)?;
    }
    Ok(())
}

/// Takes the lock of a partition being opened, retrying for up to `wait`, or up to
/// [`LEND_WAIT`] once the lock file says its holder is a lending
/// appender in the middle of opening it (two processes opening a fresh partition to share it).
pub(crate) fn take_lock_at_open(
    lock: &File,
    topic: &str,
    partition: u32,
    path: &Path,
    wait: Duration,
) -> LogResult<()> {
    let started = Instant::now();
    let mut deadline = started + wait;
    loop {
        match take_lock_within(
            lock,
            topic,
            partition,
            path,
            deadline - Instant::now().min(deadline),
        ) {
            Err(LogError::Locked { .. }) if deadline < started + LEND_WAIT => {
                let lending = std::fs::read_to_string(path).ok() == lend_intent();
                if !lending {
                    return Err(LogError::Locked {
                        topic: topic.to_owned(),
                        partition,
                        path: path.to_owned(),
                    });
                }
                deadline = started + LEND_WAIT;
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_file(path: &Path) -> File {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .read(true)
            .open(path)
            .unwrap()
    }

    /// Holds `path`'s lock with (or without) the lend intent for `hold`, in another thread, while
    /// this one opens; returns what the open got and how long it took.
    fn open_while_held(lend: bool, hold: Duration) -> (LogResult<()>, Duration) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let holder = lock_file(&path);
        holder.try_lock().unwrap();
        write_lend_intent(&holder, &path, lend).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(hold);
            holder.unlock().unwrap();
        });
        let started = Instant::now();
        let got = take_lock_at_open(&lock_file(&path), "t", 0, &path, Duration::from_millis(200));
        let took = started.elapsed();
        release.join().unwrap();
        (got, took)
    }

    #[test]
    fn an_opener_waits_for_a_lending_opener_and_not_for_an_exclusive_one() {
        if lend_intent().is_none() {
            return; // no boot id: no lending marks on this system
        }
        // Past the 200 ms an exclusive holder is waited for, and well within LEND_WAIT.
        let (got, took) = open_while_held(true, Duration::from_millis(600));
        assert!(got.is_ok(), "{got:?}");
        assert!(took >= Duration::from_millis(550), "{took:?}");
        // An exclusive holder keeping it for 3 s: refused after 200 ms, long before.
        let (got, took) = open_while_held(false, Duration::from_secs(3));
        assert!(matches!(got, Err(LogError::Locked { .. })), "{got:?}");
        assert!(took < Duration::from_millis(2_500), "{took:?}");
    }
}
