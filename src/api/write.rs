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
use crate::merkle;
use crate::sequencer::{self, Receipt};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SubmitParams {
    /// When to answer: once the events are durable (the default), once a
    /// signed checkpoint covers them (with inclusion proofs), or once a
    /// witnessed checkpoint does (logs with a witness policy only).
    #[param(value_type = Option<super::openapi::WaitFor>)]
    wait: Option<String>,
    /// With a checkpoint: an inclusion proof per event (`each`, the
    /// default), or one proof for the whole batch (`batch`, see
    /// `BatchProof`): a few hashes instead of one path per event.
    #[param(value_type = Option<super::openapi::ProofForm>)]
    proof: Option<String>,
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
    super::strict_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("body is not valid JSON: {e}")))
}

/// The events of a submission body (one event, or `{"events": [...]}`):
/// the parse step of `POST /v1/events`, and all of it but reading the
/// body.
fn submitted_events(
    headers: &HeaderMap,
    bytes: &[u8],
    limits: &event::EventLimits,
) -> Result<Vec<event::AuditEvent>, ApiError> {
    let value = json_body(headers, bytes)?;
    event::parse_event_batch(&value, limits).map_err(|e| match e {
        event::BatchError::TooMany { .. } => ApiError::too_large(e.to_string()),
        other => ApiError::bad_request(other.to_string()),
    })
}

/// [`submitted_events`] for code outside the API: a refused body comes
/// back as the answer `POST /v1/events` would give. `veritrail bench
/// parse-server` answers with this step alone, the ceiling that
/// single-event ingest is compared to.
pub fn parse_submission(
    headers: &HeaderMap,
    bytes: &[u8],
    limits: &event::EventLimits,
) -> Result<Vec<event::AuditEvent>, Box<Response>> {
    submitted_events(headers, bytes, limits).map_err(|e| Box::new(e.into_response()))
}

/// For actions that take no options: refuses a query string and any body
/// but nothing or an empty JSON object, so that an option the route does not
/// know (`?dry_run=1`, `{"dry_run":true}`) is an error, never silently
/// ignored while the action runs for real.
pub(super) fn no_options(
    query: Option<&str>,
    headers: &HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<(), ApiError> {
    if query.is_some_and(|q| !q.is_empty()) {
        return Err(ApiError::bad_request(
            "this action takes no query parameters",
        ));
    }
    let bytes = body(b)?;
    if bytes.is_empty() {
        return Ok(());
    }
    match json_body(headers, &bytes)? {
        serde_json::Value::Object(m) if m.is_empty() => Ok(()),
        _ => Err(ApiError::bad_request(
            "this action takes no options: send no body or {}",
        )),
    }
}

/// The accept stage every write route shares (see
/// `sequencer::write_path`): salts, canonicalises and commits to each
/// validated event of `app`, queues them as one batch and returns once they
/// are durable (and, with `wait`, signed). The alert rules see the
/// plaintext of the events they watch, and count them once they have
/// their indexes (`api/alerts.rs`).
pub(super) async fn accept_events(
    st: &AppState,
    app: String,
    events: Vec<event::AuditEvent>,
    wait: bool,
) -> Result<Receipt, ApiError> {
    let watched = super::alerts::watch(st, &app, &events);
    let prepared = sequencer::accept(&st.vault, &app, events).map_err(ApiError::internal)?;
    let receipt = st.sequencer.submit(app, prepared, wait).await?;
    if !watched.is_empty() {
        super::alerts::raise(st, watched, &receipt).await;
    }
    Ok(receipt)
}

/// Validates the events (parsing them), accepts them (canonical form,
/// salt, commitment, search terms), queues the batch and answers once it
/// is durable (and, with `?wait=checkpoint`, signed).
#[utoipa::path(post, path = "/v1/events", tag = "writer", params(SubmitParams),
    security(("api_key" = ["writer"])),
    request_body(content = super::openapi::Submission, content_type = "application/json",
        description = "One audit event, or a batch `{\"events\": [...]}` of 1 to 1000; at most 4 MiB (the server's max_events_body setting)"),
    responses(
        (status = 200, description = "The events are durable (and signed, or witnessed, as asked)", body = super::openapi::SubmitResponse),
        (status = 202, description = "wait=witnessed: durable and signed, but no witnessed checkpoint came in time", body = super::openapi::SubmitResponse),
        (status = 400, description = "An invalid event or query; the message names the field", body = super::openapi::ErrorBody),
        (status = 413, description = "The body or the batch is too large", body = super::openapi::ErrorBody),
        (status = 415, description = "The body is not application/json", body = super::openapi::ErrorBody),
        (status = 503, description = "The sequencer is busy or storage is unavailable", body = super::openapi::ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
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
    let witnessed_view = match params.wait.as_deref() {
        Some("witnessed") => Some(st.witnessed.clone().ok_or_else(|| {
            ApiError::bad_request(
                "wait=witnessed: this log has no witness policy; use wait=checkpoint",
            )
        })?),
        _ => None,
    };
    let wait = match params.wait.as_deref() {
        None | Some("durable") => false,
        Some("checkpoint") | Some("witnessed") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "wait: unknown value {other:?}; use 'checkpoint' or 'witnessed'"
            )));
        }
    };
    let batch_proof = match params.proof.as_deref() {
        None | Some("each") => false,
        Some("batch") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "proof: unknown value {other:?}; use 'each' or 'batch'"
            )));
        }
    };
    let events = submitted_events(&headers, &body(b)?, &st.limits.events)?;
    let app = key
        .app
        .clone()
        .ok_or_else(|| ApiError::internal("writer key without an app"))?;
    let mut receipt = accept_events(&st, app, events, wait).await?;
    // wait=witnessed: the events are durable and signed; now wait (bounded)
    // for a witnessed checkpoint covering them. If none comes in time the
    // answer is 202 with the log-signed receipt: nothing is lost, and the
    // witnessed checkpoint can be fetched later from GET /checkpoint.
    let mut status = StatusCode::OK;
    let mut witnessed = None;
    if let (Some(view), Some(cp)) = (&witnessed_view, &receipt.checkpoint) {
        match view.wait_for(cp.checkpoint.size, view.wait_timeout()).await {
            Some(w) => {
                receipt.checkpoint = Some(w.published.clone());
                witnessed = Some(w);
            }
            None => status = StatusCode::ACCEPTED,
        }
    }
    let mut out = Vec::with_capacity(receipt.entries.len());
    for e in &receipt.entries {
        let inclusion_proof = match &receipt.checkpoint {
            Some(cp) if !batch_proof => Some(super::read::inclusion_json(
                &st,
                e.index,
                cp.checkpoint.size,
            )?),
            _ => None,
        };
        out.push(Answered {
            index: e.index,
            leaf_hash: e.leaf_hash.to_base64(),
            commitment: e.commitment.to_hex(),
            duplicate: e.duplicate,
            inclusion_proof,
        });
    }
    let checkpoint = receipt.checkpoint.as_ref();
    let body = Answer {
        events: out,
        batch_proof: match checkpoint {
            Some(cp) if batch_proof => Some(prove_batch(&st, &receipt, cp.checkpoint.size)?),
            _ => None,
        },
        checkpoint: checkpoint.map(|cp| cp.note.as_str()),
        witnessed: witnessed_view.is_some().then_some(witnessed.is_some()),
        cosignatures: witnessed
            .as_ref()
            .map(|w| serde_json::to_value(&w.cosignatures).unwrap_or_default()),
        message: (witnessed_view.is_some() && witnessed.is_none()).then_some(
            "the events are durable and in the signed checkpoint, but not yet witnessed; GET /checkpoint later for the witnessed checkpoint",
        ),
    };
    Ok((status, Json(body)).into_response())
}

/// The answer of `POST /v1/events` (`openapi::SubmitResponse`), written
/// straight from the receipt.
#[derive(Serialize)]
struct Answer<'a> {
    events: Vec<Answered>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_proof: Option<BatchProofBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    witnessed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cosignatures: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
}

/// One event's receipt in the answer.
#[derive(Serialize)]
struct Answered {
    index: u64,
    leaf_hash: String,
    commitment: String,
    duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    inclusion_proof: Option<serde_json::Value>,
}

/// `openapi::BatchProof`, as written.
#[derive(Serialize)]
struct BatchProofBody {
    tree_size: u64,
    hashes: Vec<String>,
}

/// One proof of every leaf of the receipt (distinct indexes, increasing) in
/// the tree of `size`, from the read cache in one pass.
fn prove_batch(st: &AppState, receipt: &Receipt, size: u64) -> Result<BatchProofBody, ApiError> {
    let mut leaves: Vec<u64> = receipt.entries.iter().map(|e| e.index).collect();
    leaves.sort_unstable();
    leaves.dedup();
    let hashes = merkle::batch_inclusion_proof(&leaves, size, st.tiles.as_ref())
        .map_err(ApiError::internal)?;
    Ok(BatchProofBody {
        tree_size: size,
        hashes: hashes.iter().map(|h| h.to_base64()).collect(),
    })
}
