//! `eddy console` as users start it: the `eddy` command runs the `eddy-console` program beside
//! it, which serves until Ctrl-C (SIGINT) and exits cleanly; a taken address fails at once,
//! naming it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use eddy::{Log, Record, TopicConfig};

fn eddy() -> Command {
    let eddy = PathBuf::from(env!("CARGO_BIN_EXE_eddy-console")).with_file_name("eddy");
    assert!(
        eddy.is_file(),
        "{} is built with the workspace",
        eddy.display()
    );
    Command::new(eddy)
}

#[test]
fn eddy_console_serves_the_data_directory_until_interrupted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("log");
    let topic = log
        .create_topic("readings", TopicConfig::with_partitions(2))
        .expect("topic");
    topic
        .append([Record::keyed("k", b"v".to_vec())])
        .expect("append");
    let mut child = eddy()
        .arg("--data-dir")
        .arg(dir.path())
        .args(["console", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn eddy console");
    let stderr = child.stderr.take().expect("stderr");
    let (lines, reading) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let first = reading
        .recv_timeout(Duration::from_secs(20))
        .expect("the console says where it listens");
    assert!(first.contains("read-only"), "{first}");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    let mut response = ureq::get(&format!("{url}/api/topics/readings"))
        .call()
        .expect("request");
    let doc: serde_json::Value =
        serde_json::from_str(&response.body_mut().read_to_string().expect("body")).expect("json");
    assert_eq!(doc["partitions"].as_array().map(Vec::len), Some(2));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the console did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    reader.join().expect("stderr reader");
}

#[test]
fn a_taken_address_fails_naming_it() {
    let parent = tempfile::tempdir().expect("tempdir");
    let missing = parent.path().join("not-yet");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let out = eddy()
        .arg("--data-dir")
        .arg(&missing)
        .args(["console", "--listen", &address])
        .output()
        .expect("run eddy console");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&address), "{stderr}");
    assert!(
        !missing.exists(),
        "a read-only console creates no data directory"
    );
}
