//! The console in headless Chromium, driven through ChromeDriver (Debian's `chromium` and
//! `chromium-driver`, which `./dev test` installs): clicking through from the topics page to the
//! sensor pipeline's output, its values checked against the log, the group's lag, the chart, the
//! live tail, and a stored `<script>` shown as text. Screenshots are kept in
//! `$CARGO_TARGET_TMPDIR/console-screenshots/`.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{log_records, write_fixture, ODD_TOPIC, XSS};
use eddy::{Log, Record};
use eddy_console::{Console, ConsoleConfig};
use eddy_examples::sensor::{self, AGG_TOPIC, GROUP};
use fantoccini::{Client, ClientBuilder, Locator};

/// A ChromeDriver process and the profile of the Chromium it starts; on drop both are killed
/// (Chromium by its profile directory: it leaves ChromeDriver's process group), also when a
/// failed assertion left the session open.
struct Driver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pattern = format!("--user-data-dir={}", self.profile.path().display());
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", "--", &pattern])
            .status();
    }
}

fn program(env: &str, name: &str, fallback: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return p.into();
    }
    let found = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    found.unwrap_or_else(|| fallback.into())
}

fn start_driver() -> Driver {
    let chromedriver = program("EDDY_CHROMEDRIVER", "chromedriver", "/usr/bin/chromedriver");
    assert!(
        chromedriver.is_file(),
        "{} not found: the browser tests need Chromium and ChromeDriver (apt-get install chromium \
         chromium-driver; ./dev test installs them), or EDDY_CHROMEDRIVER and EDDY_CHROMIUM",
        chromedriver.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        profile: tempfile::tempdir().expect("profile dir"),
    }
}

async fn browser(driver: &Driver) -> Client {
    let profile = driver.profile.path();
    let chromium = program("EDDY_CHROMIUM", "chromium", "/usr/bin/chromium");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            // Headless as root, and nothing that reaches for the network beyond localhost.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", format!("--user-data-dir={}", profile.display())],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).expect("save screenshot");
}

async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

/// Waits until `script` (a JS expression) is true.
async fn until(client: &Client, script: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = client
            .execute(&format!("return Boolean({script});"), vec![])
            .await
            .expect("script");
        if v == serde_json::Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_browser_clicks_through_topics_messages_groups_and_charts() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fixture(dir.path(), 1500);
    let mut config = ConsoleConfig::new(dir.path());
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.sample_interval = Duration::from_millis(250);
    let console = Console::bind(&config)
        .expect("bind")
        .spawn()
        .expect("spawn");
    // Readings the processor has not seen, in two steps the lag history samples: the group
    // lags by these.
    for count in [10, 15] {
        std::thread::sleep(Duration::from_millis(800));
        let more = sensor::ProducerOptions {
            count,
            fast: true,
            print: false,
        };
        sensor::produce(dir.path(), more, &mut std::io::sink()).expect("produce more");
    }
    std::thread::sleep(Duration::from_millis(800));
    let url = console.url();
    let records = log_records(dir.path(), AGG_TOPIC);
    let driver = start_driver();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = browser(&driver).await;
        client.goto(&format!("{url}/topics")).await.expect("open topics");
        screenshot(&client, "topics").await;
        client.find(Locator::LinkText(AGG_TOPIC)).await.expect("output topic link").click().await.expect("click");
        let end = text(&client, "#partitions tbody tr td:nth-child(3)").await;
        assert_eq!(end, records.len().to_string(), "log end offset as the log has it");
        client.find(Locator::LinkText("Messages")).await.expect("messages link").click().await.expect("click");
        // The newest page: its last row is the log's last record.
        let rows = client.find_all(Locator::Css("#messages tbody tr")).await.expect("rows");
        assert_eq!(rows.len(), 50.min(records.len()));
        let last = rows.last().expect("a row");
        let offset = last.find(Locator::Css("td:nth-child(2)")).await.expect("offset").text().await.expect("text");
        assert_eq!(offset, (records.len() - 1).to_string());
        let shown = last.find(Locator::Css("td:nth-child(5) pre")).await.expect("value").text().await.expect("text");
        let shown: serde_json::Value = serde_json::from_str(&shown).expect("the value shows as JSON");
        let stored: serde_json::Value = serde_json::from_slice(records.last().and_then(|r| r.4.as_deref()).expect("value")).expect("json");
        assert_eq!(shown, stored);
        screenshot(&client, "messages").await;
        // The live tail adds records appended after it opened.
        client.find(Locator::Id("tail")).await.expect("tail button").click().await.expect("click");
        until(&client, "document.getElementById('tail').dataset.open === '1'", "the tail to open").await;
        let log = Log::open(dir.path()).expect("log");
        let out = log.topic(AGG_TOPIC).expect("topic");
        out.append([Record::keyed("Sensor9", br#"{"time":1,"temperature":{"count":1,"min":1,"max":1,"mean":1}}"#.to_vec())]).expect("append");
        until(&client, "[...document.querySelectorAll('#messages tr.new td.key')].some(td => td.textContent === 'Sensor9')", "the tailed record").await;
        // The group: its lag is what the readings added after the run make it.
        client.goto(&format!("{url}/groups")).await.expect("open groups");
        client.find(Locator::LinkText(GROUP)).await.expect("group link").click().await.expect("click");
        assert_eq!(text(&client, "#lag").await, "25");
        assert_eq!(text(&client, "#state").await, "Empty");
        until(&client, "document.getElementById('lag-chart').complete && document.getElementById('lag-chart').naturalWidth > 0", "the lag chart").await;
        screenshot(&client, "group").await;
        // The chart of the tutorial's output.
        client.goto(&format!("{url}/topics/{AGG_TOPIC}/chart?field=temperature.mean")).await.expect("open chart");
        until(&client, "document.getElementById('chart').complete && document.getElementById('chart').naturalWidth > 0", "the chart").await;
        screenshot(&client, "chart").await;
        // A stored script is text on the page, and never runs.
        client.goto(&format!("{url}/topics/{ODD_TOPIC}/messages?from=beginning")).await.expect("open odd values");
        assert_eq!(text(&client, "#messages tbody tr td:nth-child(5) pre").await, XSS);
        assert_eq!(text(&client, "#messages tbody tr td.key pre").await, XSS);
        assert!(client.get_alert_text().await.is_err(), "no alert was raised");
        let injected = client.execute("return document.querySelectorAll('#messages script').length;", vec![]).await.expect("script");
        assert_eq!(injected, serde_json::json!(0));
        screenshot(&client, "escaped-values").await;
        client.close().await.expect("close the browser");
    });
    drop(console);
}
