//! `verify`: read every byte of every segment, check every frame CRC, every
//! block digest, every footer against what its segment really holds, the
//! links between segments and the manifest's anchors. Names the first bad
//! place.

use std::path::Path;

use crate::chain::Digest;
use crate::error::{Error, Result};
use crate::layout::{self, map_file, Mode, SegmentMeta};
use crate::segment::{self, Header, Scan};

/// What `verify` found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub segments: usize,
    pub events: u64,
    pub bytes: u64,
    pub first_lsn: u64,
    /// LSN one past the last committed event.
    pub head_lsn: u64,
    pub head_digest: Digest,
    /// Where an expected digest was found (LSN one past its block).
    pub expect_found_at: Option<u64>,
    /// Bytes after the active segment's last committed block (a write in
    /// progress, or a torn tail the next writer open will cut).
    pub uncommitted_tail_bytes: u64,
}

/// Check the whole log in `dir`. `expect`: a digest anchored earlier that
/// must appear at a block boundary of the chain. `progress(done, total)`
/// is told of bytes checked.
pub fn verify(
    dir: &Path,
    expect: Option<Digest>,
    mut progress: impl FnMut(u64, u64),
) -> Result<VerifyReport> {
    let (manifest, _) = layout::load_or_create_manifest(dir, false)?;
    let anchor = manifest.anchor_digest();
    let first_lsn = manifest.anchor.first_lsn;
    let lay = layout::discover(dir, manifest, Mode::ReadOnly)?;
    let total: u64 = lay.segments.iter().map(|s| s.data_len).sum();
    let mut report = VerifyReport {
        segments: lay.segments.len(),
        first_lsn,
        head_lsn: first_lsn,
        head_digest: anchor,
        ..VerifyReport::default()
    };
    if expect == Some(anchor) {
        report.expect_found_at = Some(first_lsn);
    }
    let mut done = 0u64;
    for meta in &lay.segments {
        verify_segment(meta, expect, &mut report)?;
        done += meta.data_len;
        progress(done, total);
    }
    Ok(report)
}

fn verify_segment(
    meta: &SegmentMeta,
    expect: Option<Digest>,
    report: &mut VerifyReport,
) -> Result<()> {
    let corrupt = |offset: u64, reason: String| Error::Corrupt {
        segment: meta.name.clone(),
        offset,
        reason,
    };
    let map = map_file(&meta.path)?.ok_or_else(|| corrupt(0, "empty file".into()))?;
    let header = Header::decode(&map).map_err(|e| e.into_error(&meta.name))?;
    let data_end = if meta.sealed {
        meta.data_len as usize
    } else {
        map.len()
    };
    let mut found = None;
    let scan = segment::scan(
        &map[..data_end],
        Scan::at_start(&header),
        layout::ts_of,
        |b| {
            if Some(b.commit.digest) == expect {
                found = Some(b.commit.first_lsn + b.commit.count as u64);
            }
        },
    );
    if let Some(stop) = &scan.stop {
        let at_active_tail = !meta.sealed && stop.truncated;
        if !at_active_tail {
            return Err(corrupt(stop.offset, stop.reason.clone()));
        }
        report.uncommitted_tail_bytes = map.len() as u64 - scan.valid_end;
    }
    if meta.sealed {
        let want = (meta.count, meta.digest, meta.min_ts, meta.max_ts);
        let got = (scan.count, scan.digest, scan.min_ts, scan.max_ts);
        if want != got {
            return Err(corrupt(
                meta.data_len,
                format!(
                    "footer says {} events ending at digest {}, but the segment holds {} ending at {}",
                    meta.count, meta.digest, scan.count, scan.digest
                ),
            ));
        }
    }
    if found.is_some() {
        report.expect_found_at = found;
    }
    report.events += scan.count;
    report.bytes += map.len() as u64;
    report.head_lsn = scan.next_lsn;
    report.head_digest = scan.digest;
    Ok(())
}
