//! What the console shows, read from the data directory: topics and their partitions, pages of
//! messages, consumer groups with lag, reset plans. Everything here is synchronous and bounded:
//! a page holds at most [`MAX_PAGE`] records, a key filter scans at most [`MAX_SCAN`] records,
//! and values are cut to [`MAX_VALUE_BYTES`]. Names from requests are checked as the log checks
//! topic names before any path is built from them.

use std::collections::BTreeMap;

use eddy::{
    validate_name, GroupDescription, Groups, Isolation, Log, LogError, PartitionReader, RecordView,
    ResetRow, ResetScope, ResetTarget, Topic,
};
use serde::Serialize;

use crate::render::{render_bytes, Rendered};

/// Most records on one page of messages.
pub const MAX_PAGE: usize = 500;
/// Most records a key filter looks at for one page.
pub const MAX_SCAN: u64 = 200_000;
/// Values and keys longer than this are cut (the record's length is still shown).
pub const MAX_VALUE_BYTES: usize = 4096;

/// An error of the console's reads, with what was asked for.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// A name or parameter of the request is not valid.
    #[error("{0}")]
    BadRequest(String),
    /// The topic, partition or group does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The console was started read-only.
    #[error("the console is read-only: start it with --allow-writes to change offsets")]
    ReadOnly,
    /// Reading the data directory failed.
    #[error("{0}")]
    Log(LogError),
    /// A consumer-group operation failed.
    #[error("{0}")]
    Group(eddy::GroupError),
}

impl From<LogError> for InspectError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::TopicNotFound { .. } | LogError::PartitionNotFound { .. } => {
                InspectError::NotFound(e.to_string())
            }
            LogError::InvalidName { .. } | LogError::OffsetOutOfRange { .. } => {
                InspectError::BadRequest(e.to_string())
            }
            other => InspectError::Log(other),
        }
    }
}

impl From<eddy::GroupError> for InspectError {
    fn from(e: eddy::GroupError) -> Self {
        match e {
            eddy::GroupError::Log(l) => l.into(),
            eddy::GroupError::GroupNotFound(_) => InspectError::NotFound(e.to_string()),
            other => InspectError::Group(other),
        }
    }
}

/// Result of the console's reads.
pub type InspectResult<T> = Result<T, InspectError>;

/// Checks a topic or group name from a request.
pub fn checked_name(kind: &str, name: &str) -> InspectResult<()> {
    validate_name(name).map_err(|e| InspectError::BadRequest(format!("{kind} name: {e}")))
}

/// One partition of a topic.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionView {
    /// Partition number.
    pub partition: u32,
    /// First stored offset.
    pub log_start_offset: u64,
    /// Next offset to be written.
    pub log_end_offset: u64,
    /// End of what committed readers see (below the end while a transaction is open).
    pub last_stable_offset: u64,
    /// Segments on disk.
    pub segments: usize,
    /// Bytes of its segment files.
    pub bytes: u64,
}

/// A topic with its settings and partitions.
#[derive(Clone, Debug, Serialize)]
pub struct TopicView {
    /// Topic name.
    pub name: String,
    /// Settings (`retention.ms`, `cleanup.policy`, `durability`, ...).
    pub settings: BTreeMap<String, String>,
    /// Every partition.
    pub partitions: Vec<PartitionView>,
}

impl TopicView {
    /// Records stored (end minus start, summed over partitions).
    pub fn records(&self) -> u64 {
        (self.partitions.iter())
            .map(|p| p.log_end_offset - p.log_start_offset.min(p.log_end_offset))
            .sum()
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.partitions.iter().map(|p| p.bytes).sum()
    }
}

/// `describe` of each of `names`, leaving out those deleted since they were listed.
pub fn each_present<T>(
    names: Vec<String>,
    mut describe: impl FnMut(&str) -> InspectResult<T>,
) -> InspectResult<Vec<T>> {
    let mut found = Vec::with_capacity(names.len());
    for name in &names {
        match describe(name) {
            Ok(t) => found.push(t),
            Err(InspectError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}

/// Topic names, sorted.
pub fn topic_names(log: &Log) -> InspectResult<Vec<String>> {
    let mut names = log.list_topics()?;
    names.sort();
    Ok(names)
}

/// `name` with its partitions' offsets and sizes.
pub fn topic(log: &Log, name: &str) -> InspectResult<TopicView> {
    checked_name("topic", name)?;
    let topic = log.topic(name)?;
    let mut partitions = Vec::new();
    for info in topic.describe()? {
        let mut committed = topic.reader(info.partition)?;
        committed.set_isolation(Isolation::ReadCommitted);
        partitions.push(PartitionView {
            partition: info.partition,
            log_start_offset: info.log_start_offset,
            log_end_offset: info.end_offset,
            last_stable_offset: committed.readable_end()?,
            segments: info.segments,
            bytes: info.bytes,
        });
    }
    let settings = (topic.config().settings().into_iter())
        .map(|(k, v)| (k.to_owned(), v.to_string()))
        .collect();
    Ok(TopicView {
        name: topic.name().to_owned(),
        settings,
        partitions,
    })
}

/// The sum of `name`'s partitions' end offsets (what records/s follows): only the published
/// tails are read, no segment listing.
pub fn end_total(log: &Log, name: &str) -> InspectResult<u64> {
    checked_name("topic", name)?;
    let topic = log.topic(name)?;
    let mut total = 0;
    for p in 0..topic.partitions() {
        total += topic.reader(p)?.end_offset();
    }
    Ok(total)
}

/// Where a page of messages starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The last records of each partition (the newest page).
    End,
    /// The first stored records.
    Beginning,
    /// This offset in each selected partition.
    Offset(u64),
    /// The first record at or after this time (ms since the epoch).
    Timestamp(i64),
}

/// A request for a page of messages.
#[derive(Clone, Debug)]
pub struct MessageQuery {
    /// One partition, or all.
    pub partition: Option<u32>,
    /// Where to start.
    pub start: Start,
    /// Most records (capped at [`MAX_PAGE`]).
    pub limit: usize,
    /// Only records whose key, as text, is this.
    pub key: Option<String>,
}

/// One record as the console shows it.
#[derive(Clone, Debug, Serialize)]
pub struct MessageView {
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: u64,
    /// Timestamp, ms since the epoch.
    pub timestamp: i64,
    /// Key (`None`: no key).
    pub key: Option<Rendered>,
    /// Value (`None`: a tombstone).
    pub value: Option<Rendered>,
    /// Headers: name and value (`None`: null).
    pub headers: Vec<(String, Option<Rendered>)>,
}

impl MessageView {
    /// `record` of `partition`, rendered for display.
    pub fn of(partition: u32, record: &RecordView<'_>) -> Self {
        MessageView {
            partition,
            offset: record.offset,
            timestamp: record.timestamp,
            key: record.key.map(|k| render_bytes(k, MAX_VALUE_BYTES)),
            value: record.value.map(|v| render_bytes(v, MAX_VALUE_BYTES)),
            headers: (record.headers())
                .map(|(k, v)| (k.to_owned(), v.map(|v| render_bytes(v, MAX_VALUE_BYTES))))
                .collect(),
        }
    }
}

/// A page of messages and where each partition's next page starts.
#[derive(Clone, Debug, Serialize)]
pub struct MessagePage {
    /// Records in offset order for one partition; for several, by timestamp (then partition
    /// and offset).
    pub messages: Vec<MessageView>,
    /// Per partition, the offset after the last record looked at.
    pub next_offsets: BTreeMap<u32, u64>,
    /// Records a key filter looked at (and skipped or kept).
    pub scanned: u64,
    /// Whether a key filter stopped at [`MAX_SCAN`] before filling the page.
    pub scan_capped: bool,
}

fn selected_partitions(topic: &Topic, partition: Option<u32>) -> InspectResult<Vec<u32>> {
    match partition {
        Some(p) if p >= topic.partitions() => Err(InspectError::NotFound(format!(
            "topic {} has no partition {p} (it has {})",
            topic.name(),
            topic.partitions()
        ))),
        Some(p) => Ok(vec![p]),
        None => Ok((0..topic.partitions()).collect()),
    }
}

fn start_offset(reader: &mut PartitionReader, start: Start, limit: usize) -> InspectResult<u64> {
    let log_start = reader.log_start_offset()?;
    let end = reader.end_offset();
    Ok(match start {
        Start::End => end.saturating_sub(limit as u64).max(log_start),
        Start::Beginning => log_start,
        Start::Offset(o) => o.clamp(log_start, end),
        Start::Timestamp(ts) => reader.offset_for_timestamp(ts)?.unwrap_or(end),
    })
}

/// Records of `[from, stop)` matching `key`, at most `limit` of them and at most `budget`
/// looked at. Returns them, the offset after the last one looked at, and how many were.
fn scan(
    reader: &mut PartitionReader,
    (from, stop): (u64, u64),
    limit: usize,
    key: Option<&str>,
    budget: u64,
) -> InspectResult<(Vec<MessageView>, u64, u64)> {
    let (mut found, mut next, mut scanned) = (Vec::new(), from, 0u64);
    while next < stop && found.len() < limit && scanned < budget {
        let room = (stop - next).min(4096).min(budget - scanned);
        let fetch = reader.read(next, usize::try_from(room).unwrap_or(4096), 4 << 20)?;
        if fetch.is_empty() {
            break;
        }
        for r in fetch.iter().take_while(|r| r.offset < stop) {
            scanned += 1;
            next = r.offset + 1;
            if key.is_none_or(|k| r.key == Some(k.as_bytes())) {
                found.push(MessageView::of(reader.partition(), &r));
                if found.len() == limit {
                    break;
                }
            }
        }
    }
    Ok((found, next, scanned))
}

/// Sorts `messages` by timestamp (then partition and offset) and keeps `limit` of them: the
/// newest, or the oldest. Returns whether any were dropped.
fn trim(messages: &mut Vec<MessageView>, limit: usize, newest: bool) -> bool {
    messages.sort_by_key(|m| (m.timestamp, m.partition, m.offset));
    let excess = messages.len().saturating_sub(limit);
    if newest {
        messages.drain(..excess);
    } else {
        messages.truncate(limit);
    }
    excess > 0
}

/// A page of `name`'s messages as `query` asks.
pub fn messages(log: &Log, name: &str, query: &MessageQuery) -> InspectResult<MessagePage> {
    checked_name("topic", name)?;
    let topic = log.topic(name)?;
    let limit = query.limit.clamp(1, MAX_PAGE);
    let key = query.key.as_deref();
    let mut page = MessagePage {
        messages: Vec::new(),
        next_offsets: BTreeMap::new(),
        scanned: 0,
        scan_capped: false,
    };
    let mut budget = if key.is_some() { MAX_SCAN } else { u64::MAX };
    let mut starts = BTreeMap::new();
    let mut trimmed = false;
    let several = query.partition.is_none() && topic.partitions() > 1;
    for p in selected_partitions(&topic, query.partition)? {
        let mut reader = topic.reader(p)?;
        let (log_start, end) = (reader.log_start_offset()?, reader.end_offset());
        let mut kept = Vec::new();
        if query.start == Start::End && key.is_some() {
            // The newest matches: windows read forward, walking back from the end.
            let mut window_end = end;
            while kept.len() < limit && window_end > log_start && budget > 0 {
                let window_start = window_end.saturating_sub(4096).max(log_start);
                let (mut found, _, scanned) = scan(
                    &mut reader,
                    (window_start, window_end),
                    usize::MAX,
                    key,
                    budget,
                )?;
                budget -= scanned;
                page.scanned += scanned;
                found.append(&mut kept);
                kept = found;
                window_end = window_start;
            }
            page.scan_capped |= budget == 0 && kept.len() < limit;
            kept.drain(..kept.len().saturating_sub(limit));
            page.next_offsets.insert(p, end);
        } else {
            let from = start_offset(&mut reader, query.start, limit)?;
            starts.insert(p, from);
            let (found, next, scanned) = scan(&mut reader, (from, end), limit, key, budget)?;
            budget -= scanned.min(budget);
            page.scanned += scanned;
            page.scan_capped |= key.is_some() && budget == 0 && found.len() < limit;
            kept = found;
            page.next_offsets.insert(p, next);
        }
        page.messages.append(&mut kept);
        // Several partitions merge by timestamp, holding at most two pages at a time.
        if several {
            trimmed |= trim(&mut page.messages, limit, query.start == Start::End);
        }
    }
    if trimmed && query.start != Start::End {
        // Each partition's next page starts after its last record kept here (or where its
        // records started, when none was kept).
        for (p, next) in page.next_offsets.iter_mut() {
            let mine = page.messages.iter().filter(|m| m.partition == *p);
            *next = match mine.map(|m| m.offset).max() {
                Some(last) => last + 1,
                None => starts.get(p).copied().unwrap_or(*next),
            };
        }
    }
    Ok(page)
}

/// New records of `name` since `from` (per partition; partitions not in it start at their end),
/// at most `limit`. Returns them and the offsets to ask from next time.
pub fn tail(
    log: &Log,
    name: &str,
    from: &BTreeMap<u32, u64>,
    key: Option<&str>,
    limit: usize,
) -> InspectResult<(Vec<MessageView>, BTreeMap<u32, u64>)> {
    checked_name("topic", name)?;
    let topic = log.topic(name)?;
    let mut records = Vec::new();
    let mut next = BTreeMap::new();
    // The partitions share one poll's bounds (records read later go to the next poll).
    let partitions = topic.partitions().max(1) as usize;
    let share = (limit / partitions).max(1);
    let share_bytes = ((4 << 20) / partitions).max(16 << 10);
    for p in 0..topic.partitions() {
        let mut reader = topic.reader(p)?;
        let at = from.get(&p).copied().unwrap_or_else(|| reader.end_offset());
        let at = at.max(reader.log_start_offset()?);
        let fetch = reader.read(at, share, share_bytes)?;
        for r in fetch.iter() {
            if key.is_none_or(|k| r.key == Some(k.as_bytes())) {
                records.push(MessageView::of(p, &r));
            }
        }
        next.insert(p, fetch.next_offset().max(at));
    }
    records.sort_by_key(|m| (m.timestamp, m.partition, m.offset));
    Ok((records, next))
}

/// The newest `last` records of `topic` (over all partitions), as (key text, timestamp, the
/// number at `field`): each value is parsed as it is read, so memory holds points, not values.
pub fn chart_points(
    log: &Log,
    topic: &str,
    field: &str,
    last: usize,
) -> InspectResult<Vec<(String, i64, Option<f64>)>> {
    checked_name("topic", topic)?;
    let t = log.topic(topic)?;
    let mut rows = Vec::new();
    for p in 0..t.partitions() {
        let mut reader = t.reader(p)?;
        let end = reader.end_offset();
        let mut next = end
            .saturating_sub(last as u64)
            .max(reader.log_start_offset()?);
        while next < end {
            let fetch = reader.read(next, 4096, 8 << 20)?;
            if fetch.is_empty() {
                break;
            }
            for r in fetch.iter() {
                if let Some(value) = r.value {
                    let key = r.key.map_or_else(
                        || "(no key)".to_owned(),
                        |k| String::from_utf8_lossy(&k[..k.len().min(64)]).into_owned(),
                    );
                    rows.push((key, r.timestamp, crate::chart::number_in(value, field)));
                }
            }
            next = fetch.next_offset();
        }
    }
    rows.sort_by_key(|(_, ts, _)| *ts);
    let cut = rows.len().saturating_sub(last);
    rows.drain(..cut);
    Ok(rows)
}

/// Kafka's group state as far as eddy has one: `Stable` with live members, `Empty` without.
pub fn group_state(d: &GroupDescription) -> &'static str {
    if d.members.is_empty() {
        "Empty"
    } else {
        "Stable"
    }
}

/// Group names, sorted.
pub fn group_names(log: &Log) -> InspectResult<Vec<String>> {
    let mut names = Groups::new(log).list()?;
    names.sort();
    Ok(names)
}

/// `name`'s members, committed offsets, ends and lag.
pub fn group(log: &Log, name: &str) -> InspectResult<GroupDescription> {
    checked_name("group", name)?;
    Ok(Groups::new(log).describe(name)?)
}

/// Total lag of a group (partitions with nothing committed count their whole log).
pub fn total_lag(d: &GroupDescription) -> u64 {
    (d.partitions.iter())
        .map(|p| {
            p.lag
                .map_or(p.log_end_offset, |l| u64::try_from(l).unwrap_or(0))
        })
        .sum()
}

/// A reset asked for from the console.
#[derive(Clone, Debug)]
pub struct ResetRequest {
    /// One topic, or every topic of the group.
    pub topic: Option<String>,
    /// Where to.
    pub target: ResetTarget,
    /// Keep stateful applications' state (Kafka Streams users reset it with the tool).
    pub keep_state: bool,
}

/// The plan of `request` for group `name`; applied when `execute` (on `writable`, the log opened
/// for writing, which the caller gives only when the console may write).
pub fn reset(
    log: &Log,
    writable: Option<&Log>,
    name: &str,
    request: &ResetRequest,
    execute: bool,
) -> InspectResult<Vec<ResetRow>> {
    checked_name("group", name)?;
    if let Some(t) = &request.topic {
        checked_name("topic", t)?;
    }
    let scope = match &request.topic {
        None => ResetScope::AllTopics,
        Some(t) => ResetScope::Topics(vec![(t.clone(), None)]),
    };
    let rows = Groups::new(log).plan_reset(name, &scope, request.target)?;
    if execute {
        let log = writable.ok_or(InspectError::ReadOnly)?;
        let groups = Groups::new(log);
        if request.keep_state {
            groups.execute_reset_keeping_state(name, &rows)?;
        } else {
            groups.execute_reset(name, &rows)?;
        }
    }
    Ok(rows)
}
