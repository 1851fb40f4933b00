//! `auditlog bench`: the load run.

use clap::Args;

use super::{CliError, CliResult, Ctx};

#[derive(Args, Debug)]
pub struct BenchArgs {}

pub fn bench(_ctx: &Ctx, _a: BenchArgs) -> CliResult {
    Err(CliError::failed("not implemented yet"))
}
