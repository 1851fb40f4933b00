//! The log's Merkle tree (docs/proofs.md): what the writer keeps as it
//! writes blocks and the checkpoints it signs (`keeper`), each segment's
//! share in a derived `STEM.mtree` file ([`segtree`]), the tree of a whole
//! folder for proofs ([`logtree`], [`prove`]) and `verify --key`'s
//! recomputation (`verify_tree`). The parts that need no log (hashing,
//! signed notes, proof files and their checks) are in [`crate::tlog`].

pub(crate) mod keeper;
pub(crate) mod lists;
pub mod logtree;
pub mod prove;
pub mod segtree;
pub mod tiles;
pub(crate) mod verify_tree;
pub(crate) mod worker;

pub use keeper::{CheckpointConfig, DEFAULT_CHECKPOINT_INTERVAL};
pub use logtree::StoredCheckpoint;
pub use tiles::{TilesOptions, TilesReport};
pub use verify_tree::TreeReport;
