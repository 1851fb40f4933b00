//! Proofs an outsider can check: the RFC 6962 Merkle tree over every event
//! of the log, signed checkpoints in the C2SP `tlog-checkpoint` format
//! (Ed25519 signed notes), and inclusion and consistency proofs that need
//! nothing but the proof, the checkpoint and the public key. The format
//! and how an auditor checks a proof with standard tools: docs/proofs.md.
//! Nothing here reads a log: an auditor's program needs only this module.
//! The log's own tree is [`crate::tree`].

pub mod checkpoint;
pub mod cut_tiles;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod tiles;

pub use checkpoint::Checkpoint;
pub use cut_tiles::{CutTiles, CutTilesError};
pub use merkle::{Frontier, ProofError, TreeError, TreeHash};
pub use note::{NoteError, SignerKey, VerifierKey};
pub use proof::{CheckError, ConsistencyProof, InclusionProof, ProofFile};

/// Whether `path` lies inside the folder `dir` (resolved through symbolic
/// links): a signing key or its state must not.
pub fn path_is_inside(path: &std::path::Path, dir: &std::path::Path) -> bool {
    crate::fsutil::is_inside(path, dir)
}
