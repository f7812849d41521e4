//! How the time joins ([`super::AsOf`], [`super::Interval`]) keep their state: in memory per
//! partition, loaded from the partition's store at first contact (by store epoch, as windows
//! do), written back before every checkpoint.
//!
//! Store layout, under the operator's state prefix `b'w', op u16 BE` (as windows, see
//! `window_codec`): kind `J` holds the partition's stream time (JSON i64); other kinds hold one
//! JSON entry per record key (`kind, record key` → the key's records), a tombstone once a key
//! has none left. Decoding trusts nothing: an entry that is not the expected JSON is a corrupt
//! store error naming the key.

use std::collections::HashSet;

use hashbrown::HashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::state::Store;
use crate::stream::StepError;
use crate::window_codec::state_prefix;

/// Kind of the stream-time entry.
pub(super) const STREAM_TIME: u8 = b'J';

/// Per record key state of one kind, and which keys changed since the last flush.
pub(super) struct Keyed<T> {
    kind: u8,
    pub keys: HashMap<Vec<u8>, T>,
    dirty: HashSet<Vec<u8>>,
}

fn fatal(e: crate::state::StateError) -> StepError {
    StepError::Fatal(e.into())
}

impl<T: Serialize + DeserializeOwned> Keyed<T> {
    /// The entries of `kind` of operator `op` in `store`.
    pub fn load(op: u16, kind: u8, store: &Store) -> Result<Self, StepError> {
        let prefix = state_prefix(op, kind);
        let mut keys = HashMap::new();
        for (k, v) in store.scan_prefix(&prefix).map_err(fatal)? {
            let value = serde_json::from_slice(&v)
                .map_err(|e| fatal(store.corrupt_entry(&k, format!("join state: {e}"))))?;
            keys.insert(k[prefix.len()..].to_vec(), value);
        }
        Ok(Keyed {
            kind,
            keys,
            dirty: HashSet::new(),
        })
    }

    /// The state of `raw`, made by `new` when missing, marked changed.
    pub fn touch_or(&mut self, raw: &[u8], new: impl FnOnce() -> T) -> &mut T {
        if !self.dirty.contains(raw) {
            self.dirty.insert(raw.to_vec());
        }
        self.keys.entry_ref(raw).or_insert_with(new)
    }

    /// Lets `sweep` change every key's state (expiry), marking the keys whose state it says it
    /// changed.
    pub fn sweep(&mut self, mut sweep: impl FnMut(&mut T) -> bool) {
        for (raw, state) in self.keys.iter_mut() {
            if sweep(state) && !self.dirty.contains(raw) {
                self.dirty.insert(raw.clone());
            }
        }
    }

    /// Writes the changed keys into `store`; keys whose state is `empty` are deleted from
    /// memory and the store.
    pub fn flush(
        &mut self,
        op: u16,
        store: &mut Store,
        empty: impl Fn(&T) -> bool,
    ) -> Result<(), StepError> {
        let mut key = state_prefix(op, self.kind);
        let prefix_len = key.len();
        for raw in self.dirty.drain() {
            key.truncate(prefix_len);
            key.extend_from_slice(&raw);
            let value = match self.keys.get(&raw) {
                Some(state) if !empty(state) => Some(
                    serde_json::to_vec(state)
                        .map_err(|e| StepError::Function(format!("join state: {e}")))?,
                ),
                _ => {
                    self.keys.remove(&raw);
                    None
                }
            };
            store.put(&key, value);
        }
        Ok(())
    }
}

/// The stream time saved for operator `op` (`i64::MIN` when none).
pub(super) fn load_stream_time(op: u16, store: &Store) -> Result<i64, StepError> {
    let key = state_prefix(op, STREAM_TIME);
    match store.peek(&key).map_err(fatal)? {
        None => Ok(i64::MIN),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| fatal(store.corrupt_entry(&key, format!("join stream time: {e}")))),
    }
}

/// Saves the stream time of operator `op`.
pub(super) fn save_stream_time(op: u16, store: &mut Store, time: i64) {
    store.put(
        &state_prefix(op, STREAM_TIME),
        Some(time.to_string().into_bytes()),
    );
}
