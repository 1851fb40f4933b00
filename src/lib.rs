//! auditlog: an embedded, event-sourced, append-only audit log engine.
//!
//! Events go in through [`Log::append`] (a lock-free queue drained by one
//! writer thread with group commit) and come back through [`LogReader`].
//! The on-disk format is described in docs/format.md.

pub mod chain;
pub mod codec;
pub mod config;
pub mod error;
pub mod event;
pub mod frame;
pub mod fsutil;
#[cfg(feature = "search")]
pub mod fulltext;
pub mod index;
pub mod io;
pub mod layout;
pub mod lock;
pub mod log;
pub mod manifest;
mod priority;
pub mod query;
pub mod reader;
pub mod receipt;
pub mod redact;
pub mod retention;
pub mod segment;
mod shared;
pub mod store;
pub mod verify;
pub mod view;
mod writer;

pub use chain::Digest;
pub use config::{Config, Durability, FullPolicy};
pub use error::{Error, EventError, Result};
pub use event::{Event, EventData, Json, Micros, RunFinished, RunLog, RunStarted};
pub use layout::Head;
pub use log::{Counters, EncodedBatch, Log};
pub use query::{ErrorGroup, Filter, Page};
pub use reader::{LogReader, ReplayRange};
pub use receipt::{LsnRange, Receipt};
pub use redact::{Action, RedactionPolicy};
pub use retention::RetentionReport;
pub use store::{AuditStore, RunGuard, StoreConfig, StoreCounters};
pub use verify::{verify, VerifyReport};
pub use view::{Run, RunLogEntry};
