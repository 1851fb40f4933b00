//! The one run fold: what each event does to the view of its run
//! (docs/contract.md, "The run view").
//!
//! Every consumer that turns events into runs asks this module, and only
//! this module, what an event does: the query engine's index builder, the
//! full-text indexer, the SQLite baseline's loader, the anomaly count of
//! `stats`, and [`Fold`], the plain in-memory fold that the differential
//! tests hold the others against. The rules, in log (LSN) order:
//!
//! - the first `run_started` of an id defines the run; a later one is kept
//!   in the log and ignored ([`Effect::DuplicateStart`]);
//! - the first `run_finished` *after* that start finishes it; one before
//!   any start ([`Effect::FinishBeforeStart`]) or after the counting one
//!   ([`Effect::DuplicateFinish`]) is kept in the log and ignored;
//! - every `run_log` belongs to its run, wherever it sits in the log, once
//!   the run is started at all; logs of ids that are never started are
//!   orphans, kept and replayed, ignored by views;
//! - an **amending** event (`"replace":true`, docs/queries.md, "Amending
//!   events") overrides instead of being ignored: a start of a run already
//!   started replaces its start fields ([`Effect::AmendStart`]), a finish
//!   of a run already finished replaces its finish ([`Effect::AmendFinish`]),
//!   and a log hides the run's earlier logs with the same seq
//!   ([`Effect::ReplaceLog`]). Otherwise it acts as a plain event;
//! - a run is a dry run if its start says so or its status is `dry_run`
//!   ([`crate::view::is_dry`]).
//!
//! To change what an event does (for example an "amend" event that
//! replaces a start), change [`RunState::apply`] and nothing else; the
//! consumers act on the [`Effect`] it returns.

use std::collections::HashMap;

use crate::event::borrowed::{DataRef, EventRef};
use crate::event::{Event, EventData};
use crate::view::{is_dry, Run, RunLogEntry};

/// What the fold remembers of one run id between its events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunState {
    /// LSN of the run's defining `run_started`, once seen.
    pub start_lsn: Option<u64>,
    /// The run's counting `run_finished` was seen.
    pub finished: bool,
}

/// An event's kind, as far as the fold tells events apart.
#[derive(Clone, Copy)]
enum Kind {
    Start,
    Finish,
    Log,
    System,
    Call,
}

/// What one event does to the view of its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The run's first `run_started`: it defines the run.
    Start,
    /// A `run_started` of a run already started: ignored by views.
    DuplicateStart,
    /// An amending `run_started` of a run already started: its start
    /// fields (and started_at) replace the run's; the finish stays.
    AmendStart,
    /// The first `run_finished` after the start: the run is finished.
    Finish,
    /// A `run_finished` of a run already finished: ignored by views.
    DuplicateFinish,
    /// An amending `run_finished` of a run already finished: it replaces
    /// the finish (the last one wins).
    AmendFinish,
    /// A `run_finished` with no start before it in the log: ignored by
    /// views, even if a start comes later.
    FinishBeforeStart,
    /// A `run_log`: part of the run once (if ever) the run is started.
    Log,
    /// An amending `run_log`: like [`Effect::Log`], and the run's earlier
    /// logs with the same seq no longer count.
    ReplaceLog,
    /// A system event (a cut, a repair, a retention pass): the log's own
    /// record, part of no run.
    System,
    /// A `tool_call` event: a record of its own, never an orphan; it takes
    /// its run's scope where its own is empty (docs/tool-calls.md) but
    /// does not change the run view.
    Call,
}

impl Effect {
    /// Whether the event changes what views show (a log line changes the
    /// view only of a run that is, or will be, started).
    pub fn counts(self) -> bool {
        matches!(
            self,
            Effect::Start
                | Effect::AmendStart
                | Effect::Finish
                | Effect::AmendFinish
                | Effect::Log
                | Effect::ReplaceLog
        )
    }
}

impl RunState {
    /// Fold the event at `lsn` (events of one id must come in LSN order)
    /// and say what it does.
    pub fn apply(&mut self, lsn: u64, ev: &Event) -> Effect {
        let kind = match &ev.data {
            EventData::RunStarted(_) => Kind::Start,
            EventData::RunFinished(_) => Kind::Finish,
            EventData::RunLog(_) => Kind::Log,
            EventData::System(_) => Kind::System,
            EventData::ToolCall(_) => Kind::Call,
        };
        self.apply_kind(lsn, kind, ev.is_replace())
    }

    /// [`RunState::apply`] on an event read in place (an index build reads
    /// stored events without copying them into an [`Event`]).
    pub fn apply_ref(&mut self, lsn: u64, ev: &EventRef<'_>) -> Effect {
        let kind = match &ev.data {
            DataRef::RunStarted(_) => Kind::Start,
            DataRef::RunFinished(_) => Kind::Finish,
            DataRef::RunLog(_) => Kind::Log,
            DataRef::System(_) => Kind::System,
            DataRef::ToolCall(_) => Kind::Call,
        };
        self.apply_kind(lsn, kind, ev.is_replace())
    }

    /// The rule itself: what an event of `kind` (amending or not) does.
    fn apply_kind(&mut self, lsn: u64, kind: Kind, amending: bool) -> Effect {
        match kind {
            Kind::Start => match self.start_lsn {
                Some(_) if amending => Effect::AmendStart,
                Some(_) => Effect::DuplicateStart,
                None => {
                    self.start_lsn = Some(lsn);
                    Effect::Start
                }
            },
            Kind::Finish => match (self.start_lsn, self.finished) {
                (None, _) => Effect::FinishBeforeStart,
                (Some(start), false) if finish_follows(start, lsn) => {
                    self.finished = true;
                    Effect::Finish
                }
                (Some(start), true) if amending && finish_follows(start, lsn) => {
                    Effect::AmendFinish
                }
                (Some(_), _) => Effect::DuplicateFinish,
            },
            Kind::Log if amending => Effect::ReplaceLog,
            Kind::Log => Effect::Log,
            Kind::System => Effect::System,
            Kind::Call => Effect::Call,
        }
    }

    pub fn is_started(&self) -> bool {
        self.start_lsn.is_some()
    }
}

/// Whether a finish at `finish_lsn` may finish the run whose defining
/// start is at `start_lsn` (no earlier finish having done so). The query
/// engine, which keeps a run's start and a finish stored in another
/// segment apart, resolves them with this rule.
pub fn finish_follows(start_lsn: u64, finish_lsn: u64) -> bool {
    finish_lsn > start_lsn
}

/// Events the run view ignores, counted (for `stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Anomalies {
    /// `run_started` events ignored because the id had started before.
    pub duplicate_starts: u64,
    /// `run_finished` events ignored: the run was already finished.
    pub duplicate_finishes: u64,
    /// `run_finished` events with no stored start before them.
    pub finishes_without_start: u64,
    /// `run_log` events of ids that have no stored start.
    pub orphan_logs: u64,
    /// Not an anomaly: what the log recorded of its own cuts, repairs and
    /// retention passes (system events, which no view shows).
    pub system: SystemTally,
}

/// The system events of a log, summed (shown by `stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemTally {
    pub torn_tail_cuts: u64,
    pub repairs: u64,
    pub retentions: u64,
    /// Signed checkpoints of the Merkle tree (docs/proofs.md).
    pub checkpoints: u64,
    /// LSNs skipped by cuts and repairs (never given to an event).
    pub skipped_lsns: u64,
    /// Bytes moved into `quarantine/` by cuts and repairs.
    pub quarantined_bytes: u64,
    /// The newest one: (its LSN, its timestamp, its record's name).
    pub last: Option<(u64, crate::event::Micros, &'static str)>,
}

impl SystemTally {
    fn add(&mut self, lsn: u64, ev: &Event, r: &crate::event::system::SystemRecord) {
        use crate::event::system::SystemRecord as R;
        match r {
            R::TornTailCut(_) => self.torn_tail_cuts += 1,
            R::Repair(_) => self.repairs += 1,
            R::Retention(_) => self.retentions += 1,
            R::Checkpoint(_) => {
                // Routine: counted, but not "the newest thing the log did
                // to itself" that `stats` shows.
                self.checkpoints += 1;
                return;
            }
        }
        if let Some(c) = r.cut() {
            self.skipped_lsns += c.skip_to_lsn.saturating_sub(c.skip_from_lsn);
            self.quarantined_bytes += c.quarantine_bytes;
        }
        self.last = Some((lsn, ev.ts, r.name()));
    }
}

/// The fold's state of every id seen, without the runs themselves: what a
/// streaming consumer (a loader, an anomaly count) keeps.
#[derive(Debug, Default)]
pub struct RunStates {
    states: HashMap<String, RunState>,
    /// Logs per id never started (so far).
    logs_of_unstarted: HashMap<String, u64>,
    anomalies: Anomalies,
}

impl RunStates {
    pub fn new() -> RunStates {
        RunStates::default()
    }

    /// Fold the event at `lsn` (events in LSN order) and say what it does.
    pub fn apply(&mut self, lsn: u64, ev: &Event) -> Effect {
        if let EventData::System(r) = &ev.data {
            self.anomalies.system.add(lsn, ev, r);
            return Effect::System;
        }
        let state = match self.states.get_mut(&ev.run_id) {
            Some(s) => s,
            None => self.states.entry(ev.run_id.clone()).or_default(),
        };
        let effect = state.apply(lsn, ev);
        let a = &mut self.anomalies;
        match effect {
            Effect::DuplicateStart => a.duplicate_starts += 1,
            Effect::DuplicateFinish => a.duplicate_finishes += 1,
            Effect::FinishBeforeStart => a.finishes_without_start += 1,
            Effect::Log | Effect::ReplaceLog if !state.is_started() => {
                *self.logs_of_unstarted.entry(ev.run_id.clone()).or_default() += 1;
            }
            Effect::Start => {
                // Its earlier logs are the run's, not orphans.
                self.logs_of_unstarted.remove(&ev.run_id);
            }
            Effect::Log
            | Effect::ReplaceLog
            | Effect::Finish
            | Effect::AmendStart
            | Effect::AmendFinish
            | Effect::System => {}
            Effect::Call => {}
        }
        effect
    }

    /// The state of `id`, if any event of it was folded.
    pub fn get(&self, id: &str) -> Option<&RunState> {
        self.states.get(id)
    }

    /// The anomalies of everything folded so far.
    pub fn anomalies(&self) -> Anomalies {
        Anomalies {
            orphan_logs: self.logs_of_unstarted.values().sum(),
            ..self.anomalies
        }
    }
}

/// One run as [`Fold`] holds it.
#[derive(Debug, Clone)]
struct Folded {
    run: Option<Run>,
    /// The dry_run flag of the run's (latest counting) start.
    start_dry: bool,
    /// (seq, lsn, entry): sorted on output.
    logs: Vec<(u64, u64, RunLogEntry)>,
}

/// The whole fold in memory: every run with its logs. The reference the
/// index-backed engine, the full-text index and the SQLite baseline are
/// tested against, and a simple view for small logs.
#[derive(Debug, Default)]
pub struct Fold {
    states: RunStates,
    runs: HashMap<String, Folded>,
}

impl Fold {
    pub fn new() -> Fold {
        Fold::default()
    }

    /// Fold events in log order, numbered from LSN 0.
    pub fn of<'a>(events: impl IntoIterator<Item = &'a Event>) -> Fold {
        let mut f = Fold::new();
        for (lsn, ev) in events.into_iter().enumerate() {
            f.apply(lsn as u64, ev);
        }
        f
    }

    /// Fold the event at `lsn` (events in LSN order).
    pub fn apply(&mut self, lsn: u64, ev: &Event) -> Effect {
        let effect = self.states.apply(lsn, ev);
        let slot = self
            .runs
            .entry(ev.run_id.clone())
            .or_insert_with(|| Folded {
                run: None,
                start_dry: false,
                logs: Vec::new(),
            });
        match (&ev.data, effect) {
            (EventData::RunStarted(s), Effect::Start) => {
                slot.run = Some(Run::started(&ev.run_id, ev.ts, s));
                slot.start_dry = s.dry_run;
            }
            (EventData::RunStarted(s), Effect::AmendStart) => {
                if let Some(run) = slot.run.as_mut() {
                    run.amend_start(ev.ts, s);
                }
                slot.start_dry = s.dry_run;
            }
            (EventData::RunFinished(f), Effect::Finish | Effect::AmendFinish) => {
                if let Some(run) = slot.run.as_mut() {
                    run.finish(ev.ts, f);
                }
            }
            (EventData::RunLog(l), Effect::Log | Effect::ReplaceLog) => {
                if effect == Effect::ReplaceLog {
                    slot.logs.retain(|(seq, _, _)| *seq != l.seq);
                }
                slot.logs.push((
                    l.seq,
                    lsn,
                    RunLogEntry {
                        seq: l.seq,
                        ts: ev.ts,
                        event_type: l.event_type.clone(),
                        payload: l.payload.clone(),
                    },
                ));
            }
            _ => {}
        }
        if let Some(run) = slot.run.as_mut() {
            run.dry_run = is_dry(slot.start_dry, &run.status);
        }
        effect
    }

    /// The run `id`, if it is started.
    pub fn run(&self, id: &str) -> Option<&Run> {
        self.runs.get(id).and_then(|f| f.run.as_ref())
    }

    /// The logs of a started run in seq order (ties in log order); empty
    /// for an id that is not started (orphan logs are not shown).
    pub fn logs(&self, id: &str) -> Vec<RunLogEntry> {
        let Some(f) = self.runs.get(id).filter(|f| f.run.is_some()) else {
            return Vec::new();
        };
        let mut logs: Vec<&(u64, u64, RunLogEntry)> = f.logs.iter().collect();
        logs.sort_by_key(|(seq, lsn, _)| (*seq, *lsn));
        logs.into_iter().map(|(_, _, e)| e.clone()).collect()
    }

    /// Every started run, in no particular order.
    pub fn runs(&self) -> impl Iterator<Item = &Run> {
        self.runs.values().filter_map(|f| f.run.as_ref())
    }

    pub fn anomalies(&self) -> Anomalies {
        self.states.anomalies()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{RunFinished, RunLog, RunStarted};

    fn start(id: &str, ts: i64, skill: &str) -> Event {
        let s = RunStarted {
            skill_id: skill.into(),
            ..RunStarted::default()
        };
        Event::run_started(id, ts, s)
    }
    fn finish(id: &str, ts: i64, status: &str) -> Event {
        let f = RunFinished {
            status: status.into(),
            ..RunFinished::default()
        };
        Event::run_finished(id, ts, f)
    }
    fn log(id: &str, ts: i64, seq: u64) -> Event {
        let l = RunLog {
            seq,
            ..RunLog::default()
        };
        Event::run_log(id, ts, l)
    }

    #[test]
    fn every_rule_in_one_sequence() {
        let evs = [
            finish("a", 1, "error"), // before the start: ignored
            log("a", 2, 1),          // before the start: the run's
            start("a", 3, "first"),
            start("a", 4, "second"), // duplicate start
            log("a", 5, 0),
            finish("a", 6, "ok"),
            finish("a", 7, "timeout"), // duplicate finish
            log("o", 8, 0),            // orphan
        ];
        let f = Fold::of(&evs);
        let a = f.run("a").expect("a is started");
        assert_eq!((a.skill_id.as_str(), a.status.as_str()), ("first", "ok"));
        assert_eq!((a.started_at, a.finished_at), (3, Some(6)));
        let seqs: Vec<u64> = f.logs("a").iter().map(|l| l.seq).collect();
        assert_eq!(seqs, [0, 1]);
        assert!(f.run("o").is_none() && f.logs("o").is_empty());
        assert_eq!(
            f.anomalies(),
            Anomalies {
                duplicate_starts: 1,
                duplicate_finishes: 1,
                finishes_without_start: 1,
                orphan_logs: 1,
                system: SystemTally::default(),
            }
        );
    }

    #[test]
    fn amending_events_override_instead_of_being_ignored() {
        let evs = [
            finish("a", 1, "error").with_replace(), // before the start: ignored
            start("a", 2, "first"),
            finish("a", 3, "error"),
            start("a", 4, "second").with_replace(), // upserts the start
            finish("a", 5, "ok").with_replace(),    // the last finish wins
            finish("a", 6, "timeout"),              // plain: still ignored
            log("a", 7, 0),
            log("a", 8, 0).with_replace(), // hides the seq-0 log before it
            log("a", 9, 0),                // plain: kept beside it
            start("b", 10, "new").with_replace(), // no run yet: a start
            finish("b", 11, "dry_run"),
        ];
        let f = Fold::of(&evs);
        let a = f.run("a").expect("started");
        assert_eq!((a.skill_id.as_str(), a.started_at), ("second", 4));
        assert_eq!((a.status.as_str(), a.finished_at), ("ok", Some(5)));
        let ts: Vec<i64> = f.logs("a").iter().map(|l| l.ts).collect();
        assert_eq!(ts, [8, 9]);
        let b = f.run("b").expect("started");
        assert!(b.dry_run, "a dry_run status makes a dry run");
        let an = f.anomalies();
        assert_eq!((an.duplicate_starts, an.duplicate_finishes), (0, 1));
        assert_eq!(an.finishes_without_start, 1);
    }

    #[test]
    fn a_finish_before_the_start_leaves_the_run_running() {
        let f = Fold::of(&[finish("r", 1, "error"), start("r", 2, "s")]);
        let r = f.run("r").expect("started");
        assert_eq!((r.status.as_str(), r.finished_at), ("running", None));
    }

    #[test]
    fn only_a_later_finish_counts_across_segments() {
        assert!(finish_follows(5, 6));
        assert!(!finish_follows(5, 5) && !finish_follows(5, 4));
    }
}
