//! Public reads: checkpoint, tiles, proofs, log info, health, metrics. No
//! authentication and no personal data: leaves are commitments.
//!
//! The hot ones cost no store read when cached and no copy: a tile is the
//! read cache's bytes; a proof is one batch of cache lookups, its JSON
//! written straight into one buffer (the same bytes serde_json writes).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ApiError, AppState, with_cache};
use crate::merkle::{self, Hash};
use crate::tiles::{self, TilePath};

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))
}

/// The checkpoint the log serves: with a witness policy, the latest
/// witnessed one (log signatures and cosignatures), else — and until the
/// first is witnessed — the latest signed one.
fn served_checkpoint(st: &AppState) -> std::sync::Arc<crate::sequencer::Published> {
    st.witnessed
        .as_ref()
        .and_then(|w| w.latest())
        .map(|w| w.published.clone())
        .unwrap_or_else(|| st.view.checkpoint())
}

/// `GET /checkpoint`: the latest signed (with a witness policy: witnessed)
/// checkpoint, as a C2SP signed note.
#[utoipa::path(get, path = "/checkpoint", tag = "public",
    responses((status = 200, description = "The latest checkpoint as a C2SP signed note (c2sp.org/tlog-checkpoint)",
        body = String, content_type = "text/plain; charset=utf-8")))]
pub(super) async fn checkpoint_text(State(st): State<AppState>) -> Response {
    let cp = served_checkpoint(&st);
    let mut resp = cp.note.clone().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    with_cache(resp, "no-cache")
}

/// `GET /v1/checkpoint`: the same checkpoint as JSON, with its verified
/// cosignatures and, under a witness policy, the latest signed size.
#[utoipa::path(get, path = "/v1/checkpoint", tag = "public",
    responses((status = 200, description = "The latest checkpoint", body = super::openapi::CheckpointJson)))]
pub(super) async fn checkpoint_json(State(st): State<AppState>) -> Response {
    let witnessed = st.witnessed.as_ref().and_then(|w| w.latest());
    let cp = served_checkpoint(&st);
    let cosignatures = witnessed
        .as_ref()
        .map(|w| serde_json::to_value(&w.cosignatures).unwrap_or_default())
        .unwrap_or_else(|| json!([]));
    let mut body = json!({
        "origin": cp.checkpoint.origin,
        "tree_size": cp.checkpoint.size,
        "root_hash": cp.checkpoint.root.to_base64(),
        "note": cp.note,
        "published_at_ms": cp.published_at_ms,
        "cosignatures": cosignatures,
    });
    if let Some(w) = &st.witnessed {
        body["witnessed"] = json!(witnessed.is_some());
        body["witness_quorum"] = json!(w.quorum());
        // The newest checkpoint the log signed, witnessed or not, so that
        // monitors can hold the log to everything it signs.
        let signed = st.view.checkpoint();
        body["latest_signed_size"] = json!(signed.checkpoint.size);
        body["latest_signed"] = json!(signed.note);
    }
    with_cache(Json(body).into_response(), "no-cache")
}

/// `GET /v1/log`.
#[utoipa::path(get, path = "/v1/log", tag = "public",
    responses((status = 200, description = "The log's origin, size and verifier keys", body = super::openapi::LogInfo)))]
pub(super) async fn log_info(State(st): State<AppState>) -> Response {
    let cp = st.view.checkpoint();
    let body = json!({
        "origin": &*st.origin,
        "tree_size": cp.checkpoint.size,
        "verifier_keys": { "ecdsa": st.verifier_keys.ecdsa, "ed25519": st.verifier_keys.ed25519 },
    });
    with_cache(Json(body).into_response(), "no-cache")
}

/// `GET /v1/growth?points=N`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct GrowthParams {
    /// Intervals between the first and the last leaf's receive time
    /// (1 to 64, default 48).
    #[param(minimum = 1, maximum = 64)]
    points: Option<usize>,
}

/// `GET /v1/growth?points=N`: how the tree grew, from the receive times
/// in its public leaves, up to the latest checkpoint: evenly spaced times
/// from the first leaf's to the last one's, each with the tree size then.
/// Costs at most `points` binary searches over the leaves at any size.
#[utoipa::path(get, path = "/v1/growth", tag = "public", params(GrowthParams),
    responses(
        (status = 200, description = "The tree size over time", body = super::openapi::Growth),
        (status = 400, description = "Invalid points", body = super::openapi::ErrorBody),
        (status = 503, description = "Storage unavailable", body = super::openapi::ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub(super) async fn growth(
    State(st): State<AppState>,
    q: Result<Query<GrowthParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let points = query(q)?.points.unwrap_or(48);
    if points == 0 || points > crate::search::MAX_GROWTH_POINTS {
        return Err(ApiError::bad_request(format!(
            "points must be between 1 and {}",
            crate::search::MAX_GROWTH_POINTS
        )));
    }
    let size = st.view.checkpoint().checkpoint.size;
    let store = st.store.clone();
    let series =
        tokio::task::spawn_blocking(move || crate::search::growth(store.as_ref(), size, points))
            .await
            .map_err(|e| ApiError::internal(format!("growth task: {e}")))??;
    let body = json!({ "tree_size": size, "points": series });
    Ok(with_cache(Json(body).into_response(), "no-cache"))
}

/// `GET /tile/<L>/<N>[.p/<W>]` and `GET /tile/entries/<N>[.p/<W>]`: any
/// width up to what is durably committed. The bytes at a path never change,
/// so every tile is immutable to caches.
#[utoipa::path(get, path = "/tile/{path}", tag = "public",
    params(("path" = String, Path, example = "0/000.p/1", pattern = r"^(entries|[0-9]{1,2})/(x[0-9]{3}/)*[0-9]{3}(\.p/[0-9]{1,3})?$",
        description = "The rest of a c2sp.org/tlog-tiles path: `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`, \
            `<N>` in groups of three digits (`x001/234`)")),
    responses(
        (status = 200, description = "A hash tile (32-byte hashes) or an entry bundle; immutable",
            body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 400, description = "Not a tile path", body = super::openapi::ErrorBody),
        (status = 404, description = "The tile is beyond the committed tree", body = super::openapi::ErrorBody),
        (status = 503, description = "Storage unavailable", body = super::openapi::ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub(super) async fn tile(State(st): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    // The route matched `/tile/...`: the rest of the path is the tile's,
    // read in place rather than copied out by a path extractor.
    let path = uri.path().trim_start_matches('/');
    let parsed =
        tiles::parse_tile_path(path).map_err(|e| ApiError::bad_request(format!("{path}: {e}")))?;
    let size = st.view.durable_size();
    let (tile, entries) = match parsed {
        TilePath::Hash(t) => (t, false),
        TilePath::Entries(t) => (t, true),
    };
    if !tile_exists(tile.level, tile.index, tile.width, size) {
        return Err(ApiError::not_found(format!(
            "{path} does not exist in a tree of size {size}"
        )));
    }
    // Served from the read cache as ready bytes: a full tile never changes,
    // and a cached partial one answers only the widths it covers.
    let body = if entries {
        st.tiles.bundle(tile.index, tile.width)?
    } else {
        st.tiles.hash_tile(tile.level, tile.index, tile.width)?
    };
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(with_cache(resp, IMMUTABLE))
}

/// Whether the tile (level, index, width) exists in a tree of `size`
/// entries: its last hash must cover only committed leaves.
fn tile_exists(level: u8, index: u64, width: u16, size: u64) -> bool {
    let shift = 8 * u32::from(level);
    // Number of complete level-(8*level) nodes, i.e. hashes at this tile level.
    let count = if shift >= 64 { 0 } else { size >> shift };
    let first = match index.checked_mul(256) {
        Some(f) => f,
        None => return false,
    };
    first
        .checked_add(u64::from(width))
        .is_some_and(|end| end <= count)
}

/// Give exactly one of `index` and `hash`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct InclusionParams {
    /// The leaf's index.
    #[param(minimum = 0, example = 0)]
    index: Option<u64>,
    /// The leaf hash, base64url (standard base64 is accepted too), 32 bytes.
    #[param(min_length = 43, max_length = 44, pattern = r"^[A-Za-z0-9_+/-]{43}=?$")]
    hash: Option<String>,
    /// The tree size the proof is for (at most the committed size); the
    /// latest checkpoint's by default.
    #[param(minimum = 0)]
    tree_size: Option<u64>,
}

/// Decodes a leaf hash given in a URL: base64url (as documented) or
/// standard base64, padded or not.
fn parse_url_hash(s: &str) -> Result<Hash, ApiError> {
    let trimmed = s.trim_end_matches('=');
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed);
    let std = || base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed);
    let bytes = url
        .or_else(|_| std())
        .map_err(|_| ApiError::bad_request("hash: not base64url"))?;
    Hash::from_slice(&bytes).map_err(|_| ApiError::bad_request("hash: must be 32 bytes"))
}

/// The tree size a proof is asked for: given, or the latest checkpoint's;
/// never beyond what is committed.
fn proof_size(st: &AppState, asked: Option<u64>) -> Result<u64, ApiError> {
    let committed = st.view.durable_size();
    let size = asked.unwrap_or_else(|| st.view.checkpoint().checkpoint.size);
    if size > committed {
        return Err(ApiError::bad_request(format!(
            "tree_size {size} is beyond the log's size {committed}"
        )));
    }
    Ok(size)
}

/// `GET /v1/proof/inclusion?index=N&tree_size=S` or `?hash=<b64url>&tree_size=S`.
#[utoipa::path(get, path = "/v1/proof/inclusion", tag = "public", params(InclusionParams),
    responses(
        (status = 200, description = "An RFC 9162 inclusion proof", body = super::openapi::InclusionProof),
        (status = 400, description = "Invalid query, or index/tree_size beyond the log", body = super::openapi::ErrorBody),
        (status = 404, description = "No leaf with that hash", body = super::openapi::ErrorBody),
        (status = 503, description = "Storage unavailable", body = super::openapi::ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub(super) async fn inclusion_proof(
    State(st): State<AppState>,
    q: Result<Query<InclusionParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = query(q)?;
    let size = proof_size(&st, p.tree_size)?;
    let index = match (p.index, p.hash.as_deref()) {
        (Some(i), None) => i,
        (None, Some(h)) => {
            let hash = parse_url_hash(h)?;
            st.store
                .leaf_index(&hash)?
                .ok_or_else(|| ApiError::not_found("no leaf with that hash"))?
        }
        _ => return Err(ApiError::bad_request("give exactly one of index and hash")),
    };
    if index >= size {
        return Err(ApiError::bad_request(format!(
            "index {index} is not in a tree of size {size}"
        )));
    }
    let body = inclusion_body(&st, index, size)?;
    let cache = if p.tree_size.is_some() {
        IMMUTABLE
    } else {
        "no-cache"
    };
    Ok(with_cache(body.to_json().into_response(), cache))
}

/// An inclusion proof as answered: hashes in padded standard base64.
#[derive(Serialize)]
pub(super) struct InclusionBody {
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: Hash,
    audit_path: Vec<Hash>,
}

impl InclusionBody {
    /// The answer's bytes, exactly what serde_json makes of it.
    fn to_json(&self) -> ProofJson {
        let mut out = ProofJson::with_hashes(1 + self.audit_path.len());
        out.number("{\"leaf_index\":", self.leaf_index);
        out.number(",\"tree_size\":", self.tree_size);
        out.hash(",\"leaf_hash\":", &self.leaf_hash);
        out.hashes(",\"audit_path\":", &self.audit_path);
        out
    }
}

/// The inclusion proof of leaf `index` in the tree of `size`, from the
/// read cache: the leaf and its path in one batch of lookups.
fn inclusion_body(st: &AppState, index: u64, size: u64) -> Result<InclusionBody, ApiError> {
    let (leaf_hash, audit_path) = merkle::inclusion_proof_with_leaf(index, size, st.tiles.as_ref())
        .map_err(ApiError::internal)?;
    Ok(InclusionBody {
        leaf_index: index,
        tree_size: size,
        leaf_hash,
        audit_path,
    })
}

/// A proof answer's JSON written straight into one buffer of its final
/// size: the keys are fixed, the numbers decimal and the hashes base64,
/// whose alphabet needs no escaping. `to_json` of each body keeps the
/// bytes serde_json would write for it (a test holds them equal).
struct ProofJson(Vec<u8>);

impl ProofJson {
    fn with_hashes(hashes: usize) -> ProofJson {
        // Keys and numbers, then `"<44 characters>",` per hash.
        ProofJson(Vec::with_capacity(112 + 47 * hashes))
    }

    fn number(&mut self, key: &str, n: u64) {
        use std::io::Write as _;
        self.0.extend_from_slice(key.as_bytes());
        // Writing to a Vec cannot fail.
        let _ = write!(self.0, "{n}");
    }

    fn hash(&mut self, key: &str, h: &Hash) {
        self.0.extend_from_slice(key.as_bytes());
        self.quoted(h);
    }

    /// `key`, then the array of `hashes`, then the closing brace.
    fn hashes(&mut self, key: &str, hashes: &[Hash]) {
        self.0.extend_from_slice(key.as_bytes());
        self.0.push(b'[');
        for (i, h) in hashes.iter().enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            self.quoted(h);
        }
        self.0.extend_from_slice(b"]}");
    }

    fn quoted(&mut self, h: &Hash) {
        let mut buf = [0u8; 44];
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(h.0, &mut buf)
            .expect("44 bytes hold the base64 of 32");
        self.0.push(b'"');
        self.0.extend_from_slice(&buf[..n]);
        self.0.push(b'"');
    }
}

impl IntoResponse for ProofJson {
    fn into_response(self) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.0,
        )
            .into_response()
    }
}

/// [`inclusion_body`] as a JSON value, for answers that embed a proof.
pub(super) fn inclusion_json(
    st: &AppState,
    index: u64,
    size: u64,
) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(inclusion_body(st, index, size)?).map_err(ApiError::internal)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ConsistencyParams {
    /// The older tree size.
    #[param(minimum = 0)]
    first: u64,
    /// The newer tree size (at most the committed size); the latest
    /// checkpoint's by default.
    #[param(minimum = 0)]
    second: Option<u64>,
}

/// `GET /v1/proof/consistency?first=A&second=B`. A proof from the empty tree
/// (`first=0`) and between equal sizes is empty.
#[utoipa::path(get, path = "/v1/proof/consistency", tag = "public", params(ConsistencyParams),
    responses(
        (status = 200, description = "An RFC 9162 consistency proof", body = super::openapi::ConsistencyProof),
        (status = 400, description = "Invalid query, first > second, or second beyond the log", body = super::openapi::ErrorBody),
        (status = 503, description = "Storage unavailable", body = super::openapi::ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub(super) async fn consistency_proof(
    State(st): State<AppState>,
    q: Result<Query<ConsistencyParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = query(q)?;
    let second = proof_size(&st, p.second)?;
    if p.first > second {
        return Err(ApiError::bad_request(format!(
            "first ({}) must not exceed second ({second})",
            p.first
        )));
    }
    let consistency = if p.first == 0 || p.first == second {
        Vec::new()
    } else {
        merkle::consistency_proof(p.first, second, st.tiles.as_ref()).map_err(ApiError::internal)?
    };
    let body = ConsistencyBody {
        first: p.first,
        second,
        consistency,
    };
    let cache = if p.second.is_some() {
        IMMUTABLE
    } else {
        "no-cache"
    };
    Ok(with_cache(body.to_json().into_response(), cache))
}

/// A consistency proof as answered: hashes in padded standard base64.
#[derive(Serialize)]
struct ConsistencyBody {
    first: u64,
    second: u64,
    consistency: Vec<Hash>,
}

impl ConsistencyBody {
    /// The answer's bytes, exactly what serde_json makes of it.
    fn to_json(&self) -> ProofJson {
        let mut out = ProofJson::with_hashes(self.consistency.len());
        out.number("{\"first\":", self.first);
        out.number(",\"second\":", self.second);
        out.hashes(",\"consistency\":", &self.consistency);
        out
    }
}

/// `GET /healthz`: checks that the sequencer runs, that the latest
/// checkpoint is recent enough while the tree grows, and that it is signed.
#[utoipa::path(get, path = "/healthz", tag = "public",
    responses(
        (status = 200, description = "Healthy", body = super::openapi::Health),
        (status = 503, description = "Degraded: the problems say why", body = super::openapi::Health),
    ))]
pub(super) async fn healthz(State(st): State<AppState>) -> Response {
    let cp = st.view.checkpoint();
    let age_ms = st.view.clock().now_ms().saturating_sub(cp.published_at_ms);
    let pending = st.view.durable_size().saturating_sub(cp.checkpoint.size);
    let stale_after =
        i64::try_from(st.checkpoint_interval.as_millis() * 3 + 2000).unwrap_or(i64::MAX);
    let mut problems = Vec::new();
    if st.view.failed() {
        problems.push("the sequencer stopped after a storage failure".to_string());
    }
    if pending > 0 && age_ms > stale_after {
        problems.push(format!(
            "{pending} entries are waiting for a checkpoint for {age_ms} ms"
        ));
    }
    if let Some(w) = &st.witnessed {
        problems.extend(w.alarms().into_iter().map(|a| format!("ALARM: {a}")));
    }
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "status": if problems.is_empty() { "ok" } else { "degraded" },
        "problems": problems,
        "tree_size": cp.checkpoint.size,
        "committed_size": st.view.durable_size(),
        "checkpoint_age_ms": age_ms,
    });
    body["search_index"] = match st.vault.index_building() {
        Ok(Some(p)) => json!({ "state": "building", "indexed": p.indexed, "target": p.target }),
        _ => json!({ "state": "ready" }),
    };
    if let Ok(n) = st.vault.erasure_cleanups_pending() {
        body["erasure_cleanups_pending"] = json!(n);
    }
    if let Some(w) = &st.witnessed {
        body["witnessed_size"] = json!(w.latest().map(|l| l.published.checkpoint.size));
        body["witnesses"] = serde_json::to_value(w.statuses()).unwrap_or_default();
    }
    with_cache((status, Json(body)).into_response(), "no-store")
}

/// `GET /metrics`: Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "public",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4",
            body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 404, description = "Metrics are not enabled", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    let handle = st
        .metrics
        .as_ref()
        .ok_or_else(|| ApiError::not_found("metrics are not enabled"))?;
    let cp = st.view.checkpoint();
    metrics::gauge!("veritrail_checkpoint_age_seconds")
        .set((st.view.clock().now_ms() - cp.published_at_ms) as f64 / 1000.0);
    metrics::gauge!("veritrail_checkpoint_size").set(cp.checkpoint.size as f64);
    metrics::gauge!("veritrail_tree_size").set(st.view.durable_size() as f64);
    // Counted by the cache itself under its shard locks, published here.
    let cache = st.tiles.stats();
    metrics::counter!("veritrail_read_cache_hits_total").absolute(cache.hits);
    metrics::counter!("veritrail_read_cache_misses_total").absolute(cache.misses);
    metrics::gauge!("veritrail_read_cache_bytes").set(cache.bytes as f64);
    metrics::gauge!("veritrail_read_cache_entries").set(cache.entries as f64);
    metrics::counter!("veritrail_proof_cache_hits_total").absolute(cache.proof_hits);
    metrics::counter!("veritrail_proof_cache_misses_total").absolute(cache.proof_misses);
    metrics::gauge!("veritrail_proof_cache_bytes").set(cache.proof_bytes as f64);
    metrics::counter!("veritrail_proof_cache_from_store_total").absolute(cache.proof_from_store);
    let mut resp = handle.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(with_cache(resp, "no-store"))
}

#[cfg(test)]
mod tests {
    use super::{ConsistencyBody, InclusionBody, tile_exists};
    use crate::merkle::{Hash, leaf_hash};

    #[test]
    fn proof_answers_are_the_bytes_serde_json_writes() {
        let hashes: Vec<Hash> = (0..70u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for (n, number) in [(0, 0), (1, 1), (2, 255), (20, 1_000_000), (63, u64::MAX)] {
            let inclusion = InclusionBody {
                leaf_index: number / 2,
                tree_size: number,
                leaf_hash: hashes[69],
                audit_path: hashes[..n].to_vec(),
            };
            assert_eq!(
                inclusion.to_json().0,
                serde_json::to_vec(&inclusion).unwrap(),
                "{n} {number}"
            );
            let consistency = ConsistencyBody {
                first: number / 3,
                second: number,
                consistency: hashes[n / 2..n].to_vec(),
            };
            assert_eq!(
                consistency.to_json().0,
                serde_json::to_vec(&consistency).unwrap(),
                "{n} {number}"
            );
        }
    }

    #[test]
    fn tiles_exist_only_for_committed_leaves() {
        assert!(!tile_exists(0, 0, 1, 0));
        assert!(tile_exists(0, 0, 1, 1));
        assert!(tile_exists(0, 0, 5, 5));
        assert!(!tile_exists(0, 0, 6, 5));
        assert!(tile_exists(0, 0, 256, 256));
        assert!(!tile_exists(0, 1, 1, 256));
        assert!(tile_exists(1, 0, 1, 256));
        assert!(!tile_exists(1, 0, 2, 511));
        assert!(tile_exists(1, 0, 2, 512));
        assert!(!tile_exists(0, u64::MAX, 256, u64::MAX));
        assert!(!tile_exists(63, 0, 1, u64::MAX));
        assert!(tile_exists(7, 0, 255, u64::MAX));
    }
}
