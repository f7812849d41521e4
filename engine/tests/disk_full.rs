//! A disk that fills up: appends fail with an error (never a signal), nothing acknowledged is lost,
//! the log stays readable and appends resume once space is freed. Real tmpfs mounts.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use eddy::{Log, LogError, Record};

fn big_record(i: u64) -> Record {
    Record::keyed(format!("k{i}"), format!("{i:08}-{}", "x".repeat(2000)))
}

#[test]
fn a_full_disk_fails_appends_keeps_what_was_acknowledged_and_resumes_when_freed() {
    let Some(disk) = SmallDisk::mount(4 << 20) else {
        return;
    };
    let data = disk.path().join("data");
    let (log, topic) = topic_with(&data, "t", small_segments(1, 256 << 10));
    let filler = disk.fill_leaving(1 << 20);
    let writer = topic.writer(0).unwrap();
    let mut acknowledged = 0u64;
    let failure = loop {
        let recs: Vec<Record> = (acknowledged..acknowledged + 10).map(big_record).collect();
        match writer.append(&recs) {
            Ok(a) => {
                assert_eq!(a.base_offset, acknowledged);
                acknowledged += a.count;
            }
            Err(e) => break e,
        }
        assert!(acknowledged < 10_000, "the disk never filled up");
    };
    assert!(
        failure.is_out_of_space(),
        "expected running out of space, got: {failure}"
    );
    assert!(failure.to_string().contains("No space left"), "{failure}");
    assert!(
        acknowledged > 100,
        "appends failed early: {acknowledged} records"
    );
    // A second try while the disk is still full fails the same way and loses nothing.
    let recs: Vec<Record> = (acknowledged..acknowledged + 10).map(big_record).collect();
    let again = writer.append(&recs).unwrap_err();
    assert!(again.is_out_of_space(), "{again}");
    let mut reader = topic.reader(0).unwrap();
    let stored = read_all(&mut reader, 0);
    assert_eq!(stored.len() as u64, acknowledged);
    for (i, (offset, r)) in stored.iter().enumerate() {
        assert_eq!(*offset, i as u64);
        assert!(r.value == big_record(i as u64).value, "record {i} differs");
    }

    std::fs::remove_file(&filler).unwrap();
    let resumed = writer.append(&[big_record(acknowledged)]).unwrap();
    assert_eq!(resumed.base_offset, acknowledged, "no offset was skipped");
    writer.flush().unwrap();
    drop((writer, topic, log));

    let log = Log::open(&data).unwrap();
    let topic = log.topic("t").unwrap();
    let writer = topic.writer(0).unwrap();
    assert_eq!(writer.recovery_report().truncated_bytes, 0);
    assert_eq!(writer.end_offset(), acknowledged + 1);
    let mut reader = topic.reader(0).unwrap();
    let stored = read_all(&mut reader, 0);
    assert_eq!(stored.len() as u64, acknowledged + 1);
    assert!(stored.last().unwrap().1.value == big_record(acknowledged).value);
}

#[test]
fn a_full_disk_is_an_error_from_eddy_produce_not_a_signal() {
    let Some(disk) = SmallDisk::mount(3 << 20) else {
        return;
    };
    let data = disk.path().join("data");
    run_ok(&data, &["topics", "create", "t"], "");
    disk.fill_leaving(300 << 10);
    let out = run(&data, &["produce", "t"], b"hi\n");
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("No space left"), "{stderr}");
    assert!(stderr.contains("t"), "{stderr}");
    // The topic is intact and still usable once space is freed.
    std::fs::remove_file(disk.path().join("filler")).unwrap();
    run_ok(&data, &["produce", "t"], "hello\n");
    let out = run_ok(&data, &["consume", "t", "-n", "1", "-f", "%v\\n"], "");
    assert_eq!(out, "hello\n");
}

#[test]
fn out_of_space_is_not_a_poisoning_failure() {
    let e = LogError::Io {
        op: "write segment",
        path: "x".into(),
        source: std::io::Error::from_raw_os_error(28),
    };
    assert!(e.is_out_of_space());
    let fsync = LogError::Io {
        op: "fsync segment",
        path: "x".into(),
        source: std::io::Error::from_raw_os_error(28),
    };
    assert!(!fsync.is_out_of_space(), "a failed fsync is never retried");
}
