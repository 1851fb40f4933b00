//! Cursors behind `replay()` and `tail()`: the TypeScript layer turns
//! their batches into async iterators. A batch is read on the thread pool
//! (napi async work), at most [`MAX_BATCH_EVENTS`] events or about
//! [`MAX_BATCH_BYTES`] of JSON, so a long replay never blocks the
//! JavaScript thread and never holds a whole log in memory.
//!
//! A cursor never waits inside the thread pool: a `tail` that is caught up
//! answers with an empty batch at once, and JavaScript waits on a timer
//! before asking again (so a follower occupies no pool thread, and stops
//! at the first batch after `close()`).

use std::sync::{Arc, Mutex};

use auditlog::{Event, LogReader, Micros, ReplayRange};
use napi::bindgen_prelude::AsyncTask;
use napi::{Env, Task};
use napi_derive::napi;

use crate::errors;
use crate::json_out;
use crate::store::Shared;
use crate::tasks::guarded;

/// Most events in one batch.
pub const MAX_BATCH_EVENTS: usize = 4096;
/// A batch stops once its JSON passes this many bytes.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

type Events = Box<dyn Iterator<Item = auditlog::Result<(u64, Event)>> + Send>;

/// Pull up to `max` events (and about `MAX_BATCH_BYTES`) from `it` as a
/// JSON array; the LSN after the last one taken; whether `it` ran out.
fn take_batch(it: &mut Events, max: usize) -> napi::Result<(String, Option<u64>, bool)> {
    let max = max.clamp(1, MAX_BATCH_EVENTS);
    let mut out = String::with_capacity(64 * 1024);
    out.push('[');
    let mut n = 0;
    let mut next = None;
    while n < max && out.len() < MAX_BATCH_BYTES {
        match it.next() {
            None => {
                out.push(']');
                return Ok((out, next, true));
            }
            Some(Err(e)) => return Err(errors::engine(e)),
            Some(Ok((lsn, ev))) => {
                if n > 0 {
                    out.push(',');
                }
                json_out::event(lsn, &ev, &mut out);
                next = Some(lsn + 1);
                n += 1;
            }
        }
    }
    out.push(']');
    Ok((out, next, false))
}

/// Stored events in log order within a range.
#[napi]
pub struct ReplayCursor {
    shared: Arc<Shared>,
    events: Arc<Mutex<Option<Events>>>,
}

impl ReplayCursor {
    pub fn new(
        shared: Arc<Shared>,
        since: Option<Micros>,
        until: Option<Micros>,
        from_lsn: Option<u64>,
    ) -> napi::Result<ReplayCursor> {
        let reader = shared.query(|s| Ok(s.reader()))?;
        let range = ReplayRange {
            from_lsn,
            since,
            until,
        };
        let events: Events = Box::new(reader.replay(range));
        Ok(ReplayCursor {
            shared,
            events: Arc::new(Mutex::new(Some(events))),
        })
    }
}

#[napi]
impl ReplayCursor {
    /// The next events as a JSON array; `null` once the replay is over.
    /// Fails with `AUDITLOG_CLOSED` if the store closed meanwhile (the
    /// replay would be incomplete).
    #[napi]
    pub fn next_batch(&self, max: u32) -> AsyncTask<ReplayBatch> {
        AsyncTask::new(ReplayBatch {
            shared: self.shared.clone(),
            events: self.events.clone(),
            max: max as usize,
        })
    }
}

pub struct ReplayBatch {
    shared: Arc<Shared>,
    events: Arc<Mutex<Option<Events>>>,
    max: usize,
}

impl Task for ReplayBatch {
    type Output = Option<String>;
    type JsValue = Option<String>;

    fn compute(&mut self) -> napi::Result<Option<String>> {
        guarded("replay", || {
            if self.shared.is_closed() {
                return Err(errors::closed());
            }
            let mut slot = self.events.lock().unwrap_or_else(|p| p.into_inner());
            let Some(it) = slot.as_mut() else {
                return Ok(None);
            };
            let (json, _, done) = take_batch(it, self.max)?;
            if done {
                *slot = None;
                if json == "[]" {
                    return Ok(None);
                }
            }
            Ok(Some(json))
        })
    }

    fn resolve(&mut self, _env: Env, out: Option<String>) -> napi::Result<Option<String>> {
        Ok(out)
    }
}

struct TailState {
    reader: LogReader,
    /// The LSN of the next event to hand out.
    next: u64,
    /// Not following: the head when the tail was asked for (it ends there).
    stop: Option<u64>,
    /// Events from `next` up to the head when they were last looked at.
    pending: Option<Events>,
}

/// The newest events, then (when following) each new one.
#[napi]
pub struct TailCursor {
    shared: Arc<Shared>,
    state: Arc<Mutex<TailState>>,
}

impl TailCursor {
    pub fn new(shared: Arc<Shared>, last: u64, follow: bool) -> napi::Result<TailCursor> {
        let reader = shared.query(|s| Ok(s.reader()))?;
        let head = reader.head().next_lsn;
        let next = head.saturating_sub(last).max(reader.first_lsn());
        Ok(TailCursor {
            shared,
            state: Arc::new(Mutex::new(TailState {
                reader,
                next,
                stop: (!follow).then_some(head),
                pending: None,
            })),
        })
    }
}

#[napi]
impl TailCursor {
    /// The next events as a JSON array (empty: none yet, ask again later);
    /// `null` once over: not following and caught up, or the store closed.
    #[napi]
    pub fn next_batch(&self, max: u32) -> AsyncTask<TailBatch> {
        AsyncTask::new(TailBatch {
            shared: self.shared.clone(),
            state: self.state.clone(),
            max: max as usize,
        })
    }
}

pub struct TailBatch {
    shared: Arc<Shared>,
    state: Arc<Mutex<TailState>>,
    max: usize,
}

impl Task for TailBatch {
    type Output = Option<String>;
    type JsValue = Option<String>;

    fn compute(&mut self) -> napi::Result<Option<String>> {
        guarded("tail", || {
            if self.shared.is_closed() {
                return Ok(None);
            }
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let st = &mut *st;
            let end = st.stop.unwrap_or_else(|| st.reader.head().next_lsn);
            if st.pending.is_none() && end > st.next {
                let range = ReplayRange {
                    from_lsn: Some(st.next),
                    ..ReplayRange::default()
                };
                let upto = st
                    .reader
                    .replay(range)
                    .take_while(move |item| item.as_ref().map_or(true, |(lsn, _)| *lsn < end));
                st.pending = Some(Box::new(upto));
            }
            let Some(it) = st.pending.as_mut() else {
                // Caught up: over unless following.
                return Ok(st.stop.is_none().then(|| "[]".to_string()));
            };
            let (json, next, done) = take_batch(it, self.max)?;
            if let Some(next) = next {
                st.next = next;
            }
            if done {
                st.pending = None;
            }
            Ok(Some(json))
        })
    }

    fn resolve(&mut self, _env: Env, out: Option<String>) -> napi::Result<Option<String>> {
        Ok(out)
    }
}
