//! Splitting ingest's input chunks into lines.

/// The pieces of `chunk` between newlines, exactly as
/// `chunk.split(|&b| b == b'\n')` yields them (a piece after a final
/// newline included, empty), but found with `memchr`.
///
/// Why: the byte-at-a-time `split` was 11% of the parse workers' CPU
/// samples in `auditlog ingest` of the load run's 514 MB workload
/// (docs/benchmarks.md, "Ingest, ingest30 round"); `memchr` steps over
/// a line's ~250 bytes in a few vector compares.
pub fn lines(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut ends = memchr::memchr_iter(b'\n', chunk);
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        match ends.next() {
            Some(end) => {
                start = Some(end + 1);
                Some(&chunk[from..end])
            }
            None => {
                start = None;
                Some(&chunk[from..])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::lines;
    use proptest::prelude::*;

    fn both(chunk: &[u8]) -> (Vec<&[u8]>, Vec<&[u8]>) {
        (
            lines(chunk).collect(),
            chunk.split(|&b| b == b'\n').collect(),
        )
    }

    #[test]
    fn the_pieces_are_those_of_split_at_the_edges() {
        for chunk in [
            &b""[..],
            b"\n",
            b"\n\n",
            b"a",
            b"a\n",
            b"\na",
            b"a\nb",
            b"a\nb\n",
            b"a\r\n\r\nb\r\n",
        ] {
            let (ours, split) = both(chunk);
            assert_eq!(ours, split, "{chunk:?}");
        }
    }

    proptest! {
        #[test]
        fn the_pieces_are_those_of_split(chunk in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(b' '), any::<u8>()], 0..300)) {
            let (ours, split) = both(&chunk);
            prop_assert_eq!(ours, split);
        }
    }
}
