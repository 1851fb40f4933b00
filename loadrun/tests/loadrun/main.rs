//! The load run's integration tests, linked into one binary: the query
//! differential against the SQLite baseline, the run-fold differential
//! (engine, full-text index, SQLite, plain fold), and the full-text
//! measurement.

mod fold_differential;
mod fulltext_bench;
mod query_differential;
