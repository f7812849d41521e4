//! eddy's web console: the topics, messages, consumer groups and charts of one data directory,
//! and its offsets and lag for Prometheus at `/metrics`. One process, no server beyond itself:
//! pages are rendered on the server (HTML escaped by maud, charts as SVG), the few assets are
//! built into the binary.
//!
//! Invariants: the console opens the data directory read-only and writes only a group's
//! offsets, only when started with `allow_writes`, only on a POST carrying the token of the
//! page it came from (or a JSON body, which other sites cannot send). Every name in a URL is
//! checked as the log checks topic names. Every request reads a bounded amount
//! ([`inspect::MAX_PAGE`], [`inspect::MAX_SCAN`]), runs on the blocking pool with at most
//! [`MAX_CONCURRENT_READS`] at a time, and fails after [`REQUEST_TIMEOUT`]; at most
//! [`MAX_TAILS`] live tails are open, each for at most [`TAIL_LIFETIME`].

#![warn(missing_docs)]

pub mod chart;
pub mod inspect;
mod metrics;
mod pages;
mod params;
pub mod render;
mod routes;
mod sampler;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use eddy::Log;

pub use metrics::encode_console_metrics;
pub use sampler::Samples;

/// Most requests reading the data directory at once; others wait their turn.
pub const MAX_CONCURRENT_READS: usize = 8;
/// A request that has not finished reading after this fails with 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most live tails open at once; more are refused with 503.
pub const MAX_TAILS: usize = 32;
/// The longest a live tail stays open (the page reconnects).
pub const TAIL_LIFETIME: Duration = Duration::from_secs(600);

/// Settings of a console.
#[derive(Clone, Debug)]
pub struct ConsoleConfig {
    /// The eddy data directory to show.
    pub data_dir: PathBuf,
    /// Address to listen on. Default: 127.0.0.1:8080.
    pub listen: SocketAddr,
    /// Whether offsets may be reset from the console. Default: no (read-only).
    pub allow_writes: bool,
    /// How often topic ends and group lag are sampled (records/s, lag history). Default: 5 s.
    pub sample_interval: Duration,
}

impl ConsoleConfig {
    /// A read-only console of `data_dir` on 127.0.0.1:8080.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ConsoleConfig {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            allow_writes: false,
            sample_interval: Duration::from_secs(5),
        }
    }
}

/// What every request handler shares.
pub(crate) struct Shared {
    pub log: Log,
    pub data_dir: PathBuf,
    pub allow_writes: bool,
    /// Proves that a form was posted from one of the console's own pages.
    pub token: String,
    pub samples: Samples,
    pub reads: tokio::sync::Semaphore,
    /// One permit per open live tail.
    pub tails: Arc<tokio::sync::Semaphore>,
    /// Set when the console stops: live tails end at their next tick.
    pub closing: std::sync::atomic::AtomicBool,
}

/// A console bound to its address, not serving yet.
pub struct Console {
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    sample_interval: Duration,
}

/// An error starting the console.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The address could not be bound or served.
    #[error("console on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl Console {
    /// Binds `config.listen` (port 0: one the system chooses) over `config.data_dir`, which
    /// need not exist yet.
    pub fn bind(config: &ConsoleConfig) -> Result<Console, ConsoleError> {
        let failed = |source| ConsoleError::Listen {
            address: config.listen,
            source,
        };
        let listener = std::net::TcpListener::bind(config.listen).map_err(failed)?;
        listener.set_nonblocking(true).map_err(failed)?;
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        Ok(Console {
            listener,
            shared: Arc::new(Shared {
                log: Log::open_read_only(&config.data_dir),
                data_dir: config.data_dir.clone(),
                allow_writes: config.allow_writes,
                token,
                samples: Samples::default(),
                reads: tokio::sync::Semaphore::new(MAX_CONCURRENT_READS),
                tails: Arc::new(tokio::sync::Semaphore::new(MAX_TAILS)),
                closing: Default::default(),
            }),
            sample_interval: config.sample_interval,
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves on the current tokio runtime until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        let sampler = tokio::spawn(sample_forever(self.shared.clone(), self.sample_interval));
        let shared = self.shared.clone();
        let shutdown = async move {
            shutdown.await;
            shared
                .closing
                .store(true, std::sync::atomic::Ordering::Relaxed);
        };
        let router = routes::router(self.shared);
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        sampler.abort();
        served
    }

    /// Serves from a thread of its own (a runtime with two workers) until the handle drops.
    pub fn spawn(self) -> Result<ConsoleHandle, ConsoleError> {
        let address = self.address();
        let failed = |source| ConsoleError::Listen { address, source };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("eddy-console")
            .enable_all()
            .build()
            .map_err(failed)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("eddy-console".into())
            .spawn(move || {
                runtime.block_on(self.serve(async {
                    let _ = stopped.await;
                }))
            })
            .map_err(failed)?;
        Ok(ConsoleHandle {
            address,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// Samples topic ends and group lag every `interval`, off the async workers.
async fn sample_forever(shared: Arc<Shared>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let shared = shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.samples.sample(&shared.log)).await;
    }
}

/// A console serving from its own thread; dropping it stops the console and joins the thread.
pub struct ConsoleHandle {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl ConsoleHandle {
    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://ADDRESS`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops the console and waits for it; returns how serving ended.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(std::io::Error::other("the console's thread panicked")),
        }
    }
}

impl Drop for ConsoleHandle {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::error!(address = %self.address, error = %e, "console failed");
        }
    }
}
