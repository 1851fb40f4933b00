//! Leaf-hash lists that go back to the writer once the tree has applied
//! their block, so that the writer fills a list it already has instead of
//! allocating one per block.
//!
//! Why: while the producers hash the Merkle leaves (the tree more than
//! `PRODUCERS_HASH_PAST` events behind, and every block of `auditlog
//! ingest`), each block the writer writes hands its leaf hashes to the
//! tree's threads: ~7,000 hashes, ~220 KB at 1 MiB blocks. A new list per
//! block, freed on the tree's threads, had the writer (the serial stage of
//! the ingest) fault and zero fresh pages for every block: 3-11% of its
//! CPU in the durable line's profiles (docs/benchmarks.md, "Durable line,
//! dur39 round"). A list now returns, emptied, when the last reference to
//! its block is dropped, on whichever thread applied it.

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::tlog::merkle::TreeHash;

/// Spare lists kept for the writer at most (each as large as one block's
/// leaves, so at most this many blocks' worth of hashes is held: ~1 MB at
/// 1 MiB blocks). Lists come back at the rate the tree applies blocks, and
/// the writer takes one per block: a few absorb the unevenness; a list
/// coming back to a full pool is freed, as before.
pub(crate) const SPARE_LISTS: usize = 4;

/// The writer's side: where its spare lists come back.
pub(crate) struct ListPool {
    home: Sender<Vec<TreeHash>>,
    spares: Receiver<Vec<TreeHash>>,
}

impl ListPool {
    pub(crate) fn new() -> ListPool {
        let (home, spares) = bounded(SPARE_LISTS);
        ListPool { home, spares }
    }

    /// An empty list for the next block: a spare one if one came back,
    /// else a new one with room for `room` hashes.
    pub(crate) fn take(&self, room: usize) -> Vec<TreeHash> {
        match self.spares.try_recv() {
            Ok(list) => list,
            Err(_) => Vec::with_capacity(room),
        }
    }

    /// `hashes`, lent to the tree: back here once dropped.
    pub(crate) fn lend(&self, hashes: Vec<TreeHash>) -> LeafList {
        LeafList {
            hashes,
            home: self.home.clone(),
        }
    }
}

/// A block's leaf hashes on their way through the tree's threads; the list
/// goes back to its [`ListPool`], emptied, when dropped.
pub(crate) struct LeafList {
    hashes: Vec<TreeHash>,
    home: Sender<Vec<TreeHash>>,
}

impl std::ops::Deref for LeafList {
    type Target = [TreeHash];

    fn deref(&self) -> &[TreeHash] {
        &self.hashes
    }
}

impl Drop for LeafList {
    fn drop(&mut self) {
        let mut list = std::mem::take(&mut self.hashes);
        list.clear();
        // A full pool, or a writer gone: the list is freed here instead.
        let _ = self.home.try_send(list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(n: u8) -> Vec<TreeHash> {
        (0..n).map(|i| TreeHash([i; 32])).collect()
    }

    #[test]
    fn a_dropped_list_comes_back_empty_with_its_room() {
        let pool = ListPool::new();
        let mut list = pool.take(100);
        assert!(list.is_empty() && list.capacity() >= 100);
        list.extend(hashes(100));
        let ptr = list.as_ptr();
        let lent = pool.lend(list);
        assert_eq!(lent.len(), 100);
        assert_eq!(lent[7], TreeHash([7; 32]));
        drop(lent);
        let again = pool.take(1);
        assert!(again.is_empty(), "a spare list comes back cleared");
        assert_eq!(again.as_ptr(), ptr, "the same allocation, not a new one");
        assert!(again.capacity() >= 100);
    }

    #[test]
    fn at_most_the_bound_is_kept_and_a_list_may_outlive_the_pool() {
        let pool = ListPool::new();
        let lent: Vec<_> = (0..SPARE_LISTS + 3).map(|_| pool.lend(hashes(3))).collect();
        drop(lent);
        let back = std::iter::from_fn(|| pool.spares.try_recv().ok()).count();
        assert_eq!(back, SPARE_LISTS);
        // Nothing waits for the writer: a list dropped after its pool is
        // simply freed.
        let late = pool.lend(hashes(2));
        drop(pool);
        drop(late);
    }

    #[test]
    fn a_list_dropped_on_another_thread_comes_back() {
        let pool = ListPool::new();
        let lent = pool.lend(hashes(5));
        std::thread::spawn(move || drop(lent)).join().unwrap();
        assert!(pool.take(0).capacity() >= 5);
    }
}
