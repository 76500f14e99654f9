//! The one place where errors become HTTP responses:
//! `{"error":{"code":"…","message":"…"}}` with the right status. Internal
//! details are logged, never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::{AuthError, KeyAdminError};
use crate::sequencer::SubmitError;
use crate::store::StoreError;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_s: Option<u32>,
}

impl ApiError {
    /// An error with an explicit status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// 400: the request is malformed or invalid.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>, retry_after_s: u32) -> ApiError {
        ApiError {
            retry_after_s: Some(retry_after_s),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    /// 500; `detail` goes to the server log only.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the operator's log has details",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message meant for the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Seconds the client should wait before retrying, when it should.
    pub fn retry_after_s(&self) -> Option<u32> {
        self.retry_after_s
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of an oversize body is never read, so the connection
            // cannot carry another request: say so, or a client reuses it
            // and its next request fails (RFC 9112 §9.6).
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// A whole HTTP/1.1 answer, JSON error and all, for a request the HTTP
/// layer refuses before any route sees it (a request target over 64 KiB:
/// 414; a request head over its limit: 431), which it would otherwise
/// answer without a body. The connection closes after it.
pub fn refused_head_answer(status: StatusCode) -> Vec<u8> {
    let (code, message) = match status {
        StatusCode::URI_TOO_LONG => (
            "uri_too_long",
            "the request target is too long (a query string may have at most 8 KiB)",
        ),
        _ => (
            "header_too_large",
            "the request head (its line and headers) is too large",
        ),
    };
    let body = json!({ "error": { "code": code, "message": message } }).to_string();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Largest body of a framework rejection that is quoted in its JSON form.
const MAX_REJECTION_TEXT: usize = 1024;

/// Puts the answers the framework gives by itself — a path segment that is
/// not UTF-8, a request that outlived the request timeout — into the same
/// `{"error":{"code","message"}}` form as every other error. Answers that
/// are already JSON or protobuf, and successes, pass unchanged.
pub(super) async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        // OTLP answers errors as a protobuf `google.rpc.Status` to protobuf requests.
        .is_some_and(|ct| ct.starts_with("application/json") || ct == "application/x-protobuf");
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, MAX_REJECTION_TEXT).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let (code, message) = match status {
        StatusCode::REQUEST_TIMEOUT => (
            "timeout",
            "the request was not completed within the request timeout (a body must arrive in time)"
                .to_string(),
        ),
        StatusCode::BAD_REQUEST => ("bad_request", text),
        StatusCode::NOT_FOUND => ("not_found", text),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", text),
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", text),
        StatusCode::UNPROCESSABLE_ENTITY => ("unprocessable", text),
        StatusCode::SERVICE_UNAVAILABLE => ("unavailable", text),
        StatusCode::INTERNAL_SERVER_ERROR => ("internal", text),
        _ => ("error", text),
    };
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        message
    };
    let mut out = ApiError::new(status, code, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name, value.clone());
        }
    }
    if status == StatusCode::REQUEST_TIMEOUT {
        // The rest of the body is never read: the connection is done.
        out.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    out
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Backend(m) => {
                tracing::error!(error = %m, "storage failure");
                ApiError::unavailable("storage is unavailable; retry later", 5)
            }
            StoreError::Corrupt(m) => ApiError::internal(format!("corrupt store: {m}")),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::Missing | AuthError::Invalid => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
            }
            AuthError::Forbidden { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            AuthError::RateLimited { retry_after_s } => ApiError {
                retry_after_s: Some(retry_after_s),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string())
            },
            AuthError::Store(s) => s.into(),
        }
    }
}

impl From<KeyAdminError> for ApiError {
    fn from(e: KeyAdminError) -> ApiError {
        match e {
            KeyAdminError::Invalid(m) => ApiError::bad_request(m),
            KeyAdminError::NotFound(_) => ApiError::not_found(e.to_string()),
            KeyAdminError::Store(s) => s.into(),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        match e {
            SubmitError::Busy => ApiError::unavailable(e.to_string(), 1),
            SubmitError::Unavailable(_) => ApiError::unavailable(e.to_string(), 30),
            // A lost lease or a store being reconnected: the next leader,
            // or this one, takes writes within seconds.
            SubmitError::Paused(_) => ApiError::unavailable(e.to_string(), 1),
            SubmitError::Store(s) => {
                tracing::error!(error = %s, "batch failed");
                ApiError::unavailable(
                    "the events could not be stored durably; retry (events with an id are never appended twice)",
                    5,
                )
            }
        }
    }
}
