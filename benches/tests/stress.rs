//! A CI-sized run of the `stress` harness per window kind and closing strategy: 20 SIGKILL
//! cycles, state deleted or corrupted between cycles for some of them; every window must match
//! the golden run's.
#![allow(missing_docs, clippy::unwrap_used)]

use std::process::Command;

/// Runs `stress` with `args` and returns its summary fields.
fn stress(args: &[&str]) -> std::collections::BTreeMap<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_stress"))
        .args(["--events", "30000", "--keys", "25", "--cycles", "20"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stress {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("name=stress"))
        .unwrap();
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn every_window_kind_survives_twenty_kill_cycles_closing_by_key_and_by_partition() {
    for (kind, damage, closing) in [
        ("tumbling", "none", "key"),
        ("tumbling", "corrupt", "partition"),
        ("hopping", "delete", "key"),
        ("hopping", "none", "partition"),
        ("sliding", "corrupt", "key"),
        ("sliding", "delete", "partition"),
        ("session", "none", "key"),
        ("session", "delete", "partition"),
    ] {
        let args = ["--window", kind, "--damage", damage, "--closing", closing];
        let s = stress(&args);
        let n = |k: &str| s[k].parse::<u64>().unwrap();
        let kind = format!("{kind} by {closing}");
        assert_eq!((n("missing"), n("differing")), (0, 0), "{kind}: {s:?}");
        assert_eq!(n("cycles"), 20);
        assert!(
            n("killed") >= 10,
            "{kind}: only {} of 20 cycles killed",
            n("killed")
        );
        assert!(n("windows_expected") > 1_000, "{kind}: {s:?}");
    }
}

#[test]
fn under_exactly_once_no_window_is_missing_differing_or_repeated() {
    for (kind, damage) in [
        ("tumbling", "none"),
        ("hopping", "delete"),
        ("sliding", "none"),
        ("session", "corrupt"),
    ] {
        let args = [
            "--window",
            kind,
            "--damage",
            damage,
            "--guarantee",
            "exactly-once",
        ];
        let s = stress(&args);
        let n = |k: &str| s[k].parse::<u64>().unwrap();
        let found = (n("missing"), n("differing"), n("duplicated"));
        assert_eq!(found, (0, 0, 0), "{kind}: {s:?}");
        // What a committed reader tailing the output during the kills saw: each window once.
        assert_eq!(n("live_duplicated"), 0, "{kind}: {s:?}");
        assert_eq!(n("live_windows"), n("windows_expected"), "{kind}: {s:?}");
        assert!(n("killed") >= 10, "{kind}: {s:?}");
        assert!(n("windows_expected") > 1_000, "{kind}: {s:?}");
    }
}
