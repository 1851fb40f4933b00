//! Query commands: runs, count, run, children, chain, last-run, errors.
//! (Filled in by the query issue.)

use clap::Args;

use super::{CliError, CliResult, Ctx};

/// Filters shared by `runs` and `count` (contract section 3).
#[derive(Args, Debug, Clone, Default)]
pub struct Filters {
    #[arg(long)]
    pub skill: Option<String>,
    #[arg(long)]
    pub caller: Option<String>,
    #[arg(long)]
    pub channel: Option<String>,
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub parent: Option<String>,
    #[arg(long)]
    pub top_level: bool,
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long)]
    pub include_dry_run: bool,
}

#[derive(Args, Debug)]
pub struct RunsArgs {
    #[command(flatten)]
    pub filters: Filters,
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub offset: Option<usize>,
}

#[derive(Args, Debug)]
pub struct CountArgs {
    #[command(flatten)]
    pub filters: Filters,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    pub id: String,
}

#[derive(Args, Debug)]
pub struct ChildrenArgs {
    pub id: String,
    #[arg(long)]
    pub include_dry_run: bool,
}

#[derive(Args, Debug)]
pub struct LastRunArgs {
    #[arg(long, value_delimiter = ',', required = true)]
    pub skills: Vec<String>,
    #[arg(long)]
    pub include_failed: bool,
    #[arg(long)]
    pub include_dry_run: bool,
}

#[derive(Args, Debug)]
pub struct ErrorsArgs {
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long)]
    pub include_dry_run: bool,
}

fn todo() -> CliResult {
    Err(CliError::failed("not implemented yet"))
}

pub fn runs(_ctx: &Ctx, _a: RunsArgs) -> CliResult {
    todo()
}
pub fn count(_ctx: &Ctx, _a: CountArgs) -> CliResult {
    todo()
}
pub fn run(_ctx: &Ctx, _a: IdArgs) -> CliResult {
    todo()
}
pub fn children(_ctx: &Ctx, _a: ChildrenArgs) -> CliResult {
    todo()
}
pub fn chain(_ctx: &Ctx, _a: IdArgs) -> CliResult {
    todo()
}
pub fn last_run(_ctx: &Ctx, _a: LastRunArgs) -> CliResult {
    todo()
}
pub fn errors(_ctx: &Ctx, _a: ErrorsArgs) -> CliResult {
    todo()
}
