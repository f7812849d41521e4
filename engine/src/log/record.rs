//! Records as callers see them: an owned [`Record`] for appends and a borrowed [`RecordView`] for
//! reads, which points into the bytes a fetch returned and copies nothing.

use super::varint::get_varlong;

/// One header of a record: a UTF-8 key and an optional byte value, as in Kafka.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Header value; `None` is a null value.
    pub value: Option<Vec<u8>>,
}

/// A record to append. `value: None` is a tombstone (deletes the key in a compacted topic);
/// `timestamp: None` takes the append time (milliseconds since the Unix epoch).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Record {
    /// Partitioning and compaction key.
    pub key: Option<Vec<u8>>,
    /// Payload; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Event or create time in ms since the epoch; `None` stamps the append time.
    pub timestamp: Option<i64>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

impl Record {
    /// A record with only a value.
    pub fn value(value: impl Into<Vec<u8>>) -> Self {
        Record {
            value: Some(value.into()),
            ..Record::default()
        }
    }

    /// A record with a key and a value.
    pub fn keyed(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Record {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Record::default()
        }
    }

    /// Sets the timestamp (ms since the epoch).
    pub fn at(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }
}

/// Where one decoded record's parts sit inside a fetch buffer. `NULL` marks an absent key or value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordSlot {
    pub offset: u64,
    pub timestamp: i64,
    pub key: (u32, u32),
    pub value: (u32, u32),
    /// Start and end of the encoded headers, and how many there are.
    pub headers: (u32, u32, u32),
}

pub(crate) const NULL: u32 = u32::MAX;

/// A record read from the log, borrowing the fetch it came from.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    /// The record's offset in its partition.
    pub offset: u64,
    /// Timestamp in ms since the epoch.
    pub timestamp: i64,
    /// Key, if any.
    pub key: Option<&'a [u8]>,
    /// Value; `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: u32,
}

impl<'a> RecordView<'a> {
    pub(crate) fn from_slot(buf: &'a [u8], slot: &RecordSlot) -> Self {
        let part = |(start, end): (u32, u32)| {
            (start != NULL).then(|| buf.get(start as usize..end as usize).unwrap_or_default())
        };
        RecordView {
            offset: slot.offset,
            timestamp: slot.timestamp,
            key: part(slot.key),
            value: part(slot.value),
            headers: buf
                .get(slot.headers.0 as usize..slot.headers.1 as usize)
                .unwrap_or_default(),
            header_count: slot.headers.2,
        }
    }

    /// The record's headers, in order. Their encoding was checked when the batch was decoded.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        let buf = self.headers;
        let mut pos = 0usize;
        (0..self.header_count).map_while(move |_| {
            let key = read_bytes(buf, &mut pos)??;
            let value = read_bytes(buf, &mut pos)?;
            Some((std::str::from_utf8(key).ok()?, value))
        })
    }

    /// The value of the first header named `key`.
    pub fn header(&self, key: &str) -> Option<&'a [u8]> {
        self.headers().find(|(k, _)| *k == key).and_then(|(_, v)| v)
    }

    /// Copies the view into an owned [`Record`] (offset dropped, timestamp kept).
    pub fn to_record(&self) -> Record {
        Record {
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            timestamp: Some(self.timestamp),
            headers: self
                .headers()
                .map(|(k, v)| Header {
                    key: k.to_owned(),
                    value: v.map(<[u8]>::to_vec),
                })
                .collect(),
        }
    }
}

/// Reads a length-prefixed (zig-zag varint, -1 = null) byte string. Outer `None`: malformed.
pub(crate) fn read_bytes<'b>(buf: &'b [u8], pos: &mut usize) -> Option<Option<&'b [u8]>> {
    let len = get_varlong(buf, pos)?;
    if len == -1 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    let end = pos.checked_add(len)?;
    let bytes = buf.get(*pos..end)?;
    *pos = end;
    Some(Some(bytes))
}
