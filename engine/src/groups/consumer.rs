//! A member of a consumer group: subscribes to topics, owns a fair share of their partitions,
//! polls records from them and commits the offsets it has processed.
//!
//! Rebalancing happens inside `poll`: every `rebalance_check` the member lists the group's live
//! members; when they changed, it recomputes the assignment (the same on every member), gives up
//! the partitions it lost (committing their positions first when `commit_on_revoke`), and takes the
//! new ones as soon as their previous owners let go. A member that dies releases its locks at once,
//! so its partitions move within one `rebalance_check` of the survivors' next poll; a member past
//! its poll deadline is replaced without waiting for its locks (see `membership.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::error::{GroupError, GroupResult};
use super::membership::{assign, GroupDir, MemberHandle, MemberInfo, OwnerHandle};
use super::offsets::{OffsetsFile, TopicPartition};
use crate::log::{Fetch, Isolation, Log, LogError, PartitionReader};

/// Where a member starts in a partition that has no committed offset (Kafka's
/// `auto.offset.reset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoOffsetReset {
    /// The log-start offset.
    Earliest,
    /// The log-end offset: only records appended from now on.
    Latest,
    /// Fail `poll` with [`GroupError::NoCommittedOffset`].
    Error,
}

/// Settings of a consumer.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// Group name (validated like a topic name).
    pub group: String,
    /// Start for partitions without a committed offset.
    pub auto_offset_reset: AutoOffsetReset,
    /// Member id; a unique one is made up when `None`.
    pub member_id: Option<String>,
    /// Most records one `poll` returns.
    pub max_poll_records: usize,
    /// About how many bytes of batches one `poll` reads.
    pub max_poll_bytes: usize,
    /// How often `poll` looks for members that joined or died.
    pub rebalance_check: Duration,
    /// Commit a partition's position before giving it up in a rebalance or on close. Right when
    /// every polled record is processed before the next `poll`, as in a plain poll loop.
    pub commit_on_revoke: bool,
    /// Fsync every commit. Without it a commit survives a process crash but a power loss may
    /// take offsets back to an earlier commit (records are delivered again, none is skipped).
    pub fsync_commits: bool,
    /// Leave lost partitions to the caller: in a rebalance they stop being fetched and are listed
    /// by [`Consumer::revoking`] until the caller hands them over with [`Consumer::release`]
    /// (after saving its work). When false they are released inside `poll`.
    pub release_manually: bool,
    /// Kafka's `max.poll.interval.ms`: a member that does not poll within this is taken for
    /// stuck, even while it is stopped or busy inside a call: the other members take its
    /// partitions once its lease (renewed by each poll) runs out, and resume them from the
    /// committed offsets. At its next `poll` or `commit` the stuck member leaves the group
    /// without committing and that call returns [`GroupError::PollIntervalExceeded`] (a commit
    /// after its partitions moved never lands); the following `poll` rejoins and takes a fresh
    /// assignment from the committed offsets. Default: 5 minutes; `None` never expires.
    pub max_poll_interval: Option<Duration>,
    /// Which records polls return: every one (the default, as Kafka's `isolation.level`), or
    /// only committed ones, up to each partition's last stable offset.
    pub isolation: Isolation,
    /// Sets of subscribed topics whose partitions are assigned together: partition `p` of each
    /// topic of a set goes to the same member (the inputs of a join or a merge). Their topics
    /// need as many partitions each.
    pub copartitioned: Vec<Vec<String>>,
}

impl ConsumerConfig {
    /// Defaults for `group`: earliest, 10,000 records or 4 MiB per poll, a 100 ms rebalance check,
    /// commit on revoke, no fsync of commits.
    pub fn new(group: impl Into<String>) -> Self {
        ConsumerConfig {
            group: group.into(),
            auto_offset_reset: AutoOffsetReset::Earliest,
            member_id: None,
            max_poll_records: 10_000,
            max_poll_bytes: 4 << 20,
            rebalance_check: Duration::from_millis(100),
            commit_on_revoke: true,
            fsync_commits: false,
            release_manually: false,
            max_poll_interval: Some(Duration::from_secs(300)),
            isolation: Isolation::ReadUncommitted,
            copartitioned: Vec::new(),
        }
    }
}

/// Records polled from one partition.
pub struct PolledBatch {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The records, in offset order.
    pub records: Fetch,
}

struct Owned {
    reader: PartitionReader,
    position: u64,
    owner: OwnerHandle,
}

static MEMBER_SEQ: AtomicU64 = AtomicU64::new(0);

/// A member of a consumer group. One per thread; any number per process.
pub struct Consumer {
    log: Log,
    config: ConsumerConfig,
    group: GroupDir,
    member_id: String,
    member: Option<MemberHandle>,
    topics: Vec<String>,
    owned: BTreeMap<TopicPartition, Owned>,
    pending: BTreeSet<TopicPartition>,
    revoking: BTreeSet<TopicPartition>,
    offsets: OffsetsFile,
    members_seen: Option<Vec<MemberInfo>>,
    last_check: Option<Instant>,
    next_partition: usize,
    /// When `poll` was last called.
    last_poll: Option<Instant>,
    /// Left the group for exceeding `max_poll_interval`: the next `poll` rejoins.
    rejoin: bool,
    /// Owned partitions that polls skip until resumed.
    paused: BTreeSet<TopicPartition>,
}

impl Consumer {
    /// A consumer of `config.group` over the data directory of `log`. It joins the group on
    /// `subscribe`.
    pub fn new(log: &Log, config: ConsumerConfig) -> GroupResult<Consumer> {
        let group = GroupDir::new(log.dir(), &config.group, true)?;
        let member_id = match &config.member_id {
            Some(id) => id.clone(),
            None => format!(
                "member-{}-{}-{}",
                std::process::id(),
                MEMBER_SEQ.fetch_add(1, Ordering::Relaxed),
                crate::log::now_ms() % 1_000_000
            ),
        };
        Ok(Consumer {
            log: log.clone(),
            config,
            group,
            member_id,
            member: None,
            topics: Vec::new(),
            owned: BTreeMap::new(),
            pending: BTreeSet::new(),
            revoking: BTreeSet::new(),
            offsets: OffsetsFile::default(),
            members_seen: None,
            last_check: None,
            next_partition: 0,
            last_poll: None,
            rejoin: false,
            paused: BTreeSet::new(),
        })
    }

    /// The log this member reads.
    #[cfg(feature = "streams")]
    pub(crate) fn log(&self) -> &Log {
        &self.log
    }

    /// This member's id.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// Joins the group for `topics` (replacing an earlier subscription). Partitions are assigned
    /// on the next `poll`.
    pub fn subscribe(&mut self, topics: &[&str]) -> GroupResult<()> {
        for t in topics {
            self.log.topic(t)?; // must exist
        }
        self.revoke_all()?;
        self.member = None;
        self.topics = topics.iter().map(|t| (*t).to_owned()).collect();
        self.join()?;
        self.members_seen = None;
        Ok(())
    }

    /// Registers this member for its topics, with a lease when it has a poll deadline.
    fn join(&mut self) -> GroupResult<()> {
        let info = MemberInfo {
            id: self.member_id.clone(),
            topics: self.topics.clone(),
            copartitioned: self.config.copartitioned.clone(),
        };
        self.member = Some(self.group.join(&info, self.poll_deadline_ms())?);
        Ok(())
    }

    /// The partitions this member owns now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.owned.keys().cloned().collect()
    }

    /// The next offset this member will read from a partition it owns.
    pub fn position(&self, topic: &str, partition: u32) -> GroupResult<u64> {
        self.owned_ref(topic, partition).map(|o| o.position)
    }

    fn owned_ref(&self, topic: &str, partition: u32) -> GroupResult<&Owned> {
        self.owned
            .get(&(topic.to_owned(), partition))
            .ok_or_else(|| GroupError::NotAssigned {
                topic: topic.to_owned(),
                partition,
            })
    }

    fn owned_mut(&mut self, topic: &str, partition: u32) -> GroupResult<&mut Owned> {
        self.owned
            .get_mut(&(topic.to_owned(), partition))
            .ok_or_else(|| GroupError::NotAssigned {
                topic: topic.to_owned(),
                partition,
            })
    }

    /// Moves the position in an owned partition; the next `poll` reads from `offset`.
    pub fn seek(&mut self, topic: &str, partition: u32, offset: u64) -> GroupResult<()> {
        self.owned_mut(topic, partition)?.position = offset;
        Ok(())
    }

    /// The group's committed offset for a partition, as stored now.
    pub fn committed(&mut self, topic: &str, partition: u32) -> GroupResult<Option<u64>> {
        self.offsets.refresh(&self.group.offsets_path())?;
        Ok(self
            .offsets
            .offsets
            .get(&(topic.to_owned(), partition))
            .copied())
    }

    /// The group's committed offset for a partition with the metadata of the commit that set it
    /// (empty for plain commits, [`RESET_METADATA`](super::admin::RESET_METADATA) after a reset).
    pub fn committed_with_metadata(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> GroupResult<Option<(u64, String)>> {
        self.offsets.refresh(&self.group.offsets_path())?;
        let tp = (topic.to_owned(), partition);
        Ok(self.offsets.offsets.get(&tp).map(|&o| {
            let meta = self.offsets.metadata.get(&tp).cloned().unwrap_or_default();
            (o, meta)
        }))
    }

    /// Leaves and rejoins the group if the time since the last `poll` exceeded
    /// `max_poll_interval`, and says so.
    fn check_poll_interval(&mut self) -> GroupResult<()> {
        let (Some(limit), Some(last)) = (self.config.max_poll_interval, self.last_poll) else {
            return Ok(());
        };
        if last.elapsed() <= limit || self.member.is_none() {
            return Ok(());
        }
        Err(self.leave_as_stuck())
    }

    /// Whether every owned partition is still this member's: the others take the partitions of a
    /// member past its poll deadline, perhaps before its own clock says so.
    fn check_still_owner(&mut self) -> GroupResult<()> {
        for owned in self.owned.values() {
            if !owned.owner.still_owned()? {
                return Err(self.leave_as_stuck());
            }
        }
        Ok(())
    }

    /// Leaves the group without committing (the positions reflect work of a member taken for
    /// stuck); the next `poll` rejoins.
    fn leave_as_stuck(&mut self) -> GroupError {
        let waited = self.last_poll.map(|t| t.elapsed()).unwrap_or_default();
        let limit = self.config.max_poll_interval.unwrap_or_default();
        let lost: Vec<String> = self.owned.keys().map(|(t, p)| format!("{t}-{p}")).collect();
        self.leave_and_rejoin();
        tracing::warn!(group = %self.group.name, member = %self.member_id,
            waited_ms = waited.as_millis() as u64, limit_ms = limit.as_millis() as u64,
            "poll interval exceeded: left the group without committing; the next poll rejoins");
        GroupError::PollIntervalExceeded {
            group: self.group.name.clone(),
            member: self.member_id.clone(),
            waited,
            limit,
            partitions: lost.join(", "),
        }
    }

    /// Leaves the group without committing anything and lets every partition go; the next
    /// `poll` rejoins and starts from the committed offsets (the owner of work that was fenced
    /// or taken for stuck).
    pub fn leave_and_rejoin(&mut self) {
        self.owned.clear();
        self.pending.clear();
        self.revoking.clear();
        self.paused.clear();
        self.member = None;
        self.members_seen = None;
        self.last_poll = None;
        self.rejoin = true;
    }

    /// The wall-clock deadline of the next poll, for the member's lease.
    fn poll_deadline_ms(&self) -> Option<i64> {
        let limit = self.config.max_poll_interval?;
        let limit_ms = i64::try_from(limit.as_millis()).unwrap_or(i64::MAX);
        Some(crate::log::now_ms().saturating_add(limit_ms))
    }

    /// Commits the current position of every owned partition.
    pub fn commit(&mut self) -> GroupResult<()> {
        let positions: Vec<(String, u32, u64)> = self
            .owned
            .iter()
            .map(|((t, p), o)| (t.clone(), *p, o.position))
            .collect();
        self.commit_offsets(&positions)
    }

    /// Commits the given offsets (the next offset to read, as in Kafka) for owned partitions, in
    /// one crash-atomic record.
    pub fn commit_offsets(&mut self, offsets: &[(String, u32, u64)]) -> GroupResult<()> {
        self.commit_offsets_with_metadata(offsets, "")
    }

    /// Commits offsets as [`commit_offsets`](Self::commit_offsets) does, tagged with `metadata`
    /// (at most 64 KiB), as Kafka's `OffsetAndMetadata`.
    pub fn commit_offsets_with_metadata(
        &mut self,
        offsets: &[(String, u32, u64)],
        metadata: &str,
    ) -> GroupResult<()> {
        self.check_poll_interval()?;
        let metadata = metadata
            .get(..metadata.len().min(u16::MAX as usize))
            .unwrap_or("");
        for (t, p, _) in offsets {
            self.owned_ref(t, *p)?;
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let refs: Vec<(&str, u32, u64)> = offsets
            .iter()
            .map(|(t, p, o)| (t.as_str(), *p, *o))
            .collect();
        let path = self.group.offsets_path();
        let _g = self.group.lock()?;
        // Under the group lock, which a takeover holds: a member replaced as stuck commits nothing.
        for (t, p, _) in offsets {
            if !self.owned_ref(t, *p)?.owner.still_owned()? {
                drop(_g);
                return Err(self.leave_as_stuck());
            }
        }
        self.offsets.refresh(&path)?;
        self.offsets.commit(
            &path,
            &refs,
            metadata,
            self.config.fsync_commits,
            crate::log::now_ms(),
        )
    }

    /// Returns records from owned partitions, waiting up to `timeout` for some. Rebalances first
    /// when members joined or left.
    pub fn poll(&mut self, timeout: Duration) -> GroupResult<Vec<PolledBatch>> {
        self.check_poll_interval()?;
        if std::mem::take(&mut self.rejoin) {
            self.join()?;
        } else if let (Some(member), Some(deadline)) = (&self.member, self.poll_deadline_ms()) {
            member.renew_lease(deadline)?;
        }
        self.last_poll = Some(Instant::now());
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            self.rebalance_if_due()?;
            let batches = self.fetch_once()?;
            let now = Instant::now();
            if !batches.is_empty() || now >= deadline {
                return Ok(batches);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Stops polls from reading `partition` of `topic` until [`resume`](Self::resume), as
    /// Kafka's `pause` (the position stays where it is).
    pub fn pause(&mut self, topic: &str, partition: u32) {
        self.paused.insert((topic.to_owned(), partition));
    }

    /// Lets polls read a paused partition again.
    pub fn resume(&mut self, topic: &str, partition: u32) {
        self.paused.remove(&(topic.to_owned(), partition));
    }

    /// The end of an owned partition that polls read up to: the log end, or under
    /// read-committed the last stable offset.
    pub fn readable_end(&mut self, topic: &str, partition: u32) -> GroupResult<u64> {
        Ok(self.owned_mut(topic, partition)?.reader.readable_end()?)
    }

    /// Whether an owned partition has records past the position that a poll can return now
    /// (under read-committed, up to the last stable offset).
    pub fn has_readable(&mut self, topic: &str, partition: u32) -> GroupResult<bool> {
        let o = self.owned_mut(topic, partition)?;
        Ok(o.position < o.reader.readable_end()?)
    }

    /// Whether every owned partition has been read to its end and nothing is waiting to be
    /// owned (for bounded runs: "caught up").
    pub fn caught_up(&mut self) -> GroupResult<bool> {
        self.rebalance_if_due()?;
        if !self.pending.is_empty() || self.members_seen.is_none() {
            return Ok(false);
        }
        for o in self.owned.values_mut() {
            // Reading committed records, a transaction still open is not there to catch up on.
            if o.position < o.reader.readable_end()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn fetch_once(&mut self) -> GroupResult<Vec<PolledBatch>> {
        let mut out = Vec::new();
        let keys: Vec<TopicPartition> = self.owned.keys().cloned().collect();
        let n = keys.len();
        let mut budget_records = self.config.max_poll_records;
        let mut budget_bytes = self.config.max_poll_bytes;
        for i in 0..n {
            if budget_records == 0 || budget_bytes == 0 {
                break;
            }
            let Some(key) = keys.get((self.next_partition + i) % n) else {
                continue;
            };
            if self.revoking.contains(key) || self.paused.contains(key) {
                continue;
            }
            let Some(o) = self.owned.get_mut(key) else {
                continue;
            };
            let fetch = match o.reader.read(o.position, budget_records, budget_bytes) {
                Ok(f) => f,
                Err(LogError::OffsetOutOfRange { log_start, end, .. })
                    if self.config.auto_offset_reset != AutoOffsetReset::Error =>
                {
                    // Retention went past the position, or the position is past the log end
                    // (the log lost records in a crash, or was replaced): apply the reset
                    // policy, as Kafka does, and say so.
                    let reset_to = match self.config.auto_offset_reset {
                        AutoOffsetReset::Earliest => log_start,
                        _ => end,
                    };
                    tracing::warn!(group = %self.group.name, topic = %key.0, partition = key.1,
                        position = o.position, log_start, log_end = end, reset_to,
                        "position out of the log's range; resetting by auto_offset_reset");
                    o.position = reset_to;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if fetch.is_empty() {
                continue;
            }
            o.position = fetch.next_offset();
            budget_records = budget_records.saturating_sub(fetch.len());
            budget_bytes = budget_bytes.saturating_sub(fetch.bytes());
            out.push(PolledBatch {
                topic: key.0.clone(),
                partition: key.1,
                records: fetch,
            });
        }
        self.next_partition = self.next_partition.wrapping_add(1);
        Ok(out)
    }

    fn rebalance_if_due(&mut self) -> GroupResult<()> {
        if self.member.is_none() {
            return Ok(());
        }
        let due = self
            .last_check
            .is_none_or(|t| t.elapsed() >= self.config.rebalance_check);
        if due {
            self.last_check = Some(Instant::now());
            self.check_still_owner()?;
            let members = self.group.live_members()?;
            if self.members_seen.as_ref() != Some(&members) {
                self.reassign(&members)?;
                self.members_seen = Some(members);
            }
        }
        if !self.pending.is_empty() {
            self.take_pending()?;
        }
        Ok(())
    }

    fn reassign(&mut self, members: &[MemberInfo]) -> GroupResult<()> {
        let mut partitions = BTreeMap::new();
        for m in members {
            for t in &m.topics {
                if !partitions.contains_key(t) {
                    if let Ok(topic) = self.log.topic(t) {
                        partitions.insert(t.clone(), topic.partitions());
                    }
                }
            }
        }
        let target: BTreeSet<TopicPartition> = assign(members, &partitions)
            .remove(&self.member_id)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let lost: Vec<TopicPartition> = self
            .owned
            .keys()
            .filter(|k| !target.contains(*k))
            .cloned()
            .collect();
        if self.config.release_manually {
            self.revoking.extend(lost);
        } else {
            self.revoke(&lost)?;
        }
        // A partition lost and won back before its release is taken again once released.
        self.pending = target
            .into_iter()
            .filter(|k| !self.owned.contains_key(k) || self.revoking.contains(k))
            .collect();
        Ok(())
    }

    fn revoke(&mut self, lost: &[TopicPartition]) -> GroupResult<()> {
        if lost.is_empty() {
            return Ok(());
        }
        if self.config.commit_on_revoke {
            let positions: Vec<(String, u32, u64)> = lost
                .iter()
                .filter_map(|k| self.owned.get(k).map(|o| (k.0.clone(), k.1, o.position)))
                .collect();
            self.commit_offsets(&positions)?;
        }
        for k in lost {
            self.owned.remove(k); // releases the ownership lock
            self.paused.remove(k);
        }
        Ok(())
    }

    fn revoke_all(&mut self) -> GroupResult<()> {
        let all: Vec<TopicPartition> = self.owned.keys().cloned().collect();
        self.pending.clear();
        self.revoking.clear();
        self.revoke(&all)
    }

    /// Partitions this member has lost in a rebalance but still holds, waiting for
    /// [`release`](Self::release) (only with `release_manually`). They are no longer fetched.
    pub fn revoking(&self) -> Vec<TopicPartition> {
        self.revoking.iter().cloned().collect()
    }

    /// Hands over partitions listed by [`revoking`](Self::revoking): commits their positions when
    /// `commit_on_revoke`, then releases them to their new owner.
    pub fn release(&mut self, partitions: &[TopicPartition]) -> GroupResult<()> {
        let held: Vec<TopicPartition> = partitions
            .iter()
            .filter(|k| self.revoking.remove(*k))
            .cloned()
            .collect();
        self.revoke(&held)
    }

    fn take_pending(&mut self) -> GroupResult<()> {
        let pending: Vec<TopicPartition> = self.pending.iter().cloned().collect();
        for key in pending {
            let Some(owner) = self.group.try_own(&key.0, key.1, &self.member_id)? else {
                continue; // the previous owner has not let go yet
            };
            // Read the committed offset only once we own the partition: the previous owner
            // committed before releasing it.
            self.offsets.refresh(&self.group.offsets_path())?;
            let topic = self.log.topic(&key.0)?;
            let mut reader = topic.reader(key.1)?;
            reader.set_isolation(self.config.isolation);
            let position = match self.offsets.offsets.get(&key) {
                Some(&o) => o,
                None => match self.config.auto_offset_reset {
                    AutoOffsetReset::Earliest => reader.log_start_offset()?,
                    AutoOffsetReset::Latest => reader.end_offset(),
                    AutoOffsetReset::Error => {
                        return Err(GroupError::NoCommittedOffset {
                            group: self.group.name.clone(),
                            topic: key.0.clone(),
                            partition: key.1,
                        })
                    }
                },
            };
            self.pending.remove(&key);
            self.owned.insert(
                key,
                Owned {
                    reader,
                    position,
                    owner,
                },
            );
        }
        Ok(())
    }

    /// Leaves the group: commits positions if `commit_on_revoke`, releases every partition and
    /// the membership. Dropping the consumer does the same but cannot report errors.
    pub fn close(mut self) -> GroupResult<()> {
        let result = self.revoke_all();
        self.member = None;
        result
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Best effort; `close` reports errors.
        let _ = self.revoke_all();
    }
}
