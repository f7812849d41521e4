//! The Kafka connector of eddy: mirrors a local topic out to a Kafka topic ([`mirror_out`]) and a
//! Kafka topic into a local topic ([`mirror_in`]), keeping each record's key, value, timestamp,
//! headers and partition, and resuming after a crash or a broker outage without losing or
//! repeating a record.
//!
//! Both directions map partition `p` to partition `p`: the two topics must have the same number
//! of partitions (the mirror creates a missing destination that way). Keyed records then sit where
//! Kafka's murmur2 partitioner puts them on both sides, as eddy uses the same partitioner.
//!
//! Progress of both directions is an eddy consumer group in the local data directory, whose
//! commits carry the Kafka offsets that match the local ones (see `docs/kafka.md`):
//! - out: the group consumes the local topic; a commit names the next local offset and, in its
//!   metadata, the Kafka offset after the last acknowledged record. Commits follow Kafka's
//!   acknowledgements. On restart the records Kafka holds past that offset are the ones sent but
//!   not committed, so that many local records are skipped, once the last of them is checked
//!   against Kafka's last record.
//! - in: a commit names the local end offset after an appended (and fsynced) batch and, in its
//!   metadata, the next Kafka offset. On restart the local records past the committed end are the
//!   first records Kafka returns from that offset; they are checked and not appended again.
//!
//! librdkafka is built from source with the crate (the `rdkafka` crate's bundled build), so the
//! connector does not depend on the system's librdkafka; the engine never links it.

pub mod backend;
mod cluster;
pub mod local_broker;
mod mirror_in;
mod mirror_out;
mod status;

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

pub use mirror_in::{mirror_in, MirrorInConfig, StartAt};
pub use mirror_out::{mirror_out, MirrorOutConfig};
pub use status::MirrorStats;

/// What went wrong while mirroring.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// A request to Kafka failed.
    #[error("Kafka: {context}: {source}")]
    Kafka {
        /// What the mirror was doing.
        context: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// Kafka refused a record for good (after librdkafka's own retries).
    #[error(
        "Kafka topic {topic} partition {partition} refused the record at local offset {offset}: {reason}"
    )]
    Delivery {
        /// Kafka topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// Offset of the record in the local topic.
        offset: u64,
        /// Kafka's reason.
        reason: String,
    },
    /// The two sides do not fit together (partition counts, offsets, contents).
    #[error("{0}")]
    Mismatch(String),
    /// The local log failed.
    #[error(transparent)]
    Log(#[from] eddy::LogError),
    /// The local consumer group failed.
    #[error(transparent)]
    Group(#[from] eddy::GroupError),
}

/// Result of the connector.
pub type MirrorResult<T> = Result<T, MirrorError>;

/// How to reach Kafka: the bootstrap servers and librdkafka settings (`-X key=value`), which
/// override the connector's defaults.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    /// librdkafka settings, applied after the connector's defaults.
    pub settings: Vec<(String, String)>,
    /// How long a metadata or offsets request may take.
    pub request_timeout: Duration,
}

impl KafkaSettings {
    /// Settings for `brokers` with no overrides and a 10 s request timeout.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaSettings {
            brokers: brokers.into(),
            settings: Vec::new(),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// How long a metadata request waits before the mirror says Kafka is unreachable and asks
    /// again: the request timeout, at most 2 s, so that an unreachable broker is named at once.
    pub(crate) fn probe_timeout(&self) -> Duration {
        self.request_timeout.min(Duration::from_secs(2))
    }

    /// A librdkafka client configuration: `defaults`, then the user's settings.
    pub(crate) fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.settings {
            c.set(k, v);
        }
        c
    }
}

/// Wraps a librdkafka error with what the mirror was doing.
pub(crate) fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> MirrorError {
    let context = context.into();
    move |source| MirrorError::Kafka { context, source }
}

/// Parses `key=value` (a `-X` option).
pub fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}
