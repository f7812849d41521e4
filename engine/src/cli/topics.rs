//! `eddy topics create|list|describe|delete`.

use std::io::Write;

use clap::{Subcommand, ValueEnum};

use super::CliError;
use crate::{Log, TopicConfig};

/// Output format of listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns.
    Table,
    /// One JSON document.
    Json,
}

#[derive(Subcommand)]
pub(crate) enum TopicsCommand {
    /// Create a topic.
    Create {
        /// Topic name: letters, digits, '.', '_' and '-', at most 249 characters.
        name: String,
        /// Number of partitions (fixed for the topic's life).
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Topic setting as key=value (repeatable): durability=none|always|<ms>, segment.bytes,
        /// segment.ms, retention.ms, retention.bytes, cleanup.policy=delete|compact,
        /// delete.retention.ms, index.interval.bytes.
        #[arg(long = "config", short = 'c')]
        configs: Vec<String>,
        /// Succeed without change if the topic exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topic names.
    List,
    /// Show a topic's settings and each partition's offsets and size.
    Describe {
        /// Topic name.
        name: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Delete a topic and all its data (refused while a partition has an appender).
    Delete {
        /// Topic name.
        name: String,
    },
}

pub(crate) fn run(log: &Log, cmd: TopicsCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match cmd {
        TopicsCommand::Create {
            name,
            partitions,
            configs,
            if_not_exists,
        } => {
            let mut config = TopicConfig::with_partitions(partitions);
            for c in &configs {
                config.set(c)?;
            }
            match log.create_topic(&name, config) {
                Err(crate::LogError::TopicExists(_)) if if_not_exists => {}
                Err(e) => return Err(e.into()),
                Ok(t) => writeln!(
                    out,
                    "Created topic {} with {} partitions.",
                    t.name(),
                    t.partitions()
                )?,
            }
        }
        TopicsCommand::List => {
            for name in log.list_topics()? {
                writeln!(out, "{name}")?;
            }
        }
        TopicsCommand::Describe { name, format } => {
            let topic = log.topic(&name)?;
            let parts = topic.describe()?;
            match format {
                Format::Json => {
                    let doc = serde_json::json!({
                        "topic": topic.name(),
                        "config": topic.config(),
                        "partitions": parts,
                    });
                    writeln!(out, "{doc}")?;
                }
                Format::Table => {
                    let c = topic.config();
                    writeln!(
                        out,
                        "Topic: {}\tPartitionCount: {}\tDurability: {:?}\tCleanupPolicy: {:?}\t\
                         SegmentBytes: {}\tRetentionMs: {}\tRetentionBytes: {}",
                        topic.name(),
                        c.partitions,
                        c.durability,
                        c.cleanup_policy,
                        c.segment_bytes,
                        c.retention_ms.map_or("-1".into(), |v| v.to_string()),
                        c.retention_bytes.map_or("-1".into(), |v| v.to_string()),
                    )?;
                    let rows: Vec<[String; 5]> = parts
                        .iter()
                        .map(|p| {
                            [
                                p.partition.to_string(),
                                p.log_start_offset.to_string(),
                                p.end_offset.to_string(),
                                p.segments.to_string(),
                                p.bytes.to_string(),
                            ]
                        })
                        .collect();
                    write_table(
                        &mut out,
                        &[
                            "PARTITION",
                            "LOG-START-OFFSET",
                            "LOG-END-OFFSET",
                            "SEGMENTS",
                            "BYTES",
                        ],
                        &rows,
                    )?;
                }
            }
        }
        TopicsCommand::Delete { name } => {
            log.delete_topic(&name)?;
            writeln!(out, "Deleted topic {name}.")?;
        }
    }
    Ok(())
}

/// Writes rows under headers in left-aligned columns separated by two spaces.
pub(crate) fn write_table<const N: usize>(
    out: &mut impl Write,
    headers: &[&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = headers.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}
