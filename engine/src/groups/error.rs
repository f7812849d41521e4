//! Errors of the consumer-group layer.

use std::path::PathBuf;

use crate::log::LogError;

/// Result alias for group operations.
pub type GroupResult<T> = Result<T, GroupError>;

/// What can go wrong with consumer groups.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// An error of the underlying log (I/O, names, offsets).
    #[error(transparent)]
    Log(#[from] LogError),
    /// The group does not exist (it has never had a member or a committed offset).
    #[error("consumer group {0:?} does not exist")]
    GroupNotFound(String),
    /// The operation needs a group with no live members.
    #[error(
        "consumer group {group:?} has {members} live member(s) ({list}); stop them first: \
         offsets can only be reset or the group deleted while it is inactive"
    )]
    GroupActive {
        /// Group name.
        group: String,
        /// Number of live members.
        members: usize,
        /// Their ids, comma-separated.
        list: String,
    },
    /// A partition has no committed offset and `auto_offset_reset` is `error`.
    #[error(
        "group {group:?} has no committed offset for topic {topic:?} partition {partition} \
         and auto_offset_reset is 'error'"
    )]
    NoCommittedOffset {
        /// Group name.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
    },
    /// The caller used a topic-partition this member does not own.
    #[error("topic {topic:?} partition {partition} is not assigned to this member")]
    NotAssigned {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
    },
    /// The member did not poll within `max_poll_interval`: it left the group without committing
    /// (its next poll rejoins); its partitions may now be others'.
    #[error(
        "member {member:?} of group {group:?} did not poll for {waited:?} (max_poll_interval \
         {limit:?}): it gave up partitions [{partitions}] without committing and left the group \
         (its next poll rejoins); records since its last commit will be delivered again"
    )]
    PollIntervalExceeded {
        /// Group name.
        group: String,
        /// The member.
        member: String,
        /// Time since its previous poll.
        waited: std::time::Duration,
        /// The limit.
        limit: std::time::Duration,
        /// The partitions it owned, `topic-partition`, comma-separated.
        partitions: String,
    },
    /// A reset option or argument was not valid.
    #[error("{0}")]
    InvalidRequest(String),
    /// A group file does not have the expected layout.
    #[error("corrupt group file {path} at byte {position}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte position.
        position: u64,
        /// What was wrong.
        reason: String,
    },
}

/// An I/O error on a group file, naming the operation and the path.
pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> GroupError {
    GroupError::Log(LogError::Io {
        op,
        path: path.to_owned(),
        source,
    })
}
