//! How `eddy consume` prints a record: plain text, one JSON object, or a format string in the
//! manner of rpk's `--format` (`'%k %v %T\n'`).

use std::io::Write;

use crate::RecordView;

/// A parsed `--format` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// The value as text (with --print-key: key, tab, value).
    Plain,
    /// One JSON object per record: topic, partition, offset, timestamp, key, value, headers.
    /// A value that is JSON is written as JSON; other values as text, or as `{"hex": ...}`.
    Json,
    /// A format string's pieces.
    Template(Vec<Piece>),
}

/// One piece of a format string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Timestamp,
    Key,
    KeyLength,
    Value,
    ValueLength,
    Headers,
}

/// The directives a format string knows, for messages.
const DIRECTIVES: &str = "%t topic, %p partition, %o offset, %T timestamp (ms), %k key, \
    %K key length, %v value, %V value length, %h headers, %% a percent sign; \
    escapes \\n \\t \\r \\\\";

impl std::str::FromStr for Output {
    type Err = String;

    fn from_str(s: &str) -> Result<Output, String> {
        match s {
            "plain" => return Ok(Output::Plain),
            "json" => return Ok(Output::Json),
            _ => {}
        }
        if !s.contains('%') {
            return Err(format!(
                "{s:?} is neither plain, json nor a format string (which uses {DIRECTIVES})"
            ));
        }
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            let piece = match c {
                '%' => match chars.next() {
                    Some('%') => {
                        text.push(b'%');
                        continue;
                    }
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('T') => Piece::Timestamp,
                    Some('k') => Piece::Key,
                    Some('K') => Piece::KeyLength,
                    Some('v') => Piece::Value,
                    Some('V') => Piece::ValueLength,
                    Some('h') => Piece::Headers,
                    other => {
                        let found = other.map_or("a lone %".to_owned(), |o| format!("%{o}"));
                        return Err(format!(
                            "format {s:?}: unknown directive {found}; known: {DIRECTIVES}"
                        ));
                    }
                },
                '\\' => {
                    let escaped = match chars.next() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('\\') => '\\',
                        Some(other) => {
                            text.push(b'\\');
                            other
                        }
                        None => '\\',
                    };
                    let mut buf = [0; 4];
                    text.extend_from_slice(escaped.encode_utf8(&mut buf).as_bytes());
                    continue;
                }
                other => {
                    let mut buf = [0; 4];
                    text.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                    continue;
                }
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Output::Template(pieces))
    }
}

fn text_or_hex(bytes: Option<&[u8]>) -> serde_json::Value {
    match bytes {
        None => serde_json::Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => serde_json::Value::String(s.to_owned()),
            Err(_) => {
                serde_json::json!({ "hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>() })
            }
        },
    }
}

/// A value that parses as JSON as that JSON; otherwise as [`text_or_hex`].
fn json_or_text(bytes: Option<&[u8]>) -> serde_json::Value {
    bytes
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or_else(|| text_or_hex(bytes))
}

/// Writes one record of `topic`/`partition` as `output` says; `print_key` applies to plain.
pub(crate) fn write_record(
    out: &mut impl Write,
    output: &Output,
    print_key: bool,
    topic: &str,
    partition: u32,
    r: &RecordView<'_>,
) -> std::io::Result<()> {
    match output {
        Output::Plain => {
            if print_key {
                out.write_all(r.key.unwrap_or_default())?;
                out.write_all(b"\t")?;
            }
            out.write_all(r.value.unwrap_or(b"null"))?;
            out.write_all(b"\n")
        }
        Output::Json => {
            let headers: serde_json::Map<String, serde_json::Value> = r
                .headers()
                .map(|(k, v)| (k.to_owned(), text_or_hex(v)))
                .collect();
            let doc = serde_json::json!({
                "topic": topic,
                "partition": partition,
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": text_or_hex(r.key),
                "value": json_or_text(r.value),
                "headers": headers,
            });
            writeln!(out, "{doc}")
        }
        Output::Template(pieces) => {
            for piece in pieces {
                match piece {
                    Piece::Text(t) => out.write_all(t)?,
                    Piece::Topic => out.write_all(topic.as_bytes())?,
                    Piece::Partition => write!(out, "{partition}")?,
                    Piece::Offset => write!(out, "{}", r.offset)?,
                    Piece::Timestamp => write!(out, "{}", r.timestamp)?,
                    Piece::Key => out.write_all(r.key.unwrap_or_default())?,
                    Piece::KeyLength => write!(out, "{}", r.key.map_or(0, <[u8]>::len))?,
                    Piece::Value => out.write_all(r.value.unwrap_or_default())?,
                    Piece::ValueLength => write!(out, "{}", r.value.map_or(0, <[u8]>::len))?,
                    Piece::Headers => {
                        for (i, (k, v)) in r.headers().enumerate() {
                            if i > 0 {
                                out.write_all(b",")?;
                            }
                            out.write_all(k.as_bytes())?;
                            out.write_all(b"=")?;
                            out.write_all(v.unwrap_or_default())?;
                        }
                    }
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_strings_parse_into_pieces_with_escapes() {
        let parsed: Output = "%k=%v @%T\\n%%".parse().unwrap();
        assert_eq!(
            parsed,
            Output::Template(vec![
                Piece::Key,
                Piece::Text(b"=".to_vec()),
                Piece::Value,
                Piece::Text(b" @".to_vec()),
                Piece::Timestamp,
                Piece::Text(b"\n%".to_vec()),
            ])
        );
        assert_eq!("json".parse::<Output>().unwrap(), Output::Json);
        let e = "%k %q".parse::<Output>().unwrap_err();
        assert!(e.contains("%q") && e.contains("%k key"), "{e}");
        let e = "yaml".parse::<Output>().unwrap_err();
        assert!(e.contains("neither plain, json"), "{e}");
    }

    #[test]
    fn json_values_stay_json_and_other_values_become_text() {
        assert_eq!(
            json_or_text(Some(b"{\"a\":1}")),
            serde_json::json!({"a": 1})
        );
        assert_eq!(
            json_or_text(Some(b"not json")),
            serde_json::json!("not json")
        );
        assert_eq!(
            json_or_text(Some(&[0xff, 0x00])),
            serde_json::json!({"hex": "ff00"})
        );
        assert_eq!(json_or_text(None), serde_json::Value::Null);
    }
}
