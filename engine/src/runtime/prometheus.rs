//! An application's metrics in the Prometheus (OpenMetrics) text format, and the endpoint that
//! serves them: `GET /metrics` on [`AppConfig::metrics_listen`](super::AppConfig), answered by
//! one thread the [`Application`](super::Application) owns (joined when it drops). The endpoint
//! only reads the shared counters; it never touches the pipeline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::metrics::{Metrics, MetricsSnapshot};
use crate::stream::{StreamError, StreamResult};

/// The content type of the OpenMetrics text format, which Prometheus scrapes.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;

/// `snapshot` of the application of consumer group `group` as OpenMetrics text. Every series
/// carries the label `group`; lag also `topic` and `partition`.
pub fn encode_metrics(group: &str, snapshot: &MetricsSnapshot) -> String {
    let mut registry = Registry::with_prefix_and_labels(
        "eddy_app",
        [("group".into(), group.to_owned().into())].into_iter(),
    );
    let counter = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let c: Counter = Counter::default();
        c.inc_by(value);
        registry.register(name, help, c);
    };
    counter(
        &mut registry,
        "records_in",
        "Input records processed",
        snapshot.records_in,
    );
    counter(
        &mut registry,
        "records_out",
        "Output records appended",
        snapshot.records_out,
    );
    let errors = Family::<Labels, Counter>::default();
    for (kind, n) in [
        ("deserialize", snapshot.deserialize_errors),
        ("function", snapshot.function_errors),
        ("panic", snapshot.panics),
    ] {
        errors
            .get_or_create(&vec![("kind".into(), kind.into())])
            .inc_by(n);
    }
    registry.register("errors", "Records that failed, by kind", errors);
    counter(
        &mut registry,
        "skipped",
        "Failed records skipped",
        snapshot.skipped,
    );
    counter(
        &mut registry,
        "dead_lettered",
        "Failed records sent to a dead-letter topic",
        snapshot.dead_lettered,
    );
    counter(
        &mut registry,
        "late_records",
        "Records dropped because their window had closed",
        snapshot.late_records,
    );
    counter(
        &mut registry,
        "checkpoints",
        "Checkpoints completed",
        snapshot.checkpoints,
    );
    let seconds = |registry: &mut Registry, name: &str, help: &str, value: f64| {
        let c: Counter<f64, std::sync::atomic::AtomicU64> = Counter::default();
        c.inc_by(value);
        registry.register(name, help, c);
    };
    seconds(
        &mut registry,
        "checkpoint_seconds",
        "Time spent in checkpoints",
        snapshot.checkpoint_time.as_secs_f64(),
    );
    let last: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    last.set(snapshot.last_checkpoint_time.as_secs_f64());
    registry.register(
        "last_checkpoint_seconds",
        "How long the last checkpoint took",
        last,
    );
    counter(
        &mut registry,
        "restored_entries",
        "Changelog entries applied while restoring state",
        snapshot.restored_entries,
    );
    seconds(
        &mut registry,
        "restore_seconds",
        "Time spent restoring state",
        snapshot.restore_time.as_secs_f64(),
    );
    counter(
        &mut registry,
        "stores_rebuilt",
        "State stores rebuilt from scratch",
        snapshot.stores_rebuilt,
    );
    counter(
        &mut registry,
        "changes_undone",
        "Changes of unfinished checkpoints undone by restores",
        snapshot.changes_undone,
    );
    counter(
        &mut registry,
        "state_resets",
        "Partitions whose state was cleared by an offset reset",
        snapshot.state_resets,
    );
    counter(
        &mut registry,
        "tasks_given_up",
        "Tasks given up without a checkpoint",
        snapshot.tasks_given_up,
    );
    let state: Gauge = Gauge::default();
    state.set(i64::try_from(snapshot.state_bytes).unwrap_or(i64::MAX));
    registry.register(
        "state_bytes",
        "Bytes of the owned tasks' state stores",
        state,
    );
    let lag = Family::<Labels, Gauge>::default();
    for ((topic, partition), behind) in &snapshot.lag {
        let labels = vec![
            ("topic".into(), topic.clone()),
            ("partition".into(), partition.to_string()),
        ];
        lag.get_or_create(&labels)
            .set(i64::try_from(*behind).unwrap_or(i64::MAX));
    }
    registry.register(
        "lag",
        "Records each owned input partition is behind its end",
        lag,
    );
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

/// The running endpoint: its thread stops and is joined on drop.
pub(crate) struct MetricsEndpoint {
    address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl MetricsEndpoint {
    /// Binds `listen` (now, so that a taken port fails the application's construction) and
    /// serves `GET /metrics` from a thread of its own.
    pub(crate) fn start(
        listen: SocketAddr,
        group: String,
        metrics: Arc<Metrics>,
    ) -> StreamResult<Self> {
        let setup = |what: &str, e: std::io::Error| {
            StreamError::Setup(format!("metrics endpoint on {listen}: {what}: {e}"))
        };
        let listener = std::net::TcpListener::bind(listen).map_err(|e| setup("bind", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| setup("set non-blocking", e))?;
        let address = listener
            .local_addr()
            .map_err(|e| setup("local address", e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| setup("runtime", e))?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("eddy-metrics".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let router = axum::Router::new().route(
                        "/metrics",
                        axum::routing::get(move || {
                            let body = encode_metrics(&group, &metrics.snapshot(None));
                            async move {
                                (
                                    [(axum::http::header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
                                    body,
                                )
                            }
                        }),
                    );
                    axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await
                })
            })
            .map_err(|e| setup("spawn", e))?;
        Ok(MetricsEndpoint {
            address,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port the system chose for port 0).
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(address = %self.address, error = %e, "metrics endpoint failed")
                }
                Err(_) => tracing::error!(address = %self.address, "metrics endpoint panicked"),
            }
        }
    }
}
