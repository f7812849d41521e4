//! `eddy-console`: the web console of an eddy data directory (`eddy console` runs it).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// The web console of an eddy data directory: topics, messages, consumer groups, charts, and
/// `/metrics` for Prometheus. Read-only unless --allow-writes.
#[derive(Parser)]
#[command(name = "eddy console", version)]
struct Args {
    /// Data directory (env EDDY_DATA_DIR; default ./eddy-data).
    #[arg(long, env = "EDDY_DATA_DIR", default_value = eddy::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Address to listen on. Anything but a loopback address makes the console reachable from
    /// other machines: it has no login.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Allow resetting consumer groups' offsets from the console.
    #[arg(long)]
    allow_writes: bool,
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut config = eddy_console::ConsoleConfig::new(&args.data_dir);
    config.listen = args.listen;
    config.allow_writes = args.allow_writes;
    let console = match eddy_console::Console::bind(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("eddy console: {e}");
            std::process::exit(1);
        }
    };
    let mode = if args.allow_writes {
        "offsets may be reset"
    } else {
        "read-only"
    };
    eprintln!(
        "eddy console: http://{} for {} ({mode}); Ctrl-C stops it",
        console.address(),
        args.data_dir.display()
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("eddy console: cannot start: {e}");
            std::process::exit(1);
        }
    };
    let served = runtime.block_on(console.serve(async {
        let _ = tokio::signal::ctrl_c().await;
    }));
    if let Err(e) = served {
        eprintln!("eddy console: {e}");
        std::process::exit(1);
    }
}
