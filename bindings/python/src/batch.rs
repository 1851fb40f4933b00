//! `append_batch` without the GIL: the batch's JSON lines (made from the
//! dicts while the GIL was held) are parsed by the engine's JSONL parser.
//! A store that stages (see stage.rs), asked not to wait, then stages the
//! parsed events: the flusher thread encodes and appends them while the
//! caller converts its next batch. Otherwise (`wait=True`, a redaction
//! policy, `on_full="fail"`) they are encoded into queue units here, on two
//! threads when the batch is large enough to pay for the second, and
//! appended in their order.
//!
//! Strict batches are all-or-nothing: every unit is checked before the
//! first is appended.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use auditlog::event::json::parse_event;
use auditlog::{EncodedBatch, Event, RedactionPolicy};

use crate::inner::Inner;
use crate::stage::Stager;

/// Events per unit handed to the writer's queue.
const QUEUE_UNIT_EVENTS: usize = 4096;
/// JSON bytes per queue unit: well under the engine's per-append byte
/// limit (64 MiB by default), whatever the events' sizes.
pub const QUEUE_UNIT_BYTES: usize = 16 << 20;
/// Batches at least this long are parsed and encoded on two threads.
const PARALLEL_MIN_EVENTS: usize = 1024;

/// A batch's JSON lines: `spans[i] = (index in the caller's batch, start,
/// end)` into `buf`.
pub struct Lines {
    pub buf: Vec<u8>,
    pub spans: Vec<(usize, usize, usize)>,
}

/// An event refused: its index in the batch, the field, the reason.
pub type Refused = (usize, String, String);

pub enum BatchError {
    Invalid(Refused),
    /// An engine failure and how many events it left unstored.
    Engine(auditlog::Error, u64),
}

/// One queue unit, parsed and encoded.
struct Unit {
    batch: Option<EncodedBatch>,
    events: usize,
    refused: Vec<Refused>,
    failed: Option<auditlog::Error>,
}

fn make_unit(
    buf: &[u8],
    spans: &[(usize, usize, usize)],
    redaction: Option<&Arc<RedactionPolicy>>,
    strict: bool,
) -> Unit {
    let mut events: Vec<Event> = Vec::with_capacity(spans.len());
    let mut indexes = Vec::with_capacity(spans.len());
    let mut refused = Vec::new();
    for &(index, start, end) in spans {
        match parse_event(&buf[start..end]) {
            Ok(ev) => {
                events.push(ev);
                indexes.push(index);
            }
            Err(e) => refused.push((index, e.field, e.reason)),
        }
    }
    if strict && !refused.is_empty() {
        return Unit {
            batch: None,
            events: 0,
            refused,
            failed: None,
        };
    }
    // An event can still fail at encoding (a redaction that breaks it, the
    // encoded size limit): refuse it and encode the rest.
    loop {
        if events.is_empty() {
            return Unit {
                batch: None,
                events: 0,
                refused,
                failed: None,
            };
        }
        match EncodedBatch::encode_parsed(&events, redaction) {
            Ok(b) => {
                return Unit {
                    batch: Some(b),
                    events: events.len(),
                    refused,
                    failed: None,
                };
            }
            Err(auditlog::Error::InvalidEvent { index, source }) => {
                refused.push((indexes[index], source.field, source.reason));
                if strict {
                    return Unit {
                        batch: None,
                        events: 0,
                        refused,
                        failed: None,
                    };
                }
                events.remove(index);
                indexes.remove(index);
            }
            Err(auditlog::Error::EventTooLarge { index, bytes, max }) => {
                refused.push((
                    indexes[index],
                    "event".into(),
                    format!("encodes to {bytes} bytes; the limit is {max}"),
                ));
                if strict {
                    return Unit {
                        batch: None,
                        events: 0,
                        refused,
                        failed: None,
                    };
                }
                events.remove(index);
                indexes.remove(index);
            }
            Err(other) => {
                return Unit {
                    batch: None,
                    events: 0,
                    refused,
                    failed: Some(other),
                };
            }
        }
    }
}

/// Cut the spans into units of at most `per_unit` events and about
/// [`QUEUE_UNIT_BYTES`] bytes (a unit holds at least one event).
fn unit_spans(spans: &[(usize, usize, usize)], per_unit: usize) -> Vec<&[(usize, usize, usize)]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &(_, a, b)) in spans.iter().enumerate() {
        let full = i > start && (i - start >= per_unit || bytes + (b - a) > QUEUE_UNIT_BYTES);
        if full {
            out.push(&spans[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += b - a;
    }
    if start < spans.len() {
        out.push(&spans[start..]);
    }
    out
}

/// Parse, check and encode every unit (on two threads for a long batch).
fn make_units(
    lines: &Lines,
    redaction: Option<&Arc<RedactionPolicy>>,
    strict: bool,
    alone: bool,
) -> Vec<Unit> {
    let n = lines.spans.len();
    // Other batches in flight already keep the cores busy: a second
    // thread per batch would only add switching.
    let two = alone
        && n >= PARALLEL_MIN_EVENTS
        && std::thread::available_parallelism().map_or(1, |p| p.get()) >= 2;
    let per_unit = if two {
        n.div_ceil(2).min(QUEUE_UNIT_EVENTS)
    } else {
        QUEUE_UNIT_EVENTS
    };
    let chunks = unit_spans(&lines.spans, per_unit.max(1));
    if !two || chunks.len() < 2 {
        return chunks
            .iter()
            .map(|c| make_unit(&lines.buf, c, redaction, strict))
            .collect();
    }
    let mut out: Vec<Option<Unit>> = (0..chunks.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let odd = s.spawn(|| {
            chunks
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(i, c)| (i, make_unit(&lines.buf, c, redaction, strict)))
                .collect::<Vec<_>>()
        });
        for (i, c) in chunks.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            out[i] = Some(make_unit(&lines.buf, c, redaction, strict));
        }
        match odd.join() {
            Ok(done) => {
                for (i, u) in done {
                    out[i] = Some(u);
                }
            }
            // The helper cannot panic on input; should it anyway, do its
            // share here rather than lose it.
            Err(_) => {
                for (i, c) in chunks.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
                    out[i] = Some(make_unit(&lines.buf, c, redaction, strict));
                }
            }
        }
    });
    out.into_iter().flatten().collect()
}

/// Stage a batch for the flusher thread (a store that stages, no
/// `wait`): parse and check every event here (so that bad input is raised
/// by this call), then hand the events to the stage, as single appends do.
/// Encoding, hashing and the queue hand-over then run on the flusher's
/// core while the caller converts its next batch (docs/benchmarks.md,
/// "Python binding": the batched path used to do them all on the calling
/// thread). Returns the refused events (non-strict).
pub fn stage_batch(
    inner: &Inner,
    stager: &Stager,
    lines: Lines,
    strict: bool,
) -> Result<Vec<Refused>, BatchError> {
    let mut events = Vec::with_capacity(lines.spans.len());
    let mut sizes = Vec::with_capacity(lines.spans.len());
    let mut refused = Vec::new();
    for &(index, start, end) in &lines.spans {
        match parse_event(&lines.buf[start..end]) {
            Ok(ev) => {
                events.push(ev);
                sizes.push(end - start);
            }
            Err(e) if strict => return Err(BatchError::Invalid((index, e.field, e.reason))),
            Err(e) => refused.push((index, e.field, e.reason)),
        }
    }
    drop(lines);
    // Staged in units of a queue unit at most, draining when the stage is
    // full, so that what the flusher encodes as one append stays under the
    // engine's per-append limits whatever the batch's size.
    let mut units: Vec<(usize, usize)> = Vec::new(); // (events, bytes)
    for size in sizes {
        match units.last_mut() {
            Some((n, bytes)) if *n < QUEUE_UNIT_EVENTS && *bytes + size <= QUEUE_UNIT_BYTES => {
                *n += 1;
                *bytes += size;
            }
            _ => units.push((1, size)),
        }
    }
    let mut left = events.len() as u64;
    // The common batch is one unit: staged as it is, not copied.
    let (mut whole, mut rest) = if units.len() == 1 {
        (Some(events), Vec::new().into_iter())
    } else {
        (None, events.into_iter())
    };
    for (n, bytes) in units {
        let unit: Vec<Event> = match whole.take() {
            Some(all) => all,
            None => rest.by_ref().take(n).collect(),
        };
        let full = stager
            .push_many(unit, bytes)
            .map_err(|(e, lost)| BatchError::Engine(e, lost + left - n as u64))?;
        left -= n as u64;
        if full {
            // What the drain loses includes this unit; the rest of the
            // batch is not staged either.
            stager
                .drain(&inner.store)
                .map_err(|(e, lost)| BatchError::Engine(e, lost + left))?;
        }
    }
    Ok(refused)
}

/// Store a batch: returns the refused events (non-strict), or the first
/// refused one as the error (strict: then nothing is stored).
pub fn store_batch(
    inner: &Inner,
    lines: Lines,
    strict: bool,
    wait: bool,
) -> Result<Vec<Refused>, BatchError> {
    // Not held: the store takes the log in service per append (and
    // replaces it when it heals).
    let redaction = inner.store.log().redaction().cloned();
    let others = inner.batches_in_flight.fetch_add(1, Ordering::AcqRel);
    let units = make_units(&lines, redaction.as_ref(), strict, others == 0);
    inner.batches_in_flight.fetch_sub(1, Ordering::AcqRel);
    drop(lines);
    let total: u64 = units.iter().map(|u| u.events as u64).sum();
    let mut refused: Vec<Refused> = units
        .iter()
        .flat_map(|u| u.refused.iter().cloned())
        .collect();
    refused.sort_by_key(|r| r.0);
    if strict {
        if let Some(first) = refused.into_iter().next() {
            return Err(BatchError::Invalid(first));
        }
        refused = Vec::new();
    }
    if let Some(e) = units.iter().find_map(|u| u.failed.as_ref()) {
        return Err(BatchError::Engine(clone_error(e), total));
    }
    let mut receipts = Vec::new();
    let mut stored = 0u64;
    for unit in units {
        let Some(batch) = unit.batch else { continue };
        let r = inner
            .store
            .append_encoded(batch)
            .map_err(|e| BatchError::Engine(e, total - stored))?;
        stored += unit.events as u64;
        if wait {
            receipts.push(r);
        } else {
            inner.pending.track(r, unit.events as u64);
        }
    }
    for r in receipts {
        r.wait().map_err(|e| BatchError::Engine(e, 0))?;
    }
    Ok(refused)
}

/// Encoding fails only with input errors, handled above; anything else is
/// reported with its message.
fn clone_error(e: &auditlog::Error) -> auditlog::Error {
    auditlog::Error::InvalidArgument(e.to_string())
}
