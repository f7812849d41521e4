//! The README's library snippets, compiled with the workspace so that they stay true: the test
//! `examples/tests/readme.rs` checks that every Rust block of the README appears here line for
//! line, and runs this program. `cargo run --release -p eddy-examples --bin readme-snippets -- DIR`

use std::error::Error;

type AnyResult = Result<(), Box<dyn Error + Send + Sync>>;

fn log_and_consumer() -> AnyResult {
    use eddy::{Consumer, ConsumerConfig, Log, Record, TopicConfig};
    use std::time::Duration;

    let log = Log::open("./eddy-data")?;
    let topic = log.topic_or_create("readings", TopicConfig::with_partitions(3))?;
    topic.append([Record::keyed("sensor-1", r#"{"value": 21}"#)])?;
    let mut reader = topic.reader(topic.partition_for(Some(b"sensor-1")))?;
    for record in reader.read(0, 1000, 1 << 20)?.iter() {
        println!("{} {:?}", record.offset, record.value);
    }

    let mut consumer = Consumer::new(&log, ConsumerConfig::new("dashboard"))?;
    consumer.subscribe(&["readings"])?;
    for batch in consumer.poll(Duration::from_millis(500))? {
        for record in batch.records.iter() {
            println!("{}: {:?}", record.offset, record.value);
        }
    }
    consumer.commit()?;
    Ok(())
}

fn stateful_application() -> AnyResult {
    use eddy::{AppConfig, Application, Json, State, Str};

    let mut app = Application::new(AppConfig::new("./eddy-data", "counter"))?;
    let readings = app.topic::<Str, Json<serde_json::Value>>("readings")?;
    let counts = app.topic::<Str, Json<u64>>("counts")?;
    app.dataframe(&readings)
        .filter(|v| v["value"].as_i64().is_some())
        .stateful_map(|_, state: &mut State<'_>| {
            let n = state.get_or::<u64>("n", 0) + 1;
            state.set("n", &n);
            n
        })
        .to_topic(&counts);
    app.run_until_idle()?; // run() runs until Ctrl-C
    Ok(())
}

/// Runs both snippets in the directory given as the first argument (they use `./eddy-data`).
fn main() -> AnyResult {
    if let Some(dir) = std::env::args().nth(1) {
        std::fs::create_dir_all(&dir)?;
        std::env::set_current_dir(dir)?;
    }
    log_and_consumer()?;
    stateful_application()
}
