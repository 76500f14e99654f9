//! Admin routes: API keys.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::write::{body, json_body};
use super::{ApiError, AppState};
use crate::auth::{ApiKeyRecord, Role};

fn authorize_admin(st: &AppState, headers: &HeaderMap) -> Result<ApiKeyRecord, ApiError> {
    Ok(st.keys.authorize(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        Role::Admin,
    )?)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateKey {
    /// 1 to 64 characters of letters, digits, `.`, `_` or `-`.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    name: String,
    #[schema(value_type = crate::auth::Role)]
    role: String,
    /// Writer keys only: the app id its events are appended under (default:
    /// the name).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"
    )]
    app: Option<String>,
}

fn key_json(r: &ApiKeyRecord) -> serde_json::Value {
    json!({
        "id": r.id,
        "name": r.name,
        "role": r.role,
        "app": r.app,
        "created_at": r.created_at,
        "revoked_at": r.revoked_at,
    })
}

/// `POST /v1/admin/keys` `{"name":…,"role":"writer|auditor|admin","app":…}`:
/// the token is in the answer and nowhere else.
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin",
    security(("api_key" = ["admin"])),
    request_body(content = CreateKey, content_type = "application/json", description = "At most 64 KiB"),
    responses(
        (status = 201, description = "The key; `key` is the token, shown only now", body = super::openapi::CreatedKey),
        (status = 400, description = "Invalid name, role or app", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn create_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let admin = authorize_admin(&st, &headers)?;
    let value = json_body(&headers, &body(b)?)?;
    let req: CreateKey =
        serde_json::from_value(value).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::bad_request(format!(
            "role: {:?} is not one of writer, auditor, admin",
            req.role
        ))
    })?;
    let (record, token) = st.keys.create(&req.name, role, req.app.as_deref())?;
    tracing::info!(by = %admin.name, id = %record.id, name = %record.name, role = ?record.role, "API key created");
    let mut out = key_json(&record);
    out["key"] = json!(token);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `GET /v1/admin/keys`: every key, without secrets.
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin",
    security(("api_key" = ["admin"])),
    responses((status = 200, description = "Every key, revoked ones included", body = super::openapi::KeyList)))]
pub(super) async fn list_keys(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize_admin(&st, &headers)?;
    let keys: Vec<_> = st.keys.list()?.iter().map(key_json).collect();
    Ok(Json(json!({ "keys": keys })).into_response())
}

/// `DELETE /v1/admin/keys/<id>`: revokes a key at once.
#[utoipa::path(delete, path = "/v1/admin/keys/{id}", tag = "admin",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "The key id (16 hex digits)")),
    responses(
        (status = 200, description = "The revoked key", body = super::openapi::KeyRecord),
        (status = 404, description = "No such key", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn revoke_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let admin = authorize_admin(&st, &headers)?;
    let record = st.keys.revoke(&id)?;
    tracing::info!(by = %admin.name, id = %record.id, "API key revoked");
    Ok(Json(key_json(&record)).into_response())
}
