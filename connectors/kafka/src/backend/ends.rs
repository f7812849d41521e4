//! [`EndsProbe`]: the log start and end of Kafka partitions, asked for at task starts and
//! restores, answered by one long-lived consumer of the application instead of a new client
//! per question (which cost a connection, a metadata request and a fetch each time: 0.3–0.7 s).
//!
//! Ends come from fetch responses (librdkafka's statistics), not ListOffsets: tansu 0.6 answers
//! ListOffsets "latest" with the newest batch's base offset plus one. A question assigns the
//! partition at its end, waits for a statistics sample that counts two more broker responses
//! than the first sample taken once the partition was fetching — so the end it reports comes
//! from a fetch sent after the question was asked — and unassigns it again, so that nothing is
//! fetched between questions.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

use crate::KafkaSettings;

/// What the last statistics sample said.
#[derive(Default)]
struct Sample {
    /// Samples taken so far.
    count: u64,
    /// Responses received from brokers since the client started.
    responses: i64,
    /// Partitions that are fetching, with their log start and end.
    active: HashMap<(String, i32), (i64, i64)>,
}

#[derive(Default)]
struct ProbeContext(Mutex<Sample>);

impl ClientContext for ProbeContext {
    fn stats(&self, statistics: Statistics) {
        let mut sample = self.0.lock();
        sample.count += 1;
        sample.responses = statistics.rx;
        sample.active.clear();
        for (topic, t) in statistics.topics {
            for (p, part) in t.partitions {
                let known = p >= 0 && part.hi_offset >= 0 && part.lo_offset >= 0;
                if known && part.fetch_state == "active" {
                    let ends = (part.lo_offset, part.hi_offset);
                    sample.active.insert((topic.clone(), p), ends);
                }
            }
        }
    }
}

impl ConsumerContext for ProbeContext {}

/// Answers "where does this partition start and end" (module docs).
pub struct EndsProbe {
    consumer: BaseConsumer<ProbeContext>,
    timeout: Duration,
}

impl EndsProbe {
    /// A probe of the cluster of `settings`.
    pub fn new(settings: &KafkaSettings) -> Result<EndsProbe, rdkafka::error::KafkaError> {
        let consumer = settings
            .client_config(&[
                ("group.id", "eddy-ends"),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
                ("fetch.wait.max.ms", "10"),
                ("statistics.interval.ms", "10"),
            ])
            .create_with_context(ProbeContext::default())?;
        Ok(EndsProbe {
            consumer,
            timeout: settings.request_timeout,
        })
    }

    /// The log start and end offsets of `partition` of `topic`, as a fetch sent after this
    /// call began reports them.
    pub fn ends(&self, topic: &str, partition: u32) -> Result<(u64, u64), String> {
        let mut tpl = TopicPartitionList::new();
        (tpl.add_partition_offset(topic, partition as i32, Offset::End))
            .map_err(|e| e.to_string())?;
        self.consumer
            .incremental_assign(&tpl)
            .map_err(|e| e.to_string())?;
        let found = self.wait_for(topic, partition);
        if let Err(e) = self.consumer.incremental_unassign(&tpl) {
            tracing::debug!(topic, partition, error = %e, "ends probe: unassign failed");
        }
        found
    }

    fn wait_for(&self, topic: &str, partition: u32) -> Result<(u64, u64), String> {
        let key = (topic.to_owned(), partition as i32);
        let deadline = Instant::now() + self.timeout;
        let mut fetching_since: Option<i64> = None;
        let mut last_error = None;
        let mut seen = 0;
        while Instant::now() < deadline {
            // Records fetched from the end are not wanted; errors are noted, not fatal.
            if let Some(Err(e)) = self.consumer.poll(Duration::from_millis(5)) {
                last_error = Some(e.to_string());
            }
            let sample = self.consumer.context().0.lock();
            if sample.count == seen {
                continue;
            }
            seen = sample.count;
            match (sample.active.get(&key), fetching_since) {
                (Some(_), None) => fetching_since = Some(sample.responses),
                (Some(&(low, high)), Some(since)) if sample.responses >= since + 2 => {
                    return Ok((low.max(0) as u64, high.max(0) as u64));
                }
                _ => {}
            }
        }
        Err(format!(
            "no fetch reported the ends within {:?}{}",
            self.timeout,
            last_error.map_or(String::new(), |e| format!(" (last error: {e})"))
        ))
    }
}
