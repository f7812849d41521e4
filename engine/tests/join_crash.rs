//! A pipeline of joins feeding windows, crashed: SIGKILLed at random points while its inputs
//! arrive, and aborted right after every checkpoint step. Its windows must equal an
//! uninterrupted run's.
//!
//! The pipeline: clicks ⋈ users (a table from a compacted topic) ⋈ as of prices ⋈ views within
//! ±50 ms, summed in 1 s tumbling windows per key. The children are this test binary re-executed
//! to run the ignored test `join_child_app` with `EDDY_JOIN_CHILD` naming the data dir.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use eddy::aggregate::{Count, Sum};
use eddy::{
    AppConfig, Application, AsOf, CleanupPolicy, Interval, JoinHow, Json, Log, Record, Str,
    TopicConfig, WindowResult,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const KEYS: u64 = 40;
const CLICKS: u64 = 30_000;
const PARTITIONS: u32 = 3;
/// Clicks are 10 ms apart; a view every 30 ms, 7 ms after a click.
const BLOCK: u64 = 300;

fn topic(dir: &Path, name: &str) -> eddy::Topic {
    let mut c = TopicConfig::with_partitions(PARTITIONS);
    if name == "users" {
        c.cleanup_policy = CleanupPolicy::Compact;
    }
    Log::open(dir).unwrap().topic_or_create(name, c).unwrap()
}

fn key(n: u64) -> String {
    format!("k{}", n % KEYS)
}

/// The inputs that do not change while the application runs: users and prices; and the empty
/// topics of the others (the application would create missing ones with one partition).
fn static_inputs(dir: &Path) {
    topic(dir, "clicks");
    topic(dir, "views");
    let users = (0..KEYS).map(|k| Record::keyed(key(k), (k + 1).to_string()).at(0));
    topic(dir, "users").append(users).unwrap();
    let end = CLICKS as i64 * 10;
    let prices = (0..end / 5_000 + 1).flat_map(|step| {
        (0..KEYS).map(move |k| {
            let ts = step * 5_000 + k as i64 * 13;
            Record::keyed(key(k), (step * 100 + k as i64).to_string()).at(ts)
        })
    });
    topic(dir, "prices").append(prices).unwrap();
}

/// Clicks `from..to` and the views of their time range.
fn append_block(clicks: &eddy::Topic, views: &eddy::Topic, from: u64, to: u64) {
    clicks
        .append((from..to).map(|n| Record::keyed(key(n), n.to_string()).at(n as i64 * 10)))
        .unwrap();
    let views_of =
        (from / 3..to / 3).map(|m| Record::keyed(key(m), m.to_string()).at(m as i64 * 30 + 7));
    views.append(views_of).unwrap();
}

fn build(dir: &Path) -> Application {
    let mut c = AppConfig::new(dir, "joins");
    c.commit_interval = Duration::from_millis(15);
    c.max_poll_records = 300;
    c.commit_every = 300;
    let app = Application::new(c).unwrap();
    let topic = |name| app.topic::<Str, Json<i64>>(name).unwrap();
    let (clicks, views, prices, users) = (
        topic("clicks"),
        topic("views"),
        topic("prices"),
        topic("users"),
    );
    let out = app
        .topic::<Str, Json<WindowResult<(u64, f64)>>>("windows")
        .unwrap();
    let users = app.table(&users);
    let prices = app.dataframe(&prices);
    let views = app.dataframe(&views);
    app.dataframe(&clicks)
        .join_table(&users, JoinHow::Left, |n, w| n * w.copied().unwrap_or(0))
        .join_asof(
            &prices,
            AsOf::new(Duration::from_secs(3600)).how(JoinHow::Left),
            |v, p| v + p.copied().unwrap_or(-1),
        )
        .join_interval(
            &views,
            Interval::new(Duration::from_millis(50), Duration::from_millis(50))
                .grace(Duration::from_secs(10)),
            |v, view| v + view.copied().unwrap_or(0),
        )
        .tumbling_window(Duration::from_secs(1), Duration::from_secs(5))
        .aggregate((Count, Sum(|v: &i64| *v as f64)))
        .emit_final()
        .to_topic(&out);
    app
}

#[test]
#[ignore = "entry point of a child process started by the tests in this file"]
fn join_child_app() {
    let Ok(dir) = std::env::var("EDDY_JOIN_CHILD") else {
        return;
    };
    build(Path::new(&dir)).run().unwrap();
}

fn child(dir: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["join_child_app", "--exact", "--ignored", "--nocapture"])
        .env("EDDY_JOIN_CHILD", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Window results by (key, start): (end, count, sum).
type Windows = BTreeMap<(String, i64), (i64, u64, i64)>;

/// The window results, checking that repeats are identical; and the number of results with
/// repeats.
fn windows(dir: &Path) -> (Windows, usize) {
    let t = Log::open(dir).unwrap().topic("windows").unwrap();
    let (mut distinct, mut total) = (BTreeMap::new(), 0);
    for p in 0..t.partitions() {
        for (_, r) in read_all(&mut t.reader(p).unwrap(), 0) {
            let k = String::from_utf8(r.key.unwrap()).unwrap();
            let w: WindowResult<(u64, f64)> = serde_json::from_slice(&r.value.unwrap()).unwrap();
            let value = (w.end, w.value.0, w.value.1 as i64);
            let previous = distinct.insert((k.clone(), w.start), value);
            assert!(
                previous.is_none_or(|p| p == value),
                "{k} {} repeated differently",
                w.start
            );
            total += 1;
        }
    }
    (distinct, total)
}

/// The windows of an uninterrupted run over all inputs.
fn calm_windows() -> Windows {
    let calm = tempfile::tempdir().unwrap();
    static_inputs(calm.path());
    let (clicks, views) = (topic(calm.path(), "clicks"), topic(calm.path(), "views"));
    append_block(&clicks, &views, 0, CLICKS);
    build(calm.path()).run_until_idle().unwrap();
    let (w, total) = windows(calm.path());
    assert_eq!(total, w.len(), "no repeats without crashes");
    assert!(w.len() > 250, "{} windows", w.len());
    w
}

fn assert_same(crashed: &Path) {
    let want = calm_windows();
    let (got, _) = windows(crashed);
    let missing: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !want.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing or differing {missing:?}, extra {extra:?}"
    );
}

#[test]
fn joined_windows_after_sigkills_at_random_points_equal_an_uninterrupted_run() {
    let crashed = tempfile::tempdir().unwrap();
    let dir = crashed.path().to_owned();
    static_inputs(&dir);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let (dir, done) = (dir.clone(), done.clone());
        std::thread::spawn(move || {
            let (clicks, views) = (topic(&dir, "clicks"), topic(&dir, "views"));
            for from in (0..CLICKS).step_by(BLOCK as usize) {
                append_block(&clicks, &views, from, from + BLOCK);
                std::thread::sleep(Duration::from_millis(8));
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let mut seed = 0x9E37_79B9_7F4A_7C15u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
    let (mut rounds, mut kills) = (0, 0);
    while rounds < 8 || !done.load(std::sync::atomic::Ordering::SeqCst) {
        rounds += 1;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut process = child(&dir).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(40 + seed % 300));
        match process.try_wait().unwrap() {
            None => {
                process.kill().unwrap(); // SIGKILL
                kills += 1;
                process.wait().unwrap();
            }
            Some(status) => panic!("the application stopped by itself: {status:?}"),
        }
    }
    feeder.join().unwrap();
    assert!(kills >= 4, "only {kills} runs were killed");
    build(&dir).run_until_idle().unwrap();
    assert_same(&dir);
}

#[test]
fn joined_windows_after_an_abort_after_every_checkpoint_step_equal_an_uninterrupted_run() {
    use std::os::unix::process::ExitStatusExt;
    let crashed = tempfile::tempdir().unwrap();
    let dir = crashed.path();
    static_inputs(dir);
    append_block(&topic(dir, "clicks"), &topic(dir, "views"), 0, CLICKS);
    for step in ["outputs", "changelog", "store", "commit"] {
        for n in [3, 8] {
            let status = child(dir)
                .env("EDDY_TEST_CRASH_AT", format!("{step}:{n}"))
                .status()
                .unwrap();
            assert_eq!(
                status.signal(),
                Some(6),
                "aborted after {step} of checkpoint {n}"
            );
        }
    }
    build(dir).run_until_idle().unwrap();
    let (_, total) = windows(dir);
    assert_same(dir);
    assert!(total > 0);
}
