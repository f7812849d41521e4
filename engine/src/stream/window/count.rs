//! The count-window operator: windows of a fixed number of records per key, tumbling (a new window
//! every `size` records) or hopping (a new window every `step` records, each `size` long).
//!
//! Invariants:
//! - A key's n-th record (counting from 0 in its partition) opens a window when `n % step == 0`
//!   and goes into every open window of the key; a window closes with its `size`-th record.
//! - A result's `start` is the smallest event time of the window's records and `end` the largest,
//!   both included (Quix Streams' count windows). The stored window keeps `end` exclusive (largest
//!   time + 1, the layout stores have always had); results subtract the one.
//! - Per-key state (record count and open windows) lives in memory per partition, loaded from the
//!   store when the operator first meets that store (by epoch) and written back before every
//!   checkpoint under `b'w', op u16, b'C', record key` → JSON.

use hashbrown::HashMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::aggregate::Aggregator;
use super::state::{loaded_from, result_message, state_for, state_prefix, PartitionState};
use super::{Emit, WindowResult};
use crate::state::Store;
use crate::stream::dataframe::{emit, Edges};
use crate::stream::registry::{Ctx, Operator};
use crate::stream::{Message, StepError};
use crate::window_codec;

#[derive(Clone, Serialize, Deserialize)]
struct CountWindow<A> {
    start: i64,
    end: i64,
    records: u64,
    acc: A,
}

#[derive(Clone, Serialize, Deserialize)]
struct KeyWindows<K, A> {
    key: Option<K>,
    seen: u64,
    open: Vec<CountWindow<A>>,
}

struct PartitionCounts<K, A> {
    epoch: u64,
    order: u64,
    keys: HashMap<Vec<u8>, KeyWindows<K, A>>,
    dirty: Vec<Vec<u8>>,
}

impl<K, A> PartitionState for PartitionCounts<K, A> {
    fn epoch(&self) -> u64 {
        self.epoch
    }
}

pub(crate) struct CountOperator<K, V, G: Aggregator<V>> {
    id: u16,
    size: u64,
    step: u64,
    emit: Emit,
    aggregator: G,
    partitions: HashMap<u32, PartitionCounts<K, G::Acc>>,
    downstream: Edges<K, WindowResult<G::Out>>,
    _values: std::marker::PhantomData<fn(V)>,
}

impl<K, V, G> CountOperator<K, V, G>
where
    K: Clone + Serialize + DeserializeOwned + 'static,
    V: 'static,
    G: Aggregator<V>,
{
    pub fn new(
        id: u16,
        size: u64,
        step: u64,
        emit: Emit,
        aggregator: G,
        downstream: Edges<K, WindowResult<G::Out>>,
    ) -> Self {
        CountOperator {
            id,
            size: size.max(1),
            step: step.clamp(1, size.max(1)),
            emit,
            aggregator,
            partitions: HashMap::new(),
            downstream,
            _values: std::marker::PhantomData,
        }
    }

    fn load(id: u16, store: &Store) -> Result<PartitionCounts<K, G::Acc>, StepError> {
        let prefix = state_prefix(id, b'C');
        let mut keys = HashMap::new();
        let mut order: u64 = 0;
        for (k, v) in store
            .scan_prefix(&prefix)
            .map_err(|e| StepError::Fatal(e.into()))?
        {
            let corrupt = |e: String| {
                StepError::Fatal(store.corrupt_entry(&k, format!("count window: {e}")).into())
            };
            let raw = window_codec::entry_record_key(&k).map_err(corrupt)?;
            let entry: KeyWindows<K, G::Acc> = window_codec::decode(&v).map_err(corrupt)?;
            order = order.checked_add(entry.seen).ok_or_else(|| {
                corrupt(format!("{} records seen overflow the count", entry.seen))
            })?;
            keys.insert(raw.to_vec(), entry);
        }
        Ok(PartitionCounts {
            epoch: store.epoch(),
            order,
            keys,
            dirty: Vec::new(),
        })
    }

    /// Adds one message to its key's windows and emits what that completes (or updates).
    pub fn process(&mut self, ctx: &mut Ctx<'_>, m: Message<K, V>) -> Result<(), StepError> {
        let Some(store) = ctx.store.as_deref() else {
            return Err(StepError::Function("no state store is open".into()));
        };
        let (id, size, step) = (self.id, self.size, self.step);
        let emit_final = self.emit == Emit::Final;
        let p = state_for(&mut self.partitions, ctx.partition, store, |s| {
            Self::load(id, s)
        })?;
        let agg = &mut self.aggregator;
        let order = p.order;
        p.order += 1;
        let ts = m.timestamp_ms;
        let raw = ctx.raw_key;
        let entry = match p.keys.get_mut(raw) {
            Some(e) => e,
            None => p.keys.entry(raw.to_vec()).or_insert_with(|| KeyWindows {
                key: m.key.clone(),
                seen: 0,
                open: Vec::new(),
            }),
        };
        if entry.seen % step == 0 {
            entry.open.push(CountWindow {
                start: ts,
                end: ts.saturating_add(1),
                records: 0,
                acc: agg.init(&m.value, ts, order),
            });
        }
        let newest = entry.open.len().saturating_sub(1);
        let mut results = Vec::new();
        for (i, w) in entry.open.iter_mut().enumerate() {
            if !(i == newest && w.records == 0) {
                agg.add(&mut w.acc, &m.value, ts, order);
            }
            w.records += 1;
            w.start = w.start.min(ts);
            w.end = w.end.max(ts.saturating_add(1));
            if !emit_final || w.records == size {
                let last = w.end.saturating_sub(1);
                let mut result =
                    result_message(entry.key.clone(), w.start, last, agg.result(&w.acc));
                result.timestamp_ms = last;
                results.push(result);
            }
        }
        entry.open.retain(|w| w.records < size);
        entry.seen += 1;
        p.dirty.push(raw.to_vec());
        let mut downstream = self.downstream.borrow_mut();
        for r in results {
            emit(&mut downstream, ctx, r)?;
        }
        Ok(())
    }
}

impl<K, V, G> Operator for CountOperator<K, V, G>
where
    K: Clone + Serialize + DeserializeOwned + 'static,
    V: 'static,
    G: Aggregator<V>,
{
    fn flush(&mut self, partition: u32, store: &mut Store) -> Result<(), StepError> {
        let Some(p) = loaded_from(&mut self.partitions, partition, store) else {
            return Ok(());
        };
        let mut dirty = std::mem::take(&mut p.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for raw in dirty {
            let Some(entry) = p.keys.get(&raw) else {
                continue;
            };
            let value = serde_json::to_vec(entry)
                .map_err(|e| StepError::Function(format!("count window state: {e}")))?;
            store.put(&window_codec::keyed_entry(self.id, b'C', &raw), Some(value));
        }
        Ok(())
    }

    fn close(&mut self, partition: u32) {
        self.partitions.remove(&partition);
    }

    fn tick(&mut self, _: &mut Ctx<'_>) -> Result<(), StepError> {
        Ok(())
    }
}
