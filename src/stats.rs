//! What `stats` reports of a log: its segments, events, bytes and time
//! span from the segment list (cheap), and the events the run view
//! ignores (a replay of the whole log).

use crate::chain::Digest;
use crate::error::Result;
use crate::event::Micros;
use crate::reader::{LogReader, ReplayRange};
use crate::view::fold::{Anomalies, RunStates};

/// A log's size and span, as of one look at its segments.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Segments stored, the active one included.
    pub segments: u64,
    pub sealed_segments: u64,
    /// Events stored (retention removes some; `dropped_events` counts them).
    pub events: u64,
    /// Bytes of the segment files.
    pub bytes: u64,
    /// The oldest LSN stored.
    pub first_lsn: u64,
    /// LSN one past the newest committed event.
    pub head_lsn: u64,
    /// The chain digest at the head (anchor it outside to prove later that
    /// nothing before it changed).
    pub head_digest: Digest,
    /// The oldest and newest event timestamps stored.
    pub oldest_ts: Option<Micros>,
    pub newest_ts: Option<Micros>,
    /// What retention has dropped so far.
    pub dropped_segments: u64,
    pub dropped_events: u64,
    /// The redaction policy in force (its name), if one was ever recorded
    /// (`none` once turned off).
    pub redaction: Option<String>,
    /// An `AuditStore`'s write health and counters (`None` from a reader).
    pub writes: Option<WriteStats>,
}

/// What an `AuditStore` adds to its log's [`Stats`]: the write health and
/// what the write path did, dropped events per reason included (never
/// silent). See docs/reliability.md, "Self-healing writes".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteStats {
    /// `ok`, `degraded` or `failing`.
    pub health: String,
    /// Degraded or failing since (µs).
    pub since: Option<Micros>,
    /// Why it is degraded or failing.
    pub last_error: Option<String>,
    pub appended: u64,
    pub durable: u64,
    pub retried: u64,
    pub recoveries: u64,
    pub backlog: u64,
    pub dropped_queue_full: u64,
    pub dropped_backlog_full: u64,
    pub dropped_closed_unhealed: u64,
    pub dropped_invalid_on_retry: u64,
}

impl LogReader {
    /// The log's [`Stats`], from its segment list and manifest (no event
    /// is read).
    pub fn stats(&self) -> Result<Stats> {
        let segs = self.segments();
        let manifest = self.manifest()?;
        let head = self.head();
        let bytes = segs
            .iter()
            .map(|s| std::fs::metadata(&s.path).map_or(s.data_len, |m| m.len()))
            .sum();
        Ok(Stats {
            segments: segs.len() as u64,
            sealed_segments: segs.iter().filter(|s| s.sealed).count() as u64,
            events: segs.iter().map(|s| s.count).sum(),
            bytes,
            first_lsn: self.first_lsn(),
            head_lsn: head.next_lsn,
            head_digest: head.digest,
            oldest_ts: segs.iter().filter_map(|s| s.min_ts).min(),
            newest_ts: segs.iter().filter_map(|s| s.max_ts).max(),
            dropped_segments: manifest.dropped_segments,
            dropped_events: manifest.dropped_events,
            redaction: manifest.current_policy().map(|p| p.name.clone()),
            writes: None,
        })
    }

    /// The events kept in the log but ignored by the run view, counted by
    /// one replay through the run fold. `progress(n)` is called with the
    /// events read so far, every 64 Ki.
    pub fn anomalies(&self, mut progress: impl FnMut(u64)) -> Result<Anomalies> {
        let mut fold = RunStates::new();
        let mut n = 0u64;
        for item in self.replay(ReplayRange::default()) {
            let (lsn, ev) = item?;
            n += 1;
            if n.is_multiple_of(1 << 16) {
                progress(n);
            }
            fold.apply(lsn, &ev);
        }
        Ok(fold.anomalies())
    }
}
