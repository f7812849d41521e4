//! How bytes from the log are shown: JSON pretty-printed, other UTF-8 as text, anything else as
//! hex; cut to a length, with the full length kept. Rendering produces plain strings: escaping
//! for HTML is the pages' job (maud escapes every string it is given).

use serde::Serialize;

/// Bytes of a key, value or header, ready to show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rendered {
    /// `json`, `text` or `hex`.
    pub kind: &'static str,
    /// The shown form (pretty JSON, the text, or hex digits), possibly cut.
    pub text: String,
    /// Length of the stored bytes.
    pub len: usize,
    /// Whether `text` shows only the first bytes.
    pub truncated: bool,
}

/// `bytes` shown as JSON (objects and arrays, pretty-printed), text or hex, from at most `max`
/// of them.
pub fn render_bytes(bytes: &[u8], max: usize) -> Rendered {
    let truncated = bytes.len() > max;
    let shown = &bytes[..bytes.len().min(max)];
    if !truncated {
        let first = shown.iter().find(|b| !b.is_ascii_whitespace());
        if matches!(first, Some(b'{' | b'[')) {
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(shown) {
                if let Ok(text) = serde_json::to_string_pretty(&value) {
                    return Rendered {
                        kind: "json",
                        text,
                        len: bytes.len(),
                        truncated,
                    };
                }
            }
        }
    }
    match std::str::from_utf8(shown) {
        Ok(text) if is_printable(text) => Rendered {
            kind: "text",
            text: text.to_owned(),
            len: bytes.len(),
            truncated,
        },
        // A cut in the middle of a character leaves valid text up to it.
        Err(e) if truncated && e.error_len().is_none() && e.valid_up_to() > 0 => {
            let text = String::from_utf8_lossy(&shown[..e.valid_up_to()]).into_owned();
            if is_printable(&text) {
                return Rendered {
                    kind: "text",
                    text,
                    len: bytes.len(),
                    truncated,
                };
            }
            hex(shown, bytes.len(), truncated)
        }
        _ => hex(shown, bytes.len(), truncated),
    }
}

fn is_printable(text: &str) -> bool {
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}

fn hex(shown: &[u8], len: usize, truncated: bool) -> Rendered {
    let mut text = String::with_capacity(shown.len() * 3);
    for (i, b) in shown.iter().enumerate() {
        if i > 0 {
            text.push(if i % 16 == 0 { '\n' } else { ' ' });
        }
        text.push_str(&format!("{b:02x}"));
    }
    Rendered {
        kind: "hex",
        text,
        len,
        truncated,
    }
}

/// `ms` since the epoch as RFC 3339 UTC with milliseconds, or the number when out of range.
pub fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// A byte count with a binary unit: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The number at `path` (dot-separated object keys, e.g. `temperature.mean`) in a JSON value.
pub fn number_at(value: &serde_json::Value, path: &str) -> Option<f64> {
    path.split('.')
        .try_fold(value, |v, key| v.get(key))
        .and_then(serde_json::Value::as_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_objects_are_pretty_printed_and_other_bytes_keep_their_form() {
        let json = render_bytes(br#"{"a":{"b":1}}"#, 100);
        assert_eq!(json.kind, "json");
        assert!(json.text.contains("\n  \"a\": {"), "{}", json.text);
        assert_eq!(render_bytes(b"plain 42", 100).kind, "text");
        assert_eq!(render_bytes(b"42", 100).text, "42");
        let binary = render_bytes(&[0, 1, 0xff], 100);
        assert_eq!((binary.kind, binary.text.as_str()), ("hex", "00 01 ff"));
    }

    #[test]
    fn long_values_are_cut_and_keep_their_length() {
        let long = "é".repeat(100);
        let r = render_bytes(long.as_bytes(), 11);
        assert!(r.truncated);
        assert_eq!(r.len, 200);
        assert_eq!(r.text, "é".repeat(5), "cut at a character boundary");
        let json = render_bytes(format!("{{\"v\":\"{}\"}}", "x".repeat(50)).as_bytes(), 20);
        assert_eq!(json.kind, "text", "a cut JSON document is shown as text");
    }

    #[test]
    fn numbers_are_found_by_dotted_paths() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"temperature":{"mean":21.5},"n":3}"#).expect("json");
        assert_eq!(number_at(&v, "temperature.mean"), Some(21.5));
        assert_eq!(number_at(&v, "n"), Some(3.0));
        assert_eq!(number_at(&v, "temperature"), None);
        assert_eq!(number_at(&v, "missing.x"), None);
    }
}
