//! Criterion benchmarks of the log: appending batches of 100-byte records (durability none) and
//! reading them back. Run with `cargo bench -p eddy-benches --bench log`.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use eddy::{Durability, Log, TopicConfig};
use eddy_benches::records;

/// Segments of 64 MiB, at most about 256 MiB kept: the append benches run for seconds and would
/// otherwise fill the disk.
fn config() -> TopicConfig {
    let mut c = TopicConfig::with_partitions(1);
    c.durability = Durability::None;
    c.segment_bytes = 64 << 20;
    c.retention_bytes = Some(192 << 20);
    c
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    for (size, per_append) in [(100usize, 1000usize), (1024, 100)] {
        let batch = records(per_append, size);
        group.throughput(Throughput::Elements(per_append as u64));
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        let topic = log.create_topic("bench", config()).unwrap();
        let w = topic.writer(0).unwrap();
        group.bench_function(format!("{size}b_x{per_append}"), |b| {
            b.iter(|| w.append(&batch).unwrap());
        });
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log.create_topic("bench", config()).unwrap();
    let w = topic.writer(0).unwrap();
    let batch = records(1000, 100);
    for _ in 0..100 {
        w.append(&batch).unwrap();
    }
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("100b_x10000_sequential", |b| {
        let mut reader = topic.reader(0).unwrap();
        let mut next = 0;
        b.iter(|| {
            if next >= 90_000 {
                next = 0;
            }
            let f = reader.read(next, 10_000, 4 << 20).unwrap();
            next = f.next_offset();
            f.iter().filter(|r| r.value.is_some()).count()
        });
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("100b_x100_random_seek", |b| {
        let mut reader = topic.reader(0).unwrap();
        let mut x = 12345u64;
        b.iter_batched(
            || {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 33) % 99_000
            },
            |from| reader.read(from, 100, 1 << 20).unwrap().len(),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = append, read
}
criterion_main!(benches);
