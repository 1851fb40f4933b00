//! Events read back from `events` rows, exactly as the log stored them, so
//! that `verify-export` can re-encode them and recompute the chain.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType, UInt64Type};
use arrow_array::{Array, BooleanArray, PrimitiveArray, RecordBatch, StringArray};
use auditlog::system::SystemRecord;
use auditlog::{Event, EventData, Json, Run, RunFinished, RunLog, RunStarted};
use serde::de::{MapAccess, Visitor};
use serde::Deserializer;

/// One row of `events`, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub lsn: u64,
    pub block_lsn: u64,
    pub event: Event,
}

struct Cols<'a> {
    lsn: &'a PrimitiveArray<UInt64Type>,
    block_lsn: &'a PrimitiveArray<UInt64Type>,
    ts: &'a PrimitiveArray<TimestampMicrosecondType>,
    kind: &'a StringArray,
    run_id: &'a StringArray,
    skill_id: &'a StringArray,
    caller_id: &'a StringArray,
    channel_id: &'a StringArray,
    parent_run_id: &'a StringArray,
    inputs: &'a StringArray,
    dry_run: &'a BooleanArray,
    seq: &'a PrimitiveArray<UInt64Type>,
    event_type: &'a StringArray,
    payload: &'a StringArray,
    status: &'a StringArray,
    output: &'a StringArray,
    error: &'a StringArray,
    tool_calls: &'a PrimitiveArray<UInt64Type>,
    runtime_seconds: &'a PrimitiveArray<Float64Type>,
    input_tokens: &'a PrimitiveArray<UInt64Type>,
    output_tokens: &'a PrimitiveArray<UInt64Type>,
    thinking_tokens: &'a PrimitiveArray<UInt64Type>,
    extra: &'a StringArray,
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, String> {
    b.column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| format!("column `{name}` is missing"))
}

fn strings<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a StringArray, String> {
    col(b, name)?
        .as_string_opt::<i32>()
        .ok_or_else(|| format!("column `{name}` is not a string column"))
}

fn u64s<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a PrimitiveArray<UInt64Type>, String> {
    col(b, name)?
        .as_primitive_opt::<UInt64Type>()
        .ok_or_else(|| format!("column `{name}` is not UInt64"))
}

impl<'a> Cols<'a> {
    fn of(b: &'a RecordBatch) -> Result<Cols<'a>, String> {
        Ok(Cols {
            lsn: u64s(b, "lsn")?,
            block_lsn: u64s(b, "block_lsn")?,
            ts: col(b, "ts")?
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or("column `ts` is not a µs timestamp")?,
            kind: strings(b, "kind")?,
            run_id: strings(b, "run_id")?,
            skill_id: strings(b, "skill_id")?,
            caller_id: strings(b, "caller_id")?,
            channel_id: strings(b, "channel_id")?,
            parent_run_id: strings(b, "parent_run_id")?,
            inputs: strings(b, "inputs")?,
            dry_run: col(b, "dry_run")?
                .as_boolean_opt()
                .ok_or("column `dry_run` is not Boolean")?,
            seq: u64s(b, "seq")?,
            event_type: strings(b, "event_type")?,
            payload: strings(b, "payload")?,
            status: strings(b, "status")?,
            output: strings(b, "output")?,
            error: strings(b, "error")?,
            tool_calls: u64s(b, "tool_calls")?,
            runtime_seconds: col(b, "runtime_seconds")?
                .as_primitive_opt::<Float64Type>()
                .ok_or("column `runtime_seconds` is not Float64")?,
            input_tokens: u64s(b, "input_tokens")?,
            output_tokens: u64s(b, "output_tokens")?,
            thinking_tokens: u64s(b, "thinking_tokens")?,
            extra: strings(b, "extra")?,
        })
    }
}

fn need_str(a: &StringArray, i: usize, name: &str) -> Result<String, String> {
    if a.is_null(i) {
        return Err(format!("`{name}` is null"));
    }
    Ok(a.value(i).to_string())
}

fn need_u64(a: &PrimitiveArray<UInt64Type>, i: usize, name: &str) -> Result<u64, String> {
    if a.is_null(i) {
        return Err(format!("`{name}` is null"));
    }
    Ok(a.value(i))
}

fn need_json(a: &StringArray, i: usize, name: &str) -> Result<Json, String> {
    Json::parse(need_str(a, i, name)?).map_err(|e| format!("`{name}`: {e}"))
}

/// Every row of an `events` batch as the event it records. A row that
/// does not make an event (a missing field of its kind, bad JSON text)
/// is an error naming its LSN and field.
pub fn event_rows(b: &RecordBatch) -> Result<Vec<EventRow>, String> {
    let c = Cols::of(b)?;
    (0..b.num_rows()).map(|i| row(&c, i)).collect()
}

fn row(c: &Cols<'_>, i: usize) -> Result<EventRow, String> {
    let lsn = need_u64(c.lsn, i, "lsn")?;
    let at = |e: String| format!("LSN {lsn}: {e}");
    let data = match c.kind.value(i) {
        "run_started" => EventData::RunStarted(RunStarted {
            skill_id: need_str(c.skill_id, i, "skill_id").map_err(at)?,
            caller_id: need_str(c.caller_id, i, "caller_id").map_err(at)?,
            channel_id: need_str(c.channel_id, i, "channel_id").map_err(at)?,
            parent_run_id: need_str(c.parent_run_id, i, "parent_run_id").map_err(at)?,
            inputs: need_json(c.inputs, i, "inputs").map_err(at)?,
            dry_run: if c.dry_run.is_null(i) {
                return Err(at("`dry_run` is null".into()));
            } else {
                c.dry_run.value(i)
            },
        }),
        "run_log" => EventData::RunLog(RunLog {
            seq: need_u64(c.seq, i, "seq").map_err(at)?,
            event_type: need_str(c.event_type, i, "event_type").map_err(at)?,
            payload: need_json(c.payload, i, "payload").map_err(at)?,
        }),
        "run_finished" => EventData::RunFinished(RunFinished {
            status: need_str(c.status, i, "status").map_err(at)?,
            output: need_str(c.output, i, "output").map_err(at)?,
            error: need_str(c.error, i, "error").map_err(at)?,
            tool_calls: need_u64(c.tool_calls, i, "tool_calls").map_err(at)?,
            runtime_seconds: if c.runtime_seconds.is_null(i) {
                return Err(at("`runtime_seconds` is null".into()));
            } else {
                c.runtime_seconds.value(i)
            },
            input_tokens: need_u64(c.input_tokens, i, "input_tokens").map_err(at)?,
            output_tokens: need_u64(c.output_tokens, i, "output_tokens").map_err(at)?,
            thinking_tokens: need_u64(c.thinking_tokens, i, "thinking_tokens").map_err(at)?,
        }),
        "system" => EventData::System(Box::new(
            system_record(
                &need_str(c.event_type, i, "event_type").map_err(at)?,
                c.payload.is_valid(i).then(|| c.payload.value(i)),
            )
            .map_err(at)?,
        )),
        "tool_call" => {
            let line = need_str(c.payload, i, "payload").map_err(at)?;
            match auditlog::event::json::parse_event(line.as_bytes()) {
                Ok(Event {
                    data: d @ EventData::ToolCall(_),
                    ..
                }) => d,
                Ok(_) => return Err(at("`payload` is not a tool_call event".into())),
                Err(e) => return Err(at(format!("`payload`: {e}"))),
            }
        }
        other => return Err(at(format!("unknown kind {other:?}"))),
    };
    let extra = if c.extra.is_null(i) {
        Vec::new()
    } else {
        extra_pairs(c.extra.value(i)).map_err(|e| at(format!("`extra`: {e}")))?
    };
    Ok(EventRow {
        lsn,
        block_lsn: need_u64(c.block_lsn, i, "block_lsn").map_err(at)?,
        event: Event {
            run_id: need_str(c.run_id, i, "run_id").map_err(at)?,
            ts: c.ts.value(i),
            data,
            extra,
        },
    })
}

/// A system event's record from its `event_type` (the record's name) and
/// `payload` (its fields as JSON, `tables::system_json`).
fn system_record(name: &str, payload: Option<&str>) -> Result<SystemRecord, String> {
    let payload = payload.ok_or("`payload` is null")?;
    let bad = |e: serde_json::Error| format!("`payload` is not a {name} record: {e}");
    match name {
        "torn_tail_cut" => serde_json::from_str(payload)
            .map(SystemRecord::TornTailCut)
            .map_err(bad),
        "repair" => serde_json::from_str(payload)
            .map(SystemRecord::Repair)
            .map_err(bad),
        "retention" => serde_json::from_str(payload)
            .map(SystemRecord::Retention)
            .map_err(bad),
        "checkpoint" => serde_json::from_str(payload)
            .map(SystemRecord::Checkpoint)
            .map_err(bad),
        other => Err(format!("unknown system record {other:?}")),
    }
}

/// The `extra` object back as (key, JSON text) pairs, in their order, each
/// value's text exactly as written.
fn extra_pairs(text: &str) -> Result<Vec<(String, Json)>, String> {
    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = Vec<(String, Box<serde_json::value::RawValue>)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(kv) = m.next_entry()? {
                out.push(kv);
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = de.deserialize_map(Pairs).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    raw.into_iter()
        .map(|(k, v)| Ok((k, Json::parse(v.get()).map_err(|e| e.to_string())?)))
        .collect()
}

/// One row of `runs`, decoded: the LSN of its defining start and the run.
pub fn run_rows(b: &RecordBatch) -> Result<Vec<(u64, Run)>, String> {
    let ts = |name: &str| -> Result<&PrimitiveArray<TimestampMicrosecondType>, String> {
        col(b, name)?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| format!("column `{name}` is not a µs timestamp"))
    };
    let start_lsn = u64s(b, "start_lsn")?;
    let (id, skill, caller, channel, parent, inputs) = (
        strings(b, "id")?,
        strings(b, "skill_id")?,
        strings(b, "caller_id")?,
        strings(b, "channel_id")?,
        strings(b, "parent_run_id")?,
        strings(b, "inputs")?,
    );
    let dry_run = col(b, "dry_run")?
        .as_boolean_opt()
        .ok_or("column `dry_run` is not Boolean")?;
    let (started_at, finished_at) = (ts("started_at")?, ts("finished_at")?);
    let (status, output, error) = (
        strings(b, "status")?,
        strings(b, "output")?,
        strings(b, "error")?,
    );
    let runtime = col(b, "runtime_seconds")?
        .as_primitive_opt::<Float64Type>()
        .ok_or("column `runtime_seconds` is not Float64")?;
    let (tool_calls, input_tokens, output_tokens, thinking_tokens) = (
        u64s(b, "tool_calls")?,
        u64s(b, "input_tokens")?,
        u64s(b, "output_tokens")?,
        u64s(b, "thinking_tokens")?,
    );
    (0..b.num_rows())
        .map(|i| {
            let lsn = need_u64(start_lsn, i, "start_lsn")?;
            let at = |e: String| format!("run at LSN {lsn}: {e}");
            let run = Run {
                id: need_str(id, i, "id").map_err(at)?,
                skill_id: need_str(skill, i, "skill_id").map_err(at)?,
                caller_id: need_str(caller, i, "caller_id").map_err(at)?,
                channel_id: need_str(channel, i, "channel_id").map_err(at)?,
                parent_run_id: need_str(parent, i, "parent_run_id").map_err(at)?,
                inputs: need_json(inputs, i, "inputs").map_err(at)?,
                dry_run: dry_run.value(i),
                started_at: started_at.value(i),
                finished_at: finished_at.is_valid(i).then(|| finished_at.value(i)),
                status: need_str(status, i, "status").map_err(at)?,
                output: need_str(output, i, "output").map_err(at)?,
                error: need_str(error, i, "error").map_err(at)?,
                tool_calls: need_u64(tool_calls, i, "tool_calls").map_err(at)?,
                runtime_seconds: runtime.value(i),
                input_tokens: need_u64(input_tokens, i, "input_tokens").map_err(at)?,
                output_tokens: need_u64(output_tokens, i, "output_tokens").map_err(at)?,
                thinking_tokens: need_u64(thinking_tokens, i, "thinking_tokens").map_err(at)?,
            };
            Ok((lsn, run))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_pairs_keep_order_and_spelling() {
        let p = extra_pairs(r#"{"b":1.50,"a":{"x" : [1, 2]},"c":"\u00e9"}"#).unwrap();
        let got: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("b", "1.50"),
                ("a", r#"{"x" : [1, 2]}"#),
                ("c", r#""\u00e9""#)
            ]
        );
        assert!(extra_pairs("[1]").is_err());
        assert!(extra_pairs("{} x").is_err());
    }
}
