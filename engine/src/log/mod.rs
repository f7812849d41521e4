//! The append-only segmented log: topics of partitions, partitions of segments, record batches in
//! Kafka's v2 layout, sparse offset and time indexes, crash recovery, retention and compaction.
//! It knows nothing about streams. The on-disk format is described in `docs/log-format.md`.

pub(crate) mod batch;
mod compaction;
mod config;
mod error;
pub(crate) mod index;
mod lease;
mod partitioner;
mod reader;
pub(crate) mod record;
mod segment;
pub(crate) mod tail;
mod topic;
pub(crate) mod transactions;
mod varint;
mod writer;

pub use batch::ProducerIdentity;
pub use compaction::CompactionStats;
pub use config::{CleanupPolicy, Durability, TopicConfig, SETTING_NAMES};
pub use error::{LogError, LogResult};
pub use partitioner::{murmur2, partition_for_key};
pub use reader::{Fetch, Isolation, PartitionReader};
pub use record::{Header, Record, RecordView};
pub use segment::RecoveryReport;
pub(crate) use segment::{create_dirs_durably, sync_dir};
pub use topic::{validate_name, Log, PartitionInfo, Topic, DATA_DIR_FORMAT, TOPIC_FORMAT};
pub(crate) use writer::now_ms;
pub use writer::{Appended, PartitionWriter, WriterCore};
