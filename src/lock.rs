//! The single-writer lock: an fs2 exclusive lock on `LOCK` in the log folder,
//! holding the writer's process id so a refused second writer can say who
//! has it. The lock dies with the process, so a killed writer never leaves a
//! stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

pub const LOCK_FILE: &str = "LOCK";

/// An fs2 exclusive lock already taken on `file`, released explicitly when
/// dropped.
///
/// Why explicitly: a `flock` belongs to the open file description, and a
/// child that any thread of this process forks shares that description
/// until it execs or exits (close-on-exec closes it only at the exec).
/// Merely closing our descriptor while such a child lives would leave the
/// lock held, and reopening at once would be refused as `Locked`. An
/// explicit unlock releases it for every sharer.
#[derive(Debug)]
pub(crate) struct HeldLock {
    file: File,
}

impl HeldLock {
    /// Wrap a file whose exclusive lock the caller has just taken.
    pub(crate) fn from_locked(file: File) -> HeldLock {
        HeldLock { file }
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        let _ = fs2::FileExt::unlock(&self.file);
    }
}

/// Held while a writer has the log open; dropping it releases the lock.
#[derive(Debug)]
pub struct WriterLock {
    lock: HeldLock,
}

impl WriterLock {
    pub fn acquire(dir: &Path) -> Result<WriterLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .ctx(|| format!("opening {}", path.display()))?;
        // fs2 by path: std's own File::try_lock would shadow it in method syntax.
        if fs2::FileExt::try_lock_exclusive(&file).is_err() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "another process".to_string(),
                pid => format!("process {pid}"),
            };
            return Err(Error::Locked {
                dir: dir.to_path_buf(),
                holder,
            });
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .ctx(|| format!("writing {}", path.display()))?;
        Ok(WriterLock {
            lock: HeldLock::from_locked(file),
        })
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // The pid goes first; `HeldLock` then unlocks.
        let _ = self.lock.file().set_len(0);
    }
}
