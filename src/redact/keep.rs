//! Keep-only redaction: the policy lists what may be stored of an event's
//! content (keys of `inputs` and `payload`, unknown top-level fields, free
//! text such as `output`); everything else is dropped, or replaced by its
//! hash and size, before the event is encoded. What nobody thought of
//! naming (a new `response_body` key) never reaches the disk.
//!
//! Which fields are content is fixed here ([`JSON_CONTENT`],
//! [`TEXT_CONTENT`], and every unknown top-level field); ids, names,
//! statuses, timestamps and numbers are metadata and always kept.

use serde_json::{Map, Value};

use super::{Action, Step};

/// JSON fields whose keys a keep-only policy filters (besides unknown
/// top-level fields, which are filtered whole or by key alike).
pub(crate) const JSON_CONTENT: &[&str] = &["inputs", "payload"];
/// Free-text fields: kept only when named (`keep output`).
pub(crate) const TEXT_CONTENT: &[&str] = &["output", "error", "args_summary"];

/// One `keep` path: a field, then steps below it (empty: the whole field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeepPath {
    pub field: String,
    pub rest: Vec<Step>,
}

/// The keep-only part of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeepOnly {
    pub paths: Vec<KeepPath>,
    /// What happens to content nobody kept.
    pub others: Action,
}

impl KeepOnly {
    pub fn new() -> KeepOnly {
        KeepOnly {
            paths: Vec::new(),
            others: Action::Drop,
        }
    }

    /// The step lists kept below `field` (an empty list: the field whole).
    pub fn paths_for(&self, field: &str) -> Vec<&[Step]> {
        self.paths
            .iter()
            .filter(|p| p.field == field)
            .map(|p| p.rest.as_slice())
            .collect()
    }

    pub fn keeps_whole(&self, field: &str) -> bool {
        self.paths
            .iter()
            .any(|p| p.field == field && p.rest.is_empty())
    }
}

/// Hashes a value's bytes into a marker (`{"redacted":..,"bytes":N}`).
pub(crate) type Marker<'a> = &'a dyn Fn(&[u8]) -> Value;

/// What a hash covers: a string's UTF-8 text, any other value's compact
/// JSON text.
pub(crate) fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// `v` filtered to the kept `paths`: `None` when nothing of it is kept
/// and others are dropped; the flag says whether anything changed.
pub(crate) fn filter(
    v: Value,
    paths: &[&[Step]],
    others: Action,
    marker: Marker<'_>,
) -> (Option<Value>, bool) {
    if paths.iter().any(|p| p.is_empty()) {
        return (Some(v), false);
    }
    let not_kept = |x: &Value| match others {
        Action::Drop => None,
        Action::Hash => Some(marker(&value_bytes(x))),
    };
    match v {
        Value::Object(map) => {
            let mut out = Map::new();
            let mut changed = false;
            for (key, x) in map {
                let sub = below(paths, |k| k == key.as_str());
                if sub.is_empty() {
                    changed = true;
                    if let Some(m) = not_kept(&x) {
                        out.insert(key, m);
                    }
                    continue;
                }
                let (kept, c) = filter(x, &sub, others, marker);
                changed |= c;
                if let Some(k) = kept {
                    out.insert(key, k);
                }
            }
            (Some(Value::Object(out)), changed)
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            let mut changed = false;
            for (i, x) in items.into_iter().enumerate() {
                let index = i.to_string();
                let sub = below(paths, |k| k == index);
                if sub.is_empty() {
                    changed = true;
                    if let Some(m) = not_kept(&x) {
                        out.push(m);
                    }
                    continue;
                }
                let (kept, c) = filter(x, &sub, others, marker);
                changed |= c;
                if let Some(k) = kept {
                    out.push(k);
                }
            }
            (Some(Value::Array(out)), changed)
        }
        // Every path goes deeper than a scalar has: it is not kept.
        scalar => (not_kept(&scalar), true),
    }
}

/// The remaining steps of the paths whose first step matches a key.
fn below<'p>(paths: &[&'p [Step]], matches: impl Fn(&str) -> bool) -> Vec<&'p [Step]> {
    paths
        .iter()
        .filter_map(|p| match p.split_first() {
            Some((Step::Any, rest)) => Some(rest),
            Some((Step::Key(k), rest)) if matches(k) => Some(rest),
            _ => None,
        })
        .collect()
}
