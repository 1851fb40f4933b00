//! Replay and tail as Python iterators of event dicts (the contract's
//! shape as `replay` prints it: `lsn` first, `ts` as a UTC datetime).
//!
//! Events are read from the segments in chunks without the GIL; each
//! `__next__` then only converts one. The state sits behind a mutex that
//! is only ever locked without the GIL (or tried, never waited for, with
//! it), so two threads sharing an iterator cannot deadlock on it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

use auditlog::event::json::write_event;
use auditlog::{Event, LogReader, ReplayRange};

use crate::convert::json_to_py;
use crate::errors::{self, IntoPy};
use crate::fork;
use crate::time::datetime;

/// Events read from disk per trip without the GIL.
const CHUNK: usize = 256;
/// How long a following tail waits for the log between checks for
/// Ctrl-C, a closed store and its idle timeout.
const FOLLOW_STEP: Duration = Duration::from_millis(100);

type Events = Box<dyn Iterator<Item = auditlog::Result<(u64, Event)>> + Send>;

/// One event as a dict, `ts` a datetime.
fn event_dict<'py>(py: Python<'py>, lsn: u64, ev: &Event) -> PyResult<Bound<'py, PyAny>> {
    let mut text = String::with_capacity(320);
    write_event(ev, Some(lsn), &mut text);
    let obj = json_to_py(py, &text)?;
    obj.set_item("ts", datetime(py, ev.ts)?)?;
    Ok(obj)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct ReplayState {
    events: Option<Events>,
    buf: VecDeque<(u64, Event)>,
    error: Option<auditlog::Error>,
}

impl ReplayState {
    /// Take the next event, reading a chunk when the buffer is empty.
    fn next(&mut self) -> Option<auditlog::Result<(u64, Event)>> {
        if self.buf.is_empty() {
            if let Some(events) = self.events.as_mut() {
                for item in events.by_ref() {
                    match item {
                        Ok(x) => self.buf.push_back(x),
                        Err(e) => {
                            self.error = Some(e);
                            self.events = None;
                            break;
                        }
                    }
                    if self.buf.len() >= CHUNK {
                        break;
                    }
                }
                if self.buf.is_empty() && self.error.is_none() {
                    self.events = None;
                }
            }
        }
        match self.buf.pop_front() {
            Some(x) => Some(Ok(x)),
            None => self.error.take().map(Err),
        }
    }
}

/// Iterator over stored events in log order.
#[pyclass(frozen, module = "auditlog._native")]
pub struct ReplayIter {
    generation: Option<u64>,
    dir: PathBuf,
    state: Mutex<ReplayState>,
}

impl ReplayIter {
    pub fn new(
        generation: u64,
        dir: PathBuf,
        events: impl Iterator<Item = auditlog::Result<(u64, Event)>> + Send + 'static,
    ) -> ReplayIter {
        ReplayIter {
            generation: Some(generation),
            dir,
            state: Mutex::new(ReplayState {
                events: Some(Box::new(events)),
                buf: VecDeque::new(),
                error: None,
            }),
        }
    }
}

#[pymethods]
impl ReplayIter {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.generation.is_some_and(|g| g != fork::generation()) {
            return Err(errors::forked(py, &self.dir));
        }
        // A buffered event needs no trip without the GIL.
        let quick = match self.state.try_lock() {
            Ok(mut st) if !st.buf.is_empty() => st.buf.pop_front().map(Ok),
            _ => None,
        };
        let item = match quick {
            Some(x) => Some(x),
            None => py.detach(|| lock(&self.state).next()),
        };
        match item {
            Some(Ok((lsn, ev))) => event_dict(py, lsn, &ev),
            Some(Err(e)) => Err(errors::to_py(py, e)),
            None => Err(PyStopIteration::new_err(())),
        }
    }
}

/// `_native.replay_dir(dir, since=None, until=None, from_lsn=None)`: replay
/// a log folder read-only, beside whichever process writes it.
#[pyfunction]
#[pyo3(signature = (dir, *, since = None, until = None, from_lsn = None))]
pub fn replay_dir(
    py: Python<'_>,
    dir: PathBuf,
    since: Option<&Bound<'_, PyAny>>,
    until: Option<&Bound<'_, PyAny>>,
    from_lsn: Option<u64>,
) -> PyResult<ReplayIter> {
    let range = ReplayRange {
        from_lsn,
        since: crate::time::opt_micros(py, since, "since")?,
        until: crate::time::opt_micros(py, until, "until")?,
    };
    let reader = py.detach(|| LogReader::open(&dir)).py_err(py)?;
    let mut it = ReplayIter::new(0, dir, reader.replay(range));
    // A read-only reader holds no thread or lock: usable after fork too.
    it.generation = None;
    Ok(it)
}

struct TailState {
    reader: LogReader,
    /// The first LSN not yet yielded.
    next_lsn: u64,
    buf: VecDeque<(u64, Event)>,
}

impl TailState {
    /// Read what the log holds from `next_lsn` on (a chunk at most).
    fn read_available(&mut self) -> auditlog::Result<()> {
        let range = ReplayRange {
            from_lsn: Some(self.next_lsn),
            ..ReplayRange::default()
        };
        for item in self.reader.replay(range).take(CHUNK) {
            let (lsn, ev) = item?;
            self.next_lsn = lsn + 1;
            self.buf.push_back((lsn, ev));
        }
        Ok(())
    }
}

/// Iterator over the newest events, following new ones when asked.
#[pyclass(frozen, module = "auditlog._native")]
pub struct TailIter {
    generation: u64,
    dir: PathBuf,
    follow: bool,
    idle_timeout: Option<Duration>,
    closed: Arc<AtomicBool>,
    state: Mutex<TailState>,
}

impl TailIter {
    pub fn new(
        generation: u64,
        dir: PathBuf,
        reader: LogReader,
        n: u64,
        follow: bool,
        idle_timeout: Option<Duration>,
        closed: Arc<AtomicBool>,
    ) -> TailIter {
        let head = reader.head().next_lsn;
        let next_lsn = head.saturating_sub(n).max(reader.first_lsn());
        TailIter {
            generation,
            dir,
            follow,
            idle_timeout,
            closed,
            state: Mutex::new(TailState {
                reader,
                next_lsn,
                buf: VecDeque::new(),
            }),
        }
    }
}

/// What one trip without the GIL found. One value lives at a time, on the
/// stack: an event's size (system records made it grow) costs nothing here.
#[allow(clippy::large_enum_variant)]
enum Step {
    Event(u64, Event),
    Nothing,
    Failed(auditlog::Error),
}

#[pymethods]
impl TailIter {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let idle_since = Instant::now();
        let mut first = true;
        loop {
            if self.generation != fork::generation() {
                return Err(errors::forked(py, &self.dir));
            }
            let waiting = self.follow && !first;
            let step = py.detach(|| {
                let mut st = lock(&self.state);
                if st.buf.is_empty() {
                    if waiting {
                        let next = st.next_lsn;
                        if let Err(e) = st.reader.wait_beyond(next, FOLLOW_STEP) {
                            return Step::Failed(e);
                        }
                    }
                    if let Err(e) = st.read_available() {
                        return Step::Failed(e);
                    }
                }
                match st.buf.pop_front() {
                    Some((lsn, ev)) => Step::Event(lsn, ev),
                    None => Step::Nothing,
                }
            });
            match step {
                Step::Event(lsn, ev) => return event_dict(py, lsn, &ev),
                Step::Failed(e) => return Err(errors::to_py(py, e)),
                Step::Nothing => {}
            }
            first = false;
            let idle_over = self.idle_timeout.is_some_and(|t| idle_since.elapsed() >= t);
            if !self.follow || idle_over || self.closed.load(Ordering::Acquire) {
                return Err(PyStopIteration::new_err(()));
            }
            // Ctrl-C (and other signals) reach a following loop.
            py.check_signals()?;
        }
    }
}
