//! The connector against a real Kafka-protocol broker (tansu on 127.0.0.1, started here):
//! 100,000 records local → Kafka → local, with both mirrors SIGKILLed and restarted and the
//! broker killed and restarted while records flow; the copy must equal the source partition by
//! partition (keys, values, timestamps, headers, order), and Kafka must hold each record once.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::{Groups, Log, Record, RecordView, TopicConfig};
use eddy_kafka::local_broker::LocalBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

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
    fn terminate(mut self) {
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

type Owned = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    i64,
    Vec<(String, Option<Vec<u8>>)>,
);

fn owned(r: &RecordView<'_>) -> Owned {
    (
        r.key.map(<[u8]>::to_vec),
        r.value.map(<[u8]>::to_vec),
        r.timestamp,
        r.headers()
            .map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec)))
            .collect(),
    )
}

fn partition_records(dir: &Path, topic: &str, p: u32) -> Vec<Owned> {
    let log = Log::open(dir).unwrap();
    let mut reader = log.topic(topic).unwrap().reader(p).unwrap();
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        let fetch = reader.read(next, 10_000, 8 << 20).unwrap();
        if fetch.is_empty() {
            return out;
        }
        out.extend(fetch.iter().map(|r| owned(&r)));
        next = fetch.next_offset();
    }
}

/// Records per partition of a Kafka topic (high minus low watermark).
fn kafka_counts(brokers: &str, topic: &str) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "round-trip-check")
        .create()
        .unwrap();
    (0..PARTITIONS as i32)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap();
            high - low
        })
        .collect()
}

#[test]
fn a_round_trip_through_kafka_survives_killed_mirrors_and_a_broker_restart() {
    let mut broker = LocalBroker::start().unwrap();
    let brokers = broker.brokers();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    Log::open(dir.path())
        .unwrap()
        .create_topic(SOURCE, TopicConfig::with_partitions(PARTITIONS))
        .unwrap();

    // Records arrive for about five seconds while everything below happens.
    let produced = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (dir, produced) = (dir.path().to_owned(), produced.clone());
        std::thread::spawn(move || {
            let log = Log::open(&dir).unwrap();
            let topic = log.topic(SOURCE).unwrap();
            for from in (0..RECORDS).step_by(1_000) {
                topic.append((from..from + 1_000).map(record)).unwrap();
                produced.store(from + 1_000, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
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
    let mut out = Mirror::start(
        mirror.clone(),
        &[&out_args[..], &["--data-dir", &data]].concat(),
    );
    let out_group = format!("mirror-out.{SOURCE}");
    wait_for(Duration::from_secs(60), "mirror out to start", || {
        committed(dir.path(), &out_group) > 0
    });
    // Mirror in runs as `eddy --data-dir D mirror in ...`, the way users start it.
    let eddy = mirror.with_file_name("eddy");
    assert!(
        eddy.is_file(),
        "{} is missing: build the workspace",
        eddy.display()
    );
    let in_args = [
        "in",
        "--brokers",
        &brokers,
        "--topic",
        KAFKA_TOPIC,
        "--to",
        COPY,
    ];
    let mut inward = Mirror::start(
        eddy,
        &[&["--data-dir", &data, "mirror"][..], &in_args].concat(),
    );

    let mid_stream = |what: &str| {
        let p = produced.load(Ordering::SeqCst);
        assert!(p < RECORDS, "{what} happened after the feeder finished");
    };
    wait_for(Duration::from_secs(60), "20,000 records out", || {
        committed(dir.path(), &out_group) >= 20_000
    });
    mid_stream("killing mirror out");
    out.sigkill_and_restart();
    wait_for(Duration::from_secs(60), "30,000 records in", || {
        records_in(dir.path(), COPY) >= 30_000
    });
    mid_stream("killing mirror in");
    inward.sigkill_and_restart();
    wait_for(Duration::from_secs(60), "50,000 records out", || {
        committed(dir.path(), &out_group) >= 50_000
    });
    mid_stream("killing the broker");
    broker.kill().unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    out.assert_running();
    inward.assert_running();
    broker.start_again().unwrap();

    feeder.join().unwrap();
    wait_for(
        Duration::from_secs(180),
        "every record back in the copy",
        || {
            out.assert_running();
            inward.assert_running();
            records_in(dir.path(), COPY) >= RECORDS && committed(dir.path(), &out_group) == RECORDS
        },
    );
    out.terminate();
    inward.terminate();

    assert_eq!(
        kafka_counts(&brokers, KAFKA_TOPIC).iter().sum::<i64>(),
        RECORDS as i64,
        "Kafka holds every record exactly once"
    );
    assert_eq!(
        records_in(dir.path(), COPY),
        RECORDS,
        "nothing copied twice"
    );
    let mut keyless = 0;
    for p in 0..PARTITIONS {
        let source = partition_records(dir.path(), SOURCE, p);
        let copy = partition_records(dir.path(), COPY, p);
        assert_eq!(source.len(), copy.len(), "partition {p} sizes");
        if let Some(i) = (0..source.len()).find(|&i| source[i] != copy[i]) {
            panic!(
                "partition {p} differs first at offset {i}: {:?} vs {:?}",
                source[i], copy[i]
            );
        }
        keyless += source.iter().filter(|r| r.0.is_none()).count();
    }
    assert_eq!(keyless, (RECORDS / 10) as usize, "keyless records kept");
    let in_progress = committed(dir.path(), &format!("mirror-in.{KAFKA_TOPIC}"));
    assert_eq!(in_progress, RECORDS, "mirror in committed all it appended");
}
