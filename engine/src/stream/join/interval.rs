//! The interval join ([`Stream::join_interval`]): left and right records with the same key whose
//! timestamps are close (Quix Streams' `join_interval`, Kafka Streams' stream–stream join with
//! `JoinWindows`, Flink's interval join).
//!
//! Invariants:
//! - A left record at `t` and a right record at `u` match when `t − before ≤ u ≤ t + after`
//!   (both bounds inclusive, as Kafka Streams' `JoinWindows`). Each matching pair is emitted
//!   once, when the later of the two (in processing order) arrives, with timestamp
//!   `max(t, u)` (as Kafka Streams) and no headers (as Quix Streams).
//! - Stream time is the largest timestamp seen on either side, per partition. A record older
//!   than `stream time − grace` is late: dropped, counted and logged. A kept record goes once
//!   no future on-time record can match it: a left record when `t + after < stream time −
//!   grace`, a right one when `u + before < stream time − grace`. So expiry never loses a
//!   match, and the result is every pair of on-time records within the interval.
//! - With [`JoinHow::Left`], a left record that finds no right record when it arrives is
//!   emitted at once with `None` (as Quix Streams); right records arriving later still pair
//!   with it.

use std::convert::Infallible;
use std::fmt::Display;
use std::time::Duration;

use hashbrown::HashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::saved::{load_stream_time, save_stream_time, Keyed};
use super::{merge_json, JoinHow, OnMerge};
use crate::state::Store;
use crate::stream::dataframe::{emit, Edges};
use crate::stream::registry::{Ctx, Operator};
use crate::stream::window::state::{loaded_from, state_for, PartitionState};
use crate::stream::{Message, StepError, Stream};

/// Kinds of the entries holding a key's left and right records.
const LEFT: u8 = b'L';
const RIGHT: u8 = b'R';

/// How an interval join matches: a right record at most `before` earlier or `after` later
/// than the left one (Quix Streams' `backward_ms` and `forward_ms`), records kept `grace`
/// past stream time, and [`JoinHow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    before: Duration,
    after: Duration,
    grace: Duration,
    how: JoinHow,
}

impl Interval {
    /// An inner join of records `before` earlier to `after` later, no grace.
    pub fn new(before: Duration, after: Duration) -> Self {
        Interval {
            before,
            after,
            grace: Duration::ZERO,
            how: JoinHow::Inner,
        }
    }

    /// How far behind stream time a record may be and still join.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Which left records it emits.
    pub fn how(mut self, how: JoinHow) -> Self {
        self.how = how;
        self
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A key's left records and the key they were read with.
type LeftRecords<K, V> = (Option<K>, Vec<(i64, V)>);
type RightRecords<R> = Vec<(i64, R)>;

struct IntervalPartition<K, V, R> {
    epoch: u64,
    stream_time: i64,
    time_moved: bool,
    left: Keyed<LeftRecords<K, V>>,
    right: Keyed<RightRecords<R>>,
}

impl<K, V, R> PartitionState for IntervalPartition<K, V, R> {
    fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl<K, V, R> IntervalPartition<K, V, R>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    fn load(op: u16, store: &Store) -> Result<Self, StepError> {
        Ok(IntervalPartition {
            epoch: store.epoch(),
            stream_time: load_stream_time(op, store)?,
            time_moved: false,
            left: Keyed::load(op, LEFT, store)?,
            right: Keyed::load(op, RIGHT, store)?,
        })
    }

    /// Moves stream time to `ts`; whether a record at `ts` is late.
    fn observe(&mut self, ts: i64, grace: i64) -> bool {
        if ts > self.stream_time {
            self.stream_time = ts;
            self.time_moved = true;
        }
        ts < self.stream_time.saturating_sub(grace)
    }
}

fn partition_of<'a, K, V, R>(
    partitions: &'a mut HashMap<u32, IntervalPartition<K, V, R>>,
    id: u16,
    ctx: &Ctx<'_>,
) -> Result<&'a mut IntervalPartition<K, V, R>, StepError>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    let Some(store) = ctx.store.as_deref() else {
        return Err(StepError::Function("no state store is open".into()));
    };
    state_for(partitions, ctx.partition, store, |s| {
        IntervalPartition::load(id, s)
    })
}

fn late(ctx: &mut Ctx<'_>, ts: i64, stream_time: i64) {
    ctx.late_records += 1;
    tracing::warn!(
        topic = ctx.topic,
        partition = ctx.partition,
        offset = ctx.offset,
        timestamp = ts,
        stream_time,
        "record later than the interval join's grace dropped"
    );
}

pub(crate) struct IntervalOperator<K, V, R, U, F> {
    id: u16,
    spec: Interval,
    merge: F,
    partitions: HashMap<u32, IntervalPartition<K, V, R>>,
    downstream: Edges<K, U>,
    results: Vec<Message<K, U>>,
}

impl<K, V, R, U, E, F> IntervalOperator<K, V, R, U, F>
where
    K: Clone + Serialize + DeserializeOwned + 'static,
    V: Clone + Serialize + DeserializeOwned + 'static,
    R: Clone + Serialize + DeserializeOwned + 'static,
    U: Clone + 'static,
    E: Display,
    F: FnMut(&V, Option<&R>) -> Result<U, E>,
{
    fn emit_results(&mut self, ctx: &mut Ctx<'_>) -> Result<(), StepError> {
        let mut downstream = self.downstream.borrow_mut();
        for r in self.results.drain(..) {
            emit(&mut downstream, ctx, r)?;
        }
        Ok(())
    }

    fn left(&mut self, ctx: &mut Ctx<'_>, m: Message<K, V>) -> Result<(), StepError> {
        let (before, after, grace) = (
            ms(self.spec.before),
            ms(self.spec.after),
            ms(self.spec.grace),
        );
        self.results.clear();
        let p = partition_of(&mut self.partitions, self.id, ctx)?;
        let t = m.timestamp_ms;
        if p.observe(t, grace) {
            late(ctx, t, p.stream_time);
            return Ok(());
        }
        let (lo, hi) = (t.saturating_sub(before), t.saturating_add(after));
        if let Some(rights) = p.right.keys.get(ctx.raw_key) {
            for (u, r) in rights.iter().filter(|(u, _)| (lo..=hi).contains(u)) {
                let value = (self.merge)(&m.value, Some(r))
                    .map_err(|e| StepError::Function(e.to_string()))?;
                self.results.push(joined(m.key.clone(), value, t.max(*u)));
            }
        }
        if self.results.is_empty() && self.spec.how == JoinHow::Left {
            let value =
                (self.merge)(&m.value, None).map_err(|e| StepError::Function(e.to_string()))?;
            self.results.push(joined(m.key.clone(), value, t));
        }
        let floor = p.stream_time.saturating_sub(grace);
        if t.saturating_add(after) >= floor {
            let (key, records) = p.left.touch_or(ctx.raw_key, || (None, Vec::new()));
            *key = m.key;
            // The key's expired records go as it gets a new one (idle keys' at the flush).
            records.retain(|(t, _)| t.saturating_add(after) >= floor);
            records.push((t, m.value));
        }
        self.emit_results(ctx)
    }

    fn right(&mut self, ctx: &mut Ctx<'_>, u: i64, r: R) -> Result<(), StepError> {
        let (before, after, grace) = (
            ms(self.spec.before),
            ms(self.spec.after),
            ms(self.spec.grace),
        );
        self.results.clear();
        let p = partition_of(&mut self.partitions, self.id, ctx)?;
        if p.observe(u, grace) {
            late(ctx, u, p.stream_time);
            return Ok(());
        }
        // Left records at t with t − before ≤ u ≤ t + after.
        let (lo, hi) = (u.saturating_sub(after), u.saturating_add(before));
        if let Some((key, lefts)) = p.left.keys.get(ctx.raw_key) {
            for (t, l) in lefts.iter().filter(|(t, _)| (lo..=hi).contains(t)) {
                let value =
                    (self.merge)(l, Some(&r)).map_err(|e| StepError::Function(e.to_string()))?;
                self.results.push(joined(key.clone(), value, u.max(*t)));
            }
        }
        let floor = p.stream_time.saturating_sub(grace);
        if u.saturating_add(before) >= floor {
            let records = p.right.touch_or(ctx.raw_key, Vec::new);
            records.retain(|(u, _)| u.saturating_add(before) >= floor);
            records.push((u, r));
        }
        self.emit_results(ctx)
    }
}

fn joined<K, U>(key: Option<K>, value: U, timestamp_ms: i64) -> Message<K, U> {
    Message {
        key,
        value,
        timestamp_ms,
        headers: Vec::new(),
    }
}

impl<K, V, R, U, E, F> Operator for IntervalOperator<K, V, R, U, F>
where
    K: Clone + Serialize + DeserializeOwned + 'static,
    V: Clone + Serialize + DeserializeOwned + 'static,
    R: Clone + Serialize + DeserializeOwned + 'static,
    U: Clone + 'static,
    E: Display,
    F: FnMut(&V, Option<&R>) -> Result<U, E>,
{
    fn flush(&mut self, partition: u32, store: &mut Store) -> Result<(), StepError> {
        let (before, after, grace) = (
            ms(self.spec.before),
            ms(self.spec.after),
            ms(self.spec.grace),
        );
        let id = self.id;
        let Some(p) = loaded_from(&mut self.partitions, partition, store) else {
            return Ok(());
        };
        let floor = p.stream_time.saturating_sub(grace);
        p.left.sweep(|(_, records)| {
            let n = records.len();
            records.retain(|(t, _)| t.saturating_add(after) >= floor);
            records.len() != n
        });
        p.right.sweep(|records| {
            let n = records.len();
            records.retain(|(u, _)| u.saturating_add(before) >= floor);
            records.len() != n
        });
        p.left.flush(id, store, |(_, records)| records.is_empty())?;
        p.right.flush(id, store, Vec::is_empty)?;
        if std::mem::take(&mut p.time_moved) {
            save_stream_time(id, store, p.stream_time);
        }
        Ok(())
    }

    fn close(&mut self, partition: u32) {
        self.partitions.remove(&partition);
    }

    fn tick(&mut self, _ctx: &mut Ctx<'_>) -> Result<(), StepError> {
        Ok(())
    }
}

impl<K, V> Stream<K, V>
where
    K: Clone + Serialize + DeserializeOwned + 'static,
    V: Clone + Serialize + DeserializeOwned + 'static,
{
    /// Pairs each message with the messages of `right` with its key whose timestamps are within
    /// `spec`'s interval of its own (see the module docs for the exact rules): `f(left value,
    /// right value)` makes each result, keyed as the left message, at the later of the two
    /// timestamps. With [`JoinHow::Left`], a message that finds no partner when it arrives is
    /// emitted with `f(value, None)`. Both sides are kept in the store for the interval plus
    /// the grace period.
    pub fn join_interval<K2, R, U>(
        &self,
        right: &Stream<K2, R>,
        spec: Interval,
        mut f: impl FnMut(&V, Option<&R>) -> U + 'static,
    ) -> Stream<K, U>
    where
        K2: Clone + 'static,
        R: Clone + Serialize + DeserializeOwned + 'static,
        U: Clone + 'static,
    {
        self.try_join_interval(right, spec, move |v, r| Ok::<U, Infallible>(f(v, r)))
    }

    /// Like [`join_interval`](Self::join_interval) for a merge that can fail; a failure follows
    /// the error policy.
    pub fn try_join_interval<K2, R, U, E>(
        &self,
        right: &Stream<K2, R>,
        spec: Interval,
        f: impl FnMut(&V, Option<&R>) -> Result<U, E> + 'static,
    ) -> Stream<K, U>
    where
        K2: Clone + 'static,
        R: Clone + Serialize + DeserializeOwned + 'static,
        U: Clone + 'static,
        E: Display + 'static,
    {
        let make = |id, downstream| IntervalOperator {
            id,
            spec,
            merge: f,
            partitions: HashMap::new(),
            downstream,
            results: Vec::new(),
        };
        let on_left =
            |op: &mut IntervalOperator<K, V, R, U, _>, ctx: &mut Ctx<'_>, m| op.left(ctx, m);
        let on_right = |op: &mut IntervalOperator<K, V, R, U, _>, ctx: &mut Ctx<'_>, ts, r| {
            op.right(ctx, ts, r)
        };
        super::two_sided(self, right, "join_interval", make, on_left, on_right)
    }
}

impl<K: Clone + Serialize + DeserializeOwned + 'static> Stream<K, Value> {
    /// [`join_interval`](Self::join_interval) of JSON objects, merged by [`merge_json`].
    pub fn join_interval_merged<K2: Clone + 'static>(
        &self,
        right: &Stream<K2, Value>,
        spec: Interval,
        on_merge: OnMerge,
    ) -> Stream<K, Value> {
        self.try_join_interval(right, spec, move |v, r| merge_json(v.clone(), r, on_merge))
    }
}
