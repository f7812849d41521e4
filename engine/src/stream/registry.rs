//! What an application's dataframes are built into: typed topics ([`StreamTopic`]), the sources
//! (one per input topic: decode, stamp, push into the dataframe), the output buffers, and the
//! context a record is processed in.
//!
//! Invariants: one source per topic; the dataframe of a source runs on one thread; a stateful
//! dataframe has exactly one store per partition, named after its source topic, whose changelog is
//! `<group>-<topic>-changelog`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::rc::Rc;

use super::dataframe::{emit, Edges, Stream};
use super::error::StepError;
use super::format::Format;
use super::message::Message;
use super::sink::Outputs;
use crate::log::{Header, Log, RecordView, Topic};
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
    pub(crate) topic: Topic,
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
    pub(crate) fn new(topic: Topic) -> Self {
        StreamTopic {
            topic,
            extractor: None,
            policy: None,
            _formats: PhantomData,
        }
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        self.topic.name()
    }

    /// The log topic underneath.
    pub fn log_topic(&self) -> &Topic {
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

/// A step that keeps state of its own in memory (windows): the runtime lets it save that state
/// into the task's store before each checkpoint, and calls it regularly for wall-clock work.
pub(crate) trait Operator {
    /// Writes in-memory changes of `partition` into its store (before the store's checkpoint).
    fn flush(&mut self, partition: u32, store: &mut Store) -> Result<(), StepError>;

    /// Called on every turn of the loop for each task (for wall-clock work); may emit.
    fn tick(&mut self, ctx: &mut Ctx<'_>) -> Result<(), StepError>;
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
    pub topic: Topic,
}

/// Everything the dataframes of one application are built into.
pub(crate) struct Registry {
    pub log: Log,
    pub group: String,
    pub sources: RefCell<BTreeMap<String, Source>>,
    pub outputs: RefCell<Outputs>,
    /// Problems found while building (reported by `run`).
    pub setup_errors: RefCell<Vec<String>>,
}

impl Registry {
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
            },
        );
        Stream::new(root, shared, self.clone(), topic.topic.clone())
    }
}
