//! Redaction: named event fields are dropped, or replaced by a hash and a
//! size, before an event is encoded, so the secret never reaches a segment,
//! an index or the full-text index (they are all built from the log).
//!
//! A policy is a list of rules, each a field path and an action:
//!
//! ```text
//! # comment
//! inputs.password   drop
//! inputs.*          hash
//! payload.body      hash
//! output            hash
//! error             drop
//! ```
//!
//! (or the same as JSON: `{"rules":[{"path":"inputs.*","action":"hash"}]}`).
//!
//! Naming what to remove lets through whatever nobody named. A policy can
//! therefore also be **keep-only**: it lists the content to keep (`keep
//! payload.tool`), and every other content key is dropped, or replaced by
//! its hash and size (`others hash`), before anything reaches the disk
//! ([`keep`]). Two ready-made keep-only policies ship as presets
//! ([`Preset`]): `metadata-only` and `hash-and-sizes`.
//!
//! The grammar, what each action writes and what can be named are in
//! docs/reliability.md ("Redaction").

mod keep;
mod preset;
pub(crate) mod record;

pub use preset::{Preset, PRESETS, TOOL_CALL_METADATA};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::event::{Event, EventData, Json};
use keep::{KeepOnly, KeepPath, JSON_CONTENT, TEXT_CONTENT};

/// Longest policy text accepted (it is recorded in the log's MANIFEST).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// What happens to a field a rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Remove it: a key inside a JSON value disappears; a whole field takes
    /// its default (`""`, `{}` for inputs, `null` for payload).
    Drop,
    /// Replace it by `{"redacted":"blake3:<hex>","bytes":N}`: the BLAKE3
    /// hash of its bytes and their count (for a string field, that JSON as
    /// the string's text).
    Hash,
}

/// One step of a path: a key, or `*` (every key of an object, every
/// element of an array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    field: String,
    rest: Vec<Step>,
    action: Action,
}

/// Fields that hold text: they can be dropped or hashed whole.
const STRING_FIELDS: &[&str] = &[
    "skill_id",
    "caller_id",
    "channel_id",
    "parent_run_id",
    "output",
    "error",
    "args_summary",
    "call_id",
    "workspace_id",
    "request_id",
    "input_hash",
];
/// The fields the log itself needs (or that carry no free text).
const FIXED_FIELDS: &[&str] = &[
    "kind",
    "event_type",
    "status",
    "run_id",
    "ts",
    "seq",
    "dry_run",
    "tool_calls",
    "runtime_seconds",
    "input_tokens",
    "output_tokens",
    "thinking_tokens",
    // A tool call's metadata: what the call indexes and queries group by.
    "tool",
    "engine",
    "error_type",
    "duration_ms",
    "input_bytes",
    "result_bytes",
    "exit_code",
    "http_status",
];

/// A redaction policy, applied to every appended event: an optional
/// keep-only list (everything it does not keep is dropped or hashed), then
/// rules that drop or hash named fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactionPolicy {
    rules: Vec<Rule>,
    /// Keep-only mode (applied before the rules).
    keep: Option<KeepOnly>,
    /// The preset it was started from, and whether it was changed since.
    preset: Option<&'static str>,
    customised: bool,
    /// When set, hashes are keyed BLAKE3 (`blake3-keyed:<hex>`), so a
    /// guessable secret cannot be confirmed by hashing candidates.
    key: Option<[u8; 32]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPolicy {
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    keep: Vec<String>,
    #[serde(default)]
    others: Option<Action>,
    #[serde(default)]
    rules: Vec<JsonRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRule {
    path: String,
    action: Action,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(format!("redaction policy: {}", msg.into()))
}

impl RedactionPolicy {
    pub fn new() -> RedactionPolicy {
        RedactionPolicy::default()
    }

    /// Add a rule (builder style). Paths: `field` or `field.key.key...`;
    /// a step may be `*`. Only JSON fields (inputs, payload, unknown
    /// top-level fields) take steps below them.
    pub fn rule(mut self, path: &str, action: Action) -> Result<RedactionPolicy> {
        let (field, rest) = split_path(path)?;
        if FIXED_FIELDS.contains(&field.as_str()) {
            return Err(bad(format!(
                "`{field}` cannot be redacted (the log needs it, or it holds no text)"
            )));
        }
        if !rest.is_empty() && STRING_FIELDS.contains(&field.as_str()) {
            return Err(bad(format!(
                "`{field}` is a string; name it whole, not `{path}`"
            )));
        }
        self.rules.push(Rule {
            field,
            rest,
            action,
        });
        self.customised = true;
        Ok(self)
    }

    /// Keep-only mode: keep `path` (and everything below it). Every content
    /// value no `keep` names is dropped, or hashed (see
    /// [`RedactionPolicy::others`]). Paths: `inputs.KEY...`,
    /// `payload.KEY...`, a free-text field (`output`, `error`,
    /// `args_summary`), or an unknown top-level field (`trace_id`,
    /// `meta.region`); a step may be `*` or an array index.
    pub fn keep(mut self, path: &str) -> Result<RedactionPolicy> {
        let (field, rest) = split_path(path)?;
        let f = field.as_str();
        let text = TEXT_CONTENT.contains(&f);
        if !text && !JSON_CONTENT.contains(&f) && known_field(f) {
            return Err(bad(format!(
                "`{f}` is metadata and always kept; keep names content: inputs.KEY, payload.KEY, {}, or an unknown field",
                TEXT_CONTENT.join(", ")
            )));
        }
        if text && !rest.is_empty() {
            return Err(bad(format!("`{f}` is text; keep it whole, not `{path}`")));
        }
        self.keep
            .get_or_insert_with(KeepOnly::new)
            .paths
            .push(KeepPath { field, rest });
        self.customised = true;
        Ok(self)
    }

    /// Keep-only mode: what happens to content no `keep` names (`Drop`, the
    /// default, or `Hash`: replaced by its hash and size).
    pub fn others(mut self, action: Action) -> RedactionPolicy {
        self.keep.get_or_insert_with(KeepOnly::new).others = action;
        self.customised = true;
        self
    }

    /// A ready-made keep-only policy by name (see [`PRESETS`]):
    /// `metadata-only` or `hash-and-sizes`.
    pub fn preset(name: &str) -> Result<RedactionPolicy> {
        RedactionPolicy::new().with_preset(name)
    }

    /// Add a preset's keep paths and its treatment of other content.
    fn with_preset(mut self, name: &str) -> Result<RedactionPolicy> {
        let Some(p) = Preset::by_name(name) else {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
            return Err(bad(format!(
                "unknown preset `{name}` (known: {})",
                names.join(", ")
            )));
        };
        let fresh = self.rules.is_empty() && self.keep.is_none() && self.preset.is_none();
        for path in p.keep_paths() {
            self = self.keep(&path)?;
        }
        self = self.others(p.others());
        if fresh {
            self.preset = Some(p.name);
            self.customised = false;
        } else {
            self.customised = true;
        }
        Ok(self)
    }

    /// True in keep-only mode.
    pub fn is_keep_only(&self) -> bool {
        self.keep.is_some()
    }

    /// A short name for what is in force: the preset's name, `custom`, a
    /// preset changed afterwards (`metadata-only+custom`), or `none`.
    pub fn name(&self) -> String {
        match (self.preset, self.customised) {
            _ if self.is_empty() => "none".to_string(),
            (Some(p), false) => p.to_string(),
            (Some(p), true) => format!("{p}+custom"),
            (None, _) => "custom".to_string(),
        }
    }

    /// Whether hashes are keyed (the key itself is never written anywhere).
    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    /// The policy as text in the line format, complete (a preset expanded),
    /// so that [`RedactionPolicy::parse`] of it gives the same policy. The
    /// key of a keyed policy is not in it.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(p) = self.preset {
            out.push_str(&format!("# preset {p}\n"));
        }
        if let Some(k) = &self.keep {
            for p in &k.paths {
                out.push_str(&format!("keep {}\n", path_text(&p.field, &p.rest)));
            }
            out.push_str(&format!("others {}\n", action_text(k.others)));
        }
        for r in &self.rules {
            out.push_str(&format!(
                "{} {}\n",
                path_text(&r.field, &r.rest),
                action_text(r.action)
            ));
        }
        if self.key.is_some() {
            out.push_str("# keyed\n");
        }
        out
    }

    /// `blake3:<hex>` of [`RedactionPolicy::to_text`]: tells two policies
    /// apart in the log's record of policies.
    pub fn fingerprint(&self) -> String {
        format!(
            "blake3:{}",
            blake3::hash(self.to_text().as_bytes()).to_hex()
        )
    }

    /// Use a keyed hash (see [`RedactionPolicy`]).
    pub fn with_key(mut self, key: [u8; 32]) -> RedactionPolicy {
        self.key = Some(key);
        self
    }

    /// Parse a policy: JSON (`{"rules":[{"path":..,"action":..}]}`) or
    /// lines `PATH ACTION` (`#` starts a comment).
    ///
    /// Keep-only lines: `preset NAME`, `keep PATH`, `others drop|hash`
    /// (JSON: `"preset"`, `"keep":[..]`, `"others"`). A `# preset NAME`
    /// comment on the first line (as [`RedactionPolicy::to_text`] writes)
    /// names the preset the rest expands.
    pub fn parse(text: &str) -> Result<RedactionPolicy> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(bad(format!(
                "{} bytes; at most {MAX_POLICY_BYTES} are allowed",
                text.len()
            )));
        }
        let mut p = RedactionPolicy::new();
        if text.trim_start().starts_with('{') {
            let j: JsonPolicy =
                serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
            if let Some(name) = &j.preset {
                p = p.with_preset(name)?;
            }
            for path in &j.keep {
                p = p.keep(path)?;
            }
            if let Some(a) = j.others {
                p = p.others(a);
            }
            for r in j.rules {
                p = p.rule(&r.path, r.action)?;
            }
            return Ok(p);
        }
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(first), Some(second), None) = (words.next(), words.next(), words.next())
            else {
                return Err(bad(format!(
                    "line {}: expected `PATH drop|hash`, `keep PATH`, `others drop|hash` or `preset NAME`, got `{line}`",
                    i + 1
                )));
            };
            let at = |e: Error| match e {
                Error::InvalidArgument(m) => {
                    Error::InvalidArgument(format!("{m} (line {})", i + 1))
                }
                other => other,
            };
            p = match first {
                "preset" => p.with_preset(second).map_err(at)?,
                "keep" => p.keep(second).map_err(at)?,
                "others" => p.others(parse_action(second, i + 1)?),
                path => p.rule(path, parse_action(second, i + 1)?).map_err(at)?,
            };
        }
        if let Some(name) = declared_preset(text) {
            // Text written by `to_text`: the preset it expands.
            let base = RedactionPolicy::preset(name)?;
            if base.keep == p.keep && p.rules.is_empty() {
                p.preset = base.preset;
                p.customised = false;
            } else if let Some(b) = base.preset {
                p.preset = Some(b);
                p.customised = true;
            }
        }
        Ok(p)
    }

    /// True when the policy changes nothing.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.keep.is_none()
    }

    /// The event with every rule applied. Rules apply in order; once a
    /// value was replaced by a hash, later rules below it find nothing.
    pub fn apply(&self, ev: &Event) -> Event {
        let mut out = ev.clone();
        self.apply_in_place(&mut out);
        out
    }

    pub fn apply_in_place(&self, ev: &mut Event) {
        if let Some(k) = &self.keep {
            self.apply_keep(k, ev);
        }
        for rule in &self.rules {
            self.apply_rule(rule, ev);
        }
    }

    /// Keep-only: every content value the policy does not keep is dropped
    /// or hashed.
    fn apply_keep(&self, k: &KeepOnly, ev: &mut Event) {
        match &mut ev.data {
            EventData::RunStarted(d) => {
                self.keep_json(k, "inputs", &mut d.inputs, "{}");
            }
            EventData::RunLog(d) => {
                self.keep_json(k, "payload", &mut d.payload, "null");
            }
            EventData::RunFinished(d) => {
                self.keep_text(k, "output", &mut d.output);
                self.keep_text(k, "error", &mut d.error);
            }
            EventData::ToolCall(d) => {
                self.keep_json(k, "payload", &mut d.payload, "null");
                self.keep_text(k, "error", &mut d.error);
                self.keep_text(k, "args_summary", &mut d.args_summary);
            }
            // The log's own record: no content of a caller's.
            EventData::System(_) => {}
        }
        let extra = std::mem::take(&mut ev.extra);
        for (name, mut v) in extra {
            if self.keep_json(k, &name, &mut v, "") {
                ev.extra.push((name, v));
            }
        }
    }

    /// Filter one JSON field; false when nothing of it is left (the field
    /// then holds `default`, or goes, for an unknown field).
    fn keep_json(&self, k: &KeepOnly, field: &str, json: &mut Json, default: &str) -> bool {
        let paths = k.paths_for(field);
        if k.keeps_whole(field) {
            return true;
        }
        let mark = |b: &[u8]| self.marker(b);
        let value = match serde_json::from_str::<Value>(json.as_str()) {
            Ok(v) => v,
            // Not readable as a value here (a number beyond f64): fails
            // closed, as a whole value nobody kept.
            Err(_) => Value::String(json.as_str().to_string()),
        };
        let (kept, changed) = keep::filter(value, &paths, k.others, &mark);
        match kept {
            None => {
                *json = Json::trusted(default.to_string());
                !default.is_empty()
            }
            Some(_) if !changed => true,
            Some(v) => {
                *json = Json::from_value(&v).unwrap_or_else(|_| {
                    // Deeper than the limit once a marker is in: hash whole.
                    Json::trusted(self.marker(json.as_str().as_bytes()).to_string())
                });
                true
            }
        }
    }

    fn keep_text(&self, k: &KeepOnly, field: &str, text: &mut String) {
        if text.is_empty() || k.keeps_whole(field) {
            return;
        }
        *text = match k.others {
            Action::Drop => String::new(),
            Action::Hash => self.marker(text.as_bytes()).to_string(),
        };
    }

    fn apply_rule(&self, rule: &Rule, ev: &mut Event) {
        let f = rule.field.as_str();
        let text: Option<&mut String> = match (&mut ev.data, f) {
            (EventData::RunStarted(d), "skill_id") => Some(&mut d.skill_id),
            (EventData::RunStarted(d), "caller_id") => Some(&mut d.caller_id),
            (EventData::RunStarted(d), "channel_id") => Some(&mut d.channel_id),
            (EventData::RunStarted(d), "parent_run_id") => Some(&mut d.parent_run_id),
            (EventData::RunFinished(d), "output") => Some(&mut d.output),
            (EventData::RunFinished(d), "error") => Some(&mut d.error),
            (EventData::ToolCall(d), "error") => Some(&mut d.error),
            (EventData::ToolCall(d), "args_summary") => Some(&mut d.args_summary),
            (EventData::ToolCall(d), "channel_id") => Some(&mut d.channel_id),
            (EventData::ToolCall(d), "caller_id") => Some(&mut d.caller_id),
            (EventData::ToolCall(d), "call_id") => Some(&mut d.call_id),
            (EventData::ToolCall(d), "workspace_id") => Some(&mut d.workspace_id),
            (EventData::ToolCall(d), "request_id") => Some(&mut d.request_id),
            (EventData::ToolCall(d), "input_hash") => Some(&mut d.input_hash),
            _ => None,
        };
        if let Some(s) = text {
            if s.is_empty() {
                return;
            }
            *s = match rule.action {
                Action::Drop => String::new(),
                Action::Hash => self.marker(s.as_bytes()).to_string(),
            };
            return;
        }
        let (json, default): (&mut Json, &str) = match (&mut ev.data, f) {
            (EventData::RunStarted(d), "inputs") => (&mut d.inputs, "{}"),
            (EventData::RunLog(d), "payload") => (&mut d.payload, "null"),
            (EventData::ToolCall(d), "payload") => (&mut d.payload, "null"),
            _ => {
                // An unknown top-level field, if the event has it.
                let Some(i) = ev.extra.iter().position(|(k, _)| k == f) else {
                    return;
                };
                if rule.rest.is_empty() && rule.action == Action::Drop {
                    ev.extra.remove(i);
                    return;
                }
                (&mut ev.extra[i].1, "null")
            }
        };
        if rule.rest.is_empty() {
            *json = match rule.action {
                Action::Drop => Json::trusted(default.to_string()),
                Action::Hash => {
                    Json::trusted(self.marker(&value_bytes_raw(json.as_str())).to_string())
                }
            };
            return;
        }
        match serde_json::from_str::<Value>(json.as_str()) {
            Ok(mut v) => {
                if self.walk(&mut v, &rule.rest, rule.action) {
                    // A marker one level deeper than the depth limit allows
                    // fails closed like an unreadable value.
                    let redacted = Json::from_value(&v).unwrap_or_else(|_| {
                        Json::trusted(self.marker(json.as_str().as_bytes()).to_string())
                    });
                    *json = redacted;
                }
            }
            // Not representable as a value here (e.g. a number beyond f64):
            // fail closed, hashing the whole field.
            Err(_) => *json = Json::trusted(self.marker(json.as_str().as_bytes()).to_string()),
        }
    }

    /// Apply `action` at `path` below `v`; true if anything changed.
    fn walk(&self, v: &mut Value, path: &[Step], action: Action) -> bool {
        let Some((step, rest)) = path.split_first() else {
            return false;
        };
        let last = rest.is_empty();
        match (v, step) {
            (Value::Object(map), Step::Key(k)) => {
                if last {
                    match action {
                        Action::Drop => map.shift_remove(k).is_some(),
                        Action::Hash => match map.get_mut(k) {
                            Some(x) => {
                                *x = self.marker(&value_bytes(x));
                                true
                            }
                            None => false,
                        },
                    }
                } else {
                    map.get_mut(k).is_some_and(|x| self.walk(x, rest, action))
                }
            }
            (Value::Object(map), Step::Any) => {
                if last && action == Action::Drop {
                    let had = !map.is_empty();
                    map.clear();
                    return had;
                }
                let mut changed = false;
                for (_, x) in map.iter_mut() {
                    changed |= self.leaf_or_walk(x, rest, action);
                }
                changed
            }
            (Value::Array(items), Step::Any) => {
                if last && action == Action::Drop {
                    let had = !items.is_empty();
                    items.clear();
                    return had;
                }
                let mut changed = false;
                for x in items.iter_mut() {
                    changed |= self.leaf_or_walk(x, rest, action);
                }
                changed
            }
            (Value::Array(items), Step::Key(k)) => {
                let Some(i) = k.parse::<usize>().ok().filter(|i| *i < items.len()) else {
                    return false;
                };
                if last {
                    match action {
                        Action::Drop => {
                            items.remove(i);
                        }
                        Action::Hash => items[i] = self.marker(&value_bytes(&items[i])),
                    }
                    true
                } else {
                    self.walk(&mut items[i], rest, action)
                }
            }
            _ => false,
        }
    }

    fn leaf_or_walk(&self, x: &mut Value, rest: &[Step], action: Action) -> bool {
        if rest.is_empty() {
            *x = self.marker(&value_bytes(x));
            true
        } else {
            self.walk(x, rest, action)
        }
    }

    /// `{"redacted":"blake3:<hex>","bytes":N}` for `bytes`.
    fn marker(&self, bytes: &[u8]) -> Value {
        let (scheme, hash) = match &self.key {
            Some(k) => ("blake3-keyed", blake3::keyed_hash(k, bytes)),
            None => ("blake3", blake3::hash(bytes)),
        };
        let mut m = serde_json::Map::new();
        m.insert(
            "redacted".into(),
            Value::String(format!("{scheme}:{}", hash.to_hex())),
        );
        m.insert("bytes".into(), Value::from(bytes.len() as u64));
        Value::Object(m)
    }
}

use keep::value_bytes;

/// Split `field.key.key` into the field and its steps.
fn split_path(path: &str) -> Result<(String, Vec<Step>)> {
    let mut parts = path.split('.');
    let field = parts.next().unwrap_or_default().trim();
    if field.is_empty() || field == "*" {
        return Err(bad(format!("path `{path}` must start with a field name")));
    }
    check_word(path, field)?;
    let rest: Vec<Step> = parts
        .map(|p| match p.trim() {
            "" => Err(bad(format!("path `{path}` has an empty step"))),
            "*" => Ok(Step::Any),
            k => check_word(path, k).map(|_| Step::Key(k.to_string())),
        })
        .collect::<Result<_>>()?;
    Ok((field.to_string(), rest))
}

/// A path step must survive the line format (no spaces, no `#`).
fn check_word(path: &str, w: &str) -> Result<()> {
    if w.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err(bad(format!(
            "path `{path}`: a step cannot hold spaces or `#`"
        )));
    }
    Ok(())
}

/// Fields of the event model (of any kind): not unknown fields.
fn known_field(f: &str) -> bool {
    FIXED_FIELDS.contains(&f) || STRING_FIELDS.contains(&f) || JSON_CONTENT.contains(&f)
}

fn path_text(field: &str, rest: &[Step]) -> String {
    let mut s = field.to_string();
    for step in rest {
        s.push('.');
        match step {
            Step::Any => s.push('*'),
            Step::Key(k) => s.push_str(k),
        }
    }
    s
}

fn action_text(a: Action) -> &'static str {
    match a {
        Action::Drop => "drop",
        Action::Hash => "hash",
    }
}

fn parse_action(word: &str, line: usize) -> Result<Action> {
    match word {
        "drop" => Ok(Action::Drop),
        "hash" => Ok(Action::Hash),
        other => Err(bad(format!(
            "line {line}: unknown action `{other}` (drop or hash)"
        ))),
    }
}

/// `NAME` of a first line `# preset NAME` (what `to_text` writes).
fn declared_preset(text: &str) -> Option<&str> {
    let first = text.lines().next()?.trim();
    let name = first
        .strip_prefix('#')?
        .trim()
        .strip_prefix("preset ")?
        .trim();
    Preset::by_name(name).map(|p| p.name)
}

/// [`value_bytes`] for raw JSON text (a JSON string is unescaped first).
fn value_bytes_raw(text: &str) -> Vec<u8> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::String(s)) => s.into_bytes(),
        _ => text.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::json::{event_to_json, parse_event};

    fn ev(line: &str) -> Event {
        parse_event(line.as_bytes()).expect("test event parses")
    }

    #[test]
    fn drops_and_hashes_below_a_path() {
        let p = RedactionPolicy::parse("inputs.password drop\ninputs.token hash\n").unwrap();
        let e = ev(
            r#"{"kind":"run_started","run_id":"r","ts":1,"inputs":{"q":"x","password":"hunter2","token":"abc"}}"#,
        );
        let EventData::RunStarted(d) = p.apply(&e).data else {
            panic!()
        };
        let want = format!(
            r#"{{"q":"x","token":{{"redacted":"blake3:{}","bytes":3}}}}"#,
            blake3::hash(b"abc").to_hex()
        );
        assert_eq!(d.inputs.as_str(), want);
    }

    #[test]
    fn keep_only_drops_every_key_it_does_not_name() {
        let p = RedactionPolicy::parse(
            "keep payload.tool\nkeep payload.meta.region\nkeep inputs.q\nkeep trace_id\n",
        )
        .unwrap();
        assert!(p.is_keep_only());
        let e = ev(
            r#"{"kind":"run_log","run_id":"r","ts":1,"event_type":"tool_call","payload":{"tool":"fs.read","response_body":"SECRET","meta":{"region":"eu","token":"SECRET"},"items":[1,2]},"trace_id":"t-1","stdout":"SECRET"}"#,
        );
        let out = p.apply(&e);
        let EventData::RunLog(d) = &out.data else {
            panic!()
        };
        assert_eq!(
            d.payload.as_str(),
            r#"{"tool":"fs.read","meta":{"region":"eu"}}"#
        );
        assert_eq!(out.extra.len(), 1);
        assert_eq!(out.extra[0].0, "trace_id");
        let s = event_to_json(&out, None);
        assert!(!s.contains("SECRET"), "{s}");
        let e =
            ev(r#"{"kind":"run_started","run_id":"r","ts":1,"inputs":{"q":"x","file":"SECRET"}}"#);
        let EventData::RunStarted(d) = p.apply(&e).data else {
            panic!()
        };
        assert_eq!(d.inputs.as_str(), r#"{"q":"x"}"#);
        let e =
            ev(r#"{"kind":"run_finished","run_id":"r","ts":1,"output":"SECRET","error":"SECRET"}"#);
        let EventData::RunFinished(d) = p.apply(&e).data else {
            panic!()
        };
        assert_eq!((d.output.as_str(), d.error.as_str()), ("", ""));
    }

    #[test]
    fn keep_only_with_others_hash_keeps_sizes() {
        let p = RedactionPolicy::new()
            .keep("payload.tool")
            .unwrap()
            .others(Action::Hash);
        let e =
            ev(r#"{"kind":"run_log","run_id":"r","ts":1,"payload":{"tool":"x","body":"SECRET"}}"#);
        let EventData::RunLog(d) = p.apply(&e).data else {
            panic!()
        };
        let want = format!(
            r#"{{"tool":"x","body":{{"redacted":"blake3:{}","bytes":6}}}}"#,
            blake3::hash(b"SECRET").to_hex()
        );
        assert_eq!(d.payload.as_str(), want);
        // A payload that is not an object is hashed whole.
        let e = ev(r#"{"kind":"run_log","run_id":"r","ts":1,"payload":"raw SECRET"}"#);
        let EventData::RunLog(d) = p.apply(&e).data else {
            panic!()
        };
        assert!(d.payload.as_str().starts_with(r#"{"redacted":"blake3:"#));
        assert!(d.payload.as_str().ends_with(r#""bytes":10}"#));
    }

    #[test]
    fn presets_round_trip_through_their_text() {
        for preset in PRESETS {
            let p = RedactionPolicy::preset(preset.name).unwrap();
            assert_eq!(p.name(), preset.name);
            let back = RedactionPolicy::parse(&p.to_text()).unwrap();
            assert_eq!(back, p, "{}", p.to_text());
            assert_eq!(back.fingerprint(), p.fingerprint());
            assert_eq!(back.name(), preset.name);
            let changed = p.clone().rule("payload.tool", Action::Hash).unwrap();
            assert_eq!(changed.name(), format!("{}+custom", preset.name));
            let back = RedactionPolicy::parse(&changed.to_text()).unwrap();
            assert_eq!(back.name(), changed.name());
            assert_ne!(back.fingerprint(), p.fingerprint());
        }
        assert_eq!(RedactionPolicy::new().name(), "none");
        assert!(RedactionPolicy::preset("everything").is_err());
        assert!(RedactionPolicy::parse("keep skill_id").is_err());
        assert!(RedactionPolicy::parse("keep output.x").is_err());
        let j = RedactionPolicy::parse(
            r#"{"preset":"metadata-only","keep":["inputs.q"],"others":"hash"}"#,
        )
        .unwrap();
        assert_eq!(j.name(), "metadata-only+custom");
    }

    #[test]
    fn metadata_preset_keeps_the_call_and_drops_the_content() {
        let p = RedactionPolicy::preset("metadata-only").unwrap();
        let e = ev(
            r#"{"kind":"run_log","run_id":"r","ts":1,"event_type":"tool_call","payload":{"tool":"sh","status":"error","error_type":"exit","exit_code":2,"stdout":"SECRET","stderr":"SECRET","args_summary":"ls -l"}}"#,
        );
        let EventData::RunLog(d) = p.apply(&e).data else {
            panic!()
        };
        assert_eq!(
            d.payload.as_str(),
            r#"{"tool":"sh","status":"error","error_type":"exit","exit_code":2,"args_summary":"ls -l"}"#
        );
        let h = RedactionPolicy::preset("hash-and-sizes").unwrap();
        let EventData::RunLog(d) = h.apply(&e).data else {
            panic!()
        };
        assert!(d
            .payload
            .as_str()
            .contains(r#""stdout":{"redacted":"blake3:"#));
        assert!(d
            .payload
            .as_str()
            .contains(r#""args_summary":{"redacted":"#));
        assert!(!d.payload.as_str().contains("SECRET"));
    }

    #[test]
    fn string_fields_and_rejected_paths() {
        let p = RedactionPolicy::new()
            .rule("output", Action::Hash)
            .unwrap()
            .rule("error", Action::Drop)
            .unwrap();
        let e =
            ev(r#"{"kind":"run_finished","run_id":"r","ts":1,"output":"secret","error":"boom"}"#);
        let EventData::RunFinished(d) = p.apply(&e).data else {
            panic!()
        };
        assert!(d.output.starts_with(r#"{"redacted":"blake3:"#));
        assert!(d.output.ends_with(r#","bytes":6}"#));
        assert_eq!(d.error, "");
        assert!(RedactionPolicy::new().rule("run_id", Action::Drop).is_err());
        assert!(RedactionPolicy::new()
            .rule("output.x", Action::Drop)
            .is_err());
        assert!(RedactionPolicy::parse("inputs.* shred").is_err());
    }
}
