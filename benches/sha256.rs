//! The SHA-256 work the Merkle tree adds per event (issue 19, docs/
//! benchmarks.md "SHA-256 implementations"), with the tree's exact shapes:
//! a leaf is `SHA-256(0x00 ‖ stored event)` over a 151-byte event (152
//! bytes hashed, 3 compression blocks), an interior node is `SHA-256(0x01
//! ‖ left ‖ right)` (65 bytes, 2 blocks). Each well-kept implementation is
//! timed on both, beside the engine's own `leaf_hash`/`node_hash` (which
//! feed the prefix and the data to one hasher in two updates, with no copy
//! of the event), to tell the implementation's cost from the call
//! pattern's. `cargo bench -p auditlog-benches --bench sha256`.

use std::hint::black_box;
use std::time::Duration;

use auditlog::tlog::merkle::{leaf_hash, node_hash, TreeHash};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The load run's stored events are ~151 bytes.
const EVENT: usize = 151;

fn shapes() -> (Vec<u8>, Vec<u8>, [u8; 65]) {
    let event: Vec<u8> = (0..EVENT).map(|i| (i * 31 + 7) as u8).collect();
    let mut prefixed = vec![0u8];
    prefixed.extend_from_slice(&event);
    let mut node = [0u8; 65];
    node[0] = 1;
    for (i, b) in node[1..].iter_mut().enumerate() {
        *b = (i * 13 + 5) as u8;
    }
    (event, prefixed, node)
}

fn leaf(c: &mut Criterion) {
    let (event, prefixed, _) = shapes();
    let mut g = c.benchmark_group("sha256_leaf_151");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("engine_leaf_hash", |b| {
        b.iter(|| leaf_hash(black_box(&event)))
    });
    g.bench_function("sha2_0.10_two_updates", |b| {
        use sha2::Digest as _;
        b.iter(|| {
            let mut h = sha2::Sha256::new();
            h.update([0u8]);
            h.update(black_box(&event));
            let out: [u8; 32] = h.finalize().into();
            out
        })
    });
    g.bench_function("sha2_0.10_one_shot_prefixed", |b| {
        use sha2::Digest as _;
        b.iter(|| -> [u8; 32] { sha2::Sha256::digest(black_box(&prefixed)).into() })
    });
    g.bench_function("sha2_0.11_two_updates", |b| {
        use sha2_011::Digest as _;
        b.iter(|| {
            let mut h = sha2_011::Sha256::new();
            h.update([0u8]);
            h.update(black_box(&event));
            let out: [u8; 32] = h.finalize().into();
            out
        })
    });
    g.bench_function("ring_two_updates", |b| {
        b.iter(|| {
            let mut h = ring::digest::Context::new(&ring::digest::SHA256);
            h.update(&[0u8]);
            h.update(black_box(&event));
            h.finish()
        })
    });
    g.bench_function("ring_one_shot_prefixed", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(&prefixed)))
    });
    g.finish();
}

fn node(c: &mut Criterion) {
    let (_, _, node) = shapes();
    let l = TreeHash(node[1..33].try_into().expect("32 bytes"));
    let r = TreeHash(node[33..].try_into().expect("32 bytes"));
    let mut g = c.benchmark_group("sha256_node_65");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("engine_node_hash", |b| {
        b.iter(|| node_hash(black_box(&l), black_box(&r)))
    });
    g.bench_function("sha2_0.10_one_shot", |b| {
        use sha2::Digest as _;
        b.iter(|| -> [u8; 32] { sha2::Sha256::digest(black_box(&node)).into() })
    });
    g.bench_function("sha2_0.11_one_shot", |b| {
        use sha2_011::Digest as _;
        b.iter(|| -> [u8; 32] { sha2_011::Sha256::digest(black_box(&node)).into() })
    });
    g.bench_function("ring_one_shot", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(&node)))
    });
    g.finish();
}

criterion_group!(benches, leaf, node);
criterion_main!(benches);
