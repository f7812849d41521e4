//! Entry points of the fuzz targets in `fuzz/` (feature `fuzzing`; not part of the API). Each takes
//! arbitrary bytes, feeds them to one of the decoders of what eddy reads from disk or from users,
//! and checks what must hold whatever the bytes: no panic, damage reported as an error rather than
//! read as wrong data, and nothing stored lost by an error.
//!
//! File-based targets work in a scratch directory per process under `std::env::temp_dir()` (run
//! them with `TMPDIR` on a tmpfs). Where random bytes would almost never get past a CRC, the input
//! is read as edits to a valid file instead (first byte odd), with an option to re-seal the CRCs
//! so that the decoders behind them are reached.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::groups::offsets::OffsetsFile;
use crate::log::batch;
use crate::log::record::RecordSlot;
use crate::log::tail::{Tail, TailFile};
use crate::{Durability, Log, LogError, Record, RecordView, TopicConfig};

/// One stored record as a reader returns it, for comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stored {
    offset: u64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Stored {
    fn of(r: &RecordView<'_>) -> Stored {
        Stored {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            headers: r
                .headers()
                .map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec)))
                .collect(),
        }
    }
}

/// Reads from the next byte of fuzz input, zero once it is used up.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        *first
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A directory of this process for `target`, emptied.
fn scratch(target: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eddy-fuzz-{}-{target}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir).expect("scratch directory can be emptied");
    }
    fs::create_dir_all(&dir).expect("scratch directory can be made");
    dir
}

fn small_topic() -> TopicConfig {
    TopicConfig {
        durability: Durability::None,
        segment_bytes: 2048,
        index_interval_bytes: 128,
        segment_ms: None,
        ..TopicConfig::default()
    }
}

/// Records made from fuzz input: a few batches' worth, timestamps jittered (some backwards).
fn records_from(input: &mut Bytes<'_>, count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| {
            let shape = input.u8();
            let ts = 1_000 * i as i64 + i64::from(input.u8() as i8) * 7;
            let mut r = Record::keyed(
                format!("k{}", shape % 5),
                vec![b'v'; usize::from(shape % 40)],
            );
            if shape & 0x40 != 0 {
                r.value = None;
            }
            if shape & 0x80 != 0 {
                r = r.with_header("h", vec![shape]);
            }
            r.at(ts)
        })
        .collect()
}

/// Applies edits from `input` to `bytes`: overwrites, truncations, appended garbage, and
/// re-sealing of every batch's length-consistent CRC. Returns whether CRCs were resealed.
fn edit_log(bytes: &mut Vec<u8>, input: &mut Bytes<'_>) -> bool {
    let mut resealed = false;
    while !input.is_empty() {
        let (op, at, value) = (input.u8(), usize::from(input.u16()), input.u8());
        match op % 4 {
            0 | 1 if !bytes.is_empty() => {
                let at = at % bytes.len();
                bytes[at] = if op % 4 == 0 {
                    value
                } else {
                    bytes[at] ^ (1 << (value % 8))
                };
            }
            2 if !bytes.is_empty() => bytes.truncate(at % bytes.len()),
            3 if value & 1 == 0 => bytes.extend(std::iter::repeat_n(value, at % 97)),
            _ => {
                reseal_crcs(bytes);
                resealed = true;
            }
        }
    }
    resealed
}

/// Applies edits from `input` to `bytes`: `(at u16, value u8)` pairs, each overwriting a byte, or
/// cutting the file there when the value is 0xff.
fn overwrite_or_cut(bytes: &mut Vec<u8>, input: &mut Bytes<'_>) {
    while !input.is_empty() {
        let (at, value) = (usize::from(input.u16()), input.u8());
        match bytes.len() {
            0 => break,
            len if value == 0xff => bytes.truncate(at % len),
            len => bytes[at % len] = value,
        }
    }
}

/// Rewrites the CRC of every batch whose header parses, walking batch by batch.
fn reseal_crcs(bytes: &mut [u8]) {
    let mut at = 0;
    while let Some(header) = bytes.get(at..).and_then(|b| batch::parse_header(b).ok()) {
        let Some(end) = at
            .checked_add(header.total_len)
            .filter(|e| *e <= bytes.len())
        else {
            return;
        };
        batch::finish_batch(&mut bytes[..end], at);
        at = end;
    }
}

/// Everything a reader returns from offset 0 on, or the first error.
fn read_all(log: &Log, topic: &str) -> Result<Vec<Stored>, LogError> {
    let mut reader = log.topic(topic)?.reader(0)?;
    let mut out = Vec::new();
    let mut next = reader.log_start_offset()?;
    loop {
        let fetch = reader.read(next, 1000, 1 << 20)?;
        if fetch.is_empty() {
            return Ok(out);
        }
        out.extend(fetch.iter().map(|r| Stored::of(&r)));
        assert!(
            fetch.next_offset() > next,
            "a read from {next} moves forward: {} records, next {}, first {:?}",
            fetch.len(),
            fetch.next_offset(),
            fetch.iter().next().map(|r| r.offset)
        );
        next = fetch.next_offset();
    }
}

fn assert_ascending(records: &[Stored]) {
    assert!(
        records.windows(2).all(|w| w[0].offset < w[1].offset),
        "offsets ascend"
    );
}

/// Every file in `dir` (a partition directory: files only) with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_in(dir)
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).expect("file reads");
            (path, bytes)
        })
        .collect()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .expect("scratch directory lists")
        .map(|entry| entry.expect("entry").path())
        .collect()
}

/// Puts `dir`'s files back as `files` holds them, removing any other.
fn restore(dir: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) {
    for path in files_in(dir) {
        if !files.contains_key(&path) {
            fs::remove_file(path).expect("file removes");
        }
    }
    for (path, bytes) in files {
        fs::write(path, bytes).expect("file writes");
    }
}

/// A record batch: header, CRC and records decoded from arbitrary bytes; what decodes encodes
/// back to the same records. With the first byte odd, the rest is the records' bytes behind a
/// header that fits them (count from the second byte), so that the record decoder is reached.
pub fn record_batch(data: &[u8]) {
    let framed;
    let data = match data.split_first() {
        Some((mode, rest)) if mode & 1 == 1 => {
            let (count, body) = rest.split_first().unwrap_or((&0, &[]));
            let count = u32::from(*count % 16);
            let mut bytes = Vec::with_capacity(batch::HEADER_LEN + body.len());
            batch::put_header(&mut bytes, 7, count.saturating_sub(1), 1_000, 1_000, count);
            bytes.extend_from_slice(body);
            batch::finish_batch(&mut bytes, 0);
            framed = bytes;
            &framed[..]
        }
        _ => data,
    };
    let Ok(header) = batch::parse_header(data) else {
        return;
    };
    let _ = batch::crc_ok(data.get(..header.total_len).unwrap_or(data), &header);
    let mut slots: Vec<RecordSlot> = Vec::new();
    if batch::decode_records(data, 0, &header, 0, usize::MAX, &mut slots).is_err() {
        return;
    }
    assert!(slots.len() <= header.count as usize);
    let views: Vec<RecordView<'_>> = slots
        .iter()
        .map(|s| RecordView::from_slot(data, s))
        .collect();
    let records: Vec<Record> = views.iter().map(RecordView::to_record).collect();
    let mut again = Vec::new();
    let (encoded, taken) =
        batch::encode_batch(&mut again, header.base_offset, &records, 0, usize::MAX);
    assert_eq!(taken, records.len());
    let reparsed = batch::parse_header(&again).expect("an encoded batch parses");
    assert!(batch::crc_ok(&again, &reparsed));
    assert_eq!(reparsed.total_len, encoded.total_len);
    let mut slots_again = Vec::new();
    batch::decode_records(&again, 0, &reparsed, 0, usize::MAX, &mut slots_again)
        .expect("an encoded batch decodes");
    let decoded_again: Vec<Record> = slots_again
        .iter()
        .map(|s| RecordView::from_slot(&again, s).to_record())
        .collect();
    assert_eq!(decoded_again, records);
}

const SEGMENT_TOPIC: &str = "segment";

/// A partition whose only segment holds the input (raw bytes, or edits of a valid log). Reading it
/// without an appender never panics; opening the appender either refuses and leaves the segment's
/// bytes as they were, or recovers a log that reads back whole, in order, and takes a new append
/// at its end.
pub fn segment_recovery(data: &[u8]) {
    static LOG: OnceLock<(PathBuf, Log)> = OnceLock::new();
    let (dir, log) = LOG.get_or_init(|| {
        let dir = scratch("segment");
        let log = Log::open(&dir).expect("scratch log opens");
        log.create_topic(SEGMENT_TOPIC, small_topic())
            .expect("topic");
        (dir, log)
    });
    let partition = dir.join("topics").join(SEGMENT_TOPIC).join("0");
    for entry in fs::read_dir(&partition).expect("partition lists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some() {
            fs::remove_file(&path).expect("segment file removes");
        }
    }
    let mut input = Bytes(data);
    let mode = input.u8();
    // Raw bytes and resealed edits may hold batches whose CRC holds over records that do not
    // decode: recovery checks batches, not records, so readers may report those as corrupt.
    let (bytes, crc_checked) = if mode & 1 == 0 {
        (input.0.to_vec(), false)
    } else {
        let mut bytes = Vec::new();
        let mut offset = 0;
        for _ in 0..input.u8() % 6 + 1 {
            let count = usize::from(input.u8() % 5 + 1);
            let records = records_from(&mut input, count);
            let (header, _) = batch::encode_batch(&mut bytes, offset, &records, 0, usize::MAX);
            offset = header.last_offset() + 1;
        }
        let resealed = edit_log(&mut bytes, &mut input);
        (bytes, !resealed)
    };
    let segment = partition.join(format!("{:020}.log", 0));
    fs::write(&segment, &bytes).expect("segment writes");
    let tail = Tail {
        active_base: 0,
        position: 0,
        next_offset: 0,
        last_stable: None,
    };
    let tail_file = TailFile::open(&partition.join("tail"), tail).expect("tail opens");
    tail_file.publish(tail);
    tail_file.set_closed(false).expect("tail resets");
    drop(tail_file);

    if let Ok(records) = read_all(log, SEGMENT_TOPIC) {
        assert_ascending(&records);
    }
    let topic = log.topic(SEGMENT_TOPIC).expect("topic opens");
    let writer = match topic.writer(0) {
        Ok(writer) => writer,
        Err(_) => {
            let now = fs::read(&segment).expect("segment reads");
            assert!(
                now == bytes,
                "a refused recovery leaves the segment as it was"
            );
            return;
        }
    };
    let end = writer.end_offset();
    let recovered = match read_all(log, SEGMENT_TOPIC) {
        Ok(recovered) => recovered,
        Err(LogError::Corrupt { .. }) if !crc_checked => return,
        Err(e) => panic!("a recovered log reads back: {e}"),
    };
    assert_ascending(&recovered);
    assert!(recovered.last().is_none_or(|r| r.offset < end));
    let appended = writer
        .append(&[Record::value("after recovery")])
        .expect("a recovered log takes appends");
    assert_eq!(appended.base_offset, end);
    let fetch = topic
        .reader(0)
        .and_then(|mut r| r.read(end, 10, 1 << 20))
        .expect("the append reads back");
    let offsets: Vec<u64> = fetch.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [end]);
}

/// A partition of several sealed segments written once per process, and what it holds.
struct Written {
    dir: PathBuf,
    log: Log,
    files: BTreeMap<PathBuf, Vec<u8>>,
    records: Vec<Stored>,
}

fn written(target: &str, topic: &str, count: usize) -> Written {
    let dir = scratch(target);
    let log = Log::open(&dir).expect("scratch log opens");
    let t = log.create_topic(topic, small_topic()).expect("topic");
    let mut input = Bytes(&[]);
    let writer = t.writer(0).expect("writer");
    for chunk in records_from(&mut input, count).chunks(7) {
        let mut chunk = chunk.to_vec();
        for (i, r) in chunk.iter_mut().enumerate() {
            // Timestamps that go back now and then, as real producers' do.
            r.timestamp = r.timestamp.map(|t| t * 3 - (i as i64 % 3) * 1_500);
            r.value = Some(vec![b'x'; 20 + i]);
        }
        writer.append(&chunk).expect("append");
    }
    drop(writer);
    drop(t);
    let records = read_all(&log, topic).expect("written log reads");
    assert_eq!(records.len(), count);
    let files = snapshot(&dir.join("topics").join(topic).join("0"));
    Written {
        dir,
        log,
        files,
        records,
    }
}

/// The first stored offset with a timestamp at or after `ts`, in offset order.
fn first_at_or_after(records: &[Stored], ts: i64) -> Option<u64> {
    records.iter().find(|r| r.timestamp >= ts).map(|r| r.offset)
}

const INDEX_TOPIC: &str = "indexed";

/// Damaged offset and time indexes of sealed segments: every read by offset and by time still
/// returns exactly what the log holds (an index that does not check out is not used).
pub fn indexes(data: &[u8]) {
    static WRITTEN: OnceLock<Written> = OnceLock::new();
    let w = WRITTEN.get_or_init(|| written("indexes", INDEX_TOPIC, 150));
    let mut input = Bytes(data);
    let indexes: Vec<&PathBuf> = w
        .files
        .keys()
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "index" || e == "timeindex")
        })
        .collect();
    let target = indexes[usize::from(input.u8()) % indexes.len()];
    let mode = input.u8();
    let mut bytes = if mode & 1 == 0 {
        Vec::new()
    } else {
        w.files[target].clone()
    };
    if mode & 1 == 0 {
        bytes.extend_from_slice(input.0);
    } else {
        overwrite_or_cut(&mut bytes, &mut input);
    }
    fs::write(target, &bytes).expect("index writes");
    check_reads(w, target, data);
    // Readers write nothing: the damaged index is the only file to put back.
    fs::write(target, &w.files[target]).expect("index writes");
}

fn check_reads(w: &Written, target: &Path, data: &[u8]) {
    let Ok(mut reader) = w.log.topic(INDEX_TOPIC).and_then(|t| t.reader(0)) else {
        return;
    };
    // Probes inside the damaged segment, where the damaged index is used.
    let base: u64 = target
        .file_stem()
        .and_then(|s| s.to_str()?.parse().ok())
        .expect("segment file name");
    let upper = w
        .files
        .keys()
        .filter_map(|p| p.file_stem()?.to_str()?.parse::<u64>().ok())
        .filter(|b| *b > base)
        .min()
        .unwrap_or(w.records.len() as u64);
    let probes: Vec<u64> = data
        .iter()
        .take(3)
        .map(|b| base + u64::from(*b) % (upper - base).max(1))
        .collect();
    for &offset in &probes {
        let Ok(fetch) = reader.read(offset, 5, 1 << 20) else {
            continue;
        };
        let got: Vec<Stored> = fetch.iter().map(|r| Stored::of(&r)).collect();
        let from = usize::try_from(offset).expect("small offset");
        let want = &w.records[from..(from + got.len()).min(w.records.len())];
        assert_eq!(
            got, want,
            "read from offset {offset} through a damaged index"
        );
        assert!(!got.is_empty(), "a read inside the log returns records");
    }
    // Time-index entries are checked for order and bounds, not checksummed: damage that keeps
    // them ordered and in bounds can start a lookup late (as in Kafka), never at a record older
    // than asked for. An intact time index gives the exact answer.
    let time_index_damaged = target.extension().is_some_and(|e| e == "timeindex");
    let times = probes.iter().zip(data.iter().skip(3)).map(|(&offset, &b)| {
        let at = usize::try_from(offset).map_or(0, |o| o.min(w.records.len() - 1));
        w.records[at].timestamp + (i64::from(b as i8)) * 50
    });
    for ts in times.take(2) {
        let Ok(found) = reader.offset_for_timestamp(ts) else {
            continue;
        };
        let want = first_at_or_after(&w.records, ts);
        if time_index_damaged {
            let at = found.and_then(|o| w.records.get(usize::try_from(o).ok()?));
            assert!(
                at.is_none_or(|r| r.timestamp >= ts),
                "lookup of time {ts} gave {found:?}"
            );
            assert!(
                found >= want || found.is_none(),
                "lookup of time {ts} gave {found:?}"
            );
        } else {
            assert_eq!(found, want, "lookup of time {ts}");
        }
    }
}

const TAIL_TOPIC: &str = "tailed";

/// A damaged `tail` file: a reader returns a prefix of what the log holds or an error, and an
/// appender opened over it either refuses or recovers the whole log.
pub fn tail_file(data: &[u8]) {
    static WRITTEN: OnceLock<Written> = OnceLock::new();
    let w = WRITTEN.get_or_init(|| written("tail", TAIL_TOPIC, 60));
    let partition = w.dir.join("topics").join(TAIL_TOPIC).join("0");
    restore(&partition, &w.files);
    let path = partition.join("tail");
    let mut input = Bytes(data);
    let mode = input.u8();
    let bytes = if mode & 1 == 0 {
        input.0.to_vec()
    } else {
        // Edits of the valid tail, a word at a time.
        let mut bytes = w.files[&path].clone();
        while !input.is_empty() {
            let word = usize::from(input.u8() % 8) * 8;
            let value = [input.u8(), input.u8(), input.u8(), input.u8()];
            bytes[word..word + 4].copy_from_slice(&value);
        }
        bytes
    };
    fs::write(&path, &bytes).expect("tail writes");
    if let Ok(records) = read_all(&w.log, TAIL_TOPIC) {
        assert_eq!(
            records,
            w.records[..records.len()],
            "a reader returns a prefix"
        );
    }
    let topic = w.log.topic(TAIL_TOPIC).expect("topic opens");
    if let Ok(writer) = topic.writer(0) {
        assert_eq!(writer.end_offset(), w.records.len() as u64);
        drop(writer);
        let records = read_all(&w.log, TAIL_TOPIC).expect("a recovered log reads back");
        assert_eq!(records, w.records);
    }
}

/// A damaged offsets file: reading it never panics; when it reads, a commit after it keeps every
/// offset it held and adds the new one.
pub fn offsets_file(data: &[u8]) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let path = DIR.get_or_init(|| scratch("offsets")).join("offsets");
    let mut input = Bytes(data);
    let mode = input.u8();
    if mode & 1 == 0 {
        fs::write(&path, input.0).expect("offsets writes");
    } else {
        let _ = fs::remove_file(&path);
        let mut file = OffsetsFile::default();
        for i in 0..input.u8() % 5 + 1 {
            let topic = ["a", "b", "long-topic-name"][usize::from(input.u8() % 3)];
            let metadata = if input.u8() & 1 == 0 { "" } else { "meta" };
            let offsets = [(topic, u32::from(input.u8() % 4), u64::from(input.u16()))];
            file.commit(&path, &offsets, metadata, false, i64::from(i))
                .expect("commit to a fresh file");
        }
        let mut bytes = fs::read(&path).expect("offsets reads");
        overwrite_or_cut(&mut bytes, &mut input);
        fs::write(&path, &bytes).expect("offsets writes");
    }
    let mut file = OffsetsFile::default();
    if file.refresh(&path).is_err() {
        return;
    }
    let before = file.offsets.clone();
    file.commit(&path, &[("fuzz", 9, 42)], "", false, 0)
        .expect("a commit after a good read");
    let mut again = OffsetsFile::default();
    again.refresh(&path).expect("the file reads after a commit");
    let mut want = before;
    want.insert(("fuzz".to_owned(), 9), 42);
    assert_eq!(again.offsets, want);
}

/// One stored window-state entry (key, value): decoding never panics, and what decodes encodes
/// back to the same key.
pub fn window_state(data: &[u8]) {
    use crate::window_codec::{self as codec, SavedRecords};
    let mut input = Bytes(data);
    let key_len = usize::from(input.u8());
    let (key, value) = input.0.split_at(key_len.min(input.0.len()));
    match key.get(3) {
        Some(b'W') => {
            if let Ok(w) = codec::parse_window_key(key) {
                let op = u16::from_be_bytes([key[1], key[2]]);
                assert_eq!(codec::window_key(op, w.end, w.start, w.raw)[1..], key[1..]);
            }
            let _ = codec::decode::<(Option<serde_json::Value>, serde_json::Value)>(value);
        }
        Some(b'B') => {
            let _ = codec::entry_record_key(key);
            let _ = codec::decode::<SavedRecords>(value);
        }
        Some(b'M') => {
            if let Ok(meta) = codec::Meta::decode(value) {
                assert_eq!(codec::Meta::decode(&meta.encode()), Ok(meta));
            }
        }
        _ => {
            let _ = codec::entry_record_key(key);
            let _ = codec::decode::<serde_json::Value>(value);
        }
    }
}

/// What users type: timestamps and durations of the command line, and topic settings.
pub fn user_input(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    #[cfg(feature = "cli")]
    let _ = crate::cli::time::parse_timestamp_ms(text);
    let _ = crate::parse_iso_duration(text);
    let mut config = TopicConfig::default();
    if config.set(text).is_ok() && config.validate().is_ok() {
        let mut again = TopicConfig::with_partitions(config.partitions);
        for (name, value) in config.settings() {
            again
                .set(&format!("{name}={value}"))
                .expect("a setting shown reads back");
        }
        assert_eq!(again, config);
    }
}

/// A partition's transaction files, damaged: a `txn-snapshot` and a `.txnindex` made of the
/// input. Reading them never panics nor allocates past their bounds; a snapshot that reads back
/// writes back to one that reads the same; every aborted-transaction entry read is one.
pub fn txn_files(data: &[u8]) {
    use crate::log::transactions as txn;
    let dir = scratch("txn_files");
    let mut input = Bytes(data);
    let split = usize::from(input.u8()) * 4;
    let (snapshot, index) = input.0.split_at(split.min(input.0.len()));
    fs::write(dir.join("txn-snapshot"), snapshot).expect("snapshot writes");
    if let Some((at, txns)) = txn::read_snapshot(&dir) {
        txn::write_snapshot(&dir, at, &txns).expect("snapshot rewrites");
        assert_eq!(
            txn::read_snapshot(&dir),
            Some((at, txns)),
            "a snapshot reads back"
        );
    }
    fs::write(dir.join(format!("{:020}.txnindex", 0)), index).expect("index writes");
    if let Ok(aborted) = txn::read_aborted(&dir, 0) {
        assert!(aborted.iter().all(|a| a.first_offset < a.last_offset));
        assert!(aborted.len() * txn::TXN_ENTRY_LEN <= index.len());
    }
}
