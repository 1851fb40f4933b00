//! Where an export goes: a local folder or an S3-compatible bucket, both
//! through `object_store`. Every object is written whole or not at all: a
//! local file is staged under a temporary name and renamed into place
//! (then fsynced, with its folder), an S3 object becomes visible only when
//! its PUT, or its multipart upload, completes. A crash leaves at most an
//! unfinished temporary, never a half object under a real name.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{ExportError, Result};
use crate::syncer::Syncer;

/// Size of each uploaded part, by default (S3's minimum is 5 MiB but for
/// the last part, its maximum 5 GiB).
pub const DEFAULT_PART_BYTES: usize = 16 << 20;
/// Objects of this many parts or more go up as multipart uploads (64 MiB
/// by default: S3 caps a single PUT at 5 GiB, and a part retried costs
/// less than a whole file).
pub const MULTIPART_FROM_PARTS: usize = 4;
/// The part sizes [`Destination::set_part_bytes`] accepts. Below 5 MiB only
/// a server configured for it (a local test server) takes the parts.
pub const PART_BYTES_RANGE: std::ops::RangeInclusive<usize> = 1024..=(5 << 30);

/// Where to export, as given by the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationSpec {
    /// A local folder (created if missing).
    Local(PathBuf),
    /// `s3://bucket/prefix`, with an optional endpoint for S3-compatible
    /// servers (else `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3`, else AWS).
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
    },
}

impl DestinationSpec {
    /// Parse `s3://bucket/prefix`, `file:///path` or a plain path.
    pub fn parse(text: &str, endpoint: Option<&str>) -> Result<DestinationSpec> {
        let bad = |reason: &str| ExportError::Destination {
            dest: text.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket name (s3://BUCKET/PREFIX)"));
            }
            return Ok(DestinationSpec::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
                endpoint: endpoint.map(str::to_string),
            });
        }
        if endpoint.is_some() {
            return Err(bad("--endpoint applies to s3:// destinations only"));
        }
        if text.contains("://") && !text.starts_with("file://") {
            return Err(bad(
                "unknown scheme: use a folder, file:///PATH or s3://BUCKET/PREFIX",
            ));
        }
        let path = text.strip_prefix("file://").unwrap_or(text);
        if path.is_empty() {
            return Err(bad("empty path"));
        }
        Ok(DestinationSpec::Local(PathBuf::from(path)))
    }
}

/// An open destination.
pub struct Destination {
    store: Arc<dyn ObjectStore>,
    /// The folder of a local destination (for fsyncs).
    local_root: Option<PathBuf>,
    /// Prefix inside the bucket (S3), "" for a local folder.
    prefix: String,
    /// How the destination is named in messages and in the log's
    /// `EXPORTED` marker: `file:///abs/path` or `s3://bucket/prefix`.
    url: String,
    rt: tokio::runtime::Runtime,
    /// Puts still allowed before they fail (fault injection for tests).
    put_budget: AtomicU64,
    /// Size of a multipart upload's parts.
    part_bytes: usize,
    /// fsyncs of files put with [`Destination::put_file`], not yet
    /// waited for (local destinations only).
    syncer: Mutex<Option<Syncer>>,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("url", &self.url)
            .finish()
    }
}

impl Destination {
    /// Open a destination. A local folder is created (owner-only) if
    /// missing; S3 credentials and region come from the environment as the
    /// AWS tools read them (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
    /// `AWS_ENDPOINT_URL`, web identity and container credentials, else
    /// the instance metadata service).
    pub fn open(spec: &DestinationSpec) -> Result<Destination> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ExportError::Destination {
                dest: format!("{spec:?}"),
                reason: format!("cannot start the I/O runtime: {e}"),
            })?;
        match spec {
            DestinationSpec::Local(path) => Destination::open_local(path, rt),
            DestinationSpec::S3 {
                bucket,
                prefix,
                endpoint,
            } => Destination::open_s3(bucket, prefix, endpoint.as_deref(), rt),
        }
    }

    fn open_local(path: &Path, rt: tokio::runtime::Runtime) -> Result<Destination> {
        let shown = path.display().to_string();
        let bad = |reason: String| ExportError::Destination {
            dest: shown.clone(),
            reason,
        };
        if !path.exists() {
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(path)
            .map_err(|e| bad(format!("cannot create the folder: {e}")))?;
        }
        let root = path
            .canonicalize()
            .map_err(|e| bad(format!("cannot resolve the folder: {e}")))?;
        if !root.is_dir() {
            return Err(bad("is not a folder".into()));
        }
        let store = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| bad(e.to_string()))?
            .with_automatic_cleanup(true);
        Ok(Destination {
            store: Arc::new(store),
            url: format!("file://{}", root.display()),
            local_root: Some(root),
            prefix: String::new(),
            rt,
            put_budget: AtomicU64::new(u64::MAX),
            part_bytes: DEFAULT_PART_BYTES,
            syncer: Mutex::new(None),
        })
    }

    fn open_s3(
        bucket: &str,
        prefix: &str,
        endpoint: Option<&str>,
        rt: tokio::runtime::Runtime,
    ) -> Result<Destination> {
        // TLS through rustls needs a process-wide crypto provider; ring is
        // the one compiled in. A second install (another export in the same
        // process) fails harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let endpoint = endpoint.map(str::to_string).or_else(|| {
            std::env::var("AWS_ENDPOINT_URL_S3")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .ok()
        });
        if let Some(ep) = &endpoint {
            b = b.with_endpoint(ep.clone());
            if ep.starts_with("http://") {
                b = b.with_allow_http(true);
            }
        }
        let store = b.build().map_err(|e| ExportError::Destination {
            dest: url.clone(),
            reason: e.to_string(),
        })?;
        Ok(Destination {
            store: Arc::new(store),
            local_root: None,
            prefix: prefix.to_string(),
            url,
            rt,
            put_budget: AtomicU64::new(u64::MAX),
            part_bytes: DEFAULT_PART_BYTES,
            syncer: Mutex::new(None),
        })
    }

    /// Upload objects in parts of `bytes` bytes, as multipart uploads from
    /// [`MULTIPART_FROM_PARTS`] parts up (default [`DEFAULT_PART_BYTES`]).
    /// Outside [`PART_BYTES_RANGE`] is an error.
    pub fn set_part_bytes(&mut self, bytes: usize) -> Result<()> {
        if !PART_BYTES_RANGE.contains(&bytes) {
            return Err(ExportError::Destination {
                dest: self.url.clone(),
                reason: format!(
                    "a part of {bytes} bytes is outside {}..={} bytes",
                    PART_BYTES_RANGE.start(),
                    PART_BYTES_RANGE.end()
                ),
            });
        }
        self.part_bytes = bytes;
        Ok(())
    }

    /// `file:///abs/path` or `s3://bucket/prefix`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn full(&self, key: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(key)
        } else {
            ObjPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn store_err(&self, op: &'static str, key: &str, source: object_store::Error) -> ExportError {
        ExportError::Store {
            dest: self.url.clone(),
            op,
            path: key.to_string(),
            source: Box::new(source),
        }
    }

    /// Write `bytes` as object `key`, whole or not at all, replacing any
    /// object of that name; durable once this returns, and so is every
    /// object put before it with [`Destination::put_file`].
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.sync_files()?;
        self.store_put(key, bytes)?;
        self.sync_local(key)
    }

    /// As [`Destination::put`], but durable only once a later `put` or
    /// [`Destination::sync_files`] returns: a local file is fsynced by a
    /// background thread meanwhile (docs/export.md, "Destinations and
    /// credentials"). For the Parquet files, which the manifest names only
    /// after they are durable.
    pub fn put_file(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.store_put(key, bytes)?;
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let mut guard = self
            .syncer
            .lock()
            .map_err(|_| self.sync_err("lost its lock"))?;
        if guard.is_none() {
            let started =
                Syncer::start().map_err(|e| self.sync_err(&format!("cannot start: {e}")))?;
            *guard = Some(started);
        }
        let sent = guard.as_ref().is_some_and(|s| s.send(root.join(key)));
        if sent {
            return Ok(());
        }
        // The thread stopped: its error says why.
        let why = guard.take().map_or(Ok(()), Syncer::finish).err();
        Err(self.sync_err(why.as_deref().unwrap_or("stopped")))
    }

    /// Wait until every file put with [`Destination::put_file`] is durable.
    pub fn sync_files(&self) -> Result<()> {
        let pending = self
            .syncer
            .lock()
            .map_err(|_| self.sync_err("lost its lock"))?
            .take();
        match pending {
            Some(s) => s.finish().map_err(|e| self.sync_err(&e)),
            None => Ok(()),
        }
    }

    fn sync_err(&self, reason: &str) -> ExportError {
        ExportError::Destination {
            dest: self.url.clone(),
            reason: format!("fsync of the exported files: {reason}"),
        }
    }

    /// Write `bytes` as object `key` (not synced).
    fn store_put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let left = self.put_budget.load(Ordering::SeqCst);
        if left == 0 {
            return Err(ExportError::Destination {
                dest: self.url.clone(),
                reason: format!("writing {key}: injected failure"),
            });
        }
        self.put_budget
            .store(left.saturating_sub(1), Ordering::SeqCst);
        let path = self.full(key);
        let len = bytes.len();
        let store = &self.store;
        let part = self.part_bytes;
        let r = self.rt.block_on(async {
            if len < part.saturating_mul(MULTIPART_FROM_PARTS) {
                store.put(&path, PutPayload::from(bytes)).await.map(|_| ())
            } else {
                let mut upload = store.put_multipart(&path).await?;
                let all = Bytes::from(bytes);
                let mut at = 0;
                while at < len {
                    let end = (at + part).min(len);
                    if let Err(e) = upload.put_part(PutPayload::from(all.slice(at..end))).await {
                        let _ = upload.abort().await;
                        return Err(e);
                    }
                    at = end;
                }
                // A refused completion (a part too small, say) leaves the
                // parts stored but invisible: give them back.
                match upload.complete().await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let _ = upload.abort().await;
                        Err(e)
                    }
                }
            }
        });
        r.map_err(|e| self.store_err("writing", key, e))
    }

    /// Let `n` more puts succeed, then fail every one, as a crash at
    /// that point would leave the destination (tests of crash safety).
    #[doc(hidden)]
    pub fn fail_puts_after(&self, n: u64) {
        self.put_budget.store(n, Ordering::SeqCst);
    }

    /// Remove the staging files that a killed export left in a local
    /// destination under `under` (object_store stages a file as
    /// `NAME#N` and renames it into place); they hold no complete object.
    pub fn remove_stale_staging(&self, under: &str) -> Result<()> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let rel = p
                    .strip_prefix(root)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .to_string();
                let staged = p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().contains('#'));
                if staged && rel.contains(under) {
                    std::fs::remove_file(&p).map_err(|e| ExportError::Destination {
                        dest: self.url.clone(),
                        reason: format!("removing the stale staging file {}: {e}", p.display()),
                    })?;
                }
            }
        }
        Ok(())
    }

    /// object_store's local store renames a staged file into place but does
    /// not fsync: do it, file and folder, so a power cut cannot leave the
    /// manifest naming a file whose bytes never reached the disk.
    fn sync_local(&self, key: &str) -> Result<()> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let file = root.join(key);
        let sync = |p: &Path| std::fs::File::open(p).and_then(|f| f.sync_all());
        sync(&file)
            .and_then(|_| file.parent().map_or(Ok(()), sync))
            .map_err(|e| ExportError::Destination {
                dest: self.url.clone(),
                reason: format!("syncing {}: {e}", file.display()),
            })
    }

    /// The object `key`, or `None` if there is none.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.full(key);
        let store = &self.store;
        let r = self.rt.block_on(async {
            match store.get(&path).await {
                Ok(res) => res.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        r.map(|b| b.map(|b| b.to_vec()))
            .map_err(|e| self.store_err("reading", key, e))
    }

    /// Every object under `dir` (a `/`-separated key prefix), as keys
    /// relative to the destination, sorted.
    pub fn list(&self, dir: &str) -> Result<Vec<String>> {
        let path = self.full(dir);
        let store = &self.store;
        let r: std::result::Result<Vec<_>, _> = self
            .rt
            .block_on(async { store.list(Some(&path)).try_collect().await });
        let metas = r.map_err(|e| self.store_err("listing", dir, e))?;
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut keys: Vec<String> = metas
            .into_iter()
            .map(|m| {
                let k = m.location.to_string();
                k.strip_prefix(&strip).map(str::to_string).unwrap_or(k)
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Remove object `key` (absent is fine).
    pub fn delete(&self, key: &str) -> Result<()> {
        let path = self.full(key);
        let store = &self.store;
        match self.rt.block_on(async { store.delete(&path).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_err("deleting", key, e)),
        }
    }
}
