//! The C2SP `tlog-tiles` layout (c2sp.org/tlog-tiles) of an RFC 6962
//! tree: which tiles a tree of a given size has, their paths, and the
//! hashes a set of tiles gives back. Reads no log: writing tiles from a log
//! is [`crate::tree::tiles`]; docs/proofs.md, "Tiles".

use std::collections::HashMap;

use super::merkle::{Frontier, Subtrees, TreeHash};

/// Tile height: every tile stores one row of 2^8 hashes (fixed by the spec).
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile (and entries in a full entry bundle).
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// Bytes of a full hash tile.
pub const FULL_TILE_BYTES: usize = TILE_WIDTH as usize * 32;
/// The largest entry an entry bundle can hold (its length is a big-endian
/// u16).
pub const MAX_BUNDLE_ENTRY: usize = u16::MAX as usize;

/// One hash tile: `width` consecutive hashes at tree level
/// `level * TILE_HEIGHT`, starting with hash `index * TILE_WIDTH` of that
/// level. `width` is `TILE_WIDTH` for a full tile, 1..255 for a partial one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    pub level: u8,
    pub index: u64,
    pub width: u64,
}

impl Tile {
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// The tree level of its hashes (0: leaf hashes).
    pub fn height(&self) -> u32 {
        u32::from(self.level) * TILE_HEIGHT
    }

    /// Its first hash's index within its level.
    pub fn first_hash(&self) -> u64 {
        self.index * TILE_WIDTH
    }

    /// The leaves its hashes span: `[start, end)`.
    pub fn leaf_range(&self) -> (u64, u64) {
        let h = self.height();
        (
            self.first_hash() << h,
            (self.first_hash() + self.width) << h,
        )
    }

    /// `tile/<L>/<N>[.p/<W>]`, relative to the log's prefix.
    pub fn path(&self) -> String {
        format!("tile/{}/{}", self.level, index_path(self.index, self.width))
    }

    /// `tile/entries/<N>[.p/<W>]`: the entry bundle of a level-0 tile.
    pub fn entries_path(&self) -> String {
        format!("tile/entries/{}", index_path(self.index, self.width))
    }

    /// `tile/<L>/<N>.p`: the folder of this tile's partial versions.
    pub fn partial_dir(&self) -> String {
        format!(
            "tile/{}/{}.p",
            self.level,
            index_path(self.index, TILE_WIDTH)
        )
    }

    /// `tile/entries/<N>.p`.
    pub fn entries_partial_dir(&self) -> String {
        format!("tile/entries/{}.p", index_path(self.index, TILE_WIDTH))
    }
}

/// `<N>[.p/<W>]`: N in zero-padded 3-digit elements, all but the last
/// prefixed with `x` (1234067 -> `x001/x234/067`).
fn index_path(index: u64, width: u64) -> String {
    let mut groups = vec![index % 1000];
    let mut rest = index / 1000;
    while rest > 0 {
        groups.push(rest % 1000);
        rest /= 1000;
    }
    let mut out = String::new();
    for (i, g) in groups.iter().rev().enumerate() {
        if i + 1 < groups.len() {
            out.push_str(&format!("x{g:03}/"));
        } else {
            out.push_str(&format!("{g:03}"));
        }
    }
    if width < TILE_WIDTH {
        out.push_str(&format!(".p/{width}"));
    }
    out
}

/// Every tile of a tree of `size` leaves, level by level, full tiles
/// first in each level. A tree of 70,000 leaves: 273 full level-0 tiles and
/// one of width 112, one full level-1 tile and one of width 17, one
/// level-2 tile of width 1.
pub fn tiles_of(size: u64) -> impl Iterator<Item = Tile> {
    (0u8..8)
        .take_while(move |&level| level_hashes(size, level) > 0)
        .flat_map(move |level| {
            let hashes = level_hashes(size, level);
            let full = (0..hashes / TILE_WIDTH).map(move |index| Tile {
                level,
                index,
                width: TILE_WIDTH,
            });
            let partial = (!hashes.is_multiple_of(TILE_WIDTH)).then_some(Tile {
                level,
                index: hashes / TILE_WIDTH,
                width: hashes % TILE_WIDTH,
            });
            full.chain(partial)
        })
}

/// The hashes at tree level `level * 8` over `size` leaves.
fn level_hashes(size: u64, level: u8) -> u64 {
    let shift = u32::from(level) * TILE_HEIGHT;
    if shift >= 64 {
        0
    } else {
        size >> shift
    }
}

/// The Merkle tree hash of a row of hashes (a full tile's: the hash one
/// level up; of a power-of-two slice: the subtree above it).
pub fn row_hash(hashes: &[TreeHash]) -> TreeHash {
    let mut f = Frontier::new();
    for h in hashes {
        // A row is at most 256 hashes: the frontier cannot be full.
        let _ = f.push(*h);
    }
    f.root()
}

/// A tile's bytes: its hashes, concatenated.
pub fn encode_tile(hashes: &[TreeHash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

/// A tile's hashes from its bytes (`None` unless a whole number of hashes,
/// 1..=256 of them).
pub fn decode_tile(bytes: &[u8]) -> Option<Vec<TreeHash>> {
    if bytes.is_empty() || bytes.len() > FULL_TILE_BYTES || !bytes.len().is_multiple_of(32) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                TreeHash(h)
            })
            .collect(),
    )
}

/// An entry bundle: each entry as a big-endian u16 length, then its bytes.
/// `None` if an entry is longer than [`MAX_BUNDLE_ENTRY`].
pub fn encode_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for e in entries {
        let len = u16::try_from(e.len()).ok()?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Some(out)
}

/// The hashes a set of tiles holds, answering for the subtrees they span:
/// the subtree of height `8L + r` at `start` is the row hash of 2^r hashes
/// of a level-L tile.
#[derive(Default)]
pub struct TileHashes {
    tiles: HashMap<(u8, u64), Vec<TreeHash>>,
}

/// A subtree no held tile spans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no tile holds the subtree of height {height} at leaf {start}")]
pub struct MissingTile {
    pub start: u64,
    pub height: u32,
}

impl TileHashes {
    pub fn insert(&mut self, tile: Tile, hashes: Vec<TreeHash>) {
        self.tiles.insert((tile.level, tile.index), hashes);
    }
}

impl Subtrees for TileHashes {
    type Error = MissingTile;

    fn subtree(&mut self, start: u64, height: u32) -> Result<TreeHash, MissingTile> {
        let missing = MissingTile { start, height };
        let level = height / TILE_HEIGHT;
        let span = 1usize << (height % TILE_HEIGHT);
        let first = start >> (level * TILE_HEIGHT);
        let row = self
            .tiles
            .get(&(level as u8, first / TILE_WIDTH))
            .ok_or_else(|| missing.clone())?;
        let at = (first % TILE_WIDTH) as usize;
        let slice = row.get(at..at + span).ok_or(missing)?;
        Ok(row_hash(slice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::{leaf_hash, root_at};

    fn count(size: u64, level: u8) -> (usize, Option<u64>) {
        let t: Vec<_> = tiles_of(size).filter(|t| t.level == level).collect();
        let full = t.iter().filter(|t| t.is_full()).count();
        (full, t.iter().find(|t| !t.is_full()).map(|t| t.width))
    }

    #[test]
    fn the_spec_examples_give_its_tiles() {
        // c2sp.org/tlog-tiles, "Partial Tiles".
        assert_eq!(count(70_000, 0), (273, Some(112)));
        assert_eq!(count(70_000, 1), (1, Some(17)));
        assert_eq!(count(70_000, 2), (0, Some(1)));
        assert_eq!(tiles_of(70_000).count(), 273 + 1 + 1 + 1 + 1);
        assert_eq!(count(256, 0), (1, None));
        assert_eq!(count(256, 1), (0, Some(1)));
        assert_eq!(tiles_of(256).count(), 2);
    }

    #[test]
    fn edge_sizes_have_the_tiles_they_need() {
        assert_eq!(tiles_of(0).count(), 0);
        assert_eq!(
            tiles_of(1).collect::<Vec<_>>(),
            vec![Tile {
                level: 0,
                index: 0,
                width: 1
            }]
        );
        assert_eq!(tiles_of(255).count(), 1);
        assert_eq!(count(257, 0), (1, Some(1)));
        assert_eq!(count(257, 1), (0, Some(1)));
        // 65536 + 1: the level-1 tile fills, a level-2 tile appears.
        assert_eq!(count(65_537, 0), (256, Some(1)));
        assert_eq!(count(65_537, 1), (1, None));
        assert_eq!(count(65_537, 2), (0, Some(1)));
        assert_eq!(count(65_537, 3), (0, None));
        // The largest tree has 8 levels; counted without listing them.
        assert_eq!(level_hashes(u64::MAX, 7), 255);
        assert_eq!(level_hashes(u64::MAX, 8), 0);
    }

    #[test]
    fn paths_follow_the_spec() {
        let t = |level, index, width| Tile {
            level,
            index,
            width,
        };
        assert_eq!(t(0, 1_234_067, 256).path(), "tile/0/x001/x234/067");
        assert_eq!(
            t(0, 1_234_067, 8).entries_path(),
            "tile/entries/x001/x234/067.p/8"
        );
        assert_eq!(t(2, 0, 1).path(), "tile/2/000.p/1");
        assert_eq!(t(1, 999, 256).path(), "tile/1/999");
        assert_eq!(t(1, 1000, 256).path(), "tile/1/x001/000");
        assert_eq!(t(0, 5, 3).partial_dir(), "tile/0/005.p");
        assert_eq!(t(0, 5, 256).leaf_range(), (1280, 1536));
        assert_eq!(t(1, 0, 17).leaf_range(), (0, 17 * 256));
    }

    #[test]
    fn the_tiles_of_a_tree_give_back_its_root() {
        for size in [1u64, 2, 3, 255, 256, 257, 511, 512, 513, 1000, 65_537] {
            let leaves: Vec<_> = (0..size).map(|i| leaf_hash(&i.to_le_bytes())).collect();
            let mut all = crate::tlog::merkle::Frontier::new();
            for l in &leaves {
                all.push(*l).unwrap();
            }
            let mut held = TileHashes::default();
            let mut row = leaves.clone();
            for tile in tiles_of(size) {
                if tile.level as usize > 0 && tile.index == 0 {
                    // Next level up: the row hash of each full tile below.
                    let below = row.clone();
                    row = below
                        .chunks_exact(TILE_WIDTH as usize)
                        .map(row_hash)
                        .collect();
                }
                let from = tile.first_hash() as usize;
                let hashes = row[from..from + tile.width as usize].to_vec();
                assert_eq!(decode_tile(&encode_tile(&hashes)).unwrap(), hashes);
                // Only the partial tiles are needed for the root.
                if !tile.is_full() {
                    held.insert(tile, hashes);
                }
            }
            assert_eq!(root_at(&mut held, size).unwrap(), all.root(), "{size}");
        }
    }

    #[test]
    fn bundles_prefix_each_entry_with_its_length() {
        let b = encode_bundle([&b"ab"[..], &b""[..]]).unwrap();
        assert_eq!(b, vec![0, 2, b'a', b'b', 0, 0]);
        let big = vec![0u8; MAX_BUNDLE_ENTRY + 1];
        assert!(encode_bundle([&big[..]]).is_none());
        assert!(decode_tile(&[0; 33]).is_none());
        assert!(decode_tile(&[]).is_none());
    }
}
