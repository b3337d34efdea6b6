//! Session log benchmarks: append throughput, and open + verify + replay of a
//! 100k-entry session of realistic traffic (≈ 500 bytes per line).

#![forbid(unsafe_code)]
// Benchmark code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/all/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use session_store::{EntryBody, SessionReader, SessionWriter};

const APPEND_BATCH: usize = 10_000;
const OPEN_ENTRIES: usize = 100_000;

fn append(c: &mut Criterion) {
    let bodies: Vec<EntryBody> = common::Traffic::new(11).take(APPEND_BATCH).collect();
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(APPEND_BATCH as u64));
    group.sample_size(20);
    group.bench_function("realistic_mix_10k", |b| {
        b.iter_batched(
            // Untimed: a fresh session and the bodies to append.
            || {
                let tmp = tempfile::tempdir().unwrap();
                let (writer, _) = SessionWriter::open(tmp.path().join("s")).unwrap();
                (tmp, writer, bodies.clone())
            },
            |(tmp, mut writer, bodies)| {
                for body in bodies {
                    black_box(writer.append(body).unwrap());
                }
                // Dropped after timing.
                (tmp, writer)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// A session of `OPEN_ENTRIES` realistic entries; prints its size.
fn big_session() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (mut writer, _) = SessionWriter::open(&dir).unwrap();
    let mut bytes = 0;
    for body in common::Traffic::new(12).take(OPEN_ENTRIES) {
        bytes += writer.append(body).unwrap().line.len() + 1;
    }
    writer.sync().unwrap();
    println!(
        "session of {OPEN_ENTRIES} entries: {:.1} MB, {} bytes per line on average",
        bytes as f64 / 1e6,
        bytes / OPEN_ENTRIES
    );
    (tmp, dir)
}

fn open_verify_replay(c: &mut Criterion) {
    let (_tmp, dir) = big_session();
    let mut group = c.benchmark_group("open_verify_replay_100k");
    group.throughput(Throughput::Elements(OPEN_ENTRIES as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("writer_open", |b| {
        // Includes dropping the writer (its lock must be released before the next open).
        b.iter(|| {
            let (writer, report) = SessionWriter::open(&dir).unwrap();
            assert_eq!(report.entries, OPEN_ENTRIES);
            black_box(writer.history().len());
        });
    });
    group.bench_function("reader_read_last_into_history", |b| {
        let reader = SessionReader::new(&dir);
        b.iter_with_large_drop(|| {
            let history = reader.read_last().unwrap().into_history();
            black_box(history)
        });
    });
    group.finish();
}

criterion_group!(benches, append, open_verify_replay);
criterion_main!(benches);
