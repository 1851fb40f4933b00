//! The run view (contract section 2): a run folded from its events.

mod run;

pub use run::{Run, RunLogEntry};
