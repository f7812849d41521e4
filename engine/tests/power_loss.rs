//! Power loss and failing fsyncs, on a filesystem that keeps only what was fsynced (`faultfs`,
//! FUSE, in memory): what each durability setting promises survives, what recovery finds is a
//! consistent prefix, and a failed fsync poisons the writer instead of being retried.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use eddy::{Durability, Log, LogError, Record};
use faultfs::FaultFs;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};

fn mounted() -> (tempfile::TempDir, FaultFs) {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::mount(dir.path())
        .expect("mount the fault filesystem (the tests run as root with /dev/fuse)");
    (dir, fs)
}

#[test]
fn a_failed_fsync_poisons_the_writer_until_it_is_reopened() {
    let (_dir, fs) = mounted();
    let data = fs.path().join("data");
    let mut config = small_segments(1, 64 << 10);
    config.durability = Durability::Always;
    let (log, topic) = topic_with(&data, "t", config);
    let writer = topic.writer(0).unwrap();
    writer.append(&[Record::value("one")]).unwrap();
    assert_eq!(writer.durable_offset(), 1);

    fs.fail_fsyncs(Some(".log"));
    let first = writer.append(&[Record::value("two")]).unwrap_err();
    assert!(
        matches!(
            &first,
            LogError::Io {
                op: "fsync segment",
                ..
            }
        ),
        "{first}"
    );
    assert!(first.to_string().contains("Input/output error"), "{first}");
    // The disk recovers, but the writer does not pretend the lost pages were written.
    fs.fail_fsyncs(None);
    for attempt in [
        writer.append(&[Record::value("three")]),
        writer.flush().map(|()| writer.append(&[]).unwrap()),
    ] {
        match attempt.unwrap_err() {
            LogError::Poisoned {
                topic,
                partition,
                durable_offset,
                cause,
            } => {
                assert_eq!((topic.as_str(), partition), ("t", 0));
                assert_eq!(durable_offset, 1);
                assert!(cause.contains("fsync segment"), "{cause}");
                assert!(cause.contains("Input/output error"), "{cause}");
            }
            other => panic!("expected Poisoned, got {other}"),
        }
    }
    assert_eq!(
        writer.durable_offset(),
        1,
        "nothing after the failure is durable"
    );
    assert!(writer.poisoned_by().is_some());
    drop((writer, topic, log));

    // Reopened, the partition recovers what is on disk and takes appends again.
    let log = Log::open(&data).unwrap();
    let topic = log.topic("t").unwrap();
    let writer = topic.writer(0).unwrap();
    let next = writer.append(&[Record::value("four")]).unwrap();
    assert_eq!(next.base_offset, writer.end_offset() - 1);
    assert!(writer.poisoned_by().is_none());
}

#[test]
fn a_failed_interval_flush_reaches_the_next_append() {
    let (_dir, fs) = mounted();
    let data = fs.path().join("data");
    let mut config = small_segments(1, 64 << 10);
    config.durability = Durability::IntervalMs(20);
    let (_log, topic) = topic_with(&data, "t", config);
    let writer = topic.writer(0).unwrap();
    writer.append(&[Record::value("one")]).unwrap();
    fs.fail_fsyncs(Some(".log"));
    writer.append(&[Record::value("two")]).unwrap_or_else(|e| {
        // The append itself may run the due flush and see the failure first.
        assert!(matches!(e, LogError::Io { .. }), "{e}");
        writer.end_offset();
        eddy::Appended {
            base_offset: 1,
            count: 1,
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while writer.poisoned_by().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the flusher never tried"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    fs.fail_fsyncs(None);
    let err = writer.append(&[Record::value("three")]).unwrap_err();
    assert!(matches!(err, LogError::Poisoned { .. }), "{err}");
}

/// `eddy produce` on `data`, fed by the test, printing the offsets it acknowledges.
fn producer(data: &std::path::Path) -> Child {
    eddy(data)
        .args(["produce", "t", "--print-offsets"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Feeds numbered lines to a producer until it has acknowledged `want`, then kills it with
/// SIGKILL. Returns how many were acknowledged.
fn produce_then_kill(data: &std::path::Path, want: u64) -> u64 {
    let mut child = producer(data);
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let feeder = std::thread::spawn(move || {
        for i in 0u64.. {
            let line = format!("value-{i:06}-{}\n", "p".repeat((i % 50) as usize));
            if stdin.write_all(line.as_bytes()).is_err() {
                return;
            }
            if i % 7 == 0 {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
    });
    let mut acknowledged = 0;
    for line in stdout.lines() {
        let line = line.unwrap();
        let offset: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(offset, acknowledged, "offsets are given out in order");
        acknowledged += 1;
        if acknowledged == want {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    feeder.join().unwrap();
    acknowledged
}

/// Reopens the log after a power loss and checks that partition 0 holds a gap-free prefix of
/// what the producer sent; returns its length.
fn recovered_prefix(data: &std::path::Path) -> u64 {
    let log = Log::open(data).unwrap();
    let topic = log.topic("t").unwrap();
    let mut reader = topic.reader(0).unwrap();
    let records = read_all(&mut reader, 0);
    for (i, (offset, r)) in records.iter().enumerate() {
        let i = i as u64;
        assert_eq!(*offset, i, "offsets are contiguous");
        let want = format!("value-{i:06}-{}", "p".repeat((i % 50) as usize));
        assert_eq!(r.value.as_deref(), Some(want.as_bytes()), "record {i}");
    }
    // The recovered partition takes appends at its end.
    let writer = topic.writer(0).unwrap();
    let next = writer.append(&[Record::value("after")]).unwrap();
    assert_eq!(next.base_offset, records.len() as u64);
    records.len() as u64
}

fn create_topic(data: &std::path::Path, durability: &str) {
    run_ok(
        data,
        &[
            "topics",
            "create",
            "t",
            "-c",
            &format!("durability={durability}"),
            "-c",
            "segment.bytes=65536",
            "-c",
            "index.interval.bytes=512",
        ],
        "",
    );
}

#[test]
fn with_durability_always_a_power_loss_loses_nothing_acknowledged() {
    let (_dir, mut fs) = mounted();
    let data = fs.path().join("data");
    create_topic(&data, "always");
    let acknowledged = produce_then_kill(&data, 3_000);
    fs.power_loss().unwrap();
    let kept = recovered_prefix(&data);
    assert!(
        kept >= acknowledged,
        "{acknowledged} records were acknowledged, {kept} survived"
    );
}

#[test]
fn with_durability_none_or_interval_a_power_loss_leaves_a_consistent_prefix() {
    for durability in ["none", "20"] {
        let (_dir, mut fs) = mounted();
        let data = fs.path().join("data");
        create_topic(&data, durability);
        let acknowledged = produce_then_kill(&data, 3_000);
        fs.power_loss().unwrap();
        let kept = recovered_prefix(&data);
        assert!(kept <= acknowledged + 10_000, "durability={durability}");
    }
}
