//! The RFC 6962 (RFC 9162 section 2.1) Merkle tree: SHA-256, leaves hashed
//! as `SHA-256(0x00 ‖ data)` and interior nodes as `SHA-256(0x01 ‖ left ‖
//! right)`, the tree over `n` leaves split at the largest power of two
//! below `n`. Kept incrementally as a [`Frontier`] (the roots of the
//! complete subtrees the leaves so far make, at most 64 hashes); proofs are
//! generated from any [`Subtrees`] source of complete-subtree hashes and
//! checked with nothing but the hashes. The tree these functions build is
//! the one Go's `golang.org/x/mod/sumdb/tlog` and Certificate Transparency
//! build, so their checkers accept its proofs (docs/proofs.md).

use std::fmt;

use sha2::{Digest as _, Sha256};

/// A SHA-256 hash in the tree: a leaf hash, a node hash or a root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct TreeHash(pub [u8; 32]);

impl TreeHash {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<TreeHash> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(TreeHash(out))
    }

    /// Standard base64 (RFC 4648 section 4), as checkpoints and proofs
    /// carry hashes.
    pub fn to_base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    pub fn from_base64(s: &str) -> Option<TreeHash> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(TreeHash(arr))
    }
}

impl fmt::Debug for TreeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreeHash({})", self.to_hex())
    }
}

impl fmt::Display for TreeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The root of the empty tree: SHA-256 of no bytes.
pub fn empty_root() -> TreeHash {
    TreeHash(Sha256::digest([]).into())
}

/// `SHA-256(0x00 ‖ data)`: the hash of one leaf (Go's `tlog.RecordHash`).
pub fn leaf_hash(data: &[u8]) -> TreeHash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    TreeHash(h.finalize().into())
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
///
/// Its two blocks are built as 16-byte words and compressed directly: SHA-NI
/// reads a block as four 16-byte loads, and a load that straddles smaller
/// stores made just before it cannot take its bytes from them (the CPU waits
/// until they reach the cache). Hashing a just-copied 65-byte buffer through
/// `Sha256::digest` paid ~20% more per node on this project's Xeon
/// (docs/benchmarks.md, "tree30 round"). The digest is the same.
pub fn node_hash(left: &TreeHash, right: &TreeHash) -> TreeHash {
    let (l, r) = (&left.0, &right.0);
    let last_l = u128::from(l[31]);
    let last_r = u128::from(r[31]);
    // The message is 0x01 ‖ l ‖ r (65 bytes = 520 bits), then 0x80, zeros
    // and its length in bits as a big-endian u64 at the end of block two.
    let first = block_of([
        (word(l, 0) << 8) | 0x01,
        word(l, 15),
        (word(r, 0) << 8) | last_l,
        word(r, 15),
    ]);
    let second = block_of([
        last_r | 0x80 << 8,
        0,
        0,
        u128::from(520u64.swap_bytes()) << 64,
    ]);
    let mut state = SHA256_IV;
    sha2::compress256(&mut state, &[first, second]);
    let mut out = [0u8; 32];
    for (bytes, w) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&w.to_be_bytes());
    }
    TreeHash(out)
}

/// SHA-256's initial state (FIPS 180-4, section 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The little-endian 16-byte word at `at` of a hash (`at` ≤ 16).
fn word(h: &[u8; 32], at: usize) -> u128 {
    let mut w = [0u8; 16];
    w.copy_from_slice(&h[at..at + 16]);
    u128::from_le_bytes(w)
}

/// A 64-byte block from four little-endian 16-byte words, each written by
/// one 16-byte store.
fn block_of(
    words: [u128; 4],
) -> sha2::digest::generic_array::GenericArray<u8, sha2::digest::consts::U64> {
    let mut b = sha2::digest::generic_array::GenericArray::default();
    for (slot, w) in b.chunks_exact_mut(16).zip(words) {
        slot.copy_from_slice(&w.to_le_bytes());
    }
    b
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The tree over the leaves so far, kept as the roots of its complete
/// subtrees (one per set bit of the size, largest first): enough to append
/// the next leaf and to compute the root, in O(log n) memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<TreeHash>,
}

/// Why a tree cannot take a leaf, be rebuilt from its parts, or answer
/// for a range of leaves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// Appending would pass the largest size the tree can count.
    #[error("the tree is full (2^64 - 1 leaves)")]
    Full,
    /// The frontier holds fewer nodes than its size needs (a bug, or a
    /// frontier built around [`Frontier::from_parts`]).
    #[error("frontier lost a node")]
    LostNode,
    /// A frontier's parts disagree: one node per set bit of the size.
    #[error("a tree of {size} leaves has {expected} complete subtrees, not {got}")]
    WrongFrontier {
        size: u64,
        expected: u32,
        got: usize,
    },
    /// Leaves `[start, end)` were asked for but are not held.
    #[error("leaves {start}..{end} are not there")]
    MissingLeaves { start: u64, end: u64 },
}

/// A complete subtree that one append finished: `height` levels above the
/// leaves, covering leaves `[index << height, (index + 1) << height)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completed {
    pub height: u32,
    pub index: u64,
    pub hash: TreeHash,
}

impl Frontier {
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// A frontier from its parts, checked: one node per set bit of `size`.
    pub fn from_parts(size: u64, nodes: Vec<TreeHash>) -> Result<Frontier, TreeError> {
        if nodes.len() != size.count_ones() as usize {
            return Err(TreeError::WrongFrontier {
                size,
                expected: size.count_ones(),
                got: nodes.len(),
            });
        }
        Ok(Frontier { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The roots of the complete subtrees, largest (leftmost) first.
    pub fn nodes(&self) -> &[TreeHash] {
        &self.nodes
    }

    /// The complete subtrees as (start leaf, height, hash), left to right.
    pub fn subtrees(&self) -> impl Iterator<Item = (u64, u32, TreeHash)> + '_ {
        let mut start = 0u64;
        let mut bits = (0..64u32)
            .rev()
            .filter(move |b| self.size & (1u64 << b) != 0);
        self.nodes.iter().map(move |h| {
            let height = bits.next().unwrap_or(0);
            let s = start;
            start += 1u64 << height;
            (s, height, *h)
        })
    }

    /// Append one leaf (its hash); `done` hears of every subtree of at
    /// least `min_height` levels the leaf completes, smallest first.
    #[inline]
    pub fn push_with(
        &mut self,
        leaf: TreeHash,
        min_height: u32,
        mut done: impl FnMut(Completed),
    ) -> Result<(), TreeError> {
        if self.size == u64::MAX {
            return Err(TreeError::Full);
        }
        if min_height == 0 {
            done(Completed {
                height: 0,
                index: self.size,
                hash: leaf,
            });
        }
        let mut hash = leaf;
        let mut height = 0u32;
        let mut rest = self.size;
        while rest & 1 == 1 {
            let Some(left) = self.nodes.pop() else {
                return Err(TreeError::LostNode);
            };
            hash = node_hash(&left, &hash);
            height += 1;
            rest >>= 1;
            if height >= min_height {
                done(Completed {
                    height,
                    index: self.size >> height,
                    hash,
                });
            }
        }
        self.nodes.push(hash);
        self.size += 1;
        Ok(())
    }

    /// Append one leaf (its hash).
    #[inline]
    pub fn push(&mut self, leaf: TreeHash) -> Result<(), TreeError> {
        self.push_with(leaf, u32::MAX, |_| {})
    }

    /// The root of the tree (the empty root for no leaves).
    pub fn root(&self) -> TreeHash {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// Where proof generation gets the hashes of complete subtrees: the one
/// question a tree store must answer. `start` is a multiple of
/// `2^height`; the subtree covers leaves `[start, start + 2^height)`.
pub trait Subtrees {
    type Error;
    fn subtree(&mut self, start: u64, height: u32) -> Result<TreeHash, Self::Error>;
}

/// Every leaf hash in memory: for tests and small trees.
impl Subtrees for &[TreeHash] {
    type Error = TreeError;
    fn subtree(&mut self, start: u64, height: u32) -> Result<TreeHash, TreeError> {
        let end = start + (1u64 << height);
        let leaves = self
            .get(start as usize..end as usize)
            .ok_or(TreeError::MissingLeaves { start, end })?;
        let mut f = Frontier::new();
        for l in leaves {
            f.push(*l)?;
        }
        Ok(f.root())
    }
}

/// `MTH(D[lo:hi])` of RFC 6962: the hash of leaves `[lo, hi)` as the tree
/// over `hi` leaves groups them (`lo` a multiple of the split sizes that
/// lead to this range, as every range the proofs ask for is).
pub fn range_hash<S: Subtrees>(src: &mut S, lo: u64, hi: u64) -> Result<TreeHash, S::Error> {
    debug_assert!(lo < hi);
    let n = hi - lo;
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        return src.subtree(lo, n.trailing_zeros());
    }
    let k = split_point(n);
    let left = range_hash(src, lo, lo + k)?;
    let right = range_hash(src, lo + k, hi)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree of `size` leaves.
pub fn root_at<S: Subtrees>(src: &mut S, size: u64) -> Result<TreeHash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(src, 0, size)
}

/// Why a proof cannot be made or does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf {index} is not in a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("no consistency proof from tree size {old} to {new} (needs 1 <= old <= new)")]
    BadSizes { old: u64, new: u64 },
    #[error("the proof has {got} hashes where this tree shape needs {want}")]
    WrongLength { got: usize, want: usize },
    #[error("the proof does not lead to the expected root hash")]
    RootMismatch,
}

/// The inclusion (audit) path of leaf `index` in the tree of `size` leaves:
/// `PATH(m, D[n])` of RFC 6962, the sibling nearest the leaf first.
pub fn inclusion_proof<S: Subtrees>(
    src: &mut S,
    index: u64,
    size: u64,
) -> Result<Result<Vec<TreeHash>, ProofError>, S::Error> {
    if index >= size {
        return Ok(Err(ProofError::IndexOutOfRange { index, size }));
    }
    let mut out = Vec::with_capacity(64);
    path(src, index, 0, size, &mut out)?;
    Ok(Ok(out))
}

fn path<S: Subtrees>(
    src: &mut S,
    m: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<TreeHash>,
) -> Result<(), S::Error> {
    if hi - lo == 1 {
        return Ok(());
    }
    let k = split_point(hi - lo);
    if m < lo + k {
        path(src, m, lo, lo + k, out)?;
        out.push(range_hash(src, lo + k, hi)?);
    } else {
        path(src, m, lo + k, hi, out)?;
        out.push(range_hash(src, lo, lo + k)?);
    }
    Ok(())
}

/// The consistency proof from the tree of `old` leaves to the tree of
/// `new` leaves: `PROOF(m, D[n])` of RFC 6962. Empty when `old == new`.
pub fn consistency_proof<S: Subtrees>(
    src: &mut S,
    old: u64,
    new: u64,
) -> Result<Result<Vec<TreeHash>, ProofError>, S::Error> {
    if old == 0 || old > new {
        return Ok(Err(ProofError::BadSizes { old, new }));
    }
    let mut out = Vec::with_capacity(64);
    if old < new {
        subproof(src, old, 0, new, true, &mut out)?;
    }
    Ok(Ok(out))
}

fn subproof<S: Subtrees>(
    src: &mut S,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<TreeHash>,
) -> Result<(), S::Error> {
    if lo + m == hi {
        if !whole {
            out.push(range_hash(src, lo, hi)?);
        }
        return Ok(());
    }
    let k = split_point(hi - lo);
    if m <= k {
        subproof(src, m, lo, lo + k, whole, out)?;
        out.push(range_hash(src, lo + k, hi)?);
    } else {
        subproof(src, m - k, lo + k, hi, false, out)?;
        out.push(range_hash(src, lo, lo + k)?);
    }
    Ok(())
}

/// Check that `leaf` is leaf `index` of the tree of `size` leaves whose
/// root is `root` (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &TreeHash,
    proof: &[TreeHash],
    root: &TreeHash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: inclusion_len(index, size),
            });
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: inclusion_len(index, size),
        });
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// How many hashes the inclusion proof of `index` in `size` holds.
pub fn inclusion_len(index: u64, size: u64) -> usize {
    if index >= size {
        return 0;
    }
    let (mut lo, mut hi, mut n) = (0u64, size, 0usize);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            hi = lo + k;
        } else {
            lo += k;
        }
        n += 1;
    }
    n
}

/// Check that the tree of `old` leaves with root `old_root` is a prefix of
/// the tree of `new` leaves with root `new_root` (RFC 9162 section
/// 2.1.4.2; equal sizes need an empty proof and equal roots).
pub fn verify_consistency(
    old: u64,
    new: u64,
    proof: &[TreeHash],
    old_root: &TreeHash,
    new_root: &TreeHash,
) -> Result<(), ProofError> {
    if old == 0 || old > new {
        return Err(ProofError::BadSizes { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            });
        }
        return match old_root == new_root {
            true => Ok(()),
            false => Err(ProofError::RootMismatch),
        };
    }
    let wrong = || ProofError::WrongLength {
        got: proof.len(),
        want: consistency_len(old, new),
    };
    let mut path: Vec<TreeHash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(wrong());
    };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(wrong());
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(wrong());
    }
    if fr != *old_root || sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// How many hashes the consistency proof from `old` to `new` holds.
pub fn consistency_len(old: u64, new: u64) -> usize {
    if old == 0 || old >= new {
        return 0;
    }
    let (mut m, mut lo, mut hi, mut whole, mut n) = (old, 0u64, new, true, 0usize);
    while lo + m != hi {
        let k = split_point(hi - lo);
        if m <= k {
            hi = lo + k;
        } else {
            m -= k;
            lo += k;
            whole = false;
        }
        n += 1;
    }
    n + usize::from(!whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaves of the RFC 6962 reference test vectors.
    fn ct_leaves() -> Vec<Vec<u8>> {
        vec![
            vec![],
            vec![0x00],
            vec![0x10],
            vec![0x20, 0x21],
            vec![0x30, 0x31],
            vec![0x40, 0x41, 0x42, 0x43],
            (0x50..0x58).collect(),
            (0x60..0x70).collect(),
        ]
    }

    const CT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn hashes(n: usize) -> Vec<TreeHash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_le_bytes()))
            .collect()
    }

    /// The node hash built from 16-byte words is SHA-256 over
    /// `0x01 ‖ left ‖ right`, byte for byte.
    #[test]
    fn node_hash_is_sha256_of_the_prefixed_pair() {
        let mut left = TreeHash([0u8; 32]);
        for i in 0..2_000u64 {
            let right = leaf_hash(&i.to_le_bytes());
            let mut msg = vec![0x01];
            msg.extend_from_slice(&left.0);
            msg.extend_from_slice(&right.0);
            let want = TreeHash(Sha256::digest(&msg).into());
            assert_eq!(node_hash(&left, &right), want, "pair {i}");
            left = want;
        }
        let ones = TreeHash([0xff; 32]);
        let mut msg = vec![0x01];
        msg.extend_from_slice(&[0xff; 64]);
        assert_eq!(
            node_hash(&ones, &ones).0,
            <[u8; 32]>::from(Sha256::digest(&msg))
        );
    }

    #[test]
    fn roots_match_the_reference_vectors() {
        let mut f = Frontier::new();
        assert_eq!(
            f.root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let leaves: Vec<TreeHash> = ct_leaves().iter().map(|l| leaf_hash(l)).collect();
        for (i, l) in leaves.iter().enumerate() {
            f.push(*l).unwrap();
            assert_eq!(f.root().to_hex(), CT_ROOTS[i], "size {}", i + 1);
            assert_eq!(root_at(&mut &leaves[..], i as u64 + 1).unwrap(), f.root());
        }
    }

    #[test]
    fn every_inclusion_and_consistency_proof_checks_up_to_70_leaves() {
        let all = hashes(70);
        let mut src = &all[..];
        let mut roots = vec![empty_root()];
        let mut f = Frontier::new();
        for l in &all {
            f.push(*l).unwrap();
            roots.push(f.root());
        }
        for n in 1..=70u64 {
            for i in 0..n {
                let p = inclusion_proof(&mut src, i, n).unwrap().unwrap();
                assert_eq!(p.len(), inclusion_len(i, n));
                verify_inclusion(i, n, &all[i as usize], &p, &roots[n as usize]).unwrap();
                // Any other leaf, position or root fails.
                let other = (i + 1) % n;
                if other != i {
                    assert!(
                        verify_inclusion(i, n, &all[other as usize], &p, &roots[n as usize])
                            .is_err()
                    );
                    assert!(
                        verify_inclusion(other, n, &all[i as usize], &p, &roots[n as usize])
                            .is_err()
                    );
                }
                assert!(
                    verify_inclusion(i, n, &all[i as usize], &p, &roots[n as usize - 1]).is_err()
                );
            }
            for m in 1..=n {
                let p = consistency_proof(&mut src, m, n).unwrap().unwrap();
                assert_eq!(p.len(), consistency_len(m, n), "{m} -> {n}");
                verify_consistency(m, n, &p, &roots[m as usize], &roots[n as usize]).unwrap();
                if m < n {
                    assert!(verify_consistency(
                        m,
                        n,
                        &p,
                        &roots[m as usize - 1],
                        &roots[n as usize]
                    )
                    .is_err());
                    assert!(verify_consistency(
                        m,
                        n,
                        &p,
                        &roots[m as usize],
                        &roots[n as usize - 1]
                    )
                    .is_err());
                }
            }
        }
    }

    #[test]
    fn a_changed_proof_hash_or_length_is_refused() {
        let all = hashes(13);
        let mut src = &all[..];
        let root = root_at(&mut src, 13).unwrap();
        let p = inclusion_proof(&mut src, 5, 13).unwrap().unwrap();
        for k in 0..p.len() {
            let mut bad = p.clone();
            bad[k].0[7] ^= 1;
            assert_eq!(
                verify_inclusion(5, 13, &all[5], &bad, &root),
                Err(ProofError::RootMismatch)
            );
        }
        let mut long = p.clone();
        long.push(p[0]);
        assert!(verify_inclusion(5, 13, &all[5], &long, &root).is_err());
        assert!(verify_inclusion(5, 13, &all[5], &p[..p.len() - 1], &root).is_err());
        let old = root_at(&mut src, 6).unwrap();
        let c = consistency_proof(&mut src, 6, 13).unwrap().unwrap();
        for k in 0..c.len() {
            let mut bad = c.clone();
            bad[k].0[0] ^= 0x80;
            assert!(verify_consistency(6, 13, &bad, &old, &root).is_err());
        }
        assert!(verify_consistency(6, 13, &c[1..], &old, &root).is_err());
        assert!(verify_consistency(0, 13, &c, &old, &root).is_err());
        assert!(verify_consistency(14, 13, &c, &old, &root).is_err());
    }

    #[test]
    fn push_reports_completed_subtrees() {
        let all = hashes(16);
        let mut f = Frontier::new();
        let mut seen = Vec::new();
        for l in &all {
            f.push_with(*l, 2, |c| seen.push(c)).unwrap();
        }
        let mut src = &all[..];
        let want: Vec<(u32, u64)> = vec![(2, 0), (2, 1), (3, 0), (2, 2), (2, 3), (3, 1), (4, 0)];
        assert_eq!(
            seen.iter().map(|c| (c.height, c.index)).collect::<Vec<_>>(),
            want
        );
        for c in &seen {
            assert_eq!(src.subtree(c.index << c.height, c.height).unwrap(), c.hash);
        }
        let parts: Vec<_> = f.subtrees().collect();
        assert_eq!(parts, vec![(0, 4, f.root())]);
        let back = Frontier::from_parts(f.size(), f.nodes().to_vec()).unwrap();
        assert_eq!(back, f);
        let err = Frontier::from_parts(3, vec![f.root()]).unwrap_err();
        assert_eq!(
            err,
            TreeError::WrongFrontier {
                size: 3,
                expected: 2,
                got: 1
            }
        );
        assert_eq!(
            err.to_string(),
            "a tree of 3 leaves has 2 complete subtrees, not 1"
        );
        assert_eq!(
            src.subtree(16, 0),
            Err(TreeError::MissingLeaves { start: 16, end: 17 })
        );
        let mut full = Frontier::from_parts(u64::MAX, vec![f.root(); 64]).unwrap();
        assert_eq!(full.push(f.root()), Err(TreeError::Full));
    }

    #[test]
    fn hash_text_forms_round_trip() {
        let h = leaf_hash(b"x");
        assert_eq!(TreeHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(TreeHash::from_base64(&h.to_base64()), Some(h));
        assert_eq!(TreeHash::from_base64("AAAA"), None);
        assert_eq!(TreeHash::from_hex("00"), None);
    }
}
