//! Integer conversions between file fields and memory indexes, without
//! lossy `as` casts (the format modules deny them). Values come from
//! bounded places (a segment is capped below 4 GiB, offsets index mapped
//! files), so the saturating fallbacks only ever turn a damaged value into
//! one the bounds checks after it refuse.

/// A file offset or length as a slice index (saturating on targets whose
/// address space is smaller than the value).
pub(crate) fn usize_of(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// A slice index or length as a file field (lossless on every supported
/// target: `usize` is at most 64 bits).
pub(crate) fn u64_of(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// A count or offset inside one index image as the u32 the format stores.
/// An image covers one segment, capped below 4 GiB, so it always fits.
pub(crate) fn u32_of(v: usize) -> u32 {
    debug_assert!(u32::try_from(v).is_ok(), "{v} does not fit a u32 field");
    u32::try_from(v).unwrap_or(u32::MAX)
}
