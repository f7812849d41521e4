//! The console's `/metrics`: every partition's offsets and size and every group's committed
//! offsets and lag, read from the data directory at scrape time, in the Prometheus
//! (OpenMetrics) text format.

use eddy::Log;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::inspect::{self, InspectResult};

type Labels = Vec<(String, String)>;

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The metrics of the data directory of `log` as OpenMetrics text. Topics or groups that
/// disappear while being read are left out.
pub fn encode_console_metrics(log: &Log) -> InspectResult<String> {
    let mut registry = Registry::with_prefix("eddy");
    let family = || Family::<Labels, Gauge>::default();
    let (start, end, stable, bytes, segments) = (family(), family(), family(), family(), family());
    for name in inspect::topic_names(log)? {
        let Ok(topic) = inspect::topic(log, &name) else {
            continue;
        };
        for p in &topic.partitions {
            let labels = vec![
                ("topic".into(), name.clone()),
                ("partition".into(), p.partition.to_string()),
            ];
            start.get_or_create(&labels).set(gauge(p.log_start_offset));
            end.get_or_create(&labels).set(gauge(p.log_end_offset));
            stable
                .get_or_create(&labels)
                .set(gauge(p.last_stable_offset));
            bytes.get_or_create(&labels).set(gauge(p.bytes));
            segments
                .get_or_create(&labels)
                .set(gauge(p.segments as u64));
        }
    }
    registry.register(
        "partition_log_start_offset",
        "First stored offset of a partition",
        start,
    );
    registry.register(
        "partition_log_end_offset",
        "Next offset to be written to a partition",
        end,
    );
    registry.register(
        "partition_last_stable_offset",
        "End of what committed readers see",
        stable,
    );
    registry.register(
        "partition_bytes",
        "Bytes of a partition's segment files",
        bytes,
    );
    registry.register("partition_segments", "Segments of a partition", segments);
    let (committed, lag, total, members) = (family(), family(), family(), family());
    for name in inspect::group_names(log)? {
        let Ok(group) = inspect::group(log, &name) else {
            continue;
        };
        for p in &group.partitions {
            let labels = vec![
                ("group".into(), name.clone()),
                ("topic".into(), p.topic.clone()),
                ("partition".into(), p.partition.to_string()),
            ];
            if let Some(offset) = p.current_offset {
                committed.get_or_create(&labels).set(gauge(offset));
            }
            let behind = p
                .lag
                .map_or(p.log_end_offset, |l| u64::try_from(l).unwrap_or(0));
            lag.get_or_create(&labels).set(gauge(behind));
        }
        let labels = vec![("group".into(), name.clone())];
        total
            .get_or_create(&labels)
            .set(gauge(inspect::total_lag(&group)));
        members
            .get_or_create(&labels)
            .set(gauge(group.members.len() as u64));
    }
    registry.register(
        "group_committed_offset",
        "Offset a group committed for a partition",
        committed,
    );
    registry.register(
        "group_partition_lag",
        "Records of a partition the group has not committed",
        lag,
    );
    registry.register(
        "group_lag",
        "Records of all its partitions a group has not committed",
        total,
    );
    registry.register("group_members", "Live members of a group", members);
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &registry);
    Ok(text)
}
