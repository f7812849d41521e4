//! The as-of join ([`Stream::join_asof`]): each left record joins the right record with its key
//! and the largest timestamp at or before its own (Quix Streams' `join_asof`, Kafka Streams'
//! join against a versioned table).
//!
//! Invariants:
//! - Each key's right records (its versions) are kept sorted by timestamp, one per timestamp
//!   (a later record with the same timestamp replaces the earlier, as in a versioned store).
//! - Stream time is the largest timestamp the join has seen on either side, per partition.
//!   Versions superseded before `stream time − retention` are dropped; the newest version at or
//!   before that bound stays (it is still in force there), and so does a key's latest version,
//!   however old.
//! - A left record older than `stream time − retention` cannot be looked up reliably any more:
//!   it is late — dropped, counted and logged, as Kafka Streams drops stream records older than
//!   a versioned table's history retention.

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

/// Kind of the entries holding a key's versions.
const VERSIONS: u8 = b'A';

/// How an as-of join matches: [`JoinHow`] and the retention of right-side versions in event
/// time (Quix Streams' `grace_ms`; default 7 days, as there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsOf {
    how: JoinHow,
    retention: Duration,
}

impl Default for AsOf {
    fn default() -> Self {
        AsOf {
            how: JoinHow::Inner,
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl AsOf {
    /// An inner as-of join keeping right versions for `retention` of event time.
    pub fn new(retention: Duration) -> Self {
        AsOf {
            retention,
            ..AsOf::default()
        }
    }

    /// Which left records it emits.
    pub fn how(mut self, how: JoinHow) -> Self {
        self.how = how;
        self
    }
}

type Versions<R> = Vec<(i64, R)>;

struct AsOfPartition<R> {
    epoch: u64,
    stream_time: i64,
    time_moved: bool,
    versions: Keyed<Versions<R>>,
}

impl<R> PartitionState for AsOfPartition<R> {
    fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl<R: Serialize + DeserializeOwned> AsOfPartition<R> {
    fn load(op: u16, store: &Store) -> Result<Self, StepError> {
        let versions = Keyed::<Versions<R>>::load(op, VERSIONS, store)?;
        for (raw, v) in &versions.keys {
            if !v.windows(2).all(|w| w[0].0 < w[1].0) {
                let key = [&crate::window_codec::state_prefix(op, VERSIONS)[..], raw].concat();
                let e = store.corrupt_entry(&key, "as-of versions out of order");
                return Err(StepError::Fatal(e.into()));
            }
        }
        Ok(AsOfPartition {
            epoch: store.epoch(),
            stream_time: load_stream_time(op, store)?,
            time_moved: false,
            versions,
        })
    }

    fn observe(&mut self, ts: i64) {
        if ts > self.stream_time {
            self.stream_time = ts;
            self.time_moved = true;
        }
    }
}

/// Drops the versions superseded at or before `bound`; whether any went.
fn expire<R>(versions: &mut Versions<R>, bound: i64) -> bool {
    let in_force = versions.partition_point(|(ts, _)| *ts <= bound);
    if in_force > 1 {
        versions.drain(..in_force - 1);
        return true;
    }
    false
}

pub(crate) struct AsOfOperator<K, V, R, U, F> {
    id: u16,
    spec: AsOf,
    merge: F,
    partitions: HashMap<u32, AsOfPartition<R>>,
    downstream: Edges<K, U>,
    _left: std::marker::PhantomData<fn(V)>,
}

/// The state of the partition `ctx` is in, loaded from its store when needed.
fn partition_of<'a, R: Serialize + DeserializeOwned>(
    partitions: &'a mut HashMap<u32, AsOfPartition<R>>,
    id: u16,
    ctx: &Ctx<'_>,
) -> Result<&'a mut AsOfPartition<R>, StepError> {
    let Some(store) = ctx.store.as_deref() else {
        return Err(StepError::Function("no state store is open".into()));
    };
    state_for(partitions, ctx.partition, store, |s| {
        AsOfPartition::load(id, s)
    })
}

impl<K, V, R, U, E, F> AsOfOperator<K, V, R, U, F>
where
    K: Clone + 'static,
    R: Clone + Serialize + DeserializeOwned + 'static,
    U: Clone + 'static,
    E: Display,
    F: FnMut(V, Option<&R>) -> Result<U, E>,
{
    fn retention_ms(&self) -> i64 {
        i64::try_from(self.spec.retention.as_millis()).unwrap_or(i64::MAX)
    }

    /// A right record: a new version of its key.
    fn right(&mut self, ctx: &mut Ctx<'_>, ts: i64, value: R) -> Result<(), StepError> {
        let retention = self.retention_ms();
        let p = partition_of(&mut self.partitions, self.id, ctx)?;
        p.observe(ts);
        let bound = p.stream_time.saturating_sub(retention);
        let versions = p.versions.touch_or(ctx.raw_key, Vec::new);
        match versions.binary_search_by_key(&ts, |(t, _)| *t) {
            Ok(i) => versions[i].1 = value,
            Err(i) => versions.insert(i, (ts, value)),
        }
        expire(versions, bound);
        Ok(())
    }

    /// A left record: joined with the version in force at its time.
    fn left(&mut self, ctx: &mut Ctx<'_>, m: Message<K, V>) -> Result<(), StepError> {
        let (retention, how) = (self.retention_ms(), self.spec.how);
        let p = partition_of(&mut self.partitions, self.id, ctx)?;
        p.observe(m.timestamp_ms);
        let bound = p.stream_time.saturating_sub(retention);
        if m.timestamp_ms < bound {
            ctx.late_records += 1;
            tracing::warn!(
                topic = ctx.topic,
                partition = ctx.partition,
                offset = ctx.offset,
                timestamp = m.timestamp_ms,
                stream_time = p.stream_time,
                "record older than the as-of join's retention dropped"
            );
            return Ok(());
        }
        let version = p.versions.keys.get(ctx.raw_key).and_then(|v| {
            let i = v.partition_point(|(ts, _)| *ts <= m.timestamp_ms);
            i.checked_sub(1).map(|i| &v[i].1)
        });
        if how == JoinHow::Inner && version.is_none() {
            return Ok(());
        }
        let value =
            (self.merge)(m.value, version).map_err(|e| StepError::Function(e.to_string()))?;
        let joined = Message {
            key: m.key,
            value,
            timestamp_ms: m.timestamp_ms,
            headers: m.headers,
        };
        emit(&mut self.downstream.borrow_mut(), ctx, joined)
    }
}

impl<K, V, R, U, E, F> Operator for AsOfOperator<K, V, R, U, F>
where
    K: Clone + 'static,
    R: Clone + Serialize + DeserializeOwned + 'static,
    U: Clone + 'static,
    E: Display,
    F: FnMut(V, Option<&R>) -> Result<U, E>,
{
    fn flush(&mut self, partition: u32, store: &mut Store) -> Result<(), StepError> {
        let retention = self.retention_ms();
        let id = self.id;
        let Some(p) = loaded_from(&mut self.partitions, partition, store) else {
            return Ok(());
        };
        let bound = p.stream_time.saturating_sub(retention);
        p.versions.sweep(|v| expire(v, bound));
        p.versions.flush(id, store, Vec::is_empty)?;
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

impl<K: Clone + 'static, V: Clone + 'static> Stream<K, V> {
    /// Joins each message with the latest message of `right` with its key whose timestamp is at
    /// or before its own (Quix Streams' `join_asof`): `f(value, right value)` makes the new
    /// value; without one, [`JoinHow::Inner`] drops the message and [`JoinHow::Left`] calls `f`
    /// with `None`. `right`'s messages are stored, not passed on; both sides are processed in
    /// timestamp order, a right message before a left one with the same timestamp. Results keep
    /// the left message's key, timestamp and headers.
    pub fn join_asof<K2, R, U>(
        &self,
        right: &Stream<K2, R>,
        spec: AsOf,
        mut f: impl FnMut(V, Option<&R>) -> U + 'static,
    ) -> Stream<K, U>
    where
        K2: Clone + 'static,
        R: Clone + Serialize + DeserializeOwned + 'static,
        U: Clone + 'static,
    {
        self.try_join_asof(right, spec, move |v, r| Ok::<U, Infallible>(f(v, r)))
    }

    /// Like [`join_asof`](Self::join_asof) for a merge that can fail; a failure follows the
    /// error policy.
    pub fn try_join_asof<K2, R, U, E>(
        &self,
        right: &Stream<K2, R>,
        spec: AsOf,
        f: impl FnMut(V, Option<&R>) -> Result<U, E> + 'static,
    ) -> Stream<K, U>
    where
        K2: Clone + 'static,
        R: Clone + Serialize + DeserializeOwned + 'static,
        U: Clone + 'static,
        E: Display + 'static,
    {
        let make = |id, downstream| AsOfOperator {
            id,
            spec,
            merge: f,
            partitions: HashMap::new(),
            downstream,
            _left: std::marker::PhantomData,
        };
        let on_left = |op: &mut AsOfOperator<K, V, R, U, _>, ctx: &mut Ctx<'_>, m| op.left(ctx, m);
        let on_right = |op: &mut AsOfOperator<K, V, R, U, _>, ctx: &mut Ctx<'_>, ts, value| {
            op.right(ctx, ts, value)
        };
        super::two_sided(self, right, "join_asof", make, on_left, on_right)
    }
}

impl<K: Clone + 'static> Stream<K, Value> {
    /// [`join_asof`](Self::join_asof) of JSON objects, merged by [`merge_json`].
    pub fn join_asof_merged<K2: Clone + 'static>(
        &self,
        right: &Stream<K2, Value>,
        spec: AsOf,
        on_merge: OnMerge,
    ) -> Stream<K, Value> {
        self.try_join_asof(right, spec, move |v, r| merge_json(v, r, on_merge))
    }
}
