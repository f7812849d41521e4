//! Produces the rows of a GPS track-point CSV to `raw-trackpoints`, keyed by `track_id`, in file
//! order, with a progress bar.
//!
//! `cargo run --release -p eddy-examples --bin gps-produce -- --csv examples/data/go_track_trackspoints_sm.csv [--data-dir DIR]`

use std::path::PathBuf;

use clap::Parser;
use eddy_examples::common::{AnyResult, DataDirArg};
use eddy_examples::gps::{produce, read_csv};

/// Produces the rows of a GPS track-point CSV to `raw-trackpoints`, keyed by `track_id`.
#[derive(Parser)]
#[command(version)]
struct Options {
    #[command(flatten)]
    dir: DataDirArg,
    /// The CSV file (`id,latitude,longitude,track_id,time`).
    #[arg(long)]
    csv: PathBuf,
}

fn main() -> std::process::ExitCode {
    eddy_examples::common::report(try_main())
}

fn try_main() -> AnyResult<()> {
    let o = Options::parse();
    let points = read_csv(&o.csv)?;
    let bar = indicatif::ProgressBar::new(points.len() as u64);
    let sent = produce(&o.dir.data_dir, &points, |n| bar.set_position(n))?;
    bar.finish_and_clear();
    println!("produced {sent} track points to raw-trackpoints");
    Ok(())
}
