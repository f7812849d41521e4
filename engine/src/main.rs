//! The `eddy` command-line tool; see `eddy --help`.

fn main() {
    std::process::exit(eddy::cli::run());
}
