//! Errors of the log layer. Every I/O error names the path it happened on; every corruption names the
//! file and byte position; every offset error names topic, partition and the valid range.

use std::io;
use std::path::PathBuf;

/// Result alias for log operations.
pub type LogResult<T> = Result<T, LogError>;

/// What can go wrong in the segmented log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An operating-system call failed on `path`.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "write", "fsync", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Bytes on disk do not form valid record batches.
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupt {
        /// The segment or index file.
        path: PathBuf,
        /// Byte position of the first bad batch or entry.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// A topic or group name breaks the naming rules.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// `create` was asked for a topic that exists.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// The topic does not exist in this data directory.
    #[error("topic {topic:?} does not exist in {}", dir.display())]
    TopicNotFound {
        /// Topic name.
        topic: String,
        /// The data directory searched.
        dir: PathBuf,
    },
    /// The partition number is outside the topic's partitions.
    #[error("topic {topic:?} has {partitions} partitions; partition {partition} does not exist")]
    PartitionNotFound {
        /// Topic name.
        topic: String,
        /// Requested partition.
        partition: u32,
        /// How many the topic has.
        partitions: u32,
    },
    /// Another process (or another handle in this one) holds the partition's append lock.
    #[error("topic {topic:?} partition {partition} is being appended to by another process (lock {path})")]
    Locked {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// The lock file.
        path: PathBuf,
    },
    /// A read asked for an offset the partition does not hold.
    #[error(
        "offset {offset} is out of range for topic {topic:?} partition {partition} \
         (log start {log_start}, end {end})"
    )]
    OffsetOutOfRange {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// Requested offset.
        offset: u64,
        /// First offset still stored.
        log_start: u64,
        /// Next offset to be written.
        end: u64,
    },
    /// A topic setting is not acceptable.
    #[error("invalid topic config: {0}")]
    InvalidConfig(String),
    /// A change was asked of a data directory opened with `Log::open_read_only`.
    #[error("data directory {} is open read-only: cannot {op}", dir.display())]
    ReadOnly {
        /// The data directory.
        dir: PathBuf,
        /// What was refused.
        op: &'static str,
    },
    /// A write or fsync of this partition failed earlier; the writer accepts nothing more, because
    /// the operating system may have dropped bytes it had reported written. Reopening the partition
    /// (best: restarting the process) recovers what is really on disk.
    #[error(
        "topic {topic:?} partition {partition} accepts no more appends: an earlier write or fsync \
         failed ({cause}); records from offset {durable_offset} on may not be on disk. Reopen the \
         partition (restart the process) to recover what is on disk"
    )]
    Poisoned {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// Offsets below this were fsynced before the failure.
        durable_offset: u64,
        /// The original failure.
        cause: String,
    },
    /// Data written by a newer eddy, in a format this one does not read. Nothing was changed.
    #[error(
        "{} is in {what} format {found}; this eddy reads up to format {supported}. Use a newer \
         eddy (nothing was changed)",
        path.display()
    )]
    UnsupportedFormat {
        /// The file or directory.
        path: PathBuf,
        /// What has the version ("data directory", "topic", "state store", ...).
        what: &'static str,
        /// The version found.
        found: u64,
        /// The newest version this build reads.
        supported: u64,
    },
    /// A transactional producer was refused because a newer instance of it (a higher epoch)
    /// owns its transactions: this instance is a zombie and must stop.
    #[error("topic {topic:?} partition {partition}: fenced: {reason}")]
    Fenced {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// Which producer and epochs.
        reason: String,
    },
    /// An append was refused before anything was written.
    #[error("append to topic {topic:?} partition {partition} refused: {reason}")]
    AppendRefused {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// Why.
        reason: String,
    },
}

impl LogError {
    /// Whether this is the disk (or a quota) running out of space on a write, which leaves the
    /// log as it was and can be retried once space is freed. A failed fsync never is.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            LogError::Io { op, source, .. } => !is_sync(op) && is_space_error(source),
            _ => false,
        }
    }
}

/// Whether `op` names an fsync (or msync) of data or a directory.
pub(crate) fn is_sync(op: &str) -> bool {
    op.starts_with("fsync") || op.starts_with("flush")
}

/// ENOSPC or EDQUOT.
pub(crate) fn is_space_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28 | 122))
}

/// Attaches a path and an operation name to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> LogResult<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> LogResult<T> {
        self.map_err(|source| LogError::Io {
            op,
            path: path.into(),
            source,
        })
    }
}
