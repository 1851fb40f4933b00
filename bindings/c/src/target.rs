//! What a store handle talks to: a log opened in this process
//! (`auditlog_open`) or `auditlog serve` over its Unix socket
//! (`auditlog_connect`). Every export works on either through the calls
//! below, so both answer with the same values, statuses and messages.

use std::time::Duration;

use auditlog::{
    AuditStore, EncodedBatch, ErrorGroup, Event, Filter, LsnRange, Micros, Page, Receipt, Result,
    Run, RunLogEntry,
};
use auditlog_client::{Client, ClientConfig};
use serde::Deserialize;

use crate::status::{CallResult, Failure};

pub(crate) enum Target {
    /// Boxed: a store is a kilobyte, a client a tenth of that.
    Embedded(Box<AuditStore>),
    Served(Client),
}

/// What an append hands back: a receipt to wait on (embedded), or the
/// LSNs of events the server already made durable (served).
pub(crate) enum Appended {
    /// Nothing was queued (every event skipped).
    Nothing,
    Pending(Receipt),
    Durable(LsnRange),
}

/// What retention dropped, in the C answer's terms.
pub(crate) struct Purged {
    pub segments: u64,
    pub events: u64,
    pub bytes: u64,
    pub first_kept_lsn: u64,
}

/// The JSON options of `auditlog_connect`. Unknown keys are an error.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectOptions {
    /// How long one call keeps retrying while the server is busy,
    /// restarting or unreachable (default 30000).
    retry_for_ms: Option<u64>,
    /// Connections kept open for reuse (default 8).
    max_idle_connections: Option<usize>,
}

/// Longest `retry_for_ms` accepted (an hour): a typo must not mean a call
/// that never returns.
const MAX_RETRY_FOR_MS: u64 = 3_600_000;

impl ConnectOptions {
    pub fn parse(json: Option<&str>) -> CallResult<ConnectOptions> {
        match json {
            None => Ok(ConnectOptions::default()),
            Some(t) if t.trim().is_empty() => Ok(ConnectOptions::default()),
            Some(t) => serde_json::from_str(t)
                .map_err(|e| Failure::invalid(format!("connect options: {e}"))),
        }
    }

    pub fn client_config(&self, path: &str) -> CallResult<ClientConfig> {
        let mut cfg = ClientConfig::new(path);
        if let Some(ms) = self.retry_for_ms {
            if ms > MAX_RETRY_FOR_MS {
                return Err(Failure::invalid(format!(
                    "connect options: retry_for_ms {ms} is over {MAX_RETRY_FOR_MS}"
                )));
            }
            cfg.retry_for = Duration::from_millis(ms);
        }
        if let Some(n) = self.max_idle_connections {
            cfg.max_idle_connections = n;
        }
        Ok(cfg)
    }
}

/// Append as few requests as the server's size limit allows. Every event
/// was checked before the first request (`EncodedBatch::encode`), so a
/// split can only part the call's events between requests when the server
/// fails half-way (each request is stored once, all or nothing).
fn append_split(c: &Client, events: &[Event]) -> Result<LsnRange> {
    let batch = EncodedBatch::encode(events)?;
    if batch.bytes() <= c.max_request_bytes() || events.len() == 1 {
        return c.append_encoded(&batch, &c.new_key()).map(|a| a.lsns);
    }
    let (a, b) = events.split_at(events.len() / 2);
    let first = append_split(c, a)?;
    let second = append_split(c, b)?;
    Ok(LsnRange {
        first: first.first,
        last: second.last,
    })
}

/// Runs started earlier in the same batch count as started.
fn require_runs(store: &AuditStore, events: &[Event]) -> Result<()> {
    let mut started = std::collections::HashSet::new();
    for ev in events {
        match ev.data {
            auditlog::EventData::RunStarted(_) => {
                started.insert(ev.run_id.as_str());
            }
            _ if started.contains(ev.run_id.as_str()) => {}
            _ => store.require_started(&ev.run_id)?,
        }
    }
    Ok(())
}

impl Target {
    /// Append `events`; with `require_run`, a `run_log` or `run_finished`
    /// of a run never started is `NotFound` and nothing is written.
    pub fn append(&self, events: &[Event], require_run: bool) -> Result<Appended> {
        match self {
            Target::Embedded(s) => {
                if require_run {
                    require_runs(s, events)?;
                }
                Ok(s.append_batch(events)?
                    .map_or(Appended::Nothing, Appended::Pending))
            }
            Target::Served(c) if require_run => c
                .append_require_run(events)
                .map(|a| Appended::Durable(a.lsns)),
            Target::Served(c) => append_split(c, events).map(Appended::Durable),
        }
    }

    pub fn flush(&self) -> Result<u64> {
        match self {
            Target::Embedded(s) => s.flush(),
            Target::Served(c) => c.flush(),
        }
    }

    pub fn get_run(&self, id: &str) -> Result<Option<Run>> {
        match self {
            Target::Embedded(s) => s.get_run(id),
            Target::Served(c) => c.get_run(id),
        }
    }

    pub fn list_logs(&self, id: &str) -> Result<Vec<RunLogEntry>> {
        match self {
            Target::Embedded(s) => s.list_logs(id),
            Target::Served(c) => c.list_logs(id),
        }
    }

    pub fn list_runs(&self, f: &Filter, page: Page) -> Result<Vec<Run>> {
        match self {
            Target::Embedded(s) => s.list_runs(f, page),
            Target::Served(c) => c.list_runs(f, page),
        }
    }

    pub fn count_runs(&self, f: &Filter) -> Result<u64> {
        match self {
            Target::Embedded(s) => s.count_runs(f),
            Target::Served(c) => c.count_runs(f),
        }
    }

    pub fn children(&self, id: &str, include_dry_run: bool) -> Result<Vec<Run>> {
        match self {
            Target::Embedded(s) => s.children(id, include_dry_run),
            Target::Served(c) => c.children(id, include_dry_run),
        }
    }

    pub fn parent_chain(&self, id: &str) -> Result<Vec<Run>> {
        match self {
            Target::Embedded(s) => s.parent_chain(id),
            Target::Served(c) => c.parent_chain(id),
        }
    }

    pub fn last_run_per_skill(
        &self,
        skills: &[String],
        include_failed: bool,
    ) -> Result<Vec<(String, Option<Micros>)>> {
        match self {
            Target::Embedded(s) => s.last_run_per_skill(skills, include_failed),
            Target::Served(c) => c.last_run_per_skill(skills, include_failed),
        }
    }

    pub fn finished_runs_before(&self, before: Micros, limit: Option<usize>) -> Result<Vec<Run>> {
        match self {
            Target::Embedded(s) => s.finished_runs_before_limit(before, limit),
            Target::Served(c) => c.finished_runs_before_limit(before, limit),
        }
    }

    pub fn tool_errors(
        &self,
        since: Option<Micros>,
        until: Option<Micros>,
    ) -> Result<Vec<ErrorGroup>> {
        match self {
            Target::Embedded(s) => s.tool_errors(since, until),
            Target::Served(c) => c.tool_errors(since, until),
        }
    }

    /// Drop whole sealed segments older than `cutoff` (the server does it
    /// while it holds the log).
    pub fn purge_older_than(&self, cutoff: Micros) -> Result<Purged> {
        match self {
            Target::Embedded(s) => {
                let r = s.purge_older_than(cutoff)?;
                Ok(Purged {
                    segments: r.dropped.len() as u64,
                    events: r.events(),
                    bytes: r.bytes(),
                    first_kept_lsn: r.first_kept_lsn,
                })
            }
            Target::Served(c) => {
                // The report as `auditlog retain` prints it.
                let v = c.purge_older_than(cutoff)?;
                let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
                Ok(Purged {
                    segments: v
                        .get("dropped_segments")
                        .and_then(|d| d.as_array())
                        .map_or(0, |d| d.len() as u64),
                    events: n("dropped_events"),
                    bytes: n("dropped_bytes"),
                    first_kept_lsn: n("first_kept_lsn"),
                })
            }
        }
    }

    /// Flush and close the log (embedded); let go of the connections
    /// (served: the server keeps running).
    pub fn close(self) -> Result<()> {
        match self {
            Target::Embedded(s) => (*s).close(),
            Target::Served(c) => {
                drop(c);
                Ok(())
            }
        }
    }
}
