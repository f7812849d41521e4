//! What the console remembers between requests: each topic's end offsets over the last minute
//! (for records/s) and each group's lag over the last hour (for its chart), sampled every
//! interval by one task of the console's runtime. Samples older than their window are dropped,
//! so memory stays bounded by the number of topics and groups.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use eddy::Log;
use parking_lot::Mutex;

use crate::inspect;

/// How far back records/s looks.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// How much lag history is kept per group.
pub const LAG_HISTORY: Duration = Duration::from_secs(3600);

/// One sample of a group's lag: when (monotonic, and wall-clock ms), and the lag.
type LagSample = (Instant, i64, u64);

/// Samples of topic ends and group lag.
#[derive(Default)]
pub struct Samples {
    ends: Mutex<BTreeMap<String, VecDeque<(Instant, u64)>>>,
    lag: Mutex<BTreeMap<String, VecDeque<LagSample>>>,
}

impl Samples {
    /// Takes one sample of every topic and group. Errors (a topic deleted meanwhile) skip it.
    pub fn sample(&self, log: &Log) {
        let now = Instant::now();
        let topics = inspect::topic_names(log).unwrap_or_default();
        let mut ends = self.ends.lock();
        ends.retain(|name, _| topics.contains(name));
        drop(ends);
        for name in &topics {
            let Ok(end) = inspect::end_total(log, name) else {
                continue;
            };
            let mut ends = self.ends.lock();
            let samples = ends.entry(name.clone()).or_default();
            samples.push_back((now, end));
            while samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
            {
                samples.pop_front();
            }
        }
        let groups = inspect::group_names(log).unwrap_or_default();
        let wall = chrono::Utc::now().timestamp_millis();
        for name in &groups {
            let Ok(d) = inspect::group(log, name) else {
                continue;
            };
            let mut lag = self.lag.lock();
            let samples = lag.entry(name.clone()).or_default();
            samples.push_back((now, wall, inspect::total_lag(&d)));
            while samples
                .front()
                .is_some_and(|(t, _, _)| now.duration_since(*t) > LAG_HISTORY)
            {
                samples.pop_front();
            }
        }
        self.lag.lock().retain(|name, _| groups.contains(name));
    }

    /// Records appended to `topic` per second over the last minute (`None` until two samples
    /// are a second apart).
    pub fn records_per_second(&self, topic: &str) -> Option<f64> {
        let ends = self.ends.lock();
        let samples = ends.get(topic)?;
        let (first, last) = (samples.front()?, samples.back()?);
        let span = last.0.duration_since(first.0).as_secs_f64();
        (span >= 1.0).then(|| last.1.saturating_sub(first.1) as f64 / span)
    }

    /// `group`'s total lag over the last hour: (wall-clock ms, lag), oldest first.
    pub fn lag_history(&self, group: &str) -> Vec<(i64, u64)> {
        (self.lag.lock().get(group))
            .map(|s| s.iter().map(|(_, wall, lag)| (*wall, *lag)).collect())
            .unwrap_or_default()
    }
}
