//! `auditlog search`: full-text search over runs (docs/search.md).
//!
//! It opens the log read-only and first brings the full-text index up to
//! the log's head (taking the index's lock for that). When another process
//! (a gateway's indexer) holds that lock, it searches what is indexed and
//! says on stderr how far behind that is.

use clap::Args;
use indicatif::ProgressBar;

use super::log_cmds::{instant_arg, open_reader};
use super::output::{emit_list, progress, Counts};
use super::{CliError, CliResult, Ctx};
use auditlog::event::time::to_rfc3339;
use auditlog::fulltext::{Filters, FullText, FullTextError, FullTextOptions, Hit};
use auditlog::LogReader;

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// tantivy query syntax: words, "phrases", field:value, AND/OR/NOT.
    /// Fields: inputs, output, error, logs (text); id, skill_id, caller_id,
    /// channel_id, parent_run_id, status, tool, error_type, event_type
    /// (exact);
    /// started_at:[T TO T]. Words without a field search the text fields;
    /// all words must match unless joined by OR.
    pub query: String,
    /// Most runs to return.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    #[arg(long)]
    pub skill: Option<String>,
    #[arg(long)]
    pub caller: Option<String>,
    #[arg(long)]
    pub channel: Option<String>,
    #[arg(long)]
    pub status: Option<String>,
    /// started_at at or after T (µs or RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// started_at at or before T (µs or RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
}

/// Lag worth a progress bar (events).
const PROGRESS_MIN_EVENTS: u64 = 50_000;

fn cli_err(e: FullTextError) -> CliError {
    match e {
        FullTextError::Query { .. } => CliError::usage(e.to_string()),
        FullTextError::Log(inner) => inner.into(),
        other => CliError::failed(other.to_string()),
    }
}

fn progress_bar(total: u64) -> ProgressBar {
    if total < PROGRESS_MIN_EVENTS {
        return ProgressBar::hidden();
    }
    progress(Some(total), "indexing for search", Counts::Items("events"))
}

/// Bring a writable index up to the log's head, with a progress bar.
fn catch_up(ft: &FullText, reader: &LogReader) -> Result<(), FullTextError> {
    if let Some(why) = ft.rebuilt() {
        if why != "it does not exist" {
            eprintln!("auditlog: rebuilding the full-text index from the log: {why}");
        }
    }
    let lag = ft.lag(reader);
    let pb = progress_bar(lag.events);
    let base = lag.indexed_lsn;
    let r = ft.catch_up(reader, |lsn| pb.set_position(lsn.saturating_sub(base)));
    pb.finish_and_clear();
    r.map(|_| ())
}

fn open_and_search(
    reader: &LogReader,
    a: &SearchArgs,
    filters: &Filters,
) -> Result<Vec<Hit>, FullTextError> {
    let opts = FullTextOptions {
        verify_on_open: false,
        ..FullTextOptions::default()
    };
    match FullText::open_for(reader, &opts) {
        Ok(ft) => {
            // A bad query fails before any indexing work.
            ft.parse_query(&a.query)?;
            let first = catch_up(&ft, reader).and_then(|_| ft.search(&a.query, filters, a.limit));
            match first {
                Err(e @ (FullTextError::Index { .. } | FullTextError::Corrupt(_))) => {
                    // A damaged index shows itself on use: rebuild, retry.
                    drop(ft);
                    eprintln!("auditlog: the full-text index failed ({e}); rebuilding it");
                    let opts = FullTextOptions {
                        force_rebuild: true,
                        ..opts
                    };
                    let ft = FullText::open_for(reader, &opts)?;
                    catch_up(&ft, reader)?;
                    ft.search(&a.query, filters, a.limit)
                }
                other => other,
            }
        }
        Err(FullTextError::Locked(_)) => {
            let ft = FullText::open_read_only(reader.dir())?;
            let hits = ft.search(&a.query, filters, a.limit)?;
            let lag = ft.lag(reader);
            if lag.events > 0 {
                eprintln!(
                    "auditlog: note: another process is indexing; search is {} events (about {:.1} s) behind the log",
                    lag.events, lag.seconds
                );
            }
            Ok(hits)
        }
        Err(e) => Err(e),
    }
}

pub fn search(ctx: &Ctx, a: SearchArgs) -> CliResult {
    let filters = Filters {
        skill: a.skill.clone(),
        caller: a.caller.clone(),
        channel: a.channel.clone(),
        status: a.status.clone(),
        since: instant_arg("since", &a.since)?,
        until: instant_arg("until", &a.until)?,
    };
    if a.limit == 0 {
        return Err(CliError::usage("--limit must be at least 1"));
    }
    let reader = open_reader(ctx)?;
    let hits = open_and_search(&reader, &a, &filters).map_err(cli_err)?;
    let headers = ["score", "id", "skill_id", "status", "started_at", "snippet"];
    emit_list(
        ctx.format,
        &hits,
        |h| h.to_json(),
        &headers,
        |h| {
            vec![
                format!("{:.3}", h.score),
                h.run.id.clone(),
                h.run.skill_id.clone(),
                h.run.status.clone(),
                to_rfc3339(h.run.started_at),
                h.snippet.clone(),
            ]
        },
    )
}
