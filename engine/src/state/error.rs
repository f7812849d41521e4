//! Errors of the state layer: RocksDB failures name the store's directory; changelog failures carry
//! the log error, which names topic, partition and file.

use std::path::PathBuf;

use crate::log::LogError;

/// An error from a state store or its changelog.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// RocksDB refused an operation.
    #[error("state store {path}: {op}: {source}")]
    Rocks {
        /// What was being done.
        op: &'static str,
        /// The store's directory.
        path: PathBuf,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// A file-system operation on the state directory failed.
    #[error("state directory {path}: {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A changelog could not be written or read.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A stored entry does not decode: the store was damaged, or the application now reads it
    /// as another type than it was written with (a changed pipeline or state type).
    #[error(
        "state store {path}: entry {key} does not decode: {reason}. The store is damaged or the \
         application's state types changed; nothing was skipped. Restore the previous version, \
         or reset the application's group and state to start over"
    )]
    CorruptState {
        /// The store's directory (names application, topic and partition).
        path: PathBuf,
        /// The entry's key, printable.
        key: String,
        /// What did not decode, and why.
        reason: String,
    },
    /// A changelog held by another backend than the local log failed.
    #[error("changelog {topic} partition {partition}: {what}: {cause}")]
    Backend {
        /// Changelog topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// What was being done.
        what: String,
        /// The backend's error.
        cause: String,
    },
    /// A changelog record that eddy did not write.
    #[error("changelog {topic} partition {partition} offset {offset}: {reason}")]
    BadChangelog {
        /// Changelog topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// Offset of the record.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result of state operations.
pub type StateResult<T> = Result<T, StateError>;

/// Wraps a RocksDB error with what was being done and the store's path.
pub(crate) fn rocks<'a>(
    op: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(rocksdb::Error) -> StateError + 'a {
    move |source| StateError::Rocks {
        op,
        path: path.to_owned(),
        source,
    }
}
