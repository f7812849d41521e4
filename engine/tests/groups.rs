//! Consumer groups in one process: resume after commit, auto offset reset, seek, rebalancing
//! between members, two groups on one topic, describe and every reset option.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use eddy::{
    AutoOffsetReset, Consumer, ConsumerConfig, GroupError, Groups, Log, Record, ResetScope,
    ResetTarget,
};
use std::collections::BTreeMap;
use std::time::Duration;

fn config(group: &str) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(group);
    c.rebalance_check = Duration::from_millis(10);
    c
}

/// Polls until `n` records arrived or `polls` polls came back empty in a row.
fn drain(c: &mut Consumer, n: usize) -> Vec<(String, u32, u64, Record)> {
    let mut out = Vec::new();
    let mut empty = 0;
    while out.len() < n && empty < 100 {
        let batches = c.poll(Duration::from_millis(20)).unwrap();
        if batches.is_empty() {
            empty += 1;
        }
        for b in batches {
            for r in b.records.iter() {
                out.push((b.topic.clone(), b.partition, r.offset, r.to_record()));
            }
        }
    }
    out
}

fn fill(log: &Log, name: &str, partitions: u32, per_partition: u64) {
    let topic = log
        .create_topic(name, small_segments(partitions, 1 << 20))
        .unwrap();
    for p in 0..partitions {
        let recs: Vec<Record> = (0..per_partition)
            .map(|i| Record::value(format!("{p}-{i}")).at(1000 + i as i64))
            .collect();
        topic.writer(p).unwrap().append(&recs).unwrap();
    }
}

#[test]
fn a_restarted_member_resumes_right_after_its_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    fill(&log, "t", 2, 100);
    let mut c = Consumer::new(&log, config("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    let first = drain(&mut c, 1);
    assert!(!first.is_empty());
    let (t, p, _, _) = first[0].clone();
    c.commit_offsets(&[(t.clone(), p, 37)]).unwrap();
    let other = 1 - p;
    c.commit_offsets(&[(t.clone(), other, 0)]).unwrap();
    let mut cfg = config("g");
    cfg.commit_on_revoke = false;
    drop(c);
    // The drop committed positions (commit_on_revoke); commit the point we want again, then
    // restart without commit-on-revoke.
    let groups = Groups::new(&log);
    let rows = groups
        .plan_reset(
            "g",
            &ResetScope::Topics(vec![("t".into(), Some(vec![p]))]),
            ResetTarget::Offset(37),
        )
        .unwrap();
    groups.execute_reset("g", &rows).unwrap();
    let mut c = Consumer::new(&log, cfg).unwrap();
    c.subscribe(&["t"]).unwrap();
    let got = drain(&mut c, 1000);
    let from_p: Vec<u64> = got.iter().filter(|r| r.1 == p).map(|r| r.2).collect();
    assert_eq!(
        from_p,
        (37..100).collect::<Vec<_>>(),
        "exactly after the commit, nothing skipped"
    );
    assert_eq!(c.committed(&t, p).unwrap(), Some(37));
    c.commit().unwrap();
    assert_eq!(c.committed(&t, p).unwrap(), Some(100));
}

#[test]
fn auto_offset_reset_applies_only_without_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    fill(&log, "t", 1, 50);
    let mut latest = config("late");
    latest.auto_offset_reset = AutoOffsetReset::Latest;
    let mut c = Consumer::new(&log, latest).unwrap();
    c.subscribe(&["t"]).unwrap();
    assert!(drain(&mut c, 1).is_empty(), "latest starts at the end");
    log.topic("t")
        .unwrap()
        .writer(0)
        .unwrap()
        .append(&[Record::value("new")])
        .unwrap();
    let got = drain(&mut c, 1);
    assert_eq!(got[0].2, 50);
    let mut strict = config("strict");
    strict.auto_offset_reset = AutoOffsetReset::Error;
    let mut s = Consumer::new(&log, strict).unwrap();
    s.subscribe(&["t"]).unwrap();
    match s.poll(Duration::from_millis(50)) {
        Err(GroupError::NoCommittedOffset {
            group,
            topic,
            partition: 0,
        }) => {
            assert_eq!((group.as_str(), topic.as_str()), ("strict", "t"))
        }
        other => panic!(
            "expected NoCommittedOffset, got {:?}",
            other.map(|b| b.len())
        ),
    }
}

#[test]
fn seek_moves_the_position_of_an_owned_partition_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    fill(&log, "t", 1, 20);
    let mut c = Consumer::new(&log, config("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    drain(&mut c, 20);
    c.seek("t", 0, 5).unwrap();
    assert_eq!(drain(&mut c, 15).first().map(|r| r.2), Some(5));
    assert!(matches!(
        c.seek("t", 3, 0),
        Err(GroupError::NotAssigned { .. })
    ));
}

#[test]
fn members_share_partitions_fairly_and_take_over_when_one_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    fill(&log, "t", 6, 10);
    let mut members: Vec<Consumer> = (0..3)
        .map(|i| {
            let mut cfg = config("g");
            cfg.member_id = Some(format!("m{i}"));
            let mut c = Consumer::new(&log, cfg).unwrap();
            c.subscribe(&["t"]).unwrap();
            c
        })
        .collect();
    // Poll until the assignment settles: 2 partitions each, none shared.
    for _ in 0..200 {
        for m in members.iter_mut() {
            m.poll(Duration::from_millis(1)).unwrap();
        }
        if members.iter().all(|m| m.assignment().len() == 2) {
            break;
        }
    }
    let mut owned: Vec<_> = members.iter().flat_map(Consumer::assignment).collect();
    assert_eq!(owned.len(), 6, "{owned:?}");
    owned.sort();
    owned.dedup();
    assert_eq!(owned.len(), 6, "no partition has two owners");
    let desc = Groups::new(&log).describe("g").unwrap();
    assert_eq!(desc.members.len(), 3);
    assert!(desc.partitions.iter().all(|p| p.consumer_id.is_some()));
    members.pop(); // m2 leaves
    for _ in 0..200 {
        for m in members.iter_mut() {
            m.poll(Duration::from_millis(1)).unwrap();
        }
        if members.iter().all(|m| m.assignment().len() == 3) {
            break;
        }
    }
    assert_eq!(
        members
            .iter()
            .map(|m| m.assignment().len())
            .collect::<Vec<_>>(),
        [3, 3]
    );
}

#[test]
fn two_groups_read_one_topic_at_their_own_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    fill(&log, "t", 1, 100);
    let mut a = Consumer::new(&log, config("a")).unwrap();
    a.subscribe(&["t"]).unwrap();
    drain(&mut a, 100);
    a.commit().unwrap();
    let mut b = Consumer::new(&log, config("b")).unwrap();
    b.subscribe(&["t"]).unwrap();
    drain(&mut b, 1);
    b.commit_offsets(&[("t".into(), 0, 10)]).unwrap();
    assert_eq!(a.committed("t", 0).unwrap(), Some(100));
    assert_eq!(b.committed("t", 0).unwrap(), Some(10));
    drop((a, b));
    let groups = Groups::new(&log);
    let lag = |g: &str| groups.describe(g).unwrap().partitions[0].lag;
    assert_eq!(lag("a"), Some(0));
    assert!(lag("b").unwrap() < 100);
    assert_eq!(groups.list().unwrap(), ["a", "b"]);
}

#[test]
fn every_reset_option_lands_where_kafka_would() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log.create_topic("t", small_segments(2, 4096)).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for p in 0..2 {
        // 100 records one minute apart, the last one a minute ago.
        let recs: Vec<Record> = (0..100)
            .map(|i| Record::value(format!("{i}")).at(now - (100 - i) * 60_000))
            .collect();
        topic.writer(p).unwrap().append(&recs).unwrap();
    }
    let mut first = config("g");
    first.commit_on_revoke = false; // keep the commit of 50 when it leaves
    let mut c = Consumer::new(&log, first).unwrap();
    c.subscribe(&["t"]).unwrap();
    drain(&mut c, 1);
    c.commit_offsets(
        &c.assignment()
            .into_iter()
            .map(|(t, p)| (t, p, 50))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let groups = Groups::new(&log);
    let all = ResetScope::AllTopics;
    // Refused while the member lives.
    let plan = groups.plan_reset("g", &all, ResetTarget::Earliest).unwrap();
    match groups.execute_reset("g", &plan) {
        Err(GroupError::GroupActive { members: 1, .. }) => {}
        other => panic!("expected GroupActive, got {other:?}"),
    }
    assert!(matches!(
        groups.delete("g"),
        Err(GroupError::GroupActive { .. })
    ));
    drop(c);
    let p0 = |target| {
        let rows = groups
            .plan_reset(
                "g",
                &ResetScope::Topics(vec![("t".into(), Some(vec![0]))]),
                target,
            )
            .unwrap();
        assert_eq!(rows.len(), 1);
        rows[0].clone()
    };
    let commit = |rows: &[eddy::ResetRow]| groups.execute_reset("g", rows).unwrap();
    commit(&[p0(ResetTarget::Offset(50))]);
    assert_eq!(p0(ResetTarget::Earliest).new_offset, 0);
    assert_eq!(p0(ResetTarget::Latest).new_offset, 100);
    assert_eq!(p0(ResetTarget::Offset(42)).new_offset, 42);
    assert_eq!(p0(ResetTarget::ShiftBy(-7)).new_offset, 43);
    assert_eq!(p0(ResetTarget::ShiftBy(10)).new_offset, 60);
    let clamped = p0(ResetTarget::ShiftBy(-500));
    assert_eq!(clamped.new_offset, 0);
    assert!(clamped.clamped.unwrap().contains("before the log start"));
    let past = p0(ResetTarget::Offset(1_000));
    assert_eq!((past.new_offset, past.clamped.is_some()), (100, true));
    // Record i has timestamp now - (100 - i) minutes: 10 minutes ago is record 90.
    assert_eq!(
        p0(ResetTarget::Duration(Duration::from_secs(630))).new_offset,
        90
    );
    assert_eq!(p0(ResetTarget::Datetime(now - 30 * 60_000)).new_offset, 70);
    assert_eq!(
        p0(ResetTarget::Datetime(now + 1)).new_offset,
        100,
        "after every record: the end"
    );
    // Executing a reset changes what a member starts from.
    commit(&[p0(ResetTarget::Offset(95))]);
    let mut cfg = config("g");
    cfg.member_id = Some("solo".into());
    let mut c = Consumer::new(&log, cfg).unwrap();
    c.subscribe(&["t"]).unwrap();
    let got: BTreeMap<u32, Vec<u64>> =
        drain(&mut c, 55)
            .into_iter()
            .fold(BTreeMap::new(), |mut m, r| {
                m.entry(r.1).or_insert_with(Vec::new).push(r.2);
                m
            });
    assert_eq!(got[&0], (95..100).collect::<Vec<_>>());
    assert_eq!(got[&1], (50..100).collect::<Vec<_>>());
    drop(c);
    groups.delete("g").unwrap();
    assert!(groups.list().unwrap().is_empty());
    assert!(matches!(
        groups.describe("g"),
        Err(GroupError::GroupNotFound(_))
    ));
}

#[test]
fn group_names_are_checked_like_topic_names() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    for bad in ["", "..", "a/b", "x y"] {
        assert!(matches!(
            Consumer::new(&log, config(bad)),
            Err(GroupError::Log(eddy::LogError::InvalidName { .. }))
        ));
    }
}

#[test]
fn offsets_altered_without_joining_are_what_a_member_resumes_from() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    fill(&log, "t", 2, 10);
    let groups = Groups::new(&log);
    assert!(groups.committed("tool").unwrap().is_empty(), "no group yet");
    groups
        .alter_offsets("tool", &[("t", 0, 4), ("t", 1, 7)], r#"{"source":12}"#)
        .unwrap();
    groups
        .alter_offsets("tool", &[("t", 1, 9)], "later")
        .unwrap();
    let committed = groups.committed("tool").unwrap();
    assert_eq!(
        committed.get(&("t".to_owned(), 0)),
        Some(&(4, r#"{"source":12}"#.to_owned()))
    );
    assert_eq!(
        committed.get(&("t".to_owned(), 1)),
        Some(&(9, "later".to_owned()))
    );
    let too_long = "x".repeat(70_000);
    assert!(matches!(
        groups.alter_offsets("tool", &[("t", 0, 1)], &too_long),
        Err(GroupError::InvalidRequest(_))
    ));

    let mut member = Consumer::new(&log, config("tool")).unwrap();
    member.subscribe(&["t"]).unwrap();
    let first: BTreeMap<u32, u64> =
        drain(&mut member, 7)
            .into_iter()
            .fold(BTreeMap::new(), |mut m, (_, p, o, _)| {
                m.entry(p).or_insert(o);
                m
            });
    assert_eq!(first, BTreeMap::from([(0, 4), (1, 9)]));
    assert!(matches!(
        groups.alter_offsets("tool", &[("t", 0, 0)], ""),
        Err(GroupError::GroupActive { members: 1, .. })
    ));
    member.close().unwrap();
    groups.alter_offsets("tool", &[("t", 0, 0)], "").unwrap();
    assert_eq!(groups.committed("tool").unwrap()[&("t".to_owned(), 0)].0, 0);
}

#[test]
fn a_member_that_does_not_poll_in_time_gives_up_its_partitions_and_is_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let log = eddy::Log::open(dir.path()).unwrap();
    let topic = log
        .create_topic("t", eddy::TopicConfig::with_partitions(1))
        .unwrap();
    topic
        .append((0..10).map(|i| eddy::Record::value(i.to_string())))
        .unwrap();
    let mut config = eddy::ConsumerConfig::new("g");
    config.max_poll_interval = Some(std::time::Duration::from_millis(100));
    let mut stuck = eddy::Consumer::new(&log, config).unwrap();
    stuck.subscribe(&["t"]).unwrap();
    let mut got = 0;
    while got < 10 {
        got += stuck
            .poll(std::time::Duration::from_millis(50))
            .unwrap()
            .iter()
            .map(|b| b.records.len())
            .sum::<usize>();
    }
    std::thread::sleep(std::time::Duration::from_millis(300)); // "stuck" in its processing
    match stuck.commit() {
        Err(eddy::GroupError::PollIntervalExceeded { partitions, .. }) => {
            assert_eq!(partitions, "t-0");
        }
        other => panic!("expected PollIntervalExceeded, got {other:?}"),
    }
    assert_eq!(
        stuck.committed("t", 0).unwrap(),
        None,
        "nothing was committed"
    );
    assert!(stuck.assignment().is_empty());
    // Another member can take the partition now.
    let mut other = eddy::Consumer::new(&log, eddy::ConsumerConfig::new("g")).unwrap();
    other.subscribe(&["t"]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut redelivered = 0;
    while redelivered < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "the partition never moved"
        );
        redelivered += other
            .poll(std::time::Duration::from_millis(20))
            .unwrap()
            .iter()
            .map(|b| b.records.len())
            .sum::<usize>();
    }
    assert_eq!(
        redelivered, 10,
        "the uncommitted records are delivered again"
    );
    // The member that was stuck rejoins with its next poll, without an error.
    stuck.poll(std::time::Duration::from_millis(10)).unwrap();
    assert!(stuck.member_id().starts_with("member-"));
}

/// Polls `c` until it owns `n` partitions, or fails after 10 s.
fn poll_until_owning(c: &mut Consumer, n: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut records = 0;
    while c.assignment().len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "owns {:?}",
            c.assignment()
        );
        records += c
            .poll(Duration::from_millis(20))
            .unwrap()
            .iter()
            .map(|b| b.records.len())
            .sum::<usize>();
    }
    records
}

#[test]
fn a_stuck_member_loses_its_partitions_to_the_others_and_its_commit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    fill(&log, "t", 2, 10);
    let mut stuck_config = config("g");
    stuck_config.max_poll_interval = Some(Duration::from_millis(300));
    let mut stuck = Consumer::new(&log, stuck_config).unwrap();
    stuck.subscribe(&["t"]).unwrap();
    // Every poll of the drain renews the lease: its deadline is at least 300 ms after this.
    let before_polls = std::time::Instant::now();
    assert_eq!(drain(&mut stuck, 20).len(), 20);
    stuck
        .commit_offsets(&[("t".into(), 0, 4), ("t".into(), 1, 6)])
        .unwrap();
    // Now it is stuck in its processing (it polls no more) and keeps its locks; another member
    // joins and, once the stuck one is past its deadline, takes every partition.
    let mut other = Consumer::new(&log, config("g")).unwrap();
    other.subscribe(&["t"]).unwrap();
    let mut redelivered = poll_until_owning(&mut other, 2);
    assert!(
        before_polls.elapsed() >= Duration::from_millis(295),
        "taken over before the deadline"
    );
    redelivered += drain(&mut other, 10 - redelivered).len();
    assert_eq!(
        redelivered,
        6 + 4,
        "resumed at the stuck member's last commit"
    );
    other.commit().unwrap();
    // The stuck member resumes: its commit is refused, and it learns why.
    match stuck.commit_offsets(&[("t".into(), 0, 10)]) {
        Err(GroupError::PollIntervalExceeded { partitions, .. }) => {
            assert_eq!(partitions, "t-0, t-1")
        }
        other => panic!("expected PollIntervalExceeded, got {other:?}"),
    }
    let committed = Groups::new(&log).committed("g").unwrap();
    assert_eq!(committed[&("t".to_owned(), 0)].0, 10);
    assert_eq!(committed[&("t".to_owned(), 1)].0, 10);
    // It rejoins with its next poll, as a member like the others.
    stuck.poll(Duration::from_millis(10)).unwrap();
    let mut both = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while both != 2 {
        assert!(std::time::Instant::now() < deadline, "no rebalance");
        stuck.poll(Duration::from_millis(10)).unwrap();
        other.poll(Duration::from_millis(10)).unwrap();
        both = stuck.assignment().len() + other.assignment().len();
        if stuck.assignment().is_empty() || other.assignment().is_empty() {
            both = 0;
        }
    }
}

#[test]
fn a_member_replaced_as_stuck_before_its_own_clock_says_so_commits_nothing() {
    // The race a pause opens: the member passed its own poll-interval check, then stopped; the
    // others saw its lease expire and took its partitions. Its lease is expired here by hand.
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    fill(&log, "t", 1, 10);
    let mut paused_config = config("g");
    paused_config.member_id = Some("paused".into());
    paused_config.max_poll_interval = Some(Duration::from_secs(600));
    let mut paused = Consumer::new(&log, paused_config).unwrap();
    paused.subscribe(&["t"]).unwrap();
    assert_eq!(drain(&mut paused, 10).len(), 10);
    let lease = dir.path().join("groups/g/leases/paused");
    std::fs::write(&lease, 0i64.to_be_bytes()).unwrap();
    let mut other = Consumer::new(&log, config("g")).unwrap();
    other.subscribe(&["t"]).unwrap();
    assert_eq!(
        poll_until_owning(&mut other, 1) + drain(&mut other, 10).len(),
        10
    );
    assert!(matches!(
        paused.commit(),
        Err(GroupError::PollIntervalExceeded { .. })
    ));
    assert_eq!(
        Groups::new(&log)
            .committed("g")
            .unwrap()
            .get(&("t".to_owned(), 0)),
        None
    );
    other.commit().unwrap();
    assert_eq!(
        Groups::new(&log).committed("g").unwrap()[&("t".to_owned(), 0)].0,
        10
    );
}
