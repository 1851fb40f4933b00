//! `auditlog search`: full-text search. (Filled in by the search issue.)

use clap::Args;

use super::{CliError, CliResult, Ctx};

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// tantivy query syntax: words, "phrases", field:value, AND/OR/NOT.
    pub query: String,
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
}

pub fn search(_ctx: &Ctx, _a: SearchArgs) -> CliResult {
    Err(CliError::failed("not implemented yet"))
}
