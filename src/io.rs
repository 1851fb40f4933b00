//! The I/O seam: every file operation the writer performs goes through
//! [`WriterIo`], which asks an optional [`FaultInjector`] first. Tests use it
//! to inject short writes, EIO and ENOSPC on write or sync, and failing
//! creates and renames; production code runs with no injector.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

/// A file operation of the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// Appending bytes to a segment (the length is given).
    Write(usize),
    /// fdatasync/fsync of a segment or the manifest.
    Sync,
    /// Creating a segment file.
    Create,
    /// Replacing the manifest (rename) or removing a segment.
    Rename,
    Remove,
}

/// What an injector does to an operation.
#[derive(Debug)]
pub enum Fault {
    /// Fail with this error before doing anything.
    Fail(io::Error),
    /// Write only the first `n` bytes, then fail with this error.
    Short(usize, io::Error),
}

/// Decides, per operation, whether to inject a fault.
pub trait FaultInjector: Send + Sync + std::fmt::Debug {
    fn check(&self, op: IoOp, path: &Path) -> Option<Fault>;
}

/// The writer's view of the file system.
#[derive(Clone, Debug, Default)]
pub struct WriterIo {
    pub faults: Option<Arc<dyn FaultInjector>>,
}

impl WriterIo {
    fn check(&self, op: IoOp, path: &Path) -> Option<Fault> {
        self.faults.as_ref().and_then(|f| f.check(op, path))
    }

    /// Fail `op` if an injector says so (used for ops that have no bytes).
    pub fn gate(&self, op: IoOp, path: &Path) -> io::Result<()> {
        match self.check(op, path) {
            None => Ok(()),
            Some(Fault::Fail(e)) | Some(Fault::Short(_, e)) => Err(e),
        }
    }

    pub fn write_all(&self, file: &mut File, path: &Path, buf: &[u8]) -> io::Result<()> {
        match self.check(IoOp::Write(buf.len()), path) {
            None => file.write_all(buf),
            Some(Fault::Fail(e)) => Err(e),
            Some(Fault::Short(n, e)) => {
                file.write_all(&buf[..n.min(buf.len())])?;
                Err(e)
            }
        }
    }

    pub fn sync_data(&self, file: &File, path: &Path) -> io::Result<()> {
        self.gate(IoOp::Sync, path)?;
        file.sync_data()
    }
}
