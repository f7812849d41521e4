//! `eddy groups list|describe|reset-offsets|delete`, shaped like Kafka's `kafka-consumer-groups`.

use std::io::Write;

use clap::{Args, Subcommand};

use super::time::parse_timestamp_ms;
use super::topics::{write_table, Format};
use super::CliError;
use crate::{
    parse_iso_duration, GroupDescription, Groups, Log, PartitionLag, ResetScope, ResetTarget,
};

#[derive(Subcommand)]
pub(crate) enum GroupsCommand {
    /// List consumer groups.
    List,
    /// Committed offsets, log-end offsets, lag and owners of a group's partitions.
    Describe {
        /// Group name (or --group).
        group: Option<String>,
        /// Group name.
        #[arg(long = "group", conflicts_with = "group")]
        group_flag: Option<String>,
        /// Describe every group.
        #[arg(long, conflicts_with_all = ["group", "group_flag"])]
        all_groups: bool,
        /// Show the live members and the partitions each owns instead of the offsets.
        #[arg(long, conflicts_with = "state")]
        members: bool,
        /// Show the group's state (Stable, Empty or Dead) and member count instead of the
        /// offsets.
        #[arg(long)]
        state: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Move a group's committed offsets. Prints the plan; changes nothing without --execute.
    ResetOffsets(ResetArgs),
    /// Delete a group and its committed offsets (refused while it has live members).
    Delete {
        /// Group name (or --group).
        group: Option<String>,
        /// Group name.
        #[arg(long = "group", conflicts_with = "group")]
        group_flag: Option<String>,
    },
}

#[derive(Args)]
pub(crate) struct ResetArgs {
    /// Group name (or --group).
    group: Option<String>,
    /// Group name.
    #[arg(long = "group", conflicts_with = "group")]
    group_flag: Option<String>,
    /// Every topic the group has offsets for.
    #[arg(long, conflicts_with = "topic")]
    all_topics: bool,
    /// A topic, optionally with partitions: `TOPIC` or `TOPIC:0,2` (repeatable).
    #[arg(long)]
    topic: Vec<String>,
    /// To the offsets in this CSV file of `topic,partition,offset` lines (as --export writes).
    #[arg(long, group = "target", conflicts_with_all = ["topic", "all_topics"])]
    from_file: Option<std::path::PathBuf>,
    /// To the committed offsets as they are (the log end where none is committed): with
    /// --export, saves a group's offsets to restore later with --from-file.
    #[arg(long, group = "target")]
    to_current: bool,
    /// To the log-start offset.
    #[arg(long, group = "target")]
    to_earliest: bool,
    /// To the log-end offset.
    #[arg(long, group = "target")]
    to_latest: bool,
    /// To this offset.
    #[arg(long, group = "target")]
    to_offset: Option<u64>,
    /// To the first record at or after this time (local time like 2014-09-13T07:24:00, RFC 3339,
    /// or ms since the epoch).
    #[arg(long, group = "target")]
    to_datetime: Option<String>,
    /// To the first record at or after now minus this ISO-8601 duration (e.g. PT10M).
    #[arg(long, group = "target")]
    by_duration: Option<String>,
    /// Move the committed offset by N (negative to go back).
    #[arg(long, group = "target", allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// Apply the plan (the default is a dry run).
    #[arg(long)]
    execute: bool,
    /// Keep stateful applications' state: they resume at the new offsets with the state they
    /// have (to move over a few records that cannot be processed). Without it, a stateful
    /// application rebuilds its state from the new offsets.
    #[arg(long)]
    keep_state: bool,
    /// Print the plan only (the default).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Print the plan as CSV `topic,partition,offset` lines (for --from-file) instead.
    #[arg(long)]
    export: bool,
}

impl GroupsCommand {
    /// Whether the command only reads (a reset without --execute is a dry run).
    pub(crate) fn read_only(&self) -> bool {
        match self {
            GroupsCommand::List | GroupsCommand::Describe { .. } => true,
            GroupsCommand::ResetOffsets(args) => !args.execute,
            GroupsCommand::Delete { .. } => false,
        }
    }
}

fn group_name(positional: Option<String>, flag: Option<String>) -> Result<String, CliError> {
    positional
        .or(flag)
        .ok_or_else(|| CliError::Input("a group is required: GROUP or --group GROUP".into()))
}

fn dash(v: Option<impl ToString>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn print_description(out: &mut impl Write, d: &GroupDescription) -> std::io::Result<()> {
    if d.members.is_empty() {
        writeln!(
            out,
            "\nConsumer group '{}' has no active members.\n",
            d.group
        )?;
    }
    let rows: Vec<[String; 7]> = d
        .partitions
        .iter()
        .map(|p| {
            [
                d.group.clone(),
                p.topic.clone(),
                p.partition.to_string(),
                dash(p.current_offset),
                p.log_end_offset.to_string(),
                dash(p.lag),
                p.consumer_id.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
        ],
        &rows,
    )?;
    for p in d.partitions.iter().filter(|p| p.committed_past_end()) {
        writeln!(
            out,
            "WARNING: group '{}' committed offset {} for {}-{}, past its log end {}: the log lost \
             records (a crash or a damaged disk) or the topic was replaced; consuming would skip \
             the offsets in between until new records reach it. Check, then reset the offsets.",
            d.group,
            dash(p.current_offset),
            p.topic,
            p.partition,
            p.log_end_offset
        )?;
    }
    Ok(())
}

/// Kafka's group states as far as eddy has them: `Stable` with live members, `Empty` without.
fn state_of(d: &GroupDescription) -> &'static str {
    if d.members.is_empty() {
        "Empty"
    } else {
        "Stable"
    }
}

fn print_states(out: &mut impl Write, descs: &[GroupDescription]) -> std::io::Result<()> {
    let rows: Vec<[String; 4]> = descs
        .iter()
        .map(|d| {
            [
                d.group.clone(),
                "roundrobin".into(),
                state_of(d).into(),
                d.members.len().to_string(),
            ]
        })
        .collect();
    write_table(
        out,
        &["GROUP", "ASSIGNMENT-STRATEGY", "STATE", "#MEMBERS"],
        &rows,
    )
}

fn print_members(out: &mut impl Write, d: &GroupDescription) -> std::io::Result<()> {
    if d.members.is_empty() {
        return writeln!(
            out,
            "\nConsumer group '{}' has no active members.\n",
            d.group
        );
    }
    let rows: Vec<[String; 5]> = d
        .members
        .iter()
        .map(|m| {
            let owned: Vec<&PartitionLag> = d
                .partitions
                .iter()
                .filter(|p| p.consumer_id.as_deref() == Some(m.id.as_str()))
                .collect();
            let mut assignment: Vec<String> = Vec::new();
            for topic in m.topics.iter() {
                let parts: Vec<String> = owned
                    .iter()
                    .filter(|p| &p.topic == topic)
                    .map(|p| p.partition.to_string())
                    .collect();
                if !parts.is_empty() {
                    assignment.push(format!("{topic}({})", parts.join(",")));
                }
            }
            [
                d.group.clone(),
                m.id.clone(),
                m.topics.join(","),
                owned.len().to_string(),
                if assignment.is_empty() {
                    "-".into()
                } else {
                    assignment.join(" ")
                },
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "GROUP",
            "CONSUMER-ID",
            "TOPICS",
            "#PARTITIONS",
            "ASSIGNMENT",
        ],
        &rows,
    )
}

pub(crate) fn run(log: &Log, cmd: GroupsCommand) -> Result<(), CliError> {
    let groups = Groups::new(log);
    let mut out = std::io::stdout().lock();
    match cmd {
        GroupsCommand::List => {
            for g in groups.list()? {
                writeln!(out, "{g}")?;
            }
        }
        GroupsCommand::Describe {
            group,
            group_flag,
            all_groups,
            members,
            state,
            format,
        } => {
            let names = if all_groups {
                groups.list()?
            } else {
                vec![group_name(group, group_flag)?]
            };
            let descs = names
                .iter()
                .map(|n| groups.describe(n))
                .collect::<Result<Vec<_>, _>>()?;
            match format {
                Format::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&descs).map_err(|e| CliError::Input(e.to_string()))?
                )?,
                Format::Table if state => print_states(&mut out, &descs)?,
                Format::Table => {
                    for d in &descs {
                        if members {
                            print_members(&mut out, d)?;
                        } else {
                            print_description(&mut out, d)?;
                        }
                        if descs.len() > 1 {
                            writeln!(out)?;
                        }
                    }
                }
            }
        }
        GroupsCommand::ResetOffsets(args) => reset(&groups, args, &mut out)?,
        GroupsCommand::Delete { group, group_flag } => {
            let name = group_name(group, group_flag)?;
            groups.delete(&name)?;
            writeln!(out, "Deleted consumer group '{name}'.")?;
        }
    }
    Ok(())
}

fn parse_topic(spec: &str) -> Result<(String, Option<Vec<u32>>), CliError> {
    match spec.split_once(':') {
        None => Ok((spec.to_owned(), None)),
        Some((t, parts)) => {
            let ps = parts
                .split(',')
                .map(|p| p.trim().parse::<u32>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    CliError::Input(format!(
                        "bad partition list in --topic {spec:?}: expected TOPIC:0,1,2"
                    ))
                })?;
            Ok((t.to_owned(), Some(ps)))
        }
    }
}

/// Reads `topic,partition,offset` lines (blank lines and `#` comments skipped).
fn read_offsets_file(path: &std::path::Path) -> Result<Vec<(String, u32, u64)>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
    let mut offsets = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            CliError::Input(format!(
                "{} line {}: expected topic,partition,offset, got {line:?}",
                path.display(),
                i + 1
            ))
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [topic, partition, offset] = fields.as_slice() else {
            return Err(bad());
        };
        offsets.push((
            (*topic).to_owned(),
            partition.parse().map_err(|_| bad())?,
            offset.parse().map_err(|_| bad())?,
        ));
    }
    Ok(offsets)
}

fn reset_target(args: &ResetArgs) -> Result<ResetTarget, CliError> {
    Ok(if args.to_earliest {
        ResetTarget::Earliest
    } else if args.to_latest {
        ResetTarget::Latest
    } else if args.to_current {
        ResetTarget::Current
    } else if let Some(o) = args.to_offset {
        ResetTarget::Offset(o)
    } else if let Some(t) = &args.to_datetime {
        ResetTarget::Datetime(parse_timestamp_ms(t).map_err(CliError::Input)?)
    } else if let Some(d) = &args.by_duration {
        ResetTarget::Duration(parse_iso_duration(d)?)
    } else if let Some(n) = args.shift_by {
        ResetTarget::ShiftBy(n)
    } else {
        return Err(CliError::Input(
            "say where to: --to-earliest, --to-latest, --to-current, --to-offset N, \
             --to-datetime T, --by-duration D, --shift-by N or --from-file F"
                .into(),
        ));
    })
}

fn reset(groups: &Groups, args: ResetArgs, out: &mut impl Write) -> Result<(), CliError> {
    let name = group_name(args.group.clone(), args.group_flag.clone())?;
    let rows = if let Some(path) = &args.from_file {
        groups.plan_reset_to(&name, &read_offsets_file(path)?)?
    } else {
        let scope = if args.all_topics {
            ResetScope::AllTopics
        } else if args.topic.is_empty() {
            return Err(CliError::Input(
                "say which topics to reset: --all-topics or --topic TOPIC[:PARTITIONS]".into(),
            ));
        } else {
            ResetScope::Topics(
                args.topic
                    .iter()
                    .map(|t| parse_topic(t))
                    .collect::<Result<_, _>>()?,
            )
        };
        groups.plan_reset(&name, &scope, reset_target(&args)?)?
    };
    for r in &rows {
        if let Some(why) = &r.clamped {
            eprintln!(
                "warning: topic {} partition {}: {why}",
                r.topic, r.partition
            );
        }
    }
    if rows.is_empty() {
        eprintln!(
            "warning: group '{name}' has no committed offsets to reset; name topics with --topic"
        );
    }
    if args.execute {
        if args.keep_state {
            groups.execute_reset_keeping_state(&name, &rows)?;
        } else {
            groups.execute_reset(&name, &rows)?;
        }
    }
    if args.export {
        for r in &rows {
            writeln!(out, "{},{},{}", r.topic, r.partition, r.new_offset)?;
        }
        return Ok(());
    }
    match args.format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string(&rows).map_err(|e| CliError::Input(e.to_string()))?
        )?,
        Format::Table => {
            let table: Vec<[String; 4]> = rows
                .iter()
                .map(|r| {
                    [
                        name.clone(),
                        r.topic.clone(),
                        r.partition.to_string(),
                        r.new_offset.to_string(),
                    ]
                })
                .collect();
            write_table(out, &["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"], &table)?;
            if !args.execute {
                writeln!(out, "(dry run: nothing changed; add --execute to apply)")?;
            }
        }
    }
    Ok(())
}
