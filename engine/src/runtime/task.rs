//! A task: one input topic-partition owned by this application instance, with its position and,
//! for stateful dataframes, its store.
//!
//! Where a task starts (the decision that keeps state and input consistent after any crash):
//! - the group's committed offset was set by a reset (`eddy groups reset-offsets`) and differs from
//!   the offset the state reflects: the state is cleared (tombstones in the changelog, store
//!   emptied) and processing starts at the committed offset, as with Kafka Streams' reset tool;
//! - otherwise, when the store has a checkpoint: at the input offset that checkpoint recorded — it
//!   is never behind the committed offset of a checkpoint commit, and ahead of it only when the
//!   process died between the store's checkpoint and the group commit;
//! - otherwise: at the committed offset, or where `auto_offset_reset` says.

use crate::coordinator::{Completed, TransactionalProducer};
use crate::groups::{
    AutoOffsetReset, Consumer, GroupError, RESET_KEEP_STATE_METADATA, RESET_METADATA,
};
use crate::log::{CleanupPolicy, Durability, Log, TopicConfig};
use crate::state::{RestoreReport, StateEnv, Store};
use crate::stream::{StreamError, StreamResult};

/// Commit metadata of offsets committed by a checkpoint.
pub(crate) const CHECKPOINT_METADATA: &str = "eddy:checkpoint";

pub(crate) struct Task {
    /// Next input offset to process.
    pub position: u64,
    /// Offset last committed for this partition by this instance (or found at start).
    pub committed: Option<u64>,
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
pub(crate) fn changelog_name(group: &str, topic: &str) -> String {
    format!("{group}-{topic}-changelog")
}

/// Opens the task of `(topic, partition)`: restores its store when `stateful`, decides its start
/// (module docs) and seeks the consumer there.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_task(
    log: &Log,
    env: &StateEnv,
    consumer: &mut Consumer,
    group: &str,
    topic: &str,
    partition: u32,
    partitions: u32,
    stateful: bool,
    fsync: bool,
    reset: AutoOffsetReset,
    exactly_once: bool,
) -> StreamResult<TaskStart> {
    // First the previous instance's transaction is completed (its offsets with it), so that the
    // changelog holds no open transaction and the committed offset is the decided one.
    let producer = match exactly_once {
        true => {
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
        false => None,
    };
    let committed = consumer.committed_with_metadata(topic, partition)?;
    // Not the consumer's position: the poll that assigned the partition may have read past it.
    let mut position = match &committed {
        Some((c, _)) => *c,
        None => {
            let mut reader = log.topic(topic)?.reader(partition)?;
            match reset {
                AutoOffsetReset::Earliest => reader.log_start_offset()?,
                AutoOffsetReset::Latest => reader.end_offset(),
                AutoOffsetReset::Error => {
                    return Err(GroupError::NoCommittedOffset {
                        group: group.to_owned(),
                        topic: topic.to_owned(),
                        partition,
                    }
                    .into())
                }
            }
        }
    };
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
        let changelog = log.topic_or_create(&name, config)?;
        if changelog.partitions() != partitions {
            return Err(StreamError::Setup(format!(
                "changelog {name} has {} partitions but {topic} has {partitions}",
                changelog.partitions()
            )));
        }
        let writer = changelog.writer(partition)?;
        // Lent between appends, so that the task's next owner can take the changelog over
        // while this instance is stopped (and fence it).
        writer.share();
        let dir = env.store_dir(group, topic, partition);
        let (mut s, report) = Store::open(env, dir, changelog, writer, fsync)?;
        if let Some(p) = &producer {
            s.set_producer(p.identity());
        }
        match (&committed, s.input_offset()) {
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
        restore = Some(report);
        store = Some(s);
    }
    consumer.seek(topic, partition, position)?;
    Ok(TaskStart {
        task: Task {
            position,
            committed: committed.map(|(c, _)| c),
            store,
            producer,
        },
        restore,
        state_reset,
    })
}
