//! What every example program shares: the data directory option, logging set-up, restore
//! progress bars, and running an application until stopped or until idle.

use std::collections::HashMap;
use std::error::Error;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use eddy::{Application, StreamResult};

/// Result of the example programs.
pub type AnyResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Options every example takes.
#[derive(clap::Args, Clone, Debug)]
pub struct DataDirArg {
    /// The eddy data directory (topics, groups, state); shared by the programs of a tutorial.
    #[arg(long, env = "EDDY_DATA_DIR", default_value = eddy::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

/// Options every consuming example takes.
#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// Stop after a final checkpoint once caught up with the inputs (default: run until Ctrl-C).
    #[arg(long)]
    pub until_idle: bool,
    /// What to log: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    pub log_level: tracing::Level,
}

/// The error-policy option of the example applications.
#[derive(clap::Args, Clone, Debug)]
pub struct OnErrorArg {
    /// What a record that cannot be processed does: `fail` (stop, naming topic, partition and
    /// offset; a restart meets it again), `skip` (count it and go on) or `dead-letter=TOPIC`
    /// (append it to TOPIC with the error in its headers, and go on).
    #[arg(long, default_value = "fail", value_parser = parse_on_error)]
    pub on_error: eddy::ErrorPolicy,
}

/// Parses `--on-error`.
pub fn parse_on_error(s: &str) -> Result<eddy::ErrorPolicy, String> {
    match s {
        "fail" => Ok(eddy::ErrorPolicy::Fail),
        "skip" => Ok(eddy::ErrorPolicy::Skip),
        _ => match s.strip_prefix("dead-letter=") {
            Some(topic) if !topic.is_empty() => Ok(eddy::ErrorPolicy::DeadLetter(topic.into())),
            _ => Err(format!("{s:?}: expected fail, skip or dead-letter=TOPIC")),
        },
    }
}

/// Sends log lines at `level` and above to stderr, coloured only on a terminal.
pub fn init_logging(level: tracing::Level) {
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// The settings of an example application of `group` over `dir`: eddy's defaults with the
/// `--on-error` policy, and a progress bar on stderr for state restores that take a while.
pub fn app_config(dir: &Path, group: &str, on_error: eddy::ErrorPolicy) -> eddy::AppConfig {
    let mut config = eddy::AppConfig::new(dir, group);
    config.on_restore_progress = Some(restore_bars());
    config.on_error = on_error;
    config
}

/// A restore-progress receiver drawing one bar per store (hidden when stderr is no terminal).
pub fn restore_bars() -> eddy::RestoreCallback {
    let bars: Mutex<HashMap<PathBuf, indicatif::ProgressBar>> = Mutex::new(HashMap::new());
    eddy::RestoreCallback(Arc::new(move |p: &eddy::RestoreProgress| {
        let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bars.entry(p.store.clone()).or_insert_with(|| {
            let bar = indicatif::ProgressBar::new(p.total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "restoring {msg} {bar:30} {pos}/{len} entries ({per_sec})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(format!("{}[{}]", p.changelog, p.partition));
            bar
        });
        bar.set_position(p.restored);
        if p.done {
            bar.finish();
            bars.remove(&p.store);
        }
    }))
}

/// The exit of a program whose work returned `result`: on an error, prints it for people
/// (`program: message: cause: ...`) on stderr and fails.
pub fn report(result: AnyResult<()>) -> ExitCode {
    let Err(error) = result else {
        return ExitCode::SUCCESS;
    };
    let program = std::env::args()
        .next()
        .and_then(|p| Some(Path::new(&p).file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "error".into());
    let mut message = format!("{program}: {error}");
    let mut cause = error.source();
    while let Some(c) = cause {
        message.push_str(&format!(": {c}"));
        cause = c.source();
    }
    eprintln!("{message}");
    ExitCode::FAILURE
}

/// Runs `app` until idle or until Ctrl-C/SIGTERM, as `args` say, then prints how many records
/// it read and wrote, named `read` and `wrote` (e.g. "track points", "distances").
pub fn run(app: &mut Application, args: &RunArgs, read: &str, wrote: &str) -> StreamResult<()> {
    match args.until_idle {
        true => app.run_until_idle(),
        false => app.run(),
    }?;
    let m = app.metrics();
    eprintln!(
        "read {} {read}, wrote {} {wrote}",
        m.records_in, m.records_out
    );
    Ok(())
}
