//! `eddy groups list|describe|reset-offsets|delete`, shaped like Kafka's `kafka-consumer-groups`.

use std::io::Write;

use clap::{Args, Subcommand};

use super::time::parse_timestamp_ms;
use super::topics::{write_table, Format};
use super::CliError;
use crate::{parse_iso_duration, GroupDescription, Groups, Log, ResetScope, ResetTarget};

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
    /// Print the plan only (the default).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

fn group_name(positional: Option<String>, flag: Option<String>) -> Result<String, CliError> {
    positional
        .or(flag)
        .ok_or_else(|| CliError::Input("a group is required: GROUP or --group GROUP".into()))
}

fn dash(v: Option<u64>) -> String {
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
                Format::Table => {
                    for d in &descs {
                        print_description(&mut out, d)?;
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

fn reset(groups: &Groups, args: ResetArgs, out: &mut impl Write) -> Result<(), CliError> {
    let name = group_name(args.group, args.group_flag)?;
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
    let target = if args.to_earliest {
        ResetTarget::Earliest
    } else if args.to_latest {
        ResetTarget::Latest
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
            "say where to: --to-earliest, --to-latest, --to-offset N, --to-datetime T, --by-duration D or --shift-by N".into(),
        ));
    };
    let rows = groups.plan_reset(&name, &scope, target)?;
    for r in &rows {
        if let Some(why) = &r.clamped {
            eprintln!(
                "warning: topic {} partition {}: {why}",
                r.topic, r.partition
            );
        }
    }
    if args.execute {
        groups.execute_reset(&name, &rows)?;
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
