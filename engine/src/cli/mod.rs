//! The `eddy` command: topics, produce and consume over a data directory. It uses only the
//! crate's public API. Errors print one line naming what failed and exit with a stable code
//! (see [`exit_code`]). Commands that only look (list, describe, consume without a group, a
//! reset's dry run) never create the data directory.

mod consume;
mod groups;
mod output;
mod produce;
pub(crate) mod time;
mod topics;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{GroupError, Log, LogError};

pub use crate::DEFAULT_DATA_DIR;

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
    /// Mirror a local topic out to Kafka or a Kafka topic in (`eddy mirror out|in --brokers
    /// HOST:PORT --topic T`; `eddy mirror --help` for more). Runs `eddy-mirror`, the Kafka
    /// connector's program, found beside `eddy` or on PATH.
    #[command(disable_help_flag = true)]
    Mirror {
        /// Arguments of `eddy-mirror`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Serve the web console of the data directory: topics, messages, consumer groups, charts
    /// and `/metrics` (`eddy console [--listen 127.0.0.1:8080] [--allow-writes]`; `eddy console
    /// --help` for more). Runs `eddy-console`, found beside `eddy` or on PATH.
    #[command(disable_help_flag = true)]
    Console {
        /// Arguments of `eddy-console`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// Stable exit codes: 0 success, 1 I/O or other failure, 2 bad arguments or names, 3 topic or
/// partition not found, 4 topic exists, 5 partition locked by another process, 6 corrupt data,
/// 7 offset out of range, 8 consumer group has live members, 9 fenced (a newer instance of a
/// transactional producer owns its transactions).
pub fn exit_code(e: &LogError) -> i32 {
    match e {
        LogError::InvalidName { .. } | LogError::InvalidConfig(_) => 2,
        LogError::TopicNotFound { .. } | LogError::PartitionNotFound { .. } => 3,
        LogError::TopicExists(_) => 4,
        LogError::Locked { .. } => 5,
        LogError::Corrupt { .. } | LogError::UnsupportedFormat { .. } => 6,
        LogError::OffsetOutOfRange { .. } => 7,
        LogError::Fenced { .. } => 9,
        LogError::Io { .. }
        | LogError::AppendRefused { .. }
        | LogError::ReadOnly { .. }
        | LogError::Poisoned { .. } => 1,
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
    match &cli.command {
        Command::Mirror { args } => return run_companion(&MIRROR, &cli.data_dir, args),
        Command::Console { args } => return run_companion(&CONSOLE, &cli.data_dir, args),
        _ => {}
    }
    let read_only = match &cli.command {
        Command::Topics { action } => action.read_only(),
        Command::Consume(args) => args.read_only(),
        Command::Groups { action } => action.read_only(),
        Command::Produce(_) | Command::Mirror { .. } | Command::Console { .. } => false,
    };
    let log = if read_only {
        Ok(Log::open_read_only(&cli.data_dir))
    } else {
        Log::open(&cli.data_dir)
    };
    let result = log
        .map_err(CliError::from)
        .and_then(|log| match cli.command {
            Command::Topics { action } => topics::run(&log, action),
            Command::Produce(args) => produce::run(&log, args),
            Command::Consume(args) => consume::run(&log, args),
            Command::Groups { action } => groups::run(&log, action),
            Command::Mirror { .. } | Command::Console { .. } => Ok(()),
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

/// A program of its own that an `eddy` subcommand runs.
struct Companion {
    /// The subcommand.
    command: &'static str,
    /// The program.
    program: &'static str,
    /// What the program is.
    what: &'static str,
    /// The command that installs it.
    install: &'static str,
}

/// The Kafka connector's program: the engine never links librdkafka.
const MIRROR: Companion = Companion {
    command: "eddy mirror",
    program: "eddy-mirror",
    what: "the Kafka connector's program eddy-mirror",
    install: "cargo install --path connectors/kafka",
};

/// The web console: the engine never links an HTTP server.
const CONSOLE: Companion = Companion {
    command: "eddy console",
    program: "eddy-console",
    what: "the console's program eddy-console",
    install: "cargo install --path console",
};

/// Replaces this process with `companion`'s program run with `args` on `data_dir` (so that
/// signals reach it directly); returns an exit code only when that fails.
fn run_companion(
    companion: &Companion,
    data_dir: &std::path::Path,
    args: &[std::ffi::OsString],
) -> i32 {
    use std::os::unix::process::CommandExt;
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(companion.program)))
        .filter(|p| p.is_file());
    let program = beside.unwrap_or_else(|| companion.program.into());
    let e = std::process::Command::new(&program)
        .arg0(companion.command)
        .args(args)
        .env("EDDY_DATA_DIR", data_dir)
        .exec();
    if e.kind() == std::io::ErrorKind::NotFound {
        eprintln!(
            "eddy: `{}` needs {}, which is neither beside eddy nor on PATH; install it with `{}`",
            companion.command, companion.what, companion.install
        );
        return 2;
    }
    eprintln!("eddy: cannot run {}: {e}", program.display());
    1
}

impl From<GroupError> for CliError {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::Log(l) => CliError::Log(l),
            other => CliError::Group(other),
        }
    }
}
