//! The data directory the console's tests look at: the sensor tutorial's readings, written by
//! its real producer, aggregated by its real processor (an `Application` with RocksDB state),
//! and a topic of awkward values (markup, binary, headers) written through the log.

#![allow(dead_code)]

use std::path::Path;

use eddy::{Header, Log, Record, TopicConfig};
use eddy_examples::sensor;

/// A key and value that must show as text, never run.
pub const XSS: &str = "<script>alert(1)</script>";
/// The topic of awkward values.
pub const ODD_TOPIC: &str = "odd-values";

/// Writes the fixture into `dir`: `readings` sensor readings, processed to the end.
pub fn write_fixture(dir: &Path, readings: u64) {
    let options = sensor::ProducerOptions {
        count: readings,
        fast: true,
        print: false,
    };
    let produced = sensor::produce(dir, options, &mut std::io::sink()).expect("produce readings");
    assert_eq!(produced, readings);
    let mut app = sensor::processor(
        dir,
        sensor::Aggregation::Builtin,
        sensor::CLOSING,
        eddy::ErrorPolicy::Fail,
    )
    .expect("processor");
    app.run_until_idle().expect("run the processor");
    drop(app);
    let log = Log::open(dir).expect("open the log");
    let odd = log
        .create_topic(ODD_TOPIC, TopicConfig::with_partitions(1))
        .expect("create odd topic");
    odd.append([
        Record {
            key: Some(XSS.as_bytes().to_vec()),
            value: Some(XSS.as_bytes().to_vec()),
            timestamp: Some(1_700_000_000_000),
            headers: vec![Header {
                key: "h<i>".into(),
                value: Some(XSS.as_bytes().to_vec()),
            }],
        },
        Record {
            key: None,
            value: Some(vec![0, 159, 146, 150, 255]),
            timestamp: Some(1_700_000_001_000),
            headers: vec![],
        },
        Record {
            key: Some(b"big".to_vec()),
            value: Some(format!("{{\"blob\":\"{}\"}}", "x".repeat(100_000)).into_bytes()),
            timestamp: Some(1_700_000_002_000),
            headers: vec![],
        },
        Record {
            key: Some(b"gone".to_vec()),
            value: None,
            timestamp: Some(1_700_000_003_000),
            headers: vec![],
        },
    ])
    .expect("append odd values");
}

/// A stored record: (partition, offset, timestamp, key, value).
pub type Stored = (u32, u64, i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Every record of `topic`.
pub fn log_records(dir: &Path, topic: &str) -> Vec<Stored> {
    let log = Log::open_read_only(dir);
    let t = log.topic(topic).expect("topic");
    let mut out = Vec::new();
    for p in 0..t.partitions() {
        let mut reader = t.reader(p).expect("reader");
        let mut next = reader.log_start_offset().expect("start");
        loop {
            let fetch = reader.read(next, 10_000, 16 << 20).expect("read");
            if fetch.is_empty() {
                break;
            }
            for r in fetch.iter() {
                out.push((
                    p,
                    r.offset,
                    r.timestamp,
                    r.key.map(<[u8]>::to_vec),
                    r.value.map(<[u8]>::to_vec),
                ));
            }
            next = fetch.next_offset();
        }
    }
    out
}
