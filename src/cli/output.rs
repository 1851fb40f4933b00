//! Writing answers: JSON lines on stdout (a closed pipe ends quietly), and
//! tables for people with every control character escaped.

use std::io::{self, BufWriter, Write};

use indicatif::{ProgressBar, ProgressStyle};

use super::CliError;

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

/// A list answer: one JSON line per item, or one table for people.
pub fn emit_list<T>(
    format: super::Format,
    items: &[T],
    to_json: impl Fn(&T) -> String,
    headers: &[&str],
    to_row: impl Fn(&T) -> Vec<String>,
) -> Result<(), CliError> {
    let mut out = Out::new();
    match format {
        super::Format::Json => {
            for item in items {
                out.line(&to_json(item))?;
            }
        }
        super::Format::Table => {
            let rows: Vec<Vec<String>> = items.iter().map(to_row).collect();
            out.line(table(headers, &rows).trim_end())?;
        }
    }
    out.flush()
}

/// The key/value rows of a JSON object, for a one-record table (strings
/// shown without their quotes).
pub fn object_rows(json: &str) -> Result<Vec<Vec<String>>, CliError> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| CliError::failed(e.to_string()))?;
    Ok(v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    vec![k.clone(), v]
                })
                .collect()
        })
        .unwrap_or_default())
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
