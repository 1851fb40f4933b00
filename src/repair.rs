//! `auditlog repair`: damage in the newest segment with committed blocks
//! after it is refused by every open; this moves the damaged file into
//! `quarantine/` byte for byte, keeps its valid prefix, skips every LSN and
//! segment number the rest may hold, and records the repair as a system
//! event (docs/integrity.md). The steps are crate::recovery's; a writer
//! open finishes them.

use std::fs;
use std::path::Path;

use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::event::system::{Cut, SystemRecord};
use crate::log::Log;
use crate::recovery;

/// What `auditlog repair` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairReport {
    /// Nothing to repair: every segment's tail verifies.
    Clean,
    /// A torn tail, cut as any writer open would (recorded).
    TornTailCut(Cut),
    /// Damage with committed blocks after it, moved into quarantine/.
    Repaired(Cut),
}

/// `auditlog repair`: see the module docs and docs/integrity.md.
pub fn repair(dir: &Path) -> Result<RepairReport> {
    // A pending record, or a torn tail, is what a writer open finishes.
    {
        let mut cfg = Config::new(dir);
        cfg.create = false;
        match Log::open(cfg) {
            Ok(log) => {
                let cut = log.recovery().cut.clone();
                log.close()?;
                return Ok(match cut {
                    Some(c) => RepairReport::TornTailCut(c),
                    None => RepairReport::Clean,
                });
            }
            Err(Error::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let lock = crate::lock::WriterLock::acquire(dir)?;
    let (mut manifest, _) = crate::layout::load_or_create_manifest(dir, false)?;
    let lay = crate::layout::discover(dir, manifest.clone(), crate::layout::Mode::Repair)?;
    let Some(damage) = lay.tail.filter(|t| t.committed_after) else {
        return Err(Error::InvalidArgument(
            "the damage is not in the newest segment: a sealed segment is never rewritten (the segments after it chain from its footer); reads of the other segments still work, restore the file from a copy".into(),
        ));
    };
    let bytes = fs::read(&damage.path).ctx(|| format!("reading {}", damage.path.display()))?;
    let cut = recovery::plan_repair(dir, &damage, &bytes);
    recovery::set_pending(dir, &mut manifest, SystemRecord::Repair(cut.clone()))?;
    recovery::apply_cut_files(dir, &cut)?;
    drop(lock);
    // The writer open finishes it: seals the kept prefix, starts the next
    // segment after the gap, appends the record, clears `pending`.
    let mut cfg = Config::new(dir);
    cfg.create = false;
    let log = Log::open(cfg)?;
    log.close()?;
    Ok(RepairReport::Repaired(cut))
}
