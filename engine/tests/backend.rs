//! The backend seam with real parts: an application on a backend that wraps the local one
//! (counting what goes through each trait) produces what `Application::new` produces, its
//! state survives a lost store through the backend's changelog, and exactly-once is refused
//! on a backend without the local log's transactions.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use eddy::{
    AppConfig, Application, Backend, Changelog, Fetch, GroupSettings, GroupSource, Json,
    LocalBackend, Log, OutputSink, PartitionRead, PolledBatch, ProcessingGuarantee,
    ProducerIdentity, Record, State, StateResult, Str, StreamError, StreamResult, TopicCatalog,
    TopicConfig, TopicInfo, TopicPartition,
};
use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

/// Calls that went through each trait of the wrapping backend.
#[derive(Default)]
struct Counts {
    polls: Cell<u64>,
    commits: Cell<u64>,
    appended: Cell<u64>,
    sink_flushes: Cell<u64>,
    checkpoints: Cell<u64>,
    restored: Cell<u64>,
}

/// The local backend, with every call counted; `local_log` hidden when `hide_log`.
struct Counting {
    inner: LocalBackend,
    counts: Rc<Counts>,
    hide_log: bool,
}

struct CountingSource(Box<dyn GroupSource>, Rc<Counts>);
struct CountingSink(Box<dyn OutputSink>, Rc<Counts>);
struct CountingChangelog(Box<dyn Changelog>, Rc<Counts>);

impl Backend for Counting {
    fn describe(&self) -> String {
        format!("counting {}", self.inner.describe())
    }
    fn catalog(&self) -> Rc<dyn TopicCatalog> {
        self.inner.catalog()
    }
    fn group_source(&self, settings: &GroupSettings) -> StreamResult<Box<dyn GroupSource>> {
        let inner = self.inner.group_source(settings)?;
        Ok(Box::new(CountingSource(inner, self.counts.clone())))
    }
    fn output_sink(&self, fsync: bool) -> StreamResult<Box<dyn OutputSink>> {
        let inner = self.inner.output_sink(fsync)?;
        Ok(Box::new(CountingSink(inner, self.counts.clone())))
    }
    fn changelog(
        &self,
        topic: &TopicInfo,
        partition: u32,
        transaction: Option<ProducerIdentity>,
    ) -> StreamResult<Box<dyn Changelog>> {
        let inner = self.inner.changelog(topic, partition, transaction)?;
        Ok(Box::new(CountingChangelog(inner, self.counts.clone())))
    }
    fn local_log(&self) -> Option<&Log> {
        match self.hide_log {
            true => None,
            false => self.inner.local_log(),
        }
    }
}

impl GroupSource for CountingSource {
    fn subscribe(&mut self, topics: &[&str]) -> StreamResult<()> {
        self.0.subscribe(topics)
    }
    fn poll(&mut self, wait: Duration) -> StreamResult<Vec<PolledBatch>> {
        self.1.polls.set(self.1.polls.get() + 1);
        self.0.poll(wait)
    }
    fn assignment(&self) -> Vec<TopicPartition> {
        self.0.assignment()
    }
    fn revoking(&self) -> Vec<TopicPartition> {
        self.0.revoking()
    }
    fn release(&mut self, partitions: &[TopicPartition]) -> StreamResult<()> {
        self.0.release(partitions)
    }
    fn committed_with_metadata(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> StreamResult<Option<(u64, String)>> {
        self.0.committed_with_metadata(topic, partition)
    }
    fn commit_with_metadata(
        &mut self,
        offsets: &[(String, u32, u64)],
        metadata: &str,
    ) -> StreamResult<()> {
        self.1.commits.set(self.1.commits.get() + 1);
        self.0.commit_with_metadata(offsets, metadata)
    }
    fn offset_bounds(&mut self, topic: &str, partition: u32) -> StreamResult<(u64, u64)> {
        self.0.offset_bounds(topic, partition)
    }
    fn seek(&mut self, topic: &str, partition: u32, offset: u64) -> StreamResult<()> {
        self.0.seek(topic, partition, offset)
    }
    fn pause(&mut self, topic: &str, partition: u32) {
        self.0.pause(topic, partition)
    }
    fn resume(&mut self, topic: &str, partition: u32) {
        self.0.resume(topic, partition)
    }
    fn has_readable(&mut self, topic: &str, partition: u32) -> StreamResult<bool> {
        self.0.has_readable(topic, partition)
    }
    fn readable_end(&mut self, topic: &str, partition: u32) -> StreamResult<u64> {
        self.0.readable_end(topic, partition)
    }
    fn caught_up(&mut self) -> StreamResult<bool> {
        self.0.caught_up()
    }
    fn leave_and_rejoin(&mut self) {
        self.0.leave_and_rejoin()
    }
    fn close(self: Box<Self>) -> StreamResult<()> {
        self.0.close()
    }
}

impl OutputSink for CountingSink {
    fn append(&mut self, topic: &str, partition: u32, records: &[Record]) -> StreamResult<()> {
        self.1
            .appended
            .set(self.1.appended.get() + records.len() as u64);
        self.0.append(topic, partition, records)
    }
    fn flush(&mut self) -> StreamResult<()> {
        self.1.sink_flushes.set(self.1.sink_flushes.get() + 1);
        self.0.flush()
    }
    fn release(&mut self) {
        self.0.release()
    }
}

impl PartitionRead for CountingChangelog {
    fn bounds(&mut self) -> StateResult<(u64, u64)> {
        self.0.bounds()
    }
    fn read(&mut self, offset: u64, max_records: usize, max_bytes: usize) -> StateResult<Fetch> {
        let fetch = self.0.read(offset, max_records, max_bytes)?;
        self.1
            .restored
            .set(self.1.restored.get() + fetch.len() as u64);
        Ok(fetch)
    }
}

impl Changelog for CountingChangelog {
    fn topic(&self) -> &str {
        self.0.topic()
    }
    fn partition(&self) -> u32 {
        self.0.partition()
    }
    fn append_checkpoint(&self, records: &[Record]) -> StateResult<u64> {
        self.1.checkpoints.set(self.1.checkpoints.get() + 1);
        self.0.append_checkpoint(records)
    }
    fn append_now(&self, records: &[Record], whole: bool) -> StateResult<u64> {
        self.0.append_now(records, whole)
    }
    fn flush(&self) -> StateResult<()> {
        self.0.flush()
    }
    fn restored(&mut self) {
        self.0.restored()
    }
}

fn produce(dir: &Path, from: u64, to: u64) {
    let log = Log::open(dir).unwrap();
    let topic = log
        .topic_or_create("words", TopicConfig::with_partitions(2))
        .unwrap();
    let records = (from..to).map(|i| Record::keyed(format!("w{}", i % 5), i.to_string()));
    topic.append(records).unwrap();
}

/// A running count per key, on `backend` (the local one when `None`).
fn counter(dir: &Path, group: &str, backend: Option<Counting>) -> Application {
    let mut config = AppConfig::new(dir, group);
    config.commit_interval = Duration::from_millis(20);
    let app = match backend {
        Some(b) => Application::with_backend(config, b).unwrap(),
        None => Application::new(config).unwrap(),
    };
    let words = app.topic::<Str, Str>("words").unwrap();
    let counts = app
        .topic::<Str, Json<u64>>(&format!("{group}-counts"))
        .unwrap();
    app.dataframe(&words)
        .stateful_map(|_, state: &mut State<'_>| {
            let n = state.get_or::<u64>("n", 0) + 1;
            state.set("n", &n);
            n
        })
        .to_topic(&counts);
    app
}

/// `(key, count)` of every record of `topic`, in partition then offset order.
fn counts_of(dir: &Path, topic: &str) -> Vec<(String, u64)> {
    let t = Log::open(dir).unwrap().topic(topic).unwrap();
    let mut out = Vec::new();
    for p in 0..t.partitions() {
        for (_, r) in read_all(&mut t.reader(p).unwrap(), 0) {
            let key = String::from_utf8(r.key.unwrap()).unwrap();
            out.push((key, serde_json::from_slice(&r.value.unwrap()).unwrap()));
        }
    }
    out
}

fn counting(dir: &Path, counts: &Rc<Counts>, hide_log: bool) -> Counting {
    Counting {
        inner: LocalBackend::new(Log::open(dir).unwrap()),
        counts: counts.clone(),
        hide_log,
    }
}

#[test]
fn an_application_on_a_wrapping_backend_runs_everything_through_it_and_matches_the_local_one() {
    let dir = tempfile::tempdir().unwrap();
    produce(dir.path(), 0, 300);
    counter(dir.path(), "local", None).run_until_idle().unwrap();

    let counts = Rc::new(Counts::default());
    let mut app = counter(
        dir.path(),
        "wrapped",
        Some(counting(dir.path(), &counts, false)),
    );
    app.run_until_idle().unwrap();
    drop(app);
    assert_eq!(
        counts_of(dir.path(), "wrapped-counts"),
        counts_of(dir.path(), "local-counts")
    );
    assert_eq!(
        counts.appended.get(),
        300,
        "every output went through the sink"
    );
    assert!(counts.polls.get() > 0 && counts.commits.get() > 0);
    assert!(counts.sink_flushes.get() > 0 && counts.checkpoints.get() > 0);

    // The store is lost: it comes back from the backend's changelog, and counting goes on.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    produce(dir.path(), 300, 400);
    let again = Rc::new(Counts::default());
    let mut app = counter(
        dir.path(),
        "wrapped",
        Some(counting(dir.path(), &again, false)),
    );
    app.run_until_idle().unwrap();
    drop(app);
    assert!(
        again.restored.get() > 0,
        "the state was read back through the changelog"
    );
    let last: std::collections::BTreeMap<String, u64> = counts_of(dir.path(), "wrapped-counts")
        .into_iter()
        .collect();
    assert_eq!(last.values().sum::<u64>(), 400, "{last:?}");
}

#[test]
fn exactly_once_is_refused_on_a_backend_without_the_local_log() {
    let dir = tempfile::tempdir().unwrap();
    produce(dir.path(), 0, 10);
    let counts = Rc::new(Counts::default());
    let mut config = AppConfig::new(dir.path(), "eos");
    config.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
    let app = Application::with_backend(config, counting(dir.path(), &counts, true)).unwrap();
    let words = app.topic::<Str, Str>("words").unwrap();
    let out = app.topic::<Str, Str>("out").unwrap();
    app.dataframe(&words).to_topic(&out);
    let mut app = app;
    match app.run_until_idle() {
        Err(StreamError::Setup(m)) => {
            assert!(
                m.contains("exactly-once") && m.contains("counting local log"),
                "{m}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(counts.appended.get(), 0, "nothing was produced");
}
