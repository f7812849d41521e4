//! Transactions in the log: committed-only readers stop at the last stable offset and skip
//! aborted records, markers are never returned, fenced producers are refused, and the open
//! transactions, the last stable offset and the aborted-transaction indexes come back after a
//! reopen, a lost snapshot, a lost index, torn markers and torn transactional batches.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use std::path::Path;

use eddy::{Isolation, Log, LogError, PartitionReader, ProducerIdentity, Record, TopicConfig};

fn producer(id: i64, epoch: i16) -> ProducerIdentity {
    ProducerIdentity { id, epoch }
}

/// Values and the next offset of a read from 0 with `isolation`.
fn read(reader: &mut PartitionReader, isolation: Isolation) -> (Vec<String>, u64) {
    reader.set_isolation(isolation);
    let fetch = reader.read(0, usize::MAX, usize::MAX).unwrap();
    let values = fetch
        .iter()
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect();
    (values, fetch.next_offset())
}

fn values(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn rec(v: &str) -> Record {
    Record::keyed("k", v.to_owned())
}

#[test]
fn committed_readers_stop_at_the_last_stable_offset_and_skip_aborted_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic_or_create("t", TopicConfig::default()).unwrap();
    let w = topic.writer(0).unwrap();
    let (p1, p2) = (producer(1, 0), producer(2, 0));
    w.append(&[rec("a")]).unwrap();
    w.append_transactional(p1, &[rec("b"), rec("c")]).unwrap();
    w.append(&[rec("d")]).unwrap();
    w.append_transactional(p2, &[rec("e")]).unwrap();
    assert_eq!(
        w.last_stable_offset(),
        1,
        "p1's transaction is open from offset 1"
    );
    let mut r = topic.reader(0).unwrap();
    assert_eq!(
        read(&mut r, Isolation::ReadUncommitted),
        (values(&["a", "b", "c", "d", "e"]), 5)
    );
    assert_eq!(read(&mut r, Isolation::ReadCommitted), (values(&["a"]), 1));

    assert_eq!(w.end_transaction(p1, true).unwrap(), 5);
    assert_eq!(w.last_stable_offset(), 4, "p2's is still open");
    assert_eq!(
        read(&mut r, Isolation::ReadCommitted),
        (values(&["a", "b", "c", "d"]), 4)
    );
    assert_eq!(w.end_transaction(p2, false).unwrap(), 6);
    assert_eq!(w.last_stable_offset(), 7);
    assert_eq!(
        read(&mut r, Isolation::ReadCommitted),
        (values(&["a", "b", "c", "d"]), 7),
        "e was aborted; markers are never returned"
    );
    assert_eq!(
        read(&mut r, Isolation::ReadUncommitted),
        (values(&["a", "b", "c", "d", "e"]), 7)
    );
    // A read from inside the skipped range moves past it.
    r.set_isolation(Isolation::ReadCommitted);
    let fetch = r.read(4, 10, usize::MAX).unwrap();
    assert!(fetch.is_empty());
    assert_eq!(fetch.next_offset(), 7);
}

#[test]
fn an_older_epoch_is_fenced_at_its_next_append_or_marker() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic_or_create("t", TopicConfig::default()).unwrap();
    let w = topic.writer(0).unwrap();
    w.append_transactional(producer(7, 1), &[rec("new")])
        .unwrap();
    let fenced = w.append_transactional(producer(7, 0), &[rec("zombie")]);
    assert!(matches!(fenced, Err(LogError::Fenced { .. })), "{fenced:?}");
    assert!(matches!(
        w.end_transaction(producer(7, 0), true),
        Err(LogError::Fenced { .. })
    ));
    // A newer epoch ends the open transaction (aborting it), then starts its own.
    w.end_transaction(producer(7, 2), false).unwrap();
    w.append_transactional(producer(7, 2), &[rec("newer")])
        .unwrap();
    w.end_transaction(producer(7, 2), true).unwrap();
    let mut r = topic.reader(0).unwrap();
    assert_eq!(read(&mut r, Isolation::ReadCommitted).0, values(&["newer"]));
    // With nothing open, and after a reopen (from the snapshot, or from the log without it),
    // the older epochs stay fenced.
    let zombie = w.append_transactional(producer(7, 1), &[rec("zombie")]);
    assert!(matches!(zombie, Err(LogError::Fenced { .. })), "{zombie:?}");
    drop(w);
    for lose_snapshot in [false, true] {
        if lose_snapshot {
            std::fs::remove_file(partition_dir(dir.path()).join("txn-snapshot")).unwrap();
        }
        let w = topic.writer(0).unwrap();
        let zombie = w.append_transactional(producer(7, 1), &[rec("zombie")]);
        assert!(matches!(zombie, Err(LogError::Fenced { .. })), "{zombie:?}");
    }
}

/// Writes a committed, an aborted and an open transaction to partition 0 of `t` and closes.
fn three_transactions(dir: &Path) {
    let log = Log::open(dir).unwrap();
    let topic = log.topic_or_create("t", TopicConfig::default()).unwrap();
    let w = topic.writer(0).unwrap();
    w.append_transactional(producer(1, 0), &[rec("kept")])
        .unwrap(); // 0
    w.end_transaction(producer(1, 0), true).unwrap(); // 1
    w.append_transactional(producer(2, 0), &[rec("aborted")])
        .unwrap(); // 2
    w.end_transaction(producer(2, 0), false).unwrap(); // 3
    w.append(&[rec("plain")]).unwrap(); // 4
    w.append_transactional(producer(3, 0), &[rec("open")])
        .unwrap(); // 5
}

fn partition_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("topics").join("t").join("0")
}

#[test]
fn open_transactions_come_back_after_a_reopen_and_a_lost_snapshot() {
    for lose in [None, Some("txn-snapshot")] {
        let dir = tempfile::tempdir().unwrap();
        three_transactions(dir.path());
        if let Some(file) = lose {
            std::fs::remove_file(partition_dir(dir.path()).join(file)).unwrap();
        }
        let log = Log::open(dir.path()).unwrap();
        let topic = log.topic("t").unwrap();
        let mut r = topic.reader(0).unwrap();
        // No appender: the reader takes the last stable offset from the tail the last one left.
        assert_eq!(
            read(&mut r, Isolation::ReadCommitted),
            (values(&["kept", "plain"]), 5),
            "lost {lose:?}"
        );
        let w = topic.writer(0).unwrap();
        assert_eq!(
            read(&mut r, Isolation::ReadCommitted),
            (values(&["kept", "plain"]), 5),
            "lost {lose:?}, reopened"
        );
        assert_eq!(
            w.last_stable_offset(),
            5,
            "lost {lose:?}: 3's transaction is open"
        );
        assert!(partition_dir(dir.path())
            .join("00000000000000000000.txnindex")
            .exists());
        w.end_transaction(producer(3, 0), true).unwrap();
        assert_eq!(
            read(&mut r, Isolation::ReadCommitted),
            (values(&["kept", "plain", "open"]), 7),
            "lost {lose:?}"
        );
    }
}

#[test]
fn after_a_crash_the_active_segments_aborted_index_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    three_transactions(dir.path());
    let part = partition_dir(dir.path());
    // As a crash leaves it: no clean-close snapshot, the index entry not yet on disk.
    std::fs::remove_file(part.join("txn-snapshot")).unwrap();
    std::fs::remove_file(part.join("00000000000000000000.txnindex")).unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic("t").unwrap();
    let w = topic.writer(0).unwrap();
    assert!(part.join("00000000000000000000.txnindex").exists());
    assert_eq!(w.last_stable_offset(), 5);
    let mut r = topic.reader(0).unwrap();
    assert_eq!(
        read(&mut r, Isolation::ReadCommitted),
        (values(&["kept", "plain"]), 5)
    );
}

#[test]
fn a_reader_rereads_sealed_aborted_indexes_once_an_appender_recovered_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic_or_create("t", TopicConfig::default()).unwrap();
    let w = topic.writer(0).unwrap();
    w.append_transactional(producer(1, 0), &[rec("aborted")])
        .unwrap();
    w.end_transaction(producer(1, 0), false).unwrap();
    w.append(&[rec("plain")]).unwrap();
    w.roll_now().unwrap();
    w.append(&[rec("after")]).unwrap();
    drop(w);
    // The sealed segment's index lost: a reader cannot tell the aborted record apart yet.
    let part = partition_dir(dir.path());
    std::fs::remove_file(part.join("00000000000000000000.txnindex")).unwrap();
    let mut r = topic.reader(0).unwrap();
    assert_eq!(
        read(&mut r, Isolation::ReadCommitted).0,
        values(&["aborted", "plain", "after"])
    );
    // An appender's recovery lists the abort again; the same reader reads the index again.
    let w = topic.writer(0).unwrap();
    assert!(part.join("00000000000000000000.txnindex").exists());
    assert_eq!(
        read(&mut r, Isolation::ReadCommitted).0,
        values(&["plain", "after"])
    );
    drop(w);
}

#[test]
fn the_last_stable_offset_stays_at_the_log_start_once_retention_deleted_an_open_transactions_start()
{
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let mut config = common::small_segments(1, 1024);
    config.set("retention.bytes=3000").unwrap();
    let topic = log.topic_or_create("t", config).unwrap();
    let w = topic.writer(0).unwrap();
    w.append_transactional(producer(1, 0), &[rec("open")])
        .unwrap();
    for i in 0..100 {
        w.append(&[rec(&format!("plain-{i:03}-{}", "x".repeat(40)))])
            .unwrap();
    }
    let log_start = w.log_start_offset();
    assert!(
        log_start > 0,
        "retention deleted the transaction's first segment"
    );
    assert_eq!(w.last_stable_offset(), log_start);
    let mut r = topic.reader(0).unwrap();
    r.set_isolation(Isolation::ReadCommitted);
    assert_eq!(r.readable_end().unwrap(), log_start);
    // After a clean close, the tail published says the same.
    drop(w);
    let mut r = topic.reader(0).unwrap();
    r.set_isolation(Isolation::ReadCommitted);
    assert_eq!(r.readable_end().unwrap(), log_start);
}

/// Cuts `bytes` off the end of the active segment of partition 0 of `t` (a write cut short).
fn tear(dir: &Path, bytes: u64) {
    let path = partition_dir(dir).join("00000000000000000000.log");
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - bytes).unwrap();
}

#[test]
fn a_torn_marker_leaves_its_transaction_open_and_a_torn_batch_leaves_it_as_before() {
    // The last batch is the commit marker of producer 4: torn, the transaction is open again.
    let dir = tempfile::tempdir().unwrap();
    three_transactions(dir.path());
    {
        let log = Log::open(dir.path()).unwrap();
        let w = log.topic("t").unwrap().writer(0).unwrap();
        w.end_transaction(producer(3, 0), false).unwrap(); // 6
        w.append_transactional(producer(4, 0), &[rec("four")])
            .unwrap(); // 7
        w.end_transaction(producer(4, 0), true).unwrap(); // 8
    }
    tear(dir.path(), 5);
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic("t").unwrap();
    let w = topic.writer(0).unwrap();
    assert!(
        w.recovery_report().truncated_bytes > 0,
        "the marker was cut"
    );
    assert_eq!(w.last_stable_offset(), 7, "4's commit was torn away");
    let mut r = topic.reader(0).unwrap();
    assert_eq!(
        read(&mut r, Isolation::ReadCommitted).0,
        values(&["kept", "plain"])
    );
    w.end_transaction(producer(4, 0), true).unwrap();
    assert_eq!(
        read(&mut r, Isolation::ReadCommitted).0,
        values(&["kept", "plain", "four"])
    );
    drop(w);

    // A torn transactional batch: the transaction it would have opened does not exist.
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path()).unwrap();
        let topic = log.topic_or_create("t", TopicConfig::default()).unwrap();
        let w = topic.writer(0).unwrap();
        w.append(&[rec("plain")]).unwrap();
        w.append_transactional(producer(5, 0), &[rec("torn")])
            .unwrap();
    }
    tear(dir.path(), 3);
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic("t").unwrap();
    let w = topic.writer(0).unwrap();
    assert_eq!((w.end_offset(), w.last_stable_offset()), (1, 1));
    let mut r = topic.reader(0).unwrap();
    assert_eq!(read(&mut r, Isolation::ReadCommitted).0, values(&["plain"]));
}

#[test]
fn compaction_drops_aborted_records_keeps_markers_and_never_lets_them_shadow_committed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let mut config = TopicConfig::default();
    config.set("cleanup.policy=compact").unwrap();
    let topic = log.topic_or_create("c", config).unwrap();
    let w = topic.writer(0).unwrap();
    w.append_transactional(producer(1, 0), &[Record::keyed("k", "committed")])
        .unwrap();
    w.end_transaction(producer(1, 0), true).unwrap();
    w.append_transactional(producer(2, 0), &[Record::keyed("k", "aborted")])
        .unwrap();
    w.end_transaction(producer(2, 0), false).unwrap();
    w.roll_now().unwrap();
    w.append(&[Record::keyed("other", "x")]).unwrap();
    let stats = w.compact().unwrap();
    assert_eq!(stats.records_removed, 1, "{stats:?}");
    let mut r = topic.reader(0).unwrap();
    let all = read(&mut r, Isolation::ReadUncommitted).0;
    assert_eq!(
        all,
        values(&["committed", "x"]),
        "the aborted write is gone"
    );
    assert_eq!(
        read(&mut r, Isolation::ReadCommitted).0,
        values(&["committed", "x"])
    );
}

/// Five transactions in a compacted topic with `delete.retention.ms` = `retention`, sealed, and
/// one plain record after; returns the compaction's stats and the partition's directory.
fn compact_five_transactions(dir: &Path, retention: u64) -> (eddy::CompactionStats, Log) {
    let log = Log::open(dir).unwrap();
    let mut config = TopicConfig::default();
    config.set("cleanup.policy=compact").unwrap();
    config
        .set(&format!("delete.retention.ms={retention}"))
        .unwrap();
    let topic = log.topic_or_create("c", config).unwrap();
    let w = topic.writer(0).unwrap();
    let (p1, p2) = (producer(1, 0), producer(2, 0));
    for (p, key, value, commit) in [
        (p1, "a", "a1", true), // superseded by a2: its marker has nothing left to end
        (p1, "b", "b", false), // aborted: its data goes, so does its marker
        (p1, "a", "a2", true), // survives with its marker
        (p2, "c", "c", false), // aborted, but p2's newest marker stays (its epoch)
        (p1, "d", "d", true),  // p1's newest marker
    ] {
        w.append_transactional(p, &[Record::keyed(key, value)])
            .unwrap();
        w.end_transaction(p, commit).unwrap();
    }
    w.roll_now().unwrap();
    w.append(&[Record::keyed("z", "z")]).unwrap();
    let stats = w.compact().unwrap();
    drop(w);
    (stats, log)
}

#[test]
fn compaction_drops_markers_past_delete_retention_once_nothing_of_their_transaction_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let (stats, log) = compact_five_transactions(dir.path(), 0);
    // a1, b and c, and the markers of the first two transactions.
    assert_eq!(stats.records_removed, 5, "{stats:?}");
    let mut r = log.topic("c").unwrap().reader(0).unwrap();
    let want = values(&["a2", "d", "z"]);
    assert_eq!(read(&mut r, Isolation::ReadUncommitted).0, want);
    assert_eq!(read(&mut r, Isolation::ReadCommitted).0, want);
    // Recovered from the log alone, no transaction looks open: every record left has its marker.
    drop(log);
    std::fs::remove_file(dir.path().join("topics/c/0/txn-snapshot")).unwrap();
    let log = Log::open(dir.path()).unwrap();
    let w = log.topic("c").unwrap().writer(0).unwrap();
    assert_eq!(w.last_stable_offset(), w.end_offset());
    // p2's epoch is still known to the partition: an older epoch is fenced.
    assert!(matches!(
        w.append_transactional(producer(2, -1), &[Record::keyed("c", "zombie")]),
        Err(LogError::Fenced { .. })
    ));
}

#[test]
fn compaction_keeps_markers_within_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let (stats, log) = compact_five_transactions(dir.path(), 24 * 3600 * 1000);
    assert_eq!(stats.records_removed, 3, "a1, b and c only: {stats:?}");
    let mut r = log.topic("c").unwrap().reader(0).unwrap();
    assert_eq!(
        read(&mut r, Isolation::ReadCommitted).0,
        values(&["a2", "d", "z"])
    );
}

#[test]
fn a_committed_consumer_and_eddy_consume_stop_at_the_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic_or_create("t", TopicConfig::default()).unwrap();
    let w = topic.writer(0).unwrap();
    w.append(&[rec("before")]).unwrap();
    w.append_transactional(producer(1, 0), &[rec("pending")])
        .unwrap();
    w.append(&[rec("after")]).unwrap();

    let mut config = eddy::ConsumerConfig::new("g");
    config.isolation = Isolation::ReadCommitted;
    let mut c = eddy::Consumer::new(&log, config).unwrap();
    c.subscribe(&["t"]).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !c.caught_up().unwrap() && std::time::Instant::now() < deadline {
        for batch in c.poll(std::time::Duration::from_millis(10)).unwrap() {
            got.extend(batch.records.iter().map(|r| r.value.unwrap().to_vec()));
        }
    }
    assert!(
        c.caught_up().unwrap(),
        "caught up at the last stable offset"
    );
    assert_eq!(got, vec![b"before".to_vec()]);
    let shown = |isolation: &str| {
        let out = common::run_ok(dir.path(), &["consume", "t", "--isolation", isolation], "");
        out.lines().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(shown("read-committed"), ["before"]);
    assert_eq!(shown("read-uncommitted"), ["before", "pending", "after"]);

    w.end_transaction(producer(1, 0), true).unwrap();
    let mut more = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while more.len() < 2 && std::time::Instant::now() < deadline {
        for batch in c.poll(std::time::Duration::from_millis(10)).unwrap() {
            more.extend(batch.records.iter().map(|r| r.value.unwrap().to_vec()));
        }
    }
    assert_eq!(more, vec![b"pending".to_vec(), b"after".to_vec()]);
    assert_eq!(shown("read-committed"), ["before", "pending", "after"]);
}

#[test]
fn committed_reads_across_segments_rolled_between_data_and_markers() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let mut config = TopicConfig::default();
    config.set("segment.ms=1000").unwrap();
    let topic = log.topic_or_create("t", config).unwrap();
    let w = topic.writer(0).unwrap();
    let (kept, gone) = (producer(1, 0), producer(2, 0));
    // Old timestamps: a marker (stamped now) rolls the segment.
    let old = |v: &str| Record::keyed("k", v.to_owned()).at(1_700_000_000_000);
    w.append(&[old("plain")]).unwrap();
    w.append_transactional(kept, &[old("committed")]).unwrap();
    w.append_transactional(gone, &[old("aborted")]).unwrap();
    w.end_transaction(gone, false).unwrap();
    w.end_transaction(kept, true).unwrap();
    w.append_transactional(kept, &[old("later")]).unwrap();
    let mut r = topic.reader(0).unwrap();
    r.set_isolation(Isolation::ReadCommitted);
    for from in 0..6 {
        r.read(from, 100, usize::MAX).unwrap();
    }
    w.end_transaction(kept, true).unwrap();
    for from in 0..7 {
        let fetch = r.read(from, 100, usize::MAX).unwrap();
        assert_eq!(fetch.next_offset(), 7, "from {from}");
    }
    assert_eq!(
        read(&mut r, Isolation::ReadCommitted).0,
        values(&["plain", "committed", "later"])
    );
}
