//! [`TopicCatalog`]: the topics an application reads and writes, as the runtime needs to know
//! them ([`TopicInfo`]), whatever holds them; [`LocalCatalog`] is the local log's.
//!
//! A catalog creates missing topics (inputs, outputs, changelogs, repartition and dead-letter
//! topics) with the configuration asked for; an existing topic keeps its own. It also reads a
//! partition of a topic directly ([`PartitionRead`]): a table read from its own compacted topic
//! catches up there, as Kafka Streams restores such a table from its source topic.

use crate::log::{CleanupPolicy, Isolation, Log, TopicConfig};
use crate::state::PartitionRead;
use crate::stream::StreamResult;

/// What the runtime needs to know of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic's name.
    pub name: String,
    /// Its partition count.
    pub partitions: u32,
    /// Its cleanup policy (a compacted topic can be a table's own changelog).
    pub cleanup_policy: CleanupPolicy,
}

/// The topics of an application (module docs).
pub trait TopicCatalog {
    /// The topic `name`, created with `config` when missing.
    fn topic_or_create(&self, name: &str, config: TopicConfig) -> StreamResult<TopicInfo>;

    /// A reader of one partition of `topic`, returning what `isolation` lets through.
    fn reader(
        &self,
        topic: &str,
        partition: u32,
        isolation: Isolation,
    ) -> StreamResult<Box<dyn PartitionRead>>;
}

/// The topics of the local log.
pub(crate) struct LocalCatalog {
    log: Log,
}

impl LocalCatalog {
    pub fn new(log: Log) -> Self {
        LocalCatalog { log }
    }
}

impl TopicCatalog for LocalCatalog {
    fn topic_or_create(&self, name: &str, config: TopicConfig) -> StreamResult<TopicInfo> {
        let topic = self.log.topic_or_create(name, config)?;
        Ok(TopicInfo {
            name: topic.name().to_owned(),
            partitions: topic.partitions(),
            cleanup_policy: topic.config().cleanup_policy,
        })
    }

    fn reader(
        &self,
        topic: &str,
        partition: u32,
        isolation: Isolation,
    ) -> StreamResult<Box<dyn PartitionRead>> {
        let mut reader = self.log.topic(topic)?.reader(partition)?;
        reader.set_isolation(isolation);
        Ok(Box::new(reader))
    }
}
