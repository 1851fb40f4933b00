//! The hashes a retention cut keeps for tiles (docs/proofs.md, "Tiles
//! after retention"): for a cut before leaf `size` (leaves `[0, size)`
//! dropped) and every tile level L, the hashes at tree height 8L inside
//! the tile that spans the cut and lie left of it. Level L holds
//! `(size >> 8L) % 256` of them (the complete nodes of that tile before
//! the cut), for every L with `size >> 8L > 0`.
//!
//! Folded level by level they give exactly the frontier of `size` leaves
//! (level L's hashes give its subtrees of heights 8L to 8L + 7), so a
//! signed frontier authenticates them, and a missing or changed hash is
//! seen. With them, every tile a proof for a kept leaf reads can be
//! written after the cut.

use super::merkle::{Frontier, TreeHash};
use super::tiles::{TILE_HEIGHT, TILE_WIDTH};

/// The kept hashes of one cut, level 0 first, each level left to right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutTiles {
    size: u64,
    levels: Vec<Vec<TreeHash>>,
}

/// Why stored cut hashes cannot be the cut's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CutTilesError {
    #[error("a cut before leaf {size} keeps hashes for {expected} tile levels, not {got}")]
    Levels {
        size: u64,
        expected: usize,
        got: usize,
    },
    #[error("a cut before leaf {size} keeps {expected} hashes at tile level {level}, not {got}")]
    Count {
        size: u64,
        level: usize,
        expected: u64,
        got: usize,
    },
    #[error("the hashes kept at tile level {level} do not fold to the stored frontier's subtrees")]
    Fold { level: usize },
}

/// How many hashes a cut before leaf `size` keeps at each tile level.
pub fn kept_counts(size: u64) -> Vec<u64> {
    (0..64 / TILE_HEIGHT)
        .map(|level| size.checked_shr(level * TILE_HEIGHT).unwrap_or(0))
        .take_while(|&above| above > 0)
        .map(|above| above % TILE_WIDTH)
        .collect()
}

/// The first leaf of the node at `height` whose index is `k`.
fn start_of(k: u64, height: u32) -> u64 {
    k << height
}

/// The nodes a cut before leaf `size` keeps at `level`: their start
/// leaves (height `8 * level`), left to right.
pub fn kept_starts(size: u64, level: u32) -> impl Iterator<Item = u64> {
    let height = level * TILE_HEIGHT;
    let cut = size.checked_shr(height).unwrap_or(0);
    let first = cut - cut % TILE_WIDTH;
    (first..cut).map(move |k| start_of(k, height))
}

impl CutTiles {
    /// The kept hashes of a cut before leaf `size`, checked: the right
    /// count at every level, and folding to exactly `frontier`.
    pub fn new(
        size: u64,
        levels: Vec<Vec<TreeHash>>,
        frontier: &Frontier,
    ) -> Result<CutTiles, CutTilesError> {
        let counts = kept_counts(size);
        if levels.len() != counts.len() {
            return Err(CutTilesError::Levels {
                size,
                expected: counts.len(),
                got: levels.len(),
            });
        }
        for (level, (hashes, &want)) in levels.iter().zip(&counts).enumerate() {
            if hashes.len() as u64 != want {
                return Err(CutTilesError::Count {
                    size,
                    level,
                    expected: want,
                    got: hashes.len(),
                });
            }
        }
        let cut = CutTiles { size, levels };
        cut.check_fold(frontier)?;
        Ok(cut)
    }

    /// Level L's hashes, folded, are the frontier's subtrees of heights
    /// 8L..8L+7; the frontier lists the highest first.
    fn check_fold(&self, frontier: &Frontier) -> Result<(), CutTilesError> {
        let mut nodes = frontier.nodes().iter();
        for (level, hashes) in self.levels.iter().enumerate().rev() {
            let mut f = Frontier::new();
            for h in hashes {
                // At most 255 hashes: the frontier cannot be full.
                let _ = f.push(*h);
            }
            for want in f.nodes() {
                if nodes.next() != Some(want) {
                    return Err(CutTilesError::Fold { level });
                }
            }
        }
        // Counts match the size's bits, so every node was compared.
        debug_assert!(nodes.next().is_none());
        Ok(())
    }

    /// Leaves before the cut.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The kept hashes, level 0 first.
    pub fn levels(&self) -> &[Vec<TreeHash>] {
        &self.levels
    }

    /// The kept node of `height` starting at leaf `start`, if it is one.
    pub fn node(&self, start: u64, height: u32) -> Option<TreeHash> {
        if !height.is_multiple_of(TILE_HEIGHT) {
            return None;
        }
        let level = height / TILE_HEIGHT;
        let hashes = self.levels.get(level as usize)?;
        let first = kept_starts(self.size, level).next()?;
        if start < first || !(start - first).is_multiple_of(1 << height) {
            return None;
        }
        let i = usize::try_from((start - first) >> height).ok()?;
        hashes.get(i).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::leaf_hash;

    fn leaves(n: u64) -> Vec<TreeHash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// The kept hashes of a cut, from all its leaves.
    fn cut_of(all: &[TreeHash], size: u64) -> (Vec<Vec<TreeHash>>, Frontier) {
        let mut levels = Vec::new();
        for level in 0..kept_counts(size).len() as u32 {
            let h = level * TILE_HEIGHT;
            levels.push(
                kept_starts(size, level)
                    .map(|s| {
                        crate::tlog::tiles::row_hash(&all[s as usize..(s + (1 << h)) as usize])
                    })
                    .collect(),
            );
        }
        let mut f = Frontier::new();
        for l in &all[..size as usize] {
            f.push(*l).unwrap();
        }
        (levels, f)
    }

    #[test]
    fn counts_follow_the_size_digits_in_base_256() {
        assert_eq!(kept_counts(0), Vec::<u64>::new());
        assert_eq!(kept_counts(1), vec![1]);
        assert_eq!(kept_counts(256), vec![0, 1]);
        assert_eq!(kept_counts(700), vec![188, 2]);
        assert_eq!(kept_counts(65_536 + 3), vec![3, 0, 1]);
    }

    #[test]
    fn the_kept_hashes_fold_to_the_frontier_and_a_changed_one_does_not() {
        let all = leaves(70_000);
        for size in [1, 5, 255, 256, 257, 700, 65_535, 65_536, 65_537, 69_999] {
            let (levels, f) = cut_of(&all, size);
            let cut = CutTiles::new(size, levels.clone(), &f).unwrap();
            for (level, hashes) in levels.iter().enumerate() {
                let h = level as u32 * TILE_HEIGHT;
                for (s, want) in kept_starts(size, level as u32).zip(hashes) {
                    assert_eq!(cut.node(s, h), Some(*want));
                }
                for (i, _) in hashes.iter().enumerate() {
                    let mut bad = levels.clone();
                    bad[level][i].0[3] ^= 1;
                    assert_eq!(
                        CutTiles::new(size, bad, &f),
                        Err(CutTilesError::Fold { level }),
                        "size {size} level {level} hash {i}"
                    );
                }
            }
            if let Some(last) = levels.iter().position(|l| !l.is_empty()) {
                let mut short = levels.clone();
                short[last].pop();
                assert!(matches!(
                    CutTiles::new(size, short, &f),
                    Err(CutTilesError::Count { .. })
                ));
            }
            assert!(matches!(
                CutTiles::new(size, Vec::new(), &f),
                Err(CutTilesError::Levels { .. })
            ));
        }
    }

    #[test]
    fn only_nodes_left_of_the_cut_in_its_tile_are_kept() {
        let all = leaves(1000);
        let (levels, f) = cut_of(&all, 700);
        let cut = CutTiles::new(700, levels, &f).unwrap();
        assert_eq!(cut.node(511, 0), None);
        assert_eq!(cut.node(512, 0), Some(all[512]));
        assert_eq!(cut.node(699, 0), Some(all[699]));
        assert_eq!(cut.node(700, 0), None);
        assert!(cut.node(256, 8).is_some());
        assert_eq!(cut.node(512, 8), None);
        assert_eq!(cut.node(0, 1), None);
    }
}
