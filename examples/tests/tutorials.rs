//! Both tutorials run as their real programs, as separate processes on one data directory: the
//! sensor pipeline with its producer SIGKILLed and restarted and its processor stopped and
//! restarted, checked against windows computed here over everything produced; and the full
//! reprocessing rewind, checked against per-track geodesic totals computed here from the CSV.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use eddy::{Log, Record};
use eddy_examples::sensor::{format_ts, parse_ts, Aggregated, Reading};
use geographiclib_rs::{Geodesic, InverseGeodesic};

fn program(name: &str) -> PathBuf {
    let demo = PathBuf::from(env!("CARGO_BIN_EXE_demo"));
    let path = demo.with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace (cargo test --release --workspace)",
        path.display()
    );
    path
}

fn command(name: &str, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(program(name));
    c.arg("--data-dir").arg(dir).args(args);
    c
}

/// Runs a program to completion; asserts it succeeded; returns its stdout.
fn run(name: &str, dir: &Path, args: &[&str]) -> String {
    String::from_utf8(run_output(name, dir, args).stdout).unwrap()
}

/// Runs a program to completion; asserts it succeeded; returns what it wrote.
fn run_output(name: &str, dir: &Path, args: &[&str]) -> Output {
    let out: Output = command(name, dir, args).output().unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn spawn(name: &str, dir: &Path, args: &[&str]) -> Child {
    command(name, dir, args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn sigterm(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "stopped cleanly: {exit}");
}

/// (sensor, window end) → (count, min, max, mean).
type Windows = BTreeMap<(String, i64), (u64, f64, f64, f64)>;

/// The closed 10 s windows (1 s grace) of every reading in `raw-temp-data`, computed directly,
/// each sensor's closing by its own readings (the tutorial's closing strategy, "key"), or with
/// `by_partition` by any reading.
fn expected_windows(dir: &Path, by_partition: bool) -> (Windows, usize) {
    let topic = Log::open(dir).unwrap().topic("raw-temp-data").unwrap();
    assert_eq!(topic.partitions(), 1);
    let fetch = topic
        .reader(0)
        .unwrap()
        .read(0, usize::MAX, usize::MAX)
        .unwrap();
    let mut stream_time: BTreeMap<String, i64> = BTreeMap::new();
    let mut sums: BTreeMap<(String, i64), (u64, f64, f64, f64)> = BTreeMap::new();
    for r in fetch.iter() {
        let sensor = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
        let reading: Reading = serde_json::from_slice(r.value.unwrap()).unwrap();
        let ts = parse_ts(&reading.ts).unwrap();
        let end = ts.div_euclid(10_000) * 10_000 + 10_000;
        let v = reading.value as f64;
        let clock = if by_partition { "" } else { sensor.as_str() };
        let time = stream_time.entry(clock.to_owned()).or_insert(i64::MIN);
        if end + 1_000 > *time {
            let w = sums.entry((sensor, end)).or_insert((0, v, v, 0.0));
            *w = (w.0 + 1, w.1.min(v), w.2.max(v), w.3 + v);
        }
        *time = (*time).max(ts);
    }
    let closed = sums
        .into_iter()
        .filter(|((sensor, end), _)| {
            let clock = if by_partition { "" } else { sensor.as_str() };
            end + 1_000 <= stream_time[clock]
        })
        .map(|(k, (n, min, max, sum))| (k, (n, min, max, sum / n as f64)))
        .collect();
    (closed, fetch.len())
}

/// The window results in `agg-temperature` from offset `from` on, and how many there are.
fn produced_windows(dir: &Path, from: u64) -> (Windows, usize) {
    let topic = Log::open(dir).unwrap().topic("agg-temperature").unwrap();
    let fetch = topic
        .reader(0)
        .unwrap()
        .read(from, usize::MAX, usize::MAX)
        .unwrap();
    let mut windows = BTreeMap::new();
    for r in fetch.iter() {
        let sensor = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
        let a: Aggregated = serde_json::from_slice(r.value.unwrap()).unwrap();
        let t = a.temperature;
        windows.insert((sensor, a.time), (t.count, t.min, t.max, t.mean));
    }
    (windows, fetch.len())
}

#[test]
fn sensor_pipeline_survives_a_killed_producer_and_a_restarted_processor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let quiet = ["--fast", "--quiet"];
    let mut processor = spawn("temperature-processor", d, &["--log-level", "warn"]);
    // A producer killed while producing, then one that finishes.
    let mut producer = spawn(
        "temperature-producer",
        d,
        &["--count", "5000000", quiet[0], quiet[1]],
    );
    std::thread::sleep(Duration::from_millis(400));
    assert!(producer.try_wait().unwrap().is_none(), "still producing");
    producer.kill().unwrap();
    producer.wait().unwrap();
    sigterm(&mut processor);
    run(
        "temperature-producer",
        d,
        &["--count", "3000", quiet[0], quiet[1]],
    );
    // The processor restarted, stopped wherever it is, and once more to catch up.
    let mut processor = spawn("temperature-processor", d, &["--log-level", "warn"]);
    std::thread::sleep(Duration::from_millis(300));
    sigterm(&mut processor);
    // One sensor's reading long after the others': by the sensors' own times (the tutorial's
    // closing) it closes only that sensor's windows.
    let raw = Log::open(d).unwrap().topic("raw-temp-data").unwrap();
    let last = raw.reader(0).unwrap().end_offset() - 1;
    let newest = raw.reader(0).unwrap().read(last, 1, 1 << 20).unwrap();
    let newest = newest.iter().map(|r| r.timestamp).max().unwrap();
    let late_reading = Reading {
        ts: format_ts((newest + 60_000) * 1_000),
        value: 50,
    };
    let value = serde_json::to_vec(&late_reading).unwrap();
    raw.append([Record::keyed("Sensor1", value)]).unwrap();
    let until_idle = ["--until-idle", "--log-level", "warn"];
    run("temperature-processor", d, &until_idle);
    let (want, readings) = expected_windows(d, false);
    assert_ne!(
        want,
        expected_windows(d, true).0,
        "the closing strategies differ here"
    );
    let (got, results) = produced_windows(d, 0);
    assert!(readings > 3_000, "{readings} readings");
    assert!(want.len() > 500, "{} windows", want.len());
    assert_eq!(results, got.len(), "no window emitted twice");
    assert_windows_equal(&got, &want);
    // The tutorial's comparison of the two aggregations (docs/tutorials.md): the group rewound
    // (which clears its window state), the built-in aggregations append the same windows.
    run(
        "eddy",
        d,
        &[
            "groups",
            "reset-offsets",
            "temperature_processor",
            "--topic",
            "raw-temp-data",
            "--to-earliest",
            "--execute",
        ],
    );
    let builtin = [&until_idle[..], &["--aggregation", "builtin"]].concat();
    let said = run_output("temperature-processor", d, &builtin).stderr;
    let said = String::from_utf8_lossy(&said);
    assert!(
        said.lines()
            .next()
            .unwrap_or_default()
            .starts_with("closing strategy: key"),
        "the processor says how its windows close: {said}"
    );
    let (again, appended) = produced_windows(d, results as u64);
    assert_eq!(appended, again.len(), "no window emitted twice");
    assert_windows_equal(&again, &want);
    // The console view of the results.
    let shown = run("eddy", d, &["consume", "agg-temperature"]);
    assert_eq!(
        shown.lines().filter(|l| l.contains("temperature")).count(),
        results + appended
    );
}

#[test]
fn the_enricher_joins_each_window_with_its_sensors_metadata() {
    use eddy_examples::enrich::{default_metadata, Enriched};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run("sensor-enricher", d, &["--metadata-only"]);
    run(
        "temperature-producer",
        d,
        &["--count", "3000", "--fast", "--quiet"],
    );
    // Sensor5 moves; readings produced after the new row see it.
    let moved = vec![(
        "Sensor5".to_string(),
        eddy_examples::enrich::Metadata {
            location: "attic".into(),
            unit: "°C".into(),
        },
    )];
    eddy_examples::enrich::write_metadata(d, &moved).unwrap();
    run(
        "temperature-producer",
        d,
        &["--count", "2000", "--fast", "--quiet"],
    );
    run(
        "sensor-enricher",
        d,
        &["--until-idle", "--log-level", "warn"],
    );
    let (want, _) = expected_windows(d, false);
    let topic = Log::open(d)
        .unwrap()
        .topic("agg-temperature-enriched")
        .unwrap();
    let fetch = topic
        .reader(0)
        .unwrap()
        .read(0, usize::MAX, usize::MAX)
        .unwrap();
    let metadata: BTreeMap<String, _> = default_metadata().into_iter().collect();
    let mut got = Windows::new();
    let mut attic = 0;
    for r in fetch.iter() {
        let sensor = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
        let e: Enriched = serde_json::from_slice(r.value.unwrap()).unwrap();
        let t = e.temperature;
        got.insert((sensor.clone(), e.time), (t.count, t.min, t.max, t.mean));
        let m = &metadata[&sensor];
        assert_eq!(e.unit.as_deref(), Some(m.unit.as_str()), "{sensor}");
        match e.location.as_deref() {
            Some("attic") if sensor == "Sensor5" => attic += 1,
            other => assert_eq!(other, Some(m.location.as_str()), "{sensor}"),
        }
    }
    assert!(
        attic > 10,
        "the moved sensor's later windows say so: {attic}"
    );
    assert!(want.len() > 300, "{} windows", want.len());
    assert_windows_equal(&got, &want);
}

fn assert_windows_equal(got: &Windows, want: &Windows) {
    assert_eq!(got.len(), want.len(), "no window missing");
    for (key, (n, min, max, mean)) in want {
        let g = got.get(key).unwrap_or_else(|| panic!("{key:?} missing"));
        assert_eq!((g.0, g.1, g.2), (*n, *min, *max), "{key:?}");
        assert!(
            (g.3 - mean).abs() <= 1e-9 * mean.abs().max(1.0),
            "{key:?} mean"
        );
    }
}

/// Per track, the geodesic total in metres over the CSV's rows in file order, read here with a
/// plain split (independently of the programs' CSV reader).
fn geodesic_totals(csv: &Path) -> BTreeMap<i64, f64> {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut last: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    let mut totals = BTreeMap::new();
    let wgs84 = Geodesic::wgs84();
    for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let (lat, lon): (f64, f64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        let track: i64 = f[3].parse().unwrap();
        let total = totals.entry(track).or_insert(0.0);
        if let Some((lat0, lon0)) = last.insert(track, (lat, lon)) {
            let meters: f64 = wgs84.inverse(lat0, lon0, lat, lon);
            *total += meters;
        }
    }
    totals
}

/// `CURRENT-OFFSET`, `LOG-END-OFFSET`, `LAG` and `CONSUMER-ID` of `raw-trackpoints` in
/// `eddy groups describe`.
fn describe(dir: &Path) -> (String, String, String, String) {
    let out = run(
        "eddy",
        dir,
        &["groups", "describe", "--group", "distance_calculator"],
    );
    let row: Vec<String> = out
        .lines()
        .find(|l| l.starts_with("distance_calculator"))
        .unwrap_or_else(|| panic!("no row in {out}"))
        .split_whitespace()
        .map(str::to_string)
        .collect();
    (
        row[3].clone(),
        row[4].clone(),
        row[5].clone(),
        row[6].clone(),
    )
}

fn db_rows(dir: &Path) -> BTreeMap<i64, f64> {
    let db = rusqlite::Connection::open(dir.join("distance-stats.db")).unwrap();
    let mut q = db
        .prepare("SELECT track_id, distance FROM dist_calc")
        .unwrap();
    let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

fn assert_close(got: &BTreeMap<i64, f64>, want_meters: &BTreeMap<i64, f64>, per_unit: f64) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want_meters.keys().collect::<Vec<_>>()
    );
    for (track, meters) in want_meters {
        let want = meters / per_unit;
        let g = got[track];
        assert!(
            (g - want).abs() <= 1e-9 * want.abs() + 1e-12,
            "track {track}: {g} vs {want}"
        );
    }
}

fn rewind_flow(csv: &Path, reset: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv_arg = csv.to_str().unwrap();
    let totals = geodesic_totals(csv);
    let idle = ["--until-idle", "--log-level", "warn"];
    run("gps-produce", d, &["--csv", csv_arg]);
    run(
        "gps-distance",
        d,
        &["--unit", "miles", idle[0], idle[1], idle[2]],
    );
    run("gps-db-writer", d, &idle);
    assert_close(&db_rows(d), &totals, 1_609.344);
    let table = run("gps-query", d, &[]);
    assert_eq!(
        table.lines().filter(|l| l.starts_with("│ ")).count(),
        totals.len() + 2
    );
    let (current, end, lag, _) = describe(d);
    assert_eq!((current.as_str(), lag.as_str()), (end.as_str(), "0"));
    // Resetting while the calculator runs is refused.
    let mut running = spawn("gps-distance", d, &["--unit", "km"]);
    let mut waited = 0;
    while describe(d).3 == "-" {
        assert!(waited < 100, "the calculator never joined its group");
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    let mut args = vec!["groups", "reset-offsets", "--group", "distance_calculator"];
    args.extend(["--topic", "raw-trackpoints"]);
    args.extend(reset);
    let refused = command("eddy", d, &args).output().unwrap();
    assert!(
        !refused.status.success(),
        "a reset while the group is active is refused"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("live member"));
    sigterm(&mut running);
    // It was stopped before it could read anything new: still at the end.
    assert_eq!(describe(d).0, end);
    let mut args = vec!["groups", "reset-offsets", "--group", "distance_calculator"];
    args.extend(["--topic", "raw-trackpoints"]);
    args.extend(reset);
    run("eddy", d, &args);
    let (current, end_now, lag, _) = describe(d);
    assert_eq!((current.as_str(), lag.as_str()), ("0", end.as_str()));
    assert_eq!(end_now, end);
    run(
        "gps-distance",
        d,
        &["--unit", "km", idle[0], idle[1], idle[2]],
    );
    run("gps-db-writer", d, &idle);
    assert_close(&db_rows(d), &totals, 1_000.0);
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

#[test]
fn rewind_turns_every_row_into_kilometres_small_file() {
    rewind_flow(
        &data("go_track_trackspoints_sm.csv"),
        &["--to-earliest", "--execute"],
    );
}

#[test]
fn rewind_turns_every_row_into_kilometres_full_file() {
    let csv = data("go_track_trackspoints.csv");
    assert_eq!(geodesic_totals(&csv).len(), 163);
    rewind_flow(&csv, &["--to-offset", "0", "--execute"]);
}
