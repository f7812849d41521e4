//! The sensor tutorial's processor on a real Kafka-protocol broker (tansu, started here), built
//! by the same function as on the local log (`eddy_examples::sensor::processor_on`): for the
//! same readings it writes exactly the windows it writes on the local log, and it waits out a
//! broker that is cut off mid-run without losing or changing a window.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::relay::Relay;
use common::sensor::{
    kafka_windows, local_windows, processor_on_kafka, produce_to_kafka, readings, repeats,
};

use std::sync::mpsc;
use std::time::Duration;

use eddy_kafka::local_broker::LocalBroker;

const PARTITIONS: u32 = 3;

#[test]
fn the_sensor_processor_on_kafka_writes_the_windows_it_writes_on_the_local_log() {
    let readings = readings(4_000, 8, 11);
    let expected = local_windows(PARTITIONS, &readings);
    assert!(expected.len() > 300, "{} windows", expected.len());
    assert_eq!(repeats(&expected), 0);

    let broker = LocalBroker::start().unwrap();
    produce_to_kafka(&broker, PARTITIONS, &readings);
    let dir = tempfile::tempdir().unwrap();
    let mut app = processor_on_kafka(
        &broker.brokers(),
        dir.path(),
        Duration::from_millis(200),
        &[],
    );
    app.run_until_idle().unwrap();
    assert_eq!(app.metrics().records_in, readings.len() as u64);
    drop(app);
    let written = expected.values().map(Vec::len).sum::<usize>();
    let windows = kafka_windows(&broker, Duration::from_secs(30), |w| {
        w.values().map(Vec::len).sum::<usize>() >= written
    });
    assert_eq!(windows, expected);
}

#[test]
fn the_sensor_processor_on_kafka_waits_out_a_broker_outage_and_loses_nothing() {
    let readings = readings(9_000, 8, 12);
    let expected = local_windows(PARTITIONS, &readings);
    let (broker, relay) = Relay::with_broker();
    produce_to_kafka(&broker, PARTITIONS, &readings[..3_000]);

    let dir = tempfile::tempdir().unwrap();
    let (brokers, path) = (broker.brokers(), dir.path().to_owned());
    let (stop_tx, stop_rx) = mpsc::channel();
    let runner = std::thread::spawn(move || {
        let mut app = processor_on_kafka(&brokers, &path, Duration::from_millis(100), &[]);
        stop_tx.send(app.stop_handle()).unwrap();
        let result = app.run();
        (result, app.metrics())
    });
    let stop = stop_rx.recv().unwrap();
    let some = kafka_windows(&broker, Duration::from_secs(60), |w| w.len() >= 50);
    assert!(
        some.len() >= 50,
        "windows before the outage: {}",
        some.len()
    );

    // Cut while the application has records to process, outputs and changelogs to write.
    produce_to_kafka(&broker, PARTITIONS, &readings[3_000..6_000]);
    relay.cut();
    std::thread::sleep(Duration::from_secs(3));
    relay.restore();
    produce_to_kafka(&broker, PARTITIONS, &readings[6_000..]);

    let windows = kafka_windows(&broker, Duration::from_secs(90), |w| {
        w.len() >= expected.len()
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (result, metrics) = runner.join().unwrap();
    result.unwrap();
    assert_eq!(
        metrics.records_in,
        readings.len() as u64,
        "each reading processed once"
    );
    assert_eq!(repeats(&windows), 0);
    assert_eq!(windows, expected);
}
