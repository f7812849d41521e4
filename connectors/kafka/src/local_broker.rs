//! A real Kafka-protocol broker on 127.0.0.1 for the connector's tests and benchmarks: tansu,
//! started as a child process, keeping its data in memory (`memory://`). Its topics are gone
//! when it stops, so outage tests cut its connections instead (a relay in front of it). tansu's
//! SQLite storage, which survives a restart, was tried and dropped: after the restart its fetches
//! of the mirrored topic answered nothing in these tests.
//!
//! Known tansu 0.6 behaviours the connector copes with (a real Kafka broker has neither): a fetch
//! from the middle of a batch skips the rest of that batch, and ListOffsets "latest" answers the
//! newest batch's base offset plus one.
//!
//! The `tansu` binary is looked up as `$EDDY_TANSU`, then `~/.cache/eddy/tansu/bin/tansu`, then
//! on `PATH`; when none exists it is installed into `~/.cache/eddy/tansu` with
//! `cargo install --locked tansu@0.6.0 --features dynostore` (about 12 minutes on two
//! cores, once per machine; concurrent callers wait for one install).

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tansu release the connector is tested against.
pub const TANSU_VERSION: &str = "0.6.0";

/// A running (or stopped) tansu broker. Killed when dropped.
pub struct LocalBroker {
    binary: PathBuf,
    data: tempfile::TempDir,
    port: u16,
    /// The port clients are told to connect to (a relay's, for outage tests).
    advertised_port: u16,
    child: Option<Child>,
}

impl LocalBroker {
    /// Starts a broker on a free port of 127.0.0.1, its log in a new temporary directory.
    pub fn start() -> io::Result<LocalBroker> {
        let port = free_port()?;
        Self::start_advertising(port, port)
    }

    /// Starts a broker listening on `port` that tells clients to connect to `advertised_port`
    /// (where a relay in front of it listens).
    pub fn start_advertising(port: u16, advertised_port: u16) -> io::Result<LocalBroker> {
        let mut broker = LocalBroker {
            binary: tansu_binary()?,
            data: tempfile::tempdir()?,
            port,
            advertised_port,
            child: None,
        };
        broker.spawn()?;
        Ok(broker)
    }

    /// `127.0.0.1:<advertised port>`, for `bootstrap.servers`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.advertised_port)
    }

    /// Kills the broker (SIGKILL) and waits for it to exit.
    fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the process and waits until it accepts connections.
    fn spawn(&mut self) -> io::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised_port);
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.data.path().join("tansu.log"))?;
        let child = Command::new(&self.binary)
            .current_dir(self.data.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env_remove("STORAGE_ENGINE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(io::Error::other(format!(
                    "tansu exited at start ({status}); see {}",
                    self.data.path().join("tansu.log").display()
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("tansu did not listen within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The broker's own log file.
    pub fn log_path(&self) -> PathBuf {
        self.data.path().join("tansu.log")
    }
}

impl Drop for LocalBroker {
    /// Kills the broker; with `EDDY_BROKER_LOG=path` set, keeps its log there (for debugging).
    fn drop(&mut self) {
        let _ = self.kill();
        if let Some(keep) = std::env::var_os("EDDY_BROKER_LOG") {
            let _ = std::fs::copy(self.log_path(), keep);
        }
    }
}

/// A port of 127.0.0.1 free right now.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The tansu binary, installed first when missing.
pub fn tansu_binary() -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os("EDDY_TANSU") {
        return Ok(PathBuf::from(p));
    }
    let root = cache_root()?;
    let cached = root.join("bin").join("tansu");
    if cached.is_file() {
        return Ok(cached);
    }
    if let Some(on_path) = find_on_path("tansu") {
        return Ok(on_path);
    }
    std::fs::create_dir_all(&root)?;
    let lock = std::fs::File::create(root.join(".install.lock"))?;
    lock.lock()?;
    if !cached.is_file() {
        install(&root)?;
    }
    Ok(cached)
}

fn cache_root() -> io::Result<PathBuf> {
    let home = std::env::var_os("HOME").ok_or_else(|| io::Error::other("HOME is not set"))?;
    Ok(Path::new(&home).join(".cache/eddy/tansu"))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn install(root: &Path) -> io::Result<()> {
    // Straight to the process's stderr, past the test harness's capture: a ten-minute install
    // must not look like a hung test.
    let _ = writeln!(
        io::stderr(),
        "installing tansu {TANSU_VERSION}, the Kafka-protocol broker of the connector's tests, into \
         {} (about 10 minutes on 2 cores, once per machine; `./dev setup` does it ahead)",
        root.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["install", "--locked", "--features", "dynostore"])
        .arg(format!("tansu@{TANSU_VERSION}"))
        .arg("--root")
        .arg(root)
        .env("CARGO_TARGET_DIR", root.join("build"))
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "cargo install tansu failed: {status}"
        )));
    }
    Ok(())
}
