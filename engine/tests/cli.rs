//! The `eddy` command as a Kafka or rpk user drives it: real processes on real data directories.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use eddy::{Groups, Log, Record, TopicConfig, SETTING_NAMES};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `eddy ARGS` running, with stdout and stderr piped.
fn spawn_piped(dir: &std::path::Path, args: &[&str]) -> std::process::Child {
    eddy(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn fails(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = run(dir, args, b"");
    assert!(!out.status.success(), "{args:?} succeeded");
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn read_only_commands_never_create_the_data_directory_and_name_it_when_a_topic_is_missing() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("not-here");
    assert_eq!(run_ok(&dir, &["topics", "list"], ""), "");
    assert_eq!(run_ok(&dir, &["groups", "list"], ""), "");
    for args in [
        &["topics", "describe", "t"][..],
        &["consume", "t"],
        &["consume", "--topic", "t"],
    ] {
        let (code, err) = fails(&dir, args);
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(
            err.contains("\"t\"") && err.contains(&*dir.to_string_lossy()),
            "{args:?}: {err}"
        );
    }
    let (code, _) = fails(&dir, &["groups", "describe", "g"]);
    assert_eq!(code, 3);
    assert!(
        !dir.exists(),
        "a read-only command created {}",
        dir.display()
    );
    // A command that writes creates it.
    run_ok(&dir, &["topics", "create", "t"], "");
    assert!(dir.join("topics").join("t").is_dir());
}

fn three_records(dir: &std::path::Path) {
    run_ok(dir, &["topics", "create", "t", "--partitions", "2"], "");
    let log = Log::open(dir).unwrap();
    let t = log.topic("t").unwrap();
    t.writer(0)
        .unwrap()
        .append(&[
            Record::keyed("a", r#"{"n":1}"#)
                .at(10)
                .with_header("h", "x"),
            Record::keyed("b", "plain text").at(20),
        ])
        .unwrap();
    t.writer(1)
        .unwrap()
        .append(&[Record::keyed("c", "3").at(30)])
        .unwrap();
}

#[test]
fn consume_takes_the_topic_either_way_with_kafka_and_rpk_options() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    three_records(d);
    let positional = run_ok(d, &["consume", "t"], "");
    assert_eq!(run_ok(d, &["consume", "--topic", "t"], ""), positional);
    assert_eq!(positional.lines().count(), 3);
    let first_two = run_ok(d, &["consume", "t", "--max-messages", "2"], "");
    assert_eq!(first_two.lines().count(), 2);
    assert_eq!(run_ok(d, &["consume", "t", "-p", "1"], ""), "3\n");
    let formatted = run_ok(
        d,
        &[
            "consume",
            "t",
            "-p",
            "0",
            "-f",
            "%t/%p/%o %k=%v @%T [%h] %K:%V\\n",
        ],
        "",
    );
    assert_eq!(
        formatted,
        "t/0/0 a={\"n\":1} @10 [h=x] 1:7\nt/0/1 b=plain text @20 [] 1:10\n"
    );
    let (code, err) = fails(d, &["consume", "t", "-f", "%k %z"]);
    assert_eq!(code, 2);
    assert!(err.contains("%z") && err.contains("%v value"), "{err}");
    let json = run_ok(d, &["consume", "t", "-p", "0", "--format", "json"], "");
    let docs: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        docs[0]["value"],
        serde_json::json!({"n": 1}),
        "JSON as JSON"
    );
    assert_eq!(docs[0]["headers"]["h"], "x");
    assert_eq!(docs[1]["value"], "plain text", "other values as text");
}

#[test]
fn follow_waits_for_a_topic_that_does_not_exist_yet() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut child = spawn_piped(d, &["consume", "later", "--follow", "--max-messages", "1"]);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    stderr.read_line(&mut said).unwrap();
    assert!(said.contains("waiting"), "{said}");
    assert!(child.try_wait().unwrap().is_none(), "it exited: {said}");
    let log = Log::open(d).unwrap();
    log.create_topic("later", TopicConfig::with_partitions(1))
        .unwrap()
        .append([Record::keyed("k", "arrived")])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the consumer did not see the record"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(out, "arrived\n");
}

#[test]
fn topic_settings_print_under_their_own_names_and_can_be_altered() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(
        run_ok(d, &["topics", "create", "one"], ""),
        "Created topic one with 1 partition.\n"
    );
    assert_eq!(
        run_ok(d, &["topics", "create", "three", "--partitions", "3"], ""),
        "Created topic three with 3 partitions.\n"
    );
    let described = run_ok(d, &["topics", "describe", "one"], "");
    for name in SETTING_NAMES {
        assert!(
            described.contains(&format!("{name}=")),
            "{name}: {described}"
        );
    }
    assert!(described.contains("durability=1000"), "{described}");
    assert!(described.contains("cleanup.policy=delete"), "{described}");
    assert!(!described.contains("IntervalMs"), "{described}");
    let (code, err) = fails(d, &["topics", "create", "x", "-c", "durability=sometimes"]);
    assert_eq!(code, 2);
    assert!(err.contains("none, always"), "{err}");
    run_ok(
        d,
        &[
            "topics",
            "alter-config",
            "one",
            "-c",
            "retention.ms=60000",
            "-c",
            "durability=always",
        ],
        "",
    );
    let described = run_ok(d, &["topics", "describe", "one", "--format", "json"], "");
    let v: serde_json::Value = serde_json::from_str(&described).unwrap();
    assert_eq!(v["config"]["retention.ms"], "60000");
    assert_eq!(v["config"]["durability"], "always");
    let config = Log::open(d).unwrap().topic("one").unwrap().config().clone();
    assert_eq!(config.retention_ms, Some(60_000), "persisted in topic.json");
    let (code, err) = fails(d, &["topics", "alter-config", "one", "-c", "partitions=4"]);
    assert_eq!(code, 2);
    assert!(err.contains("fixed"), "{err}");
    let (code, _) = fails(
        d,
        &["topics", "alter-config", "missing", "-c", "retention.ms=1"],
    );
    assert_eq!(code, 3);
}

#[test]
fn reset_offsets_creates_a_new_group_and_exports_and_imports_plans() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    three_records(d);
    // A group that does not exist: the dry run shows the plan and creates nothing.
    let plan = run_ok(
        d,
        &[
            "groups",
            "reset-offsets",
            "--group",
            "fresh",
            "--topic",
            "t",
            "--to-latest",
        ],
        "",
    );
    assert!(plan.contains("dry run"), "{plan}");
    assert!(!d.join("groups").join("fresh").exists());
    run_ok(
        d,
        &[
            "groups",
            "reset-offsets",
            "--group",
            "fresh",
            "--topic",
            "t",
            "--to-offset",
            "1",
            "--execute",
        ],
        "",
    );
    let committed = Groups::new(&Log::open(d).unwrap())
        .committed("fresh")
        .unwrap();
    assert_eq!(committed.len(), 2);
    assert!(committed.values().all(|(o, _)| *o == 1));
    // --to-current --export saves the offsets; --from-file puts them back after another reset.
    let saved = run_ok(
        d,
        &[
            "groups",
            "reset-offsets",
            "fresh",
            "--all-topics",
            "--to-current",
            "--export",
        ],
        "",
    );
    assert_eq!(saved, "t,0,1\nt,1,1\n");
    run_ok(
        d,
        &[
            "groups",
            "reset-offsets",
            "fresh",
            "--all-topics",
            "--to-earliest",
            "--execute",
        ],
        "",
    );
    let file = d.join("offsets.csv");
    std::fs::write(&file, &saved).unwrap();
    let restored = run_ok(
        d,
        &[
            "groups",
            "reset-offsets",
            "fresh",
            "--from-file",
            file.to_str().unwrap(),
            "--execute",
            "--export",
        ],
        "",
    );
    assert_eq!(restored, saved);
    let described = run_ok(d, &["groups", "describe", "fresh", "--format", "json"], "");
    let v: serde_json::Value = serde_json::from_str(&described).unwrap();
    let offsets: Vec<u64> = v[0]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["current_offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [1, 1]);
    std::fs::write(&file, "t,0,x\n").unwrap();
    let (code, err) = fails(
        d,
        &[
            "groups",
            "reset-offsets",
            "fresh",
            "--from-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn groups_describe_shows_members_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    three_records(d);
    run_ok(
        d,
        &[
            "groups",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--execute",
        ],
        "",
    );
    let state = run_ok(d, &["groups", "describe", "g", "--state"], "");
    assert!(
        state.contains("STATE") && state.contains("Empty"),
        "{state}"
    );
    let members = run_ok(d, &["groups", "describe", "g", "--members"], "");
    assert!(members.contains("no active members"), "{members}");
    let mut member = spawn_piped(d, &["consume", "t", "--group", "g", "--follow"]);
    let mut lines = BufReader::new(member.stdout.take().unwrap()).lines();
    for _ in 0..3 {
        lines.next().unwrap().unwrap(); // the member owns both partitions once it printed all
    }
    let state = run_ok(d, &["groups", "describe", "g", "--state"], "");
    let members = run_ok(d, &["groups", "describe", "g", "--members"], "");
    member.kill().unwrap();
    member.wait().unwrap();
    assert!(
        state.contains("Stable") && state.contains("roundrobin"),
        "{state}"
    );
    let row = members.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("g ") && row.contains("t(0,1)"), "{members}");
    assert!(
        members.lines().next().unwrap().contains("#PARTITIONS"),
        "{members}"
    );
}

#[test]
fn groups_describe_flags_a_committed_offset_past_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    three_records(dir.path());
    let log = Log::open(dir.path()).unwrap();
    Groups::new(&log)
        .alter_offsets("g", &[("t", 0, 10)], "")
        .unwrap();
    let out = run_ok(dir.path(), &["groups", "describe", "g"], "");
    let row = out.lines().find(|l| l.starts_with("g ")).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[3..6], ["10", "2", "-8"], "{out}");
    assert!(
        out.contains("WARNING: group 'g' committed offset 10 for t-0, past its log end 2"),
        "{out}"
    );
    // A member resuming there starts over by auto_offset_reset (earliest): nothing is skipped.
    let got = run_ok(
        dir.path(),
        &["consume", "t", "-g", "g", "-n", "3", "-f", "%p-%o\\n"],
        "",
    );
    let mut got: Vec<&str> = got.lines().collect();
    got.sort_unstable();
    assert_eq!(got, ["0-0", "0-1", "1-0"]);
}

#[test]
fn a_read_only_data_directory_can_be_described_and_consumed() {
    let Some(disk) = SmallDisk::mount(8 << 20) else {
        return;
    };
    let data = disk.path().join("data");
    three_records(&data);
    run_ok(&data, &["consume", "t", "-g", "g", "-n", "1"], "");
    let remount = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(disk.path())
        .status()
        .unwrap();
    assert!(remount.success());
    let describe = run_ok(&data, &["topics", "describe", "t"], "");
    assert!(describe.contains("PartitionCount: 2"), "{describe}");
    let values = run_ok(&data, &["consume", "t", "-f", "%v\\n"], "");
    assert_eq!(values.lines().count(), 3, "{values}");
    let groups = run_ok(&data, &["groups", "describe", "g"], "");
    assert!(groups.contains("t"), "{groups}");
    // Changes fail with the filesystem's error, and nothing panics.
    let out = run(&data, &["produce", "t"], b"x\n");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_partition_count_past_the_cap_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = fails(
        dir.path(),
        &["topics", "create", "t", "--partitions", "100000"],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("partitions must be 1..=10000"), "{stderr}");
    assert!(!dir.path().join("topics/t").exists());
}
