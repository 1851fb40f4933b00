//! OTLP/HTTP (`POST /v1/traces`, `POST /v1/logs`): protobuf or JSON
//! bodies decoded with the opentelemetry-proto types, mapped onto events
//! (map.rs), appended like any request. Answers follow the OTLP/HTTP
//! specification: an Export*ServiceResponse in the request's encoding
//! (with `partial_success` naming what was refused), or a
//! `google.rpc.Status` with 400 (do not retry) or 429/503 + Retry-After
//! (retry).

pub mod map;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use crate::api::{ApiError, Kind};
use crate::config::SpanFilter;

/// The two encodings of OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From a Content-Type header (parameters ignored).
    pub fn from_content_type(ct: Option<&str>) -> Result<Encoding, ApiError> {
        let ct = ct.unwrap_or("");
        let base = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match base.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
            "application/json" => Ok(Encoding::Json),
            _ => Err(ApiError::new(
                Kind::UnsupportedMediaType,
                format!("OTLP/HTTP takes application/x-protobuf or application/json, not {ct:?}"),
            )),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// The signal of an OTLP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Logs,
}

fn decode<T: Message + Default + serde::de::DeserializeOwned>(
    body: &[u8],
    enc: Encoding,
    what: &str,
) -> Result<T, ApiError> {
    match enc {
        Encoding::Protobuf => {
            T::decode(body).map_err(|e| ApiError::bad(format!("invalid protobuf {what}: {e}")))
        }
        Encoding::Json => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad(format!(
                "invalid JSON {what}: {e} (line {}, column {})",
                e.line(),
                e.column()
            ))
        }),
    }
}

/// Decode and map a request: the events, and how many items were refused
/// (with the first reason).
pub fn map_request(
    signal: Signal,
    body: &[u8],
    enc: Encoding,
    filter: SpanFilter,
) -> Result<map::Mapped, ApiError> {
    Ok(match signal {
        Signal::Traces => {
            let req: ExportTraceServiceRequest = decode(body, enc, "ExportTraceServiceRequest")?;
            map::map_traces(&req, filter)
        }
        Signal::Logs => {
            let req: ExportLogsServiceRequest = decode(body, enc, "ExportLogsServiceRequest")?;
            map::map_logs(&req)
        }
    })
}

/// The success answer, in the request's encoding.
pub fn success(signal: Signal, enc: Encoding, rejected: u64, message: &str) -> Vec<u8> {
    let rejected = rejected.min(i64::MAX as u64) as i64;
    if rejected == 0 && enc == Encoding::Json {
        // An empty response: no `partialSuccess` key at all.
        return b"{}".to_vec();
    }
    match signal {
        Signal::Traces => {
            let r = ExportTraceServiceResponse {
                partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message.to_string(),
                }),
            };
            match enc {
                Encoding::Protobuf => r.encode_to_vec(),
                Encoding::Json => serde_json::to_vec(&r).unwrap_or_else(|_| b"{}".to_vec()),
            }
        }
        Signal::Logs => {
            let r = ExportLogsServiceResponse {
                partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message: message.to_string(),
                }),
            };
            match enc {
                Encoding::Protobuf => r.encode_to_vec(),
                Encoding::Json => serde_json::to_vec(&r).unwrap_or_else(|_| b"{}".to_vec()),
            }
        }
    }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP failure.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// gRPC code for an answer kind (INVALID_ARGUMENT, UNAVAILABLE, ...).
fn grpc_code(kind: Kind) -> i32 {
    match kind {
        Kind::BadRequest | Kind::UnsupportedMediaType | Kind::MethodNotAllowed => 3,
        Kind::NotFound => 5,
        Kind::RateLimited => 8,
        Kind::TooLarge => 11,
        Kind::Unauthorized => 16,
        Kind::Busy | Kind::Unavailable => 14,
        Kind::Failed => 13,
    }
}

/// A failure body in the request's encoding.
pub fn failure(enc: Encoding, e: &ApiError) -> Vec<u8> {
    let st = RpcStatus {
        code: grpc_code(e.kind),
        message: e.message.clone(),
    };
    match enc {
        Encoding::Protobuf => st.encode_to_vec(),
        Encoding::Json => serde_json::json!({"code": st.code, "message": st.message})
            .to_string()
            .into_bytes(),
    }
}
