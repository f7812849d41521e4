//! `eddy topics create|list|describe|alter-config|delete`.

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
    /// Change settings of a topic (`-c key=value`, repeatable; the partition count is fixed).
    /// Appenders already open keep the old settings until they reopen.
    AlterConfig {
        /// Topic name.
        name: String,
        /// Setting as key=value (repeatable), as for `topics create`.
        #[arg(long = "config", short = 'c', required = true)]
        configs: Vec<String>,
    },
    /// Delete a topic and all its data (refused while a partition has an appender).
    Delete {
        /// Topic name.
        name: String,
    },
}

impl TopicsCommand {
    /// Whether the command only reads.
    pub(crate) fn read_only(&self) -> bool {
        matches!(self, TopicsCommand::List | TopicsCommand::Describe { .. })
    }
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
                    "Created topic {} with {}.",
                    t.name(),
                    plural(u64::from(t.partitions()), "partition")
                )?,
            }
        }
        TopicsCommand::AlterConfig { name, configs } => {
            let settings: Vec<&str> = configs.iter().map(String::as_str).collect();
            let config = log.alter_topic_config(&name, &settings)?;
            writeln!(out, "Altered topic {name}: {}", settings_line(&config))?;
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
                    let settings: serde_json::Map<String, serde_json::Value> = topic
                        .config()
                        .settings()
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.into()))
                        .collect();
                    let doc = serde_json::json!({
                        "topic": topic.name(),
                        "partition_count": topic.partitions(),
                        "config": settings,
                        "partitions": parts,
                    });
                    writeln!(out, "{doc}")?;
                }
                Format::Table => {
                    writeln!(
                        out,
                        "Topic: {}\tPartitionCount: {}\tConfigs: {}",
                        topic.name(),
                        topic.partitions(),
                        settings_line(topic.config()),
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
            let groups = crate::Groups::new(log).delete_topic(&name)?;
            writeln!(out, "Deleted topic {name}.")?;
            if !groups.is_empty() {
                writeln!(
                    out,
                    "Removed its committed offsets from group(s): {}.",
                    groups.join(", ")
                )?;
            }
        }
    }
    Ok(())
}

/// `key=value,key=value` of every setting, as Kafka's `--describe` prints `Configs:`.
fn settings_line(config: &TopicConfig) -> String {
    config
        .settings()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `1 partition`, `3 partitions`.
pub(crate) fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
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
