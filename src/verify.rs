//! `verify`: check everything a read relies on (docs/format.md, "How a
//! reader checks a log"): every frame CRC, every block digest, every event
//! through the strict decoder the readers use, every footer against its
//! segment and the MANIFEST, the MANIFEST and the segments both ways, the
//! numbering up to recorded gaps, the retention record, the quarantine files
//! named by cut and repair records, and every derived index file against the
//! segment it was built from. Names the first bad place.

use std::path::Path;

use crate::blocks::Walk;
use crate::chain::Digest;
use crate::codec;
use crate::error::{Error, Result};
use crate::event::system::SystemRecord;
use crate::layout::{self, map_file, Mode, SegmentMeta};
use crate::manifest::{Manifest, RecordRef};
use crate::segment::{Header, HEADER_SIZE};

/// What `verify` found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub segments: usize,
    pub events: u64,
    pub bytes: u64,
    pub first_lsn: u64,
    /// LSN one past the last committed event (after a recorded gap this is
    /// not the number of events).
    pub head_lsn: u64,
    pub head_digest: Digest,
    /// Where an expected digest was found (LSN one past its block).
    pub expect_found_at: Option<u64>,
    /// Bytes after the active segment's last committed block (a write in
    /// progress, or a torn tail the next writer open will cut).
    pub uncommitted_tail_bytes: u64,
    /// System events in the log: torn-tail cuts, repairs, retentions.
    pub cuts: u64,
    pub repairs: u64,
    pub retentions: u64,
    /// Checkpoint events in the log (their signatures and roots are
    /// checked only with a key: [`VerifyOptions::key`]).
    pub checkpoints: u64,
    /// The newest segment, sealed before a crash but not yet listed in the
    /// MANIFEST (the next writer open adds it).
    pub unlisted_newest: Option<u64>,
    /// A cut, repair or retention the MANIFEST holds as pending (a crash
    /// interrupted it; the next writer open finishes it).
    pub pending: Option<String>,
    /// Derived index files checked: bound to their segment, and compared
    /// byte for byte with the image built from the decoded events.
    pub indexes_checked: u64,
    /// Derived index files of an older format, rebuilt (not an error).
    pub indexes_stale: u64,
    /// The redaction policies recorded in the MANIFEST, oldest first; the
    /// last one is in force. Empty: the log never had one.
    pub redaction: Vec<crate::manifest::PolicyRecord>,
    /// With a key ([`VerifyOptions::key`]): the Merkle tree recomputed and
    /// every checkpoint checked.
    pub tree: Option<crate::tree::TreeReport>,
}

/// How `verify` runs.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// A digest anchored earlier that must appear at a block boundary.
    pub expect: Option<Digest>,
    /// Also rebuild every derived index through the query engine's own
    /// build path (a second walk of the segment) and compare it byte for
    /// byte; plain `verify` already compares each with the image built from
    /// the events it decodes.
    pub deep: bool,
    /// Leave a failing derived file where it is (otherwise it is moved into
    /// `quarantine/` and rebuilt, so that no query believes it).
    pub read_only: bool,
    /// Recompute the Merkle tree from the events and check every
    /// checkpoint's signature and root, and the retention notes, with this
    /// public key (docs/proofs.md).
    pub key: Option<crate::tlog::VerifierKey>,
    /// With `key`: events after the newest checkpoint (which a running
    /// writer signs within its interval) are reported, not refused.
    pub allow_unsigned_tail: bool,
}

impl VerifyReport {
    /// The policy in force now (`None`: no redaction ever recorded).
    pub fn redaction_in_force(&self) -> Option<&crate::manifest::PolicyRecord> {
        self.redaction.last()
    }
}

/// Check the whole log in `dir`. `expect`: a digest anchored earlier that
/// must appear at a block boundary of the chain. `progress(done, total)` is
/// told of bytes checked.
pub fn verify(
    dir: &Path,
    expect: Option<Digest>,
    progress: impl FnMut(u64, u64),
) -> Result<VerifyReport> {
    let opts = VerifyOptions {
        expect,
        ..VerifyOptions::default()
    };
    verify_with(dir, &opts, progress)
}

/// [`verify`] with every option.
pub fn verify_with(
    dir: &Path,
    opts: &VerifyOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<VerifyReport> {
    let (manifest, _) = layout::load_or_create_manifest(dir, false)?;
    let anchor = manifest.anchor_digest();
    let first_lsn = manifest.anchor.first_lsn;
    let redaction = manifest.redaction.clone();
    let lay = layout::discover(dir, manifest, Mode::ReadOnly)?;
    let total: u64 = lay.segments.iter().map(|s| s.data_len).sum();
    let mut report = VerifyReport {
        segments: lay.segments.len(),
        first_lsn,
        head_lsn: first_lsn,
        head_digest: anchor,
        unlisted_newest: lay.unlisted_newest,
        pending: lay.manifest.pending.as_ref().map(|p| p.name().to_string()),
        redaction,
        ..VerifyReport::default()
    };
    if opts.expect == Some(anchor) {
        report.expect_found_at = Some(first_lsn);
    }
    let mut records = Records::default();
    let mut done = 0u64;
    let mut tree = match &opts.key {
        Some(k) => Some(crate::tree::verify_tree::TreeCheck::new(
            k.clone(),
            &lay.manifest,
            &lay.segments,
            opts.read_only,
        )?),
        None => None,
    };
    let mut indexes = crate::derived::IndexCheck::new(&lay, opts.deep);
    for meta in &lay.segments {
        let map = map_file(&meta.path)?.ok_or_else(|| Error::Corrupt {
            segment: meta.name.clone(),
            offset: 0,
            reason: "empty file".into(),
        })?;
        let mut feed = indexes.start(meta, &map);
        let walk = SegmentWalk {
            dir,
            meta,
            map: &map,
            expect: opts.expect,
        };
        let chain = walk.run(&mut report, &mut records, tree.as_mut(), feed.as_mut())?;
        indexes.end(meta, &map, &chain, feed);
        done += meta.data_len;
        progress(done, total);
    }
    records.check(&lay.manifest)?;
    if let Some(t) = tree {
        report.tree = Some(t.finish(opts.allow_unsigned_tail)?);
    }
    let mut derived = crate::derived::Checked::default();
    let checked = indexes.finish(dir, opts.read_only, &mut derived);
    report.indexes_checked = derived.checked;
    report.indexes_stale = derived.stale;
    checked?;
    Ok(report)
}

/// The retention records met, newest last.
#[derive(Default)]
struct Records {
    newest_retention: Option<(RecordRef, SystemRecord)>,
}

impl Records {
    /// The newest retention record must be the one the MANIFEST names (or,
    /// after a crash, the pending one the next writer open finishes).
    fn check(&self, manifest: &Manifest) -> Result<()> {
        let Some((at, rec)) = &self.newest_retention else {
            // discover() already refused an anchor moved without a record.
            return Ok(());
        };
        if manifest.retention == Some(*at) || manifest.pending.as_ref() == Some(rec) {
            return Ok(());
        }
        Err(Error::Corrupt {
            segment: "MANIFEST".into(),
            offset: 0,
            reason: format!(
                "the newest retention record is at segment {} offset {} (LSN {}), but the MANIFEST names {:?}",
                at.seq, at.offset, at.lsn, manifest.retention
            ),
        })
    }
}

use crate::derived::ChainPoints;

/// One segment as `verify` walks it.
struct SegmentWalk<'a> {
    dir: &'a Path,
    meta: &'a SegmentMeta,
    map: &'a [u8],
    expect: Option<Digest>,
}

impl SegmentWalk<'_> {
    /// Check every block and event of the segment; feed the decoded events
    /// to `feed` (the index image `verify` compares the stored file with).
    fn run(
        &self,
        report: &mut VerifyReport,
        records: &mut Records,
        mut tree: Option<&mut crate::tree::verify_tree::TreeCheck>,
        mut feed: Option<&mut crate::derived::Feed>,
    ) -> Result<ChainPoints> {
        let (dir, meta, map, expect) = (self.dir, self.meta, self.map, self.expect);
        let corrupt = |offset: u64, reason: String| Error::Corrupt {
            segment: meta.name.clone(),
            offset,
            reason,
        };
        let header = Header::decode(map).map_err(|e| e.into_error(&meta.name))?;
        let data_end = if meta.sealed {
            meta.data_len
        } else {
            map.len() as u64
        };
        let mut walk = Walk::new(
            map,
            HEADER_SIZE as u64,
            data_end,
            header.prev_digest,
            header.first_lsn,
        );
        let mut points = vec![(HEADER_SIZE as u64, header.prev_digest)];
        if let Some(t) = tree.as_deref_mut() {
            t.segment_start(meta, header.version);
        }
        let (mut count, mut min_ts, mut max_ts) = (0u64, None::<i64>, None::<i64>);
        let mut found = None;
        loop {
            let block = match walk.next_block() {
                Ok(Some(b)) => b,
                Ok(None) => break,
                // The active segment's committed end (discover() already refused
                // damage with committed blocks after it).
                Err(stop) if !meta.sealed && walk.pos() == meta.data_len => {
                    report.uncommitted_tail_bytes = map.len() as u64 - meta.data_len;
                    let _ = stop;
                    break;
                }
                Err(stop) => return Err(corrupt(stop.offset, stop.reason)),
            };
            for (lsn, (at, payload)) in (block.commit.first_lsn..).zip(block.events()) {
                let ev = codec::decode_stored(payload)
                    .map_err(|r| corrupt(at, format!("event record does not decode: {r}")))?;
                min_ts = Some(min_ts.map_or(ev.ts, |m| m.min(ev.ts)));
                max_ts = Some(max_ts.map_or(ev.ts, |m| m.max(ev.ts)));
                if let Some(r) = ev.data.system() {
                    system_record(dir, meta, r, at, lsn, block.commit.count, report, records)?;
                }
                if let Some(t) = tree.as_deref_mut() {
                    let (start, first, n) =
                        (block.start, block.commit.first_lsn, block.commit.count);
                    t.event(meta, start, first, n, at, lsn, payload, &ev)?;
                }
                if let Some(f) = feed.as_deref_mut() {
                    let end = at + (crate::frame::FRAME_HEADER + 1 + payload.len()) as u64;
                    f.event(block.end, lsn, at, end, &ev);
                }
            }
            if let Some(f) = feed.as_deref_mut() {
                f.block(block.end, block.commit.digest);
            }
            count += block.commit.count as u64;
            points.push((block.end, block.commit.digest));
            if Some(block.commit.digest) == expect {
                found = Some(block.end_lsn());
            }
        }
        let got = (count, walk.digest(), min_ts, max_ts);
        let want = (meta.count, meta.digest, meta.min_ts, meta.max_ts);
        if got != want {
            return Err(corrupt(
                meta.data_len,
                format!(
                    "{} {} events ending at digest {}, but the segment holds {} ending at {}",
                    if meta.sealed {
                        "footer says"
                    } else {
                        "the open scan found"
                    },
                    meta.count,
                    meta.digest,
                    count,
                    walk.digest()
                ),
            ));
        }
        if found.is_some() {
            report.expect_found_at = found;
        }
        if let Some(t) = tree {
            t.segment_end(meta);
        }
        report.events += count;
        report.bytes += map.len() as u64;
        report.head_lsn = walk.next_lsn();
        report.head_digest = walk.digest();
        Ok(points)
    }
}

/// A system event met by `verify`: count it; a cut's quarantine file must be
/// there with the recorded BLAKE3; remember the newest retention record.
#[allow(clippy::too_many_arguments)]
fn system_record(
    dir: &Path,
    meta: &SegmentMeta,
    r: &SystemRecord,
    at: u64,
    lsn: u64,
    block_events: u32,
    report: &mut VerifyReport,
    records: &mut Records,
) -> Result<()> {
    match r {
        SystemRecord::TornTailCut(_) => report.cuts += 1,
        SystemRecord::Repair(_) => report.repairs += 1,
        SystemRecord::Checkpoint(_) => report.checkpoints += 1,
        SystemRecord::Retention(_) => {
            report.retentions += 1;
            if block_events == 1 {
                let at = RecordRef {
                    seq: meta.seq,
                    offset: at,
                    lsn,
                };
                records.newest_retention = Some((at, r.clone()));
            }
        }
    }
    if let Some(c) = r.cut() {
        let path = dir.join(&c.quarantine);
        let ok = std::fs::read(&path)
            .is_ok_and(|b| Digest(*blake3::hash(&b).as_bytes()).to_hex() == c.quarantine_blake3);
        if !ok {
            return Err(Error::Corrupt {
                segment: meta.name.clone(),
                offset: at,
                reason: format!(
                    "the {} recorded at LSN {lsn} moved {} bytes into {}, but that file is missing or no longer has the recorded BLAKE3 (quarantined evidence was removed or changed)",
                    r.name(),
                    c.quarantine_bytes,
                    c.quarantine
                ),
            });
        }
    }
    Ok(())
}
