//! Errors of stream applications, and how a record's failure is classified while it is processed.

use crate::groups::GroupError;
use crate::log::LogError;
use crate::state::StateError;

/// An error that stops an application.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The log failed (names topic, partition and file).
    #[error(transparent)]
    Log(#[from] LogError),
    /// Consumer-group bookkeeping failed.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// A state store or changelog failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A record failed under the `Fail` policy.
    #[error("topic {topic} partition {partition} offset {offset}: {kind}: {cause}")]
    Record {
        /// Source topic of the record.
        topic: String,
        /// Partition.
        partition: u32,
        /// Offset.
        offset: u64,
        /// `deserialize`, `function` (an error returned by a user function, or a failed state
        /// access) or `panic`.
        kind: &'static str,
        /// What went wrong.
        cause: String,
    },
    /// The application was set up wrongly.
    #[error("application setup: {0}")]
    Setup(String),
    /// The application's backend (another than the local log) failed.
    #[error("{backend}: {what}: {cause}")]
    Backend {
        /// Which backend ("Kafka at 127.0.0.1:9092").
        backend: String,
        /// What was being done (naming topic and partition where there are).
        what: String,
        /// The backend's error.
        cause: String,
    },
}

/// Result of application operations.
pub type StreamResult<T> = Result<T, StreamError>;

/// Why processing one record stopped.
#[derive(Debug)]
pub(crate) enum StepError {
    /// Its key or value did not decode.
    Deserialize(String),
    /// A user function returned an error, or state access failed.
    Function(String),
    /// Storage failed: not the record's fault, so no policy applies.
    Fatal(StreamError),
}

impl From<LogError> for StepError {
    fn from(e: LogError) -> Self {
        StepError::Fatal(e.into())
    }
}
