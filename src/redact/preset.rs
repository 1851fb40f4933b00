//! Ready-made keep-only policies for the two guarantees gateways state
//! today: a tool-call log that has no content column at all, and a store
//! that never writes a payload, only its hash and sizes.

use super::Action;

/// Payload keys that describe a tool call rather than carry its content
/// (the contract's tool-call fields, plus the gateways' call id and
/// truncation flag).
pub const TOOL_CALL_METADATA: &[&str] = &[
    "tool",
    "engine",
    "status",
    "error_type",
    "duration_ms",
    "result_bytes",
    "input_bytes",
    "result_truncated",
    "exit_code",
    "http_status",
    "input_hash",
    "call_id",
];

/// A named, ready-made keep-only policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub about: &'static str,
    /// Payload keys kept besides [`TOOL_CALL_METADATA`].
    extra_payload: &'static [&'static str],
    /// Whole fields kept (free text).
    fields: &'static [&'static str],
    others: Action,
}

/// `metadata-only`: tool-call metadata only. No content, stdout, stderr or
/// body: of `inputs`, `payload`, `output` and unknown fields only the
/// tool-call metadata keys, the args summary and error messages are kept;
/// everything else is dropped.
pub const METADATA_ONLY: Preset = Preset {
    name: "metadata-only",
    about: "tool-call metadata, args summary and error messages; every other content key dropped",
    extra_payload: &["args_summary"],
    fields: &["args_summary", "error"],
    others: Action::Drop,
};

/// `hash-and-sizes`: the tool-call metadata keys are kept; every other
/// content value (inputs, payload keys, output, error and args summary
/// text, unknown fields) is replaced by its hash and size.
pub const HASH_AND_SIZES: Preset = Preset {
    name: "hash-and-sizes",
    about: "tool-call metadata kept; every other content value replaced by its hash and size",
    extra_payload: &[],
    fields: &[],
    others: Action::Hash,
};

/// Every preset, by name.
pub const PRESETS: &[Preset] = &[METADATA_ONLY, HASH_AND_SIZES];

impl Preset {
    pub fn by_name(name: &str) -> Option<Preset> {
        PRESETS.iter().copied().find(|p| p.name == name)
    }

    /// The keep paths of this preset, in a fixed order.
    pub(crate) fn keep_paths(&self) -> Vec<String> {
        let mut out: Vec<String> = TOOL_CALL_METADATA
            .iter()
            .chain(self.extra_payload)
            .map(|k| format!("payload.{k}"))
            .collect();
        out.extend(self.fields.iter().map(|f| f.to_string()));
        out
    }

    pub(crate) fn others(&self) -> Action {
        self.others
    }
}
