//! [`KafkaBackend`]: an application on a Kafka cluster (`Application::with_backend`), made of
//! its topics ([`KafkaTopics`], an `eddy::TopicCatalog`), its group membership ([`KafkaGroup`],
//! an `eddy::GroupSource`), where its outputs go ([`KafkaSink`], an `eddy::OutputSink`) and its
//! stores' changelogs ([`KafkaChangelog`], an `eddy::Changelog`), the last two through one
//! idempotent producer ([`KafkaProducer`]). `docs/kafka.md` says what is built and what not.
//!
//! Errors name the broker, the topic and the partition; none is retried here past what
//! librdkafka retries itself (the producer retries a send for as long as it takes, as the
//! mirror's does).

mod changelog;
mod ends;
mod group;
mod producer;
mod reset;
mod topics;

pub use changelog::KafkaChangelog;
pub use ends::EndsProbe;
pub use group::KafkaGroup;
pub use producer::{KafkaProducer, KafkaSink};
pub use reset::reset_offsets;
pub use topics::{KafkaPartitionReader, KafkaTopics};

use std::rc::Rc;

use eddy::{
    Backend, Changelog, GroupSettings, GroupSource, OutputSink, ProducerIdentity, StreamResult,
    TopicCatalog, TopicInfo,
};

use crate::KafkaSettings;

/// An application's backend on a Kafka cluster (module docs). At-least-once only: exactly-once
/// needs transactions, which the backend does not use yet (and the test broker lacks).
pub struct KafkaBackend {
    settings: KafkaSettings,
    topics: Rc<KafkaTopics>,
    producer: Rc<KafkaProducer>,
}

impl KafkaBackend {
    /// The cluster of `settings`; topics it creates get `replication` replicas (-1: the
    /// broker's default).
    pub fn new(settings: KafkaSettings, replication: i32) -> StreamResult<KafkaBackend> {
        Ok(KafkaBackend {
            topics: Rc::new(KafkaTopics::new(settings.clone(), replication)?),
            producer: KafkaProducer::new(settings.clone())?,
            settings,
        })
    }
}

impl Backend for KafkaBackend {
    fn describe(&self) -> String {
        format!("Kafka at {}", self.settings.brokers)
    }

    fn catalog(&self) -> Rc<dyn TopicCatalog> {
        self.topics.clone()
    }

    fn group_source(&self, settings: &GroupSettings) -> StreamResult<Box<dyn GroupSource>> {
        let ends = self.topics.ends_probe();
        Ok(Box::new(KafkaGroup::new(
            self.settings.clone(),
            settings,
            ends,
        )?))
    }

    fn output_sink(&self, _fsync: bool) -> StreamResult<Box<dyn OutputSink>> {
        // Durable means acknowledged by the brokers (acks=all), whatever `fsync` says.
        Ok(Box::new(KafkaSink(self.producer.clone())))
    }

    fn changelog(
        &self,
        topic: &TopicInfo,
        partition: u32,
        transaction: Option<ProducerIdentity>,
    ) -> StreamResult<Box<dyn Changelog>> {
        if transaction.is_some() {
            let what = format!("changelog {} partition {partition}", topic.name);
            return Err(backend_error(
                &self.settings,
                what,
                "transactions are not used on Kafka yet",
            ));
        }
        let ends = self.topics.ends_probe();
        let changelog = KafkaChangelog::new(self.producer.clone(), &topic.name, partition, ends);
        Ok(Box::new(changelog))
    }
}

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
