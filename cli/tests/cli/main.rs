//! The command line's integration tests, linked into one binary: they run
//! the `auditlog` binary on log folders made with the engine.

#[path = "../../../tests/support/mod.rs"]
mod engine_support;
#[path = "../../../tests/support/fuzz_shared.rs"]
mod fuzz_shared;

/// The engine suite's helpers, plus running the binary.
mod support {
    pub use crate::engine_support::*;
    use std::path::Path;

    /// Run the auditlog binary on log folder `dir`: (exit code, stdout, stderr).
    pub fn cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditlog"))
            .arg("--dir")
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

mod attacks;
mod attacks_proofs;
mod bench_smoke;
mod calls_cli;
mod cli_log;
#[cfg(feature = "export")]
mod export_cli;
mod fulltext_search;
mod ingest_stream;
mod proofs_cli;
mod query_cli;
mod redact_keep;
mod reliability_crash;
mod reliability_input;
mod reliability_permissions;
mod reliability_redact;
mod reliability_tamper;
mod serve_clients;
mod serve_malformed;
mod serve_ops;
mod serve_otlp;
mod serve_support;
