//! What every example program owes its user: it honours `EDDY_DATA_DIR`, its `--help` says what
//! it does, its errors read as sentences (not Rust's Debug form), and its log lines carry no
//! colour codes when stderr is not a terminal.
#![allow(missing_docs, clippy::unwrap_used)]

use std::process::{Command, Output};

fn run(program: &str, data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("EDDY_DATA_DIR", data_dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn programs_use_eddy_data_dir_and_log_without_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let producer = env!("CARGO_BIN_EXE_temperature-producer");
    let out = run(
        producer,
        dir.path(),
        &["--count", "20", "--fast", "--quiet"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = eddy::Log::open(dir.path()).unwrap();
    let topic = log.topic("raw-temp-data").unwrap();
    let produced: u64 = (0..topic.partitions())
        .map(|p| topic.reader(p).unwrap().end_offset())
        .sum();
    assert_eq!(produced, 20);
    let processor = env!("CARGO_BIN_EXE_temperature-processor");
    let out = run(processor, dir.path(), &["--until-idle"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("read 20 readings"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a pipe: {stderr:?}"
    );
}

#[test]
fn help_says_what_each_program_does_and_errors_read_as_sentences() {
    let dir = tempfile::tempdir().unwrap();
    for (program, says) in [
        (env!("CARGO_BIN_EXE_demo"), "both tutorials"),
        (env!("CARGO_BIN_EXE_log-demo"), "topic of three partitions"),
        (
            env!("CARGO_BIN_EXE_temperature-producer"),
            "temperature readings",
        ),
        (
            env!("CARGO_BIN_EXE_temperature-processor"),
            "tumbling windows",
        ),
        (env!("CARGO_BIN_EXE_gps-produce"), "GPS track-point CSV"),
        (env!("CARGO_BIN_EXE_gps-distance"), "geodesic"),
        (env!("CARGO_BIN_EXE_gps-db-writer"), "SQLite"),
        (env!("CARGO_BIN_EXE_gps-query"), "dist_calc"),
    ] {
        let out = run(program, dir.path(), &["--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && help.contains(says),
            "{program}: {help}"
        );
        assert!(!help.contains("Options of"), "{program}: {help}");
    }
    // A CSV that does not exist: one line naming the program and the file.
    let out = run(
        env!("CARGO_BIN_EXE_gps-produce"),
        dir.path(),
        &["--csv", "/nonexistent/points.csv"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.starts_with("gps-produce: "), "{stderr}");
    assert!(stderr.contains("/nonexistent/points.csv"), "{stderr}");
    assert!(
        !stderr.contains("Error: ") && !stderr.contains(" { "),
        "{stderr}"
    );
}

#[test]
fn the_demo_keeps_its_data_in_eddy_data_dir_and_refuses_to_mix_two_runs() {
    let dir = tempfile::tempdir().unwrap();
    let demo = env!("CARGO_BIN_EXE_demo");
    let out = run(demo, dir.path(), &["--readings", "30"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let topics = eddy::Log::open(dir.path()).unwrap().list_topics().unwrap();
    assert!(topics.iter().any(|t| t == "raw-temp-data"), "{topics:?}");
    let again = run(demo, dir.path(), &["--readings", "30"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(
        stderr.starts_with("demo: ") && stderr.contains(&*dir.path().to_string_lossy()),
        "{stderr}"
    );
}

#[test]
fn a_bad_record_stops_the_processor_unless_on_error_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let producer = env!("CARGO_BIN_EXE_temperature-producer");
    let out = run(
        producer,
        dir.path(),
        &["--count", "10", "--fast", "--quiet"],
    );
    assert!(out.status.success());
    let log = eddy::Log::open(dir.path()).unwrap();
    let topic = log.topic("raw-temp-data").unwrap();
    let bad = topic
        .append([eddy::Record::keyed("sensor-1", "{not json")])
        .unwrap()[0];
    let processor = env!("CARGO_BIN_EXE_temperature-processor");
    let out = run(processor, dir.path(), &["--until-idle"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the default is to fail");
    assert!(
        stderr.contains(&format!("partition {} offset {}", bad.0, bad.1)),
        "{stderr}"
    );
    let out = run(
        processor,
        dir.path(),
        &["--until-idle", "--on-error", "dead-letter=bad-readings"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dead = log.topic("bad-readings").unwrap();
    let kept: u64 = (0..dead.partitions())
        .map(|p| dead.reader(p).unwrap().end_offset())
        .sum();
    assert_eq!(kept, 1, "the bad record went to the dead-letter topic");
    let out = run(
        processor,
        dir.path(),
        &["--until-idle", "--on-error", "maybe"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fail, skip or dead-letter=TOPIC"));
}
