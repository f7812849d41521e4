//! Sensor readings of `raw-temp-data` enriched with their sensor's row of the `sensor-metadata`
//! table (location, unit), then the tutorial's 10 s windows per sensor, to
//! `agg-temperature-enriched`.
//!
//! `cargo run --release -p eddy-examples --bin sensor-enricher -- [--data-dir DIR] [--write-metadata] [--metadata-only] [--until-idle] [--on-error fail|skip|dead-letter=TOPIC] [--log-level info]`

use clap::Parser;
use eddy_examples::common::{init_logging, run, AnyResult, DataDirArg, OnErrorArg, RunArgs};
use eddy_examples::enrich::{default_metadata, enricher, write_metadata};

/// Readings joined with their sensor's metadata, then windowed per sensor.
#[derive(Parser)]
#[command(version)]
struct Options {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    errors: OnErrorArg,
    /// First write the metadata of Sensor1..Sensor5 to `sensor-metadata` (timestamped now: it
    /// applies to readings produced from now on).
    #[arg(long)]
    write_metadata: bool,
    /// Only write the metadata, then exit.
    #[arg(long)]
    metadata_only: bool,
}

fn main() -> std::process::ExitCode {
    eddy_examples::common::report(try_main())
}

fn try_main() -> AnyResult<()> {
    let o = Options::parse();
    init_logging(o.run.log_level);
    if o.write_metadata || o.metadata_only {
        write_metadata(&o.dir.data_dir, &default_metadata())?;
        eprintln!("wrote the metadata of 5 sensors to sensor-metadata");
        if o.metadata_only {
            return Ok(());
        }
    }
    let mut app = enricher(&o.dir.data_dir, o.errors.on_error)?;
    run(
        &mut app,
        &o.run,
        "readings and metadata rows",
        "enriched windows",
    )?;
    Ok(())
}
