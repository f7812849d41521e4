//! Topic configuration: what is fixed at creation and persisted in `topic.json`, with Kafka-style
//! `key=value` parsing for the command line.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{LogError, LogResult};

/// When appended data is forced to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Never fsync on append; only when a segment is sealed and when the appender closes. Survives
    /// a process crash (the page cache keeps the data); a power loss loses what the operating
    /// system had not written back of the active segment, and recovery keeps a prefix.
    None,
    /// Fsync at most this many milliseconds after an append, from a background flusher. A power
    /// loss can lose the appends of the last interval.
    IntervalMs(u64),
    /// Fsync before `append` returns; concurrent appenders share one fsync (group commit).
    /// Survives power loss for every acknowledged record.
    Always,
}

/// What happens to old data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupPolicy {
    /// Delete whole sealed segments past the retention limits.
    Delete,
    /// Keep the newest record per key; tombstones remove a key after `delete_retention_ms`.
    Compact,
}

/// The `key=value` names of the settings a topic can change after creation (all but
/// `partitions`).
pub const SETTING_NAMES: [&str; 8] = [
    "durability",
    "segment.bytes",
    "segment.ms",
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "delete.retention.ms",
    "index.interval.bytes",
];

/// Most partitions a topic may have: creating that many takes about 5 s on an SSD.
pub const MAX_PARTITIONS: u32 = 10_000;

/// Settings of one topic. All partitions share them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopicConfig {
    /// Number of partitions, fixed at creation.
    pub partitions: u32,
    /// Fsync policy.
    pub durability: Durability,
    /// A segment rolls when it would grow past this many bytes.
    pub segment_bytes: u64,
    /// A segment rolls when a batch's timestamp is this much newer than the segment's first.
    pub segment_ms: Option<u64>,
    /// Delete sealed segments whose newest record is older than this (Kafka `retention.ms`).
    pub retention_ms: Option<u64>,
    /// Delete oldest sealed segments while the partition stays at or above this size.
    pub retention_bytes: Option<u64>,
    /// Delete or compact.
    pub cleanup_policy: CleanupPolicy,
    /// How long a tombstone survives compaction, measured from its segment's last write.
    pub delete_retention_ms: u64,
    /// Bytes of log between offset-index entries.
    pub index_interval_bytes: u64,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            durability: Durability::IntervalMs(1000),
            segment_bytes: 128 << 20,
            segment_ms: Some(7 * 24 * 3600 * 1000),
            retention_ms: None,
            retention_bytes: None,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 3600 * 1000,
            index_interval_bytes: 4096,
        }
    }
}

impl TopicConfig {
    /// A config with `partitions` partitions and defaults otherwise.
    pub fn with_partitions(partitions: u32) -> Self {
        TopicConfig {
            partitions,
            ..TopicConfig::default()
        }
    }

    /// The flush interval when durability is `IntervalMs`.
    pub(crate) fn flush_interval(&self) -> Option<Duration> {
        match self.durability {
            Durability::IntervalMs(ms) => Some(Duration::from_millis(ms.max(1))),
            _ => None,
        }
    }

    /// Applies one `key=value` setting, using Kafka's names where Kafka has one:
    /// `partitions`, `durability` (`none`, `always` or milliseconds), `segment.bytes`,
    /// `segment.ms`, `retention.ms`, `retention.bytes` (`-1` = unlimited), `cleanup.policy`
    /// (`delete`/`compact`), `delete.retention.ms`, `index.interval.bytes`.
    pub fn set(&mut self, setting: &str) -> LogResult<()> {
        let bad = |why: String| LogError::InvalidConfig(format!("{setting:?}: {why}"));
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| bad("expected key=value".into()))?;
        let num = |v: &str| v.trim().parse::<i64>().map_err(|e| bad(e.to_string()));
        let limit = |v: &str| -> LogResult<Option<u64>> {
            let n = num(v)?;
            Ok(u64::try_from(n).ok())
        };
        let positive = |v: &str| -> LogResult<u64> {
            u64::try_from(num(v)?)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("must be > 0".into()))
        };
        match key.trim() {
            "partitions" => {
                self.partitions = u32::try_from(positive(value)?).map_err(|e| bad(e.to_string()))?
            }
            "durability" => {
                self.durability = match value.trim() {
                    "none" => Durability::None,
                    "always" => Durability::Always,
                    ms => Durability::IntervalMs(ms.parse().ok().filter(|n| *n > 0).ok_or_else(
                        || {
                            bad(
                                "allowed: none, always, or a flush interval in milliseconds > 0"
                                    .into(),
                            )
                        },
                    )?),
                }
            }
            "segment.bytes" => self.segment_bytes = positive(value)?,
            "segment.ms" => self.segment_ms = limit(value)?,
            "retention.ms" => self.retention_ms = limit(value)?,
            "retention.bytes" => self.retention_bytes = limit(value)?,
            "cleanup.policy" => {
                self.cleanup_policy = match value.trim() {
                    "delete" => CleanupPolicy::Delete,
                    "compact" => CleanupPolicy::Compact,
                    other => {
                        return Err(bad(format!(
                            "unknown policy {other:?}; allowed: delete, compact"
                        )))
                    }
                }
            }
            "delete.retention.ms" => {
                self.delete_retention_ms = u64::try_from(num(value)?).unwrap_or(0)
            }
            "index.interval.bytes" => self.index_interval_bytes = positive(value)?,
            other => {
                return Err(bad(format!(
                    "unknown setting {other:?}; known: partitions, {}",
                    SETTING_NAMES.join(", ")
                )))
            }
        }
        self.validate()
    }

    /// Every setting but `partitions` as `(name, value)` under its `key=value` name, in the
    /// order of [`SETTING_NAMES`]; each value parses back with [`set`](Self::set) (`-1` is
    /// unlimited).
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let limit = |v: Option<u64>| v.map_or("-1".to_owned(), |v| v.to_string());
        let values = [
            match self.durability {
                Durability::None => "none".to_owned(),
                Durability::Always => "always".to_owned(),
                Durability::IntervalMs(ms) => ms.to_string(),
            },
            self.segment_bytes.to_string(),
            limit(self.segment_ms),
            limit(self.retention_ms),
            limit(self.retention_bytes),
            match self.cleanup_policy {
                CleanupPolicy::Delete => "delete".to_owned(),
                CleanupPolicy::Compact => "compact".to_owned(),
            },
            self.delete_retention_ms.to_string(),
            self.index_interval_bytes.to_string(),
        ];
        SETTING_NAMES.into_iter().zip(values).collect()
    }

    /// Checks that the settings can work together.
    pub fn validate(&self) -> LogResult<()> {
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return Err(LogError::InvalidConfig(format!(
                "partitions must be 1..={MAX_PARTITIONS}, got {} (each partition is a directory \
                 with its own files, created and fsynced with the topic: about 0.5 ms apiece)",
                self.partitions
            )));
        }
        if self.segment_bytes < 1024 || self.segment_bytes > u64::from(u32::MAX) {
            return Err(LogError::InvalidConfig(format!(
                "segment.bytes must be 1024..=4294967295, got {}",
                self.segment_bytes
            )));
        }
        if self.index_interval_bytes == 0 {
            return Err(LogError::InvalidConfig(
                "index.interval.bytes must be > 0".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_style_settings() {
        let mut c = TopicConfig::default();
        for s in [
            "partitions=6",
            "durability=always",
            "segment.bytes=1048576",
            "retention.ms=-1",
            "retention.bytes=5000",
            "cleanup.policy=compact",
        ] {
            c.set(s).unwrap();
        }
        assert_eq!(c.partitions, 6);
        assert_eq!(c.durability, Durability::Always);
        assert_eq!(c.segment_bytes, 1 << 20);
        assert_eq!(c.retention_ms, None);
        assert_eq!(c.retention_bytes, Some(5000));
        assert_eq!(c.cleanup_policy, CleanupPolicy::Compact);
        c.set("durability=250").unwrap();
        assert_eq!(c.durability, Durability::IntervalMs(250));
    }

    #[test]
    fn settings_print_under_their_names_and_parse_back() {
        let mut c = TopicConfig::default();
        c.set("retention.bytes=5000").unwrap();
        c.set("cleanup.policy=compact").unwrap();
        let settings = c.settings();
        let names: Vec<&str> = settings.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, SETTING_NAMES);
        assert!(settings.contains(&("durability", "1000".into())));
        assert!(settings.contains(&("retention.ms", "-1".into())));
        assert!(settings.contains(&("cleanup.policy", "compact".into())));
        let mut back = TopicConfig::default();
        for (k, v) in &settings {
            back.set(&format!("{k}={v}")).unwrap();
        }
        assert_eq!(back, c);
    }

    #[test]
    fn rejects_nonsense_with_the_setting_named() {
        let mut c = TopicConfig::default();
        let e = c.set("durability=sometimes").unwrap_err().to_string();
        assert!(e.contains("none, always"), "{e}");
        let e = c.set("cleanup.policy=keep").unwrap_err().to_string();
        assert!(e.contains("delete, compact"), "{e}");
        let mut c = TopicConfig::default();
        let e = c.set("segment.bytes=abc").unwrap_err().to_string();
        assert!(e.contains("segment.bytes=abc"), "{e}");
        assert!(c.set("no-equals").is_err());
        assert!(c.set("colour=blue").is_err());
        assert!(c.set("partitions=0").is_err());
        assert!(c.set("segment.bytes=10").is_err());
    }
}
