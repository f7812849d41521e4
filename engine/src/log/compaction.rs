//! Log compaction for topics with `cleanup.policy=compact`: keep the newest record per key,
//! drop tombstones once their segment is older than `delete.retention.ms`. Aborted records go at
//! once; a transaction marker goes, as in Kafka, once its segment is older than
//! `delete.retention.ms` and no record of its transaction is left — except the newest marker of
//! each producer, which keeps the producer's epoch in the partition for fencing.
//!
//! Compaction rewrites sealed segments only. It reads without holding the append lock, writes each
//! cleaned segment beside the original (`.cleaned`), and takes the lock only to rename the cleaned
//! files into place, so appends wait at most for three renames. Offsets never change: a surviving
//! record keeps its offset, a batch keeps its base offset and offset range, and a segment emptied
//! by compaction stays as an empty file so that the log-start offset does not move.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::batch::{decode_records, encode_subset, BatchHeader};
use super::error::{IoContext, LogResult};
use super::record::{RecordSlot, RecordView};
use super::segment::{corrupt, segment_path, sync_dir, BatchCursor, IndexBuilder, SealedSegment};
use super::transactions::{read_aborted, AbortedTxn};
use super::writer::WriterCore;

/// A batch being filtered: its header, raw bytes, the records kept, and its record count.
type Pending = (BatchHeader, Vec<u8>, Vec<(u64, crate::log::Record)>, u32);

/// What one compaction pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Sealed segments rewritten.
    pub segments_rewritten: usize,
    /// Records removed (superseded values and expired tombstones).
    pub records_removed: u64,
    /// Bytes of the rewritten segments before.
    pub bytes_before: u64,
    /// Bytes of the rewritten segments after.
    pub bytes_after: u64,
}

/// Calls `f` for every record of the log file `path[..end]`, with its batch header.
fn for_each_record(
    path: &std::path::Path,
    end: Option<u64>,
    mut f: impl FnMut(&BatchHeader, &[u8], RecordView<'_>),
) -> LogResult<()> {
    let file = File::open(path).ctx("open segment", path)?;
    let end = match end {
        Some(e) => e,
        None => file.metadata().ctx("stat segment", path)?.len(),
    };
    let mut cursor = BatchCursor::new(&file, path, 0, end);
    let mut slots: Vec<RecordSlot> = Vec::new();
    loop {
        let position = cursor.position;
        match cursor.next_batch() {
            Ok(Some((h, bytes))) => {
                slots.clear();
                decode_records(bytes, 0, &h, 0, usize::MAX, &mut slots)
                    .map_err(|reason| corrupt(path, position, reason))?;
                for s in &slots {
                    f(&h, bytes, RecordView::from_slot(bytes, s));
                }
            }
            Ok(None) => return Ok(()),
            Err(Ok(stop)) => return Err(corrupt(path, stop.position, stop.reason)),
            Err(Err(e)) => return Err(e),
        }
    }
}

/// What compaction knows of transactions: the last stable offset when it started, and the
/// aborted transactions listed then.
struct Decided {
    stable: u64,
    aborted: Vec<AbortedTxn>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Outside transactions, or in a committed one.
    Committed,
    Aborted,
    /// At or past the last stable offset: its transaction may still end either way.
    Undecided,
    Marker,
}

impl Decided {
    fn fate(&self, h: &BatchHeader, offset: u64) -> Fate {
        let Some(producer) = h.producer() else {
            return Fate::Committed;
        };
        if h.is_control() {
            Fate::Marker
        } else if offset >= self.stable {
            Fate::Undecided
        } else if self
            .aborted
            .iter()
            .any(|a| a.covers(producer.id, h.base_offset))
        {
            Fate::Aborted
        } else {
            Fate::Committed
        }
    }
}

/// What a compaction pass decided before rewriting anything.
struct Plan {
    decided: Decided,
    /// The newest committed offset of every key.
    newest: HashMap<Vec<u8>, u64>,
    /// Offsets of the transaction markers that go.
    markers_gone: HashSet<u64>,
}

impl Plan {
    /// Whether record `r` stays, in a segment whose tombstones have `expired` or not. Undecided
    /// records stay, aborted ones go.
    fn keeps(&self, h: &BatchHeader, r: &RecordView<'_>, expired: bool) -> bool {
        match (self.decided.fate(h, r.offset), r.key) {
            (Fate::Marker, _) => !self.markers_gone.contains(&r.offset),
            (Fate::Undecided, _) => true,
            (Fate::Aborted, _) => false,
            (Fate::Committed, None) => true,
            (Fate::Committed, Some(k)) => {
                self.newest.get(k) == Some(&r.offset) && !(r.value.is_none() && expired)
            }
        }
    }
}

/// A transaction marker seen by the first pass: producer id, offset, and whether its segment is
/// sealed and older than `delete.retention.ms`.
type MarkerSeen = (i64, u64, bool);

/// When segment `path` was last written, and whether that is `retention` ago or more.
fn last_written(path: &std::path::Path, retention: Duration) -> LogResult<(SystemTime, bool)> {
    let modified =
        (std::fs::metadata(path).and_then(|m| m.modified())).ctx("stat segment", path)?;
    let expired = (SystemTime::now().duration_since(modified)).is_ok_and(|age| age >= retention);
    Ok((modified, expired))
}

impl WriterCore {
    /// Runs one compaction pass over the sealed segments. Appends continue meanwhile.
    pub fn compact(&self) -> LogResult<CompactionStats> {
        let _one_at_a_time = self.maintenance.lock();
        // A writer that lends the partition holds it for the whole pass.
        self.hold(&mut self.state.lock())?;
        let result = self.compact_held();
        self.unhold(&mut self.state.lock());
        result
    }

    fn compact_held(&self) -> LogResult<CompactionStats> {
        let (sealed, active_base, active_end, stable) = {
            let st = self.state.lock();
            let stable = st.txns.last_stable(st.active.next_offset);
            (st.sealed.clone(), st.active.base, st.active.size, stable)
        };
        let mut stats = CompactionStats::default();
        if sealed.is_empty() {
            return Ok(stats);
        }
        let mut aborted = Vec::new();
        for base in sealed.iter().map(|s| s.base).chain([active_base]) {
            aborted.extend(read_aborted(&self.dir, base)?);
        }
        let decided = Decided { stable, aborted };
        let retention = Duration::from_millis(self.config.delete_retention_ms);
        // Newest offset of every key, over sealed segments and the written part of the active one:
        // of committed records only, so that an aborted or undecided write never shadows one.
        let mut newest: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut markers: Vec<MarkerSeen> = Vec::new();
        let mut note = |h: &BatchHeader, r: RecordView<'_>, expired: bool| {
            if let (true, Some(p)) = (h.is_control(), h.producer()) {
                markers.push((p.id, r.offset, expired));
            }
            if decided.fate(h, r.offset) != Fate::Committed {
                return;
            }
            if let Some(k) = r.key {
                match newest.get_mut(k) {
                    Some(o) => *o = r.offset,
                    None => {
                        newest.insert(k.to_vec(), r.offset);
                    }
                }
            }
        };
        for seg in &sealed {
            let path = segment_path(&self.dir, seg.base, "log");
            let (_, expired) = last_written(&path, retention)?;
            for_each_record(&path, None, |h, _, r| note(h, r, expired))?;
        }
        for_each_record(
            &segment_path(&self.dir, active_base, "log"),
            Some(active_end),
            |h, _, r| note(h, r, false),
        )?;
        let mut plan = Plan {
            decided,
            newest,
            markers_gone: HashSet::new(),
        };
        plan.markers_gone = self.markers_that_go(&sealed, &plan, &markers, retention)?;
        for seg in &sealed {
            if self.stopping.load(Ordering::Acquire) {
                break; // the writer is closing; the rest waits for the next pass
            }
            if let Some(done) = self.rewrite_segment(seg, &plan, retention)? {
                stats.segments_rewritten += 1;
                stats.records_removed += done.0;
                stats.bytes_before += seg.size;
                stats.bytes_after += done.1.size;
            }
        }
        Ok(stats)
    }

    /// The markers of expired sealed segments that no longer end any record (every record of
    /// their transaction is gone or goes in this pass), except each producer's newest. A record
    /// belongs to the first marker of its producer after it.
    fn markers_that_go(
        &self,
        sealed: &[SealedSegment],
        plan: &Plan,
        markers: &[MarkerSeen],
        retention: Duration,
    ) -> LogResult<HashSet<u64>> {
        let mut by_producer: HashMap<i64, Vec<u64>> = HashMap::new();
        for &(producer, offset, _) in markers {
            by_producer.entry(producer).or_default().push(offset);
        }
        let newest_of = |producer: i64| by_producer.get(&producer).and_then(|m| m.last());
        let mut going: HashSet<u64> = (markers.iter())
            .filter(|&&(producer, offset, expired)| expired && newest_of(producer) != Some(&offset))
            .map(|m| m.1)
            .collect();
        if going.is_empty() {
            return Ok(going);
        }
        for seg in sealed {
            let path = segment_path(&self.dir, seg.base, "log");
            let (_, expired) = last_written(&path, retention)?;
            for_each_record(&path, None, |h, _, r| {
                let Some(producer) = h.producer() else {
                    return;
                };
                if h.is_control() || !plan.keeps(h, &r, expired) {
                    return;
                }
                let ends = by_producer.get(&producer.id).and_then(|m| {
                    let i = m.partition_point(|o| *o <= r.offset);
                    m.get(i)
                });
                if let Some(marker) = ends {
                    going.remove(marker);
                }
            })?;
        }
        Ok(going)
    }

    /// Rewrites one sealed segment; `None` when nothing in it can go.
    fn rewrite_segment(
        &self,
        seg: &SealedSegment,
        plan: &Plan,
        delete_retention: Duration,
    ) -> LogResult<Option<(u64, SealedSegment)>> {
        let log_path = segment_path(&self.dir, seg.base, "log");
        let (modified, tombstones_expire) = last_written(&log_path, delete_retention)?;
        let keep = |h: &BatchHeader, r: &RecordView<'_>| plan.keeps(h, r, tombstones_expire);
        // Pass 1: does anything go?
        let mut removed = 0u64;
        for_each_record(&log_path, None, |h, _, r| {
            removed += u64::from(!keep(h, &r))
        })?;
        if removed == 0 {
            return Ok(None);
        }
        // Pass 2: write the cleaned segment and its indexes.
        let cleaned = |ext: &str| {
            let mut p = segment_path(&self.dir, seg.base, ext).into_os_string();
            p.push(".cleaned");
            PathBuf::from(p)
        };
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        let mut times = Vec::new();
        let mut builder = IndexBuilder::new(self.config.index_interval_bytes, i64::MIN);
        let mut batch: Option<Pending> = None;
        let mut last_offset = None;
        let mut flush = |batch: Option<Pending>, out: &mut Vec<u8>| {
            let Some((h, raw, kept, total)) = batch else {
                return;
            };
            if kept.is_empty() {
                return;
            }
            let position = out.len() as u64;
            if kept.len() as u32 == total {
                out.extend_from_slice(&raw);
            } else {
                encode_subset(out, &h, &kept);
            }
            let written = BatchHeader {
                total_len: out.len() - position as usize,
                max_timestamp: kept
                    .iter()
                    .filter_map(|(_, r)| r.timestamp)
                    .max()
                    .unwrap_or(h.max_timestamp),
                ..h
            };
            let (o, t) = builder.on_batch(seg.base, position, &written);
            offsets.extend(o.iter().flatten());
            times.extend(t.iter().flatten());
            last_offset = Some(h.last_offset());
        };
        for_each_record(&log_path, None, |h, raw, r| {
            if batch
                .as_ref()
                .is_none_or(|(b, ..)| b.base_offset != h.base_offset)
            {
                flush(batch.take(), &mut out);
                batch = Some((*h, raw.to_vec(), Vec::new(), h.count));
            }
            if keep(h, &r) {
                if let Some((_, _, kept, _)) = batch.as_mut() {
                    kept.push((r.offset, r.to_record()));
                }
            }
        })?;
        flush(batch.take(), &mut out);
        if let Some(last) = last_offset {
            if let Some(e) = builder.final_time_entry(seg.base, last) {
                times.extend_from_slice(&e);
            }
        }
        for (ext, bytes) in [("log", &out), ("index", &offsets), ("timeindex", &times)] {
            let path = cleaned(ext);
            let f = File::create(&path).ctx("create", &path)?;
            f.write_all_at(bytes, 0).ctx("write", &path)?;
            if ext == "log" {
                // Tombstones age from the segment's last write, not from the rewrite.
                f.set_modified(modified).ctx("set mtime", &path)?;
            }
            f.sync_all().ctx("fsync", &path)?;
        }
        let result = SealedSegment {
            base: seg.base,
            size: out.len() as u64,
            max_timestamp: builder.max_timestamp,
        };
        let mut st = self.state.lock();
        let Some(slot) = st.sealed.iter_mut().find(|s| s.base == seg.base) else {
            for ext in ["log", "index", "timeindex"] {
                let _ = std::fs::remove_file(cleaned(ext));
            }
            return Ok(None);
        };
        for ext in ["index", "timeindex", "log"] {
            let target = segment_path(&self.dir, seg.base, ext);
            std::fs::rename(cleaned(ext), &target).ctx("rename", &target)?;
        }
        sync_dir(&self.dir)?;
        *slot = result.clone();
        Ok(Some((removed, result)))
    }
}
