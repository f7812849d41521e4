//! A task: one partition of its input topics (one, or several linked by joins and merges; see
//! [`super::inputs`]) owned by this application instance, with their positions and, for
//! stateful dataframes, its store.
//!
//! Where a task starts (the decision that keeps state and input consistent after any crash):
//! - the group's committed offset was set by a reset (`eddy groups reset-offsets`) and differs from
//!   the offset the state reflects, or the changelog ends in a reset record (written by a reset
//!   where the broker drops commit metadata): the state is cleared (tombstones in the changelog,
//!   store emptied) and processing starts at the reset offset, as with Kafka Streams' reset tool;
//! - otherwise, when the store has a checkpoint: at the input offset that checkpoint recorded — it
//!   is never behind the committed offset of a checkpoint commit, and ahead of it only when the
//!   process died between the store's checkpoint and the group commit;
//! - otherwise: at the committed offset, or where `auto_offset_reset` says.
//!
//! A task's secondary inputs start the same way, with the positions the store recorded for them
//! in place of the input offset; a reset of any input clears the state and starts every input
//! at its committed offset.

use crate::coordinator::{Completed, TransactionalProducer};
use crate::groups::{AutoOffsetReset, GroupError, RESET_KEEP_STATE_METADATA, RESET_METADATA};
use crate::log::{CleanupPolicy, Durability, TopicConfig};
use crate::state::{RestoreReport, StateEnv, Store};
use crate::stream::{StreamError, StreamResult};

use super::backend::{Backend, GroupSource};
use super::inputs::{position_key, Input};

impl Task {
    /// Next offset to process of the primary input.
    pub fn position(&self) -> u64 {
        self.inputs[0].position
    }

    /// Whether polled records wait in the merge of its inputs.
    pub fn holds_records(&self) -> bool {
        self.inputs.iter().any(|i| !i.is_empty())
    }

    /// Writes the positions of the secondary inputs into the store when they moved (before a
    /// checkpoint saves it).
    pub fn record_positions(&mut self) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        for input in self.inputs.iter_mut().skip(1) {
            if input.recorded != Some(input.position) {
                let position = input.position.to_be_bytes();
                store.put(&position_key(&input.topic), Some(position.to_vec()));
                if let Some(key) = &input.mirror_key {
                    store.put(key, Some(position.to_vec()));
                }
                input.recorded = Some(input.position);
            }
        }
    }

    /// The inputs whose position moved since they were last committed.
    pub fn moved(&self, partition: u32) -> Vec<(String, u32, u64)> {
        (self.inputs.iter())
            .filter(|i| i.committed != Some(i.position))
            .map(|i| (i.topic.clone(), partition, i.position))
            .collect()
    }

    /// Notes that every input's position was committed.
    pub fn mark_committed(&mut self) {
        for i in &mut self.inputs {
            i.committed = Some(i.position);
        }
    }
}

/// Commit metadata of offsets committed by a checkpoint.
pub(crate) const CHECKPOINT_METADATA: &str = "eddy:checkpoint";

pub(crate) struct Task {
    /// The inputs, the primary topic first.
    pub inputs: Vec<Input>,
    pub store: Option<Store>,
    /// Exactly-once: the task's transactional producer.
    pub producer: Option<TransactionalProducer>,
}

/// The transactional id of the task of `(topic, partition)` in `group`.
pub(crate) fn transactional_id(group: &str, topic: &str, partition: u32) -> String {
    format!("{group}.{topic}.{partition}")
}

/// What opening a task restored.
pub(crate) struct TaskStart {
    pub task: Task,
    pub restore: Option<RestoreReport>,
    pub state_reset: bool,
}

/// Name of the changelog topic of the store of `topic` in `group`.
pub fn changelog_name(group: &str, topic: &str) -> String {
    format!("{group}-{topic}-changelog")
}

/// Opens the task of `(topic, partition)`: restores its store when `stateful`, decides its start
/// (module docs) and seeks the consumer there.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_task(
    backend: &dyn Backend,
    env: &StateEnv,
    consumer: &mut dyn GroupSource,
    group: &str,
    topic: &str,
    secondaries: &[String],
    partition: u32,
    partitions: u32,
    stateful: bool,
    fsync: bool,
    reset: AutoOffsetReset,
    exactly_once: bool,
) -> StreamResult<TaskStart> {
    // First the previous instance's transaction is completed (its offsets with it), so that the
    // changelog holds no open transaction and the committed offset is the decided one.
    let producer = match (exactly_once, backend.local_log()) {
        (false, _) => None,
        (true, None) => return Err(super::backend::no_exactly_once(backend)),
        (true, Some(log)) => {
            let id = transactional_id(group, topic, partition);
            let (p, completed) = TransactionalProducer::start(log, &id)?;
            if completed != Completed::Nothing {
                tracing::info!(
                    topic,
                    partition,
                    ?completed,
                    "completed the transaction a previous instance of the task left"
                );
            }
            Some(p)
        }
    };
    let committed = consumer.committed_with_metadata(topic, partition)?;
    // Not the consumer's position: the poll that assigned the partition may have read past it.
    let start_of = |consumer: &mut dyn GroupSource,
                    topic: &str,
                    committed: &Option<(u64, String)>|
     -> StreamResult<u64> {
        if let Some((c, _)) = committed {
            return Ok(*c);
        }
        let (log_start, end) = consumer.offset_bounds(topic, partition)?;
        Ok(match reset {
            AutoOffsetReset::Earliest => log_start,
            AutoOffsetReset::Latest => end,
            AutoOffsetReset::Error => {
                return Err(GroupError::NoCommittedOffset {
                    group: group.to_owned(),
                    topic: topic.to_owned(),
                    partition,
                }
                .into())
            }
        })
    };
    let mut position = start_of(consumer, topic, &committed)?;
    let mut others = Vec::with_capacity(secondaries.len());
    for t in secondaries {
        let c = consumer.committed_with_metadata(t, partition)?;
        others.push((t.clone(), start_of(consumer, t, &c)?, c));
    }
    let mut restore = None;
    let mut state_reset = false;
    let mut store = None;
    if stateful {
        let name = changelog_name(group, topic);
        let config = TopicConfig {
            partitions,
            cleanup_policy: CleanupPolicy::Compact,
            durability: Durability::None,
            ..TopicConfig::default()
        };
        let changelog = backend.catalog().topic_or_create(&name, config)?;
        if changelog.partitions != partitions {
            return Err(StreamError::Setup(format!(
                "changelog {name} has {} partitions but {topic} has {partitions}",
                changelog.partitions
            )));
        }
        let identity = producer.as_ref().map(TransactionalProducer::identity);
        let changelog = backend.changelog(&changelog, partition, identity)?;
        let dir = env.store_dir(group, topic, partition);
        let (mut s, report) = Store::open(env, dir, changelog, fsync)?;
        let reset_in_changelog = report.reset_to;
        // Each secondary's position as the state recorded it.
        let mut stored = Vec::with_capacity(others.len());
        for (t, _, _) in &others {
            let key = position_key(t);
            let value = match s.input_offset() {
                Some(_) => s.get(&key)?.map(<[u8]>::to_vec),
                None => None,
            };
            stored.push(match value {
                None => None,
                Some(bytes) => Some(u64::from_be_bytes(
                    bytes
                        .try_into()
                        .map_err(|_| s.corrupt_entry(&key, "not a u64 position"))?,
                )),
            });
        }
        // A secondary input reset (as the primary below): the state goes, every input starts
        // at its committed offset.
        let secondary_reset = others.iter().zip(&stored).any(|((_, _, c), at)| {
            c.as_ref()
                .is_some_and(|(o, m)| m == RESET_METADATA && *at != Some(*o))
        });
        match (&committed, s.input_offset()) {
            // A reset recorded in the changelog (where commit metadata cannot hold it).
            _ if reset_in_changelog.is_some() => {
                let to = reset_in_changelog.unwrap_or(position);
                s.wipe(to)?;
                state_reset = true;
                position = to;
            }
            (_, Some(_)) if secondary_reset => {
                s.wipe(position)?;
                state_reset = true;
            }
            (_, None) if secondary_reset => {}
            (Some((c, meta)), state) if meta == RESET_METADATA && state != Some(*c) => {
                if state.is_some() {
                    s.wipe(*c)?;
                    state_reset = true;
                }
                position = *c;
            }
            (Some((c, meta)), state) if meta == RESET_KEEP_STATE_METADATA => {
                if state != Some(*c) {
                    tracing::warn!(topic, partition, state_input = ?state, resume_at = *c,
                        "offsets were reset keeping the state: resuming at the new offset with the state as it is");
                }
                position = *c;
            }
            (_, Some(state)) => position = state,
            _ => {}
        }
        if !state_reset && !secondary_reset {
            // Not reset: secondaries resume where the state says they were, unless their
            // offsets were reset keeping the state.
            for ((_, p, c), at) in others.iter_mut().zip(stored) {
                let keep_state = c
                    .as_ref()
                    .is_some_and(|(_, m)| m == RESET_KEEP_STATE_METADATA);
                if let (false, Some(at)) = (keep_state, at) {
                    *p = at;
                }
            }
        }
        restore = Some(report);
        store = Some(s);
    }
    consumer.seek(topic, partition, position)?;
    let mut inputs = vec![Input::new(
        topic.to_owned(),
        position,
        committed.map(|(c, _)| c),
    )];
    for (t, p, c) in others {
        consumer.seek(&t, partition, p)?;
        inputs.push(Input::new(t, p, c.map(|(c, _)| c)));
    }
    Ok(TaskStart {
        task: Task {
            inputs,
            store,
            producer,
        },
        restore,
        state_reset,
    })
}
