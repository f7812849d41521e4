//! The sensor tutorial's processor: readings from `raw-temp-data` (event time from the payload's
//! `ts`), 10 s tumbling windows with 1 s grace per sensor, count/min/max/mean of closed windows to
//! `agg-temperature`. Logs what it receives and produces (`--log-level`).
//!
//! `cargo run --release -p eddy-examples --bin temperature-processor -- [--data-dir DIR] [--until-idle] [--aggregation reduce|builtin] [--on-error fail|skip|dead-letter=TOPIC] [--log-level info]`

use clap::Parser;
use eddy_examples::common::{init_logging, run, AnyResult, DataDirArg, OnErrorArg, RunArgs};
use eddy_examples::sensor::{processor, Aggregation};

/// The sensor tutorial's processor: readings of `raw-temp-data` in 10 s tumbling windows
/// with 1 s grace per sensor; count/min/max/mean of each closed window to `agg-temperature`.
#[derive(Parser)]
#[command(version)]
struct Options {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    errors: OnErrorArg,
    /// How windows are aggregated.
    #[arg(long, value_enum, default_value = "reduce")]
    aggregation: Aggregation,
}

fn main() -> std::process::ExitCode {
    eddy_examples::common::report(try_main())
}

fn try_main() -> AnyResult<()> {
    let o = Options::parse();
    init_logging(o.run.log_level);
    tracing::info!("Starting application");
    let mut app = processor(&o.dir.data_dir, o.aggregation, o.errors.on_error)?;
    run(&mut app, &o.run, "readings", "window results")?;
    Ok(())
}
