//! Retention that never drops the start of a run still running.
//!
//! Retention drops whole segments. A run defined in a segment about to go
//! that is still running, or finishes at or after the cutoff, would lose
//! its start, and with it the run (the view is a fold of what is stored).
//! So before the segments go, the writer thread (appends wait meanwhile,
//! so no finish can slip in between) asks the query engine for those
//! runs' events (`View::carry_forward_events`: the start, logs and finish
//! again, as amending events with their original times and fields,
//! docs/queries.md, "Retention") and appends them to the active segment,
//! synced. Only then are the segments dropped. The events were redacted
//! when first stored; they are encoded as they are, not redacted twice.
//!
//! Asked on the writer thread, the question cannot race a finish: with
//! the appends waiting, what it reads is all there is. A pass that fails
//! after carrying (the MANIFEST cannot be replaced) carries again the next
//! time; amending events make the second copy change nothing a reader
//! sees. See docs/design.md, "Retention".

use std::sync::{Arc, Mutex};

use super::health::Writes;
use crate::codec;
use crate::error::{Error, Result};
use crate::event::{Event, Micros};
use crate::frame::{seal_frame_in_place, FRAME_HEADER, MAX_FRAME_BODY, REC_EVENT};
use crate::index::NONE;
use crate::layout::SegmentMeta;
use crate::log::Log;
use crate::query::{Engine, View};
use crate::retention::{Carry, RetainOptions, RetentionReport};

/// Drop the segments older than `cutoff`, carrying running runs forward
/// (see the module docs). For any writer with an engine over its log:
/// the store, the command line's `retain`.
pub fn retain_keeping_running(
    log: &Log,
    engine: &Arc<Mutex<Engine>>,
    cutoff: Micros,
    opts: RetainOptions,
) -> Result<RetentionReport> {
    let e = engine.clone();
    let rep = log.retain_carrying(
        cutoff,
        opts,
        Box::new(move |dropping: &[SegmentMeta]| {
            let Some(last) = dropping.last() else {
                return Ok(Carry::default());
            };
            let (seq, end_lsn) = (last.seq, last.end_lsn());
            let mut engine = e.lock().unwrap_or_else(|p| p.into_inner());
            engine.query(|v| plan(v, seq, end_lsn, cutoff))
        }),
    )?;
    engine.lock().unwrap_or_else(|p| p.into_inner()).refresh()?;
    Ok(rep)
}

/// The store's purge (also its scheduled retention).
pub(crate) fn purge(
    writes: &Writes,
    cutoff: Micros,
    opts: RetainOptions,
) -> Result<RetentionReport> {
    writes.with_log(|log| retain_keeping_running(log, &writes.engine, cutoff, opts))
}

/// The frames to carry past a retention that drops every segment up to
/// `last` (by seq, its end LSN `end_lsn`), and how many runs are carried
/// and dropped.
fn plan(v: &View<'_>, last: u64, end_lsn: u64, cutoff: Micros) -> Result<Carry> {
    let events = v.carry_forward_events(end_lsn, cutoff)?;
    let mut frames = Vec::with_capacity(events.len());
    let mut runs = std::collections::HashSet::new();
    for ev in &events {
        runs.insert(ev.run_id.as_str());
        frames.push((ev.ts, frame_of(ev)?));
    }
    // Runs defined by a start in the dropped segments, carried or not.
    let mut defined = 0u64;
    for s in v.srcs.iter().filter(|s| s.seq <= last) {
        for pos in 0..s.img.n_runs() {
            let shadow = s.img.run_lazy(pos).shadow_seq();
            if shadow == NONE || shadow < v.first_seq {
                defined += 1;
            }
        }
    }
    let carried = runs.len() as u64;
    Ok(Carry {
        frames,
        runs: carried,
        dropped_runs: defined.saturating_sub(carried),
    })
}

/// An event as a frame, encoded as it is (it was redacted when stored).
fn frame_of(ev: &Event) -> Result<Vec<u8>> {
    let mut b = vec![0u8; FRAME_HEADER];
    b.push(REC_EVENT);
    codec::encode_event(ev, &mut b).map_err(|reason| Error::InvalidEvent {
        index: 0,
        source: crate::error::EventError::new("event", reason.to_string()),
    })?;
    if b.len() - FRAME_HEADER > MAX_FRAME_BODY {
        return Err(Error::EventTooLarge {
            index: 0,
            bytes: b.len() - FRAME_HEADER - 1,
            max: codec::MAX_BODY_BYTES,
        });
    }
    seal_frame_in_place(&mut b, 0);
    Ok(b)
}
