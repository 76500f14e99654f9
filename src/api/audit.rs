//! Auditor routes: read one event, search, export an evidence bundle, and
//! one event as a c2sp.org/tlog-proof file.
//!
//! Every call is itself appended to the log as an audit event (actor: the
//! key's name; action `audit.read`, `audit.search` or `audit.export`; the
//! query in the context) under the internal app id, through the sequencer,
//! *before* any event content is sent. If it cannot be appended, nothing is
//! sent (fail closed). When the read concerns one data subject, the audit
//! event names that subject, so the subject's own history shows who read it
//! (and erasing the subject erases that too).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::auth::{ApiKeyRecord, INTERNAL_APP, Role};
use crate::crypto::Field;
use crate::event::{self, Outcome};
use crate::evidence;
use crate::search::{self, EventQuery, Hit};
use crate::sequencer::{EntryReceipt, PreparedEvent};
use crate::vault::Tombstone;

/// Header naming the leaf index of the audit event a read produced.
pub const AUDIT_INDEX_HEADER: &str = "veritrail-audit-index";
/// Most events one export may hold.
pub const MAX_EXPORT_EVENTS: usize = 100_000;
/// An export is sent in pieces of about this many bytes.
const EXPORT_PIECE: usize = 256 << 10;

pub(super) fn authorize(
    st: &AppState,
    headers: &HeaderMap,
    need: Role,
) -> Result<ApiKeyRecord, ApiError> {
    Ok(st.keys.authorize(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        need,
    )?)
}

/// One access to record.
pub(super) struct Access<'a> {
    /// `audit.read`, `audit.search`, `audit.export`, `admin.erasure`, ...
    pub action: &'a str,
    /// What was accessed: `(type, id)`.
    pub resource: (&'a str, String),
    /// The data subject concerned, when there is exactly one.
    pub subject: Option<&'a str>,
    /// How it ended.
    pub outcome: Outcome,
    /// Details (the query, a reason, counts).
    pub context: Value,
}

/// Who acted: an API key, or the log itself (retention).
pub(super) struct Who {
    name: String,
    kind: &'static str,
    detail: Value,
}

impl From<&ApiKeyRecord> for Who {
    fn from(key: &ApiKeyRecord) -> Who {
        Who {
            name: key.name.clone(),
            kind: "api_key",
            detail: json!({ "key_id": key.id, "role": key.role }),
        }
    }
}

impl Who {
    /// The log's own background work.
    pub(super) fn service(name: &str) -> Who {
        Who {
            name: name.to_string(),
            kind: "service",
            detail: json!({}),
        }
    }
}

/// Appends `access` by `who` to the log and waits until it is durable.
/// A value that is not valid in an event (e.g. an over-long subject) is
/// the caller's bad input: 400.
pub(super) async fn record_access(
    st: &AppState,
    who: impl Into<Who>,
    access: Access<'_>,
) -> Result<EntryReceipt, ApiError> {
    record_access_once(st, who, access, None).await
}

/// As [`record_access`], under the idempotency id `id` of the log's own
/// app: a second call with the same id appends nothing and returns the
/// first record's receipt (a start redoing what a crash interrupted).
pub(super) async fn record_access_once(
    st: &AppState,
    who: impl Into<Who>,
    access: Access<'_>,
    id: Option<String>,
) -> Result<EntryReceipt, ApiError> {
    let who: Who = who.into();
    let mut context = who.detail;
    context["details"] = access.context;
    let mut raw = json!({
        "actor": { "id": who.name, "type": who.kind },
        "action": access.action,
        "resource": { "type": access.resource.0, "id": access.resource.1 },
        "purpose": "audit",
        "outcome": access.outcome.as_str(),
        "occurred_at": event::format_rfc3339_ms(st.view.clock().now_ms()),
        "context": context,
    });
    if let Some(s) = access.subject {
        raw["subject"] = json!(s);
    }
    let ev = event::parse_event(&raw, &st.limits.events)
        .map_err(|e| ApiError::bad_request(format!("query: {e}")))?;
    let canonical = ev.canonical_bytes();
    let mut salt = [0u8; 32];
    getrandom::fill(&mut salt).map_err(ApiError::internal)?;
    let prepared = PreparedEvent {
        id,
        commitment: event::commitment(&salt, &canonical),
        terms: None,
        canonical,
        salt,
    };
    let receipt = st
        .sequencer
        .submit(INTERNAL_APP.to_string(), vec![prepared], false)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "couldn't record an access in the log; refusing it");
            ApiError::unavailable(
                "this access could not be recorded in the log, so nothing is returned; retry later",
                5,
            )
        })?;
    receipt
        .entries
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("the sequencer returned no receipt"))
}

pub(super) fn with_audit_header(mut resp: Response, receipt: &EntryReceipt) -> Response {
    resp.headers_mut()
        .insert(AUDIT_INDEX_HEADER, HeaderValue::from(receipt.index));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The query for one page of the log's own audit events under `filters`
/// (a paged listing such as the alerts or the admin actions), from the
/// listing's `limit` and `cursor`.
pub(super) fn own_events_query(
    filters: Vec<(Field, String)>,
    limit: Option<usize>,
    cursor: Option<&str>,
) -> Result<EventQuery, ApiError> {
    let limit = limit.unwrap_or(search::DEFAULT_LIMIT);
    if limit == 0 || limit > search::MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {}",
            search::MAX_LIMIT
        )));
    }
    let before = cursor
        .map(search::decode_cursor)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(EventQuery {
        filters,
        received_since_ms: None,
        received_until_ms: None,
        occurred_since_ms: None,
        occurred_until_ms: None,
        outcome: None,
        purpose: None,
        include_audit: true,
        limit,
        before,
        count_ahead: 0,
    })
}

/// 503 while the search index is being built: a search would miss the
/// events not yet indexed and answer "no match" where there is one.
pub(super) fn search_ready(st: &AppState) -> Result<(), ApiError> {
    match st.vault.index_building()? {
        None => Ok(()),
        Some(p) => Err(ApiError::unavailable(
            format!(
                "the search index is being built ({} of {} events indexed); searches answer once it is done",
                p.indexed, p.target
            ),
            SEARCH_INDEX_RETRY_AFTER_S,
        )),
    }
}

/// `Retry-After` while the search index is being built.
const SEARCH_INDEX_RETRY_AFTER_S: u32 = 10;

/// One page of `query` over the log as it was before the listing's own
/// audit event (`receipt`): a listing never finds itself.
pub(super) async fn search_before(
    st: &AppState,
    receipt: &EntryReceipt,
    query: EventQuery,
) -> Result<search::Page, ApiError> {
    search_ready(st)?;
    let (vault, tiles) = (st.vault.clone(), st.tiles.clone());
    let size = st.view.durable_size().min(receipt.index);
    tokio::task::spawn_blocking(move || search::search(&vault, &tiles, size, &query))
        .await
        .map_err(blocking_err)?
        .map_err(ApiError::from)
}

/// An event as auditors see it: leaf, commitment, body and salt.
pub(super) fn hit_json(h: &Hit) -> Value {
    json!({
        "index": h.index,
        "app": h.record.app,
        "audit_record": h.is_audit_record(),
        "received": h.record.received(),
        "leaf": String::from_utf8_lossy(&h.leaf),
        "leaf_hash": h.leaf_hash.to_base64(),
        "commitment": h.record.commitment.to_hex(),
        "event": serde_json::from_slice::<Value>(&h.stored.event).unwrap_or(Value::Null),
        "salt": hex::encode(h.stored.salt),
    })
}

fn gone(index: u64, t: &Tombstone) -> Response {
    let body = json!({
        "error": {
            "code": "gone",
            "message": format!(
                "event {index} was erased at {} ({}): {}; its leaf and every proof remain valid",
                t.erased_at, t.cause, t.reason
            ),
        },
        "index": index,
        "erased": t,
    });
    let mut resp = (StatusCode::GONE, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn parse_index(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("{text:?} is not a leaf index")))
}

fn blocking_err(e: tokio::task::JoinError) -> ApiError {
    ApiError::internal(format!("a read task failed: {e}"))
}

/// `GET /v1/whoami`: the calling key's own id, name, role and app, so a
/// console can say what a key may do before it tries. Any valid key; it
/// reads nothing else, so it is not recorded in the log.
#[utoipa::path(get, path = "/v1/whoami", tag = "auditor",
    security(("api_key" = ["admin", "auditor", "writer"])),
    responses(
        (status = 200, description = "The calling key", body = super::openapi::WhoAmI),
        (status = 401, description = "No key, or not a valid key", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn whoami(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Admins pass as auditors; a writer is refused as one and then
    // accepted as what it is.
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let key = match st.keys.authorize(bearer, Role::Auditor) {
        Err(crate::auth::AuthError::Forbidden { .. }) => st.keys.authorize(bearer, Role::Writer)?,
        other => other?,
    };
    let mut resp = Json(json!({
        "id": key.id, "name": key.name, "role": key.role, "app": key.app,
    }))
    .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Records an auditor's read of event `index` in the log (`loaded`: what
/// [`load_hit`] found, with `context`), then gives the event and the
/// read's receipt, or the answer an erased body gets (with its audit
/// header).
async fn record_event_read(
    st: &AppState,
    who: impl Into<Who>,
    index: u64,
    loaded: Result<Result<Hit, Response>, ApiError>,
    context: Value,
) -> Result<Result<(Hit, EntryReceipt), Response>, ApiError> {
    let (outcome, subject) = match &loaded {
        Ok(Ok(hit)) => (Outcome::Success, hit.event.subject.clone()),
        _ => (Outcome::Failure, None),
    };
    let receipt = record_access(
        st,
        who,
        Access {
            action: "audit.read",
            resource: ("event", index.to_string()),
            subject: subject.as_deref(),
            outcome,
            context,
        },
    )
    .await?;
    Ok(match loaded? {
        Ok(hit) => Ok((hit, receipt)),
        Err(gone) => Err(with_audit_header(gone, &receipt)),
    })
}

/// The event at `index` if it exists and is not erased.
async fn load_hit(st: &AppState, index: u64) -> Result<Result<Hit, Response>, ApiError> {
    if index >= st.view.durable_size() {
        return Err(ApiError::not_found(format!("no event at index {index}")));
    }
    let vault = st.vault.clone();
    let found = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        if let Some(t) = vault.tombstone(index)? {
            return Ok(Err(t));
        }
        Ok(Ok(search::hit_at(&vault, index)?))
    })
    .await
    .map_err(blocking_err)??;
    match found {
        Err(t) => Ok(Err(gone(index, &t))),
        Ok(Some(hit)) => Ok(Ok(hit)),
        Ok(None) => Err(ApiError::not_found(format!(
            "event {index} has no stored body"
        ))),
    }
}

/// `GET /v1/events/<index>`: the event, its salt and leaf, an inclusion
/// proof and the checkpoint it was proven against (absent while no
/// checkpoint covers the event yet, for at most a checkpoint interval).
#[utoipa::path(get, path = "/v1/events/{index}", tag = "auditor",
    security(("api_key" = ["auditor"])),
    params(("index" = u64, Path, minimum = 0, example = 0, description = "The event's leaf index")),
    responses(
        (status = 200, description = "The event with its salt, leaf and inclusion proof", body = super::openapi::EventDetail, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event this read appended"))),
        (status = 400, description = "Not a leaf index", body = super::openapi::ErrorBody),
        (status = 404, description = "No event at that index", body = super::openapi::ErrorBody),
        (status = 410, description = "The event's body was erased; its leaf stays", body = super::openapi::GoneBody, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event this read appended"))),
    ))]
pub(super) async fn get_event(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(index): Path<String>,
) -> Result<Response, ApiError> {
    let key = authorize(&st, &headers, Role::Auditor)?;
    let index = parse_index(&index)?;
    let loaded = load_hit(&st, index).await;
    let (hit, receipt) =
        match record_event_read(&st, &key, index, loaded, json!({ "index": index })).await? {
            Ok(read) => read,
            Err(gone) => return Ok(gone),
        };
    let mut body = hit_json(&hit);
    let cp = st.view.checkpoint();
    if index < cp.checkpoint.size {
        body["inclusion_proof"] = super::read::inclusion_json(&st, index, cp.checkpoint.size)?;
        body["checkpoint"] = json!(cp.note);
    } else {
        body["inclusion_proof"] = Value::Null;
        body["checkpoint"] = Value::Null;
    }
    Ok(with_audit_header(Json(body).into_response(), &receipt))
}

/// Filters (all optional, combined with AND) and paging: the query of
/// `GET /v1/events` and `GET /v1/export`, as the handlers parse it and the
/// client sends it.
#[derive(Serialize, Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The data subject.
    #[param(min_length = 1, max_length = 256)]
    pub subject: Option<String>,
    /// The actor's id.
    #[param(min_length = 1, max_length = 256)]
    pub actor: Option<String>,
    /// The action.
    #[param(min_length = 1, max_length = 256)]
    pub action: Option<String>,
    /// The resource's id.
    #[param(min_length = 1, max_length = 256)]
    pub resource: Option<String>,
    /// The writer's app id.
    #[param(min_length = 1, max_length = 256)]
    pub app: Option<String>,
    /// Only events that occurred (`occurred_at`) at or after this RFC 3339 time.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Only events that occurred (`occurred_at`) before this RFC 3339 time.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Only events the log received at or after this RFC 3339 time.
    #[param(format = DateTime)]
    pub received_since: Option<String>,
    /// Only events the log received before this RFC 3339 time.
    #[param(format = DateTime)]
    pub received_until: Option<String>,
    /// Only events with this outcome.
    #[param(inline)]
    pub outcome: Option<Outcome>,
    /// Only events with this purpose.
    #[param(min_length = 1, max_length = 256)]
    pub purpose: Option<String>,
    /// Also return the log's own audit records (searches, reads, exports,
    /// erasures; app `veritrail`). Default: false, except that a query
    /// naming an `app` or an `action` gets exactly what it names.
    pub include_audit: Option<bool>,
    /// Page size: 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl SearchParams {
    /// The query, and its description for the audit record and the
    /// bundle header (time bounds named by the time they bound).
    fn parse(&self, max_limit: usize) -> Result<(EventQuery, Value), ApiError> {
        let mut filters = Vec::new();
        // Most selective first: the first filter drives the index scan.
        for (name, field, value) in [
            ("subject", Field::Subject, &self.subject),
            ("resource", Field::Resource, &self.resource),
            ("actor", Field::Actor, &self.actor),
            ("action", Field::Action, &self.action),
            ("app", Field::App, &self.app),
        ] {
            if let Some(v) = value {
                check_text(name, v)?;
                filters.push((field, v.clone()));
            }
        }
        if let Some(p) = &self.purpose {
            check_text("purpose", p)?;
        }
        let time = |name: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
            v.as_deref()
                .map(|t| {
                    event::parse_rfc3339_ms(t).map_err(|e| {
                        ApiError::bad_request(format!("{name}: not an RFC 3339 time: {e}"))
                    })
                })
                .transpose()
        };
        let range = |since: (&str, &Option<String>), until: (&str, &Option<String>)| {
            let s = time(since.0, since.1)?;
            let u = time(until.0, until.1)?;
            if let (Some(s), Some(u)) = (s, u)
                && u < s
            {
                return Err(ApiError::bad_request(format!(
                    "{} must not be before {}",
                    until.0, since.0
                )));
            }
            Ok((s, u))
        };
        let (occurred_since_ms, occurred_until_ms) =
            range(("since", &self.since), ("until", &self.until))?;
        let (received_since_ms, received_until_ms) = range(
            ("received_since", &self.received_since),
            ("received_until", &self.received_until),
        )?;
        let limit = self.limit.unwrap_or(search::DEFAULT_LIMIT.min(max_limit));
        if limit == 0 || limit > max_limit {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {max_limit}"
            )));
        }
        let before = self
            .cursor
            .as_deref()
            .map(search::decode_cursor)
            .transpose()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let include_audit = self
            .include_audit
            .unwrap_or(self.app.is_some() || self.action.is_some());
        let described = json!({
            "subject": self.subject, "actor": self.actor, "action": self.action,
            "resource": self.resource, "app": self.app,
            "occurred_since": self.since, "occurred_until": self.until,
            "received_since": self.received_since, "received_until": self.received_until,
            "outcome": self.outcome, "purpose": self.purpose,
            "include_audit": include_audit, "limit": limit, "cursor": self.cursor,
        });
        Ok((
            EventQuery {
                filters,
                received_since_ms,
                received_until_ms,
                occurred_since_ms,
                occurred_until_ms,
                outcome: self.outcome,
                purpose: self.purpose.clone(),
                include_audit,
                limit,
                before,
                count_ahead: 0,
            },
            described,
        ))
    }
}

/// A text filter: 1 to 256 bytes.
fn check_text(name: &str, v: &str) -> Result<(), ApiError> {
    if v.is_empty() || v.len() > 256 {
        return Err(ApiError::bad_request(format!("{name}: 1 to 256 bytes")));
    }
    Ok(())
}

fn params(q: Result<Query<SearchParams>, QueryRejection>) -> Result<SearchParams, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))
}

/// `GET /v1/events?subject=&actor=&action=&resource=&app=&since=&until=&received_since=&received_until=&outcome=&purpose=&include_audit=&limit=&cursor=`:
/// newest first; `next_cursor` fetches the next page. A page examines a
/// bounded number of candidates, so it may hold fewer events than `limit`
/// (even none) and still have a `next_cursor`; `total` says how many match
/// in all, or at least how many (`exact: false`).
#[utoipa::path(get, path = "/v1/events", tag = "auditor",
    security(("api_key" = ["auditor"])),
    params(SearchParams),
    responses(
        (status = 200, description = "A page of matching events, newest first", body = super::openapi::SearchPage, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event this read appended"))),
        (status = 400, description = "An invalid filter, time, limit or cursor", body = super::openapi::ErrorBody),
        (status = 503, description = "The search index is being built; retry after `Retry-After` seconds", body = super::openapi::ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub(super) async fn search_events(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = authorize(&st, &headers, Role::Auditor)?;
    let p = params(q)?;
    let (query, described) = p.parse(search::MAX_LIMIT)?;
    search_ready(&st)?;
    // The log as it is before this search is recorded: a search never
    // finds its own audit event, whose index is at least this size.
    let size = st.view.durable_size();
    let (vault, tiles) = (st.vault.clone(), st.tiles.clone());
    let query = EventQuery {
        count_ahead: search::COUNT_AHEAD,
        ..query
    };
    // The page is made while the audit event is being made durable, and
    // nothing of it is sent before that is done: the answer waits for the
    // slower of the two, not for both one after the other. If the audit
    // event fails, the page is dropped unsent.
    let searching =
        tokio::task::spawn_blocking(move || search::search(&vault, &tiles, size, &query));
    let receipt = record_access(
        &st,
        &key,
        Access {
            action: "audit.search",
            resource: ("events", "search".into()),
            subject: p.subject.as_deref(),
            outcome: Outcome::Success,
            context: json!({ "query": described }),
        },
    )
    .await?;
    let page = searching.await.map_err(blocking_err)??;
    let body = json!({
        "events": page.hits.iter().map(hit_json).collect::<Vec<_>>(),
        "next_cursor": page.next.as_ref().map(search::encode_cursor),
        "total": { "count": page.total.count, "exact": page.total.exact },
        "examined": page.examined,
    });
    Ok(with_audit_header(Json(body).into_response(), &receipt))
}

/// `GET /v1/export?…` (the search filters; `limit` up to
/// [`MAX_EXPORT_EVENTS`]): an NDJSON evidence bundle of the matching events
/// covered by the latest checkpoint, streamed. See docs/evidence-bundle.md.
#[utoipa::path(get, path = "/v1/export", tag = "auditor",
    security(("api_key" = ["auditor"])),
    params(super::openapi::ExportParams),
    responses(
        (status = 200, description = "An NDJSON evidence bundle: a header line, one line per event, an end line",
            body = String, content_type = "application/x-ndjson", headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event this read appended"))),
        (status = 400, description = "An invalid filter, time, limit or cursor", body = super::openapi::ErrorBody),
        (status = 503, description = "The search index is being built; retry after `Retry-After` seconds", body = super::openapi::ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub(super) async fn export(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = authorize(&st, &headers, Role::Auditor)?;
    let mut p = params(q)?;
    if p.limit.is_none() {
        p.limit = Some(MAX_EXPORT_EVENTS);
    }
    let (mut query, described) = p.parse(MAX_EXPORT_EVENTS)?;
    search_ready(&st)?;
    let cp = st.view.checkpoint();
    let receipt = record_access(
        &st,
        &key,
        Access {
            action: "audit.export",
            resource: ("events", "export".into()),
            subject: p.subject.as_deref(),
            outcome: Outcome::Success,
            context: json!({ "query": described, "tree_size": cp.checkpoint.size }),
        },
    )
    .await?;
    let header_line = evidence::header_line(&evidence::BundleHeader {
        origin: st.origin.to_string(),
        verifier_keys: vec![
            st.verifier_keys.ecdsa.clone(),
            st.verifier_keys.ed25519.clone(),
        ],
        checkpoint: cp.note.clone(),
        exported_at: event::format_rfc3339_ms(st.view.clock().now_ms()),
        query: described,
    });
    let (producer, body) = super::stream::channel(st.limits.stream_stall_timeout);
    let vault = st.vault.clone();
    let tiles = st.tiles.clone();
    let size = cp.checkpoint.size;
    let wanted = query.limit;
    tokio::task::spawn_blocking(move || {
        let send = |b: Vec<u8>| producer.send(b);
        if !send(header_line) {
            return;
        }
        let source = tiles.as_ref();
        let mut count = 0u64;
        let mut left = wanted;
        loop {
            query.limit = left.min(search::MAX_LIMIT);
            let page = match search::search(&vault, source, size, &query) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "export failed");
                    producer.fail("export failed");
                    return;
                }
            };
            let mut chunk = Vec::new();
            for hit in &page.hits {
                let proof = match crate::merkle::inclusion_proof(hit.index, size, source) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "export failed");
                        producer.fail("export failed");
                        return;
                    }
                };
                chunk.extend(evidence::event_line(&evidence::BundleEvent {
                    index: hit.index,
                    leaf: String::from_utf8_lossy(&hit.leaf).into_owned(),
                    leaf_hash: hit.leaf_hash,
                    event: serde_json::from_slice(&hit.stored.event).unwrap_or(Value::Null),
                    salt: hit.stored.salt,
                    audit_path: proof,
                }));
                count += 1;
                // Small pieces: what waits for a slow client stays small.
                if chunk.len() >= EXPORT_PIECE && !send(std::mem::take(&mut chunk)) {
                    return;
                }
            }
            left -= page.hits.len().min(left);
            if !chunk.is_empty() && !send(chunk) {
                return;
            }
            match page.next {
                Some(n) if left > 0 => query.before = Some(n),
                _ => break,
            }
        }
        let _ = send(evidence::end_line(count));
    });
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(with_audit_header(resp, &receipt))
}

/// `GET /v1/events/<index>/tlog-proof`: the event's inclusion proof as a
/// c2sp.org/tlog-proof file, with the event, salt and leaf in its `extra`
/// line so the file is self-contained.
#[utoipa::path(get, path = "/v1/events/{index}/tlog-proof", tag = "auditor",
    security(("api_key" = ["auditor"])),
    params(("index" = u64, Path, minimum = 0, example = 0, description = "The event's leaf index")),
    responses(
        (status = 200, description = "A c2sp.org/tlog-proof file", body = String,
            content_type = "text/plain; charset=utf-8", headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event this read appended"))),
        (status = 400, description = "Not a leaf index", body = super::openapi::ErrorBody),
        (status = 404, description = "No event at that index", body = super::openapi::ErrorBody),
        (status = 409, description = "No checkpoint covers the event yet; retry in a second", body = super::openapi::ErrorBody),
        (status = 410, description = "The event's body was erased; its leaf stays", body = super::openapi::GoneBody, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event this read appended"))),
    ))]
pub(super) async fn tlog_proof(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(index): Path<String>,
) -> Result<Response, ApiError> {
    let key = authorize(&st, &headers, Role::Auditor)?;
    let index = parse_index(&index)?;
    let cp = st.view.checkpoint();
    let loaded = if index >= cp.checkpoint.size && index < st.view.durable_size() {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_yet_checkpointed",
            format!("event {index} is not covered by a checkpoint yet; retry in a second"),
        ))
    } else {
        load_hit(&st, index).await
    };
    let (hit, receipt) = match record_event_read(
        &st,
        &key,
        index,
        loaded,
        json!({ "index": index, "format": "tlog-proof" }),
    )
    .await?
    {
        Ok(read) => read,
        Err(gone) => return Ok(gone),
    };
    let path = crate::merkle::inclusion_proof(index, cp.checkpoint.size, st.tiles.as_ref())
        .map_err(ApiError::internal)?;
    let text = evidence::tlog_proof_text(
        &evidence::BundleEvent {
            index,
            leaf: String::from_utf8_lossy(&hit.leaf).into_owned(),
            leaf_hash: hit.leaf_hash,
            event: serde_json::from_slice(&hit.stored.event).unwrap_or(Value::Null),
            salt: hit.stored.salt,
            audit_path: path,
        },
        &cp.note,
    );
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(with_audit_header(resp, &receipt))
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;
    use crate::sequencer::test_log::TestLogBuilder;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_that_cannot_be_logged_returns_nothing() {
        let log = TestLogBuilder::new("example.com/log").start();
        let inner = log.store.clone();
        let state = super::super::test_state(&log);
        let (_, token) = state.keys.create("jane", Role::Auditor, None).unwrap();
        let raw = json!({
            "actor": {"id": "dr", "type": "user"}, "action": "record.read",
            "resource": {"type": "doc", "id": "d"}, "subject": "SECRET-SUBJECT",
            "purpose": "care", "outcome": "success", "occurred_at": "2026-11-25T10:00:00Z",
        });
        let ev = event::parse_event(&raw, &event::EventLimits::default()).unwrap();
        let canonical = ev.canonical_bytes();
        let salt = [1u8; 32];
        log.handle()
            .submit(
                "clinic".into(),
                vec![PreparedEvent {
                    id: None,
                    commitment: event::commitment(&salt, &canonical),
                    terms: None,
                    canonical,
                    salt,
                }],
                true,
            )
            .await
            .unwrap();
        let app = super::super::router(state);
        let read = || {
            Request::get("/v1/events/0")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap()
        };
        inner.fail_writes(true);
        let resp = app.clone().oneshot(read()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("SECRET-SUBJECT"));
        inner.fail_writes(false);
        let resp = app.oneshot(read()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("SECRET-SUBJECT"));
        log.shut_down().await;
    }
}
