//! A checkpoint left unfinished in a changelog: changes after the last boundary, a checkpoint
//! marker or a reset record (which a reset of the group's offsets writes where the broker drops
//! commit metadata).
//!
//! A changelog whose backend appends a checkpoint as one unit (the local log) never holds one.
//! A backend without atomic appends (Kafka without transactions) does when its writer died in
//! the middle of a checkpoint or a wipe: some of its changes reached the changelog, its marker
//! did not. Applying them would put into the state the effect of input records the marker does
//! not cover, and those records are processed again after the restore, so they would count
//! twice. The restore therefore stops at the last boundary and undoes the tail: for each key
//! the tail changed, it appends the value the key had at the boundary (a tombstone when it had
//! none), then the boundary again. The changelog ends in a boundary once more, and whoever
//! restores it later gets the boundary's state.
//!
//! Invariants: the tail is found by reading backwards from the end in growing windows, so a
//! changelog that ends in a boundary (the usual case) costs one small read; the tail is at most
//! one checkpoint's (or one wipe's) changes, and the undo holds one record per key it changed.

use std::collections::BTreeSet;

use rocksdb::DB;

use super::error::{rocks, StateError, StateResult};
use super::store::{MARKER_KEY, RESET_KEY};
use super::Changelog;
use crate::log::{Record, RecordView};

/// Records read per step while looking for the last marker, at first.
const FIRST_WINDOW: u64 = 256;
/// Bytes read per step at most.
const READ_BYTES: usize = 8 << 20;

/// The last record of a changelog that ends a unit of state: a checkpoint marker, or a reset
/// (the group's offsets were reset for reprocessing where commit metadata cannot say so).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Boundary {
    /// Its offset.
    pub offset: u64,
    /// A reset to this input offset (else a marker).
    pub reset_to: Option<u64>,
}

impl Boundary {
    /// The record to append again after an undo.
    fn record(&self, input_offset: Option<u64>) -> Option<Record> {
        match (self.reset_to, input_offset) {
            (Some(to), _) => Some(Record::keyed(RESET_KEY, to.to_be_bytes())),
            (None, Some(at)) => Some(Record::keyed(MARKER_KEY, at.to_be_bytes())),
            (None, None) => None,
        }
    }
}

/// The last boundary (marker or reset) in `[from, end)` of `changelog`; `None` when that range
/// holds none.
pub(super) fn last_boundary(
    changelog: &mut dyn Changelog,
    from: u64,
    end: u64,
) -> StateResult<Option<Boundary>> {
    let mut stop = end;
    let mut window = FIRST_WINDOW;
    while stop > from {
        let start = stop.saturating_sub(window).max(from);
        let mut found = None;
        each_record(changelog, (start, stop), |r| {
            if r.key == Some(MARKER_KEY) {
                found = Some(Boundary {
                    offset: r.offset,
                    reset_to: None,
                });
            } else if r.key == Some(RESET_KEY) {
                let to = r
                    .value
                    .and_then(|v| Some(u64::from_be_bytes(v.try_into().ok()?)));
                let to = to.ok_or("a reset without an offset")?;
                found = Some(Boundary {
                    offset: r.offset,
                    reset_to: Some(to),
                });
            }
            Ok(())
        })?;
        if found.is_some() {
            return Ok(found);
        }
        stop = start;
        window = window.saturating_mul(4);
    }
    Ok(None)
}

/// Calls `f` with each record of `[from, to)` of `changelog` in offset order; a reason `f`
/// returns becomes an error naming the changelog partition and the record's offset.
fn each_record(
    changelog: &mut dyn Changelog,
    (from, to): (u64, u64),
    mut f: impl FnMut(&RecordView<'_>) -> Result<(), &'static str>,
) -> StateResult<()> {
    let mut at = from;
    while at < to {
        let fetch = changelog.read(at, (to - at) as usize, READ_BYTES)?;
        if fetch.is_empty() {
            break;
        }
        for r in fetch.iter().take_while(|r| r.offset < to) {
            f(&r).map_err(|reason| StateError::BadChangelog {
                topic: changelog.topic().to_owned(),
                partition: changelog.partition(),
                offset: r.offset,
                reason: reason.into(),
            })?;
        }
        at = fetch.next_offset();
    }
    Ok(())
}

/// What undoing a tail did.
pub(super) struct Undone {
    /// Changes found after the last marker.
    pub changes: u64,
    /// The changelog's end after the undo.
    pub end: u64,
}

/// Undoes the changes in `[from, end)` of `changelog`, none of them a boundary, against `db`
/// (which holds the state of `boundary`, the last one before `from`), as the module docs say;
/// `boundary` is appended again (a marker recording `input_offset`; none is appended when no
/// boundary was ever written: the tombstones alone leave the state empty, as it was).
pub(super) fn undo(
    changelog: &mut dyn Changelog,
    db: &DB,
    path: &std::path::Path,
    (from, end): (u64, u64),
    boundary: Option<Boundary>,
    input_offset: Option<u64>,
) -> StateResult<Undone> {
    let mut keys = BTreeSet::new();
    let mut changes = 0;
    each_record(changelog, (from, end), |r| {
        let key = r.key.filter(|k| k.first() != Some(&0)).ok_or(
            "a record without a key, or with a reserved one, after the last checkpoint marker",
        )?;
        keys.insert(key.to_vec());
        changes += 1;
        Ok(())
    })?;
    let mut records = Vec::with_capacity(keys.len() + 1);
    for key in keys {
        let value = db.get(&key).map_err(rocks("read state to undo", path))?;
        records.push(Record {
            key: Some(key),
            value,
            ..Record::default()
        });
    }
    // No boundary in the range read: the store's own position is right after its last marker.
    let again = match boundary {
        Some(b) => b.record(input_offset),
        None => input_offset.map(|at| Record::keyed(MARKER_KEY, at.to_be_bytes())),
    };
    records.extend(again);
    tracing::warn!(
        changelog = changelog.topic(),
        partition = changelog.partition(),
        from,
        end,
        changes,
        "a checkpoint was left unfinished in the changelog (its writer \
        stopped before the marker): its changes are undone, the state is the last marker's"
    );
    let end = changelog.append_now(&records, true)?;
    changelog.flush()?;
    Ok(Undone { changes, end })
}
