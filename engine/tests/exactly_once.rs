//! Exactly-once processing: a stateful application SIGKILLed at random points and aborted right
//! after every step of a checkpoint, restarted each time. Its committed output must hold exactly
//! one result per input record — the running count 1, 2, 3, ... of each key, none repeated, none
//! missing. The children are this test binary re-executed to run `eos_child_app`. An instance
//! stopped in the middle of a checkpoint, its tasks taken over by another, is fenced when it is
//! continued.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::{owners, signal};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eddy::{
    AppConfig, Application, Groups, Isolation, Json, Log, ProcessingGuarantee, Record, State, Str,
    TopicConfig,
};

const KEYS: u64 = 20;
const PARTITIONS: u32 = 3;

fn build(dir: &Path, guarantee: ProcessingGuarantee) -> Application {
    let mut c = AppConfig::new(dir, "eos");
    c.commit_interval = Duration::from_millis(15);
    c.commit_every = 200;
    c.max_poll_records = 200;
    c.processing_guarantee = guarantee;
    // Instances started side by side keep their own stores, as Kafka Streams' do.
    if let Ok(state) = std::env::var("EDDY_EOS_STATE_DIR") {
        c.state_dir = Some(state.into());
    }
    if let Ok(ms) = std::env::var("EDDY_EOS_POLL_MS") {
        c.max_poll_interval = Some(Duration::from_millis(ms.parse().unwrap()));
    }
    let app = Application::new(c).unwrap();
    let input = app
        .topic_with_config::<Str, Json<u64>>("in", TopicConfig::with_partitions(PARTITIONS))
        .unwrap();
    let output = app.topic::<Str, Json<u64>>("counts").unwrap();
    app.dataframe(&input)
        .stateful_map(|_n: u64, s: &mut State<'_>| {
            let count: u64 = s.get("count").unwrap_or(0) + 1;
            s.set("count", &count);
            count
        })
        .to_topic(&output);
    app
}

#[test]
#[ignore = "entry point of a child process started by the tests in this file"]
fn eos_child_app() {
    let Ok(dir) = std::env::var("EDDY_EOS_CHILD") else {
        return;
    };
    build(Path::new(&dir), ProcessingGuarantee::ExactlyOnce)
        .run()
        .unwrap();
}

fn child(dir: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["eos_child_app", "--exact", "--ignored", "--nocapture"])
        .env("EDDY_EOS_CHILD", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn produce(dir: &Path, from: u64, to: u64) {
    let log = Log::open(dir).unwrap();
    let topic = log
        .topic_or_create("in", TopicConfig::with_partitions(PARTITIONS))
        .unwrap();
    topic
        .append((from..to).map(|i| {
            Record::keyed(
                serde_json::to_vec(&format!("k{}", i % KEYS)).unwrap(),
                i.to_string(),
            )
        }))
        .unwrap();
}

/// Per key, the committed counts in output order.
fn committed_counts(dir: &Path) -> BTreeMap<String, Vec<u64>> {
    counts(dir, Isolation::ReadCommitted)
}

/// Per key, the counts a reader with `isolation` sees, in output order.
fn counts(dir: &Path, isolation: Isolation) -> BTreeMap<String, Vec<u64>> {
    let log = Log::open(dir).unwrap();
    let Ok(topic) = log.topic("counts") else {
        return BTreeMap::new();
    };
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for p in 0..topic.partitions() {
        let mut r = topic.reader(p).unwrap();
        r.set_isolation(isolation);
        let fetch = r.read(0, usize::MAX, usize::MAX).unwrap();
        for rec in fetch.iter() {
            let key: String = serde_json::from_slice(rec.key.unwrap()).unwrap();
            out.entry(key)
                .or_default()
                .push(serde_json::from_slice(rec.value.unwrap()).unwrap());
        }
    }
    out
}

/// Counts 1..=n for each key of `records` input records, as an uninterrupted run gives them.
fn exact(records: u64) -> BTreeMap<String, Vec<u64>> {
    (0..KEYS)
        .map(|k| {
            let n = (records + KEYS - 1 - k) / KEYS;
            (format!("k{k}"), (1..=n).collect())
        })
        .collect()
}

/// How many committed results repeat one already seen.
fn repeats(counts: &BTreeMap<String, Vec<u64>>) -> usize {
    counts
        .values()
        .map(|v| v.len() - v.iter().collect::<std::collections::BTreeSet<_>>().len())
        .sum()
}

#[test]
fn sigkills_at_random_points_leave_exactly_one_committed_result_per_record() {
    let dir = tempfile::tempdir().unwrap();
    // Kill moments from a fixed xorshift sequence: 20..80 ms into each child, while it works.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % 60
    };
    let (mut produced, per_cycle, cycles) = (0u64, 20_000u64, 12);
    for _ in 0..cycles {
        produce(dir.path(), produced, produced + per_cycle);
        produced += per_cycle;
        let mut c = child(dir.path()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(20 + next()));
        c.kill().unwrap();
        c.wait().unwrap();
    }
    let mut app = build(dir.path(), ProcessingGuarantee::ExactlyOnce);
    app.run_until_idle().unwrap();
    let got = committed_counts(dir.path());
    assert_eq!(repeats(&got), 0, "a result committed twice");
    assert_eq!(got, exact(produced));
}

#[test]
fn an_abort_after_every_checkpoint_step_leaves_all_or_nothing_of_it() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let mut produced = 0u64;
    for step in ["outputs", "changelog", "commit", "store"] {
        for n in [1u64, 3] {
            produce(dir.path(), produced, produced + 1_000);
            produced += 1_000;
            let status = child(dir.path())
                .env("EDDY_TEST_CRASH_AT", format!("{step}:{n}"))
                .status()
                .unwrap();
            assert_eq!(
                status.signal(),
                Some(6),
                "aborted after {step} of checkpoint {n}"
            );
            let got = committed_counts(dir.path());
            assert_eq!(repeats(&got), 0, "after {step} of checkpoint {n}");
        }
    }
    let mut app = build(dir.path(), ProcessingGuarantee::ExactlyOnce);
    app.run_until_idle().unwrap();
    assert_eq!(committed_counts(dir.path()), exact(produced));
}

fn wait_for(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The state letter of process `pid` in `/proc` (`T`: stopped).
fn process_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = stat.rsplit_once(')').unwrap().1;
    after_name.trim_start().chars().next().unwrap()
}

#[test]
fn an_instance_stopped_mid_checkpoint_whose_tasks_moved_is_fenced_when_continued() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let instance = |name: &str| {
        let mut c = child(path);
        c.env("EDDY_EOS_POLL_MS", "1000")
            .env("EDDY_EOS_STATE_DIR", path.join(format!("state-{name}")))
            .stderr(std::fs::File::create(path.join(format!("stderr-{name}"))).unwrap());
        c
    };
    // What the instances said, for a failure's message.
    let said = || {
        ["a", "b"]
            .map(|n| std::fs::read_to_string(path.join(format!("stderr-{n}"))).unwrap_or_default())
    };
    produce(path, 0, 6_000);
    // The first instance stops itself in its second checkpoint, with that checkpoint's outputs
    // appended inside its open transactions.
    let mut a = instance("a")
        .env("EDDY_TEST_CRASH_AT", "outputs:2:stop")
        .spawn()
        .unwrap();
    wait_for("the first instance to stop", 30, || {
        process_state(a.id()) == 'T'
    });
    let seen = |c: &BTreeMap<String, Vec<u64>>| c.values().map(Vec::len).sum::<usize>();
    let (committed, uncommitted) = (
        seen(&committed_counts(path)),
        seen(&counts(path, Isolation::ReadUncommitted)),
    );
    assert!(
        uncommitted > committed,
        "the stopped instance has outputs in open transactions ({uncommitted} written, \
         {committed} committed)"
    );
    // Past its poll interval, its partitions move to a second instance, which aborts what the
    // first left open and processes everything once.
    let mut b = instance("b").spawn().unwrap();
    wait_for("the second instance to process the input", 60, || {
        committed_counts(path) == exact(6_000)
    });
    // Continued, the first instance is fenced at its next write, gives its tasks up, rejoins
    // and takes a share of the work; nothing repeats and nothing goes missing.
    signal(&a, "-CONT");
    let deadline = Instant::now() + Duration::from_secs(60);
    while owners(&Log::open(path).unwrap(), "eos").len() != 2 {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for both instances to own partitions: a is {}, b is {}, members \
             {:?}, owners {:?}, stderr {:?}",
            a.id(),
            b.id(),
            Groups::new(&Log::open(path).unwrap())
                .describe("eos")
                .map(|d| d.members),
            owners(&Log::open(path).unwrap(), "eos"),
            said()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    produce(path, 6_000, 9_000);
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed_counts(path) != exact(9_000) {
        if Instant::now() > deadline {
            let got = committed_counts(path);
            let short: Vec<(String, usize)> = (exact(9_000).into_iter())
                .filter(|(k, v)| got.get(k).map(Vec::len) != Some(v.len()))
                .map(|(k, _)| (k.clone(), got.get(&k).map_or(0, Vec::len)))
                .collect();
            panic!(
                "timed out waiting for the records produced after the rejoin; short keys {short:?}, \
                 owners {:?}, stderr {:?}",
                owners(&Log::open(path).unwrap(), "eos"),
                said()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let got = committed_counts(path);
    for c in [&mut a, &mut b] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    assert_eq!(repeats(&got), 0, "a result committed twice");
    assert_eq!(got, exact(9_000));
}

#[test]
fn a_running_application_aborts_a_dead_producers_expired_transaction() {
    let dir = tempfile::tempdir().unwrap();
    produce(dir.path(), 0, 100);
    let log = Log::open(dir.path()).unwrap();
    log.topic_or_create("other", TopicConfig::default())
        .unwrap();
    // It expires after the application's tasks started (each start aborts what expired by then):
    // only the application's checkpoints can abort it.
    let (mut dead, _) = eddy::TransactionalProducer::start(&log, "dead").unwrap();
    dead.set_transaction_timeout(Duration::from_millis(1500));
    dead.append("other", 0, &[Record::value("never committed")])
        .unwrap();
    drop(dead);
    let committed_end = || {
        let mut r = Log::open(dir.path())
            .unwrap()
            .topic("other")
            .unwrap()
            .reader(0)
            .unwrap();
        r.set_isolation(Isolation::ReadCommitted);
        (r.readable_end().unwrap(), r.end_offset())
    };
    assert_eq!(
        committed_end().0,
        0,
        "the dead producer's transaction holds readers back"
    );
    let mut app = build(dir.path(), ProcessingGuarantee::ExactlyOnce);
    let stop = app.stop_handle();
    let released = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut released = false;
            while Instant::now() < deadline && !released {
                std::thread::sleep(Duration::from_millis(50));
                let (stable, end) = committed_end();
                released = stable == end;
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            released
        });
        let ran = app.run();
        // A failed run ends the watcher too.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        ran.unwrap();
        watcher.join().unwrap()
    });
    assert!(
        released,
        "the application's checkpoints aborted the expired transaction"
    );
}
