//! What the window operators share about their state: the store key prefix of an operator's
//! entries, and per-partition in-memory state tied to the store it was loaded from.
//!
//! Invariant: a partition's in-memory state is used only with the store (by epoch) it was loaded
//! from; meeting another store (the partition was closed and opened again, or restored) reloads it.

use hashbrown::hash_map::Entry;
use hashbrown::HashMap;

use crate::state::Store;
use crate::stream::StepError;

/// Store key prefix of entries of kind `kind` of window operator `op`: `b'w', op u16 BE, kind`.
pub(crate) fn state_prefix(op: u16, kind: u8) -> Vec<u8> {
    let [hi, lo] = op.to_be_bytes();
    vec![b'w', hi, lo, kind]
}

/// In-memory state of one partition, loaded from a store.
pub(crate) trait PartitionState {
    /// Epoch of the store it was loaded from.
    fn epoch(&self) -> u64;
}

/// The state of `partition` for use with `store`, loaded by `load` when missing or taken from
/// another store.
pub(crate) fn state_for<'a, S: PartitionState>(
    states: &'a mut HashMap<u32, S>,
    partition: u32,
    store: &Store,
    load: impl FnOnce(&Store) -> Result<S, StepError>,
) -> Result<&'a mut S, StepError> {
    match states.entry(partition) {
        Entry::Occupied(o) if o.get().epoch() == store.epoch() => Ok(o.into_mut()),
        Entry::Occupied(mut o) => {
            o.insert(load(store)?);
            Ok(o.into_mut())
        }
        Entry::Vacant(v) => Ok(v.insert(load(store)?)),
    }
}

/// The state of `partition` if it was loaded from `store` (for flushing into it).
pub(crate) fn loaded_from<'a, S: PartitionState>(
    states: &'a mut HashMap<u32, S>,
    partition: u32,
    store: &Store,
) -> Option<&'a mut S> {
    states
        .get_mut(&partition)
        .filter(|s| s.epoch() == store.epoch())
}

/// Sortable big-endian encoding of a signed time.
pub(crate) fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time encoded by [`time_bytes`].
pub(crate) fn time_from(bytes: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(bytes.try_into().ok()?) ^ (1 << 63)) as i64)
}

/// The message carrying a window's result: the window's key, timestamp `end − 1`.
pub(crate) fn result_message<K, T>(
    key: Option<K>,
    start: i64,
    end: i64,
    value: T,
) -> crate::stream::Message<K, super::WindowResult<T>> {
    crate::stream::Message {
        key,
        value: super::WindowResult { start, end, value },
        timestamp_ms: end - 1,
        headers: Vec::new(),
    }
}
