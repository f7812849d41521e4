//! [`reset_offsets`]: an application group's offsets on Kafka reset for reprocessing, as
//! `eddy groups reset-offsets` resets them on the local log: the state goes with them.
//!
//! The reset is recorded twice, so that any broker carries it: in the commit's metadata
//! (`eddy:reset`, which Kafka keeps) and as a reset record at the end of each changelog
//! partition of the group's store of that topic (`eddy::reset_record`), for brokers that drop
//! commit metadata (tansu 0.6). The records go first: a reset cut short after them still
//! restarts the tasks at the offsets asked for, with their state cleared. A group with members
//! is refused, as Kafka's own tool refuses it.

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use eddy::{changelog_name, reset_record, ResetRow, ResetTarget, StreamResult, RESET_METADATA};

use super::{backend_error, EndsProbe, KafkaProducer};
use crate::cluster::partition_count;
use crate::KafkaSettings;

/// Resets the committed offsets of `group` on every partition of `topic` to `target`, and
/// makes the group's application clear its state for them at its next start (module docs).
/// Returns a row per partition; with `execute` false nothing changes (a dry run).
pub fn reset_offsets(
    settings: &KafkaSettings,
    group: &str,
    topic: &str,
    target: &ResetTarget,
    execute: bool,
) -> StreamResult<Vec<ResetRow>> {
    let failed = |what: String, cause: &dyn std::fmt::Display| {
        backend_error(settings, format!("reset of group {group}: {what}"), cause)
    };
    let consumer: BaseConsumer = settings
        .client_config(&[("group.id", group), ("enable.auto.commit", "false")])
        .create()
        .map_err(|e| failed("create a client".into(), &e))?;
    refuse_if_active(&consumer, settings, group).map_err(|e| failed("describe".into(), &e))?;
    let partitions = partition_count(consumer.client(), topic, settings.request_timeout)
        .map_err(|e| failed(format!("describe topic {topic}"), &e))?
        .ok_or_else(|| failed(format!("topic {topic}"), &"no such topic in Kafka"))?;
    let ends = EndsProbe::new(settings).map_err(|e| failed("create a client".into(), &e))?;
    let mut all = TopicPartitionList::new();
    for p in 0..partitions {
        let _ = all.add_partition_offset(topic, p as i32, Offset::Invalid);
    }
    let committed = (consumer.committed_offsets(all, settings.request_timeout))
        .map_err(|e| failed("read committed offsets".into(), &e))?;
    let mut rows = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let current = committed
            .find_partition(topic, p as i32)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o as u64),
                _ => None,
            });
        let (low, high) = (ends.ends(topic, p))
            .map_err(|e| failed(format!("ends of {topic} partition {p}"), &e))?;
        let wanted = match *target {
            ResetTarget::Earliest => low as i128,
            ResetTarget::Latest => high as i128,
            ResetTarget::Offset(o) => o as i128,
            ResetTarget::ShiftBy(n) => current.unwrap_or(high) as i128 + n as i128,
            ResetTarget::Current => current.unwrap_or(high) as i128,
            ResetTarget::Datetime(_) | ResetTarget::Duration(_) => {
                return Err(failed(
                    "to a time".into(),
                    &"not supported on Kafka yet: reset to an offset",
                ))
            }
        };
        let new_offset = wanted.clamp(low as i128, high as i128) as u64;
        let clamped = (new_offset as i128 != wanted).then(|| {
            format!("{wanted} is outside {low}..={high} of partition {p}: clamped to {new_offset}")
        });
        rows.push(ResetRow {
            topic: topic.to_owned(),
            partition: p,
            current_offset: current,
            new_offset,
            clamped,
        });
    }
    if !execute {
        return Ok(rows);
    }
    let changelog = changelog_name(group, topic);
    let has_changelog = partition_count(consumer.client(), &changelog, settings.request_timeout)
        .map_err(|e| failed(format!("describe topic {changelog}"), &e))?
        .is_some();
    if has_changelog {
        let producer = KafkaProducer::new(settings.clone())?;
        for row in &rows {
            producer.send(&changelog, row.partition, &[reset_record(row.new_offset)])?;
        }
        producer.flush()?;
    }
    let mut offsets = TopicPartitionList::new();
    for row in &rows {
        let mut e = offsets.add_partition(topic, row.partition as i32);
        (e.set_offset(Offset::Offset(row.new_offset as i64)))
            .map_err(|e| failed("commit".into(), &e))?;
        e.set_metadata(RESET_METADATA);
    }
    (consumer.commit(&offsets, CommitMode::Sync)).map_err(|e| failed("commit".into(), &e))?;
    tracing::info!(
        group,
        topic,
        partitions,
        changelog = has_changelog,
        "Kafka group offsets reset; the application clears its state at its next start"
    );
    Ok(rows)
}

/// An error when the group has members: they would overwrite the reset with their commits.
fn refuse_if_active(
    consumer: &BaseConsumer,
    settings: &KafkaSettings,
    group: &str,
) -> Result<(), String> {
    let groups = (consumer.fetch_group_list(Some(group), settings.request_timeout))
        .map_err(|e| e.to_string())?;
    for g in groups.groups() {
        if g.name() == group && !g.members().is_empty() {
            return Err(format!(
                "the group has {} active member(s) (state {}): stop its application first",
                g.members().len(),
                g.state()
            ));
        }
    }
    Ok(())
}
