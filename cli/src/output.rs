//! Writing answers: the shared terminal helpers, plus the list and record
//! shapes of this command line's answers.

pub use auditlog_terminal::{progress, table, Counts, Out};

use super::{CliError, Format};

/// A list answer: one JSON line per item, or one table for people.
pub fn emit_list<T>(
    format: Format,
    items: &[T],
    to_json: impl Fn(&T) -> String,
    headers: &[&str],
    to_row: impl Fn(&T) -> Vec<String>,
) -> Result<(), CliError> {
    let mut out = Out::new();
    match format {
        Format::Json => {
            for item in items {
                out.line(&to_json(item))?;
            }
        }
        Format::Table => {
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

/// A progress callback for index builds that draws one bar per segment on
/// stderr; `None` when stderr is not a terminal (pipes and logs stay clean).
pub fn index_progress() -> Option<auditlog::query::ProgressFn> {
    use std::sync::{Arc, Mutex};
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let current: Mutex<Option<(String, auditlog_terminal::ProgressBar)>> = Mutex::new(None);
    Some(Arc::new(move |segment: &str, done: u64, total: u64| {
        let mut slot = current.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().map(|(name, _)| name.as_str()) != Some(segment) {
            if let Some((_, old)) = slot.take() {
                old.finish_and_clear();
            }
            let bar = progress(Some(total), &format!("indexing {segment}"), Counts::Bytes);
            *slot = Some((segment.to_string(), bar));
        }
        if let Some((_, bar)) = slot.as_ref() {
            bar.set_position(done);
            if done >= total {
                bar.finish_and_clear();
            }
        }
    }))
}
