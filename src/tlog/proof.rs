//! Proof files: what `auditlog prove` writes and `auditlog check-proof`
//! (or any RFC 6962 checker) reads. One JSON object each; hashes in
//! standard base64, checkpoints as their signed-note text. Layout in
//! docs/proofs.md. Checking needs only the file, the public key and,
//! optionally, a checkpoint the auditor already trusts.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, Checkpoint};
use super::merkle::{self, leaf_hash, ProofError, TreeHash};
use super::note::{NoteError, VerifierKey};

pub const INCLUSION_FORMAT: &str = "auditlog-inclusion-proof";
pub const CONSISTENCY_FORMAT: &str = "auditlog-consistency-proof";
pub const PROOF_VERSION: u32 = 1;
/// A proof file longer than this is refused unread (a real one is a few KiB
/// plus the event, at most 1 MiB).
pub const MAX_PROOF_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Event `lsn` (leaf `leaf_index`) is in the tree of `tree_size` leaves
/// that `checkpoint` signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    pub format: String,
    pub version: u32,
    /// The event's log sequence number (not itself hashed: the leaf index
    /// is what the proof proves).
    pub lsn: u64,
    pub leaf_index: u64,
    pub tree_size: u64,
    /// The leaf's data: the event's stored encoding (docs/format.md), base64.
    pub record: String,
    /// The audit path, the sibling nearest the leaf first (base64 hashes).
    pub proof: Vec<String>,
    /// The signed checkpoint of `tree_size` (C2SP signed-note text).
    pub checkpoint: String,
}

/// The tree of `old_size` leaves is a prefix of the tree of `new_size`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    pub format: String,
    pub version: u32,
    pub old_size: u64,
    pub new_size: u64,
    /// RFC 6962 `PROOF(old, D[new])` (base64 hashes).
    pub proof: Vec<String>,
    /// The signed checkpoints of both sizes.
    pub old_checkpoint: String,
    pub new_checkpoint: String,
}

/// Why a proof file does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("not a proof file: {0}")]
    Format(String),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] NoteError),
    #[error("{0}")]
    Proof(#[from] ProofError),
    #[error("{0}")]
    Mismatch(String),
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn hashes(list: &[String]) -> Result<Vec<TreeHash>, CheckError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            TreeHash::from_base64(s).ok_or_else(|| {
                CheckError::Format(format!("proof hash {i} is not 32 bytes of base64"))
            })
        })
        .collect()
}

pub(crate) fn hashes_to_text(list: &[TreeHash]) -> Vec<String> {
    list.iter().map(TreeHash::to_base64).collect()
}

/// What a checked inclusion proof vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedInclusion {
    pub lsn: u64,
    pub leaf_index: u64,
    /// The leaf data: the event's stored bytes.
    pub record: Vec<u8>,
    pub checkpoint: Checkpoint,
}

/// Which checkpoint to check a proof against: the one in the file, or one
/// the auditor holds (signed-note text), which must be of the same size.
fn trusted_checkpoint(
    in_file: &str,
    given: Option<&str>,
    size: u64,
    key: &VerifierKey,
) -> Result<Checkpoint, CheckError> {
    let c = checkpoint::open(given.unwrap_or(in_file), key)?;
    if c.size != size {
        return Err(CheckError::Mismatch(format!(
            "the proof is for a tree of {size} leaves but the checkpoint is of {} leaves (ask for a proof against it: auditlog prove ... --tree-size {})",
            c.size, c.size
        )));
    }
    Ok(c)
}

impl InclusionProof {
    pub fn from_json(text: &str) -> Result<InclusionProof, CheckError> {
        let p: InclusionProof =
            serde_json::from_str(text).map_err(|e| CheckError::Format(e.to_string()))?;
        if p.format != INCLUSION_FORMAT || p.version != PROOF_VERSION {
            return Err(CheckError::Format(format!(
                "format {:?} version {} (this build reads {INCLUSION_FORMAT:?} version {PROOF_VERSION})",
                p.format, p.version
            )));
        }
        Ok(p)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The leaf data, decoded from base64.
    pub fn record_bytes(&self) -> Result<Vec<u8>, CheckError> {
        b64()
            .decode(&self.record)
            .map_err(|_| CheckError::Format("record is not base64".into()))
    }

    /// Check the signature on the checkpoint (or on `trusted`, a checkpoint
    /// the auditor holds, of the same size) and the audit path from the
    /// record's leaf hash to its root.
    pub fn check(
        &self,
        key: &VerifierKey,
        trusted: Option<&str>,
    ) -> Result<CheckedInclusion, CheckError> {
        let c = trusted_checkpoint(&self.checkpoint, trusted, self.tree_size, key)?;
        let record = self.record_bytes()?;
        let path = hashes(&self.proof)?;
        merkle::verify_inclusion(
            self.leaf_index,
            self.tree_size,
            &leaf_hash(&record),
            &path,
            &c.root,
        )?;
        Ok(CheckedInclusion {
            lsn: self.lsn,
            leaf_index: self.leaf_index,
            record,
            checkpoint: c,
        })
    }
}

/// What a checked consistency proof vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedConsistency {
    pub old: Checkpoint,
    pub new: Checkpoint,
}

impl ConsistencyProof {
    pub fn from_json(text: &str) -> Result<ConsistencyProof, CheckError> {
        let p: ConsistencyProof =
            serde_json::from_str(text).map_err(|e| CheckError::Format(e.to_string()))?;
        if p.format != CONSISTENCY_FORMAT || p.version != PROOF_VERSION {
            return Err(CheckError::Format(format!(
                "format {:?} version {} (this build reads {CONSISTENCY_FORMAT:?} version {PROOF_VERSION})",
                p.format, p.version
            )));
        }
        Ok(p)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Check both checkpoints' signatures (either may be replaced by one the
    /// auditor holds, of the same size) and the proof between their roots.
    pub fn check(
        &self,
        key: &VerifierKey,
        trusted_old: Option<&str>,
        trusted_new: Option<&str>,
    ) -> Result<CheckedConsistency, CheckError> {
        let old = trusted_checkpoint(&self.old_checkpoint, trusted_old, self.old_size, key)?;
        let new = trusted_checkpoint(&self.new_checkpoint, trusted_new, self.new_size, key)?;
        let path = hashes(&self.proof)?;
        merkle::verify_consistency(self.old_size, self.new_size, &path, &old.root, &new.root)?;
        Ok(CheckedConsistency { old, new })
    }
}

/// Either kind of proof file, told apart by its `format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofFile {
    Inclusion(InclusionProof),
    Consistency(ConsistencyProof),
}

impl ProofFile {
    pub fn parse(text: &str) -> Result<ProofFile, CheckError> {
        #[derive(Deserialize)]
        struct Head {
            format: String,
        }
        let head: Head =
            serde_json::from_str(text).map_err(|e| CheckError::Format(e.to_string()))?;
        match head.format.as_str() {
            INCLUSION_FORMAT => InclusionProof::from_json(text).map(ProofFile::Inclusion),
            CONSISTENCY_FORMAT => ConsistencyProof::from_json(text).map(ProofFile::Consistency),
            other => Err(CheckError::Format(format!(
                "unknown format {other:?} (expected {INCLUSION_FORMAT:?} or {CONSISTENCY_FORMAT:?})"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::{consistency_proof, inclusion_proof, root_at};
    use crate::tlog::note::SignerKey;

    fn setup() -> (SignerKey, Vec<Vec<u8>>, Vec<TreeHash>) {
        let key = SignerKey::from_seed("test/log", [5; 32]).unwrap();
        let records: Vec<Vec<u8>> = (0..11u8).map(|i| vec![i; i as usize + 1]).collect();
        let leaves = records.iter().map(|r| leaf_hash(r)).collect();
        (key, records, leaves)
    }

    fn signed(key: &SignerKey, leaves: &[TreeHash], size: u64) -> String {
        let root = root_at(&mut &leaves[..], size).unwrap();
        Checkpoint::new(key.name(), size, root).sign(key).unwrap()
    }

    fn inclusion(key: &SignerKey, records: &[Vec<u8>], leaves: &[TreeHash]) -> InclusionProof {
        let path = inclusion_proof(&mut &leaves[..], 4, 11).unwrap().unwrap();
        InclusionProof {
            format: INCLUSION_FORMAT.into(),
            version: PROOF_VERSION,
            lsn: 4,
            leaf_index: 4,
            tree_size: 11,
            record: b64().encode(&records[4]),
            proof: hashes_to_text(&path),
            checkpoint: signed(key, leaves, 11),
        }
    }

    #[test]
    fn an_inclusion_proof_checks_and_every_tampering_is_refused() {
        let (key, records, leaves) = setup();
        let p = inclusion(&key, &records, &leaves);
        let back = InclusionProof::from_json(&p.to_json()).unwrap();
        let ok = back.check(&key.verifier(), None).unwrap();
        assert_eq!(ok.record, records[4]);
        assert_eq!(ok.checkpoint.size, 11);

        let mut bad = p.clone();
        bad.record = b64().encode(&records[5]);
        assert!(matches!(
            bad.check(&key.verifier(), None),
            Err(CheckError::Proof(_))
        ));
        let mut bad = p.clone();
        bad.proof[1] = leaves[0].to_base64();
        assert!(bad.check(&key.verifier(), None).is_err());
        let mut bad = p.clone();
        bad.leaf_index = 5;
        assert!(bad.check(&key.verifier(), None).is_err());
        let mut bad = p.clone();
        bad.checkpoint = bad.checkpoint.replacen("\n11\n", "\n12\n", 1);
        assert!(matches!(
            bad.check(&key.verifier(), None),
            Err(CheckError::Checkpoint(_))
        ));
        let other = SignerKey::from_seed("test/log", [6; 32]).unwrap();
        assert!(p.check(&other.verifier(), None).is_err());
        // A checkpoint the auditor holds, of another size, is not used.
        let older = signed(&key, &leaves, 10);
        assert!(matches!(
            p.check(&key.verifier(), Some(&older)),
            Err(CheckError::Mismatch(_))
        ));
        assert!(InclusionProof::from_json("{}").is_err());
        let unknown = p.to_json().replacen('{', "{\"extra\":1,", 1);
        assert!(InclusionProof::from_json(&unknown).is_err());
    }

    #[test]
    fn a_consistency_proof_checks_and_tampering_is_refused() {
        let (key, _, leaves) = setup();
        let path = consistency_proof(&mut &leaves[..], 6, 11).unwrap().unwrap();
        let p = ConsistencyProof {
            format: CONSISTENCY_FORMAT.into(),
            version: PROOF_VERSION,
            old_size: 6,
            new_size: 11,
            proof: hashes_to_text(&path),
            old_checkpoint: signed(&key, &leaves, 6),
            new_checkpoint: signed(&key, &leaves, 11),
        };
        let back = match ProofFile::parse(&p.to_json()).unwrap() {
            ProofFile::Consistency(c) => c,
            other => panic!("{other:?}"),
        };
        assert!(back.check(&key.verifier(), None, None).is_ok());
        let mut forged = leaves.clone();
        forged[2] = leaf_hash(b"forged");
        let mut bad = p.clone();
        bad.old_checkpoint = signed(&key, &forged, 6);
        assert!(matches!(
            bad.check(&key.verifier(), None, None),
            Err(CheckError::Proof(ProofError::RootMismatch))
        ));
        let mut bad = p.clone();
        bad.proof.pop();
        assert!(bad.check(&key.verifier(), None, None).is_err());
    }
}
