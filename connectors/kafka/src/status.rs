//! What a mirror reports: totals when it stops, and a status line (rate and lag) at an interval
//! while it runs.

use std::time::{Duration, Instant};

/// What a mirror did in one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorStats {
    /// Records mirrored (acknowledged by Kafka, or appended locally) and committed.
    pub records: u64,
    /// Records found already mirrored by an earlier run that stopped before committing them.
    pub skipped: u64,
    /// Records still to mirror when it stopped.
    pub lag: u64,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Prints a status line every `interval` (to standard error, through `tracing`).
pub(crate) struct Status {
    what: String,
    interval: Option<Duration>,
    started: Instant,
    last: Instant,
    last_records: u64,
}

impl Status {
    pub fn new(what: String, interval: Option<Duration>) -> Self {
        let now = Instant::now();
        Status {
            what,
            interval,
            started: now,
            last: now,
            last_records: 0,
        }
    }

    /// Whether a status line is due.
    pub fn due(&self) -> bool {
        self.interval.is_some_and(|i| self.last.elapsed() >= i)
    }

    /// Prints the status line: records so far, rate since the last line, lag (`None`: unknown,
    /// Kafka unreachable).
    pub fn print(&mut self, records: u64, lag: Option<u64>) {
        let now = Instant::now();
        let secs = now.duration_since(self.last).as_secs_f64().max(1e-9);
        let rate = (records.saturating_sub(self.last_records)) as f64 / secs;
        let lag = lag.map_or("unknown (Kafka unreachable)".to_owned(), |l| l.to_string());
        tracing::info!(
            "{}: {records} records mirrored, {rate:.0} records/s, lag {lag}",
            self.what
        );
        self.last = now;
        self.last_records = records;
    }

    /// Prints the status line of a mirror whose brokers have been unreachable for `away`,
    /// with `detail` (what waits for them).
    pub fn print_unreachable(&mut self, records: u64, away: Duration, detail: &str) {
        tracing::warn!(
            "{}: {records} records mirrored; Kafka unreachable for {:.0} s, {detail}",
            self.what,
            away.as_secs_f64()
        );
        self.last = Instant::now();
        self.last_records = records;
    }

    /// Time since the mirror started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}
