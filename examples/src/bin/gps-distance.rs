//! The reprocessing tutorial's distance calculator (group `distance_calculator`): per track, the
//! cumulative geodesic distance between consecutive points, to `distance-calcs`.
//!
//! `cargo run --release -p eddy-examples --bin gps-distance -- --unit miles|km [--data-dir DIR] [--until-idle] [--on-error fail|skip|dead-letter=TOPIC]`

use clap::Parser;
use eddy_examples::common::{init_logging, run, AnyResult, DataDirArg, OnErrorArg, RunArgs};
use eddy_examples::gps::{distance_calculator, Unit};

/// The reprocessing tutorial's distance calculator: per track, the cumulative geodesic
/// distance between consecutive points of `raw-trackpoints`, to `distance-calcs`.
#[derive(Parser)]
#[command(version)]
struct Options {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    errors: OnErrorArg,
    /// Unit of the distances written.
    #[arg(long, value_enum)]
    unit: Unit,
}

fn main() -> std::process::ExitCode {
    eddy_examples::common::report(try_main())
}

fn try_main() -> AnyResult<()> {
    let o = Options::parse();
    init_logging(o.run.log_level);
    let mut app = distance_calculator(&o.dir.data_dir, o.unit, o.errors.on_error)?;
    run(&mut app, &o.run, "track points", "distances")?;
    Ok(())
}
