//! `auditlog calls`: tool calls, with or without a run (docs/tool-calls.md),
//! answered from the per-segment call indexes.

use clap::Args;

use super::log_cmds::{instant_arg, open_reader};
use super::output::{emit_list, table, Out};
use super::{CliError, CliResult, Ctx, Format};
use auditlog::event::time::to_rfc3339;
use auditlog::query::{Call, CallCursor, CallFilter, CallKey, CallOrder, CallPage, Engine};

#[derive(Args, Debug)]
pub struct CallsArgs {
    #[arg(long)]
    pub tool: Option<String>,
    #[arg(long)]
    pub engine: Option<String>,
    /// The session or channel (`--session` is the same).
    #[arg(long, visible_alias = "session")]
    pub channel: Option<String>,
    /// The caller or agent (`--agent` is the same).
    #[arg(long, visible_alias = "agent")]
    pub caller: Option<String>,
    #[arg(long)]
    pub workspace: Option<String>,
    /// `ok`, `error`, or a gateway's own word.
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub error_type: Option<String>,
    /// Calls of this run.
    #[arg(long = "run")]
    pub run_id: Option<String>,
    /// Calls with ts at or after T (µs or RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Calls with ts at or before T.
    #[arg(long)]
    pub until: Option<String>,
    /// Calls of dry runs too.
    #[arg(long)]
    pub include_dry_run: bool,
    /// Oldest first (the default is newest first).
    #[arg(long)]
    pub oldest_first: bool,
    /// At most N calls.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Continue after this call: `TS,LSN` of the last call of the previous
    /// page (its `ts` and `lsn`).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Print `{"count":N}` instead of the calls.
    #[arg(long, conflicts_with_all = ["limit", "cursor", "oldest_first"])]
    pub count: bool,
    /// With --count: one `{"KEY":value,"count":N}` line per value, most
    /// first (tool, engine, channel_id, caller_id, workspace_id, status,
    /// error_type, run_id).
    #[arg(long, requires = "count")]
    pub by: Option<String>,
}

impl CallsArgs {
    fn filter(&self) -> Result<CallFilter, CliError> {
        Ok(CallFilter {
            tool: self.tool.clone(),
            engine: self.engine.clone(),
            channel: self.channel.clone(),
            caller: self.caller.clone(),
            workspace: self.workspace.clone(),
            status: self.status.clone(),
            error_type: self.error_type.clone(),
            run_id: self.run_id.clone(),
            since: instant_arg("since", &self.since)?,
            until: instant_arg("until", &self.until)?,
            include_dry_run: self.include_dry_run,
        })
    }
}

fn engine(ctx: &Ctx) -> Result<Engine, CliError> {
    let mut e = Engine::new(open_reader(ctx)?);
    e.progress = super::output::index_progress();
    Ok(e)
}

const HEADERS: &[&str] = &[
    "ts",
    "lsn",
    "tool",
    "engine",
    "status",
    "error_type",
    "ms",
    "channel",
    "caller",
    "run",
];

fn row(c: &Call) -> Vec<String> {
    vec![
        to_rfc3339(c.ts),
        c.lsn.to_string(),
        c.call.tool.clone(),
        c.call.engine.clone(),
        c.call.status.clone(),
        c.call.error_type.clone(),
        c.call
            .duration_ms
            .map_or_else(|| "-".into(), |d| format!("{d:.1}")),
        c.call.channel_id.clone(),
        c.call.caller_id.clone(),
        c.run_id.clone(),
    ]
}

pub fn calls(ctx: &Ctx, a: CallsArgs) -> CliResult {
    let f = a.filter()?;
    let mut e = engine(ctx)?;
    if a.count {
        return count(ctx, &mut e, &f, a.by.as_deref());
    }
    let cursor = match &a.cursor {
        Some(c) => {
            Some(CallCursor::parse(c).map_err(|e| CliError::usage(format!("--cursor: {e}")))?)
        }
        None => None,
    };
    let page = CallPage {
        limit: a.limit,
        cursor,
        order: if a.oldest_first {
            CallOrder::OldestFirst
        } else {
            CallOrder::NewestFirst
        },
    };
    let calls = e.calls(&f, page)?;
    emit_list(ctx.format, &calls, Call::to_json, HEADERS, row)
}

fn count(ctx: &Ctx, e: &mut Engine, f: &CallFilter, by: Option<&str>) -> CliResult {
    let mut out = Out::new();
    let Some(by) = by else {
        let n = e.count_calls(f)?;
        match ctx.format {
            Format::Json => out.line(&format!("{{\"count\":{n}}}"))?,
            Format::Table => out.line(table(&["count"], &[vec![n.to_string()]]).trim_end())?,
        }
        return out.flush();
    };
    let key = CallKey::parse(by).map_err(|e| CliError::usage(format!("--by: {e}")))?;
    let groups = e.count_calls_by(f, key)?;
    emit_list(
        ctx.format,
        &groups,
        |(v, n)| {
            let mut s = String::from("{\"");
            s.push_str(key.name());
            s.push_str("\":");
            auditlog::event::json::json_string(v, &mut s);
            s.push_str(&format!(",\"count\":{n}}}"));
            s
        },
        &[key.name(), "count"],
        |(v, n)| vec![v.clone(), n.to_string()],
    )
}
