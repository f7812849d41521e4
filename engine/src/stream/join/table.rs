//! [`Table`]: the latest value of each key of a topic (a tombstone deletes the key),
//! materialized in the store of the tasks it is joined into, and the stream–table join
//! ([`Stream::join_table`]).
//!
//! Store layout, per table topic `name`:
//! - a topic whose cleanup policy is `compact` is its own changelog, as in Kafka Streams: rows
//!   are [`LOCAL_ONLY`] entries `LOCAL_ONLY, b't', len u16 BE, name, record key` → value bytes,
//!   never copied to the task's changelog, with `LOCAL_ONLY, b'p', len, name` → the offset
//!   after the last row applied (u64 BE; the runtime writes the topic's position there at each
//!   checkpoint, in the same batch as the rows). When a task starts and that offset is behind where
//!   the task resumes the topic (the store was restored from its changelog, which holds no
//!   rows, or lost its last writes), the rows in between are read again from the topic;
//! - any other topic (retention could delete rows the table still needs): rows are ordinary
//!   entries `b't', len, name, record key` → value bytes, logged like all state.
//!
//! Values are decoded when applied (an undecodable row follows the table topic's error policy
//! and leaves the key as it was; read again from the topic it is skipped) and kept decoded in
//! a bounded cache per partition, so that lookups do not decode again; a task that starts
//! fills that cache from its store in one scan.

use std::cell::RefCell;
use std::convert::Infallible;
use std::fmt::Display;
use std::rc::Rc;

use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;
use serde_json::Value;

use super::{merge_json, JoinHow, OnMerge};
use crate::log::{CleanupPolicy, Isolation};
use crate::state::{Store, LOCAL_ONLY};
use crate::stream::dataframe::emit;
use crate::stream::registry::{Registry, Source, SourceShared, StartHook};
use crate::stream::{Format, Message, StepError, Stream, StreamError, StreamTopic, TopicCatalog};

/// Decoded rows cached per partition; cleared when it reaches this many.
const CACHED_ROWS: usize = 1 << 18;
/// Records read per step when a table catches up from its topic.
const CATCH_UP_RECORDS: usize = 10_000;
const CATCH_UP_BYTES: usize = 4 << 20;

/// Decoded rows by record key (`None`: no row).
type Rows<R> = HashMap<Vec<u8>, Option<R>>;

/// Decoded rows of the partitions met so far, each tied to the store (by epoch) it mirrors.
struct Decoded<R> {
    partitions: HashMap<u32, (u64, Rows<R>)>,
}

impl<R> Decoded<R> {
    fn of(&mut self, partition: u32, epoch: u64) -> &mut Rows<R> {
        let (at, rows) = self.partitions.entry(partition).or_default();
        if *at != epoch {
            *at = epoch;
            rows.clear();
        }
        if rows.len() >= CACHED_ROWS {
            rows.clear();
        }
        rows
    }
}

/// The latest value per key of a topic, made by `Application::table`, for
/// [`Stream::join_table`]. `R` is the type of its values.
pub struct Table<R> {
    topic: String,
    rows: Vec<u8>,
    decode: fn(&[u8]) -> Result<R, String>,
    cache: Rc<RefCell<Decoded<R>>>,
}

impl<R> Clone for Table<R> {
    fn clone(&self) -> Self {
        Table {
            topic: self.topic.clone(),
            rows: self.rows.clone(),
            decode: self.decode,
            cache: self.cache.clone(),
        }
    }
}

impl<R> Table<R> {
    /// The topic the table is read from.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

fn named(first: &[u8], name: &str) -> Vec<u8> {
    let mut k = first.to_vec();
    k.extend_from_slice(&(name.len() as u16).to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

fn decode_with<VF: Format>(bytes: &[u8]) -> Result<VF::Value, String> {
    VF::decode(bytes).map_err(|e| e.to_string())
}

/// Registers the table of `topic`: its source applies each record to the rows of the task's
/// store, and, for a compacted topic, catches the rows up from the topic when a task starts.
pub(crate) fn register_table<KF: Format, VF: Format>(
    registry: &Rc<Registry>,
    topic: &StreamTopic<KF, VF>,
) -> Table<VF::Value>
where
    VF::Value: 'static,
{
    let name = topic.name().to_owned();
    let local = topic.topic.cleanup_policy == CleanupPolicy::Compact;
    let rows = match local {
        true => named(&[LOCAL_ONLY, b't'], &name),
        false => named(b"t", &name),
    };
    let applied_key = named(&[LOCAL_ONLY, b'p'], &name);
    let table = Table {
        topic: name.clone(),
        rows: rows.clone(),
        decode: decode_with::<VF>,
        cache: Rc::new(RefCell::new(Decoded {
            partitions: HashMap::new(),
        })),
    };
    let mut sources = registry.sources.borrow_mut();
    if sources.contains_key(&name) {
        registry.setup_errors.borrow_mut().push(format!(
            "topic {name} has a table and a dataframe, or two tables; use one of them"
        ));
    }
    let shared = Rc::new(SourceShared::default());
    shared.stateful.set(true);
    let cache = table.cache.clone();
    let mut key = rows.clone();
    let prefix_len = rows.len();
    let run = Box::new(
        move |ctx: &mut crate::stream::Ctx<'_>, r: &crate::log::RecordView<'_>| {
            let Some(raw) = r.key else {
                tracing::warn!(
                    topic = ctx.topic,
                    partition = ctx.partition,
                    offset = r.offset,
                    "table record without a key ignored"
                );
                return Ok(());
            };
            let Some(store) = ctx.store.as_deref_mut() else {
                return Err(StepError::Function("no state store is open".into()));
            };
            let decoded = match r.value {
                None => None,
                Some(v) => Some(
                    VF::decode(v)
                        .map_err(|e| StepError::Deserialize(format!("table value: {e}")))?,
                ),
            };
            key.truncate(prefix_len);
            key.extend_from_slice(raw);
            store.put(&key, r.value.map(<[u8]>::to_vec));
            let epoch = store.epoch();
            match cache.borrow_mut().of(ctx.partition, epoch).entry_ref(raw) {
                EntryRef::Occupied(mut o) => *o.get_mut() = decoded,
                EntryRef::Vacant(v) => {
                    v.insert(decoded);
                }
            }
            Ok(())
        },
    );
    let position_mirror = local.then(|| applied_key.clone());
    let source = RowSource {
        catalog: registry.catalog.clone(),
        topic: name.clone(),
        rows,
        applied_key,
    };
    let closing = table.cache.clone();
    let on_close: Box<dyn Fn(u32)> = Box::new(move |partition| {
        closing.borrow_mut().partitions.remove(&partition);
    });
    let cache = table.cache.clone();
    let on_start: StartHook = Box::new(move |store, partition, position, isolation| {
        if local {
            catch_up::<VF>(store, &source, partition, position, isolation)?;
        }
        warm::<VF>(store, partition, &source.rows, &mut cache.borrow_mut())
    });
    sources.insert(
        name,
        Source {
            run,
            shared,
            policy: topic.policy.clone(),
            topic: topic.topic.clone(),
            on_start: Some(on_start),
            position_mirror,
            on_close: Some(on_close),
            table: true,
        },
    );
    table
}

/// Fills the decoded rows of `partition` from its store (as many as the cache keeps), so that
/// a task's first lookups do not each read the store.
fn warm<VF: Format>(
    store: &mut Store,
    partition: u32,
    rows: &[u8],
    decoded: &mut Decoded<VF::Value>,
) -> Result<(), StreamError> {
    let cached = decoded.of(partition, store.epoch());
    cached.clear();
    for (key, value) in store.scan_prefix_up_to(rows, CACHED_ROWS - 1)? {
        // An undecodable row stays out: its lookup reports it.
        if let (Some(raw), Ok(row)) = (key.get(rows.len()..), VF::decode(&value)) {
            cached.insert(raw.to_vec(), Some(row));
        }
    }
    Ok(())
}

/// Where the rows of a table read from its own topic come from, and where they go.
struct RowSource {
    catalog: Rc<dyn TopicCatalog>,
    topic: String,
    /// Prefix of the rows' store keys.
    rows: Vec<u8>,
    /// Store key of the offset the rows go to.
    applied_key: Vec<u8>,
}

/// Brings the rows of a table read from its own topic up to `position` of that topic.
fn catch_up<VF: Format>(
    store: &mut Store,
    source: &RowSource,
    partition: u32,
    position: u64,
    isolation: Isolation,
) -> Result<(), StreamError> {
    let RowSource {
        catalog,
        topic,
        rows,
        applied_key,
    } = source;
    let applied = match store.get(applied_key)? {
        None => None,
        Some(b) => {
            Some(u64::from_be_bytes(b.try_into().map_err(|_| {
                store.corrupt_entry(applied_key, "not a u64 offset")
            })?))
        }
    };
    let from = match applied {
        Some(a) if a <= position => a,
        Some(a) => {
            // Rows past where the task resumes cannot be taken back one by one: read them all.
            tracing::warn!(
                topic,
                partition,
                applied = a,
                resume_at = position,
                "table rows are ahead of the task; reading the table again from its topic"
            );
            for (k, _) in store.scan_prefix(rows)? {
                store.put(&k, None);
            }
            0
        }
        None => 0,
    };
    if from >= position {
        return Ok(());
    }
    let mut reader = catalog.reader(topic, partition, isolation)?;
    let mut at = from.max(reader.bounds()?.0);
    let mut key = rows.to_vec();
    let mut applied_rows = 0u64;
    while at < position {
        let fetch = reader.read(at, CATCH_UP_RECORDS, CATCH_UP_BYTES)?;
        if fetch.is_empty() {
            break;
        }
        for r in fetch.iter().take_while(|r| r.offset < position) {
            let Some(raw) = r.key else { continue };
            if r.value.is_some_and(|v| VF::decode(v).is_err()) {
                continue; // skipped when it was first applied too (or it stopped the task)
            }
            key.truncate(rows.len());
            key.extend_from_slice(raw);
            store.put(&key, r.value.map(<[u8]>::to_vec));
            applied_rows += 1;
        }
        at = fetch.next_offset();
    }
    store.put(applied_key, Some(position.to_be_bytes().to_vec()));
    tracing::info!(
        topic,
        partition,
        from,
        to = position,
        rows = applied_rows,
        "table caught up from its topic"
    );
    Ok(())
}

impl<K: Clone + 'static, V: Clone + 'static> Stream<K, V> {
    /// Joins each message with the current row of its key in `table` (Kafka Streams'
    /// stream–table join, Quix Streams' lookup join): `f(value, row)` makes the new value;
    /// without a row, [`JoinHow::Inner`] drops the message and [`JoinHow::Left`] calls `f` with
    /// `None`. The table's records are applied in timestamp order with this dataframe's, a row
    /// before a message with the same timestamp.
    pub fn join_table<R: 'static, U: Clone + 'static>(
        &self,
        table: &Table<R>,
        how: JoinHow,
        mut f: impl FnMut(V, Option<&R>) -> U + 'static,
    ) -> Stream<K, U> {
        self.try_join_table(table, how, move |v, r| Ok::<U, Infallible>(f(v, r)))
    }

    /// Like [`join_table`](Self::join_table) for a merge that can fail; a failure follows the
    /// error policy.
    pub fn try_join_table<R: 'static, U: Clone + 'static, E: Display>(
        &self,
        table: &Table<R>,
        how: JoinHow,
        mut f: impl FnMut(V, Option<&R>) -> Result<U, E> + 'static,
    ) -> Stream<K, U> {
        self.registry.link(&self.source.name, &table.topic);
        self.shared.stateful.set(true);
        let cache = table.cache.clone();
        let decode = table.decode;
        let prefix_len = table.rows.len();
        let mut key = table.rows.clone();
        let name = table.topic.clone();
        self.then(
            move |ctx, m, out: &mut [crate::stream::dataframe::Step<K, U>]| {
                let Some(store) = ctx.store.as_deref_mut() else {
                    return Err(StepError::Function("no state store is open".into()));
                };
                let epoch = store.epoch();
                let mut cache = cache.borrow_mut();
                let rows = cache.of(ctx.partition, epoch);
                let row = match rows.entry_ref(ctx.raw_key) {
                    EntryRef::Occupied(o) => o.into_mut(),
                    EntryRef::Vacant(v) => {
                        key.truncate(prefix_len);
                        key.extend_from_slice(ctx.raw_key);
                        let stored = store.get(&key).map_err(|e| StepError::Fatal(e.into()))?;
                        let row = match stored {
                            None => None,
                            Some(bytes) => Some(decode(bytes).map_err(|e| {
                                StepError::Deserialize(format!("row of table {name}: {e}"))
                            })?),
                        };
                        v.insert(row)
                    }
                };
                let row = row.as_ref();
                if how == JoinHow::Inner && row.is_none() {
                    return Ok(());
                }
                let value = f(m.value, row).map_err(|e| StepError::Function(e.to_string()))?;
                drop(cache);
                let joined = Message {
                    key: m.key,
                    value,
                    timestamp_ms: m.timestamp_ms,
                    headers: m.headers,
                };
                emit(out, ctx, joined)
            },
        )
    }
}

impl<K: Clone + 'static> Stream<K, Value> {
    /// [`join_table`](Self::join_table) of JSON objects, merged by [`merge_json`].
    pub fn join_table_merged(
        &self,
        table: &Table<Value>,
        how: JoinHow,
        on_merge: OnMerge,
    ) -> Stream<K, Value> {
        self.try_join_table(table, how, move |v, r| merge_json(v, r, on_merge))
    }
}
