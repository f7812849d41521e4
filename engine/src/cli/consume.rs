//! `eddy consume TOPIC`: prints records from the beginning, an offset or a time, once or
//! following new appends.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use super::time::parse_timestamp_ms;
use super::CliError;
use crate::{AutoOffsetReset, Consumer, ConsumerConfig, Log, PartitionReader, RecordView};

/// How records are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// The value as text (with --print-key: key, tab, value).
    Plain,
    /// One JSON object per record: partition, offset, timestamp, key, value, headers.
    Json,
}

#[derive(Args)]
pub(crate) struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    /// Read only this partition (default: all).
    #[arg(long, conflicts_with = "group")]
    partition: Option<u32>,
    /// Consume as a member of this consumer group: share the partitions with its other members,
    /// start at the group's committed offsets, and commit after printing each batch.
    #[arg(long, conflicts_with_all = ["offset", "from_timestamp"])]
    group: Option<String>,
    /// Start at the log start of each partition (the default).
    #[arg(long, conflicts_with_all = ["offset", "from_timestamp", "from_end"])]
    from_beginning: bool,
    /// Start at this offset (in each selected partition).
    #[arg(long, conflicts_with_all = ["from_timestamp", "from_end"])]
    offset: Option<u64>,
    /// Start at the first record at or after this time: ms since the epoch, RFC 3339, or a local
    /// date-time like 2014-09-13T07:24:00.
    #[arg(long, conflicts_with = "from_end")]
    from_timestamp: Option<String>,
    /// Start at the end: print only records appended from now on (with --follow).
    #[arg(long)]
    from_end: bool,
    /// Keep waiting for new records instead of stopping at the end of the log.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Stop after this many records.
    #[arg(long)]
    max_records: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Plain)]
    format: Output,
    /// With plain output, print the key and a tab before the value.
    #[arg(long)]
    print_key: bool,
    /// Most records read per poll (with --group, one commit per poll).
    #[arg(long, default_value_t = 10_000)]
    poll_records: usize,
}

struct Source {
    reader: PartitionReader,
    next: u64,
}

pub(crate) fn run(log: &Log, args: ConsumeArgs) -> Result<(), CliError> {
    if let Some(group) = &args.group {
        return run_group(log, &args, group);
    }
    let topic = log.topic(&args.topic)?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) => vec![p],
        None => (0..topic.partitions()).collect(),
    };
    let start_ts = args
        .from_timestamp
        .as_deref()
        .map(parse_timestamp_ms)
        .transpose()
        .map_err(CliError::Input)?;
    let mut sources = Vec::with_capacity(partitions.len());
    for p in partitions {
        let mut reader = topic.reader(p)?;
        let next = if let Some(o) = args.offset {
            o
        } else if let Some(ts) = start_ts {
            match reader.offset_for_timestamp(ts)? {
                Some(o) => o,
                None => reader.end_offset(),
            }
        } else if args.from_end {
            reader.end_offset()
        } else {
            reader.log_start_offset()?
        };
        sources.push(Source { reader, next });
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut printed = 0u64;
    let limit = args.max_records.unwrap_or(u64::MAX);
    let mut idle_since: Option<Instant> = None;
    loop {
        let mut any = false;
        for src in &mut sources {
            if printed >= limit {
                break;
            }
            let room = usize::try_from(limit - printed)
                .unwrap_or(usize::MAX)
                .min(args.poll_records.max(1));
            let fetch = src.reader.read(src.next, room, 1 << 20)?;
            for r in fetch.iter() {
                print_record(&mut out, &args, src.reader.partition(), &r)?;
            }
            printed += fetch.len() as u64;
            any |= !fetch.is_empty();
            src.next = fetch.next_offset();
        }
        if printed >= limit {
            break;
        }
        if !any {
            if !args.follow {
                break;
            }
            out.flush()?;
            // Poll the published tails: quickly at first, then at most every 50 ms.
            let idle = idle_since.get_or_insert_with(Instant::now).elapsed();
            std::thread::sleep(if idle < Duration::from_millis(100) {
                Duration::from_millis(2)
            } else {
                Duration::from_millis(50)
            });
        } else {
            idle_since = None;
        }
    }
    out.flush()?;
    Ok(())
}

fn text_or_hex(bytes: Option<&[u8]>) -> serde_json::Value {
    match bytes {
        None => serde_json::Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => serde_json::Value::String(s.to_owned()),
            Err(_) => {
                serde_json::json!({ "hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>() })
            }
        },
    }
}

fn print_record(
    out: &mut impl Write,
    args: &ConsumeArgs,
    partition: u32,
    r: &RecordView<'_>,
) -> std::io::Result<()> {
    match args.format {
        Output::Plain => {
            if args.print_key {
                out.write_all(r.key.unwrap_or_default())?;
                out.write_all(b"\t")?;
            }
            out.write_all(r.value.unwrap_or(b"null"))?;
            out.write_all(b"\n")
        }
        Output::Json => {
            let headers: serde_json::Map<String, serde_json::Value> = r
                .headers()
                .map(|(k, v)| (k.to_owned(), text_or_hex(v)))
                .collect();
            let doc = serde_json::json!({
                "partition": partition,
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": text_or_hex(r.key),
                "value": text_or_hex(r.value),
                "headers": headers,
            });
            writeln!(out, "{doc}")
        }
    }
}

/// `consume --group`: a group member that prints each polled batch, flushes it, then commits.
fn run_group(log: &Log, args: &ConsumeArgs, group: &str) -> Result<(), CliError> {
    let mut config = ConsumerConfig::new(group);
    config.max_poll_records = args.poll_records.max(1);
    config.auto_offset_reset = if args.from_end {
        AutoOffsetReset::Latest
    } else {
        AutoOffsetReset::Earliest
    };
    // Everything printed is committed right away; what was polled but not printed (past
    // --max-records) must not be committed when the member leaves.
    config.commit_on_revoke = false;
    let mut consumer = Consumer::new(log, config)?;
    consumer.subscribe(&[args.topic.as_str()])?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let limit = args.max_records.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    while printed < limit {
        let batches = consumer.poll(Duration::from_millis(100))?;
        if batches.is_empty() {
            if !args.follow && consumer.caught_up()? {
                break;
            }
            continue;
        }
        let mut commits = Vec::new();
        for b in &batches {
            let mut next = None;
            for r in b.records.iter() {
                if printed >= limit {
                    break;
                }
                print_record(&mut out, args, b.partition, &r)?;
                printed += 1;
                next = Some(r.offset + 1);
            }
            if let Some(n) = next {
                commits.push((b.topic.clone(), b.partition, n));
            }
        }
        // Printed (and flushed) before committed: a crash in between prints again, never skips.
        out.flush()?;
        consumer.commit_offsets(&commits)?;
    }
    out.flush()?;
    consumer.close()?;
    Ok(())
}
