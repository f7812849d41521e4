//! Consumer groups: committed offsets per topic-partition (crash-atomic), membership and fair
//! partition ownership across threads and processes on one data directory, and administration
//! (describe, reset, delete). Uses the log's public API only.

mod admin;
mod consumer;
mod error;
mod membership;
pub(crate) mod offsets;

pub use admin::{
    parse_iso_duration, GroupDescription, Groups, PartitionLag, ResetRow, ResetScope, ResetTarget,
    RESET_KEEP_STATE_METADATA, RESET_METADATA,
};
pub use consumer::{AutoOffsetReset, Consumer, ConsumerConfig, PolledBatch};
pub use error::{GroupError, GroupResult};
pub use membership::MemberInfo;
pub use offsets::TopicPartition;

/// The directories of group `name` under `data_dir`, created when missing.
pub(crate) fn group_dir(
    data_dir: &std::path::Path,
    name: &str,
) -> GroupResult<membership::GroupDir> {
    membership::GroupDir::new(data_dir, name, true)
}
