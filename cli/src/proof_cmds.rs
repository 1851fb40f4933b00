//! Proof commands (docs/proofs.md): `keygen` makes a checkpoint signing
//! key pair, `prove` writes an inclusion or consistency proof, `check-proof`
//! checks one with no log at hand, `checkpoints` lists the signed
//! checkpoints a log holds.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Args;

use super::log_cmds::open_reader;
use super::output::Out;
use super::{CliError, CliResult, Ctx};
use auditlog::event::json::{event_to_json, parse_event};
use auditlog::tlog::proof::MAX_PROOF_FILE_BYTES;
use auditlog::tlog::{ProofFile, SignerKey, VerifierKey};

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The key's name: the origin line of every checkpoint it signs, e.g.
    /// `audit.example.com/gateway-1` (no spaces, no `+`).
    #[arg(long)]
    pub name: String,
    /// Where to write the private key (created 0600; FILE.pub gets the
    /// public key). Keep it outside the log folder.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct ProveArgs {
    /// The event's LSN (inclusion proof).
    #[arg(
        required_unless_present = "consistency",
        conflicts_with = "consistency"
    )]
    pub lsn: Option<u64>,
    /// Prove against the checkpoint of this tree size (default: the newest).
    #[arg(long, value_name = "N")]
    pub tree_size: Option<u64>,
    /// A consistency proof between the checkpoints of tree sizes OLD and
    /// NEW (default NEW: the newest checkpoint).
    #[arg(long, num_args = 1..=2, value_names = ["OLD", "NEW"])]
    pub consistency: Option<Vec<u64>>,
    /// Write the proof here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CheckProofArgs {
    /// The proof file (`auditlog prove`'s output).
    pub proof: PathBuf,
    /// The log's public key (the `.pub` file `keygen` wrote, or its text).
    #[arg(long, value_name = "PUBKEY")]
    pub key: String,
    /// A checkpoint you already trust (its signed-note text, saved
    /// earlier): the proof must lead to its root instead of the one in the
    /// file. For a consistency proof, the newer one.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// For a consistency proof: the older checkpoint you trust.
    #[arg(long, value_name = "FILE")]
    pub old_checkpoint: Option<PathBuf>,
    /// The event as you were given it (one JSON line, as `replay` prints
    /// it): it must be the event the proof proves.
    #[arg(long, value_name = "FILE")]
    pub event: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CheckpointsArgs {
    /// Print only the newest checkpoint's signed note, as is (save it to
    /// check later proofs and consistency against).
    #[arg(long)]
    pub note: bool,
    /// With --note: the checkpoint of this tree size instead.
    #[arg(long, value_name = "N", requires = "note")]
    pub tree_size: Option<u64>,
}

#[derive(Args, Debug)]
pub struct TilesArgs {
    /// The folder to write (created if missing; outside the log folder).
    /// A rerun into the same folder adds what is new.
    #[arg(long, value_name = "DEST")]
    pub to: PathBuf,
    /// Serve the checkpoint of this tree size instead of the newest.
    #[arg(long, value_name = "N")]
    pub tree_size: Option<u64>,
    /// Write only the hash tiles and the checkpoint, no entry bundles.
    #[arg(long)]
    pub no_entries: bool,
}

/// `auditlog tiles --to DEST`: the tree as C2SP tlog-tiles static files
/// (docs/proofs.md, "Tiles"); prints what it wrote as one JSON line.
pub fn tiles(ctx: &Ctx, a: TilesArgs) -> CliResult {
    let dir = ctx.dir()?;
    if auditlog::tlog::path_is_inside(&a.to, &dir) {
        return Err(CliError::usage(format!(
            "--to {} is inside the log folder {}: write the tiles somewhere else",
            a.to.display(),
            dir.display()
        )));
    }
    let reader = open_reader(ctx)?;
    let opts = auditlog::tree::TilesOptions {
        tree_size: a.tree_size,
        entries: !a.no_entries,
    };
    let report = reader.write_tiles(&a.to, &opts)?;
    let json = serde_json::to_string(&report)
        .map_err(|e| CliError::failed(format!("printing the report: {e}")))?;
    let mut out = Out::new();
    out.line(&json)?;
    out.flush()?;
    if !report.checkpoint_written {
        return Err(CliError::failed(format!(
            "no checkpoint written: retention dropped the leaves under {} with a retention record that keeps no tile hashes (format 4, or a cut under such a one), and {} does not hold the tiles over them; rerun into a folder written before that retention (docs/proofs.md, \"Tiles\")",
            report.unavailable.join(", "),
            a.to.display()
        )));
    }
    Ok(())
}

fn read_small(path: &Path, what: &str) -> Result<String, CliError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| CliError::usage(format!("{what} {}: {e}", path.display())))?;
    if meta.len() > MAX_PROOF_FILE_BYTES {
        return Err(CliError::usage(format!(
            "{what} {} is {} bytes, more than a proof file can be ({MAX_PROOF_FILE_BYTES})",
            path.display(),
            meta.len()
        )));
    }
    std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("{what} {}: {e}", path.display())))
}

/// A public key given as a file or as its text.
fn verifier_key(arg: &str) -> Result<VerifierKey, CliError> {
    let text = match Path::new(arg).exists() {
        true => read_small(Path::new(arg), "public key")?,
        false => arg.to_string(),
    };
    VerifierKey::parse(&text).map_err(|e| CliError::usage(format!("--key: {e}")))
}

pub(crate) fn verifier_key_arg(arg: &str) -> Result<VerifierKey, CliError> {
    verifier_key(arg)
}

/// `auditlog keygen`.
pub fn keygen(ctx: &Ctx, a: KeygenArgs) -> CliResult {
    if let Some(dir) = &ctx.dir {
        if auditlog::tlog::path_is_inside(&a.out, dir) {
            return Err(CliError::usage(format!(
                "{} is inside the log folder {}: keep the private key where whoever can write the log cannot read it",
                a.out.display(),
                dir.display()
            )));
        }
    }
    let key = SignerKey::generate(&a.name).map_err(|e| CliError::usage(e.to_string()))?;
    let mut pub_path = a.out.as_os_str().to_owned();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    write_new(&a.out, 0o600, &format!("{}\n", key.to_secret_text()))?;
    write_new(&pub_path, 0o644, &format!("{}\n", key.verifier()))?;
    let mut s = String::from("{\"private_key\":");
    auditlog::event::json::json_string(&a.out.display().to_string(), &mut s);
    s.push_str(",\"public_key\":");
    auditlog::event::json::json_string(&pub_path.display().to_string(), &mut s);
    s.push_str(",\"verifier_key\":");
    auditlog::event::json::json_string(&key.verifier().to_string(), &mut s);
    s.push('}');
    let mut out = Out::new();
    out.line(&s)?;
    out.flush()
}

/// Create `path` (refusing to replace anything) with `mode` and `text`.
fn write_new(path: &Path, mode: u32, text: &str) -> CliResult {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| CliError::failed(format!("creating {}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| CliError::failed(format!("writing {}: {e}", path.display())))
}

/// `auditlog prove`.
pub fn prove(ctx: &Ctx, a: ProveArgs) -> CliResult {
    let reader = open_reader(ctx)?;
    let json = match (&a.consistency, a.lsn) {
        (Some(sizes), _) => {
            let (old, new) = (sizes[0], sizes.get(1).copied());
            reader.prove_consistency(old, new)?.to_json()
        }
        (None, Some(lsn)) => reader.prove_inclusion(lsn, a.tree_size)?.to_json(),
        (None, None) => return Err(CliError::usage("give an LSN or --consistency OLD [NEW]")),
    };
    match &a.out {
        Some(path) => std::fs::write(path, format!("{json}\n"))
            .map_err(|e| CliError::failed(format!("writing {}: {e}", path.display()))),
        None => {
            let mut out = Out::new();
            out.line(&json)?;
            out.flush()
        }
    }
}

/// `auditlog check-proof`: exit 0 and `{"ok":true,...}` when the proof
/// holds; exit 1 and `{"ok":false,"reason":...}` when it does not.
pub fn check_proof(_ctx: &Ctx, a: CheckProofArgs) -> CliResult {
    let key = verifier_key(&a.key)?;
    let text = read_small(&a.proof, "proof file")?;
    let trusted = a
        .checkpoint
        .as_deref()
        .map(|p| read_small(p, "checkpoint"))
        .transpose()?;
    let trusted_old = a
        .old_checkpoint
        .as_deref()
        .map(|p| read_small(p, "checkpoint"))
        .transpose()?;
    let event = a
        .event
        .as_deref()
        .map(|p| read_small(p, "event"))
        .transpose()?;
    let mut out = Out::new();
    match checked(
        &text,
        &key,
        trusted.as_deref(),
        trusted_old.as_deref(),
        event.as_deref(),
    ) {
        Ok(line) => {
            out.line(&line)?;
            out.flush()
        }
        Err(reason) => {
            let mut s = String::from("{\"ok\":false,\"reason\":");
            auditlog::event::json::json_string(&reason, &mut s);
            s.push('}');
            out.line(&s)?;
            out.flush()?;
            Err(CliError::failed(format!(
                "the proof does not hold: {reason}"
            )))
        }
    }
}

/// The answer line of a proof that holds, or why it does not.
fn checked(
    text: &str,
    key: &VerifierKey,
    trusted: Option<&str>,
    trusted_old: Option<&str>,
    event: Option<&str>,
) -> Result<String, String> {
    match ProofFile::parse(text).map_err(|e| e.to_string())? {
        ProofFile::Inclusion(p) => {
            if trusted_old.is_some() {
                return Err("--old-checkpoint is for consistency proofs".into());
            }
            let ok = p.check(key, trusted).map_err(|e| e.to_string())?;
            let ev = auditlog::internals::codec::decode_stored(&ok.record)
                .map_err(|e| format!("the proven record is not an event this build reads: {e}"))?;
            if let Some(given) = event {
                same_event(given, &ev)?;
            }
            Ok(format!(
                "{{\"ok\":true,\"kind\":\"inclusion\",\"origin\":{},\"lsn\":{},\"leaf_index\":{},\"tree_size\":{},\"root\":\"{}\",\"event\":{}}}",
                json_str(&ok.checkpoint.origin),
                ok.lsn,
                ok.leaf_index,
                ok.checkpoint.size,
                ok.checkpoint.root.to_hex(),
                event_to_json(&ev, Some(ok.lsn))
            ))
        }
        ProofFile::Consistency(p) => {
            if event.is_some() {
                return Err("--event is for inclusion proofs".into());
            }
            let ok = p
                .check(key, trusted_old, trusted)
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "{{\"ok\":true,\"kind\":\"consistency\",\"origin\":{},\"old_size\":{},\"old_root\":\"{}\",\"new_size\":{},\"new_root\":\"{}\"}}",
                json_str(&ok.new.origin),
                ok.old.size,
                ok.old.root.to_hex(),
                ok.new.size,
                ok.new.root.to_hex()
            ))
        }
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::new();
    auditlog::event::json::json_string(s, &mut out);
    out
}

/// The event the auditor holds (a JSON line) must be the proven one.
fn same_event(given: &str, proven: &auditlog::Event) -> Result<(), String> {
    let line = given.trim();
    let ev = parse_event(line.as_bytes()).map_err(|e| format!("--event: {e}"))?;
    if ev != *proven {
        return Err(format!(
            "the event given is not the one the proof proves (that one is {})",
            event_to_json(proven, None)
        ));
    }
    Ok(())
}

/// `auditlog checkpoints`.
pub fn checkpoints(ctx: &Ctx, a: CheckpointsArgs) -> CliResult {
    let reader = open_reader(ctx)?;
    let list = reader.checkpoints()?;
    let mut out = Out::new();
    if a.note {
        let pick = match a.tree_size {
            Some(n) => list.iter().find(|c| c.record.tree_size == n),
            None => list.last(),
        };
        let c = pick.ok_or_else(|| CliError::failed("no such checkpoint in the log"))?;
        print!("{}", c.record.note);
        return Ok(());
    }
    for c in &list {
        let mut when = String::new();
        auditlog::event::time::format_rfc3339(c.record.signed_at, &mut when);
        out.line(&format!(
            "{{\"lsn\":{},\"tree_size\":{},\"root\":\"{}\",\"signed_at\":\"{when}\",\"note\":{}}}",
            c.lsn,
            c.record.tree_size,
            c.record.root,
            json_str(&c.record.note)
        ))?;
    }
    out.flush()
}
