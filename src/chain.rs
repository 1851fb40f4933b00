//! The integrity chain. Every group-commit block is hashed (BLAKE3) together
//! with the digest of everything before it, so editing, removing, inserting
//! or reordering any record changes every later digest. Format in
//! docs/format.md.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::fmt;

/// A chain digest (BLAKE3, 32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest before the first block of a new log.
    pub const GENESIS: Digest = Digest([0u8; 32]);

    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    pub fn from_hex(s: &str) -> Option<Digest> {
        let s = s.trim();
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Digest(out))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Digest of one block: BLAKE3(prev ‖ first_lsn LE ‖ count LE ‖ frames),
/// where `frames` are the block's event frames exactly as stored.
pub fn block_digest(prev: &Digest, first_lsn: u64, count: u32, frames: &[u8]) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(&prev.0);
    h.update(&first_lsn.to_le_bytes());
    h.update(&count.to_le_bytes());
    h.update(frames);
    Digest(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let d = block_digest(&Digest::GENESIS, 7, 3, b"abc");
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
    }

    #[test]
    fn every_input_changes_the_digest() {
        let base = block_digest(&Digest::GENESIS, 0, 1, b"abc");
        assert_ne!(base, block_digest(&Digest([1; 32]), 0, 1, b"abc"));
        assert_ne!(base, block_digest(&Digest::GENESIS, 1, 1, b"abc"));
        assert_ne!(base, block_digest(&Digest::GENESIS, 0, 2, b"abc"));
        assert_ne!(base, block_digest(&Digest::GENESIS, 0, 1, b"abd"));
    }
}
