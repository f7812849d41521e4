//! Multi-process behaviour with the real `eddy` binary: appenders killed with SIGKILL, readers
//! tailing another process's appends, and the cross-process append lock.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use eddy::{Durability, Log, Record};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Lines of a child's stdout, delivered on a channel so that reads can time out.
fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn sigkill_while_appending_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_segments(1, 64 << 10);
    config.durability = Durability::Always;
    topic_with(dir.path(), "t", config);
    let mut child = eddy(dir.path())
        .args(["produce", "t", "--print-offsets", "--batch", "64"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        for i in 0u64.. {
            if writeln!(stdin, "line-{i}").is_err() {
                return;
            }
        }
    });
    let acks = lines_of(child.stdout.take().unwrap());
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < 5000 && Instant::now() < deadline {
        if let Ok(line) = acks.recv_timeout(Duration::from_secs(10)) {
            let (p, o) = line.split_once(' ').unwrap();
            assert_eq!(p, "0");
            acked.push(o.parse::<u64>().unwrap());
        }
    }
    assert!(
        acked.len() >= 5000,
        "producer acknowledged only {}",
        acked.len()
    );
    child.kill().unwrap(); // SIGKILL, mid-stream: stdin is still being fed
    child.wait().unwrap();
    let topic = Log::open(dir.path()).unwrap().topic("t").unwrap();
    let w = topic.writer(0).unwrap();
    let stored = read_all(&mut topic.reader(0).unwrap(), 0);
    assert!(stored.len() >= acked.len());
    for (i, (offset, r)) in stored.iter().enumerate() {
        assert_eq!(*offset, i as u64, "offsets are contiguous");
        assert_eq!(r.value.as_deref(), Some(format!("line-{i}").as_bytes()));
    }
    let max_acked = *acked.iter().max().unwrap();
    assert!(
        (max_acked as usize) < stored.len(),
        "acknowledged offset {max_acked} is stored"
    );
    assert_eq!(w.end_offset(), stored.len() as u64);
    assert!(
        segment_files(dir.path(), "t", 0, "log").len() > 1,
        "the run crossed segment rolls"
    );
}

#[test]
fn a_reader_process_follows_another_process_appending() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, topic) = topic_with(dir.path(), "t", small_segments(1, 32 << 10));
    let mut reader = eddy(dir.path())
        .args(["consume", "t", "--follow", "--format", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(reader.stdout.take().unwrap());
    let w = topic.writer(0).unwrap();
    let total = 6000u64;
    let appender = std::thread::spawn(move || {
        for chunk in 0..(total / 20) {
            let recs: Vec<Record> = (chunk * 20..chunk * 20 + 20).map(record).collect();
            w.append(&recs).unwrap();
            if chunk % 10 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    let mut seen = 0u64;
    while seen < total {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("reader stalled after {seen} records"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["offset"].as_u64(),
            Some(seen),
            "in order, none skipped or torn"
        );
        let want = record(seen);
        assert_eq!(
            v["value"].as_str().unwrap().as_bytes(),
            want.value.unwrap().as_slice()
        );
        assert_eq!(v["headers"]["i"].as_str(), Some(seen.to_string().as_str()));
        seen += 1;
    }
    appender.join().unwrap();
    reader.kill().unwrap();
    reader.wait().unwrap();
}

#[test]
fn another_process_cannot_append_while_the_lock_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, topic) = topic_with(dir.path(), "t", small_segments(1, 4096));
    let held = topic.writer(0).unwrap();
    let mut child = eddy(dir.path())
        .args(["produce", "t"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "hello").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another process") && err.contains("partition 0"),
        "{err}"
    );
    drop(held);
    let mut child = eddy(dir.path())
        .args(["produce", "t"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "hello").unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(topic.reader(0).unwrap().end_offset(), 1);
}

#[test]
fn a_producer_keeps_its_partition_for_the_whole_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    topic_with(d, "t", small_segments(1, 4096));
    let mut first = eddy(d)
        .args(["produce", "t", "--print-offsets", "--batch", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = first.stdin.take().unwrap();
    let acks = lines_of(first.stdout.take().unwrap());
    writeln!(stdin, "one").unwrap();
    assert_eq!(acks.recv_timeout(Duration::from_secs(30)).unwrap(), "0 0");
    // Between the first producer's appends, a second cannot slip in.
    let second = run(d, &["produce", "t"], b"intruder\n");
    assert_eq!(second.status.code(), Some(5), "{second:?}");
    writeln!(stdin, "two").unwrap();
    assert_eq!(acks.recv_timeout(Duration::from_secs(30)).unwrap(), "0 1");
    drop(stdin);
    assert!(first.wait().unwrap().success());
    let values: Vec<Vec<u8>> = read_all(
        &mut Log::open(d).unwrap().topic("t").unwrap().reader(0).unwrap(),
        0,
    )
    .into_iter()
    .map(|(_, r)| r.value.unwrap())
    .collect();
    assert_eq!(values, [b"one".to_vec(), b"two".to_vec()]);
}

#[test]
fn cli_topics_produce_and_consume_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_ok(
        d,
        &[
            "topics",
            "create",
            "events",
            "--partitions",
            "3",
            "-c",
            "retention.bytes=100000",
        ],
        "",
    );
    assert_eq!(run_ok(d, &["topics", "list"], ""), "events\n");
    let acks = run_ok(
        d,
        &["produce", "events", "--parse-key", "--print-offsets"],
        "a\t1\nb\t2\na\t3\n",
    );
    let a = eddy::partition_for_key(b"a", 3);
    assert!(acks.lines().next().unwrap().starts_with(&format!("{a} ")));
    run_ok(
        d,
        &["produce", "events", "--json"],
        "{\"key\":\"c\",\"value\":{\"x\":1},\"timestamp\":5,\"headers\":{\"h\":\"v\"}}\n",
    );
    let plain = run_ok(
        d,
        &[
            "consume",
            "events",
            "--print-key",
            "--partition",
            &a.to_string(),
        ],
        "",
    );
    assert!(plain.starts_with("a\t1\na\t3\n"), "{plain}");
    let json = run_ok(d, &["consume", "events", "--format", "json"], "");
    let docs: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 4);
    let c = docs.iter().find(|d| d["key"] == "c").unwrap();
    assert_eq!(
        c["value"],
        serde_json::json!({"x": 1}),
        "JSON values stay JSON"
    );
    assert_eq!(c["topic"], "events");
    assert_eq!(c["timestamp"], 5);
    assert_eq!(c["headers"]["h"], "v");
    run_ok(d, &["topics", "create", "times"], "");
    run_ok(
        d,
        &["produce", "times", "--json"],
        "{\"value\":\"old\",\"timestamp\":5}\n{\"value\":\"new\"}\n",
    );
    let late = run_ok(
        d,
        &[
            "consume",
            "times",
            "--from-timestamp",
            "1970-01-01T00:00:01Z",
        ],
        "",
    );
    assert_eq!(late, "new\n", "the record at 5 ms is before 1 s");
    let limited = run_ok(d, &["consume", "events", "--max-records", "2"], "");
    assert_eq!(limited.lines().count(), 2);
    let describe = run_ok(d, &["topics", "describe", "events"], "");
    assert!(
        describe.contains("PARTITION") && describe.contains("LOG-END-OFFSET"),
        "{describe}"
    );
    let described = run_ok(d, &["topics", "describe", "events", "--format", "json"], "");
    let v: serde_json::Value = serde_json::from_str(&described).unwrap();
    let ends: u64 = v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["end_offset"].as_u64().unwrap())
        .sum();
    assert_eq!(ends, 4);
    assert_eq!(v["config"]["retention.bytes"], "100000");
    assert_eq!(v["partition_count"], 3);
    run_ok(d, &["topics", "delete", "events"], "");
    assert_eq!(run_ok(d, &["topics", "list"], ""), "times\n");
}

#[test]
fn cli_errors_name_the_problem_and_use_stable_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let status = |args: &[&str]| {
        let out = eddy(d).args(args).stdin(Stdio::null()).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = status(&["topics", "create", "../escape"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("../escape"), "{err}");
    assert!(!d.join("escape").exists() && !d.parent().unwrap().join("escape").exists());
    let (code, err) = status(&["consume", "missing"]);
    assert_eq!(code, Some(3));
    assert!(err.contains("missing"), "{err}");
    run_ok(d, &["topics", "create", "x"], "");
    assert_eq!(status(&["topics", "create", "x"]).0, Some(4));
    let (code, err) = status(&["topics", "create", "y", "-c", "segment.bytes=banana"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("segment.bytes"), "{err}");
    let (code, err) = status(&["consume", "x", "--offset", "10"]);
    assert_eq!(code, Some(7));
    assert!(err.contains("out of range"), "{err}");
    let out = run(
        d,
        &["produce", "x", "--json"],
        b"{\"value\":\"ok\"}\nnot json\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    // The good line before the bad one of the same batch is kept.
    assert_eq!(run_ok(d, &["consume", "x"], ""), "ok\n");
}
