//! The time-window operator: hands each record to its windows ([`super::shapes`]), closes
//! windows on stream time (or after a wall-clock idle period), emits results and deals with late
//! records.
//!
//! Invariants:
//! - Open windows of a partition live in memory ([`PartitionWindows`]), loaded from the
//!   partition's store when the operator first meets that store (by its epoch), and are written
//!   back to it before every checkpoint — so a restart resumes with exactly the windows, buffered
//!   records, stream time and late-record decisions of the run that checkpointed.
//! - Windows close in order of their end, after the record that moved stream time past them:
//!   closing by key, the key's own stream time and only its windows; closing by partition, the
//!   partition's and every key's windows.

use std::time::{Duration, Instant};

use hashbrown::HashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::aggregate::Aggregator;
use super::key_state::Open;
use super::partition::{PartitionWindows, ValueCodec};
use super::shapes::{Assigned, TimeWindows};
use super::state::{loaded_from, result_message, state_for};
use super::{Closing, Emit, WindowResult};
use crate::state::Store;
use crate::stream::dataframe::{emit, Edges};
use crate::stream::registry::{Ctx, Operator};
use crate::stream::{Message, StepError};

/// What becomes of late records besides being dropped and counted.
pub(crate) type LateHandler<K, V> =
    Box<dyn FnMut(&mut Ctx<'_>, &Message<K, V>, i64, i64) -> Result<(), StepError>>;

/// How a time-window operator is set up.
pub(crate) struct Plan<V> {
    pub windows: TimeWindows,
    /// How buffered records are saved (needed by windows that buffer records).
    pub codec: Option<ValueCodec<V>>,
    pub emit: Emit,
    pub closing: Closing,
    pub idle_close: Option<Duration>,
}

pub(crate) struct WindowOperator<K, V, G: Aggregator<V>> {
    id: u16,
    plan: Plan<V>,
    aggregator: G,
    late: Vec<LateHandler<K, V>>,
    partitions: HashMap<u32, PartitionWindows<K, G::Acc, V>>,
    downstream: Edges<K, WindowResult<G::Out>>,
    /// Per-record scratch, kept so that the hot path does not allocate it again for each record.
    assigned: Assigned,
    closed: Vec<Open<K, G::Acc>>,
    results: Vec<Message<K, WindowResult<G::Out>>>,
}

impl<K, V, G> WindowOperator<K, V, G>
where
    K: Clone + Serialize + DeserializeOwned + 'static,
    V: Clone + 'static,
    G: Aggregator<V>,
{
    pub fn new(
        id: u16,
        plan: Plan<V>,
        aggregator: G,
        late: Vec<LateHandler<K, V>>,
        downstream: Edges<K, WindowResult<G::Out>>,
    ) -> Self {
        debug_assert!(plan.codec.is_some() || !plan.windows.buffers_records());
        WindowOperator {
            id,
            plan,
            aggregator,
            late,
            partitions: HashMap::new(),
            downstream,
            assigned: Assigned::default(),
            closed: Vec::new(),
            results: Vec::new(),
        }
    }

    /// Folds one message into its windows, then closes what its time closes.
    pub fn process(&mut self, ctx: &mut Ctx<'_>, m: Message<K, V>) -> Result<(), StepError> {
        let Some(store) = ctx.store.as_deref() else {
            return Err(StepError::Function("no state store is open".into()));
        };
        let (id, codec, windows) = (self.id, self.plan.codec, self.plan.windows);
        let by_key = self.plan.closing == Closing::Key;
        let p = state_for(&mut self.partitions, ctx.partition, store, |s| {
            PartitionWindows::load(id, s, codec, windows.record_span(), by_key)
        })?;
        let clock = p.admit(store, ctx.raw_key)?;
        let order = p.order;
        p.order += 1;
        let assigned = &mut self.assigned;
        let aggregator = &mut self.aggregator;
        windows.assign(p, aggregator, ctx.raw_key, &m, order, clock, assigned);
        let limit = p.observe(ctx.raw_key, m.timestamp_ms, Instant::now());
        let mut results = std::mem::take(&mut self.results);
        if self.plan.emit == Emit::Current {
            let open = p.key(ctx.raw_key).map(|kw| &kw.windows[..]);
            for w in open.unwrap_or_default() {
                if assigned.updated.contains(&w.start) {
                    results.push(result(&windows, &self.aggregator, w));
                }
            }
        }
        let linger = windows.linger();
        let due = |end: i64| end.saturating_add(linger) <= limit;
        let key = by_key.then_some(ctx.raw_key);
        self.close(ctx.partition, key, due, &mut results);
        if let Some((start, end)) = self.assigned.late {
            let end = windows.reported_end(end);
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
        let outcome = self.emit_all(ctx, &mut results);
        self.results = results;
        outcome
    }

    /// Sends `results` downstream, leaving the vector empty.
    fn emit_all(
        &self,
        ctx: &mut Ctx<'_>,
        results: &mut Vec<Message<K, WindowResult<G::Out>>>,
    ) -> Result<(), StepError> {
        let mut downstream = self.downstream.borrow_mut();
        for r in results.drain(..) {
            emit(&mut downstream, ctx, r)?;
        }
        Ok(())
    }

    /// Closes the windows whose end satisfies `due` (smallest end first) — those of record key
    /// `key`, or of the whole partition — and drops buffered records that expired; with final
    /// emission the results go to `results`.
    fn close(
        &mut self,
        partition: u32,
        key: Option<&[u8]>,
        due: impl Fn(i64) -> bool,
        results: &mut Vec<Message<K, WindowResult<G::Out>>>,
    ) {
        let Some(p) = self.partitions.get_mut(&partition) else {
            return;
        };
        let drop_records = self.plan.windows.records_close_with_windows();
        match key {
            Some(raw) => p.close_key_due(raw, &due, drop_records, &mut self.closed),
            None => {
                p.close_due(&due, drop_records, &mut self.closed);
                p.expire_records(&due);
            }
        }
        self.take_closed(results);
    }

    /// Empties the list of closed windows, into `results` with final emission.
    fn take_closed(&mut self, results: &mut Vec<Message<K, WindowResult<G::Out>>>) {
        let closed = self.closed.drain(..);
        if self.plan.emit == Emit::Final {
            let (windows, agg) = (&self.plan.windows, &self.aggregator);
            results.extend(closed.map(|w| {
                let mut r = result_message(w.key, w.start, w.end, agg.result(&w.acc));
                r.value.end = windows.reported_end(w.end);
                r
            }));
        }
    }
}

/// The result of open window `w`: timestamp `end − 1`, the end its kind reports.
fn result<K: Clone, V, G: Aggregator<V>>(
    windows: &TimeWindows,
    agg: &G,
    w: &Open<K, G::Acc>,
) -> Message<K, WindowResult<G::Out>> {
    let mut r = result_message(w.key.clone(), w.start, w.end, agg.result(&w.acc));
    r.value.end = windows.reported_end(w.end);
    r
}

impl<K, V, G> Operator for WindowOperator<K, V, G>
where
    K: Clone + Serialize + DeserializeOwned + 'static,
    V: Clone + 'static,
    G: Aggregator<V>,
{
    fn flush(&mut self, partition: u32, store: &mut Store) -> Result<(), StepError> {
        match loaded_from(&mut self.partitions, partition, store) {
            Some(p) => p.flush(store, self.plan.codec),
            None => Ok(()),
        }
    }

    fn close(&mut self, partition: u32) {
        self.partitions.remove(&partition);
    }

    fn tick(&mut self, ctx: &mut Ctx<'_>) -> Result<(), StepError> {
        let (Some(idle), Some(store)) = (self.plan.idle_close, ctx.store.as_deref()) else {
            return Ok(());
        };
        let partition = ctx.partition;
        let Some(p) = loaded_from(&mut self.partitions, partition, store) else {
            return Ok(());
        };
        let linger = self.plan.windows.linger();
        let mut results = Vec::new();
        match self.plan.closing {
            Closing::Key => {
                // Keys are looked over every quarter of the idle period, not at every tick.
                let now = Instant::now();
                if !p.has_open() || now < p.next_idle_scan {
                    return Ok(());
                }
                p.next_idle_scan = now + idle / 4;
                let drop_records = self.plan.windows.records_close_with_windows();
                for raw in p.idle_keys(idle, now) {
                    p.close_idle_key(&raw, linger, drop_records, &mut self.closed);
                }
                self.take_closed(&mut results);
            }
            Closing::Partition => {
                if !p.has_open() || p.last_record.elapsed() < idle {
                    return Ok(());
                }
                // Everything open closes; stream time moves past it so that stragglers count as
                // late.
                if let Some(last) = p.last_end() {
                    p.stream_time = p.stream_time.max(last.saturating_add(linger));
                }
                let limit = p.stream_time;
                let due = |end: i64| end.saturating_add(linger) <= limit;
                self.close(partition, None, due, &mut results);
            }
        }
        self.emit_all(ctx, &mut results)
    }
}
