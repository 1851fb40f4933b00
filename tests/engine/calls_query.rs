//! `calls`, its counts and `errors` over tool calls with or without a run,
//! checked against a plain fold of the replayed events (the rules of
//! docs/tool-calls.md written the simplest way) on random workloads that
//! span sealed segments and the active one, with out-of-order starts,
//! dry runs, orphan run logs and calls whose run is not stored.

use crate::support;

use std::collections::{BTreeSet, HashMap};

use auditlog::query::{Call, CallFilter, CallKey, CallOrder, CallPage, Engine};
use auditlog::{AuditStore, StoreConfig};
use auditlog::{Event, EventData, Json, Log, RunLog, RunStarted, ToolCall};
use support::*;

const TOOLS: &[&str] = &["fs.read", "http.get", "sh"];
const ENGINES: &[&str] = &["openai", "ollama", ""];
const CHANNELS: &[&str] = &["s1", "s2", ""];
const CALLERS: &[&str] = &["a1", "a2", ""];
const WORKSPACES: &[&str] = &["w1", "w2", ""];
const STATUSES: &[&str] = &["ok", "error"];
const ERROR_TYPES: &[&str] = &["timeout", "denied", ""];

fn pick<'a>(rng: &mut fastrand::Rng, v: &[&'a str]) -> &'a str {
    v[rng.usize(..v.len())]
}

/// A random workload: runs (some dry, some started after their logs),
/// `run_log` tool calls, and `tool_call` events alone, in stored runs,
/// or naming runs that are never stored.
fn workload(seed: u64, n: usize) -> Vec<Event> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    let mut ts = DAY0;
    let mut seqs: HashMap<String, u64> = HashMap::new();
    for i in 0..n {
        ts += rng.i64(0..40_000_000);
        let run = format!("r{}", rng.usize(0..n / 6 + 1));
        match rng.u8(0..10) {
            0 | 1 => out.push(Event::run_started(
                run,
                ts,
                RunStarted {
                    skill_id: "k".into(),
                    channel_id: pick(&mut rng, CHANNELS).into(),
                    caller_id: pick(&mut rng, CALLERS).into(),
                    dry_run: rng.u8(0..8) == 0,
                    ..RunStarted::default()
                },
            )),
            2..=4 => {
                let mut p = serde_json::Map::new();
                p.insert("tool".into(), pick(&mut rng, TOOLS).into());
                if rng.bool() {
                    p.insert("status".into(), pick(&mut rng, STATUSES).into());
                }
                let et = pick(&mut rng, ERROR_TYPES);
                if !et.is_empty() {
                    p.insert("error_type".into(), et.into());
                }
                if rng.bool() {
                    p.insert("engine".into(), pick(&mut rng, ENGINES).into());
                }
                if rng.bool() {
                    p.insert("duration_ms".into(), rng.u32(0..5000).into());
                }
                if rng.u8(0..4) == 0 {
                    p.insert("workspace_id".into(), pick(&mut rng, WORKSPACES).into());
                }
                // Scope keys in a run log's payload are not its scope.
                if rng.u8(0..6) == 0 {
                    p.insert("channel_id".into(), "payload-channel".into());
                }
                // Some logs reuse a seq of their run (a gateway rewriting
                // a log line), some of them replacing: they hide the
                // earlier calls of that seq (queries.md, amending events).
                let seq = match seqs.get(&run) {
                    Some(&s) if rng.u8(0..4) == 0 => s,
                    _ => i as u64,
                };
                seqs.insert(run.clone(), seq);
                let event_type = if rng.u8(0..8) == 0 {
                    "note"
                } else {
                    "tool_call"
                };
                let log = Event::run_log(
                    run,
                    ts,
                    RunLog {
                        seq,
                        event_type: event_type.into(),
                        payload: Json::from_value(&serde_json::Value::Object(p)).unwrap(),
                    },
                );
                out.push(if rng.u8(0..3) == 0 {
                    log.with_replace()
                } else {
                    log
                })
            }
            _ => {
                let run_id = match rng.u8(0..3) {
                    0 => String::new(),
                    1 => run,
                    _ => format!("never-{i}"),
                };
                let c = ToolCall {
                    call_id: format!("c{i}"),
                    channel_id: pick(&mut rng, CHANNELS).into(),
                    caller_id: pick(&mut rng, CALLERS).into(),
                    workspace_id: pick(&mut rng, WORKSPACES).into(),
                    tool: pick(&mut rng, TOOLS).into(),
                    engine: pick(&mut rng, ENGINES).into(),
                    status: pick(&mut rng, STATUSES).into(),
                    error_type: pick(&mut rng, ERROR_TYPES).into(),
                    duration_ms: rng.bool().then(|| f64::from(rng.u32(0..5000)) / 4.0),
                    http_status: rng.bool().then(|| 200 + rng.u16(0..400)),
                    ..ToolCall::default()
                };
                out.push(Event::tool_call(run_id, ts, c));
            }
        }
    }
    out
}

/// A call as the plain fold sees it.
#[derive(Debug, Clone)]
struct RefCall {
    lsn: u64,
    ts: i64,
    run_id: String,
    channel: String,
    caller: String,
    workspace: String,
    tool: String,
    engine: String,
    status: String,
    error_type: String,
    duration: Option<f64>,
}

fn text(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(o) => o.to_string(),
    }
}

/// Every call the views show, with `include_dry_run`.
fn reference(events: &[(u64, Event)], include_dry_run: bool) -> Vec<RefCall> {
    let mut runs: HashMap<&str, (&str, &str, bool)> = HashMap::new();
    for (_, e) in events {
        if let EventData::RunStarted(s) = &e.data {
            runs.entry(&e.run_id)
                .or_insert((&s.channel_id, &s.caller_id, s.dry_run));
        }
    }
    // A replacing log hides the earlier logs of its run with its seq.
    let mut hidden: BTreeSet<u64> = BTreeSet::new();
    let mut logs_by_key: HashMap<(&str, u64), Vec<u64>> = HashMap::new();
    for (lsn, e) in events {
        if let EventData::RunLog(l) = &e.data {
            let earlier = logs_by_key.entry((&e.run_id, l.seq)).or_default();
            if e.is_replace() {
                hidden.extend(earlier.iter().copied());
            }
            earlier.push(*lsn);
        }
    }
    let mut out = Vec::new();
    for (lsn, e) in events {
        if hidden.contains(lsn) {
            continue;
        }
        let run = runs.get(e.run_id.as_str()).copied();
        if run.is_some_and(|r| r.2 && !include_dry_run) {
            continue;
        }
        let c = match &e.data {
            EventData::ToolCall(c) => {
                let (ch, ca) = match run {
                    Some((rch, rca, _)) => (
                        if c.channel_id.is_empty() {
                            rch
                        } else {
                            &c.channel_id
                        },
                        if c.caller_id.is_empty() {
                            rca
                        } else {
                            &c.caller_id
                        },
                    ),
                    None => (c.channel_id.as_str(), c.caller_id.as_str()),
                };
                RefCall {
                    lsn: *lsn,
                    ts: e.ts,
                    run_id: e.run_id.clone(),
                    channel: ch.into(),
                    caller: ca.into(),
                    workspace: c.workspace_id.clone(),
                    tool: c.tool.clone(),
                    engine: c.engine.clone(),
                    status: c.status.clone(),
                    error_type: c.error_type.clone(),
                    duration: c.duration_ms,
                }
            }
            EventData::RunLog(l) if l.event_type == "tool_call" => {
                let Some((rch, rca, _)) = run else { continue };
                let p: serde_json::Value = serde_json::from_str(l.payload.as_str()).unwrap();
                let status = match text(p.get("status")) {
                    s if s.is_empty() => "ok".to_string(),
                    s => s,
                };
                RefCall {
                    lsn: *lsn,
                    ts: e.ts,
                    run_id: e.run_id.clone(),
                    channel: rch.into(),
                    caller: rca.into(),
                    workspace: text(p.get("workspace_id")),
                    tool: text(p.get("tool")),
                    engine: text(p.get("engine")),
                    status,
                    error_type: text(p.get("error_type")),
                    duration: p.get("duration_ms").and_then(|d| d.as_f64()),
                }
            }
            _ => continue,
        };
        out.push(c);
    }
    out
}

fn keep(c: &RefCall, f: &CallFilter) -> bool {
    let eq = |w: &Option<String>, h: &str| w.as_deref().is_none_or(|w| w == h);
    eq(&f.tool, &c.tool)
        && eq(&f.engine, &c.engine)
        && eq(&f.channel, &c.channel)
        && eq(&f.caller, &c.caller)
        && eq(&f.workspace, &c.workspace)
        && eq(&f.status, &c.status)
        && eq(&f.error_type, &c.error_type)
        && eq(&f.run_id, &c.run_id)
        && f.since.is_none_or(|s| c.ts >= s)
        && f.until.is_none_or(|u| c.ts <= u)
}

fn random_filter(rng: &mut fastrand::Rng, runs: &[String], t0: i64, t1: i64) -> CallFilter {
    let mut opt = |v: &[&str]| (rng.u8(0..3) == 0).then(|| v[rng.usize(..v.len())].to_string());
    let mut f = CallFilter {
        tool: opt(TOOLS),
        engine: opt(ENGINES),
        channel: opt(CHANNELS),
        caller: opt(CALLERS),
        workspace: opt(WORKSPACES),
        status: opt(STATUSES),
        error_type: opt(ERROR_TYPES),
        ..CallFilter::default()
    };
    if rng.u8(0..5) == 0 && !runs.is_empty() {
        f.run_id = Some(runs[rng.usize(..runs.len())].clone());
    }
    if rng.bool() {
        let a = rng.i64(t0..=t1);
        let b = rng.i64(t0..=t1);
        f.since = Some(a.min(b));
        if rng.bool() {
            f.until = Some(a.max(b));
        }
    }
    f.include_dry_run = rng.u8(0..4) == 0;
    f
}

fn lsns(calls: &[Call]) -> Vec<u64> {
    calls.iter().map(|c| c.lsn).collect()
}

fn check(engine: &mut Engine, events: &[(u64, Event)], seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let runs: Vec<String> = events
        .iter()
        .map(|(_, e)| e.run_id.clone())
        .filter(|r| !r.is_empty())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let t0 = events.first().map_or(0, |e| e.1.ts);
    let t1 = events.last().map_or(0, |e| e.1.ts);
    for round in 0..50 {
        let f = random_filter(&mut rng, &runs, t0, t1);
        let mut want: Vec<RefCall> = reference(events, f.include_dry_run)
            .into_iter()
            .filter(|c| keep(c, &f))
            .collect();
        want.sort_by_key(|c| (std::cmp::Reverse(c.ts), std::cmp::Reverse(c.lsn)));
        let newest: Vec<u64> = want.iter().map(|c| c.lsn).collect();
        let got = engine.calls(&f, CallPage::default()).unwrap();
        assert_eq!(lsns(&got), newest, "round {round}: {f:?}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                (
                    &g.call.channel_id,
                    &g.call.caller_id,
                    &g.call.tool,
                    &g.call.status
                ),
                (&w.channel, &w.caller, &w.tool, &w.status),
                "round {round}"
            );
            assert_eq!(g.call.duration_ms, w.duration);
        }
        // Oldest first, and paged with a cursor: the same calls.
        let mut oldest = newest.clone();
        oldest.reverse();
        let page = CallPage {
            order: CallOrder::OldestFirst,
            ..CallPage::default()
        };
        assert_eq!(lsns(&engine.calls(&f, page).unwrap()), oldest);
        let size = 1 + rng.usize(0..7);
        for order in [CallOrder::NewestFirst, CallOrder::OldestFirst] {
            let mut pages = Vec::new();
            let mut cursor = None;
            loop {
                let page = CallPage {
                    limit: Some(size),
                    cursor,
                    order,
                };
                let got = engine.calls(&f, page).unwrap();
                assert!(got.len() <= size);
                let Some(last) = got.last() else { break };
                cursor = Some(last.cursor());
                pages.extend(lsns(&got));
                if got.len() < size {
                    break;
                }
            }
            let all = if order == CallOrder::NewestFirst {
                &newest
            } else {
                &oldest
            };
            assert_eq!(&pages, all, "paged {order:?} by {size}: {f:?}");
        }
        assert_eq!(engine.count_calls(&f).unwrap(), want.len() as u64);
        let by = CallKey::ALL[rng.usize(..CallKey::ALL.len())];
        let mut counts: HashMap<String, u64> = HashMap::new();
        for c in &want {
            let k = match by {
                CallKey::Tool => &c.tool,
                CallKey::Engine => &c.engine,
                CallKey::Channel => &c.channel,
                CallKey::Caller => &c.caller,
                CallKey::Workspace => &c.workspace,
                CallKey::Status => &c.status,
                CallKey::ErrorType => &c.error_type,
                CallKey::RunId => &c.run_id,
            };
            *counts.entry(k.clone()).or_default() += 1;
        }
        let mut want_counts: Vec<(String, u64)> = counts.into_iter().collect();
        want_counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        assert_eq!(
            engine.count_calls_by(&f, by).unwrap(),
            want_counts,
            "{by:?} {f:?}"
        );
    }
    // errors: failing calls grouped by (channel, tool, error type).
    for include_dry_run in [false, true] {
        type Acc = (u64, i64, i64, f64, u64, BTreeSet<String>, BTreeSet<String>);
        let mut groups: HashMap<(String, String, String), Acc> = HashMap::new();
        for c in reference(events, include_dry_run)
            .into_iter()
            .filter(|c| c.status == "error")
        {
            let g = groups
                .entry((c.channel.clone(), c.tool.clone(), c.error_type.clone()))
                .or_insert((0, c.ts, c.ts, 0.0, 0, BTreeSet::new(), BTreeSet::new()));
            g.0 += 1;
            g.1 = g.1.min(c.ts);
            g.2 = g.2.max(c.ts);
            if let Some(d) = c.duration {
                g.3 += d;
                g.4 += 1;
            }
            g.5.insert(c.caller.clone());
            if !c.run_id.is_empty() {
                g.6.insert(c.run_id.clone());
            }
        }
        let got = engine.errors(None, None, include_dry_run).unwrap();
        assert_eq!(got.len(), groups.len());
        for g in &got {
            let w = &groups[&(g.channel_id.clone(), g.tool.clone(), g.error_type.clone())];
            assert_eq!((g.count, g.first_ts, g.last_ts), (w.0, w.1, w.2));
            let avg = (w.4 > 0).then(|| w.3 / w.4 as f64);
            assert_eq!(g.avg_duration_ms.is_some(), avg.is_some());
            if let (Some(a), Some(b)) = (g.avg_duration_ms, avg) {
                assert!((a - b).abs() < 1e-9);
            }
            let callers: Vec<String> = w.5.iter().take(10).cloned().collect();
            let run_ids: Vec<String> = w.6.iter().take(10).cloned().collect();
            assert_eq!((&g.caller_ids, &g.run_ids), (&callers, &run_ids));
        }
    }
}

#[test]
fn calls_counts_and_errors_agree_with_a_plain_fold() {
    for seed in 0..2u64 {
        let (_t, dir) = scratch();
        let mut cfg = config(&dir);
        cfg.segment_max_bytes = 64 * 1024;
        let log = Log::open(cfg).unwrap();
        let events = workload(seed, 1_500);
        for (i, chunk) in events.chunks(97).enumerate() {
            log.append_batch(chunk).unwrap().wait().unwrap();
            if i % 5 == 4 {
                log.seal().unwrap();
            }
        }
        let mut engine = Engine::new(log.reader());
        let stored = replay_all(&dir);
        assert_eq!(stored.len(), events.len());
        check(&mut engine, &stored, seed);
        assert!(
            engine.index_sizes().len() >= 2,
            "sealed images and the active chunks are both asked"
        );
        log.close().unwrap();
        // A read-only engine, from the index files, agrees too.
        let mut ro = Engine::open(&dir).unwrap();
        check(&mut ro, &stored, seed + 100);
    }
}

#[test]
fn the_store_records_and_answers_standalone_calls() {
    let (_t, dir) = scratch();
    let store = AuditStore::open(StoreConfig::new(&dir)).unwrap();
    let call = |tool: &str, status: &str, session: &str| ToolCall {
        channel_id: session.into(),
        caller_id: "agent-7".into(),
        tool: tool.into(),
        engine: "openai".into(),
        status: status.into(),
        error_type: if status == "error" {
            "timeout".into()
        } else {
            String::new()
        },
        duration_ms: Some(12.0),
        ..ToolCall::default()
    };
    store
        .record_call("", DAY0 + 1, call("fs.read", "ok", "sess-1"))
        .unwrap();
    store
        .record_call("", DAY0 + 2, call("http.get", "error", "sess-1"))
        .unwrap();
    store
        .record_call("", DAY0 + 3, call("http.get", "error", "sess-2"))
        .unwrap();
    store.flush().unwrap();
    let session = CallFilter {
        channel: Some("sess-1".into()),
        ..CallFilter::default()
    };
    let got = store.calls(&session, CallPage::default()).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].call.tool, "http.get", "newest first");
    assert_eq!(got[0].run_id, "");
    let errors = CallFilter {
        status: Some("error".into()),
        ..CallFilter::default()
    };
    assert_eq!(store.count_calls(&errors).unwrap(), 2);
    assert_eq!(
        store.count_calls_by(&errors, CallKey::Tool).unwrap(),
        vec![("http.get".to_string(), 2)]
    );
    let groups = store.tool_errors(None, None).unwrap();
    assert_eq!(groups.len(), 2, "one per session");
    assert_eq!(groups[0].caller_ids, vec!["agent-7".to_string()]);
    assert!(groups[0].run_ids.is_empty(), "no run");
    let json = got[0].to_json();
    assert!(
        json.starts_with(r#"{"lsn":1,"ts":"2026-11-23T00:00:00.000002Z","source":"tool_call","run_id":"","call_id":"","channel_id":"sess-1","caller_id":"agent-7""#),
        "{json}"
    );
    store.close().unwrap();
}
