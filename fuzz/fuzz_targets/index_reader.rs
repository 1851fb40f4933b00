//! The per-segment index reader (`index::Image`) over arbitrary bytes.
//! When the input looks like an image (magic, sane block table), the
//! header and block CRCs are fixed up first (`fuzz_shared::fix_up_index`)
//! so the fuzzer reaches the section readers instead of stopping at a
//! checksum. Every accessor must
//! answer (or poison the image), never panic or read out of bounds.
#![no_main]

use auditlog::internals::index::{
    Backing, Image, RunHash, K_CALLER, K_CHANNEL, K_PARENT, K_SKILL, K_STATUS,
};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/fuzz_shared.rs"]
#[allow(dead_code)]
mod fuzz_shared;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    fuzz_shared::fix_up_index(&mut bytes);
    let Ok(img) = Image::open(Backing::Vec(bytes)) else {
        return;
    };
    let _ = img.verify_all();
    let n = img.n_runs().min(64);
    for i in 0..n {
        let r = img.run(i);
        let _ = (r.dry_run(), r.has_local_finish());
        let (_, id) = img.run_key(i);
        let id = id.to_vec();
        let _ = img.find_run(&id);
        let _ = img.find_run_if_filtered(&id, RunHash::of(&id));
        let _ = img.logs_of(&id);
    }
    let _ = img.find_run_if_filtered(b"x", RunHash::of(b"x"));
    let all = img.all();
    for i in 0..all.len().min(64) {
        let _ = img.at(&all, i);
    }
    let _ = img.narrow(all, Some(i64::MIN), Some(i64::MAX));
    for kind in [K_SKILL, K_CALLER, K_CHANNEL, K_PARENT, K_STATUS, 0, 99] {
        let keys: Vec<Vec<u8>> = img
            .keys(kind)
            .into_iter()
            .take(16)
            .map(|(k, _)| k.to_vec())
            .collect();
        for k in keys.iter().chain([b"x".to_vec()].iter()) {
            let l = img.posting(kind, k);
            for i in 0..l.len().min(16) {
                let _ = img.at(&l, i);
            }
            let _ = img.narrow(l, Some(0), None);
        }
    }
    for i in 0..img.n_fins().min(64) {
        let _ = img.fin(i);
    }
    for i in 0..img.n_calls().min(64) {
        let _ = img.call(i);
    }
    let calls = img.all_calls();
    let _ = img.narrow_calls(calls, Some(i64::MIN), Some(i64::MAX));
    for kind in 0..=10u32 {
        for key in [&b"x"[..], b"error", b""] {
            let l = img.call_posting(kind, key);
            for i in 0..l.len().min(16) {
                let _ = img.call_at(&l, i);
            }
            let _ = img.narrow_calls(l, Some(0), None);
        }
    }
    let _ = img.n_logs();
});
