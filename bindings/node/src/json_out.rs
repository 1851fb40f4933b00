//! Results as JSON text for JavaScript to parse in one call. Runs, logs,
//! events and error groups are written by the engine's own writers (the
//! contract's output, keys in contract order, instants RFC 3339 with µs);
//! the TypeScript layer turns the instant fields into `Date`s.

use auditlog::{ErrorGroup, Event, Run, RunLogEntry};

use auditlog::event::json::{json_string, write_event};
use auditlog::event::time::format_rfc3339;

/// `[a,b,...]` from items each written by `write`.
pub fn array<T>(items: &[T], mut write: impl FnMut(&T, &mut String)) -> String {
    let mut out = String::with_capacity(2 + items.len() * 256);
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(item, &mut out);
    }
    out.push(']');
    out
}

pub fn run(r: &Run, out: &mut String) {
    r.write_json_fields(out);
    out.push('}');
}

pub fn runs(rs: &[Run]) -> String {
    array(rs, run)
}

pub fn maybe_run(r: Option<&Run>) -> String {
    match r {
        Some(r) => r.to_json(),
        None => "null".to_string(),
    }
}

/// A log line as `run ID` shows it: `{"seq","ts","event_type","payload"}`.
pub fn log_entry(l: &RunLogEntry, out: &mut String) {
    out.push_str("{\"seq\":");
    out.push_str(&l.seq.to_string());
    out.push_str(",\"ts\":\"");
    format_rfc3339(l.ts, out);
    out.push_str("\",\"event_type\":");
    json_string(&l.event_type, out);
    out.push_str(",\"payload\":");
    out.push_str(l.payload.as_str());
    out.push('}');
}

pub fn logs(ls: &[RunLogEntry]) -> String {
    array(ls, log_entry)
}

/// `[[skill, µs|null], ...]` in the order asked.
pub fn last_runs(got: &[(String, Option<i64>)]) -> String {
    array(got, |(skill, t), out| {
        out.push('[');
        json_string(skill, out);
        out.push(',');
        out.push_str(&t.map_or("null".to_string(), |t| t.to_string()));
        out.push(']');
    })
}

pub fn error_groups(gs: &[ErrorGroup]) -> String {
    array(gs, |g, out| out.push_str(&g.to_json()))
}

/// A stored event: its contract JSON with `lsn` first and the exact
/// instant in µs as `ts_us` (a `Date` keeps only milliseconds).
pub fn event(lsn: u64, ev: &Event, out: &mut String) {
    out.push_str("{\"ts_us\":");
    out.push_str(&ev.ts.to_string());
    out.push(',');
    let start = out.len();
    write_event(ev, Some(lsn), out);
    // The writer opens its own object; ours already is: drop its brace.
    debug_assert_eq!(out.as_bytes().get(start), Some(&b'{'));
    out.remove(start);
}

#[cfg(test)]
pub fn events(evs: &[(u64, Event)]) -> String {
    array(evs, |(lsn, ev), out| event(*lsn, ev, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditlog::{RunLog, RunStarted};

    #[test]
    fn an_event_carries_lsn_and_exact_micros() {
        let ev = Event::run_log(
            "r-1",
            1_763_884_800_000_123,
            RunLog {
                seq: 2,
                event_type: "tool_call".into(),
                ..RunLog::default()
            },
        );
        let text = events(&[(7, ev)]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(v[0]["ts_us"], 1_763_884_800_000_123i64);
        assert_eq!(v[0]["lsn"], 7);
        assert_eq!(v[0]["ts"], "2025-11-23T08:00:00.000123Z");
        assert_eq!(v[0]["kind"], "run_log");
    }

    #[test]
    fn runs_are_an_array_of_contract_objects() {
        let ev = Event::run_started("r-1", 5, RunStarted::default());
        let Some(r) = Run::fold(&ev, None) else {
            panic!("a start folds into a run");
        };
        let v: serde_json::Value = serde_json::from_str(&runs(&[r])).unwrap_or_default();
        assert_eq!(v[0]["id"], "r-1");
        assert_eq!(v[0]["status"], "running");
        assert_eq!(maybe_run(None), "null");
    }
}
