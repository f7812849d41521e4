//! The record-batch format, kept byte-compatible with Kafka's v2 record batch (big-endian):
//!
//! ```text
//! off len field
//!   0   8 base_offset            offset of the batch's first record
//!   8   4 batch_length           bytes after this field (total length - 12)
//!  12   4 partition_leader_epoch always 0
//!  16   1 magic                  always 2
//!  17   4 crc                    CRC-32C of bytes 21..end
//!  21   2 attributes             bit 4 transactional, bit 5 control; no compression, create time
//!  23   4 last_offset_delta      last offset - base offset (kept when compaction drops records)
//!  27   8 base_timestamp         timestamp of the first record
//!  35   8 max_timestamp          largest record timestamp
//!  43   8 producer_id            -1, or the transactional producer's id
//!  51   2 producer_epoch         -1, or its epoch
//!  53   4 base_sequence          -1, or the batch's first sequence within its transaction here
//!  57   4 records_count
//!  61   . records
//! ```
//!
//! Each record: `length varint, attributes i8, timestamp_delta varlong, offset_delta varint,
//! key_length varint (-1 null), key, value_length varint (-1 null), value, header_count varint,
//! then per header key_length varint, key (UTF-8), value_length varint (-1 null), value`.
//!
//! A control batch (attributes 0x30) holds one record ending its producer's transaction in the
//! partition: key `version i16 = 0, type i16` (0 abort, 1 commit), value `version i16 = 0,
//! coordinator_epoch i32 = 0`, as Kafka writes its markers.
//!
//! Invariant: the CRC does not cover the base offset, so the appender may assign offsets by patching
//! bytes 0..8 of an encoded batch without re-hashing.

use super::record::{read_bytes, Record, RecordSlot, NULL};
use super::varint::{get_varlong, put_varlong, varlong_len};

/// Bytes before the first record.
pub(crate) const HEADER_LEN: usize = 61;
/// Bytes before `batch_length` counts: base offset and the length field itself.
pub(crate) const LOG_OVERHEAD: usize = 12;
/// Largest batch accepted from disk or produced by an append; bounds every allocation made from an
/// on-disk length.
pub(crate) const MAX_BATCH_BYTES: usize = 64 << 20;
const CRC_START: usize = 21;

/// Attribute bit of a batch written inside a transaction.
pub(crate) const TRANSACTIONAL: u16 = 0x10;
/// Attribute bit of a control batch (a transaction marker).
pub(crate) const CONTROL: u16 = 0x20;

/// A transactional producer: its id and epoch, written into every batch it appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProducerIdentity {
    /// The producer id, given once per transactional id and kept in the data directory.
    pub id: i64,
    /// Its epoch: bumped by every start of the producer, so that an older instance is fenced.
    pub epoch: i16,
}

/// The fixed fields of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub base_offset: u64,
    /// Total bytes of the batch including the 12-byte prefix.
    pub total_len: usize,
    pub crc: u32,
    pub attributes: u16,
    pub last_offset_delta: u32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub count: u32,
}

impl BatchHeader {
    /// Offset of the last record the batch covers.
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    /// Whether the batch was written inside a transaction (markers too).
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL != 0
    }

    /// Whether the batch is a transaction marker.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL != 0
    }

    /// The transactional producer that wrote it, if any.
    pub fn producer(&self) -> Option<ProducerIdentity> {
        self.is_transactional().then_some(ProducerIdentity {
            id: self.producer_id,
            epoch: self.producer_epoch,
        })
    }
}

/// What a transaction marker says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Marker {
    Abort,
    Commit,
}

/// The marker held by a control batch's one record key (`version i16, type i16`).
pub(crate) fn marker_of(key: Option<&[u8]>) -> Result<Marker, String> {
    match key {
        Some([0, 0, 0, 0]) => Ok(Marker::Abort),
        Some([0, 0, 0, 1]) => Ok(Marker::Commit),
        Some(other) => Err(format!(
            "control record key {other:?} is no marker of version 0"
        )),
        None => Err("control record without a key".into()),
    }
}

/// The one record of a control batch holding `marker` (Kafka's layout: key `version i16 = 0,
/// type i16`, value `version i16 = 0, coordinator_epoch i32 = 0`).
pub(crate) fn marker_record(marker: Marker, now_ms: i64) -> Record {
    let kind: i16 = match marker {
        Marker::Abort => 0,
        Marker::Commit => 1,
    };
    let mut key = 0i16.to_be_bytes().to_vec();
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = 0i16.to_be_bytes().to_vec();
    value.extend_from_slice(&0i32.to_be_bytes());
    Record::keyed(key, value).at(now_ms)
}

/// The transactional fields of a batch being encoded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TxnFields {
    pub attributes: u16,
    pub producer: ProducerIdentity,
    pub base_sequence: i32,
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// Parses the fixed header from the first [`HEADER_LEN`] bytes of `b` (which must be that long).
/// Checks the shape, not the CRC.
#[allow(clippy::indexing_slicing)]
pub(crate) fn parse_header(b: &[u8]) -> Result<BatchHeader, String> {
    if b.len() < HEADER_LEN {
        return Err(format!(
            "batch header needs {HEADER_LEN} bytes, {} left",
            b.len()
        ));
    }
    let length = be_u32(b, 8) as usize;
    if b[16] != 2 {
        return Err(match b[16] {
            m if m > 2 => format!(
                "batch format (magic) {m} is newer than this eddy reads (2): use a newer eddy"
            ),
            m => format!("unknown batch magic {m}"),
        });
    }
    if !(HEADER_LEN - LOG_OVERHEAD..=MAX_BATCH_BYTES).contains(&length) {
        return Err(format!("batch length {length} out of bounds"));
    }
    let count = be_u32(b, 57);
    let last_offset_delta = be_u32(b, 23);
    if (count as u64) > u64::from(last_offset_delta) + 1 || last_offset_delta > i32::MAX as u32 {
        return Err(format!(
            "batch claims {count} records over {last_offset_delta} offsets"
        ));
    }
    let base_offset = be_u64(b, 0);
    if base_offset > i64::MAX as u64 {
        return Err(format!("negative base offset {}", base_offset as i64));
    }
    Ok(BatchHeader {
        base_offset,
        total_len: length + LOG_OVERHEAD,
        crc: be_u32(b, 17),
        attributes: u16::from_be_bytes([b[21], b[22]]),
        last_offset_delta,
        base_timestamp: be_u64(b, 27) as i64,
        max_timestamp: be_u64(b, 35) as i64,
        producer_id: be_u64(b, 43) as i64,
        producer_epoch: i16::from_be_bytes([b[51], b[52]]),
        base_sequence: be_u32(b, 53) as i32,
        count,
    })
}

/// Checks the CRC of a whole batch (`batch.len() == header.total_len`).
pub(crate) fn crc_ok(batch: &[u8], header: &BatchHeader) -> bool {
    batch
        .get(CRC_START..)
        .is_some_and(|covered| crc32c::crc32c(covered) == header.crc)
}

/// Encodes records from the front of `records` as one batch at the end of `buf`, with base offset
/// `base_offset`, stopping once the batch reaches `max_bytes` (it always takes at least one
/// record). Records without a timestamp get `now_ms`. Returns the batch header and how many
/// records it took.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn encode_batch(
    buf: &mut Vec<u8>,
    base_offset: u64,
    records: &[Record],
    now_ms: i64,
    max_bytes: usize,
) -> (BatchHeader, usize) {
    encode_batch_with(buf, base_offset, records, now_ms, max_bytes, None)
}

/// [`encode_batch`], inside a transaction when `txn` is given.
pub(crate) fn encode_batch_with(
    buf: &mut Vec<u8>,
    base_offset: u64,
    records: &[Record],
    now_ms: i64,
    max_bytes: usize,
    txn: Option<TxnFields>,
) -> (BatchHeader, usize) {
    let start = buf.len();
    let base_timestamp = records
        .first()
        .map_or(now_ms, |r| r.timestamp.unwrap_or(now_ms));
    put_header(buf, base_offset, 0, base_timestamp, base_timestamp, 0);
    if let Some(t) = txn {
        patch(buf, start + 21, &t.attributes.to_be_bytes());
        patch(buf, start + 43, &t.producer.id.to_be_bytes());
        patch(buf, start + 51, &t.producer.epoch.to_be_bytes());
        patch(buf, start + 53, &t.base_sequence.to_be_bytes());
    }
    let mut max_timestamp = base_timestamp;
    let mut taken = 0usize;
    for record in records {
        if taken > 0 && buf.len() - start >= max_bytes {
            break;
        }
        let ts = record.timestamp.unwrap_or(now_ms);
        max_timestamp = max_timestamp.max(ts);
        encode_record(buf, record, ts.wrapping_sub(base_timestamp), taken as i64);
        taken += 1;
    }
    let count = taken as u32;
    let last_offset_delta = count.saturating_sub(1);
    patch(buf, start + 23, &last_offset_delta.to_be_bytes());
    patch(buf, start + 35, &max_timestamp.to_be_bytes());
    patch(buf, start + 57, &count.to_be_bytes());
    finish_batch(buf, start);
    let (attributes, producer, base_sequence) = match txn {
        Some(t) => (t.attributes, t.producer, t.base_sequence),
        None => (0, ProducerIdentity { id: -1, epoch: -1 }, -1),
    };
    let header = BatchHeader {
        base_offset,
        total_len: buf.len() - start,
        crc: 0,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id: producer.id,
        producer_epoch: producer.epoch,
        base_sequence,
        count,
    };
    (header, taken)
}

fn patch(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// Writes the fixed header with zeroed length and CRC (patched by [`finish_batch`]).
pub(crate) fn put_header(
    buf: &mut Vec<u8>,
    base_offset: u64,
    last_offset_delta: u32,
    base_timestamp: i64,
    max_timestamp: i64,
    count: u32,
) {
    buf.extend_from_slice(&base_offset.to_be_bytes());
    buf.extend_from_slice(&[0u8; 4]); // length
    buf.extend_from_slice(&0u32.to_be_bytes()); // leader epoch
    buf.push(2); // magic
    buf.extend_from_slice(&[0u8; 4]); // crc
    buf.extend_from_slice(&0u16.to_be_bytes()); // attributes
    buf.extend_from_slice(&last_offset_delta.to_be_bytes());
    buf.extend_from_slice(&base_timestamp.to_be_bytes());
    buf.extend_from_slice(&max_timestamp.to_be_bytes());
    buf.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    buf.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    buf.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    buf.extend_from_slice(&count.to_be_bytes());
}

/// Re-encodes a batch keeping only some of its records, each with its original offset and
/// timestamp; base offset, base timestamp and last offset delta stay those of `original`.
pub(crate) fn encode_subset(buf: &mut Vec<u8>, original: &BatchHeader, kept: &[(u64, Record)]) {
    let start = buf.len();
    let max_timestamp = kept
        .iter()
        .filter_map(|(_, r)| r.timestamp)
        .max()
        .unwrap_or(original.base_timestamp);
    put_header(
        buf,
        original.base_offset,
        original.last_offset_delta,
        original.base_timestamp,
        max_timestamp,
        kept.len() as u32,
    );
    // A transactional batch stays one: its producer's fields go with the records kept.
    patch(buf, start + 21, &original.attributes.to_be_bytes());
    patch(buf, start + 43, &original.producer_id.to_be_bytes());
    patch(buf, start + 51, &original.producer_epoch.to_be_bytes());
    patch(buf, start + 53, &original.base_sequence.to_be_bytes());
    for (offset, r) in kept {
        let ts = r.timestamp.unwrap_or(original.base_timestamp);
        encode_record(
            buf,
            r,
            ts - original.base_timestamp,
            (offset - original.base_offset) as i64,
        );
    }
    finish_batch(buf, start);
}

/// Patches the length and CRC of the batch that starts at `buf[start]` and runs to the end.
#[allow(clippy::indexing_slicing)]
pub(crate) fn finish_batch(buf: &mut [u8], start: usize) {
    let length = (buf.len() - start - LOG_OVERHEAD) as u32;
    buf[start + 8..start + 12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&buf[start + CRC_START..]);
    buf[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
}

fn bytes_len(b: Option<&[u8]>) -> usize {
    match b {
        Some(b) => varlong_len(b.len() as i64) + b.len(),
        None => 1,
    }
}

pub(crate) fn put_bytes(buf: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varlong(buf, b.len() as i64);
            buf.extend_from_slice(b);
        }
        None => put_varlong(buf, -1),
    }
}

/// Encodes one record with the given deltas (used by appends and by compaction, which keeps each
/// surviving record's original offset delta).
#[inline]
pub(crate) fn encode_record(buf: &mut Vec<u8>, record: &Record, ts_delta: i64, offset_delta: i64) {
    let key = record.key.as_deref();
    let value = record.value.as_deref();
    let body_len = 1
        + varlong_len(ts_delta)
        + varlong_len(offset_delta)
        + bytes_len(key)
        + bytes_len(value)
        + varlong_len(record.headers.len() as i64)
        + record
            .headers
            .iter()
            .map(|h| bytes_len(Some(h.key.as_bytes())) + bytes_len(h.value.as_deref()))
            .sum::<usize>();
    buf.reserve(body_len + 5);
    put_varlong(buf, body_len as i64);
    buf.push(0);
    put_varlong(buf, ts_delta);
    put_varlong(buf, offset_delta);
    put_bytes(buf, key);
    put_bytes(buf, value);
    put_varlong(buf, record.headers.len() as i64);
    for h in &record.headers {
        put_bytes(buf, Some(h.key.as_bytes()));
        put_bytes(buf, h.value.as_deref());
    }
}

/// Decodes the records of the batch at `buf[start..start + header.total_len]` (CRC already checked)
/// and pushes those with offset `>= min_offset` to `out`, stopping once `out` holds `limit` slots.
pub(crate) fn decode_records(
    buf: &[u8],
    start: usize,
    header: &BatchHeader,
    min_offset: u64,
    limit: usize,
    out: &mut Vec<RecordSlot>,
) -> Result<(), String> {
    let end = start + header.total_len;
    let batch = buf.get(..end).ok_or("batch runs past the buffer")?;
    let mut pos = start + HEADER_LEN;
    let mut last_delta: i64 = -1;
    for i in 0..header.count {
        let bad = |what: &str| {
            format!(
                "record {i} of batch at offset {}: {what}",
                header.base_offset
            )
        };
        let len = get_varlong(batch, &mut pos).ok_or_else(|| bad("bad length"))?;
        let len = usize::try_from(len).map_err(|_| bad("negative length"))?;
        let rec_end = pos
            .checked_add(len)
            .filter(|e| *e <= end)
            .ok_or_else(|| bad("overruns batch"))?;
        let rec = batch.get(..rec_end).ok_or_else(|| bad("overruns batch"))?;
        pos += 1; // attributes
        let ts_delta = get_varlong(rec, &mut pos).ok_or_else(|| bad("bad timestamp"))?;
        let offset_delta = get_varlong(rec, &mut pos).ok_or_else(|| bad("bad offset delta"))?;
        if offset_delta <= last_delta || offset_delta > i64::from(header.last_offset_delta) {
            return Err(bad("offset delta out of order"));
        }
        last_delta = offset_delta;
        let key = slot_part(rec, &mut pos).ok_or_else(|| bad("bad key"))?;
        let value = slot_part(rec, &mut pos).ok_or_else(|| bad("bad value"))?;
        let header_count = get_varlong(rec, &mut pos).ok_or_else(|| bad("bad header count"))?;
        let header_count = u32::try_from(header_count).map_err(|_| bad("bad header count"))?;
        let headers_start = pos;
        for _ in 0..header_count {
            let key = read_bytes(rec, &mut pos)
                .flatten()
                .ok_or_else(|| bad("bad header key"))?;
            std::str::from_utf8(key).map_err(|_| bad("header key is not UTF-8"))?;
            read_bytes(rec, &mut pos).ok_or_else(|| bad("bad header value"))?;
        }
        if pos != rec_end {
            return Err(bad("length does not match contents"));
        }
        let offset = header.base_offset + offset_delta as u64;
        if offset >= min_offset {
            if out.len() >= limit {
                return Ok(());
            }
            out.push(RecordSlot {
                offset,
                timestamp: header.base_timestamp.wrapping_add(ts_delta),
                key,
                value,
                headers: (headers_start as u32, rec_end as u32, header_count),
            });
        }
    }
    if pos != end {
        return Err(format!(
            "batch at offset {} has trailing bytes",
            header.base_offset
        ));
    }
    Ok(())
}

fn slot_part(rec: &[u8], pos: &mut usize) -> Option<(u32, u32)> {
    match read_bytes(rec, pos)? {
        None => Some((NULL, NULL)),
        Some(b) => Some(((*pos - b.len()) as u32, *pos as u32)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record::RecordView;

    fn sample() -> Vec<Record> {
        vec![
            Record::keyed("k1", "v1").at(1_000).with_header("h", "x"),
            Record {
                key: None,
                value: None,
                timestamp: Some(900),
                headers: vec![],
            },
            Record::value(vec![0u8; 300]).at(2_000),
        ]
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let mut buf = Vec::new();
        let (h, taken) = encode_batch(&mut buf, 42, &sample(), 0, usize::MAX);
        assert_eq!(taken, 3);
        let parsed = parse_header(&buf).unwrap();
        assert_eq!(parsed.base_offset, 42);
        assert_eq!(parsed.total_len, buf.len());
        assert_eq!(parsed.count, 3);
        assert_eq!(parsed.last_offset(), 44);
        assert_eq!(parsed.max_timestamp, 2_000);
        assert_eq!(h.total_len, buf.len());
        assert!(crc_ok(&buf, &parsed));
        let mut slots = Vec::new();
        decode_records(&buf, 0, &parsed, 43, usize::MAX, &mut slots).unwrap();
        assert_eq!(slots.len(), 2);
        let views: Vec<_> = slots
            .iter()
            .map(|s| RecordView::from_slot(&buf, s))
            .collect();
        assert_eq!(views[0].offset, 43);
        assert_eq!(views[0].timestamp, 900);
        assert_eq!(views[0].key, None);
        assert_eq!(views[0].value, None);
        assert_eq!(views[1].value.map(<[u8]>::len), Some(300));
        let mut all = Vec::new();
        decode_records(&buf, 0, &parsed, 0, usize::MAX, &mut all).unwrap();
        let first = RecordView::from_slot(&buf, &all[0]);
        assert_eq!(first.to_record(), sample()[0]);
        assert_eq!(first.header("h"), Some(&b"x"[..]));
    }

    #[test]
    fn crc_detects_a_flipped_byte_and_ignores_base_offset() {
        let mut buf = Vec::new();
        encode_batch(&mut buf, 0, &sample(), 0, usize::MAX);
        buf[0..8].copy_from_slice(&7u64.to_be_bytes());
        let h = parse_header(&buf).unwrap();
        assert!(crc_ok(&buf, &h), "base offset is outside the CRC");
        buf[HEADER_LEN + 3] ^= 0x40;
        assert!(!crc_ok(&buf, &h));
    }

    #[test]
    fn rejects_bad_shapes() {
        let mut buf = Vec::new();
        encode_batch(&mut buf, 0, &sample(), 0, usize::MAX);
        let mut bad_magic = buf.clone();
        bad_magic[16] = 1;
        assert!(parse_header(&bad_magic).is_err());
        let mut huge = buf.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_header(&huge).is_err());
        assert!(parse_header(&buf[..30]).is_err());
    }

    #[test]
    fn batches_stop_near_the_byte_limit() {
        let records: Vec<Record> = (0..100)
            .map(|i| Record::value(vec![i as u8; 100]))
            .collect();
        let mut buf = Vec::new();
        let (h, taken) = encode_batch(&mut buf, 0, &records, 0, 1000);
        assert!((8..=10).contains(&taken), "{taken}");
        assert_eq!(h.count as usize, taken);
        assert!(crc_ok(&buf, &parse_header(&buf).unwrap()));
        let (_, one) = encode_batch(&mut Vec::new(), 0, &records, 0, 1);
        assert_eq!(one, 1, "at least one record");
    }

    #[test]
    fn layout_matches_kafka_offsets() {
        let mut buf = Vec::new();
        encode_batch(&mut buf, 5, &[Record::value("a").at(7)], 0, usize::MAX);
        assert_eq!(&buf[0..8], &5u64.to_be_bytes());
        assert_eq!(buf[16], 2);
        assert_eq!(&buf[27..35], &7i64.to_be_bytes());
        assert_eq!(&buf[43..51], &(-1i64).to_be_bytes());
        assert_eq!(&buf[57..61], &1u32.to_be_bytes());
        // record: length 7, attrs 0, ts delta 0, offset delta 0, key null (0x01), value len 1 (0x02),
        // 'a', 0 headers.
        assert_eq!(&buf[61..], &[0x0e, 0, 0, 0, 0x01, 0x02, b'a', 0]);
    }
}
