//! [`Producer`]: typed appends for programs that feed topics (generators, importers) rather than
//! transform them.

use crate::log::{Header, Record};
use crate::stream::{Format, OutputSink, Outputs, StreamError, StreamResult, StreamTopic};

/// Encodes keys and values with a topic's formats and appends them, batched: records are buffered
/// until [`flush`](Self::flush) or until about 1 MiB is waiting. Dropping the producer flushes
/// (ignoring errors; call `flush` to see them). Keyed records go to their murmur2 partition,
/// keyless ones round-robin.
pub struct Producer {
    outputs: Outputs,
    next_keyless: u32,
}

impl Producer {
    pub(crate) fn new(sink: Box<dyn OutputSink>) -> Self {
        Producer {
            outputs: Outputs::new(sink),
            next_keyless: 0,
        }
    }

    /// Buffers a record for `topic`. `timestamp_ms: None` stamps the append time.
    pub fn produce<KF: Format, VF: Format>(
        &mut self,
        topic: &StreamTopic<KF, VF>,
        key: Option<&KF::Value>,
        value: &VF::Value,
        headers: Vec<Header>,
        timestamp_ms: Option<i64>,
    ) -> StreamResult<()> {
        let key = match key {
            Some(k) => {
                let mut bytes = Vec::new();
                KF::encode(k, &mut bytes)
                    .map_err(|e| StreamError::Setup(format!("{}: key: {e}", topic.name())))?;
                Some(bytes)
            }
            None => None,
        };
        let mut bytes = Vec::new();
        VF::encode(value, &mut bytes)
            .map_err(|e| StreamError::Setup(format!("{}: value: {e}", topic.name())))?;
        let id = self.outputs.register(topic.info());
        self.next_keyless = self.next_keyless.wrapping_add(u32::from(key.is_none()));
        self.outputs.send(
            id,
            self.next_keyless,
            Record {
                key,
                value: Some(bytes),
                timestamp: timestamp_ms,
                headers,
            },
        );
        if self.outputs.wants_flush() {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends everything buffered.
    pub fn flush(&mut self) -> StreamResult<()> {
        self.outputs.flush()
    }

    /// Records appended so far.
    pub fn sent(&self) -> u64 {
        self.outputs.sent
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let _ = self.outputs.flush();
    }
}
