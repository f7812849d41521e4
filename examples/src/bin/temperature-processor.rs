//! The sensor tutorial's processor: readings from `raw-temp-data` (event time from the payload's
//! `ts`), 10 s tumbling windows with 1 s grace per sensor, count/min/max/mean of closed windows to
//! `agg-temperature`. Logs what it receives and produces (`--log-level`).
//!
//! `cargo run --release -p eddy-examples --bin temperature-processor -- [--data-dir DIR] [--until-idle] [--aggregation reduce|builtin] [--closing key|partition] [--on-error fail|skip|dead-letter=TOPIC] [--metrics-listen 127.0.0.1:9464] [--log-level info]`

use clap::Parser;
use eddy::Closing;
use eddy_examples::common::{init_logging, run, AnyResult, DataDirArg, OnErrorArg, RunArgs};
use eddy_examples::sensor::{processor_config, processor_on, Aggregation, CLOSING};

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
    /// Serve the processor's metrics to Prometheus at http://ADDRESS/metrics.
    #[arg(long, value_name = "ADDRESS")]
    metrics_listen: Option<std::net::SocketAddr>,
}

fn main() -> std::process::ExitCode {
    eddy_examples::common::report(try_main())
}

fn try_main() -> AnyResult<()> {
    let o = Options::parse();
    init_logging(o.run.log_level);
    tracing::info!("Starting application");
    eprintln!("{}", closing_line(o.closing));
    let mut config = processor_config(&o.dir.data_dir, o.errors.on_error);
    config.metrics_listen = o.metrics_listen;
    let mut app = processor_on(eddy::Application::new(config)?, o.aggregation, o.closing)?;
    if let Some(address) = app.metrics_address() {
        eprintln!("metrics for Prometheus: http://{address}/metrics");
    }
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
