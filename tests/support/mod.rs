//! Helpers shared by the engine's and the command line's test suites
//! (tests/engine/, cli/tests/cli/).
#![allow(dead_code)]

pub mod forge;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use auditlog::internals::io::{Fault, FaultInjector, IoOp};
use auditlog::{Config, Event, LogReader, ReplayRange, RunFinished, RunStarted};

/// 2026-11-23T00:00:00Z in µs.
pub const DAY0: i64 = 1_795_392_000_000_000;
pub const DAY_US: i64 = 86_400_000_000;

/// A run_started event whose run_id is `ev-<n>` (content we can match).
pub fn ev(n: u64, ts: i64) -> Event {
    Event::run_started(
        format!("ev-{n}"),
        ts,
        RunStarted {
            skill_id: "skill.test".into(),
            caller_id: format!("caller-{}", n % 7),
            ..RunStarted::default()
        },
    )
}

pub fn finished(run: &str, ts: i64, output: &str) -> Event {
    Event::run_finished(
        run,
        ts,
        RunFinished {
            output: output.into(),
            ..RunFinished::default()
        },
    )
}

/// A fresh folder for a log (the folder itself does not exist yet).
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("log");
    (t, dir)
}

pub fn config(dir: &Path) -> Config {
    Config::new(dir)
}

/// Every stored event, in log order, with its LSN.
pub fn replay_all(dir: &Path) -> Vec<(u64, Event)> {
    let r = LogReader::open(dir).expect("log opens read-only");
    r.replay(ReplayRange::default())
        .collect::<Result<Vec<_>, _>>()
        .expect("log replays")
}

pub fn run_ids(dir: &Path) -> Vec<String> {
    replay_all(dir).into_iter().map(|(_, e)| e.run_id).collect()
}

/// Which operations a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// Any segment write (block, header or footer).
    Write,
    /// A write of exactly this many bytes (a header is 72).
    WriteOf(usize),
    /// Writes larger than a header (blocks and footers).
    BlockWrite,
    Sync,
    Create,
    Rename,
    Remove,
}

impl On {
    fn matches(self, op: IoOp) -> bool {
        match (self, op) {
            (On::Write, IoOp::Write(_)) => true,
            (On::WriteOf(n), IoOp::Write(m)) => n == m,
            (On::BlockWrite, IoOp::Write(m)) => m != 72,
            (On::Sync, IoOp::Sync) => true,
            (On::Create, IoOp::Create) => true,
            (On::Rename, IoOp::Rename) => true,
            (On::Remove, IoOp::Remove) => true,
            _ => false,
        }
    }
}

/// What to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Eio,
    Enospc,
    /// Write this many bytes, then ENOSPC (a disk filling mid-write).
    ShortEnospc(usize),
    /// Write this many bytes, then EIO.
    ShortEio(usize),
}

impl Kind {
    fn fault(self) -> Fault {
        let eio = || io::Error::from_raw_os_error(5);
        let enospc = || io::Error::from_raw_os_error(28);
        match self {
            Kind::Eio => Fault::Fail(eio()),
            Kind::Enospc => Fault::Fail(enospc()),
            Kind::ShortEnospc(n) => Fault::Short(n, enospc()),
            Kind::ShortEio(n) => Fault::Short(n, eio()),
        }
    }
}

#[derive(Debug)]
struct Rule {
    on: On,
    skip: u64,
    times: u64,
    kind: Kind,
}

/// A scripted injector: rules fire on matching operations (after `skip`
/// matches, `times` times; `u64::MAX` = until cleared), and every injected
/// fault is counted by kind.
#[derive(Debug, Default)]
pub struct Injector {
    rules: Mutex<Vec<Rule>>,
    counts: Mutex<BTreeMap<String, u64>>,
}

impl Injector {
    pub fn new() -> Arc<Injector> {
        Arc::new(Injector::default())
    }

    pub fn arm(&self, on: On, skip: u64, times: u64, kind: Kind) {
        self.rules.lock().unwrap().push(Rule {
            on,
            skip,
            times,
            kind,
        });
    }

    /// Stop failing ("space was freed").
    pub fn clear(&self) {
        self.rules.lock().unwrap().clear();
    }

    pub fn injected(&self) -> BTreeMap<String, u64> {
        self.counts.lock().unwrap().clone()
    }

    pub fn total(&self) -> u64 {
        self.counts.lock().unwrap().values().sum()
    }
}

impl FaultInjector for Injector {
    fn check(&self, op: IoOp, _path: &Path) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        for r in rules.iter_mut() {
            if !r.on.matches(op) || r.times == 0 {
                continue;
            }
            if r.skip > 0 {
                r.skip -= 1;
                continue;
            }
            r.times -= 1;
            let what = match op {
                IoOp::Write(_) => "write",
                IoOp::Sync => "fdatasync",
                IoOp::Create => "create",
                IoOp::Rename => "rename",
                IoOp::Remove => "remove",
            };
            let kind = match r.kind {
                Kind::Eio => "EIO",
                Kind::Enospc => "ENOSPC",
                Kind::ShortEnospc(_) => "short+ENOSPC",
                Kind::ShortEio(_) => "short+EIO",
            };
            *self
                .counts
                .lock()
                .unwrap()
                .entry(format!("{what} {kind}"))
                .or_default() += 1;
            return Some(r.kind.fault());
        }
        None
    }
}

/// Every regular file under `dir`, recursively.
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Append the per-test figures to target/reliability-figures.txt (read
/// when writing docs/reliability.md).
pub fn record_figure(line: &str) {
    use std::io::Write;
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability-figures.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// The sealed segments' index files (`*.idx`) in `dir`, sorted.
pub fn idx_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    v.sort();
    v
}

/// Run `f` while a child forked by another thread still shares every open
/// file of this process: it has not exec'd yet (it lingers for two seconds
/// between fork and exec). Gateways fork and spawn all the time, so a lock
/// that is only released by closing its descriptor stays held meanwhile.
pub fn with_a_child_sharing_our_files<R>(f: impl FnOnce() -> R) -> R {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    let (mut forked, tell) = io::pipe().expect("pipe");
    let spawner = std::thread::spawn(move || {
        let mut cmd = std::process::Command::new("true");
        // SAFETY: the closure runs in the forked child before exec; it only
        // calls write(2) and nanosleep(2), both async-signal-safe, and
        // allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                (&tell).write_all(b"f")?;
                std::thread::sleep(std::time::Duration::from_secs(2));
                Ok(())
            });
        }
        // `spawn` returns once the child has exec'd, two seconds later.
        cmd.status().expect("run the lingering child")
    });
    let mut byte = [0u8; 1];
    forked.read_exact(&mut byte).expect("the child has forked");
    let out = f();
    assert!(spawner.join().expect("spawner").success());
    out
}

/// Rewrite a log made by this build as format `version` wrote it: segment
/// headers and MANIFEST say `version` (checksums recomputed) and the
/// derived index files are removed. `absent` names a MANIFEST field that
/// version did not have; the log must not hold it.
pub fn downgrade_log(dir: &Path, version: u16, absent: &str) {
    for f in walk_files(dir) {
        if f.extension().is_some_and(|e| e == "seg") {
            let mut b = std::fs::read(&f).unwrap();
            b[8..10].copy_from_slice(&version.to_le_bytes());
            let crc = crc32fast::hash(&b[0..64]);
            b[64..68].copy_from_slice(&crc.to_le_bytes());
            std::fs::write(&f, b).unwrap();
        }
        if f.extension().is_some_and(|e| e == "idx" || e == "aidx") {
            std::fs::remove_file(&f).unwrap();
        }
    }
    let text = std::fs::read_to_string(dir.join("MANIFEST")).unwrap();
    let current = format!(r#""version":{}"#, auditlog::FORMAT_VERSION);
    let body = text
        .lines()
        .next()
        .unwrap()
        .replace(&current, &format!(r#""version":{version}"#));
    assert!(!body.contains(absent), "{absent} in {body}");
    let manifest = format!("{body}\ncrc32 {:08x}\n", crc32fast::hash(body.as_bytes()));
    std::fs::write(dir.join("MANIFEST"), manifest).unwrap();
}

/// A log folder with an Ed25519 checkpoint key kept beside it (outside the
/// log, as in production), for the tests of the tree, proofs and tiles.
pub struct SignedLog {
    pub t: tempfile::TempDir,
    pub dir: PathBuf,
    pub keys: PathBuf,
    pub key: auditlog::tlog::SignerKey,
}

impl SignedLog {
    pub fn new(origin: &str) -> SignedLog {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("log");
        let keys = t.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        SignedLog {
            dir,
            keys,
            key: auditlog::tlog::SignerKey::generate(origin).unwrap(),
            t,
        }
    }

    /// One segment per UTC day; a checkpoint at every seal and hourly,
    /// the key's state file beside the key.
    pub fn config(&self) -> Config {
        let mut cfg = Config::new(&self.dir);
        cfg.checkpoints = Some(auditlog::tree::CheckpointConfig {
            key: self.key.clone(),
            interval: std::time::Duration::from_secs(3600),
            state: Some(self.keys.join("key.state")),
        });
        cfg
    }

    /// [`SignedLog::config`] with 64 KiB segments: many seals, so many
    /// checkpoints, in a small log.
    pub fn small_config(&self) -> Config {
        let mut cfg = self.config();
        cfg.segment_max_bytes = 64 * 1024;
        cfg
    }

    /// A folder beside the log, outside it.
    pub fn beside(&self, name: &str) -> PathBuf {
        self.t.path().join(name)
    }

    /// Write the log's C2SP tiles into `dest`.
    pub fn tiles(&self, dest: &Path) -> auditlog::Result<auditlog::tree::TilesReport> {
        LogReader::open(&self.dir)
            .unwrap()
            .write_tiles(dest, &auditlog::tree::TilesOptions::default())
    }

    /// `verify`, with the public key when `key`.
    pub fn verify(&self, key: bool) -> auditlog::Result<auditlog::VerifyReport> {
        let opts = auditlog::VerifyOptions {
            key: key.then(|| self.key.verifier()),
            ..auditlog::VerifyOptions::default()
        };
        auditlog::verify_with(&self.dir, &opts, |_, _| {})
    }
}
