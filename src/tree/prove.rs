//! Making proofs from a log folder: an event's inclusion in a signed
//! checkpoint, and the consistency of two checkpoints. Each proof is
//! checked against its checkpoint's root before it is handed out, so a
//! damaged tree file or segment gives an error, never a proof that fails
//! later in the auditor's hands.

use base64::Engine as _;

use crate::error::{Error, Result};
use crate::layout::SegmentMeta;
use crate::manifest::Manifest;

use super::logtree::{tree_start, LogTree, StoredCheckpoint};
use crate::tlog::merkle::{self, leaf_hash};
use crate::tlog::proof::{
    hashes_to_text, ConsistencyProof, InclusionProof, CONSISTENCY_FORMAT, INCLUSION_FORMAT,
    PROOF_VERSION,
};

/// The tree of a folder as a reader sees it (`persist`: store the tree
/// files of sealed segments that had to be rebuilt).
pub fn log_tree(manifest: &Manifest, segments: &[SegmentMeta], persist: bool) -> Result<LogTree> {
    let (base, cut) = tree_start(manifest, segments)?;
    Ok(LogTree::new(segments.to_vec(), base, persist).with_cut_tiles(cut))
}

fn no_checkpoint(what: String) -> Error {
    Error::InvalidArgument(what)
}

/// The checkpoint of tree size `size`, or the newest one.
pub(super) fn pick_checkpoint(tree: &mut LogTree, size: Option<u64>) -> Result<StoredCheckpoint> {
    match size {
        Some(s) => tree.checkpoint_of_size(s)?.ok_or_else(|| {
            no_checkpoint(format!(
                "the log holds no checkpoint of tree size {s} (list them with `auditlog checkpoints`)"
            ))
        }),
        None => tree.newest_checkpoint()?.ok_or_else(|| {
            no_checkpoint(
                "the log holds no signed checkpoint yet (the writer signs at every seal, at close and at its interval, when given a key)".into(),
            )
        }),
    }
}

/// The inclusion proof of the event at `lsn` in the checkpoint of tree
/// size `tree_size` (default: the newest checkpoint).
pub fn prove_inclusion(
    manifest: &Manifest,
    segments: &[SegmentMeta],
    lsn: u64,
    tree_size: Option<u64>,
) -> Result<InclusionProof> {
    let mut tree = log_tree(manifest, segments, true)?;
    let leaf = tree.leaf_of_lsn(lsn).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "LSN {lsn} is not in the log (kept LSNs start at {}; retention, or a recorded gap, may have removed it)",
            segments.first().map_or(manifest.anchor.first_lsn, |s| s.first_lsn)
        ))
    })?;
    let cp = pick_checkpoint(&mut tree, tree_size)?;
    if cp.record.tree_size <= leaf {
        return Err(no_checkpoint(format!(
            "LSN {lsn} (leaf {leaf}) is newer than the checkpoint of {} leaves: wait for the next checkpoint, or seal",
            cp.record.tree_size
        )));
    }
    let path = merkle::inclusion_proof(&mut tree, leaf, cp.record.tree_size)?
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let (_, record) = tree.record(leaf)?;
    let root = cp
        .record
        .parsed()
        .map(|c| c.root)
        .ok_or_else(|| Error::InvalidArgument("the stored checkpoint does not parse".into()))?;
    merkle::verify_inclusion(leaf, cp.record.tree_size, &leaf_hash(&record), &path, &root)
        .map_err(|e| Error::Corrupt {
            segment: "tree".into(),
            offset: 0,
            reason: format!(
                "the proof made for LSN {lsn} does not lead to the root the checkpoint signs ({e}): the log or its tree files changed; run `auditlog verify --key`"
            ),
        })?;
    Ok(InclusionProof {
        format: INCLUSION_FORMAT.into(),
        version: PROOF_VERSION,
        lsn,
        leaf_index: leaf,
        tree_size: cp.record.tree_size,
        record: base64::engine::general_purpose::STANDARD.encode(&record),
        proof: hashes_to_text(&path),
        checkpoint: cp.record.note,
    })
}

/// The consistency proof between the checkpoints of tree sizes `old` and
/// `new` (default: the newest checkpoint).
pub fn prove_consistency(
    manifest: &Manifest,
    segments: &[SegmentMeta],
    old: u64,
    new: Option<u64>,
) -> Result<ConsistencyProof> {
    let mut tree = log_tree(manifest, segments, true)?;
    let new_cp = pick_checkpoint(&mut tree, new)?;
    // The tree retention kept is signed too (its record's note): an
    // auditor who held it can follow the log from there.
    let base_note = match manifest.retention {
        Some(at) if old == tree.base().size() => super::logtree::retention_record(segments, at)?
            .map(|r| r.tree_note)
            .filter(|n| !n.is_empty()),
        _ => None,
    };
    let (m, old_note, old_root) = match base_note {
        Some(note) => {
            let c = crate::tlog::note::split(&note)
                .ok()
                .and_then(|(text, _)| crate::tlog::Checkpoint::parse(text).ok())
                .ok_or_else(|| {
                    Error::InvalidArgument("the retention note does not parse".into())
                })?;
            (c.size, note, c.root)
        }
        None => {
            let cp = pick_checkpoint(&mut tree, Some(old))?;
            let root = cp.record.parsed().map(|c| c.root).ok_or_else(|| {
                Error::InvalidArgument("a stored checkpoint does not parse".into())
            })?;
            (cp.record.tree_size, cp.record.note, root)
        }
    };
    let n = new_cp.record.tree_size;
    let path = merkle::consistency_proof(&mut tree, m, n)?
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let Some(b) = new_cp.record.parsed() else {
        return Err(Error::InvalidArgument(
            "a stored checkpoint does not parse".into(),
        ));
    };
    merkle::verify_consistency(m, n, &path, &old_root, &b.root).map_err(|e| Error::Corrupt {
        segment: "tree".into(),
        offset: 0,
        reason: format!(
            "the checkpoints of {m} and {n} leaves are not consistent with the log ({e}); run `auditlog verify --key`"
        ),
    })?;
    Ok(ConsistencyProof {
        format: CONSISTENCY_FORMAT.into(),
        version: PROOF_VERSION,
        old_size: m,
        new_size: n,
        proof: hashes_to_text(&path),
        old_checkpoint: old_note,
        new_checkpoint: new_cp.record.note,
    })
}

/// Every checkpoint in the kept log, oldest first.
pub fn checkpoints(manifest: &Manifest, segments: &[SegmentMeta]) -> Result<Vec<StoredCheckpoint>> {
    log_tree(manifest, segments, true)?.checkpoints()
}
