//! Prints table `dist_calc` of the reprocessing tutorial's database.
//!
//! `cargo run --release -p eddy-examples --bin gps-query -- [--data-dir DIR] [--db FILE]`

use std::path::PathBuf;

use clap::Parser;
use eddy_examples::common::{AnyResult, DataDirArg};
use eddy_examples::gps::{db_path, query, table};

/// Prints the table `dist_calc` of the reprocessing tutorial's database.
#[derive(Parser)]
#[command(version)]
struct Options {
    #[command(flatten)]
    dir: DataDirArg,
    /// The SQLite file (default: distance-stats.db in the data directory).
    #[arg(long)]
    db: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    eddy_examples::common::report(try_main())
}

fn try_main() -> AnyResult<()> {
    let o = Options::parse();
    let rows = query(&db_path(&o.dir.data_dir, o.db.as_deref()))?;
    print!("{}", table(&rows));
    Ok(())
}
