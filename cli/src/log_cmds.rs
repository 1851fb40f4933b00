//! Log commands: ingest, replay, tail, verify, retain, stats.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;

use super::output::{object_rows, progress, table, Counts, Out};
use super::{CliError, CliResult, Ctx, Format};
use auditlog::event::json::{parse_event, with_parsed_event, write_event};
use auditlog::event::time::{parse_instant, to_rfc3339};
use auditlog::query::IndexOnSeal;
use auditlog::RedactionPolicy;
use auditlog::{AuditStore, StoreConfig};
use auditlog::{
    Config, Digest, EncodedBatch, Event, Log, LogReader, Micros, ReplayRange, ReplayThreads,
    ViewBatch,
};
use std::sync::Arc;

/// Bytes of input parsed and appended as one batch.
const INGEST_CHUNK: usize = 4 << 20;
/// Longest line read whole before it is cut (it is refused either way).
const MAX_LINE_SCAN: usize = 64 << 20;
/// Bad lines reported one by one before only counting the rest.
const MAX_REPORTED_BAD_LINES: u64 = 1000;
/// A pipe with nothing more to read for this long hands over the whole
/// lines read so far (`tail -f gateway.jsonl | auditlog ingest -`): each
/// line is stored within a few ms of its arrival, while a pipe that keeps
/// data coming still fills whole chunks.
const QUIET_PIPE: std::time::Duration = std::time::Duration::from_millis(2);

/// Whether `fd` has nothing to read for `wait` (a quiet pipe).
fn quiet(fd: std::os::fd::RawFd, wait: std::time::Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd that lives across the call; poll
    // only writes its `revents`.
    let n = unsafe { libc::poll(&mut p, 1, wait.as_millis() as libc::c_int) };
    n == 0
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// JSONL file, or `-` (the default) for standard input.
    #[arg(default_value = "-")]
    pub file: String,
    /// Reject the whole input (store nothing, exit non-zero) on any bad line.
    #[arg(long)]
    pub strict: bool,
    /// A redaction policy file (docs/reliability.md): fields it names are
    /// dropped or hashed before anything reaches the disk.
    #[arg(long, value_name = "POLICY", conflicts_with = "redact_preset")]
    pub redact: Option<PathBuf>,
    /// A ready-made keep-only policy: `metadata-only` (tool-call metadata,
    /// no content, stdout, stderr or body) or `hash-and-sizes` (content
    /// replaced by its hash and size); `none` turns redaction off. Without
    /// --redact or --redact-preset, the policy the log recorded last
    /// stays in force.
    #[arg(long, value_name = "NAME")]
    pub redact_preset: Option<String>,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Only events with ts at or after T (µs or RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events with ts at or before T.
    #[arg(long)]
    pub until: Option<String>,
    /// Start at this LSN.
    #[arg(long)]
    pub from_lsn: Option<u64>,
    /// Threads that check and decode while this one writes: 0 = all on
    /// this thread; N = a checking thread and N decoding threads (measured
    /// slower than the default on 2 cores: docs/benchmarks.md); default: a
    /// checking thread ahead of this one for a large replay.
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct TailArgs {
    /// How many of the newest events to show.
    #[arg(short = 'n', long, default_value_t = 10)]
    pub lines: u64,
    /// Keep following new events (Ctrl-C to stop).
    #[arg(short = 'f', long)]
    pub follow: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// A head digest anchored earlier (hex): it must appear in the chain.
    #[arg(long)]
    pub expect: Option<String>,
    /// Also rebuild every derived index through the query engine's own
    /// build path and compare it byte for byte (plain `verify` already
    /// compares each one with the image built from the events it decodes).
    #[arg(long)]
    pub deep: bool,
    /// The log's public key (the `.pub` file of `keygen`, or its text):
    /// recompute the Merkle tree from the events and check every signed
    /// checkpoint and retention against it (docs/proofs.md).
    #[arg(long, value_name = "PUBKEY")]
    pub key: Option<String>,
    /// With --key: events after the newest checkpoint (a running writer
    /// signs them within its interval) are reported, not refused.
    #[arg(long, requires = "key")]
    pub allow_unsigned_tail: bool,
}

#[derive(Args, Debug)]
pub struct RepairArgs {}

#[derive(Args, Debug)]
pub struct RetainArgs {
    /// Drop segments whose newest event is older than this (e.g. 30d, 12h).
    #[arg(long, conflicts_with = "before", required_unless_present = "before")]
    pub older_than: Option<String>,
    /// Drop segments whose newest event is before T (µs or RFC 3339).
    #[arg(long)]
    pub before: Option<String>,
    /// Keep segments that not every export destination holds yet
    /// (docs/export.md); with none recorded, drop nothing.
    #[arg(long)]
    pub exported_first: bool,
}

#[derive(Args, Debug)]
pub struct StatsArgs {}

pub(crate) fn instant_arg(name: &str, v: &Option<String>) -> Result<Option<Micros>, CliError> {
    v.as_deref()
        .map(|s| parse_instant(s).map_err(|e| CliError::usage(format!("--{name} {s:?}: {e}"))))
        .transpose()
}

fn now_micros() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as Micros)
}

pub(crate) fn open_reader(ctx: &Ctx) -> Result<LogReader, CliError> {
    Ok(LogReader::open(&ctx.dir()?)?)
}

/// A writer's configuration: checkpoint signing when `--signing-key` is
/// given (docs/proofs.md).
pub(crate) fn writer_config(ctx: &Ctx, dir: &Path) -> Result<Config, CliError> {
    let mut cfg = Config::new(dir);
    if let Some(path) = &ctx.signing_key {
        if auditlog::tlog::path_is_inside(path, dir) {
            return Err(CliError::usage(format!(
                "--signing-key {} is inside the log folder: keep the private key where whoever can write the log cannot read it",
                path.display()
            )));
        }
        let mut cp = auditlog::tree::CheckpointConfig::from_key_file(path)
            .map_err(|e| CliError::usage(format!("--signing-key: {e}")))?;
        cp.interval = humantime::parse_duration(&ctx.checkpoint_interval).map_err(|e| {
            CliError::usage(format!(
                "--checkpoint-interval {:?}: {e} (try 10s)",
                ctx.checkpoint_interval
            ))
        })?;
        cfg.checkpoints = Some(cp);
    }
    Ok(cfg)
}

fn open_writer_with(cfg: Config) -> Result<Log, CliError> {
    let log = Log::open(cfg)?;
    report_recovery(&log);
    Ok(log)
}

/// Say on stderr what opening for writing repaired.
fn report_recovery(log: &Log) {
    let r = log.recovery();
    if let Some(c) = &r.cut {
        eprintln!(
            "auditlog: recovered {}: a torn tail of {} bytes at offset {} was moved to {} (LSNs {}..{} skipped); the cut is recorded in the log",
            c.segment, c.quarantine_bytes, c.valid_end, c.quarantine, c.skip_from_lsn, c.skip_to_lsn
        );
    }
    if let Some(what) = &r.finished_pending {
        eprintln!("auditlog: finished an interrupted {what}");
    }
    if let Some(name) = &r.adopted {
        eprintln!("auditlog: {name} was sealed just before a crash; added to the MANIFEST");
    }
    for name in &r.removed_leftovers {
        eprintln!("auditlog: finished an interrupted retention: removed {name}");
    }
}

/// Where ingest reads from: a named file, or stdin (kept in a temporary
/// file under `--strict`, which reads its input twice).
enum Source {
    Path(PathBuf),
    Stdin,
    Spooled(File),
}

impl Source {
    fn new(name: &str, strict: bool) -> Result<Source, CliError> {
        if name != "-" {
            return Ok(Source::Path(PathBuf::from(name)));
        }
        if !strict {
            return Ok(Source::Stdin);
        }
        let mut tmp = tempfile::tempfile()
            .map_err(|e| CliError::failed(format!("creating a temporary file: {e}")))?;
        io::copy(&mut io::stdin().lock(), &mut tmp)
            .map_err(|e| CliError::failed(format!("reading stdin: {e}")))?;
        Ok(Source::Spooled(tmp))
    }

    /// Standard input, when it is what ingest reads: watched for quiet
    /// spells (regular files never are: they have no writer to wait for).
    fn watch_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match self {
            Source::Stdin => {
                let fd = io::stdin().as_raw_fd();
                let is_file = std::fs::File::open("/dev/stdin")
                    .and_then(|f| f.metadata())
                    .is_ok_and(|m| m.is_file());
                (!is_file).then_some(fd)
            }
            _ => None,
        }
    }

    /// A reader from the start, and the total size when known.
    fn open(&self) -> Result<(Box<dyn Read + Send>, Option<u64>), CliError> {
        match self {
            Source::Stdin => Ok((Box::new(io::stdin()), None)),
            Source::Path(p) => {
                let f = File::open(p)
                    .map_err(|e| CliError::failed(format!("cannot read {}: {e}", p.display())))?;
                let len = f.metadata().map(|m| m.len()).ok();
                Ok((Box::new(f), len))
            }
            Source::Spooled(f) => {
                use std::io::Seek;
                let mut f = f.try_clone()?;
                f.rewind()?;
                let len = f.metadata().map(|m| m.len()).ok();
                Ok((Box::new(f), len))
            }
        }
    }
}

/// A buffer of input: `buf[..len]` is the chunk. The whole of `buf` stays
/// initialised so a recycled buffer is read into without zeroing it again
/// (fresh multi-MiB buffers per chunk cost a page fault and a page clear
/// for every 4 KiB read).
struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Reads input in chunks that end on a line boundary, into buffers that
/// come back through `pool` once parsed.
struct Chunker<R: Read> {
    r: R,
    /// The start of a line cut by the previous chunk's end.
    carry: Vec<u8>,
    eof: bool,
    pool: crossbeam_channel::Receiver<Vec<u8>>,
    /// A pipe to watch: when it goes quiet, whole lines go on at once.
    watch: Option<std::os::fd::RawFd>,
}

impl<R: Read> Chunker<R> {
    /// Read until `c` holds `want` bytes or the input ends, or (a watched
    /// pipe) until it goes quiet while `c` holds a whole line.
    fn fill(&mut self, c: &mut Chunk, want: usize) -> io::Result<()> {
        if c.buf.len() < want {
            c.buf.resize(want, 0);
        }
        let mut has_line = c.bytes().contains(&b'\n');
        while !self.eof && c.len < want {
            if has_line && self.watch.is_some_and(|fd| quiet(fd, QUIET_PIPE)) {
                return Ok(());
            }
            match self.r.read(&mut c.buf[c.len..want]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    has_line = has_line || c.buf[c.len..c.len + n].contains(&b'\n');
                    c.len += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        let buf = self.pool.try_recv().unwrap_or_default();
        let mut c = Chunk { buf, len: 0 };
        let carried = self.carry.len();
        if c.buf.len() < carried.max(INGEST_CHUNK) {
            c.buf.resize(carried.max(INGEST_CHUNK), 0);
        }
        c.buf[..carried].copy_from_slice(&self.carry);
        c.len = carried;
        self.carry.clear();
        let mut want = INGEST_CHUNK.max(carried);
        loop {
            self.fill(&mut c, want)?;
            if self.eof {
                return Ok((c.len > 0).then_some(c));
            }
            // Full, or a quiet pipe: hand over the whole lines.
            if let Some(i) = c.bytes().iter().rposition(|&b| b == b'\n') {
                self.carry.extend_from_slice(&c.buf[i + 1..c.len]);
                c.len = i + 1;
                return Ok(Some(c));
            }
            // A line longer than a chunk: read to its end so line numbers
            // stay right (the parser refuses it as over the size limit),
            // but stop growing at a bound.
            if want >= MAX_LINE_SCAN {
                return Ok(Some(c));
            }
            want *= 2;
        }
    }
}

/// A parsed chunk: good events (encoded) and bad lines.
struct Parsed {
    batch: Option<EncodedBatch>,
    accepted: u64,
    /// Bad lines, numbered from 1 within the chunk (made absolute in
    /// input order by [`parse_input`]).
    bad: Vec<(u64, String)>,
    bytes: u64,
    /// Lines in the chunk (a last one without a newline counts).
    lines: u64,
}

/// The log's redaction policy, applied as events are encoded.
type Redaction = Option<Arc<RedactionPolicy>>;

/// A worker's buffers, kept from chunk to chunk.
#[derive(Default)]
struct Scratch {
    events: Vec<Event>,
    lines: Vec<u64>,
}

/// `encode`: encode the good events (with this redaction policy), or only
/// check them (`None`). Line numbers are counted from 1 in this chunk.
///
/// Without redaction each line is parsed into a view and encoded from it
/// ([`parse_chunk_viewed`]); with it, into owned events, which the policy
/// rewrites before they are encoded ([`parse_chunk_owned`]). Both check
/// every line with the same parser, so they accept and refuse the same
/// lines with the same errors.
fn parse_chunk(chunk: &[u8], encode: Option<&Redaction>, scratch: &mut Scratch) -> Parsed {
    match encode {
        Some(policy) if policy.as_ref().is_some_and(|p| !p.is_empty()) => {
            parse_chunk_owned(chunk, encode, scratch)
        }
        _ => parse_chunk_viewed(chunk, encode, scratch),
    }
}

/// [`parse_chunk`] without redaction: each line parsed into a view and
/// encoded from it (no owned `Event` per line), or only checked. A line
/// whose event fails to encode (over the size limit once encoded) is
/// refused on its own, named by its line number; the rest of the chunk is
/// stored.
fn parse_chunk_viewed(chunk: &[u8], encode: Option<&Redaction>, scratch: &mut Scratch) -> Parsed {
    let mut bad = Vec::new();
    let mut line_no = 0u64;
    // Encoded bodies are shorter than their lines (no keys): the chunk's
    // size is room enough, so the frames are not copied as they grow.
    let mut batch = encode.map(|_| ViewBatch::with_capacity(chunk.len() / 128 + 16, chunk.len()));
    let mut accepted = 0u64;
    for raw in crate::lines::lines(chunk) {
        line_no += 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let pushed = with_parsed_event(line, |ev| match &mut batch {
            // A refused push leaves the batch as it was.
            Some(b) => b.push(ev).map_err(|e| not_encoded(&e)),
            None => Ok(()),
        });
        match pushed {
            Ok(Ok(())) => accepted += 1,
            Ok(Err(why)) => bad.push((line_no, why)),
            Err(e) => bad.push((line_no, e.to_string())),
        }
    }
    // `lines` yields one piece after a final newline: not a line.
    let n_lines = line_no - u64::from(chunk.last() == Some(&b'\n'));
    let policy = encode.and_then(|p| p.as_ref());
    let mut batch = match batch.filter(|b| !b.is_empty()).map(|b| b.finish(policy)) {
        None => None,
        Some(Ok(b)) => Some(b),
        // Not reached: a non-empty policy takes the owned path.
        Some(Err(_)) => return parse_chunk_owned(chunk, encode, scratch),
    };
    // The Merkle leaves are hashed here, on the parsing worker: left to
    // the append they would all be hashed on the one thread that appends.
    if let Some(b) = &mut batch {
        b.hash_leaves();
    }
    Parsed {
        batch,
        accepted,
        bad,
        bytes: chunk.len() as u64,
        lines: n_lines,
    }
}

/// [`parse_chunk`] with owned events: a redaction policy rewrites them
/// before they are encoded.
fn parse_chunk_owned(chunk: &[u8], encode: Option<&Redaction>, scratch: &mut Scratch) -> Parsed {
    let Scratch { events, lines } = scratch;
    events.clear();
    lines.clear();
    let mut bad = Vec::new();
    let mut line_no = 0u64;
    for raw in crate::lines::lines(chunk) {
        line_no += 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match parse_event(line) {
            Ok(ev) => {
                events.push(ev);
                lines.push(line_no);
            }
            Err(e) => bad.push((line_no, e.to_string())),
        }
    }
    // `lines` yields one piece after a final newline: not a line.
    let n_lines = line_no - u64::from(chunk.last() == Some(&b'\n'));
    let bytes = chunk.len() as u64;
    let mut batch = None;
    let mut accepted = events.len() as u64;
    if let Some(policy) = encode.filter(|_| !events.is_empty()) {
        match EncodedBatch::encode_parsed(events, policy.as_ref()) {
            Ok(b) => batch = Some(b),
            Err(auditlog::Error::InvalidEvent { index, source }) => {
                // Rare (a redaction made an event invalid): drop that line
                // and encode the rest.
                bad.push((lines[index], source.to_string()));
                events.remove(index);
                lines.remove(index);
                let rest = encode_one_by_one(events, lines, policy, &mut bad);
                batch = rest.0;
                accepted = rest.1;
            }
            Err(_) => {
                // An event over the size limit once encoded: refuse that
                // line alone (each event is tried on its own), not the
                // good lines beside it in the chunk.
                let rest = encode_one_by_one(events, lines, policy, &mut bad);
                batch = rest.0;
                accepted = rest.1;
            }
        }
    }
    // The Merkle leaves are hashed here, on the parsing worker: left to
    // the append they would all be hashed on the one thread that appends.
    if let Some(b) = &mut batch {
        b.hash_leaves();
    }
    events.clear();
    Parsed {
        batch,
        accepted,
        bad,
        bytes,
        lines: n_lines,
    }
}

/// Why a line's event could not be encoded, without the event's index in
/// its batch (the report names the line).
fn not_encoded(e: &auditlog::Error) -> String {
    match e {
        auditlog::Error::EventTooLarge { bytes, max, .. } => {
            format!("could not be encoded: the event encodes to {bytes} bytes; the limit is {max}")
        }
        auditlog::Error::InvalidEvent { source, .. } => format!("could not be encoded: {source}"),
        other => format!("could not be encoded: {other}"),
    }
}

/// Encode events one at a time, reporting those that fail.
fn encode_one_by_one(
    events: &[Event],
    lines: &[u64],
    policy: &Redaction,
    bad: &mut Vec<(u64, String)>,
) -> (Option<EncodedBatch>, u64) {
    let mut good = Vec::with_capacity(events.len());
    for (ev, &line) in events.iter().zip(lines) {
        match EncodedBatch::encode_parsed(std::slice::from_ref(ev), policy.as_ref()) {
            Ok(_) => good.push(ev.clone()),
            Err(auditlog::Error::InvalidEvent { source, .. }) => {
                bad.push((line, source.to_string()))
            }
            Err(e) => bad.push((line, not_encoded(&e))),
        }
    }
    let n = good.len() as u64;
    (
        EncodedBatch::encode_parsed(&good, policy.as_ref())
            .ok()
            .filter(|b| !b.is_empty()),
        n,
    )
}

/// Parse the input on worker threads, hand the results over in input order
/// (with absolute line numbers). `nice`: the priority of the reader and
/// the workers, if lower than the caller's (`sched::PARSE_NICE` while an
/// index builder runs beside them).
fn parse_input(
    input: Box<dyn Read + Send>,
    watch: Option<std::os::fd::RawFd>,
    encode: Option<Redaction>,
    nice: Option<i32>,
    mut sink: impl FnMut(Parsed) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let lower = move || {
        if let Some(n) = nice {
            crate::sched::lower_this_thread(n);
        }
    };
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let (chunk_tx, chunk_rx) =
        crossbeam_channel::bounded::<(Chunk, crossbeam_channel::Sender<Parsed>)>(workers * 2);
    let (order_tx, order_rx) =
        crossbeam_channel::bounded::<crossbeam_channel::Receiver<Parsed>>(workers * 2);
    // Parsed chunks' buffers go back to the reader.
    let (pool_tx, pool_rx) = crossbeam_channel::unbounded::<Vec<u8>>();
    std::thread::scope(|scope| -> Result<(), CliError> {
        let reader = scope.spawn(move || -> io::Result<()> {
            lower();
            let mut ch = Chunker {
                r: input,
                carry: Vec::new(),
                eof: false,
                pool: pool_rx,
                watch,
            };
            while let Some(chunk) = ch.next_chunk()? {
                let (tx, rx) = crossbeam_channel::bounded(1);
                if order_tx.send(rx).is_err() || chunk_tx.send((chunk, tx)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        for _ in 0..workers {
            let rx = chunk_rx.clone();
            let encode = encode.clone();
            let pool = pool_tx.clone();
            scope.spawn(move || {
                lower();
                let mut scratch = Scratch::default();
                for (chunk, tx) in rx {
                    let parsed = parse_chunk(chunk.bytes(), encode.as_ref(), &mut scratch);
                    let _ = pool.send(chunk.buf);
                    let _ = tx.send(parsed);
                }
            });
        }
        drop(chunk_rx);
        drop(pool_tx);
        let mut result = Ok(());
        let mut line_base = 0u64;
        for rx in order_rx {
            let Ok(mut parsed) = rx.recv() else { break };
            for (line, _) in &mut parsed.bad {
                *line += line_base;
            }
            line_base += parsed.lines;
            if result.is_ok() {
                result = sink(parsed);
            }
        }
        let read = reader
            .join()
            .map_err(|_| CliError::failed("input reader panicked"))?;
        read.map_err(|e| CliError::failed(format!("reading input: {e}")))?;
        result
    })
}

struct Tally {
    accepted: u64,
    rejected: u64,
    bytes: u64,
    reported: u64,
}

impl Tally {
    fn report_bad(&mut self, name: &str, bad: &[(u64, String)]) {
        for (line, msg) in bad {
            self.rejected += 1;
            if self.reported < MAX_REPORTED_BAD_LINES {
                eprintln!("auditlog: {name}: line {line}: {msg}");
                self.reported += 1;
            }
        }
    }
}

pub fn ingest(ctx: &Ctx, a: IngestArgs) -> CliResult {
    let dir = ctx.dir()?;
    crate::memory::no_huge_pages();
    // The parse workers' encoded batches, the index builders' tables and
    // each image's bytes are freed and allocated again all through the
    // run: kept, they are reused instead of faulted in afresh (docs/
    // benchmarks.md, "Ingest, cli39 round").
    crate::memory::keep_freed_pages();
    let name = if a.file == "-" {
        "stdin".to_string()
    } else {
        a.file.clone()
    };
    let started = Instant::now();
    let redaction = match &a.redact {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::failed(format!("cannot read --redact {}: {e}", path.display()))
            })?;
            let policy = RedactionPolicy::parse(&text)
                .map_err(|e| CliError::usage(format!("--redact {}: {e}", path.display())))?;
            Some(Arc::new(policy))
        }
        None => match a.redact_preset.as_deref() {
            Some("none") => Some(Arc::new(RedactionPolicy::new())),
            Some(name) => {
                Some(Arc::new(RedactionPolicy::preset(name).map_err(|e| {
                    CliError::usage(format!("--redact-preset: {e}"))
                })?))
            }
            None => None,
        },
    };
    let source = Source::new(&a.file, a.strict)?;
    if a.strict {
        // First pass: only parse. Nothing is opened for writing until the
        // whole input is known to be good.
        let (input, total) = source.open()?;
        let pb = progress(total, "checking", Counts::Bytes);
        let mut t = Tally {
            accepted: 0,
            rejected: 0,
            bytes: 0,
            reported: 0,
        };
        // Nothing else runs meanwhile: the caller's priority.
        parse_input(input, None, None, None, |p| {
            pb.inc(p.bytes);
            t.report_bad(&name, &p.bad);
            Ok(())
        })?;
        pb.finish_and_clear();
        if t.rejected > 0 {
            summary(&mut Out::new(), 0, t.rejected, 0, started, None)?;
            return Err(CliError::failed(format!(
                "--strict: {} bad line(s) in {name}; nothing was stored",
                t.rejected
            )));
        }
    }
    let (input, total) = source.open()?;
    let watch = source.watch_fd();
    ingest_pass(ctx, &dir, &name, (input, watch), total, started, redaction)
}

fn ingest_pass(
    ctx: &Ctx,
    dir: &Path,
    name: &str,
    (input, watch): (Box<dyn Read + Send>, Option<std::os::fd::RawFd>),
    total: Option<u64>,
    started: Instant,
    redaction: Redaction,
) -> CliResult {
    // Sealed segments are indexed as they seal, on a thread of their own.
    let mut cfg = writer_config(ctx, dir)?;
    cfg.redaction = redaction.clone();
    let on_seal = IndexOnSeal::hook(&mut cfg);
    let log = open_writer_with(cfg)?;
    // The policy in force: the one given, or the one the log recorded.
    let redaction = log.redaction().cloned();
    // Every line is checked against the contract before it is appended
    // (`parse_input`): the index builds need not run those rules again.
    // And nothing here reads a segment again once it is indexed: its
    // pages go back to the kernel for the next segment's writes
    // (docs/benchmarks.md, "Round seventeen").
    let indexer = on_seal.start_bulk_load(&log)?;
    let pb = progress(total, "ingesting", Counts::Bytes);
    let mut t = Tally {
        accepted: 0,
        rejected: 0,
        bytes: 0,
        reported: 0,
    };
    let mut first_lsn = None;
    let mut receipts = Vec::new();
    // A file's parse goes behind the index builder, which the command
    // waits for at its end anyway: the builder then keeps up with the seals
    // instead of building most images after the parse, on one core
    // (docs/benchmarks.md, "Ingest, cli42 round"). A watched pipe keeps the
    // caller's priority: each line is stored within ms of its arrival,
    // and a trickle of lines leaves the builder idle CPU anyway.
    let nice = watch.is_none().then_some(crate::sched::PARSE_NICE);
    parse_input(input, watch, Some(redaction), nice, |p| {
        pb.inc(p.bytes);
        t.bytes += p.bytes;
        t.report_bad(name, &p.bad);
        if let Some(batch) = p.batch {
            let r = log.append_encoded(batch)?;
            t.accepted += p.accepted;
            receipts.push(r);
            // Keep the number of receipts held small.
            if receipts.len() > 64 {
                let r0 = receipts.remove(0);
                let range = r0.wait()?;
                first_lsn.get_or_insert(range.first);
            }
        }
        Ok(())
    })?;
    for r in receipts {
        let range = r.wait()?;
        first_lsn.get_or_insert(range.first);
    }
    // Whatever the policy, everything accepted is durable before we say so.
    let head = log.flush()?;
    pb.set_message("indexing");
    // The indexes are derived data: what was stored stays stored. But a
    // log that cannot be indexed cannot be read either: say so, and fail.
    let indexed = indexer.finish();
    pb.finish_and_clear();
    log.close()?;
    let lsns = first_lsn.map(|f| (f, head.saturating_sub(1)));
    summary(
        &mut Out::new(),
        t.accepted,
        t.rejected,
        t.bytes,
        started,
        lsns,
    )?;
    if t.rejected > 0 {
        eprintln!(
            "auditlog: {name}: {} bad line(s) skipped, {} events stored",
            t.rejected, t.accepted
        );
    }
    if let Err(e) = indexed {
        return Err(CliError::failed(format!(
            "the {} events are stored, but the log cannot be indexed (so it cannot be read): {e}",
            t.accepted
        )));
    }
    Ok(())
}

fn summary(
    out: &mut Out,
    accepted: u64,
    rejected: u64,
    bytes: u64,
    started: Instant,
    lsns: Option<(u64, u64)>,
) -> CliResult {
    let secs = started.elapsed().as_secs_f64();
    let mut s = format!(
        "{{\"accepted\":{accepted},\"rejected\":{rejected},\"bytes\":{bytes},\"seconds\":{secs:.6},\"events_per_sec\":{:.0}",
        accepted as f64 / secs.max(1e-9)
    );
    if let Some((f, l)) = lsns {
        s.push_str(&format!(",\"first_lsn\":{f},\"last_lsn\":{l}"));
    }
    s.push('}');
    out.line(&s)?;
    out.flush()
}

fn event_row(lsn: u64, ev: &Event) -> Vec<String> {
    vec![
        lsn.to_string(),
        to_rfc3339(ev.ts),
        ev.data.kind().to_string(),
        ev.run_id.clone(),
    ]
}

fn print_events(
    ctx: &Ctx,
    out: &mut Out,
    events: impl Iterator<Item = auditlog::Result<(u64, Event)>>,
) -> CliResult {
    let mut line = String::with_capacity(512);
    let mut rows = Vec::new();
    for item in events {
        let (lsn, ev) = item?;
        match ctx.format {
            Format::Json => {
                line.clear();
                write_event(&ev, Some(lsn), &mut line);
                out.line(&line)?;
            }
            Format::Table => rows.push(event_row(lsn, &ev)),
        }
    }
    if ctx.format == Format::Table {
        out.line(table(&["lsn", "ts", "kind", "run_id"], &rows).trim_end())?;
    }
    out.flush()
}

pub fn replay(ctx: &Ctx, a: ReplayArgs) -> CliResult {
    let reader = open_reader(ctx)?;
    let range = ReplayRange {
        from_lsn: a.from_lsn,
        since: instant_arg("since", &a.since)?,
        until: instant_arg("until", &a.until)?,
    };
    let threads = match a.threads {
        None => ReplayThreads::Auto,
        Some(0) => ReplayThreads::None,
        Some(n) => ReplayThreads::Decoders(n),
    };
    print_events(ctx, &mut Out::new(), reader.replay_with(range, threads))
}

pub fn tail(ctx: &Ctx, a: TailArgs) -> CliResult {
    let mut reader = open_reader(ctx)?;
    let head = reader.head().next_lsn;
    let from = head.saturating_sub(a.lines).max(reader.first_lsn());
    let mut out = Out::new();
    let range = |from| ReplayRange {
        from_lsn: Some(from),
        ..ReplayRange::default()
    };
    print_events(ctx, &mut out, reader.replay(range(from)))?;
    if !a.follow {
        return Ok(());
    }
    let mut next = head;
    loop {
        let h = reader.wait_beyond(next.saturating_sub(1).max(next), Duration::from_millis(500))?;
        if h.next_lsn > next {
            print_events(ctx, &mut out, reader.replay(range(next)))?;
            next = h.next_lsn;
        }
    }
}

/// `,"redaction":{"in_force":NAME|null,"policies":[{since_lsn, since,
/// name, fingerprint, keyed}]}` for verify's line.
fn redaction_json(recs: &[auditlog::PolicyRecord]) -> String {
    use auditlog::event::json::json_string;
    let mut s = String::from(",\"redaction\":{\"in_force\":");
    match recs.last() {
        Some(r) if r.name != "none" => json_string(&r.name, &mut s),
        _ => s.push_str("null"),
    }
    s.push_str(",\"policies\":[");
    for (i, r) in recs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("{{\"since_lsn\":{},\"since\":\"", r.since_lsn));
        s.push_str(&to_rfc3339(r.since_ts));
        s.push_str("\",\"name\":");
        json_string(&r.name, &mut s);
        s.push_str(",\"fingerprint\":");
        json_string(&r.fingerprint, &mut s);
        s.push_str(&format!(",\"keyed\":{}}}", r.keyed));
    }
    s.push_str("]}");
    s
}

pub fn verify(ctx: &Ctx, a: VerifyArgs) -> CliResult {
    let dir = ctx.dir()?;
    let expect = match &a.expect {
        Some(h) => Some(Digest::from_hex(h).ok_or_else(|| {
            CliError::usage(format!("--expect {h:?} is not a 64-digit hex digest"))
        })?),
        None => None,
    };
    let pb = progress(None, "verifying", Counts::Bytes);
    let key = a
        .key
        .as_deref()
        .map(super::proof_cmds::verifier_key_arg)
        .transpose()?;
    let opts = auditlog::VerifyOptions {
        expect,
        deep: a.deep,
        read_only: false,
        key,
        allow_unsigned_tail: a.allow_unsigned_tail,
    };
    let result = auditlog::verify_with(&dir, &opts, |done, total| {
        pb.set_length(total);
        pb.set_position(done);
    });
    pb.finish_and_clear();
    let mut out = Out::new();
    match result {
        Ok(r) => {
            out.line(&verify_json(&r, expect))?;
            out.flush()?;
            if expect.is_some() && r.expect_found_at.is_none() {
                return Err(CliError::failed(format!(
                    "the expected digest {} does not appear in the chain: the log was changed (or retention dropped that part)",
                    a.expect.unwrap_or_default()
                )));
            }
            Ok(())
        }
        Err(e) => {
            if let auditlog::Error::Corrupt {
                segment,
                offset,
                reason,
            } = &e
            {
                let mut s = String::from("{\"ok\":false,\"segment\":");
                auditlog::event::json::json_string(segment, &mut s);
                s.push_str(&format!(",\"offset\":{offset},\"reason\":"));
                auditlog::event::json::json_string(reason, &mut s);
                s.push('}');
                out.line(&s)?;
                out.flush()?;
            }
            Err(CliError::from(e))
        }
    }
}

fn verify_json(r: &auditlog::VerifyReport, expect: Option<Digest>) -> String {
    let mut s = format!(
        "{{\"ok\":{},\"segments\":{},\"events\":{},\"bytes\":{},\"first_lsn\":{},\"head_lsn\":{},\"head_digest\":\"{}\",\"uncommitted_tail_bytes\":{}",
        expect.is_none() || r.expect_found_at.is_some(),
        r.segments, r.events, r.bytes, r.first_lsn, r.head_lsn, r.head_digest, r.uncommitted_tail_bytes
    );
    s.push_str(&format!(
        ",\"system_events\":{{\"torn_tail_cuts\":{},\"repairs\":{},\"retentions\":{}}},\"indexes_checked\":{}",
        r.cuts, r.repairs, r.retentions, r.indexes_checked
    ));
    s.push_str(&redaction_json(&r.redaction));
    if let Some(seq) = r.unlisted_newest {
        s.push_str(&format!(",\"unlisted_newest\":{seq}"));
    }
    s.push_str(&format!(",\"checkpoints\":{}", r.checkpoints));
    if let Some(t) = &r.tree {
        s.push_str(&format!(
            ",\"tree\":{{\"size\":{},\"root\":\"{}\",\"checkpoints_verified\":{},\"newest_checkpoint\":{},\"unsigned_events\":{},\"retentions_verified\":{},\"tree_files_rebuilt\":{}}}",
            t.tree_size,
            t.root.to_hex(),
            t.checkpoints_verified,
            t.newest_checkpoint.map_or("null".to_string(), |n| n.to_string()),
            t.unsigned_events,
            t.retentions_verified,
            t.tree_files_rebuilt
        ));
    }
    if let Some(p) = &r.pending {
        s.push_str(&format!(",\"pending\":\"{p}\""));
    }
    if let Some(d) = expect {
        match r.expect_found_at {
            Some(l) => s.push_str(&format!(
                ",\"expect\":{{\"digest\":\"{d}\",\"found_at_lsn\":{l}}}"
            )),
            None => s.push_str(&format!(
                ",\"expect\":{{\"digest\":\"{d}\",\"found_at_lsn\":null}}"
            )),
        }
    }
    s.push('}');
    s
}

/// `auditlog repair`: move damage in the newest segment into quarantine/
/// and start a new segment (docs/integrity.md).
pub fn repair(ctx: &Ctx, _a: RepairArgs) -> CliResult {
    let dir = ctx.dir()?;
    if !dir.exists() {
        return Err(auditlog::Error::NoLog(dir).into());
    }
    let report = auditlog::repair(&dir)?;
    let (what, cut) = match &report {
        auditlog::RepairReport::Clean => ("nothing to repair", None),
        auditlog::RepairReport::TornTailCut(c) => ("torn_tail_cut", Some(c)),
        auditlog::RepairReport::Repaired(c) => ("repair", Some(c)),
    };
    let mut s = format!("{{\"done\":\"{what}\"");
    if let Some(c) = cut {
        // The record's fields, as `replay` shows them.
        let body = serde_json::to_string(c).map_err(|e| CliError::failed(e.to_string()))?;
        s.push(',');
        s.push_str(&body[1..body.len() - 1]);
    }
    s.push('}');
    let mut out = Out::new();
    out.line(&s)?;
    out.flush()
}

pub fn retain(ctx: &Ctx, a: RetainArgs) -> CliResult {
    let dir = ctx.dir()?;
    let cutoff = match (&a.older_than, &a.before) {
        (Some(d), _) => {
            let dur = humantime::parse_duration(d).map_err(|e| {
                CliError::usage(format!("--older-than {d:?}: {e} (try 30d or 12h)"))
            })?;
            now_micros() - dur.as_micros().min(i64::MAX as u128) as i64
        }
        (None, b) => instant_arg("before", b)?
            .ok_or_else(|| CliError::usage("give --older-than or --before"))?,
    };
    if !dir.exists() {
        return Err(auditlog::Error::NoLog(dir).into());
    }
    // Through the store: runs still running (or finishing after the
    // cutoff) whose start is in a dropped segment are carried forward
    // first (docs/queries.md, "Retention"). With a signing key, the
    // retention's frontier is signed (docs/proofs.md).
    let mut sc = StoreConfig::new(&dir).create(false);
    sc.log.checkpoints = writer_config(ctx, &dir)?.checkpoints;
    let store = AuditStore::open(sc)?;
    report_recovery(&store.log());
    let opts = auditlog::RetainOptions {
        exported_first: a.exported_first,
        ..auditlog::RetainOptions::default()
    };
    let r = store.retain_with(cutoff, opts)?;
    store.close()?;
    let mut s = String::from("{\"cutoff\":\"");
    s.push_str(&to_rfc3339(cutoff));
    s.push_str("\",\"dropped_segments\":[");
    for (i, d) in r.dropped.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"segment\":\"{}\",\"first_lsn\":{},\"events\":{},\"bytes\":{},\"newest\":\"{}\"}}",
            d.name,
            d.first_lsn,
            d.count,
            d.bytes,
            to_rfc3339(d.max_ts)
        ));
    }
    s.push_str(&format!(
        "],\"dropped_events\":{},\"dropped_bytes\":{},\"first_kept_lsn\":{},\"carried_runs\":{},\"carried_events\":{},\"dropped_runs\":{}",
        r.events(),
        r.bytes(),
        r.first_kept_lsn,
        r.carried_runs,
        r.carried_events,
        r.dropped_runs.unwrap_or(0)
    ));
    if a.exported_first {
        let held: Vec<String> = r
            .held_for_export
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect();
        s.push_str(&format!(",\"held_for_export\":[{}]", held.join(",")));
    }
    s.push('}');
    let mut out = Out::new();
    out.line(&s)?;
    out.flush()
}

pub fn stats(ctx: &Ctx, _a: StatsArgs) -> CliResult {
    let reader = open_reader(ctx)?;
    let st = reader.stats()?;
    let ts = |t: Option<Micros>| t.map_or("null".to_string(), |t| format!("\"{}\"", to_rfc3339(t)));
    let mut s = format!(
        "{{\"segments\":{},\"sealed_segments\":{},\"events\":{},\"bytes\":{},\"first_lsn\":{},\"head_lsn\":{},\"head_digest\":\"{}\",\"oldest_ts\":{},\"newest_ts\":{},\"dropped_segments\":{},\"dropped_events\":{}",
        st.segments,
        st.sealed_segments,
        st.events,
        st.bytes,
        st.first_lsn,
        st.head_lsn,
        st.head_digest,
        ts(st.oldest_ts),
        ts(st.newest_ts),
        st.dropped_segments,
        st.dropped_events,
    );
    s.push_str(",\"redaction\":");
    match &st.redaction {
        Some(name) => auditlog::event::json::json_string(name, &mut s),
        None => s.push_str("null"),
    }
    for (key, value) in super::stats_extras(&reader, st.events)? {
        s.push_str(&format!(",\"{key}\":{value}"));
    }
    s.push('}');
    let mut out = Out::new();
    match ctx.format {
        Format::Json => out.line(&s)?,
        Format::Table => {
            out.line(table(&["stat", "value"], &object_rows(&s)?).trim_end())?;
        }
    }
    out.flush()
}
