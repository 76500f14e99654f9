//! `POST /v1/events`: writers append audit events.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::auth::Role;
use crate::event;
use crate::sequencer::PreparedEvent;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubmitParams {
    wait: Option<String>,
}

/// Reads a request body, turning every rejection into the API's JSON error.
pub(super) fn body(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!("request body is too large: {}", e.body_text()))
        } else {
            ApiError::bad_request(format!("couldn't read the request body: {}", e.body_text()))
        }
    })
}

/// Parses a JSON body, requiring `Content-Type: application/json`.
pub(super) fn json_body(headers: &HeaderMap, bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("body is not valid JSON: {e}")))
}

/// One 32-byte salt per event, drawn from the OS in one call per request.
fn random_salts(count: usize) -> Result<Vec<[u8; 32]>, ApiError> {
    let mut salts = vec![[0u8; 32]; count];
    getrandom::fill(salts.as_flattened_mut()).map_err(ApiError::internal)?;
    Ok(salts)
}

/// One event of the answer.
#[derive(Serialize)]
struct SubmittedEvent {
    index: u64,
    leaf_hash: String,
    commitment: String,
    duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    inclusion_proof: Option<serde_json::Value>,
}

/// The answer to `POST /v1/events`.
#[derive(Serialize)]
struct SubmitAnswer<'a> {
    events: Vec<SubmittedEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<&'a str>,
}

/// Validates, canonicalises and commits to each event, queues the batch and
/// answers once it is durable (and, with `?wait=checkpoint`, signed).
pub(super) async fn submit_events(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<SubmitParams>, QueryRejection>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = st.keys.authorize(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        Role::Writer,
    )?;
    let params = q
        .map(|Query(p)| p)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let wait = match params.wait.as_deref() {
        None | Some("durable") => false,
        Some("checkpoint") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "wait: unknown value {other:?}; use 'checkpoint'"
            )));
        }
    };
    let bytes = body(b)?;
    let value = json_body(&headers, &bytes)?;
    let events = event::parse_event_batch(&value, &st.limits.events).map_err(|e| match e {
        event::BatchError::TooMany { .. } => ApiError::too_large(e.to_string()),
        other => ApiError::bad_request(other.to_string()),
    })?;
    let app = key
        .app
        .clone()
        .ok_or_else(|| ApiError::internal("writer key without an app"))?;
    let salts = random_salts(events.len())?;
    let mut prepared = Vec::with_capacity(events.len());
    for (ev, salt) in events.into_iter().zip(salts) {
        let canonical = ev.canonical_bytes();
        let commitment = event::commitment(&salt, &canonical);
        prepared.push(PreparedEvent {
            id: ev.id,
            canonical,
            salt,
            commitment,
        });
    }
    let receipt = st.sequencer.submit(app, prepared, wait).await?;
    let mut out = Vec::with_capacity(receipt.entries.len());
    for e in &receipt.entries {
        let inclusion_proof = match &receipt.checkpoint {
            Some(cp) => Some(super::read::inclusion_json(
                &st,
                e.index,
                cp.checkpoint.size,
            )?),
            None => None,
        };
        out.push(SubmittedEvent {
            index: e.index,
            leaf_hash: e.leaf_hash.to_base64(),
            commitment: e.commitment.to_hex(),
            duplicate: e.duplicate,
            inclusion_proof,
        });
    }
    let body = SubmitAnswer {
        events: out,
        checkpoint: receipt.checkpoint.as_ref().map(|cp| cp.note.as_str()),
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}
