//! The JSON options of `auditlog_open`.

use std::time::Duration;

use auditlog::{Config, Durability, FullPolicy, StoreConfig};
use serde::Deserialize;

use crate::status::{CallResult, Failure};

/// Every key is optional; unknown keys are an error (a typo must not be
/// silently ignored).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenOptions {
    /// "every_batch" (default), "never", or "interval:MS".
    durability: Option<String>,
    queue_capacity: Option<usize>,
    /// "block" (default), "fail_fast", "drop".
    on_full: Option<String>,
    segment_max_bytes: Option<u64>,
    max_batch_bytes: Option<usize>,
    /// Create the folder and log if missing (default true).
    create: Option<bool>,
}

impl OpenOptions {
    pub fn parse(json: Option<&str>) -> CallResult<OpenOptions> {
        match json {
            None => Ok(OpenOptions::default()),
            Some(t) if t.trim().is_empty() => Ok(OpenOptions::default()),
            Some(t) => {
                serde_json::from_str(t).map_err(|e| Failure::invalid(format!("open options: {e}")))
            }
        }
    }

    pub fn store_config(&self, dir: &str) -> CallResult<StoreConfig> {
        let mut log = Config::new(dir);
        if let Some(d) = &self.durability {
            log.durability = durability(d)?;
        }
        if let Some(n) = self.queue_capacity {
            log.queue_capacity = n;
        }
        if let Some(p) = &self.on_full {
            log.on_full = match p.as_str() {
                "block" => FullPolicy::Block,
                "fail_fast" => FullPolicy::FailFast,
                "drop" => FullPolicy::DropAndCount,
                other => {
                    return Err(Failure::invalid(format!(
                        "open options: on_full {other:?}: expected block, fail_fast or drop"
                    )))
                }
            };
        }
        if let Some(n) = self.segment_max_bytes {
            log.segment_max_bytes = n;
        }
        if let Some(n) = self.max_batch_bytes {
            log.max_batch_bytes = n;
        }
        if let Some(c) = self.create {
            log.create = c;
        }
        let mut cfg = StoreConfig::new(dir);
        cfg.log = log;
        Ok(cfg)
    }
}

fn durability(text: &str) -> CallResult<Durability> {
    match text {
        "every_batch" => Ok(Durability::EveryBatch),
        "never" => Ok(Durability::Never),
        _ => match text.strip_prefix("interval:").map(str::parse::<u64>) {
            Some(Ok(ms)) if ms > 0 => Ok(Durability::Interval(Duration::from_millis(ms))),
            _ => Err(Failure::invalid(format!(
                "open options: durability {text:?}: expected every_batch, never or interval:MS (MS > 0)"
            ))),
        },
    }
}
