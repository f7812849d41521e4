//! What the window operators share about their state: the store key prefix of an operator's
//! entries, the name each operator's state was written under, and per-partition in-memory state
//! tied to the store it was loaded from.
//!
//! Operators are numbered by position on their dataframe; each store records the name of the
//! operator behind every number (entry kind `N`), so that a changed pipeline (a window inserted
//! before another, or changed) is refused at start instead of reading another operator's state.
//!
//! Invariant: a partition's in-memory state is used only with the store (by epoch) it was loaded
//! from; meeting another store (the partition was closed and opened again, or restored) reloads it.

use hashbrown::hash_map::Entry;
use hashbrown::HashMap;

use crate::state::Store;
use crate::stream::StepError;

pub(crate) use crate::window_codec::state_prefix;

/// Checks that `store` holds the state of the operators `names` (by id), recording the names of
/// those it has none for (new operators, or a store written before names were kept).
pub(crate) fn check_operator_names(store: &mut Store, names: &[String]) -> Result<(), String> {
    for (id, name) in names.iter().enumerate() {
        let Ok(id) = u16::try_from(id) else {
            return Err(format!(
                "more than {} window operators on one dataframe",
                u16::MAX
            ));
        };
        let key = state_prefix(id, b'N');
        let stored = store.get(&key).map_err(|e| e.to_string())?;
        match stored {
            Some(stored) if stored == name.as_bytes() => {}
            Some(stored) => {
                return Err(format!(
                    "the pipeline changed: state operator {id} was written by window {:?}, \
                     and is now {name:?}. Reading it would mix two windows' state. Restore the \
                     previous pipeline (add new windows after the existing ones; `.name(..)` \
                     keeps a window's state when its parameters change), or reset the \
                     application's group and state to start over",
                    String::from_utf8_lossy(stored)
                ))
            }
            None => store.put(&key, Some(name.as_bytes().to_vec())),
        }
    }
    Ok(())
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
