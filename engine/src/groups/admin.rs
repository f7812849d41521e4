//! Group administration over a data directory: list, describe (offsets, lag, owners), reset
//! offsets with Kafka's options, and delete. Resets and deletes are refused while the group has
//! live members.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use super::error::{GroupError, GroupResult};
use super::membership::{GroupDir, MemberInfo};
use super::offsets::OffsetsFile;
use crate::log::{now_ms, validate_name, Log, LogError};

/// Commit metadata of offsets set by a reset (`execute_reset`), as opposed to a consumer's commit.
pub const RESET_METADATA: &str = "eddy:reset";

/// Commit metadata of a reset that keeps stateful applications' state
/// ([`Groups::execute_reset_keeping_state`]): they resume at the new offsets with the state they
/// have, as when skipping a few records that cannot be processed.
pub const RESET_KEEP_STATE_METADATA: &str = "eddy:reset:keep-state";

/// One partition of a group, as `describe` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Committed offset (`None`: nothing committed yet).
    pub current_offset: Option<u64>,
    /// The partition's log-end offset.
    pub log_end_offset: u64,
    /// `log_end_offset - current_offset`: negative when the committed offset is past the log end
    /// (the log lost records in a crash, or was replaced), which the group would skip over.
    pub lag: Option<i64>,
    /// Member owning the partition now.
    pub consumer_id: Option<String>,
}

impl PartitionLag {
    /// Whether the committed offset is past the log end.
    pub fn committed_past_end(&self) -> bool {
        self.lag.is_some_and(|l| l < 0)
    }
}

/// A group's state.
#[derive(Clone, Debug, Serialize)]
pub struct GroupDescription {
    /// Group name.
    pub group: String,
    /// Live members.
    pub members: Vec<MemberInfo>,
    /// Every partition the group has committed or is subscribed to.
    pub partitions: Vec<PartitionLag>,
}

/// Where `reset-offsets` moves a group (Kafka's `kafka-consumer-groups --reset-offsets` options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetTarget {
    /// The log-start offset.
    Earliest,
    /// The log-end offset.
    Latest,
    /// A given offset.
    Offset(u64),
    /// The first offset whose timestamp is at or after this time (ms since the epoch).
    Datetime(i64),
    /// The first offset at or after now minus this duration.
    Duration(Duration),
    /// The committed offset moved by this many records (clamped).
    ShiftBy(i64),
    /// The committed offset, as it is (Kafka's `--to-current`); the log-end offset for a
    /// partition with none committed.
    Current,
}

/// Which partitions a reset touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResetScope {
    /// Every topic the group has committed offsets for or is subscribed to.
    AllTopics,
    /// These topics, each with all its partitions (`None`) or some.
    Topics(Vec<(String, Option<Vec<u32>>)>),
}

/// One row of a reset plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResetRow {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Committed offset before the reset.
    pub current_offset: Option<u64>,
    /// Offset after the reset.
    pub new_offset: u64,
    /// Set when the target was outside the log and was clamped: what happened.
    pub clamped: Option<String>,
}

/// Administration of the consumer groups of one data directory.
pub struct Groups {
    log: Log,
}

impl Groups {
    /// Groups of the data directory of `log`.
    pub fn new(log: &Log) -> Groups {
        Groups { log: log.clone() }
    }

    fn group(&self, name: &str) -> GroupResult<GroupDir> {
        GroupDir::new(self.log.dir(), name, false)
    }

    /// Names of all groups, sorted.
    pub fn list(&self) -> GroupResult<Vec<String>> {
        let dir = self.log.dir().join("groups");
        let mut names = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(e) => {
                return Err(LogError::Io {
                    op: "list",
                    path: dir,
                    source: e,
                }
                .into())
            }
        };
        for e in entries.flatten() {
            if let Some(n) = e.file_name().to_str() {
                if validate_name(n).is_ok() && e.path().is_dir() {
                    names.push(n.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Offsets, lag and owners of a group.
    pub fn describe(&self, name: &str) -> GroupResult<GroupDescription> {
        let g = self.group(name)?;
        let members = g.live_members()?;
        let mut offsets = OffsetsFile::default();
        offsets.refresh(&g.offsets_path())?;
        let mut keys: BTreeSet<(String, u32)> = offsets.offsets.keys().cloned().collect();
        for m in &members {
            for t in &m.topics {
                if let Ok(topic) = self.log.topic(t) {
                    keys.extend((0..topic.partitions()).map(|p| (t.clone(), p)));
                }
            }
        }
        let mut partitions = Vec::with_capacity(keys.len());
        for (topic, partition) in keys {
            let end = match self.log.topic(&topic) {
                Ok(t) => t.reader(partition)?.end_offset(),
                Err(LogError::TopicNotFound { .. }) => 0,
                Err(e) => return Err(e.into()),
            };
            let current = offsets.offsets.get(&(topic.clone(), partition)).copied();
            partitions.push(PartitionLag {
                consumer_id: g.owner_of(&topic, partition)?,
                lag: current
                    .map(|c| i64::try_from(i128::from(end) - i128::from(c)).unwrap_or(i64::MIN)),
                current_offset: current,
                log_end_offset: end,
                topic,
                partition,
            });
        }
        Ok(GroupDescription {
            group: name.to_owned(),
            members,
            partitions,
        })
    }

    fn refuse_if_active(&self, g: &GroupDir) -> GroupResult<()> {
        let members = g.live_members()?;
        if members.is_empty() {
            return Ok(());
        }
        Err(GroupError::GroupActive {
            group: g.name.clone(),
            members: members.len(),
            list: members
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Computes where a reset would move each partition, without changing anything. A group
    /// that does not exist yet has no offsets and no members: its plan covers the named topics
    /// and executing it creates the group, as Kafka does.
    pub fn plan_reset(
        &self,
        name: &str,
        scope: &ResetScope,
        target: ResetTarget,
    ) -> GroupResult<Vec<ResetRow>> {
        let committed = self.committed_or_subscribed(name)?;
        let keys: Vec<(String, u32)> = match scope {
            ResetScope::AllTopics => committed.keys().cloned().collect(),
            ResetScope::Topics(list) => {
                let mut keys = Vec::new();
                for (t, parts) in list {
                    let topic = self.log.topic(t)?;
                    match parts {
                        None => keys.extend((0..topic.partitions()).map(|p| (t.clone(), p))),
                        Some(ps) => {
                            for &p in ps {
                                check_partition(&topic, p)?;
                                keys.push((t.clone(), p));
                            }
                        }
                    }
                }
                keys
            }
        };
        let mut rows = Vec::with_capacity(keys.len());
        for (topic_name, partition) in keys {
            let current = committed
                .get(&(topic_name.clone(), partition))
                .copied()
                .flatten();
            rows.push(
                self.plan_row(topic_name, partition, current, |reader, start, end| {
                    Ok(match target {
                        ResetTarget::Earliest => i128::from(start),
                        ResetTarget::Latest => i128::from(end),
                        ResetTarget::Offset(o) => i128::from(o),
                        ResetTarget::Datetime(ts) => {
                            i128::from(reader.offset_for_timestamp(ts)?.unwrap_or(end))
                        }
                        ResetTarget::Duration(d) => {
                            let ts = now_ms().saturating_sub(d.as_millis() as i64);
                            i128::from(reader.offset_for_timestamp(ts)?.unwrap_or(end))
                        }
                        ResetTarget::ShiftBy(n) => {
                            i128::from(current.unwrap_or(start)) + i128::from(n)
                        }
                        ResetTarget::Current => i128::from(current.unwrap_or(end)),
                    })
                })?,
            );
        }
        Ok(rows)
    }

    /// A reset plan to given offsets (topic, partition, offset), as Kafka's `--from-file`
    /// reads them; offsets outside a partition's log are clamped, as for [`plan_reset`](Self::plan_reset).
    pub fn plan_reset_to(
        &self,
        name: &str,
        offsets: &[(String, u32, u64)],
    ) -> GroupResult<Vec<ResetRow>> {
        let committed = self.committed_or_subscribed(name)?;
        let mut rows = Vec::with_capacity(offsets.len());
        for (topic, partition, offset) in offsets {
            check_partition(&self.log.topic(topic)?, *partition)?;
            let current = committed
                .get(&(topic.clone(), *partition))
                .copied()
                .flatten();
            rows.push(
                self.plan_row(topic.clone(), *partition, current, |_, _, _| {
                    Ok(i128::from(*offset))
                })?,
            );
        }
        Ok(rows)
    }

    /// Committed offsets (or `None` for subscribed partitions without one) of group `name`;
    /// empty for a group that does not exist.
    fn committed_or_subscribed(
        &self,
        name: &str,
    ) -> GroupResult<BTreeMap<(String, u32), Option<u64>>> {
        let desc = match self.describe(name) {
            Ok(d) => d,
            Err(GroupError::GroupNotFound(_)) => return Ok(BTreeMap::new()),
            Err(e) => return Err(e),
        };
        Ok(desc
            .partitions
            .iter()
            .map(|p| ((p.topic.clone(), p.partition), p.current_offset))
            .collect())
    }

    /// One plan row: where `wanted(reader, log start, log end)` says, clamped to the log.
    fn plan_row(
        &self,
        topic_name: String,
        partition: u32,
        current: Option<u64>,
        wanted: impl FnOnce(&mut crate::log::PartitionReader, u64, u64) -> GroupResult<i128>,
    ) -> GroupResult<ResetRow> {
        let topic = self.log.topic(&topic_name)?;
        let mut reader = topic.reader(partition)?;
        let start = reader.log_start_offset()?;
        let end = reader.end_offset();
        let wanted = wanted(&mut reader, start, end)?;
        let (new_offset, clamped) = if wanted < i128::from(start) {
            (
                start,
                Some(format!(
                    "{wanted} is before the log start {start}; using {start}"
                )),
            )
        } else if wanted > i128::from(end) {
            (
                end,
                Some(format!("{wanted} is past the log end {end}; using {end}")),
            )
        } else {
            (wanted as u64, None)
        };
        Ok(ResetRow {
            topic: topic_name,
            partition,
            current_offset: current,
            new_offset,
            clamped,
        })
    }

    /// Commits a reset plan. Refused while the group has live members. The commits carry
    /// [`RESET_METADATA`], which tells a stateful application that its state no longer matches.
    pub fn execute_reset(&self, name: &str, rows: &[ResetRow]) -> GroupResult<()> {
        self.commit_plan(name, rows, RESET_METADATA)
    }

    /// Commits a reset plan that keeps stateful applications' state: they resume at the new
    /// offsets with the state they built so far (the records skipped, or read again, count as
    /// they did before). For moving over a few records that cannot be processed; a reset to
    /// reprocess should use [`execute_reset`](Self::execute_reset), which rebuilds the state.
    pub fn execute_reset_keeping_state(&self, name: &str, rows: &[ResetRow]) -> GroupResult<()> {
        self.commit_plan(name, rows, RESET_KEEP_STATE_METADATA)
    }

    fn commit_plan(&self, name: &str, rows: &[ResetRow], metadata: &str) -> GroupResult<()> {
        let offsets: Vec<(&str, u32, u64)> = rows
            .iter()
            .map(|r| (r.topic.as_str(), r.partition, r.new_offset))
            .collect();
        self.commit(
            GroupDir::new(self.log.dir(), name, true)?,
            &offsets,
            metadata,
        )
    }

    /// Commits `offsets` (topic, partition, next offset) for group `name` without joining it,
    /// creating the group when missing, in one crash-atomic, fsynced record tagged with
    /// `metadata` — Kafka's `alterConsumerGroupOffsets`. For tools that keep their progress as a
    /// group (the Kafka connector's mirror keeps the source offsets in `metadata`). Refused while
    /// the group has live members.
    pub fn alter_offsets(
        &self,
        name: &str,
        offsets: &[(&str, u32, u64)],
        metadata: &str,
    ) -> GroupResult<()> {
        self.commit(
            GroupDir::new(self.log.dir(), name, true)?,
            offsets,
            metadata,
        )
    }

    fn commit(&self, g: GroupDir, offsets: &[(&str, u32, u64)], metadata: &str) -> GroupResult<()> {
        if metadata.len() > u16::MAX as usize {
            return Err(GroupError::InvalidRequest(format!(
                "commit metadata of group {} is {} bytes; at most {} fit",
                g.name,
                metadata.len(),
                u16::MAX
            )));
        }
        let _lock = g.lock()?;
        self.refuse_if_active(&g)?;
        let path = g.offsets_path();
        let mut file = OffsetsFile::default();
        file.refresh(&path)?;
        file.commit(&path, offsets, metadata, true, now_ms())
    }

    /// The committed offsets of group `name`, each with the metadata of the commit that set it,
    /// by topic and partition. A group that does not exist has none.
    pub fn committed(&self, name: &str) -> GroupResult<BTreeMap<(String, u32), (u64, String)>> {
        let g = match self.group(name) {
            Ok(g) => g,
            Err(GroupError::GroupNotFound(_)) => return Ok(BTreeMap::new()),
            Err(e) => return Err(e),
        };
        let mut file = OffsetsFile::default();
        file.refresh(&g.offsets_path())?;
        Ok(file
            .offsets
            .iter()
            .map(|(tp, &offset)| {
                let meta = file.metadata.get(tp).cloned().unwrap_or_default();
                (tp.clone(), (offset, meta))
            })
            .collect())
    }

    /// Deletes a topic and every group's committed offsets for it, so that a topic created again
    /// under the name starts each group afresh (by its `auto_offset_reset`) instead of at the
    /// old offsets. The offsets go first, while the topic's partitions are locked: a crash in
    /// between leaves the topic without committed offsets, never new data behind old offsets.
    /// Returns the groups that had offsets for it.
    pub fn delete_topic(&self, topic: &str) -> GroupResult<Vec<String>> {
        let mut touched = Vec::new();
        self.log.delete_topic_with(topic, || {
            touched = self.forget_topic(topic)?;
            Ok::<(), GroupError>(())
        })?;
        Ok(touched)
    }

    /// Removes `topic` from every group's committed offsets; returns the groups that had some.
    fn forget_topic(&self, topic: &str) -> GroupResult<Vec<String>> {
        let mut touched = Vec::new();
        for name in self.list()? {
            let g = self.group(&name)?;
            let _lock = g.lock()?;
            let path = g.offsets_path();
            let mut file = OffsetsFile::default();
            file.refresh(&path)?;
            let before = file.offsets.len();
            file.offsets.retain(|(t, _), _| t != topic);
            file.metadata.retain(|(t, _), _| t != topic);
            if file.offsets.len() != before {
                file.rewrite(&path, now_ms())?;
                touched.push(name);
            }
        }
        Ok(touched)
    }

    /// Deletes a group and its committed offsets. Refused while it has live members.
    pub fn delete(&self, name: &str) -> GroupResult<()> {
        let g = self.group(name)?;
        let lock = g.lock()?;
        self.refuse_if_active(&g)?;
        let doomed = self.log.dir().join("groups").join(format!(
            "~deleting-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::rename(&g.dir, &doomed).map_err(|e| LogError::Io {
            op: "rename",
            path: g.dir.clone(),
            source: e,
        })?;
        drop(lock);
        std::fs::remove_dir_all(&doomed).map_err(|e| {
            GroupError::Log(LogError::Io {
                op: "remove",
                path: doomed,
                source: e,
            })
        })
    }
}

fn check_partition(topic: &crate::log::Topic, partition: u32) -> GroupResult<()> {
    if partition >= topic.partitions() {
        return Err(LogError::PartitionNotFound {
            topic: topic.name().to_owned(),
            partition,
            partitions: topic.partitions(),
        }
        .into());
    }
    Ok(())
}

/// Parses an ISO-8601 duration as Kafka's `--by-duration` takes it: `PnDTnHnMnS` (fractional
/// seconds allowed), e.g. `PT10M`, `P1DT2H`, `PT0.5S`.
pub fn parse_iso_duration(s: &str) -> GroupResult<Duration> {
    let bad = || {
        GroupError::InvalidRequest(format!(
            "cannot read duration {s:?}: expected ISO 8601 like PT10M or P1DT2H30M"
        ))
    };
    let rest = s.strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut millis = 0f64;
    let mut parse_part = |part: &str, units: &[(char, f64)]| -> GroupResult<()> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            let unit = units.iter().find(|(u, _)| *u == c).ok_or_else(bad)?.1;
            let n: f64 = num.parse().map_err(|_| bad())?;
            millis += n * unit;
            num.clear();
        }
        if num.is_empty() {
            Ok(())
        } else {
            Err(bad())
        }
    };
    parse_part(date, &[('W', 604_800_000.0), ('D', 86_400_000.0)])?;
    if let Some(t) = time {
        if t.is_empty() {
            return Err(bad());
        }
        parse_part(t, &[('H', 3_600_000.0), ('M', 60_000.0), ('S', 1000.0)])?;
    }
    if rest.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_millis(millis.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations() {
        assert_eq!(
            parse_iso_duration("PT10M").unwrap(),
            Duration::from_secs(600)
        );
        assert_eq!(
            parse_iso_duration("P1DT2H30M").unwrap(),
            Duration::from_secs(86_400 + 9_000)
        );
        assert_eq!(
            parse_iso_duration("PT0.5S").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_iso_duration("P2W").unwrap(),
            Duration::from_secs(14 * 86_400)
        );
        for bad in ["", "P", "PT", "10M", "PT10", "PT10X", "P1H"] {
            assert!(parse_iso_duration(bad).is_err(), "{bad}");
        }
    }
}
