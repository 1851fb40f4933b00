//! The `auditlog` command line (docs/contract.md, "The command line"). Each command
//! group lives in its own module; this one parses arguments, dispatches,
//! and turns library errors into messages a person can act on.

mod calls_cmd;
#[cfg(feature = "export")]
mod export_cmds;
mod lines;
mod log_cmds;
mod memory;
mod output;
mod proof_cmds;
mod query_cmds;
mod sched;
mod search_cmd;
mod serve_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use auditlog_terminal::{CliError, CliResult};

// Producers allocate event buffers that the writer thread frees; mimalloc
// handles that cross-thread pattern without glibc's arena lock contention.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "auditlog",
    version,
    about = "Append-only, tamper-evident audit log for AI-agent gateways"
)]
pub struct Cli {
    /// The log's folder.
    #[arg(long, global = true, env = "AUDITLOG_DIR")]
    pub dir: Option<PathBuf>,
    /// Output format: JSON lines (default) or a table for people.
    #[arg(long, global = true, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// For the load run: end standard error with this process's peak
    /// resident memory (its own `VmHWM`, which a parent cannot learn
    /// reliably once the child has exited).
    #[arg(long, global = true, hide = true)]
    pub report_peak_rss: bool,
    /// Sign checkpoints of the Merkle tree with this private key (made by
    /// `auditlog keygen`; kept outside the log folder) whenever this
    /// command writes the log (ingest, retain). Its last signed checkpoint
    /// is remembered beside it as FILE.state.
    #[arg(long, global = true, env = "AUDITLOG_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// With --signing-key: sign at least this often while events arrive
    /// (besides every seal and the close), e.g. 10s.
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s")]
    pub checkpoint_interval: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Table,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Append JSONL events from FILE or stdin (`-`).
    Ingest(log_cmds::IngestArgs),
    /// List runs, newest first.
    Runs(query_cmds::RunsArgs),
    /// Count runs matching the filters.
    Count(query_cmds::CountArgs),
    /// One run with its logs.
    Run(query_cmds::IdArgs),
    /// Runs whose parent is ID.
    Children(query_cmds::ChildrenArgs),
    /// The run, its parent, its parent's parent, ...
    Chain(query_cmds::IdArgs),
    /// Latest started_at per skill.
    LastRun(query_cmds::LastRunArgs),
    /// Failing tool calls grouped by channel, tool and error type.
    Errors(query_cmds::ErrorsArgs),
    /// Tool calls, with or without a run: filtered, newest first, paged;
    /// or counted (`--count`, `--count --by tool`).
    Calls(calls_cmd::CallsArgs),
    /// Every stored event in log order, as ingested, with its LSN.
    Replay(log_cmds::ReplayArgs),
    /// The newest events; `-f` follows new ones.
    Tail(log_cmds::TailArgs),
    /// Full-text search over run output, error, inputs and log payloads.
    Search(search_cmd::SearchArgs),
    /// Check every frame, every event, the integrity chain, the MANIFEST
    /// and the derived indexes.
    Verify(log_cmds::VerifyArgs),
    /// Move damage in the newest segment into quarantine/ (byte for byte)
    /// and start a new segment; the repair is recorded in the log.
    Repair(log_cmds::RepairArgs),
    /// Drop whole segments whose newest event is older than a cutoff.
    Retain(log_cmds::RetainArgs),
    /// Write sealed segments not yet exported as Parquet (docs/export.md).
    #[cfg(feature = "export")]
    Export(export_cmds::ExportArgs),
    /// Re-read an export and prove it against the log or its recorded digests.
    #[cfg(feature = "export")]
    VerifyExport(export_cmds::VerifyExportArgs),
    /// Segments, events, bytes, time span, anomalies.
    Stats(log_cmds::StatsArgs),
    /// Run one writer for many local clients: Unix socket, HTTP, OTLP.
    Serve(serve_cmd::ServeArgs),
    /// Make a key pair for signing checkpoints (docs/proofs.md).
    Keygen(proof_cmds::KeygenArgs),
    /// An inclusion proof of the event at LSN, or a consistency proof
    /// between two checkpoints, against the log's signed checkpoints.
    Prove(proof_cmds::ProveArgs),
    /// Check a proof with no log at hand: the proof file, the public key,
    /// and optionally a checkpoint and the event you hold.
    CheckProof(proof_cmds::CheckProofArgs),
    /// The signed checkpoints the log holds.
    Checkpoints(proof_cmds::CheckpointsArgs),
    /// Write the tree as C2SP tlog-tiles static files (checkpoint, hash
    /// tiles, entry bundles) for tile-based tlog tooling; incremental.
    Tiles(proof_cmds::TilesArgs),
    /// The load run: a synthetic gateway workload, measured.
    Bench(auditlog_loadrun::BenchArgs),
    /// Events/s and latency through `serve` (socket, HTTP) beside the
    /// embedded library (docs/benchmarks.md).
    BenchServe(auditlog_loadrun::serve_bench::ServeBenchArgs),
    /// One client process of `bench-serve`.
    #[command(hide = true)]
    BenchServeClient(auditlog_loadrun::serve_bench::ServeClientArgs),
}

/// What a command needs besides its own arguments.
pub struct Ctx {
    pub dir: Option<PathBuf>,
    pub format: Format,
    /// Checkpoint signing for commands that write (`--signing-key`).
    pub signing_key: Option<PathBuf>,
    pub checkpoint_interval: String,
}

impl Ctx {
    /// The log folder, or a message saying how to name one.
    pub fn dir(&self) -> Result<PathBuf, CliError> {
        self.dir
            .clone()
            .ok_or_else(|| CliError::usage("no log folder: pass --dir DIR or set AUDITLOG_DIR"))
    }
}

fn main() {
    std::process::exit(run());
}

/// Run the command line; returns the process exit status.
fn run() -> i32 {
    let cli = Cli::parse();
    let ctx = Ctx {
        dir: cli.dir.clone(),
        format: cli.format,
        signing_key: cli.signing_key.clone(),
        checkpoint_interval: cli.checkpoint_interval.clone(),
    };
    let r = match cli.command {
        Command::Ingest(a) => log_cmds::ingest(&ctx, a),
        Command::Replay(a) => log_cmds::replay(&ctx, a),
        Command::Tail(a) => log_cmds::tail(&ctx, a),
        Command::Verify(a) => log_cmds::verify(&ctx, a),
        Command::Repair(a) => log_cmds::repair(&ctx, a),
        Command::Retain(a) => log_cmds::retain(&ctx, a),
        #[cfg(feature = "export")]
        Command::Export(a) => export_cmds::export_cmd(&ctx, a),
        #[cfg(feature = "export")]
        Command::VerifyExport(a) => export_cmds::verify_export_cmd(&ctx, a),
        Command::Stats(a) => log_cmds::stats(&ctx, a),
        Command::Keygen(a) => proof_cmds::keygen(&ctx, a),
        Command::Prove(a) => proof_cmds::prove(&ctx, a),
        Command::CheckProof(a) => proof_cmds::check_proof(&ctx, a),
        Command::Checkpoints(a) => proof_cmds::checkpoints(&ctx, a),
        Command::Tiles(a) => proof_cmds::tiles(&ctx, a),
        Command::Runs(a) => query_cmds::runs(&ctx, a),
        Command::Count(a) => query_cmds::count(&ctx, a),
        Command::Run(a) => query_cmds::run(&ctx, a),
        Command::Children(a) => query_cmds::children(&ctx, a),
        Command::Chain(a) => query_cmds::chain(&ctx, a),
        Command::LastRun(a) => query_cmds::last_run(&ctx, a),
        Command::Errors(a) => query_cmds::errors(&ctx, a),
        Command::Calls(a) => calls_cmd::calls(&ctx, a),
        Command::Search(a) => search_cmd::search(&ctx, a),
        // The server does not sign checkpoints yet: say so rather than
        // serve a log the user believes signed.
        Command::Serve(_) if ctx.signing_key.is_some() => Err(CliError::usage(
            "serve does not sign checkpoints yet: sign with `ingest` or `retain`, or a gateway's Config::checkpoints (docs/proofs.md)",
        )),
        Command::Serve(a) => serve_cmd::serve(&ctx, a),
        Command::Bench(a) => {
            // `--queries-only` times queries in a process that has just
            // made and freed the workload: with huge pages, each page the
            // allocator takes afresh (its freed memory handed back) was a
            // 2 MiB fault zeroed by the kernel inside a timed query
            // (docs/benchmarks.md, "Queries, win39 round"). Freed pages
            // are kept for the same reason: the workload's memory, freed
            // before the timing, is reused, not faulted in again.
            if a.queries_only {
                memory::no_huge_pages();
                memory::keep_freed_pages();
            }
            auditlog_loadrun::bench(ctx.dir.as_deref(), a)
        }
        Command::BenchServe(a) => auditlog_loadrun::serve_bench::serve_bench(a),
        Command::BenchServeClient(a) => auditlog_loadrun::serve_bench::serve_bench_client(a),
    };
    if cli.report_peak_rss {
        if let Some(b) = auditlog_loadrun::peak_rss_bytes() {
            eprintln!("{}{b}", auditlog_loadrun::PEAK_RSS_LINE);
        }
    }
    match r {
        Ok(()) => 0,
        Err(e) if e.code == 0 => 0,
        Err(e) => {
            eprintln!("auditlog: {}", e.message);
            e.code
        }
    }
}

/// Extra `stats` fields from derived data (anomalies, search lag): each a
/// key and a JSON value. Later modules add theirs here.
pub fn stats_extras(
    reader: &auditlog::LogReader,
    total: u64,
) -> Result<Vec<(String, String)>, CliError> {
    // Anomalies (docs/contract.md, "The run view"): events kept in the log
    // but ignored by the run view. Counted by one replay of the log.
    let pb = output::progress(
        Some(total),
        "counting anomalies",
        output::Counts::Items("events"),
    );
    let a = reader.anomalies(|n| pb.set_position(n))?;
    pb.finish_and_clear();
    let mut extras = auditlog::fulltext::search_stats(reader);
    extras.insert(0, (
        "anomalies".to_string(),
        format!(
            "{{\"duplicate_run_started\":{},\"duplicate_run_finished\":{},\"orphan_logs\":{},\"finishes_without_start\":{}}}",
            a.duplicate_starts, a.duplicate_finishes, a.orphan_logs, a.finishes_without_start
        ),
    ));
    // What the log recorded of its own cuts, repairs and retention passes.
    let t = &a.system;
    let mut sys = format!(
        "{{\"torn_tail_cuts\":{},\"repairs\":{},\"retentions\":{},\"checkpoints\":{},\"skipped_lsns\":{},\"quarantined_bytes\":{},\"last\":",
        t.torn_tail_cuts, t.repairs, t.retentions, t.checkpoints, t.skipped_lsns, t.quarantined_bytes
    );
    match t.last {
        Some((lsn, ts, record)) => sys.push_str(&format!(
            "{{\"lsn\":{lsn},\"ts\":\"{}\",\"record\":\"{record}\"}}",
            auditlog::event::time::to_rfc3339(ts)
        )),
        None => sys.push_str("null"),
    }
    sys.push('}');
    extras.insert(1, ("system_events".to_string(), sys));
    Ok(extras)
}
