//! Small file-system helpers: owner-only creation and folder syncs.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{IoContext, Result};

/// Create (truncating) a file readable and writable by its owner only.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Create a new file that must not exist yet, owner-only.
pub fn create_new_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Create a folder (and its parents) owner-only.
pub fn create_private_dir(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .ctx(|| format!("creating folder {}", path.display()))
}

/// Make a folder's entries (new, renamed, removed files) durable.
pub fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing folder {}", path.display()))
}

/// Make every file directly in `dir` owner-only (for files a library
/// creates with the process umask, such as tantivy's).
#[cfg(feature = "search")]
pub fn restrict_files(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Whether `path` lies inside the folder `dir` (both made absolute, and
/// resolved through symbolic links as far as they exist), so that a secret
/// meant to live elsewhere is not put where the log's writers can reach.
pub fn is_inside(path: &Path, dir: &Path) -> bool {
    fn resolve(p: &Path) -> std::path::PathBuf {
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        // The longest existing ancestor, resolved; the rest appended.
        let mut existing = abs.as_path();
        let mut rest = Vec::new();
        loop {
            if let Ok(c) = existing.canonicalize() {
                let mut out = c;
                for part in rest.iter().rev() {
                    out.push(part);
                }
                return out;
            }
            match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    existing = parent;
                }
                _ => return abs,
            }
        }
    }
    resolve(path).starts_with(resolve(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_is_judged_on_resolved_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("log");
        fs::create_dir(&log).unwrap();
        assert!(is_inside(&log.join("key"), &log));
        assert!(is_inside(&log.join("sub/../key"), &log));
        assert!(!is_inside(&tmp.path().join("key"), &log));
        assert!(!is_inside(&tmp.path().join("log2/key"), &log));
        std::os::unix::fs::symlink(&log, tmp.path().join("link")).unwrap();
        assert!(is_inside(&tmp.path().join("link/key"), &log));
    }
}
