//! Recovery after crashes and corruption, by damaging real segment and index files.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use eddy::{Log, LogError, Record};
use std::fs::OpenOptions;
use std::io::Write;

fn filled(dir: &std::path::Path, segment_bytes: u64, records: u64) -> Vec<(u64, Record)> {
    let (_log, topic) = topic_with(dir, "t", small_segments(1, segment_bytes));
    let w = topic.writer(0).unwrap();
    for i in 0..records / 10 {
        w.append(&(i * 10..i * 10 + 10).map(record).collect::<Vec<_>>())
            .unwrap();
    }
    read_all(&mut topic.reader(0).unwrap(), 0)
}

fn reopen(dir: &std::path::Path) -> eddy::Topic {
    Log::open(dir).unwrap().topic("t").unwrap()
}

#[test]
fn garbage_and_partial_batches_at_the_tail_are_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let before = filled(dir.path(), 1 << 20, 300);
    let last = segment_files(dir.path(), "t", 0, "log").pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    // A torn append: the first 100 bytes of a copy of the segment's first batch, then garbage.
    let head = std::fs::read(&last).unwrap();
    let mut f = OpenOptions::new().append(true).open(&last).unwrap();
    f.write_all(&head[..100]).unwrap();
    f.write_all(&[0xab; 37]).unwrap();
    drop(f);
    let topic = reopen(dir.path());
    let w = topic.writer(0).unwrap();
    assert_eq!(w.recovery_report().truncated_bytes, 137);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), len);
    assert_eq!(w.end_offset(), 300);
    w.append(&[record(300)]).unwrap();
    let after = read_all(&mut topic.reader(0).unwrap(), 0);
    assert_eq!(&after[..300], &before[..]);
    assert_eq!(after[300], (300, record(300)));
}

#[test]
fn a_segment_cut_mid_batch_keeps_every_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let before = filled(dir.path(), 1 << 20, 200);
    let last = segment_files(dir.path(), "t", 0, "log").pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 50)
        .unwrap();
    let topic = reopen(dir.path());
    let w = topic.writer(0).unwrap();
    assert_eq!(
        w.end_offset(),
        190,
        "the cut batch of 10 is gone, the rest stays"
    );
    let after = read_all(&mut topic.reader(0).unwrap(), 0);
    assert_eq!(after, before[..190]);
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_reported_with_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 4096, 400);
    let segs = segment_files(dir.path(), "t", 0, "log");
    assert!(segs.len() > 3);
    let victim = &segs[1];
    let mut bytes = std::fs::read(victim).unwrap();
    let pos = bytes.len() / 2;
    bytes[pos] ^= 0x20;
    std::fs::write(victim, &bytes).unwrap();
    let topic = reopen(dir.path());
    // Appending still works: the damage is in a sealed segment.
    topic.writer(0).unwrap().append(&[record(400)]).unwrap();
    let mut reader = topic.reader(0).unwrap();
    let mut next = 0;
    let err = loop {
        match reader.read(next, 100, 1 << 16) {
            Ok(f) if f.is_empty() => panic!("corruption not detected"),
            Ok(f) => next = f.next_offset(),
            Err(e) => break e,
        }
    };
    match err {
        LogError::Corrupt { path, position, .. } => {
            assert_eq!(&path, victim);
            assert!(
                position <= pos as u64,
                "position {position} names the batch holding byte {pos}"
            );
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    let msg = err_string(
        reopen(dir.path())
            .reader(0)
            .unwrap()
            .read(next, 100, 1 << 16),
    );
    assert!(
        msg.contains(victim.file_name().unwrap().to_str().unwrap()),
        "{msg}"
    );
}

fn err_string(r: Result<eddy::Fetch, LogError>) -> String {
    match r {
        Err(e) => e.to_string(),
        Ok(_) => String::from("no error"),
    }
}

#[test]
fn damage_in_the_middle_of_the_active_segment_is_refused_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_segments(1, 1 << 20);
    config.index_interval_bytes = 1 << 20; // no index point: recovery scans the whole segment
    let (log, topic) = topic_with(dir.path(), "t", config);
    let w = topic.writer(0).unwrap();
    for i in 0..30 {
        w.append(&(i * 10..i * 10 + 10).map(record).collect::<Vec<_>>())
            .unwrap();
    }
    drop((w, topic, log));
    let last = segment_files(dir.path(), "t", 0, "log").pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let len = bytes.len();
    bytes[len / 3] ^= 0x01;
    std::fs::write(&last, &bytes).unwrap();
    let topic = reopen(dir.path());
    match topic.writer(0) {
        Err(LogError::Corrupt { path, reason, .. }) => {
            assert_eq!(path, last);
            assert!(reason.contains("not a torn"), "{reason}");
        }
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("expected Corrupt, got a writer"),
    }
    assert_eq!(
        std::fs::metadata(&last).unwrap().len() as usize,
        len,
        "nothing was cut"
    );
}

#[test]
fn damage_before_the_last_index_point_is_reported_by_readers() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 1 << 20, 300);
    let last = segment_files(dir.path(), "t", 0, "log").pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes[200] ^= 0x01;
    std::fs::write(&last, &bytes).unwrap();
    let topic = reopen(dir.path());
    let w = topic.writer(0).unwrap();
    assert_eq!(
        w.end_offset(),
        300,
        "the tail past the last index point is intact"
    );
    match topic.reader(0).unwrap().read(0, 1000, 1 << 20) {
        Err(LogError::Corrupt { path, position, .. }) => {
            assert_eq!(path, last);
            assert!(position <= 200);
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|f| f.len())),
    }
}

#[test]
fn deleted_or_damaged_indexes_are_rebuilt_and_lookups_still_agree() {
    let dir = tempfile::tempdir().unwrap();
    let before = filled(dir.path(), 4096, 500);
    let indexes = segment_files(dir.path(), "t", 0, "index");
    let times = segment_files(dir.path(), "t", 0, "timeindex");
    std::fs::remove_file(&indexes[0]).unwrap();
    std::fs::remove_file(&times[1]).unwrap();
    std::fs::write(&indexes[2], [0xff; 13]).unwrap(); // not a whole number of entries
    let last_index = indexes.last().unwrap();
    std::fs::remove_file(last_index).unwrap(); // active segment: rebuilt by the recovery scan
    let topic = reopen(dir.path());
    let w = topic.writer(0).unwrap();
    let mut rebuilt = w.recovery_report().rebuilt_indexes.clone();
    rebuilt.sort_unstable();
    assert_eq!(rebuilt.len(), 3, "{rebuilt:?}");
    assert!(indexes[0].exists() && times[1].exists() && last_index.exists());
    let mut reader = topic.reader(0).unwrap();
    assert_eq!(read_all(&mut reader, 0), before);
    for from in (0..500).step_by(13) {
        let f = topic.reader(0).unwrap().read(from, 1, 1 << 20).unwrap();
        assert_eq!(f.iter().next().unwrap().offset, from);
    }
    for (o, r) in before.iter().step_by(29) {
        let ts = r.timestamp.unwrap();
        assert_eq!(reader.offset_for_timestamp(ts).unwrap(), Some(*o));
    }
}

#[test]
fn a_truncated_sealed_segment_is_reported_when_read() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 4096, 400);
    let segs = segment_files(dir.path(), "t", 0, "log");
    let victim = &segs[0];
    let len = std::fs::metadata(victim).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(victim)
        .unwrap()
        .set_len(len - 30)
        .unwrap();
    let topic = reopen(dir.path());
    // Opening for append rebuilds the (now inconsistent) index and finds the cut.
    match topic.writer(0) {
        Err(LogError::Corrupt { path, .. }) => assert_eq!(&path, victim),
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => {
            let mut r = topic.reader(0).unwrap();
            let mut next = 0;
            loop {
                match r.read(next, 1000, 1 << 20) {
                    Err(LogError::Corrupt { path, .. }) => {
                        assert_eq!(&path, victim);
                        break;
                    }
                    Ok(f) if !f.is_empty() => next = f.next_offset(),
                    other => panic!("cut not found: {:?}", other.map(|f| f.len())),
                }
            }
        }
    }
}

#[test]
fn an_atomic_append_is_one_batch_whole_or_gone_after_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, topic) = topic_with(dir.path(), "t", small_segments(1, 64 << 20));
    let w = topic.writer(0).unwrap();
    w.append(&[record(0)]).unwrap();
    // 3 MiB: a plain append would cut this into 1 MiB batches.
    let big: Vec<Record> = (0..3000)
        .map(|i| Record::keyed(format!("k{i}"), vec![b'x'; 1024]))
        .collect();
    let appended = w.append_atomic(&big).unwrap();
    assert_eq!((appended.base_offset, appended.count), (1, 3000));
    let log_file = segment_files(dir.path(), "t", 0, "log").pop().unwrap();
    let len = std::fs::metadata(&log_file).unwrap().len();
    drop(w);
    // Tear the write at 2 MiB into the batch: none of its records may survive.
    let f = OpenOptions::new().write(true).open(&log_file).unwrap();
    f.set_len(len - (1 << 20)).unwrap();
    drop(f);
    let topic = reopen(dir.path());
    let w = topic.writer(0).unwrap();
    assert_eq!(w.end_offset(), 1, "the torn batch is gone whole");
    assert_eq!(read_all(&mut topic.reader(0).unwrap(), 0).len(), 1);
    // Over the 64 MiB batch limit: refused before anything is written.
    let huge: Vec<Record> = (0..70)
        .map(|i| Record::keyed(format!("h{i}"), vec![0u8; 1 << 20]))
        .collect();
    let err = w.append_atomic(&huge).unwrap_err();
    assert!(err.to_string().contains("do not fit one"), "{err}");
    assert_eq!(w.end_offset(), 1);
}

/// Reads partition 0 from `from` until an error or the end; returns the records and the error.
fn read_until_error(topic: &eddy::Topic, from: u64) -> (Vec<u64>, Option<LogError>) {
    let mut reader = topic.reader(0).unwrap();
    let mut offsets = Vec::new();
    let mut next = from;
    loop {
        match reader.read(next, 100_000, 64 << 20) {
            Ok(f) if f.is_empty() => return (offsets, None),
            Ok(f) => {
                offsets.extend(f.iter().map(|r| r.offset));
                next = f.next_offset();
            }
            Err(e) => return (offsets, Some(e)),
        }
    }
}

#[test]
fn damage_in_the_last_whole_batch_of_the_active_segment_is_refused_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 1 << 20, 300);
    let last = segment_files(dir.path(), "t", 0, "log").pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let len = bytes.len();
    bytes[len - 5] ^= 0x40; // inside the value of the last record
    std::fs::write(&last, &bytes).unwrap();
    let topic = reopen(dir.path());
    match topic.writer(0) {
        Err(LogError::Corrupt { path, reason, .. }) => {
            assert_eq!(path, last);
            assert!(reason.contains("CRC mismatch"), "{reason}");
            assert!(reason.contains("nothing was cut"), "{reason}");
        }
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(w) => panic!(
            "the damaged batch was cut: the log now ends at {}",
            w.end_offset()
        ),
    }
    assert_eq!(std::fs::metadata(&last).unwrap().len() as usize, len);
    // Readers get every record before the damaged batch, then the error.
    let (offsets, err) = read_until_error(&topic, 0);
    assert!(offsets.len() >= 290, "{} records delivered", offsets.len());
    assert_eq!(offsets, (0..offsets.len() as u64).collect::<Vec<_>>());
    assert!(matches!(err, Some(LogError::Corrupt { .. })), "{err:?}");
}

#[test]
fn records_before_a_damaged_batch_are_delivered_before_the_error() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 64 << 10, 3000);
    let segs = segment_files(dir.path(), "t", 0, "log");
    let victim = &segs[1];
    let mut bytes = std::fs::read(victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(victim, &bytes).unwrap();
    let topic = reopen(dir.path());
    let mut reader = topic.reader(0).unwrap();
    // One read asking for everything returns every record up to the damage.
    let first = reader.read(0, 100_000, 64 << 20).unwrap();
    let delivered = first.len() as u64;
    assert!(delivered > 0);
    assert_eq!(first.next_offset(), delivered);
    let second = segs[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert!(
        delivered > second,
        "records of the damaged segment before the damage came too"
    );
    match reader.read(first.next_offset(), 100_000, 64 << 20) {
        Err(LogError::Corrupt { path, .. }) => assert_eq!(&path, victim),
        other => panic!("expected Corrupt, got {:?}", other.map(|f| f.len())),
    }
}

#[test]
fn a_deleted_middle_segment_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 16 << 10, 3000);
    let segs = segment_files(dir.path(), "t", 0, "log");
    assert!(segs.len() >= 4, "{} segments", segs.len());
    let base_of =
        |p: &std::path::Path| -> u64 { p.file_stem().unwrap().to_str().unwrap().parse().unwrap() };
    let (gone, next) = (base_of(&segs[1]), base_of(&segs[2]));
    for ext in ["log", "index", "timeindex"] {
        std::fs::remove_file(segs[1].with_extension(ext)).unwrap();
    }
    let topic = reopen(dir.path());
    let (offsets, err) = read_until_error(&topic, 0);
    assert_eq!(offsets, (0..gone).collect::<Vec<_>>());
    match err {
        Some(LogError::Corrupt { reason, .. }) => {
            assert!(reason.contains(&format!("{gone}..{next}")), "{reason}");
            assert!(reason.contains("missing"), "{reason}");
        }
        other => panic!("expected the gap to be reported, got {other:?}"),
    }
    // A read from inside the gap is an error too, not the next segment's first record.
    let (offsets, err) = read_until_error(&topic, gone + 3);
    assert!(offsets.is_empty(), "{offsets:?}");
    assert!(matches!(err, Some(LogError::Corrupt { .. })), "{err:?}");
    // The CLI says so and fails.
    let out = run(dir.path(), &["consume", "t", "-f", "%o\\n"], b"");
    assert_eq!(out.status.code(), Some(6), "corrupt data exits 6");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().count() as u64,
        gone,
        "records before the gap are printed"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
}

#[test]
fn a_compacted_topic_cannot_become_a_delete_topic() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_segments(1, 4096);
    config.cleanup_policy = eddy::CleanupPolicy::Compact;
    let (log, _topic) = topic_with(dir.path(), "t", config);
    let err = log
        .alter_topic_config("t", &["cleanup.policy=delete"])
        .unwrap_err();
    assert!(err.to_string().contains("offset gaps"), "{err}");
}

#[test]
fn a_damaged_sealed_time_index_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let before = filled(dir.path(), 8 << 10, 3000);
    let times = segment_files(dir.path(), "t", 0, "timeindex");
    assert!(times.len() > 4);
    // Zeros over one index, entries pointing past the segment in another, and a third whose
    // entries claim timestamps older than the records.
    let len = std::fs::metadata(&times[0]).unwrap().len() as usize;
    std::fs::write(&times[0], vec![0u8; len]).unwrap();
    let mut past = std::fs::read(&times[1]).unwrap();
    let n = past.len();
    past[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
    std::fs::write(&times[1], past).unwrap();
    let mut old = std::fs::read(&times[2]).unwrap();
    for entry in old.chunks_mut(12) {
        entry[..8].copy_from_slice(&1i64.to_be_bytes());
    }
    std::fs::write(&times[2], old).unwrap();
    let topic = reopen(dir.path());
    let mut reader = topic.reader(0).unwrap();
    for (o, r) in before.iter().step_by(97) {
        let ts = r.timestamp.unwrap();
        let want = before
            .iter()
            .find(|(_, x)| x.timestamp.unwrap() >= ts)
            .map(|(o, _)| *o);
        assert_eq!(reader.offset_for_timestamp(ts).unwrap(), want, "record {o}");
    }
}
