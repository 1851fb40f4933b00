//! Options and filters from JavaScript, as JSON text. Unknown keys are an
//! error that names them (a misspelt option must not be ignored).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use auditlog::{Durability, Filter, FullPolicy, Micros, RedactionPolicy, StoreConfig};
use serde::Deserialize;

use crate::errors;

/// `open(dir, options)`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpenOptions {
    /// Create the folder and log when missing (default false).
    #[serde(default)]
    pub create: bool,
    /// "batch" (fdatasync per group commit, the default), "never", or
    /// "interval" (with `syncIntervalMs`).
    pub durability: Option<String>,
    pub sync_interval_ms: Option<f64>,
    pub queue_capacity: Option<usize>,
    /// "block" (default), "fail", or "drop".
    pub on_full: Option<String>,
    pub segment_max_bytes: Option<u64>,
    pub max_batch_bytes: Option<usize>,
    /// A redaction policy (rules text or JSON; docs/reliability.md).
    pub redaction: Option<String>,
    /// Record only runs of these skills.
    pub allow_skills: Option<Vec<String>>,
    /// Start the full-text indexer (builds with the `search` feature).
    #[serde(default)]
    pub search: bool,
}

impl OpenOptions {
    pub fn parse(json: &str) -> napi::Result<OpenOptions> {
        serde_json::from_str(json).map_err(|e| errors::invalid(format!("open options: {e}")))
    }

    /// The engine's configuration for `dir`.
    pub fn store_config(&self, dir: &str) -> napi::Result<StoreConfig> {
        let mut cfg = StoreConfig::new(dir);
        let log = &mut cfg.log;
        log.create = self.create;
        log.durability = match (self.durability.as_deref(), self.sync_interval_ms) {
            (None | Some("batch"), None) => Durability::EveryBatch,
            (Some("never"), None) => Durability::Never,
            (Some("interval"), Some(ms)) if ms.is_finite() && ms > 0.0 && ms <= 3_600_000.0 => {
                Durability::Interval(Duration::from_secs_f64(ms / 1000.0))
            }
            (Some("interval"), _) => {
                return Err(errors::invalid(
                    "open options: durability \"interval\" needs syncIntervalMs within (0, 3600000]",
                ))
            }
            (_, Some(_)) => {
                return Err(errors::invalid(
                    "open options: syncIntervalMs goes with durability \"interval\" only",
                ))
            }
            (Some(other), None) => {
                return Err(errors::invalid(format!(
                    "open options: durability {other:?} is not one of \"batch\", \"interval\", \"never\""
                )))
            }
        };
        if let Some(n) = self.queue_capacity {
            log.queue_capacity = n;
        }
        log.on_full = match self.on_full.as_deref() {
            None | Some("block") => FullPolicy::Block,
            Some("fail") => FullPolicy::FailFast,
            Some("drop") => FullPolicy::DropAndCount,
            Some(other) => {
                return Err(errors::invalid(format!(
                    "open options: onFull {other:?} is not one of \"block\", \"fail\", \"drop\""
                )))
            }
        };
        if let Some(n) = self.segment_max_bytes {
            log.segment_max_bytes = n;
        }
        if let Some(n) = self.max_batch_bytes {
            log.max_batch_bytes = n;
        }
        if let Some(text) = &self.redaction {
            let p = RedactionPolicy::parse(text).map_err(crate::errors::engine)?;
            log.redaction = Some(Arc::new(p));
        }
        if let Some(skills) = &self.allow_skills {
            cfg.allow_skills = Some(skills.iter().cloned().collect::<HashSet<_>>());
        }
        if self.search {
            #[cfg(feature = "search")]
            {
                cfg.search = Some(auditlog::fulltext::FullTextOptions::default());
            }
            #[cfg(not(feature = "search"))]
            return Err(errors::coded(
                errors::Code::Search,
                "this build of @auditlog/node has no full-text search (build it with `npm run build:search`)",
            ));
        }
        Ok(cfg)
    }
}

/// A run filter (`runs`, `count`): instants already in µs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FilterOptions {
    pub skill: Option<String>,
    pub caller: Option<String>,
    pub channel: Option<String>,
    pub status: Option<String>,
    pub parent: Option<String>,
    #[serde(default)]
    pub top_level: bool,
    pub since: Option<f64>,
    pub until: Option<f64>,
    #[serde(default)]
    pub include_dry_run: bool,
}

/// µs from JavaScript (a number that must be a whole µs count).
pub fn micros(what: &str, v: Option<f64>) -> napi::Result<Option<Micros>> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && x.abs() < 9.2e18 => Ok(Some(x.trunc() as Micros)),
        Some(x) => Err(errors::invalid(format!("{what}: {x} is not an instant"))),
    }
}

impl FilterOptions {
    pub fn parse(json: &str) -> napi::Result<Filter> {
        let o: FilterOptions =
            serde_json::from_str(json).map_err(|e| errors::invalid(format!("filter: {e}")))?;
        Ok(Filter {
            skill: o.skill,
            caller: o.caller,
            channel: o.channel,
            status: o.status,
            parent: o.parent,
            top_level: o.top_level,
            since: micros("filter.since", o.since)?,
            until: micros("filter.until", o.until)?,
            include_dry_run: o.include_dry_run,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason<T>(r: napi::Result<T>) -> String {
        match r {
            Err(e) => e.reason.clone(),
            Ok(_) => panic!("a bad option was accepted"),
        }
    }

    #[test]
    fn a_misspelt_option_is_named() {
        let e = reason(OpenOptions::parse(r#"{"creat":true}"#));
        assert!(e.contains("unknown field `creat`"), "{e}");
        let e = reason(FilterOptions::parse(r#"{"skil":"x"}"#));
        assert!(e.contains("unknown field `skil`"), "{e}");
    }

    #[test]
    fn durability_choices() {
        let cfg = |j: &str| OpenOptions::parse(j).and_then(|o| o.store_config("/x"));
        let d = |j: &str| cfg(j).map(|c| c.log.durability);
        assert_eq!(d("{}").ok(), Some(Durability::EveryBatch));
        assert_eq!(d(r#"{"durability":"never"}"#).ok(), Some(Durability::Never));
        assert_eq!(
            d(r#"{"durability":"interval","syncIntervalMs":5}"#).ok(),
            Some(Durability::Interval(Duration::from_millis(5)))
        );
        assert!(reason(d(r#"{"durability":"interval"}"#)).contains("syncIntervalMs"));
        assert!(reason(d(r#"{"durability":"sometimes"}"#)).contains("\"sometimes\""));
        assert!(reason(cfg(r#"{"onFull":"spill"}"#).map(|_| ())).contains("\"spill\""));
        assert!(!cfg("{}").map(|c| c.log.create).unwrap_or(true));
    }
}
