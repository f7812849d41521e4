//! The README's Rust snippets are the ones compiled (and run here) in `readme-snippets`:
//! every line of every ```rust block of the README appears there, in order and together.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

fn rust_blocks(markdown: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```rust") => current = Some(Vec::new()),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(block), l) if !l.is_empty() => block.push(l.to_owned()),
            _ => {}
        }
    }
    blocks
}

#[test]
fn every_readme_snippet_is_compiled_and_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../README.md")).unwrap();
    let program = std::fs::read_to_string(root.join("src/bin/readme-snippets.rs")).unwrap();
    let program: Vec<&str> = program
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty())
        .collect();
    let blocks = rust_blocks(&readme);
    assert!(
        blocks.len() >= 2,
        "the README has {} Rust blocks",
        blocks.len()
    );
    for block in &blocks {
        let found = program
            .windows(block.len())
            .any(|w| w.iter().zip(block).all(|(a, b)| a == b));
        assert!(
            found,
            "README snippet not in src/bin/readme-snippets.rs:\n{}",
            block.join("\n")
        );
    }
}

#[test]
fn the_readme_program_runs() {
    let readme = env!("CARGO_BIN_EXE_readme-snippets");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(readme).arg(dir.path()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("0 Some("), "{stdout}");
    let log = eddy::Log::open(dir.path().join("eddy-data")).unwrap();
    let counts = log.topic("counts").unwrap();
    let total: u64 = (0..counts.partitions())
        .map(|p| counts.reader(p).unwrap().end_offset())
        .sum();
    assert_eq!(total, 1, "one reading counted once");
}
