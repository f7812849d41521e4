//! An `Application`'s own Prometheus endpoint (`AppConfig::metrics_listen`), scraped while the
//! sensor tutorial's processor runs on real RocksDB state: its counters agree with the log.

use std::time::Duration;

use eddy::{Application, Log};
use eddy_examples::sensor::{self, AGG_TOPIC, RAW_TOPIC};

fn scrape(address: std::net::SocketAddr) -> Result<String, ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent.get(&format!("http://{address}/metrics")).call()?;
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("application/openmetrics-text"));
    response.body_mut().read_to_string()
}

/// The value of the series `name{labels}` in `text`.
fn value(text: &str, series: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"));
    line[series.len()..]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn processor(dir: &std::path::Path, listen: &str) -> eddy::StreamResult<Application> {
    let mut config = sensor::processor_config(dir, eddy::ErrorPolicy::Fail);
    config.metrics_listen = Some(listen.parse().expect("address"));
    sensor::processor_on(
        Application::new(config)?,
        sensor::Aggregation::Builtin,
        sensor::CLOSING,
    )
}

#[test]
fn a_running_application_serves_its_counters_to_prometheus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = sensor::ProducerOptions {
        count: 1500,
        fast: true,
        print: false,
    };
    sensor::produce(dir.path(), options, &mut std::io::sink()).expect("produce");
    let mut app = processor(dir.path(), "127.0.0.1:0").expect("processor");
    let address = app.metrics_address().expect("an endpoint");
    let before = scrape(address).expect("scrape before running");
    let group = format!("{{group=\"{}\"}}", sensor::GROUP);
    assert_eq!(
        value(&before, &format!("eddy_app_records_in_total{group}")),
        0.0
    );
    app.run_until_idle().expect("run");
    let text = scrape(address).expect("scrape");
    assert_eq!(
        value(&text, &format!("eddy_app_records_in_total{group}")),
        1500.0
    );
    let log = Log::open_read_only(dir.path());
    let out = log
        .topic(AGG_TOPIC)
        .expect("output")
        .describe()
        .expect("describe")[0]
        .end_offset;
    assert_eq!(
        value(&text, &format!("eddy_app_records_out_total{group}")),
        out as f64
    );
    assert!(value(&text, &format!("eddy_app_checkpoints_total{group}")) >= 1.0);
    assert!(value(&text, &format!("eddy_app_checkpoint_seconds_total{group}")) > 0.0);
    assert!(
        value(&text, &format!("eddy_app_state_bytes{group}")) > 0.0,
        "windows are in RocksDB"
    );
    let errors = format!(
        "eddy_app_errors_total{{group=\"{}\",kind=\"deserialize\"}}",
        sensor::GROUP
    );
    assert_eq!(value(&text, &errors), 0.0);
    let lag = format!(
        "eddy_app_lag{{group=\"{}\",topic=\"{RAW_TOPIC}\",partition=\"0\"}}",
        sensor::GROUP
    );
    assert_eq!(value(&text, &lag), 0.0, "caught up");
    assert!(text.contains("# TYPE eddy_app_late_records counter"));
    // The port is taken while it runs: a second application says which address failed.
    let taken = processor(dir.path(), &address.to_string())
        .err()
        .expect("the port is taken");
    assert!(taken.to_string().contains(&address.to_string()), "{taken}");
    // Dropping the application stops its endpoint.
    drop(app);
    assert!(
        scrape(address).is_err(),
        "the endpoint is gone with its application"
    );
}
