//! The `eddy` command: topics, produce and consume over a data directory. It uses only the
//! crate's public API. Errors print one line naming what failed and exit with a stable code
//! (see [`exit_code`]).

mod consume;
mod groups;
mod produce;
mod time;
mod topics;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{GroupError, Log, LogError};

/// Data directory used when neither `--data-dir` nor `EDDY_DATA_DIR` is given.
pub const DEFAULT_DATA_DIR: &str = "./eddy-data";

#[derive(Parser)]
#[command(
    name = "eddy",
    version,
    about = "An embedded stream engine: durable topics with no broker"
)]
struct Cli {
    /// Data directory holding topics (env EDDY_DATA_DIR; default ./eddy-data).
    #[arg(long, global = true, env = "EDDY_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, describe and delete topics.
    Topics {
        #[command(subcommand)]
        action: topics::TopicsCommand,
    },
    /// Append lines from standard input to a topic.
    Produce(produce::ProduceArgs),
    /// Print records of a topic.
    Consume(consume::ConsumeArgs),
    /// List, describe, reset and delete consumer groups.
    Groups {
        #[command(subcommand)]
        action: groups::GroupsCommand,
    },
}

/// Stable exit codes: 0 success, 1 I/O or other failure, 2 bad arguments or names, 3 topic or
/// partition not found, 4 topic exists, 5 partition locked by another process, 6 corrupt data,
/// 7 offset out of range, 8 consumer group has live members.
pub fn exit_code(e: &LogError) -> i32 {
    match e {
        LogError::InvalidName { .. } | LogError::InvalidConfig(_) => 2,
        LogError::TopicNotFound(_) | LogError::PartitionNotFound { .. } => 3,
        LogError::TopicExists(_) => 4,
        LogError::Locked { .. } => 5,
        LogError::Corrupt { .. } => 6,
        LogError::OffsetOutOfRange { .. } => 7,
        LogError::Io { .. } | LogError::AppendRefused { .. } => 1,
    }
}

/// Error of a CLI command: a log error or a message about the input.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Group(GroupError),
    #[error("{0}")]
    Input(String),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs the command line; returns the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    let result = Log::open(&cli.data_dir)
        .map_err(CliError::from)
        .and_then(|log| match cli.command {
            Command::Topics { action } => topics::run(&log, action),
            Command::Produce(args) => produce::run(&log, args),
            Command::Consume(args) => consume::run(&log, args),
            Command::Groups { action } => groups::run(&log, action),
        });
    match result {
        Ok(()) => 0,
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("eddy: {e}");
            match &e {
                CliError::Log(l) => exit_code(l),
                CliError::Group(GroupError::Log(l)) => exit_code(l),
                CliError::Group(GroupError::GroupNotFound(_)) => 3,
                CliError::Group(GroupError::GroupActive { .. }) => 8,
                CliError::Group(GroupError::Corrupt { .. }) => 6,
                CliError::Group(_) => 2,
                CliError::Input(_) => 2,
                CliError::Output(_) => 1,
            }
        }
    }
}

impl From<GroupError> for CliError {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::Log(l) => CliError::Log(l),
            other => CliError::Group(other),
        }
    }
}
