//! Every page and API of the console over HTTP, against a data directory written by the sensor
//! tutorial's real producer and processor: what they show is checked against the log itself.

mod common;

use std::io::BufRead;
use std::time::{Duration, Instant};

use common::{log_records, write_fixture, ODD_TOPIC, XSS};
use eddy::{Groups, Log, Record};
use eddy_console::{Console, ConsoleConfig, ConsoleHandle};
use eddy_examples::sensor::{AGG_TOPIC, GROUP, RAW_TOPIC};

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

fn fixture(readings: u64) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fixture(dir.path(), readings);
    Fixture {
        path: dir.path().to_owned(),
        _dir: dir,
    }
}

fn console(path: &std::path::Path, allow_writes: bool) -> ConsoleHandle {
    let mut config = ConsoleConfig::new(path);
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.allow_writes = allow_writes;
    config.sample_interval = Duration::from_millis(100);
    Console::bind(&config)
        .expect("bind")
        .spawn()
        .expect("spawn")
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// GET `path`: status and body.
fn get(c: &ConsoleHandle, path: &str) -> (u16, String) {
    let mut response = agent()
        .get(&format!("{}{path}", c.url()))
        .call()
        .expect("request");
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().expect("body"))
}

fn get_json(c: &ConsoleHandle, path: &str) -> serde_json::Value {
    let (status, body) = get(c, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn post_form(c: &ConsoleHandle, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let mut response = agent()
        .post(&format!("{}{path}", c.url()))
        .send_form(form.iter().copied())
        .expect("request");
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().expect("body"))
}

fn post_json(c: &ConsoleHandle, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let mut response = agent()
        .post(&format!("{}{path}", c.url()))
        .header("content-type", "application/json")
        .send(body.to_string())
        .expect("request");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

/// The page's reset token.
fn token(page: &str) -> String {
    let at = page.find("name=\"token\" value=\"").expect("token field") + 20;
    page[at..at + 32].to_owned()
}

#[test]
fn topics_show_the_offsets_sizes_and_settings_the_log_has() {
    let f = fixture(600);
    let c = console(&f.path, false);
    let (status, page) = get(&c, "/");
    assert_eq!(status, 200, "/ leads to the topics");
    assert!(page.contains("<h1>Topics</h1>"), "{page}");
    for topic in [RAW_TOPIC, AGG_TOPIC, ODD_TOPIC] {
        assert!(
            page.contains(&format!("href=\"/topics/{topic}\"")),
            "{topic} listed: {page}"
        );
    }
    let log = Log::open_read_only(&f.path);
    for topic in [RAW_TOPIC, AGG_TOPIC] {
        let parts = log
            .topic(topic)
            .expect("topic")
            .describe()
            .expect("describe");
        let doc = get_json(&c, &format!("/api/topics/{topic}"));
        let shown = doc["partitions"].as_array().expect("partitions");
        assert_eq!(shown.len(), parts.len());
        for (s, p) in shown.iter().zip(&parts) {
            assert_eq!(s["log_end_offset"], p.end_offset, "{topic}");
            assert_eq!(s["log_start_offset"], p.log_start_offset);
            assert_eq!(s["last_stable_offset"], p.end_offset, "no open transaction");
            assert_eq!(s["bytes"], p.bytes);
            assert_eq!(s["segments"], p.segments);
        }
        assert!(doc["settings"]["cleanup.policy"].is_string(), "{doc}");
        let (status, page) = get(&c, &format!("/topics/{topic}"));
        assert_eq!(status, 200);
        assert!(
            page.contains("retention.ms") && page.contains("durability"),
            "settings shown"
        );
        assert!(page.contains(&format!("<td class=\"num\">{}</td>", parts[0].end_offset)));
    }
    let list = get_json(&c, "/api/topics");
    let raw = (list.as_array().expect("list").iter())
        .find(|t| t["name"] == RAW_TOPIC)
        .expect("raw listed");
    assert_eq!(raw["records"], 600);
}

#[test]
fn messages_pages_match_the_log_from_every_start() {
    let f = fixture(800);
    let c = console(&f.path, false);
    let records = log_records(&f.path, AGG_TOPIC);
    assert!(
        records.len() > 20,
        "the processor wrote windows: {}",
        records.len()
    );
    let value_of = |m: &serde_json::Value| -> serde_json::Value {
        serde_json::from_str(m["value"]["text"].as_str().expect("value text")).expect("json value")
    };
    let stored = |i: usize| -> serde_json::Value {
        serde_json::from_slice(records[i].4.as_deref().expect("value")).expect("stored json")
    };
    // The newest page: the last records.
    let page = get_json(&c, &format!("/api/topics/{AGG_TOPIC}/messages?limit=5"));
    let shown = page["messages"].as_array().expect("messages");
    assert_eq!(shown.len(), 5);
    let newest: Vec<u64> = shown
        .iter()
        .map(|m| m["offset"].as_u64().expect("offset"))
        .collect();
    let n = records.len() as u64;
    assert_eq!(
        newest,
        (n - 5..n).collect::<Vec<_>>(),
        "one partition: the last five offsets"
    );
    assert_eq!(value_of(&shown[4]), stored(records.len() - 1));
    assert_eq!(shown[4]["value"]["kind"], "json");
    // From the beginning, from an offset, from a time.
    let first = get_json(
        &c,
        &format!("/api/topics/{AGG_TOPIC}/messages?from=beginning&limit=3"),
    );
    assert_eq!(first["messages"][0]["offset"], 0);
    assert_eq!(value_of(&first["messages"][2]), stored(2));
    assert_eq!(first["next_offsets"]["0"], 3);
    let at = get_json(
        &c,
        &format!("/api/topics/{AGG_TOPIC}/messages?from=offset&offset=7&limit=2"),
    );
    assert_eq!(at["messages"][0]["offset"], 7);
    let ts = records[10].2;
    let by_time = get_json(
        &c,
        &format!("/api/topics/{AGG_TOPIC}/messages?from=time&time={ts}&limit=1"),
    );
    let found = by_time["messages"][0]["offset"].as_u64().expect("offset");
    assert!(records[found as usize].2 >= ts && (found == 0 || records[found as usize - 1].2 < ts));
    // A key filter keeps only that key's records, the newest ones.
    let key = String::from_utf8(records[0].3.clone().expect("key")).expect("utf-8 key");
    let keyed = get_json(
        &c,
        &format!("/api/topics/{AGG_TOPIC}/messages?key={key}&limit=500"),
    );
    let expected: Vec<u64> = (records.iter())
        .filter(|r| r.3.as_deref() == Some(key.as_bytes()))
        .map(|r| r.1)
        .collect();
    let got: Vec<u64> = (keyed["messages"].as_array().expect("messages").iter())
        .map(|m| m["offset"].as_u64().expect("o"))
        .collect();
    assert_eq!(got, expected);
    // The HTML page shows the same records, and a next-page link for one partition.
    let (status, html) = get(
        &c,
        &format!("/topics/{AGG_TOPIC}/messages?partition=0&from=beginning&limit=3"),
    );
    assert_eq!(status, 200);
    assert!(
        html.contains(
            "href=\"/topics/agg-temperature/messages?partition=0&amp;from=offset&amp;offset=3"
        ),
        "{html}"
    );
    assert!(
        html.contains("&quot;temperature&quot;"),
        "pretty JSON, escaped: {html}"
    );
    // Pages are bounded.
    let all = get_json(
        &c,
        &format!("/api/topics/{RAW_TOPIC}/messages?from=beginning&limit=100000"),
    );
    assert_eq!(
        all["messages"].as_array().expect("messages").len(),
        eddy_console::inspect::MAX_PAGE
    );
}

#[test]
fn pages_of_several_partitions_merge_by_time_and_say_where_each_goes_on() {
    let f = fixture(10);
    let log = Log::open(&f.path).expect("log");
    let topic = log
        .create_topic("merged", eddy::TopicConfig::with_partitions(3))
        .expect("topic");
    // Partition p holds timestamps p, p + 3, p + 6, ...: merged by time they interleave.
    for p in 0..3u32 {
        let w = topic.writer(p).expect("writer");
        let records: Vec<Record> = (0..10)
            .map(|i| Record::value(format!("{p}-{i}")).at(1000 + i64::from(p) + 3 * i))
            .collect();
        w.append(&records).expect("append");
    }
    let c = console(&f.path, false);
    let ts = |m: &serde_json::Value| m["timestamp"].as_i64().expect("timestamp");
    let newest = get_json(&c, "/api/topics/merged/messages?limit=4");
    let got: Vec<i64> = newest["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(ts)
        .collect();
    assert_eq!(
        got,
        vec![1026, 1027, 1028, 1029],
        "the four newest of all partitions"
    );
    let oldest = get_json(&c, "/api/topics/merged/messages?from=beginning&limit=4");
    let got: Vec<i64> = oldest["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(ts)
        .collect();
    assert_eq!(got, vec![1000, 1001, 1002, 1003]);
    // 1000 and 1003 are partition 0's offsets 0 and 1; 1001 and 1002 offset 0 of 1 and 2.
    assert_eq!(
        oldest["next_offsets"],
        serde_json::json!({ "0": 2, "1": 1, "2": 1 })
    );
}

#[test]
fn markup_in_stored_values_is_shown_as_text_and_large_or_binary_values_are_handled() {
    let f = fixture(50);
    let c = console(&f.path, false);
    let (status, html) = get(&c, &format!("/topics/{ODD_TOPIC}/messages?from=beginning"));
    assert_eq!(status, 200);
    assert!(
        !html.contains(XSS),
        "the script must not reach the page as markup"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains("h&lt;i&gt;"), "header names escaped too");
    let page = get_json(
        &c,
        &format!("/api/topics/{ODD_TOPIC}/messages?from=beginning"),
    );
    let m = page["messages"].as_array().expect("messages");
    assert_eq!(m[0]["value"]["text"], XSS);
    assert_eq!(m[1]["value"]["kind"], "hex");
    assert_eq!(m[1]["value"]["text"], "00 9f 92 96 ff");
    assert_eq!(m[2]["value"]["truncated"], true);
    assert_eq!(m[2]["value"]["len"], 100_011);
    assert!(
        m[2]["value"]["text"].as_str().expect("text").len()
            <= eddy_console::inspect::MAX_VALUE_BYTES
    );
    assert!(m[3]["value"].is_null(), "a tombstone");
    assert!(
        html.contains("no key") && html.contains("tombstone"),
        "absent parts are named"
    );
    assert!(
        html.contains("class=\"value hex\">00 9f 92 96 ff</pre>"),
        "{html}"
    );
}

#[test]
fn bad_names_and_parameters_are_refused_with_what_was_wrong() {
    let f = fixture(20);
    let c = console(&f.path, false);
    for path in [
        "/topics/..",
        "/api/topics/..",
        "/topics/a%2F..%2F..%2Fetc",
        "/api/groups/..%2Fgroups",
    ] {
        let (status, body) = get(&c, path);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("name"), "{path}: {body}");
    }
    let (status, body) = get(&c, "/api/topics/no-such-topic");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no-such-topic"));
    let (status, body) = get(&c, &format!("/api/topics/{RAW_TOPIC}/messages?partition=9"));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("partition 9"), "{body}");
    let (status, body) = get(
        &c,
        &format!("/api/topics/{RAW_TOPIC}/messages?from=offset&offset=x"),
    );
    assert_eq!((status, body.contains("offset")), (400, true), "{body}");
    let (status, body) = get(
        &c,
        &format!("/api/topics/{RAW_TOPIC}/messages?from=time&time=yesterday"),
    );
    assert_eq!((status, body.contains("time")), (400, true), "{body}");
    assert_eq!(get(&c, "/nowhere").0, 404);
}

#[test]
fn groups_show_committed_offsets_ends_and_lag() {
    let f = fixture(500);
    // More readings after the processor stopped: the group lags by exactly these.
    eddy_examples::sensor::produce(
        &f.path,
        eddy_examples::sensor::ProducerOptions {
            count: 37,
            fast: true,
            print: false,
        },
        &mut std::io::sink(),
    )
    .expect("produce more");
    let c = console(&f.path, false);
    let doc = get_json(&c, &format!("/api/groups/{GROUP}"));
    assert_eq!(doc["state"], "Empty");
    assert_eq!(doc["lag"], 37, "{doc}");
    let log = Log::open_read_only(&f.path);
    let described = Groups::new(&log).describe(GROUP).expect("describe");
    for (shown, p) in doc["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .zip(&described.partitions)
    {
        assert_eq!(
            shown["current_offset"],
            p.current_offset.expect("committed")
        );
        assert_eq!(shown["log_end_offset"], p.log_end_offset);
    }
    let (status, page) = get(&c, &format!("/groups/{GROUP}"));
    assert_eq!(status, 200);
    assert!(page.contains("<strong id=\"lag\">37</strong>"), "{page}");
    let (_, list) = get(&c, "/groups");
    assert!(list.contains(&format!("href=\"/groups/{GROUP}\"")));
    // The sampler keeps lag over time; the chart draws it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_json(&c, &format!("/api/groups/{GROUP}"))["lag_history"]
        .as_array()
        .is_none_or(|h| h.len() < 2)
    {
        assert!(Instant::now() < deadline, "no lag history sampled");
        std::thread::sleep(Duration::from_millis(100));
    }
    let history = get_json(&c, &format!("/api/groups/{GROUP}"))["lag_history"].clone();
    assert_eq!(history[0][1], 37);
    let (status, svg) = get(&c, &format!("/groups/{GROUP}/lag.svg"));
    assert_eq!(status, 200);
    assert!(
        svg.starts_with("<svg") && svg.contains("polyline"),
        "{}",
        &svg[..200.min(svg.len())]
    );
}

#[test]
fn a_live_member_shows_as_the_owner_and_resets_are_refused_while_it_lives() {
    let f = fixture(200);
    let log = Log::open(&f.path).expect("log");
    let mut member =
        eddy::Consumer::new(&log, eddy::ConsumerConfig::new("dashboard")).expect("member");
    member.subscribe(&[RAW_TOPIC]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(20);
    while member.assignment().is_empty() {
        assert!(Instant::now() < deadline, "no assignment");
        member.poll(Duration::from_millis(50)).expect("poll");
    }
    let c = console(&f.path, true);
    let doc = get_json(&c, "/api/groups/dashboard");
    assert_eq!(doc["state"], "Stable", "{doc}");
    let id = doc["members"][0]["id"]
        .as_str()
        .expect("member id")
        .to_owned();
    let owned = (doc["partitions"].as_array().expect("partitions").iter())
        .filter(|p| p["consumer_id"] == id.as_str())
        .count();
    assert_eq!(owned, member.assignment().len(), "{doc}");
    let (_, page) = get(&c, "/groups/dashboard");
    assert!(
        page.contains(&id) && page.contains("<strong id=\"state\">Stable</strong>"),
        "{page}"
    );
    let (status, body) = post_json(
        &c,
        "/api/groups/dashboard/reset",
        serde_json::json!({ "to": "earliest", "execute": "1" }),
    );
    assert_eq!(
        status, 409,
        "a group with live members is not reset: {body}"
    );
    drop(member);
}

#[test]
fn assets_are_built_in_and_pages_forbid_other_scripts() {
    let f = fixture(10);
    let c = console(&f.path, false);
    for (path, kind, marker) in [
        ("/assets/console.js", "text/javascript", "textContent"),
        ("/assets/console.css", "text/css", "pre.value"),
    ] {
        let response = agent()
            .get(&format!("{}{path}", c.url()))
            .call()
            .expect("asset");
        assert_eq!(response.headers()["content-type"], kind);
        let mut response = response;
        assert!(
            response
                .body_mut()
                .read_to_string()
                .expect("body")
                .contains(marker),
            "{path}"
        );
    }
    let response = agent()
        .get(&format!("{}/topics", c.url()))
        .call()
        .expect("page");
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .expect("csp");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
}

#[test]
fn resets_preview_in_read_only_consoles_and_apply_only_when_writes_are_allowed() {
    let f = fixture(300);
    let log = Log::open_read_only(&f.path);
    let before = Groups::new(&log).committed(GROUP).expect("committed");
    let read_only = console(&f.path, false);
    let preview = serde_json::json!({ "to": "earliest" });
    let (status, plan) = post_json(
        &read_only,
        &format!("/api/groups/{GROUP}/reset"),
        preview.clone(),
    );
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["executed"], false);
    assert!(plan["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .all(|r| r["new_offset"] == 0));
    let (status, body) = post_json(
        &read_only,
        &format!("/api/groups/{GROUP}/reset"),
        serde_json::json!({ "to": "earliest", "execute": "1" }),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]
        .as_str()
        .expect("error")
        .contains("--allow-writes"));
    // The form needs its page's token.
    let (_, page) = get(&read_only, &format!("/groups/{GROUP}"));
    assert!(
        !page.contains("Reset offsets</button>"),
        "no reset button when read-only"
    );
    let (status, _) = post_form(
        &read_only,
        &format!("/groups/{GROUP}/reset"),
        &[("to", "earliest"), ("token", "forged")],
    );
    assert_eq!(status, 403);
    let (status, html) = post_form(
        &read_only,
        &format!("/groups/{GROUP}/reset"),
        &[("to", "earliest"), ("token", &token(&page))],
    );
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Dry run: nothing changed."));
    assert_eq!(
        Groups::new(&log).committed(GROUP).expect("committed"),
        before,
        "nothing changed"
    );
    drop(read_only);
    let writable = console(&f.path, true);
    let (_, page) = get(&writable, &format!("/groups/{GROUP}"));
    let form = [
        ("to", "shift-by"),
        ("value", "-5"),
        ("execute", "1"),
        ("token", &token(&page)),
    ];
    let (status, html) = post_form(&writable, &format!("/groups/{GROUP}/reset"), &form);
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Offsets reset."), "{html}");
    let after = Groups::new(&log).committed(GROUP).expect("committed");
    for (tp, (offset, _)) in &before {
        assert_eq!(
            after[tp].0,
            offset.saturating_sub(5),
            "{tp:?} moved back by 5"
        );
    }
    let (status, body) = post_json(
        &writable,
        &format!("/api/groups/{GROUP}/reset"),
        serde_json::json!({ "to": "offset", "value": "x" }),
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn metrics_give_every_partition_and_group_in_the_prometheus_format() {
    let f = fixture(400);
    let c = console(&f.path, false);
    let (status, text) = get(&c, "/metrics");
    assert_eq!(status, 200);
    let log = Log::open_read_only(&f.path);
    let end = log
        .topic(RAW_TOPIC)
        .expect("topic")
        .describe()
        .expect("describe")[0]
        .end_offset;
    let line =
        format!("eddy_partition_log_end_offset{{topic=\"{RAW_TOPIC}\",partition=\"0\"}} {end}");
    assert!(text.contains(&line), "{line} in {text}");
    assert!(
        text.contains(&format!("eddy_group_lag{{group=\"{GROUP}\"}} 0")),
        "{text}"
    );
    assert!(text.contains("# TYPE eddy_partition_bytes gauge"));
    assert!(text.trim_end().ends_with("# EOF"));
}

#[test]
fn charts_plot_a_json_field_per_key() {
    let f = fixture(600);
    let c = console(&f.path, false);
    let (status, svg) = get(
        &c,
        &format!("/topics/{AGG_TOPIC}/chart.svg?field=temperature.mean"),
    );
    assert_eq!(status, 200, "{svg}");
    assert!(svg.starts_with("<svg"));
    assert!(
        svg.contains("Sensor1") && svg.contains("polyline"),
        "a line per sensor"
    );
    let (status, page) = get(
        &c,
        &format!("/topics/{AGG_TOPIC}/chart?field=temperature.mean"),
    );
    assert_eq!(status, 200);
    assert!(page.contains("5 series"), "{page}");
    assert!(page.contains("chart.svg?field=temperature.mean"));
    let (status, body) = get(&c, &format!("/topics/{AGG_TOPIC}/chart.svg"));
    assert_eq!(status, 400, "{body}");
}

#[test]
fn the_live_tail_streams_records_appended_after_it_opened_and_rates_follow_appends() {
    let f = fixture(100);
    let c = console(&f.path, false);
    let response = agent()
        .get(&format!("{}/api/topics/{ODD_TOPIC}/tail", c.url()))
        .call()
        .expect("tail");
    assert_eq!(response.status().as_u16(), 200);
    let log = Log::open(&f.path).expect("log");
    let topic = log.topic(ODD_TOPIC).expect("topic");
    let end = topic.describe().expect("describe")[0].end_offset;
    let record = |v: &str| Record {
        key: Some(b"k".to_vec()),
        value: Some(v.as_bytes().to_vec()),
        timestamp: None,
        headers: vec![],
    };
    topic
        .append([record("first new"), record("second new")])
        .expect("append");
    let (lines, reading) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        for line in reader.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = reading
            .recv_timeout(Duration::from_secs(20))
            .expect("a tail event");
        if let Some(data) = line.strip_prefix("data:") {
            let batch: serde_json::Value = serde_json::from_str(data.trim()).expect("json event");
            seen.extend(
                batch
                    .as_array()
                    .expect("array")
                    .iter()
                    .map(|m| (m["offset"].as_u64().expect("o"), m["value"]["text"].clone())),
            );
        }
    }
    assert_eq!(
        seen,
        vec![(end, "first new".into()), (end + 1, "second new".into())]
    );
    // Records/s over the last minute follows the appends the sampler sees.
    for _ in 0..20 {
        topic
            .append((0..50).map(|_| record("more")))
            .expect("append");
        std::thread::sleep(Duration::from_millis(60));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let doc = get_json(&c, &format!("/api/topics/{ODD_TOPIC}"));
        if doc["records_per_second"].as_f64().is_some_and(|r| r > 0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "no rate: {doc}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Stopping the console ends the tail, and with it the reader.
    c.stop().expect("stopped");
    reader.join().expect("tail reader");
}

#[test]
fn a_console_stops_promptly_with_a_tail_open() {
    let f = fixture(20);
    let c = console(&f.path, false);
    let response = agent()
        .get(&format!("{}/api/topics/{RAW_TOPIC}/tail", c.url()))
        .call()
        .expect("tail");
    assert_eq!(response.status().as_u16(), 200);
    let started = Instant::now();
    c.stop().expect("stopped cleanly");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopping took {:?}",
        started.elapsed()
    );
}

#[test]
fn live_tails_are_bounded() {
    let f = fixture(10);
    let c = console(&f.path, false);
    let url = format!("{}/api/topics/{RAW_TOPIC}/tail", c.url());
    let open: Vec<_> = (0..eddy_console::MAX_TAILS)
        .map(|_| {
            let response = agent().get(&url).call().expect("tail");
            assert_eq!(response.status().as_u16(), 200);
            response
        })
        .collect();
    let mut refused = agent().get(&url).call().expect("one more tail");
    assert_eq!(refused.status().as_u16(), 503);
    let body = refused.body_mut().read_to_string().expect("body");
    assert!(body.contains("live tails are open"), "{body}");
    // Pages are still served beside the open tails.
    assert_eq!(get(&c, "/topics").0, 200);
    drop(open);
}
