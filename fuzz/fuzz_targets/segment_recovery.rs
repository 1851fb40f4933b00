//! Segment recovery over arbitrary bytes. The input becomes the active
//! segment file of a fresh log (behind a valid header when the first byte
//! is even, raw otherwise), then: a read-only open, replay and `verify`
//! must not panic; a write-mode open either refuses with an error or cuts
//! only a torn tail into quarantine/ (no byte lost), after which the log
//! must verify and replay cleanly and accept a new append.
#![no_main]

use std::sync::OnceLock;

use auditlog::internals::codec::CODEC_BINCODE2_STANDARD;
use auditlog::internals::layout::{self, Mode};
use auditlog::internals::manifest::Manifest;
use auditlog::internals::segment::{self, Header, FORMAT_VERSION};
use auditlog::{verify, Config, Event, Log, LogReader, ReplayRange, RunStarted};
use libfuzzer_sys::fuzz_target;

const DAY: u32 = 20261123;

fn manifest_bytes() -> &'static [u8] {
    static M: OnceLock<Vec<u8>> = OnceLock::new();
    M.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        Manifest::new().store(dir.path()).unwrap();
        std::fs::read(Manifest::path(dir.path())).unwrap()
    })
}

fn scratch_root() -> &'static std::path::Path {
    static R: OnceLock<std::path::PathBuf> = OnceLock::new();
    R.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir_in(scratch_root()).unwrap();
    std::fs::write(Manifest::path(dir.path()), manifest_bytes()).unwrap();
    let manifest = Manifest::load(dir.path()).unwrap().unwrap();
    let mut bytes = Vec::new();
    if mode % 2 == 0 {
        let h = Header {
            version: FORMAT_VERSION,
            codec: CODEC_BINCODE2_STANDARD,
            day: DAY,
            seq: manifest.anchor.first_seq,
            first_lsn: manifest.anchor.first_lsn,
            prev_digest: manifest.anchor_digest(),
        };
        bytes.extend_from_slice(&h.encode());
    }
    bytes.extend_from_slice(rest);
    let seg = dir
        .path()
        .join(segment::file_name(DAY, manifest.anchor.first_seq));
    std::fs::write(&seg, &bytes).unwrap();

    // Read-only: must not panic, whatever it says.
    if let Ok(r) = LogReader::open(dir.path()) {
        for item in r.replay(ReplayRange::default()) {
            if item.is_err() {
                break;
            }
        }
    }
    let _ = verify(dir.path(), None, |_, _| {});

    // Write mode: refuse, or cut only a torn tail into quarantine/; then
    // the log verifies and replays, and no byte of the segment is gone.
    let manifest = Manifest::load(dir.path()).unwrap().unwrap();
    if let Ok(lay) = layout::discover(dir.path(), manifest, Mode::ReadOnly) {
        if lay.segments.iter().any(|s| s.sealed) {
            // A sealed segment is trusted through its checksummed footer on
            // open (by design, opening does not re-read it); damage inside
            // is `verify`'s to find, which the read-only part exercised.
            return;
        }
    }
    let mut cfg = Config::new(dir.path());
    cfg.create = false;
    let Ok(log) = Log::open(cfg) else {
        return;
    };
    let appended = mode & 4 != 0;
    if appended {
        // And the writer can carry on from it.
        let ev = Event::run_started("fuzz", 1_795_420_800_000_000, RunStarted::default());
        log.append(&ev).unwrap().wait().unwrap();
    }
    log.close().unwrap();
    let now = std::fs::read(&seg).unwrap_or_default();
    let common = now.iter().zip(&bytes).take_while(|(a, b)| a == b).count();
    if common < bytes.len() {
        let kept = std::fs::read_dir(dir.path().join("quarantine"))
            .map(|rd| {
                rd.flatten().any(|e| {
                    let q = std::fs::read(e.path()).unwrap();
                    q[..] == bytes[..] || q[..] == bytes[common..]
                })
            })
            .unwrap_or(false);
        assert!(kept, "bytes {common}.. were cut and are not in quarantine/");
    }
    let report = verify(dir.path(), None, |_, _| {}).expect("a recovered log verifies");
    let r = LogReader::open(dir.path()).expect("a recovered log opens");
    let n = r
        .replay(ReplayRange::default())
        .map(|e| e.expect("a recovered log replays"))
        .count() as u64;
    assert_eq!(n, report.events);
});
