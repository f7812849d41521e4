//! `eddy mirror` against a broker address where nothing listens: both directions say that Kafka
//! is unreachable within a few seconds (instead of waiting out a long request timeout in
//! silence), keep trying, and leave the local data as it was.
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eddy::{Log, Record, TopicConfig};
use eddy_kafka::local_broker::free_port;

/// Runs `eddy mirror ARGS` on `dir` and returns the first stderr line mentioning Kafka being
/// unreachable, with how long it took, or panics after `limit`. The mirror is killed after.
fn first_unreachable_line(
    dir: &std::path::Path,
    args: &[&str],
    limit: Duration,
) -> (String, Duration) {
    let eddy = PathBuf::from(env!("CARGO_BIN_EXE_eddy-mirror")).with_file_name("eddy");
    let started = Instant::now();
    let mut child = Command::new(eddy)
        .arg("mirror")
        .args(args)
        .env("EDDY_DATA_DIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let found = loop {
        let left = limit.saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("unreachable") => break Some(line),
            Ok(line) => seen.push(line),
            Err(_) => break None,
        }
    };
    let took = started.elapsed();
    child.kill().unwrap();
    child.wait().unwrap();
    drop(rx);
    reader.join().unwrap();
    let line = found.unwrap_or_else(|| panic!("no unreachable line within {limit:?}: {seen:#?}"));
    (line, took)
}

#[test]
fn an_unreachable_broker_is_named_within_seconds_in_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log
        .create_topic("local", TopicConfig::with_partitions(1))
        .unwrap();
    topic
        .append((0..10).map(|i| Record::keyed("k", format!("v{i}"))))
        .unwrap();
    let brokers = format!("127.0.0.1:{}", free_port().unwrap());
    let limit = Duration::from_secs(8);
    for direction in ["out", "in"] {
        let (line, took) = first_unreachable_line(
            dir.path(),
            &[
                direction,
                "--brokers",
                &brokers,
                "--topic",
                "local",
                "--status-interval",
                "1",
            ],
            limit,
        );
        assert!(took < limit, "{direction}: {took:?}: {line}");
    }
    // Nothing local was touched: the topic holds its ten records and no other topic appeared.
    assert_eq!(topic.reader(0).unwrap().end_offset(), 10);
    assert_eq!(log.list_topics().unwrap(), ["local"]);
}
