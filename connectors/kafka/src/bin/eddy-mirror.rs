//! `eddy-mirror out|in`: mirrors a local topic to Kafka or a Kafka topic to a local topic, until
//! stopped (Ctrl-C or SIGTERM: outstanding records are acknowledged and committed first), logging
//! rate and lag. `eddy mirror ...` runs this program.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use eddy::Log;
use eddy_kafka::{
    mirror_in, mirror_out, parse_setting, KafkaSettings, MirrorInConfig, MirrorOutConfig,
    MirrorStats, StartAt,
};

#[derive(Parser)]
#[command(
    name = "eddy mirror",
    version,
    about = "Mirror topics between eddy's local log and a Kafka cluster"
)]
struct Cli {
    #[command(subcommand)]
    direction: Direction,
}

#[derive(Subcommand)]
enum Direction {
    /// A local topic → a Kafka topic (created with the same partition count when missing).
    Out {
        #[command(flatten)]
        common: Common,
        /// Replicas of the Kafka topic when the mirror creates it (-1: the broker's default).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i32,
    },
    /// A Kafka topic → a local topic (created with the same partition count when missing).
    In {
        #[command(flatten)]
        common: Common,
        /// Where a partition never mirrored before starts in Kafka.
        #[arg(long, value_enum, default_value = "earliest")]
        start: Start,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Start {
    Earliest,
    Latest,
}

#[derive(Args)]
struct Common {
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    #[arg(long)]
    brokers: String,
    /// Topic to read (local for `out`, Kafka for `in`).
    #[arg(long)]
    topic: String,
    /// Topic to write (default: the same name).
    #[arg(long)]
    to: Option<String>,
    /// Local consumer group keeping the progress (default `mirror-out.<topic>` or
    /// `mirror-in.<topic>`).
    #[arg(long)]
    group: Option<String>,
    /// A librdkafka setting, `key=value`; repeatable (e.g. `-X linger.ms=20`).
    #[arg(short = 'X', value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// Data directory of the local log.
    #[arg(long, env = "EDDY_DATA_DIR", default_value = eddy::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Seconds between status lines (rate and lag); 0 for none.
    #[arg(long, default_value_t = 5.0)]
    status_interval: f64,
    /// Stop once everything there is has been mirrored, instead of running until stopped.
    #[arg(long)]
    until_idle: bool,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, default_value = "info")]
    log_level: tracing::Level,
}

impl Common {
    fn kafka(&self) -> KafkaSettings {
        let mut k = KafkaSettings::new(&self.brokers);
        k.settings = self.settings.clone();
        k
    }

    fn status_interval(&self) -> Option<Duration> {
        (self.status_interval > 0.0).then(|| Duration::from_secs_f64(self.status_interval))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let common = match &cli.direction {
        Direction::Out { common, .. } | Direction::In { common, .. } => common,
    };
    tracing_subscriber::fmt()
        .with_max_level(common.log_level)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("error: cannot handle signal {signal}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let log = match Log::open(&common.data_dir) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match &cli.direction {
        Direction::Out {
            common,
            replication_factor,
        } => {
            let mut c = MirrorOutConfig::new(common.kafka(), &common.topic);
            if let Some(to) = &common.to {
                c.to = to.clone();
            }
            if let Some(g) = &common.group {
                c.group = g.clone();
            }
            c.replication_factor = *replication_factor;
            c.until_idle = common.until_idle;
            c.status_interval = common.status_interval();
            mirror_out(&log, &c, &stop)
        }
        Direction::In { common, start } => {
            let mut c = MirrorInConfig::new(common.kafka(), &common.topic);
            if let Some(to) = &common.to {
                c.to = to.clone();
            }
            if let Some(g) = &common.group {
                c.group = g.clone();
            }
            c.start_at = match start {
                Start::Earliest => StartAt::Earliest,
                Start::Latest => StartAt::Latest,
            };
            c.until_idle = common.until_idle;
            c.status_interval = common.status_interval();
            mirror_in(&log, &c, &stop)
        }
    };
    match outcome {
        Ok(stats) => {
            print_stats(&stats);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_stats(s: &MirrorStats) {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    println!(
        "mirrored {} records in {:.1} s ({:.0} records/s); {} found already mirrored; lag {}",
        s.records,
        secs,
        s.records as f64 / secs,
        s.skipped,
        s.lag
    );
}
