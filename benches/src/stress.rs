//! The fault-tolerance stress harness behind the `stress` program: a windowed workload, the
//! pipeline that aggregates it, and the comparison of a crashed run's window results with an
//! uninterrupted (golden) run's.
//!
//! Invariant of the comparison: a window is identified by (key, start, end); the golden run emits
//! each once. A crashed run may repeat a window with the same value (at-least-once outputs) — a
//! *duplicate* — but a window it lacks is *missing*, and one whose value differs from the golden
//! run's (or that the golden run never emitted, or that it repeated with another value) is
//! *differing*.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use eddy::aggregate::{Count, Sum};
use eddy::{
    AppConfig, Application, Closing, Json, Log, ProcessingGuarantee, Record, Str, TopicConfig,
    WindowResult,
};

/// Input topic of the workload.
pub const INPUT: &str = "stress-input";
/// Output topic of the window results.
pub const OUTPUT: &str = "stress-windows";
/// Consumer group of the pipeline.
pub const GROUP: &str = "stress";

/// The kind of window aggregated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Tumbling windows of `size`.
    Tumbling,
    /// Hopping windows of `size` every `size / 2`.
    Hopping,
    /// Sliding windows of `size`.
    Sliding,
    /// Sessions with a gap of `size`.
    Session,
}

/// The delivery guarantee of the pipeline (`ProcessingGuarantee`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Guarantee {
    /// Repeated windows after a crash are possible (counted as duplicated).
    AtLeastOnce,
    /// The committed output holds each window once.
    ExactlyOnce,
}

/// The workload and its pipeline.
#[derive(Clone, Debug, clap::Args)]
pub struct Workload {
    /// Events to generate.
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 100)]
    pub keys: u64,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 3)]
    pub partitions: u32,
    /// Fraction of events whose time is moved back within the grace period.
    #[arg(long, default_value_t = 0.1)]
    pub out_of_order: f64,
    /// Fraction of events moved back past their window's close (dropped as late).
    #[arg(long, default_value_t = 0.01)]
    pub late: f64,
    /// Window kind.
    #[arg(long, value_enum, default_value = "tumbling")]
    pub window: Kind,
    /// Window size (session gap), ms.
    #[arg(long, default_value_t = 1_000)]
    pub size_ms: u64,
    /// Grace period, ms.
    #[arg(long, default_value_t = 200)]
    pub grace_ms: u64,
    /// Whose stream time closes windows: `key` or `partition`.
    #[arg(long, default_value_t = Closing::Key)]
    pub closing: Closing,
    /// Delivery guarantee of the pipeline.
    #[arg(long, value_enum, default_value = "at-least-once")]
    pub guarantee: Guarantee,
    /// Seed of the generator.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

impl Workload {
    /// Event `i`: its key, value and event time. Events are 10 ms apart in event time, with a
    /// 3 s pause every 1,000 events so that sessions end. Each event draws from its own generator,
    /// so that any range of events can be written on its own.
    pub fn event(&self, i: u64) -> (String, u64, i64) {
        let mut rng = fastrand::Rng::with_seed(self.seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let key = format!("k{}", rng.u64(..self.keys.max(1)));
        let mut t = (i * 10 + i / 1_000 * 3_000) as i64 + 1_700_000_000_000;
        let roll = rng.f64();
        if roll < self.late {
            t -= (self.grace_ms + 2 * self.size_ms + rng.u64(..self.size_ms.max(1))) as i64;
        } else if roll < self.late + self.out_of_order {
            t -= rng.u64(..self.grace_ms.max(1)) as i64;
        }
        (key, i, t)
    }

    /// The command-line options that describe this workload (for a child process).
    pub fn args(&self) -> Vec<String> {
        let kind = match self.window {
            Kind::Tumbling => "tumbling",
            Kind::Hopping => "hopping",
            Kind::Sliding => "sliding",
            Kind::Session => "session",
        };
        [
            ("--events", self.events.to_string()),
            ("--keys", self.keys.to_string()),
            ("--partitions", self.partitions.to_string()),
            ("--out-of-order", self.out_of_order.to_string()),
            ("--late", self.late.to_string()),
            ("--window", kind.to_owned()),
            ("--size-ms", self.size_ms.to_string()),
            ("--grace-ms", self.grace_ms.to_string()),
            ("--closing", self.closing.to_string()),
            (
                "--guarantee",
                match self.guarantee {
                    Guarantee::AtLeastOnce => "at-least-once",
                    Guarantee::ExactlyOnce => "exactly-once",
                }
                .to_owned(),
            ),
            ("--seed", self.seed.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect()
    }

    /// Appends events `from..to` of the workload to the input topic of `dir`.
    pub fn write(&self, dir: &Path, from: u64, to: u64) -> eddy::LogResult<()> {
        let log = Log::open(dir)?;
        let topic = log.topic_or_create(INPUT, TopicConfig::with_partitions(self.partitions))?;
        let mut next = from;
        while next < to {
            let end = (next + 10_000).min(to);
            topic.append((next..end).map(|i| {
                let (key, value, t) = self.event(i);
                Record::keyed(key, value.to_string()).at(t)
            }))?;
            next = end;
        }
        Ok(())
    }

    /// The pipeline: count and sum per key and window, final results to [`OUTPUT`].
    pub fn application(&self, dir: &Path) -> eddy::StreamResult<Application> {
        let mut config = AppConfig::new(dir, GROUP);
        config.commit_interval = Duration::from_millis(50);
        config.processing_guarantee = match self.guarantee {
            Guarantee::AtLeastOnce => ProcessingGuarantee::AtLeastOnce,
            Guarantee::ExactlyOnce => ProcessingGuarantee::ExactlyOnce,
        };
        let app = Application::new(config)?;
        let input = app.topic_with_config::<Str, Json<u64>>(
            INPUT,
            TopicConfig::with_partitions(self.partitions),
        )?;
        let output = app.topic::<Str, Json<WindowResult<(u64, f64)>>>(OUTPUT)?;
        let numbers = app.dataframe(&input);
        let (size, grace) = (
            Duration::from_millis(self.size_ms),
            Duration::from_millis(self.grace_ms),
        );
        let windows = match self.window {
            Kind::Tumbling => numbers.tumbling_window(size, grace),
            Kind::Hopping => numbers.hopping_window(size, size / 2, grace),
            Kind::Sliding => numbers.sliding_window(size, grace),
            Kind::Session => numbers.session_window(size, grace),
        };
        windows
            .closing(self.closing)
            .aggregate((Count, Sum(|n: &u64| *n as f64)))
            .emit_final()
            .to_topic(&output);
        Ok(app)
    }
}

/// Window results by (key, start, end): (count, sum).
pub type Windows = BTreeMap<(String, i64, i64), (u64, u64)>;

/// Every window result in `dir`'s output, with repeats: the distinct windows (a repeat with
/// another value keeps the first and is counted in the second number), the number of repeats
/// with the same value, and of repeats with another.
pub fn read_windows(dir: &Path) -> Result<(Windows, u64, u64), String> {
    let log = Log::open(dir).map_err(|e| e.to_string())?;
    let topic = match log.topic(OUTPUT) {
        Ok(t) => t,
        Err(eddy::LogError::TopicNotFound { .. }) => return Ok((Windows::new(), 0, 0)),
        Err(e) => return Err(e.to_string()),
    };
    let (mut windows, mut same, mut other) = (Windows::new(), 0, 0);
    crate::for_each_window(&topic, |key, w: WindowResult<(u64, f64)>| {
        let value = (w.value.0, w.value.1 as u64);
        match windows.get(&(key.to_owned(), w.start, w.end)) {
            None => {
                windows.insert((key.to_owned(), w.start, w.end), value);
            }
            Some(v) if *v == value => same += 1,
            Some(_) => other += 1,
        }
        Ok(())
    })?;
    Ok((windows, same, other))
}

/// What a committed reader tailing the output while the crashed run goes on saw: distinct
/// windows, and windows it saw again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveTail {
    /// Distinct windows seen.
    pub windows: u64,
    /// Windows seen a second time.
    pub repeated: u64,
}

/// Tails `dir`'s output as a committed reader until `stop` is set (then reads to the end once
/// more), counting the windows it sees and those it sees twice.
pub fn tail_output(dir: &Path, stop: &std::sync::atomic::AtomicBool) -> Result<LiveTail, String> {
    use std::sync::atomic::Ordering;
    let mut seen = std::collections::HashSet::new();
    let mut tail = LiveTail::default();
    let mut readers: Vec<(eddy::PartitionReader, u64)> = Vec::new();
    loop {
        let last_pass = stop.load(Ordering::Acquire);
        if readers.is_empty() {
            let log = Log::open_read_only(dir);
            if let Ok(topic) = log.topic(OUTPUT) {
                for p in 0..topic.partitions() {
                    let mut r = topic.reader(p).map_err(|e| e.to_string())?;
                    r.set_isolation(eddy::Isolation::ReadCommitted);
                    readers.push((r, 0));
                }
            }
        }
        for (reader, next) in &mut readers {
            loop {
                let fetch = reader
                    .read(*next, 10_000, 8 << 20)
                    .map_err(|e| e.to_string())?;
                for r in fetch.iter() {
                    let key = String::from_utf8_lossy(r.key.unwrap_or_default()).into_owned();
                    let w: WindowResult<(u64, f64)> =
                        serde_json::from_slice(r.value.unwrap_or_default())
                            .map_err(|e| format!("output offset {}: {e}", r.offset))?;
                    match seen.insert((key, w.start, w.end)) {
                        true => tail.windows += 1,
                        false => tail.repeated += 1,
                    }
                }
                let moved = fetch.next_offset() != *next;
                *next = fetch.next_offset();
                if !moved {
                    break;
                }
            }
        }
        if last_pass {
            return Ok(tail);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// How a crashed run's windows compare with the golden run's.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Windows the golden run emitted.
    pub expected: u64,
    /// Golden windows the crashed run did not emit.
    pub missing: u64,
    /// Windows emitted with another value, emitted only by the crashed run, or repeated with
    /// another value.
    pub differing: u64,
    /// Identical repeats.
    pub duplicated: u64,
}

/// Compares the crashed run's windows (`crashed`, with its repeats) with the golden ones.
pub fn compare(golden: &Windows, crashed: &(Windows, u64, u64)) -> Comparison {
    let (windows, same, other) = crashed;
    let mut c = Comparison {
        expected: golden.len() as u64,
        duplicated: *same,
        differing: *other,
        ..Comparison::default()
    };
    for (k, v) in golden {
        match windows.get(k) {
            None => c.missing += 1,
            Some(w) if w != v => c.differing += 1,
            Some(_) => {}
        }
    }
    c.differing += windows.keys().filter(|k| !golden.contains_key(*k)).count() as u64;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_disagreement_is_counted() {
        let w = |k: &str, s: i64, v: u64| ((k.to_owned(), s, s + 10), (v, v));
        let golden: Windows = [w("a", 0, 1), w("a", 10, 2), w("b", 0, 3)].into();
        let crashed: Windows = [w("a", 0, 1), w("b", 0, 4), w("c", 0, 5)].into();
        let c = compare(&golden, &(crashed, 2, 1));
        assert_eq!(
            c,
            Comparison {
                expected: 3,
                missing: 1,           // a@10
                differing: 1 + 1 + 1, // b's value, c unknown, one repeat with another value
                duplicated: 2,
            }
        );
        assert_eq!(compare(&golden, &(golden.clone(), 0, 0)).missing, 0);
    }
}
