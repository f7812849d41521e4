//! Settings of an [`Application`](super::Application).

use std::path::PathBuf;
use std::time::Duration;

use crate::groups::AutoOffsetReset;
use crate::state::{RestoreCallback, DEFAULT_MEMORY_BUDGET};
use crate::stream::ErrorPolicy;

/// Delivery guarantee of an application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProcessingGuarantee {
    /// Every input record affects state exactly as often as in an uninterrupted run, and its
    /// outputs appear at least once: outputs of records processed after the last checkpoint
    /// before a crash appear again (see `docs/semantics.md`).
    #[default]
    AtLeastOnce,
    /// Each checkpoint of a task is one transaction: its outputs (dead-letter and late-record
    /// topics included), its changelog records and its input offset become visible to committed
    /// readers together or not at all, whatever crashes when; inputs are read committed. A task
    /// that starts fences every older instance of itself (a paused process whose partitions
    /// moved): at its next append or commit it fails with a "fenced" error. Outputs appear only
    /// at checkpoints (to committed readers), so end-to-end latency is the commit interval.
    ExactlyOnce,
}

/// Settings of an application; [`AppConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// The eddy data directory (topics and groups).
    pub data_dir: PathBuf,
    /// Consumer group; also names the application's state, changelogs and internal topics.
    pub group: String,
    /// Where partitions without a committed offset start. Default: earliest.
    pub auto_offset_reset: AutoOffsetReset,
    /// Time between checkpoints. Default: 1 s.
    pub commit_interval: Duration,
    /// Also checkpoint after this many input records (0: only by time). Default: 0.
    pub commit_every: u64,
    /// Delivery guarantee.
    pub processing_guarantee: ProcessingGuarantee,
    /// State stores' directory. Default: `<data_dir>/state`.
    pub state_dir: Option<PathBuf>,
    /// Memory for all state stores of the process (RocksDB caches and write buffers, eddy's
    /// write-back caches). Default: 64 MiB.
    pub memory_budget: usize,
    /// What happens to records that fail. Default: fail. A topic's own policy wins.
    pub on_error: ErrorPolicy,
    /// Fsync outputs, changelogs, state and offsets at each checkpoint, so that a checkpoint also
    /// survives power loss (not only a process crash). Default: off.
    pub fsync: bool,
    /// Most records read per poll. Default: 10,000.
    pub max_poll_records: usize,
    /// Kafka's `max.poll.interval.ms`: an instance that does not poll within this — stopped
    /// (SIGSTOP, a debugger) or stuck in a call — loses its partitions to the other members of
    /// the group. When it runs again it gives its tasks up without a checkpoint (under
    /// exactly-once the new owners abort its open transactions, and it is fenced if it tries
    /// to write) and rejoins. Restores and checkpoints count against it. Default: 5 minutes;
    /// `None`: never.
    pub max_poll_interval: Option<Duration>,
    /// Receives the progress of state restores that take longer than half a second (the
    /// library draws nothing; a program may draw a progress bar). Default: none. Restores are
    /// also logged through `tracing`.
    pub on_restore_progress: Option<RestoreCallback>,
    /// Kafka Streams' `max.task.idle.ms`, for tasks with several inputs (joins, merges): how long
    /// a task whose other inputs have records waits for an input with nothing in the log before
    /// processing without it. Whatever this is, a task waits for an input's records that are in
    /// the log but not polled yet, so that inputs merge in timestamp order. Default: 0 (a
    /// silent input holds nothing back).
    pub max_task_idle: Duration,
    /// Serve the application's metrics in the Prometheus text format at `GET /metrics` on this
    /// address (port 0: one the system chooses; [`Application::metrics_address`] tells which).
    /// Needs eddy's `metrics-endpoint` feature. Default: none.
    ///
    /// [`Application::metrics_address`]: super::Application::metrics_address
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl AppConfig {
    /// Defaults for an application of `group` over `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>, group: impl Into<String>) -> Self {
        AppConfig {
            data_dir: data_dir.into(),
            group: group.into(),
            auto_offset_reset: AutoOffsetReset::Earliest,
            commit_interval: Duration::from_secs(1),
            commit_every: 0,
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            state_dir: None,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            on_error: ErrorPolicy::Fail,
            fsync: false,
            max_poll_records: 10_000,
            max_poll_interval: Some(Duration::from_secs(300)),
            on_restore_progress: None,
            max_task_idle: Duration::ZERO,
            metrics_listen: None,
        }
    }
}
