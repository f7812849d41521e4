//! `eddy produce TOPIC`: one record per line of standard input. Lines are appended in batches of
//! whatever has arrived (up to `--batch`), so a pipe is fast and an interactive line is appended
//! at once.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::{mpsc, Arc};

use clap::Args;

use super::CliError;
use crate::{Header, Log, PartitionWriter, Record, Topic};

#[derive(Args)]
pub(crate) struct ProduceArgs {
    /// Topic to append to.
    topic: String,
    /// Append every record to this partition instead of partitioning by key.
    #[arg(long)]
    partition: Option<u32>,
    /// Read `key<SEP>value` lines (separator set by --key-separator).
    #[arg(long)]
    parse_key: bool,
    /// Separator between key and value with --parse-key.
    #[arg(long, default_value = "\t")]
    key_separator: String,
    /// Read JSON lines: {"key": ..., "value": ..., "timestamp": ms, "headers": {"k": "v"},
    /// "partition": n}; every field optional; a non-string value is stored as its JSON text;
    /// "value": null is a tombstone.
    #[arg(long, conflicts_with = "parse_key")]
    json: bool,
    /// Most lines per append.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Print `partition offset` for every record once its append has returned.
    #[arg(long)]
    print_offsets: bool,
}

struct Parsed {
    record: Record,
    partition: Option<u32>,
}

fn parse_line(args: &ProduceArgs, line: &str, number: usize) -> Result<Parsed, CliError> {
    if args.json {
        return parse_json(line).map_err(|e| CliError::Input(format!("line {number}: {e}")));
    }
    let record = match line
        .split_once(args.key_separator.as_str())
        .filter(|_| args.parse_key)
    {
        Some((k, v)) => Record::keyed(k, v),
        None if args.parse_key => {
            return Err(CliError::Input(format!(
                "line {number}: no key separator {:?} in {line:?}",
                args.key_separator
            )))
        }
        None => Record::value(line),
    };
    Ok(Parsed {
        record,
        partition: None,
    })
}

fn parse_json(line: &str) -> Result<Parsed, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("expected a JSON object")?;
    let bytes = |v: &serde_json::Value| match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone().into_bytes()),
        other => Some(other.to_string().into_bytes()),
    };
    let mut record = Record {
        key: obj.get("key").and_then(bytes),
        value: obj.get("value").and_then(bytes),
        ..Record::default()
    };
    if let Some(ts) = obj.get("timestamp") {
        record.timestamp = Some(ts.as_i64().ok_or("\"timestamp\" must be an integer (ms)")?);
    }
    if let Some(h) = obj.get("headers") {
        let h = h.as_object().ok_or("\"headers\" must be an object")?;
        record.headers = h
            .iter()
            .map(|(k, v)| Header {
                key: k.clone(),
                value: bytes(v),
            })
            .collect();
    }
    let partition = match obj.get("partition") {
        None => None,
        Some(p) => Some(
            p.as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .ok_or("\"partition\" must be a non-negative integer")?,
        ),
    };
    Ok(Parsed { record, partition })
}

/// The run's appender of partition `p`, opened on first use.
fn appender<'a>(
    writers: &'a mut HashMap<u32, Arc<PartitionWriter>>,
    topic: &Topic,
    p: u32,
) -> Result<&'a PartitionWriter, CliError> {
    Ok(match writers.entry(p) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => e.insert(topic.writer(p)?),
    })
}

pub(crate) fn run(log: &Log, args: ProduceArgs) -> Result<(), CliError> {
    let topic = log.topic(&args.topic)?;
    let (tx, rx) = mpsc::sync_channel::<std::io::Result<String>>(args.batch.max(1) * 2);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut out = std::io::stdout().lock();
    // One appender per partition for the whole run: the lock is taken and recovery runs once.
    let mut writers: HashMap<u32, Arc<PartitionWriter>> = HashMap::new();
    let mut number = 0usize;
    let mut pending: Vec<Parsed> = Vec::new();
    // A bad line stops the run after the good lines before it are appended.
    let mut failed: Option<CliError> = None;
    while let Some(first) = failed.is_none().then(|| rx.recv().ok()).flatten() {
        pending.clear();
        let mut next = Some(first);
        while let Some(line) = next.take() {
            let parsed = line
                .map_err(|e| CliError::Input(format!("reading standard input: {e}")))
                .and_then(|line| {
                    number += 1;
                    parse_line(&args, &line, number)
                });
            match parsed {
                Ok(p) => pending.push(p),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            if pending.len() < args.batch {
                next = rx.try_recv().ok();
            }
        }
        let explicit = args.partition.or(pending.first().and_then(|p| p.partition));
        let uniform = pending
            .iter()
            .all(|p| p.partition.or(args.partition) == explicit);
        let placed: Vec<(u32, u64)> = match explicit {
            Some(p) if uniform => {
                let records: Vec<Record> = pending.drain(..).map(|p| p.record).collect();
                let a = appender(&mut writers, &topic, p)?.append(&records)?;
                (0..a.count).map(|i| (p, a.base_offset + i)).collect()
            }
            _ if pending.iter().all(|p| p.partition.is_none()) && args.partition.is_none() => {
                topic.append(pending.drain(..).map(|p| p.record))?
            }
            _ => {
                let mut placed = Vec::with_capacity(pending.len());
                for p in pending.drain(..) {
                    let part = p
                        .partition
                        .or(args.partition)
                        .unwrap_or_else(|| topic.partition_for(p.record.key.as_deref()));
                    let a = appender(&mut writers, &topic, part)?
                        .append(std::slice::from_ref(&p.record))?;
                    placed.push((part, a.base_offset));
                }
                placed
            }
        };
        if args.print_offsets {
            for (p, o) in placed {
                writeln!(out, "{p} {o}")?;
            }
            out.flush()?;
        }
    }
    failed.map_or(Ok(()), Err)
}
