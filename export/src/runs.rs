//! The `runs` table: every run the log defines, once, equal to the
//! engine's run view (amending events and runs carried forward by
//! retention included), as of the newest exported segment. docs/export.md,
//! "Where a run's row lives", says it for auditors:
//!
//! - a run's row lives in the runs file of the segment holding its
//!   defining start, and that file is written again whenever a later
//!   segment changes the run (a finish, an amending start or finish);
//! - a run that retention carried forward (its start appended again,
//!   amending, before the segment that held it was dropped) keeps its row
//!   in the file of its first start; the manifest's `carried` map names
//!   it, so the later start does not give it a second row;
//! - the rows of a segment that has left the log stay as they were, but
//!   for carried runs, which follow the log's view of them.

use std::collections::BTreeMap;

use auditlog::query::View;
use auditlog::{QueryEngine as Engine, Run};

use crate::dest::Destination;
use crate::error::{ExportError, Result};
use crate::manifest::{ExportManifest, SegmentEntry};
use crate::pq;
use crate::readback::run_rows;
use crate::tables::{self, RunRows, Scope};

/// A runs row: the LSN of the start that first defined the run in the
/// export, and the run as of the export's newest segment.
pub(crate) type Row = (u64, Run);

/// The rows of exported segment `seq` as of segment `through_seq`. `held`
/// is what its files hold if the segment has left the log (`None` while
/// the log still holds it).
pub(crate) fn rows_of(
    view: &View<'_>,
    seq: u64,
    through_seq: u64,
    carried: &BTreeMap<String, u64>,
    held: Option<&[Row]>,
) -> auditlog::Result<Vec<Row>> {
    let Some(held) = held else {
        let defined = view.runs_defined_in(seq, through_seq)?;
        return Ok(defined
            .into_iter()
            .filter(|r| !carried.contains_key(&r.run.id))
            .map(|r| (r.start_lsn, r.run))
            .collect());
    };
    held.iter()
        .map(|(lsn, run)| {
            if carried.get(&run.id) == Some(&seq) {
                if let Some(now) = view.run_as_of(&run.id, through_seq)? {
                    return Ok((*lsn, now.run));
                }
            }
            Ok((*lsn, run.clone()))
        })
        .collect()
}

/// The columns of the runs rows of one segment, one [`RunRows`] per UTC
/// day of `started_at`.
pub(crate) type Parts = BTreeMap<String, RunRows>;

/// The rows of sealed segment `seq`, which the log holds, as of segment
/// `through_seq`, put straight into their columns: the same rows in the
/// same order as [`rows_of`] (with `held` `None`) and [`batches`] give,
/// without a `Run` kept, moved or sorted (the engine builds them in start
/// order), and how many there are.
pub(crate) fn defined_parts(
    view: &View<'_>,
    scope: &Scope,
    seq: u64,
    through_seq: u64,
    carried: &BTreeMap<String, u64>,
) -> auditlog::Result<(Parts, u64)> {
    let mut parts = Parts::new();
    let mut rows = 0u64;
    let mut day = crate::segment::DayCache::default();
    view.each_run_defined_in(seq, through_seq, |r| {
        if carried.contains_key(&r.run.id) {
            return Ok(());
        }
        let dt = day.of(r.run.started_at);
        if !parts.contains_key(dt) {
            parts.insert(dt.to_string(), RunRows::default());
        }
        if let Some(p) = parts.get_mut(dt) {
            p.push(scope, r.start_lsn, &r.run);
            rows += 1;
        }
        Ok(())
    })?;
    Ok((parts, rows))
}

/// The rows as record batches, one per UTC day of `started_at`, each in
/// start order.
pub(crate) fn batches(
    scope: &Scope,
    rows: &[Row],
) -> Result<BTreeMap<String, arrow_array::RecordBatch>> {
    let mut parts = Parts::new();
    let mut order: Vec<&Row> = rows.iter().collect();
    order.sort_by_key(|(lsn, _)| *lsn);
    for (lsn, r) in order {
        parts
            .entry(crate::export::day_of(r.started_at))
            .or_default()
            .push(scope, *lsn, r);
    }
    finish_parts(scope, parts)
}

/// The columns of each day made a record batch.
pub(crate) fn finish_parts(
    scope: &Scope,
    parts: Parts,
) -> Result<BTreeMap<String, arrow_array::RecordBatch>> {
    parts
        .into_iter()
        .map(|(dt, mut b)| {
            let batch = b.finish().map_err(|e| {
                ExportError::parquet(format!("runs of segment {}", scope.segment), e)
            })?;
            Ok((dt, batch))
        })
        .collect()
}

/// The rows the runs files of `e` hold, each file checked against the
/// manifest first (size and BLAKE3).
pub(crate) fn read_rows(dest: &Destination, e: &SegmentEntry) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for f in e.files.iter().filter(|f| f.table == tables::RUNS) {
        let bytes = dest
            .get(&f.path)?
            .ok_or_else(|| ExportError::mismatch(&f.path, "the file is missing"))?;
        let hash = blake3::hash(&bytes).to_hex();
        if bytes.len() as u64 != f.bytes || hash.as_str() != f.blake3 {
            return Err(ExportError::mismatch(
                &f.path,
                format!(
                    "{} bytes with BLAKE3 {hash}, but the manifest recorded {} bytes with {}",
                    bytes.len(),
                    f.bytes,
                    f.blake3
                ),
            ));
        }
        for b in &pq::read(&f.path, bytes)?.batches {
            out.extend(run_rows(b).map_err(|m| ExportError::mismatch(&f.path, m))?);
        }
    }
    Ok(out)
}

/// Exported segments that have left the log since an export last looked
/// (`log_first_seq` is the log's oldest segment now): the runs of their
/// rows that the log defines again, later, are carried; remember where
/// their rows live. Carried runs the log no longer defines at all are
/// forgotten (their rows are final). Whether the map changed.
pub(crate) fn note_departures(
    dest: &Destination,
    man: &mut ExportManifest,
    engine: &mut Engine,
    log_first_seq: u64,
) -> Result<bool> {
    let since = man.log_first_seq.unwrap_or(0);
    let gone: Vec<SegmentEntry> = man
        .segments
        .iter()
        .filter(|e| e.seq >= since && e.seq < log_first_seq)
        .cloned()
        .collect();
    let mut changed = man.log_first_seq != Some(log_first_seq);
    man.log_first_seq = Some(log_first_seq);
    for e in &gone {
        let ids: Vec<String> = read_rows(dest, e)?.into_iter().map(|(_, r)| r.id).collect();
        let again: Vec<String> = engine.query(|v| {
            Ok(ids
                .iter()
                .filter(|id| v.defining_start(id).is_some())
                .cloned()
                .collect())
        })?;
        for id in again {
            man.carried.entry(id).or_insert(e.seq);
            changed = true;
        }
    }
    let before = man.carried.len();
    let carried = std::mem::take(&mut man.carried);
    man.carried = engine.query(|v| {
        Ok(carried
            .iter()
            .filter(|(id, _)| v.defining_start(id).is_some())
            .map(|(id, seq)| (id.clone(), *seq))
            .collect())
    })?;
    Ok(changed || man.carried.len() != before)
}

/// The exported segments before `first_new` whose runs rows a finish or
/// amending event in segments `first_new..=through_seq` changes.
pub(crate) fn out_of_date(
    view: &View<'_>,
    man: &ExportManifest,
    first_new: u64,
    through_seq: u64,
) -> Vec<u64> {
    let mut homes: Vec<u64> = view
        .changed_from_elsewhere(first_new, through_seq)
        .into_iter()
        .filter_map(|id| {
            man.carried
                .get(&id)
                .copied()
                .or_else(|| view.defining_start(&id).map(|(seq, _)| seq))
        })
        .filter(|&seq| seq < first_new && man.segment(seq).is_some())
        .collect();
    homes.sort_unstable();
    homes.dedup();
    homes
}
