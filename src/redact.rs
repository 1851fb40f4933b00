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
//! The grammar, what each action writes and what can be named are in
//! docs/reliability.md ("Redaction").

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::event::{Event, EventData, Json};

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
enum Step {
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
];

/// A set of redaction rules, applied to every appended event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactionPolicy {
    rules: Vec<Rule>,
    /// When set, hashes are keyed BLAKE3 (`blake3-keyed:<hex>`), so a
    /// guessable secret cannot be confirmed by hashing candidates.
    key: Option<[u8; 32]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPolicy {
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
        let mut parts = path.split('.');
        let field = parts.next().unwrap_or_default().trim();
        if field.is_empty() || field == "*" {
            return Err(bad(format!("path `{path}` must start with a field name")));
        }
        if FIXED_FIELDS.contains(&field) {
            return Err(bad(format!(
                "`{field}` cannot be redacted (the log needs it, or it holds no text)"
            )));
        }
        let rest: Vec<Step> = parts
            .map(|p| match p.trim() {
                "" => Err(bad(format!("path `{path}` has an empty step"))),
                "*" => Ok(Step::Any),
                k => Ok(Step::Key(k.to_string())),
            })
            .collect::<Result<_>>()?;
        if !rest.is_empty() && STRING_FIELDS.contains(&field) {
            return Err(bad(format!(
                "`{field}` is a string; name it whole, not `{path}`"
            )));
        }
        self.rules.push(Rule {
            field: field.to_string(),
            rest,
            action,
        });
        Ok(self)
    }

    /// Use a keyed hash (see [`RedactionPolicy`]).
    pub fn with_key(mut self, key: [u8; 32]) -> RedactionPolicy {
        self.key = Some(key);
        self
    }

    /// Parse a policy: JSON (`{"rules":[{"path":..,"action":..}]}`) or
    /// lines `PATH ACTION` (`#` starts a comment).
    pub fn parse(text: &str) -> Result<RedactionPolicy> {
        let mut p = RedactionPolicy::new();
        if text.trim_start().starts_with('{') {
            let j: JsonPolicy =
                serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
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
            let (Some(path), Some(action), None) = (words.next(), words.next(), words.next())
            else {
                return Err(bad(format!(
                    "line {}: expected `PATH drop|hash`, got `{line}`",
                    i + 1
                )));
            };
            let action = match action {
                "drop" => Action::Drop,
                "hash" => Action::Hash,
                other => {
                    return Err(bad(format!(
                        "line {}: unknown action `{other}` (drop or hash)",
                        i + 1
                    )))
                }
            };
            p = p.rule(path, action)?;
        }
        Ok(p)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The event with every rule applied. Rules apply in order; once a
    /// value was replaced by a hash, later rules below it find nothing.
    pub fn apply(&self, ev: &Event) -> Event {
        let mut out = ev.clone();
        self.apply_in_place(&mut out);
        out
    }

    pub fn apply_in_place(&self, ev: &mut Event) {
        for rule in &self.rules {
            self.apply_rule(rule, ev);
        }
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

/// What a hash covers: a string's UTF-8 text, any other value's compact
/// JSON text.
fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
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
    use crate::event::json::parse_event;

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
