//! The run view as of a segment: what a copy of the log that ends at a
//! sealed segment (the Parquet export, docs/export.md) writes for its
//! runs. The same resolution as every query (docs/queries.md): the
//! defining start is the first start of the id among stored segments,
//! the finish the first one after it, amending events applied in log
//! order; only finishes and amending events in segments after the bound
//! are not seen, so the answer is a function of the segments up to it.

use std::collections::BTreeSet;

use super::{Handle, View};
use crate::error::{Error, Result};
use crate::index::NONE;
use crate::view::Run;

/// One run as of a segment bound.
#[derive(Debug, Clone, PartialEq)]
pub struct RunAsOf {
    /// The segment and LSN of the run's defining start.
    pub start_seq: u64,
    pub start_lsn: u64,
    pub run: Run,
}

impl<'a> View<'a> {
    /// The runs whose defining start lies in sealed segment `seq`, in
    /// start order, dry runs included, each as of segment `through_seq`
    /// (`seq <= through_seq`).
    pub fn runs_defined_in(&self, seq: u64, through_seq: u64) -> Result<Vec<RunAsOf>> {
        let mut out = Vec::new();
        self.each_run_defined_in(seq, through_seq, |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    /// [`View::runs_defined_in`], each run handed to `each` as it is
    /// built, none kept: for a caller that copies the runs elsewhere (the
    /// Parquet export's `runs` columns), where collecting them first
    /// moved every (large) `Run` again.
    pub fn each_run_defined_in(
        &self,
        seq: u64,
        through_seq: u64,
        mut each: impl FnMut(RunAsOf) -> Result<()>,
    ) -> Result<()> {
        let src = self.sealed_src(seq, through_seq)?;
        let img = self.srcs[src].img;
        // Put the starts in order first, then build each run: sorting the
        // built runs moved every (large) `Run` several times.
        let mut starts: Vec<(u64, Handle)> = (0..img.n_runs())
            .map(|pos| Handle { src, pos })
            .filter(|&h| self.defines(h))
            .map(|h| (self.run(h).start_lsn, h))
            .collect();
        starts.sort_by_key(|&(lsn, _)| lsn);
        for (_, h) in starts {
            each(self.as_of(h, through_seq)?)?;
        }
        Ok(())
    }

    /// Where the defining start of run `id` lies: (segment, LSN).
    pub fn defining_start(&self, id: &str) -> Option<(u64, u64)> {
        self.find(id.as_bytes())
            .map(|h| (self.srcs[h.src].seq, self.run(h).start_lsn))
    }

    /// The run `id` as of segment `through_seq`; `None` if the log does
    /// not define it, or defines it only after that segment.
    pub fn run_as_of(&self, id: &str, through_seq: u64) -> Result<Option<RunAsOf>> {
        let Some(h) = self.find(id.as_bytes()) else {
            return Ok(None);
        };
        if self.srcs[h.src].seq > through_seq {
            return Ok(None);
        }
        self.as_of(h, through_seq).map(Some)
    }

    /// The ids of runs that a finish or an amending event in segments
    /// `from_seq..=to_seq` may change although their defining start lies
    /// in another segment: the runs whose copies made from earlier
    /// segments alone are out of date once these segments are copied too.
    /// Read from those segments' FINS sections and the engine's amending
    /// events, so it costs nothing per event.
    pub fn changed_from_elsewhere(&self, from_seq: u64, to_seq: u64) -> BTreeSet<String> {
        let within = |seq: u64| (from_seq..=to_seq).contains(&seq);
        let lossy = |id: &[u8]| String::from_utf8_lossy(id).into_owned();
        let mut out = BTreeSet::new();
        for s in self.srcs.iter().filter(|s| within(s.seq)) {
            for i in 0..s.img.n_fins() {
                out.insert(lossy(s.img.fin(i).id));
            }
        }
        for (id, v) in &self.foreign.amends {
            if v.iter().any(|a| within(a.seq)) {
                out.insert(lossy(id));
            }
        }
        out
    }

    /// Whether the start at `h` defines its run (no earlier start of the
    /// id in a stored segment).
    fn defines(&self, h: Handle) -> bool {
        let shadow = self.srcs[h.src].img.run_lazy(h.pos).shadow_seq();
        shadow == NONE || shadow < self.first_seq
    }

    fn as_of(&self, h: Handle, through_seq: u64) -> Result<RunAsOf> {
        let (run, _) = self.amended_run_through(h, through_seq)?;
        Ok(RunAsOf {
            start_seq: self.srcs[h.src].seq,
            start_lsn: self.run(h).start_lsn,
            run,
        })
    }

    /// The image of sealed segment `seq`, if it is one up to `through_seq`.
    fn sealed_src(&self, seq: u64, through_seq: u64) -> Result<usize> {
        self.srcs
            .iter()
            .position(|s| s.seq == seq)
            .filter(|_| seq <= through_seq)
            .filter(|&i| self.srcs.get(i + 1).is_none_or(|next| next.seq != seq))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "segment {seq} is not a sealed, indexed segment of this log up to segment {through_seq}"
                ))
            })
    }
}
