//! `eddy consume TOPIC`: prints records from the beginning, an offset or a time, once or
//! following new appends.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Args;

use super::output::{write_record, Output};
use super::time::parse_timestamp_ms;
use super::CliError;
use crate::{
    AutoOffsetReset, Consumer, ConsumerConfig, GroupError, Isolation, Log, LogError,
    PartitionReader, Topic,
};

#[derive(Args)]
pub(crate) struct ConsumeArgs {
    /// Topic to read (or --topic).
    #[arg(required_unless_present = "topic_flag")]
    topic: Option<String>,
    /// Topic to read.
    #[arg(long = "topic", conflicts_with = "topic")]
    topic_flag: Option<String>,
    /// Read only this partition (default: all).
    #[arg(long, short = 'p', conflicts_with = "group")]
    partition: Option<u32>,
    /// Consume as a member of this consumer group: share the partitions with its other members,
    /// start at the group's committed offsets, and commit after printing each batch.
    #[arg(long, short = 'g', conflicts_with_all = ["offset", "from_timestamp"])]
    group: Option<String>,
    /// Start at the log start of each partition (the default).
    #[arg(long, conflicts_with_all = ["offset", "from_timestamp", "from_end"])]
    from_beginning: bool,
    /// Start at this offset (in each selected partition).
    #[arg(long, short = 'o', conflicts_with_all = ["from_timestamp", "from_end"])]
    offset: Option<u64>,
    /// Start at the first record at or after this time: ms since the epoch, RFC 3339, or a local
    /// date-time like 2014-09-13T07:24:00.
    #[arg(long, conflicts_with = "from_end")]
    from_timestamp: Option<String>,
    /// Start at the end: print only records appended from now on (with --follow).
    #[arg(long)]
    from_end: bool,
    /// Keep waiting for new records (and for the topic, if it does not exist yet) instead of
    /// stopping at the end of the log.
    #[arg(long)]
    follow: bool,
    /// Stop after this many records.
    #[arg(long, visible_alias = "max-messages", short = 'n')]
    max_records: Option<u64>,
    /// Output: plain (the value; with --print-key, key TAB value), json (one object per
    /// record), or a format string such as '%k %v %T\n' (%t topic, %p partition, %o offset,
    /// %T timestamp, %k key, %K key length, %v value, %V value length, %h headers, %% percent;
    /// escapes \n \t \r \\).
    #[arg(long, short = 'f', default_value = "plain")]
    format: Output,
    /// With plain output, print the key and a tab before the value.
    #[arg(long)]
    print_key: bool,
    /// Most records read per poll (with --group, one commit per poll).
    #[arg(long, default_value_t = 10_000)]
    poll_records: usize,
    /// With --group: a member that does not poll for this long (stopped, or stuck writing to a
    /// blocked pipe) loses its partitions to the other members (Kafka's max.poll.interval.ms).
    #[arg(long, default_value_t = 300_000, value_name = "MS")]
    max_poll_interval_ms: u64,
    /// Which records to print: `read-uncommitted` (every one, as Kafka's console consumer) or
    /// `read-committed` (only those of committed transactions, up to the last stable offset).
    #[arg(long, value_enum, default_value = "read-uncommitted")]
    isolation: IsolationArg,
}

/// `--isolation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum IsolationArg {
    ReadUncommitted,
    ReadCommitted,
}

impl From<IsolationArg> for Isolation {
    fn from(a: IsolationArg) -> Isolation {
        match a {
            IsolationArg::ReadUncommitted => Isolation::ReadUncommitted,
            IsolationArg::ReadCommitted => Isolation::ReadCommitted,
        }
    }
}

impl ConsumeArgs {
    /// The topic, given as an argument or with --topic.
    fn topic(&self) -> &str {
        self.topic
            .as_deref()
            .or(self.topic_flag.as_deref())
            .unwrap_or_default()
    }

    /// Whether this command only reads (a group member commits offsets).
    pub(crate) fn read_only(&self) -> bool {
        self.group.is_none()
    }
}

struct Source {
    reader: PartitionReader,
    next: u64,
}

pub(crate) fn run(log: &Log, args: ConsumeArgs) -> Result<(), CliError> {
    if let Some(group) = &args.group {
        return run_group(log, &args, group);
    }
    let topic = open_topic(log, &args)?;
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
        reader.set_isolation(args.isolation.into());
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
                write_record(
                    &mut out,
                    &args.format,
                    args.print_key,
                    topic.name(),
                    src.reader.partition(),
                    &r,
                )?;
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

/// The topic to read; with --follow, waits for a topic that does not exist yet.
fn open_topic(log: &Log, args: &ConsumeArgs) -> Result<Topic, CliError> {
    let mut announced = false;
    loop {
        match log.topic(args.topic()) {
            Err(LogError::TopicNotFound { .. }) if args.follow => {
                if !announced {
                    eprintln!(
                        "eddy: topic {:?} does not exist yet in {}; waiting for it",
                        args.topic(),
                        log.dir().display()
                    );
                    announced = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return Ok(other?),
        }
    }
}

/// `consume --group`: a group member that prints each polled batch, flushes it, then commits.
fn run_group(log: &Log, args: &ConsumeArgs, group: &str) -> Result<(), CliError> {
    let mut config = ConsumerConfig::new(group);
    config.max_poll_records = args.poll_records.max(1);
    config.max_poll_interval = Some(Duration::from_millis(args.max_poll_interval_ms.max(1)));
    config.isolation = args.isolation.into();
    config.auto_offset_reset = if args.from_end {
        AutoOffsetReset::Latest
    } else {
        AutoOffsetReset::Earliest
    };
    // Everything printed is committed right away; what was polled but not printed (past
    // --max-records) must not be committed when the member leaves.
    config.commit_on_revoke = false;
    let topic = open_topic(log, args)?;
    let mut consumer = Consumer::new(log, config)?;
    consumer.subscribe(&[topic.name()])?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let limit = args.max_records.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    while printed < limit {
        let batches = match consumer.poll(Duration::from_millis(100)) {
            Err(e @ GroupError::PollIntervalExceeded { .. }) => {
                eprintln!("warning: {e}");
                continue;
            }
            other => other?,
        };
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
                write_record(
                    &mut out,
                    &args.format,
                    args.print_key,
                    &b.topic,
                    b.partition,
                    &r,
                )?;
                printed += 1;
                next = Some(r.offset + 1);
            }
            if let Some(n) = next {
                commits.push((b.topic.clone(), b.partition, n));
            }
        }
        // Printed (and flushed) before committed: a crash in between prints again, never skips.
        out.flush()?;
        match consumer.commit_offsets(&commits) {
            Err(e @ GroupError::PollIntervalExceeded { .. }) => eprintln!("warning: {e}"),
            other => other?,
        }
    }
    out.flush()?;
    consumer.close()?;
    Ok(())
}
