//! Terminal output shared by the `auditlog` command line and the load run:
//! JSON lines on stdout (a closed pipe ends quietly), tables for people with
//! every control character escaped, progress bars on stderr, and the error a
//! command shows the person at the terminal with its exit status.
//!
//! The engine crate knows nothing of terminals; this crate is where that
//! knowledge lives.

use std::io::{self, BufWriter, Write};

pub use indicatif::ProgressBar;
use indicatif::ProgressStyle;

/// An error for the person at the terminal, with the exit status to use
/// (0 means "end quietly", as after a closed pipe).
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: i32,
}

impl CliError {
    /// A mistake in the command's arguments (exit status 2).
    pub fn usage(msg: impl Into<String>) -> CliError {
        CliError {
            message: msg.into(),
            code: 2,
        }
    }
    /// The command ran and failed (exit status 1).
    pub fn failed(msg: impl Into<String>) -> CliError {
        CliError {
            message: msg.into(),
            code: 1,
        }
    }
}

/// A library error as the person at the terminal should see it, with a
/// hint on what to do next.
impl From<auditlog::Error> for CliError {
    fn from(e: auditlog::Error) -> CliError {
        use auditlog::Error;
        let hint = match &e {
            Error::Corrupt { .. } => "\nhint: run `auditlog verify` for a full check; do not edit segment files by hand",
            Error::Locked { .. } => "\nhint: stop the other writer, or use a read-only command",
            Error::WriterFailed(_) => "\nhint: fix the cause (disk space, permissions), then run the command again; recovery is automatic on open",
            _ => "",
        };
        CliError::failed(format!("{e}{hint}"))
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        CliError::failed(e.to_string())
    }
}

/// What a command returns.
pub type CliResult = Result<(), CliError>;

/// Buffered stdout that treats a closed pipe (`| head`) as a normal end.
pub struct Out {
    w: BufWriter<io::StdoutLock<'static>>,
}

impl Out {
    pub fn new() -> Out {
        Out {
            w: BufWriter::with_capacity(1 << 16, io::stdout().lock()),
        }
    }

    pub fn line(&mut self, s: &str) -> Result<(), CliError> {
        self.w
            .write_all(s.as_bytes())
            .and_then(|_| self.w.write_all(b"\n"))
            .map_err(pipe_error)
    }

    pub fn flush(&mut self) -> Result<(), CliError> {
        self.w.flush().map_err(pipe_error)
    }
}

impl Default for Out {
    fn default() -> Self {
        Out::new()
    }
}

fn pipe_error(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CliError {
            message: String::new(),
            code: 0,
        }
    } else {
        CliError::failed(format!("writing output: {e}"))
    }
}

/// Make a value safe to show in a terminal: control characters (ANSI
/// escapes, newlines) become visible escapes instead of acting.
pub fn escape_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A plain text table: header row, then rows, columns padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escape_cell(c)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: Vec<&str>| {
        let line: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    };
    push_row(headers.to_vec());
    for r in &rows {
        push_row(r.iter().map(|s| s.as_str()).collect());
    }
    out
}

/// What a progress bar counts.
#[derive(Clone, Copy)]
pub enum Counts {
    Bytes,
    /// Things, named in the bar (e.g. "events").
    Items(&'static str),
}

/// A progress bar on stderr for long work, hidden unless stderr is a
/// terminal (so pipes and logs stay clean); a spinner when the total is
/// unknown.
pub fn progress(total: Option<u64>, label: &str, counts: Counts) -> ProgressBar {
    if !io::IsTerminal::is_terminal(&io::stderr()) {
        return ProgressBar::hidden();
    }
    let pb = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    let tmpl = match (total, counts) {
        (Some(_), Counts::Bytes) => {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}".to_string()
        }
        (None, Counts::Bytes) => "{msg} {spinner} {bytes} {bytes_per_sec}".to_string(),
        (Some(_), Counts::Items(what)) => {
            format!("{{msg}} [{{bar:30}}] {{pos}}/{{len}} {what} {{per_sec}} eta {{eta}}")
        }
        (None, Counts::Items(what)) => format!("{{msg}} {{spinner}} {{pos}} {what} {{per_sec}}"),
    };
    if let Ok(style) = ProgressStyle::with_template(&tmpl) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(label.to_string());
    pb
}
