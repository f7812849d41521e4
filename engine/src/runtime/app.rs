//! [`Application`]: consumes its dataframes' topics as a member of its group, pushes records
//! through them, and checkpoints.
//!
//! A checkpoint, in this order: (1) buffered outputs are appended (and fsynced with `fsync`);
//! (2) each store appends its changes and a marker with its task's input position to its
//! changelog as one atomic batch, then writes them to RocksDB with the changelog offset; (3) the
//! input positions are committed to the group, tagged as checkpoint commits. A crash between any
//! two steps leaves a state that `task.rs` resumes consistently; see `docs/semantics.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backend::{no_exactly_once, Backend, GroupSettings, GroupSource, LocalBackend};
use super::config::{AppConfig, ProcessingGuarantee};
use super::metrics::{bump, Metrics, MetricsSnapshot};
use super::producer::Producer;
use super::task::{start_task, Task, CHECKPOINT_METADATA};
use crate::groups::{GroupError, TopicPartition};
use crate::log::{Header, Isolation, Log, LogError, Record, RecordView, TopicConfig};
use crate::state::Store;
use crate::state::{StateEnv, StateError};
use crate::stream::{
    Ctx, ErrorPolicy, Format, Outputs, Registry, Source, StartingInput, StepError, Stream,
    StreamError, StreamResult, StreamTopic, TaskInputs,
};

/// How long one poll waits for records; bounded runs wait less, to notice the end sooner.
const POLL_WAIT: Duration = Duration::from_millis(100);
const POLL_WAIT_BOUNDED: Duration = Duration::from_millis(5);

/// When a bounded run stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Until {
    Stopped,
    Idle,
    Records(u64),
}

/// A stream-processing application: topics, dataframes over them, and the loop that runs them
/// with fault-tolerant state. Build it, then call [`run`](Self::run) (until Ctrl-C/SIGTERM or
/// [`stop_handle`](Self::stop_handle)), [`run_until_idle`](Self::run_until_idle) or
/// [`run_records`](Self::run_records). It runs on the thread that built it.
pub struct Application {
    pub(super) config: AppConfig,
    log: Log,
    backend: Rc<dyn Backend>,
    pub(super) registry: Rc<Registry>,
    env: StateEnv,
    pub(super) metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    pub(super) crash_point: CrashPoint,
    #[cfg(feature = "metrics-endpoint")]
    metrics_endpoint: Option<super::prometheus::MetricsEndpoint>,
}

/// A test aid, compiled in only with the `crash-points` feature (which eddy's own tests turn
/// on): `EDDY_TEST_CRASH_AT=<step>:<n>` (step `outputs`, `changelog`, `store` or `commit`)
/// aborts the process right after that step of the n-th checkpoint, so that tests can crash
/// deterministically between the steps whose order `docs/semantics.md` describes. Without the
/// feature the variable is never read.
#[derive(Default)]
/// Test aid: `EDDY_TEST_CRASH_AT=step:n` aborts the process at `step` of checkpoint `n`;
/// `step:n:stop` stops it there instead (SIGSTOP to itself), as a debugger or a paused VM would,
/// once: a checkpoint numbered `n` again after the process gave its tasks up goes on.
pub(super) struct CrashPoint(Option<(String, u64, bool)>, AtomicBool);

impl CrashPoint {
    #[cfg(feature = "crash-points")]
    fn from_env() -> Self {
        let parsed = std::env::var("EDDY_TEST_CRASH_AT").ok().and_then(|v| {
            let mut parts = v.split(':');
            let step = parts.next()?.to_owned();
            let n = parts.next()?.parse().ok()?;
            let stop = parts.next() == Some("stop");
            Some((step, n, stop))
        });
        CrashPoint(parsed, AtomicBool::new(false))
    }

    #[cfg(not(feature = "crash-points"))]
    fn from_env() -> Self {
        CrashPoint(None, AtomicBool::new(false))
    }

    pub(super) fn reached(&self, step: &str, checkpoint: u64) {
        if let Some((at, n, stop)) = &self.0 {
            if at == step && *n == checkpoint && !self.1.swap(true, Ordering::Relaxed) {
                if !*stop {
                    std::process::abort();
                }
                let _ = signal_hook::low_level::raise(signal_hook::consts::SIGSTOP);
            }
        }
    }
}

impl Application {
    /// An application with `config` on the local log of its data directory (opened, created
    /// when missing).
    pub fn new(config: AppConfig) -> StreamResult<Application> {
        let log = Log::open(&config.data_dir)?;
        Self::on(config, Rc::new(LocalBackend::new(log.clone())), log)
    }

    /// An application with `config` whose topics, group and changelogs are `backend`'s (a
    /// Kafka cluster, say); its state stores stay in the data directory. The pipeline is built
    /// and run as with [`new`](Self::new).
    pub fn with_backend(
        config: AppConfig,
        backend: impl Backend + 'static,
    ) -> StreamResult<Application> {
        let log = Log::open(&config.data_dir)?;
        Self::on(config, Rc::new(backend), log)
    }

    fn on(config: AppConfig, backend: Rc<dyn Backend>, log: Log) -> StreamResult<Application> {
        crate::log::validate_name(&config.group)
            .map_err(|e| StreamError::Setup(format!("group: {e}")))?;
        let state_dir = config
            .state_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("state"));
        let registry = Rc::new(Registry {
            catalog: backend.catalog(),
            group: config.group.clone(),
            sources: Default::default(),
            outputs: std::cell::RefCell::new(Outputs::new(backend.output_sink(config.fsync)?)),
            setup_errors: Default::default(),
            links: Default::default(),
        });
        let metrics = Arc::<Metrics>::default();
        #[cfg(feature = "metrics-endpoint")]
        let metrics_endpoint = match config.metrics_listen {
            Some(listen) => Some(super::prometheus::MetricsEndpoint::start(
                listen,
                config.group.clone(),
                metrics.clone(),
            )?),
            None => None,
        };
        #[cfg(not(feature = "metrics-endpoint"))]
        if let Some(listen) = config.metrics_listen {
            return Err(StreamError::Setup(format!(
                "metrics_listen {listen}: this build of eddy has no metrics endpoint (enable \
                 its `metrics-endpoint` feature)"
            )));
        }
        Ok(Application {
            env: StateEnv::new(
                &state_dir,
                config.memory_budget,
                config.on_restore_progress.clone(),
            ),
            config,
            log,
            backend,
            registry,
            metrics,
            stop: Arc::new(AtomicBool::new(false)),
            crash_point: CrashPoint::from_env(),
            #[cfg(feature = "metrics-endpoint")]
            metrics_endpoint,
        })
    }

    /// The local log of the data directory (what the application reads and writes on the
    /// default backend).
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The topic `name` with key format `KF` and value format `VF`, created with one partition
    /// when missing.
    pub fn topic<KF: Format, VF: Format>(&self, name: &str) -> StreamResult<StreamTopic<KF, VF>> {
        self.topic_with_config(name, TopicConfig::default())
    }

    /// The topic `name`, created with `config` when missing (an existing topic keeps its own).
    pub fn topic_with_config<KF: Format, VF: Format>(
        &self,
        name: &str,
        config: TopicConfig,
    ) -> StreamResult<StreamTopic<KF, VF>> {
        Ok(StreamTopic::new(
            self.registry.catalog.topic_or_create(name, config)?,
        ))
    }

    /// A dataframe over `topic`. One per topic; branch it by cloning the returned stream.
    pub fn dataframe<KF: Format, VF: Format>(
        &self,
        topic: &StreamTopic<KF, VF>,
    ) -> Stream<KF::Value, VF::Value>
    where
        KF::Value: Clone,
        VF::Value: Clone,
    {
        self.registry.dataframe(topic)
    }

    /// The table of `topic`: the latest value of each key (tombstones delete), for
    /// [`Stream::join_table`]. A topic has one table or one dataframe in an application. Read
    /// from a compacted topic, the table is not copied to a changelog: the topic is its own.
    pub fn table<KF: Format, VF: Format>(
        &self,
        topic: &StreamTopic<KF, VF>,
    ) -> crate::stream::Table<VF::Value>
    where
        VF::Value: 'static,
    {
        crate::stream::join::register_table(&self.registry, topic)
    }

    /// A producer for standalone programs (generators, importers) writing to the application's
    /// topics.
    pub fn producer(&self) -> StreamResult<Producer> {
        Ok(Producer::new(self.backend.output_sink(false)?))
    }

    /// The application's counters so far.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics
            .snapshot(Some(self.registry.outputs.borrow().sent))
    }

    /// Where the Prometheus endpoint listens, when [`AppConfig::metrics_listen`] asked for one.
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        #[cfg(feature = "metrics-endpoint")]
        return self.metrics_endpoint.as_ref().map(|e| e.address());
        #[cfg(not(feature = "metrics-endpoint"))]
        None
    }

    /// A flag that stops [`run`](Self::run) (after a final checkpoint) when set, from any thread.
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Runs until Ctrl-C, SIGTERM or the stop handle; then checkpoints and returns. A second
    /// Ctrl-C exits at once.
    pub fn run(&mut self) -> StreamResult<()> {
        let mut ids = Vec::new();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let armed =
                signal_hook::flag::register_conditional_shutdown(signal, 1, self.stop.clone())
                    .and_then(|a| Ok((a, signal_hook::flag::register(signal, self.stop.clone())?)));
            match armed {
                Ok((a, b)) => ids.extend([a, b]),
                Err(e) => return Err(StreamError::Setup(format!("signal handler: {e}"))),
            }
        }
        let result = self.run_loop(Until::Stopped);
        for id in ids {
            signal_hook::low_level::unregister(id);
        }
        result
    }

    /// Runs until every input partition has been read to its end and outputs to internal topics
    /// have been processed too; then checkpoints and returns.
    pub fn run_until_idle(&mut self) -> StreamResult<()> {
        self.run_loop(Until::Idle)
    }

    /// Runs until at least `count` input records have been processed (or the stop handle is
    /// set); then checkpoints and returns.
    pub fn run_records(&mut self, count: u64) -> StreamResult<()> {
        self.run_loop(Until::Records(count))
    }

    fn run_loop(&mut self, until: Until) -> StreamResult<()> {
        if let Some(e) = self.registry.setup_errors.borrow().first() {
            return Err(StreamError::Setup(e.clone()));
        }
        let topics: Vec<String> = self.registry.sources.borrow().keys().cloned().collect();
        if topics.is_empty() {
            return Err(StreamError::Setup("no dataframe was defined".into()));
        }
        let inputs = self.registry.task_inputs().map_err(StreamError::Setup)?;
        let primary_of: BTreeMap<String, String> = (inputs.iter())
            .flat_map(|(p, all)| all.iter().map(move |t| (t.clone(), p.clone())))
            .collect();
        if self.exactly_once() && self.backend.local_log().is_none() {
            return Err(no_exactly_once(self.backend.as_ref()));
        }
        let mut consumer = self.backend.group_source(&GroupSettings {
            group: self.config.group.clone(),
            auto_offset_reset: self.config.auto_offset_reset,
            max_poll_records: self.config.max_poll_records,
            max_poll_interval: self.config.max_poll_interval,
            // Under exactly-once, an upstream application's aborted outputs are not input.
            isolation: match self.config.processing_guarantee {
                ProcessingGuarantee::ExactlyOnce => Isolation::ReadCommitted,
                ProcessingGuarantee::AtLeastOnce => Isolation::ReadUncommitted,
            },
            copartitioned: inputs.values().filter(|v| v.len() > 1).cloned().collect(),
            fsync_commits: self.config.fsync,
        })?;
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&refs)?;
        if self.exactly_once() {
            self.registry.outputs.borrow_mut().buffer_per_task();
        }
        let mut runner = Runner {
            app: self,
            consumer,
            inputs,
            primary_of,
            tasks: BTreeMap::new(),
            last_checkpoint: Instant::now(),
            last_expiry_check: Instant::now(),
            since_checkpoint: 0,
            processed: 0,
        };
        let result = runner.run(until);
        let Runner {
            consumer, tasks, ..
        } = runner;
        for (tp, task) in tasks {
            close_task(&self.registry, &tp, task);
        }
        self.registry.outputs.borrow_mut().release_writers();
        match result {
            Ok(()) => consumer.close(),
            Err(e) => Err(e),
        }
    }
}

pub(super) struct Runner<'a> {
    pub(super) app: &'a mut Application,
    pub(super) consumer: Box<dyn GroupSource>,
    /// Each primary topic's inputs (itself first).
    inputs: TaskInputs,
    /// Each input topic's primary.
    primary_of: BTreeMap<String, String>,
    pub(super) tasks: BTreeMap<TopicPartition, Task>,
    pub(super) last_checkpoint: Instant,
    /// When expired transactions of the data directory were last looked for (exactly-once).
    pub(super) last_expiry_check: Instant,
    pub(super) since_checkpoint: u64,
    processed: u64,
}

impl Runner<'_> {
    fn run(&mut self, until: Until) -> StreamResult<()> {
        loop {
            if self.app.stop.load(Ordering::Relaxed) {
                break;
            }
            let wait = if until == Until::Stopped {
                POLL_WAIT
            } else {
                POLL_WAIT_BOUNDED
            };
            match self.turn(wait, until) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) if lost_tasks(&e) => self.give_up_tasks(&e),
                Err(e) => return Err(e),
            }
        }
        match self.checkpoint() {
            Err(e) if lost_tasks(&e) => {
                self.give_up_tasks(&e);
                Ok(())
            }
            done => done,
        }
    }

    /// One turn of the loop: poll, hand over and start tasks, process, checkpoint when due.
    /// Returns whether to go on.
    fn turn(&mut self, wait: Duration, until: Until) -> StreamResult<bool> {
        let batches = self.consumer.poll(wait)?;
        self.hand_over_revoked()?;
        let fresh = self.start_new_tasks()?;
        let polled_any = !batches.is_empty();
        for batch in batches {
            let Some(primary) = self.primary_of.get(&batch.topic) else {
                continue;
            };
            let task = (primary.clone(), batch.partition);
            if fresh.contains(&task) {
                continue; // read before the task chose its start; read again from there
            }
            self.process(&task, &batch.topic, batch.records)?;
        }
        self.merge_waiting(false)?;
        self.tick_operators()?;
        if self.app.registry.outputs.borrow().wants_flush() {
            self.flush_outputs()?;
        }
        if self.checkpoint_due() {
            self.checkpoint()?;
        }
        match until {
            Until::Records(n) if self.processed >= n => return Ok(false),
            Until::Idle if !polled_any => {
                self.flush_outputs()?;
                // The consumer's positions are the tasks' positions here: every batch polled
                // has been processed or is buffered for a merge, and new tasks seeked to their
                // starts. What merges still hold (waiting for a silent input) goes now.
                if self.consumer.caught_up()? {
                    if !self.merges_hold_records() {
                        return Ok(false);
                    }
                    self.merge_waiting(true)?;
                }
            }
            _ => {}
        }
        Ok(true)
    }

    /// After this instance lost its partitions (past its poll interval) or was fenced: drops
    /// every task and what they buffered, without a checkpoint — their new owners resume from
    /// the last committed checkpoint, and under exactly-once abort the transactions left open
    /// here. The next poll rejoins the group.
    fn give_up_tasks(&mut self, cause: &StreamError) {
        let given_up: Vec<String> = (self.tasks.keys())
            .map(|(t, p)| format!("{t}-{p}"))
            .collect();
        tracing::warn!(group = %self.app.config.group, tasks = %given_up.join(", "),
            error = %cause, "gave up every task without a checkpoint; rejoining the group");
        bump(&self.app.metrics.tasks_given_up, given_up.len() as u64);
        for (tp, task) in std::mem::take(&mut self.tasks) {
            close_task(&self.app.registry, &tp, task);
        }
        self.app.registry.outputs.borrow_mut().discard();
        self.since_checkpoint = 0;
        self.consumer.leave_and_rejoin();
    }

    fn checkpoint_due(&self) -> bool {
        let every = self.app.config.commit_every;
        self.last_checkpoint.elapsed() >= self.app.config.commit_interval
            || (every > 0 && self.since_checkpoint >= every)
            || self
                .tasks
                .values()
                .any(|t| t.store.as_ref().is_some_and(|s| s.wants_checkpoint()))
    }

    fn checkpoint(&mut self) -> StreamResult<()> {
        let started = Instant::now();
        match self.app.exactly_once() {
            true => self.checkpoint_transactions()?,
            false => self.checkpoint_at_least_once()?,
        }
        self.record_lag();
        let m = &self.app.metrics;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        bump(&m.checkpoint_micros, micros);
        m.last_checkpoint_micros.store(micros, Ordering::Relaxed);
        let sent = self.app.registry.outputs.borrow().sent;
        m.records_out.store(sent, Ordering::Relaxed);
        let state: u64 = (self.tasks.values())
            .filter_map(|t| t.store.as_ref())
            .map(|s| s.disk_bytes())
            .sum();
        m.state_bytes.store(state, Ordering::Relaxed);
        Ok(())
    }

    /// Notes how far each owned input partition is behind its end, for the metrics.
    fn record_lag(&mut self) {
        let mut lag = std::collections::BTreeMap::new();
        for ((_, partition), task) in &self.tasks {
            for input in &task.inputs {
                match self.consumer.readable_end(&input.topic, *partition) {
                    Ok(end) => {
                        let behind = end.saturating_sub(input.position);
                        lag.insert((input.topic.clone(), *partition), behind);
                    }
                    Err(e) => tracing::debug!(topic = input.topic, partition, error = %e,
                        "no end offset for the lag metric"),
                }
            }
        }
        *self.app.metrics.lag.lock() = lag;
    }

    fn checkpoint_at_least_once(&mut self) -> StreamResult<()> {
        let number = self.app.metrics.checkpoints.load(Ordering::Relaxed) + 1;
        self.app.registry.outputs.borrow_mut().flush()?;
        self.app.crash_point.reached("outputs", number);
        let mut logged = Vec::new();
        for (tp, task) in self.tasks.iter_mut() {
            task.record_positions();
            let position = task.position();
            if let Some(store) = &mut task.store {
                (self.app.registry)
                    .flush_task(&tp.0, tp.1, store)
                    .map_err(|e| step_failure(tp, e))?;
                logged.push((tp.clone(), store.log_changes(position)?));
            }
        }
        self.app.crash_point.reached("changelog", number);
        for (tp, changes) in logged {
            if let Some(store) = self.tasks.get_mut(&tp).and_then(|t| t.store.as_mut()) {
                store.save_changes(changes)?;
            }
        }
        self.app.crash_point.reached("store", number);
        let moved: Vec<(String, u32, u64)> = (self.tasks.iter())
            .flat_map(|((_, p), t)| t.moved(*p))
            .collect();
        self.consumer
            .commit_with_metadata(&moved, CHECKPOINT_METADATA)?;
        for task in self.tasks.values_mut() {
            task.mark_committed();
        }
        self.app.crash_point.reached("commit", number);
        bump(&self.app.metrics.checkpoints, 1);
        self.last_checkpoint = Instant::now();
        self.since_checkpoint = 0;
        Ok(())
    }

    /// Checkpoints, then closes the tasks of partitions lost in a rebalance and lets them go.
    fn hand_over_revoked(&mut self) -> StreamResult<()> {
        let revoking = self.consumer.revoking();
        if revoking.is_empty() {
            return Ok(());
        }
        self.checkpoint()?;
        for (topic, p) in &revoking {
            if let Some(primary) = self.primary_of.get(topic) {
                let tp = (primary.clone(), *p);
                if let Some(task) = self.tasks.remove(&tp) {
                    close_task(&self.app.registry, &tp, task);
                }
            }
        }
        // Changelog appenders of closed tasks are dropped with their stores; output appenders
        // stay (this process may still produce to those topics).
        self.consumer.release(&revoking)?;
        Ok(())
    }

    fn start_new_tasks(&mut self) -> StreamResult<BTreeSet<TopicPartition>> {
        let mut fresh = BTreeSet::new();
        let assigned: BTreeSet<TopicPartition> = self.consumer.assignment().into_iter().collect();
        let revoking: BTreeSet<TopicPartition> = self.consumer.revoking().into_iter().collect();
        for tp in assigned.iter().cloned() {
            let Some(inputs) = self.inputs.get(&tp.0) else {
                continue; // not a primary topic: its task is its primary's
            };
            // A task starts once every input partition is this instance's.
            let ready = (inputs.iter()).all(|t| {
                let itp = (t.clone(), tp.1);
                assigned.contains(&itp) && !revoking.contains(&itp)
            });
            if self.tasks.contains_key(&tp) || !ready {
                continue;
            }
            let secondaries = inputs[1..].to_vec();
            let Some((stateful, partitions)) = self.app.registry.task_shape(&tp.0) else {
                continue;
            };
            let start = start_task(
                self.app.backend.as_ref(),
                &self.app.env,
                self.consumer.as_mut(),
                &self.app.config.group,
                &tp.0,
                &secondaries,
                tp.1,
                partitions,
                stateful,
                self.app.config.fsync,
                self.app.config.auto_offset_reset,
                self.app.exactly_once(),
            )?;
            let m = &self.app.metrics;
            if let Some(r) = &start.restore {
                bump(&m.restored_entries, r.entries);
                bump(&m.stores_rebuilt, u64::from(r.rebuilt));
                bump(&m.changes_undone, r.undone);
                let micros = u64::try_from(r.elapsed.as_micros()).unwrap_or(u64::MAX);
                bump(&m.restore_micros, micros);
                tracing::info!(
                    topic = tp.0,
                    partition = tp.1,
                    entries = r.entries,
                    undone = r.undone,
                    rebuilt = r.rebuilt,
                    elapsed_ms = r.elapsed.as_millis() as u64,
                    "state restored"
                );
            }
            bump(&m.state_resets, u64::from(start.state_reset));
            let mut task = start.task;
            // A partition paused for a task given up before is read again from its start.
            for input in &task.inputs {
                self.consumer.resume(&input.topic, tp.1);
            }
            if let Some(p) = task.producer.as_mut() {
                // A transaction lasts about a commit interval: the timeout leaves it ten.
                let interval = self.app.config.commit_interval.saturating_mul(10);
                p.set_transaction_timeout(interval.max(Duration::from_millis(
                    crate::coordinator::DEFAULT_TRANSACTION_TIMEOUT_MS as u64,
                )));
            }
            if let Some(store) = task.store.as_mut() {
                let starting: Vec<StartingInput<'_>> = (task.inputs.iter())
                    .map(|i| StartingInput {
                        topic: &i.topic,
                        position: i.position,
                    })
                    .collect();
                let isolation = self.consumer_isolation();
                let mirrors =
                    (self.app.registry).start_task(&tp.0, tp.1, store, &starting, isolation)?;
                for (input, mirror) in task.inputs.iter_mut().zip(mirrors) {
                    input.mirror_key = mirror;
                }
            }
            self.tasks.insert(tp.clone(), task);
            fresh.insert(tp);
        }
        Ok(fresh)
    }

    /// Lets every in-memory operator of every task do its wall-clock work (idle window closing).
    fn tick_operators(&mut self) -> StreamResult<()> {
        for (tp, task) in self.tasks.iter_mut() {
            let position = task.position();
            (self.app.registry)
                .tick_task(&tp.0, tp.1, position, task.store.as_mut())
                .map_err(|e| step_failure(tp, e))?;
        }
        Ok(())
    }

    fn consumer_isolation(&self) -> Isolation {
        match self.app.exactly_once() {
            true => Isolation::ReadCommitted,
            false => Isolation::ReadUncommitted,
        }
    }

    /// Processes records polled from `topic` for the task `task`: at once when it is the
    /// task's only input, else buffers them for [`merge_waiting`](Self::merge_waiting).
    fn process(
        &mut self,
        task_tp: &TopicPartition,
        topic: &str,
        fetch: crate::log::Fetch,
    ) -> StreamResult<()> {
        let Some(task) = self.tasks.get_mut(task_tp) else {
            return Ok(());
        };
        if task.inputs.len() > 1 {
            // Merged once every batch of the poll is buffered: the consumer's position of an
            // input whose batch is still to come is already past it.
            if let Some(input) = task.inputs.iter_mut().find(|i| i.topic == topic) {
                input.buffer(fetch);
            }
            return Ok(());
        }
        let registry = self.app.registry.clone();
        let mut sources = registry.sources.borrow_mut();
        let Some(source) = sources.get_mut(topic) else {
            return Ok(());
        };
        let mut outputs = registry.outputs.borrow_mut();
        // Under exactly-once, what this task's records produce joins its transaction.
        outputs.set_task(Some(task_tp));
        let mut count = 0u64;
        let mut late = 0u64;
        let input = &mut task.inputs[0];
        for r in fetch.iter() {
            let store = task.store.as_mut();
            let at = (task_tp.0.as_str(), task_tp.1);
            late += process_record(self.app, source, at, store, &mut outputs, &r)?;
            input.position = r.offset + 1;
            count += 1;
        }
        input.position = input.position.max(fetch.next_offset());
        outputs.set_task(None);
        self.count_processed(count, late);
        Ok(())
    }

    fn count_processed(&mut self, count: u64, late: u64) {
        bump(&self.app.metrics.records_in, count);
        bump(&self.app.metrics.late_records, late);
        self.since_checkpoint += count;
        self.processed += count;
    }

    /// Processes the buffered records of the inputs of `task_tp` in timestamp order while no
    /// input holds the merge back (`super::inputs`), or all of them when `drain`; then pauses
    /// the inputs that have records buffered, so that polls bring only what the merge waits for.
    fn merge(&mut self, task_tp: &TopicPartition, drain: bool) -> StreamResult<()> {
        let Some(task) = self.tasks.get_mut(task_tp) else {
            return Ok(());
        };
        let registry = self.app.registry.clone();
        let mut sources = registry.sources.borrow_mut();
        let mut outputs = registry.outputs.borrow_mut();
        outputs.set_task(Some(task_tp));
        let max_idle = self.app.config.max_task_idle;
        let (mut count, mut late) = (0u64, 0u64);
        // Empty inputs are asked once whether they hold the merge back, and again only when
        // one becomes empty; inputs do not fill up during a merge.
        let mut held = false;
        if !drain {
            for input in task.inputs.iter().filter(|i| i.is_empty()) {
                let readable = self.consumer.has_readable(&input.topic, task_tp.1)?;
                held |= input.holds_back(readable, max_idle);
            }
        }
        // Each input's source, looked up once.
        let mut by_input: Vec<Option<&mut Source>> = task.inputs.iter().map(|_| None).collect();
        for (name, source) in sources.iter_mut() {
            if let Some(i) = task.inputs.iter().position(|input| &input.topic == name) {
                by_input[i] = Some(source);
            }
        }
        while !held {
            let Some(i) = super::inputs::next_input(&task.inputs) else {
                break;
            };
            let input = &mut task.inputs[i];
            let Some(source) = by_input[i].as_deref_mut() else {
                break;
            };
            let Some(r) = input.head() else {
                break;
            };
            let offset = r.offset;
            let at = (input.topic.as_str(), task_tp.1);
            late += process_record(self.app, source, at, task.store.as_mut(), &mut outputs, &r)?;
            let input = &mut task.inputs[i];
            input.advance(offset);
            count += 1;
            if !drain && input.is_empty() {
                let readable = self.consumer.has_readable(&input.topic, task_tp.1)?;
                held = input.holds_back(readable, max_idle);
            }
        }
        drop(by_input);
        outputs.set_task(None);
        for input in &task.inputs {
            match input.is_empty() {
                true => self.consumer.resume(&input.topic, task_tp.1),
                false => self.consumer.pause(&input.topic, task_tp.1),
            }
        }
        drop((sources, outputs));
        self.count_processed(count, late);
        Ok(())
    }

    fn merges_hold_records(&self) -> bool {
        self.tasks.values().any(Task::holds_records)
    }

    /// Merges what the tasks with several inputs hold, as far as their inputs allow (or
    /// everything when `drain`).
    fn merge_waiting(&mut self, drain: bool) -> StreamResult<()> {
        let waiting: Vec<TopicPartition> = (self.tasks.iter())
            .filter(|(_, t)| t.holds_records())
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in waiting {
            self.merge(&tp, drain)?;
        }
        Ok(())
    }
}

/// Closes a task: its steps forget the partition's in-memory state, its store closes.
fn close_task(registry: &Registry, tp: &TopicPartition, task: Task) {
    let topics: Vec<&str> = task.inputs.iter().map(|i| i.topic.as_str()).collect();
    registry.close_task(&topics, tp.1);
}

/// Runs one record of `source` through its dataframe, in the task whose store is `store`, and
/// applies the error policy to a failure. Returns the late records it dropped.
fn process_record(
    app: &Application,
    source: &mut Source,
    (topic, partition): (&str, u32),
    store: Option<&mut Store>,
    outputs: &mut Outputs,
    r: &RecordView<'_>,
) -> StreamResult<u64> {
    let metrics = &app.metrics;
    let mut ctx = Ctx {
        topic,
        partition,
        offset: r.offset,
        raw_key: r.key.unwrap_or_default(),
        store,
        outputs,
        late_records: 0,
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| (source.run)(&mut ctx, r)));
    let late = ctx.late_records;
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(StepError::Fatal(e))) => return Err(e),
        Ok(Err(StepError::Deserialize(cause))) => {
            bump(&metrics.deserialize_errors, 1);
            Some(("deserialize", cause))
        }
        Ok(Err(StepError::Function(cause))) => {
            bump(&metrics.function_errors, 1);
            Some(("function", cause))
        }
        Err(payload) => {
            bump(&metrics.panics, 1);
            Some(("panic", panic_message(payload.as_ref())))
        }
    };
    if let Some((kind, cause)) = failure {
        let tp = &(topic.to_owned(), partition);
        let policy = (source.policy.clone()).unwrap_or_else(|| app.config.on_error.clone());
        match policy {
            ErrorPolicy::Fail => {
                return Err(StreamError::Record {
                    topic: tp.0.clone(),
                    partition: tp.1,
                    offset: r.offset,
                    kind,
                    cause,
                })
            }
            ErrorPolicy::Skip => bump(&metrics.skipped, 1),
            ErrorPolicy::DeadLetter(name) => {
                let dlq = (app.registry.catalog).topic_or_create(&name, TopicConfig::default())?;
                let id = outputs.register(&dlq);
                outputs.send(id, tp.1, dead_letter(r, tp, kind, &cause));
                bump(&metrics.dead_lettered, 1);
            }
        }
    }
    Ok(late)
}

/// An operator's failure outside the processing of a record.
/// Whether `e` says this instance no longer owns its tasks: it was taken for stuck, or a newer
/// instance of a task fenced it.
fn lost_tasks(e: &StreamError) -> bool {
    let log = match e {
        StreamError::Group(GroupError::PollIntervalExceeded { .. }) => return true,
        StreamError::Log(l) | StreamError::Group(GroupError::Log(l)) => l,
        StreamError::State(StateError::Log(l)) => l,
        _ => return false,
    };
    matches!(log, LogError::Fenced { .. })
}

pub(super) fn step_failure(tp: &TopicPartition, e: StepError) -> StreamError {
    match e {
        StepError::Fatal(e) => e,
        StepError::Deserialize(cause) | StepError::Function(cause) => StreamError::Setup(format!(
            "operator state of {} partition {}: {cause}",
            tp.0, tp.1
        )),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_owned()
    }
}

/// The original record with the error and its origin in headers.
fn dead_letter(r: &RecordView<'_>, tp: &TopicPartition, kind: &str, cause: &str) -> Record {
    let mut record = r.to_record();
    let mut add = |k: &str, v: String| {
        record.headers.push(Header {
            key: k.to_owned(),
            value: Some(v.into_bytes()),
        })
    };
    add("eddy.error", cause.to_owned());
    add("eddy.error.kind", kind.to_owned());
    add("eddy.source.topic", tp.0.clone());
    add("eddy.source.partition", tp.1.to_string());
    add("eddy.source.offset", r.offset.to_string());
    record
}
