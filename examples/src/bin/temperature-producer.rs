//! Produces synthetic temperature readings to `raw-temp-data`, as the sensor tutorial's producer:
//! a random sensor (Sensor1..Sensor5) and value (0..100) each, a `uuid` header, a random 0–1 s
//! pause between readings.
//!
//! `cargo run --release -p eddy-examples --bin temperature-producer -- [--data-dir DIR] [--count N] [--fast] [--quiet]`

use clap::Parser;
use eddy_examples::common::{AnyResult, DataDirArg};
use eddy_examples::sensor::{produce, ProducerOptions};

/// Produces synthetic temperature readings to `raw-temp-data`, as the sensor tutorial's
/// producer does.
#[derive(Parser)]
#[command(version)]
struct Options {
    #[command(flatten)]
    dir: DataDirArg,
    /// Readings to produce.
    #[arg(long, default_value_t = 1_000)]
    count: u64,
    /// Do not pause: time stamps still advance by the random pause (for benchmarks and tests).
    #[arg(long)]
    fast: bool,
    /// Do not print each reading.
    #[arg(long)]
    quiet: bool,
}

fn main() -> std::process::ExitCode {
    eddy_examples::common::report(try_main())
}

fn try_main() -> AnyResult<()> {
    let o = Options::parse();
    let options = ProducerOptions {
        count: o.count,
        fast: o.fast,
        print: !o.quiet,
    };
    let sent = produce(&o.dir.data_dir, options, &mut std::io::stdout().lock())?;
    eprintln!("produced {sent} readings to raw-temp-data");
    Ok(())
}
