//! The export's integration tests, linked into one binary.

mod support;

mod crash;
mod export_basic;
mod retention;
mod runs_view;
mod tamper;
