//! Amending events (docs/contract.md, "Amending events"): a
//! `"replace":true` start replaces its run's start fields, a finish
//! replaces its finish, a log replaces the run's logs with the same seq;
//! and a run whose status is `dry_run` is a dry run.
//!
//! The indexes keep the first start and first finish of each run, as the
//! plain fold does. An image's AMND section lists the amending events that
//! may override an earlier start or finish (an amending event that is
//! itself the first is an ordinary one and is not listed), and the engine
//! keeps them by run id in memory. Queries take the runs named there out
//! of the index path and answer them from this overlay: the run as
//! indexed, with its amendments applied in log order. Amendments are meant
//! to be rare (a gateway upserting a start, finishing twice, rewriting a
//! log line); each query pays for every amended run.

use std::cmp::Ordering;
use std::iter::Peekable;

use super::{Filter, Handle, View};
use crate::error::Result;
use crate::event::{Event, EventData, Micros, RunFinished, RunLog, RunStarted};
use crate::index::{AMEND_FINISH, AMEND_START, F_DRY, NONE};
use crate::view::{is_dry, Run, RunLogEntry, DRY_RUN_STATUS};

/// A run of a merged answer: from the indexes, or amended.
#[derive(Clone, Copy)]
pub(crate) enum Item<'r> {
    Indexed(Handle),
    Amended(&'r Run),
}

/// Index handles and amended runs, both newest first, merged newest
/// first (started_at desc, id desc).
pub(crate) struct WithOverlay<'v, 'a, 'r, I: Iterator<Item = Handle>> {
    view: &'v View<'a>,
    handles: Peekable<I>,
    over: &'r [Run],
    next_over: usize,
}

impl<'r, I: Iterator<Item = Handle>> Iterator for WithOverlay<'_, '_, 'r, I> {
    type Item = Item<'r>;
    fn next(&mut self) -> Option<Item<'r>> {
        let over = self.over.get(self.next_over);
        let take_over = match (self.handles.peek(), over) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(h), Some(r)) => {
                let (ts, id) = self.view.run_key_of(*h);
                (r.started_at, r.id.as_bytes()).cmp(&(ts, id)) == Ordering::Greater
            }
        };
        if take_over {
            self.next_over += 1;
            return over.map(Item::Amended);
        }
        self.handles.next().map(Item::Indexed)
    }
}

/// Logs in (seq, log order): an amending log hides the logs of the same
/// seq before it.
pub(crate) fn drop_replaced_logs(logs: Vec<(bool, RunLogEntry)>) -> Vec<RunLogEntry> {
    let mut out: Vec<RunLogEntry> = Vec::with_capacity(logs.len());
    let mut group_start = 0;
    for (replace, l) in logs {
        if out.last().is_none_or(|p| p.seq != l.seq) {
            group_start = out.len();
        }
        if replace {
            out.truncate(group_start);
        }
        out.push(l);
    }
    out
}

/// A run's events, rebuilt as amending events (see
/// [`View::carry_forward_events`]).
fn carried(run: &Run, start_dry: bool, logs: Vec<RunLogEntry>) -> Vec<Event> {
    let start = RunStarted {
        skill_id: run.skill_id.clone(),
        caller_id: run.caller_id.clone(),
        channel_id: run.channel_id.clone(),
        parent_run_id: run.parent_run_id.clone(),
        inputs: run.inputs.clone(),
        dry_run: start_dry,
    };
    let mut out = vec![Event::run_started(&run.id, run.started_at, start).with_replace()];
    // The first copy of each seq replaces the originals; later ones of
    // the same seq (kept beside it in the view) stay plain, or each would
    // hide the copy before it.
    let mut last_seq = None;
    for l in logs {
        let first_of_seq = last_seq != Some(l.seq);
        last_seq = Some(l.seq);
        let log = RunLog {
            seq: l.seq,
            event_type: l.event_type,
            payload: l.payload,
        };
        let log = Event::run_log(&run.id, l.ts, log);
        out.push(if first_of_seq {
            log.with_replace()
        } else {
            log
        });
    }
    if let Some(at) = run.finished_at {
        let fin = RunFinished {
            status: run.status.clone(),
            output: run.output.clone(),
            error: run.error.clone(),
            tool_calls: run.tool_calls,
            runtime_seconds: run.runtime_seconds,
            input_tokens: run.input_tokens,
            output_tokens: run.output_tokens,
            thinking_tokens: run.thinking_tokens,
        };
        out.push(Event::run_finished(&run.id, at, fin).with_replace());
    }
    out
}

fn newest_first(a: &Run, b: &Run) -> Ordering {
    (b.started_at, b.id.as_bytes()).cmp(&(a.started_at, a.id.as_bytes()))
}

/// Does `run` (amended) pass `f`?
fn run_matches(run: &Run, f: &Filter) -> bool {
    let eq = |want: &Option<String>, have: &str| want.as_ref().is_none_or(|w| w == have);
    (f.include_dry_run || !run.dry_run)
        && f.since.is_none_or(|s| run.started_at >= s)
        && f.until.is_none_or(|u| run.started_at <= u)
        && (!f.top_level || run.parent_run_id.is_empty())
        && eq(&f.skill, &run.skill_id)
        && eq(&f.caller, &run.caller_id)
        && eq(&f.channel, &run.channel_id)
        && eq(&f.parent, &run.parent_run_id)
        && eq(&f.status, &run.status)
}

impl<'a> View<'a> {
    /// Is any run answered from the overlay?
    pub(crate) fn any_amended(&self) -> bool {
        !self.foreign.amends.is_empty()
    }

    /// Is run `id` answered from the overlay?
    pub(crate) fn amended(&self, id: &[u8]) -> bool {
        !self.foreign.amends.is_empty() && self.foreign.amends.contains_key(id)
    }

    /// Is the indexed run a dry run by its status? (Its start's dry_run
    /// flag is checked by the caller.)
    pub(crate) fn dry_by_status(&self, r: &crate::index::LazyRun<'a>) -> bool {
        if r.has_local_finish() {
            return r.status() == DRY_RUN_STATUS.as_bytes();
        }
        self.dry_fins && self.status_of(r) == DRY_RUN_STATUS.as_bytes()
    }

    pub(crate) fn run_key_of(&self, h: Handle) -> (Micros, &'a [u8]) {
        self.srcs[h.src].img.run_key(h.pos)
    }

    /// The run of a start, with its amending events applied in log order.
    pub(crate) fn amended_run(&self, h: Handle) -> Result<Run> {
        self.amended_run_through(h, u64::MAX).map(|(run, _)| run)
    }

    /// [`View::amended_run`] as of segment `through_seq`: finishes and
    /// amending events in later segments are not seen. With the dry_run
    /// flag of its (amended) start.
    pub(crate) fn amended_run_through(&self, h: Handle, through_seq: u64) -> Result<(Run, bool)> {
        let r = self.run(h);
        let mut run = self.materialize_through(h, through_seq)?;
        let Some(amends) = self.foreign.amends.get(r.id) else {
            return Ok((run, r.flags & F_DRY != 0));
        };
        let start_lsn = r.start_lsn;
        let mut finish_lsn = if r.has_local_finish() {
            Some(r.finish_lsn)
        } else {
            self.foreign_after(r.id, start_lsn)
                .filter(|f| f.seq <= through_seq)
                .map(|f| f.lsn)
        };
        let mut start_dry = r.flags & F_DRY != 0;
        let seen = amends
            .iter()
            .filter(|a| a.lsn > start_lsn && a.lsn != NONE && a.seq <= through_seq);
        for a in seen {
            match a.kind {
                AMEND_START => {
                    let ev = self.event_at(a.seq, a.off)?;
                    if let EventData::RunStarted(s) = &ev.data {
                        run.amend_start(ev.ts, s);
                        start_dry = s.dry_run;
                    }
                }
                AMEND_FINISH if finish_lsn.is_none_or(|f| a.lsn > f) => {
                    let ev = self.event_at(a.seq, a.off)?;
                    if let EventData::RunFinished(f) = &ev.data {
                        run.finish(ev.ts, f);
                        finish_lsn = Some(a.lsn);
                    }
                }
                _ => {}
            }
        }
        run.dry_run = is_dry(start_dry, &run.status);
        Ok((run, start_dry))
    }

    /// The events that carry forward, past a retention that drops every
    /// segment below LSN `end_lsn`, each run defined there that is not
    /// finished before `cutoff` (still running, or finished at or after
    /// it), or that a later, kept segment starts again (a duplicate or an
    /// amending start: once the defining start is gone, that start would
    /// otherwise define the run anew, without its finish): its start, its
    /// logs and its finish again, as amending events with their original
    /// times and fields. Appended after everything, they change no answer
    /// before the drop and keep the run after it.
    pub(crate) fn carry_forward_events(&self, end_lsn: u64, cutoff: Micros) -> Result<Vec<Event>> {
        let restarted = self.started_again_after(end_lsn);
        let mut out = Vec::new();
        for (src, s) in self.srcs.iter().enumerate() {
            if s.img.header.first_lsn >= end_lsn {
                break;
            }
            let all = s.img.all();
            for i in 0..all.len() {
                let h = Handle {
                    src,
                    pos: s.img.at(&all, i),
                };
                let r = self.run(h);
                let shadow = r.shadow_seq;
                if !(shadow == NONE || shadow < self.first_seq) {
                    continue;
                }
                let (run, start_dry) = self.amended_run_through(h, u64::MAX)?;
                let done = run.finished_at.is_some_and(|t| t < cutoff);
                if done && !restarted.contains(r.id) {
                    continue;
                }
                out.extend(carried(&run, start_dry, self.logs(&run.id)?));
            }
        }
        Ok(out)
    }

    /// Ids that a start in an image from LSN `end_lsn` on starts again
    /// while an earlier start below `end_lsn` defines them.
    fn started_again_after(&self, end_lsn: u64) -> std::collections::HashSet<&'a [u8]> {
        let dropped: Vec<u64> = self
            .srcs
            .iter()
            .filter(|s| s.img.header.first_lsn < end_lsn)
            .map(|s| s.seq)
            .collect();
        let mut ids = std::collections::HashSet::new();
        for s in self
            .srcs
            .iter()
            .filter(|s| s.img.header.first_lsn >= end_lsn)
        {
            for pos in 0..s.img.n_runs() {
                let r = s.img.run_lazy(pos);
                let shadow = r.shadow_seq();
                if shadow != NONE && dropped.contains(&shadow) {
                    ids.insert(r.id());
                }
            }
        }
        ids
    }

    /// The amended runs that pass `f`, newest first.
    pub(crate) fn overlay(&self, f: &Filter) -> Result<Vec<Run>> {
        let mut out = Vec::new();
        for id in self.foreign.amends.keys() {
            if let Some(h) = self.find(id) {
                let run = self.amended_run(h)?;
                if run_matches(&run, f) {
                    out.push(run);
                }
            }
        }
        out.sort_by(newest_first);
        Ok(out)
    }

    pub(crate) fn with_overlay<'r, I: Iterator<Item = Handle>>(
        &self,
        handles: I,
        over: &'r [Run],
    ) -> WithOverlay<'_, 'a, 'r, I> {
        WithOverlay {
            view: self,
            handles: handles.peekable(),
            over,
            next_over: 0,
        }
    }

    pub(crate) fn item_run(&self, i: Item<'_>) -> Result<Run> {
        match i {
            Item::Indexed(h) => self.materialize(h),
            Item::Amended(r) => Ok(r.clone()),
        }
    }

    pub(crate) fn item_status<'r>(&self, i: &Item<'r>) -> &'r [u8]
    where
        'a: 'r,
    {
        match i {
            Item::Indexed(h) => self.status_of(&self.lazy(*h)),
            Item::Amended(r) => r.status.as_bytes(),
        }
    }

    pub(crate) fn item_key(&self, i: &Item<'_>) -> (Micros, Vec<u8>) {
        match i {
            Item::Indexed(h) => {
                let (ts, id) = self.run_key_of(*h);
                (ts, id.to_vec())
            }
            Item::Amended(r) => (r.started_at, r.id.as_bytes().to_vec()),
        }
    }
}
