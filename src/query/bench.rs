//! The query set as named closures, for the load run and the criterion
//! bench: the same questions, with the same parameters, asked of auditlog's
//! [`Engine`] and of SQLite ([`crate::sqlite_baseline`]). Each closure
//! returns the number of rows it answered (so callers can check both sides
//! agree and nothing is optimised away).

use rusqlite::Connection;

use super::{Engine, Filter, Page};
use crate::error::Result;
use crate::event::Micros;
use crate::sqlite_baseline as sql;

/// Query parameters picked from the data (so every query has answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchParams {
    pub skill: String,
    pub caller: String,
    pub run_id: String,
    /// A run that has children.
    pub parent_id: String,
    /// A run with a parent (for the chain walk).
    pub child_id: String,
    /// A window of started_at / tool-call ts (about a tenth of the span).
    pub since: Micros,
    pub until: Micros,
    /// For finished-before: a little after the oldest event.
    pub before: Micros,
    pub skills: Vec<String>,
}

/// Page size of the paginated list queries.
pub const PAGE: usize = 50;

impl BenchParams {
    /// Pick parameters from the newest runs of the log.
    pub fn pick(eng: &mut Engine) -> Result<BenchParams> {
        eng.refresh()?;
        let segs = eng.reader().segments();
        let lo = segs.iter().filter_map(|s| s.min_ts).min().unwrap_or(0);
        let hi = segs.iter().filter_map(|s| s.max_ts).max().unwrap_or(0);
        let recent = eng.list(&Filter::default(), Page::new(2000, 0))?;
        let most = |f: &dyn Fn(&crate::view::Run) -> &str| -> String {
            let mut counts: std::collections::HashMap<&str, usize> = Default::default();
            for r in &recent {
                *counts.entry(f(r)).or_default() += 1;
            }
            let mut v: Vec<(&str, usize)> = counts.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            v.first().map_or_else(String::new, |x| x.0.to_string())
        };
        let child = recent.iter().find(|r| !r.parent_run_id.is_empty());
        let mut skills: Vec<String> = recent.iter().map(|r| r.skill_id.clone()).collect();
        skills.sort();
        skills.dedup();
        skills.truncate(5);
        Ok(BenchParams {
            skill: most(&|r| &r.skill_id),
            caller: most(&|r| &r.caller_id),
            run_id: recent
                .get(recent.len() / 2)
                .map_or_else(String::new, |r| r.id.clone()),
            parent_id: child.map_or_else(String::new, |r| r.parent_run_id.clone()),
            child_id: child.map_or_else(String::new, |r| r.id.clone()),
            since: hi - (hi - lo) / 10,
            until: hi,
            before: lo + (hi - lo) / 100,
            skills,
        })
    }

    fn filtered(&self) -> Filter {
        Filter {
            skill: Some(self.skill.clone()),
            status: Some("ok".into()),
            since: Some(self.since),
            until: Some(self.until),
            ..Filter::default()
        }
    }
    fn by_skill(&self) -> Filter {
        Filter {
            skill: Some(self.skill.clone()),
            ..Filter::default()
        }
    }
    fn by_caller(&self) -> Filter {
        Filter {
            caller: Some(self.caller.clone()),
            ..Filter::default()
        }
    }
}

/// A named auditlog query.
pub type EngineQuery = Box<dyn Fn(&mut Engine) -> Result<usize>>;
/// A named SQLite query.
pub type SqliteQuery = Box<dyn Fn(&Connection) -> rusqlite::Result<usize>>;

/// Names of the query kinds, in the order both lists use.
pub const QUERY_KINDS: &[&str] = &[
    "get_run",
    "list_logs",
    "runs_by_skill_page",
    "count_by_skill",
    "runs_by_caller_page",
    "runs_filtered_page",
    "count_filtered",
    "children",
    "chain",
    "finished_before",
    "last_run",
    "tool_errors",
];

/// Every query kind over the engine.
pub fn engine_queries(p: &BenchParams) -> Vec<(&'static str, EngineQuery)> {
    let page = Page::new(PAGE, 0);
    let p1 = p.clone();
    let p2 = p.clone();
    let p3 = p.clone();
    let p4 = p.clone();
    let p5 = p.clone();
    let p6 = p.clone();
    let p7 = p.clone();
    let p8 = p.clone();
    let p9 = p.clone();
    let p10 = p.clone();
    let p11 = p.clone();
    let p12 = p.clone();
    vec![
        (
            "get_run",
            Box::new(move |e: &mut Engine| Ok(e.get_run(&p1.run_id)?.iter().count())),
        ),
        (
            "list_logs",
            Box::new(move |e| Ok(e.logs(&p2.run_id)?.len())),
        ),
        (
            "runs_by_skill_page",
            Box::new(move |e| Ok(e.list(&p3.by_skill(), page)?.len())),
        ),
        (
            "count_by_skill",
            Box::new(move |e| Ok(e.count(&p4.by_skill())? as usize)),
        ),
        (
            "runs_by_caller_page",
            Box::new(move |e| Ok(e.list(&p5.by_caller(), page)?.len())),
        ),
        (
            "runs_filtered_page",
            Box::new(move |e| Ok(e.list(&p6.filtered(), page)?.len())),
        ),
        (
            "count_filtered",
            Box::new(move |e| Ok(e.count(&p7.filtered())? as usize)),
        ),
        (
            "children",
            Box::new(move |e| Ok(e.children(&p8.parent_id, false)?.len())),
        ),
        (
            "chain",
            Box::new(move |e| Ok(e.chain(&p9.child_id)?.map_or(0, |c| c.len()))),
        ),
        (
            "finished_before",
            Box::new(move |e| Ok(e.finished_before(p10.before, false)?.len())),
        ),
        (
            "last_run",
            Box::new(move |e| Ok(e.last_run(&p11.skills, false, false)?.len())),
        ),
        (
            "tool_errors",
            Box::new(move |e| Ok(e.errors(Some(p12.since), Some(p12.until), false)?.len())),
        ),
    ]
}

/// Every query kind over SQLite, same parameters.
pub fn sqlite_queries(p: &BenchParams) -> Vec<(&'static str, SqliteQuery)> {
    let page = Page::new(PAGE, 0);
    let p1 = p.clone();
    let p2 = p.clone();
    let p3 = p.clone();
    let p4 = p.clone();
    let p5 = p.clone();
    let p6 = p.clone();
    let p7 = p.clone();
    let p8 = p.clone();
    let p9 = p.clone();
    let p10 = p.clone();
    let p11 = p.clone();
    let p12 = p.clone();
    vec![
        (
            "get_run",
            Box::new(move |c: &Connection| Ok(sql::get_run(c, &p1.run_id)?.iter().count())),
        ),
        (
            "list_logs",
            Box::new(move |c| Ok(sql::list_logs(c, &p2.run_id)?.len())),
        ),
        (
            "runs_by_skill_page",
            Box::new(move |c| Ok(sql::list_runs(c, &p3.by_skill(), page)?.len())),
        ),
        (
            "count_by_skill",
            Box::new(move |c| Ok(sql::count_runs(c, &p4.by_skill())? as usize)),
        ),
        (
            "runs_by_caller_page",
            Box::new(move |c| Ok(sql::list_runs(c, &p5.by_caller(), page)?.len())),
        ),
        (
            "runs_filtered_page",
            Box::new(move |c| Ok(sql::list_runs(c, &p6.filtered(), page)?.len())),
        ),
        (
            "count_filtered",
            Box::new(move |c| Ok(sql::count_runs(c, &p7.filtered())? as usize)),
        ),
        (
            "children",
            Box::new(move |c| Ok(sql::children(c, &p8.parent_id, false)?.len())),
        ),
        (
            "chain",
            Box::new(move |c| Ok(sql::chain(c, &p9.child_id)?.map_or(0, |v| v.len()))),
        ),
        (
            "finished_before",
            Box::new(move |c| Ok(sql::finished_before(c, p10.before, false)?.len())),
        ),
        (
            "last_run",
            Box::new(move |c| Ok(sql::last_run(c, &p11.skills, false, false)?.len())),
        ),
        (
            "tool_errors",
            Box::new(move |c| Ok(sql::errors(c, Some(p12.since), Some(p12.until), false)?.len())),
        ),
    ]
}
