//! Buffers kept across builds (`index::pool`): an image built in tables
//! an earlier build left behind (finished, or abandoned half-way as a
//! failed scan abandons its builder) is the same bytes as one built in
//! new ones, and what the pool keeps stays within its bounds.

use proptest::prelude::*;

use super::build::{BuilderBufs, FinishBufs};
use super::image::KIND_SEALED;
use super::pool::{self, Kept, Pool};
use super::posting_tests::{events, op, Op, SomeOlder};
use super::Builder;
use crate::chain::Digest;
use crate::event::{Event, Json, RunLog};
use crate::segment::HEADER_SIZE;

/// The events of `ops`, with a `run_log` after every third (a tool call
/// read from its payload, every other one replacing): LOGS, AMND and the
/// payload-read calls filled too.
fn with_logs(ops: &[Op]) -> Vec<Event> {
    let mut out = Vec::new();
    for (i, ev) in events(ops).into_iter().enumerate() {
        let run = ev.run_id.clone();
        out.push(ev);
        if i % 3 == 0 {
            let payload = format!(
                r#"{{"tool":"t{}","status":"error","duration_ms":{i}}}"#,
                i % 4
            );
            let log = Event::run_log(
                run,
                5_000 + i as i64,
                RunLog {
                    seq: (i % 5) as u64,
                    event_type: "tool_call".into(),
                    payload: Json::parse(payload).expect("valid JSON"),
                },
            );
            out.push(if i % 2 == 0 { log.with_replace() } else { log });
        }
    }
    out
}

/// A builder over `evs` in the tables `b`.
fn fill(b: BuilderBufs, evs: &[Event]) -> Builder {
    let mut builder = Builder::with_bufs(KIND_SEALED, 2, 0, HEADER_SIZE as u64, b);
    builder.chain_point(HEADER_SIZE as u64, Digest([1; 32]));
    for (i, ev) in evs.iter().enumerate() {
        let off = HEADER_SIZE as u64 + 10 * i as u64;
        builder.add(i as u64, off, off + 10, ev);
    }
    builder
}

/// The image of `evs` built in `b` and `f`, and the tables after it.
fn image(b: BuilderBufs, f: FinishBufs, evs: &[Event]) -> (Vec<u8>, BuilderBufs, FinishBufs) {
    let (parts, b) = fill(b, evs).finish_in(Digest([7; 32]), &SomeOlder, f);
    let mut bytes = Vec::new();
    parts
        .write_to(&mut bytes, 1 << 20)
        .expect("writes to memory");
    (bytes, b, parts.into_kept())
}

proptest! {
    #[test]
    fn an_image_built_in_kept_tables_equals_a_fresh_one(
        a in proptest::collection::vec(op(), 0..150),
        b in proptest::collection::vec(op(), 0..150),
        c in proptest::collection::vec(op(), 0..150),
    ) {
        let (a, b, c) = (with_logs(&a), with_logs(&b), with_logs(&c));
        let (fresh, _, _) = image(BuilderBufs::default(), FinishBufs::default(), &a);
        // The tables of a finished build of `b`, then a builder over `c`
        // abandoned before its finish.
        let (_, used, finished) = image(BuilderBufs::default(), FinishBufs::default(), &b);
        let abandoned = fill(used, &c).into_bufs();
        let (again, used, finished) = image(abandoned, finished, &a);
        prop_assert!(again == fresh, "built in kept tables: other bytes");
        // And once more in the same tables.
        let (third, _, _) = image(used, finished, &a);
        prop_assert!(third == fresh);
    }
}

/// A build far larger than the rest leaves tables larger than a set may
/// be: they are freed, not kept; the small builds' are kept up to the
/// bounds, by count and by bytes, and all of them are freed at once.
#[test]
fn the_pool_keeps_within_its_bounds() {
    let many: Vec<Op> = (0..3_000u32)
        .map(|i| Op::Call {
            run: (i % 40) as u8,
            f: [i as u8, (i / 7) as u8, 1, 2, 3, (i / 3) as u8],
            ts: i as u8,
        })
        .collect();
    let huge = with_logs(&many);
    let small = with_logs(&many[..50]);
    let (_, hb, hf) = image(BuilderBufs::default(), FinishBufs::default(), &huge);
    let (_, sb, sf) = image(BuilderBufs::default(), FinishBufs::default(), &small);
    let (big, little) = (
        hb.kept_bytes() + hf.kept_bytes(),
        sb.kept_bytes() + sf.kept_bytes(),
    );
    assert!(big > 4 * little, "{big} against {little}");
    // One set may hold at most what two small builds hold.
    let mut p = Pool::new(big, 2 * little, 2, 1);
    assert!(
        p.give_builder(hb).is_some(),
        "a huge builder's tables are freed"
    );
    assert!(
        p.give_finish(hf).is_some(),
        "a huge finish's tables are freed"
    );
    assert_eq!(p.bytes(), 0);
    let mut kept = 0;
    for _ in 0..3 {
        let (_, b, f) = image(BuilderBufs::default(), FinishBufs::default(), &small);
        let (nb, nf) = (b.kept_bytes(), f.kept_bytes());
        if p.give_builder(b).is_none() {
            kept += nb;
        }
        if p.give_finish(f).is_none() {
            kept += nf;
        }
        assert_eq!(p.bytes(), kept);
    }
    // At most 2 builders' sets and 1 finish's.
    let (builders, finishes) = p.drain();
    assert_eq!((builders.len(), finishes.len()), (2, 1));
    assert_eq!(p.bytes(), 0);
    // By bytes: a pool of one small set's bytes keeps one, refuses more.
    let mut p = Pool::new(sb.kept_bytes(), usize::MAX, 5, 5);
    let (_, b2, _) = image(BuilderBufs::default(), FinishBufs::default(), &small);
    assert!(p.give_builder(sb).is_none());
    assert!(p.give_builder(b2).is_some(), "over the bytes bound");
    assert!(p.take_builder().is_some());
    assert!(p.take_builder().is_none());
    assert_eq!(p.bytes(), 0);
    drop(sf);
}

/// The process's pool, whatever the builds before: within its bound.
#[test]
fn the_global_pool_stays_within_its_bound() {
    let evs = with_logs(
        &(0..2_000u32)
            .map(|i| Op::Finish {
                run: (i % 40) as u8,
                status: i as u8,
            })
            .collect::<Vec<_>>(),
    );
    for _ in 0..4 {
        let mut b = Builder::new(KIND_SEALED, 2, 0, HEADER_SIZE as u64);
        for (i, ev) in evs.iter().enumerate() {
            let off = HEADER_SIZE as u64 + 10 * i as u64;
            b.add(i as u64, off, off + 10, ev);
        }
        let img = b.finish(Digest([0; 32]), &SomeOlder);
        assert!(!img.is_empty());
        assert!(pool::kept_bytes() <= pool::KEEP_BYTES);
    }
}
