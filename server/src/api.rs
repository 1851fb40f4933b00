//! What a request can be answered with when it is not a success: one type
//! for every front end (Unix socket, HTTP, OTLP), each mapping it to its
//! own status codes (docs/protocol.md, docs/serve.md).

use auditlog_client::proto::status;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request is wrong; nothing of it was stored.
    BadRequest,
    NotFound,
    /// The ingest queue stayed full: retry after a while.
    Busy,
    /// This client is over its rate: retry after a while.
    RateLimited,
    /// Stopping, or the writer failed.
    Unavailable,
    TooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    Unauthorized,
    /// An I/O or engine failure.
    Failed,
}

/// The bad record a request was refused for.
#[derive(Debug, Clone, Default)]
pub struct BadRecord {
    /// The record (0-based, in request order).
    pub record: u64,
    /// For JSONL bodies, the 1-based line of that record.
    pub line: Option<u64>,
    pub field: String,
    pub reason: String,
    /// Further bad records (the first 100).
    pub more: Vec<serde_json::Value>,
}

/// A failed request: what to tell the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: Kind,
    pub message: String,
    /// The record at fault, if one is.
    pub bad: Option<Box<BadRecord>>,
    pub retry_after_ms: Option<u64>,
    /// How many records were bad (for the metrics).
    pub bad_records: u64,
}

impl ApiError {
    pub fn new(kind: Kind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            bad: None,
            retry_after_ms: None,
            bad_records: 0,
        }
    }

    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(Kind::BadRequest, message)
    }

    pub fn failed(message: impl Into<String>) -> ApiError {
        ApiError::new(Kind::Failed, message)
    }

    /// A bad record: names its index and field.
    pub fn record(index: u64, line: Option<u64>, field: &str, reason: &str) -> ApiError {
        let at = match line {
            Some(l) => format!("record {index} (line {l})"),
            None => format!("record {index}"),
        };
        ApiError {
            bad: Some(Box::new(BadRecord {
                record: index,
                line,
                field: field.to_string(),
                reason: reason.to_string(),
                more: Vec::new(),
            })),
            bad_records: 1,
            ..ApiError::bad(format!("{at}: field `{field}`: {reason}"))
        }
    }

    pub fn busy(message: impl Into<String>, retry_after_ms: u64) -> ApiError {
        ApiError {
            retry_after_ms: Some(retry_after_ms),
            ..ApiError::new(Kind::Busy, message)
        }
    }

    /// The JSON body of the answer.
    pub fn to_json(&self) -> String {
        let mut v = json!({"error": self.message});
        let o = v.as_object_mut().expect("an object");
        if let Some(b) = &self.bad {
            o.insert("record".into(), b.record.into());
            if let Some(l) = b.line {
                o.insert("line".into(), l.into());
            }
            o.insert("field".into(), b.field.clone().into());
            o.insert("reason".into(), b.reason.clone().into());
            if !b.more.is_empty() {
                o.insert("errors".into(), b.more.clone().into());
            }
        }
        if let Some(ms) = self.retry_after_ms {
            o.insert("retry_after_ms".into(), ms.into());
        }
        v.to_string()
    }

    /// The HTTP status code.
    pub fn http_status(&self) -> u16 {
        match self.kind {
            Kind::BadRequest => 400,
            Kind::Unauthorized => 401,
            Kind::NotFound => 404,
            Kind::MethodNotAllowed => 405,
            Kind::TooLarge => 413,
            Kind::UnsupportedMediaType => 415,
            Kind::RateLimited => 429,
            Kind::Failed => 500,
            Kind::Busy | Kind::Unavailable => 503,
        }
    }

    /// The status byte of the socket protocol.
    pub fn socket_status(&self) -> u8 {
        match self.kind {
            Kind::BadRequest
            | Kind::UnsupportedMediaType
            | Kind::MethodNotAllowed
            | Kind::Unauthorized => status::BAD_REQUEST,
            Kind::NotFound => status::NOT_FOUND,
            Kind::Busy | Kind::RateLimited => status::BUSY,
            Kind::Unavailable => status::UNAVAILABLE,
            Kind::TooLarge => status::TOO_LARGE,
            Kind::Failed => status::FAILED,
        }
    }

    /// Seconds for an HTTP `Retry-After` header (at least 1).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after_ms.map(|ms| ms.div_ceil(1000).max(1))
    }
}

/// Engine errors as answers.
impl From<auditlog::Error> for ApiError {
    fn from(e: auditlog::Error) -> ApiError {
        use auditlog::Error as E;
        match &e {
            E::InvalidEvent { index, source } => {
                ApiError::record(*index as u64, None, &source.field, &source.reason)
            }
            E::EventTooLarge { index, .. } => {
                ApiError::record(*index as u64, None, "event", &e.to_string())
            }
            E::NotFound(_) => ApiError::new(Kind::NotFound, e.to_string()),
            E::BatchTooLarge { .. } => ApiError::new(Kind::TooLarge, e.to_string()),
            E::WriteRolledBack(_) => ApiError {
                retry_after_ms: Some(1000),
                ..ApiError::failed(e.to_string())
            },
            E::InvalidArgument(_) => ApiError::bad(e.to_string()),
            E::QueueFull { .. } => ApiError::busy(e.to_string(), 50),
            E::Closed | E::WriterFailed(_) => ApiError::new(Kind::Unavailable, e.to_string()),
            _ => ApiError::failed(e.to_string()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
