//! The HTTP surface: one axum router for the public read API (checkpoint,
//! tiles, proofs), writers, admins and the web console.
//!
//! `router(state)` builds the whole app, so tests can drive it in process as
//! well as through a real socket. Every error goes through [`ApiError`].

mod admin;
mod alerts;
mod audit;
mod backup;
mod error;
mod governance;
mod guard;
mod openapi;
mod otlp;
mod read;
mod stream;
mod strict_json;
mod write;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub(crate) use admin::record_first_keys;
pub use admin::{CreateKey, CreatedKey, KeyList, KeyRecord};
pub use audit::SearchParams;
pub(crate) use error::ApiError;
pub use error::refused_head_answer;
pub(crate) use governance::retention_loop;
pub use governance::{
    CleanupState, ErasureRequest, ErasureResult, HoldEntry, HoldList, HoldRequest, PolicyList,
    PolicyRequest, Removed, RetentionRun, SubjectForm,
};
pub use openapi::{BatchProof, ConsistencyProof, InclusionProof, SubmitResponse, SubmittedEvent};
pub use write::parse_submission;

use crate::auth::ApiKeys;
use crate::cosign::WitnessedView;
use crate::event::EventLimits;
use crate::note::keys::LogVerifierKeys;
use crate::sequencer::{LogView, SequencerHandle, TileCache};
use crate::store::Store;

/// Explicit limits on every request.
#[derive(Clone, Debug)]
pub struct ApiLimits {
    /// Largest request body of `POST /v1/events`, in bytes.
    pub max_events_body: usize,
    /// Largest body of any other request, in bytes.
    pub max_other_body: usize,
    /// Events per request, field lengths, context size.
    pub events: EventLimits,
    /// A request taking longer than this is answered 408.
    pub request_timeout: Duration,
    /// A streamed answer (export, backup) whose client takes nothing for
    /// this long is cut.
    pub stream_stall_timeout: Duration,
    /// Requests per API key (429 beyond it).
    pub rate_limit: crate::ratelimit::RateLimit,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            // 1,000 events of ~2 KiB each fit; one maximal 8 KiB context per event does not.
            max_events_body: 4 << 20,
            max_other_body: 64 << 10,
            events: EventLimits::default(),
            request_timeout: Duration::from_secs(30),
            stream_stall_timeout: Duration::from_secs(60),
            rate_limit: crate::ratelimit::RateLimit::default(),
        }
    }
}

/// Everything a handler needs, behind one `Arc`: axum clones the state for
/// every request, so that clone is a single reference count, not one per
/// part.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    /// The state of an app made of `parts`.
    pub fn new(parts: AppParts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppParts {
    /// The log's origin.
    pub origin: Arc<str>,
    /// The log's verifier keys.
    pub verifier_keys: Arc<LogVerifierKeys>,
    /// The store, for reads.
    pub store: Arc<dyn Store>,
    /// Tiles, bundles and proofs' subtree hashes, cached over `store`.
    pub tiles: Arc<TileCache>,
    /// Published checkpoint and durable size.
    pub view: Arc<LogView>,
    /// Submissions.
    pub sequencer: SequencerHandle,
    /// API keys.
    pub keys: ApiKeys,
    /// Limits.
    pub limits: Arc<ApiLimits>,
    /// Prometheus exposition, when metrics are installed.
    pub metrics: Option<PrometheusHandle>,
    /// The checkpoint interval, for health checks.
    pub checkpoint_interval: Duration,
    /// Cosignature collection, when a witness policy is configured.
    pub witnessed: Option<Arc<WitnessedView>>,
    /// Encrypted event bodies, indexes, erasure (the same store as `store`).
    pub vault: Arc<crate::vault::Vault>,
    /// Alert rules on accepted events, when configured.
    pub alerts: Option<Arc<crate::alerts::Alerts>>,
}

/// The state `veritrail serve` would build over a test log (sealed, no
/// metrics, no witnesses), for the handlers' unit tests.
#[cfg(test)]
pub(crate) fn test_state(log: &crate::sequencer::test_log::TestLog) -> AppState {
    test_state_with(log, None)
}

/// As [`test_state`], with alert rules watching accepted events.
#[cfg(test)]
pub(crate) fn test_state_with(
    log: &crate::sequencer::test_log::TestLog,
    alerts: Option<Arc<crate::alerts::Alerts>>,
) -> AppState {
    let store = log.dyn_store();
    AppState::new(AppParts {
        origin: log.origin.as_str().into(),
        verifier_keys: Arc::new(log.keys.verifier_keys(&log.origin).unwrap()),
        tiles: Arc::new(crate::sequencer::TileCache::new(
            store.clone(),
            1 << 20,
            1 << 20,
        )),
        store: store.clone(),
        view: log.view.clone(),
        sequencer: log.handle(),
        keys: ApiKeys::new(store),
        limits: Arc::new(ApiLimits::default()),
        metrics: None,
        checkpoint_interval: Duration::from_secs(1),
        witnessed: None,
        alerts,
        vault: log.vault(),
    })
}

/// Builds the whole application.
pub fn router(state: AppState) -> Router {
    let limits = state.limits.clone();
    // The hottest reads are not compressed: tiles are binary hashes and
    // proofs short base64, and neither pays for the negotiation. Nor do
    // they take the request timeout's timer: they read no body and answer
    // from memory (or one store read), so there is nothing to time out.
    let hot = Router::new()
        .route("/tile/{*path}", get(read::tile))
        .route("/v1/proof/inclusion", get(read::inclusion_proof))
        .route("/v1/proof/consistency", get(read::consistency_proof));
    let public = Router::new()
        .route("/checkpoint", get(read::checkpoint_text))
        .route("/v1/checkpoint", get(read::checkpoint_json))
        .route("/v1/log", get(read::log_info))
        .route("/v1/growth", get(read::growth))
        .route("/healthz", get(read::healthz))
        .route("/metrics", get(read::metrics))
        .route("/v1/openapi.json", get(openapi::openapi_json))
        .layer(tower_http::compression::CompressionLayer::new().gzip(true));
    let admin = Router::new()
        .route(
            "/v1/admin/keys",
            post(admin::create_key).get(admin::list_keys),
        )
        .route("/v1/admin/keys/{id}", delete(admin::revoke_key))
        .route("/v1/admin/backup", post(backup::backup))
        .route("/v1/erasure", post(governance::erase))
        .route(
            "/v1/admin/retention",
            post(governance::create_policy).get(governance::list_policies),
        )
        .route(
            "/v1/admin/retention/{id}",
            delete(governance::remove_policy),
        )
        .route(
            "/v1/admin/retention/run",
            post(governance::run_retention_now),
        )
        .route(
            "/v1/admin/holds",
            post(governance::create_hold).get(governance::list_holds),
        )
        .route("/v1/admin/holds/{id}", delete(governance::release_hold))
        .layer(DefaultBodyLimit::max(limits.max_other_body));
    let auditor = Router::new()
        .route("/v1/events", get(audit::search_events))
        .route("/v1/events/{index}", get(audit::get_event))
        .route("/v1/events/{index}/tlog-proof", get(audit::tlog_proof))
        .route("/v1/export", get(audit::export))
        .route("/v1/whoami", get(audit::whoami))
        .route("/v1/alerts", get(alerts::list_alerts))
        .route("/v1/admin/actions", get(admin::list_actions));
    let write = Router::new()
        .route("/v1/events", post(write::submit_events))
        .route("/v1/logs", post(otlp::export_logs))
        .layer(DefaultBodyLimit::max(limits.max_events_body));
    let timed = Router::new()
        .merge(public)
        .merge(admin)
        .merge(write)
        .merge(auditor)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ));
    let routes = Router::new()
        .merge(hot)
        .merge(timed)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    // The layers every request passes wrap the router once, as one
    // service: `Router::layer` would wrap each route in a boxed service per
    // layer, cloned and boxed again on every request. The head checks and
    // the JSON error body of every refusal (the timeout's included) are one
    // layer.
    let layered = tower::ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("a request handler panicked").into_response()
        }))
        .layer(axum::middleware::from_fn(guard::request_head))
        .service(routes);
    Router::new().fallback_service(layered)
}

/// Unknown routes: a console file for GET, else a JSON 404.
async fn not_found(method: Method, uri: Uri) -> Response {
    if method == Method::GET || method == Method::HEAD {
        let path = uri.path().trim_start_matches('/');
        if !path.contains("..")
            && let Some(resp) = crate::web::file(path)
        {
            return resp;
        }
    }
    ApiError::not_found(format!("no such resource: {}", uri.path())).into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

fn with_cache(mut resp: Response, value: &'static str) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    resp
}
