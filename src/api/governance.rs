//! Admin routes for retention policies, legal holds and erasure, and the
//! background retention task.
//!
//! Every change here, every erasure and every retention run is appended to
//! the log as an audit event (under the internal app id) before it takes
//! effect; if that fails, nothing changes. Those audit events never carry a
//! subject in the clear: they name it by pseudonym, so erasing a subject
//! cannot be undone by reading the record of its erasure. A legal hold
//! shows admins the subject as they typed it, kept sealed to the subject
//! (see [`crate::retention`]); the audit record of the hold names the
//! pseudonym alone.
//!
//! The request and answer types here are the API's only description of
//! these shapes: the handlers take and return them, the OpenAPI document
//! derives its schemas from them, and [`crate::client::Client`] sends and
//! parses them.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::audit::{Access, Who, authorize, record_access, search_ready, with_audit_header};
use super::write::{body, json_body, no_options};
use super::{ApiError, AppState};
use crate::auth::Role;
use crate::event::{Outcome, format_rfc3339_ms};
use crate::retention::{self, HeldSubject, Hold, Policy};
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

fn subject_held_conflict(hold: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "held",
        format!("the subject is under legal hold ({hold}); release the hold first"),
    )
}

fn held_conflict(held: &[(u64, String)]) -> ApiError {
    let mut holds: Vec<&str> = held.iter().map(|(_, h)| h.as_str()).collect();
    holds.sort_unstable();
    holds.dedup();
    ApiError::new(
        StatusCode::CONFLICT,
        "held",
        format!(
            "{} event(s) are under legal hold ({}); release the hold first",
            held.len(),
            holds.join(", ")
        ),
    )
}

/// The body of `POST /v1/erasure`. Give exactly one of `subject` and `indexes`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// Erase every event of this data subject (and destroy its data key).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    pub subject: Option<String>,
    /// Erase these events.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1, max_items = 10000)]
    pub indexes: Option<Vec<u64>>,
    /// Why; recorded in the log.
    #[schema(min_length = 1, max_length = 512)]
    pub reason: String,
}

/// The answer to `POST /v1/erasure`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErasureResult {
    /// Leaf indexes newly erased.
    pub erased: Vec<u64>,
    /// Data keys destroyed (no live event was left under them).
    pub keys_destroyed: u64,
    /// Data keys replaced (their live events were re-sealed under a new key).
    pub keys_replaced: u64,
    /// `pending` after a subject's erasure: its key is destroyed and every
    /// event of the subject reads as erased (410) and is left out of
    /// searches now, while their sealed bodies, salts and index entries
    /// are deleted in the background (`GET /healthz` counts the erasures
    /// still being cleaned up); else `none`. Events named by index are
    /// deleted before the answer.
    #[schema(example = "pending")]
    pub cleanup: CleanupState,
    /// Leaf index of the audit event recording the erasure.
    pub audit_index: u64,
}

/// Whether an erasure's deletions continue in the background.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CleanupState {
    /// Nothing is left to do.
    None,
    /// The erased subject's events are being deleted in the background.
    Pending,
}

/// `POST /v1/erasure` `{"subject":…,"reason":…}` or `{"indexes":[…],"reason":…}`:
/// destroys the bodies and salts (and for a subject its data key); the
/// leaves stay. 409 if any event concerned is under a legal hold.
#[utoipa::path(post, path = "/v1/erasure", tag = "admin",
    security(("api_key" = ["admin"])),
    request_body(content = ErasureRequest, content_type = "application/json", description = "At most 64 KiB"),
    responses(
        (status = 200, description = "What was erased now, and whether a subject's deletions continue in the background", body = ErasureResult, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event recording this change"))),
        (status = 400, description = "An invalid request", body = super::openapi::ErrorBody),
        (status = 404, description = "An index beyond the log", body = super::openapi::ErrorBody),
        (status = 409, description = "An event concerned is under a legal hold", body = super::openapi::ErrorBody),
        (status = 503, description = "The search index is being built (an erasure by subject finds its events through it)", body = super::openapi::ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
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
    if req.subject.is_some() {
        // A subject's events are found (and checked against app holds)
        // through the search index.
        search_ready(&st)?;
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
    if let Some(hold) = &plan.subject_held {
        return Err(subject_held_conflict(hold));
    }
    if !plan.held.is_empty() {
        return Err(held_conflict(&plan.held));
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
            // A subject's events are not counted: its key goes, whatever
            // their number.
            context: match &pseudonym {
                Some(p) => json!({
                    "reason": req.reason,
                    "subject_pseudonym": p,
                }),
                None => json!({
                    "reason": req.reason,
                    "subject_pseudonym": null,
                    "indexes": plan.erase.iter().take(1000).collect::<Vec<_>>(),
                    "count": plan.erase.len(),
                }),
            },
        },
    )
    .await?;
    let tomb = Tombstone {
        erased_at: format_rfc3339_ms(st.view.clock().now_ms()),
        reason: req.reason.clone(),
        cause: "erasure".into(),
        by: key.name.clone(),
    };
    let vault = st.vault.clone();
    let subject = req.subject.clone();
    let planned = plan.clone();
    let done =
        blocking(move || retention::destroy(&vault, &planned, subject.as_deref(), &tomb, false))
            .await?;
    let Some(outcome) = done.outcome else {
        // A hold stored after the plan: nothing was erased; say so in the
        // log next to the record of the attempt.
        record_access(
            &st,
            &key,
            Access {
                action: "admin.erasure",
                resource: ("erasure", receipt.index.to_string()),
                subject: None,
                outcome: Outcome::Failure,
                context: json!({
                    "refused": "legal hold",
                    "attempt_index": receipt.index,
                    "held": done.held.len(),
                }),
            },
        )
        .await?;
        return Err(match &done.subject_held {
            Some(hold) => subject_held_conflict(hold),
            None => held_conflict(&done.held),
        });
    };
    tracing::info!(by = %key.name, erased = outcome.erased.len(), keys = outcome.keys_destroyed, "erasure");
    let body = ErasureResult {
        erased: outcome.erased,
        keys_destroyed: outcome.keys_destroyed as u64,
        keys_replaced: outcome.keys_replaced as u64,
        cleanup: if outcome.cleanup_pending {
            CleanupState::Pending
        } else {
            CleanupState::None
        },
        audit_index: receipt.index,
    };
    Ok(with_audit_header(Json(body).into_response(), &receipt))
}

/// The body of `POST /v1/admin/retention`; the answer is the stored
/// [`Policy`].
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    /// Only events of this app (else every app).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"
    )]
    pub app: Option<String>,
    /// Only events with this action (else every action).
    #[schema(min_length = 1, max_length = 128)]
    pub action: Option<String>,
    /// Days after receipt an event is kept; 0 erases at the next run.
    #[schema(minimum = 0, maximum = 36500)]
    pub keep_days: u32,
}

/// The answer to `GET /v1/admin/retention`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyList {
    /// Every retention policy.
    pub policies: Vec<Policy>,
}

/// The answer to removing a policy or releasing a hold.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Removed {
    /// Always true: a missing id is answered 404.
    pub removed: bool,
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
        created_at: format_rfc3339_ms(st.view.clock().now_ms()),
        created_by: key.name.clone(),
    };
    let id = policy.id.clone();
    let shown = json!(policy);
    create_governance(
        &st,
        &key,
        ("admin.retention.set", "retention_policy", "policy"),
        (id, shown.clone(), shown),
        policy,
        retention::put_policy,
    )
    .await
}

/// Records the creation of a policy or hold in the log (as `audited`),
/// then stores `value`, and answers 201 with `shown`. `what` = (audit
/// action, resource type, context key).
async fn create_governance<T: Send + Sync + 'static>(
    st: &AppState,
    key: &crate::auth::ApiKeyRecord,
    what: (&'static str, &'static str, &'static str),
    (id, audited, shown): (String, Value, Value),
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
            context: Value::Object([(field.to_string(), audited)].into_iter().collect()),
        },
    )
    .await?;
    let store = st.store.clone();
    blocking(move || put(store.as_ref(), &value)).await?;
    Ok(with_audit_header(
        (StatusCode::CREATED, Json(shown)).into_response(),
        &receipt,
    ))
}

/// `GET /v1/admin/retention`.
#[utoipa::path(get, path = "/v1/admin/retention", tag = "admin",
    security(("api_key" = ["admin"])),
    responses((status = 200, description = "Every retention policy", body = PolicyList)))]
pub(super) async fn list_policies(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Role::Admin)?;
    let store = st.store.clone();
    let list = blocking(move || retention::policies(store.as_ref())).await?;
    Ok(Json(PolicyList { policies: list }).into_response())
}

/// `DELETE /v1/admin/retention/<id>`.
#[utoipa::path(delete, path = "/v1/admin/retention/{id}", tag = "admin",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "The policy's id")),
    responses(
        (status = 200, description = "Removed", body = Removed, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event recording this change"))),
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
        Json(Removed { removed: true }).into_response(),
        &receipt,
    ))
}

/// The body of `POST /v1/admin/holds`; the answer is the stored [`Hold`].
/// Give exactly one of `subject` and `app`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    /// Hold every event of this data subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    pub subject: Option<String>,
    /// Hold every event of this app.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"
    )]
    pub app: Option<String>,
    /// Why (case number, ...); recorded in the log.
    #[schema(min_length = 1, max_length = 512)]
    pub reason: String,
}

/// How a subject hold's subject is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectForm {
    /// `subject` is the subject as the admin typed it.
    Typed,
    /// The hold was made before subjects were kept: only its pseudonym
    /// is known.
    PseudonymOnly,
    /// The kept subject no longer opens: its key was destroyed.
    Unreadable,
}

/// A legal hold, as admins see it: the answer to creating one, and an
/// entry of the list.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HoldEntry {
    /// Random id.
    pub id: String,
    /// The held subject as the admin typed it (when `subject_form` is
    /// `typed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The held subject's pseudonym (its index term, 64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_pseudonym: Option<String>,
    /// For a subject hold: whether `subject` is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_form: Option<SubjectForm>,
    /// The held app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Why (case number, ...).
    pub reason: String,
    /// RFC 3339.
    pub created_at: String,
    /// The admin key's name.
    pub created_by: String,
}

impl HoldEntry {
    fn new(h: Hold, subject: Option<HeldSubject>) -> HoldEntry {
        let (subject, form) = match subject {
            None => (None, None),
            Some(HeldSubject::Typed(s)) => (Some(s), Some(SubjectForm::Typed)),
            Some(HeldSubject::PseudonymOnly) => (None, Some(SubjectForm::PseudonymOnly)),
            Some(HeldSubject::Unreadable) => (None, Some(SubjectForm::Unreadable)),
        };
        HoldEntry {
            id: h.id,
            subject,
            subject_pseudonym: h.subject_pseudonym,
            subject_form: form,
            app: h.app,
            reason: h.reason,
            created_at: h.created_at,
            created_by: h.created_by,
        }
    }
}

/// The answer to `GET /v1/admin/holds`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HoldList {
    /// Every legal hold.
    pub holds: Vec<HoldEntry>,
}

/// `POST /v1/admin/holds` `{"subject":…,"reason":…}` or `{"app":…,"reason":…}`.
#[utoipa::path(post, path = "/v1/admin/holds", tag = "admin",
    security(("api_key" = ["admin"])),
    request_body(content = HoldRequest, content_type = "application/json", description = "At most 64 KiB"),
    responses(
        (status = 201, description = "The hold", body = HoldEntry, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event recording this change"))),
        (status = 400, description = "An invalid hold", body = super::openapi::ErrorBody),
        (status = 409, description = "The log keeps as many holds as it may", body = super::openapi::ErrorBody),
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
    let id = retention::new_id()?;
    let (vault, store, typed, hold_id) = (
        st.vault.clone(),
        st.store.clone(),
        req.subject.clone(),
        id.clone(),
    );
    // The subject is sealed before anything is recorded: a failure here
    // changes nothing the log shows.
    let sealed = blocking(move || {
        if retention::holds(store.as_ref())?.len() >= retention::MAX_HOLDS {
            return Ok(None);
        }
        typed
            .map(|s| retention::seal_hold_subject(&vault, &hold_id, &s))
            .transpose()
            .map(Some)
    })
    .await?;
    let Some(sealed) = sealed else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_holds",
            format!(
                "the log keeps at most {} legal holds; release one first",
                retention::MAX_HOLDS
            ),
        ));
    };
    let hold = Hold {
        id: id.clone(),
        subject_pseudonym: pseudonym,
        subject_sealed: sealed,
        app,
        reason: req.reason,
        created_at: format_rfc3339_ms(st.view.clock().now_ms()),
        created_by: key.name.clone(),
    };
    // The log's record names the pseudonym alone.
    let audited = json!(Hold {
        subject_sealed: None,
        ..hold.clone()
    });
    let shown = json!(HoldEntry::new(
        hold.clone(),
        req.subject.map(HeldSubject::Typed)
    ));
    create_governance(
        &st,
        &key,
        ("admin.hold.create", "legal_hold", "hold"),
        (id, audited, shown),
        hold,
        retention::put_hold,
    )
    .await
}

/// `GET /v1/admin/holds`.
#[utoipa::path(get, path = "/v1/admin/holds", tag = "admin",
    security(("api_key" = ["admin"])),
    responses((status = 200, description = "Every legal hold", body = HoldList)))]
pub(super) async fn list_holds(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st, &headers, Role::Admin)?;
    let vault = st.vault.clone();
    let holds = blocking(move || {
        retention::holds(vault.store().as_ref())?
            .into_iter()
            .map(|h| -> Result<HoldEntry, crate::store::StoreError> {
                let subject = retention::held_subject(&vault, &h)?;
                Ok(HoldEntry::new(h, subject))
            })
            .collect()
    })
    .await?;
    Ok(Json(HoldList { holds }).into_response())
}

/// `DELETE /v1/admin/holds/<id>`: releases a hold.
#[utoipa::path(delete, path = "/v1/admin/holds/{id}", tag = "admin",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "The hold's id")),
    responses(
        (status = 200, description = "Released", body = Removed, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event recording this change"))),
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

/// The answer to `POST /v1/admin/retention/run`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetentionRun {
    /// Events erased by this run.
    pub erased: u64,
    /// Expired events kept because of a legal hold.
    pub held: u64,
    /// Data keys destroyed.
    pub keys_destroyed: u64,
    /// Data keys replaced.
    pub keys_replaced: u64,
    /// Leaf index of the audit event recording the run.
    pub audit_index: u64,
}

/// One retention run: plan, record it in the log, then erase. Refused
/// while the search index is being built: its candidates come from it.
async fn run_retention(st: &AppState, who: Who) -> Result<RetentionRun, ApiError> {
    search_ready(st)?;
    let vault = st.vault.clone();
    let size = st.view.durable_size();
    let now = st.view.clock().now_ms();
    let (plan, policies) = blocking(move || {
        let policies = retention::policies(vault.store().as_ref())?.len();
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
    let done = blocking(move || retention::apply_retention(&vault, &p, now)).await?;
    let out = done.outcome.unwrap_or_default();
    Ok(RetentionRun {
        erased: out.erased.len() as u64,
        held: (plan.held.len() + done.held.len()) as u64,
        keys_destroyed: out.keys_destroyed as u64,
        keys_replaced: out.keys_replaced as u64,
        audit_index: receipt.index,
    })
}

/// `POST /v1/admin/retention/run`: runs retention now.
#[utoipa::path(post, path = "/v1/admin/retention/run", tag = "admin",
    security(("api_key" = ["admin"])),
    responses(
        (status = 200, description = "What the run erased", body = RetentionRun),
        (status = 503, description = "The search index is being built (retention finds its candidates through it)", body = super::openapi::ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
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
        // While the search index is built, the run waits for it.
        if !any || matches!(st.vault.index_building(), Ok(Some(_))) {
            continue;
        }
        match run_retention(&st, Who::service("retention")).await {
            Ok(out) => tracing::info!(result = %json!(out), "retention run"),
            Err(e) => {
                tracing::error!(status = %e.status(), "retention run failed; retrying at the next interval")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;
    use crate::sequencer::PreparedEvent;
    use crate::sequencer::test_log::{self, TestLogBuilder};

    fn prepared(subject: &str) -> PreparedEvent {
        test_log::prepared(&json!({
            "actor": {"id": "dr", "type": "user"}, "action": "record.read",
            "resource": {"type": "doc", "id": "d"}, "subject": subject,
            "purpose": "care", "outcome": "success", "occurred_at": "2026-11-25T10:00:00Z",
        }))
    }

    /// A log, its service state and an admin key's token.
    fn admin_log() -> (test_log::TestLog, AppState, String) {
        let log = TestLogBuilder::new("example.com/log").start();
        let state = super::super::test_state(&log);
        let (_, token) = state
            .keys
            .create("admin", crate::auth::Role::Admin, None)
            .unwrap();
        (log, state, token)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hold_stored_while_an_erasure_runs_is_honoured() {
        let (log, state, token) = admin_log();
        let inner = log.store.clone();
        log.submit("clinic", vec![prepared("held-subject")]).await;
        let app = super::super::router(state.clone());
        // The erasure plans (no hold yet), then waits on the disk to record
        // itself in the log: that is where the hold arrives.
        inner.hold_commits(true);
        let erasure = tokio::spawn(
            app.clone().oneshot(
                Request::post("/v1/erasure")
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(Body::from(
                        json!({"subject": "held-subject", "reason": "request"}).to_string(),
                    ))
                    .unwrap(),
            ),
        );
        while inner.held_commits() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let hold = Hold {
            id: "h1".into(),
            subject_pseudonym: Some(state.vault.subject_pseudonym("held-subject")),
            subject_sealed: None,
            app: None,
            reason: "case 7".into(),
            created_at: "t".into(),
            created_by: "admin".into(),
        };
        let store = state.store.clone();
        tokio::task::spawn_blocking(move || retention::put_hold(store.as_ref(), &hold))
            .await
            .unwrap()
            .unwrap();
        inner.hold_commits(false);
        let resp = erasure.await.unwrap().unwrap();
        let status = resp.status();
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert!(String::from_utf8_lossy(&body).contains("h1"));
        let vault = state.vault.clone();
        let kept = tokio::task::spawn_blocking(move || vault.event(0))
            .await
            .unwrap()
            .unwrap();
        assert!(kept.is_some(), "the held event was erased");
        log.shut_down().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hold_made_before_subjects_were_kept_lists_its_pseudonym_marked_as_such() {
        let (log, state, token) = admin_log();
        let pseudonym = state.vault.subject_pseudonym("old-subject");
        let old = Hold {
            id: "old".into(),
            subject_pseudonym: Some(pseudonym.clone()),
            subject_sealed: None,
            app: None,
            reason: "case 1".into(),
            created_at: "t".into(),
            created_by: "admin".into(),
        };
        let store = state.store.clone();
        tokio::task::spawn_blocking(move || retention::put_hold(store.as_ref(), &old))
            .await
            .unwrap()
            .unwrap();
        let app = super::super::router(state.clone());
        let resp = app
            .oneshot(
                Request::get("/v1/admin/holds")
                    .header("authorization", format!("Bearer {token}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let list: HoldList =
            serde_json::from_slice(&to_bytes(resp.into_body(), 1 << 20).await.unwrap()).unwrap();
        let h = &list.holds[0];
        assert_eq!(h.subject_form, Some(SubjectForm::PseudonymOnly));
        assert_eq!(h.subject, None);
        assert_eq!(h.subject_pseudonym.as_deref(), Some(pseudonym.as_str()));
        log.shut_down().await;
    }
}
