//! The connector against a real Kafka-protocol broker (tansu on 127.0.0.1, started here):
//! 100,000 records local → Kafka → local while records keep arriving, once with both mirrors
//! SIGKILLed and restarted mid-stream, once with the broker out of reach twice mid-stream. The
//! copy must equal the source partition by partition (keys, values, timestamps, headers, order)
//! — so Kafka, which mirror in reads from its start, holds each record once — and the mirrors'
//! progress groups must account for every record.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::relay::Relay;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::{Groups, Log, Record, TopicConfig};
use eddy_kafka::local_broker::LocalBroker;

const RECORDS: u64 = 100_000;
const PARTITIONS: u32 = 3;
const SOURCE: &str = "events";
const KAFKA_TOPIC: &str = "events-kafka";
const COPY: &str = "events-copy";

/// Record `i`: mostly keyed (some keyless), some tombstones, explicit timestamps, and headers of
/// several shapes (none, several, a null value).
fn record(i: u64) -> Record {
    let mut r = Record {
        key: (i % 10 != 9).then(|| format!("key-{}", i % 101).into_bytes()),
        value: (i % 50 != 7).then(|| format!("value-{i}-{}", "x".repeat((i % 40) as usize)).into()),
        timestamp: Some(1_700_000_000_000 + i as i64 * 3),
        headers: Vec::new(),
    };
    match i % 3 {
        0 => {
            r = r.with_header("trace", i.to_be_bytes().to_vec());
            r.headers.push(eddy::Header {
                key: "empty".into(),
                value: None,
            });
        }
        1 => r = r.with_header("source", "sensor"),
        _ => {}
    }
    r
}

/// A mirror child process: `eddy-mirror ARGS`, or `eddy mirror ARGS`.
struct Mirror {
    program: PathBuf,
    args: Vec<String>,
    child: Child,
}

impl Mirror {
    fn start(program: PathBuf, args: &[&str]) -> Mirror {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let child = spawn(&program, &args);
        Mirror {
            program,
            args,
            child,
        }
    }

    /// SIGKILL, then a new process at once.
    fn sigkill_and_restart(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "mirror died: {:?}",
            self.args
        );
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = spawn(&self.program, &self.args);
    }

    /// SIGTERM: the mirror commits what Kafka acknowledged and exits 0.
    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{:?} ended with {status}", self.args);
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("mirror {:?} exited with {status}", self.args);
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(program: &Path, args: &[String]) -> Child {
    Command::new(program)
        .args(args)
        .args(["--status-interval", "0", "--log-level", "warn"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Committed offsets of a local group, summed over partitions.
fn committed(dir: &Path, group: &str) -> u64 {
    let log = Log::open(dir).unwrap();
    Groups::new(&log)
        .committed(group)
        .unwrap()
        .values()
        .map(|(o, _)| o)
        .sum()
}

/// Records in a local topic (0 while it does not exist).
fn records_in(dir: &Path, topic: &str) -> u64 {
    let log = Log::open(dir).unwrap();
    match log.topic(topic) {
        Ok(t) => t.describe().unwrap().iter().map(|p| p.end_offset).sum(),
        Err(_) => 0,
    }
}

/// Waits until `done` holds, panicking after `limit` with `what`.
fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn partition_records(dir: &Path, topic: &str, p: u32) -> Vec<Record> {
    let log = Log::open(dir).unwrap();
    let mut reader = log.topic(topic).unwrap().reader(p).unwrap();
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        let fetch = reader.read(next, 10_000, 8 << 20).unwrap();
        if fetch.is_empty() {
            return out;
        }
        out.extend(fetch.iter().map(|r| r.to_record()));
        next = fetch.next_offset();
    }
}

/// A run: the source topic filled in the background faster than the broker takes records,
/// `eddy-mirror out` to Kafka and `eddy mirror in` back into another local topic.
struct RoundTrip {
    broker: LocalBroker,
    dir: tempfile::TempDir,
    produced: Arc<AtomicU64>,
    feeder: Option<std::thread::JoinHandle<()>>,
    out: Mirror,
    inward: Option<Mirror>,
}

impl RoundTrip {
    /// Starts the feeder and mirror out against `broker`; mirror in too when `inward_now`.
    fn start(broker: LocalBroker, inward_now: bool) -> RoundTrip {
        let brokers = broker.brokers();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap().to_owned();
        Log::open(dir.path())
            .unwrap()
            .create_topic(SOURCE, TopicConfig::with_partitions(PARTITIONS))
            .unwrap();
        let produced = Arc::new(AtomicU64::new(0));
        let feeder = {
            let (dir, produced) = (dir.path().to_owned(), produced.clone());
            std::thread::spawn(move || {
                let log = Log::open(&dir).unwrap();
                let topic = log.topic(SOURCE).unwrap();
                for from in (0..RECORDS).step_by(1_000) {
                    topic.append((from..from + 1_000).map(record)).unwrap();
                    produced.store(from + 1_000, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(60));
                }
            })
        };
        let out_args = [
            "out",
            "--brokers",
            &brokers,
            "--topic",
            SOURCE,
            "--to",
            KAFKA_TOPIC,
        ];
        let mirror = PathBuf::from(env!("CARGO_BIN_EXE_eddy-mirror"));
        let out = Mirror::start(
            mirror.clone(),
            &[&out_args[..], &["--data-dir", &data]].concat(),
        );
        wait_for(Duration::from_secs(60), "mirror out to start", || {
            committed(dir.path(), &out_group()) > 0
        });
        let mut run = RoundTrip {
            broker,
            dir,
            produced,
            feeder: Some(feeder),
            out,
            inward: None,
        };
        if inward_now {
            run.start_inward();
        }
        run
    }

    /// Starts mirror in as `eddy --data-dir D mirror in ...`, the way users start it.
    fn start_inward(&mut self) {
        let eddy = PathBuf::from(env!("CARGO_BIN_EXE_eddy-mirror")).with_file_name("eddy");
        assert!(
            eddy.is_file(),
            "{} is missing: build the workspace",
            eddy.display()
        );
        let (brokers, data) = (self.broker.brokers(), self.path().display().to_string());
        let in_args = [
            "in",
            "--brokers",
            &brokers,
            "--topic",
            KAFKA_TOPIC,
            "--to",
            COPY,
        ];
        let args = [&["--data-dir", &data, "mirror"][..], &in_args].concat();
        self.inward = Some(Mirror::start(eddy, &args));
    }

    fn inward(&mut self) -> &mut Mirror {
        self.inward.as_mut().expect("mirror in started")
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Records Kafka acknowledged to mirror out.
    fn out_committed(&self) -> u64 {
        committed(self.path(), &out_group())
    }

    /// Waits until mirror out committed `n` records, then checks it had more to do.
    /// Waits until mirror out committed `n` records and is at least 1,000 behind the source;
    /// returns the source's size then.
    fn wait_out(&self, n: u64) -> u64 {
        let mut source = 0;
        let mut done = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(done >= n && done + 1_000 <= source) {
            assert!(
                Instant::now() < deadline,
                "waiting for {n} records out with some left: {done} of {source}"
            );
            std::thread::sleep(Duration::from_millis(5));
            source = self.produced.load(Ordering::SeqCst);
            done = self.out_committed();
        }
        source
    }

    /// Waits for the end, stops both mirrors with SIGTERM and checks everything.
    fn finish_and_check(mut self) {
        if let Some(f) = self.feeder.take() {
            f.join().unwrap();
        }
        let copy = |t: &RoundTrip| records_in(t.path(), COPY);
        let deadline = Instant::now() + Duration::from_secs(120);
        while copy(&self) < RECORDS || self.out_committed() < RECORDS {
            self.out.assert_running();
            self.inward().assert_running();
            assert!(
                Instant::now() < deadline,
                "stuck: mirror out committed {}, copy holds {}, mirror in committed {}",
                self.out_committed(),
                copy(&self),
                committed(self.path(), &format!("mirror-in.{KAFKA_TOPIC}"))
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Anything Kafka held twice would reach the copy after the last original.
        std::thread::sleep(Duration::from_secs(3));
        self.out.terminate();
        self.inward().terminate();
        assert_eq!(copy(&self), RECORDS, "nothing copied twice");
        let mut keyless = 0;
        for p in 0..PARTITIONS {
            let source = partition_records(self.path(), SOURCE, p);
            let copy = partition_records(self.path(), COPY, p);
            assert_eq!(source.len(), copy.len(), "partition {p} sizes");
            if let Some(i) = (0..source.len()).find(|&i| source[i] != copy[i]) {
                panic!(
                    "partition {p} differs first at offset {i}: {:?} vs {:?}",
                    source[i], copy[i]
                );
            }
            keyless += source.iter().filter(|r| r.key.is_none()).count();
        }
        assert_eq!(keyless, (RECORDS / 10) as usize, "keyless records kept");
        let in_progress = committed(self.path(), &format!("mirror-in.{KAFKA_TOPIC}"));
        assert_eq!(in_progress, RECORDS, "mirror in committed all it appended");
    }
}

fn out_group() -> String {
    format!("mirror-out.{SOURCE}")
}

/// Each kill must find its victim behind: records there but not mirrored yet.
fn assert_behind(done: u64, there: u64, what: &str) {
    assert!(
        done < there,
        "{what}: nothing left to mirror ({done} of {there})"
    );
}

#[test]
fn a_round_trip_through_kafka_survives_sigkilled_mirrors() {
    let mut run = RoundTrip::start(LocalBroker::start().unwrap(), false);
    let source = run.wait_out(20_000);
    run.out.sigkill_and_restart();
    assert_behind(run.out_committed(), source, "killing mirror out");
    // Mirror in starts with a backlog, so that it is behind when killed.
    wait_for(Duration::from_secs(60), "60,000 records out", || {
        run.out_committed() >= 60_000
    });
    run.start_inward();
    let mut in_kafka = 0;
    wait_for(
        Duration::from_secs(60),
        "10,000 records in, some left",
        || {
            in_kafka = run.out_committed(); // Kafka holds at least these
            let copied = records_in(run.path(), COPY);
            copied >= 10_000 && copied + 2_000 <= in_kafka
        },
    );
    run.inward().sigkill_and_restart();
    assert_behind(records_in(run.path(), COPY), in_kafka, "killing mirror in");
    run.finish_and_check();
}

/// The broker out of reach — every connection cut, new ones turned away for 2 s — while both
/// mirrors run, twice. tansu keeps its data in memory here, behind the relay: a tansu restart
/// with its SQLite storage keeps the topics, but afterwards its partitions answered neither
/// offset queries nor fetches in these tests, so a restart is played by the relay.
#[test]
fn a_round_trip_through_kafka_waits_out_broker_outages() {
    let (broker, relay) = Relay::with_broker();
    let mut run = RoundTrip::start(broker, true);
    for what in ["first outage", "second outage"] {
        // Cut when the mirror is moving and behind the source.
        let at = run.out_committed() + 10_000;
        let source = run.wait_out(at);
        relay.cut();
        assert_behind(run.out_committed(), source, what);
        std::thread::sleep(Duration::from_secs(2));
        run.out.assert_running();
        run.inward().assert_running();
        relay.restore();
    }
    run.finish_and_check();
}
