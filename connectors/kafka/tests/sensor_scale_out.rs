//! The sensor tutorial's processor scaled out over processes in one Kafka group (tansu,
//! started here), on a 6-partition topic: two members split the partitions; one is SIGKILLed
//! mid-stream and the survivor takes its partitions, restoring their state from the changelog
//! in Kafka; a third member joins mid-stream and partitions move to it with their state. The
//! windows written equal those of one uninterrupted run on the local log: each window is there,
//! with the same values every time it was written (repeats, allowed under at-least-once, are
//! counted).
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::sensor::{
    kafka_windows, local_windows, processor_on_kafka, produce_paced, produce_to_kafka, readings,
    repeats,
};

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eddy_examples::sensor::{GROUP, RAW_TOPIC};
use eddy_kafka::local_broker::LocalBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: u32 = 6;
const SENSORS: usize = 24;
const READINGS: usize = 9_000;

/// Group settings that notice a killed member within seconds (the broker's default is 45 s)
/// and bound a rebalance's wait for members to rejoin (the poll interval, 300 s by default).
const FAST_SESSION: [(&str, &str); 3] = [
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "1000"),
    ("max.poll.interval.ms", "30000"),
];

/// What a member's process runs: the processor on Kafka until SIGTERM, then its counters
/// into `<dir>/metrics`. Started by the test below, which sets the variables; alone it returns.
#[test]
#[ignore = "the member process of the scale-out test, which starts it"]
fn sensor_member() {
    let (Ok(brokers), Ok(dir)) = (
        std::env::var("EDDY_SENSOR_BROKERS"),
        std::env::var("EDDY_SENSOR_DIR"),
    ) else {
        return;
    };
    use tracing_subscriber::prelude::*;
    let targets = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::INFO)
        .with_target("eddy_examples", tracing::Level::WARN);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    tracing_subscriber::registry()
        .with(fmt)
        .with(targets)
        .init();
    let dir = PathBuf::from(dir);
    let mut app = processor_on_kafka(&brokers, &dir, Duration::from_millis(200), &FAST_SESSION);
    let result = app.run();
    let m = app.metrics();
    let counters = format!(
        "{} {} {}",
        m.records_in, m.restored_entries, m.changes_undone
    );
    std::fs::write(dir.join("metrics"), counters).unwrap();
    result.unwrap();
}

/// A member process (killed when dropped).
struct Member {
    name: &'static str,
    process: std::process::Child,
    dir: tempfile::TempDir,
}

/// What a member counted: records processed, changelog entries restored, changes undone.
struct Counters {
    records_in: u64,
    restored: u64,
    /// Its log, for failure messages.
    log: String,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "records in {}, restored {}",
            self.records_in, self.restored
        )
    }
}

impl Member {
    fn start(name: &'static str, broker: &LocalBroker) -> Member {
        let dir = tempfile::tempdir().unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let process = Command::new(std::env::current_exe().unwrap())
            .args(["sensor_member", "--exact", "--ignored", "--nocapture"])
            .env("EDDY_SENSOR_BROKERS", broker.brokers())
            .env("EDDY_SENSOR_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Member { name, process, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// How many times partitions were assigned to it.
    fn assignments(&self) -> usize {
        self.log().matches("partitions assigned").count()
    }

    fn sigkill(&mut self) {
        self.process.kill().unwrap();
        self.process.wait().unwrap();
    }

    /// SIGTERM, a clean exit within a minute, and its counters.
    fn stop(mut self) -> Counters {
        let pid = self.process.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "member {} did not stop",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "member {}: {status}\n{}",
            self.name,
            self.log()
        );
        let text = std::fs::read_to_string(self.dir.path().join("metrics")).unwrap();
        let n: Vec<u64> = text.split(' ').map(|n| n.parse().unwrap()).collect();
        Counters {
            records_in: n[0],
            restored: n[1],
            log: self.log(),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The sum of the processor group's committed offsets over the input's partitions.
fn committed(broker: &LocalBroker) -> i64 {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", GROUP)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(RAW_TOPIC, p as i32);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    (committed.elements().iter())
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

fn wait_until(limit: Duration, what: &str, members: &[&Member], mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            let logs: Vec<String> = (members.iter())
                .map(|m| format!("--- {}:\n{}", m.name, m.log()))
                .collect();
            panic!("not within {limit:?}: {what}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn members_killed_and_joining_mid_stream_write_the_windows_of_an_uninterrupted_run() {
    let readings = readings(READINGS, SENSORS, 21);
    let expected = local_windows(PARTITIONS, &readings);
    let third = READINGS / 3;
    let broker = LocalBroker::start().unwrap();
    // The topic exists before the members start, empty.
    produce_to_kafka(&broker, PARTITIONS, &[]);

    // A first, so that it leads the group: tansu 0.6 may never re-form a group whose leader
    // died (its survivors' SyncGroup is answered "rebalance in progress" over and over), where
    // Kafka's coordinator elects a new leader. So the member killed below is not the leader.
    let a = Member::start("a", &broker);
    wait_until(Duration::from_secs(60), "a has partitions", &[&a], || {
        a.assignments() > 0
    });
    let mut b = Member::start("b", &broker);
    wait_until(
        Duration::from_secs(60),
        "both members have partitions",
        &[&a, &b],
        || a.assignments() > 0 && b.assignments() > 0,
    );
    // Both process and checkpoint their share of the first third.
    produce_to_kafka(&broker, PARTITIONS, &readings[..third]);
    wait_until(
        Duration::from_secs(60),
        "the first third committed",
        &[&a, &b],
        || committed(&broker) == third as i64,
    );

    // B dies while the second third streams in (50 chunks, 20 ms apart), after chunk 25.
    let second = &readings[third..2 * third];
    let pace = (second.len() / 50, Duration::from_millis(20));
    produce_paced(&broker, PARTITIONS, second, pace, |n| {
        if n == 25 {
            b.sigkill();
        }
    });
    let b_log = b.log();
    let before = a.assignments();
    wait_until(
        Duration::from_secs(60),
        "a takes b's partitions",
        &[&a, &b],
        || a.assignments() > before,
    );

    // C joins, and takes its share of the last third.
    let c = Member::start("c", &broker);
    wait_until(
        Duration::from_secs(60),
        "c has partitions",
        &[&a, &c],
        || c.assignments() > 0,
    );
    produce_to_kafka(&broker, PARTITIONS, &readings[2 * third..]);
    let windows = kafka_windows(&broker, Duration::from_secs(120), |w| {
        w.len() >= expected.len()
    });
    let (a, c) = (a.stop(), c.stop());

    let repeated = repeats(&windows);
    let firsts = |w: &common::sensor::Windows| -> Vec<_> {
        w.iter().map(|(k, v)| (k.clone(), v[0])).collect()
    };
    assert_eq!(
        firsts(&windows),
        firsts(&expected),
        "windows, each taken once"
    );
    assert!(
        a.restored > 0,
        "a restored b's partitions from Kafka: {a:?}\n{}\n--- b:\n{b_log}",
        a.log
    );
    assert!(
        c.records_in > 0 && c.restored > 0,
        "partitions moved to c: {c:?}\n{}",
        c.log
    );
    eprintln!(
        "{} windows, {repeated} written again after the kill; a {a:?}, c {c:?}",
        windows.len()
    );
}
