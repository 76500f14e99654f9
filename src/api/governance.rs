//! Admin routes for retention policies, legal holds and erasure, and the
//! background retention task.
//!
//! Every change here, every erasure and every retention run is appended to
//! the log as an audit event (under the internal app id) before it takes
//! effect; if that fails, nothing changes. Those audit events never carry a
//! subject in the clear: they name it by pseudonym, so erasing a subject
//! cannot be undone by reading the record of its erasure.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::audit::{Access, Who, authorize, record_access, with_audit_header};
use super::write::{body, json_body, no_options};
use super::{ApiError, AppState};
use crate::auth::Role;
use crate::event::{Outcome, format_rfc3339_ms};
use crate::retention::{self, Hold, Plan, Policy};
use crate::sequencer::now_ms;
use crate::vault::Tombstone;

/// Most indexes one erasure request may name.
pub const MAX_ERASURE_INDEXES: usize = 10_000;

fn parse<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let value = json_body(headers, &body(b)?)?;
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn text_field(name: &str, v: &str, max: usize) -> Result<(), ApiError> {
    if v.trim().is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{name}: 1 to {max} bytes of text without control characters"
        )));
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("a task failed: {e}")))?
        .map_err(ApiError::from)
}

fn held_conflict(plan: &Plan) -> ApiError {
    let mut holds: Vec<&str> = plan.held.iter().map(|(_, h)| h.as_str()).collect();
    holds.sort_unstable();
    holds.dedup();
    ApiError::new(
        StatusCode::CONFLICT,
        "held",
        format!(
            "{} event(s) are under legal hold ({}); release the hold first",
            plan.held.len(),
            holds.join(", ")
        ),
    )
}

/// Give exactly one of `subject` and `indexes`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ErasureRequest {
    /// Erase every event of this data subject (and destroy its data key).
    #[schema(min_length = 1, max_length = 256)]
    subject: Option<String>,
    /// Erase these events.
    #[schema(min_items = 1, max_items = 10000)]
    indexes: Option<Vec<u64>>,
    /// Why; recorded in the log.
    #[schema(min_length = 1, max_length = 512)]
    reason: String,
}

/// `POST /v1/erasure` `{"subject":…,"reason":…}` or `{"indexes":[…],"reason":…}`:
/// destroys the bodies and salts (and for a subject its data key); the
/// leaves stay. 409 if any event concerned is under a legal hold.
#[utoipa::path(post, path = "/v1/erasure", tag = "admin",
    security(("api_key" = ["admin"])),
    request_body(content = ErasureRequest, content_type = "application/json", description = "At most 64 KiB"),
    responses(
        (status = 200, description = "What was erased", body = super::openapi::ErasureResult, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event recording this change"))),
        (status = 400, description = "An invalid request", body = super::openapi::ErrorBody),
        (status = 404, description = "An index beyond the log", body = super::openapi::ErrorBody),
        (status = 409, description = "An event concerned is under a legal hold", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn erase(
    State(st): State<AppState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = authorize(&st, &headers, Role::Admin)?;
    let req: ErasureRequest = parse(&headers, b)?;
    text_field("reason", &req.reason, 512)?;
    let indexes = req.indexes.clone().unwrap_or_default();
    match (&req.subject, &req.indexes) {
        (Some(s), None) => text_field("subject", s, 256)?,
        (None, Some(list)) if !list.is_empty() && list.len() <= MAX_ERASURE_INDEXES => {}
        (None, Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "indexes: 1 to {MAX_ERASURE_INDEXES} leaf indexes"
            )));
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of subject and indexes",
            ));
        }
    }
    let size = st.view.durable_size();
    if let Some(bad) = indexes.iter().find(|i| **i >= size) {
        return Err(ApiError::not_found(format!("no event at index {bad}")));
    }
    let vault = st.vault.clone();
    let subject = req.subject.clone();
    let plan =
        blocking(move || retention::plan_erasure(&vault, size, subject.as_deref(), &indexes))
            .await?;
    if !plan.held.is_empty() {
        return Err(held_conflict(&plan));
    }
    let pseudonym = req
        .subject
        .as_deref()
        .map(|s| st.vault.subject_pseudonym(s));
    let receipt = record_access(
        &st,
        &key,
        Access {
            action: "admin.erasure",
            resource: match &pseudonym {
                Some(p) => ("subject", p.clone()),
                None => ("events", format!("{} event(s)", plan.erase.len())),
            },
            subject: None,
            outcome: Outcome::Success,
            context: json!({
                "reason": req.reason,
                "subject_pseudonym": pseudonym,
                "indexes": plan.erase.iter().take(1000).collect::<Vec<_>>(),
                "count": plan.erase.len(),
            }),
        },
    )
    .await?;
    let tomb = Tombstone {
        erased_at: format_rfc3339_ms(now_ms()),
        reason: req.reason.clone(),
        cause: "erasure".into(),
        by: key.name.clone(),
    };
    let vault = st.vault.clone();
    let subject = req.subject.clone();
    let list = plan.erase.clone();
    let outcome = blocking(move || vault.erase(subject.as_deref(), &list, &tomb)).await?;
    tracing::info!(by = %key.name, erased = outcome.erased.len(), keys = outcome.keys_destroyed, "erasure");
    let body = json!({
        "erased": outcome.erased,
        "keys_destroyed": outcome.keys_destroyed,
        "keys_replaced": outcome.keys_replaced,
        "audit_index": receipt.index,
    });
    Ok(with_audit_header(Json(body).into_response(), &receipt))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyRequest {
    /// Only events of this app (else every app).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"
    )]
    app: Option<String>,
    /// Only events with this action (else every action).
    #[schema(min_length = 1, max_length = 128)]
    action: Option<String>,
    /// Days after receipt an event is kept; 0 erases at the next run.
    #[schema(minimum = 0, maximum = 36500)]
    keep_days: u32,
}

/// `POST /v1/admin/retention` `{"app":…,"action":…,"keep_days":N}`.
#[utoipa::path(post, path = "/v1/admin/retention", tag = "admin",
    security(("api_key" = ["admin"])),
    request_body(content = PolicyRequest, content_type = "application/json", description = "At most 64 KiB"),
    responses(
        (status = 201, description = "The policy", body = crate::retention::Policy, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event recording this change"))),
        (status = 400, description = "An invalid policy", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn create_policy(
    State(st): State<AppState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = authorize(&st, &headers, Role::Admin)?;
    let req: PolicyRequest = parse(&headers, b)?;
    if let Some(a) = &req.app {
        crate::event::validate_app_id(a).map_err(|e| ApiError::bad_request(format!("app: {e}")))?;
    }
    if let Some(a) = &req.action {
        text_field("action", a, 128)?;
    }
    if req.keep_days > 36_500 {
        return Err(ApiError::bad_request("keep_days: at most 36500"));
    }
    let policy = Policy {
        id: retention::new_id()?,
        app: req.app,
        action: req.action,
        keep_days: req.keep_days,
        created_at: format_rfc3339_ms(now_ms()),
        created_by: key.name.clone(),
    };
    let id = policy.id.clone();
    create_governance(
        &st,
        &key,
        ("admin.retention.set", "retention_policy", "policy"),
        id,
        policy,
        retention::put_policy,
    )
    .await
}

/// Records the creation of a policy or hold in the log, then stores it, and
/// answers 201 with it. `what` = (audit action, resource type, context key).
async fn create_governance<T: serde::Serialize + Clone + Send + Sync + 'static>(
    st: &AppState,
    key: &crate::auth::ApiKeyRecord,
    what: (&'static str, &'static str, &'static str),
    id: String,
    value: T,
    put: fn(&dyn crate::store::Store, &T) -> Result<(), crate::store::StoreError>,
) -> Result<Response, ApiError> {
    let (action, kind, field) = what;
    let receipt = record_access(
        st,
        key,
        Access {
            action,
            resource: (kind, id),
            subject: None,
            outcome: Outcome::Success,
            context: Value::Object([(field.to_string(), json!(value))].into_iter().collect()),
        },
    )
    .await?;
    let store = st.store.clone();
    let v = value.clone();
    blocking(move || put(store.as_ref(), &v)).await?;
    Ok(with_audit_header(
        (StatusCode::CREATED, Json(json!(value))).into_response(),
        &receipt,
    ))
}

/// `GET /v1/admin/retention`.
#[utoipa::path(get, path = "/v1/admin/retention", tag = "admin",
    security(("api_key" = ["admin"])),
    responses((status = 200, description = "Every retention policy", body = super::openapi::PolicyList)))]
pub(super) async fn list_policies(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Role::Admin)?;
    let store = st.store.clone();
    let list = blocking(move || retention::policies(store.as_ref())).await?;
    Ok(Json(json!({ "policies": list })).into_response())
}

/// `DELETE /v1/admin/retention/<id>`.
#[utoipa::path(delete, path = "/v1/admin/retention/{id}", tag = "admin",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "The policy's id")),
    responses(
        (status = 200, description = "Removed", body = super::openapi::Removed, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event recording this change"))),
        (status = 404, description = "No such policy", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn remove_policy(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let key = authorize(&st, &headers, Role::Admin)?;
    remove_governance(&st, &key, id, "admin.retention.remove", "retention_policy").await
}

async fn remove_governance(
    st: &AppState,
    key: &crate::auth::ApiKeyRecord,
    id: String,
    action: &str,
    kind: &'static str,
) -> Result<Response, ApiError> {
    let store = st.store.clone();
    let lookup = id.clone();
    let exists = blocking(move || {
        let policies = retention::policies(store.as_ref())?;
        let holds = retention::holds(store.as_ref())?;
        Ok(policies.iter().any(|p| p.id == lookup) || holds.iter().any(|h| h.id == lookup))
    })
    .await?;
    if !exists {
        return Err(ApiError::not_found(format!("no {kind} with id {id}")));
    }
    let receipt = record_access(
        st,
        key,
        Access {
            action,
            resource: (kind, id.clone()),
            subject: None,
            outcome: Outcome::Success,
            context: json!({}),
        },
    )
    .await?;
    let store = st.store.clone();
    let removed = blocking(move || {
        if kind == "legal_hold" {
            retention::remove_hold(store.as_ref(), &id)
        } else {
            retention::remove_policy(store.as_ref(), &id)
        }
    })
    .await?;
    if !removed {
        return Err(ApiError::not_found(format!("no {kind} with that id")));
    }
    Ok(with_audit_header(
        Json(json!({ "removed": true })).into_response(),
        &receipt,
    ))
}

/// Give exactly one of `subject` and `app`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HoldRequest {
    /// Hold every event of this data subject.
    #[schema(min_length = 1, max_length = 256)]
    subject: Option<String>,
    /// Hold every event of this app.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"
    )]
    app: Option<String>,
    /// Why (case number, ...); recorded in the log.
    #[schema(min_length = 1, max_length = 512)]
    reason: String,
}

/// `POST /v1/admin/holds` `{"subject":…,"reason":…}` or `{"app":…,"reason":…}`.
#[utoipa::path(post, path = "/v1/admin/holds", tag = "admin",
    security(("api_key" = ["admin"])),
    request_body(content = HoldRequest, content_type = "application/json", description = "At most 64 KiB"),
    responses(
        (status = 201, description = "The hold", body = crate::retention::Hold, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event recording this change"))),
        (status = 400, description = "An invalid hold", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn create_hold(
    State(st): State<AppState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = authorize(&st, &headers, Role::Admin)?;
    let req: HoldRequest = parse(&headers, b)?;
    text_field("reason", &req.reason, 512)?;
    let (pseudonym, app) = match (&req.subject, &req.app) {
        (Some(s), None) => {
            text_field("subject", s, 256)?;
            (Some(st.vault.subject_pseudonym(s)), None)
        }
        (None, Some(a)) => {
            crate::event::validate_app_id(a)
                .map_err(|e| ApiError::bad_request(format!("app: {e}")))?;
            (None, Some(a.clone()))
        }
        _ => {
            return Err(ApiError::bad_request("give exactly one of subject and app"));
        }
    };
    let hold = Hold {
        id: retention::new_id()?,
        subject_pseudonym: pseudonym,
        app,
        reason: req.reason,
        created_at: format_rfc3339_ms(now_ms()),
        created_by: key.name.clone(),
    };
    let id = hold.id.clone();
    create_governance(
        &st,
        &key,
        ("admin.hold.create", "legal_hold", "hold"),
        id,
        hold,
        retention::put_hold,
    )
    .await
}

/// `GET /v1/admin/holds`.
#[utoipa::path(get, path = "/v1/admin/holds", tag = "admin",
    security(("api_key" = ["admin"])),
    responses((status = 200, description = "Every legal hold", body = super::openapi::HoldList)))]
pub(super) async fn list_holds(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Role::Admin)?;
    let store = st.store.clone();
    let list = blocking(move || retention::holds(store.as_ref())).await?;
    Ok(Json(json!({ "holds": list })).into_response())
}

/// `DELETE /v1/admin/holds/<id>`: releases a hold.
#[utoipa::path(delete, path = "/v1/admin/holds/{id}", tag = "admin",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "The hold's id")),
    responses(
        (status = 200, description = "Released", body = super::openapi::Removed, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event recording this change"))),
        (status = 404, description = "No such hold", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn release_hold(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let key = authorize(&st, &headers, Role::Admin)?;
    remove_governance(&st, &key, id, "admin.hold.release", "legal_hold").await
}

/// One retention run: plan, record it in the log, then erase.
async fn run_retention(st: &AppState, who: Who) -> Result<Value, ApiError> {
    let vault = st.vault.clone();
    let size = st.view.durable_size();
    let now = now_ms();
    let (plan, policies) = blocking(move || {
        let policies = retention::policies(vault.as_ref())?.len();
        Ok((retention::plan_retention(&vault, size, now)?, policies))
    })
    .await?;
    let receipt = record_access(
        st,
        who,
        Access {
            action: "retention.run",
            resource: ("retention", "run".into()),
            subject: None,
            outcome: Outcome::Success,
            context: json!({
                "policies": policies,
                "expired": plan.erase.len(),
                "held": plan.held.len(),
            }),
        },
    )
    .await?;
    let vault = st.vault.clone();
    let p = plan.clone();
    let out = blocking(move || retention::apply_retention(&vault, &p, now)).await?;
    Ok(json!({
        "erased": out.erased.len(),
        "held": plan.held.len(),
        "keys_destroyed": out.keys_destroyed,
        "keys_replaced": out.keys_replaced,
        "audit_index": receipt.index,
    }))
}

/// `POST /v1/admin/retention/run`: runs retention now.
#[utoipa::path(post, path = "/v1/admin/retention/run", tag = "admin",
    security(("api_key" = ["admin"])),
    responses((status = 200, description = "What the run erased", body = super::openapi::RetentionRun)))]
pub(super) async fn run_retention_now(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = authorize(&st, &headers, Role::Admin)?;
    no_options(query.as_deref(), &headers, b)?;
    let out = run_retention(&st, Who::from(&key)).await?;
    Ok(Json(out).into_response())
}

/// Runs retention every `interval` while the server runs (only when a
/// policy exists).
pub async fn retention_loop(st: AppState, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let store = st.store.clone();
        let any = tokio::task::spawn_blocking(move || retention::policies(store.as_ref()))
            .await
            .ok()
            .and_then(Result::ok)
            .is_some_and(|p| !p.is_empty());
        if !any {
            continue;
        }
        match run_retention(&st, Who::service("retention")).await {
            Ok(out) => tracing::info!(result = %out, "retention run"),
            Err(e) => {
                tracing::error!(status = %e.status(), "retention run failed; retrying at the next interval")
            }
        }
    }
}
