//! The time-window operator: assigns records to epoch-aligned windows, folds them into
//! accumulators, closes windows on stream time (or after a wall-clock idle period) and emits
//! results.
//!
//! Invariants:
//! - Open windows of a partition live in memory, loaded from the partition's store when the
//!   operator first meets that store (by its epoch), and are written back to it before every
//!   checkpoint: changed windows as entries, closed ones as tombstones, plus the partition's
//!   stream time and arrival counter — so a restart resumes with exactly the windows, stream time
//!   and late-record decisions of the run that checkpointed.
//! - Store layout (keys sort by window end, so closing is a range scan from the smallest end):
//!   `b'w', op u16, b'W', end (i64, sign bit flipped, BE), start (same), record key` → JSON
//!   `(key, accumulator)`; `b'w', op u16, b'M'` → JSON `(stream time, arrival counter)`.
//! - A window `[start, end)` closes when stream time ≥ `end + grace`; a record is late for a window
//!   that has closed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::aggregate::Aggregator;
use super::state::{loaded_from, state_for, state_prefix, PartitionState};
use super::{Emit, WindowResult};
use crate::state::Store;
use crate::stream::dataframe::{emit, Edges};
use crate::stream::registry::{Ctx, Operator};
use crate::stream::{Message, StepError};

/// Epoch-aligned time windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeWindows {
    pub size_ms: i64,
    pub step_ms: i64,
    pub grace_ms: i64,
}

impl TimeWindows {
    /// Starts of the windows containing `ts`, ascending.
    fn starts(&self, ts: i64) -> impl Iterator<Item = i64> {
        let last = ts.div_euclid(self.step_ms) * self.step_ms;
        let (size, step) = (self.size_ms, self.step_ms);
        let count = (size + step - 1) / step;
        (0..count)
            .rev()
            .map(move |i| last - i * step)
            .filter(move |s| *s + size > ts)
    }
}

/// What becomes of late records besides being dropped and counted.
pub(crate) type LateHandler<K, V> =
    Box<dyn FnMut(&mut Ctx<'_>, &Message<K, V>, i64, i64) -> Result<(), StepError>>;

struct Open<K, A> {
    start: i64,
    end: i64,
    key: Option<K>,
    acc: A,
    dirty: bool,
}

struct PartitionWindows<K, A> {
    epoch: u64,
    stream_time: i64,
    order: u64,
    by_key: HashMap<Vec<u8>, Vec<Open<K, A>>>,
    closing: BTreeSet<(i64, i64, Vec<u8>)>,
    dirty: Vec<(Vec<u8>, i64)>,
    deleted: Vec<Vec<u8>>,
    last_record: Instant,
}

impl<K, A> PartitionState for PartitionWindows<K, A> {
    fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl<K, A> PartitionWindows<K, A> {
    fn new(epoch: u64) -> Self {
        PartitionWindows {
            epoch,
            stream_time: i64::MIN,
            order: 0,
            by_key: HashMap::new(),
            closing: BTreeSet::new(),
            dirty: Vec::new(),
            deleted: Vec::new(),
            last_record: Instant::now(),
        }
    }
}

/// Sortable big-endian encoding of a signed time.
fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_from(bytes: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(bytes.try_into().ok()?) ^ (1 << 63)) as i64)
}

pub(crate) struct WindowOperator<K, V, G: Aggregator<V>> {
    id: u16,
    windows: TimeWindows,
    emit: Emit,
    idle_close: Option<Duration>,
    aggregator: G,
    late: Vec<LateHandler<K, V>>,
    partitions: HashMap<u32, PartitionWindows<K, G::Acc>>,
    downstream: Edges<K, WindowResult<G::Out>>,
}

impl<K, V, G> WindowOperator<K, V, G>
where
    K: Clone + Serialize + DeserializeOwned + 'static,
    V: 'static,
    G: Aggregator<V>,
{
    pub fn new(
        id: u16,
        windows: TimeWindows,
        emit: Emit,
        idle_close: Option<Duration>,
        aggregator: G,
        late: Vec<LateHandler<K, V>>,
        downstream: Edges<K, WindowResult<G::Out>>,
    ) -> Self {
        WindowOperator {
            id,
            windows,
            emit,
            idle_close,
            aggregator,
            late,
            partitions: HashMap::new(),
            downstream,
        }
    }

    fn load(id: u16, store: &Store) -> Result<PartitionWindows<K, G::Acc>, StepError> {
        let bad = |what: &str| StepError::Function(format!("window state: {what}"));
        let mut p = PartitionWindows::new(store.epoch());
        for (k, v) in store.scan_prefix(&state_prefix(id, b'M')).map_err(fatal)? {
            if k.len() == 4 {
                let (t, o): (i64, u64) = serde_json::from_slice(&v).map_err(|_| bad("meta"))?;
                p.stream_time = t;
                p.order = o;
            }
        }
        for (k, v) in store.scan_prefix(&state_prefix(id, b'W')).map_err(fatal)? {
            let end = k.get(4..12).and_then(time_from).ok_or_else(|| bad("key"))?;
            let start = k
                .get(12..20)
                .and_then(time_from)
                .ok_or_else(|| bad("key"))?;
            let raw = k.get(20..).unwrap_or_default().to_vec();
            let (key, acc): (Option<K>, G::Acc) =
                serde_json::from_slice(&v).map_err(|e| bad(&e.to_string()))?;
            p.closing.insert((end, start, raw.clone()));
            p.by_key.entry(raw).or_default().push(Open {
                start,
                end,
                key,
                acc,
                dirty: false,
            });
        }
        Ok(p)
    }

    /// Folds one message into its windows, then closes what its time closes.
    pub fn process(&mut self, ctx: &mut Ctx<'_>, m: Message<K, V>) -> Result<(), StepError> {
        let Some(store) = ctx.store.as_deref() else {
            return Err(StepError::Function("no state store is open".into()));
        };
        let partition = ctx.partition;
        let windows = self.windows;
        let emit_current = self.emit == Emit::Current;
        let raw_key = ctx.raw_key;
        let id = self.id;
        let p = state_for(&mut self.partitions, partition, store, |s| {
            Self::load(id, s)
        })?;
        let agg = &mut self.aggregator;
        p.last_record = Instant::now();
        let order = p.order;
        p.order += 1;
        let ts = m.timestamp_ms;
        let mut late_for = None;
        let mut updated = Vec::new();
        for start in windows.starts(ts) {
            let end = start + windows.size_ms;
            if p.stream_time != i64::MIN && end.saturating_add(windows.grace_ms) <= p.stream_time {
                late_for = Some((start, end));
                continue;
            }
            let list = match p.by_key.get_mut(raw_key) {
                Some(l) => l,
                None => p.by_key.entry(raw_key.to_vec()).or_default(),
            };
            match list.iter_mut().find(|w| w.start == start) {
                Some(w) => {
                    agg.add(&mut w.acc, &m.value, ts, order);
                    if !w.dirty {
                        w.dirty = true;
                        p.dirty.push((raw_key.to_vec(), start));
                    }
                }
                None => {
                    list.push(Open {
                        start,
                        end,
                        key: m.key.clone(),
                        acc: agg.init(&m.value, ts, order),
                        dirty: true,
                    });
                    p.dirty.push((raw_key.to_vec(), start));
                    p.closing.insert((end, start, raw_key.to_vec()));
                }
            }
            if emit_current {
                updated.push(start);
            }
        }
        p.stream_time = p.stream_time.max(ts);
        let mut results = Vec::new();
        if emit_current {
            if let Some(list) = p.by_key.get(raw_key) {
                for w in list.iter().filter(|w| updated.contains(&w.start)) {
                    results.push(result(agg, w));
                }
            }
        }
        let limit = p.stream_time;
        self.close(
            partition,
            |end| end.saturating_add(windows.grace_ms) <= limit,
            &mut results,
        );
        if let Some((start, end)) = late_for {
            ctx.late_records += 1;
            tracing::warn!(
                topic = ctx.topic,
                partition = ctx.partition,
                offset = ctx.offset,
                window_start = start,
                window_end = end,
                "late record dropped"
            );
            for handler in &mut self.late {
                handler(ctx, &m, start, end)?;
            }
        }
        let mut downstream = self.downstream.borrow_mut();
        for r in results {
            emit(&mut downstream, ctx, r)?;
        }
        Ok(())
    }

    /// Removes the windows whose end satisfies `due` (smallest end first); with final emission
    /// their results go to `results`.
    fn close(
        &mut self,
        partition: u32,
        due: impl Fn(i64) -> bool,
        results: &mut Vec<Message<K, WindowResult<G::Out>>>,
    ) {
        let emit_final = self.emit == Emit::Final;
        let mut doomed = Vec::new();
        let Some(p) = self.partitions.get_mut(&partition) else {
            return;
        };
        while let Some(first) = p.closing.first() {
            if !due(first.0) {
                break;
            }
            let Some((end, start, raw)) = p.closing.pop_first() else {
                break;
            };
            let Some(list) = p.by_key.get_mut(&raw) else {
                continue;
            };
            let Some(i) = list.iter().position(|w| w.start == start) else {
                continue;
            };
            let w = list.swap_remove(i);
            if list.is_empty() {
                p.by_key.remove(&raw);
            }
            if emit_final {
                results.push(result(&self.aggregator, &w));
            }
            doomed.push((end, start, raw));
        }
        for (end, start, raw) in doomed {
            let key = window_key(self.id, end, start, &raw);
            if let Some(p) = self.partitions.get_mut(&partition) {
                p.deleted.push(key);
            }
        }
    }
}

fn result<K: Clone, V, G: Aggregator<V>>(
    agg: &G,
    w: &Open<K, G::Acc>,
) -> Message<K, WindowResult<G::Out>> {
    Message {
        key: w.key.clone(),
        value: WindowResult {
            start: w.start,
            end: w.end,
            value: agg.result(&w.acc),
        },
        timestamp_ms: w.end - 1,
        headers: Vec::new(),
    }
}

fn fatal(e: crate::state::StateError) -> StepError {
    StepError::Fatal(e.into())
}

impl<K, V, G> Operator for WindowOperator<K, V, G>
where
    K: Clone + Serialize + DeserializeOwned + 'static,
    V: 'static,
    G: Aggregator<V>,
{
    fn flush(&mut self, partition: u32, store: &mut Store) -> Result<(), StepError> {
        let id = self.id;
        let mut writes = Vec::new();
        let Some(p) = loaded_from(&mut self.partitions, partition, store) else {
            return Ok(());
        };
        for key in p.deleted.drain(..) {
            writes.push((key, None));
        }
        for (raw, start) in std::mem::take(&mut p.dirty) {
            let Some(w) = p
                .by_key
                .get_mut(&raw)
                .and_then(|l| l.iter_mut().find(|w| w.start == start))
            else {
                continue; // closed since: its tombstone is written
            };
            w.dirty = false;
            let value = serde_json::to_vec(&(&w.key, &w.acc))
                .map_err(|e| StepError::Function(format!("window state: {e}")))?;
            writes.push((window_key(id, w.end, start, &raw), Some(value)));
        }
        let meta = serde_json::to_vec(&(p.stream_time, p.order))
            .map_err(|e| StepError::Function(format!("window state: {e}")))?;
        writes.push((state_prefix(id, b'M'), Some(meta)));
        for (key, value) in writes {
            store.put(&key, value);
        }
        Ok(())
    }

    fn tick(&mut self, ctx: &mut Ctx<'_>) -> Result<(), StepError> {
        let (Some(idle), Some(store)) = (self.idle_close, ctx.store.as_deref()) else {
            return Ok(());
        };
        let partition = ctx.partition;
        let Some(p) = loaded_from(&mut self.partitions, partition, store) else {
            return Ok(());
        };
        if p.closing.is_empty() || p.last_record.elapsed() < idle {
            return Ok(());
        }
        // Everything open closes; stream time moves past it so that stragglers count as late.
        let grace = self.windows.grace_ms;
        if let Some(last) = p.closing.last() {
            p.stream_time = p.stream_time.max(last.0.saturating_add(grace));
        }
        let mut results = Vec::new();
        self.close(partition, |_| true, &mut results);
        let mut downstream = self.downstream.borrow_mut();
        for r in results {
            emit(&mut downstream, ctx, r)?;
        }
        Ok(())
    }
}

/// The store key of a window of operator `op`.
fn window_key(op: u16, end: i64, start: i64, raw: &[u8]) -> Vec<u8> {
    let mut k = state_prefix(op, b'W');
    k.extend_from_slice(&time_bytes(end));
    k.extend_from_slice(&time_bytes(start));
    k.extend_from_slice(raw);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_starts_are_epoch_aligned_and_half_open() {
        let tumbling = TimeWindows {
            size_ms: 10,
            step_ms: 10,
            grace_ms: 0,
        };
        assert_eq!(tumbling.starts(0).collect::<Vec<_>>(), [0]);
        assert_eq!(tumbling.starts(9).collect::<Vec<_>>(), [0]);
        assert_eq!(tumbling.starts(10).collect::<Vec<_>>(), [10]);
        assert_eq!(tumbling.starts(-1).collect::<Vec<_>>(), [-10]);
        let hopping = TimeWindows {
            size_ms: 10,
            step_ms: 4,
            grace_ms: 0,
        };
        assert_eq!(hopping.starts(9).collect::<Vec<_>>(), [0, 4, 8]);
        assert_eq!(hopping.starts(12).collect::<Vec<_>>(), [4, 8, 12]);
        assert_eq!(hopping.starts(3).collect::<Vec<_>>(), [-4, 0]);
        for t in [-7i64, 0, 1, 5, 123_456] {
            assert_eq!(time_from(&time_bytes(t)), Some(t));
        }
        assert!(time_bytes(-5) < time_bytes(3), "keys sort by time");
    }
}
