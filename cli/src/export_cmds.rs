//! `export --to DEST` and `verify-export DEST`: the Parquet export of
//! sealed segments (docs/export.md), through the `auditlog-export` crate.

use auditlog::event::json::json_string;
use auditlog::{Config, Digest, Log};
use auditlog_export::{
    export, verify_export, Destination, DestinationSpec, ExportError, ExportOptions, VerifyOptions,
};
use clap::Args;

use super::output::Out;
use super::{CliError, CliResult, Ctx};

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Where to: a folder, file:///PATH, or s3://BUCKET/PREFIX (S3
    /// credentials and region from the environment, as the AWS tools read them).
    #[arg(long = "to", value_name = "DEST")]
    pub to: String,
    /// An S3-compatible server's URL (else AWS_ENDPOINT_URL, else AWS).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The `host` column's value (default: as recorded, else this host's name).
    #[arg(long)]
    pub host: Option<String>,
    /// Seal the active segment first, so that everything stored so far is
    /// exported (opens the log for writing: not while a gateway has it open).
    #[arg(long)]
    pub seal: bool,
    /// Export at most N segments in this run.
    #[arg(long, value_name = "N")]
    pub max_segments: Option<usize>,
    /// Stop counting DEST for `retain --exported-first`, and export nothing.
    #[arg(long)]
    pub forget: bool,
    /// Upload in parts of N bytes: a file of four parts or more goes up as a
    /// multipart upload (default 16 MiB parts; S3 refuses parts under 5 MiB).
    #[arg(long, value_name = "N")]
    pub part_bytes: Option<usize>,
    /// Read and encode up to N segments at once (default: the cores, at
    /// most 4); files are uploaded in segment order either way.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct VerifyExportArgs {
    /// The export: a folder, file:///PATH, or s3://BUCKET/PREFIX.
    #[arg(value_name = "DEST")]
    pub dest: String,
    /// An S3-compatible server's URL (else AWS_ENDPOINT_URL, else AWS).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// A head digest anchored earlier (hex): it must appear in the chain.
    #[arg(long)]
    pub expect: Option<String>,
}

fn export_err(e: ExportError) -> CliError {
    match e {
        ExportError::Log(e) => CliError::from(e),
        other => CliError::failed(other.to_string()),
    }
}

fn open_dest(text: &str, endpoint: Option<&str>) -> Result<Destination, CliError> {
    let spec = DestinationSpec::parse(text, endpoint).map_err(export_err)?;
    Destination::open(&spec).map_err(export_err)
}

pub fn export_cmd(ctx: &Ctx, a: ExportArgs) -> CliResult {
    crate::memory::keep_freed_pages();
    crate::memory::keep_c_heap();
    let dir = ctx.dir()?;
    let mut dest = open_dest(&a.to, a.endpoint.as_deref())?;
    if let Some(n) = a.part_bytes {
        dest.set_part_bytes(n).map_err(export_err)?;
    }
    if a.forget {
        return forget(&dir, &dest);
    }
    if a.seal {
        let mut cfg = Config::new(&dir);
        cfg.create = false;
        let log = Log::open(cfg)?;
        log.seal()?;
        log.close()?;
    }
    crate::memory::no_huge_pages();
    let opts = ExportOptions {
        host: a.host,
        max_segments: a.max_segments,
        threads: a.threads,
    };
    let r = export(&dir, &dest, &opts).map_err(export_err)?;
    let mut s = String::from("{\"destination\":");
    json_string(&r.destination, &mut s);
    s.push_str(",\"log_id\":");
    json_string(&r.log_id, &mut s);
    let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let secs = r.seconds.max(1e-9);
    s.push_str(&format!(
        ",\"segments\":[{}],\"runs_rewritten\":[{}],\"events\":{},\"runs\":{},\"tool_calls\":{},\"files\":{},\"parquet_bytes\":{},\"segment_bytes\":{},\"through_segment\":{},\"gaps\":[{}],\"seconds\":{:.3},\"events_per_sec\":{:.0},\"segment_mb_per_sec\":{:.1}}}",
        list(&r.segments),
        list(&r.runs_rewritten),
        r.events,
        r.runs,
        r.tool_calls,
        r.files,
        r.parquet_bytes,
        r.segment_bytes,
        r.through_seq.map_or("null".to_string(), |t| t.to_string()),
        r.new_gaps
            .iter()
            .map(|g| format!("{{\"from_segment\":{},\"to_segment\":{}}}", g.from_seq, g.to_seq))
            .collect::<Vec<_>>()
            .join(","),
        r.seconds,
        r.events as f64 / secs,
        r.segment_bytes as f64 / 1e6 / secs,
    ));
    for g in &r.new_gaps {
        eprintln!(
            "auditlog: segments {}..={} left the log before they were exported: recorded as a gap",
            g.from_seq, g.to_seq
        );
    }
    let mut out = Out::new();
    out.line(&s)?;
    out.flush()
}

fn forget(dir: &std::path::Path, dest: &Destination) -> CliResult {
    let lock = auditlog::exported::try_lock(dir)?.ok_or_else(|| {
        CliError::failed("another export of this log is running (EXPORTED.lock is held)")
    })?;
    let found = auditlog::exported::forget(&lock, dest.url())?;
    let mut s = String::from("{\"forgotten\":");
    json_string(dest.url(), &mut s);
    s.push_str(&format!(",\"was_recorded\":{found}}}"));
    let mut out = Out::new();
    out.line(&s)?;
    out.flush()
}

pub fn verify_export_cmd(ctx: &Ctx, a: VerifyExportArgs) -> CliResult {
    let dest = open_dest(&a.dest, a.endpoint.as_deref())?;
    let expect = match &a.expect {
        Some(h) => Some(Digest::from_hex(h).ok_or_else(|| {
            CliError::usage(format!("--expect {h:?} is not a 64-digit hex digest"))
        })?),
        None => None,
    };
    let opts = VerifyOptions {
        log_dir: ctx.dir.clone(),
        expect,
    };
    let mut out = Out::new();
    match verify_export(&dest, &opts) {
        Ok(r) => {
            let logs: Vec<String> = r
                .logs
                .iter()
                .map(|c| {
                    let mut s = String::from("{\"log_id\":");
                    json_string(&c.log_id, &mut s);
                    s.push_str(",\"host\":");
                    json_string(&c.host, &mut s);
                    let opt = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
                    s.push_str(&format!(
                        ",\"segments\":{},\"files\":{},\"events\":{},\"runs\":{},\"tool_calls\":{},\"first_lsn\":{},\"head_lsn\":{},\"head_digest\":{},\"segments_checked_against_log\":{},\"gaps\":{}}}",
                        c.segments,
                        c.files,
                        c.events,
                        c.runs,
                        c.tool_calls,
                        opt(c.first_lsn),
                        opt(c.head_lsn),
                        c.head_digest.as_ref().map_or("null".to_string(), |d| format!("\"{d}\"")),
                        c.against_log,
                        c.gaps.len(),
                    ));
                    s
                })
                .collect();
            let mut s = format!("{{\"ok\":true,\"logs\":[{}]", logs.join(","));
            if let Some(d) = expect {
                s.push_str(&format!(
                    ",\"expect\":{{\"digest\":\"{d}\",\"found_at_lsn\":{}}}",
                    r.expect_found_at
                        .map_or("null".to_string(), |l| l.to_string())
                ));
            }
            s.push('}');
            out.line(&s)?;
            out.flush()
        }
        Err(e) => {
            if let ExportError::Mismatch { place, reason } = &e {
                let mut s = String::from("{\"ok\":false,\"place\":");
                json_string(place, &mut s);
                s.push_str(",\"reason\":");
                json_string(reason, &mut s);
                s.push('}');
                out.line(&s)?;
                out.flush()?;
            }
            Err(export_err(e))
        }
    }
}
