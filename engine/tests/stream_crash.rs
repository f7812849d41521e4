//! A stateful application SIGKILLed at random points, restarted each time: its state must end
//! exactly where an uninterrupted run's does, and no output may show state that counted a record
//! twice or missed one.
//!
//! The children are this test binary re-executed to run one ignored test (`crash_child_app`,
//! `window_child_app`, `printing_child_app`) with an environment variable naming the data dir.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use eddy::{AppConfig, Application, Json, Log, Record, State, Str, TopicConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEYS: u64 = 50;
const RECORDS: u64 = 60_000;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Running {
    count: u64,
    sum: u64,
}

fn build(dir: &Path) -> Application {
    let mut c = AppConfig::new(dir, "counter");
    c.commit_interval = Duration::from_millis(15);
    c.max_poll_records = 300;
    c.commit_every = 300;
    c.fsync = std::env::var_os("EDDY_WINDOW_FSYNC").is_some();
    let app = Application::new(c).unwrap();
    let input = numbers_topic(&app);
    let output = app.topic::<Str, Json<Running>>("running").unwrap();
    app.dataframe(&input)
        .stateful_map(|n: u64, s: &mut State<'_>| {
            let mut r: Running = s.get("r").unwrap_or(Running { count: 0, sum: 0 });
            r.count += 1;
            r.sum += n;
            s.set("r", &r);
            r
        })
        .to_topic(&output);
    app
}

#[test]
#[ignore = "entry point of a child process started by the tests in this file"]
fn crash_child_app() {
    let Ok(dir) = std::env::var("EDDY_CRASH_CHILD") else {
        return;
    };
    build(Path::new(&dir)).run().unwrap();
}

/// Event time of number `n`: 10 ms apart, jittered back by up to 180 ms (within every grace),
/// with a 5 s pause every 1,000 numbers so that sessions end.
fn event_time(n: u64) -> i64 {
    (n * 10 + n / 1_000 * 5_000) as i64 - (n % 7) as i64 * 30
}

/// Output topics of the windowed pipeline.
const WINDOW_OUTPUTS: [&str; 3] = ["tumbling", "sliding", "sessions"];

/// A windowed pipeline: per key, count and sum in 1 s tumbling windows, 1 s sliding windows and
/// sessions with a 2 s gap; final results.
fn build_windows(dir: &Path) -> Application {
    use eddy::aggregate::{Count, Sum};
    let mut c = AppConfig::new(dir, "windows");
    c.commit_interval = Duration::from_millis(15);
    c.max_poll_records = 300;
    c.commit_every = 300;
    c.fsync = std::env::var_os("EDDY_WINDOW_FSYNC").is_some();
    let app = Application::new(c).unwrap();
    let input = numbers_topic(&app).with_timestamp(|n, _| event_time(*n));
    let numbers = app.dataframe(&input);
    let grace = Duration::from_millis(200);
    for (name, windows) in WINDOW_OUTPUTS.into_iter().zip([
        numbers.tumbling_window(Duration::from_secs(1), grace),
        numbers.sliding_window(Duration::from_secs(1), grace),
        numbers.session_window(Duration::from_secs(2), grace),
    ]) {
        let output = app
            .topic::<Str, Json<eddy::WindowResult<(u64, f64)>>>(name)
            .unwrap();
        windows
            .aggregate((Count, Sum(|n: &u64| *n as f64)))
            .emit_final()
            .to_topic(&output);
    }
    app
}

#[test]
#[ignore = "entry point of a child process started by the tests in this file"]
fn window_child_app() {
    let Ok(dir) = std::env::var("EDDY_WINDOW_CHILD") else {
        return;
    };
    build_windows(Path::new(&dir)).run().unwrap();
}

/// Window results by (output, key, start): (end, count, sum).
type WindowTable = BTreeMap<(&'static str, String, i64), (i64, u64, u64)>;

/// Distinct window results of `dir`, checking that repeated ones are identical, and the number
/// of results with repeats.
fn window_results(dir: &Path) -> (WindowTable, usize) {
    let log = Log::open(dir).unwrap();
    let mut distinct = BTreeMap::new();
    let mut total = 0;
    for output in WINDOW_OUTPUTS {
        let t = log.topic(output).unwrap();
        for p in 0..t.partitions() {
            for (_, r) in read_all(&mut t.reader(p).unwrap(), 0) {
                let key = String::from_utf8(r.key.unwrap()).unwrap();
                let w: eddy::WindowResult<(u64, f64)> =
                    serde_json::from_slice(&r.value.unwrap()).unwrap();
                let value = (w.end, w.value.0, w.value.1 as u64);
                let previous = distinct.insert((output, key.clone(), w.start), value);
                assert!(
                    previous.is_none_or(|p| p == value),
                    "a repeated {output} result differs: {key} {} {value:?}",
                    w.start
                );
                total += 1;
            }
        }
    }
    (distinct, total)
}

/// Checks that `crashed` emitted the same windows as an uninterrupted run over the same input
/// (`calm`), and returns how many results the crashes repeated.
fn assert_same_windows(crashed: &Path, calm: &Path) -> usize {
    let input_sizes = |dir: &Path| {
        let t = Log::open(dir).unwrap().topic("numbers").unwrap();
        (0..t.partitions())
            .map(|p| t.reader(p).unwrap().end_offset())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        input_sizes(crashed),
        input_sizes(calm),
        "both runs read the same input partitions"
    );
    let (after_crashes, total) = window_results(crashed);
    let (uninterrupted, calm_total) = window_results(calm);
    assert_eq!(
        calm_total,
        uninterrupted.len(),
        "no repeats without crashes"
    );
    for output in WINDOW_OUTPUTS {
        let n = uninterrupted.keys().filter(|k| k.0 == output).count();
        assert!(n > 500, "{n} {output} windows");
    }
    let differing: Vec<_> = uninterrupted
        .iter()
        .filter(|(k, v)| after_crashes.get(*k) != Some(*v))
        .map(|(k, v)| (k, v, after_crashes.get(k)))
        .take(10)
        .collect();
    let extra: Vec<_> = after_crashes
        .keys()
        .filter(|k| !uninterrupted.contains_key(*k))
        .take(10)
        .collect();
    assert!(
        differing.is_empty() && extra.is_empty(),
        "missing or different (key, uninterrupted, after crashes): {differing:?}; extra: {extra:?}"
    );
    total - after_crashes.len()
}

/// A child printing every record; `run` returns on SIGTERM and the process exits 0.
#[test]
#[ignore = "entry point of a child process started by the tests in this file"]
fn printing_child_app() {
    let Ok(dir) = std::env::var("EDDY_PRINT_CHILD") else {
        return;
    };
    let mut c = AppConfig::new(&dir, "printer");
    c.commit_interval = Duration::from_secs(3600); // only the final checkpoint commits
    let app = Application::new(c).unwrap();
    let input = numbers_topic(&app);
    app.dataframe(&input).print();
    let mut app = app;
    app.run().unwrap();
    println!("clean exit");
}

/// This test binary re-executed to run only the test `child`, with `env` naming the data dir.
fn child(name: &str, env: &str, dir: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([name, "--exact", "--ignored", "--nocapture"])
        .env(env, dir);
    c
}

/// Runs `name` once per checkpoint step and number in `checkpoints`, each aborted right after
/// that step of that checkpoint (`EDDY_TEST_CRASH_AT`), one after the other on `dir`.
fn abort_after_every_step(name: &str, env: &str, dir: &Path, checkpoints: [u64; 2]) {
    use std::os::unix::process::ExitStatusExt;
    for step in ["outputs", "changelog", "store", "commit"] {
        for n in checkpoints {
            let status = child(name, env, dir)
                .env("EDDY_TEST_CRASH_AT", format!("{step}:{n}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert_eq!(
                status.signal(),
                Some(6),
                "aborted after {step} of checkpoint {n}"
            );
        }
    }
}

/// Partitions of the input topic. The children and the feeder both create it when missing, in
/// whichever order they start, so both must create it alike.
const PARTITIONS: u32 = 3;

/// The input topic of the applications.
fn numbers_topic(app: &Application) -> eddy::StreamTopic<Str, Json<u64>> {
    app.topic_with_config("numbers", TopicConfig::with_partitions(PARTITIONS))
        .unwrap()
}

fn numbers_input(dir: &Path) -> eddy::Topic {
    Log::open(dir)
        .unwrap()
        .topic_or_create("numbers", TopicConfig::with_partitions(PARTITIONS))
        .unwrap()
}

fn append_numbers(topic: &eddy::Topic, from: u64, to: u64) {
    topic
        .append((from..to).map(|i| Record::keyed(format!("k{}", i % KEYS), i.to_string())))
        .unwrap();
}

fn produce(dir: &Path, from: u64, to: u64) {
    append_numbers(&numbers_input(dir), from, to);
}

/// Input offsets committed by the counting application, over all partitions.
fn committed_input(dir: &Path) -> u64 {
    committed_input_of(dir, "counter")
}

fn committed_input_of(dir: &Path, group: &str) -> u64 {
    let log = Log::open(dir).unwrap();
    eddy::Groups::new(&log)
        .describe(group)
        .map(|d| d.partitions.iter().filter_map(|p| p.current_offset).sum())
        .unwrap_or(0)
}

/// Per key, the (count, sum) after each of its first n records.
fn prefix_sums() -> BTreeMap<String, Vec<Running>> {
    let mut m: BTreeMap<String, Vec<Running>> = BTreeMap::new();
    for i in 0..RECORDS {
        let v = m.entry(format!("k{}", i % KEYS)).or_default();
        let (count, sum) = v.last().map_or((0, 0), |r| (r.count, r.sum));
        v.push(Running {
            count: count + 1,
            sum: sum + i,
        });
    }
    m
}

/// Checks every output against the prefix sums and returns the last output per key.
/// Also checks that every key's outputs include every count from 1 to its last (none missing).
fn check_outputs(dir: &Path) -> (BTreeMap<String, Running>, usize) {
    let expected = prefix_sums();
    let t = Log::open(dir).unwrap().topic("running").unwrap();
    let mut last = BTreeMap::new();
    let mut seen: BTreeMap<String, std::collections::BTreeSet<u64>> = BTreeMap::new();
    let mut total = 0;
    for p in 0..t.partitions() {
        for (offset, r) in read_all(&mut t.reader(p).unwrap(), 0) {
            let key = String::from_utf8(r.key.unwrap()).unwrap();
            let got: Running = serde_json::from_slice(&r.value.unwrap()).unwrap();
            let want = &expected[&key][got.count as usize - 1];
            assert_eq!(
                &got, want,
                "output {key} at offset {offset} reflects exact state"
            );
            seen.entry(key.clone()).or_default().insert(got.count);
            last.insert(key, got);
            total += 1;
        }
    }
    for (key, counts) in &seen {
        let top = last[key].count;
        assert_eq!(counts.len() as u64, top, "{key}: an output is missing");
    }
    (last, total)
}

/// Runs child `name` on `dir` again and again while a feeder appends all input in small batches,
/// SIGKILLing each run at a random moment, until the feeder is done (at least 8 runs). Asserts
/// that at least 4 runs were killed, 3 of them while `group` had input left to process.
fn kill_at_random_while_input_arrives(name: &str, env: &str, dir: &Path, group: &str) {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let produced = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let feeder = {
        let (dir, produced) = (dir.to_owned(), produced.clone());
        std::thread::spawn(move || {
            // One appender for the whole feed, as a producer process holds it: the children
            // this test forks meanwhile would hold a copy of a lock reopened here until they
            // exec (see `Topic::writer`).
            let topic = numbers_input(&dir);
            for from in (0..RECORDS).step_by(200) {
                append_numbers(&topic, from, from + 200);
                produced.store(from + 200, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(4));
            }
        })
    };
    let mut kills = 0;
    let mut killed_mid_stream = 0;
    let mut round = 0;
    while round < 8 || !feeder.is_finished() {
        round += 1;
        let mut process = child(name, env, dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(30 + random(300)));
        if process.try_wait().unwrap().is_none() {
            process.kill().unwrap(); // SIGKILL
            kills += 1;
            process.wait().unwrap();
            let at_kill = produced.load(std::sync::atomic::Ordering::SeqCst);
            if committed_input_of(dir, group) < at_kill {
                killed_mid_stream += 1;
            }
        }
        process.wait().unwrap();
    }
    feeder.join().unwrap();
    assert!(kills >= 4, "only {kills} runs were killed");
    assert!(
        killed_mid_stream >= 3,
        "only {killed_mid_stream} kills hit a run that had input left"
    );
}

#[test]
fn state_survives_sigkill_at_random_points() {
    let crashed = tempfile::tempdir().unwrap();
    let calm = tempfile::tempdir().unwrap();
    kill_at_random_while_input_arrives(
        "crash_child_app",
        "EDDY_CRASH_CHILD",
        crashed.path(),
        "counter",
    );
    // Finish in-process, then compare with an uninterrupted run.
    let started = Instant::now();
    build(crashed.path()).run_until_idle().unwrap();
    assert!(started.elapsed() < Duration::from_secs(60));
    produce(calm.path(), 0, RECORDS);
    build(calm.path()).run_until_idle().unwrap();
    let (crashed_last, crashed_total) = check_outputs(crashed.path());
    let (calm_last, calm_total) = check_outputs(calm.path());
    assert_eq!(calm_total as u64, RECORDS);
    assert_eq!(
        crashed_last, calm_last,
        "final state equals the uninterrupted run's"
    );
    assert_eq!(crashed_last.len() as u64, KEYS);
    assert!(crashed_total as u64 >= RECORDS, "no output missing");
}

#[test]
fn a_crash_between_any_two_checkpoint_steps_keeps_state_exact() {
    let dir = tempfile::tempdir().unwrap();
    produce(dir.path(), 0, RECORDS);
    abort_after_every_step("crash_child_app", "EDDY_CRASH_CHILD", dir.path(), [2, 5]);
    let progressed = committed_input(dir.path());
    assert!(
        progressed > 0 && progressed < RECORDS,
        "crashes were mid-stream"
    );
    build(dir.path()).run_until_idle().unwrap();
    let (last, total) = check_outputs(dir.path());
    let expected: BTreeMap<String, Running> = prefix_sums()
        .into_iter()
        .map(|(k, v)| (k, v.last().unwrap().clone()))
        .collect();
    assert_eq!(last, expected);
    assert!(total as u64 > RECORDS, "the crashes repeated some outputs");
}

#[test]
fn sigterm_ends_run_with_a_final_checkpoint_and_print_shows_records() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    produce(dir.path(), 0, 30);
    let mut process = child("printing_child_app", "EDDY_PRINT_CHILD", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(process.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    while printed.len() < 30 {
        let line = lines.next().unwrap().unwrap();
        if line.starts_with("[numbers ") {
            printed.push(line);
        }
    }
    assert!(
        printed
            .iter()
            .any(|l| l.contains("key=Some(\"k7\") value=7")),
        "{printed:?}"
    );
    assert_eq!(
        committed_input_of(dir.path(), "printer"),
        0,
        "nothing committed yet"
    );
    let pid = process.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = process.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(rest.iter().any(|l| l == "clean exit"));
    assert_eq!(
        committed_input_of(dir.path(), "printer"),
        30,
        "final checkpoint committed"
    );
}

#[test]
fn windowed_results_after_sigkills_at_random_points_equal_an_uninterrupted_run() {
    let crashed = tempfile::tempdir().unwrap();
    let calm = tempfile::tempdir().unwrap();
    kill_at_random_while_input_arrives(
        "window_child_app",
        "EDDY_WINDOW_CHILD",
        crashed.path(),
        "windows",
    );
    build_windows(crashed.path()).run_until_idle().unwrap();
    produce(calm.path(), 0, RECORDS);
    build_windows(calm.path()).run_until_idle().unwrap();
    assert_same_windows(crashed.path(), calm.path());
}

#[test]
fn windowed_results_after_crashes_equal_an_uninterrupted_run() {
    let crashed = tempfile::tempdir().unwrap();
    let calm = tempfile::tempdir().unwrap();
    produce(crashed.path(), 0, RECORDS);
    produce(calm.path(), 0, RECORDS);
    abort_after_every_step(
        "window_child_app",
        "EDDY_WINDOW_CHILD",
        crashed.path(),
        [3, 9],
    );
    build_windows(crashed.path()).run_until_idle().unwrap();
    build_windows(calm.path()).run_until_idle().unwrap();
    let repeated = assert_same_windows(crashed.path(), calm.path());
    assert!(repeated > 0, "the crashes repeated some results");
}

#[test]
fn windowed_results_after_a_full_disk_equal_an_uninterrupted_run() {
    let Some(disk) = SmallDisk::mount(48 << 20) else {
        return;
    };
    let full = disk.path().join("data");
    let calm = tempfile::tempdir().unwrap();
    produce(&full, 0, RECORDS);
    produce(calm.path(), 0, RECORDS);
    let filler = disk.fill_leaving(3 << 20);
    let err = build_windows(&full)
        .run_until_idle()
        .expect_err("the disk filled up");
    let text = err.to_string();
    assert!(
        text.contains("No space left") || text.contains("no space") || text.contains("NoSpace"),
        "{text}"
    );
    std::fs::remove_file(filler).unwrap();
    build_windows(&full).run_until_idle().unwrap();
    build_windows(calm.path()).run_until_idle().unwrap();
    assert_same_windows(&full, calm.path());
}

/// Runs the windowed pipeline in a child on a filesystem that loses power three times while it
/// works (with fsyncing checkpoints when `fsync`), then to the end, and compares its windows
/// with an uninterrupted run's.
fn windows_after_power_losses(fsync: bool) {
    let mount = tempfile::tempdir().unwrap();
    let mut fs = faultfs::FaultFs::mount(mount.path()).expect("mount the fault filesystem");
    let dir = fs.path().join("data");
    let calm = tempfile::tempdir().unwrap();
    produce(&dir, 0, RECORDS);
    produce(calm.path(), 0, RECORDS);
    let mut kept = 0;
    for round in 0..3 {
        let mut command = child("window_child_app", "EDDY_WINDOW_CHILD", &dir);
        if fsync {
            command.env("EDDY_WINDOW_FSYNC", "1");
        }
        let mut process = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(400 + 300 * round));
        process.kill().unwrap();
        process.wait().unwrap();
        fs.power_loss().unwrap();
        if fsync {
            kept = kept.max(committed_input_of(&dir, "windows"));
        }
    }
    if fsync {
        assert!(kept > 0, "fsynced checkpoints survive a power loss");
    }
    build_windows(&dir).run_until_idle().unwrap();
    build_windows(calm.path()).run_until_idle().unwrap();
    assert_same_windows(&dir, calm.path());
}

#[test]
fn windowed_results_after_power_losses_equal_an_uninterrupted_run() {
    windows_after_power_losses(false);
}

#[test]
fn with_fsync_checkpoints_survive_power_losses_and_results_still_agree() {
    windows_after_power_losses(true);
}
