//! `POST /v1/logs`: the OTLP/HTTP logs receiver (OTLP specification 1.x,
//! "OTLP/HTTP"). An OpenTelemetry SDK or collector exports log records here
//! with a writer key in `Authorization`; each record becomes one audit event.
//!
//! Owns: decoding the request (protobuf or JSON, identity or gzip), mapping a
//! log record to an [`AuditEvent`] (the table is in `docs/otlp.md`), deriving
//! a record's idempotency id when it carries none, and answering in the
//! request's encoding (`ExportLogsServiceResponse`, or `google.rpc.Status`
//! for an error).
//!
//! Never: validates or commits events itself. The mapped events go through
//! [`super::write::accept_events`], the same accept stage as `POST
//! /v1/events`, so the two routes cannot drift apart.
//!
//! Invariants: a request is appended whole or not at all, minus the records
//! that do not map, which the answer names in its `partial_success`; every
//! record that maps carries an idempotency id, so an exporter's retry of the
//! same request appends nothing twice; bad input (too large, a gzip bomb,
//! undecodable) changes nothing.

use std::io::Read;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};
use crate::auth::Role;
use crate::event::{self, AuditEvent, EventLimits};

/// Which attribute fills which event field. Every `audit.*` attribute not in
/// this table is refused, so a misspelt name never silently loses data.
const FIELDS: &[(&str, &str)] = &[
    ("audit.actor.id", "actor.id"),
    ("audit.actor.type", "actor.type"),
    // OpenTelemetry semantic conventions: the client's address.
    ("client.address", "actor.ip"),
    ("audit.action", "action"),
    ("audit.resource.type", "resource.type"),
    ("audit.resource.id", "resource.id"),
    ("audit.subject", "subject"),
    ("audit.purpose", "purpose"),
    ("audit.outcome", "outcome"),
    ("audit.event.id", "id"),
];

/// Domain separation of the derived idempotency id (see [`derived_id`]).
const ID_DOMAIN: &[u8] = b"veritrail/otlp-record-id/v1\0";

/// Reasons listed in a partial-success message; the count covers them all.
const MAX_LISTED_REJECTIONS: usize = 20;

/// The OTLP messages this receiver reads and writes, with the field numbers
/// of opentelemetry-proto (`collector/logs/v1`, `logs/v1`, `common/v1`,
/// `resource/v1`) and `google/rpc/status.proto`. Fields the mapping does not
/// use are left out; protobuf decoding skips them.
pub(crate) mod proto {
    /// `ExportLogsServiceRequest`.
    #[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
    #[serde(default)]
    pub struct ExportLogsServiceRequest {
        #[prost(message, repeated, tag = "1")]
        #[serde(
            rename = "resourceLogs",
            alias = "resource_logs",
            deserialize_with = "super::json::messages"
        )]
        pub resource_logs: Vec<ResourceLogs>,
    }

    /// `ResourceLogs`.
    #[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
    #[serde(default)]
    pub struct ResourceLogs {
        #[prost(message, optional, tag = "1")]
        #[serde(deserialize_with = "super::json::message")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        #[serde(
            rename = "scopeLogs",
            alias = "scope_logs",
            deserialize_with = "super::json::messages"
        )]
        pub scope_logs: Vec<ScopeLogs>,
    }

    /// `Resource`.
    #[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
    #[serde(default)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        #[serde(deserialize_with = "super::json::messages")]
        pub attributes: Vec<KeyValue>,
    }

    /// `ScopeLogs`.
    #[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
    #[serde(default)]
    pub struct ScopeLogs {
        #[prost(message, optional, tag = "1")]
        #[serde(deserialize_with = "super::json::message")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        #[serde(
            rename = "logRecords",
            alias = "log_records",
            deserialize_with = "super::json::messages"
        )]
        pub log_records: Vec<LogRecord>,
    }

    /// `InstrumentationScope`.
    #[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
    #[serde(default)]
    pub struct InstrumentationScope {
        #[prost(string, tag = "1")]
        #[serde(deserialize_with = "super::json::or_default")]
        pub name: String,
        #[prost(string, tag = "2")]
        #[serde(deserialize_with = "super::json::or_default")]
        pub version: String,
    }

    /// `LogRecord`.
    #[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
    #[serde(default)]
    pub struct LogRecord {
        #[prost(fixed64, tag = "1")]
        #[serde(
            rename = "timeUnixNano",
            alias = "time_unix_nano",
            deserialize_with = "super::json::int"
        )]
        pub time_unix_nano: u64,
        #[prost(fixed64, tag = "11")]
        #[serde(
            rename = "observedTimeUnixNano",
            alias = "observed_time_unix_nano",
            deserialize_with = "super::json::int"
        )]
        pub observed_time_unix_nano: u64,
        #[prost(int32, tag = "2")]
        #[serde(
            rename = "severityNumber",
            alias = "severity_number",
            deserialize_with = "super::json::int"
        )]
        pub severity_number: i32,
        #[prost(string, tag = "3")]
        #[serde(
            rename = "severityText",
            alias = "severity_text",
            deserialize_with = "super::json::or_default"
        )]
        pub severity_text: String,
        #[prost(message, optional, tag = "5")]
        pub body: Option<AnyValue>,
        #[prost(message, repeated, tag = "6")]
        #[serde(deserialize_with = "super::json::messages")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed32, tag = "8")]
        #[serde(deserialize_with = "super::json::int")]
        pub flags: u32,
        #[prost(bytes = "vec", tag = "9")]
        #[serde(
            rename = "traceId",
            alias = "trace_id",
            deserialize_with = "super::json::hex_id"
        )]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "10")]
        #[serde(
            rename = "spanId",
            alias = "span_id",
            deserialize_with = "super::json::hex_id"
        )]
        pub span_id: Vec<u8>,
        #[prost(string, tag = "12")]
        #[serde(
            rename = "eventName",
            alias = "event_name",
            deserialize_with = "super::json::or_default"
        )]
        pub event_name: String,
    }

    /// `KeyValue`.
    #[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
    #[serde(default)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        #[serde(deserialize_with = "super::json::or_default")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    /// `AnyValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "Value", tags = "1, 2, 3, 4, 5, 6, 7")]
        pub value: Option<Value>,
    }

    /// `AnyValue.value`. The variants keep the proto's field names.
    #[allow(clippy::enum_variant_names)]
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(int64, tag = "3")]
        IntValue(i64),
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        #[prost(message, tag = "5")]
        ArrayValue(ArrayValue),
        #[prost(message, tag = "6")]
        KvlistValue(KeyValueList),
        #[prost(bytes = "vec", tag = "7")]
        BytesValue(Vec<u8>),
    }

    /// `ArrayValue`.
    #[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
    #[serde(default)]
    pub struct ArrayValue {
        #[prost(message, repeated, tag = "1")]
        #[serde(deserialize_with = "super::json::or_default")]
        pub values: Vec<AnyValue>,
    }

    /// `KeyValueList`.
    #[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
    #[serde(default)]
    pub struct KeyValueList {
        #[prost(message, repeated, tag = "1")]
        #[serde(deserialize_with = "super::json::messages")]
        pub values: Vec<KeyValue>,
    }

    /// `ExportLogsServiceResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportLogsServiceResponse {
        #[prost(message, optional, tag = "1")]
        pub partial_success: Option<ExportLogsPartialSuccess>,
    }

    /// `ExportLogsPartialSuccess`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportLogsPartialSuccess {
        #[prost(int64, tag = "1")]
        pub rejected_log_records: i64,
        #[prost(string, tag = "2")]
        pub error_message: String,
    }

    /// `google.rpc.Status`, the body of an OTLP/HTTP error answer.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
    }
}

/// The two OTLP/HTTP encodings; answers use the request's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Option<Encoding> {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())?;
        let mime = ct.split(';').next().unwrap_or("").trim();
        if mime.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Encoding::Protobuf)
        } else if mime.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }
}

/// An OTLP error answer: the status and a `google.rpc.Status` body.
struct OtlpError {
    status: StatusCode,
    message: String,
    retry_after_s: Option<u32>,
}

impl OtlpError {
    fn new(status: StatusCode, message: impl Into<String>) -> OtlpError {
        OtlpError {
            status,
            message: message.into(),
            retry_after_s: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> OtlpError {
        OtlpError::new(StatusCode::BAD_REQUEST, message)
    }

    fn too_large(message: impl Into<String>) -> OtlpError {
        OtlpError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// The `google.rpc.Code` closest to the HTTP status.
    fn rpc_code(&self) -> i32 {
        match self.status {
            StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3, // INVALID_ARGUMENT
            StatusCode::REQUEST_TIMEOUT => 4,                                  // DEADLINE_EXCEEDED
            StatusCode::FORBIDDEN => 7,                                        // PERMISSION_DENIED
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => 8, // RESOURCE_EXHAUSTED
            StatusCode::SERVICE_UNAVAILABLE => 14,                              // UNAVAILABLE
            StatusCode::UNAUTHORIZED => 16,                                     // UNAUTHENTICATED
            _ => 13,                                                            // INTERNAL
        }
    }

    fn into_response(self, enc: Encoding) -> Response {
        let mut resp = match enc {
            Encoding::Protobuf => {
                let status = proto::Status {
                    code: self.rpc_code(),
                    message: self.message.clone(),
                };
                encoded(self.status, enc, status.encode_to_vec())
            }
            Encoding::Json => {
                let body = json!({ "code": self.rpc_code(), "message": self.message });
                encoded(self.status, enc, body.to_string().into_bytes())
            }
        };
        if let Some(s) = self.retry_after_s {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of an oversize body may be unread (RFC 9112 §9.6).
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

impl From<ApiError> for OtlpError {
    fn from(e: ApiError) -> OtlpError {
        OtlpError {
            status: e.status(),
            message: e.message().to_owned(),
            retry_after_s: e.retry_after_s(),
        }
    }
}

fn encoded(status: StatusCode, enc: Encoding, body: Vec<u8>) -> Response {
    let ct = match enc {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Receives OTLP/HTTP log records and appends one audit event per record.
#[utoipa::path(post, path = "/v1/logs", tag = "writer",
    security(("api_key" = ["writer"])),
    request_body(content = Object, content_type = "application/x-protobuf",
        description = "An OTLP `ExportLogsServiceRequest` (protobuf, or `application/json` in the OTLP JSON encoding), optionally `Content-Encoding: gzip`; at most 4 MiB before and after decompression (max_events_body) and 1000 log records (max_batch_events). How records map to events: docs/otlp.md"),
    responses(
        (status = 200, description = "The mapped records are durable; `partialSuccess` counts and names the records that did not map, and why", body = Object, content_type = "application/x-protobuf"),
        (status = 400, description = "The body does not decode; nothing was appended. A google.rpc.Status in the request's encoding",
            content((super::openapi::RpcStatus = "application/json"), (Object = "application/x-protobuf"))),
        (status = 401, description = "No API key, or not a valid one. A google.rpc.Status in the request's encoding",
            content((super::openapi::RpcStatus = "application/json"), (Object = "application/x-protobuf"))),
        (status = 403, description = "The key is not a writer key. A google.rpc.Status in the request's encoding",
            content((super::openapi::RpcStatus = "application/json"), (Object = "application/x-protobuf"))),
        (status = 413, description = "The body, its decompressed form or the record count is over the limit; nothing was appended. A google.rpc.Status in the request's encoding",
            content((super::openapi::RpcStatus = "application/json"), (Object = "application/x-protobuf"))),
        (status = 429, description = "The key's rate limit; retry after Retry-After seconds (exporters do). A google.rpc.Status in the request's encoding",
            content((super::openapi::RpcStatus = "application/json"), (Object = "application/x-protobuf")),
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
        (status = 503, description = "The log is busy or storage is unavailable; retry after Retry-After seconds. A google.rpc.Status in the request's encoding",
            content((super::openapi::RpcStatus = "application/json"), (Object = "application/x-protobuf")),
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
        (status = 415, description = "Content-Type is neither application/x-protobuf nor application/json, or Content-Encoding is neither gzip nor identity", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn export_logs(
    State(st): State<AppState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(enc) = Encoding::of(&headers) else {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send OTLP logs as Content-Type: application/x-protobuf or application/json",
        )
        .into_response();
    };
    match receive(&st, &headers, enc, b).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(enc),
    }
}

async fn receive(
    st: &AppState,
    headers: &HeaderMap,
    enc: Encoding,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, OtlpError> {
    let key = st
        .keys
        .authorize(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
            Role::Writer,
        )
        .map_err(ApiError::from)?;
    let app = key
        .app
        .clone()
        .ok_or_else(|| ApiError::internal("writer key without an app"))?;
    let max = st.limits.max_events_body;
    let raw = super::write::body(b)?;
    let bytes = decompress(headers, &raw, max)?;
    let request = decode(enc, &bytes)?;
    let (events, rejected) = map_request(request, &app, &st.limits.events)?;
    if !events.is_empty() {
        super::write::accept_events(st, app, events, false).await?;
    }
    let response = proto::ExportLogsServiceResponse {
        partial_success: (!rejected.is_empty()).then(|| partial_success(&rejected)),
    };
    let body = match enc {
        Encoding::Protobuf => response.encode_to_vec(),
        Encoding::Json => response_json(&response).to_string().into_bytes(),
    };
    Ok(encoded(StatusCode::OK, enc, body))
}

/// Undoes `Content-Encoding: gzip`, reading at most `max` bytes of output
/// so that a small body cannot expand without bound (a gzip bomb).
fn decompress<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
    max: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, OtlpError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") | Some("") => Ok(std::borrow::Cow::Borrowed(body)),
        Some("gzip") => {
            let mut out = Vec::new();
            let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
            flate2::read::MultiGzDecoder::new(body)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| OtlpError::bad_request(format!("the gzip body is corrupt: {e}")))?;
            if out.len() > max {
                return Err(OtlpError::too_large(format!(
                    "the decompressed body is larger than {max} bytes; send smaller batches"
                )));
            }
            Ok(std::borrow::Cow::Owned(out))
        }
        Some(_) => Err(OtlpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Encoding: only gzip (or none) is supported",
        )),
    }
}

fn decode(enc: Encoding, bytes: &[u8]) -> Result<proto::ExportLogsServiceRequest, OtlpError> {
    match enc {
        Encoding::Protobuf => proto::ExportLogsServiceRequest::decode(bytes).map_err(|e| {
            OtlpError::bad_request(format!(
                "the body is not a protobuf ExportLogsServiceRequest: {e}"
            ))
        }),
        Encoding::Json => json::request(bytes).map_err(|e| match e {
            Ok(e) => OtlpError::bad_request(format!("the body is not valid JSON: {e}")),
            Err(e) => OtlpError::bad_request(format!(
                "the body is not an OTLP/JSON ExportLogsServiceRequest: {e}"
            )),
        }),
    }
}

/// A record that did not map: where it is in the request, and why.
#[derive(Debug, PartialEq, Eq)]
struct Rejection {
    position: String,
    reason: String,
}

/// Maps every record of the request, in order. Fails as a whole (nothing is
/// appended) only when the request holds more records than a batch may.
fn map_request(
    request: proto::ExportLogsServiceRequest,
    app: &str,
    limits: &EventLimits,
) -> Result<(Vec<AuditEvent>, Vec<Rejection>), OtlpError> {
    let count: usize = request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    if count > limits.max_batch_events {
        return Err(OtlpError::too_large(format!(
            "a request holds at most {} log records, this one has {count}; export smaller batches",
            limits.max_batch_events
        )));
    }
    let mut events = Vec::with_capacity(count);
    let mut rejected = Vec::new();
    // The request is taken apart: each record's strings move into its event.
    for (i, rl) in request.resource_logs.into_iter().enumerate() {
        let service = service_name(rl.resource.as_ref());
        for (j, sl) in rl.scope_logs.into_iter().enumerate() {
            let scope = sl.scope.as_ref().map(|s| s.name.as_str()).unwrap_or("");
            for (k, record) in sl.log_records.into_iter().enumerate() {
                let mapped = match &service {
                    Some(Err(reason)) => Err(reason.clone()),
                    // SDKs name an unnamed service `unknown_service[:<executable>]`:
                    // that is no claim to another app.
                    Some(Ok(name)) if *name != app && !name.starts_with("unknown_service") => {
                        Err(format!(
                            "resource attribute service.name is {name:?} but the writer key is for app {app:?}; use a key of that app"
                        ))
                    }
                    _ => map_record(record, scope, limits),
                };
                match mapped {
                    Ok(ev) => events.push(ev),
                    Err(reason) => rejected.push(Rejection {
                        position: format!("resourceLogs[{i}].scopeLogs[{j}].logRecords[{k}]"),
                        reason,
                    }),
                }
            }
        }
    }
    Ok((events, rejected))
}

/// The resource's `service.name`, if it sets one.
fn service_name(resource: Option<&proto::Resource>) -> Option<Result<&str, String>> {
    let attrs = &resource?.attributes;
    let kv = attrs.iter().find(|kv| kv.key == "service.name")?;
    Some(match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(proto::Value::StringValue(s)) => Ok(s.as_str()),
        _ => Err("resource attribute service.name: expected a string".to_owned()),
    })
}

/// Maps one log record to an audit event (the table: `docs/otlp.md`).
/// The error says which attribute is wrong and why, never its value.
fn map_record(
    record: proto::LogRecord,
    scope: &str,
    limits: &EventLimits,
) -> Result<AuditEvent, String> {
    let mut fields = Map::new();
    let mut others = Map::new();
    for kv in record.attributes {
        let value = kv.value.and_then(|v| v.value);
        if let Some((_, field)) = FIELDS.iter().find(|(name, _)| *name == kv.key) {
            let Some(proto::Value::StringValue(s)) = value else {
                return Err(format!("attribute {}: expected a string value", kv.key));
            };
            if fields
                .insert((*field).to_owned(), Value::String(s))
                .is_some()
            {
                return Err(format!("attribute {} is given more than once", kv.key));
            }
        } else if kv.key.starts_with("audit.") {
            return Err(format!(
                "attribute {}: unknown audit attribute; the known ones are listed in docs/otlp.md",
                kv.key
            ));
        } else {
            let value = any_value(value, &kv.key)?;
            match others.entry(kv.key) {
                serde_json::map::Entry::Occupied(o) => {
                    return Err(format!("attribute {} is given more than once", o.key()));
                }
                serde_json::map::Entry::Vacant(v) => {
                    v.insert(value);
                }
            }
        }
    }
    let nanos = match (record.time_unix_nano, record.observed_time_unix_nano) {
        (0, 0) => {
            return Err(
                "the record has neither timeUnixNano nor observedTimeUnixNano: set the time it happened"
                    .to_owned(),
            );
        }
        (0, observed) => observed,
        (t, _) => t,
    };
    let ms = i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX);
    event::check_unix_ms(ms).map_err(|e| format!("timeUnixNano: {e}"))?;

    let mut otel = Map::new();
    if !others.is_empty() {
        otel.insert("attributes".into(), Value::Object(others));
    }
    if let Some(body) = record.body.and_then(|b| b.value) {
        otel.insert("body".into(), any_value(Some(body), "body")?);
    }
    let texts = [
        ("event_name", record.event_name.as_str()),
        ("scope", scope),
        ("severity_text", record.severity_text.as_str()),
    ];
    for (name, text) in texts {
        if !text.is_empty() {
            otel.insert(name.into(), json!(text));
        }
    }
    if record.severity_number != 0 {
        otel.insert("severity_number".into(), json!(record.severity_number));
    }
    for (name, id) in [("span_id", &record.span_id), ("trace_id", &record.trace_id)] {
        if !id.is_empty() {
            otel.insert(name.into(), json!(hex::encode(id)));
        }
    }

    let mut raw = json!({
        "actor": {},
        "resource": {},
        "occurred_at": event::format_rfc3339_ms(ms),
    });
    for (field, value) in fields {
        match field.split_once('.') {
            Some((outer, inner)) => raw[outer][inner] = value,
            None => raw[field.as_str()] = value,
        }
    }
    if !otel.is_empty() {
        raw["context"] = json!({ "otel": otel });
    }
    let mut ev = event::parse_event(&raw, limits).map_err(|e| describe(&e))?;
    if ev.id.is_none() {
        ev.id = Some(derived_id(
            record.time_unix_nano,
            record.observed_time_unix_nano,
            &ev,
        ));
    }
    Ok(ev)
}

/// An event error in the exporter's terms: the attribute, not the field.
fn describe(e: &event::EventError) -> String {
    if let Some((name, _)) = FIELDS.iter().find(|(_, f)| *f == e.field) {
        return format!("attribute {name}: {}", e.message);
    }
    match e.field.strip_prefix("context.otel.attributes.") {
        Some(rest) => format!("attribute {rest}: {}", e.message),
        None => e.to_string(),
    }
}

/// The idempotency id of a record that carries no `audit.event.id`:
/// `otlp-` followed by the lowercase hex SHA-256 of
///
/// ```text
/// "veritrail/otlp-record-id/v1" 0x00
/// time_unix_nano          (8 bytes, big-endian)
/// observed_time_unix_nano (8 bytes, big-endian)
/// the mapped event without an id, as RFC 8785 canonical JSON
/// ```
///
/// The mapped event holds everything else of the record (attributes, body,
/// severity, trace and span ids, scope name), so two records get the same id
/// exactly when they say the same thing at the same nanosecond, whether they
/// came as protobuf or JSON, and an exporter's retry of a record always does.
fn derived_id(time_unix_nano: u64, observed_time_unix_nano: u64, ev: &AuditEvent) -> String {
    debug_assert!(ev.id.is_none());
    let mut h = Sha256::new();
    h.update(ID_DOMAIN);
    h.update(time_unix_nano.to_be_bytes());
    h.update(observed_time_unix_nano.to_be_bytes());
    h.update(ev.canonical_bytes());
    format!("otlp-{}", hex::encode(h.finalize()))
}

/// An attribute value as JSON: strings, booleans, numbers, arrays and maps
/// as themselves, bytes as base64, an empty value as `null`.
fn any_value(v: Option<proto::Value>, name: &str) -> Result<Value, String> {
    use base64::Engine;
    Ok(match v {
        None => Value::Null,
        Some(proto::Value::StringValue(s)) => Value::String(s),
        Some(proto::Value::BoolValue(b)) => json!(b),
        Some(proto::Value::IntValue(i)) => json!(i),
        Some(proto::Value::DoubleValue(d)) => serde_json::Number::from_f64(d)
            .map(Value::Number)
            .ok_or_else(|| format!("{name}: a double that is not finite"))?,
        Some(proto::Value::BytesValue(b)) => {
            json!(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(proto::Value::ArrayValue(a)) => Value::Array(
            a.values
                .into_iter()
                .map(|v| any_value(v.value, name))
                .collect::<Result<_, _>>()?,
        ),
        Some(proto::Value::KvlistValue(l)) => {
            let mut m = Map::new();
            for kv in l.values {
                let inner = any_value(kv.value.and_then(|v| v.value), name)?;
                match m.entry(kv.key) {
                    serde_json::map::Entry::Occupied(o) => {
                        return Err(format!("{name}: key {:?} is given more than once", o.key()));
                    }
                    serde_json::map::Entry::Vacant(v) => {
                        v.insert(inner);
                    }
                }
            }
            Value::Object(m)
        }
    })
}

fn partial_success(rejected: &[Rejection]) -> proto::ExportLogsPartialSuccess {
    let mut message = format!(
        "{} log record(s) rejected, nothing else of the request was lost: ",
        rejected.len()
    );
    let listed: Vec<String> = rejected
        .iter()
        .take(MAX_LISTED_REJECTIONS)
        .map(|r| format!("{}: {}", r.position, r.reason))
        .collect();
    message.push_str(&listed.join("; "));
    if rejected.len() > MAX_LISTED_REJECTIONS {
        message.push_str(&format!(
            "; and {} more",
            rejected.len() - MAX_LISTED_REJECTIONS
        ));
    }
    proto::ExportLogsPartialSuccess {
        rejected_log_records: i64::try_from(rejected.len()).unwrap_or(i64::MAX),
        error_message: message,
    }
}

/// The answer in OTLP/JSON: `{}` when every record was accepted.
fn response_json(r: &proto::ExportLogsServiceResponse) -> Value {
    match &r.partial_success {
        None => json!({}),
        // proto3 JSON writes int64 as a decimal string.
        Some(p) => json!({ "partialSuccess": {
            "rejectedLogRecords": p.rejected_log_records.to_string(),
            "errorMessage": p.error_message,
        }}),
    }
}

/// OTLP/JSON: the protobuf JSON mapping with OTLP's exceptions (trace and
/// span ids in hex; enums as integers). Field names are lowerCamelCase; the
/// original snake_case names are accepted too, as proto3 JSON parsers do
/// (a body that gives both for one field is refused). `null` reads as the
/// field's default, and unknown fields are ignored, as the specification
/// requires.
///
/// The body is read straight into the messages of [`proto`] (serde derives
/// on them name the fields; the functions here read the values that the
/// mapping writes in a special way), without a JSON tree in between: a
/// record's strings are allocated once, where they end up. Where a value
/// sits in the request is tracked by `serde_path_to_error` and only written
/// out when it is wrong.
mod json {
    use std::fmt;

    use base64::Engine;
    use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

    use super::proto;

    /// The request in `bytes`, or what is wrong with it: `Err(Ok(..))` when
    /// the body is not JSON at all, `Err(Err(..))` when it is JSON of
    /// another shape (with where in the body).
    pub(super) fn request(
        bytes: &[u8],
    ) -> Result<proto::ExportLogsServiceRequest, Result<String, String>> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let Object(request) = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let at = e.path().to_string();
            let inner = e.into_inner();
            if !inner.is_data() {
                Ok(inner.to_string())
            } else if at == "." {
                Err(format!("body: {inner}"))
            } else {
                Err(format!("{at}: {inner}"))
            }
        })?;
        de.end().map_err(|e| Ok(e.to_string()))?;
        Ok(request)
    }

    /// A message: a JSON object, never an array, which serde's derives
    /// would also take (as the fields in order).
    struct Object<T>(T);

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<T>(std::marker::PhantomData<T>);
            impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
                type Value = T;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                    T::deserialize(de::value::MapAccessDeserializer::new(map))
                }
            }
            d.deserialize_map(V(std::marker::PhantomData)).map(Object)
        }
    }

    /// An optional message field.
    pub(super) fn message<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Ok(Option::<Object<T>>::deserialize(d)?.map(|o| o.0))
    }

    /// A repeated message field; `null` is empty.
    pub(super) fn messages<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        let list = Option::<Vec<Object<T>>>::deserialize(d)?;
        Ok(list.unwrap_or_default().into_iter().map(|o| o.0).collect())
    }

    /// A field whose `null` means its default.
    pub(super) fn or_default<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de> + Default,
    {
        Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
    }

    /// A 64-bit integer: a JSON number or a decimal string (proto3 JSON).
    struct Int<T>(std::marker::PhantomData<T>);

    impl<'de, T: TryFrom<i128> + Default> Visitor<'de> for Int<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer in range")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            self.visit_i128(i128::from(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            self.visit_i128(i128::from(v))
        }

        fn visit_i128<E: de::Error>(self, v: i128) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::custom("expected an integer in range"))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            let n: i128 = v
                .parse()
                .map_err(|_| E::custom("expected an integer in range"))?;
            self.visit_i128(n)
        }

        fn visit_unit<E: de::Error>(self) -> Result<T, E> {
            Ok(T::default())
        }
    }

    /// An integer field (see [`Int`]); `null` is 0.
    pub(super) fn int<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<i128> + Default,
    {
        d.deserialize_any(Int(std::marker::PhantomData))
    }

    /// A trace or span id: hex digits.
    pub(super) fn hex_id<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
        hex::decode(s.as_deref().unwrap_or(""))
            .map_err(|_| de::Error::custom("expected hex digits"))
    }

    /// The members an `AnyValue` may set, by camelCase and snake_case name.
    const KINDS: [(&str, &str); 7] = [
        ("stringValue", "string_value"),
        ("boolValue", "bool_value"),
        ("intValue", "int_value"),
        ("doubleValue", "double_value"),
        ("arrayValue", "array_value"),
        ("kvlistValue", "kvlist_value"),
        ("bytesValue", "bytes_value"),
    ];

    impl<'de> Deserialize<'de> for proto::AnyValue {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(AnyValueVisitor)
        }
    }

    /// A member name of an `AnyValue`: its place in [`KINDS`], if any.
    struct Kind(Option<usize>);

    impl<'de> Deserialize<'de> for Kind {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Kind;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a member name")
                }
                fn visit_str<E: de::Error>(self, key: &str) -> Result<Kind, E> {
                    Ok(Kind(KINDS.iter().position(|(c, s)| key == *c || key == *s)))
                }
            }
            d.deserialize_identifier(V)
        }
    }

    struct AnyValueVisitor;

    impl<'de> Visitor<'de> for AnyValueVisitor {
        type Value = proto::AnyValue;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an AnyValue object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<proto::AnyValue, A::Error> {
            let mut value = None;
            while let Some(Kind(kind)) = map.next_key::<Kind>()? {
                let Some(kind) = kind else {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                };
                let read = match kind {
                    0 => map
                        .next_value::<Option<String>>()?
                        .map(proto::Value::StringValue),
                    1 => map
                        .next_value::<Option<bool>>()?
                        .map(proto::Value::BoolValue),
                    2 => map
                        .next_value::<Option<IntValue>>()?
                        .map(|n| proto::Value::IntValue(n.0)),
                    3 => map
                        .next_value::<Option<Double>>()?
                        .map(|n| proto::Value::DoubleValue(n.0)),
                    4 => map
                        .next_value::<Option<Object<proto::ArrayValue>>>()?
                        .map(|a| proto::Value::ArrayValue(a.0)),
                    5 => map
                        .next_value::<Option<Object<proto::KeyValueList>>>()?
                        .map(|l| proto::Value::KvlistValue(l.0)),
                    _ => map
                        .next_value::<Option<std::borrow::Cow<'de, str>>>()?
                        .map(|s| {
                            base64::engine::general_purpose::STANDARD
                                .decode(s.as_bytes())
                                .map(proto::Value::BytesValue)
                                .map_err(|_| de::Error::custom("expected base64"))
                        })
                        .transpose()?,
                };
                if let Some(v) = read {
                    if value.is_some() {
                        return Err(de::Error::custom(
                            "an AnyValue sets one of stringValue, boolValue, intValue, doubleValue, arrayValue, kvlistValue and bytesValue, not several",
                        ));
                    }
                    value = Some(v);
                }
            }
            Ok(proto::AnyValue { value })
        }
    }

    /// `AnyValue.intValue` (see [`Int`]).
    struct IntValue(i64);

    impl<'de> Deserialize<'de> for IntValue {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            int(d).map(IntValue)
        }
    }

    /// A double: a JSON number, or a string as proto3 JSON allows
    /// (`"1.5"`, `"NaN"`, `"Infinity"`).
    struct Double(f64);

    impl<'de> Deserialize<'de> for Double {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = f64;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a number")
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                    Ok(v)
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                    Ok(v as f64)
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                    Ok(v as f64)
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
                    v.parse().map_err(|_| E::custom("expected a number"))
                }
            }
            d.deserialize_any(V).map(Double)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(key: &str, value: &str) -> proto::KeyValue {
        proto::KeyValue {
            key: key.into(),
            value: Some(proto::AnyValue {
                value: Some(proto::Value::StringValue(value.into())),
            }),
        }
    }

    fn record(subject: &str) -> proto::LogRecord {
        proto::LogRecord {
            time_unix_nano: 1_764_064_492_123_456_789,
            observed_time_unix_nano: 1_764_064_492_200_000_000,
            severity_number: 9,
            attributes: vec![
                text("audit.actor.id", "alice"),
                text("audit.actor.type", "user"),
                text("audit.action", "record.read"),
                text("audit.resource.type", "record"),
                text("audit.resource.id", "r-1"),
                text("audit.subject", subject),
                text("audit.purpose", "care"),
                text("audit.outcome", "success"),
                proto::KeyValue {
                    key: "retries".into(),
                    value: Some(proto::AnyValue {
                        value: Some(proto::Value::IntValue(3)),
                    }),
                },
            ],
            trace_id: vec![0xab; 16],
            ..Default::default()
        }
    }

    fn request(records: Vec<proto::LogRecord>) -> proto::ExportLogsServiceRequest {
        proto::ExportLogsServiceRequest {
            resource_logs: vec![proto::ResourceLogs {
                resource: Some(proto::Resource {
                    attributes: vec![text("service.name", "app")],
                }),
                scope_logs: vec![proto::ScopeLogs {
                    scope: None,
                    log_records: records,
                }],
            }],
        }
    }

    #[test]
    fn protobuf_and_json_map_to_the_same_events_and_ids() {
        let req = request(vec![record("s-1"), record("s-2")]);
        let from_proto = decode(Encoding::Protobuf, &req.encode_to_vec())
            .ok()
            .unwrap();
        let as_json = json!({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "app"}}]},
            "scopeLogs": [{"logRecords": (["s-1", "s-2"].map(|s| json!({
                "timeUnixNano": "1764064492123456789",
                "observedTimeUnixNano": 1_764_064_492_200_000_000u64,
                "severityNumber": 9,
                "traceId": "abababababababababababababababab",
                "attributes": [
                    {"key": "audit.actor.id", "value": {"stringValue": "alice"}},
                    {"key": "audit.actor.type", "value": {"stringValue": "user"}},
                    {"key": "audit.action", "value": {"stringValue": "record.read"}},
                    {"key": "audit.resource.type", "value": {"stringValue": "record"}},
                    {"key": "audit.resource.id", "value": {"stringValue": "r-1"}},
                    {"key": "audit.subject", "value": {"stringValue": s}},
                    {"key": "audit.purpose", "value": {"stringValue": "care"}},
                    {"key": "audit.outcome", "value": {"stringValue": "success"}},
                    {"key": "retries", "value": {"intValue": "3"}},
                ],
            })))}],
        }]});
        let from_json = decode(Encoding::Json, as_json.to_string().as_bytes())
            .ok()
            .unwrap();
        assert_eq!(from_proto, from_json);
        let limits = EventLimits::default();
        let (events, rejected) = map_request(from_proto.clone(), "app", &limits)
            .ok()
            .unwrap();
        assert!(rejected.is_empty());
        assert_eq!(events.len(), 2);
        let ids: Vec<_> = events.iter().map(|e| e.id.clone().unwrap()).collect();
        assert_ne!(ids[0], ids[1], "different subjects, different ids");
        assert!(ids[0].starts_with("otlp-") && ids[0].len() == 5 + 64);
        assert_eq!(events[0].occurred_at, "2025-11-25T09:54:52.123Z");
        assert_eq!(
            events[0].context.as_ref().unwrap()["otel"]["attributes"]["retries"],
            3
        );
    }

    /// What `decode` says about an OTLP/JSON body that it refuses.
    fn json_error(body: &str) -> String {
        match decode(Encoding::Json, body.as_bytes()) {
            Ok(r) => panic!("{body} was read as {r:?}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn otlp_json_takes_both_names_nulls_and_string_integers_and_says_where_it_is_wrong() {
        let body = r#"{"resource_logs": [{"resource": null, "scope_logs": [{"scope": {"name": "s", "version": null},
            "log_records": [{"time_unix_nano": 5, "observedTimeUnixNano": "7", "severity_text": null,
                "span_id": "0102", "flags": "1", "unknownField": {"x": [1, 2]},
                "body": {"kvlist_value": {"values": [{"key": "k", "value": {"double_value": "1.5"}},
                                                     {"key": "b", "value": {"bytesValue": "AAE="}},
                                                     {"key": "n", "value": null}]}},
                "attributes": [{"key": "a", "value": {"array_value": {"values": [{"boolValue": true}, {"intValue": -2}]}}}]}]}]}]}"#;
        let req = decode(Encoding::Json, body.as_bytes()).ok().unwrap();
        let r = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(
            (r.time_unix_nano, r.observed_time_unix_nano, r.flags),
            (5, 7, 1)
        );
        assert_eq!(r.span_id, [1, 2]);
        assert_eq!(
            req.resource_logs[0].scope_logs[0]
                .scope
                .as_ref()
                .unwrap()
                .name,
            "s"
        );
        let Some(proto::Value::KvlistValue(kv)) = r.body.as_ref().and_then(|b| b.value.clone())
        else {
            panic!("{:?}", r.body)
        };
        assert_eq!(
            kv.values[0].value.as_ref().unwrap().value,
            Some(proto::Value::DoubleValue(1.5))
        );
        assert_eq!(
            kv.values[1].value.as_ref().unwrap().value,
            Some(proto::Value::BytesValue(vec![0, 1]))
        );
        assert_eq!(kv.values[2].value, None);
        let Some(proto::Value::ArrayValue(a)) =
            r.attributes[0].value.as_ref().and_then(|v| v.value.clone())
        else {
            panic!("{:?}", r.attributes)
        };
        assert_eq!(a.values[1].value, Some(proto::Value::IntValue(-2)));

        for (body, says) in [
            (
                "[]",
                "OTLP/JSON ExportLogsServiceRequest: body: invalid type",
            ),
            (r#"{"resourceLogs": {}}"#, "resourceLogs: invalid type"),
            (
                r#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "soon"}]}]}]}"#,
                "resourceLogs[0].scopeLogs[0].logRecords[0].timeUnixNano: expected an integer in range",
            ),
            (
                r#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"severityNumber": 4294967296}]}]}]}"#,
                "logRecords[0].severityNumber: expected an integer in range",
            ),
            (
                r#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "xyz"}]}]}]}"#,
                "logRecords[0].traceId: expected hex digits",
            ),
            (
                r#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"attributes": [{"key": "a", "value": {"stringValue": "x", "intValue": 1}}]}]}]}]}"#,
                "attributes[0].value: an AnyValue sets one of",
            ),
            (
                r#"{"resourceLogs": [], "resource_logs": []}"#,
                "duplicate field",
            ),
            (
                r#"{"resourceLogs": []} x"#,
                "the body is not valid JSON: trailing characters",
            ),
            (r#"{"resourceLogs": ["#, "the body is not valid JSON: EOF"),
        ] {
            let got = json_error(body);
            assert!(got.contains(says), "{body}: {got}");
        }
    }

    #[test]
    fn the_derived_id_is_the_documented_hash_and_moves_with_the_time() {
        let limits = EventLimits::default();
        let r = record("s");
        let ev = map_record(r.clone(), "", &limits).unwrap();
        let mut without_id = ev.clone();
        without_id.id = None;
        let mut bytes = b"veritrail/otlp-record-id/v1\0".to_vec();
        bytes.extend(1_764_064_492_123_456_789u64.to_be_bytes());
        bytes.extend(1_764_064_492_200_000_000u64.to_be_bytes());
        bytes.extend(without_id.canonical_bytes());
        let want = format!("otlp-{}", hex::encode(Sha256::digest(&bytes)));
        assert_eq!(ev.id.as_deref(), Some(want.as_str()));
        // The same millisecond, another nanosecond: another event.
        let mut later = r.clone();
        later.time_unix_nano += 1;
        assert_ne!(map_record(later.clone(), "", &limits).unwrap().id, ev.id);
        // A given id wins.
        let mut given = r;
        given.attributes.push(text("audit.event.id", "e-1"));
        assert_eq!(
            map_record(given.clone(), "", &limits)
                .unwrap()
                .id
                .as_deref(),
            Some("e-1")
        );
    }

    #[test]
    fn a_record_that_does_not_map_says_which_attribute_and_why() {
        let limits = EventLimits::default();
        let mut no_time = record("s");
        no_time.time_unix_nano = 0;
        no_time.observed_time_unix_nano = 0;
        let mut twice = record("s");
        twice.attributes.push(text("audit.subject", "t"));
        let mut bad_ip = record("s");
        bad_ip
            .attributes
            .push(text("client.address", "not an address"));
        let mut number = record("s");
        number.attributes[0].value = Some(proto::AnyValue {
            value: Some(proto::Value::IntValue(7)),
        });
        for (r, want) in [
            (no_time, "neither timeUnixNano nor observedTimeUnixNano"),
            (twice, "attribute audit.subject is given more than once"),
            (bad_ip, "attribute client.address:"),
            (number, "attribute audit.actor.id: expected a string value"),
        ] {
            let e = map_record(r.clone(), "", &limits).unwrap_err();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("not an address"), "echoes the value: {e}");
        }
        let mut many = request(vec![record("s"); 3]);
        many.resource_logs[0].scope_logs[0].log_records[1]
            .attributes
            .retain(|kv| kv.key != "audit.purpose");
        let (events, rejected) = map_request(many.clone(), "app", &limits).ok().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            rejected,
            [Rejection {
                position: "resourceLogs[0].scopeLogs[0].logRecords[1]".into(),
                reason: "attribute audit.purpose: is required".into(),
            }]
        );
        let mut unnamed = request(vec![record("s")]);
        unnamed.resource_logs[0].resource = Some(proto::Resource {
            attributes: vec![text("service.name", "unknown_service:python")],
        });
        let (events, rejected) = map_request(unnamed.clone(), "app", &limits).ok().unwrap();
        assert_eq!((events.len(), rejected.len()), (1, 0));
        let (events, rejected) = map_request(many.clone(), "other-app", &limits)
            .ok()
            .unwrap();
        assert_eq!((events.len(), rejected.len()), (0, 3));
        assert!(rejected[0].reason.contains("service.name"), "{rejected:?}");
        let tight = EventLimits {
            max_batch_events: 2,
            ..EventLimits::default()
        };
        let err = map_request(many.clone(), "app", &tight).err().unwrap();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
