//! Admin routes: API keys, and the auditors' list of admin actions.
//!
//! The admin actions recorded in the log (a backup taken, a policy or hold
//! created or removed, an erasure, a retention run) are audit events of
//! the log's own app naming the acting key's id as well as its name (names
//! are not unique); `GET /v1/admin/actions` lists them for auditors. So are
//! the creation and revocation of API keys (`admin.key.create`,
//! `admin.key.revoke`), naming the key's id, name, role and app, never its
//! secret: each is durable in the log before the key is stored or revoked,
//! and so before the admin is answered. Keys made while the log cannot
//! append (the first admin key, made with the log; the admin key a restore
//! makes) are recorded by the log itself at its next start, before it
//! serves a request ([`record_first_keys`]).
//!
//! The request and answer types below are the API's only description of
//! these shapes: the handlers take and return them, the OpenAPI document
//! derives its schemas from them, and [`crate::client::Client`] sends and
//! parses them. A key's secret never appears in them except once, in
//! [`CreatedKey::key`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::audit::{
    Access, Who, authorize, own_events_query, record_access, record_access_once, search_before,
    with_audit_header,
};
use super::write::{body, json_body};
use super::{ApiError, AppState};
use crate::auth::{ApiKeyRecord, INTERNAL_APP, Role};
use crate::crypto::Field;
use crate::event::Outcome;
use crate::search;

/// Whether an action of the log's own app is an admin action.
pub(super) fn is_admin_action(action: &str) -> bool {
    action.starts_with("admin.") || action == "retention.run"
}

fn authorize_admin(st: &AppState, headers: &HeaderMap) -> Result<ApiKeyRecord, ApiError> {
    Ok(st.keys.authorize(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        Role::Admin,
    )?)
}

/// The body of `POST /v1/admin/keys`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1 to 64 characters of letters, digits, `.`, `_` or `-`.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    /// `writer`, `auditor` or `admin`; text, so that a wrong role is answered
    /// with a message naming the three.
    #[schema(value_type = crate::auth::Role)]
    pub role: String,
    /// Writer keys only: the app id its events are appended under (default:
    /// the name).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"
    )]
    pub app: Option<String>,
}

/// An API key, without its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyRecord {
    /// The key id (16 hex digits), also the first part of the token.
    pub id: String,
    /// The name it was created with.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Writer keys: the app id its events are recorded under; else null.
    pub app: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; null while the key is valid.
    pub revoked_at: Option<String>,
}

impl From<&ApiKeyRecord> for KeyRecord {
    fn from(r: &ApiKeyRecord) -> Self {
        KeyRecord {
            id: r.id.clone(),
            name: r.name.clone(),
            role: r.role,
            app: r.app.clone(),
            created_at: r.created_at.clone(),
            revoked_at: r.revoked_at.clone(),
        }
    }
}

/// The answer to `POST /v1/admin/keys`: the new key with its token.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The key.
    #[serde(flatten)]
    pub record: KeyRecord,
    /// The token for `Authorization: Bearer`; shown only now.
    pub key: String,
}

/// The answer to `GET /v1/admin/keys`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyList {
    /// Every key, revoked ones included.
    pub keys: Vec<KeyRecord>,
}

/// `POST /v1/admin/keys` `{"name":…,"role":"writer|auditor|admin","app":…}`:
/// the token is in the answer and nowhere else.
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin",
    security(("api_key" = ["admin"])),
    request_body(content = CreateKey, content_type = "application/json", description = "At most 64 KiB"),
    responses(
        (status = 201, description = "The key; `key` is the token, shown only now", body = CreatedKey, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event recording this change"))),
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
    let (record, token) = st.keys.new_key(&req.name, role, req.app.as_deref())?;
    let receipt = record_key_action(&st, &admin, "admin.key.create", &record, json!({})).await?;
    st.keys.store(&record)?;
    tracing::info!(by = %admin.name, id = %record.id, name = %record.name, role = ?record.role, "API key created");
    let created = CreatedKey {
        record: KeyRecord::from(&record),
        key: token,
    };
    Ok(with_audit_header(
        (StatusCode::CREATED, Json(created)).into_response(),
        &receipt,
    ))
}

/// Appends `action` on the key `record` (its id, name, role and app; no
/// secret) by `who`, and waits until it is durable.
async fn record_key_action(
    st: &AppState,
    who: impl Into<Who>,
    action: &str,
    record: &ApiKeyRecord,
    extra: Value,
) -> Result<crate::sequencer::EntryReceipt, ApiError> {
    record_key_action_once(st, who, action, record, extra, None).await
}

/// As [`record_key_action`], under the log's own idempotency id `id`.
async fn record_key_action_once(
    st: &AppState,
    who: impl Into<Who>,
    action: &str,
    record: &ApiKeyRecord,
    extra: Value,
    id: Option<String>,
) -> Result<crate::sequencer::EntryReceipt, ApiError> {
    let mut details = json!({ "key": KeyRecord::from(record) });
    if let (Some(d), Value::Object(extra)) = (details.as_object_mut(), extra) {
        d.extend(extra);
    }
    record_access_once(
        st,
        who,
        Access {
            action,
            resource: ("api_key", record.id.clone()),
            subject: None,
            outcome: Outcome::Success,
            context: details,
        },
        id,
    )
    .await
}

/// At a start, before the log serves a request: records every key made
/// while it could not append, as `admin.key.create` by the log itself.
///
/// - The keys a restore made ([`crate::auth::ApiKeys::store_unrecorded`]):
///   each is recorded under an idempotency id of its own, then made usable
///   ([`crate::auth::ApiKeys::store_recorded`]), so a start that crashed
///   in between records nothing twice, and none is usable unrecorded. At
///   most [`crate::auth::MAX_UNRECORDED_KEYS`], one record read otherwise.
/// - Every key the log was created with (the first admin key), at its
///   first start: only an empty log does this, so a start that crashed
///   before the record was durable records it on the next start, and a
///   start costs nothing once the log holds an event.
pub async fn record_first_keys(st: &AppState) -> Result<(), ApiError> {
    for record in st.keys.unrecorded()? {
        record_key_action_once(
            st,
            Who::service(INTERNAL_APP),
            "admin.key.create",
            &record,
            json!({ "restored": true }),
            Some(format!("admin.key.create/{}", record.id)),
        )
        .await?;
        st.keys.store_recorded(&record)?;
    }
    if st.view.durable_size() > 0 {
        return Ok(());
    }
    for record in st.keys.list()? {
        record_key_action(
            st,
            Who::service(INTERNAL_APP),
            "admin.key.create",
            &record,
            json!({ "first_start": true }),
        )
        .await?;
    }
    Ok(())
}

/// `GET /v1/admin/keys`: every key, without secrets.
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin",
    security(("api_key" = ["admin"])),
    responses((status = 200, description = "Every key, revoked ones included", body = KeyList)))]
pub(super) async fn list_keys(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize_admin(&st, &headers)?;
    let keys = st.keys.list()?.iter().map(KeyRecord::from).collect();
    Ok(Json(KeyList { keys }).into_response())
}

/// `DELETE /v1/admin/keys/<id>`: revokes a key at once.
#[utoipa::path(delete, path = "/v1/admin/keys/{id}", tag = "admin",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "The key id (16 hex digits)")),
    responses(
        (status = 200, description = "The revoked key", body = KeyRecord, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event recording this change"))),
        (status = 404, description = "No such key", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn revoke_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let admin = authorize_admin(&st, &headers)?;
    let found = st
        .keys
        .get(&id)?
        .ok_or_else(|| crate::auth::KeyAdminError::NotFound(id.clone()))?;
    let receipt = record_key_action(
        &st,
        &admin,
        "admin.key.revoke",
        &found,
        json!({ "already_revoked": found.revoked_at.is_some() }),
    )
    .await?;
    let record = st.keys.revoke(&id)?;
    tracing::info!(by = %admin.name, id = %record.id, "API key revoked");
    Ok(with_audit_header(
        Json(KeyRecord::from(&record)).into_response(),
        &receipt,
    ))
}

/// Paging: the query of `GET /v1/admin/actions`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ActionParams {
    /// Page size: 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /v1/admin/actions?limit=&cursor=`: the admin actions the log
/// recorded (keys, backups, policies, holds, erasures, retention runs), newest
/// first, each with the acting key's id.
/// A page examines a bounded number of the log's own audit events, so it
/// may hold fewer actions than `limit` (even none) and still have a
/// `next_cursor`. Recorded like every auditor read.
#[utoipa::path(get, path = "/v1/admin/actions", tag = "auditor",
    security(("api_key" = ["auditor"])),
    params(ActionParams),
    responses(
        (status = 200, description = "A page of admin actions, newest first", body = super::openapi::AdminActionPage, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event this read appended"))),
        (status = 400, description = "An invalid limit or cursor", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn list_actions(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ActionParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = authorize(&st, &headers, Role::Auditor)?;
    let Query(p) =
        q.map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let query = own_events_query(
        vec![(Field::App, INTERNAL_APP.to_string())],
        p.limit,
        p.cursor.as_deref(),
    )?;
    let receipt = record_access(
        &st,
        &key,
        Access {
            action: "audit.admin_actions",
            resource: ("admin_actions", "list".into()),
            subject: None,
            outcome: Outcome::Success,
            context: json!({ "limit": query.limit, "cursor": p.cursor }),
        },
    )
    .await?;
    let page = search_before(&st, &receipt, query).await?;
    let actions: Vec<Value> = page
        .hits
        .iter()
        .filter(|h| is_admin_action(&h.event.action))
        .map(|h| {
            let context = h.event.context.as_ref();
            let field = |name: &str| context.and_then(|c| c.get(name)).cloned();
            json!({
                "index": h.index,
                "leaf_hash": h.leaf_hash.to_base64(),
                "at": h.event.occurred_at,
                "action": h.event.action,
                "outcome": h.event.outcome,
                "actor": { "name": h.event.actor.id, "type": h.event.actor.kind, "key_id": field("key_id") },
                "resource": { "type": h.event.resource.kind, "id": h.event.resource.id },
                "details": field("details").unwrap_or(Value::Null),
            })
        })
        .collect();
    let body = json!({
        "actions": actions,
        "next_cursor": page.next.as_ref().map(search::encode_cursor),
    });
    Ok(with_audit_header(Json(body).into_response(), &receipt))
}
