//! A committed-only reader in one process tailing a partition while another process commits and
//! aborts transactions in it (and is SIGKILLed in the middle of one): it never returns a record
//! of an aborted or unfinished transaction, and returns every committed record, in order. The
//! writer is this test binary re-executed to run the ignored test `transaction_writer_child`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eddy::{Isolation, Log, ProducerIdentity, Record, TopicConfig};

/// Transactions the child writes: number `i` commits unless `i % 3 == 1`.
const TRANSACTIONS: u64 = 400;

fn commits(i: u64) -> bool {
    i % 3 != 1
}

#[test]
#[ignore = "entry point of a child process started by the tests in this file"]
fn transaction_writer_child() {
    let Ok(dir) = std::env::var("EDDY_TXN_CHILD") else {
        return;
    };
    let log = Log::open(Path::new(&dir)).unwrap();
    let w = log.topic("t").unwrap().writer(0).unwrap();
    let me = ProducerIdentity { id: 1, epoch: 0 };
    for i in 0..TRANSACTIONS {
        for j in 0..3 {
            w.append_transactional(me, &[Record::value(format!("{i}.{j}"))])
                .unwrap();
            // Records of no transaction in between: held back while `me`'s is open.
            if j == 1 {
                w.append(&[Record::value(format!("plain {i}"))]).unwrap();
            }
        }
        w.end_transaction(me, commits(i)).unwrap();
    }
    // An open transaction left by the SIGKILL that follows.
    w.append_transactional(me, &[Record::value("never")])
        .unwrap();
    println!("done");
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_committed_reader_in_another_process_sees_committed_records_only_and_all_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic_or_create("t", TopicConfig::default()).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "transaction_writer_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("EDDY_TXN_CHILD", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut want = Vec::new();
    for i in 0..TRANSACTIONS {
        // In offset order: i.0, i.1, plain i, i.2 — the plain record sits inside the transaction.
        if commits(i) {
            want.extend([format!("{i}.0"), format!("{i}.1")]);
        }
        want.push(format!("plain {i}"));
        if commits(i) {
            want.push(format!("{i}.2"));
        }
    }
    let mut reader = topic.reader(0).unwrap();
    reader.set_isolation(Isolation::ReadCommitted);
    let (mut got, mut next) = (Vec::new(), 0u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < want.len() && Instant::now() < deadline {
        let fetch = reader.read(next, 1_000, 1 << 20).unwrap();
        for r in fetch.iter() {
            got.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
        assert!(
            got.iter().all(|v| !v.starts_with("never")),
            "a record of an open transaction"
        );
        next = fetch.next_offset();
        if fetch.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // The child is at its last, open transaction: kill it there.
    let mut done = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut done,
    )
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(got.len(), want.len());
    if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
        panic!("record {i}: {:?}, expected {:?}", got[i], want[i]);
    }
    // After the kill (no appender, tail not marked exact) the reader works the last stable
    // offset out from the log: the open transaction still holds everything after it back.
    let mut fresh = topic.reader(0).unwrap();
    fresh.set_isolation(Isolation::ReadCommitted);
    let fetch = fresh.read(0, usize::MAX, usize::MAX).unwrap();
    assert_eq!(fetch.len(), want.len());
    assert!(fetch.iter().all(|r| r.value != Some(b"never".as_slice())));
}
