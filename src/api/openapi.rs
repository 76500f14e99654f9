//! The OpenAPI 3.1 description of the HTTP API, served at
//! `GET /v1/openapi.json`.
//!
//! Each handler carries its own `#[utoipa::path]` (route, parameters with
//! their limits, request body, the answers it can give); request types
//! derive their schemas where they are declared. This module gathers them
//! and adds what every route shares, from one table, so the shared answers
//! cannot be forgotten route by route: the security scheme, 401/403/429/503
//! for routes that need a key, 400/413/415 for routes that take a body, and
//! 408 and 500 for all. The admin routes' requests and answers are typed
//! where their handlers are (`admin.rs`, `governance.rs`), and the CLI's
//! client sends and parses those same types; the answers the other handlers
//! still build with `json!` are described by the structs below. The
//! schemathesis run in the test suite checks the real answers against the
//! document. Invariant: every route the router registers is in the document
//! with the same methods, and nothing else is (tested below).

// The structs below only describe JSON the handlers build; they are never
// constructed.
#![allow(dead_code)]

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, RefOr, ResponseBuilder, Type,
};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use super::with_cache;
use crate::event::Outcome;

/// The security scheme's name in the document.
const SCHEME: &str = "api_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Veritrail",
        description = "A verifiable audit log: audit events as leaves of an RFC 6962 Merkle tree, \
            with C2SP checkpoints, tiles and witness cosignatures. Public routes need no key; \
            the others take an API key `Authorization: Bearer vt_<id>_<secret>` whose role \
            (writer, auditor or admin; admin may do what auditor may) each operation names \
            in its security requirement. Every error is `{\"error\":{\"code\",\"message\"}}`. \
            A method a path does not support is answered 405.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::read::checkpoint_text,
        super::read::tile,
        super::read::checkpoint_json,
        super::read::log_info,
        super::read::growth,
        super::read::inclusion_proof,
        super::read::consistency_proof,
        super::read::healthz,
        super::read::metrics,
        openapi_json,
        super::write::submit_events,
        super::otlp::export_logs,
        super::audit::search_events,
        super::audit::get_event,
        super::audit::tlog_proof,
        super::audit::export,
        super::audit::whoami,
        super::alerts::list_alerts,
        super::admin::list_actions,
        super::admin::create_key,
        super::admin::list_keys,
        super::admin::revoke_key,
        super::backup::backup,
        super::governance::erase,
        super::governance::create_policy,
        super::governance::list_policies,
        super::governance::remove_policy,
        super::governance::run_retention_now,
        super::governance::create_hold,
        super::governance::list_holds,
        super::governance::release_hold,
    ),
    components(schemas(ErrorBody, RpcStatus, crate::auth::Role, Outcome, WaitFor, ProofForm)),
    modifiers(&SharedAnswers),
    tags(
        (name = "public", description = "Checkpoints, tiles, proofs, health: no key, no personal data"),
        (name = "writer", description = "Appending events (writer keys)"),
        (name = "auditor", description = "Reading, searching and exporting events (auditor or admin keys); every call is itself logged"),
        (name = "admin", description = "Keys, erasure, retention, legal holds, backups (admin keys)"),
    ),
)]
pub(super) struct ApiDoc;

/// The document, built once.
pub(super) fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// `GET /v1/openapi.json`: this document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "public",
    responses((status = 200, description = "This OpenAPI 3.1 document", body = Object)))]
pub(super) async fn openapi_json() -> Response {
    static JSON: OnceLock<String> = OnceLock::new();
    let body = JSON.get_or_init(|| {
        // The document is plain data; serialising it cannot fail.
        serde_json::to_string(document()).unwrap_or_else(|_| "{}".into())
    });
    let mut resp = body.as_str().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    with_cache(resp, "public, max-age=3600")
}

/// Adds the security scheme and the answers routes share (see the module
/// documentation) as reusable responses.
struct SharedAnswers;

/// `(status, component name, description, has Retry-After)`.
const SHARED: &[(&str, &str, &str, bool)] = &[
    (
        "400",
        "BadRequest",
        "The request is malformed or invalid; the message says why",
        false,
    ),
    (
        "401",
        "Unauthorized",
        "No API key, or not a valid one",
        false,
    ),
    ("403", "Forbidden", "The key's role may not do this", false),
    (
        "408",
        "RequestTimeout",
        "The request took longer than the server's request timeout",
        false,
    ),
    ("413", "TooLarge", "The request body is too large", false),
    (
        "415",
        "UnsupportedMediaType",
        "The body must be sent as application/json",
        false,
    ),
    (
        "429",
        "RateLimited",
        "Too many requests for this key; retry after Retry-After seconds",
        true,
    ),
    (
        "503",
        "Unavailable",
        "Storage or the sequencer is unavailable; retry after Retry-After seconds",
        true,
    ),
    (
        "500",
        "Internal",
        "A bug or a corrupt store; details are only in the server's log",
        false,
    ),
];

impl Modify for SharedAnswers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("vt_<16 hex id>_<64 hex secret>")
                    .description(Some(
                        "An API key made with `veritrail keys create` or POST /v1/admin/keys. \
                         The operation's requirement names the role it needs.",
                    ))
                    .build(),
            ),
        );
        for (_, name, description, retry_after) in SHARED {
            let mut response = ResponseBuilder::new().description(*description).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            );
            if *retry_after {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(
                            ObjectBuilder::new()
                                .schema_type(Type::Integer)
                                .minimum(Some(0)),
                        )
                        .description(Some("Seconds to wait before retrying"))
                        .build(),
                );
            }
            components
                .responses
                .insert((*name).to_string(), RefOr::T(response.build()));
        }
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add_shared(op);
            }
        }
    }
}

fn add_shared(op: &mut Operation) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();
    let mut wanted = vec!["408", "500"];
    if secured {
        wanted.extend(["401", "403", "429", "503"]);
    }
    if has_body {
        wanted.extend(["400", "413", "415"]);
    }
    for status in wanted {
        if let Some((_, name, _, _)) = SHARED.iter().find(|s| s.0 == status) {
            op.responses
                .responses
                .entry(status.to_string())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
        }
    }
}

/// An OTLP/HTTP error answer (`POST /v1/logs`): a `google.rpc.Status`, in
/// the request's encoding (this is its OTLP/JSON form).
#[derive(ToSchema)]
pub(super) struct RpcStatus {
    /// The `google.rpc.Code` closest to the HTTP status.
    code: i32,
    /// For people.
    message: String,
}

/// Every error answer.
#[derive(ToSchema)]
pub(super) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(ToSchema)]
pub(super) struct ErrorDetail {
    /// Stable, machine-readable (`bad_request`, `unauthorized`, `not_found`, ...).
    code: String,
    /// For people.
    message: String,
}

/// 410: the event's body and salt were erased; its leaf and proofs stay.
#[derive(ToSchema)]
pub(super) struct GoneBody {
    error: ErrorDetail,
    index: u64,
    erased: crate::vault::Tombstone,
}

/// `GET /v1/checkpoint`.
#[derive(ToSchema)]
pub(super) struct CheckpointJson {
    origin: String,
    tree_size: u64,
    /// Base64.
    root_hash: String,
    /// The C2SP signed note.
    note: String,
    published_at_ms: i64,
    /// Verified witness cosignatures.
    cosignatures: Vec<serde_json::Value>,
    /// With a witness policy: whether this checkpoint is witnessed.
    witnessed: Option<bool>,
    /// With a witness policy: cosignatures needed.
    witness_quorum: Option<u64>,
    /// With a witness policy: the newest signed size, witnessed or not.
    latest_signed_size: Option<u64>,
    /// With a witness policy: the newest signed checkpoint.
    latest_signed: Option<String>,
}

/// `GET /v1/log`.
#[derive(ToSchema)]
pub(super) struct LogInfo {
    origin: String,
    tree_size: u64,
    verifier_keys: VerifierKeys,
}

/// `GET /v1/growth`.
#[derive(ToSchema)]
pub(super) struct Growth {
    /// The latest checkpoint's size, which the series ends at.
    tree_size: u64,
    /// Oldest first.
    points: Vec<crate::search::GrowthPoint>,
}

/// The log's note verifier keys.
#[derive(ToSchema)]
pub(super) struct VerifierKeys {
    ecdsa: String,
    ed25519: String,
}

/// An RFC 9162 inclusion proof (hashes in base64). The client parses
/// receipts with it.
#[derive(ToSchema, Deserialize, Debug, Clone)]
pub struct InclusionProof {
    /// The leaf's index.
    pub leaf_index: u64,
    /// The tree the proof is for.
    pub tree_size: u64,
    /// Base64.
    pub leaf_hash: String,
    /// Base64 hashes, leaf to root.
    pub audit_path: Vec<String>,
}

/// One proof that the leaves of a batch's receipts (their distinct indexes,
/// in increasing order, with their leaf hashes) are in the tree of
/// `tree_size`: the hashes of the subtrees of the RFC 6962 recursion that
/// hold none of those leaves while their parent holds some, left to right
/// (`merkle::batch_inclusion_proof`). The client parses it with this type.
#[derive(ToSchema, Deserialize, Debug, Clone)]
pub struct BatchProof {
    /// The tree the proof is for (the checkpoint's size).
    pub tree_size: u64,
    /// Base64 hashes, in the order the recursion meets them.
    pub hashes: Vec<String>,
}

/// An RFC 9162 consistency proof (hashes in base64). The client parses
/// it with this type.
#[derive(ToSchema, Deserialize, Debug, Clone)]
pub struct ConsistencyProof {
    /// The older tree size.
    pub first: u64,
    /// The newer tree size.
    pub second: u64,
    /// Base64 hashes.
    pub consistency: Vec<String>,
}

/// Health summary.
#[derive(ToSchema)]
pub(super) struct Health {
    status: HealthStatus,
    problems: Vec<String>,
    tree_size: u64,
    committed_size: u64,
    checkpoint_age_ms: i64,
    witnessed_size: Option<u64>,
    witnesses: Option<Vec<serde_json::Value>>,
    /// `{"state":"ready"}`, or while the search index is built in the
    /// background `{"state":"building","indexed":N,"target":M}` (searches
    /// answer 503 meanwhile).
    search_index: serde_json::Value,
    /// Subjects' erasures whose events are still being deleted in the
    /// background (they read as erased already); counted up to 1000.
    erasure_cleanups_pending: Option<u64>,
}

#[derive(ToSchema, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum HealthStatus {
    Ok,
    Degraded,
}

/// When `POST /v1/events` answers.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum WaitFor {
    Durable,
    Checkpoint,
    Witnessed,
}

/// How `POST /v1/events?wait=checkpoint` proves its receipts: an inclusion
/// proof per event (the default), or one batch proof for them all.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ProofForm {
    Each,
    Batch,
}

/// The body of `POST /v1/events`: one event, or a batch.
#[derive(ToSchema, Serialize)]
#[serde(untagged)]
pub(super) enum Submission {
    One(Box<EventInput>),
    Batch(Batch),
}

/// A batch of events, appended all or nothing.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Batch {
    #[schema(min_items = 1, max_items = 1000)]
    events: Vec<EventInput>,
}

/// An audit event. Text fields are 1 to N bytes (not characters), with no
/// leading or trailing whitespace and no control characters.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
#[schema(as = AuditEvent, example = json!({
    "actor": {"id": "dr-jones", "type": "user", "ip": "192.0.2.10"},
    "action": "record.read",
    "resource": {"type": "patient_record", "id": "rec-1042"},
    "subject": "patient-1042",
    "purpose": "treatment",
    "outcome": "success",
    "occurred_at": "2026-03-01T09:30:00Z",
    "id": "example-event-1"
}))]
pub(super) struct EventInput {
    actor: ActorInput,
    /// A lowercase dotted name like `record.read`.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[a-z0-9_]+(\.[a-z0-9_-]+)*$"
    )]
    action: String,
    resource: ResourceInput,
    /// The data subject whose personal data was touched.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    subject: Option<String>,
    /// Why (the processing purpose).
    #[schema(min_length = 1, max_length = 512)]
    purpose: String,
    outcome: Outcome,
    /// RFC 3339; stored as UTC with milliseconds.
    #[schema(format = DateTime)]
    occurred_at: String,
    /// The writer's idempotency key: an event with an id already in the log is
    /// not appended again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    id: Option<String>,
    /// Free detail: at most 8 KiB as canonical JSON, nested at most 8 deep,
    /// numbers within ±(2^53 − 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Who acted.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
#[schema(as = Actor)]
pub(super) struct ActorInput {
    #[schema(min_length = 1, max_length = 256)]
    id: String,
    /// `user`, `service`, ...
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 64)]
    kind: String,
    /// An IPv4 or IPv6 address.
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
}

/// What was acted upon.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
#[schema(as = Resource)]
pub(super) struct ResourceInput {
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 64)]
    kind: String,
    #[schema(min_length = 1, max_length = 256)]
    id: String,
}

/// The answer to `POST /v1/events` (the client parses it with this type).
#[derive(ToSchema, Deserialize, Debug, Clone)]
pub struct SubmitResponse {
    /// One receipt per submitted event, in order.
    pub events: Vec<SubmittedEvent>,
    /// The checkpoint the proofs are against (with wait=checkpoint|witnessed).
    pub checkpoint: Option<String>,
    /// With `proof=batch`: one proof of every receipt's leaf in the
    /// checkpoint, instead of an inclusion proof per event.
    pub batch_proof: Option<BatchProof>,
    /// With wait=witnessed.
    pub witnessed: Option<bool>,
    /// With wait=witnessed, the witnesses' cosignatures.
    pub cosignatures: Option<Vec<serde_json::Value>>,
    /// With wait=witnessed when no witnessed checkpoint came in time.
    pub message: Option<String>,
}

/// One appended event's receipt.
#[derive(ToSchema, Deserialize, Debug, Clone)]
pub struct SubmittedEvent {
    /// The event's leaf index.
    pub index: u64,
    /// Base64.
    pub leaf_hash: String,
    /// Hex.
    pub commitment: String,
    /// An event with the same id was already in the log; this is its receipt.
    pub duplicate: bool,
    /// With a checkpoint: the proof of the leaf in it.
    pub inclusion_proof: Option<InclusionProof>,
}

/// An event as auditors see it.
#[derive(ToSchema)]
pub(super) struct EventRecord {
    index: u64,
    app: String,
    /// True for the log's own audit records (app `veritrail`).
    audit_record: bool,
    /// When the log received it (RFC 3339).
    received: String,
    /// The public leaf record.
    leaf: String,
    /// Base64.
    leaf_hash: String,
    /// Hex.
    commitment: String,
    event: Option<EventInput>,
    /// Hex.
    salt: String,
}

/// `GET /v1/events/{index}`.
#[derive(ToSchema)]
pub(super) struct EventDetail {
    index: u64,
    app: String,
    /// True for the log's own audit records (app `veritrail`).
    audit_record: bool,
    received: String,
    leaf: String,
    leaf_hash: String,
    commitment: String,
    event: Option<EventInput>,
    salt: String,
    /// Null while no checkpoint covers the event yet.
    inclusion_proof: Option<InclusionProof>,
    /// The checkpoint the proof is against.
    checkpoint: Option<String>,
}

/// `GET /v1/events`.
#[derive(ToSchema)]
pub(super) struct SearchPage {
    events: Vec<EventRecord>,
    /// Fetches the next (older) page; null on the last. A page may hold
    /// fewer events than asked for (even none) and still have one: each
    /// page examines a bounded number of candidates.
    next_cursor: Option<String>,
    total: SearchTotal,
    /// Candidates examined so far, on this page and the ones before it.
    examined: u64,
}

/// `GET /v1/alerts`: a page of alerts, newest first.
#[derive(ToSchema)]
pub(super) struct AlertPage {
    alerts: Vec<AlertRecord>,
    /// Fetches the next (older) page; null on the last. A page may hold
    /// fewer alerts than asked for and still have one.
    next_cursor: Option<String>,
}

/// One recorded alert.
#[derive(ToSchema)]
pub(super) struct AlertRecord {
    /// Leaf index of the alert's own audit event (its inclusion proof: `GET /v1/events/{index}`).
    index: u64,
    /// The alert event's leaf hash (base64).
    leaf_hash: String,
    /// When the log raised it (RFC 3339).
    raised_at: String,
    alert: AlertBody,
}

/// What fired.
#[derive(ToSchema)]
pub(super) struct AlertBody {
    /// The rule's name.
    rule: String,
    /// `threshold`, `breadth`, `time_of_day` or `first_seen`.
    kind: String,
    /// The group: field name to value (`{"actor": "jdoe"}`); empty when the rule groups nothing.
    #[schema(value_type = Object)]
    group: serde_json::Map<String, serde_json::Value>,
    /// Events (or distinct values) counted when it fired.
    count: u64,
    /// `occurred_at` of the first counted event.
    window_start: String,
    /// `occurred_at` of the last counted event.
    window_end: String,
    /// Leaf indexes of the triggering events (at most 200, the newest).
    events: Vec<u64>,
}

/// `GET /v1/admin/actions`: a page of admin actions, newest first.
#[derive(ToSchema)]
pub(super) struct AdminActionPage {
    actions: Vec<AdminAction>,
    /// Fetches the next (older) page; null on the last. A page may hold
    /// fewer actions than asked for (even none) and still have one.
    next_cursor: Option<String>,
}

/// One recorded admin action.
#[derive(ToSchema)]
pub(super) struct AdminAction {
    /// Leaf index of its audit event (its inclusion proof: `GET /v1/events/{index}`).
    index: u64,
    /// The audit event's leaf hash (base64).
    leaf_hash: String,
    /// When it was recorded (RFC 3339).
    at: String,
    /// `admin.key.create`, `admin.key.revoke`, `admin.backup`,
    /// `admin.erasure`, `admin.retention.set`, `admin.retention.remove`,
    /// `admin.hold.create`, `admin.hold.release` or `retention.run`.
    action: String,
    outcome: Outcome,
    actor: AdminActor,
    resource: AdminResource,
    /// The action's details (a reason, a policy, counts).
    #[schema(value_type = Object)]
    details: serde_json::Value,
}

/// Who acted.
#[derive(ToSchema, Serialize)]
pub(super) struct AdminActor {
    /// The key's name (not unique), or the service's.
    name: String,
    /// `api_key` or `service`.
    #[serde(rename = "type")]
    kind: String,
    /// The acting key's id; null for the log's own services.
    key_id: Option<String>,
}

/// What the action concerned.
#[derive(ToSchema, Serialize)]
pub(super) struct AdminResource {
    /// `backup`, `retention_policy`, `legal_hold`, `subject`, ...
    #[serde(rename = "type")]
    kind: String,
    /// Its id.
    id: String,
}

/// `GET /v1/whoami`: the calling key.
#[derive(ToSchema)]
pub(super) struct WhoAmI {
    /// The key's public id (16 hex digits).
    id: String,
    /// The key's name, as the admin gave it.
    name: String,
    role: crate::auth::Role,
    /// For writers: the app id their events are recorded under.
    app: Option<String>,
}

/// How many events match the query, over all pages.
#[derive(ToSchema)]
pub(super) struct SearchTotal {
    /// Matches counted.
    count: u64,
    /// True: `count` is the total. False: at least `count` match.
    exact: bool,
}

/// The query of `GET /v1/export`: the search filters, with a larger limit.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ExportParams {
    /// The data subject.
    #[param(min_length = 1, max_length = 256)]
    subject: Option<String>,
    /// The actor's id.
    #[param(min_length = 1, max_length = 256)]
    actor: Option<String>,
    /// The action.
    #[param(min_length = 1, max_length = 256)]
    action: Option<String>,
    /// The resource's id.
    #[param(min_length = 1, max_length = 256)]
    resource: Option<String>,
    /// The writer's app id.
    #[param(min_length = 1, max_length = 256)]
    app: Option<String>,
    /// Only events that occurred (`occurred_at`) at or after this RFC 3339 time.
    #[param(format = DateTime)]
    since: Option<String>,
    /// Only events that occurred (`occurred_at`) before this RFC 3339 time.
    #[param(format = DateTime)]
    until: Option<String>,
    /// Only events the log received at or after this RFC 3339 time.
    #[param(format = DateTime)]
    received_since: Option<String>,
    /// Only events the log received before this RFC 3339 time.
    #[param(format = DateTime)]
    received_until: Option<String>,
    /// Only events with this outcome.
    #[param(inline)]
    outcome: Option<crate::event::Outcome>,
    /// Only events with this purpose.
    #[param(min_length = 1, max_length = 256)]
    purpose: Option<String>,
    /// Also include the log's own audit records (default false, except
    /// when `app` or `action` is given).
    include_audit: Option<bool>,
    /// Most events in the bundle (default 100000).
    #[param(minimum = 1, maximum = 100000)]
    limit: Option<usize>,
    /// Start below this cursor (from a search page).
    cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::body::{Body, to_bytes};
    use axum::http::{Method, Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt as _;

    use super::super::{AppState, router, test_state};
    use super::document;
    use crate::sequencer::test_log::{TestLog, TestLogBuilder};

    const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

    fn doc_json() -> Value {
        serde_json::to_value(document()).unwrap()
    }

    /// `(METHOD, path)` of every operation in the document.
    fn documented() -> BTreeSet<(String, String)> {
        let doc = doc_json();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in METHODS {
                if item.get(m).is_some() {
                    out.insert((m.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    /// `(METHOD, path)` of every route `router()` registers, read from its
    /// source: each `.route("path", get(..).post(..))`, with axum's
    /// wildcard `{*name}` written as OpenAPI's `{name}`.
    fn registered() -> BTreeSet<(String, String)> {
        let src = include_str!("mod.rs");
        let body = &src[src.find("pub fn router(").unwrap()..];
        let body = &body[..body.find("\n}\n").unwrap()];
        let mut out = BTreeSet::new();
        for (at, _) in body.match_indices(".route(") {
            let rest = &body[at + ".route(".len()..];
            // The call's arguments: up to the parenthesis that closes it.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .unwrap()
                .0;
            let args = &rest[..end];
            let path = args.split('"').nth(1).unwrap().replace("{*", "{");
            let mut methods = 0;
            for m in METHODS {
                let call = format!("{m}(");
                for (i, _) in args.match_indices(&call) {
                    let before = args[..i].chars().next_back().unwrap_or(' ');
                    if !(before.is_alphanumeric() || before == '_') {
                        out.insert((m.to_uppercase(), path.clone()));
                        methods += 1;
                    }
                }
            }
            assert!(methods > 0, "no method found for route {path}");
        }
        assert!(out.len() > 20, "the route scan found too little: {out:?}");
        out
    }

    #[test]
    fn the_document_lists_exactly_the_routes_the_router_registers() {
        let documented = documented();
        let registered = registered();
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&registered).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from the document: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "documented but not routed: {unrouted:?}"
        );
    }

    /// Every `$ref` in `v`.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_well_formed_openapi_3_1() {
        let doc = doc_json();
        let version = doc["openapi"].as_str().unwrap();
        assert!(version.starts_with("3.1."), "openapi {version}");
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 50, "suspiciously few references: {}", all.len());
        for r in &all {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("external ref {r}"));
            assert!(doc.pointer(pointer).is_some(), "dangling reference {r}");
        }
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        assert_eq!(
            doc["components"]["securitySchemes"]["api_key"]["scheme"],
            "bearer"
        );
        let mut roles_seen = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in METHODS {
                let Some(op) = item.get(m) else { continue };
                let responses = op["responses"].as_object().unwrap();
                let where_ = format!("{} {path}", m.to_uppercase());
                assert!(responses.contains_key("408"), "{where_}: no 408");
                assert!(responses.contains_key("500"), "{where_}: no 500");
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{where_}: no success answer"
                );
                for param in op["parameters"].as_array().into_iter().flatten() {
                    if param["in"] == "path" {
                        assert!(
                            path.contains(&format!("{{{}}}", param["name"].as_str().unwrap())),
                            "{where_}: path parameter {} not in the path",
                            param["name"]
                        );
                    }
                }
                match op.get("security") {
                    Some(reqs) => {
                        for req in reqs.as_array().unwrap() {
                            for (scheme, roles) in req.as_object().unwrap() {
                                assert!(schemes.contains_key(scheme), "{where_}: scheme {scheme}");
                                for role in roles.as_array().unwrap() {
                                    let role = role.as_str().unwrap();
                                    assert!(
                                        crate::auth::Role::parse(role).is_some(),
                                        "{where_}: role {role}"
                                    );
                                    roles_seen.insert(role.to_string());
                                }
                            }
                        }
                        for status in ["401", "403", "429", "503"] {
                            assert!(responses.contains_key(status), "{where_}: no {status}");
                        }
                        assert!(
                            !path.starts_with("/tile") && !path.starts_with("/checkpoint"),
                            "{where_}: public route with a key"
                        );
                    }
                    None => assert!(
                        !path.contains("/admin/") && !path.starts_with("/v1/events"),
                        "{where_}: needs a key but documents none"
                    ),
                }
                if op.get("requestBody").is_some() {
                    for status in ["400", "413", "415"] {
                        assert!(responses.contains_key(status), "{where_}: no {status}");
                    }
                }
                // Error answers say when to retry; /healthz's 503 is a
                // health report, not an error.
                for status in ["429", "503"] {
                    if path == "/healthz" {
                        continue;
                    }
                    if let Some(resp) = responses.get(status) {
                        let resp = match resp.get("$ref") {
                            Some(r) => doc.pointer(&r.as_str().unwrap()[1..]).unwrap(),
                            None => resp,
                        };
                        assert!(
                            resp["headers"].get("Retry-After").is_some(),
                            "{where_}: {status} without Retry-After"
                        );
                    }
                }
            }
        }
        assert_eq!(
            roles_seen,
            ["admin", "auditor", "writer"].map(String::from).into()
        );
    }

    /// A test log and the application over it.
    fn state() -> (AppState, TestLog) {
        let log = TestLogBuilder::new("example.com/log").start();
        (test_state(&log), log)
    }

    /// Whether the answer is the router's own "no such route" or "method not
    /// allowed", rather than a handler's.
    async fn router_refused(resp: axum::response::Response) -> Option<StatusCode> {
        let status = resp.status();
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        let refused = status == StatusCode::METHOD_NOT_ALLOWED
            || (status == StatusCode::NOT_FOUND && text.contains("no such resource"));
        refused.then_some(status)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_documented_operation_reaches_a_handler_and_no_other_method_does() {
        let (state, log) = state();
        let app = router(state);
        let documented = documented();
        let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
        for path in paths {
            let concrete = path.replace("{path}", "0/000").replace(['{', '}'], "");
            for m in METHODS {
                let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
                let req = Request::builder()
                    .method(method.clone())
                    .uri(&concrete)
                    .body(Body::empty())
                    .unwrap();
                let refused = router_refused(app.clone().oneshot(req).await.unwrap()).await;
                if documented.contains(&(m.to_uppercase(), path.clone())) {
                    assert_eq!(
                        refused, None,
                        "{method} {path} is documented but not routed"
                    );
                } else {
                    assert_eq!(
                        refused,
                        Some(StatusCode::METHOD_NOT_ALLOWED),
                        "{method} {path} is routed but not documented"
                    );
                }
            }
        }
        log.shut_down().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_document_is_served_public_and_cacheable() {
        let (state, log) = state();
        let resp = router(state)
            .oneshot(
                Request::get("/v1/openapi.json")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let cache = resp.headers()["cache-control"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(cache.starts_with("public, max-age="), "{cache}");
        let body = to_bytes(resp.into_body(), 4 << 20).await.unwrap();
        let served: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(served, doc_json());
        log.shut_down().await;
    }
}
