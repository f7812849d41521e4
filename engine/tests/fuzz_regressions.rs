//! Every input the fuzz targets in `fuzz/` ever failed on, kept in `fuzz/regressions/<target>/`
//! and run again through the same entry points (a panic is a failure).

use std::path::PathBuf;

fn run_all(target: &str, entry: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no inputs in {}", dir.display());
    for input in inputs {
        let bytes = std::fs::read(&input).expect("input reads");
        eprintln!("{target}: {}", input.display());
        entry(&bytes);
    }
}

#[test]
fn segment_recovery() {
    run_all("segment_recovery", eddy::fuzzing::segment_recovery);
}

#[test]
fn indexes() {
    run_all("indexes", eddy::fuzzing::indexes);
}

#[test]
fn tail_file() {
    run_all("tail_file", eddy::fuzzing::tail_file);
}

#[test]
fn user_input() {
    run_all("user_input", eddy::fuzzing::user_input);
}

#[test]
fn window_state() {
    run_all("window_state", eddy::fuzzing::window_state);
}

#[test]
fn txn_files() {
    run_all("txn_files", eddy::fuzzing::txn_files);
}
