//! [`State`]: the key-value state a stateful function sees for the record it is processing.
//!
//! Layout in the store: key `b'k', message-key length u32 BE, message key, name` (so every record
//! key has its own namespace); value `0, JSON` or `1, expiry ms i64 BE, JSON` when set with a TTL.
//! Expiry is measured in event time (the timestamp of the record being processed), so a replay
//! expires exactly what the first run expired.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::StateError;
use super::store::Store;

/// First byte of per-key state entries in a store.
pub(crate) const KEYED_STATE: u8 = b'k';

/// Per-key state of a stateful function: named values, JSON-encoded, saved at each checkpoint and
/// restored from the changelog after a crash.
///
/// Methods do not return errors: a failure is remembered and acted on after the function returns.
/// A value that cannot be encoded fails the record, under the error policy; a storage failure,
/// or a stored value that does not decode as the asked type, stops the application (skipping
/// records would not get past damaged or mistyped state).
pub struct State<'a> {
    store: &'a mut Store,
    prefix_len: usize,
    key: Vec<u8>,
    now_ms: i64,
    error: &'a mut Option<StateFailure>,
}

/// What went wrong inside a stateful function's state access.
pub(crate) enum StateFailure {
    /// The store failed, or what it holds does not decode.
    Stored(StateError),
    /// A value the function stored could not be encoded.
    Encode(String),
}

impl<'a> State<'a> {
    pub(crate) fn new(
        store: &'a mut Store,
        message_key: &[u8],
        now_ms: i64,
        error: &'a mut Option<StateFailure>,
    ) -> Self {
        let mut key = Vec::with_capacity(5 + message_key.len() + 16);
        key.push(KEYED_STATE);
        key.extend_from_slice(&(message_key.len() as u32).to_be_bytes());
        key.extend_from_slice(message_key);
        State {
            store,
            prefix_len: key.len(),
            key,
            now_ms,
            error,
        }
    }

    fn full_key(&mut self, name: &str) -> &[u8] {
        self.key.truncate(self.prefix_len);
        self.key.extend_from_slice(name.as_bytes());
        &self.key
    }

    fn fail(&mut self, what: StateFailure) {
        if self.error.is_none() {
            *self.error = Some(what);
        }
    }

    fn corrupt(&mut self, name: &str, reason: impl std::fmt::Display) {
        let e = self
            .store
            .corrupt_entry(&self.key, format!("state {name:?}: {reason}"));
        self.fail(StateFailure::Stored(e));
    }

    /// The value stored under `name` for this record's key, if any and not expired.
    pub fn get<T: DeserializeOwned>(&mut self, name: &str) -> Option<T> {
        self.full_key(name);
        let now = self.now_ms;
        let raw = match self.store.get(&self.key) {
            Ok(v) => v,
            Err(e) => {
                self.fail(StateFailure::Stored(e));
                return None;
            }
        };
        let decoded = match raw {
            None => return None,
            Some([0, json @ ..]) => serde_json::from_slice(json).map_err(|e| e.to_string()),
            Some([1, rest @ ..]) => match rest.split_at_checked(8) {
                Some((expiry, json)) => {
                    let mut at = [0u8; 8];
                    at.copy_from_slice(expiry);
                    if now >= i64::from_be_bytes(at) {
                        return None;
                    }
                    serde_json::from_slice(json).map_err(|e| e.to_string())
                }
                None => Err("a value with an expiry shorter than 8 bytes".to_owned()),
            },
            Some(_) => Err("unknown value encoding".to_owned()),
        };
        match decoded {
            Ok(v) => Some(v),
            Err(reason) => {
                self.corrupt(name, reason);
                None
            }
        }
    }

    /// The value under `name`, or `default` when there is none.
    pub fn get_or<T: DeserializeOwned>(&mut self, name: &str, default: T) -> T {
        self.get(name).unwrap_or(default)
    }

    /// Whether a live value is stored under `name`.
    pub fn exists(&mut self, name: &str) -> bool {
        self.get::<serde::de::IgnoredAny>(name).is_some()
    }

    /// Stores `value` under `name` for this record's key.
    pub fn set<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) {
        self.put(name, value, None);
    }

    /// Stores `value` under `name` until the event time reaches this record's timestamp + `ttl`.
    pub fn set_with_ttl<T: Serialize + ?Sized>(&mut self, name: &str, value: &T, ttl: Duration) {
        let expiry = self
            .now_ms
            .saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64);
        self.put(name, value, Some(expiry));
    }

    fn put<T: Serialize + ?Sized>(&mut self, name: &str, value: &T, expiry: Option<i64>) {
        let mut bytes = match expiry {
            None => vec![0u8],
            Some(at) => {
                let mut b = vec![1u8];
                b.extend_from_slice(&at.to_be_bytes());
                b
            }
        };
        if let Err(e) = serde_json::to_writer(&mut bytes, value) {
            self.fail(StateFailure::Encode(format!("state {name:?}: {e}")));
            return;
        }
        self.full_key(name);
        self.store.put(&self.key, Some(bytes));
    }

    /// Deletes the value under `name`.
    pub fn delete(&mut self, name: &str) {
        self.full_key(name);
        self.store.put(&self.key, None);
    }
}
