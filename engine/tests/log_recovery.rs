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
            assert!(reason.contains("not a torn tail"), "{reason}");
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
