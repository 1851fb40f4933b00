//! Library append throughput: one and several producers, `EveryBatch` and
//! `Never`, single-event and batched appends; and the per-event hot path
//! (validate + encode + frame + CRC, and the chain hash over a block), and
//! the command line's ingest path: a JSONL line parsed, checked, encoded;
//! and the writer's hand-over of pre-hashed blocks to the Merkle tree.

use std::time::Duration;

use auditlog::{Config, Durability, EncodedBatch, Event, Log};
use auditlog_loadrun::workload::WorkloadSpec;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// What `auditlog serve` does per event with a socket client's frames
/// (`EncodedBatch::from_frames`), 1,000 events of the load run's workload,
/// beside the client's (and the embedded producer's) encode: the frame
/// check, then the body read owned (before) or in place (now), the
/// contract's rules, and the JSON texts checked again.
fn server_check(c: &mut Criterion) {
    use auditlog::event::json::{check_incoming, check_incoming_ref, validate_event, validate_ref};
    use auditlog::internals::codec::{decode_event, decode_event_ref};
    use auditlog::internals::frame::read_frame;
    use criterion::BatchSize;
    let evs = events(200);
    let evs = &evs[..1_000.min(evs.len())];
    let frames = EncodedBatch::encode(evs).expect("encode").frames().to_vec();
    let each = |f: &mut dyn FnMut(&[u8])| {
        let mut off = 0;
        while off < frames.len() {
            let fr = read_frame(&frames[off..]).expect("frame");
            f(fr.payload);
            off += fr.size;
        }
    };
    let mut g = c.benchmark_group("server_check");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(2));
    g.bench_function("client_encode", |b| {
        b.iter(|| EncodedBatch::encode(evs).expect("encode"))
    });
    g.bench_function("owned_rules_only", |b| {
        b.iter(|| each(&mut |p| validate_event(&decode_event(p).unwrap()).unwrap()))
    });
    g.bench_function("owned_rules_json", |b| {
        b.iter(|| each(&mut |p| check_incoming(&decode_event(p).unwrap()).unwrap()))
    });
    g.bench_function("in_place_rules_only", |b| {
        b.iter(|| each(&mut |p| validate_ref(&decode_event_ref(p).unwrap()).unwrap()))
    });
    g.bench_function("in_place_rules_json", |b| {
        b.iter(|| each(&mut |p| check_incoming_ref(&decode_event_ref(p).unwrap()).unwrap()))
    });
    g.bench_function("from_frames", |b| {
        b.iter_batched(
            || frames.clone(),
            |f| EncodedBatch::from_frames(f, None, |_, _| false, |_, _| Ok(false)).unwrap(),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn events(n: u64) -> Vec<Event> {
    let spec = WorkloadSpec {
        runs: n,
        ..WorkloadSpec::default()
    };
    spec.events(0, n).collect()
}

fn append(c: &mut Criterion) {
    let evs = events(2_000);
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    for (name, durability) in [
        ("every_batch", Durability::EveryBatch),
        ("never", Durability::Never),
    ] {
        for producers in [1usize, 4] {
            for batch in [1usize, 100] {
                let id = BenchmarkId::new(name, format!("{producers}p_batch{batch}"));
                let dir = tempfile::tempdir().expect("tempdir");
                let mut cfg = Config::new(dir.path().join("log"));
                cfg.durability = durability;
                let log = Log::open(cfg).expect("open");
                g.bench_function(id, |b| {
                    b.iter(|| {
                        std::thread::scope(|s| {
                            for share in evs.chunks(evs.len().div_ceil(producers)) {
                                let log = &log;
                                s.spawn(move || {
                                    let mut last = None;
                                    for chunk in share.chunks(batch) {
                                        last = Some(log.append_batch(chunk).expect("append"));
                                    }
                                    if let Some(r) = last {
                                        r.wait().expect("durable");
                                    }
                                });
                            }
                        })
                    })
                });
                log.close().expect("close");
            }
        }
    }
    g.finish();
}

/// One event appended and awaited at a time: the writer wakes, writes a
/// block of one, the syncer runs its fdatasync and wakes the waiter (the
/// ingest path's wake-ups and scheduling, src/priority.rs, without load).
/// Beside it, the same with a background thread spinning on every core,
/// the CPU contention the load run's p99 comes from.
fn append_to_durable(c: &mut Criterion) {
    let evs = events(1_000);
    let mut g = c.benchmark_group("append_to_durable");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(3));
    for busy in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(Config::new(dir.path().join("log"))).expect("open");
        let stop = std::sync::atomic::AtomicBool::new(false);
        let spinners = if busy {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            0
        };
        std::thread::scope(|s| {
            for _ in 0..spinners {
                s.spawn(|| {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                });
            }
            let name = if busy {
                "one_event_cores_busy"
            } else {
                "one_event"
            };
            let mut i = 0usize;
            g.bench_function(name, |b| {
                b.iter(|| {
                    i = (i + 1) % evs.len();
                    log.append(&evs[i])
                        .expect("append")
                        .wait()
                        .expect("durable")
                })
            });
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        log.close().expect("close");
    }
    g.finish();
}

/// One event appended and awaited at a time while another thread runs
/// retention passes back to back over small segments (64 KiB: a roll
/// every ~250 events, each pass dropping what rolled since the last):
/// the writer begins each pass, appends its record once the tree's
/// threads worked out its tree fields, and leaves the unlinks to the
/// retire thread (src/writer/retire.rs); before, it applied the tree's
/// lag and removed the files itself while appends waited.
fn append_during_retention(c: &mut Criterion) {
    let evs = events(1_000);
    let mut g = one_event_group(c);
    let (_dir, log) = log_of_small_segments();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let newest = std::sync::atomic::AtomicI64::new(0);
    let t0 = evs.iter().map(|e| e.ts).min().unwrap_or(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Keep the newest ~2,000 events' worth of time.
                let cut = newest.load(std::sync::atomic::Ordering::Relaxed) - 2_000;
                if cut > t0 {
                    log.retain(cut).expect("retain");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let mut i = 0i64;
        g.bench_function("one_event_retention_passes", |b| {
            b.iter(|| {
                i += 1;
                let mut ev = evs[i as usize % evs.len()].clone();
                ev.ts = t0 + i;
                newest.store(ev.ts, std::sync::atomic::Ordering::Relaxed);
                log.append(&ev).expect("append").wait().expect("durable")
            })
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    log.close().expect("close");
    g.finish();
}

/// One event appended and awaited at a time over small segments (64 KiB:
/// a roll every ~250 events, no retention): each roll's flushes on the
/// writer (the old segment's footer fdatasync, the MANIFEST's two fsyncs,
/// and before the pace42 round the new header's fdatasync and the folder's
/// fsync) are paid by the appends queued behind it.
fn append_across_rolls(c: &mut Criterion) {
    let evs = events(1_000);
    let mut g = one_event_group(c);
    let (_dir, log) = log_of_small_segments();
    let mut i = 0usize;
    g.bench_function("one_event_rolls", |b| {
        b.iter(|| {
            i = (i + 1) % evs.len();
            log.append(&evs[i])
                .expect("append")
                .wait()
                .expect("durable")
        })
    });
    log.close().expect("close");
    g.finish();
}

/// The `append_to_durable` group as the roll and retention benches time
/// it: one event per iteration, 20 samples of 3 s.
fn one_event_group(
    c: &mut Criterion,
) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group("append_to_durable");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(3));
    g
}

/// A log in a temporary folder whose segments roll every 64 KiB (~250
/// events), for the roll and retention benches; the folder lives as long
/// as the first value.
fn log_of_small_segments() -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::new(dir.path().join("log"));
    cfg.segment_max_bytes = 64 << 10;
    let log = Log::open(cfg).expect("open");
    (dir, log)
}

fn hot_path(c: &mut Criterion) {
    let evs = events(500);
    let mut g = c.benchmark_group("hot_path");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.bench_function("validate_encode_frame_crc", |b| {
        b.iter(|| EncodedBatch::encode(&evs).expect("encode"))
    });
    // The command line's ingest, per chunk of lines: parse and check each
    // line, encode the events, hash their Merkle leaves (cli/src/log_cmds.rs).
    let mut text = String::new();
    for ev in &evs {
        auditlog::event::json::write_event(ev, None, &mut text);
        text.push('\n');
    }
    g.bench_function("jsonl_line_parse", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for l in text.lines() {
                auditlog::event::json::parse_event(l.as_bytes()).expect("parse");
                n += 1;
            }
            n
        })
    });
    g.bench_function("jsonl_line_to_encoded", |b| {
        let mut parsed = Vec::with_capacity(evs.len());
        b.iter(|| {
            parsed.clear();
            for l in text.lines() {
                parsed.push(auditlog::event::json::parse_event(l.as_bytes()).expect("parse"));
            }
            let mut batch = EncodedBatch::encode_parsed(&parsed, None).expect("encode");
            batch.hash_leaves();
            batch
        })
    });
    // What the command line's ingest does since cli40: each line read in
    // place and encoded from the view, no owned `Event` per line.
    g.bench_function("jsonl_line_to_encoded_view", |b| {
        b.iter(|| {
            let mut batch = auditlog::ViewBatch::with_capacity(evs.len(), text.len());
            for l in text.lines() {
                auditlog::event::json::with_parsed_event(l.as_bytes(), |ev| batch.push(ev))
                    .expect("parse")
                    .expect("encode");
            }
            let mut batch = batch.finish(None).expect("no policy");
            batch.hash_leaves();
            batch
        })
    });
    // The same with serde_json reading every line (cli41's plain scan
    // skipped): the reference the scan is measured against.
    g.bench_function("jsonl_line_to_encoded_view_by_serde", |b| {
        b.iter(|| {
            let mut batch = auditlog::ViewBatch::with_capacity(evs.len(), text.len());
            for l in text.lines() {
                auditlog::event::json::with_parsed_event_by_serde(l.as_bytes(), |ev| {
                    batch.push(ev)
                })
                .expect("parse")
                .expect("encode");
            }
            let mut batch = batch.finish(None).expect("no policy");
            batch.hash_leaves();
            batch
        })
    });
    let block = EncodedBatch::encode(&evs).expect("encode");
    let bytes = vec![7u8; block.bytes()];
    g.bench_function("chain_digest_of_block", |b| {
        b.iter(|| {
            auditlog::internals::chain::block_digest(
                &auditlog::Digest::GENESIS,
                0,
                evs.len() as u32,
                &bytes,
            )
        })
    });
    g.finish();
}

/// The writer's hand-over of hashed blocks to the Merkle tree's threads:
/// batches whose leaves were hashed before the append (as the command
/// line's ingest does, and the producers past `PRODUCERS_HASH_PAST` events
/// behind), written in 64 KiB blocks without a sync, so that each
/// iteration hands over some 50 blocks' leaf lists (src/tree/lists.rs:
/// the lists come back once applied instead of a new one per block).
fn hashed_blocks(c: &mut Criterion) {
    let evs = events(2_000);
    let mut g = c.benchmark_group("hashed_blocks");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::new(dir.path().join("log"));
    cfg.durability = Durability::Never;
    cfg.max_batch_bytes = 64 << 10;
    let log = Log::open(cfg).expect("open");
    g.bench_function("never_batch100_prehashed", |b| {
        b.iter_batched(
            || {
                evs.chunks(100)
                    .map(|chunk| {
                        let mut batch = EncodedBatch::encode(chunk).expect("encode");
                        batch.hash_leaves();
                        batch
                    })
                    .collect::<Vec<_>>()
            },
            |batches| {
                for batch in batches {
                    // Awaited by the flush below.
                    drop(log.append_encoded(batch).expect("append"));
                }
                log.flush().expect("flush")
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
    log.close().expect("close");
}

/// The writer's hand-over of one block's fdatasync job to the syncer and
/// the "done" back (once per block at a pace), with an empty job: the
/// engine's [`Handoff`] (the writer parks at once when it must wait,
/// the syncer yields a few times first) against the two crossbeam
/// channels it replaced (a blocking `recv` spins and calls `sched_yield`
/// before it parks). On an idle machine the spinning may win a round
/// trip; the load run at a pace on busy cores is what decided
/// (docs/benchmarks.md, pace40 round).
///
/// [`Handoff`]: auditlog::internals::handoff::Handoff
fn sync_handoff(c: &mut Criterion) {
    use auditlog::internals::handoff::{Handoff, WorkerGone};
    use std::sync::Arc;
    let mut g = c.benchmark_group("sync_handoff");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(2));
    {
        let h = Arc::new(Handoff::<u64>::new());
        let theirs = h.clone();
        let worker = std::thread::spawn(move || {
            let _gone = WorkerGone(&*theirs);
            let mut jobs = Vec::new();
            while theirs.take_jobs(&mut jobs) {
                let n = jobs.len();
                jobs.clear();
                theirs.finished(n);
            }
        });
        h.set_worker(worker.thread().clone());
        g.bench_function("handoff_round_trip", |b| {
            b.iter(|| {
                h.send(1).expect("worker alive");
                let mut left = 1usize;
                while left > 0 {
                    left -= h.wait_done(None).min(left);
                }
            })
        });
        h.close();
        let _ = worker.join();
    }
    {
        let (jobs, job_rx) = crossbeam_channel::unbounded::<u64>();
        let (done_tx, done) = crossbeam_channel::unbounded::<usize>();
        let worker = std::thread::spawn(move || {
            while let Ok(first) = job_rx.recv() {
                let n = 1 + job_rx.try_iter().count();
                let _ = first;
                if done_tx.send(n).is_err() {
                    break;
                }
            }
        });
        g.bench_function("channels_round_trip", |b| {
            b.iter(|| {
                jobs.send(1).expect("worker alive");
                done.recv().expect("worker alive")
            })
        });
        drop(jobs);
        let _ = worker.join();
    }
    g.finish();
}

criterion_group!(
    benches,
    append,
    append_to_durable,
    append_during_retention,
    append_across_rolls,
    hot_path,
    hashed_blocks,
    server_check,
    sync_handoff
);
criterion_main!(benches);
