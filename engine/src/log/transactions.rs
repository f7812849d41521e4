//! Transactions in one partition: which producers have a transaction open here and from which
//! offset, the last stable offset (LSO) that follows from them, the aborted transactions of each
//! segment (`.txnindex`), and the snapshot that lets an appender resume without reading the whole
//! log.
//!
//! Invariants:
//! - A producer has at most one open transaction per partition. Its data batches carry its id and
//!   epoch; a batch or marker of an older epoch than the newest this partition has seen of that
//!   producer is refused (fenced), with a transaction open or not.
//! - The LSO is the first offset of the earliest open transaction, or the log end when none is
//!   open: every offset below it belongs to a decided transaction or to none.
//! - An ABORT marker's transaction is listed in the `.txnindex` of the segment holding the marker
//!   before the LSO moves past it, so a committed-only reader below the LSO finds every aborted
//!   range it must skip.
//! - The snapshot (`txn-snapshot`) is derived data: open transactions as of a position in the
//!   active segment. Recovery follows the batches after it; a snapshot that does not match the log
//!   is ignored and the log followed from its start.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::batch::{decode_records, marker_of, BatchHeader, Marker, ProducerIdentity};
use super::error::{IoContext, LogResult};
use super::record::{RecordSlot, RecordView};
use super::segment::{batch_at, corrupt, segment_path, ActiveSegment, BatchCursor, SealedSegment};

/// Bytes of one `.txnindex` entry: version i16, producer id i64, first offset i64, last offset
/// i64, last stable offset i64 (Kafka's layout).
pub(crate) const TXN_ENTRY_LEN: usize = 34;
/// Largest `.txnindex` read back: bounds the allocation made from its length.
const MAX_TXN_INDEX_BYTES: u64 = 64 << 20;
const SNAPSHOT: &str = "txn-snapshot";
/// Version 2 adds the aborts listed per segment; a version-1 snapshot is ignored (recovery reads
/// the log instead).
const SNAPSHOT_MAGIC: &[u8; 8] = b"EDDYTXN2";
/// Bytes of one snapshot entry: producer id i64, epoch i16, first offset u64, next sequence i32.
const SNAPSHOT_ENTRY_LEN: usize = 22;
/// Bytes of one snapshot entry of a producer's newest epoch: producer id i64, epoch i16.
const EPOCH_ENTRY_LEN: usize = 10;
/// Bytes of one snapshot entry of aborts listed by a segment: base u64, entries u32.
const LISTED_ENTRY_LEN: usize = 12;
/// Most open transactions (and producers) a snapshot may list (bounds its allocation).
const MAX_SNAPSHOT_ENTRIES: usize = 1 << 20;

/// An open transaction of one producer in the partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpenTxn {
    pub epoch: i16,
    /// Offset of its first batch here.
    pub first_offset: u64,
    /// Sequence of its next batch here (0 for the first).
    pub next_sequence: i32,
}

/// An aborted transaction, as `.txnindex` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AbortedTxn {
    pub producer_id: i64,
    /// Offset of its first batch in the partition.
    pub first_offset: u64,
    /// Offset of its ABORT marker.
    pub last_offset: u64,
    /// The LSO when the marker was written.
    pub last_stable_offset: u64,
}

impl AbortedTxn {
    /// Whether a batch of `producer_id` at `offset` belongs to this aborted transaction.
    pub fn covers(&self, producer_id: i64, offset: u64) -> bool {
        self.producer_id == producer_id && self.first_offset <= offset && offset < self.last_offset
    }

    fn encode(&self) -> [u8; TXN_ENTRY_LEN] {
        let mut b = [0u8; TXN_ENTRY_LEN];
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<AbortedTxn> {
        let word = |at: usize| Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?));
        if b.get(0..2)? != [0, 0] {
            return None;
        }
        let t = AbortedTxn {
            producer_id: word(2)? as i64,
            first_offset: word(10)?,
            last_offset: word(18)?,
            last_stable_offset: word(26)?,
        };
        (t.first_offset < t.last_offset).then_some(t)
    }
}

/// The open transactions of a partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PartitionTxns {
    open: BTreeMap<i64, OpenTxn>,
    /// The newest epoch seen of every producer that wrote here.
    epochs: BTreeMap<i64, i16>,
    /// How many aborts each segment's `.txnindex` lists (segments listing none are absent): a
    /// snapshot whose counts the files do not bear out is not trusted, so that a lost or cut
    /// index is rebuilt from the log.
    listed: BTreeMap<u64, u32>,
}

impl PartitionTxns {
    /// The last stable offset of a log ending at `end`.
    pub fn last_stable(&self, end: u64) -> u64 {
        let first = self.open.values().map(|t| t.first_offset).min();
        first.unwrap_or(end).min(end)
    }

    /// Whether `producer` may append or end a transaction here: refused when its open
    /// transaction has a newer epoch (`producer` is a fenced instance) or an older one (which
    /// must be ended first).
    pub fn check(&self, producer: ProducerIdentity, marker: bool) -> Result<(), String> {
        if let Some(&newest) = self.epochs.get(&producer.id) {
            if newest > producer.epoch {
                return Err(format!(
                    "producer {} epoch {} is fenced: epoch {newest} has written here",
                    producer.id, producer.epoch
                ));
            }
        }
        match self.open.get(&producer.id) {
            Some(t) if t.epoch < producer.epoch && !marker => Err(format!(
                "producer {} epoch {} cannot begin a transaction here while epoch {}'s is open",
                producer.id, producer.epoch, t.epoch
            )),
            _ => Ok(()),
        }
    }

    /// The sequence the next data batch of `producer` carries.
    pub fn next_sequence(&self, producer: ProducerIdentity) -> i32 {
        self.open.get(&producer.id).map_or(0, |t| t.next_sequence)
    }

    /// Records a data batch of `producer` at `base_offset` with `count` records (checked).
    pub fn on_data(&mut self, producer: ProducerIdentity, base_offset: u64, count: u32) {
        self.saw(producer);
        let t = self.open.entry(producer.id).or_insert(OpenTxn {
            epoch: producer.epoch,
            first_offset: base_offset,
            next_sequence: 0,
        });
        t.next_sequence = t.next_sequence.wrapping_add(count as i32);
    }

    /// Records `producer`'s `marker` at `offset` (checked), with the log ending at `end` before
    /// it; returns the aborted transaction to list when it ended an open one.
    pub fn on_marker(
        &mut self,
        producer: ProducerIdentity,
        marker: Marker,
        offset: u64,
    ) -> Option<AbortedTxn> {
        self.saw(producer);
        let lso = self.last_stable(offset);
        let ended = self.open.remove(&producer.id)?;
        (marker == Marker::Abort).then_some(AbortedTxn {
            producer_id: producer.id,
            first_offset: ended.first_offset,
            last_offset: offset,
            last_stable_offset: lso,
        })
    }

    /// Records that the `.txnindex` of segment `base` lists one more abort.
    pub fn on_listed(&mut self, base: u64) {
        *self.listed.entry(base).or_default() += 1;
    }

    /// Forgets the counts of segments below `first` (deleted by retention).
    pub fn forget_listed_before(&mut self, first: u64) {
        self.listed.retain(|base, _| *base >= first);
    }

    fn saw(&mut self, producer: ProducerIdentity) {
        let newest = self.epochs.entry(producer.id).or_insert(producer.epoch);
        *newest = (*newest).max(producer.epoch);
    }

    /// Follows one batch read back from the log (recovery, a reader finding the LSO), with the
    /// marker of a control batch. Batches that break the rules are followed anyway: they are in
    /// the log, and the rules were checked when they were written.
    pub fn follow(&mut self, header: &BatchHeader, marker: Option<Marker>) -> Option<AbortedTxn> {
        let producer = header.producer()?;
        match marker {
            Some(m) if header.is_control() => self.on_marker(producer, m, header.base_offset),
            _ => {
                self.on_data(producer, header.base_offset, header.count);
                None
            }
        }
    }
}

/// The aborted transactions listed for the segment at `base` (none when it has no `.txnindex`). A
/// partial entry at the end (a write cut short) is ignored; an entry that cannot be one is an
/// error naming the file.
pub(crate) fn read_aborted(dir: &Path, base: u64) -> LogResult<Vec<AbortedTxn>> {
    let path = segment_path(dir, base, "txnindex");
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx("open", &path),
    };
    let len = file.metadata().ctx("stat", &path)?.len();
    if len > MAX_TXN_INDEX_BYTES {
        return Err(corrupt(
            &path,
            0,
            format!("{len} bytes, more than a transaction index holds"),
        ));
    }
    let whole = (len as usize / TXN_ENTRY_LEN) * TXN_ENTRY_LEN;
    let mut bytes = vec![0u8; whole];
    file.read_exact_at(&mut bytes, 0).ctx("read", &path)?;
    let mut out = Vec::with_capacity(whole / TXN_ENTRY_LEN);
    for (i, entry) in bytes.chunks_exact(TXN_ENTRY_LEN).enumerate() {
        let t = AbortedTxn::decode(entry).ok_or_else(|| {
            corrupt(
                &path,
                (i * TXN_ENTRY_LEN) as u64,
                "not an aborted-transaction entry".into(),
            )
        })?;
        out.push(t);
    }
    Ok(out)
}

/// Lists `txn` in the `.txnindex` of the segment at `base`.
pub(crate) fn append_aborted(dir: &Path, base: u64, txn: &AbortedTxn) -> LogResult<()> {
    let path = segment_path(dir, base, "txnindex");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ctx("open", &path)?;
    file.write_all(&txn.encode()).ctx("write", &path)
}

/// Fsyncs the `.txnindex` of the segment at `base`, if it has one.
pub(crate) fn sync_aborted(dir: &Path, base: u64) -> LogResult<()> {
    let path = segment_path(dir, base, "txnindex");
    match File::open(&path) {
        Ok(f) => f.sync_all().ctx("fsync", &path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx("open", &path),
    }
}

/// Rewrites the `.txnindex` of the segment at `base` to hold exactly `txns` (recovery: entries
/// past the recovered end dropped, lost ones added back).
pub(crate) fn rewrite_aborted(dir: &Path, base: u64, txns: &[AbortedTxn]) -> LogResult<()> {
    let path = segment_path(dir, base, "txnindex");
    if txns.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx("remove", &path),
            _ => Ok(()),
        };
    }
    let bytes: Vec<u8> = txns.iter().flat_map(|t| t.encode()).collect();
    super::segment::replace_file(dir, &path, &bytes)
}

/// Where a snapshot was taken: the active segment's base, a byte position in it at a batch
/// boundary, and the offset of the batch there (the end, at the end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotAt {
    pub segment_base: u64,
    pub position: u64,
    pub offset: u64,
}

/// Writes the partition's snapshot: `txns` as of `at` (replaced whole; not fsynced, since a lost
/// or stale snapshot only makes recovery read more of the log).
pub(crate) fn write_snapshot(dir: &Path, at: SnapshotAt, txns: &PartitionTxns) -> LogResult<()> {
    let mut b = Vec::with_capacity(40 + txns.open.len() * SNAPSHOT_ENTRY_LEN);
    b.extend_from_slice(SNAPSHOT_MAGIC);
    for word in [at.segment_base, at.position, at.offset] {
        b.extend_from_slice(&word.to_be_bytes());
    }
    b.extend_from_slice(&(txns.open.len() as u32).to_be_bytes());
    for (id, t) in &txns.open {
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&t.epoch.to_be_bytes());
        b.extend_from_slice(&t.first_offset.to_be_bytes());
        b.extend_from_slice(&t.next_sequence.to_be_bytes());
    }
    b.extend_from_slice(&(txns.epochs.len() as u32).to_be_bytes());
    for (id, epoch) in &txns.epochs {
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&epoch.to_be_bytes());
    }
    b.extend_from_slice(&(txns.listed.len() as u32).to_be_bytes());
    for (base, n) in &txns.listed {
        b.extend_from_slice(&base.to_be_bytes());
        b.extend_from_slice(&n.to_be_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    let path = dir.join(SNAPSHOT);
    let tmp = dir.join(format!("{SNAPSHOT}.tmp"));
    std::fs::write(&tmp, &b).ctx("write", &tmp)?;
    std::fs::rename(&tmp, &path).ctx("rename", &path)
}

/// The partition's snapshot, or `None` when it is missing or does not read back (it is derived
/// data: the log is followed instead).
pub(crate) fn read_snapshot(dir: &Path) -> Option<(SnapshotAt, PartitionTxns)> {
    let path = dir.join(SNAPSHOT);
    let len = std::fs::metadata(&path).ok()?.len() as usize;
    if len > 48 + MAX_SNAPSHOT_ENTRIES * (SNAPSHOT_ENTRY_LEN + EPOCH_ENTRY_LEN + LISTED_ENTRY_LEN) {
        return None;
    }
    let b = std::fs::read(&path).ok()?;
    let (body, crc) = b.split_at_checked(b.len().checked_sub(4)?)?;
    if crc32c::crc32c(body).to_be_bytes() != *crc || body.get(..8)? != SNAPSHOT_MAGIC {
        return None;
    }
    let u64_at = |at: usize| Some(u64::from_be_bytes(body.get(at..at + 8)?.try_into().ok()?));
    let at = SnapshotAt {
        segment_base: u64_at(8)?,
        position: u64_at(16)?,
        offset: u64_at(24)?,
    };
    let count = u32::from_be_bytes(body.get(32..36)?.try_into().ok()?) as usize;
    let epochs_at = 36 + count.min(MAX_SNAPSHOT_ENTRIES) * SNAPSHOT_ENTRY_LEN;
    let epochs = u32::from_be_bytes(body.get(epochs_at..epochs_at + 4)?.try_into().ok()?) as usize;
    let listed_at = epochs_at + 4 + epochs.min(MAX_SNAPSHOT_ENTRIES) * EPOCH_ENTRY_LEN;
    let listed = u32::from_be_bytes(body.get(listed_at..listed_at + 4)?.try_into().ok()?) as usize;
    if count > MAX_SNAPSHOT_ENTRIES
        || epochs > MAX_SNAPSHOT_ENTRIES
        || listed > MAX_SNAPSHOT_ENTRIES
        || body.len() != listed_at + 4 + listed * LISTED_ENTRY_LEN
    {
        return None;
    }
    let mut txns = PartitionTxns::default();
    for e in body.get(listed_at + 4..)?.chunks_exact(LISTED_ENTRY_LEN) {
        let base = u64::from_be_bytes(e.get(0..8)?.try_into().ok()?);
        txns.listed
            .insert(base, u32::from_be_bytes(e.get(8..12)?.try_into().ok()?));
    }
    for e in body
        .get(epochs_at + 4..listed_at)?
        .chunks_exact(EPOCH_ENTRY_LEN)
    {
        let id = i64::from_be_bytes(e.get(0..8)?.try_into().ok()?);
        txns.epochs
            .insert(id, i16::from_be_bytes(e.get(8..10)?.try_into().ok()?));
    }
    for e in body.get(36..epochs_at)?.chunks_exact(SNAPSHOT_ENTRY_LEN) {
        let id = i64::from_be_bytes(e.get(0..8)?.try_into().ok()?);
        let t = OpenTxn {
            epoch: i16::from_be_bytes(e.get(8..10)?.try_into().ok()?),
            first_offset: u64::from_be_bytes(e.get(10..18)?.try_into().ok()?),
            next_sequence: i32::from_be_bytes(e.get(18..22)?.try_into().ok()?),
        };
        txns.open.insert(id, t);
    }
    Some((at, txns))
}

/// The marker of a control batch (`bytes` is the whole batch).
pub(crate) fn marker_in(header: &BatchHeader, bytes: &[u8]) -> Result<Marker, String> {
    let mut slots: Vec<RecordSlot> = Vec::with_capacity(1);
    decode_records(bytes, 0, header, 0, 1, &mut slots)?;
    let slot = slots.first().ok_or("control batch without a record")?;
    marker_of(RecordView::from_slot(bytes, slot).key)
}

/// The open transactions of the partition in `dir` whose segments are `sealed` and `active`, as
/// the log says: from the snapshot when it matches the log, else from the first segment, every
/// transactional batch is followed; each followed segment's `.txnindex` is made to list exactly
/// the aborts found there (entries past the recovered end go, lost ones come back).
pub(crate) fn recover(
    dir: &Path,
    sealed: &[SealedSegment],
    active: &ActiveSegment,
) -> LogResult<PartitionTxns> {
    let end = active.next_offset;
    let matches_log = |at: &SnapshotAt| {
        let here = || -> LogResult<bool> {
            if at.position == active.size {
                return Ok(at.offset == end);
            }
            let h = batch_at(&active.log, &active.log_path, at.position, active.size)?;
            Ok(h.is_some_and(|h| h.base_offset == at.offset))
        };
        at.segment_base == active.base && at.position <= active.size && here().unwrap_or(false)
    };
    let bases: Vec<u64> = (sealed.iter().map(|s| s.base))
        .chain([active.base])
        .collect();
    let resume = read_snapshot(dir)
        .filter(|(at, _)| matches_log(at))
        .filter(|(at, t)| indexes_bear_out(dir, &bases, at, t).unwrap_or(false));
    let first = sealed.first().map_or(active.base, |s| s.base);
    let (mut txns, start) = match resume {
        Some((at, t)) => (t, at),
        None => {
            let at = SnapshotAt {
                segment_base: first,
                position: 0,
                offset: first,
            };
            (PartitionTxns::default(), at)
        }
    };
    let segments = (sealed.iter().map(|s| (s.base, s.size)))
        .chain([(active.base, active.size)])
        .filter(|(base, _)| *base >= start.segment_base);
    for (base, size) in segments {
        let (position, from_offset) = match base == start.segment_base {
            true => (start.position, start.offset),
            false => (0, base),
        };
        let found = follow_segment(dir, base, position, size, &mut txns)?;
        let listed = read_aborted(dir, base)?;
        let mut want: Vec<AbortedTxn> = (listed
            .iter()
            .filter(|a| a.last_offset < from_offset)
            .copied())
        .collect();
        want.extend(found);
        if want != listed {
            rewrite_aborted(dir, base, &want)?;
        }
        match want.len() {
            0 => txns.listed.remove(&base),
            n => txns.listed.insert(base, n as u32),
        };
    }
    txns.forget_listed_before(bases.first().copied().unwrap_or(active.base));
    Ok(txns)
}

/// Whether the `.txnindex` files of the segments `bases` list as many aborts as the snapshot
/// `t` (taken at `at`) says: exactly, before the snapshot's segment; at least, in it (aborts
/// appended after the snapshot was taken).
fn indexes_bear_out(
    dir: &Path,
    bases: &[u64],
    at: &SnapshotAt,
    t: &PartitionTxns,
) -> LogResult<bool> {
    for &base in bases.iter().filter(|b| **b <= at.segment_base) {
        let found = read_aborted(dir, base)?.len();
        let said = t.listed.get(&base).copied().unwrap_or(0) as usize;
        let agrees = match base < at.segment_base {
            true => found == said,
            false => found >= said,
        };
        if !agrees {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Follows the transactional batches of segment `base` in `position..size`; returns the aborts.
fn follow_segment(
    dir: &Path,
    base: u64,
    position: u64,
    size: u64,
    txns: &mut PartitionTxns,
) -> LogResult<Vec<AbortedTxn>> {
    let path = segment_path(dir, base, "log");
    let file = File::open(&path).ctx("open segment", &path)?;
    let mut cursor = BatchCursor::new(&file, &path, position, size);
    let mut found = Vec::new();
    loop {
        let at = cursor.position;
        match cursor.next_batch() {
            Ok(Some((h, bytes))) if h.is_transactional() => {
                let marker = match h.is_control() {
                    true => Some(marker_in(&h, bytes).map_err(|r| corrupt(&path, at, r))?),
                    false => None,
                };
                found.extend(txns.follow(&h, marker));
            }
            Ok(Some(_)) => {}
            Ok(None) => return Ok(found),
            Err(Ok(stop)) => return Err(corrupt(&path, stop.position, stop.reason)),
            Err(Err(e)) => return Err(e),
        }
    }
}

/// The last stable offset of a partition no appender holds, whose segments are `bases` and whose
/// log ends at byte `position` of the last one, offset `end` (a reader that found the end
/// itself): read from the log, from the snapshot when it matches, without writing anything.
pub(crate) fn last_stable_of(dir: &Path, bases: &[u64], position: u64, end: u64) -> LogResult<u64> {
    let Some(&last) = bases.last() else {
        return Ok(end);
    };
    let matches_log = |at: &SnapshotAt| -> LogResult<bool> {
        if at.segment_base != last || at.position > position {
            return Ok(false);
        }
        if at.position == position {
            return Ok(at.offset == end);
        }
        let path = segment_path(dir, last, "log");
        let file = File::open(&path).ctx("open segment", &path)?;
        let h = batch_at(&file, &path, at.position, position)?;
        Ok(h.is_some_and(|h| h.base_offset == at.offset))
    };
    let (mut txns, from_base, from_position) = match read_snapshot(dir) {
        Some((at, t)) if matches_log(&at)? => (t, at.segment_base, at.position),
        _ => (
            PartitionTxns::default(),
            bases.first().copied().unwrap_or(last),
            0,
        ),
    };
    for &base in bases.iter().filter(|b| **b >= from_base) {
        let start = if base == from_base { from_position } else { 0 };
        let size = match base == last {
            true => position,
            false => {
                let path = segment_path(dir, base, "log");
                std::fs::metadata(&path).ctx("stat segment", &path)?.len()
            }
        };
        follow_segment(dir, base, start, size, &mut txns)?;
    }
    // Never below the log start, as the appender publishes it.
    let log_start = bases.first().copied().unwrap_or(end).min(end);
    Ok(txns.last_stable(end).max(log_start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer(id: i64, epoch: i16) -> ProducerIdentity {
        ProducerIdentity { id, epoch }
    }

    #[test]
    fn the_last_stable_offset_is_the_first_open_transactions_start() {
        let mut t = PartitionTxns::default();
        assert_eq!(t.last_stable(10), 10);
        t.on_data(producer(1, 0), 10, 3);
        t.on_data(producer(2, 0), 13, 1);
        t.on_data(producer(1, 0), 14, 2);
        assert_eq!(t.last_stable(16), 10);
        assert_eq!(t.next_sequence(producer(1, 0)), 5);
        assert_eq!(t.on_marker(producer(1, 0), Marker::Commit, 16), None);
        assert_eq!(t.last_stable(17), 13);
        let aborted = t.on_marker(producer(2, 0), Marker::Abort, 17);
        assert_eq!(
            aborted,
            Some(AbortedTxn {
                producer_id: 2,
                first_offset: 13,
                last_offset: 17,
                last_stable_offset: 13
            })
        );
        assert_eq!(t.last_stable(18), 18);
        assert!(aborted.is_some_and(|a| a.covers(2, 13) && !a.covers(1, 14) && !a.covers(2, 17)));
    }

    #[test]
    fn an_older_epoch_is_fenced_and_a_newer_one_ends_the_open_transaction_first() {
        let mut t = PartitionTxns::default();
        t.on_data(producer(1, 3), 0, 1);
        assert!(t.check(producer(1, 2), false).is_err(), "fenced");
        assert!(t.check(producer(1, 2), true).is_err(), "fenced marker");
        assert!(t.check(producer(1, 4), false).is_err(), "epoch 3's is open");
        assert!(
            t.check(producer(1, 4), true).is_ok(),
            "a newer epoch may abort it"
        );
        assert!(t.check(producer(1, 3), false).is_ok());
        // Ended by epoch 4, epoch 3 stays fenced though nothing is open.
        assert_eq!(
            t.on_marker(producer(1, 4), Marker::Abort, 1)
                .map(|a| a.first_offset),
            Some(0)
        );
        assert!(
            t.check(producer(1, 3), false).is_err(),
            "fenced after the abort"
        );
        assert!(t.check(producer(1, 4), false).is_ok());
    }

    #[test]
    fn snapshots_and_transaction_indexes_read_back_and_damage_is_not_trusted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut t = PartitionTxns::default();
        t.on_data(producer(7, 1), 42, 2);
        let at = SnapshotAt {
            segment_base: 40,
            position: 4096,
            offset: 44,
        };
        write_snapshot(dir.path(), at, &t).expect("write");
        assert_eq!(read_snapshot(dir.path()), Some((at, t.clone())));
        let path = dir.path().join(SNAPSHOT);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(
            read_snapshot(dir.path()),
            None,
            "a damaged snapshot is ignored"
        );

        let a = AbortedTxn {
            producer_id: 7,
            first_offset: 42,
            last_offset: 50,
            last_stable_offset: 42,
        };
        append_aborted(dir.path(), 40, &a).expect("append");
        append_aborted(dir.path(), 40, &a).expect("append");
        let idx = segment_path(dir.path(), 40, "txnindex");
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(&idx)
            .expect("open");
        f.set_len(2 * TXN_ENTRY_LEN as u64 + 5).expect("torn entry");
        assert_eq!(read_aborted(dir.path(), 40).expect("read"), vec![a, a]);
        assert_eq!(read_aborted(dir.path(), 0).expect("none"), vec![]);
        std::fs::write(&idx, [9u8; TXN_ENTRY_LEN]).expect("write");
        assert!(read_aborted(dir.path(), 40).is_err(), "not an entry");
    }
}
