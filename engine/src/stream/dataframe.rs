//! [`Stream`]: the dataframe-like builder. Each operation adds a step to the step list of the
//! stream it is called on and returns the stream of its results; at run time the source pushes
//! every record through the steps, depth first, on one thread.
//!
//! A stream may be branched by cloning it: every branch receives every message (the message is
//! cloned for all branches but the last). Steps never reorder messages of a partition.

use std::cell::RefCell;
use std::fmt::Debug;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::catalog::TopicInfo;
use super::error::StepError;
use super::format::{Format, Json};
use super::message::Message;
use super::registry::{Ctx, Operator, Registry, SourceShared, StreamTopic};
use crate::log::{Record, TopicConfig};
use crate::state::{State, StateFailure};

pub(crate) type Step<K, V> = Box<dyn FnMut(&mut Ctx<'_>, Message<K, V>) -> Result<(), StepError>>;
pub(crate) type Edges<K, V> = Rc<RefCell<Vec<Step<K, V>>>>;

/// Passes `message` to every step in `steps`.
pub(crate) fn emit<K: Clone, V: Clone>(
    steps: &mut [Step<K, V>],
    ctx: &mut Ctx<'_>,
    message: Message<K, V>,
) -> Result<(), StepError> {
    match steps.split_last_mut() {
        None => Ok(()),
        Some((last, rest)) => {
            for step in rest {
                step(ctx, message.clone())?;
            }
            last(ctx, message)
        }
    }
}

/// A stream of messages with keys `K` and values `V`, built from a topic with
/// `Application::dataframe` and transformed step by step.
pub struct Stream<K, V> {
    pub(super) edges: Edges<K, V>,
    pub(super) shared: Rc<SourceShared>,
    pub(super) registry: Rc<Registry>,
    pub(super) source: TopicInfo,
}

impl<K, V> Clone for Stream<K, V> {
    fn clone(&self) -> Self {
        Stream {
            edges: self.edges.clone(),
            shared: self.shared.clone(),
            registry: self.registry.clone(),
            source: self.source.clone(),
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> Stream<K, V> {
    pub(crate) fn new(
        edges: Edges<K, V>,
        shared: Rc<SourceShared>,
        registry: Rc<Registry>,
        source: TopicInfo,
    ) -> Self {
        Stream {
            edges,
            shared,
            registry,
            source,
        }
    }

    /// The registry this stream is built into.
    pub(crate) fn registry(&self) -> &Rc<Registry> {
        &self.registry
    }

    /// Adds a stateful step backed by an operator with in-memory state: `make(operator id,
    /// downstream steps)` builds it, the runtime flushes and ticks it, and `process` feeds it.
    /// `name` identifies its state (a repeat on this dataframe gets `#2`, `#3`...).
    pub(crate) fn with_operator<K2, V2, O>(
        &self,
        name: String,
        make: impl FnOnce(u16, Edges<K2, V2>) -> O,
        process: impl FnMut(&mut O, &mut Ctx<'_>, Message<K, V>) -> Result<(), StepError> + 'static,
    ) -> Stream<K2, V2>
    where
        K2: Clone + 'static,
        V2: Clone + 'static,
        O: Operator + 'static,
    {
        self.with_shared_operator(name, make, process).0
    }

    /// [`with_operator`](Self::with_operator), also returning the operator (for a join's other
    /// side to feed).
    pub(crate) fn with_shared_operator<K2, V2, O>(
        &self,
        name: String,
        make: impl FnOnce(u16, Edges<K2, V2>) -> O,
        mut process: impl FnMut(&mut O, &mut Ctx<'_>, Message<K, V>) -> Result<(), StepError> + 'static,
    ) -> (Stream<K2, V2>, Rc<RefCell<O>>)
    where
        K2: Clone + 'static,
        V2: Clone + 'static,
        O: Operator + 'static,
    {
        self.shared.stateful.set(true);
        let next: Edges<K2, V2> = Rc::new(RefCell::new(Vec::new()));
        let id = self.shared.operators.borrow().len() as u16;
        let op = Rc::new(RefCell::new(make(id, next.clone())));
        self.shared.operators.borrow_mut().push(op.clone());
        let mut names = self.shared.operator_names.borrow_mut();
        let repeats = names
            .iter()
            .filter(|n| n.split('#').next() == Some(name.as_str()))
            .count();
        names.push(match repeats {
            0 => name,
            n => format!("{name}#{}", n + 1),
        });
        drop(names);
        let fed = op.clone();
        self.edges.borrow_mut().push(Box::new(move |ctx, m| {
            process(&mut fed.borrow_mut(), ctx, m)
        }));
        let stream = Stream::new(
            next,
            self.shared.clone(),
            self.registry.clone(),
            self.source.clone(),
        );
        (stream, op)
    }

    /// Adds a step that receives each message and may emit any number of messages downstream.
    pub(super) fn then<K2: Clone + 'static, V2: Clone + 'static>(
        &self,
        mut step: impl FnMut(&mut Ctx<'_>, Message<K, V>, &mut [Step<K2, V2>]) -> Result<(), StepError>
            + 'static,
    ) -> Stream<K2, V2> {
        let next: Edges<K2, V2> = Rc::new(RefCell::new(Vec::new()));
        let downstream = next.clone();
        self.edges.borrow_mut().push(Box::new(move |ctx, message| {
            step(ctx, message, &mut downstream.borrow_mut())
        }));
        Stream::new(
            next,
            self.shared.clone(),
            self.registry.clone(),
            self.source.clone(),
        )
    }

    /// Replaces each value by `f(value)`.
    pub fn map<U: Clone + 'static>(&self, mut f: impl FnMut(V) -> U + 'static) -> Stream<K, U> {
        self.then(move |ctx, m, out| {
            let value = f(m.value);
            emit(
                out,
                ctx,
                with_value(m.key, value, m.timestamp_ms, m.headers),
            )
        })
    }

    /// Like [`map`](Self::map) for a function that can fail; an error follows the error policy.
    pub fn try_map<U: Clone + 'static, E: std::fmt::Display>(
        &self,
        mut f: impl FnMut(V) -> Result<U, E> + 'static,
    ) -> Stream<K, U> {
        self.then(move |ctx, m, out| {
            let value = f(m.value).map_err(|e| StepError::Function(e.to_string()))?;
            emit(
                out,
                ctx,
                with_value(m.key, value, m.timestamp_ms, m.headers),
            )
        })
    }

    /// Calls `f` with each value and passes the message on unchanged (logging, side effects).
    pub fn update(&self, mut f: impl FnMut(&V) + 'static) -> Stream<K, V> {
        self.then(move |ctx, m, out| {
            f(&m.value);
            emit(out, ctx, m)
        })
    }

    /// Keeps the messages whose value satisfies `f`.
    pub fn filter(&self, mut f: impl FnMut(&V) -> bool + 'static) -> Stream<K, V> {
        self.then(move |ctx, m, out| {
            if f(&m.value) {
                emit(out, ctx, m)
            } else {
                Ok(())
            }
        })
    }

    /// Replaces each value by the values `f` returns (none, one or many), with the same key,
    /// timestamp and headers.
    pub fn flat_map<U: Clone + 'static, I: IntoIterator<Item = U>>(
        &self,
        mut f: impl FnMut(V) -> I + 'static,
    ) -> Stream<K, U> {
        self.then(move |ctx, m, out| {
            for value in f(m.value) {
                let next = with_value(m.key.clone(), value, m.timestamp_ms, m.headers.clone());
                emit(out, ctx, next)?;
            }
            Ok(())
        })
    }

    /// Gives `f` the whole message to read or change: key, value, timestamp, headers. Changing the
    /// key here does not move the message to another partition (see [`set_key`](Self::set_key)).
    pub fn map_message(&self, mut f: impl FnMut(&mut Message<K, V>) + 'static) -> Stream<K, V> {
        self.then(move |ctx, mut m, out| {
            f(&mut m);
            emit(out, ctx, m)
        })
    }

    /// Sets each message's timestamp to `f(value, current timestamp)`.
    pub fn set_timestamp(&self, mut f: impl FnMut(&V, i64) -> i64 + 'static) -> Stream<K, V> {
        self.then(move |ctx, mut m, out| {
            m.timestamp_ms = f(&m.value, m.timestamp_ms);
            emit(out, ctx, m)
        })
    }

    /// Replaces each value by `f(value, state)`, where `state` is the [`State`] of the message's
    /// key (the key as read from the source topic). Makes the dataframe stateful.
    pub fn stateful_map<U: Clone + 'static>(
        &self,
        mut f: impl FnMut(V, &mut State<'_>) -> U + 'static,
    ) -> Stream<K, U> {
        self.try_stateful_map(move |v, s| Ok::<U, std::convert::Infallible>(f(v, s)))
    }

    /// Like [`stateful_map`](Self::stateful_map) for a function that can fail.
    pub fn try_stateful_map<U: Clone + 'static, E: std::fmt::Display>(
        &self,
        mut f: impl FnMut(V, &mut State<'_>) -> Result<U, E> + 'static,
    ) -> Stream<K, U> {
        self.shared.stateful.set(true);
        self.then(move |ctx, m, out| {
            let mut state_error = None;
            let result = {
                let Some(store) = ctx.store.as_deref_mut() else {
                    return Err(StepError::Function("no state store is open".into()));
                };
                let mut state = State::new(store, ctx.raw_key, m.timestamp_ms, &mut state_error);
                f(m.value, &mut state)
            };
            match state_error {
                None => {}
                Some(StateFailure::Encode(e)) => return Err(StepError::Function(e)),
                Some(StateFailure::Stored(e)) => return Err(StepError::Fatal(e.into())),
            }
            let value = result.map_err(|e| StepError::Function(e.to_string()))?;
            emit(
                out,
                ctx,
                with_value(m.key, value, m.timestamp_ms, m.headers),
            )
        })
    }

    /// Appends each message to `topic` (key and value encoded with the topic's formats, timestamp
    /// and headers kept) and passes it on. Keyless messages go to the partition number they were
    /// read from, modulo the topic's partitions.
    pub fn to_topic<KF: Format<Value = K>, VF: Format<Value = V>>(
        &self,
        topic: &StreamTopic<KF, VF>,
    ) -> Stream<K, V> {
        let id = self.registry.outputs.borrow_mut().register(&topic.topic);
        self.then(move |ctx, m, out| {
            let record = encode_record::<KF, VF>(&m, ctx.outputs)?;
            ctx.outputs.send(id, ctx.partition, record);
            emit(out, ctx, m)
        })
    }

    /// One dataframe of the messages of this one and of `other` (Quix Streams' `concat`). From
    /// dataframes of different topics, their records are processed together, partition by
    /// partition, in timestamp order (see `docs/semantics.md`, "Several inputs"); the topics
    /// must be co-partitioned, and `other`'s steps before the merge must keep no state — what
    /// follows keeps its state per key across both, in this dataframe's store.
    pub fn concat(&self, other: &Stream<K, V>) -> Stream<K, V> {
        self.registry.link(&self.source.name, &other.source.name);
        let next: Edges<K, V> = Rc::new(RefCell::new(Vec::new()));
        for edges in [&self.edges, &other.edges] {
            let downstream = next.clone();
            edges.borrow_mut().push(Box::new(move |ctx, m| {
                emit(&mut downstream.borrow_mut(), ctx, m)
            }));
        }
        Stream::new(
            next,
            self.shared.clone(),
            self.registry.clone(),
            self.source.clone(),
        )
    }

    /// Prints each message to standard output.
    pub fn print(&self) -> Stream<K, V>
    where
        K: Debug,
        V: Debug,
    {
        self.then(move |ctx, m, out| {
            println!(
                "[{} {} @{}] key={:?} value={:?} ts={}",
                ctx.topic, ctx.partition, ctx.offset, m.key, m.value, m.timestamp_ms
            );
            emit(out, ctx, m)
        })
    }

    /// Gives each message the key `f(value)` and moves it to the partition of its new key, through
    /// the internal topic `<group>-<source>-repartition` (JSON, as many partitions as the source).
    /// What follows runs as a dataframe of that topic, with state per new key.
    pub fn set_key<K2>(&self, mut f: impl FnMut(&V) -> K2 + 'static) -> Stream<K2, V>
    where
        K2: Serialize + DeserializeOwned + Clone + 'static,
        V: Serialize + DeserializeOwned,
    {
        let name = format!("{}-{}-repartition", self.registry.group, self.source.name);
        let config = TopicConfig {
            partitions: self.source.partitions,
            ..TopicConfig::default()
        };
        let topic = match self.registry.catalog.topic_or_create(&name, config) {
            Ok(t) => StreamTopic::<Json<K2>, Json<V>>::new(t),
            Err(e) => {
                self.registry
                    .setup_errors
                    .borrow_mut()
                    .push(format!("repartition topic {name}: {e}"));
                return Stream::new(
                    Rc::new(RefCell::new(Vec::new())),
                    self.shared.clone(),
                    self.registry.clone(),
                    self.source.clone(),
                );
            }
        };
        let id = self.registry.outputs.borrow_mut().register(&topic.topic);
        self.then::<K, V>(move |ctx, m, _| {
            let keyed = Message {
                key: Some(f(&m.value)),
                value: m.value,
                timestamp_ms: m.timestamp_ms,
                headers: m.headers,
            };
            let record = encode_record::<Json<K2>, Json<V>>(&keyed, ctx.outputs)?;
            ctx.outputs.send(id, ctx.partition, record);
            Ok(())
        });
        self.registry.dataframe(&topic)
    }
}

fn with_value<K, U>(
    key: Option<K>,
    value: U,
    timestamp_ms: i64,
    headers: Vec<crate::log::Header>,
) -> Message<K, U> {
    Message {
        key,
        value,
        timestamp_ms,
        headers,
    }
}

/// Encodes a message as a log record with the formats of a topic, into buffers from `outputs`.
pub(crate) fn encode_record<KF: Format, VF: Format>(
    m: &Message<KF::Value, VF::Value>,
    outputs: &mut super::Outputs,
) -> Result<Record, StepError> {
    let key = match &m.key {
        Some(k) => {
            let mut bytes = outputs.buffer();
            KF::encode(k, &mut bytes).map_err(|e| StepError::Function(format!("key: {e}")))?;
            Some(bytes)
        }
        None => None,
    };
    let mut value = outputs.buffer();
    VF::encode(&m.value, &mut value).map_err(|e| StepError::Function(format!("value: {e}")))?;
    Ok(Record {
        key,
        value: Some(value),
        timestamp: Some(m.timestamp_ms),
        headers: m.headers.clone(),
    })
}
