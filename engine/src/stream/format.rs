//! Serialization formats of topic keys and values: [`Json`], [`Bincode`], [`Bytes`] and [`Str`].
//! A format turns bytes from the log into a Rust value and back; a failure is a message that the
//! runtime reports with the record's topic, partition and offset.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A serialization format for keys or values.
pub trait Format: 'static {
    /// The Rust type of decoded values.
    type Value: 'static;

    /// Appends the encoding of `value` to `out`.
    fn encode(value: &Self::Value, out: &mut Vec<u8>) -> Result<(), String>;

    /// Decodes a value from `bytes`.
    fn decode(bytes: &[u8]) -> Result<Self::Value, String>;
}

/// JSON via serde_json. `Json<serde_json::Value>` takes any JSON document.
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T: Serialize + DeserializeOwned + 'static> Format for Json<T> {
    type Value = T;

    fn encode(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        serde_json::to_writer(out, value).map_err(|e| format!("JSON: {e}"))
    }

    fn decode(bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("JSON: {e}"))
    }
}

/// Bincode 2 (standard configuration, serde types). Compact and fast; needs a fixed schema (no
/// `serde_json::Value`).
pub struct Bincode<T>(PhantomData<fn() -> T>);

impl<T: Serialize + DeserializeOwned + 'static> Format for Bincode<T> {
    type Value = T;

    fn encode(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
            .map(|_| ())
            .map_err(|e| format!("bincode: {e}"))
    }

    fn decode(bytes: &[u8]) -> Result<T, String> {
        let (value, used) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map_err(|e| format!("bincode: {e}"))?;
        if used != bytes.len() {
            return Err(format!(
                "bincode: {} trailing bytes after the value",
                bytes.len() - used
            ));
        }
        Ok(value)
    }
}

/// Raw bytes, unchanged.
pub struct Bytes;

impl Format for Bytes {
    type Value = Vec<u8>;

    fn encode(value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(value);
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Vec<u8>, String> {
        Ok(bytes.to_vec())
    }
}

/// UTF-8 text.
pub struct Str;

impl Format for Str {
    type Value = String;

    fn encode(value: &String, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<String, String> {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| format!("UTF-8: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Reading {
        ts: String,
        value: i64,
    }

    fn round_trip<F: Format>(v: &F::Value) -> F::Value {
        let mut buf = Vec::new();
        F::encode(v, &mut buf).unwrap();
        F::decode(&buf).unwrap()
    }

    #[test]
    fn every_format_round_trips_and_rejects_garbage() {
        let r = Reading {
            ts: "2024-01-01T00:00:00.000001".into(),
            value: 42,
        };
        assert_eq!(round_trip::<Json<Reading>>(&r), r);
        assert_eq!(round_trip::<Bincode<Reading>>(&r), r);
        assert_eq!(round_trip::<Bytes>(&vec![0, 255]), vec![0, 255]);
        assert_eq!(round_trip::<Str>(&"é".to_string()), "é");
        assert!(Json::<Reading>::decode(b"{\"ts\": 1}").is_err());
        assert!(Bincode::<Reading>::decode(&[0xff]).is_err());
        assert!(Str::decode(&[0xff, 0xfe]).is_err());
        let mut buf = Vec::new();
        Bincode::<u32>::encode(&7, &mut buf).unwrap();
        buf.push(0);
        assert!(Bincode::<u32>::decode(&buf)
            .unwrap_err()
            .contains("trailing"));
    }
}
