//! The runtime: [`Application`] (consuming as a group member, tasks per partition, checkpoints,
//! shutdown), its settings, metrics and the standalone [`Producer`]. Uses the log, groups, state
//! and stream layers.

mod app;
mod backend;
mod config;
mod inputs;
mod metrics;
mod producer;
#[cfg(feature = "metrics-endpoint")]
mod prometheus;
mod task;
mod transactional;

pub use app::Application;
pub use backend::{Backend, GroupSettings, GroupSource, LocalBackend};
pub use config::{AppConfig, ProcessingGuarantee};
pub use metrics::MetricsSnapshot;
pub use producer::Producer;
#[cfg(feature = "metrics-endpoint")]
pub use prometheus::{encode_metrics, OPENMETRICS_CONTENT_TYPE};
pub use task::changelog_name;
