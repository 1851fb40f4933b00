//! The index builder's string table: every string of an image once, with
//! `u32` handles in first-seen order (the image's string heap is written
//! in the order `Builder::finish` asks for handles, so the handle order is
//! part of the image bytes and must not change).
//!
//! The strings live back to back in one buffer; the hash table's slots
//! hold each string's full hash, handle, length and first 16 bytes, so a
//! lookup of a short string reads only its slot. The table of `Rc<str>`
//! keys it replaces spent more time in `memcmp` (a pointer chase per probe
//! into a separate allocation, a cache miss) than in hashing, and could
//! not leave its thread.

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
    /// Per handle: (start in `text`, length).
    spans: Vec<(u32, u32)>,
    table: HashTable<Slot>,
    hasher: foldhash::fast::FixedState,
    /// The handle of `""` once seen: most of a tool call's eight strings
    /// are empty (a `run_log` call's channel and caller, no workspace, no
    /// engine, no error), so they skip the hash and the table.
    empty: Option<u32>,
}

/// Bytes of a string kept in its table slot: ids, channels, statuses and
/// tool names are mostly this short, and then a lookup reads nothing but
/// the slot (reading the string from `text` was a cache miss per lookup).
const INLINE: usize = 16;

/// One table entry: the string's full hash, handle, length and first bytes.
struct Slot {
    hash: u64,
    handle: u32,
    len: u32,
    head: [u8; INLINE],
}

/// The first `INLINE` bytes of `s`, zero padded. By fixed-size loads
/// (overlapping where `s` is short) rather than a copy of `s.len()`
/// bytes: that copy was a call to `memcpy` per string interned, ~4% of an
/// index scan's samples (docs/benchmarks.md, "Index lag, idx41 round").
fn head_of(s: &[u8]) -> [u8; INLINE] {
    let n = s.len();
    let word = |at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
    let (lo, hi) = if n >= INLINE {
        (word(0), word(8))
    } else if n > 8 {
        // Bytes 8..n: the last 8 bytes, shifted down past those below 8.
        (word(0), word(n - 8) >> (8 * (INLINE - n)))
    } else if n == 8 {
        (word(0), 0)
    } else if n >= 4 {
        let half = |at: usize| {
            u64::from(u32::from_le_bytes(
                s[at..at + 4].try_into().unwrap_or([0; 4]),
            ))
        };
        // Two loads of 4 that overlap (equal bytes where they do).
        (half(0) | half(n - 4) << (8 * (n - 4)), 0)
    } else if n > 0 {
        let b = |at: usize| u64::from(s[at]) << (8 * at);
        (b(0) | b(n / 2) | b(n - 1), 0)
    } else {
        (0, 0)
    };
    let mut head = [0u8; INLINE];
    head[..8].copy_from_slice(&lo.to_le_bytes());
    head[8..].copy_from_slice(&hi.to_le_bytes());
    head
}

impl Interner {
    /// The handle of `s`, new if it was not seen before.
    pub fn intern(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            if let Some(h) = self.empty {
                return h;
            }
            let h = self.intern_new_or_old(s);
            self.empty = Some(h);
            return h;
        }
        self.intern_new_or_old(s)
    }

    /// The handle of `s` if it was interned.
    pub fn find(&self, s: &str) -> Option<u32> {
        self.slot_of(s, self.hasher.hash_one(s))
            .map(|slot| slot.handle)
    }

    fn slot_of(&self, s: &str, hash: u64) -> Option<&Slot> {
        let b = s.as_bytes();
        let head = head_of(b);
        let (text, spans) = (&self.text, &self.spans);
        self.table.find(hash, |slot| {
            slot.hash == hash
                && slot.len as usize == b.len()
                && slot.head == head
                && (b.len() <= INLINE || {
                    let (start, len) = spans[slot.handle as usize];
                    &text.as_bytes()[start as usize..(start + len) as usize] == b
                })
        })
    }

    fn intern_new_or_old(&mut self, s: &str) -> u32 {
        let hash = self.hasher.hash_one(s);
        if let Some(slot) = self.slot_of(s, hash) {
            return slot.handle;
        }
        let b = s.as_bytes();
        let head = head_of(b);
        let handle = u32_of(self.spans.len());
        self.spans.push((u32_of(self.text.len()), u32_of(s.len())));
        self.text.push_str(s);
        let slot = Slot {
            hash,
            handle,
            len: u32_of(b.len()),
            head,
        };
        self.table.insert_unique(hash, slot, |slot| slot.hash);
        handle
    }

    /// The text of handle `h` (empty for a handle never given out).
    pub fn name(&self, h: u32) -> &str {
        match self.spans.get(h as usize) {
            Some(&(start, len)) => &self.text[start as usize..(start + len) as usize],
            None => "",
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Forget every string, keeping the memory (a kept builder's,
    /// `super::pool`): handles start at 0 again.
    pub fn clear(&mut self) {
        self.text.clear();
        self.spans.clear();
        self.table.clear();
        self.empty = None;
    }

    /// Bytes of memory held.
    pub fn kept_bytes(&self) -> usize {
        self.text.capacity()
            + super::pool::cap_of(&self.spans)
            + self.table.capacity() * std::mem::size_of::<Slot>()
    }

    fn bytes(&self, h: u32) -> &[u8] {
        self.name(h).as_bytes()
    }

    /// Each handle's place in the byte order of all the interned strings
    /// (`ranks()[h]`; distinct strings, so distinct ranks). Comparing two
    /// handles' ranks answers what comparing their bytes answers, so the
    /// image's sorts by id (RUNS, LOGS, FINS, AMND, CKEYS) become integer
    /// sorts after one sort of the distinct strings here: those string
    /// sorts, each comparison a `memcmp` behind two look-ups, were the
    /// largest share of `Builder::finish` (docs/benchmarks.md, "Ingest,
    /// cli32 round").
    #[cfg(test)]
    pub fn ranks(&self) -> Vec<u32> {
        let mut rank = Vec::new();
        self.ranks_into(&mut Vec::new(), &mut rank);
        rank
    }

    /// [`Interner::ranks`] into `rank`, sorting in `order` (kept buffers:
    /// both emptied first).
    pub fn ranks_into(&self, order: &mut Vec<(u128, u32)>, rank: &mut Vec<u32>) {
        // Sorted by the string's head (its first `INLINE` bytes, zero
        // padded, as in its slot) read as a big-endian number first: where
        // two heads differ, the bytes compare the same way; the bytes
        // themselves only on equal heads.
        order.clear();
        order.extend(
            (0..u32_of(self.spans.len())).map(|h| (u128::from_be_bytes(head_of(self.bytes(h))), h)),
        );
        order.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| self.bytes(a.1).cmp(self.bytes(b.1)))
        });
        rank.clear();
        rank.resize(order.len(), 0);
        for (r, &(_, h)) in order.iter().enumerate() {
            rank[h as usize] = u32_of(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_come_in_first_seen_order_and_repeat() {
        let mut t = Interner::default();
        let words = [
            "r-1",
            "",
            "ok",
            "r-1",
            "ok",
            "a much longer string than sixteen bytes",
            "",
        ];
        let hs: Vec<u32> = words.iter().map(|w| t.intern(w)).collect();
        assert_eq!(hs, [0, 1, 2, 0, 2, 3, 1]);
        assert_eq!(t.len(), 4);
        for (w, h) in words.iter().zip(&hs) {
            assert_eq!(t.name(*h), *w);
        }
        assert_eq!(t.name(99), "");
        assert_eq!(t.find("ok"), Some(2));
        assert_eq!(t.find("a much longer string than sixteen bytes"), Some(3));
        assert_eq!(t.find("not there"), None);
    }

    #[test]
    fn strings_alike_in_their_first_bytes_stay_apart() {
        let mut t = Interner::default();
        let a = "0123456789abcdef-one";
        let b = "0123456789abcdef-two";
        let c = "0123456789abcdef";
        assert_eq!([t.intern(a), t.intern(b), t.intern(c)], [0, 1, 2]);
        assert_eq!([t.intern(c), t.intern(b), t.intern(a)], [2, 1, 0]);
        assert_eq!((t.name(0), t.name(1), t.name(2)), (a, b, c));
    }

    #[test]
    fn ranks_order_handles_as_their_bytes() {
        let mut t = Interner::default();
        let words = [
            "r-10",
            "r-9",
            "",
            "r-1",
            "r-1\u{0}",
            "r-1\u{0}a",
            "abcdefgh",
            "abcdefg",
            "abcdefgh\u{0}",
            "abcdefghi",
            "é",
            "z",
            "r-100000000",
            "r-10000000",
        ];
        for w in words {
            t.intern(w);
        }
        let rank = t.ranks();
        let mut by_rank: Vec<u32> = (0..u32_of(t.len())).collect();
        by_rank.sort_by_key(|&h| rank[h as usize]);
        let mut sorted: Vec<&str> = words.to_vec();
        sorted.sort_unstable();
        let got: Vec<&str> = by_rank.iter().map(|&h| t.name(h)).collect();
        assert_eq!(got, sorted);
    }

    /// `head_of` is the first `INLINE` bytes, zero padded, at every length.
    #[test]
    fn heads_are_the_first_bytes_zero_padded() {
        let bytes: Vec<u8> = (1..=40u8).map(|b| b.wrapping_mul(37) | 1).collect();
        for n in 0..=bytes.len() {
            let s = &bytes[..n];
            let mut want = [0u8; INLINE];
            let k = n.min(INLINE);
            want[..k].copy_from_slice(&s[..k]);
            assert_eq!(head_of(s), want, "length {n}");
        }
    }

    proptest::proptest! {
        #[test]
        fn rank_order_is_byte_order(words in proptest::collection::vec("[a-c\\x00é]{0,12}", 0..60)) {
            let mut t = Interner::default();
            let hs: Vec<u32> = words.iter().map(|w| t.intern(w)).collect();
            let rank = t.ranks();
            for (a, ha) in words.iter().zip(&hs) {
                for (b, hb) in words.iter().zip(&hs) {
                    proptest::prop_assert_eq!(
                        rank[*ha as usize].cmp(&rank[*hb as usize]),
                        a.as_bytes().cmp(b.as_bytes())
                    );
                }
            }
        }
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
