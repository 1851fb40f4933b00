//! fsyncs of a local destination's files, taken off the exporting thread.
//!
//! A local export fsynced every file and its folder inside `put`, on the
//! thread that also builds the next segment's `runs` rows and hands
//! segments to the encoder threads: 488 fsyncs for 30 segments, 4.3 s of
//! a 25.5 s export spent waiting (docs/benchmarks.md, "export26"). The
//! crash-safety rule only needs every file durable before the manifest
//! that names it is written, so files are now synced by one background
//! thread while the export goes on, and [`Syncer::finish`] (called before
//! every manifest write) waits for all of them. A crash before that leaves
//! files the manifest does not name, which a rerun writes again under the
//! same names, as before.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

/// A background thread fsyncing the files it is sent, then (at
/// [`Syncer::finish`]) each of their folders once.
pub(crate) struct Syncer {
    tx: Sender<PathBuf>,
    worker: JoinHandle<Result<(), String>>,
}

impl Syncer {
    pub fn start() -> std::io::Result<Syncer> {
        let (tx, rx) = channel::<PathBuf>();
        let worker = std::thread::Builder::new()
            .name("auditlog-fsync".into())
            .spawn(move || {
                let mut folders = BTreeSet::new();
                // Every file sent is synced even after a failure, so the
                // first error is the one reported and the rest still land.
                let mut first_err = None;
                for file in rx {
                    if let Err(e) = sync(&file) {
                        first_err.get_or_insert(format!("syncing {}: {e}", file.display()));
                    }
                    if let Some(dir) = file.parent() {
                        folders.insert(dir.to_path_buf());
                    }
                }
                for dir in folders {
                    if let Err(e) = sync(&dir) {
                        first_err.get_or_insert(format!("syncing {}: {e}", dir.display()));
                    }
                }
                first_err.map_or(Ok(()), Err)
            })?;
        Ok(Syncer { tx, worker })
    }

    /// Sync `file` (already renamed into place) and, at the end, its folder.
    /// False if the thread has stopped (then [`Syncer::finish`] says why).
    pub fn send(&self, file: PathBuf) -> bool {
        self.tx.send(file).is_ok()
    }

    /// Wait until every file sent and its folder are durable; the first
    /// failure, if any.
    pub fn finish(self) -> Result<(), String> {
        drop(self.tx);
        self.worker
            .join()
            .unwrap_or_else(|_| Err("the fsync thread panicked".to_string()))
    }
}

fn sync(p: &Path) -> std::io::Result<()> {
    std::fs::File::open(p).and_then(|f| f.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_what_it_is_sent_and_names_what_it_could_not() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("a.parquet");
        std::fs::write(&good, b"bytes").unwrap();
        let s = Syncer::start().unwrap();
        assert!(s.send(good.clone()));
        assert_eq!(s.finish(), Ok(()));

        let gone = dir.path().join("gone.parquet");
        let s = Syncer::start().unwrap();
        assert!(s.send(gone.clone()));
        assert!(s.send(good));
        let err = s.finish().unwrap_err();
        assert!(err.contains("gone.parquet"), "{err}");
    }
}
