//! The transaction coordinator: a transaction's records in several partitions and its group
//! offsets commit together or not at all, across a crash before or after the decision; a newer
//! instance fences the older one; a transaction left open past its timeout is aborted.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use eddy::{
    abort_expired_transactions, Completed, Groups, Isolation, Log, LogError, Record, TopicConfig,
    TransactionOffsets, TransactionalProducer,
};

fn log_with_topics(dir: &std::path::Path) -> Log {
    let log = Log::open(dir).unwrap();
    for t in ["out", "changelog"] {
        log.topic_or_create(t, TopicConfig::default()).unwrap();
    }
    log
}

/// Committed values of partition 0 of `topic`.
fn committed(log: &Log, topic: &str) -> Vec<String> {
    let mut r = log.topic(topic).unwrap().reader(0).unwrap();
    r.set_isolation(Isolation::ReadCommitted);
    let fetch = r.read(0, usize::MAX, usize::MAX).unwrap();
    fetch
        .iter()
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect()
}

fn group_offset(log: &Log, group: &str) -> Option<u64> {
    let groups = Groups::new(log);
    let d = groups.describe(group).ok()?;
    d.partitions
        .iter()
        .find(|p| p.topic == "in")
        .and_then(|p| p.current_offset)
}

fn offsets(at: u64) -> Option<TransactionOffsets> {
    Some(TransactionOffsets {
        group: "g".into(),
        offsets: vec![("in".into(), 0, at)],
        metadata: "eos".into(),
    })
}

fn rec(v: &str) -> Record {
    Record::value(v.to_owned())
}

#[test]
fn a_transaction_commits_its_records_everywhere_with_its_offsets_or_aborts_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_topics(dir.path());
    log.topic_or_create("in", TopicConfig::default()).unwrap();
    let (mut p, completed) = TransactionalProducer::start(&log, "task-0").unwrap();
    assert_eq!(completed, Completed::Nothing);
    p.append("out", 0, &[rec("o1"), rec("o2")]).unwrap();
    p.append("changelog", 0, &[rec("c1")]).unwrap();
    assert!(committed(&log, "out").is_empty(), "not before the commit");
    p.commit(offsets(10)).unwrap();
    assert_eq!(committed(&log, "out"), ["o1", "o2"]);
    assert_eq!(committed(&log, "changelog"), ["c1"]);
    assert_eq!(group_offset(&log, "g"), Some(10));

    p.append("out", 0, &[rec("gone")]).unwrap();
    p.abort().unwrap();
    p.append("out", 0, &[rec("o3")]).unwrap();
    p.commit(offsets(20)).unwrap();
    assert_eq!(committed(&log, "out"), ["o1", "o2", "o3"]);
    assert_eq!(group_offset(&log, "g"), Some(20));
}

#[test]
fn a_crash_before_the_decision_aborts_and_one_after_it_commits() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_topics(dir.path());
    log.topic_or_create("in", TopicConfig::default()).unwrap();
    // Undecided when the instance died: the next start aborts it.
    let (mut a, _) = TransactionalProducer::start(&log, "task-0").unwrap();
    a.append("out", 0, &[rec("undecided")]).unwrap();
    drop(a);
    let (mut b, completed) = TransactionalProducer::start(&log, "task-0").unwrap();
    assert_eq!(completed, Completed::Aborted);
    assert!(committed(&log, "out").is_empty());
    assert_eq!(group_offset(&log, "g"), None);
    assert_eq!(
        log.topic("out")
            .unwrap()
            .writer(0)
            .unwrap()
            .last_stable_offset(),
        2
    );

    // Decided (its state says committing) when it died, before any marker: the next start
    // writes the markers and the offsets.
    b.append("out", 0, &[rec("decided")]).unwrap();
    b.append("changelog", 0, &[rec("state")]).unwrap();
    let state = dir.path().join("transactions").join("task-0").join("state");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    json["status"] = "committing".into();
    json["offsets"] = serde_json::to_value(offsets(5)).unwrap();
    std::fs::write(&state, serde_json::to_vec(&json).unwrap()).unwrap();
    drop(b);
    let (_c, completed) = TransactionalProducer::start(&log, "task-0").unwrap();
    assert_eq!(completed, Completed::Committed);
    assert_eq!(committed(&log, "out"), ["decided"]);
    assert_eq!(committed(&log, "changelog"), ["state"]);
    assert_eq!(group_offset(&log, "g"), Some(5));
}

#[test]
fn a_newer_instance_fences_the_older_at_its_next_append_or_commit() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_topics(dir.path());
    let (mut zombie, _) = TransactionalProducer::start(&log, "task-0").unwrap();
    zombie.append("out", 0, &[rec("zombie")]).unwrap();
    let (mut current, completed) = TransactionalProducer::start(&log, "task-0").unwrap();
    assert_eq!(completed, Completed::Aborted, "the zombie's transaction");
    assert!(current.identity().epoch > zombie.identity().epoch);
    let fenced = |r: Result<(), eddy::GroupError>| {
        matches!(r, Err(eddy::GroupError::Log(LogError::Fenced { .. })))
    };
    assert!(fenced(zombie.append("out", 0, &[rec("again")]).map(|_| ())));
    assert!(fenced(
        zombie.append("changelog", 0, &[rec("new")]).map(|_| ())
    ));
    assert!(fenced(zombie.commit(None)));
    current.append("out", 0, &[rec("current")]).unwrap();
    current.commit(None).unwrap();
    assert_eq!(committed(&log, "out"), ["current"]);
}

#[test]
fn a_transaction_open_past_its_timeout_is_aborted_by_the_next_start_and_its_owner_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_topics(dir.path());
    let (mut stuck, _) = TransactionalProducer::start(&log, "task-0").unwrap();
    stuck.set_transaction_timeout(Duration::from_millis(50));
    stuck.append("out", 0, &[rec("stuck")]).unwrap();
    let writer = log.topic("out").unwrap().writer(0).unwrap();
    assert_eq!(
        writer.last_stable_offset(),
        0,
        "stalled by the open transaction"
    );
    std::thread::sleep(Duration::from_millis(100));
    let (_other, _) = TransactionalProducer::start(&log, "task-1").unwrap();
    assert_eq!(writer.last_stable_offset(), 2, "aborted: the marker at 1");
    assert!(committed(&log, "out").is_empty());
    assert!(stuck.commit(None).is_err(), "fenced when it resumes");
}

#[test]
fn expired_transactions_are_aborted_on_request_and_live_ones_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_topics(dir.path());
    let (mut dead, _) = TransactionalProducer::start(&log, "dead").unwrap();
    dead.set_transaction_timeout(Duration::from_millis(50));
    dead.append("out", 0, &[rec("never committed")]).unwrap();
    drop(dead);
    let (mut live, _) = TransactionalProducer::start(&log, "live").unwrap();
    live.append("changelog", 0, &[rec("still going")]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(abort_expired_transactions(&log).unwrap(), 1);
    let out = log.topic("out").unwrap().writer(0).unwrap();
    assert_eq!(
        out.last_stable_offset(),
        out.end_offset(),
        "the dead one is aborted"
    );
    assert!(committed(&log, "out").is_empty());
    assert_eq!(
        abort_expired_transactions(&log).unwrap(),
        0,
        "nothing more to abort"
    );
    live.commit(None).unwrap();
    assert_eq!(committed(&log, "changelog"), ["still going"]);
}
