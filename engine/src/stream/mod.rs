//! Streams: serialization formats, the dataframe builder and its operations, the context records
//! are processed in, and output buffering. Uses the log (topics, records) and state (stores); the
//! runtime drives it.

mod catalog;
mod dataframe;
mod error;
mod format;
pub mod join;
mod lifecycle;
mod message;
mod output_sink;
mod registry;
mod sink;
pub mod window;

pub use catalog::{TopicCatalog, TopicInfo};
pub use dataframe::Stream;
pub use error::{StreamError, StreamResult};
pub use format::{Bincode, Bytes, Format, Json, Str};
pub use join::{merge_json, AsOf, Interval, JoinHow, OnMerge, Table};
pub use message::Message;
pub use output_sink::OutputSink;
pub use registry::{ErrorPolicy, StreamTopic, TimestampExtractor};
pub use window::{Closing, Emit, WindowResult, WindowSpec, Windowed};

pub(crate) use catalog::LocalCatalog;
pub(crate) use error::StepError;
pub(crate) use lifecycle::StartingInput;
pub(crate) use output_sink::LocalSink;
pub(crate) use registry::{Ctx, Registry, Source, TaskInputs};
pub(crate) use sink::Outputs;
pub(crate) use window::check_operator_names;
