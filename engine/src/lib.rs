//! # eddy — an embedded stream engine
//!
//! eddy gives one process, or a few processes on one machine, what a Kafka cluster plus a stream
//! processor give a data centre: durable topics on an append-only segmented log that any number of
//! readers can replay, consumer groups, and stream applications whose RocksDB state survives
//! crashes through changelogs. There is no broker and no server: the data directory is the
//! database, shared by every process that opens it.
//!
//! What it is not: a distributed system. Data lives on one machine's disk; durability is what that
//! disk gives (see [`Durability`]).
//!
//! Limits: a record batch is at most 64 MiB; a segment at most 4 GiB; a topic has at most 10,000
//! partitions; one appender per partition at a time across all processes.
//!
//! Features: `cli` (the `eddy` command) and `streams` (stream applications: `Application`,
//! dataframes, windows, RocksDB state) are on by default. Without `streams` eddy is the log and
//! consumer groups alone, with no C++ to build. `metrics-endpoint` (off by default) lets an
//! application serve its metrics to Prometheus (`AppConfig::metrics_listen`; an HTTP server on
//! a thread the application owns).
//!
//! ```
//! use eddy::{Log, Record, TopicConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let log = Log::open(dir.path())?;
//! let topic = log.create_topic("readings", TopicConfig::with_partitions(1))?;
//! let appended = topic.writer(0)?.append(&[
//!     Record::keyed("sensor-1", r#"{"value": 21}"#),
//!     Record::keyed("sensor-2", r#"{"value": 19}"#),
//! ])?;
//! assert_eq!(appended.base_offset, 0);
//!
//! let mut reader = topic.reader(0)?;
//! let fetch = reader.read(0, 100, 1 << 20)?;
//! let keys: Vec<_> = fetch.iter().map(|r| r.key.unwrap().to_vec()).collect();
//! assert_eq!(keys, [b"sensor-1".to_vec(), b"sensor-2".to_vec()]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A stream application keeping a running count per key (see `docs/semantics.md` for what a
//! crash does to it):
//!
//! ```
//! use eddy::{AppConfig, Application, Json, Log, Record, State, Str, TopicConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let log = Log::open(dir.path())?;
//! let input = log.create_topic("readings", TopicConfig::default())?;
//! input.append([
//!     Record::keyed("sensor-1", r#"{"value": 21}"#),
//!     Record::keyed("sensor-1", r#"{"value": 23}"#),
//! ])?;
//!
//! let mut app = Application::new(AppConfig::new(dir.path(), "counter"))?;
//! let readings = app.topic::<Str, Json<serde_json::Value>>("readings")?;
//! let counts = app.topic::<Str, Json<u64>>("counts")?;
//! app.dataframe(&readings)
//!     .stateful_map(|_, state: &mut State<'_>| {
//!         let n = state.get_or::<u64>("n", 0) + 1;
//!         state.set("n", &n);
//!         n
//!     })
//!     .to_topic(&counts);
//! app.run_until_idle()?;
//!
//! let out = log.topic("counts")?.reader(0)?.read(0, 10, 1 << 20)?;
//! let values: Vec<_> = out.iter().map(|r| r.value.unwrap().to_vec()).collect();
//! assert_eq!(values, [b"1".to_vec(), b"2".to_vec()]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

mod coordinator;
mod groups;
mod log;
#[cfg(feature = "streams")]
mod runtime;
#[cfg(feature = "streams")]
mod state;
#[cfg(feature = "streams")]
mod stream;
#[cfg(any(feature = "streams", feature = "fuzzing"))]
#[cfg_attr(not(feature = "streams"), allow(dead_code))]
mod window_codec;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;

/// Data directory the command-line tools use when neither `--data-dir` nor `EDDY_DATA_DIR` is
/// given.
pub const DEFAULT_DATA_DIR: &str = "./eddy-data";

pub use coordinator::{
    abort_expired_transactions, Completed, TransactionOffsets, TransactionalProducer,
    DEFAULT_TRANSACTION_TIMEOUT_MS,
};
pub use groups::{
    parse_iso_duration, AutoOffsetReset, Consumer, ConsumerConfig, GroupDescription, GroupError,
    GroupResult, Groups, MemberInfo, PartitionLag, PolledBatch, ResetRow, ResetScope, ResetTarget,
    TopicPartition, RESET_KEEP_STATE_METADATA, RESET_METADATA,
};
pub use log::{
    murmur2, partition_for_key, validate_name, Appended, CleanupPolicy, CompactionStats,
    Durability, Fetch, Header, Isolation, Log, LogError, LogResult, PartitionInfo, PartitionReader,
    PartitionWriter, ProducerIdentity, Record, RecordView, RecoveryReport, Topic, TopicConfig,
    WriterCore, DATA_DIR_FORMAT, SETTING_NAMES, TOPIC_FORMAT,
};
#[cfg(feature = "streams")]
pub use runtime::{
    changelog_name, AppConfig, Application, Backend, GroupSettings, GroupSource, LocalBackend,
    MetricsSnapshot, ProcessingGuarantee, Producer,
};
#[cfg(feature = "metrics-endpoint")]
pub use runtime::{encode_metrics, OPENMETRICS_CONTENT_TYPE};
#[cfg(feature = "streams")]
pub use state::{
    reset_record, Changelog, PartitionRead, RestoreCallback, RestoreProgress, RestoreReport, State,
    StateError, StateResult, DEFAULT_MEMORY_BUDGET,
};
#[cfg(feature = "streams")]
pub use stream::window::aggregate;
#[cfg(feature = "streams")]
pub use stream::{
    merge_json, AsOf, Bincode, Bytes, Closing, Emit, ErrorPolicy, Format, Interval, JoinHow, Json,
    Message, OnMerge, OutputSink, Str, Stream, StreamError, StreamResult, StreamTopic, Table,
    TimestampExtractor, TopicCatalog, TopicInfo, WindowResult, WindowSpec, Windowed,
};
