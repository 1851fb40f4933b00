//! Verifiable Parquet export of auditlog's sealed segments.
//!
//! [`export()`] writes every sealed segment of a log that the destination
//! does not hold yet as Parquet files (zstd) in three tables, `events`,
//! `runs` and `tool_calls`, partitioned by UTC day and log id:
//! `table=T/dt=YYYY-MM-DD/log_id=ID/seg-NNNNNNNNNN.parquet`. A manifest
//! per log (`_auditlog/log_id=ID/manifest.json`) records what was written;
//! [`verify_export`] re-reads it all and proves it against the log's chain
//! digests, with or without the log. Destinations are a local folder or
//! S3-compatible storage ([`Destination`]). docs/export.md is the guide for
//! auditors: schemas, queries, checks.
//!
//! ```no_run
//! use auditlog_export::{export, verify_export, Destination, DestinationSpec};
//! # fn main() -> Result<(), auditlog_export::ExportError> {
//! let dest = Destination::open(&DestinationSpec::parse("s3://audit/fleet", None)?)?;
//! let report = export(std::path::Path::new("/var/log/gateway"), &dest, &Default::default())?;
//! println!("{} events in {} files", report.events, report.files);
//! verify_export(&dest, &Default::default())?;
//! # Ok(()) }
//! ```

mod check;
mod dest;
mod error;
mod export;
pub mod manifest;
mod members;
pub mod pq;
pub mod readback;
mod runs;
mod segment;
mod syncer;
pub mod tables;

pub use check::{verify_export, LogCheck, VerifyExportReport, VerifyOptions};
pub use dest::{
    Destination, DestinationSpec, DEFAULT_PART_BYTES, MULTIPART_FROM_PARTS, PART_BYTES_RANGE,
};
pub use error::{ExportError, Result};
pub use export::{day_of, export, file_key, ExportOptions, ExportReport, MAX_THREADS};
