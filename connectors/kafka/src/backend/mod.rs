//! Building blocks of an application's backend on a Kafka cluster (`eddy::Backend`): its
//! topics ([`KafkaTopics`], an `eddy::TopicCatalog`), where its outputs go ([`KafkaSink`], an
//! `eddy::OutputSink`) and its stores' changelogs ([`KafkaChangelog`], an `eddy::Changelog`),
//! all through one idempotent producer ([`KafkaProducer`]). The group membership on Kafka is
//! not built yet; `docs/kafka.md` says what is.
//!
//! Errors name the broker, the topic and the partition; none is retried here past what
//! librdkafka retries itself (the producer retries a send for as long as it takes, as the
//! mirror's does).

mod changelog;
mod producer;
mod topics;

pub use changelog::KafkaChangelog;
pub use producer::{KafkaProducer, KafkaSink};
pub use topics::{KafkaPartitionReader, KafkaTopics};

use crate::KafkaSettings;

/// `eddy::StreamError::Backend` for a failure while doing `what`.
pub(crate) fn backend_error(
    settings: &KafkaSettings,
    what: String,
    cause: impl ToString,
) -> eddy::StreamError {
    eddy::StreamError::Backend {
        backend: format!("Kafka at {}", settings.brokers),
        what,
        cause: cause.to_string(),
    }
}
