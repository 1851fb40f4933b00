//! The query suite: every query kind of the audit-store surface, with
//! parameters drawn from the workload itself, asked of auditlog's query
//! engine and of the SQLite baseline the same way, so the timings and the
//! answers can be compared.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rusqlite::Connection;

use super::{hist, record, Lat};
use auditlog::query::{Engine, Filter, Page, View};
use auditlog::{Event, EventData, Micros};

use crate::sqlite_baseline as sq;

/// The query kinds: name and what it asks.
pub const KINDS: &[(&str, &str)] = &[
    ("run", "one run by id"),
    ("run_with_logs", "one run with its logs"),
    ("runs_by_skill", "runs of one skill, newest 50"),
    ("runs_by_caller", "runs of one caller, newest 50"),
    ("window_1h", "every run started in a one-hour window"),
    ("children", "the sub-runs of a run"),
    ("chain", "a sub-run, its parent, ... to the top"),
    ("last_run", "latest start of 3 skills, failed runs excluded"),
    ("count_by_status", "count of runs with status error"),
    ("errors_1d", "failing tool calls over one day, grouped"),
    ("finished_before", "runs finished within the first hour"),
];

const HOUR: Micros = 3_600_000_000;
const DAY: Micros = 86_400_000_000;

/// Parameters drawn from the workload.
#[derive(Debug, Clone, Default)]
pub struct QuerySet {
    pub runs: Vec<String>,
    pub parents: Vec<String>,
    pub subruns: Vec<String>,
    pub skills: Vec<String>,
    pub callers: Vec<String>,
    pub windows: Vec<Micros>,
    pub days: Vec<Micros>,
    pub first_ts: Micros,
    pub last_ts: Micros,
}

impl QuerySet {
    /// Up to `n` samples of each parameter, deterministic for the events.
    pub fn from_events(shares: &[Vec<Event>], n: usize) -> QuerySet {
        let mut qs = QuerySet {
            first_ts: Micros::MAX,
            last_ts: Micros::MIN,
            ..QuerySet::default()
        };
        let total: usize = shares.iter().map(Vec::len).sum();
        let stride = (total / (n.max(1) * 8)).max(1);
        let mut k = 0usize;
        let mut skills = std::collections::BTreeSet::new();
        for ev in shares.iter().flatten() {
            qs.first_ts = qs.first_ts.min(ev.ts);
            qs.last_ts = qs.last_ts.max(ev.ts);
            let EventData::RunStarted(s) = &ev.data else {
                continue;
            };
            if skills.len() < 64 {
                skills.insert(s.skill_id.clone());
            }
            k += 1;
            if !k.is_multiple_of(stride) || s.dry_run {
                continue;
            }
            if s.parent_run_id.is_empty() {
                if qs.runs.len() < n {
                    qs.runs.push(ev.run_id.clone());
                }
                if qs.callers.len() < n {
                    qs.callers.push(s.caller_id.clone());
                }
            } else {
                if qs.parents.len() < n {
                    qs.parents.push(s.parent_run_id.clone());
                }
                if qs.subruns.len() < n {
                    qs.subruns.push(ev.run_id.clone());
                }
            }
        }
        qs.skills = skills.into_iter().collect();
        if qs.first_ts > qs.last_ts {
            qs.first_ts = 0;
            qs.last_ts = 0;
        }
        let mut rng = fastrand::Rng::with_seed(7);
        let span = (qs.last_ts - qs.first_ts - HOUR).max(1);
        qs.windows = (0..n).map(|_| qs.first_ts + rng.i64(0..span)).collect();
        let day0 = qs.first_ts.div_euclid(DAY);
        let days = (qs.last_ts.div_euclid(DAY) - day0 + 1).max(1);
        qs.days = (0..n).map(|_| (day0 + rng.i64(0..days)) * DAY).collect();
        qs
    }

    fn pick(v: &[String], i: usize) -> &str {
        if v.is_empty() {
            "none"
        } else {
            &v[i % v.len()]
        }
    }

    fn skills3(&self, i: usize) -> Vec<String> {
        (0..3)
            .map(|j| Self::pick(&self.skills, i * 3 + j).to_string())
            .collect()
    }

    fn ts(v: &[Micros], i: usize) -> Micros {
        if v.is_empty() {
            0
        } else {
            v[i % v.len()]
        }
    }
}

/// Ask auditlog query `kind` with parameter set `i` (the engine first
/// brings its indexes up to date with the log); returns the answer's size
/// (rows, or the count).
pub fn auditlog_query(
    e: &mut Engine,
    qs: &QuerySet,
    kind: usize,
    i: usize,
) -> auditlog::Result<u64> {
    e.query(|v| view_query(v, qs, kind, i))
}

/// The same over the indexes as they stand (no refresh).
pub fn view_query(v: &View<'_>, qs: &QuerySet, kind: usize, i: usize) -> auditlog::Result<u64> {
    let p = QuerySet::pick;
    Ok(match KINDS[kind].0 {
        "run" => v.get_run(p(&qs.runs, i))?.is_some() as u64,
        "run_with_logs" => {
            let id = p(&qs.runs, i);
            match v.get_run(id)? {
                Some(_) => 1 + v.logs(id)?.len() as u64,
                None => 0,
            }
        }
        "runs_by_skill" => v
            .list(
                &Filter {
                    skill: Some(p(&qs.skills, i).into()),
                    ..Filter::default()
                },
                Page::new(50, 0),
            )?
            .len() as u64,
        "runs_by_caller" => v
            .list(
                &Filter {
                    caller: Some(p(&qs.callers, i).into()),
                    ..Filter::default()
                },
                Page::new(50, 0),
            )?
            .len() as u64,
        "window_1h" => {
            let t = QuerySet::ts(&qs.windows, i);
            v.list(
                &Filter {
                    since: Some(t),
                    until: Some(t + HOUR),
                    ..Filter::default()
                },
                Page::all(),
            )?
            .len() as u64
        }
        "children" => v.children(p(&qs.parents, i), false)?.len() as u64,
        "chain" => v.chain(p(&qs.subruns, i))?.map_or(0, |c| c.len() as u64),
        "last_run" => v
            .last_run(&qs.skills3(i), false, false)?
            .iter()
            .filter(|(_, t)| t.is_some())
            .count() as u64,
        "count_by_status" => v.count(&Filter {
            status: Some("error".into()),
            ..Filter::default()
        })?,
        "errors_1d" => {
            let d = QuerySet::ts(&qs.days, i);
            v.errors(Some(d), Some(d + DAY - 1), false)?
                .iter()
                .map(|g| g.count)
                .sum()
        }
        "finished_before" => v.finished_before(qs.first_ts + HOUR, false, None)?.len() as u64,
        _ => 0,
    })
}

/// The same question of SQLite.
pub fn sqlite_query(c: &Connection, qs: &QuerySet, kind: usize, i: usize) -> rusqlite::Result<u64> {
    let p = QuerySet::pick;
    Ok(match KINDS[kind].0 {
        "run" => sq::get_run(c, p(&qs.runs, i))?.is_some() as u64,
        "run_with_logs" => {
            let id = p(&qs.runs, i);
            match sq::get_run(c, id)? {
                Some(_) => 1 + sq::list_logs(c, id)?.len() as u64,
                None => 0,
            }
        }
        "runs_by_skill" => sq::list_runs(
            c,
            &Filter {
                skill: Some(p(&qs.skills, i).into()),
                ..Filter::default()
            },
            Page::new(50, 0),
        )?
        .len() as u64,
        "runs_by_caller" => sq::list_runs(
            c,
            &Filter {
                caller: Some(p(&qs.callers, i).into()),
                ..Filter::default()
            },
            Page::new(50, 0),
        )?
        .len() as u64,
        "window_1h" => {
            let t = QuerySet::ts(&qs.windows, i);
            sq::list_runs(
                c,
                &Filter {
                    since: Some(t),
                    until: Some(t + HOUR),
                    ..Filter::default()
                },
                Page::all(),
            )?
            .len() as u64
        }
        "children" => sq::children(c, p(&qs.parents, i), false)?.len() as u64,
        "chain" => sq::chain(c, p(&qs.subruns, i))?.map_or(0, |c| c.len() as u64),
        "last_run" => sq::last_run(c, &qs.skills3(i), false, false)?
            .iter()
            .filter(|(_, t)| t.is_some())
            .count() as u64,
        "count_by_status" => sq::count_runs(
            c,
            &Filter {
                status: Some("error".into()),
                ..Filter::default()
            },
        )?,
        "errors_1d" => {
            let d = QuerySet::ts(&qs.days, i);
            sq::errors_of_run_logs(c, Some(d), Some(d + DAY - 1), false)?
                .iter()
                .map(|g| g.count)
                .sum()
        }
        "finished_before" => sq::finished_before(c, qs.first_ts + HOUR, false)?.len() as u64,
        _ => 0,
    })
}

/// Timings of one query kind.
#[derive(Debug, Clone)]
pub struct KindTiming {
    pub hist: Histogram<u64>,
    /// Answer sizes, in parameter order (for the answers-match check).
    pub sizes: Vec<u64>,
}

impl KindTiming {
    pub fn new() -> KindTiming {
        KindTiming {
            hist: hist(),
            sizes: Vec::new(),
        }
    }
    pub fn lat(&self) -> Option<Lat> {
        Lat::of(&self.hist)
    }
}

impl Default for KindTiming {
    fn default() -> Self {
        KindTiming::new()
    }
}

/// Time `ask(i)` for i = 0, 1, ... at least `min_reps` times and then until
/// `budget` is spent or `max_reps` are done.
pub fn time_kind<E>(
    budget: Duration,
    min_reps: usize,
    max_reps: usize,
    mut ask: impl FnMut(usize) -> Result<u64, E>,
) -> Result<KindTiming, E> {
    let mut t = KindTiming::new();
    let started = Instant::now();
    for i in 0..max_reps.max(1) {
        if i >= min_reps.max(1) && started.elapsed() >= budget {
            break;
        }
        let t0 = Instant::now();
        let n = ask(i)?;
        record(&mut t.hist, t0.elapsed());
        t.sizes.push(n);
    }
    Ok(t)
}

/// Do two answer-size lists agree where both have an answer?
pub fn answers_match(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x == y)
}
