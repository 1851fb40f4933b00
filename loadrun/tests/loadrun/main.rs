//! The load run's integration tests, linked into one binary: the query
//! differential against the SQLite baseline, and the full-text measurement.

mod fulltext_bench;
mod query_differential;
