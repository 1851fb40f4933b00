//! Query commands: runs, count, run, children, chain, last-run, errors
//! (docs/contract.md, "The command line"), answered from the indexes (src/query).

use clap::Args;

use super::log_cmds::{instant_arg, open_reader};
use super::output::{emit_list, object_rows, table, Out};
use super::{CliError, CliResult, Ctx, Format};
use auditlog::event::time::to_rfc3339;
use auditlog::query::{Engine, ErrorGroup, Filter, Page};
use auditlog::view::Run;

/// Filters shared by `runs` and `count` (docs/contract.md, "The command line").
#[derive(Args, Debug, Clone, Default)]
pub struct Filters {
    #[arg(long)]
    pub skill: Option<String>,
    #[arg(long)]
    pub caller: Option<String>,
    #[arg(long)]
    pub channel: Option<String>,
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub parent: Option<String>,
    #[arg(long)]
    pub top_level: bool,
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long)]
    pub include_dry_run: bool,
}

#[derive(Args, Debug)]
pub struct RunsArgs {
    #[command(flatten)]
    pub filters: Filters,
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub offset: Option<usize>,
}

#[derive(Args, Debug)]
pub struct CountArgs {
    #[command(flatten)]
    pub filters: Filters,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    pub id: String,
}

#[derive(Args, Debug)]
pub struct ChildrenArgs {
    pub id: String,
    #[arg(long)]
    pub include_dry_run: bool,
}

#[derive(Args, Debug)]
pub struct LastRunArgs {
    #[arg(long, value_delimiter = ',', required = true)]
    pub skills: Vec<String>,
    #[arg(long)]
    pub include_failed: bool,
    #[arg(long)]
    pub include_dry_run: bool,
}

#[derive(Args, Debug)]
pub struct ErrorsArgs {
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long)]
    pub include_dry_run: bool,
}

fn engine(ctx: &Ctx) -> Result<Engine, CliError> {
    let mut e = Engine::new(open_reader(ctx)?);
    e.progress = super::output::index_progress();
    Ok(e)
}

impl Filters {
    fn to_filter(&self) -> Result<Filter, CliError> {
        Ok(Filter {
            skill: self.skill.clone(),
            caller: self.caller.clone(),
            channel: self.channel.clone(),
            status: self.status.clone(),
            parent: self.parent.clone(),
            top_level: self.top_level,
            since: instant_arg("since", &self.since)?,
            until: instant_arg("until", &self.until)?,
            include_dry_run: self.include_dry_run,
        })
    }
}

fn run_row(r: &Run) -> Vec<String> {
    vec![
        to_rfc3339(r.started_at),
        r.id.clone(),
        r.skill_id.clone(),
        r.caller_id.clone(),
        r.status.clone(),
        r.finished_at.map_or_else(|| "-".to_string(), to_rfc3339),
        r.parent_run_id.clone(),
    ]
}

const RUN_HEADERS: &[&str] = &[
    "started_at",
    "id",
    "skill",
    "caller",
    "status",
    "finished_at",
    "parent",
];

fn print_runs(ctx: &Ctx, runs: &[Run]) -> CliResult {
    emit_list(ctx.format, runs, Run::to_json, RUN_HEADERS, run_row)
}

pub fn runs(ctx: &Ctx, a: RunsArgs) -> CliResult {
    let f = a.filters.to_filter()?;
    let page = Page {
        limit: a.limit,
        offset: a.offset.unwrap_or(0),
    };
    let runs = engine(ctx)?.list(&f, page)?;
    print_runs(ctx, &runs)
}

pub fn count(ctx: &Ctx, a: CountArgs) -> CliResult {
    let f = a.filters.to_filter()?;
    let n = engine(ctx)?.count(&f)?;
    let mut out = Out::new();
    match ctx.format {
        Format::Json => out.line(&format!("{{\"count\":{n}}}"))?,
        Format::Table => out.line(table(&["count"], &[vec![n.to_string()]]).trim_end())?,
    }
    out.flush()
}

fn unknown(id: &str) -> CliError {
    CliError::failed(format!(
        "no run {id:?} is stored (check the id, or `auditlog runs` to list runs)"
    ))
}

pub fn run(ctx: &Ctx, a: IdArgs) -> CliResult {
    let Some((run, logs)) = engine(ctx)?.run_with_logs(&a.id)? else {
        return Err(unknown(&a.id));
    };
    let mut out = Out::new();
    match ctx.format {
        Format::Json => out.line(&run.to_json_with_logs(&logs))?,
        Format::Table => {
            let mut rows = object_rows(&run.to_json())?;
            for l in &logs {
                rows.push(vec![
                    format!("log {}", l.seq),
                    format!(
                        "{} {} {}",
                        to_rfc3339(l.ts),
                        l.event_type,
                        l.payload.as_str()
                    ),
                ]);
            }
            out.line(table(&["field", "value"], &rows).trim_end())?;
        }
    }
    out.flush()
}

pub fn children(ctx: &Ctx, a: ChildrenArgs) -> CliResult {
    let runs = engine(ctx)?.children(&a.id, a.include_dry_run)?;
    print_runs(ctx, &runs)
}

pub fn chain(ctx: &Ctx, a: IdArgs) -> CliResult {
    let Some(runs) = engine(ctx)?.chain(&a.id)? else {
        return Err(unknown(&a.id));
    };
    print_runs(ctx, &runs)
}

pub fn last_run(ctx: &Ctx, a: LastRunArgs) -> CliResult {
    let found = engine(ctx)?.last_run(&a.skills, a.include_failed, a.include_dry_run)?;
    let mut out = Out::new();
    match ctx.format {
        Format::Json => {
            let mut s = String::from("{");
            for (i, (skill, t)) in found.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                auditlog::event::json::json_string(skill, &mut s);
                s.push(':');
                match t {
                    Some(t) => {
                        s.push('"');
                        s.push_str(&to_rfc3339(*t));
                        s.push('"');
                    }
                    None => s.push_str("null"),
                }
            }
            s.push('}');
            out.line(&s)?;
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = found
                .iter()
                .map(|(k, t)| vec![k.clone(), t.map_or_else(|| "-".into(), to_rfc3339)])
                .collect();
            out.line(table(&["skill", "last_started_at"], &rows).trim_end())?;
        }
    }
    out.flush()
}

pub fn errors(ctx: &Ctx, a: ErrorsArgs) -> CliResult {
    let since = instant_arg("since", &a.since)?;
    let until = instant_arg("until", &a.until)?;
    let groups = engine(ctx)?.errors(since, until, a.include_dry_run)?;
    let headers = [
        "channel",
        "tool",
        "error_type",
        "count",
        "first",
        "last",
        "avg_ms",
        "callers",
    ];
    emit_list(ctx.format, &groups, ErrorGroup::to_json, &headers, |g| {
        vec![
            g.channel_id.clone(),
            g.tool.clone(),
            g.error_type.clone(),
            g.count.to_string(),
            to_rfc3339(g.first_ts),
            to_rfc3339(g.last_ts),
            g.avg_duration_ms
                .map_or_else(|| "-".into(), |v| format!("{v:.1}")),
            g.caller_ids.join(","),
        ]
    })
}
