//! What an application's dataframes are built into: typed topics ([`StreamTopic`]), the sources
//! (one per input topic: decode, stamp, push into the dataframe), the output buffers, and the
//! context a record is processed in.
//!
//! Invariants: one source per topic; the dataframe of a source runs on one thread; a stateful
//! dataframe has exactly one store per partition, named after its source topic, whose changelog is
//! `<group>-<topic>-changelog`. Sources linked by a join or a merge form one task per partition
//! (see [`Registry::task_inputs`]): their records are processed together, in timestamp order,
//! with the store of the first (the primary) topic.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::rc::Rc;

use super::catalog::{TopicCatalog, TopicInfo};
use super::dataframe::{emit, Edges, Stream};
use super::error::StepError;
use super::format::Format;
use super::message::Message;
use super::sink::Outputs;
use crate::log::{Header, RecordView};
use crate::state::Store;

/// What happens to a record that fails: its key or value does not decode, or a user function
/// returns an error or panics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Stop the application with an error naming topic, partition, offset and cause. The record's
    /// offset is not committed, so a restart meets it again.
    Fail,
    /// Count it in the metrics and go on.
    Skip,
    /// Append the original record to this topic with the error in the `eddy.error` header (and
    /// `eddy.error.kind`, `eddy.source.topic`, `eddy.source.partition`, `eddy.source.offset`),
    /// count it and go on.
    DeadLetter(String),
}

/// Extracts a record's event time (ms) from its decoded value and the log record.
pub type TimestampExtractor<V> = Rc<dyn Fn(&V, &RecordView<'_>) -> i64>;

/// A topic with the formats of its keys and values (`KF`, `VF`), an optional event-time extractor
/// and an optional error policy for records read from it. Made by `Application::topic`.
pub struct StreamTopic<KF: Format, VF: Format> {
    pub(crate) topic: TopicInfo,
    pub(crate) extractor: Option<TimestampExtractor<VF::Value>>,
    pub(crate) policy: Option<ErrorPolicy>,
    _formats: PhantomData<fn() -> (KF, VF)>,
}

impl<KF: Format, VF: Format> Clone for StreamTopic<KF, VF> {
    fn clone(&self) -> Self {
        StreamTopic {
            topic: self.topic.clone(),
            extractor: self.extractor.clone(),
            policy: self.policy.clone(),
            _formats: PhantomData,
        }
    }
}

impl<KF: Format, VF: Format> StreamTopic<KF, VF> {
    pub(crate) fn new(topic: TopicInfo) -> Self {
        StreamTopic {
            topic,
            extractor: None,
            policy: None,
            _formats: PhantomData,
        }
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.topic.name
    }

    /// The topic as the application's backend describes it.
    pub fn info(&self) -> &TopicInfo {
        &self.topic
    }

    /// Uses `f` for event time instead of the log record's timestamp.
    pub fn with_timestamp(
        mut self,
        f: impl Fn(&VF::Value, &RecordView<'_>) -> i64 + 'static,
    ) -> Self {
        self.extractor = Some(Rc::new(f));
        self
    }

    /// The error policy for records read from this topic (overrides the application's).
    pub fn on_error(mut self, policy: ErrorPolicy) -> Self {
        self.policy = Some(policy);
        self
    }
}

/// Where a record is processed: its origin, its partition's store, the output buffers.
pub(crate) struct Ctx<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub offset: u64,
    /// The record's key bytes as read (the namespace of its state).
    pub raw_key: &'a [u8],
    pub store: Option<&'a mut Store>,
    pub outputs: &'a mut Outputs,
    /// Late records dropped while processing (added to the metrics by the runtime).
    pub late_records: u64,
}

type SourceFn = Box<dyn FnMut(&mut Ctx<'_>, &RecordView<'_>) -> Result<(), StepError>>;

/// Called when a task reading a source starts: with the task's store, the partition, the
/// offset the task resumes this source from and how its records are read (a table read from
/// its own topic catches up there).
pub(crate) type StartHook = Box<
    dyn FnMut(
        &mut Store,
        u32,
        u64,
        crate::log::Isolation,
    ) -> Result<(), crate::stream::StreamError>,
>;

/// A step that keeps state of its own in memory (windows): the runtime lets it save that state
/// into the task's store before each checkpoint, and calls it regularly for wall-clock work.
pub(crate) trait Operator {
    /// Writes in-memory changes of `partition` into its store (before the store's checkpoint).
    fn flush(&mut self, partition: u32, store: &mut Store) -> Result<(), StepError>;

    /// Called on every turn of the loop for each task (for wall-clock work); may emit.
    fn tick(&mut self, ctx: &mut Ctx<'_>) -> Result<(), StepError>;

    /// Forgets what it holds in memory of `partition` (its task closed; flushed before when
    /// the task checkpointed).
    fn close(&mut self, partition: u32);
}

/// What the steps of one source's dataframe share with the runtime.
#[derive(Default)]
pub(crate) struct SourceShared {
    /// Some step keeps state: tasks of this source open a store.
    pub stateful: Cell<bool>,
    /// Steps with in-memory state, in the order they were added (their index is their id).
    pub operators: RefCell<Vec<Rc<RefCell<dyn Operator>>>>,
    /// The names of `operators`' state, by id: checked against the store at start.
    pub operator_names: RefCell<Vec<String>>,
}

/// One input topic of an application.
pub(crate) struct Source {
    pub run: SourceFn,
    pub shared: Rc<SourceShared>,
    pub policy: Option<ErrorPolicy>,
    pub topic: TopicInfo,
    pub on_start: Option<StartHook>,
    /// A local-only store key that gets this input's position at each checkpoint of the tasks
    /// it is an input of (a table that is its own changelog: how far its rows go).
    pub position_mirror: Option<Vec<u8>>,
    /// Called when a task this source is an input of closes, with the partition.
    pub on_close: Option<Box<dyn Fn(u32)>>,
    /// A table's source: it writes the rows of the tasks it is joined into.
    pub table: bool,
}

/// The input topics of the tasks of one primary topic: itself first, then the topics linked to
/// it by joins and merges.
pub(crate) type TaskInputs = BTreeMap<String, Vec<String>>;

/// Everything the dataframes of one application are built into.
pub(crate) struct Registry {
    pub catalog: Rc<dyn TopicCatalog>,
    pub group: String,
    pub sources: RefCell<BTreeMap<String, Source>>,
    pub outputs: RefCell<Outputs>,
    /// Problems found while building (reported by `run`).
    pub setup_errors: RefCell<Vec<String>>,
    /// `(primary, secondary)`: the secondary topic's records are processed in the primary's
    /// tasks (a join's right side, a merged dataframe).
    pub links: RefCell<Vec<(String, String)>>,
}

impl Registry {
    /// Makes `secondary`'s records part of `primary`'s tasks.
    pub fn link(&self, primary: &str, secondary: &str) {
        if primary != secondary {
            let pair = (primary.to_owned(), secondary.to_owned());
            let mut links = self.links.borrow_mut();
            if !links.contains(&pair) {
                links.push(pair);
            }
        }
    }

    /// The inputs of every task, by primary topic (a topic in no link is its own primary), after
    /// checking the links: each linked set has one primary (a topic that is nobody's secondary),
    /// secondaries keep no state of their own, and all topics of a set have as many partitions.
    pub fn task_inputs(&self) -> Result<TaskInputs, String> {
        let sources = self.sources.borrow();
        let links = self.links.borrow();
        let mut primary_of: BTreeMap<String, String> =
            sources.keys().map(|t| (t.clone(), t.clone())).collect();
        for (p, s) in links.iter() {
            if !sources.contains_key(p) || !sources.contains_key(s) {
                return Err(format!("{p} and {s} are joined but one has no dataframe"));
            }
        }
        // Follow links to the root: a secondary's primary is its linker's primary.
        for _ in 0..=links.len() {
            for (p, s) in links.iter() {
                let root = primary_of[p].clone();
                if root == *s {
                    return Err(format!("{p} and {s} are joined both ways round"));
                }
                primary_of.insert(s.clone(), root);
            }
        }
        for (p, s) in links.iter() {
            let (rp, rs) = (&primary_of[p], &primary_of[s]);
            if rp != rs {
                return Err(format!(
                    "topic {s} is joined into both {rp} and {rs}: a topic can be read by one \
                     primary's tasks only"
                ));
            }
        }
        let mut inputs: TaskInputs = BTreeMap::new();
        for (topic, root) in &primary_of {
            let entry = inputs
                .entry(root.clone())
                .or_insert_with(|| vec![root.clone()]);
            if topic == root {
                continue;
            }
            entry.push(topic.clone());
            let (source, primary) = (&sources[topic], &sources[root]);
            let stateful = source.shared.stateful.get() && !source.table;
            if stateful || !source.shared.operators.borrow().is_empty() {
                return Err(format!(
                    "topic {topic} is joined into {root}: its dataframe's steps must keep no \
                     state (they run in {root}'s tasks); aggregate it into a topic of its own first"
                ));
            }
            let (a, b) = (primary.topic.partitions, source.topic.partitions);
            if a != b {
                return Err(format!(
                    "topics {root} ({a} partitions) and {topic} ({b} partitions) are joined but \
                     not co-partitioned: give them as many partitions, or re-partition one with \
                     set_key (its repartition topic has as many partitions as its source)"
                ));
            }
        }
        Ok(inputs)
    }

    /// A dataframe over `topic`: registers its source.
    pub fn dataframe<KF: Format, VF: Format>(
        self: &Rc<Self>,
        topic: &StreamTopic<KF, VF>,
    ) -> Stream<KF::Value, VF::Value>
    where
        KF::Value: Clone,
        VF::Value: Clone,
    {
        let root: Edges<KF::Value, VF::Value> = Rc::new(RefCell::new(Vec::new()));
        let shared = Rc::new(SourceShared::default());
        let name = topic.name().to_owned();
        let mut sources = self.sources.borrow_mut();
        if sources.contains_key(&name) {
            self.setup_errors.borrow_mut().push(format!(
                "topic {name} has two dataframes; branch one dataframe instead"
            ));
        }
        let edges = root.clone();
        let extractor = topic.extractor.clone();
        let run: SourceFn = Box::new(move |ctx, r| {
            let Some(raw_value) = r.value else {
                return Ok(()); // tombstones carry no value to process
            };
            let key = match r.key {
                Some(k) => {
                    Some(KF::decode(k).map_err(|e| StepError::Deserialize(format!("key: {e}")))?)
                }
                None => None,
            };
            let value =
                VF::decode(raw_value).map_err(|e| StepError::Deserialize(format!("value: {e}")))?;
            let timestamp_ms = match &extractor {
                Some(f) => f(&value, r),
                None => r.timestamp,
            };
            let headers = r
                .headers()
                .map(|(k, v)| Header {
                    key: k.to_owned(),
                    value: v.map(<[u8]>::to_vec),
                })
                .collect();
            let message = Message {
                key,
                value,
                timestamp_ms,
                headers,
            };
            emit(&mut edges.borrow_mut(), ctx, message)
        });
        sources.insert(
            name,
            Source {
                run,
                shared: shared.clone(),
                policy: topic.policy.clone(),
                topic: topic.topic.clone(),
                on_start: None,
                position_mirror: None,
                on_close: None,
                table: false,
            },
        );
        Stream::new(root, shared, self.clone(), topic.topic.clone())
    }
}
