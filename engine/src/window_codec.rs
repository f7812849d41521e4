//! The stored form of window operators' state: the store keys and the bytes behind them, encoded
//! and decoded here only, so that every entry read back from a store is checked the same way.
//!
//! Every key starts with the state prefix `b'w', operator u16 BE, kind`. Times are i64 with the
//! sign bit flipped, big-endian, so that keys sort by time:
//!
//! | kind | key after the prefix | value (JSON) |
//! |---|---|---|
//! | `W` a time window | end, start, record key | `[key, accumulator]` |
//! | `B` buffered records | record key | `[[timestamp, arrival order, value], ...]` |
//! | `M` partition meta | — | `[stream time, arrival counter, key time floor]` |
//! | `T` a key's stream time (closing by key) | record key | the time |
//! | `C` count windows | record key | `{"key", "seen", "open": [...]}` |
//! | `N` operator name | — | the name, UTF-8 |
//!
//! The key time floor is the stream time that a key without a `T` entry starts from: the
//! partition's stream time when the state was last written with windows closing by partition
//! (whose keys had no times of their own), `i64::MIN` in state only ever closed by key. Meta
//! written before key closing existed has two elements and reads with floor = stream time.
//!
//! Invariant: decoding trusts nothing it reads. A key of the wrong length, bytes that are not the
//! expected JSON, or a window whose bounds could not have been written (start after end) are
//! errors naming what was wrong; nothing here panics on any input.

use serde::de::DeserializeOwned;

/// Bytes of the state prefix every key starts with.
pub(crate) const PREFIX_LEN: usize = 4;
/// Bytes of a window key before its record key: prefix, end, start.
pub(crate) const WINDOW_KEY_LEN: usize = PREFIX_LEN + 16;

/// Store key prefix of entries of kind `kind` of window operator `op`: `b'w', op u16 BE, kind`.
pub(crate) fn state_prefix(op: u16, kind: u8) -> Vec<u8> {
    let [hi, lo] = op.to_be_bytes();
    vec![b'w', hi, lo, kind]
}

/// Sortable big-endian encoding of a signed time.
pub(crate) fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time encoded by [`time_bytes`] (`None` unless `bytes` is 8 bytes long).
pub(crate) fn time_from(bytes: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(bytes.try_into().ok()?) ^ (1 << 63)) as i64)
}

/// The store key of window `[start, end)` of record key `raw` of operator `op`.
pub(crate) fn window_key(op: u16, end: i64, start: i64, raw: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(WINDOW_KEY_LEN + raw.len());
    k.extend_from_slice(&state_prefix(op, b'W'));
    k.extend_from_slice(&time_bytes(end));
    k.extend_from_slice(&time_bytes(start));
    k.extend_from_slice(raw);
    k
}

/// The store key of entries of kind `kind` (`B`, `C`) of record key `raw` of operator `op`.
pub(crate) fn keyed_entry(op: u16, kind: u8, raw: &[u8]) -> Vec<u8> {
    let mut k = state_prefix(op, kind);
    k.extend_from_slice(raw);
    k
}

/// A window's bounds and record key, as read from its store key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct WindowKey<'a> {
    pub start: i64,
    pub end: i64,
    pub raw: &'a [u8],
}

/// Reads a window key written by [`window_key`].
pub(crate) fn parse_window_key(key: &[u8]) -> Result<WindowKey<'_>, String> {
    let (Some(end), Some(start)) = (
        key.get(PREFIX_LEN..PREFIX_LEN + 8).and_then(time_from),
        key.get(PREFIX_LEN + 8..WINDOW_KEY_LEN).and_then(time_from),
    ) else {
        return Err(format!(
            "window key of {} bytes, shorter than {WINDOW_KEY_LEN}",
            key.len()
        ));
    };
    // Windows are [start, end) with start < end, except a session at the largest time, whose end
    // saturates to its start; no window ends at the smallest time.
    if start > end || end == i64::MIN {
        return Err(format!("window bounds [{start}, {end}) are not a window"));
    }
    let raw = key.get(WINDOW_KEY_LEN..).unwrap_or_default();
    Ok(WindowKey { start, end, raw })
}

/// The record key of a `B` or `C` entry.
pub(crate) fn entry_record_key(key: &[u8]) -> Result<&[u8], String> {
    key.get(PREFIX_LEN..)
        .ok_or_else(|| format!("entry key of {} bytes, shorter than its prefix", key.len()))
}

/// Decodes a stored JSON value: a window `(key, accumulator)`, buffered records, partition meta
/// or count windows.
pub(crate) fn decode<T: DeserializeOwned>(value: &[u8]) -> Result<T, String> {
    serde_json::from_slice(value).map_err(|e| e.to_string())
}

/// The partition meta of a `M` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    /// The partition's stream time: its largest record time (`i64::MIN` before any).
    pub stream_time: i64,
    /// The arrival counter: the next record's order.
    pub order: u64,
    /// The stream time of a key without a stored time of its own.
    pub key_time_floor: i64,
}

impl Meta {
    /// The stored form: `[stream time, arrival counter, key time floor]`.
    pub fn encode(&self) -> Vec<u8> {
        let Meta {
            stream_time,
            order,
            key_time_floor,
        } = *self;
        // Three integers: serialising them cannot fail.
        serde_json::to_vec(&(stream_time, order, key_time_floor)).unwrap_or_default()
    }

    /// Reads a stored `M` value, three elements or the earlier two.
    pub fn decode(value: &[u8]) -> Result<Meta, String> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Current(i64, u64, i64),
            Earlier(i64, u64),
        }
        Ok(match decode::<Stored>(value)? {
            Stored::Current(stream_time, order, key_time_floor) => Meta {
                stream_time,
                order,
                key_time_floor,
            },
            Stored::Earlier(stream_time, order) => Meta {
                stream_time,
                order,
                key_time_floor: stream_time,
            },
        })
    }
}

/// The store key of the stream time of record key `raw` of operator `op` (closing by key).
pub(crate) fn key_time_key(op: u16, raw: &[u8]) -> Vec<u8> {
    keyed_entry(op, b'T', raw)
}

/// Buffered records of one record key: `(timestamp, arrival order, value)`.
pub(crate) type SavedRecords = Vec<(i64, u64, serde_json::Value)>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keys_read_back_and_sort_by_end_then_start() {
        for (start, end) in [
            (0, 1),
            (-5, 3),
            (i64::MIN, i64::MIN + 1),
            (i64::MAX, i64::MAX),
        ] {
            let k = window_key(7, end, start, b"sensor");
            assert_eq!(
                parse_window_key(&k),
                Ok(WindowKey {
                    start,
                    end,
                    raw: b"sensor"
                })
            );
        }
        assert!(window_key(0, 3, 1, b"") < window_key(0, 4, 0, b""));
        assert!(time_bytes(-5) < time_bytes(3), "keys sort by time");
    }

    #[test]
    fn keys_that_no_window_has_are_refused() {
        let short = window_key(0, 5, 1, b"");
        assert!(parse_window_key(&short[..19]).is_err());
        assert!(
            parse_window_key(&window_key(0, 1, 5, b"k")).is_err(),
            "start after end"
        );
        assert!(parse_window_key(&window_key(0, i64::MIN, i64::MIN, b"")).is_err());
        assert!(entry_record_key(b"wx").is_err());
    }

    #[test]
    fn meta_reads_back_and_earlier_meta_takes_its_stream_time_as_the_key_floor() {
        let meta = Meta {
            stream_time: -3,
            order: 9,
            key_time_floor: i64::MIN,
        };
        assert_eq!(Meta::decode(&meta.encode()), Ok(meta));
        let earlier = Meta::decode(b"[1500,7]").unwrap();
        assert_eq!((earlier.stream_time, earlier.key_time_floor), (1500, 1500));
        assert!(Meta::decode(b"[1500]").is_err());
        assert!(Meta::decode(b"[1,2,3,4]").is_err());
        assert!(
            Meta::decode(b"[1,-2,3]").is_err(),
            "a negative arrival counter"
        );
    }
}
