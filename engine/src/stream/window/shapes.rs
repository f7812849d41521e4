//! Which windows a record belongs to, for each kind of time window, and how it changes them.
//!
//! - Fixed (tumbling, hopping): epoch-aligned `[n·step, n·step + size)`, none starting before 0
//!   for a record at or after the epoch; a record is added to every open window containing it.
//! - Sliding: one window per distinct record time `t` of a key holding the records in
//!   `[t − size, t]`, both ends included (Kafka Streams' `SlidingWindows`, Quix Streams'
//!   sliding windows), kept as `[t − size, t + 1)` and reported as start `t − size`, end `t`. A
//!   record is added to the open windows containing it and opens its own; the own window starts
//!   from the key's buffered records in its range, so records are kept until no window can
//!   contain them any more.
//! - Session: a key's records at most `gap` apart form one window `[first, last + 1)` (Kafka
//!   Streams' inactivity gap, Quix Streams' "no more than the gap"); a record can extend a session
//!   or merge several, whose result is then folded again from the buffered records (so any
//!   aggregator works, not only mergeable ones).
//!
//! Closing is the same for all: window `[start, end)` closes when stream time — the key's own or
//! the partition's, by the closing strategy — reaches `end + linger`,
//! where linger is the grace (sessions: gap + grace, so that a session closes once stream time
//! passes `last + gap + grace`, as in Kafka Streams). A record is late when every window it would
//! join is closed.

use super::aggregate::Aggregator;
use super::key_state::Buffered;
use super::partition::PartitionWindows;
use crate::stream::Message;

/// The kind of time window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Epoch-aligned windows of `size_ms`, one starting every `step_ms` (tumbling when equal).
    Fixed { size_ms: i64, step_ms: i64 },
    /// One window of `size_ms` ending with each record.
    Sliding { size_ms: i64 },
    /// Records at most `gap_ms` apart.
    Session { gap_ms: i64 },
}

/// Time windows: their shape and grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeWindows {
    pub shape: Shape,
    pub grace_ms: i64,
}

/// What one record did: the starts of the windows it updated, and the window it was late for.
#[derive(Default)]
pub(crate) struct Assigned {
    pub updated: Vec<i64>,
    pub late: Option<(i64, i64)>,
}

impl TimeWindows {
    /// Kind and parameters, for the operator's default name: `tumbling-10000ms-grace-1000ms`.
    pub fn describe(&self) -> String {
        let kind = match self.shape {
            Shape::Fixed { size_ms, step_ms } if size_ms == step_ms => {
                format!("tumbling-{size_ms}ms")
            }
            Shape::Fixed { size_ms, step_ms } => format!("hopping-{size_ms}ms-every-{step_ms}ms"),
            Shape::Sliding { size_ms } => format!("sliding-{size_ms}ms"),
            Shape::Session { gap_ms } => format!("session-gap-{gap_ms}ms"),
        };
        format!("{kind}-grace-{}ms", self.grace_ms)
    }

    /// Window `[start, end)` closes when stream time ≥ `end + linger()`.
    pub fn linger(&self) -> i64 {
        match self.shape {
            Shape::Session { gap_ms } => gap_ms.saturating_add(self.grace_ms),
            _ => self.grace_ms,
        }
    }

    /// How long after its time a buffered record may still be needed (sliding windows): until
    /// the end of the last window that holds it, the one of a record `size` later.
    pub fn record_span(&self) -> Option<i64> {
        match self.shape {
            Shape::Sliding { size_ms } => Some(size_ms.saturating_add(1)),
            _ => None,
        }
    }

    /// The `end` a result reports for window `[start, end)`: sliding windows report the time of
    /// the record that ends them (included, as Kafka Streams and Quix Streams do); the others
    /// their exclusive end.
    pub fn reported_end(&self, end: i64) -> i64 {
        match self.shape {
            Shape::Sliding { .. } => end.saturating_sub(1),
            _ => end,
        }
    }

    /// Whether windows keep their records (buffered values must be saved).
    pub fn buffers_records(&self) -> bool {
        !matches!(self.shape, Shape::Fixed { .. })
    }

    /// Whether a window's buffered records go when it closes (sessions: each record belongs to
    /// exactly one session).
    pub fn records_close_with_windows(&self) -> bool {
        matches!(self.shape, Shape::Session { .. })
    }

    /// Adds message `m` (raw key `raw`, arrival `order`) to its windows in `p`, where stream
    /// time `clock` (the key's or the partition's, before `m`) says which have closed; says what
    /// it did in `out` (cleared first, so that the caller can reuse it for every record).
    #[allow(clippy::too_many_arguments)]
    pub fn assign<K: Clone, V: Clone, G: Aggregator<V>>(
        &self,
        p: &mut PartitionWindows<K, G::Acc, V>,
        agg: &mut G,
        raw: &[u8],
        m: &Message<K, V>,
        order: u64,
        clock: i64,
        out: &mut Assigned,
    ) {
        let (linger, stream_time) = (self.linger(), clock);
        let closed = move |end: i64| end.saturating_add(linger) <= stream_time;
        out.updated.clear();
        out.late = None;
        let ts = m.timestamp_ms;
        match self.shape {
            Shape::Fixed { size_ms, step_ms } => {
                for start in fixed_starts(size_ms, step_ms, ts) {
                    let end = start.saturating_add(size_ms);
                    if closed(end) {
                        out.late = Some((start, end));
                        continue;
                    }
                    match p.key_mut(raw).window_mut(start) {
                        Some(w) => agg.add(&mut w.acc, &m.value, ts, order),
                        None => {
                            let acc = agg.init(&m.value, ts, order);
                            p.open(raw, start, end, m.key.clone(), acc);
                        }
                    }
                    out.updated.push(start);
                }
            }
            Shape::Sliding { size_ms } => {
                let (start, end) = (ts.saturating_sub(size_ms), ts.saturating_add(1));
                // The last window that can hold a record is the one of a record `size` later.
                let last_end = |t: i64| t.saturating_add(size_ms).saturating_add(1);
                if closed(last_end(ts)) {
                    out.late = Some((start, end)); // every window containing it has closed
                    return;
                }
                let kw = p.key_mut(raw);
                kw.drop_records(|r| closed(last_end(r.ts)));
                kw.buffer(Buffered {
                    ts,
                    order,
                    value: m.value.clone(),
                });
                kw.update_containing(ts, |w| {
                    agg.add(&mut w.acc, &m.value, ts, order);
                    out.updated.push(w.start);
                });
                if closed(end) {
                    out.late = Some((start, end));
                } else if !out.updated.contains(&start) {
                    let inside = kw.records().iter().filter(|r| start <= r.ts && r.ts < end);
                    if let Some(acc) = fold(agg, inside) {
                        p.open(raw, start, end, m.key.clone(), acc);
                        out.updated.push(start);
                    }
                }
                p.expire_records_at(raw, last_end(ts));
            }
            Shape::Session { gap_ms } => {
                let (mut start, mut end) = (ts, ts.saturating_add(1));
                let mut touching = Vec::new();
                for w in p.key(raw).map(|kw| &kw.windows[..]).unwrap_or_default() {
                    if w.start.saturating_sub(gap_ms) <= ts
                        && ts <= (w.end - 1).saturating_add(gap_ms)
                    {
                        touching.push((w.start, w.end));
                        (start, end) = (start.min(w.start), end.max(w.end));
                    }
                }
                if closed(end) {
                    out.late = Some((start, end));
                    return;
                }
                let kw = p.key_mut(raw);
                kw.buffer(Buffered {
                    ts,
                    order,
                    value: m.value.clone(),
                });
                match touching[..] {
                    [] => {
                        let acc = agg.init(&m.value, ts, order);
                        p.open(raw, start, end, m.key.clone(), acc);
                    }
                    [only] if only == (start, end) => {
                        if let Some(w) = kw.window_mut(start) {
                            agg.add(&mut w.acc, &m.value, ts, order);
                        }
                    }
                    [(only, _)] => {
                        if let Some(mut w) = p.remove(raw, only) {
                            agg.add(&mut w.acc, &m.value, ts, order);
                            p.open(raw, start, end, m.key.clone(), w.acc);
                        }
                    }
                    _ => {
                        for (s, _) in touching {
                            p.remove(raw, s);
                        }
                        let kw = p.key_mut(raw);
                        let inside = kw.records().iter().filter(|r| start <= r.ts && r.ts < end);
                        if let Some(acc) = fold(agg, inside) {
                            p.open(raw, start, end, m.key.clone(), acc);
                        }
                    }
                }
                out.updated.push(start);
            }
        }
    }
}

/// Starts of the fixed windows containing `ts`, ascending. No window of a record at or after the
/// epoch starts before it (Kafka Streams and Quix Streams create none); records before the epoch,
/// which Kafka refuses, keep their epoch-aligned windows.
fn fixed_starts(size: i64, step: i64, ts: i64) -> impl Iterator<Item = i64> {
    let last = ts.div_euclid(step) * step;
    let count = (size + step - 1) / step;
    (0..count)
        .rev()
        .map(move |i| last - i * step)
        .filter(move |s| s.saturating_add(size) > ts && (*s >= 0 || ts < 0))
}

/// The accumulator of `records` in the order given (`None` when there are none).
fn fold<'a, V: 'a, G: Aggregator<V>>(
    agg: &mut G,
    records: impl Iterator<Item = &'a Buffered<V>>,
) -> Option<G::Acc> {
    let mut acc = None;
    for r in records {
        match &mut acc {
            None => acc = Some(agg.init(&r.value, r.ts, r.order)),
            Some(a) => agg.add(a, &r.value, r.ts, r.order),
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window_codec::{time_bytes, time_from};

    #[test]
    fn fixed_window_starts_are_epoch_aligned_and_half_open() {
        let starts = |size, step, ts| fixed_starts(size, step, ts).collect::<Vec<_>>();
        assert_eq!(starts(10, 10, 0), [0]);
        assert_eq!(starts(10, 10, 9), [0]);
        assert_eq!(starts(10, 10, 10), [10]);
        assert_eq!(starts(10, 10, -1), [-10]);
        assert_eq!(starts(10, 4, 9), [0, 4, 8]);
        assert_eq!(starts(10, 4, 12), [4, 8, 12]);
        assert_eq!(starts(10, 4, 3), [0], "no window starts before the epoch");
        assert_eq!(starts(10, 4, -3), [-12, -8, -4]);
        for t in [-7i64, 0, 1, 5, 123_456] {
            assert_eq!(time_from(&time_bytes(t)), Some(t));
        }
        assert!(time_bytes(-5) < time_bytes(3), "keys sort by time");
    }

    #[test]
    fn sessions_linger_for_their_gap_and_grace() {
        let session = TimeWindows {
            shape: Shape::Session { gap_ms: 10 },
            grace_ms: 5,
        };
        // A session whose last record is at 100 (end 101) takes records up to 110 and closes
        // once stream time passes 115.
        assert_eq!(101 + session.linger(), 116);
        assert_eq!(session.record_span(), None);
        let sliding = TimeWindows {
            shape: Shape::Sliding { size_ms: 10 },
            grace_ms: 5,
        };
        assert_eq!(sliding.linger(), 5);
        assert_eq!(sliding.record_span(), Some(11));
    }
}
