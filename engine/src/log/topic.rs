//! The data directory and its topics: creating, opening, listing and deleting topics, handing out
//! one shared appender per partition, and key-based partitioning.
//!
//! Layout: `DATA_DIR/topics/<topic>/topic.json` (name and config) and
//! `DATA_DIR/topics/<topic>/<partition>/` (segments, `tail`, `lock`). A topic appears by one rename
//! of a fully prepared directory and disappears by one rename before removal, so a crash leaves
//! either a whole topic or none. Names are validated so that none can leave the data directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::config::{CleanupPolicy, TopicConfig};
use super::error::{IoContext, LogError, LogResult};
use super::partitioner::partition_for_key;
use super::reader::PartitionReader;
use super::record::Record;
use super::segment::{create_dirs_durably, list_segments, sync_dir};
use super::tail::{Tail, TailFile};
use super::writer::{take_lock, PartitionWriter};

/// Checks a topic or group name against Kafka's rules: 1 to 249 characters from
/// `[a-zA-Z0-9._-]`, and neither `.` nor `..`.
pub fn validate_name(name: &str) -> LogResult<()> {
    let bad = |reason| {
        Err(LogError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > 249 {
        return bad("must be at most 249 characters");
    }
    if name == "." || name == ".." {
        return bad("must not be '.' or '..'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("may contain only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct TopicMeta {
    /// Format of the topic's files ([`TOPIC_FORMAT`]); absent in topics of format 1.
    #[serde(default = "format_one")]
    format: u64,
    name: String,
    config: TopicConfig,
}

/// Format of a topic's `topic.json`, segments, indexes and tail, written into `topic.json`: the
/// newest this build reads. Format 1: the layout in `docs/log-format.md` without transactions;
/// format 2: partitions may hold transactional and control batches (which a format-1 build would
/// return as records). A topic stays in format 1 until its first transactional batch.
pub const TOPIC_FORMAT: u64 = 2;

/// The format of a topic no transactional batch was appended to.
const PLAIN_TOPIC_FORMAT: u64 = 1;

/// Format of a data directory's layout (`topics/`, `groups/`, `state/`), in its `eddy-format`
/// file.
pub const DATA_DIR_FORMAT: u64 = 1;

fn format_one() -> u64 {
    1
}

/// Refuses data of a newer format than this build reads.
fn check_format(path: &Path, what: &'static str, found: u64, supported: u64) -> LogResult<()> {
    match found > supported {
        true => Err(LogError::UnsupportedFormat {
            path: path.to_owned(),
            what,
            found,
            supported,
        }),
        false => Ok(()),
    }
}

/// Checks the data directory's `eddy-format` file, writing it when `write` and it is missing
/// (a directory without one is of format 1).
fn check_data_dir_format(dir: &Path, write: bool) -> LogResult<()> {
    let path = dir.join("eddy-format");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let found = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("eddy data directory format "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| LogError::Corrupt {
                    path: path.clone(),
                    position: 0,
                    reason: "expected `eddy data directory format N`".into(),
                })?;
            check_format(dir, "data directory", found, DATA_DIR_FORMAT)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if write {
                let text = format!(
                    "eddy data directory format {DATA_DIR_FORMAT}\nwritten by eddy {}\n",
                    env!("CARGO_PKG_VERSION")
                );
                // Processes opening a new directory at once each write their own temporary
                // file; the renames all put the same text in place.
                let tmp = dir.join(format!(
                    "eddy-format.tmp-{}-{}",
                    std::process::id(),
                    unique()
                ));
                std::fs::write(&tmp, text.as_bytes()).ctx("write", &tmp)?;
                std::fs::File::open(&tmp)
                    .and_then(|f| f.sync_all())
                    .ctx("fsync", &tmp)?;
                std::fs::rename(&tmp, &path).ctx("rename", &path)?;
                sync_dir(dir)?;
            }
            Ok(())
        }
        Err(e) => Err(e).ctx("read", &path),
    }
}

struct LogInner {
    dir: PathBuf,
    /// Opened with [`Log::open_read_only`]: every change is refused.
    read_only: bool,
    writers: Mutex<HashMap<(String, u32), Weak<PartitionWriter>>>,
}

/// A data directory of topics. Cheap to clone; all clones share the partition appenders.
#[derive(Clone)]
pub struct Log {
    inner: Arc<LogInner>,
}

impl Log {
    /// Opens (creating if needed) the data directory `dir`.
    pub fn open(dir: impl AsRef<Path>) -> LogResult<Log> {
        let dir = dir.as_ref().to_owned();
        let topics = dir.join("topics");
        create_dirs_durably(&topics)?;
        check_data_dir_format(&dir, true)?;
        remove_abandoned_staging(&topics)?;
        Ok(Log {
            inner: Arc::new(LogInner {
                dir,
                read_only: false,
                writers: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Opens the data directory `dir` for reading without creating or tidying anything: a
    /// missing directory reads as one without topics. For tools that only look: creating,
    /// altering or deleting a topic and opening an appender are refused with `ReadOnly`.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Log {
        Log {
            inner: Arc::new(LogInner {
                dir: dir.as_ref().to_owned(),
                read_only: true,
                writers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn refuse_if_read_only(&self, op: &'static str) -> LogResult<()> {
        match self.inner.read_only {
            true => Err(LogError::ReadOnly {
                dir: self.inner.dir.clone(),
                op,
            }),
            false => Ok(()),
        }
    }

    fn topics_dir(&self) -> PathBuf {
        self.inner.dir.join("topics")
    }

    fn topic_dir(&self, name: &str) -> LogResult<PathBuf> {
        validate_name(name)?;
        Ok(self.topics_dir().join(name))
    }

    /// Creates a topic. Fails with `TopicExists` if it is already there.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> LogResult<Topic> {
        self.refuse_if_read_only("create a topic")?;
        config.validate()?;
        let dir = self.topic_dir(name)?;
        if dir.exists() {
            return Err(LogError::TopicExists(name.to_owned()));
        }
        let staging =
            self.topics_dir()
                .join(format!("~creating-{}-{}", std::process::id(), unique()));
        std::fs::create_dir(&staging).ctx("create topic directory", &staging)?;
        write_meta(
            &staging,
            &TopicMeta {
                format: PLAIN_TOPIC_FORMAT,
                name: name.to_owned(),
                config: config.clone(),
            },
        )?;
        let zero = Tail {
            active_base: 0,
            position: 0,
            next_offset: 0,
            last_stable: Some(0),
        };
        for p in 0..config.partitions {
            let pdir = staging.join(p.to_string());
            std::fs::create_dir(&pdir).ctx("create partition directory", &pdir)?;
            TailFile::open(&pdir.join("tail"), zero)?
                .set_closed(true)
                .ctx("fsync tail", &pdir)?;
            sync_dir(&pdir)?;
        }
        sync_dir(&staging)?;
        if let Err(e) = std::fs::rename(&staging, &dir) {
            let _ = std::fs::remove_dir_all(&staging);
            return if dir.exists() {
                Err(LogError::TopicExists(name.to_owned()))
            } else {
                Err(e).ctx("rename", &dir)
            };
        }
        sync_dir(&self.topics_dir())?;
        self.topic(name)
    }

    /// Opens an existing topic.
    pub fn topic(&self, name: &str) -> LogResult<Topic> {
        let dir = self.topic_dir(name)?;
        let meta = match read_meta(&dir) {
            Err(LogError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(LogError::TopicNotFound {
                    topic: name.to_owned(),
                    dir: self.inner.dir.clone(),
                })
            }
            other => other?,
        };
        meta.config.validate()?;
        Ok(Topic {
            log: self.clone(),
            name: name.to_owned(),
            config: meta.config,
            dir,
            next_sticky: Arc::new(AtomicU32::new(0)),
            appenders: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Changes settings of an existing topic (`key=value`, as [`TopicConfig::set`] takes them;
    /// `partitions` is fixed) and returns the new settings. `topic.json` is replaced in one
    /// rename, so a crash leaves the old or the new settings. Partition appenders read the
    /// settings when they open: those already open (in any process) keep the old ones until
    /// they are reopened.
    pub fn alter_topic_config(&self, name: &str, settings: &[&str]) -> LogResult<TopicConfig> {
        self.refuse_if_read_only("alter a topic")?;
        let topic = self.topic(name)?;
        let _meta = lock_meta(&topic.dir)?;
        let format = read_meta(&topic.dir)?.format;
        let mut config = topic.config.clone();
        for setting in settings {
            if setting.split('=').next().map(str::trim) == Some("partitions") {
                return Err(LogError::InvalidConfig(format!(
                    "{setting:?}: the partition count of topic {name:?} is fixed at creation"
                )));
            }
            config.set(setting)?;
        }
        if topic.config.cleanup_policy == CleanupPolicy::Compact
            && config.cleanup_policy == CleanupPolicy::Delete
        {
            // Readers of a delete-policy topic report a missing offset range as a lost segment;
            // compacted segments have such ranges by design.
            return Err(LogError::InvalidConfig(format!(
                "topic {name:?} is compacted: its segments have offset gaps, so it cannot become \
                 cleanup.policy=delete (copy it to a new topic instead)"
            )));
        }
        write_meta(
            &topic.dir,
            &TopicMeta {
                format,
                name: name.to_owned(),
                config: config.clone(),
            },
        )?;
        Ok(config)
    }

    /// Opens a topic, creating it with `config` if it does not exist.
    pub fn topic_or_create(&self, name: &str, config: TopicConfig) -> LogResult<Topic> {
        match self.topic(name) {
            Err(LogError::TopicNotFound { .. }) => match self.create_topic(name, config) {
                Err(LogError::TopicExists(_)) => self.topic(name),
                other => other,
            },
            other => other,
        }
    }

    /// Names of all topics, sorted.
    pub fn list_topics(&self) -> LogResult<Vec<String>> {
        let dir = self.topics_dir();
        let mut names = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            other => other.ctx("list", &dir)?,
        };
        for entry in entries {
            let entry = entry.ctx("list", &dir)?;
            if let Some(name) = entry.file_name().to_str() {
                if validate_name(name).is_ok() && entry.path().join("topic.json").exists() {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Deletes a topic and all its data. Refused while any of its partitions has an appender.
    /// Works on a topic whose `topic.json` is damaged. Consumer groups keep their committed
    /// offsets for it: [`Groups::delete_topic`](crate::Groups::delete_topic) removes those too.
    pub fn delete_topic(&self, name: &str) -> LogResult<()> {
        self.delete_topic_with(name, || Ok::<(), LogError>(()))
    }

    /// Deletes a topic as [`delete_topic`](Self::delete_topic) does, running `prepare` once every
    /// partition's lock is held and before anything is removed; an error from `prepare` leaves the
    /// topic as it was.
    pub fn delete_topic_with<E: From<LogError>>(
        &self,
        name: &str,
        prepare: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        self.refuse_if_read_only("delete a topic")?;
        let dir = self.topic_dir(name)?;
        if !dir.join("topic.json").exists() {
            return Err(LogError::TopicNotFound {
                topic: name.to_owned(),
                dir: self.inner.dir.clone(),
            }
            .into());
        }
        // The partitions on disk, not those `topic.json` names: it may be the damaged part.
        let mut partitions: Vec<u32> = std::fs::read_dir(&dir)
            .ctx("list", &dir)?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        partitions.sort_unstable();
        let mut locks = Vec::new();
        for p in partitions {
            let path = dir.join(p.to_string()).join("lock");
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .ctx("open lock", &path)?;
            // A reader checking for an appender holds the lock shared for a moment.
            take_lock(&file, name, p, &path)?;
            locks.push(file);
        }
        prepare()?;
        let doomed =
            self.topics_dir()
                .join(format!("~deleting-{}-{}", std::process::id(), unique()));
        std::fs::rename(&dir, &doomed).ctx("rename", &dir)?;
        sync_dir(&self.topics_dir())?;
        drop(locks);
        Ok(std::fs::remove_dir_all(&doomed).ctx("remove", &doomed)?)
    }
}

/// Writes `dir/topic.json` crash-atomically: a temporary file, fsynced, renamed over it.
/// Holds the topic's `meta.lock`, taken around every rewrite of `topic.json`.
struct MetaLock(#[allow(dead_code)] std::fs::File);

fn lock_meta(dir: &Path) -> LogResult<MetaLock> {
    let path = dir.join("meta.lock");
    let file = (std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true))
    .open(&path)
    .ctx("open lock", &path)?;
    file.lock().ctx("lock", &path)?;
    Ok(MetaLock(file))
}

/// The topic's `topic.json`. Its version is checked before the rest is parsed: a newer one may
/// not parse.
fn read_meta(dir: &Path) -> LogResult<TopicMeta> {
    #[derive(Deserialize)]
    struct FormatOnly {
        #[serde(default = "format_one")]
        format: u64,
    }
    let path = dir.join("topic.json");
    let bytes = std::fs::read(&path).ctx("read", &path)?;
    if let Ok(v) = serde_json::from_slice::<FormatOnly>(&bytes) {
        check_format(dir, "topic", v.format, TOPIC_FORMAT)?;
    }
    serde_json::from_slice(&bytes).map_err(|e| LogError::Corrupt {
        path,
        position: e.column() as u64,
        reason: format!("topic metadata does not parse: {e}"),
    })
}

/// Records in `topic.json` (of the topic at `dir`) that its partitions hold transactional
/// batches (format 2), before the first one is written; nothing when it says so already.
pub(crate) fn mark_transactional(dir: &Path) -> LogResult<()> {
    let _meta = lock_meta(dir)?;
    let meta = read_meta(dir)?;
    if meta.format >= TOPIC_FORMAT {
        return Ok(());
    }
    write_meta(
        dir,
        &TopicMeta {
            format: TOPIC_FORMAT,
            ..meta
        },
    )
}

fn write_meta(dir: &Path, meta: &TopicMeta) -> LogResult<()> {
    let json =
        serde_json::to_vec_pretty(meta).map_err(|e| LogError::InvalidConfig(e.to_string()))?;
    let temporary = dir.join("topic.json.tmp");
    std::fs::write(&temporary, json).ctx("write", &temporary)?;
    std::fs::File::open(&temporary)
        .and_then(|f| f.sync_all())
        .ctx("fsync", &temporary)?;
    let meta_path = dir.join("topic.json");
    std::fs::rename(&temporary, &meta_path).ctx("rename", &meta_path)?;
    sync_dir(dir)
}

/// Removes `~creating-PID-*` and `~deleting-PID-*` directories left by processes that died
/// half-way through creating or deleting a topic.
fn remove_abandoned_staging(topics: &Path) -> LogResult<()> {
    for entry in std::fs::read_dir(topics).ctx("list", topics)? {
        let path = entry.ctx("list", topics)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(rest) = name
            .strip_prefix("~creating-")
            .or_else(|| name.strip_prefix("~deleting-"))
        else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !Path::new("/proc").join(pid).exists() {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {}
                // Its creator finished (renamed it into place) and exited after we listed it,
                // or another process removed it first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).ctx("remove abandoned", &path),
            }
        }
    }
    Ok(())
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Sizes and offsets of one partition, for `describe`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    /// Partition number.
    pub partition: u32,
    /// First stored offset.
    pub log_start_offset: u64,
    /// Next offset to be written.
    pub end_offset: u64,
    /// Number of segments.
    pub segments: usize,
    /// Bytes of `.log` files.
    pub bytes: u64,
}

/// A topic of a [`Log`]. Cheap to clone.
#[derive(Clone)]
pub struct Topic {
    log: Log,
    name: String,
    config: TopicConfig,
    dir: PathBuf,
    next_sticky: Arc<AtomicU32>,
    /// The appenders `append` opened through this handle and its clones, kept until the last of
    /// them drops, so that appends take the partition's lock and run recovery once.
    appenders: Arc<Mutex<HashMap<u32, Arc<PartitionWriter>>>>,
}

impl Topic {
    /// Topic name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Topic settings.
    pub fn config(&self) -> &TopicConfig {
        &self.config
    }

    /// Number of partitions.
    pub fn partitions(&self) -> u32 {
        self.config.partitions
    }

    fn partition_dir(&self, partition: u32) -> LogResult<PathBuf> {
        if partition >= self.config.partitions {
            return Err(LogError::PartitionNotFound {
                topic: self.name.clone(),
                partition,
                partitions: self.config.partitions,
            });
        }
        Ok(self.dir.join(partition.to_string()))
    }

    /// The partition's appender, shared by every caller in this process; opening it takes the
    /// partition's lock (`Locked` if another process holds it) and runs recovery. The lock is
    /// released when the last handle to the appender is dropped.
    ///
    /// A child process forked while an appender is open holds a copy of its lock until the
    /// child calls `exec` (file locks belong to open files, which `fork` shares): a program that
    /// spawns processes while reopening appenders in another thread can see a passing `Locked`.
    /// Keep appenders open (as `append` does) rather than reopening them.
    pub fn writer(&self, partition: u32) -> LogResult<Arc<PartitionWriter>> {
        self.open_writer(partition, false)
    }

    fn open_writer(&self, partition: u32, lend: bool) -> LogResult<Arc<PartitionWriter>> {
        self.log.refuse_if_read_only("append")?;
        let dir = self.partition_dir(partition)?;
        let mut writers = self.log.inner.writers.lock();
        let key = (self.name.clone(), partition);
        if let Some(w) = writers.get(&key).and_then(Weak::upgrade) {
            return Ok(w);
        }
        let w = Arc::new(PartitionWriter::open(
            &self.name,
            partition,
            &dir,
            self.config.clone(),
            lend,
        )?);
        writers.insert(key, Arc::downgrade(&w));
        Ok(w)
    }

    /// The appender of a partition, lending it between appends
    /// ([`WriterCore::share`](super::WriterCore::share)): appenders of several processes take
    /// turns on it. Opening it, another process opening it too waits for this one (as for a
    /// lending appender's call), instead of only 200 ms.
    pub fn lending_writer(&self, partition: u32) -> LogResult<Arc<PartitionWriter>> {
        let w = self.open_writer(partition, true)?;
        w.share();
        Ok(w)
    }

    /// A new reader of the partition.
    pub fn reader(&self, partition: u32) -> LogResult<PartitionReader> {
        let contiguous = self.config.cleanup_policy == CleanupPolicy::Delete;
        PartitionReader::open(
            &self.name,
            partition,
            &self.partition_dir(partition)?,
            contiguous,
        )
    }

    /// The partition a record with `key` goes to: Kafka's murmur2 for keys; keyless records of one
    /// append go together to the next partition in turn.
    pub fn partition_for(&self, key: Option<&[u8]>) -> u32 {
        match key {
            Some(k) => partition_for_key(k, self.config.partitions),
            None => self.next_sticky.load(Ordering::Relaxed) % self.config.partitions,
        }
    }

    /// The appender of `partition` kept by this handle for `append`.
    fn appender(&self, partition: u32) -> LogResult<Arc<PartitionWriter>> {
        let mut appenders = self.appenders.lock();
        if let Some(w) = appenders.get(&partition) {
            return Ok(w.clone());
        }
        let w = self.writer(partition)?;
        appenders.insert(partition, w.clone());
        Ok(w)
    }

    /// Appends records, each to the partition of its key. Returns `(partition, offset)` per record,
    /// in input order. Partitions are appended one after another: an error (say, a partition locked
    /// by another process) can leave the records of earlier partitions appended. The appenders it
    /// opens stay open (holding their partitions' locks) until this handle and its clones are
    /// dropped, as a producer holds its connections.
    pub fn append(&self, records: impl IntoIterator<Item = Record>) -> LogResult<Vec<(u32, u64)>> {
        let n = self.config.partitions as usize;
        let mut buckets: Vec<Vec<Record>> = (0..n).map(|_| Vec::new()).collect();
        let mut placement = Vec::new();
        for r in records {
            let p = self.partition_for(r.key.as_deref()) as usize;
            if let Some(bucket) = buckets.get_mut(p) {
                placement.push((p as u32, bucket.len() as u64));
                bucket.push(r);
            }
        }
        self.next_sticky.fetch_add(1, Ordering::Relaxed);
        let mut bases = vec![0u64; n];
        for (p, bucket) in buckets.iter().enumerate() {
            if !bucket.is_empty() {
                if let Some(base) = bases.get_mut(p) {
                    *base = self.appender(p as u32)?.append(bucket)?.base_offset;
                }
            }
        }
        Ok(placement
            .into_iter()
            .map(|(p, i)| (p, bases.get(p as usize).copied().unwrap_or(0) + i))
            .collect())
    }

    /// Offsets and sizes of every partition.
    pub fn describe(&self) -> LogResult<Vec<PartitionInfo>> {
        (0..self.config.partitions)
            .map(|p| {
                let dir = self.partition_dir(p)?;
                let mut reader = self.reader(p)?;
                let segments = list_segments(&dir)?;
                let mut bytes = 0;
                for base in &segments {
                    let path = super::segment::segment_path(&dir, *base, "log");
                    bytes += std::fs::metadata(&path).map_or(0, |m| m.len());
                }
                Ok(PartitionInfo {
                    partition: p,
                    log_start_offset: reader.log_start_offset()?,
                    end_offset: reader.end_offset(),
                    segments: segments.len(),
                    bytes,
                })
            })
            .collect()
    }
}
