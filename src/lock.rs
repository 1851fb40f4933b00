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

/// Held while a writer has the log open; dropping it releases the lock.
#[derive(Debug)]
pub struct WriterLock {
    file: File,
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
        Ok(WriterLock { file })
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = fs2::FileExt::unlock(&self.file);
    }
}
