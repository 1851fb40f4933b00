//! Checkpoints in the C2SP `tlog-checkpoint` format (c2sp.org/tlog-checkpoint):
//! a signed note whose text is
//!
//! ```text
//! ORIGIN\n
//! TREE SIZE (decimal, no leading zero)\n
//! ROOT HASH (base64 of the 32-byte RFC 6962 root)\n
//! [extension lines]\n
//! ```
//!
//! signed by the log's key, whose name is the origin.

use super::merkle::TreeHash;
use super::note::{self, NoteError, SignerKey, VerifierKey};

/// A tree head: which log, how many leaves, and the root over them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: TreeHash,
    /// Extension lines (non-empty, no newline), after the root hash.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn new(origin: &str, size: u64, root: TreeHash) -> Checkpoint {
        Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text, byte for byte.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parse a checkpoint's note text (not its signatures: see [`open`]).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let bad = |why: String| NoteError::Malformed(format!("checkpoint {why}"));
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("text does not end with a newline".into()))?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(bad("has fewer than 3 lines".into()));
        };
        if origin.is_empty() {
            return Err(bad("origin line is empty".into()));
        }
        let size_ok = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let size: u64 = match size_ok {
            true => size
                .parse()
                .map_err(|_| bad(format!("tree size {size:?} is out of range")))?,
            false => return Err(bad(format!("tree size {size:?} is not a decimal number"))),
        };
        let root = TreeHash::from_base64(root)
            .ok_or_else(|| bad(format!("root hash {root:?} is not 32 bytes of base64")))?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("has an empty extension line".into()));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }

    /// Sign with `key`, whose name must be the origin.
    pub fn sign(&self, key: &SignerKey) -> Result<String, NoteError> {
        if key.name() != self.origin {
            return Err(NoteError::BadKey(format!(
                "key {:?} cannot sign checkpoints of origin {:?} (the key name is the origin)",
                key.name(),
                self.origin
            )));
        }
        key.sign(&self.to_text())
    }
}

/// Check a signed checkpoint against `key` and parse it. The origin must
/// be the key's name.
pub fn open(signed: &str, key: &VerifierKey) -> Result<Checkpoint, NoteError> {
    let text = note::open(signed, key)?;
    let c = Checkpoint::parse(text)?;
    if c.origin != key.name() {
        return Err(NoteError::Malformed(format!(
            "checkpoint origin {:?} is not the key's name {:?}",
            c.origin,
            key.name()
        )));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::leaf_hash;

    #[test]
    fn text_is_the_c2sp_layout_and_parses_back() {
        let mut c = Checkpoint::new("example.com/log", 20852163, leaf_hash(b"x"));
        assert_eq!(
            c.to_text(),
            format!(
                "example.com/log\n20852163\n{}\n",
                leaf_hash(b"x").to_base64()
            )
        );
        assert_eq!(Checkpoint::parse(&c.to_text()).unwrap(), c);
        c.extensions.push("retention 5".into());
        assert_eq!(Checkpoint::parse(&c.to_text()).unwrap(), c);
        let key = SignerKey::from_seed("example.com/log", [3; 32]).unwrap();
        let signed = c.sign(&key).unwrap();
        assert_eq!(open(&signed, &key.verifier()).unwrap(), c);
        let other = SignerKey::from_seed("other", [3; 32]).unwrap();
        assert!(c.sign(&other).is_err());
    }

    #[test]
    fn malformed_checkpoints_are_refused() {
        let root = leaf_hash(b"x").to_base64();
        for bad in [
            "o\n5\n".to_string(),
            format!("o\n05\n{root}\n"),
            format!("o\n-5\n{root}\n"),
            format!("o\n99999999999999999999999\n{root}\n"),
            "o\n5\nAAAA\n".to_string(),
            format!("\n5\n{root}\n"),
            format!("o\n5\n{root}"),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
        assert!(Checkpoint::parse(&format!("o\n0\n{root}\n")).is_ok());
    }
}
