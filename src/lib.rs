//! An embedded, event-sourced, append-only audit log for AI-agent gateways.
//!
//! A gateway records every run start, run log line and run finish as an
//! [`Event`], and every tool call, inside a run or standing alone with its
//! own session, agent and workspace ([`ToolCall`]). Events go into daily segment files
//! through a lock-free queue drained by one writer thread with group
//! commit; every record is CRC-framed and every block is linked into a
//! BLAKE3 integrity chain that [`verify`] checks. The runs folded from the
//! events ([`Run`]) are queried through secondary indexes; with the
//! `search` cargo feature, runs are also searchable as full text.
//!
//! # Start here
//!
//! - [`AuditStore`]: the gateway API. Open one per log folder
//!   ([`StoreConfig`]), record runs ([`AuditStore::start_run`],
//!   [`AuditStore::append_log`], [`AuditStore::finish_run`], or any
//!   [`Event`] with [`AuditStore::append`]), query them
//!   ([`AuditStore::get_run`], [`AuditStore::list_runs`] with a [`Filter`]),
//!   replay and follow the log, verify it, drop old segments, read
//!   [`Stats`] and counters. Tool calls: [`AuditStore::record_call`],
//!   [`AuditStore::calls`] with a [`CallFilter`] and [`CallPage`] (cursor
//!   paging), [`AuditStore::count_calls_by`], [`AuditStore::tool_errors`].
//!   The store heals its writes after a failed sync ([`Health`],
//!   [`HealingConfig`]) and can run retention on a schedule
//!   ([`RetentionSchedule`]); retention never drops the start of a run
//!   still running.
//! - [`RedactionPolicy`]: fields dropped or hashed before anything is
//!   stored, or keep-only (everything not named is dropped or hashed), with
//!   ready-made presets ([`RedactionPolicy::preset`]: `metadata-only`,
//!   `hash-and-sizes`). The log records the policy in force.
//! - [`Log`]: the log alone (append, flush, replay), for tools that need no
//!   run queries. [`LogReader`] reads a log folder read-only, beside a
//!   writer in another process.
//! - [`QueryEngine`]: the run queries over a folder opened read-only.
//! - Integrity: every read checks the chain of the blocks it returns;
//!   [`verify`] / [`verify_with`] check a whole folder, [`repair`] moves
//!   damage in the newest segment into `quarantine/`, and the engine
//!   records each cut, repair and retention as a [`system`] event
//!   (docs/integrity.md).
//! - [`event`]: the event model, its JSON form (one object per line) and
//!   instants; docs/contract.md in the repository is the outside contract.
//!
//! ```
//! use auditlog::{AuditStore, Durability, Filter, Page, RunFinished, RunStarted, StoreConfig};
//!
//! # let tmp = tempfile::tempdir()?;
//! # let dir = tmp.path().join("audit");
//! let mut cfg = StoreConfig::new(&dir); // created if missing
//! cfg.log.durability = Durability::EveryBatch; // group commit + fdatasync
//! let store = AuditStore::open(cfg)?;
//!
//! let t0 = 1_795_392_000_000_000; // µs since the Unix epoch, UTC
//! let start = RunStarted { skill_id: "web.search".into(), ..RunStarted::default() };
//! store.start_run("r-1", t0, start)?;
//! store.finish_run("r-1", t0 + 1_500_000, RunFinished { status: "ok".into(), ..RunFinished::default() })?;
//! store.flush()?; // durable, and visible to queries
//!
//! let run = store.get_run("r-1")?.expect("stored");
//! assert_eq!((run.status.as_str(), run.finished_at), ("ok", Some(t0 + 1_500_000)));
//! let mine = Filter { skill: Some("web.search".into()), ..Filter::default() };
//! assert_eq!(store.list_runs(&mine, Page::new(10, 0))?.len(), 1);
//! store.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Cargo features
//!
//! - `search` (off by default): full-text search over runs with tantivy
//!   (the `fulltext` module, `StoreConfig::search`, `AuditStore::search`). A
//!   gateway that does not search compiles none of it.
//!
//! # Errors
//!
//! Every fallible call returns [`Error`]. [`Error::is_retryable`] tells a
//! failure worth retrying (a full queue, a write that was cut back cleanly)
//! from one that is not (bad input, a stopped writer, a corrupt log).
//!
//! The on-disk format is described byte by byte in docs/format.md; the
//! design, with a picture of these modules, in docs/design.md.

mod blocks;
mod chain;
mod checked;
mod codec;
mod config;
mod derived;
mod error;
pub mod event;
pub mod exported;
mod frame;
mod fsutil;
#[cfg(feature = "search")]
pub mod fulltext;
mod handoff;
mod index;
mod io;
mod layout;
mod limits;
mod lock;
mod log;
mod manifest;
mod num;
mod priority;
pub mod query;
mod reader;
mod receipt;
mod rechain;
mod recovery;
mod redact;
mod repair;
mod replay;
mod retention;
mod segment;
mod shared;
mod stages;
mod stats;
mod store;
pub mod tlog;
pub mod tree;
mod verify;
pub mod view;
mod writer;

pub use chain::Digest;
pub use config::{Config, Durability, FullPolicy, RetainHook, SealHook};
pub use error::{Error, EventError, Result};
pub use event::system;
pub use event::{Event, EventData, Json, Micros, RunFinished, RunLog, RunStarted, ToolCall};
pub use layout::{Head, RecoveryReport, SegmentMeta};
#[doc(hidden)]
pub use log::{BatchBuilder, ViewBatch};
pub use log::{Counters, EncodedBatch, Log, TreeWaitStats};
pub use manifest::PolicyRecord;
pub use query::{
    Call, CallCursor, CallFilter, CallKey, CallOrder, CallPage, CallSource, Engine as QueryEngine,
    ErrorGroup, Filter, Page,
};
pub use reader::{Follower, Lent, LentItem, LogReader, Replay, ReplayRange, ReplayThreads};
pub use receipt::{LsnRange, Receipt};
pub use rechain::Rechain;
pub use redact::{
    Action, Preset, RedactionPolicy, PRESETS as REDACTION_PRESETS, TOOL_CALL_METADATA,
};
pub use repair::{repair, RepairReport};
pub use retention::{Carry, CarryFn, DroppedSegment, RetainOptions, RetentionReport};
pub use segment::{FORMAT_VERSION, MIN_FORMAT_VERSION};
pub use stats::{Stats, WriteStats};
pub use store::{
    retain_keeping_running, AuditStore, DropCounts, HealingConfig, Health, HealthHook,
    RetentionHook, RetentionPass, RetentionSchedule, RunGuard, StoreConfig, StoreCounters,
};
pub use verify::{verify, verify_with, VerifyOptions, VerifyReport};
pub use view::{Anomalies, Run, RunLogEntry};
pub use writer::FrameRecycler;

/// Not API: the engine's internals, for its own integration tests, fuzz
/// targets and the command line's tamper tests, which write damaged files
/// on purpose. Nothing here is stable; gateways use the crate root.
#[doc(hidden)]
pub mod internals {
    pub mod blocks {
        pub use crate::blocks::*;
    }
    pub mod chain {
        pub use crate::chain::*;
    }
    pub mod codec {
        pub use crate::codec::*;
    }
    pub mod frame {
        pub use crate::frame::*;
    }
    pub mod segment {
        pub use crate::segment::*;
    }
    pub mod layout {
        pub use crate::layout::*;
    }
    pub mod manifest {
        pub use crate::manifest::*;
    }
    pub mod index {
        pub use crate::index::*;
    }
    pub mod io {
        pub use crate::io::*;
    }
    pub mod limits {
        pub use crate::limits::*;
    }
    pub mod recovery {
        pub use crate::recovery::*;
    }
    /// Thread placement (the load run's `--pin` uses the same call as
    /// `AUDITLOG_INGEST_CPUS` / `AUDITLOG_BACKGROUND_CPUS`).
    pub mod priority {
        pub use crate::priority::pin_current_thread;
    }
    /// The writer's hand-over of fdatasync jobs to its syncer (benches).
    pub mod handoff {
        pub use crate::handoff::{Handoff, WorkerGone};
    }
    /// Where an append's time goes, by stage (the load run's `--stages`).
    pub mod stages {
        pub use crate::stages::{
            disable, enable, report, RollFigures, RollPart, Stage, StageFigures, StageReport,
            ROLL_PART_NAMES, STAGE_NAMES,
        };
    }
}

/// README.md's examples, compiled (and run unless marked `no_run`) by
/// `cargo test --doc`, so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
