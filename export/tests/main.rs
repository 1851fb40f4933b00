//! The export's integration tests, linked into one binary.
