//! The reprocessing tutorial's database writer (group `database-writer`): upserts each track's
//! latest distance from `distance-calcs` into SQLite table `dist_calc`.
//!
//! `cargo run --release -p eddy-examples --bin gps-db-writer -- [--data-dir DIR] [--db FILE] [--until-idle]`

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use eddy_examples::common::{init_logging, AnyResult, DataDirArg, RunArgs};
use eddy_examples::gps::{db_path, write_db};

/// The reprocessing tutorial's database writer: upserts each track's latest distance from
/// `distance-calcs` into the SQLite table `dist_calc`.
#[derive(Parser)]
#[command(version)]
struct Options {
    #[command(flatten)]
    dir: DataDirArg,
    #[command(flatten)]
    run: RunArgs,
    /// The SQLite file (default: distance-stats.db in the data directory).
    #[arg(long)]
    db: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    eddy_examples::common::report(try_main())
}

fn try_main() -> AnyResult<()> {
    let o = Options::parse();
    init_logging(o.run.log_level);
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let db = db_path(&o.dir.data_dir, o.db.as_deref());
    let written = write_db(&o.dir.data_dir, &db, o.run.until_idle, stop)?;
    eprintln!("wrote {written} distances to {}", db.display());
    Ok(())
}
