//! Helpers shared by the integration tests.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use eddy::{Groups, Log, PartitionReader, Record, Topic, TopicConfig};
use std::io::Write;
use std::process::{Command, Stdio};

/// The `eddy` binary with `EDDY_DATA_DIR` set to `dir`.
pub fn eddy(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eddy"));
    c.env("EDDY_DATA_DIR", dir);
    c
}

/// Runs the binary with `stdin` fed in and returns its output.
pub fn run(dir: &std::path::Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = eddy(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs the binary, asserts success and returns its stdout.
pub fn run_ok(dir: &std::path::Path, args: &[&str], stdin: &str) -> String {
    let out = run(dir, args, stdin.as_bytes());
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A config with small segments so that tests cross segment boundaries.
pub fn small_segments(partitions: u32, segment_bytes: u64) -> TopicConfig {
    let mut c = TopicConfig::with_partitions(partitions);
    c.segment_bytes = segment_bytes;
    c.index_interval_bytes = 256;
    c.durability = eddy::Durability::None;
    c
}

pub fn record(i: u64) -> Record {
    Record::keyed(format!("key-{}", i % 17), format!("value-{i:08}"))
        .at(1_000_000 + i as i64 * 10)
        .with_header("i", i.to_string())
}

/// Every record of a partition from `from`, read in small fetches.
pub fn read_all(reader: &mut PartitionReader, from: u64) -> Vec<(u64, Record)> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let fetch = reader.read(next, 37, 4096).unwrap();
        if fetch.is_empty() {
            return out;
        }
        for r in fetch.iter() {
            out.push((r.offset, r.to_record()));
        }
        next = fetch.next_offset();
    }
}

pub fn topic_with(dir: &std::path::Path, name: &str, config: TopicConfig) -> (Log, Topic) {
    let log = Log::open(dir).unwrap();
    let topic = log.create_topic(name, config).unwrap();
    (log, topic)
}

pub fn segment_files(
    dir: &std::path::Path,
    topic: &str,
    partition: u32,
    ext: &str,
) -> Vec<std::path::PathBuf> {
    let pdir = dir.join("topics").join(topic).join(partition.to_string());
    let mut v: Vec<_> = std::fs::read_dir(pdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// A tmpfs of a fixed size mounted on a fresh directory, unmounted on drop: a disk that fills up.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a `bytes`-sized tmpfs. Fails the test where it cannot (the tests run as root, in
    /// CI too); a machine without root skips by setting `EDDY_SKIP_MOUNT_TESTS=1`.
    pub fn mount(bytes: u64) -> Option<SmallDisk> {
        if std::env::var_os("EDDY_SKIP_MOUNT_TESTS").is_some() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes}"))
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs (run the tests as root, or set EDDY_SKIP_MOUNT_TESTS=1): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(SmallDisk { dir })
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fills the disk with a file, leaving about `leave` bytes free; returns the file's path.
    pub fn fill_leaving(&self, leave: u64) -> std::path::PathBuf {
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![7u8; 4096];
        while self.free_bytes() > leave + 4096 {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        f.sync_all().unwrap();
        path
    }

    pub fn free_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.path())
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Sends signal `name` (`-STOP`, `-CONT`, ...) to `child`.
pub fn signal(child: &std::process::Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {name}");
}

/// The members owning partitions of `group` now.
pub fn owners(log: &Log, group: &str) -> std::collections::BTreeSet<String> {
    Groups::new(log)
        .describe(group)
        .map(|d| {
            d.partitions
                .into_iter()
                .filter_map(|p| p.consumer_id)
                .collect()
        })
        .unwrap_or_default()
}
