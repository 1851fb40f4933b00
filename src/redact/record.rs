//! Which policy a writer applies, and the log's record of it: the MANIFEST
//! lists every policy that came into force (from which LSN), so `verify`
//! can say what was in force, and a writer that names no policy goes on
//! with the recorded one rather than silently storing everything.

use std::sync::Arc;

use super::RedactionPolicy;
use crate::error::{Error, Result};
use crate::event::Micros;
use crate::manifest::{Manifest, PolicyRecord};

/// What a writer opening the log applies: the policy it was given (a
/// change is recorded in `manifest`, from `next_lsn` on), or, given none,
/// the one recorded last. True when `manifest` changed and must be stored.
pub(crate) fn settle(
    configured: Option<&Arc<RedactionPolicy>>,
    manifest: &mut Manifest,
    next_lsn: u64,
    now: Micros,
) -> Result<(Option<Arc<RedactionPolicy>>, bool)> {
    let current = manifest.current_policy();
    let Some(p) = configured else {
        let Some(rec) = current else {
            return Ok((None, false));
        };
        if rec.keyed {
            return Err(Error::InvalidArgument(format!(
                "this log's redaction policy `{}` ({}) uses a keyed hash; open it with that policy and its key",
                rec.name, rec.fingerprint
            )));
        }
        let adopted = RedactionPolicy::parse(&rec.text).map_err(|e| {
            Error::InvalidArgument(format!(
                "the redaction policy recorded in the MANIFEST does not read back: {e}"
            ))
        })?;
        return Ok((nonempty(Arc::new(adopted)), false));
    };
    let fingerprint = p.fingerprint();
    let unchanged = match current {
        Some(rec) => rec.fingerprint == fingerprint,
        None => p.is_empty(),
    };
    if !unchanged {
        manifest.record_policy(PolicyRecord {
            since_lsn: next_lsn,
            since_ts: now,
            name: p.name(),
            fingerprint,
            text: p.to_text(),
            keyed: p.is_keyed(),
        });
    }
    Ok((nonempty(p.clone()), !unchanged))
}

/// An empty policy is no policy (what the encoder checks for).
fn nonempty(p: Arc<RedactionPolicy>) -> Option<Arc<RedactionPolicy>> {
    (!p.is_empty()).then_some(p)
}
