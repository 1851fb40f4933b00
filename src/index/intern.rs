//! The index builder's string table: every string of an image once, with
//! `u32` handles in first-seen order (the image's string heap is written
//! in the order `Builder::finish` asks for handles, so the handle order is
//! part of the image bytes and must not change).
//!
//! The strings live back to back in one buffer and the hash table holds
//! only handles, next to each string's full hash: a lookup compares bytes
//! only when the full hashes agree. The table of `Rc<str>` keys it
//! replaces spent more time in `memcmp` (a pointer chase per probe into a
//! separate allocation) than in hashing, and could not leave its thread.

#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::num::u32_of;

/// Interned strings of one image build. `Send`: scans run on worker
/// threads (`query::engine`'s parallel builds).
#[derive(Default)]
pub(crate) struct Interner {
    text: String,
    /// Per handle: (start in `text`, length, full hash).
    spans: Vec<(u32, u32, u64)>,
    table: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
}

impl Interner {
    /// The handle of `s`, new if it was not seen before.
    pub fn intern(&mut self, s: &str) -> u32 {
        let hash = self.hasher.hash_one(s);
        let (text, spans) = (&self.text, &self.spans);
        let found = self.table.find(hash, |&h| {
            let (start, len, full) = spans[h as usize];
            full == hash && &text.as_bytes()[start as usize..(start + len) as usize] == s.as_bytes()
        });
        if let Some(&h) = found {
            return h;
        }
        let h = u32_of(self.spans.len());
        self.spans
            .push((u32_of(self.text.len()), u32_of(s.len()), hash));
        self.text.push_str(s);
        let spans = &self.spans;
        self.table
            .insert_unique(hash, h, |&h| spans[h as usize].2);
        h
    }

    /// The text of handle `h` (empty for a handle never given out).
    pub fn name(&self, h: u32) -> &str {
        match self.spans.get(h as usize) {
            Some(&(start, len, _)) => &self.text[start as usize..(start + len) as usize],
            None => "",
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_come_in_first_seen_order_and_repeat() {
        let mut t = Interner::default();
        let words = ["r-1", "", "ok", "r-1", "ok", "a much longer string than sixteen bytes", ""];
        let hs: Vec<u32> = words.iter().map(|w| t.intern(w)).collect();
        assert_eq!(hs, [0, 1, 2, 0, 2, 3, 1]);
        assert_eq!(t.len(), 4);
        for (w, h) in words.iter().zip(&hs) {
            assert_eq!(t.name(*h), *w);
        }
        assert_eq!(t.name(99), "");
    }

    #[test]
    fn many_strings_stay_distinct() {
        let mut t = Interner::default();
        for i in 0..50_000u32 {
            assert_eq!(t.intern(&format!("run-{i}")), i);
        }
        for i in (0..50_000u32).rev() {
            assert_eq!(t.intern(&format!("run-{i}")), i);
            assert_eq!(t.name(i), format!("run-{i}"));
        }
    }
}
