//! Deleting a topic while it is used: refused under a producer, noticed by followers, and taking
//! the groups' committed offsets with it so that a topic created again starts afresh.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn a_topic_cannot_be_deleted_under_a_running_producer_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(dir.path(), &["topics", "create", "t"], "");
    let mut producer = eddy(dir.path())
        .args(["produce", "t", "--print-offsets"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = producer.stdin.take().unwrap();
    let mut acks = BufReader::new(producer.stdout.take().unwrap()).lines();
    for i in 0..20 {
        writeln!(stdin, "line {i}").unwrap();
        stdin.flush().unwrap();
        // Each line is appended before the next is written: the producer is mid-stream.
        assert_eq!(acks.next().unwrap().unwrap(), format!("0 {i}"));
        if i == 10 {
            let out = run(dir.path(), &["topics", "delete", "t"], b"");
            assert_eq!(out.status.code(), Some(5), "delete under a producer");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("being appended to"), "{stderr}");
        }
    }
    drop(stdin);
    assert!(producer.wait().unwrap().success());
    let values = run_ok(dir.path(), &["consume", "t", "-f", "%v\\n"], "");
    let want: String = (0..20).map(|i| format!("line {i}\n")).collect();
    assert_eq!(values, want);
    // Once the producer is gone the delete goes through, and the name is free again.
    run_ok(dir.path(), &["topics", "delete", "t"], "");
    run_ok(dir.path(), &["topics", "create", "t"], "");
    let describe = run_ok(dir.path(), &["topics", "describe", "t"], "");
    assert!(describe.contains("PartitionCount: 1"), "{describe}");
}

#[test]
fn a_follower_stops_with_an_error_when_its_topic_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(dir.path(), &["topics", "create", "t"], "");
    run_ok(dir.path(), &["produce", "t"], "one\n");
    let mut follower = eddy(dir.path())
        .args(["consume", "t", "--follow", "-f", "%v\\n"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "one");
    run_ok(dir.path(), &["topics", "delete", "t"], "");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = follower.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the follower never noticed the delete"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut follower.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("\"t\" does not exist"), "{stderr}");
}

#[test]
fn deleting_a_topic_removes_the_groups_offsets_for_it() {
    let dir = tempfile::tempdir().unwrap();
    for t in ["t", "other"] {
        run_ok(dir.path(), &["topics", "create", t], "");
        run_ok(dir.path(), &["produce", t], "a\nb\nc\nd\n");
    }
    run_ok(dir.path(), &["consume", "t", "-g", "g", "-n", "4"], "");
    run_ok(dir.path(), &["consume", "other", "-g", "g", "-n", "4"], "");
    let out = run_ok(dir.path(), &["topics", "delete", "t"], "");
    assert!(out.contains("group(s): g"), "{out}");
    run_ok(dir.path(), &["topics", "create", "t"], "");
    run_ok(dir.path(), &["produce", "t"], "new1\nnew2\n");
    // The group starts the new topic from its beginning, not at the old offset 4.
    let got = run_ok(
        dir.path(),
        &["consume", "t", "-g", "g", "-n", "2", "-f", "%v\\n"],
        "",
    );
    assert_eq!(got, "new1\nnew2\n");
    // Its offsets for other topics are untouched.
    let describe = run_ok(dir.path(), &["groups", "describe", "g"], "");
    let other = describe.lines().find(|l| l.contains("other")).unwrap();
    assert!(other.split_whitespace().any(|w| w == "4"), "{describe}");
}

#[test]
fn a_topic_with_a_damaged_topic_json_can_still_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        dir.path(),
        &["topics", "create", "t", "--partitions", "3"],
        "",
    );
    run_ok(dir.path(), &["produce", "t"], "a\n");
    let meta = dir.path().join("topics/t/topic.json");
    std::fs::write(&meta, b"{ not json").unwrap();
    let out = run(dir.path(), &["topics", "describe", "t"], b"");
    assert!(!out.status.success());
    run_ok(dir.path(), &["topics", "delete", "t"], "");
    assert!(!dir.path().join("topics/t").exists());
    run_ok(dir.path(), &["topics", "create", "t"], "");
}

#[test]
fn readers_polling_a_topic_never_make_its_delete_fail() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let log = eddy::Log::open(dir.path()).unwrap();
        let topic = log
            .create_topic("t", eddy::TopicConfig::with_partitions(1))
            .unwrap();
        topic
            .writer(0)
            .unwrap()
            .append(&[eddy::Record::value("x")])
            .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pollers: Vec<_> = (0..2)
            .map(|_| {
                let (topic, stop) = (topic.clone(), stop.clone());
                std::thread::spawn(move || {
                    let Ok(mut reader) = topic.reader(0) else {
                        return; // already deleted
                    };
                    // Each read at the end checks whether an appender holds the partition.
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if reader.read(1, 10, 4096).is_err() {
                            return; // deleted under it: "does not exist"
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5));
        let deleted = eddy::Groups::new(&log).delete_topic("t");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for p in pollers {
            p.join().unwrap();
        }
        assert!(deleted.is_ok(), "round {round}: {:?}", deleted.err());
    }
}
