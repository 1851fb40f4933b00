//! The `runs` table is the engine's run view: amending events in later
//! segments rewrite the row where it lives, and a run that retention
//! carries forward keeps its one row (docs/export.md, "Where a run's row
//! lives"). Retention "exported first" and its chained record together.

use std::collections::BTreeMap;

use auditlog::{
    AuditStore, Durability, Event, Filter, Json, Page, RetainOptions, Run, RunFinished, RunLog,
    RunStarted, StoreConfig,
};
use auditlog_export::readback::{event_rows, run_rows};
use auditlog_export::{export, pq, verify_export, ExportOptions, VerifyOptions};

use crate::support::{local, parquet_files, DAY, T0};

/// Every row of the runs table: id to (segment, start_lsn, run). No id
/// may appear twice.
fn runs_table(out: &std::path::Path) -> BTreeMap<String, (u64, u64, Run)> {
    let mut m = BTreeMap::new();
    for f in parquet_files(out)
        .iter()
        .filter(|f| f.starts_with("table=runs/"))
    {
        let file = pq::read(f, std::fs::read(out.join(f)).unwrap()).unwrap();
        let seg: u64 = file.meta["auditlog.segment"].parse().unwrap();
        for b in &file.batches {
            for (lsn, run) in run_rows(b).unwrap() {
                let id = run.id.clone();
                let again = m.insert(id.clone(), (seg, lsn, run));
                assert!(again.is_none(), "run {id} has two rows");
            }
        }
    }
    m
}

/// Every event row of kind `system`: (event_type, payload).
fn system_rows(out: &std::path::Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for f in parquet_files(out)
        .iter()
        .filter(|f| f.starts_with("table=events/"))
    {
        let file = pq::read(f, std::fs::read(out.join(f)).unwrap()).unwrap();
        for b in &file.batches {
            for r in event_rows(b).unwrap() {
                if let auditlog::EventData::System(rec) = &r.event.data {
                    v.push((rec.name().to_string(), format!("{rec:?}")));
                }
            }
        }
    }
    v
}

/// The engine's view of every run (dry runs too), by id.
fn engine_view(store: &AuditStore) -> BTreeMap<String, Run> {
    let f = Filter {
        include_dry_run: true,
        ..Filter::default()
    };
    store
        .list_runs(&f, Page::all())
        .unwrap()
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect()
}

fn start(id: &str, ts: i64, skill: &str) -> Event {
    Event::run_started(
        id,
        ts,
        RunStarted {
            skill_id: skill.into(),
            caller_id: "u".into(),
            channel_id: "c".into(),
            inputs: Json::parse("{\"q\":1}").unwrap(),
            ..RunStarted::default()
        },
    )
}

fn finish(id: &str, ts: i64, status: &str) -> Event {
    Event::run_finished(
        id,
        ts,
        RunFinished {
            status: status.into(),
            tool_calls: 2,
            runtime_seconds: 1.5,
            ..RunFinished::default()
        },
    )
}

fn tool_call(id: &str, ts: i64, seq: u64) -> Event {
    Event::run_log(
        id,
        ts,
        RunLog {
            seq,
            event_type: "tool_call".into(),
            payload: Json::parse("{\"tool\":\"t\",\"status\":\"ok\"}").unwrap(),
        },
    )
}

fn open_store(dir: &std::path::Path) -> AuditStore {
    AuditStore::open(StoreConfig::new(dir).durability(Durability::Never)).unwrap()
}

fn put(store: &AuditStore, events: &[Event]) {
    store.append_batch(events).unwrap();
    store.flush().unwrap();
}

/// Day `d`'s runs `{tag}-{d}-{i}`: even ones finish that day, odd ones
/// keep running.
fn day(tag: &str, d: i64, n: usize) -> Vec<Event> {
    let mut v = Vec::new();
    for i in 0..n {
        let id = format!("{tag}-{d}-{i}");
        let t = T0 + d * DAY + i as i64 * 1_000_000;
        v.push(start(&id, t, &format!("s{}", i % 3)));
        v.push(tool_call(&id, t + 10, 0));
        if i % 2 == 0 {
            v.push(finish(&id, t + 20, "ok"));
        }
    }
    v
}

fn export_all(dir: &std::path::Path, out: &std::path::Path) -> auditlog_export::ExportReport {
    export(dir, &local(out), &ExportOptions::default()).unwrap()
}

fn verify_both(dir: &std::path::Path, out: &std::path::Path) {
    verify_export(&local(out), &VerifyOptions::default()).unwrap();
    let with_log = VerifyOptions {
        log_dir: Some(dir.to_path_buf()),
        ..VerifyOptions::default()
    };
    verify_export(&local(out), &with_log).unwrap();
}

#[test]
fn amending_events_in_a_later_segment_rewrite_the_row_where_it_lives() {
    let t = tempfile::tempdir().unwrap();
    let (dir, out) = (t.path().join("log"), t.path().join("out"));
    let store = open_store(&dir);
    put(&store, &day("a", 0, 12));
    store.log().seal().unwrap();
    let r = export_all(&dir, &out);
    assert_eq!(r.segments.len(), 1);
    let first_seg = r.segments[0];

    let t1 = T0 + DAY;
    put(
        &store,
        &[
            // Upsert a finished run's start, and a running one's.
            start("a-0-0", t1, "renamed").with_replace(),
            start("a-0-1", t1 + 1, "renamed-too").with_replace(),
            // The last finish wins over a finished run's finish.
            finish("a-0-2", t1 + 2, "error").with_replace(),
            // A plain second finish is ignored.
            finish("a-0-4", t1 + 3, "timeout"),
            // Running runs finish: plainly, by an amending finish, as dry.
            finish("a-0-3", t1 + 4, "ok"),
            finish("a-0-5", t1 + 5, "error").with_replace(),
            finish("a-0-7", t1 + 6, "dry_run"),
            // A first start marked amending is an ordinary start.
            start("b-1-0", t1 + 7, "fresh").with_replace(),
            finish("b-1-0", t1 + 8, "ok"),
        ],
    );
    store.log().seal().unwrap();
    let r = export_all(&dir, &out);
    assert_eq!(r.runs_rewritten, vec![first_seg], "{r:?}");

    let table = runs_table(&out);
    let view = engine_view(&store);
    assert_eq!(table.len(), view.len());
    for (id, run) in &view {
        assert_eq!(&table[id].2, run, "run {id}");
    }
    assert_eq!(table["a-0-0"].2.skill_id, "renamed");
    assert_eq!(table["a-0-2"].2.status, "error");
    assert_eq!(table["a-0-4"].2.status, "ok");
    assert!(table["a-0-7"].2.dry_run);
    assert_eq!(table["a-0-0"].0, first_seg, "the row stays with its start");
    assert_ne!(table["b-1-0"].0, first_seg);
    store.close().unwrap();
    verify_both(&dir, &out);
}

#[test]
fn a_run_carried_forward_by_retention_keeps_one_row_that_follows_the_log() {
    let t = tempfile::tempdir().unwrap();
    let (dir, out) = (t.path().join("log"), t.path().join("out"));
    let store = open_store(&dir);
    put(&store, &day("c", 0, 10));
    store.log().seal().unwrap();
    // Day 1: one of day 0's running runs finishes (so it is carried with
    // its finish), and day 1's own runs.
    let mut d1 = day("c", 1, 6);
    d1.push(finish("c-0-1", T0 + DAY + 50, "ok"));
    put(&store, &d1);
    store.log().seal().unwrap();
    export_all(&dir, &out);
    let before = engine_view(&store);

    // Retention "exported first": day 0's segment is exported, so it goes;
    // its runs still running or finished after the cutoff are carried
    // forward, and the pass leaves its chained record in the log.
    let opts = RetainOptions {
        exported_first: true,
        ..RetainOptions::default()
    };
    let head_before = store.head().next_lsn;
    let rep = store.retain_with(T0 + DAY, opts).unwrap();
    assert_eq!(rep.dropped.len(), 1, "{rep:?}");
    assert!(rep.held_for_export.is_empty());
    assert!(store.head().next_lsn > head_before + 1, "runs carried");
    auditlog::verify(&dir, None, |_, _| {}).unwrap();

    // Later: a carried run finishes, another is amended.
    let t2 = T0 + 2 * DAY;
    put(
        &store,
        &[
            finish("c-0-3", t2, "error"),
            start("c-0-5", t2 + 1, "amended").with_replace(),
            start("c-2-0", t2 + 2, "s0"),
        ],
    );
    store.log().seal().unwrap();
    let r = export_all(&dir, &out);
    assert!(!r.segments.is_empty());

    let table = runs_table(&out);
    let view = engine_view(&store);
    for (id, run) in &view {
        assert_eq!(&table[id].2, run, "run {id}");
    }
    // Day 0's runs that retention dropped keep their rows as they were.
    for (id, run) in before.iter().filter(|(id, _)| !view.contains_key(*id)) {
        assert!(id.starts_with("c-0-"), "{id}");
        assert_eq!(&table[id].2, run, "dropped run {id}");
    }
    // Carried runs still live in day 0's file, at their first start.
    let day0 = table["c-0-0"].0;
    for id in ["c-0-1", "c-0-3", "c-0-5", "c-0-9"] {
        assert_eq!(table[id].0, day0, "{id}");
    }
    assert_eq!(table["c-0-3"].2.status, "error");
    assert_eq!(table["c-0-5"].2.skill_id, "amended");
    assert_eq!(table["c-0-9"].2.status, "running");
    assert_eq!(
        table.len(),
        before.len() + 1,
        "every run once, c-2-0 the only new one"
    );

    // The retention record is exported as an event of kind `system`.
    let sys = system_rows(&out);
    assert_eq!(sys.len(), 1, "{sys:?}");
    assert_eq!(sys[0].0, "retention");
    store.close().unwrap();
    verify_both(&dir, &out);
}

#[test]
fn exported_first_keeps_unexported_segments_and_carries_nothing_from_them() {
    let t = tempfile::tempdir().unwrap();
    let (dir, out) = (t.path().join("log"), t.path().join("out"));
    let store = open_store(&dir);
    put(&store, &day("d", 0, 6));
    store.log().seal().unwrap();
    put(&store, &day("d", 1, 6));
    store.log().seal().unwrap();
    let opts = RetainOptions {
        exported_first: true,
        ..RetainOptions::default()
    };
    let head = store.head().next_lsn;
    let rep = store.retain_with(T0 + 2 * DAY, opts).unwrap();
    assert!(rep.dropped.is_empty());
    assert_eq!(rep.held_for_export.len(), 2);
    assert_eq!(store.head().next_lsn, head, "nothing carried, no record");

    // One segment exported: only it goes, only its runs are carried.
    export(
        &dir,
        &local(&out),
        &ExportOptions {
            max_segments: Some(1),
            ..ExportOptions::default()
        },
    )
    .unwrap();
    let rep = store.retain_with(T0 + 2 * DAY, opts).unwrap();
    assert_eq!((rep.dropped.len(), rep.held_for_export.len()), (1, 1));
    // Day 0's three running runs, each its start and its log again, then
    // the retention record.
    assert_eq!(store.head().next_lsn, head + 3 * 2 + 1);
    let view = engine_view(&store);
    assert!(view.contains_key("d-0-1") && !view.contains_key("d-0-0"));
    assert!(view.contains_key("d-1-0"), "the held segment's runs stay");
    store.close().unwrap();
    let v = auditlog::verify(&dir, None, |_, _| {}).unwrap();
    assert_eq!(v.retentions, 1);

    export_all(&dir, &out);
    let table = runs_table(&out);
    assert_eq!(table.len(), 12, "each of the 12 runs once");
    verify_both(&dir, &out);
}

/// Tool calls as records of their own (format version 3): each is an
/// `events` row that verify-export re-encodes exactly, and a `tool_calls`
/// row with its typed fields, standalone (no run) or in a run.
#[test]
fn tool_call_records_are_exported_with_their_fields_and_verified() {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    let t = tempfile::tempdir().unwrap();
    let (dir, out) = (t.path().join("log"), t.path().join("out"));
    let store = open_store(&dir);
    let in_run = auditlog::ToolCall {
        tool: "sh".into(),
        engine: "openai".into(),
        status: "error".into(),
        error_type: "exit".into(),
        error: "exit 2".into(),
        duration_ms: Some(1.5),
        exit_code: Some(2),
        payload: Json::parse(r#"{"k":[1,2]}"#).unwrap(),
        ..auditlog::ToolCall::default()
    };
    let alone = auditlog::ToolCall {
        tool: "fs.read".into(),
        channel_id: "sess-1".into(),
        caller_id: "agent-3".into(),
        workspace_id: "ws-1".into(),
        request_id: "req-9".into(),
        http_status: Some(200),
        result_bytes: Some(12),
        ..auditlog::ToolCall::default()
    };
    let mut standalone = Event::tool_call("", T0 + 6, alone);
    standalone
        .extra
        .push(("note".into(), Json::parse("\"kept\"").unwrap()));
    put(
        &store,
        &[
            start("r-1", T0, "s"),
            Event::tool_call("r-1", T0 + 5, in_run),
            standalone,
            finish("r-1", T0 + 7, "ok"),
        ],
    );
    store.seal().unwrap();
    let stored: Vec<Event> = store
        .replay(auditlog::ReplayRange::default())
        .map(|r| r.unwrap().1)
        .collect();
    store.close().unwrap();
    export_all(&dir, &out);
    verify_both(&dir, &out);

    let (mut events, mut calls) = (Vec::new(), Vec::new());
    for f in parquet_files(&out) {
        let file = pq::read(&f, std::fs::read(out.join(&f)).unwrap()).unwrap();
        for b in &file.batches {
            if f.starts_with("table=events/") {
                events.extend(event_rows(b).unwrap().into_iter().map(|r| r.event));
            } else if f.starts_with("table=tool_calls/") {
                let col = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
                let (run, tool, chan, eng, req, extra) = (
                    col("run_id"),
                    col("tool"),
                    col("channel_id"),
                    col("engine"),
                    col("request_id"),
                    col("extra"),
                );
                let opt = |a: &arrow_array::StringArray, i: usize| {
                    a.is_valid(i).then(|| a.value(i).to_string())
                };
                let seq = b.column_by_name("seq").unwrap();
                for i in 0..b.num_rows() {
                    assert!(seq.is_null(i), "a tool_call record has no seq");
                    calls.push((
                        run.value(i).to_string(),
                        opt(&tool, i),
                        opt(&chan, i),
                        opt(&eng, i),
                        opt(&req, i),
                        opt(&extra, i),
                    ));
                }
            }
        }
    }
    let want: Vec<&Event> = stored.iter().filter(|e| !e.is_system()).collect();
    let got: Vec<&Event> = events.iter().filter(|e| !e.is_system()).collect();
    assert_eq!(got, want, "every event back exactly, tool calls too");
    calls.sort();
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        calls,
        [
            // A record's own payload is its `extra` (null when null).
            ("".into(), s("fs.read"), s("sess-1"), None, s("req-9"), None),
            (
                "r-1".into(),
                s("sh"),
                None,
                s("openai"),
                None,
                s(r#"{"payload":{"k":[1,2]}}"#)
            ),
        ]
    );
}
