//! Building an index image from events, in log order.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use foldhash::{HashMap, HashMapExt};

use super::calls::{self, call_entry, BCall, CF_DURATION, CF_RUN_LOG};
use super::image::*;
use super::intern::Interner;
use super::parts::ImageParts;
use super::pool::{self, cap_of, cleared, Kept};
use crate::chain::Digest;
use crate::event::borrowed::{DataRef, EventRef};
use crate::event::{Event, Micros};
use crate::num::u32_of;
use crate::view::fold::{Effect, RunState};

pub(crate) struct BRun {
    id: u32,
    skill: u32,
    caller: u32,
    channel: u32,
    parent: u32,
    dry: bool,
    start_lsn: u64,
    start_off: u64,
    started_at: Micros,
    /// First finish after the start, in this image.
    finish: Option<BFin>,
}

#[derive(Clone)]
pub(crate) struct BFin {
    status: u32,
    lsn: u64,
    off: u64,
    ts: Micros,
}

/// A posting list being counted: its length, with its KEYS summary
/// counts: plain runs and shadowed runs (see `key::PLAIN`).
type KeyList = (u32, u32, u32);

/// The tables a builder fills while it scans, kept across builds
/// (`super::pool`): each build clears them and fills them again.
#[derive(Default)]
pub(crate) struct BuilderBufs {
    /// Every string (ids, skills, statuses, ...) once; u32 handles.
    ids: Interner,
    /// Per interned string used as a run id: the fold's state of that id
    /// within this image, and its position in `runs` once started.
    fold: Vec<(RunState, u32)>,
    runs: Vec<BRun>,
    /// First finish of each id in this image (any position).
    first_fin: HashMap<u32, BFin>,
    logs: Vec<(u32, u64, u64, u64)>,
    calls: Vec<BCall>,
    /// Amending starts: (id, lsn, off, is the image's first start of id).
    amend_starts: Vec<(u32, u64, u64, bool)>,
    /// Amending finishes: (id, lsn, off, is the local first finish of the
    /// image's start of id).
    amend_finishes: Vec<(u32, u64, u64, bool)>,
    /// Replacing logs (`"replace":true` run_log): (id, seq, lsn, off).
    amend_logs: Vec<(u32, u64, u64, u64)>,
    /// (offset, chain digest) at the start and after every block.
    chain: Vec<(u64, Digest)>,
}

impl BuilderBufs {
    /// Empty every table, keeping its memory.
    fn clear(&mut self) {
        self.ids.clear();
        self.fold.clear();
        self.runs.clear();
        self.first_fin.clear();
        self.logs.clear();
        self.calls.clear();
        self.amend_starts.clear();
        self.amend_finishes.clear();
        self.amend_logs.clear();
        self.chain.clear();
    }
}

impl Kept for BuilderBufs {
    fn kept_bytes(&self) -> usize {
        self.ids.kept_bytes()
            + cap_of(&self.fold)
            + cap_of(&self.runs)
            + self.first_fin.capacity() * std::mem::size_of::<(u32, BFin)>()
            + cap_of(&self.logs)
            + cap_of(&self.calls)
            + cap_of(&self.amend_starts)
            + cap_of(&self.amend_finishes)
            + cap_of(&self.amend_logs)
            + cap_of(&self.chain)
    }
}

/// The tables and sections [`Builder::finish_parts`] fills, kept across
/// builds (`super::pool`): the sections go out in the [`ImageParts`],
/// which gives them back when it is dropped.
#[derive(Default)]
pub(crate) struct FinishBufs {
    pub(super) sections: [Vec<u8>; N_SECT],
    at: Vec<Option<StrRef>>,
    key_at: Vec<Option<StrRef>>,
    rank_order: Vec<(u128, u32)>,
    ranks: Vec<u32>,
    by_id: Vec<u32>,
    counts: Vec<u32>,
    shadows: Vec<u64>,
    pos_of: Vec<u32>,
    order: Vec<u32>,
    list_of: Vec<u32>,
    lists: Vec<((u32, u32), KeyList)>,
    rows: Vec<[u32; 5]>,
    keys: Vec<u32>,
    next: Vec<u32>,
    run_of: HashMap<u32, usize>,
    log_order: Vec<u32>,
    logs: Vec<(u32, u64, u64, u64)>,
    pub(super) calls: calls::CallBufs,
}

impl Kept for FinishBufs {
    fn kept_bytes(&self) -> usize {
        self.sections.iter().map(cap_of).sum::<usize>()
            + cap_of(&self.at)
            + cap_of(&self.key_at)
            + cap_of(&self.rank_order)
            + cap_of(&self.ranks)
            + cap_of(&self.by_id)
            + cap_of(&self.counts)
            + cap_of(&self.shadows)
            + cap_of(&self.pos_of)
            + cap_of(&self.order)
            + cap_of(&self.list_of)
            + cap_of(&self.lists)
            + cap_of(&self.rows)
            + cap_of(&self.keys)
            + cap_of(&self.next)
            + self.run_of.capacity() * std::mem::size_of::<(u32, usize)>()
            + cap_of(&self.log_order)
            + cap_of(&self.logs)
            + self.calls.kept_bytes()
    }
}

/// Accumulates the events of one segment (or part of the active one).
pub struct Builder {
    kind: u32,
    seq: u64,
    first_lsn: u64,
    end_lsn: u64,
    start_off: u64,
    end_off: u64,
    min_ts: Micros,
    max_ts: Micros,
    /// The handle of the run id last added: a run's events mostly come
    /// one after another, and comparing the id with the previous one costs
    /// less than a table look-up.
    last_id: Option<u32>,
    dup_starts: u32,
    /// The tables it fills: kept ones, given back when it is finished or
    /// dropped (a failed scan's too: every build clears them first).
    b: BuilderBufs,
}

impl Drop for Builder {
    fn drop(&mut self) {
        let b = std::mem::take(&mut self.b);
        pool::give_builder(b);
    }
}

impl Builder {
    pub fn new(kind: u32, seq: u64, first_lsn: u64, start_off: u64) -> Builder {
        Builder::with_bufs(kind, seq, first_lsn, start_off, pool::take_builder())
    }

    /// [`Builder::new`] filling `b` (cleared first: what a build left in
    /// it, finished, failed or dropped half-way, is never read).
    pub(crate) fn with_bufs(
        kind: u32,
        seq: u64,
        first_lsn: u64,
        start_off: u64,
        mut b: BuilderBufs,
    ) -> Builder {
        b.clear();
        Builder {
            kind,
            seq,
            first_lsn,
            end_lsn: first_lsn,
            start_off,
            end_off: start_off,
            min_ts: Micros::MAX,
            max_ts: Micros::MIN,
            last_id: None,
            dup_starts: 0,
            b,
        }
    }

    /// A chain point: the digest at segment offset `off` (the image's
    /// start, then the end of every block, in order).
    pub fn chain_point(&mut self, off: u64, digest: Digest) {
        debug_assert!(self.b.chain.last().is_none_or(|p| p.0 < off));
        self.b.chain.push((off, digest));
    }

    fn intern(&mut self, id: &str) -> u32 {
        self.b.ids.intern(id)
    }

    /// Add the event with LSN `lsn` whose frame starts at segment offset
    /// `off` and ends at `end`.
    pub fn add(&mut self, lsn: u64, off: u64, end: u64, ev: &Event) {
        self.add_call(lsn, off, end, &EventRef::of(ev), call_entry(ev));
    }

    /// [`Builder::add`] of an event read in place (an index build reads
    /// stored events without copying them into an [`Event`]), with its
    /// call already read (`call_entry`'s answer for it): an index build
    /// reads a `run_log` tool call's payload in the parse that checks it
    /// (`index::decode_indexed`).
    pub(crate) fn add_call(
        &mut self,
        lsn: u64,
        off: u64,
        end: u64,
        ev: &EventRef<'_>,
        call: Option<calls::CallEntry<'_>>,
    ) {
        debug_assert_eq!(lsn, self.end_lsn, "events must come in LSN order");
        self.end_lsn = lsn + 1;
        self.end_off = end;
        self.min_ts = self.min_ts.min(ev.ts);
        self.max_ts = self.max_ts.max(ev.ts);
        if ev.is_system() {
            // No run: nothing to index (the log's own record).
            return;
        }
        let id = match self.last_id {
            Some(h) if self.b.ids.name(h) == ev.run_id => h,
            _ => {
                let h = self.intern(ev.run_id);
                self.last_id = Some(h);
                h
            }
        };
        if let Some(c) = call {
            let strs = [
                id,
                self.intern(&c.channel),
                self.intern(&c.caller),
                self.intern(&c.workspace),
                self.intern(&c.tool),
                self.intern(&c.engine),
                self.intern(&c.status),
                self.intern(&c.error_type),
            ];
            let mut flags = if c.from_log { CF_RUN_LOG } else { 0 };
            if c.duration_ms.is_some() {
                flags |= CF_DURATION;
            }
            self.b.calls.push(BCall {
                ts: ev.ts,
                lsn,
                off,
                flags,
                duration_ms: c.duration_ms.unwrap_or(0.0),
                strs,
            });
        }
        let slot = id as usize;
        if self.b.fold.len() <= slot {
            self.b.fold.resize(slot + 1, (RunState::default(), 0));
        }
        // The one run fold decides, within this image; the query engine
        // applies the same rule across images (`fold::finish_follows`).
        let effect = self.b.fold[slot].0.apply_ref(lsn, ev);
        match &ev.data {
            DataRef::RunStarted(s) => {
                if ev.is_replace() {
                    self.b
                        .amend_starts
                        .push((id, lsn, off, effect == Effect::Start));
                }
                if effect != Effect::Start {
                    if effect == Effect::DuplicateStart {
                        self.dup_starts += 1;
                    }
                    return;
                }
                self.b.fold[slot].1 = u32_of(self.b.runs.len());
                let (skill, caller) = (self.intern(s.skill_id), self.intern(s.caller_id));
                let (channel, parent) = (self.intern(s.channel_id), self.intern(s.parent_run_id));
                self.b.runs.push(BRun {
                    id,
                    skill,
                    caller,
                    channel,
                    parent,
                    dry: s.dry_run,
                    start_lsn: lsn,
                    start_off: off,
                    started_at: ev.ts,
                    finish: None,
                });
            }
            DataRef::RunFinished(f) => {
                let fin = BFin {
                    status: self.intern(f.status),
                    lsn,
                    off,
                    ts: ev.ts,
                };
                if effect == Effect::Finish {
                    let r = self.b.fold[slot].1 as usize;
                    self.b.runs[r].finish = Some(fin.clone());
                }
                if ev.is_replace() {
                    self.b
                        .amend_finishes
                        .push((id, lsn, off, effect == Effect::Finish));
                }
                // For a start in an older image (this one's is shadowed, or
                // there is none here): the first finish of the id here.
                self.b.first_fin.entry(id).or_insert(fin);
            }
            DataRef::System(_) => {}
            // Indexed with the calls (above).
            DataRef::ToolCall(_) => {}
            DataRef::RunLog(l) => {
                if ev.is_replace() {
                    self.b.amend_logs.push((id, l.seq, lsn, off));
                }
                self.b.logs.push((id, l.seq, lsn, off));
            }
        }
    }

    /// The segment offset the image covers up to (commit records after the
    /// last event included).
    pub fn set_end_off(&mut self, end: u64) {
        self.end_off = self.end_off.max(end);
    }

    pub fn events(&self) -> u64 {
        self.end_lsn - self.first_lsn
    }

    /// The image bytes. `older.start(id)` names the nearest older image
    /// that also started `id` (its seq, and the start's RUNS position
    /// there), if any; it is called once per run in ascending id order,
    /// then once per FINS id in ascending id order. `older.has_log` is
    /// asked only of replacing logs that may hide a log elsewhere
    /// (`hiding_logs`).
    pub fn finish(self, digest: Digest, older: &dyn super::Older) -> Vec<u8> {
        self.finish_parts(digest, older).into_bytes()
    }

    /// [`Builder::finish`], the image left in its pieces (stored as they
    /// are, without the copy into one buffer).
    pub fn finish_parts(self, digest: Digest, older: &dyn super::Older) -> ImageParts {
        let (parts, b) = self.finish_in(digest, older, pool::take_finish());
        pool::give_builder(b);
        parts
    }

    /// [`Builder::finish_parts`] filling `fb` (every table and section of
    /// it emptied before use: what an earlier build left there is never
    /// read); the builder's own tables handed back with the image.
    pub(crate) fn finish_in(
        mut self,
        digest: Digest,
        older: &dyn super::Older,
        mut fb: FinishBufs,
    ) -> (ImageParts, BuilderBufs) {
        let (kind, seq, first_lsn, end_lsn, start_off, end_off, min_ts, max_ts, dup_starts) = (
            self.kind,
            self.seq,
            self.first_lsn,
            self.end_lsn,
            self.start_off,
            self.end_off,
            self.min_ts,
            self.max_ts,
            self.dup_starts,
        );
        let BuilderBufs {
            ids: id_names,
            fold,
            runs,
            mut first_fin,
            logs: in_logs,
            calls,
            amend_starts,
            amend_finishes,
            amend_logs,
            mut chain,
        } = std::mem::take(&mut self.b);
        drop(self);
        let mut sec = std::mem::take(&mut fb.sections);
        let (min_ts, max_ts) = if min_ts > max_ts {
            (0, 0)
        } else {
            (min_ts, max_ts)
        };
        let mut heap = Heap::new_in(
            id_names.len(),
            std::mem::take(&mut sec[S_STR]),
            std::mem::take(&mut fb.at),
            std::mem::take(&mut fb.key_at),
        );
        let name = |i: u32| -> &str { id_names.name(i) };
        // Sorts by string compare these ranks (the same order as the bytes).
        let mut ranks = std::mem::take(&mut fb.ranks);
        id_names.ranks_into(&mut fb.rank_order, &mut ranks);
        let rank = |i: u32| ranks[i as usize];
        // RUNS sorted by id (one run per id).
        let mut by_id = std::mem::take(&mut fb.by_id);
        by_rank_into(&mut by_id, &mut fb.counts, runs.len(), ranks.len(), |r| {
            rank(runs[r].id)
        });
        // Asked in ascending id order: a lookup can then go on from where
        // the previous one ended in each older image instead of searching
        // it whole (see `query::engine::Shadows`).
        let mut shadows = cleared(&mut fb.shadows, runs.len());
        shadows.resize(runs.len(), NONE);
        for &r in &by_id {
            shadows[r as usize] = older
                .start(name(runs[r as usize].id))
                .map_or(NONE, |(seq, _)| seq);
        }
        let mut pos_of = cleared(&mut fb.pos_of, runs.len());
        pos_of.resize(runs.len(), 0);
        for (p, &r) in by_id.iter().enumerate() {
            pos_of[r as usize] = u32_of(p);
        }
        let mut s_runs = cleared(&mut sec[S_RUNS], runs.len() * REC_SIZE[S_RUNS]);
        for &r in &by_id {
            let r_ = &runs[r as usize];
            let mut rec = [0u8; run::SIZE];
            let mut put_s = |at: usize, s: u32, heap: &mut Heap| {
                put_str(&mut rec, at, heap.add(s, name(s)));
            };
            put_s(run::ID, r_.id, &mut heap);
            put_s(run::SKILL, r_.skill, &mut heap);
            put_s(run::CALLER, r_.caller, &mut heap);
            put_s(run::CHANNEL, r_.channel, &mut heap);
            put_s(run::PARENT, r_.parent, &mut heap);
            let mut flags = if r_.dry { F_DRY } else { 0 };
            let (fl, fo, ft) = match &r_.finish {
                Some(f) => {
                    put_s(run::STATUS, f.status, &mut heap);
                    flags |= F_FINISHED;
                    (f.lsn, f.off, f.ts)
                }
                None => (NONE, NONE, 0),
            };
            put(&mut rec, run::START_LSN, &r_.start_lsn.to_le_bytes());
            put(&mut rec, run::START_OFF, &r_.start_off.to_le_bytes());
            put(&mut rec, run::STARTED_AT, &r_.started_at.to_le_bytes());
            put(&mut rec, run::FINISH_LSN, &fl.to_le_bytes());
            put(&mut rec, run::FINISH_OFF, &fo.to_le_bytes());
            put(&mut rec, run::FINISHED_AT, &ft.to_le_bytes());
            put(
                &mut rec,
                run::SHADOW_SEQ,
                &shadows[r as usize].to_le_bytes(),
            );
            put(&mut rec, run::FLAGS, &flags.to_le_bytes());
            s_runs.extend_from_slice(&rec);
        }

        // ORDER: started_at desc, id desc (as RUNS positions).
        // Runs come in log order, so nearly in `started_at` order: a
        // stable sort (it merges the ascending stretches it finds) of the
        // ascending order, turned round, is the same order (no two runs
        // have the same id), in a fraction of an unstable sort's time.
        let mut order = cleared(&mut fb.order, runs.len());
        order.extend(0..u32_of(runs.len()));
        order.sort_by_key(|&r| {
            let run = &runs[r as usize];
            (run.started_at, rank(run.id))
        });
        order.reverse();
        let mut s_order = cleared(&mut sec[S_ORDER], order.len() * 4);
        s_order.extend(order.iter().flat_map(|&r| pos_of[r as usize].to_le_bytes()));

        // KEYS + POST: every key's runs in ORDER order.
        // Key strings as handles; "running" for runs without a local finish.
        const RUNNING_KEY: u32 = u32::MAX;
        let key_name = |h: u32| -> &str {
            if h == RUNNING_KEY {
                "running"
            } else {
                name(h)
            }
        };
        // Each list with its summary counts (plain, shadowed): see key::PLAIN.
        // Found by (kind, handle) in a table indexed by both ("running" at
        // handle n): hashing five keys a run was a tenth of this function.
        // The lists are flat: each run's keys noted in a row and each
        // key's length counted, then every position written once into
        // POST at its key's place (a `Vec` per key, grown a push at a
        // time, cost its regrowth and a cache miss per push).
        let n = ranks.len();
        // A list's place plus one (0: none yet).
        let mut list_of = cleared(&mut fb.list_of, 0);
        list_of.resize((K_STATUS as usize + 1) * (n + 1), 0);
        let mut lists = cleared(&mut fb.lists, 0);
        let mut rows = cleared(&mut fb.rows, order.len());
        for &r in &order {
            let run = &runs[r as usize];
            let status = run.finish.as_ref().map_or(RUNNING_KEY, |f| f.status);
            let shadowed = shadows[r as usize] != NONE;
            let plain = !shadowed && !run.dry;
            let mut row = [0u32; 5];
            for (j, (k, v)) in [
                (K_SKILL, run.skill),
                (K_CALLER, run.caller),
                (K_CHANNEL, run.channel),
                (K_PARENT, run.parent),
                (K_STATUS, status),
            ]
            .into_iter()
            .enumerate()
            {
                let h = if v == RUNNING_KEY { n } else { v as usize };
                let slot = &mut list_of[k as usize * (n + 1) + h];
                if *slot == 0 {
                    lists.push(((k, v), KeyList::default()));
                    *slot = u32_of(lists.len());
                }
                let at = *slot - 1;
                let e = &mut lists[at as usize].1;
                e.0 += 1;
                e.1 += u32::from(plain);
                e.2 += u32::from(shadowed);
                row[j] = at;
            }
            rows.push(row);
        }
        let mut keys = cleared(&mut fb.keys, lists.len());
        keys.extend(0..u32_of(lists.len()));
        keys.sort_unstable_by(|&a, &b| {
            let (a, b) = (lists[a as usize].0, lists[b as usize].0);
            let (x, y) = (a.1, b.1);
            a.0.cmp(&b.0).then_with(|| {
                if x == RUNNING_KEY || y == RUNNING_KEY {
                    key_name(x).cmp(key_name(y))
                } else {
                    rank(x).cmp(&rank(y))
                }
            })
        });
        // Each key's first POST place, in key order.
        let mut next = cleared(&mut fb.next, lists.len());
        next.resize(lists.len(), 0);
        let mut s_keys = cleared(&mut sec[S_KEYS], keys.len() * key::SIZE);
        let mut n_post = 0u32;
        for &at in &keys {
            let ((k, v), (len, plain, shadowed)) = lists[at as usize];
            let StrRef(o, l) = if v == RUNNING_KEY {
                heap.add_extra("running")
            } else {
                heap.add(v, name(v))
            };
            let mut rec = [0u8; key::SIZE];
            put(&mut rec, key::KIND, &k.to_le_bytes());
            put(&mut rec, key::LEN, &len.to_le_bytes());
            put_str(&mut rec, key::VALUE, StrRef(o, l));
            put(&mut rec, key::POST_START, &u64::from(n_post).to_le_bytes());
            put(&mut rec, key::PLAIN, &plain.to_le_bytes());
            put(&mut rec, key::SHADOWED, &shadowed.to_le_bytes());
            s_keys.extend_from_slice(&rec);
            next[at as usize] = n_post;
            n_post += len;
        }
        // Every run's position at its keys' next places: ascending ORDER
        // order within each list, as the rows are in ORDER order.
        let mut s_post = cleared(&mut sec[S_POST], n_post as usize * 4);
        s_post.resize(n_post as usize * 4, 0);
        for (&r, row) in order.iter().zip(&rows) {
            let p = pos_of[r as usize].to_le_bytes();
            for &slot in row {
                let at = &mut next[slot as usize];
                let b = *at as usize * 4;
                s_post[b..b + 4].copy_from_slice(&p);
                *at += 1;
            }
        }

        // FINS: first finish of ids with no unshadowed start here.
        let mut run_of = std::mem::take(&mut fb.run_of);
        run_of.clear();
        run_of.reserve(runs.len());
        for (i, r) in runs.iter().enumerate() {
            run_of.insert(r.id, i);
        }
        let mut fins: Vec<(u32, BFin)> = first_fin
            .drain()
            .filter(|(id, _)| run_of.get(id).is_none_or(|&r| shadows[r] != NONE))
            .collect();
        // The nearest older start of each (asked in ascending id order, as
        // for RUNS), then in (hash, id) order: lookups search the hashes.
        fins.sort_unstable_by_key(|f| rank(f.0));
        let mut fins: Vec<(u64, u32, BFin, (u64, u32))> = fins
            .into_iter()
            .map(|(id, f)| {
                let at = older.start(name(id)).unwrap_or((NONE, 0));
                (RunHash::of(name(id).as_bytes()).0, id, f, at)
            })
            .collect();
        fins.sort_unstable_by_key(|f| (f.0, rank(f.1)));
        let mut flags = 0u32;
        let mut s_fins = cleared(&mut sec[S_FINS], fins.len() * fin::SIZE);
        for (hash, id, f, (start_seq, start_pos)) in &fins {
            if name(f.status) == crate::view::DRY_RUN_STATUS {
                flags |= HF_DRY_FINS;
            }
            let mut rec = [0u8; fin::SIZE];
            put_str(&mut rec, fin::ID, heap.add(*id, name(*id)));
            put_str(&mut rec, fin::STATUS, heap.add(f.status, name(f.status)));
            put(&mut rec, fin::LSN, &f.lsn.to_le_bytes());
            put(&mut rec, fin::OFF, &f.off.to_le_bytes());
            put(&mut rec, fin::TS, &f.ts.to_le_bytes());
            put(&mut rec, fin::HASH, &hash.to_le_bytes());
            put(&mut rec, fin::START_SEQ, &start_seq.to_le_bytes());
            put(&mut rec, fin::START_POS, &start_pos.to_le_bytes());
            s_fins.extend_from_slice(&rec);
        }

        // LOGS sorted by (id, seq, lsn).
        // By id with a counting sort (each id's logs stay in log order),
        // then each id's logs by (seq, lsn): already so unless the seqs
        // came out of order, and a stable sort of a sorted slice is one pass.
        let mut log_order = std::mem::take(&mut fb.log_order);
        by_rank_into(
            &mut log_order,
            &mut fb.counts,
            in_logs.len(),
            ranks.len(),
            |i| rank(in_logs[i].0),
        );
        let mut logs = cleared(&mut fb.logs, in_logs.len());
        logs.extend(log_order.iter().map(|&i| in_logs[i as usize]));
        for same_id in logs.chunk_by_mut(|a, b| a.0 == b.0) {
            same_id.sort_by_key(|l| (l.1, l.2));
        }
        // The ids with a log here but no start here (the run started in
        // another image, or not at all): the run-id filter holds them
        // beside RUNS', so that a run's logs are looked for only in the
        // images that may hold some (RFILT, version 8).
        let log_only: Vec<u32> = if kind == KIND_SEALED {
            logs.chunk_by(|a, b| a.0 == b.0)
                .map(|same_id| same_id[0].0)
                .filter(|id| !run_of.contains_key(id))
                .collect()
        } else {
            Vec::new()
        };
        let mut s_logs = cleared(&mut sec[S_LOGS], logs.len() * log::SIZE);
        for (id, seqno, lsn, off) in &logs {
            let mut rec = [0u8; log::SIZE];
            put_str(&mut rec, log::ID, heap.add(*id, name(*id)));
            put(&mut rec, log::SEQ, &seqno.to_le_bytes());
            put(&mut rec, log::LSN, &lsn.to_le_bytes());
            put(&mut rec, log::OFF, &off.to_le_bytes());
            s_logs.extend_from_slice(&rec);
        }

        // CALLS, CKEYS, CPOST.
        let (s_calls, s_ckeys, s_cpost) = {
            let names = &id_names;
            let heap_cell = std::cell::RefCell::new(&mut heap);
            let mut put = |h: u32| heap_cell.borrow_mut().add(h, names.name(h));
            let mut put_key = |h: u32| heap_cell.borrow_mut().add_key(h, names.name(h));
            let mut put_text = |b: &[u8]| heap_cell.borrow_mut().add_bytes(b, names);
            calls::sections(
                &calls,
                names,
                &rank,
                &mut put,
                &mut put_key,
                &mut put_text,
                &mut fb.calls,
                [
                    std::mem::take(&mut sec[S_CALLS]),
                    std::mem::take(&mut sec[S_CKEYS]),
                    std::mem::take(&mut sec[S_CPOST]),
                ],
            )
        };

        let s_amnd = amend_section(
            std::mem::take(&mut sec[S_AMND]),
            &mut heap,
            &name,
            &rank,
            &Amends {
                starts: &amend_starts,
                finishes: &amend_finishes,
                logs: &amend_logs,
                all_logs: &logs,
                older,
                fold: &fold,
                runs: &runs,
                shadows: &shadows,
            },
        );

        // CHAIN: (offset, digest) points; at least the start.
        if chain.is_empty() {
            chain.push((start_off, digest));
        }
        let mut s_chain = cleared(&mut sec[S_CHAIN], chain.len() * 40);
        for (off, d) in &chain {
            s_chain.extend_from_slice(&off.to_le_bytes());
            s_chain.extend_from_slice(&d.0);
        }
        // RFILT: sealed images only (a chunk is replaced as the segment
        // grows; its lookups binary-search it). Every id with a start or
        // a log here.
        let s_rfilt = if kind == KIND_SEALED {
            super::run_filter::build_into(
                std::mem::take(&mut sec[S_RFILT]),
                runs.len() + log_only.len(),
                runs.iter()
                    .map(|r| r.id)
                    .chain(log_only.iter().copied())
                    .map(|id| name(id).as_bytes()),
            )
        } else {
            cleared(&mut sec[S_RFILT], 0)
        };
        let Heap {
            bytes: s_str,
            at,
            key_at,
            ..
        } = heap;
        let sections: [Vec<u8>; N_SECT] = [
            s_str, s_runs, s_order, s_keys, s_post, s_fins, s_logs, s_calls, s_amnd, s_chain,
            s_ckeys, s_cpost, s_rfilt,
        ];
        let header = IndexHeader {
            kind,
            seq,
            first_lsn,
            end_lsn,
            start_off,
            end_off,
            digest,
            min_ts,
            max_ts,
            // Set by `ImageParts::new`, which lays the sections out.
            crc_table_off: 0,
            n_blocks: 0,
            dup_starts,
            flags,
        };
        // Every table back where it is kept: the finish's with the
        // image (`ImageParts` gives them back once dropped), the
        // builder's to the caller.
        fb.at = at;
        fb.key_at = key_at;
        fb.ranks = ranks;
        fb.by_id = by_id;
        fb.shadows = shadows;
        fb.pos_of = pos_of;
        fb.order = order;
        fb.list_of = list_of;
        fb.lists = lists;
        fb.rows = rows;
        fb.keys = keys;
        fb.next = next;
        fb.run_of = run_of;
        fb.log_order = log_order;
        fb.logs = logs;
        let b = BuilderBufs {
            ids: id_names,
            fold,
            runs,
            first_fin,
            logs: in_logs,
            calls,
            amend_starts,
            amend_finishes,
            amend_logs,
            chain,
        };
        (ImageParts::new_in(header, sections, fb), b)
    }

    /// The builder's tables as they are, not given back (tests: a build
    /// abandoned half-way, its tables reused).
    #[cfg(test)]
    pub(crate) fn into_bufs(mut self) -> BuilderBufs {
        std::mem::take(&mut self.b)
    }
}

/// What [`amend_section`] decides from.
struct Amends<'b> {
    starts: &'b [(u32, u64, u64, bool)],
    finishes: &'b [(u32, u64, u64, bool)],
    logs: &'b [(u32, u64, u64, u64)],
    /// Every log of the image: (id, seq, lsn, off).
    all_logs: &'b [(u32, u64, u64, u64)],
    older: &'b dyn super::Older,
    /// Per id: the fold's state in this image and its RUNS position.
    fold: &'b [(RunState, u32)],
    runs: &'b [BRun],
    shadows: &'b [u64],
}

/// The replacing logs that may hide another log: those with an earlier
/// log of their run and seq in this image, those whose run has no defining
/// start here before them (its logs may lie in older images), and those
/// whose run and seq have a log in an older image. A gateway that marks
/// every log as replacing (an upsert by `(run_id, seq)`) writes each seq
/// once, so its logs are not listed and queries pay nothing for them.
fn hiding_logs<'n>(
    a: &Amends<'_>,
    name: &dyn Fn(u32) -> &'n str,
    rank: &dyn Fn(u32) -> u32,
    defining: &dyn Fn(u32) -> Option<u64>,
) -> Vec<(u32, u64, u64)> {
    if a.logs.is_empty() {
        return Vec::new();
    }
    let mut first: HashMap<(u32, u64), u64> = HashMap::new();
    for &(id, seq, lsn, _) in a.all_logs {
        let f = first.entry((id, seq)).or_insert(lsn);
        *f = (*f).min(lsn);
    }
    let mut ask: Vec<(u32, u64, u64, u64)> = Vec::new();
    let mut out = Vec::new();
    for &(id, seq, lsn, off) in a.logs {
        let earlier_here = first.get(&(id, seq)).is_some_and(|&f| f < lsn);
        let started_before = defining(id).is_some_and(|s| s < lsn);
        if earlier_here || !started_before {
            out.push((id, lsn, off));
        } else {
            ask.push((id, seq, lsn, off));
        }
    }
    // Ascending (id, seq), so the older images' cursors only move forward.
    ask.sort_unstable_by_key(|x| (rank(x.0), x.1));
    for (id, seq, lsn, off) in ask {
        if a.older.has_log(name(id), seq) {
            out.push((id, lsn, off));
        }
    }
    out
}

/// AMND: the amending events that may override an earlier start or finish
/// of their run, sorted by (id, lsn). Left out, so that queries need not
/// look at them: an amending start that is the run's first (it defines
/// the run), an amending finish that is the first finish after the
/// image's defining start, and one before that start (the fold ignores
/// it). Everything else may amend a start or finish elsewhere.
fn amend_section<'n>(
    mut s: Vec<u8>,
    heap: &mut Heap,
    name: &dyn Fn(u32) -> &'n str,
    rank: &dyn Fn(u32) -> u32,
    a: &Amends<'_>,
) -> Vec<u8> {
    // The image's defining start of `id`: its LSN, if unshadowed here.
    let defining = |id: u32| -> Option<u64> {
        let (state, r) = a.fold.get(id as usize)?;
        if !state.is_started() {
            return None;
        }
        let r = *r as usize;
        (a.shadows[r] == NONE).then(|| a.runs[r].start_lsn)
    };
    let mut out: Vec<(u32, u32, u64, u64)> = Vec::new();
    for &(id, lsn, off, first) in a.starts {
        if !(first && defining(id).is_some()) {
            out.push((id, AMEND_START, lsn, off));
        }
    }
    for &(id, lsn, off, local_first) in a.finishes {
        let keep = match defining(id) {
            None => true,
            Some(start) => !local_first && lsn > start,
        };
        if keep {
            out.push((id, AMEND_FINISH, lsn, off));
        }
    }
    out.extend(
        hiding_logs(a, name, rank, &defining)
            .into_iter()
            .map(|(id, lsn, off)| (id, AMEND_LOG, lsn, off)),
    );
    out.sort_unstable_by_key(|x| (rank(x.0), x.2));
    s.clear();
    s.reserve(out.len() * amnd::SIZE);
    for (id, kind, lsn, off) in out {
        let mut rec = [0u8; amnd::SIZE];
        put_str(&mut rec, amnd::ID, heap.add(id, name(id)));
        put(&mut rec, amnd::KIND, &kind.to_le_bytes());
        put(&mut rec, amnd::LSN, &lsn.to_le_bytes());
        put(&mut rec, amnd::OFF, &off.to_le_bytes());
        s.extend_from_slice(&rec);
    }
    s
}

/// The positions `0..len` ordered by `rank_of(position)` (below
/// `n_ranks`), equal ranks in ascending position: a counting sort, for
/// lists whose keys are ranks of interned strings.
#[cfg(test)]
fn by_rank(len: usize, n_ranks: usize, rank_of: impl Fn(usize) -> u32) -> Vec<u32> {
    let mut out = Vec::new();
    by_rank_into(&mut out, &mut Vec::new(), len, n_ranks, rank_of);
    out
}

/// [`by_rank`] into `out`, counting in `start` (both emptied first).
fn by_rank_into(
    out: &mut Vec<u32>,
    start: &mut Vec<u32>,
    len: usize,
    n_ranks: usize,
    rank_of: impl Fn(usize) -> u32,
) {
    start.clear();
    start.resize(n_ranks + 1, 0);
    for i in 0..len {
        start[rank_of(i) as usize + 1] += 1;
    }
    for r in 0..n_ranks {
        start[r + 1] += start[r];
    }
    out.clear();
    out.resize(len, 0);
    for i in 0..len {
        let at = &mut start[rank_of(i) as usize];
        out[*at as usize] = u32_of(i);
        *at += 1;
    }
}

/// Write `v` at byte `at` of a record.
fn put(rec: &mut [u8], at: usize, v: &[u8]) {
    rec[at..at + v.len()].copy_from_slice(v);
}

/// Write a heap reference (offset, length) at byte `at` of a record.
fn put_str(rec: &mut [u8], at: usize, r: StrRef) {
    put(rec, at, &r.0.to_le_bytes());
    put(rec, at + 4, &r.1.to_le_bytes());
}

/// The string heap: each interned string written once.
struct Heap {
    bytes: Vec<u8>,
    at: Vec<Option<StrRef>>,
    extra: HashMap<&'static str, StrRef>,
    /// Keys are written once each, apart from the strings above: the
    /// place of each interned string written as a key (`add_key`), and of
    /// each other key (`add_bytes`, the composite call keys) by its bytes.
    /// Together they act as one map of key bytes (a composite key with the
    /// bytes of an interned one shares its place, and the other way
    /// round), without copying and hashing every run id a key names.
    key_at: Vec<Option<StrRef>>,
    other: HashMap<Vec<u8>, StrRef>,
}

impl Heap {
    /// A heap for `n` interned strings in kept buffers (emptied here).
    fn new_in(
        n: usize,
        mut bytes: Vec<u8>,
        mut at: Vec<Option<StrRef>>,
        mut key_at: Vec<Option<StrRef>>,
    ) -> Heap {
        bytes.clear();
        at.clear();
        at.resize(n, None);
        key_at.clear();
        key_at.resize(n, None);
        Heap {
            bytes,
            at,
            extra: HashMap::new(),
            key_at,
            other: HashMap::new(),
        }
    }

    fn push(&mut self, s: &str) -> StrRef {
        let r = StrRef(u32_of(self.bytes.len()), u32_of(s.len()));
        self.bytes.extend_from_slice(s.as_bytes());
        r
    }

    /// The heap place of interned string `h` (text `s`).
    fn add(&mut self, h: u32, s: &str) -> StrRef {
        if s.is_empty() {
            return StrRef(0, 0);
        }
        if let Some(r) = self.at[h as usize] {
            return r;
        }
        let r = self.push(s);
        self.at[h as usize] = Some(r);
        r
    }

    /// The key place of interned string `h` (text `s`).
    fn add_key(&mut self, h: u32, s: &str) -> StrRef {
        if s.is_empty() {
            return StrRef(0, 0);
        }
        if let Some(r) = self.key_at[h as usize] {
            return r;
        }
        let r = match self.other.get(s.as_bytes()) {
            Some(r) => *r,
            None => self.push(s),
        };
        self.key_at[h as usize] = Some(r);
        r
    }

    /// The key place of bytes that are not an interned handle's key
    /// (`names` finds those that are).
    fn add_bytes(&mut self, b: &[u8], names: &Interner) -> StrRef {
        if b.is_empty() {
            return StrRef(0, 0);
        }
        if let Some(r) = self.other.get(b) {
            return *r;
        }
        let as_key = std::str::from_utf8(b)
            .ok()
            .and_then(|s| names.find(s))
            .and_then(|h| self.key_at[h as usize]);
        let r = as_key.unwrap_or_else(|| {
            let r = StrRef(u32_of(self.bytes.len()), u32_of(b.len()));
            self.bytes.extend_from_slice(b);
            r
        });
        self.other.insert(b.to_vec(), r);
        r
    }

    fn add_extra(&mut self, s: &'static str) -> StrRef {
        if let Some(r) = self.extra.get(s) {
            return *r;
        }
        let r = self.push(s);
        self.extra.insert(s, r);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::by_rank;
    use crate::chain::Digest;
    use crate::event::{Event, ToolCall};
    use crate::index::image::{HEADER_LEN, KIND_SEALED, S_CKEYS, S_STR};
    use crate::index::{Builder, NoOlder};

    /// Section `i` of an image: (offset, length) from the section table.
    fn section(img: &[u8], i: usize) -> &[u8] {
        let at = HEADER_LEN + 16 * i;
        let word = |o: usize| {
            usize::try_from(u64::from_le_bytes(img[o..o + 8].try_into().unwrap())).unwrap()
        };
        let (off, len) = (word(at), word(at + 8));
        &img[off..off + len]
    }

    /// A call key with the same bytes as another shares its heap place,
    /// whichever kind comes first: the composite engine-and-tool key `2:abc`
    /// (kind 2) between the tool `2:abc` (kind 1) and the channel `2:abc`
    /// (kind 3), as when all keys went through one map of bytes.
    #[test]
    fn equal_call_keys_share_their_heap_place() {
        let call = |tool: &str, engine: &str, channel: &str| ToolCall {
            tool: tool.into(),
            engine: engine.into(),
            channel_id: channel.into(),
            ..ToolCall::default()
        };
        let mut b = Builder::new(KIND_SEALED, 1, 0, 72);
        let calls = [
            call("c", "ab", "s"),
            call("2:abc", "", "s"),
            call("t", "", "2:abc"),
        ];
        for (i, c) in calls.into_iter().enumerate() {
            let off = 72 + 10 * i as u64;
            b.add(i as u64, off, off + 10, &Event::tool_call("r-1", 1_000, c));
        }
        let img = b.finish(Digest([0; 32]), &NoOlder);
        let heap = section(&img, S_STR);
        let mut places = Vec::new();
        for rec in section(&img, S_CKEYS).chunks_exact(24) {
            let word = |o: usize| u32::from_le_bytes(rec[o..o + 4].try_into().unwrap());
            let (kind, off, len) = (word(0), word(8) as usize, word(12) as usize);
            if &heap[off..off + len] == b"2:abc" {
                places.push((kind, off));
            }
        }
        let kinds: Vec<u32> = places.iter().map(|p| p.0).collect();
        assert_eq!(kinds, [1, 2, 3]);
        assert!(places.iter().all(|p| p.1 == places[0].1), "{places:?}");
    }

    proptest::proptest! {
        /// The counting sort is the stable sort by rank.
        #[test]
        fn by_rank_is_a_stable_sort_by_rank(ranks in proptest::collection::vec(0u32..20, 0..200)) {
            let got = by_rank(ranks.len(), 20, |i| ranks[i]);
            let mut want: Vec<u32> = (0..crate::num::u32_of(ranks.len())).collect();
            want.sort_by_key(|&i| ranks[i as usize]);
            proptest::prop_assert_eq!(got, want);
        }
    }
}
