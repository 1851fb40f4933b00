//! What the binding needs from the engine beyond the crate-root API
//! (`AuditStore` and its types): event JSON in and out, instants as text,
//! and the figures of `stats`. Each is the engine's own code (no second
//! copy of a contract rule lives here); they sit in one place so that when
//! the engine's `AuditStore` offers them directly (issue 10), only this
//! file changes.

use auditlog::{Event, LogReader, Micros};

/// One event from its contract JSON (every rule of the JSONL parser).
pub fn parse_event(line: &[u8]) -> Result<Event, auditlog::EventError> {
    auditlog::event::json::parse_event(line)
}

/// An event as its contract output JSON, `lsn` first.
pub fn write_event(ev: &Event, lsn: u64, out: &mut String) {
    auditlog::event::json::write_event(ev, Some(lsn), out);
}

/// Integer µs or RFC 3339 (any offset) to µs.
pub fn parse_instant(text: &str) -> Result<Micros, String> {
    auditlog::event::time::parse_instant(text)
}

/// Append `s` as a JSON string literal.
pub fn json_string(s: &str, out: &mut String) {
    auditlog::event::json::json_string(s, out);
}

/// Append a float as JSON (finite; what the engine writes for floats).
pub fn json_f64(v: f64, out: &mut String) {
    auditlog::event::json::json_f64(v, out);
}

/// The figures of the command line's `stats`, as one JSON object:
/// segments, events, bytes, LSN range, head digest, time span, what
/// retention dropped, and (when `anomalies`) the run-view anomalies,
/// which take one replay of the log.
pub fn stats_json(reader: &LogReader, anomalies: bool) -> auditlog::Result<String> {
    let segs = reader.segments();
    let head = reader.head();
    let manifest = reader.manifest()?;
    let events: u64 = segs.iter().map(|s| s.count).sum();
    let bytes: u64 = segs
        .iter()
        .map(|s| std::fs::metadata(&s.path).map_or(s.data_len, |m| m.len()))
        .sum();
    let oldest = segs.iter().filter_map(|s| s.min_ts).min();
    let newest = segs.iter().filter_map(|s| s.max_ts).max();
    let instant = |t: Option<Micros>| t.map_or("null".to_string(), |t| t.to_string());
    let mut s = format!(
        "{{\"segments\":{},\"sealedSegments\":{},\"events\":{events},\"bytes\":{bytes},\"firstLsn\":{},\"headLsn\":{},\"headDigest\":\"{}\",\"oldestUs\":{},\"newestUs\":{},\"droppedSegments\":{},\"droppedEvents\":{}",
        segs.len(),
        segs.iter().filter(|s| s.sealed).count(),
        reader.first_lsn(),
        head.next_lsn,
        head.digest,
        instant(oldest),
        instant(newest),
        manifest.dropped_segments,
        manifest.dropped_events,
    );
    if anomalies {
        let a = auditlog::query::scan_anomalies(reader, |_| {})?;
        s.push_str(&format!(
            ",\"anomalies\":{{\"duplicateRunStarted\":{},\"duplicateRunFinished\":{},\"orphanLogs\":{},\"finishesWithoutStart\":{}}}",
            a.duplicate_starts, a.duplicate_finishes, a.orphan_logs, a.finishes_without_start
        ));
    }
    s.push('}');
    Ok(s)
}
