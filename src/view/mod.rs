//! The run view (docs/contract.md, "The run view"): a run folded from its
//! events. [`fold`] holds the one set of rules every consumer folds by.

pub mod fold;
mod run;

pub use fold::{Anomalies, Effect, Fold, RunState, RunStates, SystemTally};
pub use run::{is_dry, Run, RunLogEntry, DRY_RUN_STATUS};
