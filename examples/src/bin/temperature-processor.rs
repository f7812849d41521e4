//! The sensor tutorial's processor: readings from `raw-temp-data` (event time from the payload's
//! `ts`), 10 s tumbling windows with 1 s grace per sensor, count/min/max/mean of closed windows to
//! `agg-temperature`. Logs what it receives and produces (`--log-level`).
//!
//! `cargo run --release -p eddy-examples --bin temperature-processor -- [--data-dir DIR] [--until-idle] [--aggregation reduce|builtin] [--closing key|partition] [--on-error fail|skip|dead-letter=TOPIC] [--log-level info]`

use clap::Parser;
use eddy::Closing;
use eddy_examples::common::{init_logging, run, AnyResult, DataDirArg, OnErrorArg, RunArgs};
use eddy_examples::sensor::{processor, Aggregation, CLOSING};

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
    /// Whose stream time closes a window: `key` (the sensor's own readings, as the tutorial's
    /// Quix Streams processor does) or `partition` (any sensor's, as Kafka Streams does).
    #[arg(long, default_value_t = CLOSING)]
    closing: Closing,
}

fn main() -> std::process::ExitCode {
    eddy_examples::common::report(try_main())
}

fn try_main() -> AnyResult<()> {
    let o = Options::parse();
    init_logging(o.run.log_level);
    tracing::info!("Starting application");
    eprintln!("{}", closing_line(o.closing));
    let mut app = processor(&o.dir.data_dir, o.aggregation, o.closing, o.errors.on_error)?;
    run(&mut app, &o.run, "readings", "window results")?;
    Ok(())
}

/// What the processor says at start about how its windows close.
fn closing_line(closing: Closing) -> String {
    let whose = match closing {
        Closing::Key => "a reading of that sensor",
        Closing::Partition => "a reading of any sensor in its partition",
    };
    format!(
        "closing strategy: {closing} (a sensor's window closes once {whose} passes its end + \
         grace)"
    )
}
